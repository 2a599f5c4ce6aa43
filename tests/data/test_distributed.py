"""Ranks of a data-parallel job get equal, disjoint shares of every input dataset.

Two processes join a ``torch.distributed`` group (gloo, ``file://`` rendezvous) and build the same
``BatchLoader`` with no rank arguments; each writes the entries it got per epoch, and the parent checks them."""

from __future__ import annotations

import os
import traceback
from datetime import timedelta

import numpy as np
import pytest

from ml4ep.data import BatchLoader, DataError, Dataset

WORLD = 2
EPOCHS = 2
SEED = 5
FILTER = "pt > 20 or label == 0"  # selects in the ROOT dataset (label 1) only
CONFIGS = {  # name -> (seed, filter, DataLoader worker processes per rank)
    "plain": (SEED, None, 0),
    "filter": (SEED, FILTER, 0),
    "broadcast-seed": (None, None, 0),  # no seed: rank 0 draws one and broadcasts it
    "filter-workers": (SEED, FILTER, 2),
}


def make_loader(root: str, hdf5: str, seed, filter=None, **kw) -> BatchLoader:
    """Signal (ROOT, label 1) and background (HDF5, label 0): the same ids in both files, told apart by label."""
    sources = [Dataset(root, tree="Events", constants={"label": 1}), Dataset(hdf5, constants={"label": 0})]
    return BatchLoader(sources, columns=["pt", "eta", "id"], target="label", batch_size=128, seed=seed,
                       validation_split=0.25, filter=filter, chunk_size=400, buffer_size=700, **kw)


def run_epochs(loader: BatchLoader, out: str, tag: str, num_workers: int = 0) -> None:
    """Writes ``<tag>_<split>_e<epoch>.npy``: rows (label, id) in the order received, and ``..._sizes.npy``."""
    for split in (loader.train, loader.validation):
        for epoch in range(EPOCHS):
            batches = list(split.torch(as_dict=True, num_workers=num_workers))
            rows = np.stack([np.concatenate([b["label"].numpy() for b in batches]),
                             np.concatenate([b["id"].numpy() for b in batches])], axis=1)
            assert rows.dtype == np.int64
            base = os.path.join(out, f"{tag}_{split.name}_e{epoch}")
            np.save(base + ".npy", rows)
            np.save(base + "_sizes.npy", np.array([len(b["id"]) for b in batches]))


def _rank_main(rank: int, world: int, init: str, root: str, hdf5: str, out: str) -> None:
    import torch.distributed as dist

    # a rank that fails makes the other's collectives time out instead of hanging the test run
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        for name, (seed, filt, workers) in CONFIGS.items():
            try:
                loader = make_loader(root, hdf5, seed, filt)  # rank and world size from torch.distributed
                assert (loader.rank, loader.world_size) == (rank, world)
                if seed is None:
                    np.save(os.path.join(out, f"{name}_r{rank}_seed.npy"), np.array([loader.seed]))
                run_epochs(loader, out, f"{name}_r{rank}", workers)
            except Exception:  # reported by this configuration's test; the others go on
                with open(os.path.join(out, f"{name}_r{rank}_error.txt"), "w") as f:
                    f.write(traceback.format_exc())
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_run(files, tmp_path_factory):
    import torch.multiprocessing as mp

    tmp = tmp_path_factory.mktemp("dist")
    out = tmp / "out"
    out.mkdir()
    init = (tmp / "rendezvous").as_uri()
    mp.start_processes(_rank_main, args=(WORLD, init, files["root"], files["hdf5"], str(out)), nprocs=WORLD,
                       join=True, start_method="spawn")
    return str(out)


