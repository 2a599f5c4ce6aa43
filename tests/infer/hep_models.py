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
import math
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


# ------------------------------------------------------------------------------------------------------
# 1. ParticleNet-style EdgeConv network
# ------------------------------------------------------------------------------------------------------
def _edgeconv_block_cls():
    torch = _torch()
    nn = torch.nn

    class EdgeConvBlock(nn.Module):
        def __init__(self, k: int, c_in: int, channels: tuple[int, ...]):
            super().__init__()
            self.k = k
            layers = []
            c = 2 * c_in
            for ch in channels:
                layers += [nn.Conv2d(c, ch, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU()]
                c = ch
            self.edge_mlp = nn.Sequential(*layers)
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, channels[-1], 1, bias=False), nn.BatchNorm1d(channels[-1]))
            self.act = nn.ReLU()

        def knn(self, pts):  # pts (B, D, P) -> indices (B, P, k) of the k nearest other points
            inner = torch.matmul(pts.transpose(1, 2), pts)  # (B, P, P)
            sq = (pts * pts).sum(dim=1, keepdim=True)  # (B, 1, P)
            neg_dist = 2 * inner - sq - sq.transpose(1, 2)
            return neg_dist.topk(self.k + 1, dim=-1)[1][:, :, 1:]  # drop the point itself

        def forward(self, pts, fts):  # pts (B, D, P), fts (B, C, P)
            b, c, p = fts.shape
            idx = self.knn(pts)  # (B, P, k)
            flat = idx.reshape(b, 1, p * self.k).expand(b, c, p * self.k)
            nbr = torch.gather(fts, 2, flat).reshape(b, c, p, self.k)  # GatherElements
            centre = fts.unsqueeze(-1).expand(b, c, p, self.k)
            edge = torch.cat([centre, nbr - centre], dim=1)  # (B, 2C, P, k)
            x = self.edge_mlp(edge).mean(dim=-1)  # (B, ch, P)
            return self.act(x + self.shortcut(fts))

    return EdgeConvBlock


def _particlenet():
    torch = _torch()
    nn = torch.nn
    Block = _edgeconv_block_cls()

    class ParticleNet(nn.Module):
        def __init__(self, c_in: int = 4, k: int = 16, n_classes: int = 5):
            super().__init__()
            self.bn_in = nn.BatchNorm1d(c_in)
            self.block1 = Block(k, c_in, (64, 64, 64))
            self.block2 = Block(k, 64, (128, 128, 128))
            self.head = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, n_classes))

        def forward(self, points, features):
            x = self.block1(points, self.bn_in(features))
            x = self.block2(x, x)  # the second block's graph is built in feature space
            return self.head(x.mean(dim=-1))

    return ParticleNet()


def _particlenet_inputs(rng, batch, length):
    return {
        "points": rng.normal(size=(batch, 2, length)).astype(np.float32),
        "features": rng.normal(size=(batch, 4, length)).astype(np.float32),
    }


