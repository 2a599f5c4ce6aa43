"""Untrusted input: filters whose numbers leave int64 or whose size is absurd, truncated files, columns of different
lengths. Each gives the exactly-right answer (checked against NumPy / Python's exact integers) or a clear
ml4ep error naming the expression, file or columns: never a wrap-around, a raw traceback or a hang."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from datafiles import make_columns, write_hdf5, write_parquet, write_root

from ml4ep.data import BatchLoader, DataError, FilterError
from ml4ep.data.expr import MAX_DEPTH, MAX_INT_BITS, MAX_LENGTH, Expression


def _selected(path, flt, **kw):
    ld = BatchLoader(path, columns=["id"], filter=flt, batch_size=100_000, shuffle=False, validation_split=0, **kw)
    return np.concatenate([b for b in ld.train.numpy()]).reshape(-1)


@pytest.mark.parametrize("op", [">", "<", ">=", "<=", "==", "!="])
@pytest.mark.parametrize("const", ["10**400", "-10**400", "2**63", "-2**63 - 1", "2**64 + 1"])
def test_big_integer_constants_compare_as_numpy_does_with_floats(cols, op, const):
    pt = np.append(cols["pt"], [np.inf, -np.inf, np.nan, -1e300]).astype(np.float64)
    v = eval(const)  # noqa: S307 - the test's own constants, as Python ints
    as_float = np.float64(float(v) if abs(v) < 2**1023 else math.inf if v > 0 else -math.inf)
    ref = {">": np.greater, "<": np.less, ">=": np.greater_equal, "<=": np.less_equal, "==": np.equal,
           "!=": np.not_equal}[op](pt, as_float)
    got = Expression(f"pt {op} {const}").evaluate({"pt": pt}, len(pt))
    assert np.array_equal(got, ref)


def test_huge_constant_in_the_loader(files, cols):
    assert np.array_equal(_selected(files["hdf5"], "pt < 10**400"), cols["id"][cols["pt"] < np.inf])
    with pytest.raises(DataError, match=r"no entry of the train split passes the filter 'pt > 10\*\*400'"):
        _selected(files["hdf5"], "pt > 10**400")
    keep = _selected(files["hdf5"], "id < 2**60 + 100 + 0 * 10**400")  # mixed int/huge int: no wrap-around
    assert np.array_equal(keep, cols["id"][:100])


I64 = np.array([0, 1, -1, 2**60 + 5, 2**62, -(2**63), 2**63 - 1, -(2**62) - 3], dtype=np.int64)
U64 = np.array([0, 1, 5, 2**53 + 1, 2**63 + 1, 2**64 - 1], dtype=np.uint64)
I16 = np.array([0, 1, -5, 300, -300, 32767], dtype=np.int16)
B = np.array([True, False, True, False])


@pytest.mark.parametrize("text,col", [
    ("n * 8 > 2**62", I64), ("-n > 0", I64), ("n + 2**62 > 2**62 + 2**40", I64), ("abs(n) > 2**61", I64),
    ("n > 2**63 - 2", I64), ("n ** 2 > 2**62", I64), ("n // 3 * 3 + n % 3 == n", I64),
    ("n % 2 == 1", U64), ("n - 6 < 0", U64), ("-n < 0", U64), ("n * 2 > 2**63", U64),
    ("n * 1000 > 100000", I16), ("n * n > 10**9", I16),
    ("n + n == 2", B), ("n - 1 < 0", B), ("-n < 0", B),
])
def test_integer_columns_never_wrap_around(text, col):
    """The oracle: the same expression in Python's exact integers, row by row."""
    ref = np.array([eval(text, {}, {"n": int(v)}) for v in col])  # noqa: S307 - the test's own expressions
    assert np.array_equal(Expression(text).evaluate({"n": col}, len(col)), ref), text


