"""The ODE sampler of the flow-matching shower model, shared by every backend (no torch needed).

``dx/dt = v(x, t)`` is integrated from ``t = 0`` (standard-normal noise) to ``t = 1`` (the preprocessed shower) on a
uniform grid with a fixed number of network evaluations: ``euler`` (one per step), ``midpoint`` or ``heun`` (two
per step, second order). The C++ hook of :mod:`ml4ep.fastsim.hook` runs the same loop with the same float32 times.
"""

from __future__ import annotations

import numpy as np

from ..errors import Ml4epError

SAMPLERS = ("euler", "midpoint", "heun")
#: most network evaluations a sampler may use
MAX_STEPS = 20


class DiffusionConfigError(Ml4epError, ValueError):
    """An invalid flow-model configuration or sampler setting."""


def check_sampler(sampler: str, steps: int) -> int:
    """The number of ODE steps of ``sampler`` for ``steps`` network evaluations (an error when they do not fit)."""
    if sampler not in SAMPLERS:
        raise DiffusionConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= MAX_STEPS:
        raise DiffusionConfigError(f"steps (network evaluations) must be an integer in 1..{MAX_STEPS}, got {steps!r}")
    per = 1 if sampler == "euler" else 2
    if steps % per:
        raise DiffusionConfigError(f"the {sampler} sampler takes 2 network evaluations per step: steps must be "
                                   f"even, got {steps}")
    return int(steps) // per


def integrate(velocity, x, steps: int, sampler: str):
    """Integrate ``dx/dt = velocity(x, t)`` from t = 0 to 1 with ``steps`` network evaluations of ``sampler``.

    Works on torch tensors and NumPy arrays alike (``t`` is passed as an ``(N, 1)`` array of the same kind), so the
    torch, onnxruntime and ml4ep backends share one loop."""
    n_steps = check_sampler(sampler, int(steps))
    h = 1.0 / n_steps
    n = x.shape[0]
    if isinstance(x, np.ndarray):
        def tt(value):
            return np.full((n, 1), value, dtype=x.dtype)
    else:  # a torch tensor
        def tt(value):
            return x.new_full((n, 1), value)
    for i in range(n_steps):
        t0 = i * h
        if sampler == "euler":
            x = x + h * velocity(x, tt(t0))
        elif sampler == "midpoint":
            k1 = velocity(x, tt(t0))
            x = x + h * velocity(x + (0.5 * h) * k1, tt(t0 + 0.5 * h))
        else:  # heun
            k1 = velocity(x, tt(t0))
            k2 = velocity(x + h * k1, tt(t0 + h))
            x = x + (0.5 * h) * (k1 + k2)
    return x
