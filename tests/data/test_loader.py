"""BatchLoader end to end: exactly once per epoch, values as written, filters, splits, shuffling, state."""

from __future__ import annotations

import numpy as np
import pytest
from datafiles import N, make_columns, write_hdf5, write_parquet, write_root

from ml4ep.data import BatchLoader, Dataset

BASE = np.int64(2**60)
FORMATS = ["root", "root-lz4", "rntuple", "hdf5", "parquet"]


def _kw(fmt):
    return {"tree": "Events"} if fmt.startswith("root") or fmt == "rntuple" else {}


def _epoch(split, **kw):
    xs, ys = [], []
    for x, y in split.numpy(**kw):
        xs.append(x)
        ys.append(y)
    return (np.concatenate(xs), np.concatenate(ys)) if xs else (np.zeros((0,)), np.zeros(0, np.int64))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_entry_once_with_its_values(files, cols, fmt):
    ld = BatchLoader(files[fmt], columns=["pt", "eta", "e", "nhit", "arr"], target="id", batch_size=300,
                     seed=7, validation_split=0.25, chunk_size=400, buffer_size=1500, **_kw(fmt))
    assert ld.feature_names == ["pt", "eta", "e", "nhit", "arr[0]", "arr[1]", "arr[2]"]
    xt, yt = _epoch(ld.train)
    xv, yv = _epoch(ld.validation)
    assert yt.dtype == np.int64 and xt.dtype == np.float64  # float32, float64, int32 -> float64, exact
    ids = np.concatenate([yt, yv]) - BASE
    np.testing.assert_array_equal(np.sort(ids), np.arange(N))
    assert len(yv) == round(0.25 * N)
    x = np.concatenate([xt, xv])
    for j, n in enumerate(["pt", "eta", "e", "nhit"]):
        np.testing.assert_array_equal(x[:, j], cols[n][ids].astype(np.float64))
    np.testing.assert_array_equal(x[:, 4:7], cols["arr"][ids])
    # the shuffle is real: the order differs from the files'
    assert not np.array_equal(yt, np.sort(yt))


def test_validation_fixed_and_disjoint_across_epochs(files):
    ld = BatchLoader(files["root"], tree="Events", columns=["pt"], target="id", batch_size=128, seed=1,
                     validation_split=0.3, chunk_size=500, buffer_size=1000)
    vals, trains = [], []
    for _ in range(3):
        trains.append(_epoch(ld.train)[1])
        vals.append(_epoch(ld.validation)[1])
    for t, v in zip(trains, vals):
        assert not set(t) & set(v)
        assert set(v) == set(vals[0]) and set(t) == set(trains[0])
    # every chunk contributes to validation: it spans the whole file
    v = np.sort(vals[0]) - BASE
    assert v[0] < N * 0.2 and v[-1] > N * 0.8


def test_order_depends_on_seed_and_epoch_and_is_reproducible(files):
    def run(seed, epoch):
        ld = BatchLoader(files["hdf5"], columns=["pt"], target="id", batch_size=100, seed=seed,
                         chunk_size=250, buffer_size=1000)
        ld.train.set_epoch(epoch)
        return _epoch(ld.train)[1]

    a0, a0b, a1, b0 = run(1, 0), run(1, 0), run(1, 1), run(2, 0)
    np.testing.assert_array_equal(a0, a0b)
    assert not np.array_equal(a0, a1) and not np.array_equal(a0, b0)
    assert set(a0) == set(a1) == set(b0)


def test_successive_epochs_differ(files):
    ld = BatchLoader(files["parquet"], columns=["pt"], target="id", batch_size=100, seed=3, chunk_size=100)
    e0, e1 = _epoch(ld.train)[1], _epoch(ld.train)[1]
    assert ld.train.epoch == 2
    assert not np.array_equal(e0, e1) and set(e0) == set(e1)


def test_no_shuffle_keeps_file_order(files):
    ld = BatchLoader(files["root-none"], tree="Events", columns=["pt"], target="id", batch_size=333,
                     shuffle=False, chunk_size=700, buffer_size=2000)
    _, y = _epoch(ld.train)
    np.testing.assert_array_equal(y - BASE, np.arange(N))


