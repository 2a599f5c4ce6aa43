"""ml4ep: machine learning for experimental particle physics.

Sub-packages are imported lazily so that ``import ml4ep`` stays cheap:
``ml4ep.infer`` compiles ONNX models into standalone C++ inference code;
``ml4ep.data`` streams shuffled batches from ROOT, HDF5 and Parquet files.
"""

from __future__ import annotations

import importlib
import logging

__version__ = "0.1.0"
__all__ = ["__version__", "bdt", "data", "infer"]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    if name in {"bdt", "data", "infer"}:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'ml4ep' has no attribute {name!r}")
