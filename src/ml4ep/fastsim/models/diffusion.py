"""A conditional flow-matching transformer for calorimeter showers in the style of CaloDiT.

The flow's state per shower holds, layer by layer, the layer's voxel *shape* (each voxel's fraction of the layer's
energy) followed by the layer's energy (its fraction of the incident energy): ``V + L`` numbers for ``V`` voxels in
``L`` layers. The state is cut into tokens ("patches over layers": by default one token per calorimeter layer, its
``n_alpha x n_r`` shape values plus its energy; geometries whose layers differ in size use fixed-size chunks of the
state, zero-padded). A DiT-style transformer with adaptive layer-norm conditioning (adaLN-Zero: shift, scale and gate of
every sub-layer computed from the time and condition embedding) predicts the velocity of a rectified flow:

* training (conditional flow matching): ``x_t = (1 - t) x0 + t x1`` with ``x0`` standard normal and ``x1`` the
  preprocessed shower; the loss is ``|v(x_t, t, c) - (x1 - x0)|^2`` averaged over voxels and batch;
* sampling: the ODE ``dx/dt = v`` integrated from ``t = 0`` (noise) to ``t = 1`` with a fixed number of network
  evaluations (at most 20): Euler, midpoint or Heun steps on a uniform grid.

Preprocessing (buffers of the model, so a checkpoint or the exported graphs need nothing else): ``ln(s + 1e-6)`` of
every voxel's share ``s`` of its layer's energy and ``ln(f + 1e-5)`` of every layer's fraction ``f`` of the incident
energy, each standardised by its mean and standard deviation *at the shower's incident energy*: cubic polynomials in
the normalised ln E fitted to the training data (least squares on the values and on the squared residuals). The
network thus models the fluctuations around the energy-dependent average shower, in units of their spread. :meth:`ShowerFlow.postprocess` inverts both, clips at 0,
renormalises every layer's shape to sum to 1 and multiplies it by the layer's energy, then zeroes voxels below the
readout threshold, giving voxel energies in MeV. The layer energies, and so the total, are thus modelled directly
rather than as sums of thousands of exponentiated voxel values.

The exported pair: ``denoiser`` (``x (N, S)``, ``t (N, 1)``, ``incident_energy (N, 1)`` MeV[, ``cond (N, k)``]) ->
``v (N, S)`` and ``postprocess`` (``x (N, S)``, ``incident_energy (N, 1)``) -> ``showers (N, V)`` MeV, with the state
size ``S = V + L``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .conditioning import Conditioned
from .guard import EnergyGuard
from ..sampler import MAX_STEPS, SAMPLERS, DiffusionConfigError, check_sampler, integrate

__all__ = ["DEGREE", "LAYER_EPS", "LOG_EPS", "MAX_STEPS", "MIN_LAYER_STD", "MIN_VOXEL_STD", "STATE_CLIP", "ZERO_SNAP", "SAMPLERS", "DenoiserGraph", "DiffusionConfig",
           "DiffusionConfigError", "PostprocessGraph", "ShowerFlow", "check_sampler", "integrate",
           "timestep_embedding"]

#: offsets of the log transforms of the voxel shares of their layer and of the layer fractions of E_inc
LOG_EPS = 1e-6
LAYER_EPS = 1e-5  # a layer below 1e-5 of E_inc holds no voxel above threshold at any energy
#: degree of the polynomials in the normalised ln E that give every state number's mean and variance
DEGREE = 3
#: floors of the standard deviations (log units) of the voxel shares and of the layer fractions: voxels almost never
#: hit in training are not blown up by the standardisation. The voxels' floor (``DiffusionConfig.min_voxel_std``,
#: 0.5 in the first checkpoints) is 2 by default: a share (at most 1, log 0) then lies at most -ln(1e-6) / 2 = 6.9
#: above the empty value and is never clipped at STATE_CLIP. With 0.5 the rare hits of a voxel hit in 1% of the
#: showers (outer rings of the first layers) lay beyond the clip and came back 25x too small.
MIN_VOXEL_STD, MIN_LAYER_STD = 2.0, 0.2
#: the standardised state is clipped to +-STATE_CLIP (rare outliers, e.g. an empty layer where showers of that
#: energy almost never leave one, would otherwise dominate the loss)
STATE_CLIP = 8.0
#: the output heads (DiffusionConfig.head)
HEADS = ("switch", "mlp", "none")
#: postprocessing: a voxel whose log share lies less than ZERO_SNAP above the empty voxels' value ln(1e-6) is empty
#: (shares below (e^3 - 1) 1e-6 = 1.9e-5 of the layer; 0.1% of the hits of ds2 GFlash showers lie there, while the
#: flow's spread around the empty value would otherwise turn a third of the empty voxels into hits)
ZERO_SNAP = 3.0
#: the layer energies' representation (DiffusionConfig.energy)
ENERGIES = ("u", "log")
#: "u" representation: every layer holds at least U_DELTA E_inc more than its energy (so the ratios are defined for
#: empty layers), and the ratios are clipped to [U_CLIP, 1 - U_CLIP] before the logit
U_DELTA, U_CLIP = 1e-7, 1e-7


@dataclass
class DiffusionConfig:
    """Sizes of :class:`ShowerFlow` (saved with every checkpoint)."""

    n_voxels: int
    n_tokens: int  # tokens the state (shapes and layer energies) is cut into
    layer_sizes: tuple[int, ...] = ()  # voxels per layer, in order (default: one layer of all voxels)
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    n_conditions: int = 0  # extra condition columns besides the incident energy
    condition_names: tuple[str, ...] = ()
    steps: int = 20  # default network evaluations of the sampler
    sampler: str = "midpoint"
    threshold_mev: float = 0.0  # readout threshold applied by postprocess
    layer_weight: float = 40.0  # weight of each layer-energy number in the loss (a voxel share weighs 1)
    #: "gaussian": the network's output is added to the exact velocity of standard normal data, (2t - 1) x /
    #: ((1 - t)^2 + t^2), which is full rank: a token of 145 numbers leaves the network through a 64-wide layer, so
    #: without it (``"none"``, the first checkpoints) the noise outside that subspace was never removed
    skip: str = "gaussian"
    #: "switch": the output layer gives four numbers (a, b, c, s) per state number and its velocity is
    #: a + c tanh(s x + b), a switch in the number's own value x_t: a 64-wide stream carrying 145 numbers per token
    #: cannot resolve one voxel's value, and a voxel hit in 5% of the showers needs a velocity that sends values
    #: above some level up to the hit mode and the others to the empty value. "mlp": a + an MLP of (4 features,
    #: x_t, t), ``head_hidden`` wide (more expressive, twice the generation time). "none": the output layer gives
    #: the velocity (the first checkpoints)
    head: str = "switch"
    head_hidden: int = 16
    min_voxel_std: float = MIN_VOXEL_STD
    #: how the layer energies enter the state. "u" (CaloFlow's u-variables): layer i's number is the logit of
    #: u_i = E_i / sum_{j>=i} E_j, the last layer's the logit of E_tot / (b(E) E_inc) with b the energy guard's
    #: bound on E_tot / E_inc; the inverse (sigmoid, telescoping product) gives layers that sum to E_tot exactly and
    #: E_tot <= b(E) E_inc by construction. "log" (the first checkpoints): ln(E_i / E_inc + 1e-5) per layer, unbounded
    #: but for the guard.
    energy: str = "u"
    #: training only: empty voxels get a random share below the ZERO_SNAP level (uniform in (0, (e^3 - 1) 1e-6)) instead
    #: of exactly 0, so the empty mode is a smooth band that the postprocessing empties again (CaloDREAM's noise)
    empty_noise: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.condition_names = tuple(self.condition_names)
        self.layer_sizes = tuple(int(n) for n in self.layer_sizes) or (int(self.n_voxels),)
        if min(self.layer_sizes) < 1 or sum(self.layer_sizes) != int(self.n_voxels):
            raise DiffusionConfigError(f"layer_sizes must be positive and sum to n_voxels ({self.n_voxels}), got "
                                       f"{self.layer_sizes}")
        for k in ("n_voxels", "n_tokens", "dim", "depth", "heads", "head_hidden"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DiffusionConfigError(f"{k} must be a positive integer, got {v!r}")
        if self.n_tokens > self.state_size:
            raise DiffusionConfigError(f"n_tokens ({self.n_tokens}) must not exceed the state size ({self.state_size})")
        if self.dim % self.heads:
            raise DiffusionConfigError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if not self.mlp_ratio > 0:
            raise DiffusionConfigError(f"mlp_ratio must be positive, got {self.mlp_ratio}")
        if self.n_conditions != len(self.condition_names) and self.condition_names:
            raise DiffusionConfigError("condition_names must name every extra condition column")
        check_sampler(self.sampler, self.steps)
        if not (float(self.min_voxel_std) > 0 and math.isfinite(self.min_voxel_std)):
            raise DiffusionConfigError(f"min_voxel_std must be positive, got {self.min_voxel_std}")
        if self.head not in HEADS:
            raise DiffusionConfigError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.skip not in ("gaussian", "none"):
            raise DiffusionConfigError(f"skip must be 'gaussian' or 'none', got {self.skip!r}")
        if self.energy not in ENERGIES:
            raise DiffusionConfigError(f"energy must be one of {ENERGIES}, got {self.energy!r}")
        if not (self.threshold_mev >= 0 and math.isfinite(self.threshold_mev)):
            raise DiffusionConfigError(f"threshold_mev must be >= 0, got {self.threshold_mev}")

    @property
    def state_size(self) -> int:
        """Numbers per shower in the flow's state: the voxel shapes and one energy per layer."""
        return int(self.n_voxels) + len(self.layer_sizes)

    @property
    def token_size(self) -> int:
        return -(-self.state_size // int(self.n_tokens))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["condition_names"], d["layer_sizes"] = list(self.condition_names), list(self.layer_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DiffusionConfig:
        return cls(**{"skip": "none", "min_voxel_std": 0.5, "head": "none", "energy": "log", **d})  # the first checkpoints


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``(N, dim)`` of times ``t`` ``(N, 1)`` in [0, 1] (scaled by 1000 as in DiT)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    arg = t.reshape(-1, 1) * 1000.0 * freqs
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, n_tokens: int):
        super().__init__()
        self.heads, self.n_tokens, self.head_dim = heads, n_tokens, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, d = self.n_tokens, self.heads, self.head_dim
        qkv = self.qkv(x).reshape(-1, t, 3, h, d).permute(2, 0, 3, 1, 4)  # (3, N, H, T, d)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d)), dim=-1)
        out = torch.matmul(att, v).permute(0, 2, 1, 3).reshape(-1, t, h * d)
        return self.proj(out)


