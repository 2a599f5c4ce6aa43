"""The CaloDiT-style flow-matching shower model end to end: GFlash showers -> train (through ml4ep.data) -> resume
-> export (denoiser + postprocessing) -> the sampler loop around torch, ONNX Runtime and the ml4ep-compiled
denoiser."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from ml4ep.fastsim import geometry, gflash, io
from ml4ep.fastsim.generate import GenerateError, export, generate
from ml4ep.fastsim.models.diffusion import (
    LAYER_EPS,
    LOG_EPS,
    MIN_LAYER_STD,
    MIN_VOXEL_STD,
    STATE_CLIP,
    ZERO_SNAP,
    DiffusionConfig,
    DiffusionConfigError,
    ShowerFlow,
    check_sampler,
    integrate,
)
from ml4ep.fastsim.train import TrainError, default_tokens, load_checkpoint, train

GEO = "ds1-photons"
KW = dict(model="diffusion", batch_size=64, lr=2e-3, seed=5, validation_split=0.2, patience=None, device="cpu",
          dim=16, depth=1, heads=2, warmup=5, ema_decay=0.9, geometry=GEO, progress=False)


@pytest.fixture(scope="module")
def showers_file(tmp_path_factory):
    e, s = gflash.simulate(GEO, 500, energy=(1.0, 100.0), seed=21)
    return io.write(tmp_path_factory.mktemp("flow") / "showers.h5", e, s, geometry=GEO)


@pytest.fixture(scope="module")
def run3(showers_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("flow3")
    return out, train(showers_file, out, epochs=3, **KW)


def test_training_checkpoints_ema_and_loss(run3):
    out, res = run3
    hist = res["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3] and res["steps"] == hist[-1]["step"] == 3 * 7
    # the untrained model already gives the exact velocity of normal data (the Gaussian skip, zero output layer), a
    # loss of about 1.4 here that 21 steps on 400 showers do not yet improve on; learning is followed in
    # docs/benchmarks.md (the benchmarks' validation losses)
    assert all(math.isfinite(h["train_mse"]) for h in hist) and hist[-1]["val_loss"] < 1.1 * hist[0]["val_loss"]
    ck = load_checkpoint(out / "last.pt")
    assert ck["kind"] == "diffusion" and {"model", "model_raw", "optimizer", "rng"} <= set(ck)
    # the saved weights are the moving average, not the raw weights
    assert any(not torch.equal(ck["model"][k], ck["model_raw"][k]) for k in ck["model_raw"])
    cfg = DiffusionConfig.from_dict(ck["config"])
    # 368 voxels in 5 layers of unequal size: a state of 373 numbers in 6 tokens of 63 (2 padded)
    assert cfg.state_size == 373 and cfg.n_tokens == 6 and cfg.token_size == 63
    assert cfg.layer_sizes == tuple(lay.n_voxels for lay in geometry.get(GEO).layers)
    assert cfg.threshold_mev == geometry.get(GEO).threshold


def test_resume_equals_uninterrupted_run(showers_file, run3, tmp_path):
    out3, _ = run3
    train(showers_file, tmp_path, epochs=2, **KW)
    rest = train(showers_file, tmp_path, epochs=3, resume=True, **KW)
    assert rest["epochs_run"] == 1 and rest["steps"] == 21
    a, b = load_checkpoint(out3 / "last.pt"), load_checkpoint(tmp_path / "last.pt")
    for part in ("model", "model_raw"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    with pytest.raises(TrainError, match="other settings"):
        train(showers_file, tmp_path, epochs=4, resume=True, **{**KW, "ema_decay": 0.5})


@pytest.mark.parametrize("sampler,steps", [("midpoint", 4), ("euler", 3), ("heun", 2)])
def test_backends_agree_for_the_same_noise(run3, sampler, steps):
    out, _ = run3
    rng = np.random.default_rng(1)
    energies = np.exp(rng.uniform(np.log(1e3), np.log(1e5), 5))
    noise = rng.standard_normal((5, 373)).astype(np.float32)
    ref = generate(out, energies, backend="torch", noise=noise, steps=steps, sampler=sampler)
    scale = ref.max(axis=1, keepdims=True)
    assert (ref >= 0).all() and (scale > 0).all()
    for backend in ("onnxruntime", "ml4ep"):
        got = generate(out, energies, backend=backend, noise=noise, steps=steps, sampler=sampler)
        assert float((np.abs(got - ref) / scale).max()) < 1e-4, backend
    # the postprocessing zeroes everything below the readout threshold
    thr = geometry.get(GEO).threshold
    assert not ((ref > 0) & (ref < thr)).any()


def test_sampler_loop_against_the_exact_solution():
    """dx/dt = a x from x0: the exact solution is x0 e^a; Euler gives (1 + a h)^n, midpoint and Heun the
    second-order Taylor factor (1 + a h + (a h)^2 / 2)^n; the same on NumPy arrays and torch tensors."""
    a, x0 = 0.7, np.array([[1.0, -2.0]], dtype=np.float64)
    for sampler, evals, n, factor in (("euler", 20, 20, lambda h: 1 + a * h),
                                      ("midpoint", 20, 10, lambda h: 1 + a * h + (a * h) ** 2 / 2),
                                      ("heun", 8, 4, lambda h: 1 + a * h + (a * h) ** 2 / 2)):
        calls = []

        def v(x, t, calls=calls):
            calls.append(t[0, 0])
            return a * x

        got = integrate(v, x0, evals, sampler)
        np.testing.assert_allclose(got, x0 * factor(1.0 / n) ** n, rtol=1e-12)
        assert len(calls) == evals and min(calls) >= 0 and max(calls) <= 1
        assert abs(got[0, 0] - math.exp(a)) < (0.1 if sampler == "euler" else 0.01)
        tt = integrate(lambda x, t: a * x, torch.tensor(x0), evals, sampler)
        np.testing.assert_allclose(tt.numpy(), got, rtol=1e-12)


def test_pre_and_postprocessing_invert_each_other():
    """The state computed another way (NumPy, float64, layer by layer): log shares of the layer's energy and log
    layer fractions of E_inc, standardised by cubic polynomials in the normalised ln E, interleaved per layer;
    postprocessing gives the showers back and conserves every layer's energy."""
    geo = geometry.get(GEO)
    e, s = gflash.simulate(geo, 60, energy=(1.0, 100.0), seed=3)
    sizes = [lay.n_voxels for lay in geo.layers]
    cfg = DiffusionConfig(n_voxels=geo.n_voxels, n_tokens=6, layer_sizes=sizes, dim=8, depth=1, heads=2,
                          threshold_mev=geo.threshold, energy="log")  # the u-variables: test_energy_guard.py
    m = ShowerFlow(cfg)
    ys, ls = [], []
    for a, b in zip(geo.offsets[:-1], geo.offsets[1:]):
        le = s[:, a:b].astype(np.float64).sum(1, keepdims=True)
        ys.append(np.log(np.divide(s[:, a:b], le, out=np.zeros((len(s), b - a)), where=le > 0) + LOG_EPS))
        ls.append(np.log(le / e + LAYER_EPS))
    y, ell = np.concatenate(ys, 1), np.concatenate(ls, 1)
    rng = np.random.default_rng(4)
    # polynomials around the data's moments (so that the state stays within the clip), with random higher orders;
    # one layer's variance polynomial negative, to test the floor
    small = rng.normal(0, 0.1, (3, 373))
    coef = {"y_coef": np.vstack([y.mean(0), small[:, :368]]), "l_coef": np.vstack([ell.mean(0), small[:, 368:]]),
            "y_var": np.vstack([y.var(0) + 0.5, np.abs(small[:, :368])]),
            "l_var": np.vstack([ell.var(0) + 0.1, np.abs(small[:, 368:])])}
    coef["l_var"][:, 0] = -0.1
    m.set_preprocessing(float(e.min()), float(e.max()), coef["y_coef"], coef["y_var"], coef["l_coef"], coef["l_var"])
    u = (np.log(e) - np.log(e.min())) / (np.log(e.max()) - np.log(e.min()))
    p = u ** np.arange(4)
    ystd = (y - p @ coef["y_coef"]) / np.sqrt(np.maximum(p @ coef["y_var"], MIN_VOXEL_STD**2))
    lstd = (ell - p @ coef["l_coef"]) / np.sqrt(np.maximum(p @ coef["l_var"], MIN_LAYER_STD**2))
    expect = np.concatenate([np.concatenate([ystd[:, a:b], lstd[:, i:i + 1]], 1)
                             for i, (a, b) in enumerate(zip(geo.offsets[:-1], geo.offsets[1:]))], 1)
    x = m.preprocess(torch.from_numpy(s), torch.from_numpy(e)).numpy()
    assert x.shape == (60, 373)
    np.testing.assert_allclose(x, np.clip(expect, -STATE_CLIP, STATE_CLIP), rtol=1e-4, atol=2e-4)
    # the inverse: the showers with the voxels below the snap share emptied
    back = m.postprocess(torch.from_numpy(expect).float(), torch.from_numpy(e).float()).numpy()
    far = m.postprocess(torch.from_numpy(expect * 50).float(), torch.from_numpy(e).float()).numpy()
    clipped = m.postprocess(torch.from_numpy(np.clip(expect * 50, -STATE_CLIP, STATE_CLIP)).float(),
                            torch.from_numpy(e).float()).numpy()
    np.testing.assert_array_equal(far, clipped)  # the state is clipped as in training
    snapped = np.where(y < np.log(LOG_EPS) + ZERO_SNAP, 0.0, s)
    assert (snapped != s).sum() < 0.01 * (s > 0).sum()
    np.testing.assert_allclose(back, snapped, rtol=1e-3, atol=geo.threshold + 2e-5 * s.max())
    assert (back[s == 0] == 0).all()
    for a, b in zip(geo.offsets[:-1], geo.offsets[1:]):  # every layer's energy, up to the threshold cut
        np.testing.assert_allclose(back[:, a:b].sum(1), s[:, a:b].sum(1), rtol=1e-3, atol=(b - a) * geo.threshold)