@pytest.mark.parametrize("fmt", ["root", "parquet"])
def test_filter_equals_numpy_mask(files, cols, fmt):
    expr = "(pt > 20) & (abs(eta) < 2.4) | (nhit == 3)"
    ld = BatchLoader(files[fmt], columns=["pt", "eta"], target="id", filter=expr, batch_size=256, seed=5,
                     validation_split=0.1, chunk_size=600, **_kw(fmt))
    ids = np.concatenate([_epoch(ld.train)[1], _epoch(ld.validation)[1]]) - BASE
    mask = ((cols["pt"] > 20) & (np.abs(cols["eta"]) < 2.4)) | (cols["nhit"] == 3)
    np.testing.assert_array_equal(np.sort(ids), np.flatnonzero(mask))
    assert ld.train.num_entries + ld.validation.num_entries == mask.sum()


def test_filter_on_unselected_column_and_functions(files, cols):
    ld = BatchLoader(files["hdf5"], columns=["pt"], target="id", filter="sqrt(e) > 10 and not flag",
                     batch_size=500, seed=5)
    ids = _epoch(ld.train)[1] - BASE
    mask = (np.sqrt(cols["e"]) > 10) & ~cols["flag"]
    np.testing.assert_array_equal(np.sort(ids), np.flatnonzero(mask))