class _Block(nn.Module):
    """Pre-norm transformer block with adaLN-Zero modulation."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, n_tokens: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = _Attention(dim, heads, n_tokens)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(round(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        m = self.ada(c).unsqueeze(1)  # (N, 1, 6D)
        shift1, scale1, gate1, shift2, scale2, gate2 = m.chunk(6, dim=2)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class ShowerFlow(Conditioned, EnergyGuard, nn.Module):
    """Conditional flow-matching transformer; ``forward(showers, energy, cond, generator)`` returns ``(loss,)``."""

    loss_terms = ("mse",)
    config_error = DiffusionConfigError

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config = c = config
        v, t, p, d = int(c.n_voxels), int(c.n_tokens), c.token_size, int(c.dim)
        n_layers = len(c.layer_sizes)
        self.pad = t * p - c.state_size
        self.patch = nn.Linear(p, d)
        self.pos = nn.Parameter(torch.zeros(1, t, d))
        nn.init.normal_(self.pos, std=0.02)
        self.t_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.c_mlp = nn.Sequential(nn.Linear(1 + int(c.n_conditions), d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(_Block(d, int(c.heads), float(c.mlp_ratio), t) for _ in range(int(c.depth)))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        k = 1 if c.head == "none" else 4
        self.out = nn.Linear(d, p * k)
        last = [self.out]
        if c.head == "mlp":  # per state number: (4 features, x_t, t) -> head_hidden -> velocity
            self.head_in = nn.Linear(k + 2, int(c.head_hidden))
            self.head_out = nn.Linear(int(c.head_hidden), 1)
            last = [self.head_out]
        for mod in (self.ada_out[1], *last):
            nn.init.zeros_(mod.weight)
            nn.init.zeros_(mod.bias)
        if c.head == "switch":  # a = b = c = 0 and s = 1: the switch starts at zero but can learn (tanh(x) != 0)
            with torch.no_grad():
                self.out.bias.view(p, k)[:, 3] = 1.0
        # preprocessing (set_preprocessing)
        # layout of the state: per layer its voxels' shares, then its energy
        layer_of_voxel = np.repeat(np.arange(n_layers), c.layer_sizes)
        state_of_voxel = np.arange(v) + layer_of_voxel
        state_of_layer = np.cumsum(c.layer_sizes) + np.arange(n_layers)
        member = np.zeros((v, n_layers), np.float32)
        member[np.arange(v), layer_of_voxel] = 1.0
        self.register_buffer("state_of_voxel", torch.as_tensor(state_of_voxel, dtype=torch.long), persistent=False)
        self.register_buffer("state_of_layer", torch.as_tensor(state_of_layer, dtype=torch.long), persistent=False)
        self.register_buffer("layer_of_voxel", torch.as_tensor(layer_of_voxel, dtype=torch.long), persistent=False)
        self.register_buffer("member", torch.as_tensor(member), persistent=False)
        self.register_buffer("member_t", torch.as_tensor(np.ascontiguousarray(member.T)), persistent=False)
        k = DEGREE + 1
        self.register_buffer("y_coef", torch.zeros(k, v))  # mean(u) = [1, u, u^2, u^3] @ coef
        self.register_buffer("y_var", torch.cat([torch.ones(1, v), torch.zeros(k - 1, v)]))  # variance(u) likewise
        self.register_buffer("l_coef", torch.zeros(k, n_layers))
        self.register_buffer("l_var", torch.cat([torch.ones(1, n_layers), torch.zeros(k - 1, n_layers)]))
        weight = np.ones(c.state_size, np.float32)
        weight[state_of_layer] = float(c.layer_weight)
        self.register_buffer("loss_weight", torch.as_tensor(weight / weight.sum()), persistent=False)
        self._register_condition_buffers(c.n_conditions)
        self._register_guard_buffers(n_layers)
        # u-variables: remaining energy from layer i on = a @ tail (a_j summed over j >= i); log of the share left
        # before layer i = log(1 - u) @ before (summed over j < i, j < L - 1)
        idx = np.arange(n_layers)
        self.register_buffer("tail", torch.as_tensor((idx[:, None] >= idx[None, :]).astype(np.float32)),
                             persistent=False)
        self.register_buffer("before", torch.as_tensor((idx[:-1, None] < idx[None, :]).astype(np.float32)),
                             persistent=False)

    # -- preprocessing ----------------------------------------------------------------------------------
    def set_preprocessing(self, e_min_mev: float, e_max_mev: float, y_coef, y_var, l_coef, l_var, cond_mean=None,
                          cond_std=None) -> None:
        """Store the incident-energy range (MeV), the polynomial coefficients ``(DEGREE + 1, n)`` of the mean and of
        the variance of the log voxel shares (n = V) and of the log layer fractions (n = L) of :meth:`transform` in
        the normalised ln E (:meth:`basis`), and the extra conditions' moments."""
        n_layers, k = len(self.config.layer_sizes), DEGREE + 1
        for name, a, n in (("y_coef", y_coef, self.config.n_voxels), ("y_var", y_var, self.config.n_voxels),
                           ("l_coef", l_coef, n_layers), ("l_var", l_var, n_layers)):
            a = np.asarray(a, dtype=np.float64)
            if a.shape != (k, n) or not np.all(np.isfinite(a)):
                raise DiffusionConfigError(f"{name} must be ({k}, {n}) finite numbers, got shape {a.shape}")
            getattr(self, name).copy_(torch.as_tensor(a, dtype=torch.float32))
        self._set_condition_stats(e_min_mev, e_max_mev, cond_mean, cond_std)

    def basis(self, energy: torch.Tensor) -> torch.Tensor:
        """``(N, DEGREE + 1)``: powers 0..DEGREE of ln E scaled to [0, 1] over the training range."""
        u = (torch.log(energy.reshape(-1, 1)) - self.log_e_range[0]) / (self.log_e_range[1] - self.log_e_range[0])
        return torch.cat([torch.ones_like(u)] + [u**i for i in range(1, DEGREE + 1)], dim=1)

    def moments(self, energy: torch.Tensor):
        """``(voxel mean, voxel std, layer mean, layer std)`` of the transformed values at incident energies
        ``(N, 1)`` MeV, each ``(N, n)``."""
        p = self.basis(energy)
        y_std = torch.sqrt(torch.clamp(p @ self.y_var, min=float(self.config.min_voxel_std) ** 2))
        l_std = torch.sqrt(torch.clamp(p @ self.l_var, min=MIN_LAYER_STD**2))
        return p @ self.y_coef, y_std, p @ self.l_coef, l_std

    def layer_sums(self, v: torch.Tensor) -> torch.Tensor:
        """``(N, V)`` -> ``(N, L)``: the sum over each layer's voxels (a reshape where the layers are alike, as in
        ds2 and ds3, so the exported graphs carry no V x L matrix)."""
        sizes = self.config.layer_sizes
        if len(set(sizes)) == 1:
            return v.reshape(-1, len(sizes), sizes[0]).sum(dim=2)
        return v @ self.member

    def per_layer(self, v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        """``(N, V)`` voxels times ``(N, L)`` factors of their layers."""
        sizes = self.config.layer_sizes
        if len(set(sizes)) == 1:
            return (v.reshape(-1, len(sizes), sizes[0]) * f.unsqueeze(2)).reshape(v.shape)
        return v * (f @ self.member_t)

    def transform(self, showers: torch.Tensor, energy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Voxel energies (MeV) -> ``(ln(share of the layer + 1e-6) (N, V), ln(layer fraction of E_inc + 1e-5)
        (N, L))``, before standardisation."""
        showers = torch.clamp(showers, min=0.0)
        layer_e = self.layer_sums(showers)
        share = showers / torch.clamp(layer_e, min=1e-30)[:, self.layer_of_voxel]
        frac = layer_e / energy.reshape(-1, 1)
        y = torch.log(torch.clamp(share, 0.0, 1.0) + LOG_EPS)
        if self.config.energy == "log":
            return y, torch.log(frac + LAYER_EPS)
        return y, self.energy_to_u(frac, energy)

    def energy_to_u(self, frac: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        """Layer fractions of E_inc ``(N, L)`` -> the logits of the u-variables ``(N, L)``: ``u_i = a_i / sum_{j>=i}
        a_j`` for the first L - 1 layers (``a = frac + U_DELTA``), then ``sum_j a_j / b(E)`` with ``b`` the guard's
        bound on E_tot / E_inc."""
        a = frac + U_DELTA
        rest = a @ self.tail  # (N, L): sum_{j>=i} a_j
        total_max = self.guard_bounds(energy)[1]
        u = torch.cat([a[:, :-1] / rest[:, :-1], rest[:, :1] / total_max], dim=1)
        u = torch.clamp(u, U_CLIP, 1.0 - U_CLIP)
        return torch.log(u) - torch.log1p(-u)

    def u_to_energy(self, z: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`energy_to_u`: logits ``(N, L)`` -> layer fractions of E_inc ``(N, L)`` that sum to at most
        the guard's bound b(E) (exactly to the generated total, up to the U_DELTA offsets)."""
        u = torch.clamp(torch.sigmoid(z), U_CLIP, 1.0 - U_CLIP)  # as in energy_to_u; log(1 - u) stays finite
        total = u[:, -1:] * self.guard_bounds(energy)[1]  # sum of a, <= b(E)
        left = torch.exp(torch.log1p(-u[:, :-1]) @ self.before)  # (N, L): share of the total left before layer i
        a = total * left * torch.cat([u[:, :-1], torch.ones_like(u[:, -1:])], dim=1)
        return torch.clamp(a - U_DELTA, min=0.0)

    def preprocess(self, showers: torch.Tensor, energy: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Voxel energies (MeV) -> the standardised state ``(N, S)`` the flow models (clipped to +-STATE_CLIP); with
        a ``generator`` and ``empty_noise``, empty voxels get their random share below the snap level."""
        y, ell = self.transform(showers, energy)
        if generator is not None and self.config.empty_noise:
            u = torch.rand(y.shape, generator=generator, device=y.device, dtype=y.dtype)
            noisy = torch.log(LOG_EPS + u * (math.exp(ZERO_SNAP) - 1.0) * LOG_EPS)
            y = torch.where(y < math.log(LOG_EPS) + 1e-3, noisy, y)  # a hit holds >= 1e-8 of its layer: +0.01
        y_mean, y_std, l_mean, l_std = self.moments(energy)
        x = torch.empty((showers.shape[0], self.config.state_size), dtype=y.dtype, device=y.device)
        x[:, self.state_of_voxel] = (y - y_mean) / y_std
        x[:, self.state_of_layer] = (ell - l_mean) / l_std
        return torch.clamp(x, -STATE_CLIP, STATE_CLIP)

    def postprocess(self, x: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        """The standardised state (clipped to +-STATE_CLIP like the training data) -> voxel energies in MeV, >= 0
        (shares within ZERO_SNAP of the empty value are 0),
        every layer's shape renormalised to the layer's energy, zero below the readout threshold."""
        y_mean, y_std, l_mean, l_std = self.moments(energy)
        x = torch.clamp(x, -STATE_CLIP, STATE_CLIP)  # no further out than any training shower
        y = x[:, self.state_of_voxel] * y_std + y_mean
        share = torch.where(y < math.log(LOG_EPS) + ZERO_SNAP, torch.zeros_like(y), torch.exp(y) - LOG_EPS)
        ell = x[:, self.state_of_layer] * l_std + l_mean
        if self.config.energy == "log":
            frac = torch.clamp(torch.exp(ell) - LAYER_EPS, min=0.0)
        else:
            frac = self.u_to_energy(ell, energy)
        frac = self.guard_fractions(frac, energy)  # within the training data's bounds at this energy, every layer
        scale = frac * energy.reshape(-1, 1) / torch.clamp(self.layer_sums(share), min=1e-20)  # (N, L)
        e = self.per_layer(share, scale)
        return torch.where(e < self.config.threshold_mev, torch.zeros_like(e), e)

    # -- the network --------------------------------------------------------------------------------------
    def velocity(self, x: torch.Tensor, t: torch.Tensor, energy: torch.Tensor,
                 cond: torch.Tensor | None = None) -> torch.Tensor:
        """The velocity ``(N, S)`` at states ``x`` ``(N, S)``, times ``t`` ``(N, 1)`` and incident energies
        ``(N, 1)`` in MeV."""
        c = self.config
        if self.pad:
            x = torch.cat([x, torch.zeros(x.shape[0], self.pad, dtype=x.dtype, device=x.device)], dim=1)
        h = self.patch(x.reshape(-1, int(c.n_tokens), c.token_size)) + self.pos
        emb = self.t_mlp(timestep_embedding(t, int(c.dim))) + self.c_mlp(self.condition(energy, cond))
        for block in self.blocks:
            h = block(h, emb)
        shift, scale = self.ada_out(emb).unsqueeze(1).chunk(2, dim=2)
        out = self.out(self.norm_out(h) * (1 + scale) + shift)
        if c.head != "none":
            n, s = out.shape[0], c.state_size
            f = out.reshape(n, int(c.n_tokens) * c.token_size, 4)
            f = f[:, :s] if self.pad else f
            xs = x[:, :s]
            if c.head == "switch":
                out = f[..., 0] + f[..., 2] * torch.tanh(f[..., 3] * xs + f[..., 1])
            else:
                z = torch.cat([f, xs.unsqueeze(2), t.reshape(n, 1, 1).expand(n, s, 1)], dim=2)
                out = self.head_out(nn.functional.silu(self.head_in(z))).reshape(n, s)
        else:
            out = out.reshape(-1, int(c.n_tokens) * c.token_size)
            out = out[:, : c.state_size] if self.pad else out
        if c.skip == "gaussian":
            out = out + x[:, : c.state_size] * ((2 * t - 1) / ((1 - t) * (1 - t) + t * t))
        return out

    def forward(self, showers: torch.Tensor, energy: torch.Tensor, cond: torch.Tensor | None = None,
                generator: torch.Generator | None = None):
        x1 = self.preprocess(showers, energy, generator if self.config.empty_noise else None)
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
        t = torch.rand((x1.shape[0], 1), generator=generator, device=x1.device, dtype=x1.dtype)
        xt = (1 - t) * x0 + t * x1
        # weighted mean over the state (the layer energies weigh layer_weight each), mean over the batch
        loss = (((self.velocity(xt, t, energy, cond) - (x1 - x0)) ** 2) @ self.loss_weight).mean()
        return loss, loss

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, energy: torch.Tensor, cond: torch.Tensor | None = None,
               steps: int | None = None, sampler: str | None = None) -> torch.Tensor:
        """Showers (MeV) from ``noise`` ``(N, S)`` standard normal by integrating the flow (see :func:`integrate`)."""
        def v(x, t):
            return self.velocity(x, t, energy, cond)

        x = integrate(v, noise, steps or self.config.steps, sampler or self.config.sampler)
        return self.postprocess(x, energy)


class DenoiserGraph(nn.Module):
    """The exported velocity network: ``(x, t, incident_energy[, cond]) -> v``."""

    def __init__(self, model: ShowerFlow):
        super().__init__()
        self.model = model

    def forward(self, x, t, energy, cond=None):
        return self.model.velocity(x, t, energy, cond)


class PostprocessGraph(nn.Module):
    """The exported output transform: ``(x, incident_energy) -> showers`` (MeV)."""

    def __init__(self, model: ShowerFlow):
        super().__init__()
        self.model = model

    def forward(self, x, energy):
        return self.model.postprocess(x, energy)
