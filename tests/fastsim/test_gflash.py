"""Tests of ml4ep.fastsim.gflash against independent oracles: the numbers quoted in the GFlash notes, the formulas
re-implemented here with scipy.stats, exact Gamma-sum statistics and hand-placed deposits."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from ml4ep.errors import Ml4epError
from ml4ep.fastsim import gflash
from ml4ep.fastsim.geometry import Geometry, Layer, get

CAL = gflash.Calorimeter.par04_siw()


def _geo(name: str, n_layers: int, z_cell: float | None, r_edges, n_alpha: int, threshold: float = 0.0) -> Geometry:
    lay = [Layer(i, np.asarray(r_edges, dtype=float), n_alpha) for i in range(n_layers)]
    return Geometry(name, lay, threshold=threshold, z_cell_mm=z_cell)


def _no_threshold(name: str) -> Geometry:
    return dataclasses.replace(get(name), threshold=0.0)


# -- oracle: the notes' formulas, written independently of the module -----------------------------------------------
def _oracle_mean_params(e_mev: float) -> tuple[float, float, float, float, float]:
    """(T, alpha, sigma_lnT, sigma_lnalpha, rho) of the Par04 SiW sampling calorimeter from the notes' numbers."""
    z_eff, e_c, f_s, e_hat = 72.5, 9.44, 2.48, 0.704
    lny = math.log(e_mev / e_c)
    t = (lny - 0.812) - 0.55 / f_s - 0.69 * (1 - e_hat)
    a = 0.81 + (0.458 + 2.26 / z_eff) * lny - 0.476 / f_s
    s_t = min(0.5, 1 / (-2.5 + 1.25 * lny))
    s_a = min(0.5, 1 / (-0.82 + 0.79 * lny))
    return t, a, s_t, s_a, 0.784 - 0.023 * lny


