"""``ml4ep fastsim evaluate``: every CaloChallenge metric of a generated sample against a reference sample.

Pipeline, streaming the showers in chunks (memory bounded by a chunk per worker plus the per-shower high-level
features, about 3 KB per ds2 shower):

1. reference, one pass: the readout threshold, high-level features (``features.compute``) of every chunk, the
   largest voxel, the mean shower; the voxels above threshold are spilled to a temporary file (their histogram
   needs edges that depend on the largest one);
2. histogram edges from the reference (``features.binnings``), the reference's histograms (features, and the
   voxel spectrum from the spill);
3. generated, one pass: threshold, features, histograms, mean shower;
4. separation powers per histogram; FPD and KPD on the classifier's high-level inputs; the classifiers
   (low- and high-level inputs), when asked for;
5. ``outdir/metrics.json`` and the plots (``report.write``).

The passes split the files' rows among ``workers`` processes (default: the CPU count, at most 8).
Thresholding (the readout threshold of the geometry) is applied to both samples before anything else.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from ..bench.progress import progress as progress_bar
from ..errors import Ml4epError
from . import features, io
from .geometry import get

log = logging.getLogger(__name__)

METRICS = ("hist", "fpd", "kpd", "cls-low", "cls-high")
DEFAULT_METRICS = METRICS
TASK_ROWS = 20000  # at most this many rows per worker task (read chunk by chunk)


class EvaluationError(Ml4epError, ValueError):
    """The two samples cannot be compared (different voxel counts, sizes the classifier needs equal)."""


@dataclasses.dataclass
class Sample:
    """What one pass over a sample keeps: its features, histograms, mean shower and, for the low-level
    classifier, its inputs."""

    hlf: features.HLF
    hist: features.Histograms | None
    mean_shower: np.ndarray
    n: int
    max_voxel: float
    low_level: np.ndarray | None = None


def _scan(path, geo, start: int, stop: int, chunk_size: int, voxel_edges, spill: str | None, low_level: bool):
    """One worker task: rows [start, stop) of ``path``. Returns the features, the voxel counts (when the edges
    are known) or the spill file of voxel values (when not), the shower sum, the largest voxel, the low-level
    classifier inputs (when asked)."""
    parts, lows = [], []
    total = np.zeros(geo.n_voxels, np.float64)
    counts = np.zeros(len(voxel_edges) - 1, np.int64) if voxel_edges is not None else None
    spilled = []
    max_voxel = 0.0
    for e_inc, showers in io.iter_chunks(path, geo, chunk_size=chunk_size, start=start, stop=stop):
        showers = features.threshold(showers, geo, in_place=True)  # the chunk just read is ours
        parts.append(features.compute(e_inc, showers, geo))
        vals = showers[showers > 0]
        if counts is not None:
            counts += features.voxel_histogram(vals, voxel_edges)
        if spill is not None:
            spilled.append(vals)
        if low_level:
            lows.append(features.low_level_inputs(e_inc, showers).astype(np.float32))
        total += showers.sum(axis=0, dtype=np.float64)
        max_voxel = max(max_voxel, float(vals.max(initial=0.0)))
    if spill is not None:
        np.save(spill, np.concatenate(spilled) if spilled else np.zeros(0, np.float32))
    return (features.HLF.concatenate(parts), counts, total, max_voxel,
            np.concatenate(lows) if low_level else None)


def _spill_counts(spill: str, edges) -> np.ndarray:
    return features.voxel_histogram(np.load(spill, mmap_mode="r"), edges)


def _pool(workers: int):
    # fork where it is safe and cheap (Linux: the workers need no re-import); spawn elsewhere
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def _run(pool, fn, tasks, done=None):
    """``fn(*task)`` for every task (in the pool when there is one), in order; ``done(task)`` after each one."""
    if pool is None:
        results = []
        for t in tasks:
            results.append(fn(*t))
            if done is not None:
                done(t)
        return results
    futures = {pool.submit(fn, *t): t for t in tasks}
    if done is not None:
        for f in as_completed(futures):
            f.result()  # a task's error now, not after the others
            done(futures[f])
    return [f.result() for f in futures]


def _pass(pool, path, geo, n: int, chunk_size: int, edges=None, spill_dir: str | None = None,
          low_level: bool = False, label: str = "showers", progress: bool = False) -> Sample:
    """One pass over the first ``n`` showers of a file, split into worker tasks (``progress``: a bar in showers,
    named ``label``)."""
    # about four tasks per worker keeps them all busy to the end
    workers = pool._max_workers if pool is not None else 1
    rows = max(min(TASK_ROWS, -(-n // (4 * workers))), 1000)
    bounds = list(range(0, n, rows)) + [n]
    tasks = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        spill = os.path.join(spill_dir, f"voxels_{k}.npy") if spill_dir is not None else None
        tasks.append((path, geo, a, b, chunk_size, None if edges is None else edges["voxel"], spill, low_level))
    if not tasks:
        raise EvaluationError(f"{path}: no showers")
    with progress_bar(total=n, desc=label, unit="shower", enabled=progress, leave=False) as bar:
        results = _run(pool, _scan, tasks, done=lambda t: bar.update(t[3] - t[2]))
    hlf = features.HLF.concatenate([r[0] for r in results])
    hist = None
    if edges is not None:
        hist = features.Histograms(edges)
        hist.fill(hlf)
        hist.counts["voxel"] += sum(r[1] for r in results)
    return Sample(hlf=hlf, hist=hist, mean_shower=sum(r[2] for r in results) / n, n=n,
                  max_voxel=max(r[3] for r in results),
                  low_level=np.concatenate([r[4] for r in results]) if low_level else None)


def evaluate(reference, generated, geometry, outdir=None, metrics=DEFAULT_METRICS, chunk_size: int = 10000,
             classifier: dict | None = None, fpd_kpd: dict | None = None, seed: int = 0, plots: bool = True,
             max_showers: int | None = None, workers: int | None = None, progress: bool = False) -> dict:
    """Compares two CaloChallenge HDF5 files; returns the metrics (and writes ``outdir/metrics.json`` and the
    plots when ``outdir`` is given).

    ``metrics``: any of ``hist`` (separation powers), ``fpd``, ``kpd``, ``cls-low``, ``cls-high``.
    ``classifier``: keyword arguments of ``metrics.classifier_metric`` (e.g. ``{"hidden": 256, "epochs": 10}``).
    ``fpd_kpd``: keyword arguments of ``metrics.fpd`` / ``metrics.kpd`` sample sizes, e.g. for small samples.
    ``workers``: processes reading and computing features (default: the CPU count, at most 8).
    ``progress``: bars (on stderr, when it is a terminal) over the stages: the showers read of each sample, the
    FPD and KPD batches, each classifier's epochs.
    """
    geo = get(geometry)
    chosen = [x for x in (metrics or DEFAULT_METRICS)]
    unknown = sorted(set(chosen) - set(METRICS))
    if unknown:
        raise EvaluationError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    t0 = time.perf_counter()
    info_ref, info_gen = io.info(reference), io.info(generated)
    for inf in (info_ref, info_gen):
        if inf["n_voxels"] != geo.n_voxels:
            raise EvaluationError(f"{inf['path']}: {inf['n_voxels']} voxels, but geometry {geo.name} has "
                                  f"{geo.n_voxels}")
    n_ref = min(info_ref["n_showers"], max_showers or info_ref["n_showers"])
    n_gen = min(info_gen["n_showers"], max_showers or info_gen["n_showers"])
    if any(c.startswith("cls") for c in chosen) and n_ref != n_gen:
        raise EvaluationError(f"the classifier metrics need as many generated showers as reference showers: "
                              f"{generated} has {n_gen}, {reference} has {n_ref}")
    low = "cls-low" in chosen
    timing = {}
    n_workers = max(1, min(int(workers or os.cpu_count() or 1), 8, -(-max(n_ref, n_gen) // TASK_ROWS)))
    pool = _pool(n_workers) if n_workers > 1 else None
    try:
        with tempfile.TemporaryDirectory(prefix="ml4ep-evaluate-") as spill_dir:
            ref = _pass(pool, reference, geo, n_ref, chunk_size, spill_dir=spill_dir, low_level=low,
                        label="reference", progress=progress)
            edges = features.binnings(geo, ref.hlf, ref.max_voxel)
            ref.hist = features.Histograms(edges)
            ref.hist.fill(ref.hlf)
            spills = sorted(Path(spill_dir).glob("voxels_*.npy"))
            ref.hist.counts["voxel"] += sum(_run(pool, _spill_counts, [(str(f), edges["voxel"]) for f in spills]))
            timing["reference_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            gen = _pass(pool, generated, geo, n_gen, chunk_size, edges=edges, low_level=low, label="generated",
                        progress=progress)
            timing["generated_s"] = time.perf_counter() - t1
        return _metrics(pool, chosen, geo, reference, generated, ref, gen, edges, outdir, plots, classifier,
                        fpd_kpd, seed, timing, t0, progress)
    finally:
        if pool is not None:
            pool.shutdown()


def _metrics(pool, chosen, geo, reference, generated, ref: Sample, gen: Sample, edges, outdir, plots, classifier,
             fpd_kpd, seed, timing, t0, progress: bool = False) -> dict:
    from . import metrics as m
    from . import report

    result: dict = {"geometry": geo.name, "reference": str(reference), "generated": str(generated),
                    "n_reference": ref.n, "n_generated": gen.n}
    if "hist" in chosen:
        sp = features.separation_powers(ref.hist, gen.hist)
        result["separation_power"] = sp
        result["separation_power_summary"] = _summary(sp)
    out = Path(outdir) if outdir is not None else None
    plotting = None
    if out is not None and plots:  # drawn by a worker while FPD, KPD and the classifiers run here
        out.mkdir(parents=True, exist_ok=True)
        t4 = time.perf_counter()
        args = (out, geo, ref.hist, gen.hist, ref.mean_shower, gen.mean_shower, edges,
                result.get("separation_power", {}))
        plotting = pool.submit(report.write_plots, *args) if pool is not None else report.write_plots(*args)
        timing["plots_s"] = time.perf_counter() - t4
    hi_ref = hi_gen = None
    if any(c in chosen for c in ("fpd", "kpd", "cls-high")):
        hi_ref, hi_gen = features.high_level_inputs(ref.hlf), features.high_level_inputs(gen.hlf)
    if "fpd" in chosen or "kpd" in chosen:
        t2 = time.perf_counter()
        a, b = m.normalise(hi_ref, hi_gen)
        opts = dict(fpd_kpd or {})
        if "fpd" in chosen:
            v, e = m.fpd(a, b, seed=seed, progress=progress, **{k: v for k, v in opts.items() if k in _FPD_KEYS})
            result["fpd"] = {"value": v, "error": e, "value_x1e3": v * 1e3, "error_x1e3": e * 1e3}
        if "kpd" in chosen:
            v, e = m.kpd(a, b, seed=seed, progress=progress, **{k: v for k, v in opts.items() if k in _KPD_KEYS})
            result["kpd"] = {"value": v, "error": e, "value_x1e3": v * 1e3, "error_x1e3": e * 1e3}
        timing["fpd_kpd_s"] = time.perf_counter() - t2
    if "cls-high" in chosen:
        t3 = time.perf_counter()
        result["classifier_high"] = m.classifier_metric(hi_ref, hi_gen, seed=seed, **(classifier or {}),
                                                        progress="classifier, high-level" if progress else False)
        timing["classifier_high_s"] = time.perf_counter() - t3
    if "cls-low" in chosen:
        t3 = time.perf_counter()
        result["classifier_low"] = m.classifier_metric(ref.low_level, gen.low_level, seed=seed, **(classifier or {}),
                                                       progress="classifier, low-level" if progress else False)
        timing["classifier_low_s"] = time.perf_counter() - t3
    result["timing"] = timing
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if plotting is not None:
            t5 = time.perf_counter()
            result["plots"] = plotting if isinstance(plotting, list) else plotting.result()
            timing["plots_wait_s"] = time.perf_counter() - t5
            report.write_index(out, result, result["plots"])
        timing["total_s"] = time.perf_counter() - t0
        (out / "metrics.json").write_text(json.dumps(jsonable(result), indent=1, sort_keys=True))
        log.info("wrote %s", out / "metrics.json")
    timing["total_s"] = time.perf_counter() - t0
    return result


_FPD_KEYS = ("min_samples", "max_samples", "num_batches", "num_points")
_KPD_KEYS = ("num_batches", "batch_size")


def _summary(sp: dict[str, float]) -> dict[str, float]:
    """Mean separation power per feature family (``e_layer_3`` -> ``e_layer``)."""
    groups: dict[str, list[float]] = {}
    for name, v in sp.items():
        head, _, tail = name.rpartition("_")
        key = head if tail.isdigit() else name
        groups.setdefault(key, []).append(v)
    return {k: float(np.mean(v)) for k, v in sorted(groups.items())}


def jsonable(x):
    """``x`` with NumPy values as Python ones and non-finite floats as None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
