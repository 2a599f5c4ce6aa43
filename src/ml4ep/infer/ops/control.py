"""Control flow: If, Loop and Scan, with their bodies compiled inline.

A body is imported as a :class:`~ml4ep.infer.graph.SubGraph` (names made unique). ``infer`` gives its formal
inputs their types, resolves its nodes like the main graph's (folding, kernels, expansion) and checks what
it produces; ``emit`` prints the body's code inside the C++ ``if``/``for`` that runs it. Body tensors get
storage in the arena like any intermediate, live for the whole control-flow node; values carried from one
iteration to the next are copied into the body's input buffers after each iteration, scan slices are copied
in and out. An If whose condition is known at compile time is inlined by the resolve pass instead.

Loop's scan outputs stack one slice per iteration: their length is a data-dependent dimension bounded by a
constant trip count ``M`` (a loop with scan outputs and a run-time ``M`` is not supported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import register
from .common import node_error, norm_axis
from .. import dims as D
from ..resolve import resolve_nodes
from ...errors import UnsupportedOperatorError

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node, SubGraph



def _resolve_body(node: "Node", g: "Graph", sg: "SubGraph", formal: list[tuple]) -> list[tuple]:
    """Type the formal inputs, resolve the body's nodes; the (dtype, shape) of each body output."""
    if len(formal) != len(sg.inputs):
        raise node_error(node, f"the body takes {len(sg.inputs)} inputs, {len(formal)} are given")
    for name, (dtype, shape), (ddt, _dshape) in zip(sg.inputs, formal, sg.input_types):
        if ddt is not None and np.dtype(ddt) != np.dtype(dtype):
            raise node_error(node, f"body input '{name}' is declared {ddt}, gets {np.dtype(dtype)}")
        g.add_tensor(name, dtype, shape)
    for cname, v in sg.consts.items():
        g.add_tensor(cname, v.dtype, v.shape, v)
    problems: list = []
    unknown: set[str] = set()
    sg.nodes = resolve_nodes(g, sg.nodes, problems, unknown)
    if problems:
        raise UnsupportedOperatorError(problems, g.source)
    out = []
    for o in sg.outputs:
        if o not in g.tensors:
            raise node_error(node, f"body output '{o}' is not produced")
        t = g.t(o)
        out.append((t.dtype, t.shape))
    return out


def _copy(cg: "Emitter", dst: str, src: str, count: str | None = None) -> str:
    if dst == src:
        return ""
    n = count or cg.numel(dst)
    return f"std::memmove({cg.ptr(dst)}, {cg.ptr(src)}, sizeof(*{cg.ptr(dst)}) * size_t({n}));\n"


def _slice_copy(cg: "Emitter", shape: list, axis: int, t: str, to_slice: bool, full: str, part: str) -> str:
    """Copy slice ``t`` along ``axis`` of tensor ``full`` into ``part`` (or back when not ``to_slice``)."""
    outer, ext, inner = D.cpp(D.prod(shape[:axis])), D.cpp(shape[axis]), D.cpp(D.prod(shape[axis + 1:]))
    fp, pp = cg.ptr(full), cg.ptr(part)
    a, b = (pp + " + o * " + inner, f"{fp} + (o * {ext} + ({t})) * {inner}")
    dst, src = (a, b) if to_slice else (b, a)
    return (f"for (int64_t o = 0; o < {outer}; ++o) std::memcpy({dst}, {src}, sizeof(*{fp}) * size_t({inner}));\n")


# If(cond) -> outputs of the branch taken ----------------------------------------------------------------
def _infer_if(node: "Node", g: "Graph"):
    then_t = _resolve_body(node, g, node.subgraphs["then_branch"], [])
    else_t = _resolve_body(node, g, node.subgraphs["else_branch"], [])
    if len(then_t) != len(else_t):
        raise node_error(node, "the branches have different numbers of outputs")
    for k, (a, b) in enumerate(zip(then_t, else_t)):
        if a[0] != b[0] or tuple(a[1]) != tuple(b[1]):
            raise node_error(node, f"output {k} is {a[0]} {D.fmt_shape(a[1])} in one branch and {b[0]} "
                             f"{D.fmt_shape(b[1])} in the other (shapes that depend on the branch are not supported)")
    return then_t


