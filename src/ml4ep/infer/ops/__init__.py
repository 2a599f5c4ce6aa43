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
FAMILIES = ["elementwise", "gemm", "conv", "pool", "normalization", "reduce", "resize", "shape_ops", "softmax"]


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


def supported() -> list[str]:
    _ensure_loaded()
    return sorted(k for k, v in OPS.items() if v.emit is not None or v.fold is not None)
