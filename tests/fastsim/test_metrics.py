"""Tests of ml4ep.fastsim.metrics against independent formulations and analytic values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ml4ep.errors import Ml4epError
from ml4ep.fastsim import metrics as M

scipy_linalg = pytest.importorskip("scipy.linalg")
scipy_optimize = pytest.importorskip("scipy.optimize")
scipy_stats = pytest.importorskip("scipy.stats")


def _gauss(rng, n, d, shift=0.0, scale=1.0, mix=None):
    z = rng.normal(size=(n, d)) * scale
    if mix is not None:
        z = z @ mix
    return z + shift


# ---------------------------------------------------------------- independent formulations (oracles)


def _fd_sqrtm(x, y):
    """Frechet distance with scipy's general matrix square root of S1 S2 (the textbook formula)."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1 = np.cov(x, rowvar=False)
    s2 = np.cov(y, rowvar=False)
    covmean = scipy_linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def _psd_sqrt(s):
    lam, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(lam, 0, None))) @ v.T


def _fd_nuclear(x, y):
    """Tr (S1 S2)^(1/2) as the nuclear norm of S1^(1/2) S2^(1/2); valid for singular covariances too."""
    s1 = np.atleast_2d(np.cov(x, rowvar=False))
    s2 = np.atleast_2d(np.cov(y, rowvar=False))
    tr = np.linalg.svd(_psd_sqrt(s1) @ _psd_sqrt(s2), compute_uv=False).sum()
    return float(np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr)


def _mmd_loops(x, y, degree=4):
    """Unbiased MMD^2 with explicit double loops over pairs."""
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** degree

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n))
    return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)


def _mmd_full(x, y):
    """Unbiased MMD^2 from the full kernel matrix of the stacked sample (no blocking)."""
    z = np.vstack([x, y])
    k = (z @ z.T / z.shape[1] + 1.0) ** 4
    m = len(x)
    kxx, kyy, kxy = k[:m, :m], k[m:, m:], k[:m, m:]
    n = len(y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean())


# ------------------------------------------------------------------------------------------ normalise


def test_normalise_hand_example():
    ref = np.array([[1.0, -4.0, 0.0], [-2.0, 2.0, 0.0]])
    gen = np.array([[4.0, 1.0, 3.0]])
    r, g = M.normalise(ref, gen)
    np.testing.assert_allclose(r, [[0.5, -1.0, 0.0], [-1.0, 0.5, 0.0]])
    np.testing.assert_allclose(g, [[2.0, 0.25, 3.0]])


# -------------------------------------------------------------------------------------------- Frechet


def test_frechet_distance_matches_sqrtm_and_nuclear_norm():
    rng = np.random.default_rng(0)
    d = 12
    x = _gauss(rng, 400, d, mix=rng.normal(size=(d, d)))
    y = _gauss(rng, 300, d, shift=0.3, mix=rng.normal(size=(d, d)))
    got = M.frechet_distance(x, y)
    assert got == pytest.approx(_fd_sqrtm(x, y), rel=1e-9)
    assert got == pytest.approx(_fd_nuclear(x, y), rel=1e-9)
    assert M.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_singular_covariances():
    rng = np.random.default_rng(1)
    x = _gauss(rng, 200, 4)
    y = _gauss(rng, 250, 4, shift=0.5, scale=1.3)
    base = _fd_sqrtm(x, y)
    # constant columns: zero variance (singular covariance); only the difference of the constants adds
    xc = np.column_stack([x, np.full(len(x), 2.0), np.full(len(x), 1.0)])
    yc = np.column_stack([y, np.full(len(y), 2.0), np.full(len(y), -1.0)])
    assert M.frechet_distance(xc, yc) == pytest.approx(base + 4.0, rel=1e-9)
    # fewer events than features: rank-deficient covariances
    a = _gauss(rng, 6, 10)
    b = _gauss(rng, 8, 10, shift=0.2)
    assert M.frechet_distance(a, b) == pytest.approx(_fd_nuclear(a, b), rel=1e-8, abs=1e-10)


