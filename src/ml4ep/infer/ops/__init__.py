"""Operator registry.

Each operator family lives in one file of this package and registers, per ONNX op type, the same three
steps: ``check`` (read attributes; say why a variant is unsupported), ``infer`` (resolve output dtypes and
shapes, symbolic dimensions included) and ``emit`` (print the C++ code of one node). ``fold`` evaluates the
node on constant inputs with NumPy (object arrays of symbolic dimensions included) for constant folding;
ops without it fold through ``onnx.reference`` when all inputs are numeric constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

InferFn = Callable[["Node", "Graph"], list[tuple[Any, tuple]]]
EmitFn = Callable[["Node", "Emitter"], str]
FoldFn = Callable[["Node", list[np.ndarray]], list[np.ndarray]]
CheckFn = Callable[["Node", "Graph"], "str | None"]
WorkspaceFn = Callable[["Node", "Graph"], list[tuple[Any, Any]]]


@dataclass
class OpDef:
    name: str
    infer: InferFn
    emit: EmitFn | None
    fold: FoldFn | None = None
    check: CheckFn | None = None
    workspace: WorkspaceFn | None = None
    # indices of inputs whose values must be known at compile time (shape arguments and the like)
    const_inputs: tuple[int, ...] = ()


OPS: dict[str, OpDef] = {}
FAMILIES = [
    "elementwise", "gemm", "conv", "pool", "normalization", "reduce", "resize", "shape_ops", "softmax",
    "attention", "indexing", "recurrent", "quantize", "einsum", "dynamic", "control", "image", "spectral",
    "detection", "linalg",
]


def register(
    *names: str,
    infer: InferFn,
    emit: EmitFn | None,
    fold: FoldFn | None = None,
    check: CheckFn | None = None,
    workspace: WorkspaceFn | None = None,
    const_inputs: tuple[int, ...] = (),
) -> None:
    for n in names:
        OPS[n] = OpDef(n, infer, emit, fold, check, workspace, const_inputs)


def _load_all() -> None:
    # one module per operator family; importing registers the ops
    import importlib

    for family in FAMILIES:
        importlib.import_module(f"{__name__}.{family}")


_loaded = False


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        _load_all()


def get(op_type: str) -> OpDef | None:
    _ensure_loaded()
    return OPS.get(op_type)


# operators with a kernel that refuse (or get wrong) some variant the ONNX node tests exercise: what is missing.
# They are not claimed by ``supported()``; benchmarks/onnx_conformance.py checks both lists against the tests.
PARTIAL: dict[str, str] = {
    "Attention": "bfloat16 results differ from the ONNX reference by one bfloat16 step (the reference rounds every "
                 "intermediate to bfloat16; ml4ep computes in float32 and rounds once)",
    "BatchNormalization": "training_mode=1 (batch statistics and running-mean outputs) is refused",
    "DFT": "inverse transforms differ by 2e-7 from the reference data, whose float32 FFT leaves rounding noise "
           "where the exact value is 0 (the tests allow 1e-7)",
    "Dropout": "training mode with a ratio above 0 (random masks) is refused",
    "Equal": "string tensors are not supported",
    "Identity": "sequence and optional values are not supported",
    "If": "sequence and optional outputs are not supported; branches must give outputs of one shape",
    "Loop": "sequence and optional values, Slice bounds computed from the iteration number inside the body, "
            "and scan outputs of a loop whose trip count is computed from data are not supported",
    "MaxPool": "the second output (Indices) is refused",
    "Scan": "the opset-8 form (with a batch axis) is not supported",
}


def supported() -> list[str]:
    """Operators with a kernel for every variant (see ``PARTIAL`` for the others)."""
    _ensure_loaded()
    return sorted(k for k, v in OPS.items() if (v.emit is not None or v.fold is not None) and k not in PARTIAL)


def partial() -> dict[str, str]:
    """Operators with a kernel that refuses some variants: what is missing."""
    _ensure_loaded()
    return {k: PARTIAL[k] for k in sorted(PARTIAL) if k in OPS}
