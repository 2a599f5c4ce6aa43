"""ml4ep.fastsim: fast calorimeter simulation in the CaloChallenge format (docs/fastsim.md).

>>> from ml4ep.fastsim import geometry, io, gflash, features, metrics
>>> geo = geometry.get("ds2")                                  # ds1-photons, ds1-pions, ds2, ds3 or a binning file
>>> e, s = gflash.simulate(geo, 1000, energy=(1, 1000), seed=1)  # parameterised showers, MeV
>>> io.write("showers.h5", e, s, geometry=geo)                 # CaloChallenge HDF5
>>> from ml4ep.fastsim.evaluate import evaluate                # every CaloChallenge metric, with plots
"""

from __future__ import annotations

from .geometry import BUILTIN, Geometry, GeometryError, Layer, get

__all__ = ["BUILTIN", "Geometry", "GeometryError", "Layer", "get"]
