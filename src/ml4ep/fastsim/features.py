"""High-level shower features, classifier inputs and separation powers in the CaloChallenge convention.

Per shower and layer: the layer energy, centres of energy and widths along the challenge's "eta"
(``r_mid cos alpha``) and "phi" (``r_mid sin alpha``) axes (alpha-binned layers only) and along r, and the
sparsity. Voxels below the geometry's readout threshold are zeroed before anything is computed.
Histograms are filled chunk by chunk, so samples larger than memory can be compared::

    geo = get("ds2")
    ref = compute(e_ref, showers_ref, geo)
    edges = binnings(geo, ref, max_voxel=threshold(showers_ref, geo).max())
    h_ref, h_gen = Histograms(edges), Histograms(edges)
    h_ref.fill(ref); h_gen.fill(compute(e_gen, showers_gen, geo))
    s = separation_powers(h_ref, h_gen)   # {"e_ratio": ..., "e_layer_0": ..., ...}
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, fields

import numpy as np

from ..errors import Ml4epError
from .geometry import Geometry, get

log = logging.getLogger(__name__)

__all__ = ["FeatureError", "HLF", "Histograms", "binnings", "compute", "feature_values", "high_level_inputs",
           "low_level_inputs", "separation_power", "separation_powers", "threshold"]


class FeatureError(Ml4epError, ValueError):
    """Showers, features or histograms are malformed or inconsistent."""


# ---------------------------------------------------------------------------------------------------------
# high-level features
# ---------------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class HLF:
    """Per-shower high-level features of one sample (float64; lengths in mm, energies in MeV).

    Arrays over layers have one column per layer (``geometry.layers`` order); the eta/phi arrays have one
    column per alpha-binned layer (``geometry.alpha_layers`` order).
    """

    e_inc: np.ndarray  # (N,)
    e_tot: np.ndarray  # (N,)
    e_layer: np.ndarray  # (N, L)
    ec_eta: np.ndarray  # (N, La)
    ec_phi: np.ndarray  # (N, La)
    width_eta: np.ndarray  # (N, La)
    width_phi: np.ndarray  # (N, La)
    ec_r: np.ndarray  # (N, L)
    width_r: np.ndarray  # (N, L)
    sparsity: np.ndarray  # (N, L)
    geometry: Geometry

    def __len__(self) -> int:
        return len(self.e_inc)

    @staticmethod
    def concatenate(parts: list[HLF]) -> HLF:
        """One HLF from chunks of the same geometry, in order."""
        parts = list(parts)
        if not parts:
            raise FeatureError("HLF.concatenate: no parts given")
        geo = parts[0].geometry
        for i, p in enumerate(parts[1:], 1):
            if not _same_geometry(geo, p.geometry):
                raise FeatureError(f"HLF.concatenate: part {i} has geometry {p.geometry!r}, part 0 has {geo!r}")
        arrays = {f.name: np.concatenate([getattr(p, f.name) for p in parts], axis=0)
                  for f in fields(HLF) if f.name != "geometry"}
        return HLF(geometry=geo, **arrays)


def _same_geometry(a: Geometry, b: Geometry) -> bool:
    if a is b:
        return True
    if a.n_layers != b.n_layers or a.n_voxels != b.n_voxels:
        return False
    return all(la.id == lb.id and la.n_alpha == lb.n_alpha and np.array_equal(la.r_edges, lb.r_edges)
               for la, lb in zip(a.layers, b.layers))


def threshold(showers, geometry, value: float | None = None, in_place: bool = False) -> np.ndarray:
    """A copy of ``showers`` with every voxel below ``value`` (default: the geometry's readout threshold) set to 0;
    with ``in_place`` (a floating-point array the caller owns, e.g. a chunk just read) the array itself.

    Negative energies are always below a threshold >= 0 and are zeroed too. Integer input becomes float64.
    """
    geo = get(geometry)
    thr = float(geo.threshold if value is None else value)
    arr = np.asarray(showers)
    if arr.ndim == 0 or arr.shape[-1] != geo.n_voxels:
        raise FeatureError(f"threshold: showers must have {geo.n_voxels} voxels ({geo.name}) in their last axis, "
                           f"got shape {arr.shape}")
    if in_place and np.issubdtype(arr.dtype, np.floating) and arr is showers:
        np.copyto(arr, 0, where=arr < thr)
        return arr
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    out = np.array(arr, dtype=dtype, copy=True)
    out[out < thr] = 0
    return out


def _check_inputs(incident_energies, showers, geo: Geometry) -> tuple[np.ndarray, np.ndarray]:
    e_inc = np.asarray(incident_energies)
    showers = np.asarray(showers)
    if showers.ndim != 2 or showers.shape[1] != geo.n_voxels:
        raise FeatureError(f"showers must have shape (N, {geo.n_voxels}) for geometry {geo.name!r}, "
                           f"got {showers.shape}")
    if not (e_inc.ndim == 1 or (e_inc.ndim == 2 and e_inc.shape[1] == 1)):
        raise FeatureError(f"incident_energies must have shape (N, 1) or (N,), got {e_inc.shape}")
    e_inc = e_inc.reshape(-1).astype(np.float64)
    if len(e_inc) != len(showers):
        raise FeatureError(f"incident_energies has {len(e_inc)} entries but showers has {len(showers)}")
    if not np.all(np.isfinite(e_inc)) or np.any(e_inc <= 0):
        bad = int(np.flatnonzero(~(np.isfinite(e_inc) & (e_inc > 0)))[0])
        raise FeatureError(f"incident_energies must be finite and > 0 MeV; entry {bad} is {e_inc[bad]}")
    if not np.issubdtype(showers.dtype, np.number):
        raise FeatureError(f"showers must be numeric, got dtype {showers.dtype}")
    return e_inc, showers


class _LayerMoments:
    """Voxel coordinates as small matrices, so that energy-weighted sums become matrix products.

    Columns: r, r^2 and, for alpha-binned layers, eta, phi, eta^2, phi^2. Regular geometries (ds2, ds3) use
    one ``(n_alpha * n_r, 6)`` matrix for all layers; others one matrix per layer.
    """

    def __init__(self, geo: Geometry):
        self.slices = geo.layer_slices()
        self.alpha = [lay.n_alpha > 1 for lay in geo.layers]
        self.regular = geo.regular
        self.coords: list[np.ndarray] = []
        for sl, has_alpha in zip(self.slices, self.alpha):
            r = geo.r_centres[sl]
            cols = [r, r * r]
            if has_alpha:
                eta, phi = geo.eta_centres[sl], geo.phi_centres[sl]
                cols += [eta, phi, eta * eta, phi * phi]
            self.coords.append(np.stack(cols, axis=1).astype(np.float64))


_MOMENTS_CACHE: dict[tuple, _LayerMoments] = {}
_MOMENTS_CACHE_SIZE = 8


def _moments(geo: Geometry) -> _LayerMoments:
    """The coordinate matrices of a binning, cached by its content (``get(name)`` makes a new object each call)."""
    key = tuple((lay.id, lay.n_alpha, np.asarray(lay.r_edges, dtype=np.float64).tobytes()) for lay in geo.layers)
    hit = _MOMENTS_CACHE.get(key)
    if hit is None:
        if len(_MOMENTS_CACHE) >= _MOMENTS_CACHE_SIZE:
            _MOMENTS_CACHE.pop(next(iter(_MOMENTS_CACHE)))
        hit = _MOMENTS_CACHE[key] = _LayerMoments(geo)
    return hit


def _centre_width(s: np.ndarray, s2: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre ``sum(x E)/(sum E + 1e-16)`` and width ``sqrt(max(0, sum(x^2 E)/(sum E + 1e-16) - centre^2))``."""
    centre = s / (e + 1e-16)
    width = np.sqrt(np.maximum(0.0, s2 / (e + 1e-16) - centre * centre))
    return centre, width


_BLOCK_VALUES = 1 << 21  # voxels per float64 work block (16 MiB): keeps the work in cache-friendly pieces


def compute(incident_energies, showers, geometry) -> HLF:
    """High-level features of showers ``(N, n_voxels)`` in MeV, after zeroing voxels below the readout threshold.

    The input is never modified. Process large samples in chunks and join them with :meth:`HLF.concatenate`.
    """
    geo = get(geometry)
    e_inc, showers = _check_inputs(incident_energies, showers, geo)
    n, n_l, n_v = len(showers), geo.n_layers, geo.n_voxels
    mom = _moments(geo)
    thr = float(geo.threshold)
    # sums[:, l, :] = (E_l, sum r E, sum r^2 E, sum eta E, sum phi E, sum eta^2 E, sum phi^2 E); n_hit[:, l]
    sums = np.zeros((n, n_l, 7))
    n_hit = np.zeros((n, n_l), dtype=np.int64)
    block = max(1, min(n, _BLOCK_VALUES // n_v))
    buf = np.empty((block, n_v), dtype=np.float64)
    keep_buf = np.empty((block, n_v), dtype=bool)
    for start in range(0, n, block):
        stop = min(n, start + block)
        x = buf[: stop - start]
        np.copyto(x, showers[start:stop], casting="unsafe")  # a copy: thresholding never touches the input
        if not np.isfinite(x.sum()):
            bad = ~np.all(np.isfinite(x), axis=1)
            if np.any(bad):
                row = start + int(np.flatnonzero(bad)[0])
                raise FeatureError(f"showers: shower {row} has non-finite voxel energies")
        keep = keep_buf[: stop - start]
        np.greater_equal(x, thr, out=keep)
        np.multiply(x, keep, out=x)  # zero below threshold (values are finite here); much faster than a masked set
        if mom.regular:
            _, n_a, n_r = geo.shape
            x3 = x.reshape(stop - start, n_l, n_a * n_r)
            sums[start:stop, :, 0] = x3.sum(axis=2)
            k = mom.coords[0].shape[1]
            sums[start:stop, :, 1:1 + k] = x3 @ mom.coords[0]
            n_hit[start:stop] = np.count_nonzero(x3 > 0, axis=2)
        else:
            for il, (sl, coords) in enumerate(zip(mom.slices, mom.coords)):
                xl = x[:, sl]
                sums[start:stop, il, 0] = xl.sum(axis=1)
                sums[start:stop, il, 1:1 + coords.shape[1]] = xl @ coords
                n_hit[start:stop, il] = np.count_nonzero(xl > 0, axis=1)
    e_layer = sums[:, :, 0]
    ec_r, width_r = _centre_width(sums[:, :, 1], sums[:, :, 2], e_layer)
    n_per_layer = np.array([lay.n_voxels for lay in geo.layers], dtype=np.float64)
    sparsity = 1.0 - n_hit / n_per_layer
    al = np.asarray(geo.alpha_layers, dtype=np.int64)
    e_a = e_layer[:, al]
    ec_eta, width_eta = _centre_width(sums[:, al, 3], sums[:, al, 5], e_a)
    ec_phi, width_phi = _centre_width(sums[:, al, 4], sums[:, al, 6], e_a)
    return HLF(e_inc=e_inc, e_tot=e_layer.sum(axis=1), e_layer=np.ascontiguousarray(e_layer), ec_eta=ec_eta,
               ec_phi=ec_phi, width_eta=width_eta, width_phi=width_phi, ec_r=ec_r, width_r=width_r,
               sparsity=sparsity, geometry=geo)


# ---------------------------------------------------------------------------------------------------------
# classifier inputs
# ---------------------------------------------------------------------------------------------------------
def high_level_inputs(hlf: HLF) -> np.ndarray:
    """The cls-high vector ``(N, d)``: log10 E_inc, log10(E_l + 1e-8) (all layers), EC_eta/100, EC_phi/100,
    W_eta/100, W_phi/100 (alpha layers, each block over all of them), log10(E_tot + 1e-8), sparsity_l,
    EC_r/100, W_r/100 (all layers). d = 362 for ds2/ds3, 30 for ds1-photons."""
    if np.any(hlf.e_inc <= 0):
        raise FeatureError("high_level_inputs: incident energies must be > 0 MeV")
    return np.concatenate([
        np.log10(hlf.e_inc)[:, None], np.log10(hlf.e_layer + 1e-8),
        hlf.ec_eta / 100.0, hlf.ec_phi / 100.0, hlf.width_eta / 100.0, hlf.width_phi / 100.0,
        np.log10(hlf.e_tot + 1e-8)[:, None], hlf.sparsity, hlf.ec_r / 100.0, hlf.width_r / 100.0,
    ], axis=1)


def low_level_inputs(incident_energies, showers) -> np.ndarray:
    """The cls-low vector ``(N, 1 + n_voxels)``: ``[log10 E_inc, voxels / E_inc]``.

    No threshold is applied here: pass thresholded showers. Float32 showers give float32 output (memory).
    """
    showers = np.asarray(showers)
    e_inc = np.asarray(incident_energies, dtype=np.float64)
    if showers.ndim != 2:
        raise FeatureError(f"low_level_inputs: showers must be 2-D (N, n_voxels), got shape {showers.shape}")
    if e_inc.size != len(showers) or e_inc.ndim > 2:
        raise FeatureError(f"low_level_inputs: incident_energies (shape {e_inc.shape}) must give one energy per "
                           f"shower ({len(showers)} showers)")
    e_inc = e_inc.reshape(-1, 1)
    if not np.all(np.isfinite(e_inc) & (e_inc > 0)):
        raise FeatureError("low_level_inputs: incident_energies must be finite and > 0 MeV")
    dtype = np.result_type(showers.dtype, np.float32)
    out = np.empty((len(showers), showers.shape[1] + 1), dtype=dtype)
    out[:, 0] = np.log10(e_inc[:, 0])
    np.divide(showers, e_inc, out=out[:, 1:], casting="unsafe")
    return out


# ---------------------------------------------------------------------------------------------------------
# histograms and separation power
# ---------------------------------------------------------------------------------------------------------
def separation_power(h1, h2) -> float:
    """``1/2 sum_i (p_i - q_i)^2 / (p_i + q_i)`` with p, q the histograms normalised to unit sum; bins empty in
    both are skipped. 0 for equal shapes, 1 for disjoint ones; NaN (logged) when a histogram is empty."""
    p = np.asarray(h1, dtype=np.float64)
    q = np.asarray(h2, dtype=np.float64)
    if p.shape != q.shape:
        raise FeatureError(f"separation_power: histograms have different shapes {p.shape} and {q.shape}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))) or np.any(p < 0) or np.any(q < 0):
        raise FeatureError("separation_power: histogram contents must be finite and >= 0")
    sp, sq = p.sum(), q.sum()
    if sp <= 0 or sq <= 0:
        log.warning("separation_power: an empty histogram (sums %g, %g): result is NaN", sp, sq)
        return float("nan")
    p, q = p / sp, q / sq
    tot = p + q
    mask = tot > 0
    return float(0.5 * np.sum((p[mask] - q[mask]) ** 2 / tot[mask]))


def _histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` (last bin closed, values outside dropped) as int64; float32 values are
    compared with the float64 edges exactly."""
    return np.histogram(values, edges)[0].astype(np.int64)


def voxel_histogram(values, edges: np.ndarray) -> np.ndarray:
    """Counts of voxel energies (any shape; values outside the edges, e.g. zeros, dropped) in ``edges``, as
    ``Histograms.fill`` counts the ``voxel`` spectrum (the counts of ``np.histogram``)."""
    return _histogram(np.asarray(values).reshape(-1), np.asarray(edges, dtype=np.float64))


_NAME = re.compile(r"^(e_layer|ec_eta|ec_phi|ec_r|width_eta|width_phi|width_r|sparsity)_(-?\d+)$")
_ALPHA_FEATURES = ("ec_eta", "ec_phi", "width_eta", "width_phi")


def feature_values(hlf: HLF, name: str) -> np.ndarray:
    """The per-shower values histogrammed under ``name`` (see :func:`binnings`; not ``voxel``)."""
    if name == "e_ratio":
        return hlf.e_tot / hlf.e_inc
    m = _NAME.match(name)
    if m is None:
        raise FeatureError(f"unknown histogram {name!r}: expected e_ratio, voxel or <feature>_<layer id> with "
                           f"feature one of e_layer, ec_eta, ec_phi, ec_r, width_eta, width_phi, width_r, sparsity")
    feat, lid = m.group(1), int(m.group(2))
    geo = hlf.geometry
    ids = geo.layer_ids
    if lid not in ids:
        raise FeatureError(f"histogram {name!r}: geometry {geo.name!r} has no layer {lid} (layers {ids})")
    pos = ids.index(lid)
    if feat in _ALPHA_FEATURES:
        if pos not in geo.alpha_layers:
            raise FeatureError(f"histogram {name!r}: layer {lid} of {geo.name!r} is not binned in alpha")
        pos = geo.alpha_layers.index(pos)
    return getattr(hlf, feat)[:, pos]


class Histograms:
    """The challenge's histograms of one sample, filled chunk by chunk.

    ``edges`` maps histogram names (see :func:`binnings`) to bin edges; ``counts`` holds the int64 counts.
    """

    def __init__(self, edges: dict[str, np.ndarray]):
        self.edges: dict[str, np.ndarray] = {}
        for name, e in edges.items():
            arr = np.asarray(e, dtype=np.float64)
            if arr.ndim != 1 or len(arr) < 2 or not np.all(np.isfinite(arr)) or np.any(np.diff(arr) <= 0):
                raise FeatureError(f"histogram {name!r}: edges must be a finite increasing 1-D array of length "
                                   f">= 2, got {arr if arr.size < 10 else arr.shape}")
            self.edges[name] = arr
        self.counts: dict[str, np.ndarray] = {k: np.zeros(len(e) - 1, dtype=np.int64) for k, e in self.edges.items()}
        self.n_showers = 0

    def fill(self, hlf: HLF, showers_thresholded=None) -> None:
        """Add one chunk; the ``voxel`` spectrum is filled only when the (thresholded) showers are given."""
        for name, e in self.edges.items():
            if name == "voxel":
                continue
            self.counts[name] += _histogram(feature_values(hlf, name), e)
        if showers_thresholded is not None and "voxel" in self.edges:
            s = np.asarray(showers_thresholded)
            if s.shape != (len(hlf), hlf.geometry.n_voxels):
                raise FeatureError(f"Histograms.fill: showers must have shape ({len(hlf)}, "
                                   f"{hlf.geometry.n_voxels}) to match the features, got {s.shape}")
            if not np.issubdtype(s.dtype, np.floating):
                s = s.astype(np.float64)
            self.counts["voxel"] += voxel_histogram(s[s > 0], self.edges["voxel"])
        self.n_showers += len(hlf)


def _log_edges(lo: float, hi: float, n: int, what: str) -> np.ndarray:
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo):
        raise FeatureError(f"binnings: bad range for {what}: ({lo}, {hi})")
    if hi <= lo:
        log.warning("binnings: %s: reference maximum %g is not above the lower edge %g; using one decade", what, hi, lo)
        hi = lo * 10.0
    edges = np.logspace(np.log10(lo), np.log10(hi), n)
    edges[0], edges[-1] = lo, hi  # exact ends: the reference maximum must not fall out by rounding
    return edges


_DS1 = ("ds1-photons", "ds1-pions")
_DS23_R_MAX = 41.85  # mm: the outer radius of the ds2/ds3 binnings the table's ranges were chosen for


def binnings(geometry, reference: HLF, max_voxel: float) -> dict[str, np.ndarray]:
    """Bin edges of every challenge histogram, from the reference sample (the evaluation's plotting ranges).

    ``e_ratio``; per layer id l ``e_layer_l`` (40 log edges, threshold to the reference maximum), ``ec_r_l``,
    ``width_r_l``, ``sparsity_l``; per alpha-binned layer ``ec_eta_l``, ``ec_phi_l``, ``width_eta_l``,
    ``width_phi_l``; ``voxel`` (50 log edges, threshold to ``max_voxel``). ds1 datasets use the challenge's
    ds1 ranges; other geometries use the ds2/ds3 ranges scaled by their outer radius over 41.85 mm
    (identical for ds2/ds3). With no threshold (0), log ranges start at the smallest positive reference value
    (layers) or ``max_voxel * 1e-7`` (voxels).
    """
    geo = get(geometry)
    if not _same_geometry(geo, reference.geometry):
        raise FeatureError(f"binnings: the reference features are for {reference.geometry!r}, not {geo!r}")
    thr = float(geo.threshold)
    out: dict[str, np.ndarray] = {"e_ratio": np.linspace(0.5, 1.5, 101)}
    ds1 = geo.name in _DS1
    if not ds1:
        scale = 1.0 if geo.name in ("ds2", "ds3") else max(lay.r_edges[-1] for lay in geo.layers) / _DS23_R_MAX
    for il, lay in enumerate(geo.layers):
        col = reference.e_layer[:, il]
        lo = thr if thr > 0 else (col[col > 0].min() if np.any(col > 0) else 1e-3)
        out[f"e_layer_{lay.id}"] = _log_edges(lo, float(col.max(initial=0.0)), 40, f"e_layer_{lay.id}")
    for il in geo.alpha_layers:
        lid = geo.layers[il].id
        if ds1:
            ec, w = (500.0, 400.0) if lid in (12, 13) else (100.0, 100.0)
        else:
            ec, w = 30.0 * scale, 30.0 * scale
        out[f"ec_eta_{lid}"] = np.linspace(-ec, ec, 101)
        out[f"ec_phi_{lid}"] = np.linspace(-ec, ec, 101)
        out[f"width_eta_{lid}"] = np.linspace(0.0, w, 101)
        out[f"width_phi_{lid}"] = np.linspace(0.0, w, 101)
    for lay in geo.layers:
        if ds1:
            # W_r for ds1 is not in the challenge's table: we use the W_eta ranges, extended to layer 14
            ecr, wr = (1500.0, 400.0) if lay.id in (12, 13, 14) else (500.0, 100.0)
        else:
            ecr, wr = 42.0 * scale, 20.0 * scale
        out[f"ec_r_{lay.id}"] = np.linspace(0.0, ecr, 101)
        out[f"width_r_{lay.id}"] = np.linspace(0.0, wr, 101)
        out[f"sparsity_{lay.id}"] = np.linspace(0.0, 1.0, 21)
    max_voxel = float(max_voxel)
    out["voxel"] = _log_edges(thr if thr > 0 else max_voxel * 1e-7, max_voxel, 50, "voxel")
    return out


def separation_powers(ref: Histograms, gen: Histograms) -> dict[str, float]:
    """Separation power of every histogram of ``ref`` against the same one of ``gen`` (same names and edges)."""
    if set(ref.edges) != set(gen.edges):
        diff = sorted(set(ref.edges) ^ set(gen.edges))
        raise FeatureError(f"separation_powers: the two sets of histograms differ in {diff[:10]}")
    out: dict[str, float] = {}
    for name, e in ref.edges.items():
        if not np.array_equal(e, gen.edges[name]):
            raise FeatureError(f"separation_powers: histogram {name!r} has different edges in the two samples")
        if ref.counts[name].sum() == 0 or gen.counts[name].sum() == 0:
            log.warning("separation_powers: histogram %r is empty in %s", name,
                        "both samples" if ref.counts[name].sum() == gen.counts[name].sum() == 0 else "one sample")
            out[name] = float("nan")
            continue
        out[name] = separation_power(ref.counts[name], gen.counts[name])
    return out
