"""Tests of ml4ep.fastsim.features against hand computations and independent loops over voxels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ml4ep.errors import Ml4epError
from ml4ep.fastsim import features as F
from ml4ep.fastsim.geometry import get

TINY = {"name": "tiny", "voxel_threshold_MeV": 0.1,
        "layers": [{"id": 3, "r_edges_mm": [0, 1, 3], "n_alpha": 4},
                   {"id": 7, "r_edges_mm": [0, 2, 4, 10], "n_alpha": 1}]}


def oracle(e_inc, showers, layers, thr):
    """Features by explicit loops over voxels, with cell centres computed here from the layer definitions."""
    showers = np.where(np.asarray(showers, float) < thr, 0.0, np.asarray(showers, float))
    out = {k: [] for k in ("e_layer", "ec_r", "width_r", "sparsity", "ec_eta", "ec_phi", "width_eta", "width_phi")}
    for s in showers:
        row = {k: [] for k in out}
        v = 0
        for edges, n_alpha in layers:
            sw = sx = sy = sr = sxx = syy = srr = 0.0
            hits = 0
            for j in range(n_alpha):
                a = -math.pi + (j + 0.5) * 2 * math.pi / n_alpha if n_alpha > 1 else 0.0
                for i in range(len(edges) - 1):
                    r = 0.5 * (edges[i] + edges[i + 1])
                    x, y, e = r * math.cos(a), r * math.sin(a), s[v]
                    sw += e
                    sx += x * e
                    sy += y * e
                    sr += r * e
                    sxx += x * x * e
                    syy += y * y * e
                    srr += r * r * e
                    hits += e > 0
                    v += 1
            n_vox = n_alpha * (len(edges) - 1)
            cr = sr / (sw + 1e-16)
            row["e_layer"].append(sw)
            row["ec_r"].append(cr)
            row["width_r"].append(math.sqrt(max(0.0, srr / (sw + 1e-16) - cr * cr)))
            row["sparsity"].append(1 - hits / n_vox)
            if n_alpha > 1:
                cx, cy = sx / (sw + 1e-16), sy / (sw + 1e-16)
                row["ec_eta"].append(cx)
                row["ec_phi"].append(cy)
                row["width_eta"].append(math.sqrt(max(0.0, sxx / (sw + 1e-16) - cx * cx)))
                row["width_phi"].append(math.sqrt(max(0.0, syy / (sw + 1e-16) - cy * cy)))
        assert v == showers.shape[1]
        for k in out:
            out[k].append(row[k])
    res = {k: np.array(v, dtype=float).reshape(len(showers), -1) for k, v in out.items()}
    res["e_tot"] = res["e_layer"].sum(axis=1)
    res["e_inc"] = np.asarray(e_inc, float).reshape(-1)
    return res


def layer_defs(geo):
    return [(list(lay.r_edges), lay.n_alpha) for lay in geo.layers]


def assert_matches(hlf, ref, rtol=1e-10, atol=1e-10):
    for k, v in ref.items():
        got = getattr(hlf, k)
        assert got.shape == v.shape, k
        # a width is sqrt of a difference: rounding of ~1e-16 r^2 shows up as ~1e-8 r where the width is 0
        np.testing.assert_allclose(got, v, rtol=rtol, atol=max(atol, 1e-6) if k.startswith("width") else atol,
                                   err_msg=k)


def random_showers(geo, n, seed, p_zero=0.6, dtype=np.float32):
    rng = np.random.default_rng(seed)
    s = rng.exponential(2.0, size=(n, geo.n_voxels))
    s[rng.random(s.shape) < p_zero] = 0
    s[rng.random(s.shape) < 0.05] = geo.threshold * 0.5  # some voxels just below threshold
    e = 10 ** rng.uniform(3, 5, size=(n, 1))
    return e, s.astype(dtype)


# ------------------------------------------------------------------------------------------------------------
def test_tiny_geometry_by_hand():
    geo = get(TINY)
    assert geo.n_voxels == 11 and geo.alpha_layers == [0]
    s = np.zeros((3, 11))
    # layer 0 (alpha-major, r fastest): alpha 0 (centre -3pi/4), r bin 1 (r=2): 2 MeV; alpha 2 (pi/4), r 0 (0.5): 1 MeV
    s[0, 0 * 2 + 1] = 2.0
    s[0, 2 * 2 + 0] = 1.0
    s[0, 3 * 2 + 1] = 0.05  # below threshold: removed
    s[0, 8:11] = [1.0, 0.0, 3.0]  # layer 1: r mids 1, 3, 7
    s[1, 4] = 5.0  # one voxel only: centre at the cell, width 0
    s[1, 9] = -0.3  # negative: removed
    s[1, 10] = 0.1  # exactly at the threshold: kept
    e_inc = np.array([[100.0], [50.0], [10.0]])
    keep = s.copy()
    h = F.compute(e_inc, s, geo)
    np.testing.assert_array_equal(s, keep)  # input untouched
    # numbers worked out by hand
    c = math.sqrt(0.5)
    x0, y0, x1, y1 = -2 * c, -2 * c, 0.5 * c, 0.5 * c
    ex = (2 * x0 + x1) / 3
    assert h.e_layer[0].tolist() == pytest.approx([3.0, 4.0])
    assert h.e_tot[0] == pytest.approx(7.0)
    assert h.ec_eta[0, 0] == pytest.approx(ex) and h.ec_phi[0, 0] == pytest.approx((2 * y0 + y1) / 3)
    assert h.width_eta[0, 0] == pytest.approx(math.sqrt((2 * x0 ** 2 + x1 ** 2) / 3 - ex ** 2))
    assert h.ec_r[0].tolist() == pytest.approx([1.5, 5.5])
    assert h.width_r[0, 1] == pytest.approx(math.sqrt(6.75))
    assert h.sparsity[0].tolist() == pytest.approx([1 - 2 / 8, 1 - 2 / 3])
    assert h.ec_eta[1, 0] == pytest.approx(0.5 * math.cos(math.pi / 4))
    assert h.width_eta[1, 0] == 0.0 and h.width_r[1, 0] == 0.0
    assert h.e_layer[1, 1] == 0.1 and h.sparsity[1, 1] == pytest.approx(2 / 3) and h.ec_r[1, 1] == pytest.approx(7)
    # the empty shower: centres and widths 0, sparsity 1
    assert np.all(h.ec_r[2] == 0) and np.all(h.width_eta[2] == 0) and np.all(h.sparsity[2] == 1)
    assert_matches(h, oracle(e_inc, s, layer_defs(geo), 0.1))


REGULAR = {"name": "reg", "voxel_threshold_MeV": 0.2,
           "layers": [{"id": 0, "r_edges_mm": [0, 1, 2.5, 4], "n_alpha": 3}, {"repeat": 2}]}
REGULAR_NO_ALPHA = {"name": "reg1", "layers": [{"id": 0, "r_edges_mm": [0, 1, 2.5, 4], "n_alpha": 1}, {"repeat": 1}]}


@pytest.mark.parametrize("spec", [TINY, REGULAR, REGULAR_NO_ALPHA], ids=["irregular", "regular", "no-alpha"])
def test_small_geometries_random_against_loops(spec):
    geo = get(spec)
    e, s = random_showers(geo, 40, 1, dtype=np.float64)
    assert_matches(F.compute(e, s, geo), oracle(e, s, layer_defs(geo), geo.threshold))


def test_threshold_copy_dtype_and_value():
    geo = get(TINY)
    s = np.array([[0.05, 0.1, 0.2, -1.0, 0, 0, 0, 0, 0.0999, 3.0, 1e-9]], dtype=np.float32)
    keep = s.copy()
    t = F.threshold(s, geo)
    np.testing.assert_array_equal(s, keep)
    assert t.dtype == np.float32 and t is not s
    np.testing.assert_array_equal(t, np.where(s < np.float32(0.1), 0, s))
    assert t[0, 1] == np.float32(0.1)  # exactly at the threshold: kept
    t2 = F.threshold(s.astype(int), geo, value=1.0)
    assert t2.dtype == np.float64 and t2[0].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 3.0, 0]
    with pytest.raises(F.FeatureError, match="11 voxels"):
        F.threshold(np.zeros((2, 10)), geo)


@pytest.mark.parametrize("name", ["ds1-photons", "ds1-pions"])
def test_ds1_irregular_against_loops(name):
    geo = get(name)
    e, s = random_showers(geo, 12, 2)
    h = F.compute(e, s, geo)
    assert h.e_layer.shape == (12, geo.n_layers) and h.ec_eta.shape == (12, len(geo.alpha_layers))
    assert_matches(h, oracle(e, s, layer_defs(geo), geo.threshold), rtol=1e-9, atol=1e-9)


def test_ds2_regular_against_reshape():
    geo = get("ds2")
    assert geo.regular
    e, s = random_showers(geo, 20, 3)
    h = F.compute(e, s, geo)
    x = np.where(s < geo.threshold, 0, s).astype(np.float64).reshape(20, 45, 16, 9)
    r = (np.arange(9) + 0.5) * 4.65
    a = -np.pi + (np.arange(16) + 0.5) * 2 * np.pi / 16
    eta, phi = np.outer(np.cos(a), r), np.outer(np.sin(a), r)
    el = x.sum(axis=(2, 3))
    ec_eta = np.einsum("nlar,ar->nl", x, eta) / (el + 1e-16)
    w_phi = np.sqrt(np.maximum(0, np.einsum("nlar,ar->nl", x, phi ** 2) / (el + 1e-16)
                               - (np.einsum("nlar,ar->nl", x, phi) / (el + 1e-16)) ** 2))
    ec_r = np.einsum("nlar,r->nl", x, r) / (el + 1e-16)
    np.testing.assert_allclose(h.e_layer, el, rtol=1e-12)
    np.testing.assert_allclose(h.ec_eta, ec_eta, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(h.width_phi, w_phi, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(h.ec_r, ec_r, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(h.sparsity, 1 - (x > 0).mean(axis=(2, 3)), rtol=1e-12)
    np.testing.assert_allclose(h.e_tot, el.sum(axis=1), rtol=1e-12)


def test_work_blocks_do_not_change_results(monkeypatch):
    for name in ("ds2", "ds1-pions"):
        geo = get(name)
        e, s = random_showers(geo, 23, 4)
        whole = F.compute(e, s, geo)
        monkeypatch.setattr(F, "_BLOCK_VALUES", 5 * geo.n_voxels)  # blocks of 5 showers, last one of 3
        blocked = F.compute(e, s, geo)
        monkeypatch.undo()
        for k in ("e_layer", "ec_eta", "width_phi", "ec_r", "width_r", "sparsity"):
            np.testing.assert_allclose(getattr(blocked, k), getattr(whole, k), rtol=1e-12, atol=1e-12)


def test_high_level_inputs_length_and_order():
    for name, d in (("ds2", 362), ("ds1-photons", 30), ("ds3", 362)):
        geo = get(name)
        e, s = random_showers(geo, 3, 5)
        h = F.compute(e, s, geo)
        x = F.high_level_inputs(h)
        assert x.shape == (3, d), name
        L, La = geo.n_layers, len(geo.alpha_layers)
        np.testing.assert_allclose(x[:, 0], np.log10(e[:, 0]))
        np.testing.assert_allclose(x[:, 1:1 + L], np.log10(h.e_layer + 1e-8))
        o = 1 + L
        for k, field in enumerate(("ec_eta", "ec_phi", "width_eta", "width_phi")):
            np.testing.assert_allclose(x[:, o + k * La:o + (k + 1) * La], getattr(h, field) / 100, err_msg=field)
        o += 4 * La
        np.testing.assert_allclose(x[:, o], np.log10(h.e_tot + 1e-8))
        np.testing.assert_allclose(x[:, o + 1:o + 1 + L], h.sparsity)
        np.testing.assert_allclose(x[:, o + 1 + L:o + 1 + 2 * L], h.ec_r / 100)
        np.testing.assert_allclose(x[:, o + 1 + 2 * L:], h.width_r / 100)
    # ds1-photons by explicit position: 1 + 5 layers, then EC_eta of layers 1 and 2 ...
    geo = get("ds1-photons")
    e, s = random_showers(geo, 2, 6)
    h = F.compute(e, s, geo)
    x = F.high_level_inputs(h)
    assert x[1, 6] == pytest.approx(h.ec_eta[1, 0] / 100) and x[1, 7] == pytest.approx(h.ec_eta[1, 1] / 100)
    assert x[0, 13] == pytest.approx(h.width_phi[0, 1] / 100)
    assert x[0, 14] == pytest.approx(np.log10(h.e_tot[0] + 1e-8))
    assert x[0, 29] == pytest.approx(h.width_r[0, 4] / 100)


def test_low_level_inputs():
    geo = get(TINY)
    e, s = random_showers(geo, 5, 7)
    x = F.low_level_inputs(e, s)
    assert x.shape == (5, 12) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0], np.log10(e[:, 0]), rtol=1e-6)
    np.testing.assert_allclose(x[:, 1:], s / e, rtol=1e-6)
    assert F.low_level_inputs(e[:, 0], s.astype(np.float64)).dtype == np.float64
    with pytest.raises(F.FeatureError, match="one energy per shower"):
        F.low_level_inputs(e[:4], s)
    with pytest.raises(F.FeatureError, match="> 0"):
        F.low_level_inputs(-e, s)


def test_bad_inputs_raise_clear_errors():
    geo = get(TINY)
    e, s = random_showers(geo, 4, 8, dtype=np.float64)
    with pytest.raises(F.FeatureError, match=r"\(N, 11\)"):
        F.compute(e, s[:, :10], geo)
    with pytest.raises(F.FeatureError, match="4 entries but showers has 3"):
        F.compute(e, s[:3], geo)
    bad = s.copy()
    bad[2, 5] = np.nan
    with pytest.raises(F.FeatureError, match="shower 2"):
        F.compute(e, bad, geo)
    with pytest.raises(F.FeatureError, match="entry 1"):
        F.compute(np.array([1.0, 0.0, 2.0, 3.0]), s, geo)
    assert issubclass(F.FeatureError, Ml4epError) and issubclass(F.FeatureError, ValueError)


def test_concatenate_equals_whole():
    geo = get("ds1-pions")
    e, s = random_showers(geo, 30, 9)
    whole = F.compute(e, s, geo)
    parts = [F.compute(e[a:b], s[a:b], geo) for a, b in ((0, 7), (7, 8), (8, 30))]
    joined = F.HLF.concatenate(parts)
    assert len(joined) == 30 and joined.geometry is geo
    for k in ("e_inc", "e_tot", "e_layer", "ec_eta", "ec_phi", "width_eta", "width_phi", "ec_r", "width_r",
              "sparsity"):
        np.testing.assert_allclose(getattr(joined, k), getattr(whole, k), rtol=1e-12, atol=1e-12, err_msg=k)
    with pytest.raises(F.FeatureError, match="part 1"):
        F.HLF.concatenate([whole, F.compute(*random_showers(get("ds1-photons"), 2, 1), "ds1-photons")])
    with pytest.raises(F.FeatureError, match="no parts"):
        F.HLF.concatenate([])


# ------------------------------------------------------------------------------------------------------------
def test_separation_power_values():
    assert F.separation_power([1, 2, 3, 0], [2, 4, 6, 0]) == 0.0  # same shape, different totals
    assert F.separation_power([5, 0, 0], [0, 0, 7]) == pytest.approx(1.0)
    # p = (3/4, 1/4), q = (1/2, 1/2): 1/2 * (1/16 / (5/4) + 1/16 / (3/4)) = 1/15
    assert F.separation_power([3, 1], [1, 1]) == pytest.approx(1 / 15)
    assert F.separation_power([3, 1], [1, 1]) == pytest.approx(F.separation_power([1, 1], [3, 1]))
    assert math.isnan(F.separation_power([0, 0], [1, 1]))
    with pytest.raises(F.FeatureError, match="different shapes"):
        F.separation_power([1, 2], [1, 2, 3])
    with pytest.raises(F.FeatureError, match=">= 0"):
        F.separation_power([1, -2], [1, 2])


def test_voxel_histogram_float32_on_the_edges():
    # float32 voxels exactly on, just below and just above float64 log edges: counted as an explicit float64
    # search over the edges counts them (last bin closed, values outside dropped)
    rng = np.random.default_rng(10)
    edges = np.logspace(np.log10(0.0151515), 4, 50)
    e32 = edges.astype(np.float32)
    v = np.concatenate([(10 ** rng.uniform(-3, 4.5, 20000)).astype(np.float32), e32,
                        np.nextafter(e32, np.float32(0)), np.nextafter(e32, np.float32(np.inf)),
                        np.zeros(100, np.float32)])
    x = v.astype(np.float64)
    inside = (x >= edges[0]) & (x <= edges[-1])
    idx = np.searchsorted(edges, x[inside], side="right") - 1
    idx[idx == len(edges) - 1] = len(edges) - 2
    want = np.bincount(idx, minlength=len(edges) - 1)
    np.testing.assert_array_equal(F.voxel_histogram(v, edges), want)
    np.testing.assert_array_equal(F.voxel_histogram(v[:, None], edges), want)  # any shape


def _sample(geo, n, seed, scale=1.0):
    e, s = random_showers(geo, n, seed)
    return e, s * np.float32(scale)


def test_histograms_streaming_and_binnings_ds2():
    geo = get("ds2")
    e, s = _sample(geo, 60, 11)
    h = F.compute(e, s, geo)
    st = F.threshold(s, geo)
    mx = float(st.max())
    edges = F.binnings(geo, h, mx)
    assert len(edges) == 2 + 45 * 8
    np.testing.assert_array_equal(edges["e_ratio"], np.linspace(0.5, 1.5, 101))
    np.testing.assert_allclose(edges["e_layer_10"], np.logspace(np.log10(0.5e-3 / 0.033),
                                                                np.log10(h.e_layer[:, 10].max()), 40))
    np.testing.assert_allclose(edges["voxel"], np.logspace(np.log10(geo.threshold), np.log10(mx), 50))
    np.testing.assert_array_equal(edges["ec_eta_44"], np.linspace(-30, 30, 101))
    np.testing.assert_array_equal(edges["ec_phi_0"], np.linspace(-30, 30, 101))
    np.testing.assert_array_equal(edges["width_eta_3"], np.linspace(0, 30, 101))
    np.testing.assert_array_equal(edges["ec_r_7"], np.linspace(0, 42, 101))
    np.testing.assert_array_equal(edges["width_r_7"], np.linspace(0, 20, 101))
    np.testing.assert_array_equal(edges["sparsity_44"], np.linspace(0, 1, 21))

    once = F.Histograms(edges)
    once.fill(h, st)
    chunked = F.Histograms(edges)
    for a, b in ((0, 25), (25, 26), (26, 60)):
        chunked.fill(F.compute(e[a:b], s[a:b], geo), st[a:b])
    assert once.n_showers == chunked.n_showers == 60
    for k in edges:
        np.testing.assert_array_equal(once.counts[k], chunked.counts[k], err_msg=k)
    # against numpy directly
    np.testing.assert_array_equal(once.counts["voxel"], np.histogram(st.ravel(), edges["voxel"])[0])
    np.testing.assert_array_equal(once.counts["e_ratio"], np.histogram(h.e_tot / h.e_inc[:], edges["e_ratio"])[0])
    np.testing.assert_array_equal(once.counts["width_phi_5"], np.histogram(h.width_phi[:, 5], edges["width_phi_5"])[0])
    assert once.counts["e_layer_10"].sum() == np.count_nonzero(h.e_layer[:, 10] >= geo.threshold) == 60
    assert once.counts["voxel"][-1] >= 1  # the maximum voxel is in the last bin

    sp = F.separation_powers(once, chunked)
    assert set(sp) == set(edges)
    assert all(v == 0 or math.isnan(v) for v in sp.values())
    # a sample with 20% more energy: E_tot/E_inc and voxel spectra separate
    e2, s2 = _sample(geo, 60, 12, scale=1.2)
    other = F.Histograms(edges)
    other.fill(F.compute(e2, s2, geo), F.threshold(s2, geo))
    sp2 = F.separation_powers(once, other)
    want = F.separation_power(np.histogram(h.e_tot / h.e_inc, edges["e_ratio"])[0], other.counts["e_ratio"])
    assert sp2["e_ratio"] == pytest.approx(want) and sp2["voxel"] > 0
    with pytest.raises(F.FeatureError, match="differ"):
        F.separation_powers(once, F.Histograms({"e_ratio": edges["e_ratio"]}))
    with pytest.raises(F.FeatureError, match="shape"):
        once.fill(h, st[:5])


def test_binnings_ds1_ranges_and_names():
    geo = get("ds1-photons")
    e, s = random_showers(geo, 10, 13)
    ed = F.binnings(geo, F.compute(e, s, geo), 100.0)
    assert "ec_eta_0" not in ed and "ec_eta_1" in ed and "ec_eta_12" not in ed and "e_layer_12" in ed
    np.testing.assert_array_equal(ed["ec_eta_2"], np.linspace(-100, 100, 101))
    np.testing.assert_array_equal(ed["width_phi_1"], np.linspace(0, 100, 101))
    np.testing.assert_array_equal(ed["ec_r_12"], np.linspace(0, 1500, 101))
    np.testing.assert_array_equal(ed["ec_r_3"], np.linspace(0, 500, 101))
    assert ed["e_layer_0"][0] == pytest.approx(1.0) and len(ed["e_layer_0"]) == 40
    geo = get("ds1-pions")
    e, s = random_showers(geo, 10, 14)
    ed = F.binnings(geo, F.compute(e, s, geo), 100.0)
    np.testing.assert_array_equal(ed["ec_eta_13"], np.linspace(-500, 500, 101))
    np.testing.assert_array_equal(ed["width_eta_12"], np.linspace(0, 400, 101))
    np.testing.assert_array_equal(ed["ec_r_14"], np.linspace(0, 1500, 101))
    assert "ec_eta_14" not in ed


def test_feature_names_and_bad_edges():
    geo = get(TINY)
    e, s = random_showers(geo, 6, 15)
    h = F.compute(e, s, geo)
    np.testing.assert_array_equal(F.feature_values(h, "ec_eta_3"), h.ec_eta[:, 0])
    np.testing.assert_array_equal(F.feature_values(h, "width_r_7"), h.width_r[:, 1])
    with pytest.raises(F.FeatureError, match="no layer 5"):
        F.feature_values(h, "e_layer_5")
    with pytest.raises(F.FeatureError, match="not binned in alpha"):
        F.feature_values(h, "ec_eta_7")
    with pytest.raises(F.FeatureError, match="unknown histogram"):
        F.feature_values(h, "energy")
    with pytest.raises(F.FeatureError, match="'x'"):
        F.Histograms({"x": [0, 2, 1]})
    with pytest.raises(F.FeatureError, match="reference features"):
        F.binnings("ds2", h, 10.0)


def test_binnings_custom_geometry_scaled_and_zero_threshold():
    spec = dict(TINY, voxel_threshold_MeV=0.0)
    geo = get(spec)
    e, s = random_showers(geo, 30, 16, dtype=np.float64)
    h = F.compute(e, s, geo)
    ed = F.binnings(geo, h, 50.0)
    k = 10.0 / 41.85  # outer radius of the tiny geometry over that of ds2/ds3
    np.testing.assert_allclose(ed["ec_eta_3"], np.linspace(-30 * k, 30 * k, 101))
    np.testing.assert_allclose(ed["width_r_7"], np.linspace(0, 20 * k, 101))
    col = h.e_layer[:, 1]
    assert ed["e_layer_7"][0] == col[col > 0].min() and ed["e_layer_7"][-1] == col.max()
    assert ed["voxel"][0] == pytest.approx(50.0 * 1e-7) and ed["voxel"][-1] == 50.0
    assert "ec_eta_7" not in ed and len(ed) == 2 + 4 + 2 * 4


def test_threshold_in_place_equals_the_copy():
    geo = get("ds1-photons")
    s = np.random.default_rng(3).random((6, geo.n_voxels)).astype(np.float32) * 3  # threshold 1 MeV
    want = np.where(s < 1.0, 0, s)
    out = F.threshold(s, geo, in_place=True)
    assert out is s
    np.testing.assert_array_equal(out, want)
