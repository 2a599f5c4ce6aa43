"""Shape inference and constant folding, in one walk over the nodes.

A node whose inputs are all constant is evaluated at compile time (with the op's own NumPy ``fold``, else
with ``onnx.reference``) and disappears; ``Shape`` and ``Size`` always fold, into symbolic values when the
batch is dynamic. Every other node gets its output shapes from its op's ``infer``. Problems (unsupported
variants, shape errors) are collected over the whole graph and raised together. The walk over a node list
itself is :func:`ml4ep.infer.resolve.resolve_nodes` (control-flow bodies are resolved with it too); this pass
runs it over the graph and materialises the constants needed at run time.
"""

from __future__ import annotations

import numpy as np

from .. import ops as O
from ..graph import Graph, Node, nested_nodes, reads
from ..resolve import resolve_nodes
from ...errors import UnsupportedOperatorError


def resolve(g: Graph) -> None:
    """Fold constants and infer every tensor's dtype and shape, in one walk; all problems at once.

    A node whose operator has no kernel (or whose kernel refuses the variant) is replaced by the ONNX function
    that defines the operator, when it has one; a float16 node a kernel refuses is computed in float32.
    """
    problems: list[tuple[str, str, str]] = []
    unknown: set[str] = set()
    kept = resolve_nodes(g, g.nodes, problems, unknown)
    for o in g.outputs:
        if o not in g.tensors and o not in unknown:
            problems.append((o, "output", "graph output is not produced by any node"))
    if problems:
        raise UnsupportedOperatorError(problems, g.source)
    g.nodes = kept
    _materialize(g)


def _materialize(g: Graph) -> None:
    """Constants needed at run time that the weights file cannot hold: symbolic values and const outputs."""
    new_nodes: list[Node] = []
    made: dict[str, str] = {}

    def sym_node(src: str) -> str:
        if src not in made:
            out = g.unique_name(src + "_rt")
            value = g.const(src)
            new_nodes.append(Node("SymConst", f"SymConst_{src}", [], [out], {"value": value}))
            g.add_tensor(out, np.int64, value.shape)  # type: ignore[union-attr]
            made[src] = out
        return made[src]

    for node in g.nodes:
        opdef = O.get(node.op_type)
        for k, i in enumerate(node.inputs):
            if i and g.is_const(i) and g.const(i).dtype == object and (opdef is None or k not in opdef.const_inputs):
                node.inputs[k] = sym_node(i)
        new_nodes.append(node)
    for k, o in enumerate(g.outputs):
        if g.is_const(o):
            value = g.const(o)
            src = g.unique_name(o + "_const")
            g.tensors[src] = g.tensors.pop(o)
            g.tensors[src].name = src
            g.add_tensor(o, g.tensors[src].dtype, value.shape)  # type: ignore[union-attr]
            if value.dtype == object:  # type: ignore[union-attr]
                new_nodes.append(Node("SymConst", f"SymConst_{o}", [], [o], {"value": value}))
            else:
                new_nodes.append(Node("Identity", f"Const_{o}", [src], [o]))
                for n in new_nodes[:-1]:  # other readers take the constant, not the output filled last
                    n.inputs = [src if i == o else i for i in n.inputs]
        elif o in g.inputs:
            # an output that is a graph input: copy it (a new tensor name for the output)
            src_in = o
            new_out = g.unique_name(o + "_out")
            g.add_tensor(new_out, g.t(src_in).dtype, g.t(src_in).shape)
            new_nodes.append(Node("Identity", f"Copy_{o}", [src_in], [new_out]))
            g.outputs[k] = new_out
    g.nodes = new_nodes


def dead_code(g: Graph) -> None:
    """Remove nodes none of whose outputs reach a graph output."""
    live = set(g.outputs)
    kept: list[Node] = []
    for node in reversed(g.nodes):
        if any(o in live for o in node.outputs if o):
            kept.append(node)
            live.update(reads(node))
    g.nodes = list(reversed(kept))
    used = live | set(g.inputs)
    for node in g.nodes:  # the tensors of control-flow bodies live with their node
        for sg in node.subgraphs.values():
            used |= sg.defined()
        for n in nested_nodes(node):
            used.update(i for i in n.inputs if i)
            for sg in n.subgraphs.values():
                used |= sg.defined()
    for name in list(g.tensors):
        if name not in used and not any(name in n.outputs for n in g.nodes):
            del g.tensors[name]


__all__ = ["resolve", "dead_code"]
