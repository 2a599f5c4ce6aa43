"""``ml4ep fastsim evaluate``: every CaloChallenge metric of a generated sample against a reference sample.

Pipeline, streaming the showers in chunks (memory bounded by the chunk plus the per-shower high-level features):

1. reference, pass 1: high-level features (``features.compute``) of every chunk, the largest voxel, the mean
   shower;
2. histogram edges from the reference (``features.binnings``);
3. reference, pass 2: the histograms (the voxel spectrum needs the edges, hence the second pass);
   generated, one pass: features, histograms, mean shower;
4. separation powers per histogram; FPD and KPD on the classifier's high-level inputs; the classifiers
   (low- and high-level inputs), when asked for;
5. ``outdir/metrics.json`` and the plots (``report.write``).

Thresholding (the readout threshold of the geometry) is applied to both samples before anything else.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from ..errors import Ml4epError
from . import features, io
from .geometry import get

log = logging.getLogger(__name__)

METRICS = ("hist", "fpd", "kpd", "cls-low", "cls-high")
DEFAULT_METRICS = METRICS


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


def _slice_hlf(hlf: features.HLF, sl: slice) -> features.HLF:
    fields = {f.name: (getattr(hlf, f.name)[sl] if isinstance(getattr(hlf, f.name), np.ndarray)
                       else getattr(hlf, f.name)) for f in dataclasses.fields(hlf)}
    return features.HLF(**fields)


def _pass(path, geo, chunk_size: int, edges=None, hlf: features.HLF | None = None, low_level: bool = False,
          max_showers: int | None = None) -> Sample:
    """One pass over a file: features (unless given), histograms (when ``edges``), mean shower, max voxel."""
    parts, lows = [], []
    total = np.zeros(geo.n_voxels, np.float64)
    max_voxel, n = 0.0, 0
    hist = features.Histograms(edges) if edges is not None else None
    for e_inc, showers in io.iter_chunks(path, geo, chunk_size=chunk_size, stop=max_showers):
        thr = features.threshold(showers, geo)
        part = features.compute(e_inc, thr, geo) if hlf is None else _slice_hlf(hlf, slice(n, n + len(thr)))
        if hlf is None:
            parts.append(part)
        if hist is not None:
            hist.fill(part, thr)
        if low_level:
            lows.append(features.low_level_inputs(e_inc, thr).astype(np.float32))
        total += thr.sum(axis=0, dtype=np.float64)
        max_voxel = max(max_voxel, float(thr.max(initial=0.0)))
        n += len(thr)
    if n == 0:
        raise EvaluationError(f"{path}: no showers")
    return Sample(hlf=hlf if hlf is not None else features.HLF.concatenate(parts), hist=hist,
                  mean_shower=total / n, n=n, max_voxel=max_voxel,
                  low_level=np.concatenate(lows) if low_level else None)


def evaluate(reference, generated, geometry, outdir=None, metrics=DEFAULT_METRICS, chunk_size: int = 10000,
             classifier: dict | None = None, fpd_kpd: dict | None = None, seed: int = 0, plots: bool = True,
             max_showers: int | None = None) -> dict:
    """Compares two CaloChallenge HDF5 files; returns the metrics (and writes ``outdir/metrics.json`` and the
    plots when ``outdir`` is given).

    ``metrics``: any of ``hist`` (separation powers), ``fpd``, ``kpd``, ``cls-low``, ``cls-high``.
    ``classifier``: keyword arguments of ``metrics.classifier_metric`` (e.g. ``{"hidden": 256, "epochs": 10}``).
    ``fpd_kpd``: keyword arguments of ``metrics.fpd`` / ``metrics.kpd`` sample sizes, e.g. for small samples.
    """
    from . import metrics as m

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
    ref = _pass(reference, geo, chunk_size, low_level=low, max_showers=max_showers)
    edges = features.binnings(geo, ref.hlf, ref.max_voxel)
    timing["reference_features_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    if "hist" in chosen or plots:
        ref.hist = _pass(reference, geo, chunk_size, edges=edges, hlf=ref.hlf, max_showers=max_showers).hist
    gen = _pass(generated, geo, chunk_size, edges=edges, low_level=low, max_showers=max_showers)
    timing["histograms_and_generated_features_s"] = time.perf_counter() - t1

    result: dict = {"geometry": geo.name, "reference": str(reference), "generated": str(generated),
                    "n_reference": ref.n, "n_generated": gen.n}
    if "hist" in chosen:
        sp = features.separation_powers(ref.hist, gen.hist)
        result["separation_power"] = sp
        result["separation_power_summary"] = _summary(sp)
    hi_ref = hi_gen = None
    if any(c in chosen for c in ("fpd", "kpd", "cls-high")):
        hi_ref, hi_gen = features.high_level_inputs(ref.hlf), features.high_level_inputs(gen.hlf)
    if "fpd" in chosen or "kpd" in chosen:
        t2 = time.perf_counter()
        a, b = m.normalise(hi_ref, hi_gen)
        opts = dict(fpd_kpd or {})
        if "fpd" in chosen:
            v, e = m.fpd(a, b, seed=seed, **{k: v for k, v in opts.items() if k in _FPD_KEYS})
            result["fpd"] = {"value": v, "error": e, "value_x1e3": v * 1e3, "error_x1e3": e * 1e3}
        if "kpd" in chosen:
            v, e = m.kpd(a, b, seed=seed, **{k: v for k, v in opts.items() if k in _KPD_KEYS})
            result["kpd"] = {"value": v, "error": e, "value_x1e3": v * 1e3, "error_x1e3": e * 1e3}
        timing["fpd_kpd_s"] = time.perf_counter() - t2
    if "cls-high" in chosen:
        t3 = time.perf_counter()
        result["classifier_high"] = m.classifier_metric(hi_ref, hi_gen, seed=seed, **(classifier or {}))
        timing["classifier_high_s"] = time.perf_counter() - t3
    if low:
        t3 = time.perf_counter()
        result["classifier_low"] = m.classifier_metric(ref.low_level, gen.low_level, seed=seed, **(classifier or {}))
        timing["classifier_low_s"] = time.perf_counter() - t3
    result["timing"] = timing
    if outdir is not None:
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        if plots:
            t4 = time.perf_counter()
            from . import report

            result["plots"] = report.write(out, geo, ref, gen, edges, result)
            timing["plots_s"] = time.perf_counter() - t4
        timing["total_s"] = time.perf_counter() - t0
        (out / "metrics.json").write_text(json.dumps(_jsonable(result), indent=1, sort_keys=True))
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


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x
