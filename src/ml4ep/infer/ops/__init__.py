"""Operator registry.

Each operator family lives in one file of this package and registers, per ONNX op type, the same three
steps: ``check`` (read attributes; say why a variant is unsupported), ``infer`` (resolve output dtypes and
shapes, symbolic dimensions included) and ``emit`` (print the C++ code of one node). ``fold`` evaluates the
node on constant inputs with NumPy (object arrays of symbolic dimensions included) for constant folding;
ops without it fold through ``onnx.reference`` when all inputs are numeric constants.

The same ``register(...)`` call states the facts the passes need about the operator; the passes keep no
lists of op names of their own. An op that states nothing gets the safe default:

* ``const_inputs``: inputs whose values the kernel reads at compile time (a shape, axes, a size); a symbolic
  value there stays a compile-time value instead of becoming a run-time tensor (passes/fold.py). Default: none.
* ``shape_inputs``: inputs that are shapes or sizes, not data: the batch size may appear in their value without
  making the model batch-inseparable (passes/batching.py). Default: the ``const_inputs``; an op whose
  compile-time inputs are values or axes (Trilu's ``k``, the reductions' axes) states ``shape_inputs=()``.
* ``batch``: how the op treats the batch axis, a rule ``(node, g, ins, outs, in_rank, out_rank) -> bool``
  (see :mod:`.batch_rules`: the generic rules live there, op-specific ones next to their op). Default:
  None, not batch-separable: a model with the op is never run in batch chunks.
* ``view``: the first output is the first input's data unchanged, so memory planning gives both one storage
  (passes/memory.py). ``"same"`` for the same tensor (Identity, inference Dropout); ``"reshape"`` for the
  row-major reinterpretation under another shape (Reshape, Flatten, Squeeze, Unsqueeze), which activation
  fusion may also move an elementwise activation through (passes/fusion.py). Default: None, a new tensor.
* ``cuda``: the op's code for ``device="cuda"`` (generated CUDA; the same source built by g++ is ``"cuda-host"``):
  ``True`` when ``emit`` itself writes code that runs there (its parallel loops through ``cg.par_for``, copies
  through ``cg.copy``, nothing host-only inside a loop body; docs/cuda.md), or an emit function of its own where
  the GPU code differs (cuBLAS products, say). ``cuda_check`` ``(node, graph) -> reason | None`` refuses the
  variants the CUDA code lacks. Default: None, no CUDA code: ``mi.check(model, device="cuda")`` lists the op.

docs/adding_an_operator.md walks through adding an operator.
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
# (node, graph, input batch axes, output batch axes, input ranks, output ranks) -> separable; see batch_rules
BatchRule = Callable[["Node", "Graph", list, list, list, list], bool]
VIEWS = (None, "same", "reshape")


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
    # how the op treats the batch axis (batch_rules); None: not batch-separable
    batch: BatchRule | None = None
    # None, "same" (output 0 is input 0) or "reshape" (input 0's data under another shape): see the docstring
    view: str | None = None
    # indices of inputs that are shapes or sizes, not data (the batch size may be their value); None: const_inputs
    shape_inputs: tuple[int, ...] | None = None
    # the CUDA code: True (emit writes it), an emit function of its own, or None (none)
    cuda: EmitFn | bool | None = None
    # the variants the CUDA code refuses: (node, graph) -> reason or None
    cuda_check: CheckFn | None = None

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise ValueError(f"{self.name}: view must be one of {VIEWS}, not {self.view!r}")
        self.const_inputs = tuple(self.const_inputs)
        self.shape_inputs = self.const_inputs if self.shape_inputs is None else tuple(self.shape_inputs)


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
    batch: BatchRule | None = None,
    view: str | None = None,
    shape_inputs: tuple[int, ...] | None = None,
    cuda: EmitFn | bool | None = None,
    cuda_check: CheckFn | None = None,
) -> None:
    """Register ``names`` with their steps and facts (see the module docstring for the facts' defaults)."""
    for n in names:
        OPS[n] = OpDef(n, infer, emit, fold, check, workspace, const_inputs, batch, view, shape_inputs, cuda,
                       cuda_check)


def cuda_emitter(op: OpDef) -> EmitFn | None:
    """The function that prints ``op``'s code for device="cuda" (None: the op has none)."""
    if op.cuda is True:
        return op.emit
    return op.cuda or None


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
