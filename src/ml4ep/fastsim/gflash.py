"""Parameterised electromagnetic showers of the GFlash type (Grindhammer & Peters, hep-ex/0001020).

A fast, vectorised *parameterisation*, not a Geant4 simulation. Every shower gets a longitudinal Gamma profile with
correlated per-shower fluctuations of (ln T, ln alpha) (sampling-calorimeter parameters), its energy is integrated
over depth steps with the regularised incomplete gamma function and smeared with a Gamma-distributed sampling
fluctuation per step; the energy of every step is carried by "spots" with random (Gamma-distributed) weights, a
uniform azimuth and a radius drawn from the two-component (core + tail) radial profile. The spots are histogrammed
into any :class:`~ml4ep.fastsim.geometry.Geometry` in the CaloChallenge format and the readout threshold applied.

>>> from ml4ep.fastsim import geometry, gflash
>>> e_inc, showers = gflash.simulate(geometry.get("ds2"), 1000, energy=(1.0, 1000.0), seed=1)

Energies are in MeV unless a name says GeV; depths ``t`` in radiation lengths X0 of the effective material; radii
in Moliere radii inside the radial profile and in mm elsewhere.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc

from ..errors import Ml4epError
from .geometry import Geometry
from .geometry import get as get_geometry

log = logging.getLogger(__name__)

#: Showers per random-number block: every block has its own stream (SeedSequence spawn key = block number), so the
#: output does not depend on ``chunk_size``.
BLOCK = 128
#: Upper bound on the spots processed at once (memory: about 60 bytes per spot).
MAX_SPOTS = 1_500_000
#: The energy range (GeV) in which the Grindhammer-Peters parameterisation is defined.
E_MIN_GEV, E_MAX_GEV = 0.1, 10_000.0


class GFlashError(Ml4epError, ValueError):
    """Invalid input to the GFlash generator (energies, angle, calorimeter or geometry)."""


# --------------------------------------------------------------------------------------------------------------------
# materials
# --------------------------------------------------------------------------------------------------------------------
def critical_energy(x0_mm: float, density: float, z: float, a: float) -> float:
    """Critical energy (MeV), Dovzhenko & Pomanskii: ``2.66 (X0 Z / A)^1.1`` with X0 in g/cm^2."""
    return 2.66 * (x0_mm / 10.0 * density * z / a) ** 1.1


@dataclass(frozen=True)
class Material:
    """A pure material: atomic number, mass number, density (g/cm^3) and radiation length (mm)."""

    name: str
    Z: float
    A: float
    density: float
    X0_mm: float

    @property
    def E_c(self) -> float:
        """Critical energy (MeV)."""
        return critical_energy(self.X0_mm, self.density, self.Z, self.A)

    @property
    def R_M_mm(self) -> float:
        """Moliere radius (mm): ``X0 21.2 MeV / E_c``."""
        return self.X0_mm * 21.2 / self.E_c


TUNGSTEN = Material("W", 74.0, 183.84, 19.3, 3.504)
SILICON = Material("Si", 14.0, 28.09, 2.33, 93.7)
#: Lead (PDG: Z 82, A 207.2, 11.35 g/cm^3, X0 5.612 mm).
LEAD = Material("Pb", 82.0, 207.2, 11.35, 5.612)
#: Polystyrene-based plastic scintillator, (C8H8)n: mass-weighted Z_eff 5.6 and A_eff 11.2, 1.032 g/cm^3,
#: X0 413.1 mm (PDG).
POLYSTYRENE = Material("scintillator", 5.6, 11.2, 1.032, 413.1)
#: Minimum ionisation loss (MeV cm^2/g, PDG) of the materials above, for MIP sampling fractions.
DEDX_MIN = {"W": 1.145, "Si": 1.664, "Pb": 1.122, "scintillator": 1.956}


@dataclass(frozen=True)
class Calorimeter:
    """Effective numbers of a sampling calorimeter and the generator's modelling choices.

    The physics numbers come from :meth:`from_layers` (or :meth:`par04_siw`). The choices: ``stochastic_term``
    (sqrt(GeV)) of the Gamma sampling fluctuation; ``sampling_fraction`` (visible / deposited energy, the stored
    energy is the visible energy divided by it); ``step_x0`` (the largest depth step); ``spot_weight_shape`` (Gamma
    shape of the random spot weights); ``spot_scale``/``spot_exponent`` (number of spots
    ``spot_scale ln(Z) E_GeV^spot_exponent``); ``fallback_layer_x0`` (depth of one layer in X0 for geometries without
    ``z_cell_mm``); ``min_step_fraction`` (steps with a smeared energy below this fraction of E_inc get no spots).
    """

    name: str
    Z_eff: float
    A_eff: float
    rho_eff: float  # g/cm^3
    X0_eff: float  # mm
    R_M_eff: float  # mm
    E_c_eff: float  # MeV
    F_s: float  # X0_eff / (d_passive + d_active)
    e_hat: float  # 1 / (1 + 0.007 (Z_passive - Z_active))
    layer_thickness_mm: float = 3.4  # Par04 readout layer (2 W/Si pairs); voxelisation uses the geometry's z_cell_mm
    sampling_fraction: float = 0.033
    stochastic_term: float = 0.13  # sqrt(GeV): sigma(E)/E = stochastic_term / sqrt(E / GeV)
    step_x0: float = 0.1
    spot_weight_shape: float = 2.0
    spot_scale: float = 93.0
    spot_exponent: float = 0.876
    fallback_layer_x0: float = 5.0
    min_step_fraction: float = 1e-7

    def __post_init__(self):
        for key in ("X0_eff", "R_M_eff", "E_c_eff", "F_s", "e_hat", "layer_thickness_mm", "sampling_fraction",
                    "stochastic_term", "step_x0", "spot_weight_shape", "spot_scale", "fallback_layer_x0", "Z_eff"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise GFlashError(f"calorimeter {self.name!r}: {key} must be a positive number, got {v!r}")
        if self.sampling_fraction > 1:
            raise GFlashError(f"calorimeter {self.name!r}: sampling_fraction must be <= 1, got {self.sampling_fraction}")

    @classmethod
    def from_layers(cls, passive: Material, d_passive_mm: float, active: Material, d_active_mm: float,
                    name: str = "", **choices) -> Calorimeter:
        """Effective material of alternating ``passive``/``active`` layers (Grindhammer-Peters sampling formulas)."""
        if d_passive_mm <= 0 or d_active_mm <= 0:
            raise GFlashError("layer thicknesses must be positive")
        mats, d = (passive, active), np.array([d_passive_mm, d_active_mm], dtype=np.float64)
        rho = np.array([m.density for m in mats])
        w = d * rho / np.sum(d * rho)
        rho_eff = float(np.sum(d * rho) / np.sum(d))
        x0 = np.array([m.X0_mm for m in mats])
        ec = np.array([m.E_c for m in mats])
        x0_eff = 1.0 / float(np.sum(w * rho_eff / (x0 * rho)))
        s = float(np.sum(w * ec / x0))
        return cls(name=name or f"{passive.name}/{active.name} {d_passive_mm}/{d_active_mm} mm",
                   Z_eff=float(np.sum(w * [m.Z for m in mats])), A_eff=float(np.sum(w * [m.A for m in mats])),
                   rho_eff=rho_eff, X0_eff=x0_eff, R_M_eff=21.2 / s, E_c_eff=x0_eff * s,
                   F_s=x0_eff / float(np.sum(d)), e_hat=1.0 / (1.0 + 0.007 * (passive.Z - active.Z)), **choices)

    @classmethod
    def par04_siw(cls, **choices) -> Calorimeter:
        """The Par04 SiW calorimeter of CaloChallenge datasets 2 and 3: 1.4 mm W + 0.3 mm Si, sampling fraction
        0.033, readout layers of 3.4 mm."""
        return cls.from_layers(TUNGSTEN, 1.4, SILICON, 0.3, name="Par04 SiW", **choices)

    @classmethod
    def pb_scintillator(cls, d_lead_mm: float = 2.0, d_scint_mm: float = 1.4, **choices) -> Calorimeter:
        """A lead / plastic-scintillator sampling calorimeter for the ds2/ds3 voxelisation: by default one 2.0 mm Pb
        + 1.4 mm scintillator pair per 3.4 mm readout layer (X0_eff 9.45 mm, R_M,eff 17.1 mm against Par04's 4.22 and
        9.48 mm: showers about twice as deep and 1.8 times as wide; ds2's 153 mm are 16 X0_eff, so high energies
        leak).

        ``sampling_fraction``: the MIP visible fraction ``d_s S_s / (d_s S_s + d_Pb S_Pb)`` with ``S = rho dE/dx_min``
        (:data:`DEDX_MIN`), 0.0999 by default. ``stochastic_term``: Par04's 0.13 sqrt(GeV) scaled by the sampling
        rule ``sigma / E ~ sqrt(d_active / f_mip)``, 0.161 by default. Both may be overridden in ``choices``.
        Stored energies equal the deposited ones when the geometry's ``sampling_fraction_applied`` equals
        ``sampling_fraction`` (ds2 and ds3 say 0.033, Par04's)."""
        if d_lead_mm <= 0 or d_scint_mm <= 0:
            raise GFlashError("layer thicknesses must be positive")
        vis = d_scint_mm * POLYSTYRENE.density * DEDX_MIN["scintillator"]
        f_mip = vis / (vis + d_lead_mm * LEAD.density * DEDX_MIN["Pb"])
        choices.setdefault("sampling_fraction", f_mip)
        choices.setdefault("stochastic_term", 0.13 * math.sqrt((d_scint_mm / f_mip) / (0.3 / 0.033)))
        choices.setdefault("layer_thickness_mm", d_lead_mm + d_scint_mm)
        return cls.from_layers(LEAD, d_lead_mm, POLYSTYRENE, d_scint_mm, name="Pb/scintillator", **choices)


# --------------------------------------------------------------------------------------------------------------------
# longitudinal and radial profiles
# --------------------------------------------------------------------------------------------------------------------
def longitudinal_parameters(e_mev, calorimeter: Calorimeter | None = None) -> dict:
    """Mean longitudinal parameters of showers of energy ``e_mev`` (scalar or array) in a sampling calorimeter.

    Returns (arrays shaped like ``e_mev``): ``T`` (mean shower maximum exp<ln T>, X0), ``alpha``, ``beta``
    (``(alpha - 1) / T``, 1/X0), ``T_mm``, ``T_hom``/``alpha_hom`` (homogeneous values), ``lnT``/``lnalpha`` (the
    means of the bivariate normal), ``sigma_lnT``, ``sigma_lnalpha``, ``rho`` and ``y = E / E_c``.
    """
    cal = calorimeter or Calorimeter.par04_siw()
    e = np.asarray(e_mev, dtype=np.float64)
    if np.any(~np.isfinite(e)) or np.any(e <= 0):
        raise GFlashError("longitudinal_parameters: energies must be positive and finite")
    lny = np.log(e / cal.E_c_eff)
    t_hom = lny - 0.812
    a_hom = 0.81 + (0.458 + 2.26 / cal.Z_eff) * lny
    t_sam = t_hom - 0.55 / cal.F_s - 0.69 * (1.0 - cal.e_hat)
    a_sam = a_hom - 0.476 / cal.F_s
    ln_t = np.maximum(np.log(np.maximum(t_sam, 1e-300)), math.log(0.1))
    ln_a = np.maximum(np.log(np.maximum(a_sam, 1e-300)), math.log(0.1))
    sig_t, sig_a = _capped_sigma(-2.5 + 1.25 * lny), _capped_sigma(-0.82 + 0.79 * lny)
    t_mean, a_mean = np.maximum(np.exp(ln_t), 1.0), np.maximum(np.exp(ln_a), 1.1)
    return {"T": t_mean, "alpha": a_mean, "beta": (a_mean - 1.0) / t_mean, "T_mm": t_mean * cal.X0_eff,
            "T_hom": t_hom, "alpha_hom": a_hom, "lnT": ln_t, "lnalpha": ln_a, "sigma_lnT": sig_t,
            "sigma_lnalpha": sig_a, "rho": 0.784 - 0.023 * lny, "y": e / cal.E_c_eff}


def _capped_sigma(denominator: np.ndarray) -> np.ndarray:
    """``1 / denominator`` capped at 0.5 (also where the denominator is not positive, i.e. at very low energy)."""
    d = np.asarray(denominator, dtype=np.float64)
    return np.where(d > 2.0, 1.0 / np.maximum(d, 2.0), 0.5)


def radial_parameters(tau, e_gev, calorimeter: Calorimeter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core radius R_C, tail radius R_T (Moliere radii) and core fraction p at reduced depth ``tau = t / T``,
    with the sampling-calorimeter corrections; arrays broadcast. R_C and R_T are floored at 1e-3, p clipped to [0, 1]."""
    cal = calorimeter
    tau = np.asarray(tau, dtype=np.float64)
    lne = np.log(np.asarray(e_gev, dtype=np.float64))
    z = cal.Z_eff
    one_e = 1.0 - cal.e_hat
    exp_tau = np.exp(-tau)
    r_c = (0.0251 + 0.00319 * lne) + (0.1162 - 0.000381 * z) * tau
    r_c = r_c - 0.0203 * one_e + 0.0397 * exp_tau / cal.F_s
    k1, k2, k3, k4 = 0.659 - 0.00309 * z, 0.645, -2.59, 0.3585 + 0.0412 * lne
    r_t = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    r_t = r_t - 0.14 * one_e - 0.495 * exp_tau / cal.F_s
    p1, p2, p3 = 2.632 - 0.00094 * z, 0.401 + 0.00187 * z, 1.313 - 0.0686 * lne
    x = (p2 - tau) / p3
    p = p1 * np.exp(x - np.exp(x))
    p = p + one_e * (0.348 - 0.642 * np.exp(-((tau - 1.0) ** 2)) / cal.F_s)
    return np.maximum(r_c, 1e-3), np.maximum(r_t, 1e-3), np.clip(p, 0.0, 1.0)


def radial_cdf(r, r_c, r_t, p):
    """Fraction of a slice's energy inside radius ``r`` (same unit as the radii) for the core + tail profile."""
    r2 = np.asarray(r, dtype=np.float64) ** 2
    return p * r2 / (r2 + r_c**2) + (1.0 - p) * r2 / (r2 + r_t**2)


def spot_count(e_mev, calorimeter: Calorimeter) -> np.ndarray:
    """Mean number of spots of a shower: ``spot_scale ln(Z_eff) E_GeV^spot_exponent`` (homogeneous GFlash form)."""
    cal = calorimeter
    return cal.spot_scale * math.log(cal.Z_eff) * (np.asarray(e_mev, dtype=np.float64) / 1000.0) ** cal.spot_exponent


# --------------------------------------------------------------------------------------------------------------------
# depth steps of a geometry
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class _Steps:
    edges_x0: np.ndarray  # (S + 1,) step boundaries in X0
    mid_x0: np.ndarray  # (S,)
    width_mm: np.ndarray  # (S,)
    lo_mm: np.ndarray  # (S,)
    layer: np.ndarray  # (S,) layer position of every step


def layer_depths_mm(geometry: Geometry, calorimeter: Calorimeter) -> np.ndarray:
    """Front and back faces (mm) of every layer: ``z_cell_mm`` per layer when the geometry gives it, else
    ``fallback_layer_x0`` radiation lengths per layer (equal depth per layer, e.g. CaloChallenge dataset 1)."""
    z = geometry.z_cell_mm
    thick = float(z) if z else calorimeter.fallback_layer_x0 * calorimeter.X0_eff
    if not (math.isfinite(thick) and thick > 0):
        raise GFlashError(f"geometry {geometry.name!r}: z_cell_mm must be positive, got {z!r}")
    return np.arange(geometry.n_layers + 1, dtype=np.float64) * thick


def _steps(geometry: Geometry, cal: Calorimeter) -> _Steps:
    faces = layer_depths_mm(geometry, cal)
    edges, layer = [], []
    for i in range(geometry.n_layers):
        k = max(1, math.ceil((faces[i + 1] - faces[i]) / cal.X0_eff / cal.step_x0 - 1e-9))
        edges.append(np.linspace(faces[i], faces[i + 1], k + 1)[:-1])
        layer.append(np.full(k, i))
    e_mm = np.concatenate(edges + [faces[-1:]])
    return _Steps(edges_x0=e_mm / cal.X0_eff, mid_x0=0.5 * (e_mm[1:] + e_mm[:-1]) / cal.X0_eff,
                  width_mm=np.diff(e_mm), lo_mm=e_mm[:-1], layer=np.concatenate(layer))


# --------------------------------------------------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------------------------------------------------
def _energy_sampler(energy, n: int):
    """A function ``(rng, start, stop) -> energies in GeV`` for the ``energy`` argument (see :func:`simulate`)."""
    def check(values, what):
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0 or np.any(~np.isfinite(v)) or np.any(v < E_MIN_GEV * (1 - 1e-9)) \
                or np.any(v > E_MAX_GEV * (1 + 1e-9)):
            raise GFlashError(f"energy: {what} must be finite and within the GFlash range {E_MIN_GEV}-{E_MAX_GEV:g} "
                              f"GeV (energies are in GeV), got min {np.min(v) if v.size else None}, "
                              f"max {np.max(v) if v.size else None}")
        return v

    if isinstance(energy, (int, float, np.floating, np.integer)):
        fixed = float(check([energy], "the fixed energy")[0])
        return lambda rng, a, b: np.full(b - a, fixed)
    if isinstance(energy, tuple) and len(energy) == 2 and not isinstance(energy[0], (tuple, list)):
        lo, hi = (float(x) for x in check(energy, "the range (lo, hi)"))
        if hi < lo:
            raise GFlashError(f"energy: range (lo, hi) needs lo <= hi, got ({lo}, {hi})")
        if lo == hi:
            return lambda rng, a, b: np.full(b - a, lo)
        llo, lhi = math.log(lo), math.log(hi)
        return lambda rng, a, b: np.exp(rng.uniform(llo, lhi, b - a))
    if isinstance(energy, np.ndarray) and energy.ndim in (1, 2) and energy.shape[0] == n and energy.size == n:
        given = check(energy.reshape(-1), "the per-shower array")
        return lambda rng, a, b: given[a:b]
    if isinstance(energy, (Sequence, np.ndarray)) and not isinstance(energy, (str, bytes)):
        values = check(np.asarray(energy, dtype=np.float64).reshape(-1), "the discrete energies")
        return lambda rng, a, b: values[rng.integers(0, len(values), b - a)]
    raise GFlashError(f"energy: expected (lo_GeV, hi_GeV), a number, a list of discrete energies (GeV) or an array "
                      f"of n energies (GeV), got {type(energy).__name__}")


def _angles(angle, n: int) -> np.ndarray | None:
    if angle is None:
        return None
    a = np.asarray(angle, dtype=np.float64).reshape(-1)
    if a.size == 1:
        a = np.full(n, a[0])
    if a.size != n or np.any(~np.isfinite(a)) or np.any(np.abs(a) >= 1.5):
        raise GFlashError(f"angle: expected one angle or {n} angles in radians with |angle| < 1.5, got shape "
                          f"{np.shape(angle)}")
    return a


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise GFlashError(f"n must be a non-negative integer, got {n!r}")
    return int(n)


def _seed_sequence(seed) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        if seed is not None and seed < 0:
            raise GFlashError(f"seed must be a non-negative integer, got {seed}")
        return np.random.SeedSequence(None if seed is None else int(seed))
    raise GFlashError(f"seed must be None, a non-negative integer or a numpy SeedSequence, got {type(seed).__name__}")


class _Binner:
    """Maps spots to voxels. Every (layer, alpha) row gets one extra "overflow" r bin for spots beyond the last r
    edge, so that a spot's index needs no mask; the overflow bins are dropped after the histogram."""

    def __init__(self, geometry: Geometry):
        lay = geometry.layers
        self.n_voxels = geometry.n_voxels
        self.n_r = np.array([la.n_r for la in lay], dtype=np.int64)
        self.n_alpha = np.array([la.n_alpha for la in lay], dtype=np.int64)
        self.r_max = np.array([la.r_edges[-1] for la in lay], dtype=np.float64)
        ext_sizes = self.n_alpha * (self.n_r + 1)
        self.ext_offsets = np.concatenate([[0], np.cumsum(ext_sizes)[:-1]]).astype(np.int64)
        self.n_ext = int(ext_sizes.sum())
        self.regular = geometry.regular
        e0 = np.asarray(lay[0].r_edges, dtype=np.float64)
        self.edges0 = e0
        self.uniform = self.regular and bool(np.allclose(np.diff(e0), e0[1], rtol=1e-12, atol=0))
        self.inv_dr = 1.0 / float(e0[1])
        # irregular layers: one sorted array of all edges, layer i shifted by i * shift
        self.shift = 2.0 * float(self.r_max.max()) + 1.0
        self.all_edges = np.concatenate([np.asarray(la.r_edges, float)[:-1] + i * self.shift
                                         for i, la in enumerate(lay)])
        self.first_bin = np.concatenate([[0], np.cumsum(self.n_r)[:-1]]).astype(np.int64)
        ext_layer = np.repeat(np.arange(len(lay)), ext_sizes)
        ext_pos = np.arange(self.n_ext) - self.ext_offsets[ext_layer]
        self.keep = np.flatnonzero(ext_pos % (self.n_r[ext_layer] + 1) != self.n_r[ext_layer])

    def r_bin(self, r: np.ndarray, layer: np.ndarray | None) -> np.ndarray:
        """r bin of every spot; ``n_r`` (the overflow bin) beyond the layer's last edge."""
        if self.regular:
            n_r = int(self.n_r[0])
            if self.uniform:
                return np.minimum(r * self.inv_dr, n_r).astype(np.int64)
            return np.searchsorted(self.edges0, r, side="right") - 1
        n_r = self.n_r[layer]
        inside = r < self.r_max[layer]
        rr = np.where(inside, r, 0.0) + layer * self.shift
        return np.where(inside, np.searchsorted(self.all_edges, rr, side="right") - 1 - self.first_bin[layer], n_r)

    def to_voxels(self, ext: np.ndarray, n: int) -> np.ndarray:
        """(n, V) voxel energies (float64) from the extended histogram (overflow bins dropped)."""
        out = np.empty((n, self.n_voxels), dtype=np.float64)
        self.to_voxels_into(ext, n, out)
        return out

    def to_voxels_into(self, ext: np.ndarray, n: int, dest: np.ndarray) -> None:
        """Writes the voxels of the extended histogram into ``dest`` (n, V), converting to its dtype."""
        if self.regular:
            n_r = int(self.n_r[0])
            dest.reshape(n, -1, n_r)[...] = ext.reshape(n, -1, n_r + 1)[:, :, :n_r]
        else:
            dest[...] = ext.reshape(n, self.n_ext)[:, self.keep]


def _alpha_bin(x: np.ndarray, y: np.ndarray, n_alpha) -> np.ndarray:
    """Alpha bin of points (x, y): ``floor((atan2(y, x) + pi) / (2 pi / n_alpha))``; bins cover [-pi, pi), so the
    direction alpha = +pi (y = +0, x < 0) wraps to bin 0 like -pi."""
    a_frac = (np.arctan2(y, x) + np.pi) * (1.0 / (2 * np.pi))
    return np.remainder((a_frac * n_alpha).astype(np.int64), n_alpha)


def voxelise(geometry, layer, x_mm, y_mm, energy, shower=None, n_showers: int = 1) -> np.ndarray:
    """Histogram deposits at (layer position, x, y in mm) into ``(n_showers, V)`` voxel energies (float64).

    Alpha is ``atan2(y, x)`` binned from -pi, r is ``hypot(x, y)`` binned by the layer's r edges; deposits beyond
    the last r edge are dropped (lateral leakage). ``shower`` gives each deposit's row (default 0). The generator
    bins its spots with the same rules."""
    geo = get_geometry(geometry)
    binner = _Binner(geo)
    layer = np.asarray(layer, dtype=np.int64).reshape(-1)
    x, y, e = (np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), layer.shape) for v in (x_mm, y_mm, energy))
    shower = np.zeros_like(layer) if shower is None else np.broadcast_to(np.asarray(shower, np.int64).reshape(-1),
                                                                          layer.shape)
    if np.any((layer < 0) | (layer >= geo.n_layers)):
        raise GFlashError(f"voxelise: layer positions must lie in 0..{geo.n_layers - 1} for {geo!r}")
    if np.any((shower < 0) | (shower >= n_showers)):
        raise GFlashError(f"voxelise: shower indices must lie in 0..{n_showers - 1}")
    a_bin = _alpha_bin(x, y, binner.n_alpha[layer])
    r_bin = binner.r_bin(np.hypot(x, y), None if binner.regular else layer)
    idx = shower * binner.n_ext + binner.ext_offsets[layer] + a_bin * (binner.n_r[layer] + 1) + r_bin
    return binner.to_voxels(np.bincount(idx, weights=e, minlength=n_showers * binner.n_ext), n_showers)


