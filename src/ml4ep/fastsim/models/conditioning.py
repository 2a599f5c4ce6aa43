"""The conditioning shared by the shower models: the incident energy as ln E scaled to [0, 1] over the training
range, then the extra condition columns standardised (buffers ``log_e_range``, ``cond_mean``, ``cond_std``)."""

from __future__ import annotations

import math

import numpy as np
import torch


class Conditioned:
    """Mixin of an ``nn.Module`` with ``self.config`` (``n_conditions``, ``condition_names``); ``config_error`` is
    the error class raised for invalid input."""

    config_error: type[Exception] = ValueError

    def _register_condition_buffers(self, n_conditions: int) -> None:
        self.register_buffer("log_e_range", torch.tensor([0.0, math.log(1e6)]))  # ln(E/MeV) min, max
        self.register_buffer("cond_mean", torch.zeros(n_conditions))
        self.register_buffer("cond_std", torch.ones(n_conditions))

    def _set_condition_stats(self, e_min_mev: float, e_max_mev: float, cond_mean=None, cond_std=None) -> None:
        """Store the incident-energy range (MeV) and the extra conditions' mean and standard deviation."""
        if not (0 < e_min_mev <= e_max_mev and math.isfinite(e_max_mev)):
            raise self.config_error(f"invalid incident-energy range [{e_min_mev}, {e_max_mev}] MeV")
        lo, hi = math.log(e_min_mev), math.log(e_max_mev)
        if hi - lo < 1e-3:  # a single energy: an interval around it so the normalisation stays finite
            lo, hi = lo - 0.5, hi + 0.5
        self.log_e_range.copy_(torch.tensor([lo, hi], dtype=torch.float32))
        n = self.config.n_conditions
        if n:
            mean = np.zeros(n) if cond_mean is None else np.asarray(cond_mean, dtype=np.float64).reshape(n)
            std = np.ones(n) if cond_std is None else np.asarray(cond_std, dtype=np.float64).reshape(n)
            self.cond_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.cond_std.copy_(torch.as_tensor(np.where(std > 0, std, 1.0), dtype=torch.float32))

    def condition(self, energy: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, 1 + n_conditions)``: ln E scaled to [0, 1] over the training range, then the standardised extras."""
        e = energy.reshape(-1, 1)
        lo, hi = self.log_e_range[0], self.log_e_range[1]
        c = (torch.log(e) - lo) / (hi - lo)
        n = self.config.n_conditions
        if n:
            if cond is None:
                raise self.config_error(f"this model takes {n} extra condition column(s) "
                                        f"{list(self.config.condition_names)}; none given")
            c = torch.cat([c, (cond.reshape(-1, n) - self.cond_mean) / self.cond_std], dim=1)
        return c
