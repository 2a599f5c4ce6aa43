"""Shared by the benchmark scripts: the machine's CPU name, and writing a benchmark's results into its own
marked section of docs/benchmarks.md."""

from __future__ import annotations

from ml4ep.bench.report import write_section  # noqa: F401 - shared with `ml4ep bench`


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
