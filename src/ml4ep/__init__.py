"""ml4ep: machine learning for experimental particle physics.

Sub-packages, each imported only when used so that ``import ml4ep`` stays cheap (``ml4ep.infer``, ``ml4ep.bdt`` and
``ml4ep.data`` load on first attribute access; ``ml4ep.fastsim`` and ``ml4ep.bench`` with ``import ml4ep.fastsim``,
``import ml4ep.bench``):

- ``ml4ep.infer``: ONNX models compiled into standalone C++ inference code (``<name>.hpp`` + ``<name>.bin``, C++17
  and a CBLAS only), run from Python through a small extension module; ``ml4ep compile``, ``check``, ``operators``
  (docs/architecture.md);
- ``ml4ep.bdt``: boosted decision trees and random forests from XGBoost, LightGBM, scikit-learn, TMVA and ONNX-ML in
  one forest IR, evaluated with NumPy or as a generated C++ header; ``ml4ep bdt compile`` (docs/bdt.md);
- ``ml4ep.data``: shuffled batches from ROOT, HDF5 and Parquet files larger than memory, as NumPy arrays, PyTorch
  tensors, a ``tf.data.Dataset`` or JAX arrays; ``ml4ep data inspect`` (docs/data.md);
- ``ml4ep.fastsim``: fast calorimeter simulation in the CaloChallenge format: a parameterised (GFlash-type) shower
  generator, two generative models (a Par04-style VAE, a CaloDiT-style flow-matching transformer), every
  CaloChallenge metric, and a C++ fast-simulation hook around the compiled models; ``ml4ep fastsim ...``
  (docs/fastsim.md);
- ``ml4ep.root``: compiled models and BDTs as ROOT RDataFrame columns (``ml4ep.root.define``; docs/root.md);
- ``ml4ep.bench``: ``ml4ep bench``, the CPU time and memory of HEP models across inference engines (ml4ep, SOFIE,
  ONNX Runtime, PyTorch, torch.compile, JAX/XLA), and the helpers the ``benchmarks/`` scripts share (docs/bench.md).

Beside them: ``ml4ep.cli`` (the ``ml4ep`` command), ``ml4ep.errors`` (every error a user can trigger is an
``Ml4epError``), ``ml4ep._optional`` (imports of optional dependencies whose error names the extra to install) and
``ml4ep._native`` (internal: the compiler call, the target ISA and the build cache, the escaper of names in generated
C++ and the filler of the C++ template files, shared by infer, bdt, the fast-sim hook and the bench's C++ programs).
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
