"""ONNX model -> :class:`Graph`.

Reads a file or ``ModelProto`` through the ``onnx`` package, converts opsets below 13 to 13, keeps symbolic
dimensions symbolic (an unnamed dynamic dimension gets a name of its own), treats initializers that are also
graph inputs as constants, and lists every node whose operator ml4ep does not know, all at once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Union

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import dims as D
from . import ops as O
from .graph import Graph, Node, SubGraph
from .passes.expand import has_function
from ..errors import ModelLoadError, UnsupportedOperatorError

log = logging.getLogger(__name__)

MIN_OPSET = 13
ModelLike = Union[str, os.PathLike, onnx.ModelProto, bytes]


def load_proto(model: ModelLike) -> tuple[onnx.ModelProto, str]:
    """The ModelProto and a source label for messages (its text fields checked: :func:`_check_text`)."""
    proto, source = _load_proto(model)
    _check_text(proto.graph, source)
    return proto, source


def _check_text(graph: onnx.GraphProto, source: str) -> None:
    """Names and types must be text: protobuf hands text fields that are not valid UTF-8 over as bytes."""
    fields = [("the graph name", graph.name)]
    fields += [(f"a name of graph {kind}s", v.name) for kind, vs in
               (("input", graph.input), ("output", graph.output), ("initializer", graph.initializer)) for v in vs]
    for k, n in enumerate(graph.node):
        fields += [(f"node {k}'s {what}", v) for what, vs in
                   (("name", [n.name]), ("operator", [n.op_type]), ("domain", [n.domain]), ("inputs", n.input),
                    ("outputs", n.output), ("attribute names", [a.name for a in n.attribute])) for v in vs]
        for a in n.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                _check_text(sub, source)
    for what, v in fields:
        if not isinstance(v, str):
            raise ModelLoadError(f"{source}: {what} is not valid UTF-8 text ({bytes(v)[:40]!r}): a damaged model?")


def _load_proto(model: ModelLike) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, (onnx.ModelProto, bytes, bytearray)):
        if isinstance(model, onnx.ModelProto):
            proto, source = model, model.graph.name or "model"
        else:
            try:
                proto, source = onnx.load_from_string(bytes(model)), "model"
            except Exception as exc:  # noqa: BLE001 - protobuf raises several types
                raise ModelLoadError(f"the bytes given are not an ONNX model: {exc}") from exc
        external = [t.name for t in _tensors(proto.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
        if external:  # read from the model's folder, which only its path tells; never from the working directory
            raise ModelLoadError(
                f"{source}: tensors {external[:5]}{' ...' if len(external) > 5 else ''} are stored in external data "
                f"files: pass the model's path (its data is read from the model's folder), or a ModelProto loaded "
                f"with onnx.load(path), which reads the data in")
        return proto, source
    path = Path(model)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a directory, not an ONNX file")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from exc
    if not proto.graph.node and not proto.graph.output:
        raise ModelLoadError(f"{path}: not a valid ONNX model (no graph found)")
    return proto, str(path)


def _tensors(graph: onnx.GraphProto):
    """Every tensor a graph holds: initializers, and attributes of its nodes and of their subgraphs."""
    yield from graph.initializer
    yield from (t.values for t in graph.sparse_initializer)
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _tensors(sub)


def _opset(proto: onnx.ModelProto) -> int:
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _hardmax_as_2d(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Hardmax before opset 13 works on its input coerced to 2-D at ``axis`` (the leading axes as rows); the version
    converter rewrites Softmax and LogSoftmax so (Flatten, op, Reshape) but leaves Hardmax's axis, which from opset
    13 names one axis: write Hardmax out the same way before converting (the main graph and subgraphs)."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())

    def rewrite(graph: onnx.GraphProto) -> None:
        nodes = []
        for k, n in enumerate(graph.node):
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    rewrite(a.g)
                for sub in a.graphs:
                    rewrite(sub)
            if n.op_type != "Hardmax" or n.domain not in ("", "ai.onnx"):
                nodes.append(n)
                continue
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            base = f"{n.name or 'hardmax'}_{k}_2d"
            x, y = n.input[0], n.output[0]
            nodes += [helper.make_node("Shape", [x], [f"{base}_shape"], name=f"{base}_shape"),
                      helper.make_node("Flatten", [x], [f"{base}_flat"], axis=axis, name=f"{base}_flatten"),
                      helper.make_node("Hardmax", [f"{base}_flat"], [f"{base}_max"], axis=1, name=n.name),
                      helper.make_node("Reshape", [f"{base}_max", f"{base}_shape"], [y], name=f"{base}_reshape")]
        del graph.node[:]
        graph.node.extend(nodes)

    rewrite(proto.graph)
    return proto


def _convert(proto: onnx.ModelProto, source: str) -> onnx.ModelProto:
    opset = _opset(proto)
    if opset >= MIN_OPSET:
        return proto
    if opset < 13:
        proto = _hardmax_as_2d(proto)
    try:
        from onnx import version_converter

        log.info("%s: converting opset %d to %d", source, opset, MIN_OPSET)
        converted = version_converter.convert_version(proto, MIN_OPSET)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"{source}: opset {opset} is older than {MIN_OPSET} and could not be converted: {exc}"
        ) from exc
    if opset < 11:
        # the converter keeps the opset-11 defaults (half_pixel); Resize before opset 11 was asymmetric
        for n in converted.graph.node:
            if n.op_type == "Resize":
                have = {a.name for a in n.attribute}
                if "coordinate_transformation_mode" not in have:
                    n.attribute.append(helper.make_attribute("coordinate_transformation_mode", "asymmetric"))
                if "nearest_mode" not in have:
                    n.attribute.append(helper.make_attribute("nearest_mode", "floor"))
    return converted


def _tensor_type(vi: onnx.ValueInfoProto, source: str) -> tuple[np.dtype, list]:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise ModelLoadError(f"{source}: graph input '{vi.name}' is not a tensor")
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
    if not tt.HasField("shape"):
        raise ModelLoadError(f"{source}: graph input '{vi.name}' has no shape; ml4ep needs the rank at least")
    shape: list = []
    for k, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value") and d.dim_value >= 0:
            shape.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            shape.append(D.Dim.symbol(d.dim_param))
        else:
            shape.append(D.Dim.symbol(f"{vi.name}_dim{k}"))
    return dtype, shape


def node_names(gp: onnx.GraphProto) -> list[str]:
    """The IR's node names: the ONNX name, or ``<op>_<index>`` for unnamed nodes, made unique."""
    used: set[str] = set()
    out = []
    for idx, n in enumerate(gp.node):
        nname = n.name or f"{n.op_type}_{idx}"
        while nname in used:
            nname += "_"
        used.add(nname)
        out.append(nname)
    return out