def test_energy_dependent_standardisation_is_fitted(showers_file, run3):
    """The polynomial means fitted by training reproduce the per-energy averages of the transformed data: the
    standardised state of the training file has mean ~0 in low and high incident-energy halves alike."""
    out, _ = run3
    m = ShowerFlow(DiffusionConfig.from_dict(load_checkpoint(out / "last.pt")["config"]))
    m.load_state_dict(load_checkpoint(out / "last.pt")["model"])
    e, s = io.read(showers_file)
    x = m.preprocess(torch.from_numpy(s).float(), torch.from_numpy(e).float()).numpy()
    lay = m.state_of_layer.numpy()
    for half in (e[:, 0] < np.median(e), e[:, 0] >= np.median(e)):
        assert abs(x[half][:, lay].mean()) < 0.25 and 0.5 < x[half][:, lay].std() < 1.6


def test_tokens_and_config_checks():
    assert default_tokens(6480, "ds2") == 45  # one token per layer
    assert default_tokens(368, "ds1-photons") == 6  # unequal layers: chunks of about 64 numbers of the state
    assert check_sampler("midpoint", 20) == 10 and check_sampler("euler", 20) == 20
    with pytest.raises(DiffusionConfigError, match=r"1\.\.20"):
        check_sampler("euler", 21)
    with pytest.raises(DiffusionConfigError, match="even"):
        check_sampler("heun", 5)
    with pytest.raises(DiffusionConfigError, match="sampler must be"):
        check_sampler("rk4", 4)
    with pytest.raises(DiffusionConfigError, match="divisible"):
        DiffusionConfig(n_voxels=100, n_tokens=4, dim=10, heads=4)
    with pytest.raises(DiffusionConfigError, match="n_tokens"):
        DiffusionConfig(n_voxels=10, n_tokens=20)
    with pytest.raises(DiffusionConfigError, match="skip"):
        DiffusionConfig(n_voxels=10, n_tokens=2, skip="linear")
    with pytest.raises(DiffusionConfigError, match="head"):
        DiffusionConfig(n_voxels=10, n_tokens=2, head="conv")
    with pytest.raises(DiffusionConfigError, match="min_voxel_std"):
        DiffusionConfig(n_voxels=10, n_tokens=2, min_voxel_std=0.0)


