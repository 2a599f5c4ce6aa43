"""Sample-level quality metrics of the CaloChallenge: FPD, KPD and the binary-classifier metric.

All three compare a reference sample (Geant4) with a generated one, both given as 2-D arrays ``(n_events,
n_features)`` (typically the cls-high feature vector, see the challenge notes).

* :func:`fpd` -- Frechet distance between Gaussian fits, evaluated at batch sizes uniform in 1/N and
  extrapolated linearly to N -> infinity.
* :func:`kpd` -- unbiased MMD^2 with the polynomial kernel ``(x.y/d + 1)^4``, median over batches.
* :func:`classifier_metric` -- a DNN trained to separate reference (label 1) from generated (label 0);
  AUC and JSD on the validation split after isotonic calibration on the test split.

Both FPD and KPD first divide every feature by ``max|reference feature|`` (:func:`normalise`); the challenge
reports them x 1e3.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import numpy as np

from .._optional import require
from ..bench.progress import progress as progress_bar
from ..errors import Ml4epError

log = logging.getLogger(__name__)

__all__ = [
    "MetricError",
    "classifier_metric",
    "fit_extrapolation",
    "fpd",
    "fpd_points",
    "frechet_distance",
    "kpd",
    "kpd_values",
    "median_and_error",
    "mmd_poly_unbiased",
    "normalise",
]

_LOW_PCT, _HIGH_PCT = 16.275, 83.725  # percentiles of the KPD error band
_ROW_BLOCK = 4096  # rows per block in the covariance accumulation
_GRAM_BLOCK = 1024  # rows per block in the kernel sums
_P_MIN = 1e-6  # calibrated classifier probabilities lie in [_P_MIN, 1 - _P_MIN]


class MetricError(Ml4epError, ValueError):
    """Invalid input to a metric (shapes, sizes, non-finite values or settings)."""


# --------------------------------------------------------------------------------------------------- inputs


def _as_2d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise MetricError(f"{name}: expected a 2-D array (n_events, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise MetricError(f"{name}: empty array of shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise MetricError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise MetricError(
            f"{name}: {bad.sum()} non-finite value(s) (NaN/inf), first at event {rows[0]}, feature {cols[0]}"
        )
    return arr


def _pair(ref: Any, gen: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = _as_2d(ref, f"{what}: reference sample")
    y = _as_2d(gen, f"{what}: generated sample")
    if x.shape[1] != y.shape[1]:
        raise MetricError(
            f"{what}: reference has {x.shape[1]} features but generated has {y.shape[1]}; they must match"
        )
    return x, y


def _check_dtype(dtype: str, what: str) -> np.dtype:
    if dtype not in ("float32", "float64"):
        raise MetricError(f"{what}: dtype must be 'float32' or 'float64', got {dtype!r}")
    return np.dtype(dtype)


def normalise(ref: Any, gen: Any) -> tuple[np.ndarray, np.ndarray]:
    """Divide every feature of both samples by ``max|ref feature|`` (features that are 0 in ref are kept)."""
    x, y = _pair(ref, gen, "normalise")
    scale = np.max(np.abs(x), axis=0)
    scale[scale == 0] = 1.0
    return x / scale, y / scale


# ---------------------------------------------------------------------------------------------------- FPD


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """``Tr((s1 s2)^(1/2))`` for symmetric PSD ``s1``, ``s2``.

    The eigenvalues of ``s1 s2`` are those of the symmetric PSD matrix ``A^T s2 A`` with ``s1 = A A^T``
    (Cholesky factor, or ``V sqrt(lambda)`` from an eigendecomposition when ``s1`` is singular); tiny negative
    eigenvalues from rounding are clipped to 0.
    """
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    try:
        a = np.linalg.cholesky(s1)
    except np.linalg.LinAlgError:
        lam, vec = np.linalg.eigh(s1)
        a = vec * np.sqrt(np.clip(lam, 0.0, None))
    m = a.T @ s2 @ a
    ev = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def _frechet_from_moments(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * _trace_sqrt_product(s1, s2))


def frechet_distance(x: Any, y: Any) -> float:
    """Frechet distance ``|mu1-mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between Gaussian fits of two samples.

    Means and (unbiased, ``n-1``) covariances are computed in float64 from the rows of ``x`` and ``y``.
    """
    a, b = _pair(x, y, "frechet_distance")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise MetricError("frechet_distance: each sample needs at least 2 events for a covariance")
    return _frechet_from_moments(a.mean(0), np.atleast_2d(np.cov(a, rowvar=False)),
                                 b.mean(0), np.atleast_2d(np.cov(b, rowvar=False)))


def _batch_moments(data: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of ``data[idx]``, accumulated blockwise in float64.

    ``data`` should be roughly centred (the caller subtracts the full-sample mean) so that the
    ``sum x x^T - n m m^T`` form loses no precision.
    """
    d = data.shape[1]
    n = idx.size
    total = np.zeros(d)
    outer = np.zeros((d, d))
    for start in range(0, n, _ROW_BLOCK):
        block = data[idx[start:start + _ROW_BLOCK]]
        total += block.sum(axis=0, dtype=np.float64)
        outer += block.T @ block  # symmetric rank-k update; float64 accumulation across blocks
    mean = total / n
    cov = (outer - n * np.outer(mean, mean)) / (n - 1)
    return mean, cov


