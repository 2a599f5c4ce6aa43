"""Operators ml4ep has no kernel for, written as the ONNX function that defines them.

Many ONNX operators (the losses, LayerNormalization, RMSNormalization, Attention, Swish, ...) come with a
function body in their schema: the same computation written with simpler operators, possibly depending on the
node's attributes and input types (a "context-dependent" function). When a node's operator has no kernel here,
or its kernel refuses the variant, the compiler replaces the node by that body (inlined with unique names) and
compiles the simpler operators instead. A second fallback computes float16 nodes in float32 where a kernel only
takes float32: Cast in, the float32 node, Cast back (ONNX allows float16 to be computed in higher precision).
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..graph import Graph, Node

log = logging.getLogger(__name__)

_counter = itertools.count()


def _schema(op_type: str, opset: int, domain: str = ""):
    try:
        return onnx.defs.get_schema(op_type, opset, domain)
    except onnx.defs.SchemaError:
        return None


def has_function(op_type: str, opset: int, domain: str = "") -> bool:
    """Whether the operator's schema defines it as a function of other operators."""
    s = _schema(op_type, opset, domain)
    return s is not None and (s.has_function or s.has_context_dependent_function)


def attrs_to_proto(node: Node) -> dict:
    return {k: (numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v)
            for k, v in node.attrs.items() if not k.startswith("_")}


def node_from_proto(n: onnx.NodeProto, name: str) -> Node:
    """An IR node from an ONNX node (attributes decoded); raises ValueError on subgraph attributes."""
    from ..onnx_import import attr_value

    attrs = {}
    for a in n.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise ValueError("control flow with subgraphs is not supported")
        attrs[a.name] = attr_value(a)
    return Node(n.op_type, name, list(n.input), list(n.output), attrs, n.domain, origin=[name])


def _function(node: Node, g: Graph) -> onnx.FunctionProto | None:
    s = _schema(node.op_type, g.opset, node.domain)
    if s is None:
        return None
    if s.has_function:
        fn = s.function_body
        return fn if fn.node else None
    if not s.has_context_dependent_function:
        return None
    pnode = helper.make_node(node.op_type, node.inputs, node.outputs, name=node.name, **attrs_to_proto(node))
    types = []
    for i in node.inputs:
        if not i:
            types.append(onnx.TypeProto())
            continue
        t = g.t(i)
        types.append(helper.make_tensor_type_proto(helper.np_dtype_to_tensor_dtype(t.dtype),
                                                   [d if isinstance(d, int) else None for d in t.shape]))
    try:
        raw = s.get_context_dependent_function(pnode.SerializeToString(), [t.SerializeToString() for t in types])
    except Exception as exc:  # noqa: BLE001 - onnx refuses the context
        log.debug("%s (%s): no function body for this context: %s", node.name, node.op_type, exc)
        return None
    fn = onnx.FunctionProto()
    fn.ParseFromString(raw)
    return fn if fn.node else None


def expand(node: Node, g: Graph) -> list[Node] | None:
    """The nodes of the operator's function body in place of ``node``, or None when it has none."""
    fn = _function(node, g)
    if fn is None:
        return None
    # a one-node model calling the function from a private domain: onnx's inliner renames and binds attributes
    dom = "ml4ep.expand"
    fn = onnx.FunctionProto.FromString(fn.SerializeToString())
    fn.domain, fn.name = dom, f"{node.op_type}_fn"
    call = helper.make_node(fn.name, node.inputs, node.outputs, name=node.name, domain=dom, **attrs_to_proto(node))
    # attributes the node leaves out take the schema's defaults (a body may refer to them)
    schema = _schema(node.op_type, g.opset, node.domain)
    given = {a.name for a in call.attribute}
    for aname, adef in (schema.attributes.items() if schema is not None else []):
        if aname not in given and adef.default_value.type != onnx.AttributeProto.UNDEFINED:
            d = onnx.AttributeProto()
            d.CopyFrom(adef.default_value)
            d.name = aname
            call.attribute.append(d)
    vin = []
    for i in dict.fromkeys(x for x in node.inputs if x):
        t = g.t(i)
        vin.append(helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(t.dtype), None))
    vout = [helper.make_empty_tensor_value_info(o) for o in node.outputs if o]
    opsets = {imp.domain: imp.version for imp in fn.opset_import}
    opsets[""] = max(opsets.get("", g.opset), g.opset)
    model = helper.make_model(
        helper.make_graph([call], "expand", vin, vout),
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()] + [helper.make_opsetid(dom, 1)],
        functions=[fn],
    )
    from onnx import inliner

    inlined = inliner.inline_local_functions(model)
    tag = next(_counter)
    out: list[Node] = []
    for k, n in enumerate(inlined.graph.node):
        if n.domain not in ("", "ai.onnx"):
            return None
        try:
            nn = node_from_proto(n, f"{node.name}/{n.op_type}_{tag}_{k}")
        except ValueError:
            return None
        nn.origin = [node.name]
        out.append(nn)
    # internal tensor names must not collide with names elsewhere in the graph
    keep = {i for i in node.inputs if i} | {o for o in node.outputs if o}
    rename: dict[str, str] = {}
    for nn in out:
        for j, o in enumerate(nn.outputs):
            if o and o not in keep:
                rename.setdefault(o, g.unique_name(f"{node.name}/{o}_{tag}"))
                nn.outputs[j] = rename[o]
        nn.inputs = [rename.get(i, i) for i in nn.inputs]
    log.debug("%s (%s): expanded into its ONNX function (%d nodes)", node.name, node.op_type, len(out))
    return out