def test_gaussian_skip_is_the_exact_velocity_of_normal_data():
    # with the network's last layer zeroed only the skip is left: the velocity field that carries N(0, 1) noise
    # to N(0, 1) data, d ln(sigma_t)/dt x with sigma_t^2 = (1 - t)^2 + t^2 (here by a finite difference)
    torch.manual_seed(0)
    cfg = DiffusionConfig(n_voxels=30, n_tokens=4, layer_sizes=(10, 10, 10), dim=16, heads=2)  # 33 numbers, padded
    model = ShowerFlow(cfg).eval()
    with torch.no_grad():
        model.out.weight.zero_()
        model.out.bias.zero_()
    x = torch.randn(5, cfg.state_size)
    t = torch.tensor([[0.0], [0.1], [0.5], [0.8], [1.0]])
    e = torch.full((5, 1), 1e4)
    tt, h = t.double().numpy(), 1e-6
    dlog_sigma = (np.log((1 - tt - h) ** 2 + (tt + h) ** 2) - np.log((1 - tt + h) ** 2 + (tt - h) ** 2)) / (4 * h)
    with torch.no_grad():
        v = model.velocity(x, t, e).double().numpy()
    np.testing.assert_allclose(v, dlog_sigma * x.double().numpy(), rtol=1e-5, atol=1e-6)
    # integrated, it maps the noise onto itself (sigma_0 = sigma_1 = 1)
    x1 = integrate(lambda xx, tt_: model.velocity(xx, tt_, e).detach(), x, 20, "heun")
    np.testing.assert_allclose(x1.numpy(), x.numpy(), rtol=3e-3, atol=1e-4)  # heun, 10 steps
    # a checkpoint's configuration from before the skip keeps none: its velocity is the network's alone
    d = cfg.to_dict()
    del d["skip"]
    old = ShowerFlow(DiffusionConfig.from_dict(d)).eval()
    old.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert old.config.skip == "none" and float(old.velocity(x, t, e).abs().max()) == 0.0