def test_frechet_distance_one_feature_closed_form():
    rng = np.random.default_rng(2)
    x, y = rng.normal(1.0, 2.0, 500), rng.normal(-1.0, 0.5, 700)
    expected = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert M.frechet_distance(x, y) == pytest.approx(expected, rel=1e-10)


def test_fit_extrapolation_exact_line_and_polyfit_oracle():
    sizes = np.array([1000, 1500, 2000, 3000, 5000])
    a, err = M.fit_extrapolation(sizes, 0.2 + 30.0 / sizes)
    assert a == pytest.approx(0.2, rel=1e-10) and err == pytest.approx(0.0, abs=1e-10)
    rng = np.random.default_rng(3)
    vals = 0.2 + 30.0 / sizes + rng.normal(0, 1e-3, sizes.size)
    p, cov = np.polyfit(1.0 / sizes, vals, 1, cov=True)
    a, err = M.fit_extrapolation(sizes, vals, nonnegative=False)
    assert a == pytest.approx(p[1], rel=1e-9) and err == pytest.approx(math.sqrt(cov[1, 1]), rel=1e-9)


def test_fit_extrapolation_bounded_matches_curve_fit():
    sizes = np.array([1000.0, 1250.0, 1700.0, 2500.0, 5000.0])
    rng = np.random.default_rng(4)
    vals = -0.05 + 60.0 / sizes + rng.normal(0, 2e-3, sizes.size)  # unconstrained intercept < 0
    p_free, _ = np.polyfit(1.0 / sizes, vals, 1, cov=True)
    assert p_free[1] < 0
    popt, pcov = scipy_optimize.curve_fit(lambda x, a, b: a + b * x, 1.0 / sizes, vals, p0=[0.01, 10.0],
                                          bounds=([0, 0], [np.inf, np.inf]))
    a, err = M.fit_extrapolation(sizes, vals)
    assert a == pytest.approx(popt[0], abs=1e-6)
    assert err == pytest.approx(math.sqrt(pcov[0, 0]), rel=1e-3)


def test_fpd_points_reproduce_documented_batches():
    rng = np.random.default_rng(5)
    d = 6
    ref = _gauss(rng, 3000, d, mix=rng.normal(size=(d, d)))
    gen = _gauss(rng, 2500, d, shift=0.1, mix=rng.normal(size=(d, d)))
    sizes, vals = M.fpd_points(ref, gen, 200, 1000, num_batches=3, num_points=4, seed=11, dtype="float64")
    np.testing.assert_array_equal(sizes, np.rint(1 / np.linspace(1 / 200, 1 / 1000, 4)).astype(int))
    # oracle: own normalisation, same random draws, scipy sqrtm distance
    scale = np.abs(ref).max(0)
    r, g = ref / scale, gen / scale
    draw = np.random.default_rng(11)
    expected = []
    for s in sizes:
        per = []
        for _ in range(3):
            i1 = draw.integers(0, len(r), s)
            i2 = draw.integers(0, len(g), s)
            per.append(_fd_sqrtm(r[i1], g[i2]))
        expected.append(np.mean(per))
    np.testing.assert_allclose(vals, expected, rtol=1e-8)
    _, vals32 = M.fpd_points(ref, gen, 200, 1000, num_batches=3, num_points=4, seed=11, dtype="float32")
    np.testing.assert_allclose(vals32, expected, rtol=1e-4)


