"""Peak memory stays bounded by the buffer on a file many times larger (measured in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

N = 6_000_000  # x 4 float32 columns + int64 id = 144 MB of data
BUFFER = 65_536  # rows: 1.5 MB of output per window


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    import h5py
    import uproot

    d = tmp_path_factory.mktemp("big")
    ids = np.arange(N, dtype=np.int64)
    rng = np.random.default_rng(0)
    cols = {f"x{i}": rng.normal(size=N).astype(np.float32) for i in range(4)}
    root = d / "big.root"
    with uproot.recreate(root, compression=None) as f:
        f.mktree("Events", {"id": np.int64, **{k: np.float32 for k in cols}})
        step = 100_000
        for s in range(0, N, step):
            f["Events"].extend({"id": ids[s:s + step], **{k: v[s:s + step] for k, v in cols.items()}})
    h5 = d / "big.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("id", data=ids, chunks=(16384,))
        for k, v in cols.items():
            f.create_dataset(k, data=v, chunks=(16384,))
    return {"root": str(root), "hdf5": str(h5)}


_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from ml4ep.data import BatchLoader

    def rss(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    path, tree, buffer = sys.argv[1], sys.argv[2] or None, int(sys.argv[3])
    ld = BatchLoader(path, tree=tree, columns=["x0", "x1", "x2", "x3"], target="id", batch_size=1024, seed=1,
                     chunk_size=buffer // 16, buffer_size=buffer)
    for x, y in ld.train.numpy():  # warm up: imports, first allocations
        break
    before = rss("VmRSS")
    n, total = 0, 0.0
    for x, y in ld.train.numpy():
        n += len(y)
        total += float(x[:, 0].sum())
    print(json.dumps({"before": before, "peak": rss("VmHWM"), "rows": n}))
""")


@pytest.mark.parametrize("fmt", ["root", "hdf5"])
def test_peak_memory_bounded_by_buffer(big_files, fmt):
    out = subprocess.run([sys.executable, "-c", _SCRIPT, big_files[fmt], "Events" if fmt == "root" else "",
                          str(BUFFER)], capture_output=True, text=True, check=True, timeout=300)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rows"] == N
    grown = res["peak"] - res["before"]
    data_mb = N * 24 / 2**20
    # the bound of docs/data.md: (prefetch + 2) windows of output + one part per dataset + reader overheads,
    # a few MB here, against 137 MB of data: allow 40 MB for the allocator and uproot's basket buffers
    assert grown < 40, (grown, data_mb, res)