def _simulate_batch(e_mev: np.ndarray, theta: np.ndarray | None, rng: np.random.Generator, cal: Calorimeter,
                    steps: _Steps, binner: _Binner, scale_out: float) -> np.ndarray:
    """The extended histogram (n * n_ext float64, MeV, see :class:`_Binner`) of showers of energies ``e_mev`` (n,),
    before the threshold."""
    n, n_steps, n_ext = len(e_mev), len(steps.mid_x0), binner.n_ext
    par = longitudinal_parameters(e_mev, cal)
    # per-shower correlated fluctuations of (ln T, ln alpha)
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    rho = par["rho"]
    c1, c2 = np.sqrt((1 + rho) / 2) * z1, np.sqrt((1 - rho) / 2) * z2
    t_sh = np.maximum(np.exp(par["lnT"] + par["sigma_lnT"] * (c1 + c2)), 1.0)
    a_sh = np.maximum(np.exp(par["lnalpha"] + par["sigma_lnalpha"] * (c1 - c2)), 1.1)
    b_sh = (a_sh - 1.0) / t_sh
    # spot profile (sampling-calorimeter tuning)
    ts = t_sh * (0.813 + 0.0019 * cal.Z_eff)
    a_s = np.maximum(a_sh * (0.844 + 0.0026 * cal.Z_eff), 1.1)
    b_s = (a_s - 1.0) / ts
    # energy per step: E [P(alpha, beta t2) - P(alpha, beta t1)], then Gamma sampling fluctuation (GeV units)
    edges = steps.edges_x0[None, :]
    de = np.maximum(np.diff(gammainc(a_sh[:, None], b_sh[:, None] * edges), axis=1), 0.0) * (e_mev[:, None] / 1000.0)
    var = cal.stochastic_term ** 2
    de = rng.standard_gamma(de / var) * (var * 1000.0)  # MeV: mean de, variance stochastic_term^2 de (GeV^2)
    de_out = (de * cal.sampling_fraction) / scale_out  # the visible energy, divided by the applied sampling fraction
    dps = np.diff(gammainc(a_s[:, None], b_s[:, None] * edges), axis=1)
    keep = de_out > cal.min_step_fraction * e_mev[:, None]
    counts = np.where(keep, np.maximum(1, np.floor(spot_count(e_mev, cal)[:, None] * dps)), 0).astype(np.int64)
    # radial parameters per step (tau = t / T of the shower); the spots of a step split binomially into core / tail
    r_c, r_t, p = radial_parameters(steps.mid_x0[None, :] / t_sh[:, None], (e_mev / 1000.0)[:, None], cal)
    n_core = rng.binomial(counts, p)
    radius2 = np.concatenate([r_c.ravel(), r_t.ravel()]) * cal.R_M_eff  # index: population * n * S + step
    counts2 = np.concatenate([n_core.ravel(), (counts - n_core).ravel()])
    step_layer = np.broadcast_to(steps.layer[None, :], (n, n_steps)).ravel()
    base = np.arange(n, dtype=np.int64).repeat(n_steps) * n_ext + binner.ext_offsets[step_layer]
    base2 = np.concatenate([base, base])
    n_st = n * n_steps

    out = None
    per_shower = counts.sum(axis=1)
    start = 0
    while start < n:  # sub-batches bounded in spots (deterministic: depends only on this batch's content)
        stop = start + max(1, int(np.searchsorted(np.cumsum(per_shower[start:]), MAX_SPOTS, side="right")))
        sel = np.zeros(2 * n_st, dtype=bool)
        sel[start * n_steps:stop * n_steps] = True
        sel[n_st + start * n_steps:n_st + stop * n_steps] = True
        cnt2 = np.where(sel, counts2, 0)
        sid = np.repeat(np.arange(2 * n_st, dtype=np.int64), cnt2)  # population-and-step index of every spot
        m = len(sid)
        # weights: Gamma, renormalised to the step's (smeared) energy
        w = rng.standard_exponential(m) if cal.spot_weight_shape == 1.0 else rng.standard_gamma(cal.spot_weight_shape, m)
        wsum2 = np.bincount(sid, weights=w, minlength=2 * n_st)
        wsum = wsum2[:n_st] + wsum2[n_st:]
        factor = np.divide(de_out.ravel(), wsum, out=np.zeros(n_st), where=wsum > 0)
        e_spot = w * np.concatenate([factor, factor])[sid]
        # radius by inverse CDF of r^2 / (r^2 + R^2): r = R sqrt(v / (1 - v))
        v = rng.random(m)
        radius = radius2[sid] * np.sqrt(v / (1.0 - v))
        layer = None if binner.regular else np.concatenate([step_layer, step_layer])[sid]
        if theta is None:
            if binner.regular:
                a_bin = rng.integers(0, int(binner.n_alpha[0]), m)
            else:
                n_alpha = binner.n_alpha[layer]
                a_bin = np.minimum((rng.random(m) * n_alpha).astype(np.int64), n_alpha - 1)
        else:  # shift the spot by z tan(theta) along the "eta" (x) axis, z spread evenly inside its step
            first = np.cumsum(cnt2) - cnt2
            j = np.arange(m, dtype=np.int64) - first[sid]
            s_in = sid % n_steps
            z_mm = steps.lo_mm[s_in] + (j + 0.5) / cnt2[sid] * steps.width_mm[s_in]
            phi = rng.random(m) * (2 * np.pi) - np.pi
            x = radius * np.cos(phi) + z_mm * np.tan(theta[(sid % n_st) // n_steps])
            y = radius * np.sin(phi)
            radius = np.hypot(x, y)
            a_bin = _alpha_bin(x, y, binner.n_alpha[0] if binner.regular else binner.n_alpha[layer])
        n_r1 = binner.n_r[0] + 1 if binner.regular else binner.n_r[layer] + 1
        idx = base2[sid] + a_bin * n_r1 + binner.r_bin(radius, layer)
        if start == 0 and stop == n:
            out = np.bincount(idx, weights=e_spot, minlength=n * n_ext)
        else:
            if out is None:
                out = np.zeros(n * n_ext, dtype=np.float64)
            lo, hi = start * n_ext, stop * n_ext
            out[lo:hi] += np.bincount(idx - lo, weights=e_spot, minlength=hi - lo)
        start = stop
    return out


def _blocks(geometry, n, energy, seed, angle, calorimeter):
    """Validates the arguments and returns ``(geometry, n, blocks)``: ``blocks`` yields ``(b0, b1, e_mev, ext)`` per
    block of :data:`BLOCK` showers (``ext``: the extended float64 histogram of :class:`_Binner`)."""
    geo = get_geometry(geometry)
    cal = Calorimeter.par04_siw() if calorimeter is None else calorimeter
    if not isinstance(cal, Calorimeter):
        raise GFlashError(f"calorimeter must be a Calorimeter, got {type(cal).__name__}")
    n = _check_n(n)
    sample_energy = _energy_sampler(energy, n)
    theta = _angles(angle, n)
    root = _seed_sequence(seed)
    steps = _steps(geo, cal)
    binner = _Binner(geo)
    scale_out = float(geo.meta.get("sampling_fraction_applied", cal.sampling_fraction)) \
        if isinstance(geo.meta, dict) else cal.sampling_fraction
    log.debug("gflash: %d showers into %r, %d depth steps, seed entropy %s", n, geo, len(steps.mid_x0), root.entropy)

    def blocks():
        for b0 in range(0, n, BLOCK):
            b1 = min(n, b0 + BLOCK)
            seq = np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, b0 // BLOCK))
            rng = np.random.Generator(np.random.PCG64(seq))
            e_mev = np.asarray(sample_energy(rng, b0, b1), dtype=np.float64) * 1000.0
            ext = _simulate_batch(e_mev, None if theta is None else theta[b0:b1], rng, cal, steps, binner, scale_out)
            yield b0, b1, e_mev, ext

    return geo, n, binner, blocks()


def _store(binner: _Binner, ext: np.ndarray, dest: np.ndarray, threshold: float) -> None:
    """Writes the voxels of ``ext`` into the float32 ``dest`` (m, V) and zeroes those below the threshold (compared in
    the stored precision)."""
    binner.to_voxels_into(ext, len(dest), dest)
    np.copyto(dest, 0.0, where=dest < threshold)


def simulate_chunks(geometry, n: int, energy=(1.0, 1000.0), seed=None, angle=None,
                    calorimeter: Calorimeter | None = None, chunk_size: int = 2000
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Like :func:`simulate`, chunk by chunk: yields ``(incident_energies (m, 1), showers (m, V))`` float32 MeV with
    ``m <= chunk_size`` (fresh arrays per chunk). The concatenated chunks equal :func:`simulate`'s output for the same
    arguments. The arguments are checked when this is called, not at the first chunk."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise GFlashError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    geo, n, binner, blocks = _blocks(geometry, n, energy, seed, angle, calorimeter)

    def chunks():
        chunk_start, filled = 0, 0
        buf_e = buf_s = None
        for b0, b1, e_mev, ext in blocks:
            m = b1 - b0
            block = np.empty((m, geo.n_voxels), np.float32)
            _store(binner, ext, block, geo.threshold)
            pos = 0
            while pos < m:
                if buf_e is None:
                    size = min(int(chunk_size), n - chunk_start)
                    buf_e, buf_s, filled = np.empty((size, 1), np.float32), np.empty((size, geo.n_voxels), np.float32), 0
                take = min(len(buf_e) - filled, m - pos)
                buf_e[filled:filled + take, 0] = e_mev[pos:pos + take]
                buf_s[filled:filled + take] = block[pos:pos + take]
                filled += take
                pos += take
                if filled == len(buf_e):
                    yield buf_e, buf_s
                    chunk_start += filled
                    buf_e = buf_s = None

    return chunks()


def simulate(geometry, n: int, energy=(1.0, 1000.0), seed=None, angle=None, calorimeter: Calorimeter | None = None,
             chunk_size: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``n`` electromagnetic showers into ``geometry`` (a Geometry or a name such as ``"ds2"``).

    ``energy`` (GeV): ``(lo, hi)`` tuple, log-uniform (``lo == hi``: fixed); a number (fixed); a list (or any other
    sequence, or an array whose length is not ``n``) of discrete energies, each shower drawing one uniformly; or a
    NumPy array of ``n`` energies used as given. ``angle``: incidence angle(s) in radians (one, or ``n``); the shower
    centre moves by ``z tan(angle)`` along the "eta" axis (alpha = 0) at depth ``z``. ``seed``: an integer (or
    SeedSequence) gives identical output whatever ``chunk_size`` (which only matters to :func:`simulate_chunks`:
    here the output is written block by block into the result). Returns ``(incident_energies (n, 1), showers (n, V))``,
    float32, MeV; voxels below the geometry's threshold are 0.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise GFlashError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    geo, n, binner, blocks = _blocks(geometry, n, energy, seed, angle, calorimeter)
    e_out, s_out = np.empty((n, 1), np.float32), np.empty((n, geo.n_voxels), np.float32)
    for b0, b1, e_mev, ext in blocks:
        e_out[b0:b1, 0] = e_mev
        _store(binner, ext, s_out[b0:b1], geo.threshold)
    return e_out, s_out