def test_fpd_shifted_gaussians_analytic_and_null():
    rng = np.random.default_rng(6)
    n, d = 20000, 4
    sig_ref = np.array([1.0, 2.0, 0.5, 1.0])
    sig_gen = np.array([1.0, 2.0, 0.6, 1.2])
    delta = np.array([0.3, 0.0, -0.1, 0.2])
    ref = rng.normal(size=(n, d)) * sig_ref
    gen = rng.normal(size=(n, d)) * sig_gen + delta
    scale = np.abs(ref).max(0)  # fpd works in units of max|ref|
    analytic = float(np.sum((delta / scale) ** 2) + np.sum(((sig_ref - sig_gen) / scale) ** 2))
    val, err = M.fpd(ref, gen, min_samples=2000, max_samples=10000, num_batches=5, num_points=5, seed=0)
    assert err > 0
    # the extrapolation estimates the distance between the two finite samples: a few % statistical scatter
    assert val == pytest.approx(analytic, rel=0.08)
    null_gen = rng.normal(size=(n, d)) * sig_ref
    v0, e0 = M.fpd(ref, null_gen, min_samples=2000, max_samples=10000, num_batches=5, num_points=5)
    assert 0.0 <= v0 <= 3 * e0 + 0.02 * analytic


def test_fpd_caps_batch_sizes_at_sample_size():
    rng = np.random.default_rng(7)
    ref, gen = _gauss(rng, 500, 3), _gauss(rng, 400, 3)
    sizes, _ = M.fpd_points(ref, gen, num_batches=1, num_points=3)
    assert sizes.max() == 400 and sizes.min() == 80
    sizes, _ = M.fpd_points(ref, gen, min_samples=100, num_batches=1, num_points=3)
    assert sizes.tolist() == [100, 160, 400]


# ---------------------------------------------------------------------------------------------- MMD/KPD


@pytest.mark.parametrize("degree", [2, 3, 4])
def test_mmd_poly_unbiased_matches_double_loops(degree):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(7, 3))
    y = rng.normal(0.4, 1.1, size=(9, 3))
    assert M.mmd_poly_unbiased(x, y, degree=degree) == pytest.approx(_mmd_loops(x, y, degree), rel=1e-12)


def test_mmd_blocking_matches_full_matrix(monkeypatch):
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(50, 5)), rng.normal(0.2, 1.0, size=(37, 5))
    monkeypatch.setattr(M, "_GRAM_BLOCK", 8)  # several blocks, last one partial
    assert M.mmd_poly_unbiased(x, y) == pytest.approx(_mmd_full(x, y), rel=1e-11)


def test_median_and_error_against_scipy():
    vals = np.array([0.3, -0.1, 0.25, 0.7, 0.05, 0.12, 0.4, -0.02, 0.33, 0.18])
    med, err = M.median_and_error(vals)
    assert med == pytest.approx(0.215)
    assert err == pytest.approx(scipy_stats.iqr(vals, rng=(16.275, 83.725)) / 2, rel=1e-12)
    assert M.median_and_error([1.0, 2.0, 3.0]) == pytest.approx((2.0, (2.67450 - 1.32550) / 2))


def test_kpd_values_reproduce_documented_batches():
    rng = np.random.default_rng(10)
    ref, gen = _gauss(rng, 1500, 4), _gauss(rng, 1200, 4, shift=0.2)
    vals = M.kpd_values(ref, gen, num_batches=3, batch_size=200, seed=5, dtype="float64")
    scale = np.abs(ref).max(0)
    r, g = ref / scale, gen / scale
    expected = []
    for i in range(3):
        draw = np.random.default_rng(5 + 1000 * i)
        i1 = draw.integers(0, len(r), 200)
        i2 = draw.integers(0, len(g), 200)
        expected.append(_mmd_full(r[i1], g[i2]))
    np.testing.assert_allclose(vals, expected, rtol=1e-10)
    vals32 = M.kpd_values(ref, gen, num_batches=3, batch_size=200, seed=5, dtype="float32")
    np.testing.assert_allclose(vals32, expected, rtol=1e-4)
    med, err = M.kpd(ref, gen, num_batches=3, batch_size=200, seed=5, dtype="float64")
    assert (med, err) == pytest.approx(M.median_and_error(expected), rel=1e-10)


