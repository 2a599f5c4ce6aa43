"""Resolving a list of nodes: constant folding and type/shape inference, in one walk.

:func:`resolve_nodes` is the walk of the resolve pass (passes/fold.py) over a node list: the graph's, or the
body of a control-flow node, which ops/control.py resolves from its ``infer``. It lives outside ``passes`` so
that operators do not import a pass (the node replacements it falls back on, passes/expand.py, depend on the
graph only, and are imported by the walk, not with this module). A node whose inputs are all constant is evaluated at compile
time (with the op's own NumPy ``fold``, else with ``onnx.reference``) and disappears; ``Shape`` and ``Size``
always fold, into symbolic values when the batch is dynamic. Every other node gets its output shapes from its
op's ``infer``; one the op refuses is replaced by its ONNX function (passes/expand.py) when it has one.
"""

from __future__ import annotations

import collections
import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import limits
from . import ops as O
from .graph import Graph, Node
from ..errors import Ml4epError, ShapeError, UnsupportedOperatorError

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
        from .ops import shape_ops

        fn = shape_ops.shape_value if node.op_type == "Shape" else shape_ops.size_value
        _set_const(g, node.outputs[0], fn(node, g))
        return True
    present = [i for i in node.inputs if i]
    if not all(g.is_const(i) for i in present):
        return False
    if node.op_type in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"):
        return False
    infos = _predicted(node, g, opdef)
    if infos is not None and not limits.check_fold(node, g, infos):
        # too large to materialise at compile time (and in the weights file): computed at run time instead
        if opdef.emit is None:
            raise limits.refuse_fold(node, infos)
        log.info("%s (%s): output too large to fold, computed at run time", node.name, node.op_type)
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
            if np.asarray(v).dtype != object:
                g.folded_bytes = getattr(g, "folded_bytes", 0) + np.asarray(v).nbytes  # type: ignore[attr-defined]
    return True


def _predicted(node: Node, g: Graph, opdef: O.OpDef) -> list | None:
    """The ``(dtype, shape)`` of the outputs of a node about to be folded (None when its ``infer`` fails): the
    size limits are checked before anything is materialised. What ``infer`` records (data-dependent symbols)
    is undone: the node is folded, or inferred again when it is not."""
    d = g.derived
    saved = dict(d.runtime), dict(d.defs), dict(d._by_poly)
    try:
        return opdef.infer(node, g)  # type: ignore[misc]
    except Exception:  # noqa: BLE001 - folding decides
        return None
    finally:
        for cur, old in zip((d.runtime, d.defs, d._by_poly), saved):
            cur.clear()
            cur.update(old)


def resolve_nodes(g: Graph, nodes: list[Node], problems: list, unknown: set[str]) -> list[Node]:
    """The walk of the resolve pass (:func:`ml4ep.infer.passes.fold.resolve`) over ``nodes`` (the graph's, or a
    control-flow body's): the nodes kept; problems are appended to ``problems``, the outputs of nodes that could
    not be resolved added to ``unknown``."""
    from .passes import expand as X

    kept: list[Node] = []
    work = collections.deque(nodes)
    while work:
        node = work.popleft()
        if any(i in unknown for i in node.inputs if i):
            unknown.update(o for o in node.outputs if o)
            continue
        missing = [i for i in node.inputs if i and i not in g.tensors]
        if missing:
            problems.append((node.name, node.op_type, f"input(s) {missing} are not produced by any node"))
            unknown.update(o for o in node.outputs if o)
            continue
        if node.op_type == "If" and node.subgraphs and g.is_const(node.inputs[0]) \
                and g.const(node.inputs[0]).dtype != object:
            # a condition known at compile time: the branch taken, inlined
            branch = node.subgraphs["then_branch" if bool(np.asarray(g.const(node.inputs[0])).reshape(-1)[0])
                                    else "else_branch"]
            for cname, v in branch.consts.items():
                g.add_tensor(cname, v.dtype, v.shape, v)
            tail = [Node("Identity", f"{node.name}/out{k}", [bo], [o], origin=[node.name])
                    for k, (bo, o) in enumerate(zip(branch.outputs, node.outputs)) if o]
            work.extendleft(reversed(branch.nodes + tail))
            continue
        if node.attrs.pop("_if_float32", False):  # the Cast back of a float16 node computed in float32
            src = g.t(node.inputs[0]).dtype
            if src != np.float32:
                node.attrs["to"] = helper.np_dtype_to_tensor_dtype(src)
        opdef = O.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        reason = None
        try:
            if opdef is not None and _try_fold(node, g, opdef):
                continue
            if opdef is None:
                reason = "operator not supported by ml4ep"
            elif opdef.emit is None:
                raise ShapeError("can only be evaluated at compile time, but its inputs are not constant")
            elif opdef.check:
                reason = opdef.check(node, g)
            if not reason:
                infos = opdef.infer(node, g)  # type: ignore[union-attr]
        except UnsupportedOperatorError as exc:
            problems.extend(exc.problems)
            unknown.update(o for o in node.outputs if o)
            continue
        except (Ml4epError, ValueError, KeyError, TypeError, IndexError) as exc:
            msg = str(exc)
            prefix = f"node '{node.name}' ({node.op_type}): "
            reason = msg[len(prefix):] if msg.startswith(prefix) else msg
        if reason:
            try:
                repl = X.expand(node, g) or X.float16_in_float32(node, g) or X.conv1x1_as_matmul(node, g)
            except (Ml4epError, ValueError, KeyError, TypeError, IndexError) as exc:
                log.debug("%s (%s): no replacement: %s", node.name, node.op_type, exc)
                repl = None
            if repl:
                # resolved on their own: when the replacement fails too, the node's own reason is reported
                sub_problems: list = []
                sub_unknown = set(unknown)
                sub_kept = resolve_nodes(g, repl, sub_problems, sub_unknown)
                if not sub_problems:
                    kept.extend(sub_kept)
                    continue
                first = sub_problems[0]
                reason += f" (its ONNX function does not compile either: node '{first[0]}' ({first[1]}): {first[2]})"
            problems.append((node.name, node.op_type, reason))
            unknown.update(o for o in node.outputs if o)
            continue
        for name, (dtype, shape) in zip(node.outputs, infos):
            if name:
                g.add_tensor(name, dtype, shape)
        kept.append(node)
    return kept
