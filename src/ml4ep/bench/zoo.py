"""Model families used by the tests, the demo and the benchmarks, defined in PyTorch and exported to ONNX.

- ``mlp``: a jet-tagging style classifier (16 features -> 64 -> 64 -> 1, sigmoid).
- ``cnn1d``, ``cnn2d``, ``cnn3d``: small convolutional networks on 1-D traces, calorimeter images and
  calorimeter volumes (Conv + BatchNorm + ReLU + pooling, then a dense head).
- ``vae_decoder``: the decoder of a conditional VAE for calorimeter showers in the style of Geant4's Par04
  example: latent 10 + 4 conditions -> 100 -> 100 -> 6480 voxels (sigmoid).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Callable

from .._optional import require


@dataclass(frozen=True)
class Family:
    name: str
    input_shape: tuple[int, ...]  # without the batch axis
    build: Callable[[], object]
    description: str


def _torch():
    return require("torch", "torch", "the model zoo")


def _mlp():
    nn = _torch().nn
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1), nn.Sigmoid())


def _cnn1d():
    nn = _torch().nn
    return nn.Sequential(
        nn.Conv1d(2, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 3),
    )


def _cnn2d():
    nn = _torch().nn
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 2),
    )


def _cnn3d():
    nn = _torch().nn
    return nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.MaxPool3d(2),
        nn.Conv3d(4, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4 * 4, 16), nn.ReLU(),
        nn.Linear(16, 1),
    )


def _vae_decoder():
    nn = _torch().nn
    return nn.Sequential(
        nn.Linear(14, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 6480), nn.Sigmoid()
    )


FAMILIES: dict[str, Family] = {
    "mlp": Family("mlp", (16,), _mlp, "dense classifier 16-64-64-1"),
    "cnn1d": Family("cnn1d", (2, 64), _cnn1d, "1-D CNN on 2x64 traces"),
    "cnn2d": Family("cnn2d", (1, 16, 16), _cnn2d, "2-D CNN on 16x16 calorimeter images"),
    "cnn3d": Family("cnn3d", (1, 8, 8, 8), _cnn3d, "3-D CNN on 8x8x8 calorimeter volumes"),
    "vae_decoder": Family("vae_decoder", (14,), _vae_decoder, "Par04-style VAE decoder, 10+4 -> 6480 voxels"),
}


def build(name: str, seed: int = 0):
    """The PyTorch module of a family, with deterministic weights (and BatchNorm statistics), in eval mode."""
    torch = _torch()
    if name not in FAMILIES:
        raise KeyError(f"unknown model family '{name}'; known: {sorted(FAMILIES)}")
    torch.manual_seed(seed)
    model = FAMILIES[name].build()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def export_onnx(model, input_shape: tuple[int, ...], path=None, opset: int = 17) -> bytes:
    """Export with a dynamic batch axis named ``N``; returns the ONNX bytes (also written to ``path``)."""
    torch = _torch()
    x = torch.zeros((1, *input_shape))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), buf, input_names=["x"], output_names=["y"], opset_version=opset,
            dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, dynamo=False,
        )
    data = buf.getvalue()
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data


def family_onnx(name: str, path=None, seed: int = 0) -> bytes:
    return export_onnx(build(name, seed), FAMILIES[name].input_shape, path)