def test_kpd_null_and_shifted():
    rng = np.random.default_rng(11)
    ref, same, other = _gauss(rng, 3000, 5), _gauss(rng, 3000, 5), _gauss(rng, 3000, 5, shift=0.3)
    m0, e0 = M.kpd(ref, same, num_batches=6, batch_size=1000)
    m1, e1 = M.kpd(ref, other, num_batches=6, batch_size=1000)
    assert e0 > 0 and abs(m0) < 3 * e0
    assert m1 > 5 * e1 and m1 > 20 * max(e0, abs(m0))


# ------------------------------------------------------------------------------------------ bad inputs


def test_bad_inputs_raise_metric_errors():
    rng = np.random.default_rng(12)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 4))
    with pytest.raises(M.MetricError, match="3 features but generated has 4"):
        M.fpd(a, b)
    bad = a.copy()
    bad[7, 1] = np.nan
    with pytest.raises(M.MetricError, match="generated sample: 1 non-finite.*event 7, feature 1"):
        M.kpd(a, bad)
    with pytest.raises(M.MetricError, match="2-D array"):
        M.frechet_distance(np.zeros((2, 2, 2)), a)
    with pytest.raises(M.MetricError, match="num_points"):
        M.fpd(a, a, num_points=2)
    with pytest.raises(M.MetricError, match="dtype"):
        M.kpd(a, a, dtype="float16")
    with pytest.raises(Ml4epError, match="equal numbers"):
        M.classifier_metric(a, a[:40], hidden=4, epochs=1)
    with pytest.raises(M.MetricError, match="invalid device"):
        M.classifier_metric(a, a, hidden=4, epochs=1, device="nonsense")
    with pytest.raises(M.MetricError, match="split"):
        M.classifier_metric(a, a, hidden=4, epochs=1, split=(0.5, 0.5, 0.1))


# ----------------------------------------------------------------------------------------- classifier


def test_classifier_same_distribution_gives_chance():
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(13)
    n = 8000
    ref, gen = _gauss(rng, n, 5), _gauss(rng, n, 5)
    res = M.classifier_metric(ref, gen, hidden=32, n_hidden_layers=2, epochs=3, batch_size=500, device="cpu")
    assert set(res) == {"auc", "jsd", "n_train", "n_test", "n_val", "epochs_run", "best_test_accuracy"}
    assert (res["n_train"], res["n_test"], res["n_val"]) == (9600, 3200, 3200)
    assert res["epochs_run"] == 3
    n1 = n0 = res["n_val"] / 2
    sigma_auc = math.sqrt((n1 + n0 + 1) / (12 * n1 * n0))  # AUC spread under the null hypothesis
    assert abs(res["auc"] - 0.5) < 4 * sigma_auc
    # JSD ~ 0; it can dip below 0 because isotonic steps fitted on the test split at p = 1e-6 or 1 - 1e-6
    # cost ln(1e6) = 13.8 nats for each validation event of the other class that falls beyond them
    assert -0.1 < res["jsd"] < 0.02
    assert res["best_test_accuracy"] < 0.53


def test_classifier_separated_samples_and_early_stop():
    pytest.importorskip("torch")
    rng = np.random.default_rng(14)
    ref, gen = _gauss(rng, 2000, 5), _gauss(rng, 2000, 5, shift=1.5)
    res = M.classifier_metric(ref, gen, hidden=32, n_hidden_layers=2, epochs=8, batch_size=200, device="cpu",
                              dtype="float32")
    assert res["auc"] > 0.9 and res["jsd"] > 0.5
    far = _gauss(rng, 2000, 5, shift=8.0)  # 18 sigma apart: separable, accuracy 1 -> early stop
    res = M.classifier_metric(ref, far, hidden=16, n_hidden_layers=1, epochs=10, lr=5e-3, batch_size=200,
                              device="cpu")
    assert res["best_test_accuracy"] == 1.0 and res["epochs_run"] < 10
    assert res["auc"] == pytest.approx(1.0)
    # calibrated p is clipped to [1e-6, 1 - 1e-6], so JSD cannot exceed 1 + log2(1 - 1e-6)
    assert 0.999 < res["jsd"] <= 1.0 + math.log1p(-1e-6) / math.log(2.0) + 1e-12
