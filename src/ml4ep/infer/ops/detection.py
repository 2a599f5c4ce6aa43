"""Object detection: NonMaxSuppression.

NonMaxSuppression(boxes (B, S, 4), scores (B, C, S)[, max_output_boxes_per_class, iou_threshold,
score_threshold]) -> selected_indices int64 (count, 3), rows (batch, class, box). Per batch and class the
boxes whose score passes the threshold are sorted by score (descending; ties: lower box index first) and
taken greedily, skipping a box whose IoU with a box already taken in that class exceeds the threshold, until
max_output_boxes_per_class are taken. The count is a data-dependent symbol (see dynamic.py); the three
optional scalars are read at run time, so they may be graph inputs. Box arithmetic is in ``float``
(``double`` for float64 boxes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import register
from .. import dims as D
from .common import node_error

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

# with symbolic boxes a constant max_output_boxes_per_class up to this bounds the rows per class; above it
# the number of boxes does (storage is sized for the bound)
_CONST_BOUND_LIMIT = 1 << 16



def _check_nms(node: "Node", g: "Graph") -> str | None:
    cpb = int(node.attr("center_point_box", 0))
    if cpb not in (0, 1):
        return f"center_point_box={cpb} (0 or 1 only)"
    return None


def _const_max_out(node: "Node", g: "Graph") -> int | None:
    """The constant max_output_boxes_per_class (0 when absent or empty), None when known only at run time."""
    name = node.input(2)
    if not name:
        return 0
    v = g.const(name)
    if v is None:
        return None
    v = np.asarray(v).reshape(-1)
    return max(int(v[0]), 0) if v.size else 0


def _infer_nms(node: "Node", g: "Graph"):
    b, s = g.t(node.inputs[0]), g.t(node.inputs[1])
    if b.rank != 3 or (D.is_static(b.shape[2]) and b.shape[2] != 4):
        raise node_error(node, f"boxes must be (batches, boxes, 4), got {D.fmt_shape(b.shape)}")
    if s.rank != 3:
        raise node_error(node, f"scores must be (batches, classes, boxes), got {D.fmt_shape(s.shape)}")
    for what, d1, d2 in (("batches", b.shape[0], s.shape[0]), ("boxes", b.shape[1], s.shape[2])):
        if D.is_static(d1) and D.is_static(d2) and d1 != d2:
            raise node_error(node, f"boxes {D.fmt_shape(b.shape)} and scores {D.fmt_shape(s.shape)} differ in {what}")
    for k, what in ((2, "max_output_boxes_per_class"), (3, "iou_threshold"), (4, "score_threshold")):
        name = node.input(k)
        if name:
            t = g.t(name)
            if t.rank > 1 or (D.is_static(t.numel) and t.numel > 1):
                raise node_error(node, f"{what} must hold one value, got shape {D.fmt_shape(t.shape)}")
    nbox = b.shape[1]
    m = _const_max_out(node, g)
    if m is not None and (D.is_static(nbox) or m <= _CONST_BOUND_LIMIT):
        per_class = min(m, nbox) if D.is_static(nbox) else m
    else:
        per_class = nbox
    count = g.derived.new_runtime(f"{node.name}_count", D.norm(b.shape[0] * s.shape[1] * per_class))
    return [(np.dtype(np.int64), (count, 3))]


def _ws_nms(node: "Node", g: "Graph"):
    return [(g.t(node.inputs[0]).shape[1], np.int64)]


def _scalar(cg: "Emitter", node: "Node", k: int, ft: str, default: str) -> str:
    name = node.input(k)
    if not name:
        return default
    n = cg.numel(name)
    if D.is_static(n) and n == 0:
        return default
    return f"(({n}) > 0 ? static_cast<{ft}>({cg.ptr(name)}[0]) : {default})"


def _emit_nms(node: "Node", cg: "Emitter") -> str:
    boxes, scores, y = node.inputs[0], node.inputs[1], node.outputs[0]
    ft = "double" if cg.ctype(boxes) == "double" else "float"
    bs, ss = cg.shape(boxes), cg.shape(scores)
    nb, nc, ns = D.cpp(bs[0]), D.cpp(ss[1]), D.cpp(bs[1])
    count = D.cpp(cg.shape(y)[0])
    bp, sp, yp = cg.ptr(boxes), cg.ptr(scores), cg.ptr(y)
    st_name = node.input(4)
    has_st = "false"
    if st_name:
        n = cg.numel(st_name)
        has_st = "false" if D.is_static(n) and n == 0 else f"(({n}) > 0)"
    if int(node.attr("center_point_box", 0)):
        # (x_center, y_center, width, height)
        extent = (f"  const {ft} w = static_cast<{ft}>(p[2]) / 2, h = static_cast<{ft}>(p[3]) / 2;\n"
                  f"  const {ft} cx = static_cast<{ft}>(p[0]), cy = static_cast<{ft}>(p[1]);\n"
                  "  e[0] = cx - w; e[1] = cx + w; e[2] = cy - h; e[3] = cy + h;\n")
    else:
        # (y1, x1, y2, x2), corners in either order
        extent = (f"  const {ft} y1 = static_cast<{ft}>(p[0]), x1 = static_cast<{ft}>(p[1]);\n"
                  f"  const {ft} y2 = static_cast<{ft}>(p[2]), x2 = static_cast<{ft}>(p[3]);\n"
                  "  e[0] = std::min(x1, x2); e[1] = std::max(x1, x2);\n"
                  "  e[2] = std::min(y1, y2); e[3] = std::max(y1, y2);\n")
    return f"""const int64_t max_out = std::max<int64_t>(0, {_scalar(cg, node, 2, "int64_t", "0")});
