"""Calorimeter voxel binnings in the CaloChallenge convention.

A :class:`Geometry` is a list of layers, each with radial bin edges (mm, from 0) and a number of alpha bins
covering [-pi, pi). Voxels are flattened layer by layer (in increasing layer id), within a layer alpha-major
and r fastest: ``index = offset[layer] + i_alpha * n_r(layer) + i_r``. The four challenge binnings ship with
the package (``ds1-photons`` 368 voxels, ``ds1-pions`` 533, ``ds2`` 6480, ``ds3`` 40500); others come from a
small JSON or YAML file::

    {"name": "my-calo", "particle": "electron", "voxel_threshold_MeV": 0.01515, "z_cell_mm": 3.4,
     "layers": [{"id": 0, "r_edges_mm": [0, 4.65, 9.3], "n_alpha": 16}, ...]}

(``layers`` may also be a mapping ``{"0": {"r_edges_mm": [...], "n_alpha": 16}, ...}`` as in the shipped file;
a layer may repeat the previous one with ``{"repeat": 44}`` after it.)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources

import numpy as np

from ..errors import Ml4epError


class GeometryError(Ml4epError, ValueError):
    """A binning is unknown, or its file is unreadable or inconsistent."""


@dataclass(frozen=True)
class Layer:
    id: int
    r_edges: np.ndarray  # mm, increasing, from 0
    n_alpha: int

    @property
    def n_r(self) -> int:
        return len(self.r_edges) - 1

    @property
    def n_voxels(self) -> int:
        return self.n_r * self.n_alpha


@dataclass
class Geometry:
    name: str
    layers: list[Layer]
    particle: str = "electron"
    threshold: float = 0.0  # MeV: the readout threshold; voxels below it count as empty
    z_cell_mm: float | None = None  # thickness of one layer (uniform calorimeters such as ds2/ds3)
    energies: np.ndarray | None = None  # MeV: the discrete incident energies of the dataset, if any
    energy_range: tuple[float, float] | None = None  # MeV: the log-uniform range of the dataset, if any
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.layers:
            raise GeometryError(f"geometry {self.name!r} has no layers")
        for lay in self.layers:
            e = np.asarray(lay.r_edges, dtype=np.float64)
            if e.ndim != 1 or len(e) < 2 or e[0] != 0 or np.any(np.diff(e) <= 0):
                raise GeometryError(f"geometry {self.name!r}, layer {lay.id}: r edges must start at 0 and "
                                    f"increase, got {list(e)}")
            if int(lay.n_alpha) < 1:
                raise GeometryError(f"geometry {self.name!r}, layer {lay.id}: n_alpha must be >= 1")
        ids = [lay.id for lay in self.layers]
        if sorted(set(ids)) != ids:
            raise GeometryError(f"geometry {self.name!r}: layer ids must increase, got {ids}")

    # -- sizes and offsets -------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @cached_property
    def offsets(self) -> np.ndarray:
        """Index of every layer's first voxel, plus the total: shape ``(n_layers + 1,)``."""
        return np.concatenate([[0], np.cumsum([lay.n_voxels for lay in self.layers])]).astype(np.int64)

    @property
    def n_voxels(self) -> int:
        return int(self.offsets[-1])

    @property
    def layer_ids(self) -> list[int]:
        return [lay.id for lay in self.layers]

    @property
    def alpha_layers(self) -> list[int]:
        """Positions (0-based, in ``layers``) of the layers binned in alpha: where eta/phi centres mean something."""
        return [i for i, lay in enumerate(self.layers) if lay.n_alpha > 1]

    @property
    def regular(self) -> bool:
        """Every layer has the same r edges and alpha bins (ds2, ds3): showers reshape to (layers, alpha, r)."""
        first = self.layers[0]
        return all(lay.n_alpha == first.n_alpha and np.array_equal(lay.r_edges, first.r_edges) for lay in self.layers)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_layers, n_alpha, n_r)`` of a regular geometry."""
        if not self.regular:
            raise GeometryError(f"geometry {self.name!r} has layers of different binnings: no 3-D shape")
        return self.n_layers, self.layers[0].n_alpha, self.layers[0].n_r

    # -- voxel <-> (layer, alpha, r) -----------------------------------------------------------------
    def voxel(self, layer, alpha, r) -> np.ndarray:
        """Flat voxel index of (layer position, alpha bin, r bin); arrays broadcast."""
        layer, alpha, r = (np.asarray(v, dtype=np.int64) for v in (layer, alpha, r))
        n_r = self._per_layer("n_r")[layer]
        n_a = self._per_layer("n_alpha")[layer]
        if np.any((alpha < 0) | (alpha >= n_a) | (r < 0) | (r >= n_r)):
            raise GeometryError(f"geometry {self.name!r}: alpha or r bin out of range")
        return self.offsets[layer] + alpha * n_r + r

    def unravel(self, index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(layer position, alpha bin, r bin) of flat voxel indices."""
        index = np.asarray(index, dtype=np.int64)
        if np.any((index < 0) | (index >= self.n_voxels)):
            raise GeometryError(f"geometry {self.name!r}: voxel index outside 0..{self.n_voxels - 1}")
        return self.voxel_layer[index], self.voxel_alpha[index], self.voxel_r[index]

    def _per_layer(self, attr: str) -> np.ndarray:
        return np.array([getattr(lay, attr) for lay in self.layers], dtype=np.int64)

    @cached_property
    def voxel_layer(self) -> np.ndarray:
        """Layer position of every voxel."""
        return np.repeat(np.arange(self.n_layers), [lay.n_voxels for lay in self.layers])

    @cached_property
    def voxel_alpha(self) -> np.ndarray:
        return np.concatenate([np.repeat(np.arange(lay.n_alpha), lay.n_r) for lay in self.layers])

    @cached_property
    def voxel_r(self) -> np.ndarray:
        return np.concatenate([np.tile(np.arange(lay.n_r), lay.n_alpha) for lay in self.layers])

    # -- cell centres --------------------------------------------------------------------------------
    @cached_property
    def r_centres(self) -> np.ndarray:
        """Radial bin midpoint of every voxel (mm)."""
        return np.concatenate([np.tile(0.5 * (lay.r_edges[1:] + lay.r_edges[:-1]), lay.n_alpha)
                               for lay in self.layers])

    @cached_property
    def alpha_centres(self) -> np.ndarray:
        """Alpha bin centre of every voxel: ``-pi + (j + 1/2) 2 pi / n_alpha`` (0 for unbinned layers)."""
        out = []
        for lay in self.layers:
            c = -np.pi + (np.arange(lay.n_alpha) + 0.5) * 2 * np.pi / lay.n_alpha if lay.n_alpha > 1 \
                else np.zeros(1)
            out.append(np.repeat(c, lay.n_r))
        return np.concatenate(out)

    @cached_property
    def eta_centres(self) -> np.ndarray:
        """The challenge's "eta" axis of every voxel: ``r_mid cos(alpha)`` (mm)."""
        return self.r_centres * np.cos(self.alpha_centres)

    @cached_property
    def phi_centres(self) -> np.ndarray:
        """The challenge's "phi" axis of every voxel: ``r_mid sin(alpha)`` (mm)."""
        return self.r_centres * np.sin(self.alpha_centres)

    # -- other layouts -------------------------------------------------------------------------------
    def from_par04(self, mesh) -> np.ndarray:
        """Showers from the Par04 mesh order ``(N, r, phi, z)`` to the flat CaloChallenge order."""
        n_l, n_a, n_r = self.shape
        mesh = np.asarray(mesh)
        if mesh.ndim != 4 or mesh.shape[1:] != (n_r, n_a, n_l):
            raise GeometryError(f"geometry {self.name!r}: a Par04 mesh must have shape (N, {n_r}, {n_a}, {n_l}), "
                                f"got {mesh.shape}")
        return np.ascontiguousarray(np.transpose(mesh, (0, 3, 2, 1))).reshape(len(mesh), -1)

    def to_par04(self, showers) -> np.ndarray:
        """Flat CaloChallenge showers to the Par04 mesh order ``(N, r, phi, z)``."""
        n_l, n_a, n_r = self.shape
        showers = np.asarray(showers)
        return np.ascontiguousarray(np.transpose(showers.reshape(len(showers), n_l, n_a, n_r), (0, 3, 2, 1)))

    def layer_slices(self) -> list[slice]:
        return [slice(int(a), int(b)) for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def __repr__(self) -> str:
        return f"Geometry({self.name!r}, {self.n_layers} layers, {self.n_voxels} voxels)"


BUILTIN = ("ds1-photons", "ds1-pions", "ds2", "ds3")
_ALIASES = {"1-photons": "ds1-photons", "ds1-photon": "ds1-photons", "1-pions": "ds1-pions", "ds1-pion": "ds1-pions",
            "2": "ds2", "3": "ds3", "dataset_2": "ds2", "dataset_3": "ds3"}


def _from_dict(name: str, d: dict, source: str) -> Geometry:
    layers_in = d.get("layers")
    if layers_in is None:
        raise GeometryError(f"{source}: no 'layers'")
    items = list(layers_in.items()) if isinstance(layers_in, dict) else \
        [(str(x.get("id", i)) if isinstance(x, dict) else str(i), x) for i, x in enumerate(layers_in)]
    layers: list[Layer] = []
    try:
        for key, spec in items:
            if "repeat" in spec:
                if not layers:
                    raise GeometryError(f"{source}: 'repeat' before any layer")
                for _ in range(int(spec["repeat"])):
                    prev = layers[-1]
                    layers.append(Layer(prev.id + 1, prev.r_edges, prev.n_alpha))
                continue
            edges = np.asarray(spec["r_edges_mm"] if "r_edges_mm" in spec else spec["r_edges"], dtype=np.float64)
            if edges.size < 2:  # an empty layer ("0" in the challenge's XML): no voxels, not listed
                continue
            layers.append(Layer(int(spec.get("id", key)), edges, int(spec.get("n_alpha", 1))))
    except (KeyError, TypeError, ValueError) as exc:
        raise GeometryError(f"{source}: malformed layer ({type(exc).__name__}: {exc})") from None
    geo = Geometry(name=name, layers=layers, particle=d.get("particle", "electron"),
                   threshold=float(d.get("voxel_threshold_MeV", 0.0)), z_cell_mm=d.get("z_cell_mm"),
                   energies=np.asarray(d["incident_energies_MeV"], float) if "incident_energies_MeV" in d else None,
                   energy_range=tuple(d["incident_energy_range_MeV"]) if "incident_energy_range_MeV" in d else None,
                   meta={k: v for k, v in d.items() if k not in ("layers",)})
    if "n_voxels" in d and int(d["n_voxels"]) != geo.n_voxels:
        raise GeometryError(f"{source}: the layers give {geo.n_voxels} voxels, the file says {d['n_voxels']}")
    return geo


def _builtin_table() -> dict:
    with resources.files("ml4ep.fastsim").joinpath("binnings.json").open() as f:
        return json.load(f)["datasets"]


def get(spec) -> Geometry:
    """A :class:`Geometry`: one of :data:`BUILTIN` (``ds1-photons``, ``ds1-pions``, ``ds2``, ``ds3``), a path
    to a JSON or YAML binning file, a dict in that format, or a Geometry (returned as is)."""
    if isinstance(spec, Geometry):
        return spec
    if isinstance(spec, dict):
        return _from_dict(spec.get("name", "custom"), spec, "geometry dict")
    s = os.fspath(spec)
    key = _ALIASES.get(s.lower(), s.lower())
    if key in BUILTIN:
        return _from_dict(key, _builtin_table()[key], f"built-in binning {key}")
    if not os.path.exists(s):
        raise GeometryError(f"unknown geometry {s!r}: not one of {', '.join(BUILTIN)} and not a file")
    try:
        with open(s) as f:
            text = f.read()
    except OSError as exc:
        raise GeometryError(f"{s}: cannot read the binning file ({exc.strerror})") from None
    if s.endswith((".yaml", ".yml")):
        from .._optional import require

        yaml = require("yaml", "fastsim", "YAML binning files")
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GeometryError(f"{s}: not valid YAML ({exc})") from None
    else:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GeometryError(f"{s}: not valid JSON ({exc})") from None
    if not isinstance(d, dict):
        raise GeometryError(f"{s}: a binning file holds a mapping with 'layers'")
    name = d.get("name") or os.path.splitext(os.path.basename(s))[0]
    return _from_dict(name, d, s)
