"""Batch chunking: run a batch-separable model over chunks of the batch, so its intermediates stay in cache.

A model is *batch-separable* when every sample of its outputs depends only on the same sample of its batched
inputs. Then ``infer`` on N samples equals ``infer`` on consecutive chunks of them, and the generated ``infer``
runs the graph chunk by chunk: a chunk's intermediates fit in the core's cache instead of streaming through
memory (a ParticleNet's edge features are 2.6 MB per jet, a transformer layer's activations 1.2 MB per jet),
and the workspace holds one chunk instead of the whole batch.

:func:`batch_layout` decides it, conservatively: the batch is the symbol at axis 0 of the first output (a plain
symbol, e.g. ``N``); every tensor holds it at most once, as a plain dimension (never ``2N`` or ``N*L``, nor in a
derived symbol), batched inputs and every output hold it at axis 0, and every node is an operator known not to
mix samples, checked for the axis it works on (a reduction, softmax, concatenation, gather or slice along the
batch axis, a contraction over it, a transpose or reshape that moves it into another dimension all stop it).
A graph with anything else (an unknown operator, control flow, data-dependent sizes, the batch size used as a
value) keeps the plain ``infer``.

The chunk size is chosen in the generated code from the workspace bytes per sample: as many samples as fit in
``ML4EP_CHUNK_BYTES`` (default 1 MiB, about half the L2 cache of current x86 cores), at least one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dims as D
from ..graph import Graph, Node

# operators that act element by element (with NumPy broadcasting) on their inputs
_ELEMENTWISE = frozenset(
    "Add Sub Mul Div Pow Mod Max Min Sum Mean Relu LeakyRelu PRelu Elu Selu Celu Sigmoid HardSigmoid HardSwish Tanh "
    "Softplus Softsign Mish Gelu Erf Exp Log Sqrt Reciprocal Neg Abs Sign Floor Ceil Round Cos Sin Tan Acos Asin "
    "Atan Cosh Sinh Tanh Asinh Acosh Atanh Clip Cast CastLike Identity Where Equal Less LessOrEqual Greater "
    "GreaterOrEqual Not And Or Xor IsNaN IsInf BitShift BitwiseAnd BitwiseOr BitwiseXor BitwiseNot Shrink "
    "ThresholdedRelu".split())
# row-major reinterpretations of the same data
_RESHAPES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})
# operators on (batch, channel, spatial...) tensors that treat each sample alone
_NCHW = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool",
                   "GlobalMaxPool", "GlobalLpPool", "InstanceNormalization", "BatchNormalization", "LRN"})
# inputs that are shapes or sizes, not data: a symbolic value (the batch size) there is fine
_SHAPE_INPUTS = {"Reshape": {1}, "Expand": {1}, "ConstantOfShape": {0}, "Squeeze": {1}, "Unsqueeze": {1},
                 "TopK": {1}, "Slice": {1, 2, 3, 4}, "Split": {1}}


@dataclass(frozen=True)
class BatchLayout:
    """How to chunk a separable model: the batch symbol, and per graph input whether it is batched (axis 0)."""

    symbol: str
    batched_inputs: tuple[bool, ...]


class _NotSeparable(Exception):
    pass


def _is_batch(d, sym: str) -> bool:
    return isinstance(d, D.Dim) and d.coeff == 1 and d.syms == ((sym, 1),)


def _involves(d, sym: str, tainted: set[str]) -> bool:
    return isinstance(d, D.Dim) and any(s == sym or s in tainted for s, _ in d.syms)


def batch_layout(g: Graph) -> BatchLayout | None:
    """The chunking layout of ``g``, or None when ``g`` is not (provably) batch-separable."""
    if not g.outputs or g.derived.runtime:
        return None
    first = g.t(g.outputs[0]).shape
    if not first or not isinstance(first[0], D.Dim) or first[0].coeff != 1 or len(first[0].syms) != 1 \
            or first[0].syms[0][1] != 1:
        return None
    sym = first[0].syms[0][0]
    # derived symbols defined from the batch (N + 1, ...) make a dimension a function of it
    tainted = {name for name, poly in g.derived.defs.items() if any(sym in dict(m) for m in poly)}
    try:
        axes = {name: _axis(t.shape, sym, tainted) for name, t in g.tensors.items() if not t.is_const}
        for name, t in g.tensors.items():
            if t.is_const and any(_involves(d, sym, tainted) for d in t.shape):
                raise _NotSeparable(name)
        if any(axes.get(o) != 0 for o in g.outputs):
            return None
        batched = []
        for i in g.inputs:
            if axes[i] not in (None, 0):
                return None
            batched.append(axes[i] == 0)
        for node in g.nodes:
            _check_node(node, g, axes, sym, tainted)
    except _NotSeparable:
        return None
    return BatchLayout(sym, tuple(batched))


def _axis(shape: tuple, sym: str, tainted: set[str]) -> int | None:
    found = [k for k, d in enumerate(shape) if _involves(d, sym, tainted)]
    if not found:
        return None
    if len(found) > 1 or not _is_batch(shape[found[0]], sym):
        raise _NotSeparable(shape)
    return found[0]


def _symbolic_value(v) -> bool:
    return v is not None and np.asarray(v).dtype == object


def _check_node(node: Node, g: Graph, axes: dict, sym: str, tainted: set[str]) -> None:
    if node.subgraphs:
        raise _NotSeparable(node.name)
    op = node.op_type
    shape_inputs = _SHAPE_INPUTS.get(op, set())
    for k, name in enumerate(node.inputs):
        if name and g.tensors[name].is_const and k not in shape_inputs and _symbolic_value(g.tensors[name].value):
            raise _NotSeparable(f"{node.name}: the batch size used as a value")
    ins = [axes.get(i) if i else None for i in node.inputs]
    outs = [axes.get(o) if o else None for o in node.outputs]
    in_rank = [g.t(i).rank if i else 0 for i in node.inputs]
    out_rank = [g.t(o).rank if o else 0 for o in node.outputs]
    batched_in = [a for a in ins if a is not None]
    if not batched_in and all(a is None for a in outs) and op != "ConstantOfShape":
        return  # nothing batched: the same for every sample
    if batched_in and any(a is None for o, a in zip(node.outputs, outs) if o):
        # an output without the batch computed from batched inputs depends on particular samples
        raise _NotSeparable(f"{node.name}: {op} drops the batch")
    rule = _RULES.get(op)
    if rule is None:
        if op in _ELEMENTWISE or op == "Expand":
            rule = _broadcast
        elif op in _RESHAPES:
            rule = _reshape
        elif op in _NCHW:
            rule = _nchw
        elif op.startswith("Reduce"):
            rule = _reduce
        else:
            raise _NotSeparable(f"{node.name}: {op}")
    if not rule(node, g, ins, outs, in_rank, out_rank):
        raise _NotSeparable(f"{node.name}: {op} along the batch")


# ------------------------------------------------------------------------------------------------------
# one rule per kind of operator: (node, graph, input axes, output axes, input ranks, output ranks) -> ok
# ------------------------------------------------------------------------------------------------------
def _aligned(a: int | None, rank: int, out_axis: int, out_rank: int) -> bool:
    """Numpy broadcasting aligns shapes on the right: the batch of an input lands on the output's batch."""
    return a is None or rank - a == out_rank - out_axis


