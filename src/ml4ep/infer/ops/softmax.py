"""Softmax, LogSoftmax and Hardmax.

Opset 13 semantics normalise along one axis (default -1); older opsets (default axis 1) flatten the input to
2-D at ``axis`` and normalise the whole trailing block. Both are a reduction over the middle axis of an
``(outer, R, inner)`` view; the maximum is subtracted before exponentiating, so no input overflows.
Hardmax writes 1 at the first maximum of each row (ties go to the lowest index) and 0 elsewhere, for every
floating-point type (compared in ``float``, ``double`` for float64). NaNs after the first element are skipped; a
row whose first element is NaN (an all-NaN row) is all 0, as onnxruntime gives. The CUDA code is one thread
per row of the view (the same arithmetic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import batch_rules as BR, register
from .common import mul, norm_axis
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
    if t is not None and t.dtype not in (np.float32, np.float64):
        return f"input dtype {t.dtype} is not supported (float32 and float64)"
    return None


def _infer(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    _view(node, t.shape, g.opset)  # validates the axis
    return [(t.dtype, t.shape)]



def _emit(node: "Node", cg: "Emitter") -> str:
    code = _emit_float(node, cg)
    if cg.ctype(node.inputs[0]) == "double":  # the same loops in double precision
        for a, b in (("ml4ep_rt::expf", "std::exp"), ("float", "double"), ("0.0f", "0.0"), ("1.0f", "1.0")):
            code = code.replace(a, b)
    return code


def _emit_float(node: "Node", cg: "Emitter") -> str:
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
            f"  const float* __restrict xr = {xp} + {mul('o', ext)};\n"
            f"  float* __restrict yr = {yp} + {mul('o', ext)};\n"
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
    at = f"      const int64_t k = {mul('r', inner)} + i;\n"
    code = (
        f"float* __restrict mx = {ws};\n"
        f"float* __restrict sm = {ws} + {inn};\n"
        f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n"
        f"  const float* __restrict xo = {xp} + {mul('o', D.norm(ext * inner))};\n"
        f"  float* __restrict yo = {yp} + {mul('o', D.norm(ext * inner))};\n"
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


def _rows(node: "Node", cg: "Emitter") -> tuple[D.DimLike, D.DimLike, D.DimLike, str]:
    """CUDA: (rows, R, inner, the C++ offset of row ``i``'s first element) of the (outer, R, inner) view, one
    thread per row (for inner > 1, neighbouring threads read neighbouring values)."""
    outer, ext, inner = _view(node, cg.shape(node.inputs[0]), cg.g.opset)
    if inner == 1:
        return outer, ext, inner, mul("i", ext)
    inn = D.cpp(inner)
    return D.norm(outer * inner), ext, inner, f"{mul(f'(i / {inn})', D.norm(ext * inner))} + i % {inn}"


def _emit_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per row: its maximum, the sum of exponentials, the normalised values (the CPU code's
    arithmetic)."""
    x, y = node.inputs[0], node.outputs[0]
    rows, ext, inner, base = _rows(node, cg)
    ct = cg.ctype(x)
    exp, zero, one = ("ml4ep_rt::expf", "0.0f", "1.0f") if ct == "float" else ("std::exp", "0.0", "1.0")
    at = mul("r", inner)
    loop = f"for (int64_t r = 0; r < {D.cpp(ext)}; ++r)"
    body = (
        f"const {ct}* __restrict xr = {cg.ptr(x)} + {base};\n"
        f"{ct}* __restrict yr = {cg.ptr(y)} + {base};\n"
        f"{ct} mx = -std::numeric_limits<{ct}>::infinity();\n"
        f"{loop} mx = std::max(mx, xr[{at}]);\n"
        f"{ct} s = {zero};\n"
    )
    if node.op_type == "LogSoftmax":
        body += (
            f"{loop} s += {exp}(xr[{at}] - mx);\n"
            f"const {ct} ls = std::log(s);\n"
            f"{loop} yr[{at}] = (xr[{at}] - mx) - ls;\n"
        )
    else:
        # the exponentials computed twice instead of stored and read back: one pass over y, the same values
        body += (
            f"{loop} s += {exp}(xr[{at}] - mx);\n"
            f"const {ct} inv = {one} / s;\n"
            f"{loop} yr[{at}] = {exp}(xr[{at}] - mx) * inv;\n"
        )
    return cg.par_for("i", rows, body)


def _workspace(node: "Node", g: "Graph"):
    _, _, inner = _view(node, g.t(node.inputs[0]).shape, g.opset)
    dt = np.float64 if g.t(node.inputs[0]).dtype == np.float64 else np.float32
    return [] if inner == 1 else [(D.norm(2 * inner), dt)]


def _batch_softmax(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule of Softmax, LogSoftmax and Hardmax: over an axis other than the batch's; before opset 13 the
    op covers every axis from ``axis`` on, so the batch must come before it."""
    axis = BR.axis_attr(node, in_rank[0], -1 if g.opset >= 13 else 1)
    return ins[0] is not None and ins[0] == outs[0] and ins[0] < axis if g.opset < 13 else \
        ins[0] is not None and ins[0] == outs[0] and ins[0] != axis


register("Softmax", "LogSoftmax", infer=_infer, emit=_emit, check=_check, workspace=_workspace,
         batch=_batch_softmax, cuda=_emit_cuda)


# ------------------------------------------------------------------------------------------------------
# Hardmax: 1 at the first maximum of each row of the (outer, R, inner) view, 0 elsewhere


def _check_hardmax(node: "Node", g: "Graph") -> str | None:
    t = g.tensors.get(node.inputs[0])
    if t is not None and not (np.dtype(t.dtype).kind == "f" or np.dtype(t.dtype).name == "bfloat16"):
        return f"input dtype {t.dtype} is not supported (floating point only)"
    return None


def _emit_hardmax(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    outer, ext, inner = _view(node, cg.shape(x), cg.g.opset)
    if D.norm(outer * ext * inner) == 0:
        return ""
    ct = cg.ctype(y)
    a = "double" if cg.dtype(y) == np.float64 else "float"
    one, zero = (f"static_cast<{ct}>(1.0f)", f"static_cast<{ct}>(0.0f)") if ct != "double" else ("1.0", "0.0")
    xp, yp = cg.ptr(x), cg.ptr(y)
    blk = D.norm(ext * inner)
    at = "r" if inner == 1 else f"r * {D.cpp(inner)}"
    return (
        f"for (int64_t q = 0; q < {cg.numel(y)}; ++q) {yp}[q] = {zero};\n"
        f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o)\n"
        f"  for (int64_t i = 0; i < {D.cpp(inner)}; ++i) {{\n"
        f"    const {ct}* __restrict xr = {xp} + {mul('o', blk)} + i;\n"
        f"    {a} best = static_cast<{a}>(xr[0]);\n"
        "    int64_t arg = 0;\n"
        f"    for (int64_t r = 1; r < {D.cpp(ext)}; ++r) {{\n"
        f"      const {a} v = static_cast<{a}>(xr[{at}]);\n"
        "      if (v > best) {\n        best = v;\n        arg = r;\n      }\n"
        "    }\n"
        f"    if (best == best) {yp}[{mul('o', blk)} + {mul('arg', inner)} + i] = {one};\n"
        "  }\n"
    )


def _emit_hardmax_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per row: the first maximum (compared as the CPU code), then the row of 0s and its 1."""
    x, y = node.inputs[0], node.outputs[0]
    rows, ext, inner, base = _rows(node, cg)
    if D.norm(rows * ext) == 0:
        return ""
    ct = cg.ctype(y)
    a = "double" if cg.dtype(y) == np.float64 else "float"
    one, zero = (f"static_cast<{ct}>(1.0f)", f"static_cast<{ct}>(0.0f)") if ct != "double" else ("1.0", "0.0")
    at = mul("r", inner)
    body = (
        f"const {ct}* __restrict xr = {cg.ptr(x)} + {base};\n"
        f"{ct}* __restrict yr = {cg.ptr(y)} + {base};\n"
        f"{a} best = static_cast<{a}>(xr[0]);\n"
        "int64_t arg = 0;\n"
        f"for (int64_t r = 1; r < {D.cpp(ext)}; ++r) {{\n"
        f"  const {a} v = static_cast<{a}>(xr[{at}]);\n"
        "  if (v > best) {\n    best = v;\n    arg = r;\n  }\n"
        "}\n"
        "if (!(best == best)) arg = -1;  // a NaN first: all 0\n"
        f"for (int64_t r = 0; r < {D.cpp(ext)}; ++r) yr[{at}] = r == arg ? {one} : {zero};\n"
    )
    return cg.par_for("i", rows, body)


register("Hardmax", infer=_infer, emit=_emit_hardmax, check=_check_hardmax, batch=_batch_softmax,
         cuda=_emit_hardmax_cuda)
