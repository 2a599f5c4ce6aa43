"""ml4ep.fastsim.io: CaloChallenge HDF5 files, checked against h5py read/written directly and hand-made cases."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from ml4ep.errors import Ml4epError  # noqa: E402
from ml4ep.fastsim import io  # noqa: E402
from ml4ep.fastsim.geometry import GeometryError, get  # noqa: E402

GEO = "ds1-photons"
V = 368  # 8 + 160 + 190 + 5 + 5 voxels, restated from the challenge's binning


def _showers(n: int, v: int = V, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sparse positive showers (float64) and log-uniform incident energies (N,)."""
    rng = np.random.default_rng(seed)
    s = rng.exponential(50.0, (n, v)) * (rng.random((n, v)) < 0.3)
    e = np.exp(rng.uniform(np.log(256.0), np.log(4.2e6), n))
    return e, s


def _raw(path, e, s, **kw) -> None:
    """A file written with plain h5py, the way the challenge files were."""
    with h5py.File(path, "w") as f:
        if e is not None:
            f.create_dataset("incident_energies", data=e, **kw)
        if s is not None:
            f.create_dataset("showers", data=s, **kw)


def test_geometry_voxel_count_matches_the_challenge():
    assert get(GEO).n_voxels == V


# -- round trips ---------------------------------------------------------------------------------------


def test_write_read_round_trip_exact_float32(tmp_path):
    e, s = _showers(700)
    p = io.write(tmp_path / "a.h5", e, s, geometry=GEO)
    assert p == tmp_path / "a.h5" and p.exists()
    assert not (tmp_path / "a.h5.part").exists()
    s32 = s.astype(np.float32)
    with h5py.File(p, "r") as f:  # the file itself, through h5py
        assert sorted(f.keys()) == ["incident_energies", "showers"]
        de, ds = f["incident_energies"], f["showers"]
        assert de.shape == (700, 1) and ds.shape == (700, V)
        assert ds.dtype == np.float32 and de.dtype == np.float64
        assert ds.compression == "gzip" and de.compression == "gzip"
        assert ds.chunks is not None and ds.chunks[1] == V and 1 <= ds.chunks[0] <= 512
        assert ds.chunks[0] >= 100  # row blocks of a few hundred rows for 368 voxels
        np.testing.assert_array_equal(ds[()], s32)
        np.testing.assert_array_equal(de[()][:, 0], e)
    e2, s2 = io.read(p, geometry=GEO)
    assert e2.shape == (700, 1) and e2.dtype == np.float64
    assert s2.shape == (700, V) and s2.dtype == np.float32
    np.testing.assert_array_equal(s2, s32)
    np.testing.assert_array_equal(e2[:, 0], e)


def test_write_accepts_column_energies_float64_storage_and_other_compressions(tmp_path):
    e, s = _showers(50, seed=1)
    p = io.write(tmp_path / "d.h5", e[:, None], s, dtype=np.float64, compression=None)
    with h5py.File(p, "r") as f:
        assert f["showers"].dtype == np.float64 and f["showers"].compression is None
        np.testing.assert_array_equal(f["showers"][()], s)  # float64 storage: bit-exact
    p = io.write(tmp_path / "l.h5", e, s, compression="lzf")
    with h5py.File(p, "r") as f:
        assert f["showers"].compression == "lzf"
    np.testing.assert_array_equal(io.read(p)[1], s.astype(np.float32))


def test_write_overwrites_an_existing_file(tmp_path):
    e, s = _showers(20, seed=2)
    p = tmp_path / "o.h5"
    io.write(p, e, s)
    io.write(p, e[:5], s[:5])
    assert io.info(p)["n_showers"] == 5


def test_plain_h5py_file_reads_back_equal(tmp_path):
    e, s = _showers(300, seed=3)
    e32, s32 = e.astype(np.float32)[:, None], s.astype(np.float32)
    _raw(tmp_path / "c.h5", e32, s32, compression="gzip")
    e2, s2 = io.read(tmp_path / "c.h5", geometry=get(GEO))
    assert e2.dtype == np.float64
    np.testing.assert_array_equal(e2, e32.astype(np.float64))
    np.testing.assert_array_equal(s2, s32)
    chunks = list(io.iter_chunks(tmp_path / "c.h5", chunk_size=128))
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), s32)