def _broadcast(node, g, ins, outs, in_rank, out_rank) -> bool:
    o = outs[0]
    if o is None:
        return False
    data = range(1) if node.op_type == "Expand" else range(len(ins))
    return all(_aligned(ins[k], in_rank[k], o, out_rank[0]) for k in data) and \
        all(a in (None, o) for a in outs)


def _prefix(shape, axis) -> object:
    return D.prod(shape[:axis])


def _reshape(node, g, ins, outs, in_rank, out_rank) -> bool:
    a, o = ins[0], outs[0]
    if a is None or o is None:
        return False
    si, so = g.t(node.inputs[0]).shape, g.t(node.outputs[0]).shape
    # the same count of elements before the batch dimension (hence after it): each sample keeps its block
    return D.is_static(_prefix(si, a)) and D.is_static(_prefix(so, o)) and int(_prefix(si, a)) == int(_prefix(so, o))


def _nchw(node, g, ins, outs, in_rank, out_rank) -> bool:
    if int(node.attr("training_mode", 0)):  # BatchNormalization's batch statistics
        return False
    return ins[0] == 0 and all(a is None for a in ins[1:]) and all(a in (None, 0) for a in outs)


def _axis_attr(node, rank: int, default: int) -> int:
    a = int(node.attr("axis", default))
    return a + rank if a < 0 else a


def _same_axis_not(node_axis: int, ins, outs) -> bool:
    axes = {a for a in (*ins, *outs) if a is not None}
    return len(axes) == 1 and node_axis not in axes


def _concat(node, g, ins, outs, in_rank, out_rank) -> bool:
    return all(a is not None for a in ins) and _same_axis_not(_axis_attr(node, out_rank[0], 0), ins, outs)


def _split(node, g, ins, outs, in_rank, out_rank) -> bool:
    return _same_axis_not(_axis_attr(node, in_rank[0], 0), ins[:1], outs)


def _softmax(node, g, ins, outs, in_rank, out_rank) -> bool:
    # before opset 13 softmax covers every axis from `axis` on: the batch must come before it
    axis = _axis_attr(node, in_rank[0], -1 if g.opset >= 13 else 1)
    return ins[0] is not None and ins[0] == outs[0] and ins[0] < axis if g.opset < 13 else \
        ins[0] is not None and ins[0] == outs[0] and ins[0] != axis


