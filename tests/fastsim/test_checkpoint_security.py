"""Checkpoints are untrusted: loading one never runs code (weights_only unpickling with a NumPy allow-list), an
incomplete or refused one is a TrainError naming the file, and the checkpoints train() writes still load."""

from __future__ import annotations

import builtins
import os
import pickle
import shlex
import shutil

import numpy as np
import pytest
import torch

from ml4ep.cli import main
from ml4ep.fastsim import gflash, io
from ml4ep.fastsim.train import FORMAT, TrainError, _save, load_checkpoint, model_from_checkpoint, train

KW = dict(batch_size=64, lr=2e-3, latent=2, seed=5, validation_split=0.25, device="cpu", hidden=(8,),
          progress=False)


@pytest.fixture(scope="module")
def showers_file(tmp_path_factory):
    e, s = gflash.simulate("ds1-photons", 160, energy=(1.0, 100.0), seed=4)
    return io.write(tmp_path_factory.mktemp("ck") / "showers.h5", e, s, geometry="ds1-photons")


@pytest.fixture(scope="module")
def run(showers_file, tmp_path_factory):
    """A run directory written by today's train() (best.pt, last.pt)."""
    out = tmp_path_factory.mktemp("run")
    train(showers_file, out, epochs=1, **KW)
    return out


def _trusted(path):
    """The reference reader: the full unpickler (safe here: the test wrote the file)."""
    return torch.load(path, map_location="cpu", weights_only=False)


def _assert_same(a, b):
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b) and a.dtype == b.dtype
    elif isinstance(a, (np.ndarray, np.generic)):
        assert type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
    else:
        assert a == b and type(a) is type(b)


@pytest.mark.parametrize("name", ["best.pt", "last.pt"])
def test_checkpoints_written_by_train_load_safely(run, name):
    ck = load_checkpoint(run / name)
    ref = _trusted(run / name)
    _assert_same(ref, {k: v for k, v in ck.items() if k not in ("path", "kind")})
    assert ck["kind"] == "vae" and ck["path"] == str(run / name)
    assert isinstance(ck["rng"]["numpy"][1], np.ndarray) and ck["rng"]["numpy"][1].dtype == np.uint32
    model = model_from_checkpoint(ck)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref["model"][k])


def test_resume_and_init_from_read_the_checkpoints(showers_file, run, tmp_path):
    shutil.copytree(run, tmp_path / "r")
    assert train(showers_file, tmp_path / "r", epochs=2, resume=True, **KW)["epoch"] == 2
    assert train(showers_file, tmp_path / "ft", epochs=1, init_from=run, **KW)["epoch"] == 1


def test_numpy_scalars_and_arrays_load(run, tmp_path):
    ck = _trusted(run / "last.pt")
    ck["metrics"] = {"f64": np.float64(1.25), "f32": np.float32(-2.5), "i64": np.int64(-7), "u8": np.uint8(200),
                     "flag": np.bool_(True), "a": np.arange(6, dtype=np.float32).reshape(2, 3),
                     "b": np.array([1, -2], dtype=np.int16), "h": np.float16(0.5)}
    ck["state"]["best_val_loss"] = np.float64(0.125)
    ck["rng"]["numpy"] = np.random.RandomState(9).get_state()
    _save(ck, tmp_path / "np.pt")
    got = load_checkpoint(tmp_path / "np.pt")
    _assert_same(ck, {k: v for k, v in got.items() if k not in ("path", "kind")})
    rs = np.random.RandomState()
    rs.set_state(got["rng"]["numpy"])
    assert np.array_equal(rs.random_sample(5), np.random.RandomState(9).random_sample(5))


class _System:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


class _Open:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def _plant(run, path, payload):
    ck = _trusted(run / "best.pt")
    ck["state"]["payload"] = payload
    torch.save(ck, path)


