"""``ml4ep data inspect``: columns and whether they can be batched, errors naming the file."""

from __future__ import annotations

from ml4ep.cli import main


def test_inspect_lists_columns(files, capsys):
    assert main(["data", "inspect", files["root"], files["parquet"], "--tree", "Events"]) == 0
    out = capsys.readouterr().out
    assert "zlib.root: 'Events' 5000 entries (root)" in out
    assert "jet_pt" in out and "variable length (needs max_vec_sizes)" in out
    assert "arr" in out and "float32 x 3" in out
    assert "data.parquet:" in out and "int64" in out


def test_inspect_errors_name_the_file(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "missing.h5")]) == 2
    assert "missing.h5: file not found" in capsys.readouterr().err