def _emit_if(node: "Node", cg: "Emitter") -> str:
    code = f"if ({cg.ptr(node.inputs[0])}[0]) {{\n"
    for key in ("then_branch", "else_branch"):
        sg = node.subgraphs[key]
        body = cg.emit_nodes(sg.nodes)
        body += "".join(_copy(cg, o, bo) for bo, o in zip(sg.outputs, node.outputs) if o)
        code += "".join("  " + ln + "\n" for ln in body.splitlines()) + ("} else {\n" if key == "then_branch" else "}\n")
    return code


register("If", infer=_infer_if, emit=_emit_if)


# Scan(states..., scan inputs...) -> final states, scan outputs ------------------------------------------
def _scan_params(node: "Node", g: "Graph"):
    m = int(node.attrs["num_scan_inputs"])
    n_state = len(node.inputs) - m
    sg = node.subgraphs["body"]
    k_out = len(sg.outputs) - n_state
    ins = node.inputs[n_state:]
    in_axes = [norm_axis(node, int(a), g.t(i).rank) for a, i in
               zip(node.attrs.get("scan_input_axes", [0] * m), ins)]
    in_dirs = [int(d) for d in node.attrs.get("scan_input_directions", [0] * m)]
    out_dirs = [int(d) for d in node.attrs.get("scan_output_directions", [0] * k_out)]
    out_axes = list(node.attrs.get("scan_output_axes", [0] * k_out))
    return m, n_state, k_out, in_axes, in_dirs, out_axes, out_dirs


def _infer_scan(node: "Node", g: "Graph"):
    if g.opset < 9:
        raise node_error(node, "Scan before opset 9 (with a batch axis) is not supported")
    m, n_state, k_out, in_axes, _, out_axes, _ = _scan_params(node, g)
    ins = node.inputs[n_state:]
    lengths = {g.t(i).shape[a] for i, a in zip(ins, in_axes)}
    if len(lengths) != 1:
        raise node_error(node, f"scan inputs of different lengths {sorted(map(D.fmt, lengths))}")
    T = lengths.pop()
    formal = [(g.t(i).dtype, g.t(i).shape) for i in node.inputs[:n_state]]
    formal += [(g.t(i).dtype, tuple(d for k, d in enumerate(g.t(i).shape) if k != a)) for i, a in zip(ins, in_axes)]
    body = _resolve_body(node, g, node.subgraphs["body"], formal)
    out = []
    for k, (dt, shape) in enumerate(body[:n_state]):
        if dt != formal[k][0] or tuple(shape) != tuple(formal[k][1]):
            raise node_error(node, f"state {k} changes type or shape in the body")
        out.append((dt, shape))
    for (dt, shape), a in zip(body[n_state:], out_axes):
        a = norm_axis(node, int(a), len(shape) + 1)
        out.append((dt, tuple(shape[:a]) + (T,) + tuple(shape[a:])))
    return out


def _emit_scan(node: "Node", cg: "Emitter") -> str:
    g = cg.g
    m, n_state, k_out, in_axes, in_dirs, out_axes, out_dirs = _scan_params(node, g)
    sg = node.subgraphs["body"]
    ins = node.inputs[n_state:]
    T = D.cpp(g.t(ins[0]).shape[in_axes[0]])
    code = "".join(_copy(cg, f, i) for f, i in zip(sg.inputs[:n_state], node.inputs[:n_state]))
    loop = ""
    for f, i, a, d in zip(sg.inputs[n_state:], ins, in_axes, in_dirs):
        loop += _slice_copy(cg, list(g.t(i).shape), a, f"{T} - 1 - t" if d else "t", True, i, f)
    loop += cg.emit_nodes(sg.nodes)
    loop += "".join(_copy(cg, f, bo) for f, bo in zip(sg.inputs[:n_state], sg.outputs[:n_state]))
    for bo, o, a, d in zip(sg.outputs[n_state:], node.outputs[n_state:], out_axes, out_dirs):
        if o:
            shape = list(g.t(o).shape)
            loop += _slice_copy(cg, shape, norm_axis(node, int(a), len(shape)), f"{T} - 1 - t" if d else "t",
                                False, o, bo)
    code += f"for (int64_t t = 0; t < {T}; ++t) {{\n" + "".join("  " + ln + "\n" for ln in loop.splitlines()) + "}\n"
    code += "".join(_copy(cg, o, f) for o, f in zip(node.outputs[:n_state], sg.inputs[:n_state]) if o)
    return code