@pytest.mark.parametrize("kind", [_System, _Open])
@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_checkpoint_is_refused_without_running(run, tmp_path, kind, writer):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    if writer == "torch":
        _plant(run, path, kind(marker))
    else:  # a bare pickle, not torch's zip format
        path.write_bytes(pickle.dumps({"format": FORMAT, "x": kind(marker)}))
    with pytest.raises(TrainError, match="holds objects that could run code") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and not marker.exists()
    if writer == "torch":  # the refused global is named
        assert ("system" if kind is _System else "open") in str(err.value)
    live = _trusted(path) if writer == "torch" else pickle.loads(path.read_bytes())  # the payload is live
    assert marker.exists()
    payload = live["state"]["payload"] if writer == "torch" else live["x"]
    if hasattr(payload, "close"):
        payload.close()


def test_cli_generate_refuses_a_planted_checkpoint(run, tmp_path, capsys):
    marker, bad = tmp_path / "pwned", tmp_path / "run"
    shutil.copytree(run, bad)
    _plant(run, bad / "best.pt", _System(marker))
    rc = main(["fastsim", "generate", str(bad), "--n", "2", "--energy", "10:10", "-o", str(tmp_path / "g.h5")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{bad / 'best.pt'}: not a ml4ep checkpoint or it holds objects that could run code" in err
    assert "Traceback" not in err and not marker.exists() and not (tmp_path / "g.h5").exists()
    rc = main(["fastsim", "export", str(bad), "-o", str(tmp_path / "m.onnx")])
    assert rc == 2 and "could run code" in capsys.readouterr().err and not marker.exists()


def test_train_refuses_planted_checkpoints(showers_file, run, tmp_path):
    marker = tmp_path / "pwned"
    shutil.copytree(run, tmp_path / "r")
    _plant(run, tmp_path / "r" / "last.pt", _Open(marker))
    with pytest.raises(TrainError, match=f"{tmp_path / 'r' / 'last.pt'}: not a ml4ep checkpoint"):
        train(showers_file, tmp_path / "r", epochs=2, resume=True, **KW)
    with pytest.raises(TrainError, match=f"{tmp_path / 'r' / 'last.pt'}: not a ml4ep checkpoint"):
        train(showers_file, tmp_path / "ft", epochs=1, init_from=tmp_path / "r" / "last.pt", **KW)
    assert not marker.exists()


@pytest.mark.parametrize("key", ["config", "model", "state"])
def test_checkpoint_without_a_part_names_file_and_key(run, tmp_path, key):
    ck = _trusted(run / "best.pt")
    del ck[key]
    torch.save(ck, tmp_path / "part.pt")
    with pytest.raises(TrainError, match=f"{tmp_path / 'part.pt'}: incomplete .*'{key}' entry is missing"):
        load_checkpoint(tmp_path / "part.pt")


def test_resume_without_optimizer_names_file_and_key(showers_file, run, tmp_path):
    shutil.copytree(run, tmp_path / "r")
    ck = _trusted(run / "last.pt")
    del ck["optimizer"]
    torch.save(ck, tmp_path / "r" / "last.pt")
    with pytest.raises(TrainError, match=f"{tmp_path / 'r' / 'last.pt'}: incomplete .*'optimizer'"):
        train(showers_file, tmp_path / "r", epochs=2, resume=True, **KW)


def test_bad_config_or_weights_name_the_file(run, tmp_path):
    ck = _trusted(run / "best.pt")
    torch.save({**ck, "config": {**ck["config"], "bogus": 1}}, tmp_path / "cfg.pt")
    with pytest.raises(TrainError, match=f"{tmp_path / 'cfg.pt'}: invalid vae configuration.*bogus"):
        load_checkpoint(tmp_path / "cfg.pt")
    torch.save({**ck, "format": ["not", "hashable"]}, tmp_path / "fmt.pt")
    with pytest.raises(TrainError, match="not an ml4ep.fastsim model checkpoint"):
        load_checkpoint(tmp_path / "fmt.pt")
    weights = dict(ck["model"])
    weights.pop(next(iter(weights)))
    torch.save({**ck, "model": weights}, tmp_path / "w.pt")
    with pytest.raises(TrainError, match=f"{tmp_path / 'w.pt'}: the weights do not fit"):
        model_from_checkpoint(load_checkpoint(tmp_path / "w.pt"))