def fit_extrapolation(batch_sizes: Any, values: Any, nonnegative: bool = True) -> tuple[float, float]:
    """Least-squares line ``value = a + b / N``; returns ``(a, sigma_a)``.

    ``sigma_a`` comes from the fit covariance ``RSS/(n-2) (J^T J)^-1`` (parameter errors scaled by the
    residual variance). With ``nonnegative`` (the challenge's jetnet convention) ``a`` and ``b`` are
    constrained to be >= 0.
    """
    n_arr = np.asarray(batch_sizes, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if n_arr.shape != v.shape:
        raise MetricError(f"fit_extrapolation: {n_arr.size} batch sizes but {v.size} values")
    if n_arr.size < 3:
        raise MetricError(f"fit_extrapolation: need at least 3 points for a fit with an error, got {n_arr.size}")
    if np.any(n_arr <= 0) or not np.all(np.isfinite(v)):
        raise MetricError("fit_extrapolation: batch sizes must be > 0 and values finite")
    x = 1.0 / n_arr
    if np.ptp(x) == 0:
        raise MetricError("fit_extrapolation: all batch sizes are equal; cannot fit a slope")
    jac = np.column_stack([np.ones_like(x), x])
    sol, *_ = np.linalg.lstsq(jac, v, rcond=None)
    if nonnegative and np.any(sol < 0):
        # convex problem on the quadrant: the optimum is the best feasible candidate among its faces
        sxx, sxy = float(x @ x), float(x @ v)
        candidates = [np.array([0.0, 0.0]), np.array([max(v.mean(), 0.0), 0.0]),
                      np.array([0.0, max(sxy / sxx, 0.0)])]
        if np.all(sol >= 0):
            candidates.append(sol)
        sol = min(candidates, key=lambda p: float(np.sum((jac @ p - v) ** 2)))
    rss = float(np.sum((jac @ sol - v) ** 2))
    cov = np.linalg.inv(jac.T @ jac) * rss / (n_arr.size - 2)
    return float(sol[0]), float(math.sqrt(max(cov[0, 0], 0.0)))


def _fpd_batch_sizes(min_samples: int, max_samples: int, num_points: int, n_available: int) -> np.ndarray:
    if min_samples < 2 or max_samples < 2:
        raise MetricError(f"fpd: min_samples/max_samples must be >= 2, got {min_samples}/{max_samples}")
    if min_samples > max_samples:
        raise MetricError(f"fpd: min_samples ({min_samples}) > max_samples ({max_samples})")
    if num_points < 3:
        raise MetricError(f"fpd: num_points must be >= 3 for an extrapolation with error, got {num_points}")
    if n_available < 3:
        raise MetricError(f"fpd: each sample needs at least 3 events, got {n_available}")
    hi = min(max_samples, n_available)
    lo = min(min_samples, hi)
    if lo == hi:
        lo = max(2, hi // 5)
        log.warning("fpd: only %d events per sample; using batch sizes %d..%d instead of %d..%d",
                    n_available, lo, hi, min_samples, max_samples)
    elif hi < max_samples:
        log.warning("fpd: only %d events per sample; largest batch size capped at %d", n_available, hi)
    sizes = np.rint(1.0 / np.linspace(1.0 / lo, 1.0 / hi, num_points)).astype(np.int64)
    if np.unique(sizes).size < 2:
        raise MetricError(f"fpd: batch sizes {sizes.tolist()} do not span a range; use more events")
    return sizes


def fpd_points(
    ref: Any,
    gen: Any,
    min_samples: int = 10000,
    max_samples: int = 50000,
    num_batches: int = 20,
    num_points: int = 10,
    seed: int = 0,
    *,
    dtype: str = "float32",
    normalised: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch sizes and the mean Frechet distance at each size (the points :func:`fpd` fits).

    Random batches (with replacement): ``rng = np.random.default_rng(seed)``; for every size, ``num_batches``
    times ``rng.integers(0, n_ref, size)`` then ``rng.integers(0, n_gen, size)``. ``dtype`` is the precision of the
    per-block products x^T x (blocks of 4096 rows, summed in float64); float32 (default) is ~2x faster and
    agrees with float64 to ~1e-8 relative on the challenge's 362 features.
    ``normalised=True`` skips :func:`normalise` (inputs already normalised). ``progress``: a bar over the batches
    on stderr when it is a terminal.
    """
    x, y = _pair(ref, gen, "fpd")
    if not normalised:
        x, y = normalise(x, y)
    work = _check_dtype(dtype, "fpd")
    if num_batches < 1:
        raise MetricError(f"fpd: num_batches must be >= 1, got {num_batches}")
    sizes = _fpd_batch_sizes(int(min_samples), int(max_samples), int(num_points), min(len(x), len(y)))
    # centre both samples on the reference mean (the distance is translation invariant)
    centre = x.mean(axis=0)
    xc = (x - centre).astype(work)
    yc = (y - centre).astype(work)
    rng = np.random.default_rng(seed)
    values = np.empty(sizes.size)
    with progress_bar(total=sizes.size * num_batches, desc="FPD", unit="batch", enabled=progress,
                      leave=False) as bar:
        for k, size in enumerate(sizes):
            acc = 0.0
            for _ in range(num_batches):
                i1 = rng.integers(0, len(xc), size)
                i2 = rng.integers(0, len(yc), size)
                mu1, s1 = _batch_moments(xc, i1)
                mu2, s2 = _batch_moments(yc, i2)
                acc += _frechet_from_moments(mu1, s1, mu2, s2)
                bar.update()
            values[k] = acc / num_batches
            log.debug("fpd: batch size %d -> mean distance %.6g", size, values[k])
    return sizes, values


def fpd(
    ref: Any,
    gen: Any,
    min_samples: int = 10000,
    max_samples: int = 50000,
    num_batches: int = 20,
    num_points: int = 10,
    seed: int = 0,
    *,
    dtype: str = "float32",
    nonnegative: bool = True,
    progress: bool = False,
) -> tuple[float, float]:
    """Frechet physics distance ``(value, error)``: the N -> infinity extrapolation of the Frechet distance.

    Features are normalised by ``max|ref|``; ``num_points`` batch sizes uniform in 1/N between ``min_samples``
    and ``max_samples`` (capped at the sample sizes), ``num_batches`` random batches per size (see
    :func:`fpd_points`), then :func:`fit_extrapolation` (``nonnegative`` as in the challenge's jetnet fit).
    ``progress``: a bar over the batches on stderr when it is a terminal.
    """
    sizes, values = fpd_points(ref, gen, min_samples, max_samples, num_batches, num_points, seed, dtype=dtype,
                               progress=progress)
    return fit_extrapolation(sizes, values, nonnegative=nonnegative)


# ---------------------------------------------------------------------------------------------------- KPD


def _augment(a: np.ndarray, work: np.dtype) -> np.ndarray:
    """``[a / sqrt(d), 1]`` so that a row product is ``a.b/d + 1`` (the polynomial-kernel base)."""
    out = np.empty((a.shape[0], a.shape[1] + 1), dtype=work)
    out[:, :-1] = a * (1.0 / math.sqrt(a.shape[1]))
    out[:, -1] = 1.0
    return out


def _power_sum(g: np.ndarray, degree: int) -> tuple[float, np.ndarray]:
    """``sum(g**degree)`` in float64, and the float64 array ``h`` summed: ``sum(h*h)`` (even) or ``sum(h)`` (odd)."""
    if degree % 2 == 0:
        half = degree // 2
        h = g.astype(np.float64) if half == 1 else np.power(g, half, dtype=np.float64)
        flat = h.reshape(-1)
        return float(flat @ flat), h
    h = np.power(g, degree, dtype=np.float64)
    return float(h.sum()), h


def _poly_kernel_sums(xa: np.ndarray, ya: np.ndarray, degree: int) -> tuple[float, float, float]:
    """Off-diagonal sum of k(x,x), of k(y,y) and full sum of k(x,y) for augmented samples (see ``_augment``).

    Products are formed blockwise (only the upper triangle for the self terms); kernel values and sums are
    float64.
    """

    def part(h: np.ndarray) -> float:
        return float(np.einsum("ij,ij->", h, h)) if degree % 2 == 0 else float(h.sum())

    def self_sum(a: np.ndarray) -> float:
        total = 0.0
        for s in range(0, len(a), _GRAM_BLOCK):
            blk = a[s:s + _GRAM_BLOCK]
            nb = len(blk)
            full, h = _power_sum(blk @ a[s:].T, degree)
            hd = h[:, :nb]
            diag_block = part(hd)
            diag = np.diagonal(hd)
            trace = float(diag @ diag) if degree % 2 == 0 else float(diag.sum())
            total += diag_block - trace + 2.0 * (full - diag_block)
        return total

    cross = 0.0
    for s in range(0, len(xa), _GRAM_BLOCK):
        cross += _power_sum(xa[s:s + _GRAM_BLOCK] @ ya.T, degree)[0]
    return self_sum(xa), self_sum(ya), cross


def _mmd_from_sums(sxx: float, syy: float, sxy: float, m: int, n: int) -> float:
    return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2.0 * sxy / (m * n)


def mmd_poly_unbiased(x: Any, y: Any, degree: int = 4) -> float:
    """Unbiased MMD^2 between two samples with the kernel ``k(a, b) = (a.b/d + 1)^degree`` (float64)."""
    a, b = _pair(x, y, "mmd_poly_unbiased")
    if len(a) < 2 or len(b) < 2:
        raise MetricError("mmd_poly_unbiased: each sample needs at least 2 events")
    if int(degree) < 1:
        raise MetricError(f"mmd_poly_unbiased: degree must be >= 1, got {degree}")
    f64 = np.dtype(np.float64)
    sxx, syy, sxy = _poly_kernel_sums(_augment(a, f64), _augment(b, f64), int(degree))
    return _mmd_from_sums(sxx, syy, sxy, len(a), len(b))


def median_and_error(values: Any) -> tuple[float, float]:
    """Median and half the 16.275-83.725 percentile range (linear interpolation) of ``values``."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise MetricError("median_and_error: no values")
    lo, hi = np.percentile(v, [_LOW_PCT, _HIGH_PCT])
    return float(np.median(v)), float(hi - lo) / 2.0


def kpd_values(
    ref: Any,
    gen: Any,
    num_batches: int = 10,
    batch_size: int = 10000,
    seed: int = 0,
    *,
    dtype: str = "float32",
    normalised: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Per-batch unbiased MMD^2 values (the points :func:`kpd` summarises).

    Batch ``i`` draws with replacement from ``rng = np.random.default_rng(seed + 1000 * i)``:
    ``rng.integers(0, n_ref, b)`` then ``rng.integers(0, n_gen, b)``, with ``b = min(batch_size, n_ref, n_gen)``.
    ``dtype`` is the precision of the Gram products (d+1 terms each); kernel values and all sums are float64.
    float32 (default) agrees with float64 to ~1e-13 absolute on the challenge's 362 features. ``progress``: a bar
    over the batches on stderr when it is a terminal.
    """
    x, y = _pair(ref, gen, "kpd")
    if not normalised:
        x, y = normalise(x, y)
    work = _check_dtype(dtype, "kpd")
    if num_batches < 1 or batch_size < 2:
        raise MetricError(f"kpd: need num_batches >= 1 and batch_size >= 2, got {num_batches}, {batch_size}")
    b = min(int(batch_size), len(x), len(y))
    if b < 2:
        raise MetricError(f"kpd: each sample needs at least 2 events, got {len(x)} and {len(y)}")
    if b < batch_size:
        log.warning("kpd: only %d events per sample; batch size capped at %d", min(len(x), len(y)), b)
    xw, yw = _augment(x, work), _augment(y, work)
    vals = np.empty(num_batches)
    for i in progress_bar(range(num_batches), desc="KPD", unit="batch", enabled=progress, leave=False):
        rng = np.random.default_rng(seed + 1000 * i)
        i1 = rng.integers(0, len(xw), b)
        i2 = rng.integers(0, len(yw), b)
        sxx, syy, sxy = _poly_kernel_sums(xw[i1], yw[i2], 4)
        vals[i] = _mmd_from_sums(sxx, syy, sxy, b, b)
    return vals


def kpd(
    ref: Any,
    gen: Any,
    num_batches: int = 10,
    batch_size: int = 10000,
    seed: int = 0,
    *,
    dtype: str = "float32",
    progress: bool = False,
) -> tuple[float, float]:
    """Kernel physics distance ``(median, error)``: unbiased poly-kernel MMD^2 over random batches.

    Features normalised by ``max|ref|``; see :func:`kpd_values` for the batches (and ``progress``) and
    :func:`median_and_error`.
    """
    return median_and_error(kpd_values(ref, gen, num_batches, batch_size, seed, dtype=dtype, progress=progress))


# ------------------------------------------------------------------------------------------ classifier


def _split_indices(n: int, split: tuple[float, float, float], rng: np.random.Generator) -> list[np.ndarray]:
    perm = rng.permutation(n)
    n_train = int(split[0] * n)
    n_test = int(split[1] * n)
    return [perm[:n_train], perm[n_train:n_train + n_test], perm[n_train + n_test:]]


def _bce(p: np.ndarray, y: np.ndarray) -> float:
    """Binary cross-entropy with log clamped at -100 (torch ``BCELoss`` convention)."""
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(p), -100.0)
        log_q = np.maximum(np.log1p(-p), -100.0)
    return float(-np.mean(y * log_p + (1.0 - y) * log_q))


def classifier_metric(
    ref_inputs: Any,
    gen_inputs: Any,
    hidden: int = 2048,
    n_hidden_layers: int = 3,
    epochs: int = 50,
    lr: float = 2e-4,
    batch_size: int = 1000,
    device: str = "auto",
    seed: int = 0,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    dtype: str = "float64",
    standardise: bool = False,
    progress: bool | str = False,
) -> dict:
    """Train a DNN to tell reference (label 1) from generated (label 0) events; AUC and JSD on validation.

    Network: ``Linear(d, hidden)``, LeakyReLU, ``(n_hidden_layers - 1) x [Linear(hidden, hidden), LeakyReLU]``,
    ``Linear(hidden, 1)``; BCEWithLogits, Adam. Each class is split train/test/val by ``split``; after every
    epoch the test accuracy is measured and the best state kept (training stops at accuracy 1). Isotonic
    regression fitted on the test predictions calibrates the validation predictions, on which
    ``auc = roc_auc_score`` and ``jsd = (ln 2 - BCE) / ln 2`` are computed. Inputs are used as given (as in the
    challenge) unless ``standardise``: then every feature is shifted and scaled by the training split's mean and
    standard deviation, which lets small networks trained on small samples (quick runs) learn. ``progress`` (true or
    the bar's label): a bar over the epochs with the test accuracy, on stderr when it is a terminal.
    Returns ``{"auc", "jsd", "n_train", "n_test", "n_val", "epochs_run", "best_test_accuracy"}``.
    """
    torch = require("torch", "torch", "the classifier metric")
    isotonic = require("sklearn.isotonic", "fastsim", "the classifier metric")
    skm = require("sklearn.metrics", "fastsim", "the classifier metric")

    x1, x0 = _pair(ref_inputs, gen_inputs, "classifier_metric")
    if len(x1) != len(x0):
        raise MetricError(
            f"classifier_metric: the reference has {len(x1)} events but the generated sample has {len(x0)}; "
            "the challenge requires equal numbers"
        )
    split = tuple(float(s) for s in split)
    if len(split) != 3 or min(split) <= 0 or not math.isclose(sum(split), 1.0, abs_tol=1e-9):
        raise MetricError(f"classifier_metric: split must be 3 positive fractions summing to 1, got {split}")
    if hidden < 1 or n_hidden_layers < 1 or epochs < 1 or batch_size < 1 or lr <= 0:
        raise MetricError(
            f"classifier_metric: invalid settings hidden={hidden}, n_hidden_layers={n_hidden_layers}, "
            f"epochs={epochs}, batch_size={batch_size}, lr={lr}"
        )
    if dtype not in ("float32", "float64"):
        raise MetricError(f"classifier_metric: dtype must be 'float32' or 'float64', got {dtype!r}")
    tdtype = getattr(torch, dtype)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise MetricError(f"classifier_metric: invalid device {device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MetricError(f"classifier_metric: device {device!r} requested but CUDA is not available")

    rng = np.random.default_rng(seed)
    parts1 = _split_indices(len(x1), split, rng)
    parts0 = _split_indices(len(x0), split, rng)
    if any(p.size == 0 for p in parts1 + parts0):
        raise MetricError(f"classifier_metric: {len(x1)} events per class are too few for split {split}")
    sets = []
    for p1, p0 in zip(parts1, parts0):
        feats = np.concatenate([x1[p1], x0[p0]])
        labels = np.concatenate([np.ones(p1.size), np.zeros(p0.size)])
        order = rng.permutation(labels.size)
        sets.append((feats[order], labels[order]))
    (xtr, ytr), (xte, yte), (xva, yva) = sets
    if standardise:
        mu, sd = xtr.mean(axis=0), xtr.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        xtr, xte, xva = ((x - mu) / sd for x in (xtr, xte, xva))
    d = x1.shape[1]

    def to_t(a: np.ndarray):
        return torch.as_tensor(a, dtype=tdtype, device=dev)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list = [torch.nn.Linear(d, hidden), torch.nn.LeakyReLU()]
        for _ in range(n_hidden_layers - 1):
            layers += [torch.nn.Linear(hidden, hidden), torch.nn.LeakyReLU()]
        layers.append(torch.nn.Linear(hidden, 1))
        model = torch.nn.Sequential(*layers).to(device=dev, dtype=tdtype)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    xtr_t, ytr_t = to_t(xtr), to_t(ytr)[:, None]
    xte_t, xva_t = to_t(xte), to_t(xva)

    def predict(a) -> np.ndarray:
        model.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(a), 8192):
                out.append(torch.sigmoid(model(a[s:s + 8192])).squeeze(1).cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    best_acc, best_state, epochs_run = -1.0, None, 0
    with progress_bar(total=epochs, desc=progress if isinstance(progress, str) else "classifier", unit="epoch",
                      enabled=bool(progress), leave=False) as bar:
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(xtr), generator=gen).to(dev)
            for s in range(0, len(xtr), batch_size):
                idx = perm[s:s + batch_size]
                opt.zero_grad()
                loss = loss_fn(model(xtr_t[idx]), ytr_t[idx])
                loss.backward()
                opt.step()
            epochs_run = epoch + 1
            acc = float(np.mean((predict(xte_t) > 0.5) == (yte > 0.5)))
            log.info("classifier_metric: epoch %d, last batch loss %.5f, test accuracy %.5f", epochs_run,
                     float(loss.detach()), acc)
            bar.set_postfix_str(f"test accuracy {acc:.4f}", refresh=False)
            bar.update()
            if acc > best_acc:
                best_acc = acc
                best_state = copy.deepcopy(model.state_dict())
            if acc >= 1.0:
                log.info("classifier_metric: test accuracy 1 reached; stopping early")
                break
    model.load_state_dict(best_state)

    # calibrated probabilities are kept within [1e-6, 1 - 1e-6] as in the challenge (finite BCE)
    calib = isotonic.IsotonicRegression(y_min=_P_MIN, y_max=1.0 - _P_MIN, increasing=True, out_of_bounds="clip")
    calib.fit(predict(xte_t), yte)
    p_val = np.clip(calib.predict(predict(xva_t)), _P_MIN, 1.0 - _P_MIN)
    auc = float(skm.roc_auc_score(yva, p_val))
    jsd = (math.log(2.0) - _bce(p_val, yva)) / math.log(2.0)
    return {
        "auc": auc,
        "jsd": float(jsd),
        "n_train": int(len(ytr)),
        "n_test": int(len(yte)),
        "n_val": int(len(yva)),
        "epochs_run": int(epochs_run),
        "best_test_accuracy": float(best_acc),
    }