def test_division_by_zero_and_negative_powers_are_float(cols):
    n = np.array([3, 0, -2], dtype=np.int64)
    f = n.astype(np.float64)
    with np.errstate(all="ignore"):
        for text, ref in [("n // 0 > 0", f // 0.0 > 0), ("n % 0 == n % 0", f % 0.0 == f % 0.0),
                          ("n ** -1 > 0.4", f ** -1 > 0.4), ("1 // 0 > 10**300", np.ones(3, bool)),
                          ("2 ** -1 == 0.5", np.ones(3, bool))]:
            assert np.array_equal(Expression(text).evaluate({"n": n}, 3), ref), text


@pytest.mark.parametrize("text,piece", [
    ("pt > 10**10**10", "10**10**10"), ("pt > 2**4097", "2**4097"), ("pt > 2**4000 * 2**4000", "2**4000 * 2**4000"),
    ("pt > 9**(10**9)", "9**(10**9)"), ("pt > " + "9" * 1300, "9" * 20),
])
def test_absurd_integers_are_refused_quickly(text, piece):
    t0 = time.perf_counter()
    with pytest.raises(FilterError, match=rf"too large|more than MAX_INT_BITS = {MAX_INT_BITS}") as err:
        Expression(text).evaluate({"pt": np.ones(3)}, 3)
    assert piece in str(err.value) and time.perf_counter() - t0 < 1.0


def test_huge_but_cheap_powers_are_computed():
    pt = np.array([1.0, 2.0])
    assert Expression("pt < 2**1000 and (-1)**(2**4000) == 1 and 1**(10**100) == 1").evaluate({"pt": pt}, 2).all()


def test_100k_term_filter_is_a_clear_error():
    text = " or ".join(f"pt > {i}" for i in range(100_000))
    t0 = time.perf_counter()
    with pytest.raises(FilterError, match=rf"too long: {len(text)} characters \(the limit is MAX_LENGTH = "
                                          rf"{MAX_LENGTH}\)"):
        Expression(text)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("text", ["-" * 50_000 + "pt", "+".join(["pt"] * 20_000), "+".join(["pt"] * 300),
                                  "(" * 300 + "pt" + ")" * 300, "not " * 20_000 + "pt"])
def test_deep_filters_are_clear_errors(text):
    with pytest.raises(FilterError, match=rf"(too deeply nested|too complex|nested parentheses).*"
                                          rf"(MAX_DEPTH = {MAX_DEPTH}|MAX_NODES)|too many nested parentheses"):
        Expression(text)


def test_long_filters_within_the_limits_work(files, cols):
    kept = list(range(0, 50, 3))
    text = " or ".join(f"nhit == {i}" for i in kept)
    assert np.array_equal(_selected(files["hdf5"], text), cols["id"][np.isin(cols["nhit"], kept)])
    terms = " + ".join(["pt"] * (MAX_DEPTH // 2 - 5))  # a sum just inside the nesting limit
    pt = cols["pt"].astype(np.float64)
    ref = pt * (MAX_DEPTH // 2 - 5) > 1000
    assert np.array_equal(Expression(f"{terms} > 1000").evaluate({"pt": pt}, len(pt)), ref)


def test_wrong_argument_counts_are_refused_and_change_nothing():
    pt, eta = np.array([4.0, 9.0]), np.array([1.0, 2.0])
    with pytest.raises(FilterError, match=r"sqrt takes 1 argument\(s\), got 2: 'sqrt\(pt, eta\)'"):
        Expression("sqrt(pt, eta) > 0").evaluate({"pt": pt, "eta": eta}, 2)
    assert np.array_equal(eta, [1.0, 2.0])
    with pytest.raises(FilterError, match="where takes 3"):
        Expression("where(pt > 1) > 0")


def test_non_numeric_values_are_filter_errors():
    with pytest.raises(FilterError, match=r"filter 'name > 1' cannot be evaluated"):
        Expression("name > 1").evaluate({"name": np.array(["a", "b"])}, 2)


def _truncate(path, frac):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * frac)])
    return str(path)


@pytest.mark.parametrize("frac", [0.5, 0.02])
def test_truncated_ttree_names_the_file(tmp_path, frac):
    import uproot

    path = _truncate(write_root(tmp_path / "t.root", make_columns(3000), uproot.ZLIB(1)), frac)
    with pytest.raises(DataError, match=rf"{path}: .*truncated or corrupt") as err:
        ld = BatchLoader(path, tree="Events", columns=["pt", "id"], batch_size=500)
        for _ in ld.train.numpy():
            pass
    assert "no tree or RNTuple named" not in str(err.value)


def test_truncated_rntuple_names_the_file(tmp_path):
    import uproot

    path = _truncate(write_root(tmp_path / "r.root", make_columns(3000), uproot.ZLIB(1), rntuple=True), 0.5)
    with pytest.raises(DataError, match=rf"{path}: not a readable ROOT file, truncated or corrupt"):
        BatchLoader(path, columns=["pt"])


@pytest.mark.parametrize("fmt,write", [("hdf5", write_hdf5), ("parquet", write_parquet)])
@pytest.mark.parametrize("frac", [0.5, 0.95])
def test_truncated_hdf5_and_parquet_name_the_file(tmp_path, fmt, write, frac):
    path = _truncate(write(tmp_path / f"x.{'h5' if fmt == 'hdf5' else fmt}", make_columns(3000)), frac)
    with pytest.raises(DataError, match=rf"{path}: not a readable"):
        ld = BatchLoader(path, columns=["pt"])
        for _ in ld.train.numpy():
            pass


def _ragged_h5(tmp_path):
    import h5py

    path = tmp_path / "ragged.h5"
    with h5py.File(path, "w") as f:
        f["a"], f["b"] = np.zeros(10, np.float32), np.zeros(10, np.float32)
        f["y"], f["w"], f["cut"] = np.zeros(12, np.float32), np.ones(9, np.float32), np.ones(11, np.float32)
    return str(path)


@pytest.mark.parametrize("kw,lens", [
    ({"target": "y"}, "'a': 10, 'b': 10, 'y': 12"), ({"weights": "w"}, "'a': 10, 'b': 10, 'w': 9"),
    ({"filter": "cut > 0"}, "'a': 10, 'b': 10, 'cut': 11"),
])
def test_hdf5_columns_of_different_lengths_name_them(tmp_path, kw, lens):
    path = _ragged_h5(tmp_path)
    with pytest.raises(DataError, match=rf"{path}: the selected datasets have different lengths: \{{{lens}\}}"):
        BatchLoader(path, columns=["a", "b"], **kw)
    assert len(BatchLoader(path, columns=["a", "b"]).train.parts)  # the equal ones alone are fine


def test_ttree_branches_of_different_lengths_name_them(tmp_path, monkeypatch):
    """A TTree whose branch 'eta' claims fewer entries than the tree (as a corrupt or hand-made file may)."""
    import uproot

    path = str(write_root(tmp_path / "t.root", make_columns(300), None))
    prop = uproot.behaviors.TBranch.TBranch.num_entries
    monkeypatch.setattr(uproot.behaviors.TBranch.TBranch, "num_entries",
                        property(lambda b: 250 if b.name == "eta" else prop.fget(b)))
    with pytest.raises(DataError, match=rf"{path}: the branches of 'Events' have different numbers of entries: "
                                        r"\{'pt': 300, 'eta': 250\} \(the tree has 300\)"):
        BatchLoader(path, tree="Events", columns=["pt", "eta"])
    assert BatchLoader(path, tree="Events", columns=["pt", "id"]).train.num_entries > 0
