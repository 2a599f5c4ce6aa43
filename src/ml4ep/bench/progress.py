"""Progress bars for ``ml4ep bench`` and the scripts in ``benchmarks/``: tqdm, on stderr, and only on a terminal.

>>> from ml4ep.bench.progress import progress, write
>>> for case in progress(cases, desc="gflash", unit="case"):  # a bar only when stderr is a terminal
...     write(run(case))                                    # a line of the results, printed above the bar

A bar updated by hand: ``bar = progress(total=n, desc=...)``, then ``bar.set_postfix_str(what)`` and
``bar.update()``, and ``bar.close()`` (or ``with progress(total=n) as bar:``). Anything printed while a bar is
on the screen goes through :func:`write`, or inside ``with paused():``, so that it never lands in the middle
of the bar; a table printed after the bar is closed needs neither.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import IO, Any

from tqdm import tqdm

__all__ = ["progress", "write", "paused"]


class _Bar(tqdm):
    """tqdm without its monitor thread (nothing wakes up in the background of a timed benchmark); the bar is
    redrawn at every update instead (at most every 0.1 s), which the slow loops of a benchmark can afford."""

    monitor_interval = 0


def _is_terminal(file: IO[str]) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str | None = None, *,
             unit: str = "run", file: IO[str] | None = None, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar over ``iterable`` (or updated by hand: ``total`` and ``bar.update()``) on ``file`` (default:
    the current ``sys.stderr``). It draws nothing when ``enabled`` is false or ``file`` is not a terminal (a log,
    a pipe, a captured stream); iterating it then gives the items of ``iterable`` all the same. Further keyword
    arguments go to :class:`tqdm.tqdm`."""
    file = sys.stderr if file is None else file
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("miniters", 1)
    return _Bar(iterable, total=total, desc=desc, unit=unit, file=file,
                disable=not (enabled and _is_terminal(file)), **kwargs)


def write(text: str, file: IO[str] | None = None) -> None:
    """Print a line (default: to the current ``sys.stdout``), clearing the bars for it and drawing them again
    below it, and flush it (so that a log written through a pipe is up to date)."""
    file = sys.stdout if file is None else file
    tqdm.write(text, file=file)
    file.flush()


def paused() -> AbstractContextManager:
    """``with paused(): ...``: the bars are cleared while the block prints (through ``print``, ``logging`` or a
    callback) and drawn again after it."""
    return tqdm.external_write_mode()