def test_info(tmp_path):
    e, s = _showers(33, seed=4)
    p = io.write(tmp_path / "i.h5", e, s)
    d = io.info(p)
    with h5py.File(p, "r") as f:
        chunks = f["showers"].chunks
    assert d == {"path": str(p), "n_showers": 33, "n_voxels": V, "dtype": "float32", "compression": "gzip",
                 "chunks": chunks, "keys": ["incident_energies", "showers"]}


def test_empty_file_round_trip(tmp_path):
    p = io.write(tmp_path / "z.h5", np.zeros(0), np.zeros((0, V)), geometry=GEO)
    e, s = io.read(p)
    assert e.shape == (0, 1) and s.shape == (0, V)
    assert list(io.iter_chunks(p)) == []


# -- streaming -----------------------------------------------------------------------------------------


def test_writer_odd_chunks_equal_one_write(tmp_path):
    e, s = _showers(1000, seed=5)
    io.write(tmp_path / "one.h5", e, s)
    sizes = [1, 7, 0, 250, 13, 600, 129]
    assert sum(sizes) == 1000
    p = tmp_path / "many.h5"
    with io.ShowerWriter(p, GEO) as w:
        i = 0
        for n in sizes:
            w.append(e[i:i + n] if n % 2 else e[i:i + n, None], s[i:i + n])
            i += n
            assert w.n_written == i
        assert not p.exists() and (tmp_path / "many.h5.part").exists()  # renamed only when complete
    assert w.closed and p.exists() and not (tmp_path / "many.h5.part").exists()
    with h5py.File(tmp_path / "one.h5", "r") as a, h5py.File(p, "r") as b:
        np.testing.assert_array_equal(a["showers"][()], b["showers"][()])
        np.testing.assert_array_equal(a["incident_energies"][()], b["incident_energies"][()])
        assert b["showers"].compression == "gzip" and b["showers"].maxshape == (None, V)


def test_writer_with_voxel_count_and_explicit_close(tmp_path):
    e, s = _showers(40, v=10, seed=6)
    w = io.ShowerWriter(tmp_path / "n.h5", 10, compression=None)
    w.append(e[:15], s[:15])
    w.append(e[15:], s[15:])
    w.close()
    w.close()  # idempotent
    e2, s2 = io.read(tmp_path / "n.h5")
    np.testing.assert_array_equal(s2, s.astype(np.float32))
    np.testing.assert_array_equal(e2[:, 0], e)
    with pytest.raises(io.ShowerFileError, match="closed"):
        w.append(e, s)


def test_writer_exception_leaves_no_file_and_keeps_the_old_one(tmp_path):
    e, s = _showers(20, seed=7)
    p = tmp_path / "x.h5"
    io.write(p, e[:3], s[:3])
    with pytest.raises(RuntimeError, match="boom"):
        with io.ShowerWriter(p, GEO) as w:
            w.append(e, s)
            raise RuntimeError("boom")
    assert w.closed and not (tmp_path / "x.h5.part").exists()
    assert io.info(p)["n_showers"] == 3  # the previous complete file is untouched


def test_writer_rejects_bad_chunk_with_file_row_and_keeps_going(tmp_path):
    e, s = _showers(30, seed=8)
    p = tmp_path / "w.h5"
    with io.ShowerWriter(p, GEO) as w:
        w.append(e[:10], s[:10])
        bad = s[10:20].copy()
        bad[3, 5] = -1.0
        bad[7, 0] = -2.0
        with pytest.raises(io.ShowerFileError, match=r"2 negative voxel energies.*first in row 13") as ei:
            w.append(e[10:20], bad)
        assert str(p) in str(ei.value)
        assert w.n_written == 10
        with pytest.raises(io.ShowerFileError, match="368 voxels per shower but geometry 'ds1-pions' has 533"):
            io.ShowerWriter(tmp_path / "p.h5", "ds1-pions").append(e[:2], s[:2])
        w.append(e[20:], s[20:])
    e2, s2 = io.read(p)
    np.testing.assert_array_equal(s2, np.concatenate([s[:10], s[20:]]).astype(np.float32))


