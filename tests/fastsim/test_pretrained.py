"""Shipped models (ml4ep.fastsim.pretrained): publishing a run, generating and exporting by name without torch,
refusing damaged files; and the model that ships, ds2-default."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ml4ep.fastsim import gflash, io, pretrained
from ml4ep.fastsim.generate import GenerateError, generate

GEO = "ds1-photons"
NO_TORCH = "import sys; sys.modules['torch'] = None\n"  # any import of torch now fails


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A tiny flow model published under the name 'tiny' into a folder of its own."""
    pytest.importorskip("torch")
    from ml4ep.fastsim.train import train

    root = tmp_path_factory.mktemp("shipped")
    e, s = gflash.simulate(GEO, 200, energy=(1.0, 100.0), seed=1)
    data = io.write(root / "train.h5", e, s, geometry=GEO)
    train(data, root / "run", model="diffusion", epochs=1, batch_size=64, dim=16, depth=1, heads=2, geometry=GEO,
          progress=False, device="cpu", seed=3, lr=1e-2, warmup=0, ema_decay=0.0)
    folder = pretrained.publish(root / "run", "tiny", {"command": "a test", "metrics": {"sep_mean": 1.0}},
                                root=root / "models")
    return root, folder


@pytest.fixture
def as_shipped(shipped, monkeypatch):
    root, folder = shipped
    monkeypatch.setattr(pretrained, "ROOT", folder.parent)
    return root, folder


def test_publish_writes_graphs_checkpoint_and_description(shipped):
    root, folder = shipped
    meta = json.loads((folder / "model.json").read_text())
    assert meta["command"] == "a test" and meta["onnx"] == "denoiser.onnx"
    assert set(meta["files"]) == {"denoiser.onnx", "postprocess.onnx", "checkpoint.pt"}
    assert (folder / "checkpoint.pt").stat().st_size < 2 * (root / "run" / "best.pt").stat().st_size


def test_generate_by_name_matches_the_run(as_shipped):
    root, _ = as_shipped
    assert pretrained.names() == ["tiny"]
    e = np.array([2000.0, 20000.0, 50000.0])
    got = generate("tiny", e, backend="ml4ep", seed=4)
    ref = generate(root / "run", e, backend="torch", seed=4)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * ref.max())
    assert (ref > 0).sum() > 20
    with pytest.raises(GenerateError, match="shipped model is ONNX"):
        generate("tiny", e, backend="torch")
    with pytest.raises(GenerateError, match="nor a shipped model"):
        generate("no-such-model", e, backend="ml4ep")


def test_fine_tuning_starts_from_the_shipped_checkpoint(as_shipped, tmp_path):
    from ml4ep.fastsim.train import load_checkpoint, train

    root, folder = as_shipped
    r = train(root / "train.h5", tmp_path / "ft", model="diffusion", epochs=1, batch_size=64, geometry=GEO,
              progress=False, device="cpu", init_from=folder / "checkpoint.pt", lr=1e-4)
    assert r["epochs_run"] == 1
    assert load_checkpoint(tmp_path / "ft")["config"] == load_checkpoint(folder / "checkpoint.pt")["config"]


def test_damaged_file_is_refused(as_shipped, tmp_path):
    _, folder = as_shipped
    bad = tmp_path / "models" / "tiny"
    bad.parent.mkdir()
    import shutil

    shutil.copytree(folder, bad)
    with open(bad / "postprocess.onnx", "ab") as f:
        f.write(b"\0")
    pretrained.ROOT = bad.parent  # undone by the fixture's monkeypatch
    with pytest.raises(pretrained.PretrainedError, match="postprocess.onnx: its SHA-256 differs"):
        generate("tiny", [1000.0], backend="ml4ep")
    (bad / "model.json").write_text("{}")
    with pytest.raises(pretrained.PretrainedError, match="not a shipped-model description"):
        pretrained.resolve("tiny")


def _no_torch(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_cli_generate_and_export_without_torch(shipped, tmp_path):
    """The CLI with torch unimportable: generate (default backend ml4ep for a shipped model) and export --cpp."""
    _, folder = shipped
    code = (f"import ml4ep.fastsim.pretrained as p, pathlib; p.ROOT = pathlib.Path({str(folder.parent)!r})\n"
            "from ml4ep.cli import main\n"
            f"assert main(['fastsim', 'generate', 'tiny', '--n', '30', '--energy', '1:100', '--seed', '2', '-q', "
            f"'-o', {str(tmp_path / 'gen.h5')!r}]) == 0\n"
            f"assert main(['fastsim', 'export', 'tiny', '--cpp', {str(tmp_path / 'cpp')!r}]) == 0\n")
    r = _no_torch(code, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    e, s = io.read(tmp_path / "gen.h5")
    assert s.shape == (30, 368) and np.all(np.isfinite(s)) and (s > 0).sum() > 100
    assert {"denoiser.hpp", "postprocess.hpp", "shower_hook.hpp", "hook_main.cpp"} <= {
        p.name for p in (tmp_path / "cpp").iterdir()}


# ---------------------------------------------------------------------------------------------------------------
# the model that ships

def test_ds2_default_ships_and_generates_without_torch(tmp_path):
    assert "ds2-default" in pretrained.names()
    meta = pretrained.info("ds2-default")
    for key in ("command", "data", "settings", "metrics", "targets"):
        assert key in meta, key
    assert meta["data"]["train_seed"] != meta["data"]["reference_seed"]
    size = sum((pretrained.directory("ds2-default") / f).stat().st_size for f in meta["files"])
    assert size < 8 * 2**20  # a few MB
    code = ("import numpy as np\nfrom ml4ep.fastsim.generate import generate\n"
            "e = np.array([1e3, 1e4, 1e5, 1e6] * 5)\n"
            "a = generate('ds2-default', e, backend='ml4ep', seed=1)\n"
            "b = generate('ds2-default', e, backend='onnxruntime', seed=1)\n"
            f"np.save({str(tmp_path / 'a.npy')!r}, a); np.save({str(tmp_path / 'b.npy')!r}, b)\n")
    r = _no_torch(code, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (20, 6480) and np.all(np.isfinite(a)) and a.min() >= 0
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * b.max())
    ratio = a.sum(1) / np.array([1e3, 1e4, 1e5, 1e6] * 5)
    assert np.all(ratio < 1.7) and np.all(ratio > 0.3), ratio  # E_tot / E_inc: the data's largest is 1.5 at 1 GeV


def test_pipeline_judges_the_shipped_model_only_where_it_fits():
    from ml4ep.fastsim import geometry
    from ml4ep.fastsim.pipeline import _fitting_shipped

    ds2 = geometry.get("ds2")
    assert _fitting_shipped("ds2-default", ds2, (1.0, 1000.0)) == "ds2-default"
    assert _fitting_shipped("ds2-default", ds2, (0.5, 100.0)) is None  # below the model's training range
    assert _fitting_shipped("ds2-default", geometry.get("ds1-photons"), (1.0, 100.0)) is None
    assert _fitting_shipped(None, ds2, (1.0, 1000.0)) is None