# ------------------------------------------------------------------------------------------------------
# 2. Interaction network over an edge list
# ------------------------------------------------------------------------------------------------------
def _interaction_net():
    torch = _torch()
    nn = torch.nn

    class InteractionNetwork(nn.Module):
        def __init__(self, f: int = 6, h: int = 32, n_out: int = 3):
            super().__init__()
            self.edge_mlp = nn.Sequential(nn.Linear(2 * f, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
            self.node_mlp = nn.Sequential(nn.Linear(f + h, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
            self.readout = nn.Linear(h, n_out)
            self.h = h

        def forward(self, nodes, edges):  # nodes (B, N, F), edges (2, E) int64: sender, receiver
            send = torch.index_select(nodes, 1, edges[0])  # (B, E, F)  Gather
            recv = torch.index_select(nodes, 1, edges[1])
            msg = self.edge_mlp(torch.cat([send, recv], dim=-1))  # (B, E, H)
            b, e, h = msg.shape
            index = edges[1].reshape(1, e, 1).expand(b, e, h)
            agg = torch.zeros_like(nodes[:, :, :1]).expand(b, nodes.shape[1], h)
            agg = agg.scatter_add(1, index, msg)  # ScatterElements(reduction=add) to the receivers
            upd = self.node_mlp(torch.cat([nodes, agg], dim=-1))  # (B, N, H)
            return self.readout(upd.mean(dim=1))

    return InteractionNetwork()


def _interaction_inputs(rng, batch, length):
    n_edges = 3 * length + 1
    return {
        "nodes": rng.normal(size=(batch, length, 6)).astype(np.float32),
        "edges": rng.integers(0, length, size=(2, n_edges)).astype(np.int64),
    }


# ------------------------------------------------------------------------------------------------------
# 3. Particle transformer encoder with a padding mask and a class token
# ------------------------------------------------------------------------------------------------------
def _part_transformer():
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class ParticleTransformer(nn.Module):
        def __init__(self, f: int = 7, d: int = 64, heads: int = 4, layers: int = 2, n_classes: int = 5):
            super().__init__()
            self.embed = nn.Sequential(nn.Linear(f, d), nn.GELU(), nn.Linear(d, d))
            self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.1)
            layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=2 * d, dropout=0.0, batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
            self.head = nn.Linear(d, n_classes)
            self.exporting = False

        def forward(self, particles, mask):  # particles (B, L, F), mask (B, L) bool, True = padding
            h = self.embed(particles)
            cls = self.cls.expand(h.shape[0], 1, h.shape[2])
            h = torch.cat([cls, h], dim=1)
            pad = torch.cat([torch.zeros_like(mask[:, :1]), mask], dim=1)
            if self.exporting:
                h = self._encoder_traceable(h, pad)
            else:
                h = self.encoder(h, src_key_padding_mask=pad)
            return self.head(self.norm(h[:, 0]))

        def _encoder_traceable(self, h, pad):
            # The same computation as self.encoder (norm_first, ReLU, no dropout) from its own parameters:
            # torch.onnx.export(dynamo=False) of nn.MultiheadAttention bakes the traced sequence length
            # (k.shape[0]) into a Reshape, so the export would only run at that length.
            # additive mask, -1e9 on padding: exp underflows to 0 as with -inf (the class token is never padded)
            bias = pad.to(h.dtype)[:, None, None, :] * -1e9  # (B, 1, 1, L)
            for layer in self.encoder.layers:
                att = layer.self_attn
                b, n, d = h.shape
                x = layer.norm1(h)
                qkv = F.linear(x, att.in_proj_weight, att.in_proj_bias)
                qkv = qkv.reshape(b, n, 3, att.num_heads, d // att.num_heads).permute(2, 0, 3, 1, 4)
                y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias)
                h = h + att.out_proj(y.transpose(1, 2).reshape(b, n, d))
                x = layer.norm2(h)
                h = h + layer.linear2(F.relu(layer.linear1(x)))
            return h

    return ParticleTransformer()


def _transformer_inputs(rng, batch, length):
    n_valid = rng.integers(1, length + 1, size=batch)
    mask = np.arange(length)[None, :] >= n_valid[:, None]
    x = rng.normal(size=(batch, length, 7)).astype(np.float32)
    x[mask] = 0.0
    return {"particles": x, "mask": mask}


# ------------------------------------------------------------------------------------------------------
# 4. DiT-style denoiser block
# ------------------------------------------------------------------------------------------------------
def _dit_block():
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    def modulate(x, shift, scale):
        return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)

    class DiTBlock(nn.Module):
        def __init__(self, c: int = 8, d: int = 64, heads: int = 4, freq: int = 32):
            super().__init__()
            self.heads = heads
            self.freq = freq
            self.inp = nn.Linear(c, d)
            self.t_mlp = nn.Sequential(nn.Linear(freq, d), nn.SiLU(), nn.Linear(d, d))
            self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
            self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
            self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"), nn.Linear(4 * d, d))
            self.ada_final = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
            self.norm_final = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
            self.out = nn.Linear(d, c)

        def t_embed(self, t):  # sinusoidal timestep embedding, (B,) -> (B, freq)
            half = self.freq // 2
            freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
            args = t[:, None] * freqs[None]
            return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

        def attn(self, x):
            b, n, d = x.shape
            qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, H, T, dh)
            return self.proj(y.transpose(1, 2).reshape(b, n, d))

        def forward(self, x, t):  # x (B, T, C) noisy tokens, t (B,) diffusion time
            c = self.t_mlp(self.t_embed(t))
            s_msa, sc_msa, g_msa, s_mlp, sc_mlp, g_mlp = self.ada(c).chunk(6, dim=1)
            h = self.inp(x)
            h = h + g_msa.unsqueeze(1) * self.attn(modulate(self.norm1(h), s_msa, sc_msa))
            h = h + g_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(h), s_mlp, sc_mlp))
            shift, scale = self.ada_final(c).chunk(2, dim=1)
            return self.out(modulate(self.norm_final(h), shift, scale))

    return DiTBlock()


def _dit_inputs(rng, batch, length):
    return {
        "x": rng.normal(size=(batch, length, 8)).astype(np.float32),
        "t": rng.uniform(0, 1000, size=(batch,)).astype(np.float32),
    }


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
        "particlenet", _particlenet, ("points", "features"), ("logits",),
        {"points": {0: "N", 2: "P"}, "features": {0: "N", 2: "P"}, "logits": {0: "N"}},
        _particlenet_inputs, (32, 100), 64, "EdgeConv k=16, blocks 64/128, 4 features"),
    "interaction_net": Spec(
        "interaction_net", _interaction_net, ("nodes", "edges"), ("out",),
        {"nodes": {0: "N", 1: "V"}, "edges": {1: "E"}, "out": {0: "N"}},
        _interaction_inputs, (10, 37), 30, "interaction network, 6 features, hidden 32, scatter-add"),
    "part_transformer": Spec(
        "part_transformer", _part_transformer, ("particles", "mask"), ("logits",),
        {"particles": {0: "N", 1: "L"}, "mask": {0: "N", 1: "L"}, "logits": {0: "N"}},
        _transformer_inputs, (16, 50), 64, "TransformerEncoder d=64, 4 heads, 2 layers, padding mask, class token"),
    "dit_block": Spec(
        "dit_block", _dit_block, ("x", "t"), ("y",),
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
    model = MODELS[name].build()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


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
