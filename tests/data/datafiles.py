"""Small files of every format, written by the libraries themselves (uproot, h5py, pyarrow)."""

from __future__ import annotations

import numpy as np

N = 5000
MAXLEN = 6


def make_columns(n: int = N, seed: int = 0, first_id: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, MAXLEN + 1, size=n)
    offsets = np.r_[0, np.cumsum(counts)]
    return {
        # int64 ids above 2**53 - float32 or float64 would corrupt them
        "id": (np.int64(2**60) + first_id + np.arange(n)).astype(np.int64),
        "pt": rng.exponential(30.0, n).astype(np.float32),
        "eta": rng.uniform(-3, 3, n).astype(np.float32),
        "e": rng.normal(100, 10, n).astype(np.float64),
        "nhit": rng.integers(0, 50, n).astype(np.int32),
        "flag": rng.integers(0, 2, n).astype(np.bool_),
        "arr": rng.normal(size=(n, 3)).astype(np.float32),
        "jet_offsets": offsets,
        "jet_pt": rng.exponential(20.0, offsets[-1]).astype(np.float32),
    }


def jagged(cols: dict):
    import awkward as ak

    return ak.unflatten(cols["jet_pt"], np.diff(cols["jet_offsets"]))


def write_root(path, cols: dict, compression=None, rntuple: bool = False, basket: int = 1000):
    import uproot

    data = {k: v for k, v in cols.items() if not k.startswith("jet_")}
    if "jet_pt" in cols:
        data["jet_pt"] = jagged(cols)
    with uproot.recreate(path, compression=compression) as f:
        if rntuple:
            f.mkrntuple("Events", data)
            return path
        f.mktree("Events", {k: (v.dtype, v.shape[1:]) if k == "arr" else v.type if k == "jet_pt" else v.dtype
                            for k, v in data.items()})
        n = len(cols["id"])
        for s in range(0, n, basket):
            f["Events"].extend({k: v[s:s + basket] for k, v in data.items()})
    return path


def write_hdf5(path, cols: dict, chunk: int = 1000):
    import h5py

    with h5py.File(path, "w") as f:
        for k, v in cols.items():
            if not k.startswith("jet_"):
                f.create_dataset(k, data=v, chunks=(min(chunk, len(v)),) + v.shape[1:], compression="gzip")
    return path


def write_parquet(path, cols: dict, row_group: int = 1000):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(cols["id"])
    arrays = {k: pa.array(v) for k, v in cols.items() if k not in ("arr",) and not k.startswith("jet_")}
    arrays["arr"] = pa.FixedSizeListArray.from_arrays(pa.array(cols["arr"].reshape(-1)), 3)
    arrays["jet_pt"] = pa.ListArray.from_arrays(pa.array(cols["jet_offsets"].astype(np.int32)), pa.array(cols["jet_pt"]))
    assert len(arrays["jet_pt"]) == n
    pq.write_table(pa.table(arrays), path, row_group_size=row_group)
    return path
