"""Indexing operators: GatherElements, GatherND, ScatterElements (and the opset 9-10 Scatter), ScatterND,
OneHot, Trilu, EyeLike, CumSum, CumProd, TopK and ReverseSequence.

Index tensors may hold negative indices (counted from the end of their axis). An index still out of range
at run time throws ``std::out_of_range`` naming the node (GatherElements, GatherND, ScatterElements,
Scatter, ScatterND, and ReverseSequence for a sequence length outside ``[0, time]``); nothing is read or
written out of bounds. OneHot follows ONNX: an index outside ``[-depth, depth)`` gives a row of
``off`` values.

Scatter reductions (add, mul, max, min) apply the updates one after another in index order, so repeated
indices aggregate (message passing in interaction networks); ``none`` with repeated indices keeps the last
update. Arithmetic is done in ``float`` for the float16/bfloat16 wrapper types, ``double`` for float64 and
the element type itself otherwise.

TopK selects without a full sort: for ``k <= 64`` each row keeps the best ``k`` values in a small sorted
buffer (one comparison with the current worst for most elements), otherwise ``std::partial_sort`` over an
index workspace. Ties go to the lower index, as ONNX specifies; NaN counts as larger than every number.

CUDA (docs/cuda.md): gathers, OneHot, Trilu, EyeLike and ReverseSequence run one thread per output element;
CumSum and CumProd one thread per scanned line. The scatters stay race-free and keep the sequential order of
the CPU code: one thread per output element scanning the updates of its line (small problems), or one thread
per line (ScatterElements) or per element of a slice (ScatterND) applying its updates in order. TopK ranks each
element against its row (one thread per element) for short rows and few of them, else runs the sorted buffer
of the CPU code per row, kept in the outputs themselves. A GPU kernel cannot throw: there an index out of
range is skipped (a scatter leaves the element, a gather writes 0, ReverseSequence copies the sequence as it
is); the host build of the same code (device="cuda-host") throws as the CPU code does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
from onnx import helper

from . import batch_rules as BR, register
from .common import const_ints, cpp_sum, ctype, is_float, mul, node_error, norm_axis, strides
from .. import dims as D
from ..literals import literal
from ...errors import ShapeError
from ..._native.names import string

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

# TopK with k up to this size keeps a sorted buffer per row; larger k uses std::partial_sort
TOPK_BUFFER = 64
# CUDA TopK: one thread per element (its rank in the row) for rows of at most TOPK_RANK_N elements and at most
# TOPK_RANK_THREADS elements in all; otherwise one thread per row
TOPK_RANK_N = 1024
TOPK_RANK_THREADS = 1 << 18
# CUDA scatters: one thread per output element scanning all the updates that may reach it, for at most this many
# output elements; beyond, fewer threads (per line, per element of a slice) applying their updates in order. Both
# take time in proportion to the updates; the scan's threads run in parallel, the others' chains of dependent
# memory accesses (~1000 cycles a step) are long: the scan wins until its total work, that many elements times the
# updates, outweighs such a chain
SCAN_ELEMS = 1 << 21
_INDEX_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))


# ------------------------------------------------------------------------------------------------------
# helpers


def _oor(node: "Node", what: str = "index out of range") -> str:
    """C++ statement throwing std::out_of_range naming the node."""
    return f"throw std::out_of_range({string(f'node {chr(39)}{node.name}{chr(39)} ({node.op_type}): {what}')});"


def _acc(dtype) -> str:
    """C++ type in which values of ``dtype`` are computed."""
    dt = np.dtype(dtype)
    if dt == np.float64:
        return "double"
    if dt.kind == "f" or dt.name == "bfloat16":
        return "float"
    return ctype(dt)


def _sum_acc(dtype) -> str:
    """C++ type in which sums and products of ``dtype`` accumulate: integers unsigned, so that they wrap around
    (signed overflow is undefined in C++); the result is converted back to the type."""
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        return "uint64_t" if dt.itemsize > 4 else "uint32_t"
    return _acc(dt)





def _indent(code: str, ind: str = "  ") -> str:
    return "".join(ind + line + "\n" if line else "\n" for line in code.splitlines())


def _merge_axes(extents: Sequence, arrays: Sequence[Sequence]) -> list[tuple]:
    """``(extent, [stride per array])`` per loop: axes of extent 1 dropped, neighbours that are contiguous for every
    array merged."""
    axes = [(e, [s[a] for s in arrays]) for a, e in enumerate(extents) if e != 1]
    merged: list[tuple] = []
    for e, st in axes:
        if merged:
            pe, pst = merged[-1]
            if all(D.norm(s * e) == ps for s, ps in zip(st, pst)):
                merged[-1] = (D.norm(pe * e), st)
                continue
        merged.append((e, st))
    return merged


def _unflatten(var: str, extents: Sequence, arrays: Sequence[Sequence], prefix: str = "") -> tuple[str, list[str]]:
    """The offsets, one per array (its strides per axis, 0 = constant), of the flat row-major index ``var`` over
    ``extents``: ``(C++ lines declaring the coordinates they need, offset expressions)``. The kernel form of
    :func:`_nest`."""
    merged = _merge_axes(extents, arrays)
    n_arr = len(arrays)
    if not merged:
        return "", ["0"] * n_arr
    if len(merged) == 1:
        return "", [mul(var, st) for st in merged[0][1]]
    used = [any(st != 0 for st in m[1]) for m in merged]
    code = ""
    coords = [""] * len(merged)
    rest = var
    for lvl in range(len(merged) - 1, 0, -1):
        e = D.cpp(merged[lvl][0])
        if used[lvl]:
            coords[lvl] = f"{prefix}c{lvl}"
            code += f"const int64_t {coords[lvl]} = {rest} % {e};\n"
        if any(used[:lvl]):
            q = f"{prefix}q{lvl}"
            code += f"const int64_t {q} = {rest} / {e};\n"
            rest = q
        else:
            break
    coords[0] = rest
    offs = [cpp_sum([mul(coords[lvl], merged[lvl][1][k]) for lvl in range(len(merged)) if used[lvl]])
            for k in range(n_arr)]
    return code, offs


def _nest(extents: Sequence, arrays: Sequence[Sequence], body_fn, prefix: str = "") -> str:
    """Nested loops over ``extents`` with one running offset per array (its strides per axis, 0 = constant).

    Axes of extent 1 are dropped and neighbours that are contiguous for every array merged.
    ``body_fn(offsets)`` gets the C++ offset expressions and returns the loop body.
    """
    merged = _merge_axes(extents, arrays)
    n_arr = len(arrays)
    offs = ["0"] * n_arr
    code = ""
    ind = ""
    for lvl, (e, st) in enumerate(merged):
        v = f"{prefix}i{lvl}"
        code += f"{ind}for (int64_t {v} = 0; {v} < {D.cpp(e)}; ++{v}) {{\n"
        ind += "  "
        new = []
        for k in range(n_arr):
            expr = cpp_sum([offs[k], mul(v, st[k])])
            name = f"{prefix}o{k}_{lvl}"
            if expr == offs[k]:
                new.append(offs[k])
            else:
                code += f"{ind}const int64_t {name} = {expr};\n"
                new.append(name)
        offs = new
    code += _indent(body_fn(offs), ind) if ind else body_fn(offs)
    for lvl in range(len(merged) - 1, -1, -1):
        code += "  " * lvl + "}\n"
    return code


def _at(off: str, extra: str) -> str:
    return cpp_sum([off, extra])


def _oor_in_kernel(node: "Node", fallback: str | None, what: str = "index out of range", cg: "Emitter | None" = None) -> str:
    """C++ statement for an index out of range: the CPU code throws (``fallback`` None); a CUDA kernel, which
    cannot, reports the error (``cg.kernel_error``: infer raises it as the CPU code would) and runs ``fallback``
    (skip the element: no access out of bounds)."""
    if fallback is None or cg is None:
        return _oor(node, what)
    msg = f"node '{node.name}' ({node.op_type}): {what}"
    return "{ " + cg.kernel_error(msg) + " " + fallback + " }"


def _norm_index(node: "Node", var: str, src: str, n, fallback: str | None = None, cg: "Emitter | None" = None) -> str:
    """C++ lines: ``int64_t var`` = the index read from ``src``, made non-negative and bounds-checked
    (``fallback``: in a CUDA kernel, what an index out of range does, :func:`_oor_in_kernel`)."""
    n_c = D.cpp(n)
    return (f"int64_t {var} = static_cast<int64_t>({src});\n"
            f"if ({var} < 0) {var} += {n_c};\n"
            f"if ({var} < 0 || {var} >= {n_c}) {_oor_in_kernel(node, fallback, cg=cg)}\n")


def _copy_data(cg: "Emitter", x: str, y: str) -> str:
    if cg.same_storage(x, y):
        return ""
    return cg.copy(cg.ptr(y), cg.ptr(x), f"sizeof({cg.ctype(y)}) * size_t({cg.numel(y)})")


def _branch(bounds: Sequence[tuple], first: str, second: str) -> str:
    """``first`` where every dimension expression of ``bounds`` ``(expr, limit)`` is at most its limit, else
    ``second``: decided here where the expressions are static, by the host at run time where not."""
    conds = []
    for e, lim in bounds:
        e = D.norm(e)
        if D.is_static(e):
            if int(e) > lim:
                return second
            continue
        conds.append(f"{D.cpp(e)} <= {lim}")
    if not conds:
        return first
    return f"if ({' && '.join(conds)}) {{\n" + _indent(first) + "} else {\n" + _indent(second) + "}\n"


def _check_indices_dtype(node: "Node", g: "Graph", k: int, allowed=_INDEX_DTYPES) -> str | None:
    t = g.tensors.get(node.input(k))
    if t is not None and t.dtype not in allowed:
        return f"indices of dtype {t.dtype} are not supported ({', '.join(str(a) for a in allowed)})"
    return None


# reductions of the scatter ops: C++ statement updating ``dst`` with ``src`` (both lvalues of type T)
def _reduce_stmt(reduction: str, dtype, dst: str, src: str) -> str:
    ct = ctype(dtype)
    if reduction == "none":
        return f"{dst} = {src};"
    a = _sum_acc(dtype) if reduction in ("add", "mul") else _acc(dtype)
    x, u = f"static_cast<{a}>({dst})", f"static_cast<{a}>({src})"
    expr = {
        "add": f"{x} + {u}",
        "mul": f"{x} * {u}",
        "max": f"std::max({x}, {u})",
        "min": f"std::min({x}, {u})",
    }[reduction]
    return f"{dst} = static_cast<{ct}>({expr});"


def _reduction(node: "Node") -> str:
    r = node.attr("reduction", "none")
    return r.decode() if isinstance(r, bytes) else str(r)


def _check_reduction(node: "Node", g: "Graph") -> str | None:
    r = _reduction(node)
    if r not in ("none", "add", "mul", "max", "min"):
        return f"reduction '{r}' is not supported (none, add, mul, max, min)"
    t = g.tensors.get(node.input(0))
    if r != "none" and t is not None and t.dtype == np.bool_:
        return f"reduction '{r}' on bool data is not supported"
    return None


# ------------------------------------------------------------------------------------------------------
# GatherElements, ScatterElements, Scatter

def _elem_axis(node: "Node", rank: int) -> int:
    return norm_axis(node, int(node.attr("axis", 0)), rank)


def _check_elements_shapes(node: "Node", data: tuple, ind: tuple, axis: int) -> None:
    if len(ind) != len(data):
        raise node_error(node, f"indices rank {len(ind)} differs from data rank {len(data)}")
    for a, (di, dd) in enumerate(zip(ind, data)):
        if a == axis or di == dd:
            continue
        try:
            bad = di > dd
        except D.SymbolicError:  # decided at run time (_shape_guard)
            bad = False
        if bad:
            raise node_error(node, f"indices shape {D.fmt_shape(ind)} exceeds data shape {D.fmt_shape(data)} on axis {a}")


def _shape_guard(node: "Node", data: list, ind: list, axis: int) -> str:
    """Run-time checks of the indices dims that may exceed the data dims (symbolic ones)."""
    code = ""
    for a, (di, dd) in enumerate(zip(ind, data)):
        if a != axis and di != dd and not (D.is_static(di) and D.is_static(dd)):
            code += f"if ({D.cpp(di)} > {D.cpp(dd)}) {_oor(node, f'indices dim {a} exceeds the data dim')}\n"
    return code


def _infer_gather_elements(node: "Node", g: "Graph"):
    t, ind = g.t(node.inputs[0]), g.t(node.inputs[1])
    if t.rank == 0:
        raise node_error(node, "data must have rank >= 1")
    axis = _elem_axis(node, t.rank)
    _check_elements_shapes(node, t.shape, ind.shape, axis)
    return [(t.dtype, ind.shape)]


def _emit_gather_elements(node: "Node", cg: "Emitter") -> str:
    x, ind, y = node.inputs[0], node.inputs[1], node.outputs[0]
    xs, isx = cg.shape(x), cg.shape(ind)
    if D.prod(isx) == 0:
        return ""
    axis = _elem_axis(node, len(xs))
    xst, ist = strides(xs), strides(isx)
    dstride = list(xst)
    dstride[axis] = 0  # the index replaces the loop variable on the axis
    xp, ip, yp = cg.ptr(x), cg.ptr(ind), cg.ptr(y)

    def body(offs):
        return (_norm_index(node, "k", f"{ip}[{offs[1]}]", xs[axis])
                + f"{yp}[{offs[1]}] = {xp}[{_at(offs[0], mul('k', xst[axis]))}];\n")

    return _shape_guard(node, xs, isx, axis) + _nest(isx, [dstride, ist], body)


def _infer_scatter_elements(node: "Node", g: "Graph"):
    t, ind, upd = g.t(node.inputs[0]), g.t(node.inputs[1]), g.t(node.inputs[2])
    if t.rank == 0:
        raise node_error(node, "data must have rank >= 1")
    axis = _elem_axis(node, t.rank)
    if tuple(upd.shape) != tuple(ind.shape):
        raise node_error(node, f"updates shape {D.fmt_shape(upd.shape)} differs from indices shape "
                         f"{D.fmt_shape(ind.shape)}")
    if upd.dtype != t.dtype:
        raise node_error(node, f"updates dtype {upd.dtype} differs from data dtype {t.dtype}")
    _check_elements_shapes(node, t.shape, ind.shape, axis)
    return [(t.dtype, t.shape)]


def _emit_scatter_elements(node: "Node", cg: "Emitter") -> str:
    x, ind, upd, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    xs, isx = cg.shape(x), cg.shape(ind)
    code = _copy_data(cg, x, y)
    if D.prod(isx) == 0:
        return code
    axis = _elem_axis(node, len(xs))
    xst, ist = strides(xs), strides(isx)
    dstride = list(xst)
    dstride[axis] = 0
    ip, up, yp = cg.ptr(ind), cg.ptr(upd), cg.ptr(y)
    red = _reduction(node)

    def body(offs):
        dst = f"{yp}[{_at(offs[0], mul('k', xst[axis]))}]"
        return (_norm_index(node, "k", f"{ip}[{offs[1]}]", xs[axis])
                + _reduce_stmt(red, cg.dtype(y), dst, f"{up}[{offs[1]}]") + "\n")

    return code + _shape_guard(node, xs, isx, axis) + _nest(isx, [dstride, ist], body)


def _emit_gather_elements_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per output element."""
    x, ind, y = node.inputs[0], node.inputs[1], node.outputs[0]
    xs, isx = cg.shape(x), cg.shape(ind)
    if D.prod(isx) == 0:
        return ""
    axis = _elem_axis(node, len(xs))
    xst = strides(xs)
    dstride = list(xst)
    dstride[axis] = 0  # the index replaces the coordinate on the axis
    xp, ip, yp = cg.ptr(x), cg.ptr(ind), cg.ptr(y)
    split, (doff,) = _unflatten("i", isx, [dstride])  # the indices and the output: offset i
    body = (split + _norm_index(node, "k", f"{ip}[i]", xs[axis], f"{yp}[i] = {cg.ctype(y)}(); return;", cg)
            + f"{yp}[i] = {xp}[{_at(doff, mul('k', xst[axis]))}];\n")
    return _shape_guard(node, xs, isx, axis) + cg.par_for("i", D.prod(isx), body)


