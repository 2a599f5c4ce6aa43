"""Generative shower models (PyTorch): :mod:`.vae`, a Par04-style conditional VAE.

Train with :func:`ml4ep.fastsim.train.train`, export and sample with :mod:`ml4ep.fastsim.generate`.
"""

from __future__ import annotations

from ..._optional import require

require("torch", "torch", "the fastsim generative models")

from .vae import DecoderGraph, ShowerVAE, VAEConfig, VAEConfigError  # noqa: E402

__all__ = ["DecoderGraph", "ShowerVAE", "VAEConfig", "VAEConfigError"]