def test_generate_and_export_errors(run3, tmp_path):
    out, _ = run3
    with pytest.raises(GenerateError, match=r"1\.\.20"):
        generate(out, [1000.0], steps=40)
    with pytest.raises(GenerateError, match="even"):
        generate(out, [1000.0], backend="onnxruntime", steps=3, sampler="midpoint")
    with pytest.raises(GenerateError, match="noise must have shape"):
        generate(out, [1000.0], noise=np.zeros((1, 5)))
    den = export(out, tmp_path / "d.onnx")
    assert den.exists() and (tmp_path / "postprocess.onnx").exists()
    (tmp_path / "postprocess.onnx").unlink()
    with pytest.raises(GenerateError, match="postprocess"):
        generate(den, [1000.0], backend="onnxruntime")


def test_fine_tuning_checks_the_pretrained_model(showers_file, run3, tmp_path):
    out, _ = run3
    res = train(showers_file, tmp_path / "ft", epochs=1, init_from=out, **KW)
    assert res["steps"] == 7
    e, s = gflash.simulate("ds1-pions", 40, energy=(1.0, 10.0), seed=2)
    other = io.write(tmp_path / "pions.h5", e, s, geometry="ds1-pions")
    with pytest.raises(TrainError, match="voxels"):
        train(other, tmp_path / "x", epochs=1, init_from=out, **{**KW, "geometry": None})
    with pytest.raises(TrainError, match="no checkpoint"):
        train(showers_file, tmp_path / "y", epochs=1, init_from=tmp_path / "missing", **KW)


