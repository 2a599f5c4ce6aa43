"""The Par04-style shower VAE end to end: GFlash showers -> train (through ml4ep.data) -> resume -> export ->
generate with torch, ONNX Runtime and ml4ep.infer."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from ml4ep.errors import Ml4epError
from ml4ep.fastsim import gflash, io
from ml4ep.fastsim.generate import GenerateError, export, generate
from ml4ep.fastsim.models.vae import ShowerVAE, VAEConfig
from ml4ep.fastsim.train import TrainError, load_checkpoint, train

N_SHOWERS = 2000
KW = dict(batch_size=128, lr=2e-3, latent=6, seed=3, validation_split=0.2, patience=5, device="cpu",
          hidden=(64, 32), progress=False)


@pytest.fixture(scope="module")
def showers_file(tmp_path_factory):
    e, s = gflash.simulate("ds1-photons", N_SHOWERS, energy=(1.0, 100.0), seed=11)
    return io.write(tmp_path_factory.mktemp("vae") / "showers.h5", e, s, geometry="ds1-photons")


@pytest.fixture(scope="module")
def run3(showers_file, tmp_path_factory):
    """An uninterrupted 3-epoch run."""
    out = tmp_path_factory.mktemp("run3")
    return out, train(showers_file, out, epochs=3, **KW)


def _weights(path):
    return load_checkpoint(path)["model"]


def test_loss_decreases_and_checkpoints(run3):
    out, res = run3
    hist = res["history"]
    assert res["epochs_run"] == 3 and res["epoch"] == 3 and [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    for name in ("last.pt", "best.pt", "history.json"):
        assert (out / name).exists()
    ck = load_checkpoint(out / "last.pt")
    assert ck["state"]["epoch"] == 3 and set(ck) >= {"model", "optimizer", "rng", "config", "run"}
    assert ck["model"]["voxel_scale"].shape == (368,) and float(ck["model"]["voxel_scale"].max()) <= 1.0


def test_resume_equals_uninterrupted_run(showers_file, run3, tmp_path):
    out3, _ = run3
    first = train(showers_file, tmp_path, epochs=1, **KW)
    assert first["epoch"] == 1
    rest = train(showers_file, tmp_path, epochs=3, resume=True, **KW)
    assert rest["epochs_run"] == 2 and rest["epoch"] == 3 and len(rest["history"]) == 3
    a, b = _weights(out3 / "last.pt"), _weights(tmp_path / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # same seed -> the same weights, interrupted or not
    # a finished run resumes to nothing; other settings are refused
    again = train(showers_file, tmp_path, epochs=3, resume=True, **KW)
    assert again["epochs_run"] == 0
    with pytest.raises(TrainError, match="cannot resume"):
        train(showers_file, tmp_path, epochs=4, resume=True, **{**KW, "latent": 7})


def test_reading_workers_give_the_same_weights(showers_file, run3, tmp_path):
    # one DataLoader worker process reads the same windows as the in-process reader: the same batches, the same
    # weights; a bad count is refused before anything runs
    train(showers_file, tmp_path, epochs=3, workers=1, **KW)
    a, b = _weights(run3[0] / "last.pt"), _weights(tmp_path / "last.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for bad in (-1, 1.5, True):
        with pytest.raises(TrainError, match="workers"):
            train(showers_file, tmp_path / "bad", epochs=1, workers=bad, **KW)


def test_other_seed_other_weights(showers_file, run3, tmp_path):
    train(showers_file, tmp_path, epochs=1, **{**KW, "seed": 4})
    a, b = _weights(run3[0] / "last.pt"), _weights(tmp_path / "last.pt")
    assert not torch.equal(a["decoder_out.weight"], b["decoder_out.weight"])


def test_export_and_backends_agree(run3, tmp_path):
    out, _ = run3
    onnx_path = export(out, tmp_path / "vae_decoder.onnx")
    energies = np.geomspace(1e3, 1e5, 64)
    noise = np.random.default_rng(0).standard_normal((64, 6)).astype(np.float32)
    ref = generate(out, energies, backend="torch", noise=noise)
    assert ref.shape == (64, 368) and ref.dtype == np.float32
    for backend in ("onnxruntime", "ml4ep"):
        got = generate(onnx_path, energies, backend=backend, noise=noise)
        scale = ref.max(axis=1, keepdims=True)
        worst = float((np.abs(got - ref) / scale).max())  # relative to each shower's energy scale
        assert got.shape == ref.shape and worst < 1e-4, (backend, worst)
    # the seed decides the noise; a run directory works for the ONNX backends too (decoder.onnx exported there)
    a = generate(out, energies, backend="onnxruntime", seed=5)
    b = generate(out, energies, backend="torch", seed=5)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.max()))
    assert (out / "decoder.onnx").exists()


def test_generated_showers_are_physical(run3, tmp_path):
    out, _ = run3
    energies = np.geomspace(1e3, 1e5, 200)
    path = tmp_path / "gen.h5"
    s = generate(out, energies, backend="torch", seed=1, output=path, geometry="ds1-photons")
    assert s.shape == (200, 368) and np.all(s >= 0) and np.all(np.isfinite(s))
    ratio = s.sum(axis=1) / energies
    assert np.all((ratio > 0.1) & (ratio < 10.0)), (ratio.min(), ratio.max())
    e2, s2 = io.read(path, geometry="ds1-photons")
    np.testing.assert_allclose(e2[:, 0], energies)
    np.testing.assert_array_equal(s2, s)


def test_decode_is_scaled_sigmoid():
    model = ShowerVAE(VAEConfig(n_voxels=5, latent=2, hidden=(8,)))
    model.set_preprocessing(np.array([0.5, 0.1, 0.2, 0.0, 1.0]), 10.0, 1000.0)
    z, e = torch.randn(4, 2), torch.tensor([[10.0], [50.0], [200.0], [1000.0]])
    with torch.no_grad():
        y = model.decode(z, e)
    cap = model.voxel_scale * e
    assert torch.all(y >= 0) and torch.all(y <= cap + 1e-6)
    c = model.condition(e)
    assert float(c.min()) == pytest.approx(0.0, abs=1e-6) and float(c.max()) == pytest.approx(1.0, abs=1e-6)


def test_bad_inputs_name_the_file(tmp_path, run3):
    missing = tmp_path / "nope.h5"
    with pytest.raises(Ml4epError, match="nope.h5: file not found"):
        train(missing, tmp_path / "r", epochs=1, **KW)
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as f:
        f["energies"] = np.ones((10, 1))
        f["showers"] = np.ones((10, 368))
    with pytest.raises(Ml4epError, match="wrong.h5: missing dataset 'incident_energies'"):
        train(wrong, tmp_path / "r", epochs=1, **KW)
    with pytest.raises(TrainError, match="no checkpoint"):
        export(tmp_path / "r", tmp_path / "x.onnx")
    with pytest.raises(GenerateError, match="backend"):
        generate(run3[0], [1000.0], backend="tf")
    with pytest.raises(GenerateError, match="positive"):
        generate(run3[0], [-1.0])
    with pytest.raises(GenerateError, match="noise must have shape"):
        generate(run3[0], [1000.0, 2000.0], noise=np.zeros((2, 3)))


def test_extra_condition_column(tmp_path):
    """An extra scalar dataset of the file (here the incidence angle) conditions encoder and decoder."""
    angles = np.random.default_rng(2).uniform(0.0, 0.3, 600)
    e, s = gflash.simulate("ds1-photons", 600, energy=(1.0, 100.0), seed=12, angle=angles)
    path = io.write(tmp_path / "angled.h5", e, s)
    with h5py.File(path, "a") as f:
        f["angle"] = angles.astype(np.float32)
    res = train(path, tmp_path / "run", epochs=1, conditions=["angle"], **KW)
    assert res["epoch"] == 1
    energies, cond = np.full(8, 5e3), np.linspace(0.0, 0.3, 8)[:, None]
    noise = np.random.default_rng(1).standard_normal((8, 6)).astype(np.float32)
    ref = generate(tmp_path / "run", energies, backend="torch", noise=noise, conditions=cond)
    got = generate(tmp_path / "run", energies, backend="ml4ep", noise=noise, conditions=cond)
    assert float((np.abs(got - ref) / ref.max(axis=1, keepdims=True)).max()) < 1e-4
    with pytest.raises(GenerateError, match="extra conditions"):
        generate(tmp_path / "run", energies, backend="torch", noise=noise)


def test_cli_train_generate_export(showers_file, tmp_path, capsys):
    from ml4ep.cli import main
    from ml4ep.fastsim import io

    run = tmp_path / "run"
    assert main(["fastsim", "train", str(showers_file), "-o", str(run), "--epochs", "1", "--hidden", "32,16",
                 "--batch-size", "256", "-q"]) == 0
    assert (run / "last.pt").exists()
    out = tmp_path / "gen.h5"
    assert main(["fastsim", "generate", str(run), "--n", "50", "--energy", "10:100", "--backend", "ml4ep",
                 "-o", str(out)]) == 0
    e, s = io.read(out)
    assert e.shape == (50, 1) and s.shape[0] == 50 and (s >= 0).all()
    assert 10e3 <= e.min() and e.max() <= 100e3
    assert main(["fastsim", "export", str(run), "--cpp", str(tmp_path / "cpp")]) == 0
    assert sorted(p.name for p in (tmp_path / "cpp").iterdir() if p.suffix in (".cpp", ".hpp"))[-2:] == [
        "hook_main.cpp", "shower_hook.hpp"]
    assert "decoder ONNX" in capsys.readouterr().out


def test_models_without_torch_name_the_extra(monkeypatch):
    import importlib
    import sys

    from ml4ep.errors import OptionalDependencyError

    for mod in [m for m in sys.modules if m.startswith("ml4ep.fastsim.models")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(OptionalDependencyError, match=r"ml4ep\[torch\]"):
        importlib.import_module("ml4ep.fastsim.models")