def _emit_scatter_elements_cuda(node: "Node", cg: "Emitter") -> str:
    """Race-free, in the CPU code's order: the updates of a line (the index coordinates but the axis) only reach
    the same line of the output. Small problems: one thread per output element of the lines, scanning the line's
    updates for its position; larger: one thread per line applying its updates in order."""
    x, ind, upd, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    xs, isx = cg.shape(x), cg.shape(ind)
    code = _copy_data(cg, x, y)
    if D.prod(isx) == 0:
        return code
    axis = _elem_axis(node, len(xs))
    xst, ist = strides(xs), strides(isx)
    n_upd, n_out = isx[axis], xs[axis]
    ip, up, yp, dt = cg.ptr(ind), cg.ptr(upd), cg.ptr(y), cg.dtype(y)
    red = _reduction(node)
    # one thread per line
    lines = list(isx)
    lines[axis] = 1
    split, (db, ib) = _unflatten("t", lines, [xst, ist])
    src = cpp_sum([ib, mul("j", ist[axis])])
    step = (_norm_index(node, "k", f"{ip}[{src}]", n_out, "continue;", cg)
            + _reduce_stmt(red, dt, f"{yp}[{_at(db, mul('k', xst[axis]))}]", f"{up}[{src}]") + "\n")
    per_line = cg.par_for("t", D.prod(lines), split + f"for (int64_t j = 0; j < {D.cpp(n_upd)}; ++j) {{\n"
                          + _indent(step) + "}\n")
    # one thread per output element of the lines
    elems = list(isx)
    elems[axis] = n_out
    ist0 = list(ist)
    ist0[axis] = 0
    at_axis = [0] * len(xs)
    at_axis[axis] = 1
    split, (do, io, pos) = _unflatten("t", elems, [xst, ist0, at_axis])
    src = cpp_sum([io, mul("j", ist[axis])])
    step = (_norm_index(node, "k", f"{ip}[{src}]", n_out, "continue;", cg)
            + f"if (k == {pos}) " + _reduce_stmt(red, dt, "acc", f"{up}[{src}]") + "\n")
    per_elem = cg.par_for("t", D.prod(elems), split + f"{cg.ctype(y)} acc = {yp}[{do}];\n"
                          f"for (int64_t j = 0; j < {D.cpp(n_upd)}; ++j) {{\n" + _indent(step) + "}\n"
                          f"{yp}[{do}] = acc;\n")
    return code + _shape_guard(node, xs, isx, axis) + _branch([(D.prod(elems), SCAN_ELEMS)], per_elem, per_line)