def _oracle_draws(e_mev: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-shower (T, alpha) drawn as a bivariate normal in (ln T, ln alpha) with covariance matrix built here."""
    t, a, s_t, s_a, rho = _oracle_mean_params(e_mev)
    cov = [[s_t**2, rho * s_t * s_a], [rho * s_t * s_a, s_a**2]]
    ln = np.random.default_rng(seed).multivariate_normal([math.log(t), math.log(a)], cov, size=n)
    return np.maximum(np.exp(ln[:, 0]), 1.0), np.maximum(np.exp(ln[:, 1]), 1.1)


# -- material numbers and mean longitudinal parameters --------------------------------------------------------------
def test_par04_effective_numbers_match_the_notes():
    assert CAL.Z_eff == pytest.approx(72.5, abs=0.05)
    assert CAL.X0_eff == pytest.approx(4.22, abs=0.005)
    assert CAL.R_M_eff == pytest.approx(9.48, abs=0.005)
    assert CAL.E_c_eff == pytest.approx(9.44, abs=0.005)
    assert CAL.F_s == pytest.approx(2.48, abs=0.005)
    assert CAL.e_hat == pytest.approx(0.704, abs=0.0005)
    assert CAL.layer_thickness_mm == 3.4 and CAL.sampling_fraction == 0.033
    # pure tungsten: E_c 8.0 MeV with X0 in g/cm^2 (the notes), R_M = X0 21.2 / E_c
    assert gflash.TUNGSTEN.E_c == pytest.approx(8.0, abs=0.05)
    assert gflash.TUNGSTEN.R_M_mm == pytest.approx(3.504 * 21.2 / gflash.TUNGSTEN.E_c)


@pytest.mark.parametrize("e_gev, t, t_mm, alpha, s_t, s_a, rho", [
    (1, 3.4, 14.5, 2.9, 0.30, 0.35, 0.68), (10, 5.7, 24, 4.0, 0.16, 0.21, 0.62),
    (100, 8.0, 34, 5.2, 0.11, 0.15, 0.57), (1000, 10.3, 44, 6.3, 0.08, 0.12, 0.52)])
def test_longitudinal_parameters_table(e_gev, t, t_mm, alpha, s_t, s_a, rho):
    p = gflash.longitudinal_parameters(e_gev * 1000.0, CAL)
    assert float(p["T"]) == pytest.approx(t, abs=0.05)
    assert float(p["T_mm"]) == pytest.approx(t_mm, abs=0.6)
    assert float(p["alpha"]) == pytest.approx(alpha, abs=0.05)
    assert float(p["sigma_lnT"]) == pytest.approx(s_t, abs=0.005)
    assert float(p["sigma_lnalpha"]) == pytest.approx(s_a, abs=0.005)
    assert float(p["rho"]) == pytest.approx(rho, abs=0.005)
    assert float(p["beta"]) == pytest.approx((float(p["alpha"]) - 1) / float(p["T"]))


def test_sigmas_capped_at_low_energy():
    p = gflash.longitudinal_parameters(np.array([50.0, 150.0]), CAL)
    assert np.all(p["sigma_lnT"] == 0.5) and np.all(p["sigma_lnalpha"] == 0.5)


# -- energy scale and resolution -------------------------------------------------------------------------------------
def test_energy_conserved_on_ds2_before_threshold():
    e, s = gflash.simulate(_no_threshold("ds2"), 200, energy=(10.0, 10.0), seed=3)
    ratio = s.sum(axis=1, dtype=np.float64) / e[:, 0]
    assert np.all(e == 10_000.0)
    assert 0.97 < ratio.mean() < 1.0  # only lateral leakage beyond 4.4 R_M is lost


@pytest.mark.parametrize("e_gev, n", [(1.0, 400), (10.0, 400), (100.0, 150)])
def test_resolution_follows_the_stochastic_term(e_gev, n):
    # one deep, wide cell contains everything: the sum of Gamma(dE/s^2, s^2) per step is Gamma(E/s^2, s^2) exactly
    geo = _geo("box", 1, 60 * CAL.X0_eff, [0.0, 1e7], 1)
    e, s = gflash.simulate(geo, n, energy=(e_gev, e_gev), seed=11)
    ratio = s[:, 0].astype(np.float64) / e[:, 0]
    expected = CAL.stochastic_term / math.sqrt(e_gev)
    assert ratio.mean() == pytest.approx(1.0, abs=4 * expected / math.sqrt(n))
    assert ratio.std(ddof=1) == pytest.approx(expected, rel=4 / math.sqrt(2 * n))


# -- longitudinal and radial profiles --------------------------------------------------------------------------------
def test_mean_depth_matches_gamma_profile_and_grows_with_log_e():
    geo = _geo("ds2-depth", 45, 3.4, [0.0, 1e7], 1)  # the ds2 layers, laterally unbounded: no leakage, no threshold
    faces = np.arange(geo.n_layers + 1) * geo.z_cell_mm / CAL.X0_eff  # layer faces in X0
    centres = 0.5 * (faces[1:] + faces[:-1])
    depths = []
    for e_gev in (1.0, 10.0, 100.0):
        n = {1.0: 1000, 10.0: 400, 100.0: 150}[e_gev]
        e, s = gflash.simulate(geo, n, energy=(e_gev, e_gev), seed=5)
        per_layer = s.reshape(n, geo.n_layers, -1).sum(axis=2, dtype=np.float64)
        sim = float(np.mean(per_layer @ centres / per_layer.sum(axis=1)))
        # oracle: the Gamma profile with fluctuating (T, alpha), discretised into the same layers (scipy.stats)
        t, a = _oracle_draws(e_gev * 1000, 20_000, seed=1)
        frac = np.diff(stats.gamma.cdf(faces[None, :], a[:, None], scale=(t / (a - 1))[:, None]), axis=1)
        oracle = float(np.mean(frac @ centres / frac.sum(axis=1)))
        assert sim == pytest.approx(oracle, rel=0.03)
        # and the continuous Gamma mean alpha / beta = alpha T / (alpha - 1), averaged over the showers
        assert sim == pytest.approx(np.mean(a * t / (a - 1)), rel=0.04)
        depths.append(sim)
    # grows like ln E: about ln 10 = 2.3 X0 per decade (T = ln y - const)
    assert np.diff(depths) == pytest.approx([math.log(10)] * 2, abs=0.35)


def test_radial_containment_matches_profile_formula():
    r_m = CAL.R_M_eff
    geo = _geo("rings", 45, 3.4, [0.0, r_m, 2 * r_m, 1e7], 1)
    e_gev = 10.0
    e, s = gflash.simulate(geo, 150, energy=(e_gev, e_gev), seed=7)
    per_ring = s.reshape(len(s), 45, 3).sum(axis=(0, 1), dtype=np.float64)
    sim = np.cumsum(per_ring)[:2] / per_ring.sum()
    # oracle: the notes' R_C, R_T, p with sampling corrections, written out here, averaged over depth with the
    # mean Gamma profile (tau = t / T on a fine grid), fraction inside r = F(r) = p r^2/(r^2+R_C^2) + ...
    z, lne, f_s, one_e = 72.5, math.log(e_gev), 2.48, 1 - 0.704
    t0, a0 = _oracle_mean_params(e_gev * 1000)[:2]
    t = np.linspace(0.005, 36.2, 7240)
    weight = stats.gamma.pdf(t, a0, scale=t0 / (a0 - 1))
    tau = t / t0
    r_c = 0.0251 + 0.00319 * lne + (0.1162 - 0.000381 * z) * tau - 0.0203 * one_e + 0.0397 * np.exp(-tau) / f_s
    r_t = (0.659 - 0.00309 * z) * (np.exp(-2.59 * (tau - 0.645)) + np.exp((0.3585 + 0.0412 * lne) * (tau - 0.645)))
    r_t = r_t - 0.14 * one_e - 0.495 * np.exp(-tau) / f_s
    x = (0.401 + 0.00187 * z - tau) / (1.313 - 0.0686 * lne)
    p = np.clip((2.632 - 0.00094 * z) * np.exp(x - np.exp(x))
                + one_e * (0.348 - 0.642 * np.exp(-((tau - 1) ** 2)) / f_s), 0, 1)
    oracle = [np.sum(weight * (p * r**2 / (r**2 + r_c**2) + (1 - p) * r**2 / (r**2 + r_t**2))) / weight.sum()
              for r in (1.0, 2.0)]
    assert sim == pytest.approx(oracle, abs=0.015)
    assert 0.8 < sim[0] < 0.95  # about 90 % within one Moliere radius
    # the module's own CDF helper agrees with the written-out formula
    rc, rt, pp = gflash.radial_parameters(tau, e_gev, CAL)
    assert np.sum(weight * gflash.radial_cdf(1.0, rc, rt, pp)) / weight.sum() == pytest.approx(oracle[0], abs=2e-3)


# -- voxel spectrum ------------------------------------------------------------------------------------------------
def test_voxel_spectrum_is_not_comb_like():
    _, s = gflash.simulate("ds2", 40, energy=(10.0, 10.0), seed=2)
    values = s[s > 0]
    _, mult = np.unique(values, return_counts=True)
    assert len(values) > 10_000
    assert len(mult) / len(values) > 0.97
    assert mult.max() <= 5


# -- voxelisation --------------------------------------------------------------------------------------------------
def test_voxelise_hand_placed_deposits():
    lay = [Layer(0, np.array([0.0, 1.0, 3.0]), 4), Layer(1, np.array([0.0, 10.0]), 1),
           Layer(5, np.array([0.0, 2.0, 4.0, 8.0]), 2)]
    geo = Geometry("hand", lay, z_cell_mm=2.0)
    # (layer position, x, y, energy) -> (layer, alpha bin, r bin) worked out by hand
    deposits = [(0, 0.5, 0.1, 1.0, (0, 2, 0)),     # alpha ~ 0.2 -> bin 2 of [-pi,-pi/2,0,pi/2,pi]; r 0.51
                (0, -2.0, 0.1, 2.0, (0, 3, 1)),    # alpha ~ 3.09 -> bin 3; r 2.0
                (0, -2.0, -0.1, 4.0, (0, 0, 1)),   # alpha ~ -3.09 -> bin 0
                (0, 0.1, -2.5, 8.0, (0, 1, 1)),    # alpha ~ -1.53 -> bin 1
                (1, -7.0, 7.0, 16.0, (1, 0, 0)),   # one alpha bin; r 9.9
                (2, 1.0, 5.0, 32.0, (2, 1, 2)),    # alpha > 0 -> bin 1 of 2; r 5.1 -> bin 2
                (2, 0.5, -0.5, 64.0, (2, 0, 0)),   # alpha < 0 -> bin 0; r 0.7
                (0, -2.0, 0.0, 0.25, (0, 0, 1)),   # alpha = +pi exactly: [-pi, pi) wraps it to bin 0
                (0, -2.0, -0.0, 0.5, (0, 0, 1)),   # alpha = -pi exactly -> bin 0
                (0, 0.0, -0.5, 0.125, (0, 1, 0))]  # alpha = -pi/2 exactly -> bin 1 (left edge)
    lyr, x, y, en, where = zip(*deposits)
    # leakage: beyond the last edge, dropped
    lyr, x, y, en = list(lyr) + [0, 2], list(x) + [3.5, 0.0], list(y) + [0.0, -8.5], list(en) + [128.0, 256.0]
    out = gflash.voxelise(geo, lyr, x, y, en)
    expected = np.zeros((1, geo.n_voxels))
    for (layer, a, r), energy in zip(where, en):
        expected[0, geo.voxel(layer, a, r)] += energy
    np.testing.assert_array_equal(out, expected)
    # rows by shower index
    two = gflash.voxelise(geo, [1, 1], [1.0, 1.0], [0.0, 0.0], [1.0, 2.0], shower=[1, 0], n_showers=2)
    assert two[0, geo.voxel(1, 0, 0)] == 2.0 and two[1, geo.voxel(1, 0, 0)] == 1.0 and two.sum() == 3.0
    with pytest.raises(gflash.GFlashError, match="layer"):
        gflash.voxelise(geo, [3], [0.0], [0.0], [1.0])


def test_simulate_into_hand_made_cells():
    # one cell holding everything; a second, deeper layer receives only the far tail
    x0 = CAL.X0_eff
    geo = _geo("two", 2, 40 * x0, [0.0, 1e7], 1)
    e, s = gflash.simulate(geo, 50, energy=(10.0, 10.0), seed=1)
    assert s[:, 1].sum() < 1e-3 * s[:, 0].sum()
    # the first 3 X0: the fraction of energy is E[P(alpha, 3 beta)] (oracle: scipy.stats with the oracle draws)
    geo1 = _geo("thin", 1, 3 * x0, [0.0, 1e7], 1)
    e, s = gflash.simulate(geo1, 500, energy=(10.0, 10.0), seed=1)
    t, a = _oracle_draws(10_000.0, 20_000, seed=3)
    oracle = np.mean(stats.gamma.cdf(3.0, a, scale=t / (a - 1)))
    assert np.mean(s[:, 0] / e[:, 0]) == pytest.approx(oracle, rel=0.08)


@pytest.mark.parametrize("name, n", [("ds1-photons", 60), ("ds1-pions", 60), ("ds2", 40), ("ds3", 12)])
def test_builtin_geometries(name, n):
    geo = get(name)
    e, s = gflash.simulate(geo, n, energy=(1.0, 200.0), seed=4)
    assert e.shape == (n, 1) and s.shape == (n, geo.n_voxels)
    assert e.dtype == np.float32 and s.dtype == np.float32
    assert np.all(np.isfinite(s)) and np.all(s >= 0)
    assert not np.any((s > 0) & (s < geo.threshold))
    assert np.all((e >= 1000 * (1 - 1e-6)) & (e <= 200_000 * (1 + 1e-6)))
    ratio = s.sum(axis=1, dtype=np.float64) / e[:, 0]
    assert 0.85 < ratio.mean() < 1.05


def test_threshold_zeroes_small_voxels():
    raw_geo = _no_threshold("ds2")
    _, raw = gflash.simulate(raw_geo, 20, energy=(5.0, 5.0), seed=9)
    _, cut = gflash.simulate("ds2", 20, energy=(5.0, 5.0), seed=9)
    thr = get("ds2").threshold
    assert np.any((raw > 0) & (raw < thr))
    np.testing.assert_array_equal(cut, np.where(raw < thr, 0, raw))


# -- energies, seeds, chunks -----------------------------------------------------------------------------------------
def test_energy_options():
    geo = "ds1-photons"
    e, _ = gflash.simulate(geo, 600, energy=(1.0, 8.0), seed=1)
    u = np.log(e[:, 0].astype(np.float64) / 1000) / math.log(8.0)
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    e, _ = gflash.simulate(geo, 200, energy=[1.0, 4.0, 16.0], seed=1)
    vals, cnt = np.unique(e, return_counts=True)
    assert list(vals) == [1000.0, 4000.0, 16000.0] and cnt.min() > 40
    given = np.array([2.0, 3.0, 0.5])
    e, _ = gflash.simulate(geo, 3, energy=given, seed=1)
    np.testing.assert_allclose(e[:, 0], given * 1000)
    e, _ = gflash.simulate(geo, 3, energy=7.5, seed=1)
    assert np.all(e == 7500.0)


def test_same_seed_same_output_and_chunking_invariance():
    kw = dict(energy=(1.0, 20.0), angle=0.05)
    e1, s1 = gflash.simulate("ds2", 300, seed=42, **kw)
    e2, s2 = gflash.simulate("ds2", 300, seed=42, chunk_size=7, **kw)
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(s1, s2)
    chunks = list(gflash.simulate_chunks("ds2", 300, seed=42, chunk_size=128 + 5, **kw))
    assert [len(c[0]) for c in chunks] == [133, 133, 34]
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), s1)
    e3, s3 = gflash.simulate("ds2", 300, seed=43, **kw)
    assert not np.array_equal(e1, e3) and not np.array_equal(s1, s3)
    # fixed energies: only the seed differs, the showers still differ
    _, a = gflash.simulate("ds2", 5, energy=(10.0, 10.0), seed=1)
    _, b = gflash.simulate("ds2", 5, energy=(10.0, 10.0), seed=2)
    assert not np.array_equal(a, b)
    assert gflash.simulate("ds2", 0, seed=1)[1].shape == (0, 6480)


# -- incidence angle -------------------------------------------------------------------------------------------------
def test_incidence_angle_moves_centre_in_eta_with_depth():
    geo = _no_threshold("ds2")
    depth = (np.arange(geo.n_layers) + 0.5) * geo.z_cell_mm
    layers = slice(2, 14)

    def ec_eta(angle):
        _, s = gflash.simulate(geo, 60, energy=(10.0, 10.0), seed=8, angle=angle)
        s = s.astype(np.float64)
        num = (s * geo.eta_centres).reshape(len(s), geo.n_layers, -1).sum(axis=2).sum(axis=0)
        den = s.reshape(len(s), geo.n_layers, -1).sum(axis=2).sum(axis=0)
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    tan = math.tan(0.15)
    for angle, sign in ((0.15, 1), (-0.15, -1)):
        ec = ec_eta(angle)
        slope = np.polyfit(depth[layers], ec[layers], 1)[0]
        assert slope == pytest.approx(sign * tan, rel=0.3)
    flat = ec_eta(None)
    assert np.all(np.abs(flat[layers]) < 0.5)


# -- errors --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(energy=(-1.0, 10.0)), "energy"), (dict(energy=(10.0, 1.0)), "lo <= hi"),
    (dict(energy=(0.01, 1.0)), "GFlash range"), (dict(energy=[1.0, float("nan")]), "energy"),
    (dict(energy="10"), "energy"), (dict(angle=2.0), "angle"), (dict(angle=[0.1, 0.2]), "angle"),
    (dict(seed=-1), "seed"), (dict(seed="x"), "seed"), (dict(chunk_size=0), "chunk_size"), (dict(n=-1), "n must"),
])
def test_bad_input_raises_clear_errors(kwargs, match):
    args = dict(n=3)
    args.update(kwargs)
    n = args.pop("n")
    with pytest.raises(gflash.GFlashError, match=match) as info:
        gflash.simulate("ds1-photons", n, **args)
    assert isinstance(info.value, Ml4epError) and isinstance(info.value, ValueError)


def test_bad_calorimeter_and_geometry():
    with pytest.raises(gflash.GFlashError, match="stochastic_term"):
        gflash.Calorimeter.par04_siw(stochastic_term=0.0)
    with pytest.raises(gflash.GFlashError, match="calorimeter"):
        gflash.simulate("ds2", 2, calorimeter="SiW")
    with pytest.raises(Ml4epError, match="unknown geometry"):
        gflash.simulate("ds9", 2)


def test_layer_depths():
    for name in ("ds2", "ds3"):
        np.testing.assert_allclose(gflash.layer_depths_mm(get(name), CAL), np.arange(46) * CAL.layer_thickness_mm)
    # no z_cell_mm (dataset 1): equal depth per layer, fallback_layer_x0 radiation lengths each
    np.testing.assert_allclose(gflash.layer_depths_mm(get("ds1-photons"), CAL), np.arange(6) * 5.0 * CAL.X0_eff)
    deep = gflash.Calorimeter.par04_siw(fallback_layer_x0=2.0)
    np.testing.assert_allclose(gflash.layer_depths_mm(get("ds1-pions"), deep), np.arange(8) * 2.0 * CAL.X0_eff)
