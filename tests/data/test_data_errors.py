"""Bad input: clear errors naming the file, tree, dataset or column; the filter language stays safe."""

from __future__ import annotations

import numpy as np
import pytest
from datafiles import make_columns, write_hdf5

from ml4ep.data import BatchLoader, DataError, FilterError
from ml4ep.data.expr import Expression
from ml4ep.errors import Ml4epError


def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(DataError, match="nope.root: file not found"):
        BatchLoader(str(tmp_path / "nope.root"), tree="Events")
    with pytest.raises(DataError, match=r"no file matches .*\*\.root"):
        BatchLoader(str(tmp_path / "*.root"), tree="Events")


def test_not_a_root_file(tmp_path):
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"this is not ROOT" * 10)
    with pytest.raises(DataError, match="bad.root: not a readable ROOT file"):
        BatchLoader(str(bad), tree="Events")
    h5 = tmp_path / "bad.h5"
    h5.write_bytes(b"nope")
    with pytest.raises(DataError, match="bad.h5: not a readable HDF5 file"):
        BatchLoader(str(h5))
    pq = tmp_path / "bad.parquet"
    pq.write_bytes(b"nope")
    with pytest.raises(DataError, match="bad.parquet: not a readable Parquet file"):
        BatchLoader(str(pq))


def test_unknown_extension(tmp_path):
    f = tmp_path / "data.csv"
    f.write_text("a\n1\n")
    with pytest.raises(DataError, match="cannot tell the format"):
        BatchLoader(str(f))


def test_missing_tree_names_the_ones_present(files):
    with pytest.raises(DataError, match=r"zlib.root: no tree or RNTuple named 'Nope' \(the file has: \['Events'\]\)"):
        BatchLoader(files["root"], tree="Nope")


def test_missing_hdf5_group(files):
    with pytest.raises(DataError, match="data.h5: no group or dataset 'grp'"):
        BatchLoader(files["hdf5"], tree="grp")


@pytest.mark.parametrize("fmt", ["root", "hdf5", "parquet"])
def test_missing_column_names_file_and_column(files, fmt):
    kw = {"tree": "Events"} if fmt == "root" else {}
    with pytest.raises(DataError, match=r"no column 'ptt' .*available: .*pt"):
        BatchLoader(files[fmt], columns=["ptt"], **kw)
    with pytest.raises(DataError, match="no column 'lbl'"):
        BatchLoader(files[fmt], columns=["pt"], target="lbl", **kw)


def test_jagged_without_max_vec_sizes(files):
    with pytest.raises(DataError, match=r"'jet_pt' has a variable length.*max_vec_sizes=\{'jet_pt': N\}"):
        BatchLoader(files["root"], tree="Events", columns=["pt", "jet_pt"])
    with pytest.raises(DataError, match="jet_pt"):
        BatchLoader(files["parquet"], columns=["jet_pt"])


def test_non_numeric_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"name": ["a", "b"], "x": [1.0, 2.0]}), path)
    with pytest.raises(DataError, match=r"s.parquet: column 'name' cannot be batched: it is type string"):
        BatchLoader(str(path), columns=["x", "name"])
    ld = BatchLoader(str(path))  # without columns=, only the numeric ones are taken
    assert list(ld.columns) == ["x"]


def test_column_missing_in_a_later_file(tmp_path):
    a = write_hdf5(tmp_path / "a.h5", make_columns(100))
    cols = make_columns(100)
    del cols["eta"]
    b = write_hdf5(tmp_path / "b.h5", cols)
    with pytest.raises(DataError, match=r"b.h5: no column 'eta'"):
        BatchLoader([str(a), str(b)], columns=["pt", "eta"])


def test_hdf5_datasets_of_different_lengths(tmp_path):
    import h5py

    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros(10, np.float32)
        f["b"] = np.zeros(12, np.float32)
    with pytest.raises(DataError, match="different lengths"):
        BatchLoader(str(path), columns=["a", "b"])


@pytest.mark.parametrize("text,why", [
    ("__import__('os').system('echo hi')", "unknown function"),
    ("pt.real > 1", "not allowed"),
    ("pt[0] > 1", "not allowed"),
    ("(lambda: 1)()", "unknown function"),
    ("pt > 'a'", "only numbers"),
    ("pt >", "invalid filter"),
    ("pt in (1, 2)", "comparison not allowed"),
    ("", "non-empty"),
])
def test_filter_language_rejects_code(text, why):
    with pytest.raises(FilterError, match=why):
        Expression(text)


def test_filter_errors_in_the_loader(files):
    with pytest.raises(FilterError, match="invalid filter"):
        BatchLoader(files["root"], tree="Events", columns=["pt"], filter="pt >> 2 if 1 else 0")
    with pytest.raises(DataError, match="no column 'ptt'"):
        BatchLoader(files["root"], tree="Events", columns=["pt"], filter="ptt > 2")
    with pytest.raises(FilterError, match="'arr', which is not a scalar column"):
        BatchLoader(files["hdf5"], columns=["pt"], filter="arr > 2")


def test_filter_semantics():
    a = {"x": np.array([1.0, 5.0, np.nan, -3.0]), "n": np.array([0, 1, 2, 3])}
    e = Expression("0 < x <= 5 or n == 3")
    np.testing.assert_array_equal(e.evaluate(a, 4), [True, True, False, True])
    e = Expression("isnan(x) | (abs(x) > 2) & ~(n == 1)")
    np.testing.assert_array_equal(e.evaluate(a, 4), [False, False, True, True])
    assert Expression("hypot(x, n) > 0 and max(x, 2) >= 2").columns == ["x", "n"]
    np.testing.assert_array_equal(Expression("1 > 0").evaluate(a, 4), [True] * 4)


def test_empty_selection(files):
    with pytest.raises(DataError, match="selection is empty"):
        BatchLoader(files["root"], tree="Events", columns=["pt"], entries=(10, 10))
    ld = BatchLoader(files["root"], tree="Events", columns=["pt"], filter="pt < -1")
    with pytest.raises(DataError, match="no entry of the train split passes the filter 'pt < -1'"):
        list(ld.train.numpy())
    with pytest.raises(DataError, match="selection is empty"):
        BatchLoader(files["root"], tree="Events", columns=["pt"], filter="pt < -1", rank=0, world_size=2, seed=1)


def test_bad_arguments(files):
    for kw, what in [({"batch_size": 0}, "batch_size"), ({"validation_split": 1.0}, "validation_split"),
                     ({"entries": (5, 2)}, "entries"), ({"rank": 2, "world_size": 2, "seed": 1}, "rank"),
                     ({"rank": 1}, "both rank and world_size"), ({"max_vec_sizes": {"eta": 3}}, "not a selected"),
                     ({"chunk_size": 0}, "chunk_size")]:
        with pytest.raises(DataError, match=what):
            BatchLoader(files["root"], tree="Events", columns=["pt"], **kw)
    with pytest.raises(DataError, match="fixed size"):
        BatchLoader(files["root"], tree="Events", columns=["arr"], max_vec_sizes={"arr": 2})


def test_errors_are_ml4ep_errors():
    assert issubclass(DataError, Ml4epError) and issubclass(FilterError, Ml4epError)


def test_resume_state_from_another_loader_is_refused(files):
    a = BatchLoader(files["root"], tree="Events", columns=["pt"], seed=1)
    b = BatchLoader(files["root"], tree="Events", columns=["pt"], seed=2)
    with pytest.raises(DataError, match="seed=1"):
        b.train.load_state_dict(a.train.state_dict())