@pytest.mark.parametrize("n, chunk, start, stop, sizes", [
    (1000, 300, 0, None, [300, 300, 300, 100]),
    (1000, 1000, 0, None, [1000]),
    (1000, 5000, 0, None, [1000]),
    (1000, 200, 150, 777, [200, 200, 200, 27]),
    (1000, 64, 999, 1000, [1]),
    (1000, 64, 500, 500, []),
])
def test_iter_chunks_sizes_and_concatenation(tmp_path, n, chunk, start, stop, sizes):
    e, s = _showers(n, seed=9)
    p = io.write(tmp_path / "it.h5", e, s)
    got = list(io.iter_chunks(p, geometry=GEO, chunk_size=chunk, start=start, stop=stop))
    assert [len(c[1]) for c in got] == sizes
    assert all(c[0].shape == (len(c[1]), 1) and c[1].shape[1] == V for c in got)
    stop_ = n if stop is None else stop
    if got:
        np.testing.assert_array_equal(np.concatenate([c[1] for c in got]), s[start:stop_].astype(np.float32))
        np.testing.assert_array_equal(np.concatenate([c[0] for c in got])[:, 0], e[start:stop_])
    e2, s2 = io.read(p, start=start, stop=stop)
    np.testing.assert_array_equal(s2, s[start:stop_].astype(np.float32))
    np.testing.assert_array_equal(e2[:, 0], e[start:stop_])


@pytest.mark.parametrize("start, stop", [(-1, None), (0, 101), (60, 50), (1.5, None), (0, "3")])
def test_bad_row_ranges(tmp_path, start, stop):
    e, s = _showers(100, seed=10)
    p = io.write(tmp_path / "r.h5", e, s)
    with pytest.raises(io.ShowerFileError, match=str(p)):
        io.read(p, start=start, stop=stop)
    with pytest.raises(io.ShowerFileError, match=str(p)):
        io.iter_chunks(p, start=start, stop=stop)


@pytest.mark.parametrize("chunk", [0, -5, 2.0, True])
def test_bad_chunk_size(tmp_path, chunk):
    e, s = _showers(10, seed=11)
    p = io.write(tmp_path / "k.h5", e, s)
    with pytest.raises(io.ShowerFileError, match="chunk_size"):
        io.iter_chunks(p, chunk_size=chunk)


