"""The energy guard (models/guard.py) and the flow model's u-variables: no generated shower holds more energy, in
total or in a layer, than the training showers of its energy allow, in Python (torch), in the exported ONNX graphs
run by onnxruntime, in the ml4ep-compiled postprocessing and in the C++ hook; the u-variables checked against a
NumPy float64 computation written here."""

from __future__ import annotations

import logging
import math
import shutil
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ml4ep.fastsim import geometry, gflash, io  # noqa: E402
from ml4ep.fastsim.generate import export, generate  # noqa: E402
from ml4ep.fastsim.models.diffusion import STATE_CLIP, U_DELTA, DiffusionConfig, ShowerFlow  # noqa: E402
from ml4ep.fastsim.models.guard import (DEFAULT_TOTAL_MAX, GUARD_BINS, LAYER_MARGIN, TOTAL_MARGIN,  # noqa: E402
                                        GuardStats)
from ml4ep.fastsim.train import load_checkpoint, model_from_checkpoint, train  # noqa: E402

GEO = "ds2"
E_LO, E_HI = 1.0, 1000.0  # GeV
CXX = shutil.which("g++")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """300 ds2 showers, 1 GeV - 1 TeV log-uniform, with both ends present."""
    root = tmp_path_factory.mktemp("guard")
    energy = np.exp(np.random.default_rng(5).uniform(math.log(E_LO), math.log(E_HI), 300))
    energy[:2] = E_LO, E_HI
    e, s = gflash.simulate(GEO, 300, energy=energy, seed=11)
    return io.write(root / "train.h5", e, s, geometry=GEO, compression=None), e, s


def _layers(s):
    geo = geometry.get(GEO)
    return np.stack([s[:, a:b].astype(np.float64).sum(1) for a, b in zip(geo.offsets[:-1], geo.offsets[1:])], 1)


def _train(data, run, model, **kw):
    path = data[0]
    small = dict(dim=8, depth=1, heads=2) if model == "diffusion" else dict(hidden=(16,), latent=2)
    train(path, run, model=model, epochs=1, batch_size=100, geometry=GEO, progress=False, device="cpu", seed=1,
          validation_split=0.0, **small, **kw)
    return run


@pytest.fixture(scope="module", params=["u", "log"])
def flow_run(request, data, tmp_path_factory):
    return _train(data, tmp_path_factory.mktemp(f"flow_{request.param}") / "run", "diffusion", energy=request.param)


@pytest.fixture(scope="module")
def vae_run(data, tmp_path_factory):
    return _train(data, tmp_path_factory.mktemp("vae") / "run", "vae")


def _expected_bounds(e_mev, layers, e_lo, e_hi):
    """The guard's bounds at the bin centres, computed directly from the showers (bins in ln E over the range,
    each bin's maxima widened to its neighbours', times the margins). A shower's ln E is first rounded to the middle
    of its 1/64-wide step (the guard's running maxima are kept at that resolution)."""
    lo, hi = math.log(e_lo), math.log(e_hi)
    ln_e = (np.floor(np.log(e_mev) * 64) + 0.5) / 64
    b = np.clip(((ln_e - lo) / (hi - lo) * GUARD_BINS).astype(int), 0, GUARD_BINS - 1)
    frac = layers / e_mev[:, None]
    lmax, tmax = np.full((GUARD_BINS, frac.shape[1]), np.nan), np.full(GUARD_BINS, np.nan)
    for k in range(GUARD_BINS):
        if (b == k).any():
            lmax[k], tmax[k] = frac[b == k].max(0), frac[b == k].sum(1).max()
    return lmax, tmax


def test_guard_bounds_cover_every_training_shower(flow_run, data):
    _, e, s = data
    e = e.reshape(-1).astype(np.float64)
    layers = _layers(s)
    m = model_from_checkpoint(load_checkpoint(flow_run))
    lay_b, tot_b = (t.double().numpy() for t in m.guard_bounds(torch.from_numpy(e).float().reshape(-1, 1)))
    frac = layers / e[:, None]
    assert np.all(frac <= lay_b * (1 + 1e-5)) and np.all(frac.sum(1) <= tot_b[:, 0] * (1 + 1e-5))
    # at a filled bin's centre the bound is the margin times the largest of the bin and its filled neighbours
    lmax, tmax = _expected_bounds(e, layers, e.min(), e.max())
    got_l, got_t = m.guard_layer.double().numpy(), m.guard_total.double().numpy()[:, 0]
    for k in range(GUARD_BINS):
        near = [j for j in (k - 1, k, k + 1) if 0 <= j < GUARD_BINS and not np.isnan(tmax[j])]
        if k in near and len(near) == len([j for j in (k - 1, k, k + 1) if 0 <= j < GUARD_BINS]):
            np.testing.assert_allclose(got_t[k], TOTAL_MARGIN * max(tmax[j] for j in near), rtol=1e-5)
            want = np.minimum(LAYER_MARGIN * np.max([lmax[j] for j in near], 0), got_t[k])
            np.testing.assert_allclose(got_l[k], np.maximum(want, 1e-9), rtol=1e-5, atol=1e-12)
    # E_tot / E_inc of the parameterised showers is largest at 1 GeV (sampling fluctuations): the bound follows
    assert tot_b[np.argmin(e), 0] > tot_b[np.argmax(e), 0]