def test_condition_column(tmp_path):
    angles = np.random.default_rng(2).uniform(0.0, 0.3, 300)
    e, s = gflash.simulate(GEO, 300, energy=(1.0, 100.0), seed=12, angle=angles)
    path = io.write(tmp_path / "angled.h5", e, s)
    with h5py.File(path, "a") as f:
        f["angle"] = angles.astype(np.float32)
    train(path, tmp_path / "run", epochs=1, conditions=["angle"], **KW)
    energies, cond = np.full(4, 5e3), np.linspace(0.0, 0.3, 4)[:, None]
    noise = np.random.default_rng(1).standard_normal((4, 373)).astype(np.float32)
    ref = generate(tmp_path / "run", energies, backend="torch", noise=noise, conditions=cond, steps=4)
    got = generate(tmp_path / "run", energies, backend="ml4ep", noise=noise, conditions=cond, steps=4)
    assert float((np.abs(got - ref) / ref.max(axis=1, keepdims=True)).max()) < 1e-4
    with pytest.raises(GenerateError, match="extra conditions"):
        generate(tmp_path / "run", energies, backend="torch", noise=noise, steps=4)


def test_cli_train_generate(showers_file, tmp_path, capsys):
    from ml4ep.cli import main

    run = tmp_path / "run"
    assert main(["fastsim", "train", str(showers_file), "-o", str(run), "--model", "diffusion", "--epochs", "1",
                 "--dim", "16", "--depth", "1", "--heads", "2", "--geometry", GEO, "--steps", "6", "-q"]) == 0
    assert "(step 2)" in capsys.readouterr().out  # 400 training showers in batches of 256
    out = tmp_path / "gen.h5"
    assert main(["fastsim", "generate", str(run), "--n", "20", "--energy", "10:100", "--backend", "ml4ep",
                 "--sampler", "euler", "--steps", "5", "-o", str(out)]) == 0
    e, s = io.read(out)
    assert e.shape == (20, 1) and s.shape == (20, 368) and (s >= 0).all() and np.isfinite(s).all()


def test_time_budget_counts_earlier_sessions(showers_file, run3, tmp_path):
    """max_seconds bounds the whole run: a resumed run that has used its budget trains no further."""
    out, res = run3
    spent = sum(h["seconds"] for h in res["history"])
    import shutil

    shutil.copytree(out, tmp_path / "r")
    again = train(showers_file, tmp_path / "r", epochs=10, resume=True, max_seconds=spent * 0.5, **KW)
    assert again["epochs_run"] == 0 and again["epoch"] == 3
    more = train(showers_file, tmp_path / "r", epochs=10, resume=True, max_seconds=spent + 1e-3, **KW)
    assert more["epochs_run"] == 1 and more["epoch"] == 4


def test_fine_tuning_can_refit_the_preprocessing(showers_file, run3, tmp_path):
    """refit_preprocessing: the pretrained network's weights, the standardisation fitted to the new data."""
    out, _ = run3
    e, s = gflash.simulate(GEO, 300, energy=(5.0, 50.0), seed=31)  # another energy range: other moments
    other = io.write(tmp_path / "other.h5", e, s, geometry=GEO)
    kw = {**KW, "lr": 1e-12, "ema_decay": 0.0}  # (almost) no weight update: what the run starts from is saved
    keep = load_checkpoint(train(other, tmp_path / "keep", epochs=1, init_from=out, **kw)["last"])["model"]
    refit = load_checkpoint(train(other, tmp_path / "refit", epochs=1, init_from=out, refit_preprocessing=True,
                                  **kw)["last"])["model"]
    pre = load_checkpoint(out / "best.pt")["model"]
    assert torch.equal(keep["l_coef"], pre["l_coef"]) and not torch.allclose(refit["l_coef"], pre["l_coef"])
    assert not torch.allclose(refit["log_e_range"], pre["log_e_range"])
    for k in ("patch.weight", "blocks.0.attn.qkv.weight", "out.weight"):
        torch.testing.assert_close(refit[k], pre[k], rtol=0, atol=1e-9)


