"""Batch chunking: run a batch-separable model over chunks of the batch, so its intermediates stay in cache.

A model is *batch-separable* when every sample of its outputs depends only on the same sample of its batched
inputs. Then ``infer`` on N samples equals ``infer`` on consecutive chunks of them, and the generated ``infer``
runs the graph chunk by chunk: a chunk's intermediates fit in the core's cache instead of streaming through
memory (a ParticleNet's edge features are 2.6 MB per jet, a transformer layer's activations 1.2 MB per jet),
and the workspace holds one chunk instead of the whole batch.

:func:`batch_layout` decides it, conservatively: the batch is the symbol at axis 0 of the first output (a plain
symbol, e.g. ``N``); every tensor holds it at most once, as a plain dimension (never ``2N`` or ``N*L``, nor in a
derived symbol), batched inputs and every output hold it at axis 0, and every node is an operator known not to
mix samples, checked for the axis it works on by the ``batch`` rule of the op's registration (ops/batch_rules.py;
a reduction, softmax, concatenation, gather or slice along the batch axis, a contraction over it, a transpose or
reshape that moves it into another dimension all stop it).
A graph with anything else (an unknown operator, control flow, data-dependent sizes, the batch size used as a
value) keeps the plain ``infer``.

The chunk size is chosen in the generated code from the workspace bytes per sample: as many samples as fit in
``ML4EP_CHUNK_BYTES`` (default 1 MiB, about half the L2 cache of current x86 cores), at least one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dims as D
from .. import ops as O
from ..graph import Graph, Node
from ..ops.batch_rules import is_batch


@dataclass(frozen=True)
class BatchLayout:
    """How to chunk a separable model: the batch symbol, and per graph input whether it is batched (axis 0)."""

    symbol: str
    batched_inputs: tuple[bool, ...]


class _NotSeparable(Exception):
    pass


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
    if len(found) > 1 or not is_batch(shape[found[0]], sym):
        raise _NotSeparable(shape)
    return found[0]


def _symbolic_value(v) -> bool:
    return v is not None and np.asarray(v).dtype == object


def _check_node(node: Node, g: Graph, axes: dict, sym: str, tainted: set[str]) -> None:
    if node.subgraphs:
        raise _NotSeparable(node.name)
    op = node.op_type
    opdef = O.get(op)
    shape_inputs = opdef.shape_inputs if opdef is not None else ()
    for k, name in enumerate(node.inputs):
        if name and g.tensors[name].is_const and k not in shape_inputs and _symbolic_value(g.tensors[name].value):
            raise _NotSeparable(f"{node.name}: the batch size used as a value")
    for v in node.attrs.values():  # a symbolic value written at run time (SymConst): there N is the chunk's size
        if isinstance(v, np.ndarray) and v.dtype == object and any(_involves(d, sym, tainted) for d in v.reshape(-1)):
            raise _NotSeparable(f"{node.name}: the batch size used as a value")
    ins = [axes.get(i) if i else None for i in node.inputs]
    outs = [axes.get(o) if o else None for o in node.outputs]
    in_rank = [g.t(i).rank if i else 0 for i in node.inputs]
    out_rank = [g.t(o).rank if o else 0 for o in node.outputs]
    batched_in = [a for a in ins if a is not None]
    if not batched_in and all(a is None for a in outs):
        return  # nothing batched: the same for every sample
    if batched_in and any(a is None for o, a in zip(node.outputs, outs) if o):
        # an output without the batch computed from batched inputs depends on particular samples
        raise _NotSeparable(f"{node.name}: {op} drops the batch")
    # the op's batch rule, from its registration (ops/batch_rules.py); none: not separable
    rule = opdef.batch if opdef is not None else None
    if rule is None:
        raise _NotSeparable(f"{node.name}: {op}")
    if not rule(node, g, ins, outs, in_rank, out_rank):
        raise _NotSeparable(f"{node.name}: {op} along the batch")