def load(out: str, tag: str, split: str, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    base = os.path.join(out, f"{tag}_{split}_e{epoch}")
    return np.load(base + ".npy"), np.load(base + "_sizes.npy")


def reference(files, filt) -> dict[tuple[str, int], set]:
    """(split, label) -> the ids of that split and dataset, from the same loader on a single rank."""
    loader = make_loader(files["root"], files["hdf5"], SEED, filt)
    out = {}
    for split in (loader.train, loader.validation):
        rows = np.concatenate([np.stack([b["label"], b["id"]], axis=1) for b in split.numpy(as_dict=True)])
        for label in (0, 1):
            out[split.name, label] = set(rows[rows[:, 0] == label, 1].tolist())
    return out


def check_shares(per_rank: list[dict], files, cols, filt) -> None:
    """``per_rank[r][(split, epoch)] = (rows, batch sizes)``: disjoint equal shares, equal batch counts, every
    entry but at most world-1 per dataset and split, a new order every epoch."""
    ref = reference(files, filt)
    for label in (0, 1):  # the single-rank reference itself: train + validation = the selection
        keep = cols["pt"] > 20 if filt is not None and label == 1 else np.ones(len(cols["id"]), bool)
        assert ref["train", label] | ref["validation", label] == set(cols["id"][keep].tolist())
        assert not ref["train", label] & ref["validation", label]
    for epoch in range(EPOCHS):
        for split in ("train", "validation"):
            shares = [r[(split, epoch)] for r in per_rank]
            sizes = [len(rows) for rows, _ in shares]
            assert len(set(sizes)) == 1 and sizes[0] > 0, f"{split} epoch {epoch}: unequal shares {sizes}"
            nb = [len(b) for _, b in shares]
            assert len(set(nb)) == 1, f"{split} epoch {epoch}: batches per rank {nb}"
            assert [b.sum() for _, b in shares] == sizes
            for label in (0, 1):
                keys = [rows[rows[:, 0] == label, 1] for rows, _ in shares]
                assert len({len(k) for k in keys}) == 1, f"{split} label {label}: unequal per-dataset shares"
                got = [set(k.tolist()) for k in keys]
                assert all(len(g) == len(k) for g, k in zip(got, keys)), "an entry twice on one rank"
                assert not set.intersection(*got), f"{split} label {label}: ranks share entries"
                union = set.union(*got)
                assert union <= ref[split, label], f"{split} label {label}: entries from outside the split"
                missing = len(ref[split, label]) - len(union)
                assert missing <= WORLD - 1, f"{split} label {label} epoch {epoch}: {missing} entries missing"
    for r in per_rank:
        for split in ("train", "validation"):
            a, b = r[(split, 0)][0], r[(split, 1)][0]
            assert len(a) == len(b)
            assert not np.array_equal(a, b), f"{split}: the same order in both epochs"


def collect(out: str, tag: str) -> list[dict]:
    return [{(s, e): load(out, f"{tag}_r{r}", s, e) for s in ("train", "validation") for e in range(EPOCHS)}
            for r in range(WORLD)]


@pytest.mark.parametrize("config", list(CONFIGS))
def test_torch_distributed_ranks(distributed_run, files, cols, config):
    seed, filt, _ = CONFIGS[config]
    errors = [os.path.join(distributed_run, f"{config}_r{r}_error.txt") for r in range(WORLD)]
    for path in errors:
        if os.path.exists(path):
            with open(path) as f:
                text = f"{os.path.basename(path)}:\n{f.read()}"
            pytest.fail(text)
    check_shares(collect(distributed_run, config), files, cols, filt)
    if seed is None:
        seeds = [np.load(os.path.join(distributed_run, f"{config}_r{r}_seed.npy"))[0] for r in range(WORLD)]
        assert seeds[0] == seeds[1]


# forked DataLoader workers: once a test of this process has started JAX, JAX warns at every fork
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
@pytest.mark.parametrize("filt, workers", [(None, 0), (FILTER, 0), (FILTER, 2)])
def test_explicit_rank_and_world_size(files, cols, tmp_path, filt, workers):
    """The same shares in one process, with ``rank=`` and ``world_size=`` given (no torch.distributed)."""
    for rank in range(WORLD):
        loader = make_loader(files["root"], files["hdf5"], SEED, filt, rank=rank, world_size=WORLD)
        assert (loader.rank, loader.world_size) == (rank, WORLD)
        run_epochs(loader, str(tmp_path), f"explicit_r{rank}", workers)
    check_shares(collect(str(tmp_path), "explicit"), files, cols, filt)


def test_several_ranks_need_a_seed(files):
    with pytest.raises(DataError, match="seed="):
        make_loader(files["root"], files["hdf5"], None, rank=0, world_size=WORLD)
    with pytest.raises(DataError, match="rank"):
        make_loader(files["root"], files["hdf5"], SEED, rank=2, world_size=WORLD)
    with pytest.raises(DataError, match="both"):
        make_loader(files["root"], files["hdf5"], SEED, rank=0)