CONTROL_FLOW = ("If", "Loop", "Scan")


def attr_value(a: onnx.AttributeProto):
    """An attribute's value as the IR keeps it: arrays for tensors, str for bytes."""
    v = helper.get_attribute_value(a)
    if isinstance(v, onnx.TensorProto):
        v = numpy_helper.to_array(v)
    elif isinstance(v, bytes):
        v = v.decode()
    elif isinstance(v, list) and v and isinstance(v[0], bytes):
        v = [x.decode() for x in v]
    return v


def _import_node(n: onnx.NodeProto, nname: str, opset: int, scope: dict[str, str],
                 problems: list[tuple[str, str, str]]) -> Node:
    """One node; names in ``scope`` (tensors of enclosing bodies) are renamed as their definitions were."""
    attrs, subgraphs = {}, {}
    for a in n.attribute:
        if a.type == onnx.AttributeProto.GRAPH and n.op_type in CONTROL_FLOW:
            subgraphs[a.name] = _import_body(a.g, f"{nname}/{a.name}", opset, scope, problems)
            continue
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            problems.append((nname, n.op_type, "control flow with subgraphs is not supported"))
            continue
        attrs[a.name] = attr_value(a)
    if n.domain not in ("", "ai.onnx"):
        problems.append((nname, f"{n.domain}.{n.op_type}", f"operator domain '{n.domain}' is not supported"))
    elif O.get(n.op_type) is None and not has_function(n.op_type, opset):
        problems.append((nname, n.op_type, "operator not supported by ml4ep"))
    return Node(n.op_type, nname, [scope.get(i, i) for i in n.input], [scope.get(o, o) for o in n.output],
                attrs, n.domain, origin=[nname], subgraphs=subgraphs)