def _low_precision_floats() -> set:
    out = {np.dtype(np.float16)}
    try:
        import ml_dtypes

        out.add(np.dtype(ml_dtypes.bfloat16))
    except ImportError:  # pragma: no cover - ml_dtypes comes with onnx
        pass
    return out


def float16_in_float32(node: Node, g: Graph) -> list[Node] | None:
    """``node`` computed in float32 between Casts when it reads float16 or bfloat16; None otherwise. The Casts
    back restore each output's type (the float32 results of float16 inputs become float16 again)."""
    low = _low_precision_floats()
    ins = [i for i in node.inputs if i and g.t(i).dtype in low]
    if not ins or node.op_type in ("Cast", "CastLike"):
        return None
    tag = next(_counter)
    pre: list[Node] = []
    rename: dict[str, str] = {}
    for i in dict.fromkeys(ins):
        c = g.unique_name(f"{i}_f32_{tag}")
        g.add_tensor(c, np.float32, g.t(i).shape)
        pre.append(Node("Cast", f"{node.name}/to_f32_{i}", [i], [c], {"to": 1}, origin=[node.name]))
        rename[i] = c
    inner = Node(node.op_type, node.name + "/f32", [rename.get(i, i) for i in node.inputs], [], dict(node.attrs),
                 node.domain, origin=[node.name])
    post: list[Node] = []
    back = helper.np_dtype_to_tensor_dtype(g.t(ins[0]).dtype)  # the low-precision type read
    for o in node.outputs:
        if not o:
            inner.outputs.append("")
            continue
        t = g.unique_name(f"{o}_f32_{tag}")
        inner.outputs.append(t)
        # Cast back only what was float16-like: decided once the float32 node's output dtype is known
        post.append(Node("Cast", f"{node.name}/to_f16_{o}", [t], [o], {"to": back, "_if_float32": True},
                         origin=[node.name]))
    return pre + [inner] + post


def conv1x1_as_matmul(node: Node, g: Graph) -> list[Node] | None:
    """A 1x1 Conv (stride 1, no padding, one group) as a MatMul over channels: serves symbolic spatial axes
    (points x neighbours in EdgeConv networks), which the Conv kernels do not take."""
    from .. import dims as D

    if node.op_type != "Conv" or not node.input(1) or not g.is_const(node.input(1)):
        return None
    x, w = g.t(node.inputs[0]), g.const(node.input(1))
    if w.ndim < 3 or x.rank != w.ndim or any(k != 1 for k in w.shape[2:]) or int(node.attrs.get("group", 1)) != 1:
        return None
    if any(int(v) != 1 for v in node.attrs.get("strides", [])) or any(int(v) for v in node.attrs.get("pads", [])):
        return None
    if node.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        return None
    if D.shape_static(x.shape[2:]) or w.shape[1] != x.shape[1]:
        return None
    tag = next(_counter)
    n, c, spatial = x.shape[0], x.shape[1], x.shape[2:]
    m = w.shape[0]

    def const(base: str, value: np.ndarray) -> str:
        name = g.unique_name(f"{node.name}/{base}_{tag}")
        g.add_tensor(name, np.int64 if value.dtype == object else value.dtype, value.shape, value)
        return name

    flat = const("flat", np.array([n, c, D.prod(spatial)], dtype=object))
    back = const("back", np.array([n, m, *spatial], dtype=object))
    w2 = const("w2", np.ascontiguousarray(w.reshape(m, c)))
    x3, y3 = g.unique_name(f"{node.name}/x3_{tag}"), g.unique_name(f"{node.name}/y3_{tag}")
    nodes = [Node("Reshape", f"{node.name}/flatten", [node.inputs[0], flat], [x3], origin=[node.name]),
             Node("MatMul", f"{node.name}/matmul", [w2, x3], [y3], origin=[node.name])]
    if node.input(2):
        b = g.const(node.input(2))
        bias = const("bias", np.ascontiguousarray(b.reshape(m, 1))) if b is not None else None
        if bias is None:
            return None
        yb = g.unique_name(f"{node.name}/yb_{tag}")
        nodes.append(Node("Add", f"{node.name}/bias", [y3, bias], [yb], origin=[node.name]))
        y3 = yb
    nodes.append(Node("Reshape", f"{node.name}/unflatten", [y3, back], [node.outputs[0]], origin=[node.name]))
    return nodes
