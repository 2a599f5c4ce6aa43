"""Fusion passes, each a ``match`` over the node list and a ``transform`` of the matched nodes.

- Conv + BatchNormalization (constant statistics) -> Conv with rescaled weights and bias.
- MatMul (constant 2-D weight) + Add (bias along the last axis) -> MatMul with a bias input.
- GELU written out in elementwise nodes (what exporters emit below opset 20: ``0.5 x (1 + erf(x / sqrt 2))``
  and the tanh form ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``) -> one Gelu node.
- Gemm / MatMul / Conv / ConvTranspose + activation (Relu, LeakyRelu, Sigmoid, Tanh, Gelu, Clip, ...) -> one node
  that applies the activation to its output while it is hot in cache.
A fused producer must have exactly one consumer and must not itself be a graph output.
"""

from __future__ import annotations

import numpy as np

from .. import ops as O
from ..graph import Graph, Node, reads
from ..ops.elementwise import FUSABLE

DENSE_OPS = {"Gemm", "MatMul", "Conv", "ConvTranspose"}


def _single_consumer(g: Graph, name: str) -> Node | None:
    if name in g.outputs:
        return None
    users = [n for n in g.nodes if name in n.inputs or (n.subgraphs and name in reads(n))]
    return users[0] if len(users) == 1 else None


def _replace_output(g: Graph, producer: Node, consumer: Node) -> None:
    """``producer`` takes over the output of ``consumer``, which disappears."""
    old = producer.outputs[0]
    producer.outputs[0] = consumer.outputs[0]
    producer.origin.extend(consumer.origin)
    g.nodes.remove(consumer)
    g.tensors.pop(old, None)