def _check_gather_elements(node: "Node", g: "Graph"):
    return _check_indices_dtype(node, g, 1)


def _check_scatter_elements(node: "Node", g: "Graph"):
    return _check_indices_dtype(node, g, 1) or _check_reduction(node, g)


def _batch_gather_elements(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule: data, indices (and updates) hold the batch on the same axis, the operator works on another."""
    return ins[0] is not None and BR.same_axis_not(BR.axis_attr(node, in_rank[0], 0), ins, outs)


def _batch_scatter_elements(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule: as GatherElements, with data, indices and updates all batched."""
    return all(a is not None for a in ins[:3]) and _batch_gather_elements(node, g, ins, outs, in_rank, out_rank)


register("GatherElements", infer=_infer_gather_elements, emit=_emit_gather_elements,
         check=_check_gather_elements, batch=_batch_gather_elements, cuda=_emit_gather_elements_cuda)
register("ScatterElements", infer=_infer_scatter_elements, emit=_emit_scatter_elements,
         check=_check_scatter_elements, batch=_batch_scatter_elements, cuda=_emit_scatter_elements_cuda)
register("Scatter", infer=_infer_scatter_elements, emit=_emit_scatter_elements, check=_check_scatter_elements,
         cuda=_emit_scatter_elements_cuda)


# ------------------------------------------------------------------------------------------------------
# GatherND, ScatterND

def _nd_parts(node: "Node", data: tuple, ind: tuple, b: int) -> int:
    """Validates the shapes; returns m, the length of an index tuple."""
    if len(ind) < 1 or len(data) < 1:
        raise node_error(node, "data and indices must have rank >= 1")
    m = ind[-1]
    if not D.is_static(m):
        raise node_error(node, "the last dimension of indices must be static")
    m = int(m)
    if not 0 <= b < min(len(ind), len(data)):
        raise node_error(node, f"batch_dims {b} out of range")
    if tuple(ind[:b]) != tuple(data[:b]):
        raise node_error(node, f"batch dimensions of indices {D.fmt_shape(ind)} and data {D.fmt_shape(data)} differ")
    if b + m > len(data):
        raise node_error(node, f"index tuples of length {m} exceed data rank {len(data)} (batch_dims {b})")
    return m


def _infer_gathernd(node: "Node", g: "Graph"):
    t, ind = g.t(node.inputs[0]), g.t(node.inputs[1])
    b = int(node.attr("batch_dims", 0))
    m = _nd_parts(node, t.shape, ind.shape, b)
    return [(t.dtype, tuple(ind.shape[:-1]) + tuple(t.shape[b + m:]))]


def _nd_offset(node: "Node", xs: list, first: int, m: int, ip: str, ioff: str, fallback: str | None = None,
               cg: "Emitter | None" = None) -> str:
    """C++ lines computing ``int64_t off`` of the index tuple at ip[ioff:ioff+m] over data axes first..first+m
    (``fallback``: in a CUDA kernel, what an index out of range does)."""
    xst = strides(xs)
    code = "int64_t off = 0;\n"
    for j in range(m):
        code += "{\n" + _indent(_norm_index(node, "k", f"{ip}[{_at(ioff, str(j))}]", xs[first + j], fallback, cg)
                                + f"off += {mul('k', xst[first + j])};\n") + "}\n"
    return code


def _gathernd_dims(node: "Node", cg: "Emitter") -> tuple[int, int, D.DimLike, D.DimLike, D.DimLike]:
    """GatherND's ``(b, m, nb, nq, inner)``: ``b`` batch axes (``nb`` batches), index tuples of ``m`` entries
    (``nq`` of them per batch), each selecting a slice of ``inner`` elements."""
    xs, isx = cg.shape(node.inputs[0]), cg.shape(node.inputs[1])
    b = int(node.attr("batch_dims", 0))
    m = int(isx[-1])
    return b, m, D.prod(xs[:b]), D.prod(isx[b:-1]), D.prod(xs[b + m:])


def _emit_gathernd(node: "Node", cg: "Emitter") -> str:
    x, ind, y = node.inputs[0], node.inputs[1], node.outputs[0]
    xs = cg.shape(x)
    b, m, nb, nq, inner = _gathernd_dims(node, cg)
    if D.norm(nb * nq * inner) == 0:
        return ""
    bstride = D.prod(xs[b:])
    xp, ip, yp, ct = cg.ptr(x), cg.ptr(ind), cg.ptr(y), cg.ctype(y)
    body = (f"const int64_t q = {cpp_sum([mul('bb', nq), 'j'])};\n"
            + _nd_offset(node, xs, b, m, ip, mul("q", m)))
    src = cpp_sum([mul("bb", bstride), "off"])
    if inner == 1:
        body += f"{yp}[q] = {xp}[{src}];\n"
    else:
        body += (f"std::memcpy({yp} + {mul('q', inner)}, {xp} + {src}, "
                 f"sizeof({ct}) * size_t({D.cpp(inner)}));\n")
    loop = f"for (int64_t j = 0; j < {D.cpp(nq)}; ++j) {{\n" + _indent(body) + "}\n"
    return f"for (int64_t bb = 0; bb < {D.cpp(nb)}; ++bb) {{\n" + _indent(loop) + "}\n"


def _emit_gathernd_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per output element (its index tuple read by each thread of the slice)."""
    x, ind, y = node.inputs[0], node.inputs[1], node.outputs[0]
    xs = cg.shape(x)
    b, m, nb, nq, inner = _gathernd_dims(node, cg)
    total = D.norm(nb * nq * inner)
    if total == 0:
        return ""
    xp, ip, yp = cg.ptr(x), cg.ptr(ind), cg.ptr(y)
    body = ""
    if inner != 1:
        body += f"const int64_t e = f % {D.cpp(inner)};\n"
    bb = "" if nb == 1 else ("q" if nq == 1 else f"(q / {D.cpp(nq)})")
    if m or bb:  # the index tuple q (of batch q / nq)
        body += f"const int64_t q = {'f' if inner == 1 else f'f / {D.cpp(inner)}'};\n"
    body += _nd_offset(node, xs, b, m, ip, mul("q", m), f"{yp}[f] = {cg.ctype(y)}(); return;", cg)
    src = cpp_sum([mul(bb, D.prod(xs[b:])) if bb else "", "off", "e" if inner != 1 else ""])
    body += f"{yp}[f] = {xp}[{src}];\n"
    return cg.par_for("f", total, body)


def _infer_scatternd(node: "Node", g: "Graph"):
    t, ind, upd = g.t(node.inputs[0]), g.t(node.inputs[1]), g.t(node.inputs[2])
    m = _nd_parts(node, t.shape, ind.shape, 0)
    want = tuple(ind.shape[:-1]) + tuple(t.shape[m:])
    if tuple(upd.shape) != want:
        raise node_error(node, f"updates shape {D.fmt_shape(upd.shape)} != {D.fmt_shape(want)} "
                         "(indices.shape[:-1] + data.shape[m:])")
    if upd.dtype != t.dtype:
        raise node_error(node, f"updates dtype {upd.dtype} differs from data dtype {t.dtype}")
    return [(t.dtype, t.shape)]


def _scatternd_dims(node: "Node", cg: "Emitter") -> tuple[int, D.DimLike, D.DimLike]:
    """ScatterND's ``(m, nq, inner)``: ``nq`` index tuples of ``m`` entries, each updating a slice of ``inner``
    elements."""
    xs, isx = cg.shape(node.inputs[0]), cg.shape(node.inputs[1])
    m = int(isx[-1])
    return m, D.prod(isx[:-1]), D.prod(xs[m:])


def _emit_scatternd(node: "Node", cg: "Emitter") -> str:
    x, ind, upd, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    xs = cg.shape(x)
    code = _copy_data(cg, x, y)
    m, nq, inner = _scatternd_dims(node, cg)
    if D.norm(nq * inner) == 0:
        return code
    ip, up, yp = cg.ptr(ind), cg.ptr(upd), cg.ptr(y)
    red = _reduction(node)
    body = _nd_offset(node, xs, 0, m, ip, mul("j", m))
    if inner == 1:
        body += _reduce_stmt(red, cg.dtype(y), f"{yp}[off]", f"{up}[j]") + "\n"
    elif red == "none":
        body += (f"std::memcpy({yp} + off, {up} + {mul('j', inner)}, "
                 f"sizeof({cg.ctype(y)}) * size_t({D.cpp(inner)}));\n")
    else:
        body += (f"{cg.ctype(y)}* __restrict yr = {yp} + off;\n"
                 f"const {cg.ctype(y)}* __restrict ur = {up} + {mul('j', inner)};\n"
                 f"for (int64_t i = 0; i < {D.cpp(inner)}; ++i) "
                 + _reduce_stmt(red, cg.dtype(y), "yr[i]", "ur[i]") + "\n")
    return code + f"for (int64_t j = 0; j < {D.cpp(nq)}; ++j) {{\n" + _indent(body) + "}\n"


def _emit_scatternd_cuda(node: "Node", cg: "Emitter") -> str:
    """Race-free, in the CPU code's order: small problems one thread per output element, scanning every index tuple
    for its slice; larger ones one thread per element of a slice (``inner`` of them), applying the updates of
    every tuple in order (one thread in all for element updates)."""
    x, ind, upd, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    xs = cg.shape(x)
    code = _copy_data(cg, x, y)
    m, nq, inner = _scatternd_dims(node, cg)
    if D.norm(nq * inner) == 0:
        return code
    ip, up, yp, dt = cg.ptr(ind), cg.ptr(upd), cg.ptr(y), cg.dtype(y)
    red = _reduction(node)
    u = f"{up}[{cpp_sum([mul('j', inner), 'e'])}]"
    # one thread per element of a slice
    step = _nd_offset(node, xs, 0, m, ip, mul("j", m), "continue;", cg) + _reduce_stmt(red, dt, f"{yp}[off + e]", u) + "\n"
    per_col = cg.par_for("e", inner, f"for (int64_t j = 0; j < {D.cpp(nq)}; ++j) {{\n" + _indent(step) + "}\n")
    # one thread per output element
    step = (_nd_offset(node, xs, 0, m, ip, mul("j", m), "continue;", cg)
            + "if (off == start) " + _reduce_stmt(red, dt, "acc", u) + "\n")
    head = (f"const int64_t e = f % {D.cpp(inner)};\nconst int64_t start = f - e;\n" if inner != 1
            else "const int64_t e = 0, start = f;\n")
    per_elem = cg.par_for("f", cg.g.t(x).numel, head + f"{cg.ctype(y)} acc = {yp}[f];\n"
                          f"for (int64_t j = 0; j < {D.cpp(nq)}; ++j) {{\n" + _indent(step) + "}\n"
                          f"{yp}[f] = acc;\n")
    return code + _branch([(cg.g.t(x).numel, SCAN_ELEMS)], per_elem, per_col)


def _check_gathernd(node: "Node", g: "Graph"):
    return _check_indices_dtype(node, g, 1)


def _check_scatternd(node: "Node", g: "Graph"):
    return _check_indices_dtype(node, g, 1) or _check_reduction(node, g)


register("GatherND", infer=_infer_gathernd, emit=_emit_gathernd, check=_check_gathernd, cuda=_emit_gathernd_cuda)
register("ScatterND", infer=_infer_scatternd, emit=_emit_scatternd, check=_check_scatternd,
         cuda=_emit_scatternd_cuda)


# ------------------------------------------------------------------------------------------------------
# OneHot

def _onehot_axis(node: "Node", rank: int) -> int:
    axis = int(node.attr("axis", -1))
    if not -rank - 1 <= axis <= rank:
        raise node_error(node, f"axis {axis} out of range for indices of rank {rank}")
    return axis + rank + 1 if axis < 0 else axis


def _onehot_depth(node: "Node", g: "Graph") -> int:
    v = g.const(node.input(1))
    if v is None:
        raise node_error(node, "depth must be known at compile time")
    d = np.asarray(v).reshape(-1)
    if d.size != 1 or d.dtype == object:
        raise node_error(node, "depth must be a static scalar")
    depth = int(d[0])
    if depth < 0:
        raise node_error(node, f"depth {depth} is negative")
    return depth


def _infer_onehot(node: "Node", g: "Graph"):
    ind, vals = g.t(node.inputs[0]), g.t(node.inputs[2])
    depth = _onehot_depth(node, g)
    if vals.numel != 2:
        raise node_error(node, f"values must hold 2 elements (off, on), got shape {D.fmt_shape(vals.shape)}")
    axis = _onehot_axis(node, ind.rank)
    return [(vals.dtype, tuple(ind.shape[:axis]) + (depth,) + tuple(ind.shape[axis:]))]


def _emit_onehot(node: "Node", cg: "Emitter") -> str:
    ind, vals, y = node.inputs[0], node.inputs[2], node.outputs[0]
    depth = _onehot_depth(node, cg.g)
    isx = cg.shape(ind)
    axis = _onehot_axis(node, len(isx))
    outer, inner = D.prod(isx[:axis]), D.prod(isx[axis:])
    if D.norm(outer * inner) == 0 or depth == 0:
        return ""
    ip, vp, yp = cg.ptr(ind), cg.ptr(vals), cg.ptr(y)
    read = f"{ip}[{cpp_sum([mul('o', inner), 'i'])}]"
    if is_float(cg.dtype(ind)):  # ONNX casts float indices to integers (truncation)
        read = f"ml4ep_rt::to_index(static_cast<double>({read}))"  # NaN: far outside, no position set
    return (
        f"const {cg.ctype(y)} off_v = {vp}[0], on_v = {vp}[1];\n"
        f"for (int64_t q = 0; q < {cg.numel(y)}; ++q) {cg.ptr(y)}[q] = off_v;\n"
        f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o)\n"
        f"  for (int64_t i = 0; i < {D.cpp(inner)}; ++i) {{\n"
        f"    int64_t k = static_cast<int64_t>({read});\n"
        f"    if (k < 0) k += {depth};\n"
        f"    if (k >= 0 && k < {depth}) {yp}[{cpp_sum([mul('o', D.norm(depth * inner)), mul('k', inner), 'i'])}]"
        " = on_v;\n"
        "  }\n"
    )


def _emit_onehot_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per output element: ``on`` where the index is its position on the axis, else ``off``."""
    ind, vals, y = node.inputs[0], node.inputs[2], node.outputs[0]
    depth = _onehot_depth(node, cg.g)
    isx = cg.shape(ind)
    axis = _onehot_axis(node, len(isx))
    outer, inner = D.prod(isx[:axis]), D.prod(isx[axis:])
    if D.norm(outer * inner) == 0 or depth == 0:
        return ""
    ip, vp, yp = cg.ptr(ind), cg.ptr(vals), cg.ptr(y)
    split, (src, pos) = _unflatten("f", [outer, depth, inner], [[inner, 0, 1], [0, 1, 0]])
    read = f"{ip}[{src}]"
    if is_float(cg.dtype(ind)):  # ONNX casts float indices to integers (truncation)
        read = f"ml4ep_rt::to_index(static_cast<double>({read}))"  # NaN: far outside, no position set
    return cg.par_for("f", cg.g.t(y).numel, split + f"int64_t k = static_cast<int64_t>({read});\n"
                      f"if (k < 0) k += {depth};\n"
                      f"{yp}[f] = k == {pos} ? {vp}[1] : {vp}[0];\n")


def _check_onehot(node: "Node", g: "Graph"):
    t = g.tensors.get(node.input(0))
    if t is not None and np.dtype(t.dtype) == np.bool_:
        return "bool indices are not supported"
    return None


register("OneHot", infer=_infer_onehot, emit=_emit_onehot, check=_check_onehot, const_inputs=(1,),
         shape_inputs=(), cuda=_emit_onehot_cuda)


# ------------------------------------------------------------------------------------------------------
# Trilu, EyeLike

def _trilu_k(node: "Node", g: "Graph") -> int:
    if not node.input(1):
        return 0
    v = const_ints(node, g, 1, "k")
    if not v or len(v) != 1 or not D.is_static(v[0]):
        raise node_error(node, "k must be a static scalar")
    return int(v[0])


def _infer_trilu(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    if t.rank < 2:
        raise node_error(node, "input must have rank >= 2")
    _trilu_k(node, g)
    return [(t.dtype, t.shape)]


def _emit_trilu(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    xs = cg.shape(x)
    k = _trilu_k(node, cg.g)
    rows, cols = xs[-2], xs[-1]
    batch = D.prod(xs[:-2])
    if D.norm(batch * rows * cols) == 0:
        return ""
    upper = int(node.attr("upper", 1)) != 0
    keep = f"j - r >= {k}" if upper else f"j - r <= {k}"
    xp, yp = cg.ptr(x), cg.ptr(y)
    zero = literal(0, cg.dtype(y))
    mat = D.norm(rows * cols)
    return (
        f"for (int64_t b = 0; b < {D.cpp(batch)}; ++b)\n"
        f"  for (int64_t r = 0; r < {D.cpp(rows)}; ++r) {{\n"
        f"    const int64_t o = {cpp_sum([mul('b', mat), mul('r', cols)])};\n"
        f"    for (int64_t j = 0; j < {D.cpp(cols)}; ++j) {yp}[o + j] = ({keep}) ? {xp}[o + j] : {zero};\n"
        "  }\n"
    )


def _emit_trilu_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per element."""
    x, y = node.inputs[0], node.outputs[0]
    xs = cg.shape(x)
    k = _trilu_k(node, cg.g)
    rows, cols = xs[-2], xs[-1]
    total = D.norm(D.prod(xs[:-2]) * rows * cols)
    if total == 0:
        return ""
    upper = int(node.attr("upper", 1)) != 0
    keep = f"j - r >= {k}" if upper else f"j - r <= {k}"
    split = (f"const int64_t j = f % {D.cpp(cols)};\n"
             f"const int64_t r = {'0' if rows == 1 else f'(f / {D.cpp(cols)}) % {D.cpp(rows)}'};\n")
    return cg.par_for("f", total, split + f"{cg.ptr(y)}[f] = ({keep}) ? {cg.ptr(x)}[f] : {literal(0, cg.dtype(y))};\n")


# k is a value, not a shape: the batch size there would change the result with the chunk size
register("Trilu", infer=_infer_trilu, emit=_emit_trilu, const_inputs=(1,), shape_inputs=(), cuda=_emit_trilu_cuda)


def _eyelike_dtype(node: "Node", g: "Graph"):
    dt = node.attr("dtype")
    if dt is None:
        return g.t(node.inputs[0]).dtype
    return np.dtype(helper.tensor_dtype_to_np_dtype(int(dt)))


def _infer_eyelike(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    if t.rank != 2:
        raise node_error(node, f"input must have rank 2, got {t.rank}")
    return [(_eyelike_dtype(node, g), t.shape)]


def _emit_eyelike(node: "Node", cg: "Emitter") -> str:
    y = node.outputs[0]
    rows, cols = cg.shape(y)
    if D.norm(rows * cols) == 0:
        return ""
    k = int(node.attr("k", 0))
    dt = cg.dtype(y)
    return (
        f"for (int64_t r = 0; r < {D.cpp(rows)}; ++r)\n"
        f"  for (int64_t j = 0; j < {D.cpp(cols)}; ++j) {cg.ptr(y)}[{cpp_sum([mul('r', cols), 'j'])}] = "
        f"(j - r == {k}) ? {literal(1, dt)} : {literal(0, dt)};\n"
    )


def _emit_eyelike_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per element."""
    y = node.outputs[0]
    rows, cols = cg.shape(y)
    if D.norm(rows * cols) == 0:
        return ""
    k = int(node.attr("k", 0))
    dt = cg.dtype(y)
    return cg.par_for("f", D.norm(rows * cols), f"{cg.ptr(y)}[f] = (f % {D.cpp(cols)} - f / {D.cpp(cols)} == {k}) ? "
                      f"{literal(1, dt)} : {literal(0, dt)};")


def _check_eyelike(node: "Node", g: "Graph"):
    try:
        ctype(_eyelike_dtype(node, g))
    except (ShapeError, KeyError, TypeError, ValueError) as e:
        return f"output dtype not supported: {e}"
    return None


register("EyeLike", infer=_infer_eyelike, emit=_emit_eyelike, check=_check_eyelike, cuda=_emit_eyelike_cuda)


# ------------------------------------------------------------------------------------------------------
# CumSum, CumProd

def _cum_axis(node: "Node", g: "Graph", rank: int) -> int:
    v = const_ints(node, g, 1, "axis")
    if not v or len(v) != 1 or not D.is_static(v[0]):
        raise node_error(node, "axis must be a static scalar")
    return norm_axis(node, int(v[0]), max(rank, 1))


def _infer_cum(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    if t.rank == 0:
        raise node_error(node, "input must have rank >= 1")
    _cum_axis(node, g, t.rank)
    return [(t.dtype, t.shape)]


def _cum_plan(node: "Node", cg: "Emitter") -> tuple[D.DimLike, D.DimLike, D.DimLike, str, int, bool, bool]:
    """CumSum/CumProd's ``(outer, n, inner, op, identity, exclusive, reverse)``: ``n`` steps along the axis,
    ``outer`` and ``inner`` elements before and after it; the C++ operator accumulating and its identity."""
    xs = cg.shape(node.inputs[0])
    axis = _cum_axis(node, cg.g, len(xs))
    prod = node.op_type == "CumProd"
    return (D.prod(xs[:axis]), xs[axis], D.prod(xs[axis + 1:]), "*" if prod else "+", 1 if prod else 0,
            int(node.attr("exclusive", 0)) != 0, int(node.attr("reverse", 0)) != 0)


def _emit_cum(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    outer, n, inner, op, identity, exclusive, reverse = _cum_plan(node, cg)
    if D.norm(outer * n * inner) == 0:
        return ""
    dt = cg.dtype(y)
    ct, a = cg.ctype(y), _sum_acc(dt)
    init = literal(identity, dt)
    n_c = D.cpp(n)
    # position of step s along the axis
    pos = f"({n_c} - 1 - s)" if reverse else "s"
    prev = f"({n_c} - s)" if reverse else "(s - 1)"
    xp, yp = cg.ptr(x), cg.ptr(y)
    if inner == 1:
        body = (f"const {ct}* __restrict xr = {xp} + {mul('o', n)};\n"
                f"{ct}* __restrict yr = {yp} + {mul('o', n)};\n"
                f"{a} acc = static_cast<{a}>({init});\n"
                f"for (int64_t s = 0; s < {n_c}; ++s) {{\n")
        if exclusive:
            body += (f"  const {a} v = static_cast<{a}>(xr[{pos}]);\n"
                     f"  yr[{pos}] = static_cast<{ct}>(acc);\n  acc = acc {op} v;\n")
        else:
            body += f"  acc = acc {op} static_cast<{a}>(xr[{pos}]);\n  yr[{pos}] = static_cast<{ct}>(acc);\n"
        body += "}\n"
        return f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n" + _indent(body) + "}\n"
    inn = D.cpp(inner)
    first = f"{mul('(' + n_c + ' - 1)', inner)}" if reverse else "0"
    body = (f"const {ct}* __restrict xo = {xp} + {mul('o', D.norm(n * inner))};\n"
            f"{ct}* __restrict yo = {yp} + {mul('o', D.norm(n * inner))};\n")
    src = f"xo[{mul(prev, inner)} + i]" if exclusive else f"xo[{mul(pos, inner)} + i]"
    first_val = init if exclusive else f"xo[{first} + i]"
    body += (f"for (int64_t i = 0; i < {inn}; ++i) yo[{first} + i] = {first_val};\n"
             f"for (int64_t s = 1; s < {n_c}; ++s) {{\n"
             f"  {ct}* __restrict yc = yo + {mul(pos, inner)};\n"
             f"  const {ct}* __restrict yp_ = yo + {mul(prev, inner)};\n"
             f"  for (int64_t i = 0; i < {inn}; ++i) "
             f"yc[i] = static_cast<{ct}>(static_cast<{a}>(yp_[i]) {op} static_cast<{a}>({src}));\n"
             "}\n")
    return f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n" + _indent(body) + "}\n"


def _emit_cum_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per line along the axis (``outer * inner`` of them), accumulating as the CPU code does."""
    x, y = node.inputs[0], node.outputs[0]
    outer, n, inner, op, identity, exclusive, reverse = _cum_plan(node, cg)
    if D.norm(outer * n * inner) == 0:
        return ""
    dt = cg.dtype(y)
    ct, a = cg.ctype(y), _sum_acc(dt)
    n_c = D.cpp(n)
    pos = mul(f"({n_c} - 1 - s)" if reverse else "s", inner)
    if inner == 1:
        body = f"const int64_t base = {mul('t', n)};\n"
    else:
        body = f"const int64_t base = {mul(f't / {D.cpp(inner)}', D.norm(n * inner))} + t % {D.cpp(inner)};\n"
    body += (f"const {ct}* xr = {cg.ptr(x)} + base;\n{ct}* yr = {cg.ptr(y)} + base;\n"
             f"{a} acc = static_cast<{a}>({literal(identity, dt)});\n"
             f"for (int64_t s = 0; s < {n_c}; ++s) {{\n")
    if exclusive:
        body += (f"  const {a} v = static_cast<{a}>(xr[{pos}]);\n"
                 f"  yr[{pos}] = static_cast<{ct}>(acc);\n  acc = static_cast<{a}>(acc {op} v);\n")
    else:
        body += f"  acc = static_cast<{a}>(acc {op} static_cast<{a}>(xr[{pos}]));\n  yr[{pos}] = static_cast<{ct}>(acc);\n"
    body += "}\n"
    return cg.par_for("t", D.norm(outer * inner), body)


def _check_cum(node: "Node", g: "Graph"):
    t = g.tensors.get(node.input(0))
    if t is not None and np.dtype(t.dtype) == np.bool_:
        return "bool input is not supported"
    return None


register("CumSum", "CumProd", infer=_infer_cum, emit=_emit_cum, check=_check_cum, const_inputs=(1,),
         shape_inputs=(), cuda=_emit_cum_cuda)


# ------------------------------------------------------------------------------------------------------
# TopK

def _topk_k(node: "Node", g: "Graph") -> int:
    v = const_ints(node, g, 1, "k")
    if not v or len(v) != 1 or not D.is_static(v[0]):
        raise node_error(node, "k must be a static scalar")
    k = int(v[0])
    if k < 0:
        raise node_error(node, f"k = {k} is negative")
    return k


def _infer_topk(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    if t.rank == 0:
        raise node_error(node, "input must have rank >= 1")
    axis = norm_axis(node, int(node.attr("axis", -1)), t.rank)
    k = _topk_k(node, g)
    n = t.shape[axis]
    if D.is_static(n) and k > int(n):
        raise node_error(node, f"k = {k} exceeds the axis length {n}")
    shape = tuple(t.shape[:axis]) + (k,) + tuple(t.shape[axis + 1:])
    return [(t.dtype, shape), (np.dtype(np.int64), shape)]


def _topk_view(node: "Node", g: "Graph"):
    shape = g.t(node.inputs[0]).shape
    axis = norm_axis(node, int(node.attr("axis", -1)), len(shape))
    return D.prod(shape[:axis]), shape[axis], D.prod(shape[axis + 1:]), _topk_k(node, g)


def _workspace_topk(node: "Node", g: "Graph"):
    _, n, _, k = _topk_view(node, g)
    if k == 0:
        return []
    dt = g.t(node.inputs[0]).dtype
    if k <= TOPK_BUFFER:
        vdt = np.float64 if np.dtype(dt) == np.float64 else (np.float32 if is_float(dt) else dt)
        return [(k, vdt), (k, np.int64)]
    return [(n, np.int64)]


def _topk_better(dt, largest: bool):
    """``better(u, v)``: the C++ condition that value ``u`` goes before ``v`` when ``u`` came later (ties keep the
    lower index first); NaN is the largest."""
    if is_float(dt):
        # one unordered comparison decides for all but NaN operands: !(u <= v) is u > v or either is NaN
        if largest:
            return lambda u, v: f"(!({u} <= {v}) && !std::isnan({v}))"
        return lambda u, v: f"(!({u} >= {v}) && !std::isnan({u}))"
    return (lambda u, v: f"({u} > {v})") if largest else (lambda u, v: f"({u} < {v})")


def _emit_topk(node: "Node", cg: "Emitter") -> str:
    x, yv, yi = node.inputs[0], node.outputs[0], node.outputs[1]
    outer, n, inner, k = _topk_view(node, cg.g)
    if k == 0 or D.norm(outer * inner) == 0:
        return ""
    dt = cg.dtype(x)
    ct, a = cg.ctype(x), _acc(dt)
    largest = int(node.attr("largest", 1)) != 0
    n_c = D.cpp(n)
    xp = cg.ptr(x)
    vp = cg.ptr(yv) if yv else ""
    ip = cg.ptr(yi) if yi else ""
    better = _topk_better(dt, largest)
    st = D.cpp(inner)
    code = ""
    if not D.is_static(n):
        code += f"if ({n_c} < {k}) {_oor(node, f'k = {k} exceeds the axis length')}\n"
    iv = "i" if inner != 1 else ""
    xr = f"const {ct}* __restrict xr = {xp} + {cpp_sum([mul('o', D.norm(n * inner)), iv])};\n"
    out_off = cpp_sum([mul("o", D.norm(k * inner)), iv])
    writes = ""
    if yv:
        writes += f"{vp}[{cpp_sum([out_off, mul('j', inner)])}] = static_cast<{ct}>(VAL);\n"
    if yi:
        writes += f"{ip}[{cpp_sum([out_off, mul('j', inner)])}] = IDX;\n"
    at = (lambda r: f"xr[{r}]") if inner == 1 else (lambda r: f"xr[{r} * {st}]")
    if k <= TOPK_BUFFER:
        body = (
            xr
            + f"{a}* __restrict bv = {cg.workspace(0, a)};\n"
            f"int64_t* __restrict bi = {cg.workspace(1, 'int64_t')};\n"
            f"for (int64_t r = 0; r < {k}; ++r) {{  // the first k: insertion sort\n"
            f"  const {a} v = static_cast<{a}>({at('r')});\n"
            "  int64_t p = r;\n"
            f"  while (p > 0 && {better('v', 'bv[p - 1]')}) {{\n"
            "    bv[p] = bv[p - 1];\n    bi[p] = bi[p - 1];\n    --p;\n  }\n"
            "  bv[p] = v;\n  bi[p] = r;\n"
            "}\n"
            f"{a} worst = bv[{k - 1}];\n"
            f"for (int64_t r = {k}; r < {n_c}; ++r) {{  // the rest: most fail the first comparison\n"
            f"  const {a} v = static_cast<{a}>({at('r')});\n"
            f"  if (!{better('v', 'worst')}) continue;\n"
            f"  int64_t p = {k - 1};\n"
            f"  while (p > 0 && {better('v', 'bv[p - 1]')}) {{\n"
            "    bv[p] = bv[p - 1];\n    bi[p] = bi[p - 1];\n    --p;\n  }\n"
            "  bv[p] = v;\n  bi[p] = r;\n"
            f"  worst = bv[{k - 1}];\n"
            "}\n"
            f"for (int64_t j = 0; j < {k}; ++j) {{\n"
            + _indent(writes.replace("VAL", "bv[j]").replace("IDX", "bi[j]"))
            + "}\n"
        )
    else:
        body = (
            xr
            + f"int64_t* __restrict ix = {cg.workspace(0, 'int64_t')};\n"
            f"for (int64_t r = 0; r < {n_c}; ++r) ix[r] = r;\n"
            f"std::partial_sort(ix, ix + {k}, ix + {n_c}, [xr](int64_t u_, int64_t v_) {{\n"
            f"  const {a} u = static_cast<{a}>({at('u_')}), v = static_cast<{a}>({at('v_')});\n"
            f"  return {better('u', 'v')} || (!{better('v', 'u')} && u_ < v_);\n"
            "});\n"
            f"for (int64_t j = 0; j < {k}; ++j) {{\n"
            + _indent(writes.replace("VAL", at("ix[j]")).replace("IDX", "ix[j]"))
            + "}\n"
        )
    loop = body if inner == 1 else f"for (int64_t i = 0; i < {D.cpp(inner)}; ++i) {{\n" + _indent(body) + "}\n"
    return code + f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n" + _indent(loop) + "}\n"


def _emit_topk_cuda(node: "Node", cg: "Emitter") -> str:
    """Short rows, few of them: one thread per element, which counts the elements of its row that go before it (its
    rank) and writes itself to that place if it is among the first k. Otherwise one thread per row keeping the
    sorted buffer of the CPU code in the outputs themselves (no scratch space)."""
    x, yv, yi = node.inputs[0], node.outputs[0], node.outputs[1]
    outer, n, inner, k = _topk_view(node, cg.g)
    rows = D.norm(outer * inner)
    if k == 0 or rows == 0 or not (yv or yi):
        return ""
    ct = cg.ctype(x)
    better = _topk_better(cg.dtype(x), int(node.attr("largest", 1)) != 0)
    n_c = D.cpp(n)
    xp = cg.ptr(x)
    vp = cg.ptr(yv) if yv else ""
    ip = cg.ptr(yi) if yi else ""
    code = ""
    if not D.is_static(n):
        code += f"if ({n_c} < {k}) {_oor(node, f'k = {k} exceeds the axis length')}\n"
    at = lambda r: f"xr[{mul(r, inner)}]"  # noqa: E731
    if inner == 1:
        row = "const int64_t o = t;\n"
    else:
        row = f"const int64_t i = t % {D.cpp(inner)};\nconst int64_t o = t / {D.cpp(inner)};\n"
    iv = "i" if inner != 1 else ""
    xr = f"const {ct}* xr = {xp} + {cpp_sum([mul('o', D.norm(n * inner)), iv])};\n"
    out = cpp_sum([mul("o", D.norm(k * inner)), iv])
    # one thread per element: its rank among the elements of its row
    if inner == 1:
        body = f"const int64_t r = t % {n_c};\nconst int64_t o = t / {n_c};\n"
    else:
        body = (f"const int64_t i = t % {D.cpp(inner)};\nconst int64_t q = t / {D.cpp(inner)};\n"
                f"const int64_t r = q % {n_c};\nconst int64_t o = q / {n_c};\n")
    body += (xr + f"const {ct} v = {at('r')};\n"
             "int64_t rank = 0;\n"
             f"for (int64_t s = 0; s < {n_c} && rank < {k}; ++s) {{\n"
             f"  const {ct} u = {at('s')};\n"
             f"  if ({better('u', 'v')} || (!{better('v', 'u')} && s < r)) ++rank;\n"
             "}\n"
             f"if (rank < {k}) {{\n")
    if yv:
        body += f"  {vp}[{cpp_sum([out, mul('rank', inner)])}] = v;\n"
    if yi:
        body += f"  {ip}[{cpp_sum([out, mul('rank', inner)])}] = r;\n"
    body += "}\n"
    by_rank = cg.par_for("t", D.norm(rows * n), body)
    if not (yv and yi):
        return code + by_rank
    # one thread per row: insertion into the sorted best k, held in the outputs
    bv = lambda p: f"bv[{mul(p, inner)}]"  # noqa: E731
    bi = lambda p: f"bi[{mul(p, inner)}]"  # noqa: E731

    def insert(first: str) -> str:
        return (f"  int64_t p = {first};\n"
                f"  while (p > 0 && {better('v', bv('(p - 1)'))}) {{\n"
                f"    {bv('p')} = {bv('(p - 1)')};\n    {bi('p')} = {bi('(p - 1)')};\n    --p;\n  }}\n"
                f"  {bv('p')} = v;\n  {bi('p')} = r;\n")

    body = (row + xr + f"{ct}* bv = {vp} + {out};\nint64_t* bi = {ip} + {out};\n"
            f"for (int64_t r = 0; r < {k}; ++r) {{  // the first k: insertion sort\n"
            f"  const {ct} v = {at('r')};\n" + insert("r") + "}\n"
            f"{ct} worst = {bv(str(k - 1))};\n"
            f"for (int64_t r = {k}; r < {n_c}; ++r) {{  // the rest: most fail the first comparison\n"
            f"  const {ct} v = {at('r')};\n"
            f"  if (!{better('v', 'worst')}) continue;\n" + insert(str(k - 1))
            + f"  worst = {bv(str(k - 1))};\n"
            "}\n")
    by_row = cg.par_for("t", rows, body)
    return code + _branch([(n, TOPK_RANK_N), (D.norm(rows * n), TOPK_RANK_THREADS)], by_rank, by_row)


def _check_topk(node: "Node", g: "Graph"):
    t = g.tensors.get(node.input(0))
    if t is not None and np.dtype(t.dtype) == np.bool_:
        return "bool input is not supported"
    return None


def _batch_topk(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule: the top k along an axis other than the batch's."""
    return BR.same_axis_not(BR.axis_attr(node, in_rank[0], -1), ins[:1], outs)


register("TopK", infer=_infer_topk, emit=_emit_topk, check=_check_topk, workspace=_workspace_topk,
         const_inputs=(1,), batch=_batch_topk, cuda=_emit_topk_cuda)


# ------------------------------------------------------------------------------------------------------
# ReverseSequence

def _rs_axes(node: "Node", rank: int) -> tuple[int, int]:
    ta, ba = int(node.attr("time_axis", 0)), int(node.attr("batch_axis", 1))
    if {ta, ba} != {0, 1}:
        raise node_error(node, f"time_axis {ta} and batch_axis {ba} must be 0 and 1")
    if rank < 2:
        raise node_error(node, "input must have rank >= 2")
    return ta, ba


def _infer_reverse_sequence(node: "Node", g: "Graph"):
    t, sl = g.t(node.inputs[0]), g.t(node.inputs[1])
    ta, ba = _rs_axes(node, t.rank)
    if sl.rank != 1 or sl.shape[0] != t.shape[ba]:
        raise node_error(node, f"sequence_lens shape {D.fmt_shape(sl.shape)} != (batch,) = ({D.fmt(t.shape[ba])},)")
    return [(t.dtype, t.shape)]


def _emit_reverse_sequence(node: "Node", cg: "Emitter") -> str:
    x, sl, y = node.inputs[0], node.inputs[1], node.outputs[0]
    xs = cg.shape(x)
    ta, ba = _rs_axes(node, len(xs))
    nt, nb = xs[ta], xs[ba]
    inner = D.prod(xs[2:])
    if D.norm(nt * nb * inner) == 0:
        return ""
    xst = strides(xs)
    ts, bs = xst[ta], xst[ba]
    xp, yp, lp, ct = cg.ptr(x), cg.ptr(y), cg.ptr(sl), cg.ctype(y)
    n_c = D.cpp(nt)
    dst = cpp_sum([mul("t", ts), mul("b", bs)])
    src = cpp_sum([mul("u", ts), mul("b", bs)])
    if inner == 1:
        move = f"{yp}[{dst}] = {xp}[{src}];\n"
    else:
        move = f"std::memcpy({yp} + {dst}, {xp} + {src}, sizeof({ct}) * size_t({D.cpp(inner)}));\n"
    return (
        f"for (int64_t b = 0; b < {D.cpp(nb)}; ++b) {{\n"
        f"  const int64_t len = static_cast<int64_t>({lp}[b]);\n"
        f"  if (len < 0 || len > {n_c}) {_oor(node, 'sequence length out of range')}\n"
        f"  for (int64_t t = 0; t < {n_c}; ++t) {{\n"
        "    const int64_t u = t < len ? len - 1 - t : t;\n"
        + _indent(move, "    ")
        + "  }\n}\n"
    )


def _emit_reverse_sequence_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per output element."""
    x, sl, y = node.inputs[0], node.inputs[1], node.outputs[0]
    xs = cg.shape(x)
    ta, ba = _rs_axes(node, len(xs))
    nt = xs[ta]
    inner = D.prod(xs[2:])
    total = D.norm(nt * xs[ba] * inner)
    if total == 0:
        return ""
    ts = strides(xs)[ta]
    xp, yp, lp = cg.ptr(x), cg.ptr(y), cg.ptr(sl)
    n_c = D.cpp(nt)
    q = "f" if inner == 1 else f"(f / {D.cpp(inner)})"
    a1 = f"{q} % {D.cpp(xs[1])}" if xs[1] != 1 else "0"
    a0 = f"{q} / {D.cpp(xs[1])}" if xs[1] != 1 else q
    t, b = (a0, a1) if ta == 0 else (a1, a0)
    return cg.par_for("f", total, (
        f"const int64_t t = {t};\n"
        f"int64_t len = static_cast<int64_t>({lp}[{b}]);\n"
        f"if (len < 0 || len > {n_c}) {_oor_in_kernel(node, 'len = 0;', 'sequence length out of range', cg)}\n"
        "const int64_t u = t < len ? len - 1 - t : t;\n"
        f"{yp}[f] = {xp}[f + {mul('(u - t)', ts)}];\n"))


def _check_reverse_sequence(node: "Node", g: "Graph"):
    return _check_indices_dtype(node, g, 1)


register("ReverseSequence", infer=_infer_reverse_sequence, emit=_emit_reverse_sequence,
         check=_check_reverse_sequence, cuda=_emit_reverse_sequence_cuda)