def _layernorm(node, g, ins, outs, in_rank, out_rank) -> bool:
    axis = _axis_attr(node, in_rank[0], -1)
    return ins[0] is not None and ins[0] < axis and all(a is None for a in ins[1:]) and \
        all(a in (None, ins[0]) for a in outs)


def _topk(node, g, ins, outs, in_rank, out_rank) -> bool:
    return _same_axis_not(_axis_attr(node, in_rank[0], -1), ins[:1], outs)


def _gather_elements(node, g, ins, outs, in_rank, out_rank) -> bool:
    # data, indices (and updates) hold the batch on the same axis, the operator works on another
    return ins[0] is not None and _same_axis_not(_axis_attr(node, in_rank[0], 0), ins, outs)


def _gather(node, g, ins, outs, in_rank, out_rank) -> bool:
    axis = _axis_attr(node, in_rank[0], 0)
    d, i = ins[0], ins[1]
    o = outs[0]
    if d is not None and i is None:  # samples of data, the same indices for each: out = d[:axis] + idx + d[axis+1:]
        return d != axis and o == (d if d < axis else d - 1 + in_rank[1])
    if d is None and i is not None:  # a shared table looked up by each sample's indices
        return o == axis + i
    return False


def _slice(node, g, ins, outs, in_rank, out_rank) -> bool:
    from ..ops.shape_ops import slice_inputs

    a = ins[0]
    if a is None or outs[0] != a or any(x is not None for x in ins[1:]):
        return False
    starts, ends, sl_axes, steps = slice_inputs(node, g)
    rank = in_rank[0]
    if sl_axes is None:  # axes 0, 1, ...: one per start value
        sliced = list(range(len(starts)))
    else:
        sliced = [int(x) + rank if int(x) < 0 else int(x) for x in sl_axes]
    if a not in sliced:
        return True
    # along the batch only the whole of it: start 0, step 1, end the batch size itself or "to the end"
    j = sliced.index(a)
    start, end, step = starts[j], ends[j], (steps[j] if steps else 1)
    sym = g.t(node.inputs[0]).shape[a].syms[0][0]
    whole = _is_batch(end, sym) or (not isinstance(end, D.Dim) and int(end) >= 2**31)
    return not isinstance(start, D.Dim) and int(start) == 0 and not isinstance(step, D.Dim) and int(step) == 1 \
        and whole


def _reduce(node, g, ins, outs, in_rank, out_rank) -> bool:
    from ..ops.reduce import _axes

    a = ins[0]
    if a is None:
        return False
    red = _axes(node, g, in_rank[0])
    if red is None:
        return outs[0] == a
    if a in red:
        return False
    keep = int(node.attr("keepdims", 1))
    return outs[0] == (a if keep else a - sum(1 for r in red if r < a))


def _matmul(node, g, ins, outs, in_rank, out_rank) -> bool:
    a, b = ins[0], ins[1]
    ra, rb = in_rank[0], in_rank[1]
    if a is not None and a == ra - 1:  # contracted (K of A)
        return False
    if b is not None and (b == rb - 2 or rb == 1):  # contracted (K of B)
        return False
    if a is not None and b is not None:  # both batched: only in the stacked (leading) dimensions, aligned
        return a < ra - 2 and b < rb - 2 and ra - a == rb - b
    return outs[0] is not None


def _gemm(node, g, ins, outs, in_rank, out_rank) -> bool:
    rows = 1 if int(node.attr("transA", 0)) else 0
    c = ins[2] if len(ins) > 2 else None
    return ins[0] == rows and ins[1] is None and _aligned(c, in_rank[2] if c is not None else 0, 0, 2) \
        and outs[0] == 0


def _transpose(node, g, ins, outs, in_rank, out_rank) -> bool:
    perm = node.attr("perm")
    perm = list(range(in_rank[0]))[::-1] if perm is None else [int(p) for p in perm]
    return ins[0] is not None and outs[0] == perm.index(ins[0])


def _constant_of_shape(node, g, ins, outs, in_rank, out_rank) -> bool:
    return True  # a constant fill: the same for every sample, whatever its shape


def _scatter_elements(node, g, ins, outs, in_rank, out_rank) -> bool:
    return all(a is not None for a in ins[:3]) and _gather_elements(node, g, ins, outs, in_rank, out_rank)


_RULES = {
    "Concat": _concat, "Split": _split, "Softmax": _softmax, "LogSoftmax": _softmax, "Hardmax": _softmax,
    "LayerNormalization": _layernorm, "TopK": _topk, "GatherElements": _gather_elements, "Gather": _gather,
    "ScatterElements": _scatter_elements, "Slice": _slice, "MatMul": _matmul, "Gemm": _gemm,
    "Transpose": _transpose, "ConstantOfShape": _constant_of_shape,
}
