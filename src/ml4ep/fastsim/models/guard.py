"""The energy guard shared by the shower models: no generated shower holds more energy, in total or in any layer, than
the training showers of its incident energy allow (with a margin).

The training split is binned in ln E_inc (``GUARD_BINS`` equal bins over the training range). Per bin the guard
keeps the largest fraction of E_inc seen in every layer and the largest E_tot / E_inc; each bin's bound is then the
largest of itself and its two neighbours, times a margin (``LAYER_MARGIN``, ``TOTAL_MARGIN``). At a given energy the
bounds are interpolated linearly between the bin centres (hat functions: elementwise operations and one matrix
product, so the exported ONNX graphs and the generated C++ carry the same guard), constant beyond the first and last
centres. Because each centre's bound covers its neighbours' bins, the interpolated bound is never below the
training maximum anywhere inside the range.

:meth:`EnergyGuard.guard_fractions` clamps every layer's fraction to its bound, then scales the layers down together
so that their sum stays below the total's bound. A model whose preprocessing predates the guard gets the generic
bounds (``DEFAULT_LAYER_MAX``, ``DEFAULT_TOTAL_MAX``) with a warning when it is loaded.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

#: bins in ln E_inc over the training range, margins on the bins' maxima, and the bounds of a model without statistics
GUARD_BINS = 16
LAYER_MARGIN, TOTAL_MARGIN = 1.25, 1.1
DEFAULT_LAYER_MAX, DEFAULT_TOTAL_MAX = 1.0, 2.0
#: resolution (in ln E) of the running maxima collected before the training range is known
_FINE = 1.0 / 64.0
GUARD_KEYS = ("guard_layer", "guard_total")


class GuardStats:
    """Running maxima of the layer fractions and of E_tot / E_inc over batches of ``(E_inc (N,), layer energies
    (N, L))``, kept on a fine ln E grid; :meth:`bounds` bins them once the training range is known."""

    def __init__(self, n_layers: int):
        self.n_layers = int(n_layers)
        self._layer: dict[int, np.ndarray] = {}
        self._total: dict[int, float] = {}

    def add(self, energy, layer_energy) -> None:
        e = np.asarray(energy, np.float64).reshape(-1)
        frac = np.asarray(layer_energy, np.float64).reshape(len(e), self.n_layers) / e[:, None]
        key = np.floor(np.log(e) / _FINE).astype(np.int64)
        total = frac.sum(axis=1)
        order = np.argsort(key, kind="stable")
        keys, starts = np.unique(key[order], return_index=True)
        for k, lay, tot in zip(keys.tolist(), np.maximum.reduceat(frac[order], starts, axis=0),
                               np.maximum.reduceat(total[order], starts)):
            self._layer[k] = lay if k not in self._layer else np.maximum(self._layer[k], lay)
            self._total[k] = float(tot) if k not in self._total else max(self._total[k], float(tot))

    def bounds(self, e_min_mev: float, e_max_mev: float, bins: int = GUARD_BINS) -> tuple[np.ndarray, np.ndarray]:
        """``(layer bounds (bins, L), total bounds (bins,))`` over [e_min, e_max] (the model's ln E range)."""
        if not self._total:
            raise ValueError("no showers were seen")
        lo, hi = math.log(e_min_mev), math.log(e_max_mev)
        if hi - lo < 1e-3:  # one energy: the range Conditioned._set_condition_stats uses
            lo, hi = lo - 0.5, hi + 0.5
        layer = np.full((bins, self.n_layers), -1.0)
        total = np.full(bins, -1.0)
        for k, lay in self._layer.items():
            mid = (k + 0.5) * _FINE
            b = min(bins - 1, max(0, int((mid - lo) / (hi - lo) * bins)))
            layer[b] = np.maximum(layer[b], lay)
            total[b] = max(total[b], self._total[k])
        seen = np.flatnonzero(total >= 0)
        for b in np.flatnonzero(total < 0):  # an empty bin takes its nearest filled neighbour's maxima
            near = seen[np.argmin(np.abs(seen - b))]
            layer[b], total[b] = layer[near], total[near]
        pad_l = np.concatenate([layer[:1], layer, layer[-1:]])
        pad_t = np.concatenate([total[:1], total, total[-1:]])
        layer = np.maximum(np.maximum(pad_l[:-2], pad_l[1:-1]), pad_l[2:]) * LAYER_MARGIN
        total = np.maximum(np.maximum(pad_t[:-2], pad_t[1:-1]), pad_t[2:]) * TOTAL_MARGIN
        # a layer's bound never exceeds the total's, and is positive (a layer never hit keeps a tiny allowance)
        layer = np.clip(layer, 1e-9, total[:, None])
        return layer, total


class EnergyGuard:
    """Mixin of an ``nn.Module`` that also uses :class:`~.conditioning.Conditioned` (its ``log_e_range``)."""

    def _register_guard_buffers(self, n_layers: int) -> None:
        self.register_buffer("guard_layer", torch.full((GUARD_BINS, n_layers), DEFAULT_LAYER_MAX))
        self.register_buffer("guard_total", torch.full((GUARD_BINS, 1), DEFAULT_TOTAL_MAX))

    def set_guard(self, layer_max, total_max) -> None:
        """Store the bounds ``(GUARD_BINS, L)`` and ``(GUARD_BINS,)`` (fractions of E_inc) from
        :meth:`GuardStats.bounds`."""
        layer = np.asarray(layer_max, np.float64)
        total = np.asarray(total_max, np.float64).reshape(-1, 1)
        if layer.shape != tuple(self.guard_layer.shape) or total.shape != tuple(self.guard_total.shape) or not (
                np.all(np.isfinite(layer)) and np.all(np.isfinite(total)) and layer.min() > 0 and total.min() > 0):
            raise self.config_error(f"the energy guard needs positive finite bounds of shapes "
                                    f"{tuple(self.guard_layer.shape)} and {tuple(self.guard_total.shape)}")
        self.guard_layer.copy_(torch.as_tensor(layer, dtype=torch.float32))
        self.guard_total.copy_(torch.as_tensor(total, dtype=torch.float32))

    def guard_weights(self, energy: torch.Tensor) -> torch.Tensor:
        """``(N, GUARD_BINS)`` interpolation weights (summing to 1) of incident energies ``(N, 1)`` MeV."""
        k = GUARD_BINS
        lo, hi = self.log_e_range[0], self.log_e_range[1]
        u = (torch.log(energy.reshape(-1, 1)) - lo) / (hi - lo)
        u = torch.clamp(u, 0.5 / k, 1.0 - 0.5 / k)
        centres = (torch.arange(k, dtype=u.dtype, device=u.device) + 0.5) / k
        return torch.relu(1.0 - torch.abs(u - centres) * k)

    def guard_bounds(self, energy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(layer bounds (N, L), total bound (N, 1))`` as fractions of E_inc at incident energies ``(N, 1)`` MeV."""
        w = self.guard_weights(energy)
        return w @ self.guard_layer, w @ self.guard_total

    def guard_fractions(self, frac: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        """Layer fractions of E_inc ``(N, L)`` clamped to their bounds, then scaled down together so that their sum
        stays within the total's bound."""
        layer_max, total_max = self.guard_bounds(energy)
        frac = torch.minimum(frac, layer_max)
        total = frac.sum(dim=1, keepdim=True)
        return frac * torch.clamp(total_max / torch.clamp(total, min=1e-30), max=1.0)


def fill_missing_guard(model, state: dict, path) -> dict:
    """``state`` with the generic guard bounds added where a checkpoint predates the guard (logged as a warning)."""
    missing = [k for k in GUARD_KEYS if k not in state and hasattr(model, k)]
    if not missing:
        return state
    logging.getLogger("ml4ep.fastsim").warning(
        "%s: the checkpoint predates the energy guard; using the generic bounds (every layer <= %g E_inc, "
        "E_tot <= %g E_inc). Retrain, or fine-tune with init_from, to fit them to the data.", path, DEFAULT_LAYER_MAX,
        DEFAULT_TOTAL_MAX)
    return {**state, **{k: getattr(model, k).detach().clone() for k in missing}}
