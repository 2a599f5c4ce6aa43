"""Throughput, memory, time to first batch and shuffle quality of ml4ep.data.BatchLoader against its anchors.

Data (made by the script into ``--data-dir``, reused when present): ``--entries`` entries (default 2M) of 20
float32 columns ``f0..f19`` plus an int64 ``index`` column (the entry number), as

- TTrees ``Events`` written by ROOT itself (``RDataFrame.Snapshot``, ROOT's default basket/cluster layout) with
  ZLIB level 1, LZ4 level 4 and no compression (uproot writes them instead when ROOT is not installed);
- HDF5 (h5py, one 1-D uncompressed dataset per column in chunks of 64k) and Parquet (pyarrow's defaults:
  snappy, dictionary pages; row groups of 100k);
- a vector case: a ZLIB-1 TTree with a ``std::vector<float>`` branch ``jet_pt`` (0..12 entries per event) plus the
  scalars ``met``, ``ht``, ``njet`` and ``index``, read with ``jet_pt`` padded (zeros) or cut to 8 values.

Contenders, each in its own subprocess (so its peak RSS, ``VmHWM``, is its own), one thread where it applies
(OMP/OPENBLAS/MKL_NUM_THREADS=1, ROOT implicit MT off), batches of 1024, shuffle on:

- ``raw``: the I/O bound, one read of all the columns into NumPy arrays (uproot, h5py or pyarrow with one
  thread), no stacking, no batches;
- ``rdl-stream``: ROOT's ``ROOT.Experimental.ML.RDataLoader`` streaming clusters (its defaults otherwise:
  ``batches_in_memory=10``), ``drop_remainder=False``;
- ``rdl-eager``: the same with ``load_eager=True`` (the whole dataset in memory);
- ``uproot-chunks``: ``uproot.iterate`` in 100k-entry chunks, each shuffled, cut into batches (a chunk's remainder
  goes in front of the next chunk);
- ``in-memory``: everything read with uproot, a random permutation per epoch, batches gathered from its slices;
- ``ml4ep``: ``ml4ep.data.BatchLoader(..., shuffle=True)`` iterated with ``.train.numpy()``.

Each contender consumes every batch (sums one feature column) and records the ``index`` values it was given.
Epoch 2 is timed (entries/s, and MB/s of the float features: 80 B/entry, 44 B/entry for the padded vector case);
epoch 1 gives the set-up time (building the loader) and the time to the first batch (from the start of the set-up).
From the epoch-2 stream of ``index`` the parent computes the shuffle quality: the Pearson and Spearman correlation
of an entry's position in the file with its position in the stream (0 is good), the mean number of distinct file
regions per batch with the file cut into 64 equal regions (64 = every batch draws from everywhere), and whether
every entry came exactly once. Runs are repeated ``--repeats`` times in alternating order (A B C ... C B A) and
reported as medians. The files sit in the page cache (they were just written or read), so this measures
decompression and deserialisation, not the disk.

    python benchmarks/data_loader.py [--entries 2000000] [--repeats 3] [--cases flat-zlib,vector]
                                     [--contenders rdl-stream,ml4ep] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1", "OMP_THREAD_LIMIT": "1"}
for _k, _v in THREAD_ENV.items():
    os.environ.setdefault(_k, _v)

import numpy as np  # noqa: E402
from _docs import cpu_model, write_section  # noqa: E402

DATA_VERSION = 2  # bump when the generated data change
TREE = "Events"
FEATURES = [f"f{i}" for i in range(20)]
TARGET = "index"
VEC_MAX = 8
VEC_SCALARS = ["met", "ht", "njet"]
VEC_FEATURES = [f"jet_pt_{i}" for i in range(VEC_MAX)] + VEC_SCALARS
REGIONS = 64
CHUNK = 100_000

# case -> (file key, kind, bytes per entry of the float features)
CASES = {
    "flat-zlib": ("zlib.root", "root", 80),
    "flat-lz4": ("lz4.root", "root", 80),
    "flat-none": ("none.root", "root", 80),
    "flat-hdf5": ("flat.h5", "hdf5", 80),
    "flat-parquet": ("flat.parquet", "parquet", 80),
    "vector": ("vector.root", "root", 4 * len(VEC_FEATURES)),
}
CONTENDERS = ["raw", "rdl-stream", "rdl-eager", "uproot-chunks", "in-memory", "ml4ep"]


def contenders_for(case: str) -> list[str]:
    kind = CASES[case][1]
    if case == "vector":
        return ["rdl-stream", "rdl-eager", "uproot-chunks", "in-memory", "ml4ep"]
    if kind == "root":
        return list(CONTENDERS)
    return ["raw", "ml4ep"]


# --------------------------------------------------------------------------------------------- data


def _root_available() -> bool:
    return importlib.util.find_spec("ROOT") is not None


def _import_root():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pip ROOT warns that it is an alpha distribution
        import ROOT
    ROOT.gROOT.SetBatch(True)
    if ROOT.IsImplicitMTEnabled():
        ROOT.DisableImplicitMT()
    return ROOT


def _flat_columns(n: int) -> dict[str, np.ndarray]:
    """20 float32 columns shaped a little like physics quantities; the momenta and pseudorapidities keep 12 mantissa
    bits (as NanoAOD-like files do), the others full precision, so the compressors have some, not much, to do."""
    rng = np.random.default_rng(12345)
    cols: dict[str, np.ndarray] = {}
    for i, name in enumerate(FEATURES):
        kind = i % 4
        if kind == 0:  # momenta: falling spectrum
            v = rng.exponential(30.0, n) + 20.0
        elif kind == 1:  # pseudorapidity
            v = rng.normal(0.0, 1.5, n)
        elif kind == 2:  # angle
            v = rng.uniform(-np.pi, np.pi, n)
        else:  # a discriminant, many exact zeros
            v = np.where(rng.random(n) < 0.3, 0.0, rng.random(n))
        v = v.astype(np.float32)
        if kind in (0, 1):
            v = (v.view(np.uint32) + np.uint32(1 << 10) & np.uint32(0xFFFFF800)).view(np.float32)
        cols[name] = v
    cols[TARGET] = np.arange(n, dtype=np.int64)
    return cols


def _vector_columns(n: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(54321)
    counts = np.minimum(rng.poisson(4.0, n), 12).astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    pt = (rng.exponential(40.0, int(offsets[-1])) + 25.0).astype(np.float32)
    # jets sorted by falling pt inside each event
    ev = np.repeat(np.arange(n), counts)
    order = np.lexsort((-pt, ev))
    pt = pt[order]
    ht = np.add.reduceat(pt, offsets[:-1]) if n else np.zeros(0)
    ht = np.where(counts > 0, ht, 0.0).astype(np.float32)
    scalars = {"met": (rng.exponential(50.0, n)).astype(np.float32), "ht": ht,
               "njet": counts.astype(np.float32), TARGET: np.arange(n, dtype=np.int64)}
    return offsets, pt, scalars


_VEC_WRITER = r"""
#include <vector>
#include "TFile.h"
#include "TTree.h"
void ml4ep_bench_write_vector(const char *path, int compress, long n, const long *offsets,
                              const float *pt, const float *met, const float *ht, const float *njet,
                              const long *index)
{
   TFile f(path, "RECREATE", "", compress);
   TTree t("Events", "ml4ep data_loader benchmark");
   std::vector<float> jet_pt;
   float m, h, nj;
   Long64_t idx;
   t.Branch("jet_pt", &jet_pt);
   t.Branch("met", &m, "met/F");
   t.Branch("ht", &h, "ht/F");
   t.Branch("njet", &nj, "njet/F");
   t.Branch("index", &idx, "index/L");
   for (long i = 0; i < n; ++i) {
      jet_pt.assign(pt + offsets[i], pt + offsets[i + 1]);
      m = met[i]; h = ht[i]; nj = njet[i]; idx = index[i];
      t.Fill();
   }
   t.Write("", TObject::kOverwrite);
   f.Close();
}
"""

# level 0 with ROOT's default (undefined) algorithm would silently become ZLIB-1 in Snapshot: name an algorithm
COMPRESSION = {"zlib.root": ("kZLIB", 1), "lz4.root": ("kLZ4", 4), "none.root": ("kZLIB", 0)}


def _write_root_flat(path: Path, cols: dict[str, np.ndarray], key: str) -> None:
    algo, level = COMPRESSION[key]
    if _root_available():
        ROOT = _import_root()
        df = ROOT.RDF.FromNumpy(cols)
        opts = ROOT.RDF.RSnapshotOptions()
        opts.fCompressionAlgorithm = getattr(ROOT.RCompressionSetting.EAlgorithm, algo)
        opts.fCompressionLevel = level
        df.Snapshot(TREE, str(path), list(cols), opts)
        return
    import uproot

    comp = {"kZLIB": uproot.ZLIB, "kLZ4": uproot.LZ4}[algo]
    with uproot.recreate(path, compression=comp(level) if level else None) as f:
        f.mktree(TREE, {k: v.dtype for k, v in cols.items()})
        n = len(cols[TARGET])
        step = 300_000  # about ROOT's 30 MB clusters for this tree
        for s in range(0, n, step):
            f[TREE].extend({k: v[s:s + step] for k, v in cols.items()})


def _write_root_vector(path: Path, n: int) -> None:
    offsets, pt, scalars = _vector_columns(n)
    if _root_available():
        ROOT = _import_root()
        if not hasattr(ROOT, "ml4ep_bench_write_vector"):
            ROOT.gInterpreter.Declare(_VEC_WRITER)
        ROOT.ml4ep_bench_write_vector(str(path), 101, n, offsets, pt, scalars["met"], scalars["ht"],
                                      scalars["njet"], scalars[TARGET])
        return
    import awkward as ak
    import uproot

    jet = ak.unflatten(pt, np.diff(offsets))
    with uproot.recreate(path, compression=uproot.ZLIB(1)) as f:
        f[TREE] = {"jet_pt": jet, **scalars}


def ensure_data(data_dir: Path, n: int) -> tuple[Path, dict]:
    """Write the benchmark files into data_dir/n<entries> unless they are already there; return the folder and meta."""
    d = data_dir / f"n{n}"
    meta_path = d / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == DATA_VERSION and all((d / k).exists() for k, _, _ in CASES.values()):
            return d, meta
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cols = _flat_columns(n)
    for key in COMPRESSION:
        tmp = d / f"tmp-{key}"
        _write_root_flat(tmp, cols, key)
        tmp.rename(d / key)
    import h5py

    tmp = d / "tmp-flat.h5"
    with h5py.File(tmp, "w") as f:
        for k, v in cols.items():
            f.create_dataset(k, data=v, chunks=(min(65536, max(1, n)),))
    tmp.rename(d / "flat.h5")
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = d / "tmp-flat.parquet"
    pq.write_table(pa.table(cols), tmp, row_group_size=CHUNK)
    tmp.rename(d / "flat.parquet")
    del cols
    tmp = d / "tmp-vector.root"
    _write_root_vector(tmp, n)
    tmp.rename(d / "vector.root")
    meta = {"version": DATA_VERSION, "entries": n, "writer": "ROOT" if _root_available() else "uproot",
            "make_s": time.perf_counter() - t0, "files": {}}
    for key, _, _ in CASES.values():
        info = {"mb": (d / key).stat().st_size / 1e6}
        if key.endswith(".root"):
            info["clusters"] = _cluster_starts(d / key)
        meta["files"][key] = info
    meta_path.write_text(json.dumps(meta, indent=1))
    return d, meta


def _cluster_starts(path: Path) -> int:
    """Number of clusters of the tree (ROOT's cluster iterator; uproot's common basket boundaries without ROOT)."""
    if _root_available():
        ROOT = _import_root()
        f = ROOT.TFile.Open(str(path))
        t = f.Get(TREE)
        it = t.GetClusterIterator(0)
        n_clusters, start, total = 0, it.Next(), t.GetEntries()
        while start < total:
            n_clusters += 1
            start = it.Next()
        f.Close()
        return n_clusters
    import uproot

    with uproot.open(path) as f:
        return max(1, len(f[TREE].common_entry_offsets()) - 1)


# --------------------------------------------------------------------------------------------- contenders
# Each contender is built from (case, path) by a function returning (imports, build, epoch, raw):
# imports() is timed as import time; build() -> state is the set-up; epoch(state) -> iterator of (x, y) batches.


def _columns(case: str) -> tuple[list[str], dict[str, int]]:
    if case == "vector":
        return ["jet_pt", *VEC_SCALARS], {"jet_pt": VEC_MAX}
    return list(FEATURES), {}


def _rdl(case: str, path: str, batch: int, eager: bool):
    cols, vec = _columns(case)
    mod = {}

    def imports():
        mod["ROOT"] = _import_root()

    def build():
        ROOT = mod["ROOT"]
        rdf = ROOT.RDataFrame(TREE, path)
        dl = ROOT.Experimental.ML.RDataLoader(rdf, batch, columns=[*cols, TARGET], max_vec_sizes=vec or None,
                                              target=TARGET, shuffle=True, drop_remainder=False, set_seed=1,
                                              load_eager=eager)
        gen = dl.as_numpy()  # the C++ engine (and, eagerly, the whole dataset) is made here
        return rdf, dl, gen

    def epoch(state):
        return iter(state[2])

    return imports, build, epoch


def _read_matrix_uproot(arrays, case: str) -> tuple[np.ndarray, np.ndarray]:
    if case == "vector":
        import awkward as ak

        jet = ak.to_numpy(ak.fill_none(ak.pad_none(arrays["jet_pt"], VEC_MAX, clip=True), 0.0))
        parts = [np.asarray(jet, dtype=np.float32)] + [ak.to_numpy(arrays[c])[:, None] for c in VEC_SCALARS]
        x = np.concatenate(parts, axis=1)
        return np.ascontiguousarray(x, dtype=np.float32), ak.to_numpy(arrays[TARGET])
    x = np.empty((len(arrays[TARGET]), len(FEATURES)), dtype=np.float32)
    for j, c in enumerate(FEATURES):
        x[:, j] = arrays[c]
    return x, arrays[TARGET]


def _uproot_chunks(case: str, path: str, batch: int):
    cols, _ = _columns(case)
    mod = {}

    def imports():
        import uproot

        mod["uproot"] = uproot
        if case == "vector":
            import awkward  # noqa: F401

    def build():
        f = mod["uproot"].open(path, array_cache=None)  # no cached arrays across epochs
        return f, f[TREE], np.random.default_rng(1)

    def epoch(state):
        _, tree, rng = state
        lib = "ak" if case == "vector" else "np"
        left_x = left_y = None
        for arrays in tree.iterate([*cols, TARGET], step_size=CHUNK, library=lib):
            x, y = _read_matrix_uproot(arrays, case)
            p = rng.permutation(len(y))
            x, y = x[p], y[p]
            if left_x is not None and len(left_y):
                x, y = np.concatenate([left_x, x]), np.concatenate([left_y, y])
            full = len(y) // batch * batch
            for s in range(0, full, batch):
                yield x[s:s + batch], y[s:s + batch]
            left_x, left_y = x[full:], y[full:]
        if left_y is not None and len(left_y):
            yield left_x, left_y

    return imports, build, epoch


def _in_memory(case: str, path: str, batch: int):
    cols, _ = _columns(case)
    mod = {}

    def imports():
        import uproot

        mod["uproot"] = uproot
        if case == "vector":
            import awkward  # noqa: F401

    def build():
        with mod["uproot"].open(path, array_cache=None) as f:
            arrays = f[TREE].arrays([*cols, TARGET], library="ak" if case == "vector" else "np")
        x, y = _read_matrix_uproot(arrays, case)
        del arrays
        return x, y, np.random.default_rng(1)

    def epoch(state):
        x, y, rng = state
        perm = rng.permutation(len(y))
        for s in range(0, len(y), batch):
            idx = perm[s:s + batch]
            yield x[idx], y[idx]

    return imports, build, epoch


def _raw(case: str, path: str, batch: int):
    """One read of all the columns; the 'epoch' yields that one read as a single batch, in file order."""
    kind = CASES[case][1]
    mod = {}

    def imports():
        if kind == "root":
            import uproot

            mod["m"] = uproot
        elif kind == "hdf5":
            import h5py

            mod["m"] = h5py
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pa.set_cpu_count(1)
            pa.set_io_thread_count(1)
            mod["m"] = pq

    def build():
        if kind == "root":
            return mod["m"].open(path, array_cache=None)[TREE]  # epoch 2 must read again
        if kind == "hdf5":
            return mod["m"].File(path, "r")
        return mod["m"].ParquetFile(path)

    def epoch(state):
        if kind == "root":
            arrays = state.arrays([*FEATURES, TARGET], library="np")
        elif kind == "hdf5":
            arrays = {c: state[c][...] for c in [*FEATURES, TARGET]}
        else:
            t = state.read(columns=[*FEATURES, TARGET], use_threads=False)
            arrays = {c: t.column(c).to_numpy() for c in [*FEATURES, TARGET]}
        # no stacking: the bound is the read itself; the consumer sums column f0
        yield arrays[FEATURES[0]].reshape(-1, 1), arrays[TARGET]

    return imports, build, epoch


def _ml4ep(case: str, path: str, batch: int):
    cols, vec = _columns(case)
    kind = CASES[case][1]
    mod = {}

    def imports():
        from ml4ep.data import BatchLoader

        mod["BatchLoader"] = BatchLoader

    def build():
        kw = {"columns": cols, "target": TARGET, "batch_size": batch, "shuffle": True, "seed": 1}
        if kind == "root":
            kw["tree"] = TREE
        if vec:
            kw["max_vec_sizes"] = vec
        return mod["BatchLoader"](path, **kw)

    def epoch(state):
        return iter(state.train.numpy())

    return imports, build, epoch


def _factory(name: str, case: str, path: str, batch: int):
    if name == "rdl-stream":
        return _rdl(case, path, batch, eager=False)
    if name == "rdl-eager":
        return _rdl(case, path, batch, eager=True)
    if name == "uproot-chunks":
        return _uproot_chunks(case, path, batch)
    if name == "in-memory":
        return _in_memory(case, path, batch)
    if name == "raw":
        return _raw(case, path, batch)
    if name == "ml4ep":
        return _ml4ep(case, path, batch)
    raise ValueError(name)


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_worker(spec: dict) -> dict:
    """Run one contender in this process; write the epoch-2 index stream to spec['stream']."""
    name, case, path, batch, n = spec["contender"], spec["case"], spec["path"], spec["batch"], spec["entries"]
    out: dict = {"contender": name, "case": case}
    imports, build, epoch = _factory(name, case, path, batch)
    t0 = time.perf_counter()
    try:
        imports()
    except ImportError as exc:
        return {**out, "skipped": f"{type(exc).__name__}: {exc}"}
    out["import_s"] = time.perf_counter() - t0
    stream = np.empty(n + 2 * batch, dtype=np.int64)  # allocated before the baseline, so not counted as loader memory
    sizes = np.empty(n // max(1, batch) + 8, dtype=np.int64)
    out["base_rss_mb"] = _status_mb("VmRSS")

    # epoch 1: set-up, time to first batch, the rest of the epoch
    t0 = time.perf_counter()
    state = build()
    t1 = time.perf_counter()
    it = epoch(state)
    acc = 0.0
    n1 = 0
    first = next(it, None)
    t2 = time.perf_counter()
    if first is not None:
        x, y = first
        x = np.asarray(x)
        out["x_shape"], out["x_dtype"] = list(x.shape), str(x.dtype)
        out["y_shape"], out["y_dtype"] = list(np.shape(y)), str(np.asarray(y).dtype)
        acc += float(x[:, 0].sum())
        n1 += len(x)
        for x, _ in it:
            acc += float(np.asarray(x)[:, 0].sum())
            n1 += len(x)
    t3 = time.perf_counter()
    out.update(setup_s=t1 - t0, first_batch_s=t2 - t0, epoch1_s=t3 - t1, epoch1_entries=n1)

    # epoch 2: timed
    extra: list[np.ndarray] = []
    pos = nb = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    for x, y in epoch(state):
        x = np.asarray(x)
        acc += float(x[:, 0].sum())
        yv = np.asarray(y).reshape(-1)
        k = len(yv)
        if pos + k <= len(stream) and nb < len(sizes):
            stream[pos:pos + k] = yv
            sizes[nb] = k
        else:
            extra.append(yv.astype(np.int64))
        pos += k
        nb += 1
    t1 = time.perf_counter()
    out["epoch2_cpu_s"] = time.process_time() - c0
    out["epoch2_s"] = t1 - t0
    out["epoch2_entries"] = pos
    out["epoch2_batches"] = nb
    out["checksum"] = acc
    # VmHWM is this process's own peak; ru_maxrss also counts the parent's pages at fork time (Linux keeps the
    # larger of the two across exec), so it is reported only for reference
    out["peak_rss_mb"] = _status_mb("VmHWM")
    out["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if extra:  # more entries than the file has: keep them all for the parent's checks
        full = np.concatenate([stream[:min(pos, len(stream))]] + extra)
        full_sizes = None
    else:
        full, full_sizes = stream[:pos], sizes[:nb]
    np.save(spec["stream"], full)
    if full_sizes is not None:
        np.save(spec["sizes"], full_sizes)
    return out


def spawn(spec: dict, timeout: float) -> dict:
    env = dict(os.environ, **THREAD_ENV)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"contender": spec["contender"], "case": spec["case"], "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(res.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    tail = (res.stderr or res.stdout).strip().splitlines()
    err = next((ln for ln in reversed(tail) if ln.strip()), f"exit code {res.returncode}")
    return {"contender": spec["contender"], "case": spec["case"], "error": err[:300]}


# --------------------------------------------------------------------------------------------- shuffle quality


def shuffle_quality(stream: np.ndarray, sizes: np.ndarray | None, n: int) -> dict:
    counts = np.bincount(np.clip(stream, 0, n), minlength=n + 1)
    out_of_range = int(counts[n]) + int((stream < 0).sum())
    counts = counts[:n]
    res = {"missing": int((counts == 0).sum()), "duplicated": int((counts > 1).sum()), "out_of_range": out_of_range}
    res["exactly_once"] = res["missing"] == 0 and res["duplicated"] == 0 and out_of_range == 0
    if len(stream) < 2:
        return res
    pos = np.arange(len(stream), dtype=np.float64)
    res["pearson"] = float(np.corrcoef(stream.astype(np.float64), pos)[0, 1])
    ranks = np.empty(len(stream), dtype=np.float64)
    ranks[np.argsort(stream, kind="stable")] = pos
    res["spearman"] = float(np.corrcoef(ranks, pos)[0, 1])
    if sizes is not None and len(sizes) and sizes.sum() == len(stream):
        region = np.clip(stream, 0, n - 1) * REGIONS // max(1, n)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        distinct = [len(np.unique(region[s:s + k])) for s, k in zip(starts, sizes) if k > 0]
        res["regions_per_batch"] = float(np.mean(distinct))
    return res


# --------------------------------------------------------------------------------------------- parent


def _median(vals):
    vals = [v for v in vals if isinstance(v, (int, float)) and v == v]
    return float(np.median(vals)) if vals else None


def summarise(runs: list[dict], n: int, bytes_per_entry: int) -> dict:
    ok = [r for r in runs if "epoch2_s" in r]
    if not ok:
        first = runs[0] if runs else {}
        return {"status": first.get("skipped") and f"skipped ({first['skipped']})" or first.get("error", "no run")}
    s: dict = {"status": "ok", "runs": len(ok)}
    for k in ("import_s", "setup_s", "first_batch_s", "epoch1_s", "epoch2_s", "epoch2_cpu_s", "peak_rss_mb",
              "base_rss_mb"):
        s[k] = _median([r.get(k) for r in ok])
    rates = [r["epoch2_entries"] / r["epoch2_s"] for r in ok if r["epoch2_s"] > 0]
    s["entries_per_s"] = _median(rates)
    s["mb_per_s"] = s["entries_per_s"] * bytes_per_entry / 1e6 if s["entries_per_s"] else None
    s["cpu_per_wall"] = _median([r["epoch2_cpu_s"] / r["epoch2_s"] for r in ok if r["epoch2_s"] > 0])
    s["loader_mb"] = _median([r["peak_rss_mb"] - r["base_rss_mb"] for r in ok])
    for k in ("pearson", "spearman", "regions_per_batch"):
        s[k] = _median([r.get("quality", {}).get(k) for r in ok])
    s["exactly_once"] = all(r.get("quality", {}).get("exactly_once") for r in ok)
    s["missing"] = max(r.get("quality", {}).get("missing", 0) for r in ok)
    s["duplicated"] = max(r.get("quality", {}).get("duplicated", 0) for r in ok)
    s["epoch2_entries"] = ok[0]["epoch2_entries"]
    s["x_shape"], s["x_dtype"] = ok[0].get("x_shape"), ok[0].get("x_dtype")
    s["y_shape"], s["y_dtype"] = ok[0].get("y_shape"), ok[0].get("y_dtype")
    return s


def _default_data_dir() -> Path:
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("ml4ep")) / "bench-data"
    except ImportError:
        return Path(tempfile.gettempdir()) / "ml4ep-bench-data"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=2_000_000)
    ap.add_argument("--data-dir", type=Path, default=None, help=f"default {_default_data_dir()}")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds (A B C ..., then ... C B A)")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    ap.add_argument("--contenders", default=",".join(CONTENDERS), help=f"comma list of {', '.join(CONTENDERS)}")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per contender run")
    ap.add_argument("--json", help="write raw results here")
    ap.add_argument("--write", help="replace the data_loader section of this markdown file")
    ap.add_argument("--from-json", help="re-render the table (and --write) from a --json file of an earlier run, "
                    "keeping the rows selected by --cases/--contenders; runs nothing")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))), flush=True)
        return 0

    cases = [c for c in args.cases.split(",") if c]
    wanted = [c for c in args.contenders.split(",") if c]
    for c in cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}")
    for c in wanted:
        if c not in CONTENDERS:
            ap.error(f"unknown contender {c!r}")
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        report.pop("runs", None)
        report["results"] = [r for r in report["results"] if r["case"] in cases and r["contender"] in wanted]
        print(_table_text(report["results"]))
        if args.write:
            _write_markdown(Path(args.write), report)
        return 0
    data_dir = args.data_dir or _default_data_dir()
    t_start = time.perf_counter()
    d, meta = ensure_data(data_dir, args.entries)
    print(f"data: {d} ({meta['writer']}-written, made in {meta.get('make_s', 0):.1f} s)", flush=True)
    have_root = _root_available()
    have_ml4ep = importlib.util.find_spec("ml4ep") is not None and importlib.util.find_spec("ml4ep.data") is not None

    plan = [(case, name) for case in cases for name in contenders_for(case) if name in wanted]
    runs: dict[tuple[str, str], list[dict]] = {p: [] for p in plan}
    work = Path(tempfile.mkdtemp(prefix="ml4ep-dl-bench-"))
    from ml4ep.bench.progress import progress, write  # here: not in the workers, whose memory is measured

    bar = progress(total=args.repeats * len(plan), desc="data_loader")
    for r in range(args.repeats):
        order = plan if r % 2 == 0 else plan[::-1]
        for case, name in order:
            bar.set_postfix_str(f"{case} {name}, round {r + 1}")
            if name.startswith("rdl-") and not have_root:
                runs[(case, name)].append({"skipped": "not installed (import ROOT failed)"})
                bar.update()
                continue
            if name == "ml4ep" and not have_ml4ep:
                runs[(case, name)].append({"skipped": "ml4ep.data not importable yet"})
                bar.update()
                continue
            spec = {"contender": name, "case": case, "path": str(d / CASES[case][0]), "batch": args.batch_size,
                    "entries": args.entries, "stream": str(work / "stream.npy"), "sizes": str(work / "sizes.npy")}
            for p in ("stream", "sizes"):
                Path(spec[p]).unlink(missing_ok=True)
            res = spawn(spec, args.timeout)
            if "epoch2_s" in res and name != "raw":
                stream = np.load(spec["stream"])
                sizes = np.load(spec["sizes"]) if Path(spec["sizes"]).exists() else None
                res["quality"] = shuffle_quality(stream, sizes, args.entries)
            elif "epoch2_s" in res:
                stream = np.load(spec["stream"])
                res["quality"] = {"exactly_once": bool(np.array_equal(stream, np.arange(args.entries)))}
            runs[(case, name)].append(res)
            write(f"[{r + 1}/{args.repeats}] " + _fmt_run(case, name, res))
            bar.update()
    bar.close()

    results = []
    for case, name in plan:
        s = summarise(runs[(case, name)], args.entries, CASES[case][2])
        results.append({"case": case, "contender": name, **s})
    total_s = time.perf_counter() - t_start
    print()
    print(_table_text(results))
    print(f"\ntotal {total_s:.0f} s")
    report = {"machine": _machine(), "entries": args.entries, "batch": args.batch_size, "repeats": args.repeats,
              "data": meta, "results": results, "total_s": total_s,
              "command": "python benchmarks/data_loader.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if args.json:
        Path(args.json).write_text(json.dumps({**report, "runs": {f"{c}/{n}": v for (c, n), v in runs.items()}},
                                              indent=1, default=str))
    if args.write:
        _write_markdown(Path(args.write), report)
    return 0


# --------------------------------------------------------------------------------------------- output


def _fmt_run(case: str, name: str, r: dict) -> str:
    head = f"{case:<13} {name:<14}"
    if "epoch2_s" not in r:
        return head + " " + (f"skipped: {r['skipped']}" if "skipped" in r else f"error: {r.get('error')}")
    q = r.get("quality", {})
    rate = r["epoch2_entries"] / r["epoch2_s"] / 1e6
    extra = ""
    if "pearson" in q:
        extra = (f" r={q['pearson']:+.3f} rho={q['spearman']:+.3f} regions={q.get('regions_per_batch', float('nan')):.1f}"
                 f" once={'yes' if q['exactly_once'] else 'NO'}")
    return (f"{head} {rate:6.2f} M/s  setup {r['setup_s']:5.2f} s  first {r['first_batch_s']:5.2f} s  "
            f"peak {r['peak_rss_mb']:6.0f} MB  cpu/wall {r['epoch2_cpu_s'] / r['epoch2_s']:.2f}{extra}")


def _f(v, fmt="{:.2f}"):
    return fmt.format(v) if isinstance(v, (int, float)) and v == v else "-"


def _table_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        if r["status"] != "ok":
            rows.append([r["case"], r["contender"], r["status"]] + [""] * 10)
            continue
        shuffled = r["contender"] != "raw"
        once = "yes" if r["exactly_once"] else f"no ({r['missing']} missing, {r['duplicated']} dup.)"
        rows.append([
            r["case"], r["contender"],
            _f(r["entries_per_s"] / 1e6 if r["entries_per_s"] else None),
            _f(r["mb_per_s"], "{:.0f}"),
            _f(r["setup_s"]), _f(r["first_batch_s"]) if shuffled else "-",
            f"{_f(r['peak_rss_mb'], '{:.0f}')} ({_f(r['loader_mb'], '{:.0f}')})",
            _f(r["cpu_per_wall"]),
            _f(r["pearson"], "{:+.3f}") if shuffled else "file order",
            _f(r["spearman"], "{:+.3f}") if shuffled else "-",
            _f(r["regions_per_batch"], "{:.1f}") if shuffled else "-",
            once if shuffled else "-",
            _f(r["import_s"]),
        ])
    return rows


HEADER = ["case", "contender", "M entries/s", "MB/s", "set-up s", "1st batch s", "peak RSS MB (loader)", "CPU/wall",
          "Pearson", "Spearman", "regions/batch", "each once", "import s"]


def _table_text(results: list[dict]) -> str:
    rows = [HEADER] + _table_rows(results)
    widths = [max(len(str(row[i])) for row in rows if i < len(row)) for i in range(len(HEADER))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows)


def _machine() -> dict:
    cpu = cpu_model()
    versions = {}
    for mod in ("uproot", "h5py", "pyarrow", "awkward"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = "not installed"
    versions["ROOT"] = "not installed"
    if _root_available():
        try:
            versions["ROOT"] = str(_import_root().gROOT.GetVersion())
        except Exception as exc:  # a broken install is reported, not fatal
            versions["ROOT"] = f"import failed ({type(exc).__name__})"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "versions": versions,
            "date": datetime.date.today().isoformat()}


def _targets(results: list[dict]) -> list[str]:
    by = {(r["case"], r["contender"]): r for r in results}
    lines = []

    def rate(case, name):
        r = by.get((case, name))
        return r["entries_per_s"] if r and r["status"] == "ok" else None

    def glob_ok(case):
        r = by[(case, "ml4ep")]
        return (r.get("regions_per_batch") or 0) >= 0.9 * REGIONS and abs(r.get("spearman") or 1) < 0.05

    checks = []
    for case, need in [("flat-zlib", 1e6), ("flat-lz4", 4e6), ("flat-none", 4e6), ("flat-hdf5", 4e6),
                       ("flat-parquet", 4e6)]:
        v = rate(case, "ml4ep")
        if v is not None:
            checks.append(f"{case} {v / 1e6:.2f}M/s (target {need / 1e6:.0f}M, global shuffle: "
                          f"{'yes' if glob_ok(case) else 'no'}) {'PASS' if v >= need and glob_ok(case) else 'FAIL'}")
    fb = [(r["case"], r["first_batch_s"]) for r in results if r["contender"] == "ml4ep" and r["status"] == "ok"]
    if fb:
        worst = max(fb, key=lambda t: t[1])
        checks.append(f"first batch <= {worst[1]:.2f} s ({worst[0]}; target < 1 s) {'PASS' if worst[1] < 1 else 'FAIL'}")
    v, a = rate("vector", "ml4ep"), rate("vector", "rdl-stream")
    if v is not None and a is not None:
        checks.append(f"vector {v / 1e6:.2f}M/s vs RDataLoader streaming {a / 1e6:.2f}M/s "
                      f"{'PASS' if v >= a else 'FAIL'}")
    if checks:
        lines += ["", "Targets for ml4ep: " + "; ".join(checks) + "."]
    return lines


def _write_markdown(path: Path, report: dict) -> None:
    m = report["machine"]
    v = m["versions"]
    meta = report["data"]
    files = meta.get("files", {})

    def fdesc(key):
        info = files.get(key, {})
        cl = f" in {info['clusters']} cluster{'s' if info['clusters'] != 1 else ''}" if "clusters" in info else ""
        return f"{info.get('mb', float('nan')):.0f} MB{cl}"

    lines = [
        "### BatchLoader throughput (`benchmarks/data_loader.py`)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; {m['date']}; Python {m['python']}, ROOT {v['ROOT']}, "
        f"uproot {v['uproot']}, h5py {v['h5py']}, pyarrow {v['pyarrow']}. Command: `{report['command']}` "
        f"(took {report['total_s'] / 60:.1f} min).",
        "",
        f"Data: {report['entries']:,} entries x 20 float32 columns (half with 12-bit mantissas) + `index`, "
        f"written by {meta.get('writer')}: "
        f"TTree ZLIB-1 {fdesc('zlib.root')}, LZ4-4 {fdesc('lz4.root')}, uncompressed {fdesc('none.root')}; "
        f"HDF5 (64k chunks) {fdesc('flat.h5')}; Parquet (pyarrow defaults: snappy, dictionary; 100k row groups) {fdesc('flat.parquet')}; vector case (ZLIB-1, `jet_pt` 0..12 per event "
        f"padded to {VEC_MAX} + 3 scalars) {fdesc('vector.root')}. Files in the page cache.",
        "",
        f"Batches of {report['batch']}, shuffle on, one thread where it applies; epoch 2 timed; medians of "
        f"{report['repeats']} alternating rounds, each contender in its own process. MB/s counts the float features "
        f"(80 B/entry; 44 B/entry for the padded vector case). Set-up = building the loader; 1st batch = from the "
        f"start of the set-up to the first batch of epoch 1. Peak RSS is the process's `VmHWM`, in brackets the "
        f"part above the process after its imports. CPU/wall > 1 means more than one busy thread. Shuffle "
        f"quality over epoch 2: correlation of file position with stream position (0 is good), distinct regions "
        f"(of {REGIONS}) per batch ({REGIONS} is a global shuffle), each entry exactly once. `raw` is the I/O bound: "
        f"one read of all columns into NumPy arrays, no stacking, no batches.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    for row in _table_rows(report["results"]):
        lines.append("| " + " | ".join(row) + " |")
    lines += _targets(report["results"])
    if not any(r["contender"] == "ml4ep" for r in report["results"]):
        lines += ["", "ml4ep rows: not in this run (anchors only)."]
    rdl_base = _median([r.get("base_rss_mb") for r in report["results"] if r["contender"].startswith("rdl-")])
    base_txt = f"; `import ROOT` alone brings a process to {rdl_base:.0f} MB RSS" if rdl_base else ""
    lines += ["", "RDataLoader: float32 for every column (the int64 `index` target too, exact below 2^24 entries); "
              "y comes as (batch, 1); it runs its own I/O thread (CPU/wall shows how much of it overlaps)"
              f"{base_txt}; streaming loads whole TTree clusters, shuffles inside what it loaded and shuffles the "
              "order of the clusters, so its shuffle quality depends on the cluster size; set-up includes cling "
              "compiling its templated engine; with `drop_remainder=False` the last batch is short (no padding in "
              "`as_numpy`), the default `drop_remainder=True` drops the remainder."]
    write_section(path, "data_loader", lines, heading="## ml4ep.data")


if __name__ == "__main__":
    sys.exit(main())