register("Scan", infer=_infer_scan, emit=_emit_scan)


# Loop(M, cond, carried...) -> final carried values, scan outputs ----------------------------------------
def _infer_loop(node: "Node", g: "Graph"):
    sg = node.subgraphs["body"]
    carried = [i for i in node.inputs[2:]]
    n_c = len(carried)
    k_out = len(sg.outputs) - 1 - n_c
    formal = [(np.dtype(np.int64), ()), (np.dtype(np.bool_), ())]
    formal += [(g.t(i).dtype, g.t(i).shape) for i in carried]
    body = _resolve_body(node, g, sg, formal)
    if body[0][0] != np.bool_:
        raise node_error(node, "the body's condition output is not bool")
    out = []
    for k, (dt, shape) in enumerate(body[1:1 + n_c]):
        if dt != formal[2 + k][0] or tuple(shape) != tuple(formal[2 + k][1]):
            raise node_error(node, f"loop-carried value {k} changes type or shape in the body "
                             f"({D.fmt_shape(formal[2 + k][1])} -> {D.fmt_shape(shape)})")
        out.append((dt, shape))
    if k_out:
        mv = g.const(node.input(0))
        if mv is None or mv.dtype == object:
            raise node_error(node, "scan outputs need a trip count M known at compile time")
        count = g.derived.new_runtime(f"{node.name}_iterations", int(np.asarray(mv).reshape(-1)[0]))
        for dt, shape in body[1 + n_c:]:
            out.append((dt, (count,) + tuple(shape)))
    return out


def _emit_loop(node: "Node", cg: "Emitter") -> str:
    g = cg.g
    sg = node.subgraphs["body"]
    n_c = len(node.inputs) - 2
    it_f, cond_f, car_f = sg.inputs[0], sg.inputs[1], sg.inputs[2:]
    code = "".join(_copy(cg, f, i) for f, i in zip(car_f, node.inputs[2:]))
    mx = f"{cg.ptr(node.input(0))}[0]" if node.input(0) else "std::numeric_limits<int64_t>::max()"
    c0 = f"bool({cg.ptr(node.input(1))}[0])" if node.input(1) else "true"
    code += f"const int64_t trip_max = {mx};\nbool keep_going = {c0};\nint64_t it = 0;\n"
    loop = f"{cg.ptr(it_f)}[0] = it;\n{cg.ptr(cond_f)}[0] = keep_going;\n"
    loop += cg.emit_nodes(sg.nodes)
    loop += f"keep_going = bool({cg.ptr(sg.outputs[0])}[0]);\n"
    loop += "".join(_copy(cg, f, bo) for f, bo in zip(car_f, sg.outputs[1:1 + n_c]))
    scan_outs = list(zip(sg.outputs[1 + n_c:], node.outputs[n_c:]))
    for bo, o in scan_outs:
        if o:
            loop += (f"std::memcpy({cg.ptr(o)} + it * {cg.numel(bo)}, {cg.ptr(bo)}, "
                     f"sizeof(*{cg.ptr(o)}) * size_t({cg.numel(bo)}));\n")
    code += "for (; it < trip_max && keep_going; ++it) {\n" + "".join("  " + ln + "\n" for ln in loop.splitlines())
    code += "}\n"
    if scan_outs:
        count = g.t(next(o for _, o in scan_outs if o) if any(o for _, o in scan_outs) else scan_outs[0][1]).shape[0]
        code += f"{D.cpp(count)} = it;\n"
    code += "".join(_copy(cg, o, f) for o, f in zip(node.outputs[:n_c], car_f) if o)
    return code


register("Loop", infer=_infer_loop, emit=_emit_loop)