def test_guard_stats_fill_empty_bins():
    g = GuardStats(2)
    g.add([1000.0, 1e6], np.array([[300.0, 500.0], [2e5, 8e5]]))  # two showers, at the ends of the range
    lay, tot = g.bounds(1000.0, 1e6, bins=8)
    # empty bins 1-6 copy the nearer end (1-3: the first, 4-6: the last), then every bin takes its neighbours' maxima
    np.testing.assert_allclose(tot, TOTAL_MARGIN * np.array([0.8, 0.8, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0]))
    np.testing.assert_allclose(lay[0], [LAYER_MARGIN * 0.3, LAYER_MARGIN * 0.5])
    with pytest.raises(ValueError):
        GuardStats(1).bounds(1.0, 2.0)


def test_u_variables_match_numpy_and_invert(data):
    """The u-variables and their inverse against a float64 computation written here: u_i = a_i / sum_{j>=i} a_j
    (a = E_layer / E_inc + 1e-7), the last layer's number sum(a) / b(E); the inverse gives back every layer."""
    _, e, s = data
    geo = geometry.get(GEO)
    m = ShowerFlow(DiffusionConfig(n_voxels=geo.n_voxels, n_tokens=45, layer_sizes=[144] * 45, dim=8, depth=1,
                                   heads=2, energy="u"))
    m._set_condition_stats(float(e.min()), float(e.max()))
    rng = np.random.default_rng(0)
    m.set_guard(rng.uniform(0.5, 1.0, (GUARD_BINS, 45)), rng.uniform(1.2, 1.8, GUARD_BINS))
    e64 = e.reshape(-1).astype(np.float64)
    frac = _layers(s) / e64[:, None]
    bound = m.guard_bounds(torch.from_numpy(e64).float().reshape(-1, 1))[1].double().numpy()[:, 0]
    a = frac + U_DELTA
    rest = np.cumsum(a[:, ::-1], 1)[:, ::-1]
    u = np.concatenate([a[:, :-1] / rest[:, :-1], (a.sum(1) / bound)[:, None]], 1)
    u = np.clip(u, U_DELTA, 1 - U_DELTA)  # an empty first layer: u = 1e-7 / (sum + 4.5e-6), clipped at 1e-7
    want = np.log(u / (1 - u))
    et = torch.from_numpy(e64).float().reshape(-1, 1)
    got = m.energy_to_u(torch.from_numpy(frac).float(), et).double().numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)
    back = m.u_to_energy(torch.from_numpy(want).float(), et).double().numpy()
    np.testing.assert_allclose(back, frac, rtol=2e-4, atol=1e-6)
    # any logits at all: the layers sum to the generated total (up to the offsets), never above the bound
    z = torch.from_numpy(rng.normal(0, 6, (len(e64), 45))).float()
    f = m.u_to_energy(z, et).double().numpy()
    total = torch.sigmoid(z[:, -1]).double().numpy() * bound
    assert np.all(f >= 0) and np.all(f.sum(1) <= bound * (1 + 1e-5))
    np.testing.assert_allclose(f.sum(1), total, rtol=1e-4, atol=45 * U_DELTA)


def _extreme(model, energies_gev, value):
    n = len(energies_gev)
    e = torch.tensor(np.asarray(energies_gev, np.float32).reshape(-1, 1) * 1000.0)
    x = torch.full((n, model.config.state_size), float(value))
    return e, model.postprocess(x, e).double().numpy()


def _assert_within(model, e_mev, showers):
    lay_b, tot_b = (t.double().numpy() for t in model.guard_bounds(torch.as_tensor(e_mev, dtype=torch.float32)
                                                                  .reshape(-1, 1)))
    e = np.asarray(e_mev, np.float64).reshape(-1)
    layers = _layers(showers)
    assert np.all(np.isfinite(showers)) and showers.min() >= 0
    assert np.all(layers <= lay_b * e[:, None] * (1 + 1e-4)), (layers / e[:, None]).max(1)
    assert np.all(layers.sum(1) <= tot_b[:, 0] * e * (1 + 1e-4)), layers.sum(1) / e
    return layers.sum(1) / e


