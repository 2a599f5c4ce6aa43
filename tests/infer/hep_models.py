"""Particle-physics model architectures in PyTorch, exported to ONNX for ml4ep's whole-model tests and
benchmarks (``tests/infer/test_hep_models.py``, ``benchmarks/infer_models.py``).

Each entry of :data:`MODELS` is a :class:`Spec`: a builder of the PyTorch module (deterministic weights,
eval mode), the ONNX input/output names with their dynamic axes, and ``inputs(rng, batch, length)`` giving
NumPy feeds for any batch size and length (number of points, nodes, particles, tokens or time steps).

- ``particlenet``: EdgeConv network (kNN by pairwise distance + TopK, neighbour gather, edge MLP of 1x1
  Conv2d + BatchNorm + ReLU, mean over neighbours, shortcut), 2 blocks (64, 128 channels), global pool.
- ``interaction_net``: interaction network over an edge list: gather senders/receivers by index, edge MLP,
  scatter-add to receivers, node MLP, mean readout.
- ``part_transformer``: ``nn.TransformerEncoder`` (batch_first, padding mask from an input), class token.
- ``dit_block``: DiT-style denoiser block: sinusoidal timestep embedding, adaptive LayerNorm, self-attention,
  MLP, gated residuals, adaLN final layer.
- ``lstm``, ``gru``: 2-layer recurrent sequence classifiers (batch_first).
- ``mlp_qdq``: a dense MLP quantised to int8 by ``onnxruntime.quantization.quantize_static`` (QDQ format).

``export(name, directory)`` writes ``<name>.onnx`` (and for ``mlp_qdq`` the float model too) and returns
its path; ``ort_session`` / ``ort_run`` give the onnxruntime oracle.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

OPSET = 17


@dataclass(frozen=True)
class Spec:
    name: str
    build: Callable[[], object]  # -> torch.nn.Module in eval mode
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    inputs: Callable[[np.random.Generator, int, int], dict[str, np.ndarray]]
    lengths: tuple[int, int]  # two lengths the tests run (besides the batch sizes)
    bench_length: int
    description: str
    quantized: bool = False
    notes: dict = field(default_factory=dict)


def _torch():
    import torch

    return torch


# The architectures are those of the benchmark's model zoo (ml4ep.bench.zoo), at test sizes.
def _arch(name: str, **kwargs):
    from ml4ep.bench import zoo

    return lambda: zoo.architectures()[name](**kwargs)


def _particlenet_inputs(rng, batch, length):
    from ml4ep.bench import zoo

    return zoo.particle_cloud_inputs(rng, batch, length, 4)


def _interaction_inputs(rng, batch, length):
    from ml4ep.bench import zoo

    return zoo.graph_inputs(rng, batch, length, 6)


def _transformer_inputs(rng, batch, length):
    from ml4ep.bench import zoo

    return zoo.padded_particles_inputs(rng, batch, length, 7)


def _dit_inputs(rng, batch, length):
    from ml4ep.bench import zoo

    return zoo.token_inputs(rng, batch, length, 8)


# ------------------------------------------------------------------------------------------------------
# 5. LSTM / GRU sequence classifiers
# ------------------------------------------------------------------------------------------------------
def _recurrent(kind: str):
    torch = _torch()
    nn = torch.nn

    class SequenceClassifier(nn.Module):
        def __init__(self, f: int = 5, h: int = 32, n_classes: int = 3):
            super().__init__()
            self.rnn = getattr(nn, kind)(f, h, num_layers=2, batch_first=True)
            self.head = nn.Linear(h, n_classes)

        def forward(self, seq):  # (B, L, F)
            out, _state = self.rnn(seq)
            return self.head(out[:, -1])

    return SequenceClassifier()


def _seq_inputs(rng, batch, length):
    return {"seq": rng.normal(size=(batch, length, 5)).astype(np.float32)}


# ------------------------------------------------------------------------------------------------------
# 6. Dense MLP quantised to int8 (QDQ)
# ------------------------------------------------------------------------------------------------------
def _mlp():
    nn = _torch().nn
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5))


def _mlp_inputs(rng, batch, length):
    del length
    return {"x": rng.normal(size=(batch, 16)).astype(np.float32)}


MODELS: dict[str, Spec] = {
    "particlenet": Spec(
        "particlenet", _arch("ParticleNet", c_in=4, k=16, n_classes=5), ("points", "features"), ("logits",),
        {"points": {0: "N", 2: "P"}, "features": {0: "N", 2: "P"}, "logits": {0: "N"}},
        _particlenet_inputs, (32, 100), 64, "EdgeConv k=16, blocks 64/128, 4 features"),
    "interaction_net": Spec(
        "interaction_net", _arch("InteractionNetwork", f=6, h=32, n_out=3), ("nodes", "edges"), ("out",),
        {"nodes": {0: "N", 1: "V"}, "edges": {1: "E"}, "out": {0: "N"}},
        _interaction_inputs, (10, 37), 30, "interaction network, 6 features, hidden 32, scatter-add"),
    "part_transformer": Spec(
        "part_transformer", _arch("ParticleTransformer", f=7, d=64, heads=4, layers=2, ffn=128), ("particles", "mask"), ("logits",),
        {"particles": {0: "N", 1: "L"}, "mask": {0: "N", 1: "L"}, "logits": {0: "N"}},
        _transformer_inputs, (16, 50), 64, "TransformerEncoder d=64, 4 heads, 2 layers, padding mask, class token"),
    "dit_block": Spec(
        "dit_block", _arch("DiT", c=8, d=64, heads=4, depth=1), ("x", "t"), ("y",),
        {"x": {0: "N", 1: "T"}, "t": {0: "N"}, "y": {0: "N", 1: "T"}},
        _dit_inputs, (16, 40), 32, "DiT block d=64, 4 heads, adaLN-zero style modulation"),
    "lstm": Spec(
        "lstm", lambda: _recurrent("LSTM"), ("seq",), ("logits",),
        {"seq": {0: "N", 1: "L"}, "logits": {0: "N"}},
        _seq_inputs, (8, 30), 50, "2-layer LSTM, hidden 32"),
    "gru": Spec(
        "gru", lambda: _recurrent("GRU"), ("seq",), ("logits",),
        {"seq": {0: "N", 1: "L"}, "logits": {0: "N"}},
        _seq_inputs, (8, 30), 50, "2-layer GRU, hidden 32"),
    "mlp_qdq": Spec(
        "mlp_qdq", _mlp, ("x",), ("logits",), {"x": {0: "N"}, "logits": {0: "N"}},
        _mlp_inputs, (1, 1), 1, "MLP 16-64-64-5, int8 QDQ (quantize_static)", quantized=True),
}


def build(name: str, seed: int = 0):
    """The PyTorch module of ``name`` with deterministic weights and BatchNorm statistics, in eval mode."""
    torch = _torch()
    torch.manual_seed(seed)
    from ml4ep.bench import zoo

    return zoo.init_batchnorm(MODELS[name].build())


def torch_run(module, spec: Spec, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    torch = _torch()
    with torch.no_grad():
        out = module(*[torch.from_numpy(feeds[n]) for n in spec.input_names])
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.numpy() for o in outs]


def _export_float(spec: Spec, module, path: Path) -> None:
    torch = _torch()
    example = spec.inputs(np.random.default_rng(0), 2, spec.lengths[0] + 3)
    args = tuple(torch.from_numpy(example[n]) for n in spec.input_names)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, buf, input_names=list(spec.input_names), output_names=list(spec.output_names),
            opset_version=OPSET, dynamic_axes=spec.dynamic_axes, dynamo=False,
        )
    path.write_bytes(buf.getvalue())


class _CalibrationReader:
    """A small calibration set for quantize_static."""

    def __init__(self, spec: Spec, n_batches: int = 8, batch: int = 32):
        rng = np.random.default_rng(1)
        self._feeds = iter([spec.inputs(rng, batch, 1) for _ in range(n_batches)])

    def get_next(self):
        return next(self._feeds, None)

    def rewind(self):  # pragma: no cover - quantize_static may call it
        pass


def export(name: str, directory, seed: int = 0) -> Path:
    """Export ``name`` to ``<directory>/<name>.onnx`` (QDQ models: quantised from ``<name>_float.onnx``)."""
    spec = MODELS[name]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.onnx"
    module = build(name, seed)
    if hasattr(module, "exporting"):
        module.exporting = True
    if not spec.quantized:
        _export_float(spec, module, path)
        return path
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    float_path = directory / f"{name}_float.onnx"
    _export_float(spec, module, float_path)

    class Reader(_CalibrationReader, CalibrationDataReader):
        pass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(str(float_path), str(path), Reader(spec), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=False)
    return path


def output_step(path) -> float:
    """The quantisation step (scale) of a QDQ model's first output: the scale of the DequantizeLinear
    node that produces it (0 for a float output)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = model.graph.output[0].name
    for node in model.graph.node:
        if out in node.output and node.op_type == "DequantizeLinear":
            return float(np.max(inits[node.input[1]]))
    return 0.0


def ort_session(path, threads: int = 1, optimize: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if not optimize:  # the model's own semantics, node by node (the test oracle)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_run(session, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return session.run(None, feeds)