def fuse_conv_batchnorm(g: Graph) -> int:
    count = 0
    for node in list(g.nodes):
        if node.op_type != "Conv" or node not in g.nodes or node.fused:
            continue
        w = g.const(node.inputs[1])
        bn = _single_consumer(g, node.outputs[0])
        if w is None or bn is None or bn.op_type != "BatchNormalization" or bn.inputs[0] != node.outputs[0]:
            continue
        if len([o for o in bn.outputs if o]) != 1 or bn.attr("training_mode", 0):
            continue
        params = [g.const(i) for i in bn.inputs[1:5]]
        if any(p is None for p in params):
            continue
        scale, bias, mean, var = (np.asarray(p, dtype=np.float64) for p in params)  # type: ignore[arg-type]
        eps = float(bn.attr("epsilon", 1e-5))
        a = scale / np.sqrt(var + eps)
        b_old = g.const(node.input(2))
        b0 = np.zeros(w.shape[0]) if b_old is None else np.asarray(b_old, dtype=np.float64)
        new_w = (w.astype(np.float64) * a.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
        new_b = ((b0 - mean) * a + bias).astype(np.float32)
        wn, bname = g.unique_name(node.inputs[1] + "_bn"), g.unique_name(node.name + "_bias_bn")
        g.add_tensor(wn, np.float32, new_w.shape, new_w)
        g.add_tensor(bname, np.float32, new_b.shape, new_b)
        node.inputs = [node.inputs[0], wn, bname]
        _replace_output(g, node, bn)
        count += 1
    return count


def fuse_matmul_add(g: Graph) -> int:
    count = 0
    for node in list(g.nodes):
        if node.op_type != "MatMul" or node not in g.nodes or len(node.inputs) > 2:
            continue
        w = g.const(node.inputs[1])
        # a constant left operand instead (a 1x1 convolution as MatMul): a bias per output row may fuse
        left_const = w is None and g.const(node.inputs[0]) is not None
        if not left_const and (w is None or w.ndim != 2 or g.t(node.inputs[0]).rank < 2):
            continue
        add = _single_consumer(g, node.outputs[0])
        if add is None or add.op_type != "Add":
            continue
        other = add.inputs[1] if add.inputs[0] == node.outputs[0] else add.inputs[0]
        if left_const:
            count += _fuse_row_bias(g, node, add, other)
            continue
        b = g.const(other)
        if b is None or b.dtype != np.float32 or b.size != w.shape[1] or (b.ndim and b.shape[-1] != w.shape[1]):
            continue
        if b.ndim > g.t(node.outputs[0]).rank:
            continue
        bname = g.unique_name(node.name + "_bias")
        g.add_tensor(bname, np.float32, (w.shape[1],), b.reshape(-1))
        node.inputs = node.inputs[:2] + [bname]
        _replace_output(g, node, add)
        count += 1
    return count


def _fuse_row_bias(g: Graph, node: Node, add: Node, other: str) -> bool:
    """MatMul(A const (M, K), B (..., K, S)) + bias (M, 1): the bias added per output row by the MatMul."""
    a, b = g.const(node.inputs[0]), g.const(other)
    if a is None or a.ndim != 2 or b is None or b.dtype != np.float32 or g.is_const(node.inputs[1]):
        return False
    m = a.shape[0]
    out = g.t(node.outputs[0])
    if out.rank < 3 or b.size != m or b.ndim < 2 or b.shape[-1] != 1 or b.shape[-2] != m or b.ndim > out.rank:
        return False
    bname = g.unique_name(node.name + "_row_bias")
    g.add_tensor(bname, np.float32, (m,), b.reshape(-1))
    node.inputs = node.inputs[:2] + [bname]
    node.attrs["_row_bias"] = True
    _replace_output(g, node, add)
    return True


def _through_view(g: Graph, node: Node) -> tuple[Node | None, Node | None]:
    """(view, activation) when ``node``'s output goes through one Reshape-like view into one activation."""
    view = _single_consumer(g, node.outputs[0])
    # a row-major reinterpretation of the data: an op registered with view="reshape"
    if view is None or getattr(O.get(view.op_type), "view", None) != "reshape":
        return None, None
    if view.inputs[0] != node.outputs[0] or view.outputs[0] in g.outputs:
        return None, None
    act = _single_consumer(g, view.outputs[0])
    if act is None or act.op_type not in FUSABLE or act.inputs[0] != view.outputs[0] or act.op_type == "Clip":
        return None, None
    return view, act


def fuse_activation(g: Graph) -> int:
    count = 0
    changed = True
    while changed:
        changed = False
        for node in list(g.nodes):
            if node.op_type not in DENSE_OPS or node not in g.nodes:
                continue
            if g.t(node.outputs[0]).dtype != np.float32:
                continue
            act = _single_consumer(g, node.outputs[0])
            if act is None or act.op_type not in FUSABLE or act.inputs[0] != node.outputs[0]:
                # an activation after a view of the output (Reshape back from a 1x1 convolution as MatMul):
                # elementwise, so it moves before the view
                view, act2 = _through_view(g, node)
                if view is None:
                    continue
                node.fused.append((act2.op_type, dict(act2.attrs)))
                old = view.outputs[0]
                view.outputs[0] = act2.outputs[0]
                node.origin.extend(act2.origin)
                g.nodes.remove(act2)
                g.tensors.pop(old, None)
                count += 1
                changed = True
                continue
            attrs = {k: v for k, v in act.attrs.items()}
            if act.op_type == "Clip":
                lo, hi = act.input(1), act.input(2)
                if (lo and not g.is_const(lo)) or (hi and not g.is_const(hi)):
                    continue
                if lo:
                    attrs["min"] = float(np.asarray(g.const(lo)).reshape(-1)[0])
                if hi:
                    attrs["max"] = float(np.asarray(g.const(hi)).reshape(-1)[0])
            node.fused.append((act.op_type, attrs))
            _replace_output(g, node, act)
            count += 1
            changed = True
    return count


def _scalar(g: Graph, name: str) -> float | None:
    c = g.const(name)
    if c is None or np.asarray(c).size != 1:
        return None
    return float(np.asarray(c).reshape(-1)[0])


def _binary(g: Graph, node: Node | None, op: str, value: float | None = None) -> tuple[str, str] | None:
    """``(operand, other)`` of a two-input ``op`` node; with ``value``, ``other`` must be that scalar constant
    (either order), and ``operand`` is the non-constant input."""
    if node is None or node.op_type != op or len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if value is None:
        return a, b
    for x, c in ((a, b), (b, a)):
        s = _scalar(g, c)
        if s is not None and abs(s - value) <= 1e-5 * max(1.0, abs(value)) and g.const(x) is None:
            return x, c
    return None


def _gelu_tail(g: Graph, inner: Node, x: str) -> list[Node] | None:
    """The nodes after ``tanh(...)`` / ``erf(...)``: ``+ 1``, then ``* x`` and ``* 0.5`` in either order."""
    add1 = _single_consumer(g, inner.outputs[0])
    if _binary(g, add1, "Add", 1.0) is None:
        return None
    nxt = _single_consumer(g, add1.outputs[0])
    if _binary(g, nxt, "Mul", 0.5) is not None:  # (1 + f) * 0.5, then * x
        last = _single_consumer(g, nxt.outputs[0])
        if last is None or last.op_type != "Mul" or sorted(last.inputs) != sorted([x, nxt.outputs[0]]):
            return None
        return [add1, nxt, last]
    if nxt is None or nxt.op_type != "Mul" or sorted(nxt.inputs) != sorted([x, add1.outputs[0]]):
        return None
    last = _single_consumer(g, nxt.outputs[0])
    if _binary(g, last, "Mul", 0.5) is None:
        return None
    return [add1, nxt, last]


def _cube_of(g: Graph, producer: dict, name: str, x: str) -> list[Node] | None:
    """The nodes computing ``x^3`` into ``name`` (``Pow(x, 3)`` or ``x * (x * x)`` in any order)."""
    node = producer.get(name)
    if _binary(g, node, "Pow", 3.0) is not None and node.inputs[0] == x:
        return [node]
    if node is None or node.op_type != "Mul" or x not in node.inputs:
        return None
    sq_name = node.inputs[1] if node.inputs[0] == x else node.inputs[0]
    sq = producer.get(sq_name)
    if sq is not None and sq.op_type == "Mul" and sq.inputs == [x, x]:
        return [sq, node]
    if _binary(g, sq, "Pow", 2.0) is not None and sq.inputs[0] == x:
        return [sq, node]
    return None


def fuse_gelu(g: Graph) -> int:
    """Replace the elementwise spellings of GELU by single Gelu nodes (``approximate`` "none" or "tanh")."""
    count = 0
    for inner in [n for n in g.nodes if n.op_type in ("Erf", "Tanh")]:
        if inner not in g.nodes:
            continue
        producer = {o: n for n in g.nodes for o in n.outputs}
        arg = producer.get(inner.inputs[0])
        if inner.op_type == "Erf":
            m = _binary(g, arg, "Div", 1.4142135623730951) or _binary(g, arg, "Mul", 0.7071067811865476)
            if m is None:
                continue
            x, head, approximate = m[0], [arg], "none"
        else:
            m = _binary(g, arg, "Mul", 0.7978845608028654)
            add = producer.get(m[0]) if m is not None else None
            if add is None or add.op_type != "Add" or len(add.inputs) != 2:
                continue
            head = None
            for x, other in ((add.inputs[0], add.inputs[1]), (add.inputs[1], add.inputs[0])):
                cm = _binary(g, producer.get(other), "Mul", 0.044715)
                cube = _cube_of(g, producer, cm[0], x) if cm is not None else None
                if cube is not None:
                    head = [*cube, producer[other], add, arg]
                    break
            if head is None:
                continue
            approximate = "tanh"
        tail = _gelu_tail(g, inner, x)
        if tail is None or g.t(x).dtype != np.float32:
            continue
        chain = [*head, inner, *tail]
        inside = {o for n in chain[:-1] for o in n.outputs}
        if any(_single_consumer(g, o) is None for o in inside):  # an intermediate is used elsewhere
            continue
        at = min(g.nodes.index(n) for n in chain)
        gelu = Node("Gelu", g.unique_name(inner.name + "_gelu"), [x], [tail[-1].outputs[0]],
                    {"approximate": approximate}, origin=[o for n in chain for o in n.origin])
        for n in chain:
            g.nodes.remove(n)
        for name in inside:
            g.tensors.pop(name, None)
        g.nodes.insert(at, gelu)
        count += 1
    return count


def run_all(g: Graph) -> dict[str, int]:
    return {
        "conv_batchnorm": fuse_conv_batchnorm(g),
        "matmul_add": fuse_matmul_add(g),
        "gelu": fuse_gelu(g),
        "activation": fuse_activation(g),
    }
