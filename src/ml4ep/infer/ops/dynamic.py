"""Operators whose output size depends on the data: NonZero, Compress, Unique.

Their count is a data-dependent symbol (``dims.Derived.new_runtime``): storage is planned for its upper bound
(the input's size), the generated code sets the symbol when the node runs, and every later loop reads it. The
Python session returns outputs of the actual size; C++ callers allocate the bound and read the actual
dimensions from ``Model::runtime_dims()`` after ``infer``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import register
from .common import norm_axis
from .. import dims as D

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node


# NonZero(X) -> int64 (rank, count): the indices of the non-zero elements in row-major order
def _infer_nonzero(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    count = g.derived.new_runtime(f"{node.name}_count", t.numel)
    return [(np.dtype(np.int64), (t.rank, count))]


def _emit_nonzero(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    n = cg.numel(x)
    count = D.cpp(cg.shape(y)[1])
    xp, yp = cg.ptr(x), cg.ptr(y)
    code = [f"int64_t cnt = 0;\nfor (int64_t i = 0; i < {n}; ++i) cnt += ({xp}[i] != 0) ? 1 : 0;\n{count} = cnt;\n"]
    if shape:
        code.append(f"int64_t k = 0;\nfor (int64_t i = 0; i < {n}; ++i) {{\n  if (!({xp}[i] != 0)) continue;\n"
                    f"  int64_t r = i;\n")
        for d in range(len(shape) - 1, -1, -1):
            code.append(f"  {yp}[{d} * cnt + k] = r % {D.cpp(shape[d])};\n  r /= {D.cpp(shape[d])};\n"
                        if d else f"  {yp}[k] = r;\n")
        code.append("  ++k;\n}\n(void)k;\n")
    return "".join(code)


register("NonZero", infer=_infer_nonzero, emit=_emit_nonzero)


# Compress(input, condition[, axis]) -> the slices along axis (or of the flattened input) whose condition is true
def _axis(node: "Node", rank: int) -> int | None:
    a = node.attrs.get("axis")
    return None if a is None else norm_axis(node, int(a), rank)


def _infer_compress(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    axis = _axis(node, t.rank)
    extent = t.numel if axis is None else t.shape[axis]
    count = g.derived.new_runtime(f"{node.name}_count", extent)
    if axis is None:
        return [(t.dtype, (count,))]
    return [(t.dtype, tuple(count if k == axis else d for k, d in enumerate(t.shape)))]


def _emit_compress(node: "Node", cg: "Emitter") -> str:
    x, c, y = node.inputs[0], node.inputs[1], node.outputs[0]
    shape = cg.shape(x)
    axis = _axis(node, len(shape))
    xp, cp, yp = cg.ptr(x), cg.ptr(c), cg.ptr(y)
    yshape = cg.shape(y)
    count = D.cpp(yshape[0] if axis is None else yshape[axis])
    extent = cg.numel(x) if axis is None else D.cpp(shape[axis])
    clen = cg.numel(c)
    # the condition may be shorter than the axis: missing entries are false
    code = (f"const int64_t lim = std::min<int64_t>({clen}, {extent});\nint64_t cnt = 0;\n"
            f"for (int64_t i = 0; i < lim; ++i) cnt += {cp}[i] ? 1 : 0;\n{count} = cnt;\n")
    if axis is None:
        return code + (f"int64_t k = 0;\nfor (int64_t i = 0; i < lim; ++i) if ({cp}[i]) {yp}[k++] = {xp}[i];\n")
    outer = D.cpp(D.prod(shape[:axis]))
    inner = D.cpp(D.prod(shape[axis + 1:]))
    return code + (
        f"for (int64_t o = 0; o < {outer}; ++o) {{\n  int64_t k = 0;\n"
        f"  for (int64_t i = 0; i < lim; ++i) {{\n    if (!{cp}[i]) continue;\n"
        f"    std::memcpy({yp} + (o * cnt + k) * {inner}, {xp} + (o * {extent} + i) * {inner}, "
        f"sizeof(*{yp}) * size_t({inner}));\n    ++k;\n  }}\n}}\n")


register("Compress", infer=_infer_compress, emit=_emit_compress)


# Unique(X[, axis, sorted]) -> Y, indices (first occurrences), inverse_indices, counts
def _unique_view(node: "Node", shape) -> tuple:
    axis = _axis(node, len(shape))
    if axis is None:
        return None, 1, D.prod(shape), 1
    return axis, D.prod(shape[:axis]), shape[axis], D.prod(shape[axis + 1:])


def _infer_unique(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    axis, _outer, n, _inner = _unique_view(node, t.shape)
    count = g.derived.new_runtime(f"{node.name}_count", n)
    y = (count,) if axis is None else tuple(count if k == axis else d for k, d in enumerate(t.shape))
    i64 = np.dtype(np.int64)
    return [(t.dtype, y), (i64, (count,)), (i64, (n,)), (i64, (count,))][:len(node.outputs)]


def _ws_unique(node: "Node", g: "Graph"):
    n = _unique_view(node, g.t(node.inputs[0]).shape)[2]
    return [(n, np.int64)] * 4


def _emit_unique(node: "Node", cg: "Emitter") -> str:
    x = node.inputs[0]
    outs = [node.outputs[k] if k < len(node.outputs) else "" for k in range(4)]
    axis, outer, n, inner = _unique_view(node, cg.shape(x))
    srt = int(node.attrs.get("sorted", 1))
    count = D.cpp(cg.shape(outs[0])[0 if axis is None else axis])
    xp = cg.ptr(x)
    nn, oo, ii = D.cpp(n), D.cpp(outer), D.cpp(inner)
    order, group, first, gorder = (cg.workspace(k, "int64_t") for k in range(4))
    # items compare slice by slice in (outer, inner) order; ties by index make std::sort stable
    code = f"""int64_t* order = {order};
