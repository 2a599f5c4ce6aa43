"""A conditional VAE for calorimeter showers in the style of Geant4's Par04 example.

Dense encoder and decoder; the condition is the normalised log incident energy (plus optional extra condition
columns, standardised). The preprocessing lives in the model as buffers, so a checkpoint or an exported decoder
needs nothing else:

* every voxel energy is divided by the incident energy and by a per-voxel scale (the largest fraction of the
  incident energy that voxel takes in the training data), giving targets in [0, 1];
* the decoder ends in a sigmoid per voxel, multiplied back by the scale and the incident energy, so
  :meth:`ShowerVAE.decode` returns voxel energies in MeV;
* the energy guard (:mod:`.guard`, the whole shower as one layer) scales a decoded shower down where its total
  would exceed the training showers' largest E_tot / E_inc at that energy (times 1.1).

Loss: binary cross-entropy on the scaled fractions (summed over voxels, as in Par04) plus ``beta`` times the KL
divergence to the unit Gaussian (summed over the latent dimensions), both averaged over the batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...errors import Ml4epError
from .conditioning import Conditioned
from .guard import EnergyGuard

#: smallest per-voxel scale (fraction of the incident energy): voxels never hit in training stay near 0
MIN_SCALE = 1e-6


class VAEConfigError(Ml4epError, ValueError):
    """An invalid VAE configuration or preprocessing input."""


@dataclass
class VAEConfig:
    """Sizes and loss settings of :class:`ShowerVAE` (saved with every checkpoint)."""

    n_voxels: int
    latent: int = 10
    hidden: tuple[int, ...] = (256, 128, 64)
    n_conditions: int = 0  # extra condition columns besides the incident energy
    condition_names: tuple[str, ...] = ()
    beta: float = 1.0
    loss: str = "bce"  # "bce" or "mse" on the scaled fractions
    activation: str = "leaky_relu"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        self.condition_names = tuple(self.condition_names)
        if int(self.n_voxels) < 1 or int(self.latent) < 1 or not self.hidden or min(self.hidden) < 1:
            raise VAEConfigError(f"n_voxels, latent and the hidden sizes must be positive, got {self}")
        if self.loss not in ("bce", "mse"):
            raise VAEConfigError(f"loss must be 'bce' or 'mse', got {self.loss!r}")
        if self.activation not in _ACTIVATIONS:
            raise VAEConfigError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        if self.n_conditions != len(self.condition_names) and self.condition_names:
            raise VAEConfigError("condition_names must name every extra condition column")
        if self.beta < 0:
            raise VAEConfigError(f"beta must be >= 0, got {self.beta}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"], d["condition_names"] = list(self.hidden), list(self.condition_names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        return cls(**d)


_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "silu": nn.SiLU}


def _mlp(sizes: list[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), _ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


class ShowerVAE(Conditioned, EnergyGuard, nn.Module):
    """Conditional VAE; ``forward(showers, energy, cond)`` returns ``(loss, recon, kl)`` (batch means)."""

    loss_terms = ("recon", "kl")
    config_error = VAEConfigError

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        c, v, n_cond = config, int(config.n_voxels), 1 + int(config.n_conditions)
        self.encoder = _mlp([v + n_cond, *c.hidden], c.activation)
        self.mu = nn.Linear(c.hidden[-1], c.latent)
        self.logvar = nn.Linear(c.hidden[-1], c.latent)
        self.decoder_body = _mlp([c.latent + n_cond, *reversed(c.hidden)], c.activation)
        self.decoder_out = nn.Linear(c.hidden[0], v)
        # preprocessing (set by set_preprocessing from the training data)
        self.register_buffer("voxel_scale", torch.ones(v))
        self._register_condition_buffers(c.n_conditions)
        self._register_guard_buffers(1)

    # -- preprocessing ----------------------------------------------------------------------------------
    def set_preprocessing(self, voxel_scale, e_min_mev: float, e_max_mev: float, cond_mean=None,
                          cond_std=None, mean_target=None) -> None:
        """Store the per-voxel scale (fractions of the incident energy), the incident-energy range (MeV) and the
        extra conditions' mean and standard deviation. ``mean_target`` (the mean scaled fraction per voxel, if
        given) initialises the output biases so that the untrained decoder starts at the mean shower."""
        scale = np.asarray(voxel_scale, dtype=np.float64).reshape(-1)
        if scale.shape != (self.config.n_voxels,) or not np.all(np.isfinite(scale)):
            raise VAEConfigError(f"voxel_scale must be {self.config.n_voxels} finite numbers")
        self.voxel_scale.copy_(torch.as_tensor(np.maximum(scale, MIN_SCALE), dtype=torch.float32))
        self._set_condition_stats(e_min_mev, e_max_mev, cond_mean, cond_std)
        if mean_target is not None:
            m = np.clip(np.asarray(mean_target, dtype=np.float64).reshape(-1), 1e-4, 1 - 1e-4)
            with torch.no_grad():
                self.decoder_out.bias.copy_(torch.as_tensor(np.log(m / (1 - m)), dtype=torch.float32))

    def to_fractions(self, showers: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        """Voxel energies (MeV) -> scaled fractions in [0, 1] (the reconstruction target)."""
        return torch.clamp(showers / (energy.reshape(-1, 1) * self.voxel_scale), 0.0, 1.0)

    # -- the networks -------------------------------------------------------------------------------------
    def encode(self, showers: torch.Tensor, energy: torch.Tensor, cond: torch.Tensor | None = None):
        """``(mu, logvar)`` of the posterior for showers in MeV."""
        h = self.encoder(torch.cat([self.to_fractions(showers, energy), self.condition(energy, cond)], dim=1))
        return self.mu(h), self.logvar(h)

    def decode_fractions(self, z: torch.Tensor, energy: torch.Tensor, cond: torch.Tensor | None = None):
        """Sigmoid outputs in [0, 1] (scaled fractions)."""
        return torch.sigmoid(self.decoder_out(self.decoder_body(torch.cat([z, self.condition(energy, cond)], 1))))

    def decode(self, z: torch.Tensor, energy: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Voxel energies in MeV, ``(N, n_voxels)``, for latent ``z`` ``(N, latent)`` and incident energies in
        MeV ``(N, 1)``."""
        frac = self.decode_fractions(z, energy, cond) * self.voxel_scale
        total = frac.sum(dim=1, keepdim=True)
        factor = self.guard_fractions(total, energy) / torch.clamp(total, min=1e-30)  # <= 1: the energy guard
        return frac * (factor * energy.reshape(-1, 1))

    def forward(self, showers: torch.Tensor, energy: torch.Tensor, cond: torch.Tensor | None = None,
                generator: torch.Generator | None = None):
        target = self.to_fractions(showers, energy)
        c = self.condition(energy, cond)
        h = self.encoder(torch.cat([target, c], dim=1))
        mu, logvar = self.mu(h), self.logvar(h).clamp(-20.0, 20.0)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.decoder_out(self.decoder_body(torch.cat([z, c], dim=1)))
        if self.config.loss == "bce":
            recon = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1)
        else:
            recon = ((torch.sigmoid(logits) - target) ** 2).sum(1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
        recon, kl = recon.mean(), kl.mean()
        return recon + self.config.beta * kl, recon, kl


class DecoderGraph(nn.Module):
    """The exported generator: ``(z (N, latent), incident_energy (N, 1) MeV[, cond (N, k)]) -> showers (N, V)``."""

    def __init__(self, vae: ShowerVAE):
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor, energy: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.vae.decode(z, energy, cond)