const {ft} iou_t = {_scalar(cg, node, 3, ft, "0")};
const bool has_st = {has_st};
const {ft} score_t = {_scalar(cg, node, 4, ft, "0")};
int64_t* order = {cg.workspace(0, "int64_t")};
// the extent (x_min, x_max, y_min, y_max) of a box
const auto box_extent = [&](const auto* p, {ft}* e) {{
{extent}}};
// whether box a suppresses box b (IoU above the threshold)
const auto suppress = [&](const auto* a, const auto* b) {{
  {ft} ea[4], eb[4];
  box_extent(a, ea);
  box_extent(b, eb);
  const {ft} ix0 = std::max(ea[0], eb[0]), ix1 = std::min(ea[1], eb[1]);
  if (ix1 <= ix0) return false;
  const {ft} iy0 = std::max(ea[2], eb[2]), iy1 = std::min(ea[3], eb[3]);
  if (iy1 <= iy0) return false;
  const {ft} inter = (ix1 - ix0) * (iy1 - iy0);
  if (inter <= 0) return false;
  const {ft} area_a = (ea[1] - ea[0]) * (ea[3] - ea[2]), area_b = (eb[1] - eb[0]) * (eb[3] - eb[2]);
  const {ft} uni = area_a + area_b - inter;
  if (area_a <= 0 || area_b <= 0 || uni <= 0) return false;
  return inter / uni > iou_t;
}};
int64_t cnt = 0;
for (int64_t b = 0; b < {nb}; ++b) {{
  const auto* bx = {bp} + b * {ns} * 4;
  for (int64_t c = 0; c < {nc}; ++c) {{
    if (max_out == 0) break;
    const auto* sc = {sp} + (b * {nc} + c) * {ns};
    // NaN scores sort last, so that the comparison stays a strict weak order
    const auto key = [&](int64_t i) {{
      const {ft} v = static_cast<{ft}>(sc[i]);
      return v != v ? -std::numeric_limits<{ft}>::infinity() : v;
    }};
    int64_t n = 0;
    for (int64_t i = 0; i < {ns}; ++i)
      if (!has_st || static_cast<{ft}>(sc[i]) > score_t) order[n++] = i;
    std::sort(order, order + n, [&](int64_t i, int64_t j) {{
      const {ft} ki = key(i), kj = key(j);
      return ki > kj || (ki == kj && i < j);
    }});
    const int64_t first = cnt;
    for (int64_t k = 0; k < n && cnt - first < max_out; ++k) {{
      const int64_t i = order[k];
      bool keep = true;
      for (int64_t r = first; r < cnt && keep; ++r) keep = !suppress(bx + i * 4, bx + {yp}[r * 3 + 2] * 4);
      if (!keep) continue;
      {yp}[cnt * 3] = b;
      {yp}[cnt * 3 + 1] = c;
      {yp}[cnt * 3 + 2] = i;
      ++cnt;
    }}
  }}
}}
{count} = cnt;
"""


register("NonMaxSuppression", infer=_infer_nms, emit=_emit_nms, check=_check_nms, workspace=_ws_nms)
