"""Model families used by the tests, the demo and the benchmarks, defined in PyTorch and exported to ONNX.

- ``mlp``: a jet-tagging style classifier (16 features -> 64 -> 64 -> 1, sigmoid).
- ``cnn1d``, ``cnn2d``, ``cnn3d``: small convolutional networks on 1-D traces, calorimeter images and
  calorimeter volumes (Conv + BatchNorm + ReLU + pooling, then a dense head).
- ``vae_decoder``: the decoder of a conditional VAE for calorimeter showers in the style of Geant4's Par04
  example: latent 10 + 4 conditions -> 100 -> 100 -> 6480 voxels (sigmoid).

The HEP inference benchmark (``ml4ep bench``) uses :data:`MODEL_NAMES`, each at a realistic ("full") and a
small size (:func:`bench_model`): a Par04-style VAE decoder, a ParticleNet-style GNN, an interaction network, a
particle transformer (about 2M parameters), a CaloDiT-style denoiser, a Higgs-style dense classifier and a
calorimeter-image CNN. Each exports to ONNX with a dynamic batch (:meth:`BenchModel.export`). Their PyTorch
classes (:func:`architectures`) also serve the infer tests at test sizes (``tests/infer/hep_models.py``).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

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
    return init_batchnorm(FAMILIES[name].build())


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


# ------------------------------------------------------------------------------------------------------
# Architectures of the HEP inference benchmark (also used at small sizes by tests/infer/hep_models.py)
# ------------------------------------------------------------------------------------------------------
_CLASSES: dict[str, type] = {}


def architectures() -> dict[str, type]:
    """The PyTorch classes of the benchmark's architectures, defined on first use (torch is imported lazily):
    ``EdgeConvBlock``, ``ParticleNet``, ``InteractionNetwork``, ``ParticleTransformer``, ``DiT``."""
    if _CLASSES:
        return _CLASSES
    torch = _torch()
    nn = torch.nn
    F = nn.functional

    class EdgeConvBlock(nn.Module):
        """EdgeConv: kNN (pairwise distances + TopK), neighbour gather, edge MLP of 1x1 Conv2d + BatchNorm + ReLU,
        mean over the neighbours, 1x1 Conv1d + BatchNorm shortcut."""

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

    class ParticleNet(nn.Module):
        """ParticleNet: input BatchNorm, EdgeConv blocks (the first on the coordinates, the next ones in feature
        space), global average pool, dense head."""

        def __init__(self, c_in: int = 4, k: int = 16, blocks=((64, 64, 64), (128, 128, 128)), n_classes: int = 5,
                     hidden: int = 128):
            super().__init__()
            self.bn_in = nn.BatchNorm1d(c_in)
            self.blocks = nn.ModuleList()
            c = c_in
            for channels in blocks:
                self.blocks.append(EdgeConvBlock(k, c, tuple(channels)))
                c = channels[-1]
            self.head = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

        def forward(self, points, features):
            x = self.bn_in(features)
            for i, block in enumerate(self.blocks):
                x = block(points if i == 0 else x, x)
            return self.head(x.mean(dim=-1))

    class InteractionNetwork(nn.Module):
        """Interaction network over an edge list: gather senders/receivers by index, edge MLP, scatter-add to the
        receivers, node MLP, mean readout."""

        def __init__(self, f: int = 6, h: int = 32, n_out: int = 3):
            super().__init__()
            self.edge_mlp = nn.Sequential(nn.Linear(2 * f, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
            self.node_mlp = nn.Sequential(nn.Linear(f + h, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
            self.readout = nn.Linear(h, n_out)

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

    class ParticleTransformer(nn.Module):
        """Transformer encoder over particles (pre-norm, padding mask from an input, class token)."""

        def __init__(self, f: int = 7, d: int = 64, heads: int = 4, layers: int = 2, ffn: int = 128,
                     n_classes: int = 5):
            super().__init__()
            self.embed = nn.Sequential(nn.Linear(f, d), nn.GELU(), nn.Linear(d, d))
            self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.1)
            layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=ffn, dropout=0.0, batch_first=True,
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

    def modulate(x, shift, scale):
        return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)

    class DiTBlock(nn.Module):
        """Adaptive-LayerNorm transformer block: self-attention and MLP, shifted, scaled and gated by the
        conditioning vector."""

        def __init__(self, d: int, heads: int):
            super().__init__()
            self.heads = heads
            self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
            self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
            self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(approximate="tanh"), nn.Linear(4 * d, d))

        def attn(self, x):
            b, n, d = x.shape
            qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, H, T, dh)
            return self.proj(y.transpose(1, 2).reshape(b, n, d))

        def forward(self, h, c):
            s_msa, sc_msa, g_msa, s_mlp, sc_mlp, g_mlp = self.ada(c).chunk(6, dim=1)
            h = h + g_msa.unsqueeze(1) * self.attn(modulate(self.norm1(h), s_msa, sc_msa))
            return h + g_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(h), s_mlp, sc_mlp))

    class DiT(nn.Module):
        """DiT-style denoiser (the architecture of CaloDiT): token embedding, sinusoidal timestep embedding
        (plus an embedding of ``n_cond`` conditions such as the incident energy), ``depth`` adaLN blocks, adaLN
        final layer back to the token width."""

        def __init__(self, c: int = 8, d: int = 64, heads: int = 4, depth: int = 1, freq: int = 32, n_cond: int = 0):
            super().__init__()
            self.freq = freq
            self.inp = nn.Linear(c, d)
            self.t_mlp = nn.Sequential(nn.Linear(freq, d), nn.SiLU(), nn.Linear(d, d))
            self.c_mlp = nn.Sequential(nn.Linear(n_cond, d), nn.SiLU(), nn.Linear(d, d)) if n_cond else None
            self.blocks = nn.ModuleList(DiTBlock(d, heads) for _ in range(depth))
            self.ada_final = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
            self.norm_final = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
            self.out = nn.Linear(d, c)

        def t_embed(self, t):  # sinusoidal timestep embedding, (B,) -> (B, freq)
            half = self.freq // 2
            freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
            args = t[:, None] * freqs[None]
            return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

        def forward(self, x, t, cond=None):  # x (B, T, C) noisy tokens, t (B,) diffusion time, cond (B, n_cond)
            c = self.t_mlp(self.t_embed(t))
            if self.c_mlp is not None:
                c = c + self.c_mlp(cond)
            h = self.inp(x)
            for block in self.blocks:
                h = block(h, c)
            shift, scale = self.ada_final(c).chunk(2, dim=1)
            return self.out(modulate(self.norm_final(h), shift, scale))

    _CLASSES.update(EdgeConvBlock=EdgeConvBlock, ParticleNet=ParticleNet, InteractionNetwork=InteractionNetwork,
                    ParticleTransformer=ParticleTransformer, DiTBlock=DiTBlock, DiT=DiT)
    return _CLASSES


def init_batchnorm(model):
    """Give every BatchNorm layer non-trivial statistics and affine parameters (drawn from torch's RNG), so
    exports and engines are checked on more than the identity; returns the model in eval mode."""
    torch = _torch()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


# ------------------------------------------------------------------------------------------------------
# Feeds
# ------------------------------------------------------------------------------------------------------
def particle_cloud_inputs(rng, batch: int, length: int, features: int = 4) -> dict:
    """ParticleNet feeds: ``points`` (B, 2, P) coordinates and ``features`` (B, F, P)."""
    return {
        "points": rng.normal(size=(batch, 2, length)).astype(np.float32),
        "features": rng.normal(size=(batch, features, length)).astype(np.float32),
    }


def graph_inputs(rng, batch: int, length: int, features: int = 6, edges: int | None = None) -> dict:
    """Interaction-network feeds: ``nodes`` (B, N, F) and ``edges`` (2, E) int64, random sender/receiver pairs
    (``edges=None``: 3N + 1 of them) or every ordered pair of distinct nodes (``edges=-1``)."""
    if edges == -1:
        send, recv = np.nonzero(~np.eye(length, dtype=bool))
        edge_index = np.stack([send, recv]).astype(np.int64)
    else:
        edge_index = rng.integers(0, length, size=(2, edges or 3 * length + 1)).astype(np.int64)
    return {"nodes": rng.normal(size=(batch, length, features)).astype(np.float32), "edges": edge_index}


def padded_particles_inputs(rng, batch: int, length: int, features: int = 7) -> dict:
    """Transformer feeds: ``particles`` (B, L, F), zero past each jet's random multiplicity, and ``mask``
    (B, L) bool, True on padding."""
    n_valid = rng.integers(1, length + 1, size=batch)
    mask = np.arange(length)[None, :] >= n_valid[:, None]
    x = rng.normal(size=(batch, length, features)).astype(np.float32)
    x[mask] = 0.0
    return {"particles": x, "mask": mask}


def token_inputs(rng, batch: int, length: int, channels: int = 8, n_cond: int = 0) -> dict:
    """DiT feeds: noisy tokens ``x`` (B, T, C), diffusion time ``t`` (B,) and, with ``n_cond``, the
    conditions ``cond`` (B, n_cond) (log incident energy)."""
    feeds = {
        "x": rng.normal(size=(batch, length, channels)).astype(np.float32),
        "t": rng.uniform(0, 1000, size=(batch,)).astype(np.float32),
    }
    if n_cond:
        feeds["cond"] = rng.uniform(0, 7, size=(batch, n_cond)).astype(np.float32)
    return feeds


# ------------------------------------------------------------------------------------------------------
# The benchmark's models
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchModel:
    """One model of the benchmark at one size: its PyTorch builder, ONNX names and feeds."""

    name: str
    size: str  # "full" (realistic) or "small" (the tests' configuration)
    build: Callable[[], object]  # -> torch.nn.Module (random weights from torch's RNG)
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    feeds: Callable[[np.random.Generator, int], dict]  # (rng, batch) -> {input name: array}
    description: str
    batch_inputs: tuple[str, ...] = ()  # inputs with a batch axis (axis 0); default: every input

    def inputs(self, batch: int, seed: int = 0) -> dict:
        return self.feeds(np.random.default_rng(seed), batch)

    def module(self, seed: int = 0):
        """The PyTorch module in eval mode, deterministic for ``seed``."""
        torch = _torch()
        torch.manual_seed(seed)
        return init_batchnorm(self.build())

    def export(self, path, seed: int = 0, opset: int = 17) -> bytes:
        """Export to ONNX with a dynamic batch axis ``N`` on every batched input and every output."""
        torch = _torch()
        module = self.module(seed)
        if hasattr(module, "exporting"):
            module.exporting = True
        example = self.inputs(2, seed=1)
        args = tuple(torch.from_numpy(example[n]) for n in self.input_names)
        batched = self.batch_inputs or self.input_names
        axes = {n: {0: "N"} for n in (*batched, *self.output_names)}
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, buf, input_names=list(self.input_names),
                              output_names=list(self.output_names), opset_version=opset, dynamic_axes=axes,
                              dynamo=False)
        data = buf.getvalue()
        if path is not None:
            with open(path, "wb") as f:
                f.write(data)
        return data

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module().parameters())


def _sequential(*layers):
    return _torch().nn.Sequential(*layers)


def _vae(small: bool):
    nn = _torch().nn
    dims = (14, 20, 50, 100, 6480 if small else 40500)
    layers: list = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers[-1] = nn.Sigmoid()
    return _sequential(*layers)


def _dense(small: bool):
    nn = _torch().nn
    widths = (28, *((32, 32) if small else (300,) * 5))
    layers: list = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return _sequential(*layers, nn.Linear(widths[-1], 1), nn.Sigmoid())


def _cnn(small: bool):
    nn = _torch().nn
    (c1, c2), side = _cnn_channels(small), (16 if small else 40)
    return _sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.Conv2d(c1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * (side // 4) ** 2, 128), nn.ReLU(), nn.Linear(128, 2),
    )


def _cnn_channels(small: bool) -> tuple[int, int]:
    return (8, 16) if small else (32, 64)


def _image_feeds(side: int):
    def feeds(rng, batch):
        return {"image": np.abs(rng.normal(size=(batch, 1, side, side))).astype(np.float32)}
    return feeds


def _vector_feeds(name: str, width: int):
    def feeds(rng, batch):
        return {name: rng.normal(size=(batch, width)).astype(np.float32)}
    return feeds


def _bench_models(small: bool) -> dict[str, BenchModel]:
    size = "small" if small else "full"
    A = architectures
    P = 32 if small else 128  # particles per jet
    V = 10 if small else 30  # interaction-network nodes (fully connected: V(V-1) edges)
    L = 16 if small else 128  # transformer particles
    T, C = (5, 16) if small else (45, 144)  # CaloDiT tokens (layers) x voxels per token
    side = 16 if small else 40
    pn = dict(c_in=7, k=16, n_classes=2, blocks=((16, 16, 16), (32, 32, 32)) if small else
              ((64, 64, 64), (128, 128, 128)))
    inet = dict(f=16, h=16 if small else 64, n_out=5)
    part = dict(f=17, d=32, heads=4, layers=2, ffn=64, n_classes=10) if small else \
        dict(f=17, d=128, heads=8, layers=8, ffn=640, n_classes=10)
    dit = dict(c=C, d=32, heads=4, depth=1, n_cond=1) if small else dict(c=C, d=128, heads=8, depth=4, n_cond=1)
    models = [
        BenchModel("vae", size, lambda: _vae(small), ("z",), ("showers",), _vector_feeds("z", 14),
                   "Par04-style VAE decoder: latent 10 + 4 conditions -> 20 -> 50 -> 100 -> "
                   + ("6480 voxels" if small else "40500 voxels (18 r x 50 phi x 45 z)")),
        BenchModel("gnn", size, lambda: A()["ParticleNet"](**pn), ("points", "features"), ("logits",),
                   lambda rng, b: particle_cloud_inputs(rng, b, P, 7),
                   f"ParticleNet-style GNN: 2 EdgeConv blocks {pn['blocks'][0][0]}/{pn['blocks'][1][0]} channels, "
                   f"k=16, {P} particles x 7 features"),
        BenchModel("interaction", size, lambda: A()["InteractionNetwork"](**inet), ("nodes", "edges"), ("out",),
                   lambda rng, b: graph_inputs(rng, b, V, 16, edges=-1),
                   f"interaction network: {V} nodes x 16 features, {V * (V - 1)} edges (fully connected), "
                   f"hidden {inet['h']}", batch_inputs=("nodes",)),
        BenchModel("transformer", size, lambda: A()["ParticleTransformer"](**part), ("particles", "mask"),
                   ("logits",), lambda rng, b: padded_particles_inputs(rng, b, L, 17),
                   f"particle transformer: {L} particles x 17 features, d={part['d']}, {part['heads']} heads, "
                   f"{part['layers']} layers, padding mask, class token"),
        BenchModel("diffusion", size, lambda: A()["DiT"](**dit), ("x", "t", "cond"), ("v",),
                   lambda rng, b: token_inputs(rng, b, T, C, 1),
                   f"CaloDiT-style denoiser: {T} layer tokens x {C} voxels, d={dit['d']}, {dit['heads']} heads, "
                   f"{dit['depth']} adaLN blocks, time and energy conditioning"),
        BenchModel("dense", size, lambda: _dense(small), ("x",), ("p",), _vector_feeds("x", 28),
                   "Higgs-style dense classifier: 28 features -> " + ("2 x 32" if small else "5 x 300") + " tanh -> 1"),
        BenchModel("cnn", size, lambda: _cnn(small), ("image",), ("logits",), _image_feeds(side),
                   f"calorimeter-image CNN: 1x{side}x{side} -> 4 conv 3x3 ({'/'.join(map(str, _cnn_channels(small)))} channels), 2 max-pools, dense 128 -> 2"),
    ]
    return {m.name: m for m in models}


MODEL_NAMES = ("vae", "gnn", "interaction", "transformer", "diffusion", "dense", "cnn")


def bench_model(name: str, size: str = "full") -> BenchModel:
    """The benchmark model ``name`` (one of :data:`MODEL_NAMES`) at ``size`` "full" or "small"."""
    if size not in ("full", "small"):
        raise ValueError(f"model size must be 'full' or 'small', not {size!r}")
    models = _bench_models(size == "small")
    if name not in models:
        raise KeyError(f"unknown benchmark model '{name}'; known: {', '.join(MODEL_NAMES)}")
    return models[name]
