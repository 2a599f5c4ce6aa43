"""Linear algebra: Det.

Det(X (..., M, M)) -> (...): the determinant of each matrix by LU decomposition with partial pivoting,
computed in ``double`` on a copy of the matrix in workspace scratch (a zero pivot column gives 0).
On CUDA, one thread per matrix factors it in a local array: static M up to 16.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import register
from .common import check_floating
from .. import dims as D
from ...errors import ShapeError

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node


def _infer_det(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    if t.rank < 2 or t.shape[-1] != t.shape[-2]:
        raise ShapeError(
            f"node '{node.name}' (Det): input must be (..., M, M) square matrices, got {D.fmt_shape(t.shape)}"
        )
    return [(t.dtype, t.shape[:-2])]


def _ws_det(node: "Node", g: "Graph"):
    m = g.t(node.inputs[0]).shape[-1]
    return [(D.norm(m * m), np.float64)]


def _emit_det(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    m = D.cpp(shape[-1])
    mm = D.cpp(D.norm(shape[-1] * shape[-1]))
    outer = D.cpp(D.prod(shape[:-2]))
    xp, yp, yt = cg.ptr(x), cg.ptr(y), cg.ctype(y)
    return f"""double* a = {cg.workspace(0, "double")};
const int64_t m = {m};
for (int64_t o = 0; o < {outer}; ++o) {{
  for (int64_t i = 0; i < {mm}; ++i) a[i] = static_cast<double>({xp}[o * {mm} + i]);
  double det = 1.0;
  for (int64_t k = 0; k < m; ++k) {{
    int64_t p = k;
    double best = std::fabs(a[k * m + k]);
    for (int64_t i = k + 1; i < m; ++i) {{
      const double v = std::fabs(a[i * m + k]);
      if (v > best) {{ best = v; p = i; }}
    }}
    if (best == 0.0) {{ det = 0.0; break; }}
    if (p != k) {{
      for (int64_t j = 0; j < m; ++j) std::swap(a[k * m + j], a[p * m + j]);
      det = -det;
    }}
    const double piv = a[k * m + k];
    det *= piv;
    for (int64_t i = k + 1; i < m; ++i) {{
      const double f = a[i * m + k] / piv;
      double* __restrict ri = a + i * m;
      const double* __restrict rk = a + k * m;
      for (int64_t j = k + 1; j < m; ++j) ri[j] -= f * rk[j];
    }}
  }}
  {yp}[o] = static_cast<{yt}>(det);
}}
"""


# the largest matrices the CUDA code takes: each thread factors its matrix in a local array of M * M doubles
_CUDA_MAX_M = 16


def _cuda_check_det(node: "Node", g: "Graph") -> str | None:
    m = g.t(node.inputs[0]).shape[-1]
    if not D.is_static(m) or int(m) > _CUDA_MAX_M:
        return (f"matrices of size {D.cpp(m)}: the CUDA code takes static sizes up to {_CUDA_MAX_M} "
                "(one thread per matrix, factored in a local array)")
    return None


def _emit_det_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per matrix: the CPU code's LU factorisation with partial pivoting, in a local array."""
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    m = int(shape[-1])
    xp, yp, yt = cg.ptr(x), cg.ptr(y), cg.ctype(y)
    return cg.par_for("o", D.prod(shape[:-2]), f"""double a[{max(m * m, 1)}];
for (int64_t i = 0; i < {m * m}; ++i) a[i] = static_cast<double>({xp}[o * {m * m} + i]);
double det = 1.0;
for (int64_t k = 0; k < {m}; ++k) {{
  int64_t p = k;
  double best = std::fabs(a[k * {m} + k]);
  for (int64_t i = k + 1; i < {m}; ++i) {{
    const double v = std::fabs(a[i * {m} + k]);
    if (v > best) {{ best = v; p = i; }}
  }}
  if (best == 0.0) {{ det = 0.0; break; }}
  if (p != k) {{
    for (int64_t j = 0; j < {m}; ++j) {{
      const double tmp = a[k * {m} + j];
      a[k * {m} + j] = a[p * {m} + j];
      a[p * {m} + j] = tmp;
    }}
    det = -det;
  }}
  const double piv = a[k * {m} + k];
  det *= piv;
  for (int64_t i = k + 1; i < {m}; ++i) {{
    const double f = a[i * {m} + k] / piv;
    for (int64_t j = k + 1; j < {m}; ++j) a[i * {m} + j] -= f * a[k * {m} + j];
  }}
}}
{yp}[o] = static_cast<{yt}>(det);
""")


register("Det", infer=_infer_det, emit=_emit_det, check=check_floating, workspace=_ws_det, cuda=_emit_det_cuda,
         cuda_check=_cuda_check_det)