def _vi_type(vi: onnx.ValueInfoProto) -> tuple:
    tt = vi.type.tensor_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)) if tt.elem_type else None
    shape = None
    if tt.HasField("shape"):
        shape = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in tt.shape.dim)
    return dtype, shape


def _import_body(gp: onnx.GraphProto, prefix: str, opset: int, outer: dict[str, str],
                 problems: list[tuple[str, str, str]]) -> SubGraph:
    """A control-flow body: every name it defines gets the prefix (unique in the model)."""
    scope = dict(outer)
    for vi in gp.input:
        scope[vi.name] = f"{prefix}/{vi.name}"
    consts = {}
    for t in gp.initializer:
        scope[t.name] = f"{prefix}/{t.name}"
        consts[scope[t.name]] = np.asarray(numpy_helper.to_array(t))
    for n in gp.node:
        for o in n.output:
            if o:
                scope[o] = f"{prefix}/{o}"
    nodes = [_import_node(n, f"{prefix}/{nm}", opset, scope, problems)
             for n, nm in zip(gp.node, node_names(gp))]
    return SubGraph([scope[vi.name] for vi in gp.input], [_vi_type(vi) for vi in gp.input],
                    [scope.get(o.name, o.name) for o in gp.output], nodes, consts)


def import_model(model: ModelLike, name: str | None = None) -> Graph:
    proto, source = load_proto(model)
    proto = _convert(proto, source)
    for imp in proto.opset_import:
        if imp.domain not in ("", "ai.onnx"):
            log.debug("%s: opset import of domain '%s' (only used nodes matter)", source, imp.domain)
    if proto.functions:
        # model-local functions are inlined by onnx before import
        try:
            from onnx import inliner

            proto = inliner.inline_local_functions(proto)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"{source}: could not inline its local functions: {exc}") from exc
    gp = proto.graph
    g = Graph(name or (gp.name or "model"), _opset(proto))
    g.source = source

    try:
        inits = {t.name: numpy_helper.to_array(t) for t in gp.initializer}
    except Exception as exc:  # noqa: BLE001 (external data missing, ...)
        raise ModelLoadError(f"{source}: cannot read initializers: {exc}") from exc
    for iname, value in inits.items():
        value = np.asarray(value)
        g.add_tensor(iname, value.dtype, value.shape, value)

    for vi in gp.input:
        if vi.name in inits:
            continue  # an initializer that is also an input: used as a constant
        dtype, shape = _tensor_type(vi, source)
        g.add_tensor(vi.name, dtype, shape)
        g.inputs.append(vi.name)
        for d in shape:
            for s in D.symbols([d]):
                if s not in g.symbols:
                    g.symbols.append(s)

    problems: list[tuple[str, str, str]] = []
    for n, nname in zip(gp.node, node_names(gp)):
        g.nodes.append(_import_node(n, nname, g.opset, {}, problems))

    g.outputs = [o.name for o in gp.output]
    g.output_names = list(g.outputs)
    if problems:
        raise UnsupportedOperatorError(problems, source)
    if not g.outputs:
        raise ModelLoadError(f"{source}: the graph has no outputs")
    return g