def test_large_file_is_read_with_bounded_memory(tmp_path):
    n = 34_000  # 34,000 x 368 float32 = 50 MB of showers
    rng = np.random.default_rng(12)
    s = rng.random((n, V), dtype=np.float32)
    e = rng.uniform(1e3, 1e6, n)
    p = io.write(tmp_path / "big.h5", e, s, compression=None)
    file_bytes = s.nbytes
    assert file_bytes > 49e6
    want_rows = s.sum(axis=1, dtype=np.float64)
    del s
    chunk = 1500
    sums, n_seen = [], 0
    tracemalloc.start()
    try:
        for ce, cs in io.iter_chunks(p, chunk_size=chunk):
            assert len(cs) <= chunk and len(ce) == len(cs)
            sums.append(cs.sum(axis=1, dtype=np.float64))
            n_seen += len(cs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n_seen == n
    np.testing.assert_array_equal(np.concatenate(sums), want_rows)
    assert peak < file_bytes / 8, f"peak {peak / 1e6:.1f} MB while iterating a {file_bytes / 1e6:.0f} MB file"


# -- bad files -----------------------------------------------------------------------------------------


def test_file_not_found(tmp_path):
    p = tmp_path / "nope.h5"
    for call in (lambda: io.read(p), lambda: io.info(p), lambda: io.iter_chunks(p)):
        with pytest.raises(io.ShowerFileError, match=f"{p}: file not found"):
            call()


def test_not_an_hdf5_file(tmp_path):
    p = tmp_path / "text.h5"
    p.write_text("incident_energies,showers\n1,2\n")
    with pytest.raises(io.ShowerFileError, match=f"{p}: not an HDF5 file"):
        io.read(p)
    with pytest.raises(io.ShowerFileError, match="is a directory"):
        io.read(tmp_path)


@pytest.mark.parametrize("missing", ["incident_energies", "showers"])
def test_missing_key(tmp_path, missing):
    e, s = _showers(5, seed=13)
    p = tmp_path / "m.h5"
    _raw(p, None if missing == "incident_energies" else e[:, None], None if missing == "showers" else s)
    with pytest.raises(io.ShowerFileError, match=f"{p}: missing dataset '{missing}'"):
        io.read(p)
    with pytest.raises(io.ShowerFileError, match=f"missing dataset '{missing}'"):
        io.info(p)


def test_key_that_is_a_group(tmp_path):
    p = tmp_path / "g.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("incident_energies", data=np.ones((2, 1)))
        f.create_group("showers")
    with pytest.raises(io.ShowerFileError, match="'showers' is a Group, not a dataset"):
        io.read(p)


def _bad_rows():
    """(problem id, incident energies (N,1), showers (N,V), expected message fragments) for value problems."""
    e, s = _showers(12, seed=14)
    e = e[:, None]
    cases = []
    x = s.copy()
    x[4, 0] = np.nan
    x[9, 3] = np.inf
    x[9, 5] = -np.inf
    cases.append(("nan-showers", e, x, [r"'showers' has 3 NaN or inf voxel value\(s\), first in row 4"]))
    y = e.copy()
    y[7, 0] = np.inf
    cases.append(("inf-energies", y, s, [r"'incident_energies' has 1 NaN or inf value\(s\), first in row 7"]))
    y = e.copy()
    y[2, 0] = np.nan
    cases.append(("nan-energies", y, s, [r"'incident_energies' has 1 NaN or inf", "first in row 2"]))
    x = s.copy()
    x[6, 10] = -0.5
    x[6, 11] = -3.0
    x[11, 0] = -1e-3
    cases.append(("negative-voxels", e, x, [r"'showers' has 3 negative voxel energies \(minimum -3 MeV\), "
                                           r"first in row 6"]))
    y = e.copy()
    y[[3, 5], 0] = -100.0
    cases.append(("negative-energies", y, s, [r"'incident_energies' has 2 negative value\(s\)", "first in row 3"]))
    y = e.copy()
    y[10, 0] = 0.0
    cases.append(("zero-energy", y, s, [r"'incident_energies' has 1 value\(s\) equal to 0 "
                                        r"\(incident energies must be positive\), first in row 10"]))
    return cases


BAD_ROWS = _bad_rows()


@pytest.mark.parametrize("case", BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_bad_values_in_memory(case):
    _, e, s, frags = case
    for frag in frags:
        with pytest.raises(io.ShowerFileError, match=frag) as ei:
            io.validate(e, s, geometry=GEO, source="generated.npz")
        assert str(ei.value).startswith("generated.npz: ")


@pytest.mark.parametrize("case", BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_bad_values_refused_by_write(tmp_path, case):
    _, e, s, frags = case
    p = tmp_path / "bad.h5"
    with pytest.raises(io.ShowerFileError, match=frags[0]):
        io.write(p, e, s)
    assert not p.exists() and not (tmp_path / "bad.h5.part").exists()


@pytest.mark.parametrize("case", BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_bad_values_in_file(tmp_path, case):
    _, e, s, frags = case
    row = int(re.search(r"first in row (\d+)", " ".join(frags)).group(1))
    p = tmp_path / "bad.h5"
    _raw(p, e, s, compression="gzip")
    for frag in frags:
        with pytest.raises(io.ShowerFileError, match=frag) as ei:
            io.read(p, geometry=GEO)
        assert str(ei.value).startswith(f"{p}: ")
    # chunk by chunk: the first bad chunk is reported, with its rows counted from the start of the file
    a = 2 * (row // 2)
    with pytest.raises(io.ShowerFileError, match=rf"in rows \[{a}, {a + 2}\), first in row {row}\b"):
        list(io.iter_chunks(p, chunk_size=2))
    e2, s2 = io.read(p, check=False)  # values unchecked: returned as stored
    np.testing.assert_array_equal(s2, s)
    np.testing.assert_array_equal(e2, e)
    assert sum(len(c[1]) for c in io.iter_chunks(p, chunk_size=5, check=False)) == 12


def test_bad_rows_outside_the_range_read_are_not_reported(tmp_path):
    _, e, s, _ = BAD_ROWS[3]  # negative voxels in rows 6 and 11
    p = tmp_path / "part.h5"
    _raw(p, e, s)
    np.testing.assert_array_equal(io.read(p, start=0, stop=6)[1], s[:6])
    with pytest.raises(io.ShowerFileError, match="first in row 11"):
        io.read(p, start=7)


def _layout_cases():
    e, s = _showers(6, seed=15)
    e = e[:, None]
    return [
        ("voxels", e, s[:, :300], [r"'showers' has 300 voxels per shower but geometry 'ds1-photons' has 368"]),
        ("lengths", e[:5], s, [r"'incident_energies' has 5 rows but 'showers' has 6"]),
        ("showers-1d", e[:1, 0], s[0], [r"'showers' must be 2-D \(N, n_voxels\), got shape \(368,\)"]),
        ("showers-3d", e, s.reshape(6, 8, 46), [r"'showers' must be 2-D"]),
        ("energies-2col", np.hstack([e, e]), s,
         [r"'incident_energies' must have shape \(N,\) or \(N, 1\), got \(6, 2\)"]),
    ]


LAYOUT = _layout_cases()


@pytest.mark.parametrize("case", LAYOUT, ids=[c[0] for c in LAYOUT])
def test_bad_layout_in_memory_and_in_file(tmp_path, case):
    _, e, s, frags = case
    with pytest.raises(io.ShowerFileError, match=frags[0]):
        io.validate(e, s, geometry=GEO)
    with pytest.raises(io.ShowerFileError, match=frags[0]):
        io.write(tmp_path / "never.h5", e, s, geometry=GEO)
    assert not (tmp_path / "never.h5").exists()
    p = tmp_path / "layout.h5"
    _raw(p, e, s)
    with pytest.raises(io.ShowerFileError, match=frags[0]) as ei:
        io.read(p, geometry=GEO, check=False)  # layout is checked even without value checks
    assert str(ei.value).startswith(f"{p}: ")
    with pytest.raises(io.ShowerFileError, match=frags[0]):
        io.iter_chunks(p, geometry=GEO)  # at the call, before any iteration


def test_no_geometry_means_no_voxel_count_check(tmp_path):
    e, s = _showers(4, v=17, seed=16)
    io.validate(e, s)
    e2, s2 = io.read(io.write(tmp_path / "v.h5", e, s))
    assert s2.shape == (4, 17)


def test_other_bad_arguments(tmp_path):
    e, s = _showers(4, seed=17)
    with pytest.raises(io.ShowerFileError, match="compression"):
        io.write(tmp_path / "c.h5", e, s, compression="zstd")
    with pytest.raises(io.ShowerFileError, match="floating-point"):
        io.write(tmp_path / "c.h5", e, s, dtype=np.int32)
    with pytest.raises(io.ShowerFileError, match="numbers"):
        io.validate(e, np.full(s.shape, "x"))
    with pytest.raises(io.ShowerFileError, match="numeric array"):
        io.validate([1.0, 2.0], [[1.0, 2.0], [3.0]])
    with pytest.raises(io.ShowerFileError, match="too large for float32"):
        io.write(tmp_path / "c.h5", e, np.full(s.shape, 1e39))
    with pytest.raises(io.ShowerFileError, match="cannot create"):
        io.write(tmp_path / "no" / "such" / "dir.h5", e, s)
    with pytest.raises(io.ShowerFileError, match=">= 1"):
        io.ShowerWriter(tmp_path / "w.h5", 0)
    with pytest.raises(GeometryError):
        io.read(io.write(tmp_path / "g.h5", e, s), geometry="ds9")
    assert not list(tmp_path.glob("*.part"))


def test_error_types():
    assert issubclass(io.ShowerFileError, Ml4epError) and issubclass(io.ShowerFileError, ValueError)