@pytest.mark.parametrize("value", [STATE_CLIP, 100.0])
def test_extreme_state_stays_within_the_bounds(flow_run, value):
    """+8 everywhere (and far beyond, clipped to 8) at 1 GeV and 1 TeV: without the guard, the log representation
    gives tens of times E_inc at 1 GeV."""
    m = model_from_checkpoint(load_checkpoint(flow_run))
    e, showers = _extreme(m, [1.0, 1000.0], value)
    ratio = _assert_within(m, e.numpy(), showers)
    # u: every ratio high puts the energy into the first layer, which its bound cuts; log: every layer high
    assert np.all(ratio > (0.3 if m.config.energy == "log" else 0.0))  # bounded, not emptied
    if m.config.energy == "log":  # what the guard prevented: every layer 8 sigma high
        m.guard_layer.fill_(1e9)
        m.guard_total.fill_(1e9)
        assert _layers(_extreme(m, [1.0], value)[1]).sum() > 5 * 1000.0


def test_vae_guard(vae_run):
    """The VAE's decoder with every sigmoid saturated (each voxel at its largest training fraction)."""
    m = model_from_checkpoint(load_checkpoint(vae_run))
    with torch.no_grad():
        m.decoder_out.bias.fill_(50.0)
    e = torch.tensor([[1000.0], [1e6]])
    with torch.no_grad():
        showers = m.decode(torch.zeros(2, m.config.latent), e).double().numpy()
    tot_b = m.guard_bounds(e)[1].double().numpy()[:, 0]
    ratio = showers.sum(1) / e.numpy()[:, 0].astype(np.float64)
    assert np.all(ratio <= tot_b * (1 + 1e-5)) and np.all(ratio > 0.9 * tot_b)  # bounded, and it was needed
    assert float((m.voxel_scale.double().sum())) > 2 * tot_b.max()


def _saturating_copy(run, dst):
    """A copy of a flow run whose network drives every state number far up (the switch head's constant a = 200):
    the sampler ends at the clip, +8 everywhere."""
    ck = {k: v for k, v in load_checkpoint(run / "best.pt").items() if k != "path"}
    for key in ("model", "model_raw"):
        if key in ck:
            b = ck[key]["out.bias"].view(-1, 4)
            b[:, 0] = 200.0
    dst.mkdir(parents=True)
    torch.save(ck, dst / "best.pt")
    return dst


def test_extreme_state_in_onnx_compiled_and_hook(flow_run, tmp_path):
    """The same bound from the exported graphs with onnxruntime and ml4ep.infer, and from the C++ hook (which
    draws its own noise): a saturated network at 1 GeV and 1 TeV."""
    pytest.importorskip("onnxruntime")
    run = _saturating_copy(flow_run, tmp_path / "sat")
    m = model_from_checkpoint(load_checkpoint(run))
    e_mev = np.array([1000.0, 1e6, 1000.0, 1e6])
    ref = generate(run, e_mev, backend="torch", seed=3)
    _assert_within(m, e_mev, ref)
    for backend in ("onnxruntime", "ml4ep"):
        got = generate(run, e_mev, backend=backend, seed=3)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * ref.max())
    if CXX is None:
        pytest.skip("needs g++")
    from ml4ep.fastsim.hook import export_cpp

    res = export_cpp(export(run), tmp_path / "cpp")
    exe = tmp_path / "shower_hook"
    build = subprocess.run([CXX, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-DML4EP_NO_BLAS",
                            f"-I{res['dir']}", str(res["main"]), "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    out = tmp_path / "showers.f32"
    cpp = res["dir"]
    r = subprocess.run([str(exe), "--weights", str(cpp / "denoiser.bin"), "--post-weights", str(cpp / "postprocess.bin"),
                        "--steps", "4", "--seed", "9", "--out", str(out), "1", "1000", "1", "1000"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    hook = np.fromfile(out, np.float32).reshape(4, -1)
    _assert_within(m, e_mev, hook)
    np.testing.assert_allclose(hook.sum(1), ref.sum(1), rtol=1e-3)  # saturated: the same showers from any noise


def test_checkpoint_without_guard_gets_the_generic_bounds(flow_run, tmp_path, caplog):
    ck = {k: v for k, v in load_checkpoint(flow_run / "best.pt").items() if k != "path"}
    for key in ("model", "model_raw"):
        for k in ("guard_layer", "guard_total"):
            ck.get(key, {}).pop(k, None)
    (tmp_path / "old").mkdir()
    torch.save(ck, tmp_path / "old" / "best.pt")
    with caplog.at_level(logging.WARNING, logger="ml4ep.fastsim"):
        m = model_from_checkpoint(load_checkpoint(tmp_path / "old"))
    assert "predates the energy guard" in caplog.text
    assert float(m.guard_total.max()) == DEFAULT_TOTAL_MAX
    e, showers = _extreme(m, [1.0], STATE_CLIP)
    assert _layers(showers).sum() <= DEFAULT_TOTAL_MAX * 1000.0 * (1 + 1e-5)
