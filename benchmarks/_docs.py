"""Shared by the benchmark scripts: the machine's CPU name, and writing a benchmark's results into its own
marked section of docs/benchmarks.md."""

from __future__ import annotations

from ml4ep.bench.report import write_section  # noqa: F401 - shared with `ml4ep bench`
from ml4ep.bench.run import cpu_model  # noqa: F401
