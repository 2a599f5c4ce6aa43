"""Softmax and LogSoftmax.

Opset 13 semantics normalise along one axis (default -1); older opsets (default axis 1) flatten the input to
2-D at ``axis`` and normalise the whole trailing block. Both are a reduction over the middle axis of an
``(outer, R, inner)`` view; the maximum is subtracted before exponentiating, so no input overflows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import register
from .common import norm_axis
from .reduce import row_reduce
from .. import dims as D

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node


def _view(node: "Node", shape, opset: int) -> tuple[D.DimLike, D.DimLike, D.DimLike]:
    """(outer, R, inner) of the normalised view of ``shape``."""
    rank = len(shape)
    if opset >= 13:
        axis = norm_axis(node, int(node.attr("axis", -1)), max(rank, 1))
        if rank == 0:
            return 1, 1, 1
        return D.prod(shape[:axis]), D.norm(shape[axis]), D.prod(shape[axis + 1 :])
    axis = norm_axis(node, int(node.attr("axis", 1)), rank) if rank else 0
    return D.prod(shape[:axis]), D.prod(shape[axis:]), 1


def _check(node: "Node", g: "Graph") -> str | None:
    t = g.tensors.get(node.inputs[0])
    if t is not None and t.dtype != np.float32:
        return f"input dtype {t.dtype} is not supported (float32 only)"
    return None


def _infer(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    _view(node, t.shape, g.opset)  # validates the axis
    return [(t.dtype, t.shape)]


def _mul(a: str, b: D.DimLike) -> str:
    return a if b == 1 else f"{a} * {D.cpp(b)}"


def _emit(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    outer, ext, inner = _view(node, cg.shape(x), cg.g.opset)
    xp, yp = cg.ptr(x), cg.ptr(y)
    log = node.op_type == "LogSoftmax"
    mx = lambda a, b: f"std::max({a}, {b})"  # noqa: E731
    add = lambda a, b: f"{a} + {b}"  # noqa: E731
    r_ = D.cpp(ext)
    if inner == 1:
        code = (
            f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n"
            f"  const float* __restrict xr = {xp} + {_mul('o', ext)};\n"
            f"  float* __restrict yr = {yp} + {_mul('o', ext)};\n"
            + row_reduce(
                "m", "float", ext, lambda r: f"xr[{r}]", mx, "-std::numeric_limits<float>::infinity()", "  "
            )
        )
        if log:
            code += (
                row_reduce("s", "float", ext, lambda r: f"ml4ep_rt::expf(xr[{r}] - m)", add, "0.0f", "  ")
                + "  const float ls = std::log(s);\n"
                f"  for (int64_t r = 0; r < {r_}; ++r) yr[r] = (xr[r] - m) - ls;\n"
            )
        else:
            code += (
                f"  for (int64_t r = 0; r < {r_}; ++r) yr[r] = ml4ep_rt::expf(xr[r] - m);\n"
                + row_reduce("s", "float", ext, lambda r: f"yr[{r}]", add, "0.0f", "  ")
                + "  const float inv = 1.0f / s;\n"
                f"  for (int64_t r = 0; r < {r_}; ++r) yr[r] *= inv;\n"
            )
        return code + "}\n"
    # inner > 1: whole rows of maxima and sums in the workspace, contiguous loops over the inner axis
    inn = D.cpp(inner)
    ws = cg.workspace(0, "float")
    rows = f"for (int64_t r = 0; r < {r_}; ++r)\n    for (int64_t i = 0; i < {inn}; ++i) {{\n"
    at = f"      const int64_t k = {_mul('r', inner)} + i;\n"
    code = (
        f"float* __restrict mx = {ws};\n"
        f"float* __restrict sm = {ws} + {inn};\n"
        f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n"
        f"  const float* __restrict xo = {xp} + {_mul('o', D.norm(ext * inner))};\n"
        f"  float* __restrict yo = {yp} + {_mul('o', D.norm(ext * inner))};\n"
        f"  for (int64_t i = 0; i < {inn}; ++i) {{\n"
        "    mx[i] = -std::numeric_limits<float>::infinity();\n    sm[i] = 0.0f;\n  }\n"
        f"  {rows}{at}      mx[i] = std::max(mx[i], xo[k]);\n    }}\n"
    )
    if log:
        code += (
            f"  {rows}{at}      sm[i] += ml4ep_rt::expf(xo[k] - mx[i]);\n    }}\n"
            f"  for (int64_t i = 0; i < {inn}; ++i) sm[i] = std::log(sm[i]);\n"
            f"  {rows}{at}      yo[k] = (xo[k] - mx[i]) - sm[i];\n    }}\n"
        )
    else:
        code += (
            f"  {rows}{at}      yo[k] = ml4ep_rt::expf(xo[k] - mx[i]);\n      sm[i] += yo[k];\n    }}\n"
            f"  for (int64_t i = 0; i < {inn}; ++i) sm[i] = 1.0f / sm[i];\n"
            f"  {rows}{at}      yo[k] *= sm[i];\n    }}\n"
        )
    return code + "}\n"


def _workspace(node: "Node", g: "Graph"):
    _, _, inner = _view(node, g.t(node.inputs[0]).shape, g.opset)
    return [] if inner == 1 else [(D.norm(2 * inner), np.float32)]


register("Softmax", "LogSoftmax", infer=_infer, emit=_emit, check=_check, workspace=_workspace)
