"""Shape inference and constant folding, in one walk over the nodes.

A node whose inputs are all constant is evaluated at compile time (with the op's own NumPy ``fold``, else
with ``onnx.reference``) and disappears; ``Shape`` and ``Size`` always fold, into symbolic values when the
batch is dynamic. Every other node gets its output shapes from its op's ``infer``. Problems (unsupported
variants, shape errors) are collected over the whole graph and raised together.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import ops as O
from ..graph import Graph, Node
from ...errors import Ml4epError, ShapeError, UnsupportedOperatorError

log = logging.getLogger(__name__)


def _reference_eval(node: Node, values: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    attrs = {k: (numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v)
             for k, v in node.attrs.items() if not k.startswith("_")}
    in_names = [f"i{k}" if v is not None else "" for k, v in enumerate(values)]
    out_names = [f"o{k}" if o else "" for k, o in enumerate(node.outputs)]
    pnode = helper.make_node(node.op_type, in_names, out_names, **attrs)
    inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for n, v in zip(in_names, values) if v is not None
    ]
    outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in out_names if n]
    model = helper.make_model(helper.make_graph([pnode], "fold", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", opset)])
    ev = ReferenceEvaluator(model)
    res = ev.run(None, {n: v for n, v in zip(in_names, values) if v is not None})
    return [np.asarray(r) for r in res]


def _set_const(g: Graph, name: str, value: np.ndarray) -> None:
    value = np.asarray(value)
    dtype = np.int64 if value.dtype == object else value.dtype
    g.add_tensor(name, dtype, value.shape, value)


def _try_fold(node: Node, g: Graph, opdef: O.OpDef) -> bool:
    if node.op_type in ("Shape", "Size") and node.inputs and node.inputs[0] in g.tensors:
        from ..ops import shape_ops

        fn = shape_ops.shape_value if node.op_type == "Shape" else shape_ops.size_value
        _set_const(g, node.outputs[0], fn(node, g))
        return True
    present = [i for i in node.inputs if i]
    if not all(g.is_const(i) for i in present):
        return False
    if node.op_type in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"):
        return False
    values = [g.const(i) if i else None for i in node.inputs]
    try:
        if opdef.fold is not None:
            out = opdef.fold(node, values)  # type: ignore[arg-type]
        elif all(v is None or v.dtype != object for v in values):
            out = _reference_eval(node, values, g.opset)
        else:
            return False
    except Ml4epError:
        raise
    except Exception as exc:  # noqa: BLE001 - fall back to run time
        log.debug("folding %s (%s) failed: %s", node.name, node.op_type, exc)
        return False
    for name, v in zip(node.outputs, out):
        if name:
            _set_const(g, name, v)
    return True


def resolve(g: Graph) -> None:
    problems: list[tuple[str, str, str]] = []
    unknown: set[str] = set()
    kept: list[Node] = []
    for node in g.nodes:
        opdef = O.get(node.op_type)
        assert opdef is not None  # the importer rejected unknown ops
        if any(i in unknown for i in node.inputs if i):
            unknown.update(o for o in node.outputs if o)
            continue
        missing = [i for i in node.inputs if i and i not in g.tensors]
        if missing:
            problems.append((node.name, node.op_type, f"input(s) {missing} are not produced by any node"))
            unknown.update(o for o in node.outputs if o)
            continue
        try:
            if _try_fold(node, g, opdef):
                continue
            if opdef.emit is None:
                raise ShapeError("can only be evaluated at compile time, but its inputs are not constant")
            reason = opdef.check(node, g) if opdef.check else None
            if reason:
                problems.append((node.name, node.op_type, reason))
                unknown.update(o for o in node.outputs if o)
                continue
            infos = opdef.infer(node, g)
        except UnsupportedOperatorError as exc:
            problems.extend(exc.problems)
            unknown.update(o for o in node.outputs if o)
            continue
        except (Ml4epError, ValueError, KeyError, TypeError, IndexError) as exc:
            msg = str(exc)
            prefix = f"node '{node.name}' ({node.op_type}): "
            problems.append((node.name, node.op_type, msg[len(prefix):] if msg.startswith(prefix) else msg))
            unknown.update(o for o in node.outputs if o)
            continue
        for name, (dtype, shape) in zip(node.outputs, infos):
            if name:
                g.add_tensor(name, dtype, shape)
        kept.append(node)
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
            live.update(i for i in node.inputs if i)
    g.nodes = list(reversed(kept))
    used = live | set(g.inputs)
    for name in list(g.tensors):
        if name not in used and not any(name in n.outputs for n in g.nodes):
            del g.tensors[name]


__all__ = ["resolve", "dead_code"]
