"""Shared by the benchmark scripts: the machine's CPU name, and writing a benchmark's results into its own
marked section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, name: str, lines: list[str], heading: str = "") -> None:
    """Replaces the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` with ``lines``, or appends
    the section (after ``heading``) when the markers are absent; the rest of the file is kept."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = "\n".join([begin, *lines, end])
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        text = pre + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + (heading + "\n\n" if heading else "") + block + "\n"
    path.write_text(text)


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
