"""ml4ep.bench.progress: the bars of `ml4ep bench` and benchmarks/ draw only on a terminal, and count right."""

from __future__ import annotations

import io

from ml4ep.bench.progress import paused, progress, write


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_stderr_is_not_a_terminal(capsys):
    """Under a captured (not a terminal) stderr nothing is drawn, and iterating still gives every item."""
    bar = progress(range(7), desc="runs")
    assert list(bar) == list(range(7))
    bar.close()
    manual = progress(total=3, desc="stages")
    for _ in range(3):
        manual.update()
    manual.close()
    write("a result line")
    with paused():
        print("another")
    out, err = capsys.readouterr()
    assert err == ""
    assert out == "a result line\nanother\n"


def test_silent_when_disabled_on_a_terminal():
    term = Terminal()
    assert list(progress(range(3), file=term, enabled=False)) == [0, 1, 2]
    assert term.getvalue() == ""


def test_counts_on_a_terminal():
    term = Terminal()
    bar = progress(["a", "b", "c", "d", "e"], desc="runs", file=term)
    assert list(bar) == ["a", "b", "c", "d", "e"]
    assert bar.n == bar.total == 5
    assert "runs: " in term.getvalue() and "5/5" in term.getvalue() and "run/s" in term.getvalue()

    term = Terminal()
    with progress(total=4, desc="cases", unit="case", file=term) as manual:
        for _ in range(4):
            manual.update()
    assert manual.n == 4
    assert "4/4" in term.getvalue() and "case/s" in term.getvalue()


def test_write_clears_the_bar_for_its_line():
    """A line written while a bar is drawn comes out whole, on a line of its own, and the bar is drawn again."""
    term = Terminal()
    bar = progress(total=2, desc="runs", file=term)
    bar.update()
    write("result 1", file=term)
    bar.update()
    bar.close()
    lines = term.getvalue().replace("\r", "\n").splitlines()
    assert "result 1" in lines
    assert lines[-1].startswith("runs: 100%") and "2/2" in lines[-1]