int64_t* group = {group};
int64_t* first = {first};
int64_t* gorder = {gorder};
const auto item = [&](int64_t i, int64_t o, int64_t j) {{ return {xp}[(o * {nn} + i) * {ii} + j]; }};
const auto cmp = [&](int64_t a, int64_t b) {{
  for (int64_t o = 0; o < {oo}; ++o)
    for (int64_t j = 0; j < {ii}; ++j) {{
      const auto va = item(a, o, j), vb = item(b, o, j);
      if (va < vb) return -1;
      if (vb < va) return 1;
    }}
  return 0;
}};
for (int64_t i = 0; i < {nn}; ++i) order[i] = i;
std::sort(order, order + {nn}, [&](int64_t a, int64_t b) {{ const int c = cmp(a, b); return c != 0 ? c < 0 : a < b; }});
int64_t cnt = 0;
for (int64_t r = 0; r < {nn}; ++r) {{
  if (r == 0 || cmp(order[r - 1], order[r]) != 0) first[cnt++] = order[r];
  group[order[r]] = cnt - 1;
}}
{count} = cnt;
// the order of the output groups: sorted values, or first occurrences
for (int64_t k = 0; k < cnt; ++k) gorder[k] = k;
"""
    if not srt:
        code += "std::sort(gorder, gorder + cnt, [&](int64_t a, int64_t b) { return first[a] < first[b]; });\n"
    # rank of each group in the output order (reuses order[]: free now)
    code += "for (int64_t k = 0; k < cnt; ++k) order[gorder[k]] = k;\n"
    if outs[0]:
        yp = cg.ptr(outs[0])
        code += (f"for (int64_t o = 0; o < {oo}; ++o)\n  for (int64_t k = 0; k < cnt; ++k)\n"
                 f"    for (int64_t j = 0; j < {ii}; ++j) {yp}[(o * cnt + k) * {ii} + j] = item(first[gorder[k]], o, j);\n")
    if outs[1]:
        code += f"for (int64_t k = 0; k < cnt; ++k) {cg.ptr(outs[1])}[k] = first[gorder[k]];\n"
    if outs[2]:
        code += f"for (int64_t i = 0; i < {nn}; ++i) {cg.ptr(outs[2])}[i] = order[group[i]];\n"
    if outs[3]:
        cp = cg.ptr(outs[3])
        code += (f"for (int64_t k = 0; k < cnt; ++k) {cp}[k] = 0;\n"
                 f"for (int64_t i = 0; i < {nn}; ++i) ++{cp}[order[group[i]]];\n")
    return code


register("Unique", infer=_infer_unique, emit=_emit_unique, workspace=_ws_unique)
