"""Each reader against the library that wrote the file: same values, same dtypes, exact padding."""

from __future__ import annotations

import numpy as np
import pytest

from ml4ep.data.sources import pad_jagged, reader_for

FORMATS = ["root", "root-lz4", "root-zstd", "root-lzma", "root-none", "rntuple", "hdf5", "parquet"]


def _tree(fmt):
    return "Events" if fmt.startswith("root") or fmt == "rntuple" else None


@pytest.mark.parametrize("fmt", FORMATS)
def test_reader_values_and_dtypes(files, cols, fmt):
    r = reader_for(files[fmt], None, _tree(fmt))
    assert r.num_entries == len(cols["id"])
    names = ["id", "pt", "eta", "e", "nhit", "flag", "arr"]
    schema = r.columns
    for n in names:
        assert schema[n].dtype == cols[n].dtype, (n, schema[n].dtype)
    assert schema["arr"].kind == "fixed" and schema["arr"].shape == (3,)
    out = r.read(names, 1234, 3210, {}, 0)
    for n in names:
        assert out[n].dtype == cols[n].dtype
        np.testing.assert_array_equal(out[n], cols[n][1234:3210], err_msg=n)
    r.close()


@pytest.mark.parametrize("fmt", ["root", "root-none", "rntuple", "parquet"])
@pytest.mark.parametrize("size", [1, 4, 9])
def test_reader_jagged_padding(files, cols, fmt, size):
    r = reader_for(files[fmt], None, _tree(fmt))
    assert r.columns["jet_pt"].kind == "jagged"
    out = r.read(["jet_pt"], 100, 900, {"jet_pt": size}, -7.0)
    offsets = cols["jet_offsets"]
    for i, e in enumerate(range(100, 900)):
        values = cols["jet_pt"][offsets[e]:offsets[e + 1]]
        assert out["jet_pt.counts"][i] == len(values)
        k = min(size, len(values))
        np.testing.assert_array_equal(out["jet_pt"][i, :k], values[:k])
        assert np.all(out["jet_pt"][i, k:] == -7.0)


def test_reader_against_uproot_directly(files):
    uproot = pytest.importorskip("uproot")
    with uproot.open(files["root-zstd"]) as f:
        ref = f["Events"].arrays(["pt", "nhit"], entry_start=10, entry_stop=4000, library="np")
    r = reader_for(files["root-zstd"], None, "Events")
    out = r.read(["pt", "nhit"], 10, 4000, {}, 0)
    for n in ref:
        np.testing.assert_array_equal(out[n], ref[n])


def test_pad_jagged_formula():
    offsets = np.array([3, 3, 5, 9])  # offsets need not start at zero
    content = np.arange(10.0)
    out, counts = pad_jagged(offsets, content, 3, -1.0)
    np.testing.assert_array_equal(counts, [0, 2, 4])
    np.testing.assert_array_equal(out, [[-1, -1, -1], [3, 4, -1], [5, 6, 7]])


@pytest.mark.parametrize("fmt", ["root", "hdf5", "parquet"])
def test_boundaries_are_increasing_and_cover_the_file(files, fmt):
    r = reader_for(files[fmt], None, _tree(fmt))
    b, _coarse = r.boundaries(["pt", "eta"], 700)
    assert b is not None and b[0] == 0 and b[-1] == r.num_entries
    assert np.all(np.diff(b) > 0)