@pytest.mark.parametrize("head", ["mlp", "none"])
def test_other_heads_agree_across_backends(run3, tmp_path, head):
    # the trained run's preprocessing with another output head whose weights are all random (so the head matters):
    # torch, onnxruntime and the ml4ep-compiled denoiser give the same showers
    ck = load_checkpoint(run3[0] / "best.pt")
    cfg = DiffusionConfig.from_dict({**ck["config"], "head": head})
    torch.manual_seed(3)
    model = ShowerFlow(cfg)
    state = model.state_dict()
    state.update({k: v for k, v in ck["model"].items() if k in state and v.shape == state[k].shape
                  and not k.startswith(("out.", "head_"))})
    model.load_state_dict(state)
    with torch.no_grad():
        for name in ("out", "head_out"):
            if hasattr(model, name):
                getattr(model, name).weight.normal_(0, 0.05)
    torch.save({**ck, "config": cfg.to_dict(), "model": model.state_dict()}, tmp_path / "best.pt")
    rng = np.random.default_rng(2)
    energies = np.exp(rng.uniform(np.log(1e3), np.log(1e5), 4))
    noise = rng.standard_normal((4, cfg.state_size)).astype(np.float32)
    ref = generate(tmp_path, energies, backend="torch", noise=noise, steps=4)
    scale = ref.max(axis=1, keepdims=True)
    assert (scale > 0).all()
    for backend in ("onnxruntime", "ml4ep"):
        got = generate(tmp_path, energies, backend=backend, noise=noise, steps=4)
        assert float((np.abs(got - ref) / scale).max()) < 1e-4, (head, backend)


def test_alpha_rotation_matches_numpy_roll():
    """rotate_alpha's augmentation: every shower turned by its own number of angular bins, the same in every layer
    (against np.roll on the (layer, alpha, r) array); refused where the layers' binnings differ."""
    from ml4ep.fastsim.train import _alpha_rotation

    geo = geometry.get("ds2")
    s = torch.from_numpy(np.random.default_rng(1).random((5, geo.n_voxels)).astype(np.float32))
    gen = torch.Generator().manual_seed(3)
    got = _alpha_rotation(geo, torch.device("cpu"))(s, gen).numpy()
    k = torch.randint(0, 16, (5, 1), generator=torch.Generator().manual_seed(3)).numpy()[:, 0]
    cube = s.numpy().reshape(5, 45, 16, 9)
    want = np.stack([np.roll(cube[i], -int(k[i]), axis=1) for i in range(5)]).reshape(5, -1)
    np.testing.assert_array_equal(got, want)
    assert len(set(k.tolist())) > 1  # not one shift for the whole batch
    with pytest.raises(TrainError, match="rotate_alpha needs a geometry"):
        _alpha_rotation(geometry.get("ds1-photons"), torch.device("cpu"))


def test_empty_noise_fills_the_snap_band_and_is_emptied_again():
    """empty_noise: empty voxels get log shares uniform in the band the postprocessing empties (between ln 1e-6 and
    ln 1e-6 + ZERO_SNAP), hits keep theirs, and the postprocessing gives the shower back."""
    geo = geometry.get(GEO)
    e, s = gflash.simulate(geo, 40, energy=(1.0, 100.0), seed=8)
    cfg = DiffusionConfig(n_voxels=geo.n_voxels, n_tokens=6, layer_sizes=[lay.n_voxels for lay in geo.layers], dim=8,
                          depth=1, heads=2, threshold_mev=geo.threshold, empty_noise=True)
    m = ShowerFlow(cfg)
    m._set_condition_stats(float(e.min()), float(e.max()))
    st, et = torch.from_numpy(s), torch.from_numpy(e)
    plain = m.preprocess(st, et).numpy()
    noisy = m.preprocess(st, et, torch.Generator().manual_seed(1)).numpy()
    empty = np.zeros_like(plain, dtype=bool)
    empty[:, m.state_of_voxel.numpy()] = s == 0
    np.testing.assert_array_equal(noisy[~empty], plain[~empty])
    y_mean, y_std = (t.numpy() for t in m.moments(et)[:2])  # untrained: mean 0, std the floor (2)
    raw = np.zeros_like(plain)
    raw[:, m.state_of_voxel.numpy()] = noisy[:, m.state_of_voxel.numpy()] * y_std + y_mean
    y = raw[empty]  # the log shares themselves
    lo = math.log(LOG_EPS)
    assert y.min() >= lo - 1e-4 and y.max() <= lo + ZERO_SNAP + 1e-4 and y.std() > 0.5
    back = m.postprocess(torch.from_numpy(noisy), et).numpy()
    np.testing.assert_allclose(back, m.postprocess(torch.from_numpy(plain), et).numpy(), rtol=1e-5, atol=1e-6)
