"""The framework adapters of ``ml4ep.data``: PyTorch (in-process and in ``DataLoader`` workers), TensorFlow and JAX
give the same batches as the NumPy adapter, with exact dtypes, for the same seed and epoch.

Frameworks are imported inside the tests that use them (all are installed with the ``test`` extra)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from ml4ep.data import BatchLoader, DataError
from ml4ep.errors import OptionalDependencyError

SEED = 11
BATCH = 256
VALIDATION = 0.2
# DataLoader workers are forked; once a JAX test of the same process has started JAX, JAX warns at every fork
# (its threads are not copied; the workers here never use JAX)
FORK_AFTER_JAX = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


def make_loader(path: str, **kw) -> BatchLoader:
    """x = pt, eta, arr[3] (float32), y = id (int64), w = e (float64), shuffled in many small windows."""
    opts = dict(tree="Events" if path.endswith(".root") else None, columns=["pt", "eta", "arr"], target="id",
                weights="e", batch_size=BATCH, seed=SEED, validation_split=VALIDATION, chunk_size=400,
                buffer_size=600)
    opts.update(kw)
    return BatchLoader(path, **opts)


def numpy_epoch(split, epoch: int, as_dict: bool = False) -> list:
    split.set_epoch(epoch)
    return list(split.numpy(as_dict=as_dict))


def ids(batches, key=1) -> np.ndarray:
    """The ids of a list of batches (``key``: position or name of the id output), as an int64 NumPy array."""
    out = [np.asarray(b[key]) for b in batches]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def assert_all_once(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == np.int64
    assert len(np.unique(got)) == len(got), f"{len(got) - len(np.unique(got))} duplicated entries"
    np.testing.assert_array_equal(np.sort(got), np.sort(expected))


# -- PyTorch ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["root", "parquet"])
def test_torch_in_process_equals_numpy(files, cols, fmt):
    import torch

    loader = make_loader(files[fmt])
    split = loader.train
    epochs = []
    for epoch in (0, 1):
        assert split.epoch == epoch
        got = list(split.torch())
        assert split.epoch == epoch + 1  # each call runs the next epoch
        ref = numpy_epoch(split, epoch)
        assert len(got) == len(ref) == len(split)
        for (x, y, w), (rx, ry, rw) in zip(got, ref):
            assert all(isinstance(t, torch.Tensor) for t in (x, y, w))
            assert (x.dtype, y.dtype, w.dtype) == (torch.float32, torch.int64, torch.float64)
            assert x.shape == (len(rx), 5) and y.shape == (len(rx),) and w.shape == (len(rx),)
            np.testing.assert_array_equal(x.numpy(), rx)
            np.testing.assert_array_equal(y.numpy(), ry)  # int64 ids above 2**53 intact
            np.testing.assert_array_equal(w.numpy(), rw)
        assert all(len(b[0]) == BATCH for b in got[:-1])
        epochs.append(ids(got))
    assert not np.array_equal(epochs[0], epochs[1])
    np.testing.assert_array_equal(np.sort(epochs[0]), np.sort(epochs[1]))
    # the features belong to their ids
    first = got[0]
    rows = (first[1].numpy() - cols["id"][0]).astype(np.int64)
    np.testing.assert_array_equal(first[0].numpy()[:, 0], cols["pt"][rows])
    np.testing.assert_array_equal(first[0].numpy()[:, 2:], cols["arr"][rows])
    np.testing.assert_array_equal(first[2].numpy(), cols["e"][rows])


def test_torch_as_dict_exact_dtypes(files):
    import torch

    loader = make_loader(files["root"], columns=["pt", "nhit", "flag", "arr", "id"], target=None, weights="e")
    split = loader.validation
    got = list(split.torch(as_dict=True))
    ref = numpy_epoch(split, 0, as_dict=True)
    assert len(got) == len(ref) > 1
    want = {"pt": torch.float32, "nhit": torch.int32, "flag": torch.bool, "arr": torch.float32,
            "id": torch.int64, "e": torch.float64}
    for b, r in zip(got, ref):
        assert set(b) == set(r) == set(want)
        for k, dt in want.items():
            assert b[k].dtype == dt, k
            assert tuple(b[k].shape) == r[k].shape
            np.testing.assert_array_equal(b[k].numpy(), r[k])
        assert b["arr"].shape[1:] == (3,)


@FORK_AFTER_JAX
def test_torch_device_and_pin_memory(files):
    import torch

    loader = make_loader(files["hdf5"])
    split = loader.train
    ref = numpy_epoch(split, 0)
    for kw in ({"device": "cpu"}, {"device": torch.device("cpu")}, {"pin_memory": True},
               {"pin_memory": True, "device": "cpu"}):
        split.set_epoch(0)
        got = list(split.torch(**kw))
        assert len(got) == len(ref), kw
        for b, r in zip(got, ref):
            assert all(t.device.type == "cpu" for t in b)
            for t, a in zip(b, r):
                np.testing.assert_array_equal(t.numpy(), a)
    # pin_memory without CUDA in worker processes too
    split.set_epoch(0)
    got = list(split.torch(num_workers=2, pin_memory=True))
    assert_all_once(ids(got), ids(ref))


@FORK_AFTER_JAX
def test_torch_workers_with_device(files):
    loader = make_loader(files["hdf5"])
    ref = ids(numpy_epoch(loader.train, 0))
    loader.train.set_epoch(0)
    got = list(loader.train.torch(num_workers=2, device="cpu"))
    assert all(t.device.type == "cpu" for b in got for t in b)
    assert_all_once(ids(got), ref)


@FORK_AFTER_JAX
@pytest.mark.parametrize("fmt", ["root", "hdf5", "parquet"])
def test_torch_workers_every_entry_once(files, cols, fmt):
    """Two DataLoader workers: train + validation cover every entry exactly once per epoch, in many windows."""
    loader = make_loader(files[fmt], chunk_size=300, buffer_size=400, batch_size=100)
    assert len(loader.train.parts) + len(loader.validation.parts) >= 5
    assert loader.train.num_entries // loader.buffer_size >= 8  # many windows to hand out
    orders = []
    for epoch in (0, 1):
        train = list(loader.train.torch(num_workers=2))
        val = list(loader.validation.torch(num_workers=2))
        t, v = ids(train), ids(val)
        assert len(t) == loader.train.num_entries and len(v) == loader.validation.num_entries
        assert not set(t.tolist()) & set(v.tolist())
        assert_all_once(np.concatenate([t, v]), cols["id"])
        # the same entries as the in-process stream of the same epoch
        assert_all_once(t, ids(numpy_epoch(loader.train, epoch)))
        loader.train.set_epoch(epoch + 1)
        loader.validation.set_epoch(epoch + 1)
        for x, y, w in train:
            assert x.dtype.is_floating_point and x.shape[1:] == (5,) and len(x) == len(y) == len(w) <= 100
        orders.append(t)
    assert not np.array_equal(orders[0], orders[1])


@FORK_AFTER_JAX
def test_torch_workers_state_dict_after_epoch(files):
    loader = make_loader(files["hdf5"])
    list(loader.train.torch())
    assert loader.train.state_dict()["epoch"] == 1  # in-process: the next epoch to run
    list(loader.train.torch(num_workers=2))
    assert loader.train.epoch == 2
    assert loader.train.state_dict()["epoch"] == 2


@FORK_AFTER_JAX
@pytest.mark.parametrize("context", [None, "spawn"])
def test_torch_dataset_in_own_dataloader(files, cols, context):
    """``torch_dataset()`` in the user's own DataLoader with two workers (forked, and spawned: the dataset must
    pickle into a fresh interpreter)."""
    import torch

    loader = make_loader(files["parquet"], chunk_size=300, buffer_size=400, batch_size=100)
    ds = loader.train.torch_dataset()
    assert isinstance(ds, torch.utils.data.IterableDataset)
    orders = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=context,
                                         persistent_workers=False)
        got = list(dl)
        assert all(b[1].dtype == torch.int64 and b[0].dtype == torch.float32 for b in got)
        t = ids(got)
        assert_all_once(t, ids(numpy_epoch(loader.train, epoch)))
        orders.append(t)
    assert not np.array_equal(orders[0], orders[1])
    # with the validation split, every entry once
    vds = loader.validation.torch_dataset()
    vds.set_epoch(0)
    v = ids(list(torch.utils.data.DataLoader(vds, batch_size=None, num_workers=2, multiprocessing_context=context)))
    assert_all_once(np.concatenate([orders[0], v]), cols["id"])


# -- TensorFlow ---------------------------------------------------------------------------------------------
def test_tensorflow_dataset(files):
    import tensorflow as tf

    loader = make_loader(files["root"])
    split = loader.train
    ds = split.tensorflow()
    assert isinstance(ds, tf.data.Dataset)
    x_spec, y_spec, w_spec = ds.element_spec
    assert x_spec == tf.TensorSpec((None, 5), tf.float32)
    assert y_spec == tf.TensorSpec((None,), tf.int64)
    assert w_spec == tf.TensorSpec((None,), tf.float64)
    passes = [[tuple(t.numpy() for t in b) for b in ds] for _ in range(2)]  # each pass is the next epoch
    assert split.epoch == 2
    for epoch, got in enumerate(passes):
        ref = numpy_epoch(split, epoch)
        assert len(got) == len(ref)
        for b, r in zip(got, ref):
            assert b[0].dtype == np.float32 and b[1].dtype == np.int64 and b[2].dtype == np.float64
            for a, e in zip(b, r):
                np.testing.assert_array_equal(a, e)
    first, second = ids(passes[0]), ids(passes[1])
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first), np.sort(second))

    # as_dict: one tensor per column, exact dtypes and per-entry shapes
    dds = loader.validation.tensorflow(as_dict=True)
    spec = dds.element_spec
    assert set(spec) == {"pt", "eta", "arr", "id", "e"}
    assert spec["arr"] == tf.TensorSpec((None, 3), tf.float32)
    assert spec["id"] == tf.TensorSpec((None,), tf.int64)
    assert spec["e"] == tf.TensorSpec((None,), tf.float64)
    got = [{k: v.numpy() for k, v in b.items()} for b in dds]
    ref = numpy_epoch(loader.validation, 0, as_dict=True)
    assert len(got) == len(ref)
    for b, r in zip(got, ref):
        for k in r:
            assert b[k].dtype == r[k].dtype
            np.testing.assert_array_equal(b[k], r[k])


# -- JAX ---------------------------------------------------------------------------------------------------------
def test_jax_equals_numpy_with_x64(files):
    import jax

    loader = make_loader(files["hdf5"])
    split = loader.train
    with jax.enable_x64(True):
        batches = list(split.jax())
    assert all(isinstance(a, jax.Array) for b in batches for a in b)
    got = [tuple(np.asarray(a) for a in b) for b in batches]
    ref = numpy_epoch(split, 0)
    assert len(got) == len(ref)
    for b, r in zip(got, ref):
        assert (b[0].dtype, b[1].dtype, b[2].dtype) == (np.float32, np.int64, np.float64)
        for a, e in zip(b, r):
            np.testing.assert_array_equal(a, e)


def test_jax_64bit_without_x64_is_a_clear_error(files):
    import jax

    loader = make_loader(files["root"])
    assert not jax.config.read("jax_enable_x64")
    with pytest.raises(DataError, match="jax_enable_x64") as err:
        list(loader.train.jax())
    assert str(err.value).startswith("y, w ") and "dtype=" in str(err.value)  # the 64-bit outputs, and the cure
    with pytest.raises(DataError, match="jax_enable_x64"):
        list(loader.validation.jax(as_dict=True))
    # the failed call consumed no epoch
    assert loader.train.epoch == 0


def test_jax_with_32bit_casts(files):
    import jax

    loader = make_loader(files["root"], columns=["pt", "eta", "e"], target="nhit", weights=None,
                         dtype="float32", target_dtype="int32")
    assert not jax.config.read("jax_enable_x64")
    split = loader.train
    got = list(split.jax())
    ref = numpy_epoch(split, 0)
    assert len(got) == len(ref) == len(split)
    for (x, y), (rx, ry) in zip(got, ref):
        assert isinstance(x, jax.Array) and isinstance(y, jax.Array)
        assert (x.dtype, y.dtype) == (np.float32, np.int32)
        assert x.shape == (len(rx), 3) and y.shape == (len(rx),)
        np.testing.assert_array_equal(np.asarray(x), rx)
        np.testing.assert_array_equal(np.asarray(y), ry)
    assert ref[0][0].dtype == np.float32  # e (float64) cast to float32


# -- missing frameworks ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module, call", [
    ("torch", lambda s: list(s.torch())),
    ("torch", lambda s: s.torch_dataset()),
    ("tensorflow", lambda s: s.tensorflow()),
    ("jax", lambda s: list(s.jax())),
], ids=["torch", "torch_dataset", "tensorflow", "jax"])
def test_missing_framework_names_the_extra(files, monkeypatch, module, call):
    loader = make_loader(files["root"], dtype="float32", target_dtype="int32", weights=None)
    monkeypatch.setitem(sys.modules, module, None)  # "import <module>" now raises ImportError
    from ml4ep.data import adapters

    monkeypatch.delattr(adapters, "_TorchDataset", raising=False)  # the class made once torch was imported
    with pytest.raises(OptionalDependencyError, match=rf"pip install 'ml4ep\[{module}\]'") as err:
        call(loader.train)
    assert isinstance(err.value, ImportError)
    assert module in str(err.value)
