"""Generative shower models (PyTorch): :mod:`.vae`, a Par04-style conditional VAE, and :mod:`.diffusion`, a
CaloDiT-style conditional flow-matching transformer.

Train with :func:`ml4ep.fastsim.train.train`, export and sample with :mod:`ml4ep.fastsim.generate`.
"""

from __future__ import annotations

from ..._optional import require

require("torch", "torch", "the fastsim generative models")

from .diffusion import (  # noqa: E402
    DenoiserGraph,
    DiffusionConfig,
    DiffusionConfigError,
    PostprocessGraph,
    ShowerFlow,
    integrate,
)
from .vae import DecoderGraph, ShowerVAE, VAEConfig, VAEConfigError  # noqa: E402

__all__ = ["DecoderGraph", "DenoiserGraph", "DiffusionConfig", "DiffusionConfigError", "PostprocessGraph",
           "ShowerFlow", "ShowerVAE", "VAEConfig", "VAEConfigError", "integrate"]