@pytest.mark.parametrize("drop", [False, True])
def test_batch_sizes_and_no_padded_rows(files, drop):
    ld = BatchLoader(files["root"], tree="Events", columns=["pt"], target="id", batch_size=700, seed=2,
                     drop_remainder=drop, chunk_size=450, buffer_size=1100)
    sizes = [len(y) for _, y in ld.train.numpy()]
    assert all(s == 700 for s in sizes[:-1])
    if drop:
        assert sizes[-1] == 700 and sum(sizes) == (N // 700) * 700 and len(sizes) == len(ld.train)
    else:
        assert sizes[-1] == N % 700 and sum(sizes) == N and len(sizes) == len(ld.train)
    ids = np.concatenate([y for _, y in ld.train.numpy()])
    assert len(np.unique(ids)) == len(ids)  # no repeated (padding) rows


def test_batches_handed_out_are_never_overwritten(files):
    ld = BatchLoader(files["root"], tree="Events", columns=["pt", "eta"], target="id", batch_size=64, seed=9,
                     chunk_size=300, buffer_size=700)
    held = [(x, y) for x, y in ld.train.numpy()]
    copies = [(x.copy(), y.copy()) for x, y in held]
    for _ in range(2):  # later epochs must not touch earlier batches
        for _x, _y in ld.train.numpy():
            pass
    for (x, y), (cx, cy) in zip(held, copies):
        np.testing.assert_array_equal(x, cx)
        np.testing.assert_array_equal(y, cy)
    assert len(np.unique(np.concatenate([y for _, y in held]))) == N


def test_exact_dtypes_and_casts(files, cols):
    ld = BatchLoader(files["parquet"], columns=["nhit", "flag"], target="id", weights="e", batch_size=N,
                     shuffle=False)
    x, y, w = next(ld.train.numpy())
    assert x.dtype == np.int32 and y.dtype == np.int64 and w.dtype == np.float64
    np.testing.assert_array_equal(y, cols["id"])
    np.testing.assert_array_equal(w, cols["e"])
    ld = BatchLoader(files["parquet"], columns=["nhit", "flag"], target="id", batch_size=N, shuffle=False,
                     dtype="float32", target_dtype="float64")
    x, y = next(ld.train.numpy())
    assert x.dtype == np.float32 and y.dtype == np.float64
    d = next(ld.train.numpy(as_dict=True))
    assert d["nhit"].dtype == np.int32 and d["flag"].dtype == np.bool_ and d["id"].dtype == np.int64
    np.testing.assert_array_equal(d["flag"], cols["flag"])


@pytest.mark.parametrize("fmt", ["root", "rntuple", "parquet"])
def test_vector_columns_padded_with_mask(files, cols, fmt):
    ld = BatchLoader(files[fmt], columns=["pt", "jet_pt"], target="id", batch_size=512, seed=4,
                     max_vec_sizes={"jet_pt": 4}, vec_padding=-1.0, vec_mask=True, chunk_size=900, **_kw(fmt))
    assert ld.feature_names[1:6] == ["jet_pt[0]", "jet_pt[1]", "jet_pt[2]", "jet_pt[3]", "jet_pt.mask[0]"]
    x, y = _epoch(ld.train)
    ids = y - BASE
    off = cols["jet_offsets"]
    for row, e in zip(x[:300], ids[:300]):
        v = cols["jet_pt"][off[e]:off[e + 1]][:4]
        np.testing.assert_array_equal(row[1:1 + len(v)], v)
        assert np.all(row[1 + len(v):5] == -1.0)
        np.testing.assert_array_equal(row[5:9], np.arange(4) < len(v))
    d = next(ld.train.numpy(as_dict=True))
    assert d["jet_pt"].shape == (512, 4) and d["jet_pt.mask"].dtype == np.bool_


def test_several_datasets_with_labels_mix_in_every_batch(tmp_path):
    sig = write_root(tmp_path / "sig.root", make_columns(2000, seed=1, first_id=0), None)
    [write_parquet(tmp_path / f"bkg{i}.parquet", make_columns(9000, seed=2 + i, first_id=10**6 * (i + 1)),
                          row_group=500) for i in range(2)]
    ld = BatchLoader([Dataset(sig, tree="Events", constants={"label": np.float32(1)}),
                      Dataset(str(tmp_path / "bkg*.parquet"), constants={"label": np.float32(0)})],
                     columns=["pt", "eta"], target="label", weights="id", batch_size=500, seed=11,
                     chunk_size=500, buffer_size=5000)
    total = 0
    fractions = []
    for _x, y, ids in ld.train.numpy():
        assert y.dtype == np.float32
        is_sig = (ids - BASE) < 10**6
        np.testing.assert_array_equal(y, is_sig.astype(np.float32))
        fractions.append(y.mean())
        total += len(y)
    assert total == 20000
    # signal is 10% of all entries, in a separate file: every batch holds about 10%
    assert np.all(np.abs(np.array(fractions[:-1]) - 0.1) < 0.05), fractions


def test_entry_ranges(files, cols):
    ld = BatchLoader(files["root"], tree="Events", columns=["pt"], target="id", entries=(1000, 3500),
                     batch_size=256, seed=1, chunk_size=300)
    ids = np.sort(_epoch(ld.train)[1] - BASE)
    np.testing.assert_array_equal(ids, np.arange(1000, 3500))


def test_entry_ranges_span_files(tmp_path):
    a = write_hdf5(tmp_path / "a.h5", make_columns(1000, first_id=0))
    b = write_hdf5(tmp_path / "b.h5", make_columns(1000, first_id=1000))
    ld = BatchLoader([Dataset([a, b], entries=(800, 1300))], columns=["pt"], target="id", batch_size=64, seed=1)
    ids = np.sort(_epoch(ld.train)[1] - BASE)
    np.testing.assert_array_equal(ids, np.arange(800, 1300))


@pytest.mark.parametrize("background", [True, False])
def test_state_saved_mid_epoch_resumes_exactly(files, background):
    def make():
        return BatchLoader(files["root"], tree="Events", columns=["pt"], target="id", batch_size=128, seed=21,
                           chunk_size=300, buffer_size=900, background=background)

    ld = make()
    _epoch(ld.train)  # epoch 0
    it = ld.train.numpy()  # epoch 1
    first = [next(it)[1] for _ in range(17)]
    state = ld.train.state_dict()
    rest = [y for _, y in it]
    assert state["epoch"] == 1 and state["rows"] == 17 * 128
    other = make()
    other.train.load_state_dict(state)
    resumed = [y for _, y in other.train.numpy()]
    assert len(resumed) == len(rest)
    for a, b in zip(rest, resumed):
        np.testing.assert_array_equal(a, b)
    assert len(np.unique(np.concatenate(first + resumed))) == N
    assert other.train.epoch == 2


def test_shuffle_quality_on_many_chunks(tmp_path):
    n = 200_000
    path = write_root(tmp_path / "big.root", {"id": np.arange(n, dtype=np.int64),
                                              "x": np.zeros(n, np.float32)}, None, basket=500)
    ld = BatchLoader(str(path), tree="Events", columns=["x"], target="id", batch_size=1000, seed=5,
                     chunk_size=500, buffer_size=16 * 500)
    stream = []
    regions = []
    for _, y in ld.train.numpy():
        stream.append(y)
        regions.append(len(np.unique(y // (n // 64))))
    pos = np.concatenate(stream)
    np.testing.assert_array_equal(np.sort(pos), np.arange(n))
    corr = np.corrcoef(pos, np.arange(n))[0, 1]
    assert abs(corr) < 0.1, corr  # a shuffle within chunks only would give ~1
    # every batch draws from 16 chunks of 500 entries spread over the file: many of the 64 regions
    assert np.median(regions) >= 12, np.median(regions)


def test_validation_inside_a_training_epoch(files):
    """Two runs at once (each with its own file handles) give the same batches as one after the other."""
    def make():
        return BatchLoader(files["root-zstd"], tree="Events", columns=["pt"], target="id", batch_size=256, seed=4,
                           validation_split=0.2, chunk_size=400, buffer_size=1600)

    a = make()
    train_alone, val_alone = _epoch(a.train)[1], _epoch(a.validation)[1]
    b = make()
    train, val = [], []
    for i, (_, y) in enumerate(b.train.numpy()):
        train.append(y)
        if i == 3:
            val = [y for _, y in b.validation.numpy()]
    np.testing.assert_array_equal(np.concatenate(train), train_alone)
    np.testing.assert_array_equal(np.concatenate(val), val_alone)


def test_abandoned_epoch_then_next_epoch(files):
    ld = BatchLoader(files["root"], tree="Events", columns=["pt"], target="id", batch_size=100, seed=4,
                     chunk_size=300, buffer_size=900)
    it = ld.train.numpy()
    next(it)
    it.close()  # stops the background threads
    ids = _epoch(ld.train)[1]
    assert ld.train.epoch == 2 and len(np.unique(ids)) == N


def test_several_targets_and_fixed_size_target(files, cols):
    ld = BatchLoader(files["hdf5"], columns=["pt"], target=["eta", "e"], batch_size=N, shuffle=False)
    x, y = next(ld.train.numpy())
    assert y.shape == (N, 2) and y.dtype == np.float64  # float32 and float64 side by side
    np.testing.assert_array_equal(y[:, 0], cols["eta"].astype(np.float64))
    np.testing.assert_array_equal(y[:, 1], cols["e"])
    ld = BatchLoader(files["hdf5"], columns=["pt"], target="arr", batch_size=N, shuffle=False)
    _, y = next(ld.train.numpy())
    assert y.shape == (N, 3) and y.dtype == np.float32
    np.testing.assert_array_equal(y, cols["arr"])


def test_wide_rows_get_windows_bounded_in_bytes(tmp_path):
    # 20000 rows of 4096 float32 (16 KB each): a window of the default 65536 rows would be 1 GB; it is held to
    # WINDOW_BYTES (or 8 batches), and every row still comes exactly once
    import h5py

    from ml4ep.data.loader import WINDOW_BYTES

    n, width = 20000, 4096
    path = tmp_path / "wide.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.broadcast_to(np.arange(n, dtype=np.float32)[:, None], (n, width)),
                         chunks=(64, width))
    ld = BatchLoader(str(path), columns=["x"], batch_size=100, seed=1, chunk_size=512)
    assert ld.window_size == WINDOW_BYTES // (4 * width) == 4096
    assert BatchLoader(str(path), columns=["x"], batch_size=1000, seed=1, chunk_size=512).window_size == 8000
    seen = np.concatenate([b[:, 0] for b in ld.train.numpy()])
    assert np.array_equal(np.sort(seen), np.arange(n, dtype=np.float32))
    assert not np.array_equal(seen, np.arange(n, dtype=np.float32))
