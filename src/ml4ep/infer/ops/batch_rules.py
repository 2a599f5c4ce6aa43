"""Batch rules: how an operator treats the batch axis, for batch chunking (passes/batching.py).

An operator states its rule in its registration, ``register(..., batch=rule)``; an operator without one is
not batch-separable. A rule is called as ``rule(node, g, ins, outs, in_rank, out_rank)``: ``ins`` and
``outs`` give, per input and output of the node, the axis that holds the batch (None where it holds none),
``in_rank`` and ``out_rank`` their ranks. It returns True when every sample of the outputs depends only on the
same sample of the inputs. The pass has already checked what holds for every operator: the batch appears at
most once per tensor, as a plain dimension; no input but a ``shape_inputs`` one holds the batch size as a
value; every output is batched when an input is. A node with nothing batched at all computes the same for
every sample and is accepted without asking for a rule.

The generic rules (elementwise with broadcasting, row-major reshapes, per-sample NCHW operators, constant
fills) live here with the helpers rules share; the rules of one operator (Softmax, Gather, Slice, MatMul...)
live next to it in its family file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import dims as D

if TYPE_CHECKING:
    from ..graph import Graph, Node


# ------------------------------------------------------------------------------------------------------
# helpers
def is_batch(d, sym: str) -> bool:
    """Whether dimension ``d`` is the batch symbol ``sym`` itself (not ``2N``, ``N + 1``, ...)."""
    return isinstance(d, D.Dim) and d.coeff == 1 and d.syms == ((sym, 1),)


def aligned(a: int | None, rank: int, out_axis: int, out_rank: int) -> bool:
    """Numpy broadcasting aligns shapes on the right: the batch of an input lands on the output's batch."""
    return a is None or rank - a == out_rank - out_axis


def axis_attr(node: "Node", rank: int, default: int) -> int:
    """The node's ``axis`` attribute (``default`` when absent), made non-negative."""
    a = int(node.attr("axis", default))
    return a + rank if a < 0 else a


def same_axis_not(node_axis: int, ins, outs) -> bool:
    """Every batched input and output holds the batch on one axis, and that is not the axis the op works on."""
    axes = {a for a in (*ins, *outs) if a is not None}
    return len(axes) == 1 and node_axis not in axes


# ------------------------------------------------------------------------------------------------------
# generic rules: (node, graph, input axes, output axes, input ranks, output ranks) -> separable
def _broadcast_over(data: range, ins, outs, in_rank, out_rank) -> bool:
    o = outs[0]
    if o is None:
        return False
    return all(aligned(ins[k], in_rank[k], o, out_rank[0]) for k in data) and all(a in (None, o) for a in outs)


def broadcast(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Elementwise with NumPy broadcasting over all inputs (Add, Relu, Where, Cast...): the batch of every
    batched input lands on the batch of the output."""
    return _broadcast_over(range(len(ins)), ins, outs, in_rank, out_rank)


def broadcast_data(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Broadcasting of the first input only (Expand: the other input is the target shape)."""
    return _broadcast_over(range(1), ins, outs, in_rank, out_rank)


def _prefix(shape, axis) -> object:
    return D.prod(shape[:axis])


def reshape(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """A row-major reinterpretation (Reshape, Flatten, Squeeze, Unsqueeze): the same count of elements before
    the batch dimension in input and output (hence after it), so each sample keeps its block."""
    a, o = ins[0], outs[0]
    if a is None or o is None:
        return False
    si, so = g.t(node.inputs[0]).shape, g.t(node.outputs[0]).shape
    return D.is_static(_prefix(si, a)) and D.is_static(_prefix(so, o)) and int(_prefix(si, a)) == int(_prefix(so, o))


def nchw(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """An operator on (batch, channel, spatial...) tensors that treats each sample alone (Conv, pools,
    inference BatchNormalization...): the data input batched on axis 0, the parameters not at all."""
    if int(node.attr("training_mode", 0)):  # BatchNormalization's batch statistics
        return False
    return ins[0] == 0 and all(a is None for a in ins[1:]) and all(a in (None, 0) for a in outs)


def constant(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """A constant fill (ConstantOfShape): the same for every sample, whatever its shape."""
    return True
