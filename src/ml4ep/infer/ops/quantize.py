"""Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger, QLinearMatMul.

Scales and zero points are per tensor, per axis (1-D along ``axis``) or blocked (``block_size`` elements along
``axis`` share one value; the parameter tensor has the input's shape with that axis divided, rounded up).
Quantization divides in float (double for int32 data or ``precision`` = double), rounds half to even
(``std::nearbyint`` in the default rounding mode), adds the zero point and saturates to the output type, NaN
going to its minimum as in the ONNX reference. int4/uint4/int2/uint2 (one element a byte, cpp/lowp.hpp) saturate
to their ranges the same way. The float8 targets take ``T::cast(x / scale, saturate)`` and no zero point (the
reference ignores it; DequantizeLinear likewise computes ``x * scale``); float4e2m1 takes
``T(x / scale + zero_point)``, always saturating, and dequantizes as ``x * scale``.

A QDQ model (``quantize_static``) keeps its weights as integer initializers behind DequantizeLinear: those nodes
fold at compile time, so the MatMul/Gemm after them sees constant float weights and takes the dense kernels;
the activations' QuantizeLinear -> DequantizeLinear pairs are two vectorised loops. Integer products
(MatMulInteger, QLinearMatMul) accumulate in int32, a constant B stored once with its zero point subtracted.

CUDA (``cg.device == "cuda"``): QuantizeLinear/DequantizeLinear are one thread per element (the scale and zero
point read in the kernel); DynamicQuantizeLinear finds the range in 256 strided partial results (workspace), then
one thread combines them, then one thread per element quantizes; the integer products and convolutions are one
thread per output element, a sequential int32 dot product each. The 4-bit, 2-bit and float8/float4 types stay
CPU-only (refused centrally by dtype).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ml_dtypes
import numpy as np
from onnx import helper

from . import register
from .common import CTYPES, broadcast_index_plan, node_error, norm_axis
from .. import dims as D
from ..literals import literal

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

# integer types a quantized tensor may have, with their saturation range
_QRANGE = {
    np.dtype(np.uint8): (0, 255),
    np.dtype(np.int8): (-128, 127),
    np.dtype(np.uint16): (0, 65535),
    np.dtype(np.int16): (-32768, 32767),
    np.dtype(np.int32): (-2147483648, 2147483647),
    np.dtype(ml_dtypes.int4): (-8, 7),
    np.dtype(ml_dtypes.uint4): (0, 15),
    np.dtype(ml_dtypes.int2): (-2, 1),
    np.dtype(ml_dtypes.uint2): (0, 3),
}
# float quantized types: float8 (a zero point, if any, is ignored) and float4e2m1 (zero point added in float)
_F8 = {np.dtype(t) for t in (ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e4m3fnuz, ml_dtypes.float8_e5m2,
                             ml_dtypes.float8_e5m2fnuz)}
_F4 = np.dtype(ml_dtypes.float4_e2m1fn)
_FQ = _F8 | {_F4}
_QTYPES = "int8/uint8/int16/uint16/int32/int4/uint4/int2/uint2/float8/float4e2m1"
_FLOATS = {np.dtype(np.float32), np.dtype(np.float64)}



def _onnx_np(code: int) -> np.dtype | None:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(int(code)))
    except (KeyError, TypeError, ValueError):
        return None


def _float_ok(dt) -> bool:
    """Float data the kernels read through their C++ type: float32/64, and float16/bfloat16 once code
    generation knows them (until then such nodes are refused and computed in float32 by the fallback)."""
    dt = np.dtype(dt)
    return dt in _FLOATS or (dt.kind == "f" or "float16" in str(dt)) and dt in CTYPES


def _fc(dt) -> str:
    """C++ type of the float math for a tensor of dtype ``dt``."""
    return "double" if np.dtype(dt) == np.float64 else "float"


# ------------------------------------------------------------------------------------------------------
# scale / zero-point layout

def _layout(node: "Node", g: "Graph", name: str, what: str):
    """``(mode, axis, block)`` of a scale or zero-point input against input 0: mode 'tensor' | 'axis' | 'block'."""
    x = g.t(node.inputs[0])
    p = g.t(name)
    block = int(node.attrs.get("block_size", 0) or 0)
    if D.is_static(p.numel) and int(p.numel) == 1 and not (block and p.rank == x.rank and p.rank > 0):
        return "tensor", 0, 0
    if x.rank == 0:
        raise node_error(node, f"{what} '{name}' has shape {D.fmt_shape(p.shape)} but the input is a scalar")
    axis = norm_axis(node, int(node.attrs.get("axis", 1)), x.rank)
    if block:
        if block < 0:
            raise node_error(node, f"block_size must be positive, got {block}")
        if p.rank != x.rank:
            raise node_error(node, f"blocked {what} '{name}' must have the input's rank {x.rank}, "
                             f"got shape {D.fmt_shape(p.shape)}")
        for k, (dx, dp) in enumerate(zip(x.shape, p.shape)):
            if k == axis:
                if not D.is_static(dx) or not D.is_static(dp):
                    raise node_error(node, "blocked quantization needs a static extent along the axis")
                if int(dp) != -(-int(dx) // block):
                    raise node_error(node, f"blocked {what} '{name}' has {dp} blocks along axis {axis}, "
                                     f"expected ceil({dx}/{block})")
            elif D.norm(dx) != D.norm(dp):
                raise node_error(node, f"blocked {what} '{name}' shape {D.fmt_shape(p.shape)} does not match the "
                                 f"input shape {D.fmt_shape(x.shape)} outside axis {axis}")
        return "block", axis, block
    if p.rank != 1 or D.norm(p.shape[0]) != D.norm(x.shape[axis]):
        raise node_error(node, f"{what} '{name}' of shape {D.fmt_shape(p.shape)} must be a scalar or 1-D of the "
                         f"input's extent {D.fmt(x.shape[axis])} along axis {axis}")
    return "axis", axis, 0


def _emit_affine(node: "Node", cg: "Emitter", params: list[str], body, f: str) -> str:
    """Loop over input 0 (and output 0, same shape) with ``body(x, y, [param values])`` C++ statements.

    Per-tensor and per-axis parameters are read into ``f`` locals outside the inner loop (the quantized
    tensors are char-sized, so the compiler could not assume that stores leave them unchanged)."""
    x, y = node.inputs[0], node.outputs[0]
    g = cg.g
    layouts = [_layout(node, g, p, "parameter") for p in params]
    xp, yp = cg.ptr(x), cg.ptr(y)
    pptr = [cg.ptr(p) for p in params]
    modes = {m for m, _, _ in layouts}
    if cg.device != "cpu":
        return _emit_affine_cuda(node, cg, layouts, pptr, body, f)
    pre = "".join(f"  const {f} p{k} = static_cast<{f}>({p}[0]);\n"
                  for k, ((m, _, _), p) in enumerate(zip(layouts, pptr)) if m == "tensor")
    if modes == {"tensor"}:
        vals = [f"p{k}" for k in range(len(params))]
        return (f"{{\n{pre}  for (int64_t i = 0; i < {cg.numel(y)}; ++i) {{\n"
                f"    {body(f'{xp}[i]', f'{yp}[i]', vals)}\n  }}\n}}\n")
    axis = next(a for m, a, _ in layouts if m != "tensor")
    block = next((b for m, _, b in layouts if m == "block"), 0)
    shape = cg.shape(x)
    outer, ext, inner = D.prod(shape[:axis]), shape[axis], D.prod(shape[axis + 1:])
    nb = -(-int(ext) // block) if block else 0
    vals, mid = [], ""
    for k, ((m, _, b), p) in enumerate(zip(layouts, pptr)):
        if m == "tensor":
            vals.append(f"p{k}")
        elif m == "axis":
            mid += f"    const {f} p{k} = static_cast<{f}>({p}[a]);\n"
            vals.append(f"p{k}")
        else:
            vals.append(f"static_cast<{f}>({p}[(o * {nb} + a / {b}) * {D.cpp(inner)} + i])")
    off = f"(o * {D.cpp(ext)} + a) * {D.cpp(inner)} + i"
    return (
        f"{{\n{pre}"
        f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n"
        f"  for (int64_t a = 0; a < {D.cpp(ext)}; ++a) {{\n{mid}"
        f"    for (int64_t i = 0; i < {D.cpp(inner)}; ++i) {{\n"
        f"      {body(f'{xp}[{off}]', f'{yp}[{off}]', vals)}\n"
        "    }\n  }\n}\n}\n"
    )


def _emit_affine_cuda(node: "Node", cg: "Emitter", layouts: list, pptr: list[str], body, f: str) -> str:
    """:func:`_emit_affine` on a GPU: one thread per element ``t``, which reads its parameters itself (on the
    host they are device memory)."""
    x, y = node.inputs[0], node.outputs[0]
    xp, yp = cg.ptr(x), cg.ptr(y)
    lines, vals = [], []
    if all(m == "tensor" for m, _, _ in layouts):
        for k, p in enumerate(pptr):
            lines.append(f"const {f} p{k} = static_cast<{f}>({p}[0]);")
            vals.append(f"p{k}")
        lines.append(body(f"{xp}[t]", f"{yp}[t]", vals))
        return cg.par_for("t", cg.numel(y), "\n".join(lines) + "\n")
    axis = next(a for m, a, _ in layouts if m != "tensor")
    shape = cg.shape(x)
    ext, inner = shape[axis], D.prod(shape[axis + 1:])
    E, I = D.cpp(ext), D.cpp(inner)  # noqa: E741
    blocked = any(m == "block" for m, _, _ in layouts)
    lines.append(f"const int64_t a = {'t' if inner == 1 else f'(t / {I})'} % {E};")
    if blocked:
        lines.append(f"const int64_t o = t / {D.cpp(D.norm(ext * inner))}, i = t % {I};")
    for k, ((m, _, b), p) in enumerate(zip(layouts, pptr)):
        if m == "block":
            nb = -(-int(ext) // b)
            vals.append(f"static_cast<{f}>({p}[(o * {nb} + a / {b}) * {I} + i])")
            continue
        lines.append(f"const {f} p{k} = static_cast<{f}>({p}[{'0' if m == 'tensor' else 'a'}]);")
        vals.append(f"p{k}")
    lines.append(body(f"{xp}[t]", f"{yp}[t]", vals))
    return cg.par_for("t", cg.numel(y), "\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------------
# QuantizeLinear(x, y_scale, y_zero_point?) and DequantizeLinear(x, x_scale, x_zero_point?)

def _q_dtype(node: "Node", g: "Graph"):
    """Output dtype of QuantizeLinear (None: an ONNX type numpy has no dtype for), or a reason string."""
    zp = node.input(2)
    od = node.attrs.get("output_dtype")
    if zp:
        dt = np.dtype(g.t(zp).dtype)
        if od and _onnx_np(od) != dt:
            return None, f"output_dtype {od} differs from the zero point's type {dt}"
        return dt, None
    if od:
        dt = _onnx_np(od)
        return dt, None
    return np.dtype(np.uint8), None


def _check_q(node: "Node", g: "Graph"):
    dt, why = _q_dtype(node, g)
    if why:
        return why
    if dt not in _QRANGE and dt not in _FQ:
        return f"quantized type {dt} is not supported ({_QTYPES} only)"
    xt, st = g.tensors.get(node.inputs[0]), g.tensors.get(node.input(1))
    if xt is not None and xt.dtype != np.int32 and not _float_ok(xt.dtype):
        return f"input dtype {xt.dtype} is not supported"
    if st is not None and not _float_ok(st.dtype):
        return f"scale dtype {st.dtype} is not supported"
    prec = node.attrs.get("precision")
    if prec and _onnx_np(prec) not in _FLOATS:
        return f"precision {prec} is not supported (float or double only)"
    return None


def _infer_q(node: "Node", g: "Graph"):
    dt, why = _q_dtype(node, g)
    if why or (dt not in _QRANGE and dt not in _FQ):
        raise node_error(node, why or f"quantized type {dt} is not supported")
    _layout(node, g, node.inputs[1], "y_scale")
    if node.input(2) and dt not in _F8:
        _layout(node, g, node.inputs[2], "y_zero_point")
    return [(dt, g.t(node.inputs[0]).shape)]


def _emit_q(node: "Node", cg: "Emitter") -> str:
    y = node.outputs[0]
    dt = np.dtype(cg.dtype(y))
    ty = cg.ctype(y)
    if dt in _FQ:
        return _emit_q_float(node, cg, dt, ty)
    lo, hi = _QRANGE[dt]
    prec = node.attrs.get("precision")
    wide = dt == np.int32 or cg.dtype(node.inputs[0]) in (np.int32, np.float64) or (
        prec and _onnx_np(prec) == np.float64)
    f = "double" if wide else "float"
    params = [node.inputs[1]] + ([node.inputs[2]] if node.input(2) else [])

    def body(xv, yv, vals):
        zp = f" + {vals[1]}" if len(vals) > 1 else ""
        # max(lo, v) first: a NaN v gives lo (the reference's int cast then clip)
        return (f"{yv} = static_cast<{ty}>(std::min(std::max({literal(lo, f)}, std::nearbyint(static_cast<{f}>({xv}) / "
                f"{vals[0]}){zp}), {literal(hi, f)}));")

    return _emit_affine(node, cg, params, body, f)


def _emit_q_float(node: "Node", cg: "Emitter", dt: np.dtype, ty: str) -> str:
    """QuantizeLinear to float8 (``T::cast(x / scale, saturate)``, the zero point ignored) or float4e2m1
    (``T(x / scale + zero_point)``); the division in double for float64 data or scale (or ``precision`` =
    double), as the reference, the result then rounded through float as ml_dtypes does."""
    sat = "true" if int(node.attrs.get("saturate", 1)) else "false"
    params = [node.inputs[1]] + ([node.inputs[2]] if node.input(2) and dt == _F4 else [])
    prec = node.attrs.get("precision")
    wide = np.float64 in (cg.dtype(node.inputs[0]), cg.dtype(node.inputs[1])) or (
        prec and _onnx_np(prec) == np.float64)
    f = "double" if wide else "float"

    def body(xv, yv, vals):
        v = f"static_cast<{f}>({xv}) / {vals[0]}"
        if dt == _F4:
            v += f" + {vals[1]}" if len(vals) > 1 else ""
            return f"{yv} = static_cast<{ty}>(static_cast<float>({v}));"
        return f"{yv} = {ty}::cast(static_cast<float>({v}), {sat});"

    return _emit_affine(node, cg, params, body, f)


def _dq_dtype(node: "Node", g: "Graph"):
    od = node.attrs.get("output_dtype")
    return _onnx_np(od) if od else np.dtype(g.t(node.inputs[1]).dtype)


def _check_dq(node: "Node", g: "Graph"):
    xt = g.tensors.get(node.inputs[0])
    if xt is not None and np.dtype(xt.dtype) not in _QRANGE and np.dtype(xt.dtype) not in _FQ:
        return f"quantized type {xt.dtype} is not supported ({_QTYPES} only)"
    st = g.tensors.get(node.input(1))
    if st is not None and not _float_ok(st.dtype):
        return f"scale dtype {st.dtype} is not supported"
    od = _dq_dtype(node, g) if st is not None else None
    if od is not None and not _float_ok(od):
        return f"output dtype {od} is not supported"
    zt = g.tensors.get(node.input(2)) if node.input(2) else None
    if zt is not None and xt is not None and zt.dtype != xt.dtype and np.dtype(xt.dtype) not in _FQ:
        return f"zero point dtype {zt.dtype} differs from the input's {xt.dtype}"
    return None


def _infer_dq(node: "Node", g: "Graph"):
    x = g.t(node.inputs[0])
    fq = np.dtype(x.dtype) in _FQ
    if np.dtype(x.dtype) not in _QRANGE and not fq:
        raise node_error(node, f"quantized type {x.dtype} is not supported")
    if node.input(2) and not fq and g.t(node.inputs[2]).dtype != x.dtype:
        raise node_error(node, f"zero point dtype {g.t(node.inputs[2]).dtype} differs from the input's {x.dtype}")
    _layout(node, g, node.inputs[1], "x_scale")
    if node.input(2) and not fq:
        _layout(node, g, node.inputs[2], "x_zero_point")
    return [(_dq_dtype(node, g), x.shape)]


def _emit_dq(node: "Node", cg: "Emitter") -> str:
    y = node.outputs[0]
    ty = cg.ctype(y)
    if np.dtype(cg.dtype(node.inputs[0])) in _FQ:  # float8/float4: x * scale, no zero point (as the reference)
        f = "double" if cg.dtype(node.inputs[1]) == np.float64 else "float"
        return _emit_affine(node, cg, [node.inputs[1]],
                            lambda xv, yv, vals: f"{yv} = static_cast<{ty}>(static_cast<{f}>({xv}) * {vals[0]});", f)
    wide = cg.dtype(node.inputs[0]) == np.int32 or cg.dtype(y) == np.float64 or cg.dtype(node.inputs[1]) == np.float64
    f = "double" if wide else "float"
    params = [node.inputs[1]] + ([node.inputs[2]] if node.input(2) else [])

    def body(xv, yv, vals):
        d = f"static_cast<{f}>({xv})"
        if len(vals) > 1:
            d = f"({d} - {vals[1]})"
        return f"{yv} = static_cast<{ty}>({d} * {vals[0]});"

    return _emit_affine(node, cg, params, body, f)


register("QuantizeLinear", infer=_infer_q, emit=_emit_q, check=_check_q, cuda=True)
register("DequantizeLinear", infer=_infer_dq, emit=_emit_dq, check=_check_dq, cuda=True)


# ------------------------------------------------------------------------------------------------------
# DynamicQuantizeLinear(x) -> y (uint8), y_scale, y_zero_point

def _check_dyn(node: "Node", g: "Graph"):
    xt = g.tensors.get(node.inputs[0])
    if xt is not None and xt.dtype != np.float32:
        return f"input dtype {xt.dtype} is not supported (float32 only)"
    return None


def _infer_dyn(node: "Node", g: "Graph"):
    x = g.t(node.inputs[0])
    return [(np.dtype(np.uint8), x.shape), (x.dtype, ()), (np.dtype(np.uint8), ())]


def _emit_dyn(node: "Node", cg: "Emitter") -> str:
    x = node.inputs[0]
    n = cg.numel(x)
    xp = cg.ptr(x)
    outs = list(node.outputs) + [""] * (3 - len(node.outputs))
    if cg.device != "cpu":
        return _emit_dyn_cuda(node, cg, outs)
    code = (
        "{\n"
        "  float mn = 0.0f, mx = 0.0f;\n"
        f"  for (int64_t i = 0; i < {n}; ++i) {{ const float v = {xp}[i]; mn = v < mn ? v : mn; mx = v > mx ? v : mx; }}\n"
        "  const float scale = (mx == mn ? 1.0f : mx - mn) / 255.0f;\n"
        "  const float zp = std::nearbyint(std::min(std::max(0.0f - mn / scale, 0.0f), 255.0f));\n"
    )
    if outs[0]:
        code += (f"  for (int64_t i = 0; i < {n}; ++i) {cg.ptr(outs[0])}[i] = static_cast<uint8_t>("
                 f"std::min(std::max(0.0f, std::nearbyint({xp}[i] / scale) + zp), 255.0f));\n")
    if outs[1]:
        code += f"  {cg.ptr(outs[1])}[0] = scale;\n"
    if outs[2]:
        code += f"  {cg.ptr(outs[2])}[0] = static_cast<uint8_t>(zp);\n"
    return code + "}\n"


_DYN_PARTS = 256  # the GPU's partial minima and maxima


def _emit_dyn_cuda(node: "Node", cg: "Emitter", outs: list[str]) -> str:
    """The range in ``_DYN_PARTS`` strided partial results (coalesced reads), combined by one thread, which also
    writes the scale and zero point (to the workspace for the last kernel, and to the outputs); then one thread
    per element. Min and max are exact: the same results as the CPU's single loop."""
    x = node.inputs[0]
    n = cg.numel(x)
    xp = cg.ptr(x)
    numel = cg.g.t(x).numel
    parts = max(1, min(_DYN_PARTS, int(numel))) if D.is_static(numel) else _DYN_PARTS
    code = f"float* const part = {cg.workspace(0)};  // [0, {parts}): minima, [{_DYN_PARTS}, ...): maxima\n"
    code += cg.par_for("t", parts, (
        "float mn = 0.0f, mx = 0.0f;\n"
        f"for (int64_t i = t; i < {n}; i += {parts}) {{ const float v = {xp}[i]; mn = v < mn ? v : mn; "
        "mx = v > mx ? v : mx; }\n"
        f"part[t] = mn;\npart[{_DYN_PARTS} + t] = mx;\n"))
    fin = (
        "float mn = 0.0f, mx = 0.0f;\n"
        f"for (int k = 0; k < {parts}; ++k) {{ mn = part[k] < mn ? part[k] : mn; "
        f"mx = part[{_DYN_PARTS} + k] > mx ? part[{_DYN_PARTS} + k] : mx; }}\n"
        "const float scale = (mx == mn ? 1.0f : mx - mn) / 255.0f;\n"
        "const float zp = std::nearbyint(std::min(std::max(0.0f - mn / scale, 0.0f), 255.0f));\n"
        "part[0] = scale;\npart[1] = zp;\n"
    )
    if outs[1]:
        fin += f"{cg.ptr(outs[1])}[0] = scale;\n"
    if outs[2]:
        fin += f"{cg.ptr(outs[2])}[0] = static_cast<uint8_t>(zp);\n"
    code += cg.par_for("t", 1, fin)
    if outs[0]:
        code += cg.par_for("i", n, (
            "const float scale = part[0], zp = part[1];\n"
            f"{cg.ptr(outs[0])}[i] = static_cast<uint8_t>("
            f"std::min(std::max(0.0f, std::nearbyint({xp}[i] / scale) + zp), 255.0f));\n"))
    return code


def _ws_dyn(node: "Node", g: "Graph"):
    return [(2 * _DYN_PARTS, np.float32)]  # the GPU code's partial results (unused on the CPU)


register("DynamicQuantizeLinear", infer=_infer_dyn, emit=_emit_dyn, check=_check_dyn, workspace=_ws_dyn, cuda=True)


# ------------------------------------------------------------------------------------------------------
# integer matrix products: MatMulInteger(A, B, a_zp?, b_zp?) and
# QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp)

_INT8 = {np.dtype(np.int8), np.dtype(np.uint8)}


def _mm_io(node: "Node"):
    """Input indices (a, b, a_zp, b_zp) of the product."""
    return (0, 1, 2, 3) if node.op_type == "MatMulInteger" else (0, 3, 2, 5)


def _mm_shapes(node: "Node", g: "Graph"):
    from .gemm import matmul_shapes

    ia, ib, _, _ = _mm_io(node)
    return matmul_shapes(node, g.t(node.inputs[ia]).shape, g.t(node.inputs[ib]).shape)


def _vec_param(node: "Node", g: "Graph", idx: int, extent, what: str) -> str:
    """'s' (scalar), 'v' (1-D of ``extent``) or '' (absent) for a scale / zero point input."""
    name = node.input(idx)
    if not name:
        return ""
    t = g.t(name)
    if D.is_static(t.numel) and int(t.numel) == 1:
        return "s"
    if t.rank == 1 and D.norm(t.shape[0]) == D.norm(extent):
        return "v"
    raise node_error(node, f"{what} '{name}' of shape {D.fmt_shape(t.shape)} must be a scalar or 1-D of {D.fmt(extent)}")


def _check_mm(node: "Node", g: "Graph"):
    ia, ib, iza, izb = _mm_io(node)
    for i in (ia, ib, iza, izb):
        t = g.tensors.get(node.input(i)) if node.input(i) else None
        if t is not None and np.dtype(t.dtype) not in _INT8:
            return f"input '{node.input(i)}' has dtype {t.dtype} (int8/uint8 only)"
    if node.op_type == "QLinearMatMul":
        for i in (1, 4, 6):
            t = g.tensors.get(node.input(i))
            if t is not None and not _float_ok(t.dtype):
                return f"scale '{node.input(i)}' has dtype {t.dtype}"
        t = g.tensors.get(node.input(7)) if node.input(7) else None
        if t is not None and np.dtype(t.dtype) not in _INT8:
            return f"y_zero_point has dtype {t.dtype} (int8/uint8 only)"
    return None


def _infer_mm(node: "Node", g: "Graph"):
    a2, b2, _, out = _mm_shapes(node, g)
    _, _, iza, izb = _mm_io(node)
    _vec_param(node, g, iza, a2[-2], "a_zero_point")
    _vec_param(node, g, izb, b2[-1], "b_zero_point")
    if node.op_type == "MatMulInteger":
        return [(np.dtype(np.int32), out)]
    _vec_param(node, g, 1, a2[-2], "a_scale")
    _vec_param(node, g, 4, b2[-1], "b_scale")
    if _vec_param(node, g, 6, 1, "y_scale") != "s":
        raise node_error(node, "y_scale must be a scalar")
    if node.input(7) and _vec_param(node, g, 7, 1, "y_zero_point") != "s":
        raise node_error(node, "y_zero_point must be a scalar")
    dt = g.t(node.inputs[7]).dtype if node.input(7) else g.t(node.inputs[0]).dtype
    return [(np.dtype(dt), out)]


def _ws_mm(node: "Node", g: "Graph"):
    if node.op_type == "MatMulInteger":
        return []
    _, b2, _, _ = _mm_shapes(node, g)
    return [(b2[-1], np.int32)]


def _pval(cg: "Emitter", node: "Node", idx: int, kind: str, var: str, f: str = "int32_t") -> str:
    if not kind:
        return f"{f}(0)"
    p = cg.ptr(node.inputs[idx])
    return f"static_cast<{f}>({p}[{'0' if kind == 's' else var}])"


def _emit_mm(node: "Node", cg: "Emitter") -> str:
    g = cg.g
    ia, ib, iza, izb = _mm_io(node)
    a, b, y = node.inputs[ia], node.inputs[ib], node.outputs[0]
    a2, b2, batch, _ = _mm_shapes(node, g)
    m, k, n = a2[-2], a2[-1], b2[-1]
    kza = _vec_param(node, g, iza, m, "a_zero_point")
    if cg.const(b) is not None and len(b2) == 2 and not kza == "v" and not (
            node.op_type == "QLinearMatMul" and _vec_param(node, g, 1, m, "a_scale") == "v"):
        # a constant matrix B: all rows of A (batch dims included) in one product
        m, batch = D.prod(a2[:-1]), ()
    kzb = _vec_param(node, g, izb, n, "b_zero_point")
    M, K, N = D.cpp(m), D.cpp(k), D.cpp(n)
    bv = cg.const(b)
    zbv = cg.const(node.input(izb)) if kzb else None
    lines = []
    if bv is not None and (not kzb or zbv is not None) and not batch:
        # constant B: stored once as int32 with its zero point subtracted
        w = np.asarray(bv).reshape(int(k), int(n)).astype(np.int32)
        if kzb:
            w = w - np.asarray(zbv).astype(np.int32).reshape(-1)[None, :] if kzb == "v" \
                else w - np.int32(np.asarray(zbv).reshape(-1)[0])
        bp = cg.weight(np.ascontiguousarray(w, dtype=np.int32), f"{node.name}.B")
        bexpr = f"{bp}[kk * {N} + j]"
        bfun = lambda ob: bexpr  # noqa: E731 - one matrix for every product
        extents, sa, sb, sy = [], [], [], []
    else:
        bp = cg.ptr(b)
        zb = _pval(cg, node, izb, kzb, 'j')
        bfun = lambda ob: f"(static_cast<int32_t>({bp}[{ob}kk * {N} + j]) - {zb})"  # noqa: E731 - ob: "offset + "
        bexpr = bfun("ob + ")
        if batch:
            extents, (sa, sb) = broadcast_index_plan(batch, [a2[:-2], b2[:-2]])
            sy = []
            acc: D.DimLike = 1
            for e in reversed(extents):
                sy.insert(0, acc)
                acc = D.norm(acc * e)
        else:
            extents, sa, sb, sy = [], [], [], []
    idx = [f"b{j}" for j in range(len(extents))]

    def off(st, unit):
        terms = [f"{idx[j]} * {D.cpp(D.norm(s * unit))}" for j, s in enumerate(st) if s != 0]
        return " + ".join(terms) if terms else "0"

    if cg.device != "cpu":
        return _emit_mm_cuda(node, cg, m, k, n, kza, bfun, extents, idx, sa, sb, off)
    for j, e in enumerate(extents):
        lines.append(f"for (int64_t {idx[j]} = 0; {idx[j]} < {D.cpp(e)}; ++{idx[j]}) {{")
    lines.append(f"const int64_t oa = {off(sa, D.prod([m, k]))}; const int64_t ob = {off(sb, D.prod([k, n]))}; "
                 f"const int64_t oy = {off(sy, D.prod([m, n]))}; (void)ob;")
    ap, yp = cg.ptr(a), cg.ptr(y)
    q = node.op_type == "QLinearMatMul"
    acc_ptr = cg.workspace(0, "int32_t") if q else f"({yp} + oy + i * {N})"
    lines.append(f"for (int64_t i = 0; i < {M}; ++i) {{")
    lines.append(f"  int32_t* __restrict acc = {acc_ptr};")
    lines.append(f"  for (int64_t j = 0; j < {N}; ++j) acc[j] = 0;")
    lines.append(f"  const int32_t za = {_pval(cg, node, iza, kza, 'i')};")
    lines.append(f"  for (int64_t kk = 0; kk < {K}; ++kk) {{")
    lines.append(f"    const int32_t av = static_cast<int32_t>({ap}[oa + i * {K} + kk]) - za;")
    lines.append(f"    for (int64_t j = 0; j < {N}; ++j) acc[j] += av * {bexpr};")
    lines.append("  }")
    if q:
        ty = cg.ctype(y)
        lo, hi = _QRANGE[np.dtype(cg.dtype(y))]
        ka = _vec_param(node, g, 1, m, "a_scale")
        kb = _vec_param(node, g, 4, n, "b_scale")
        sa_ = _pval(cg, node, 1, ka, "i", "float")
        sb_ = _pval(cg, node, 4, kb, "j", "float")
        sy_ = _pval(cg, node, 6, "s", "0", "float")
        zy = _pval(cg, node, 7, "s" if node.input(7) else "", "0", "double")
        lines.append(f"  {ty}* __restrict yr = {yp} + oy + i * {N};")
        if kb == "v":
            lines.append(f"  for (int64_t j = 0; j < {N}; ++j) {{")
            lines.append(f"    const float mult = {sa_} * {sb_} / {sy_};")
        else:  # one multiplier per row, read before the stores
            lines.append(f"  const float mult = {sa_} * {sb_} / {sy_};")
            lines.append(f"  for (int64_t j = 0; j < {N}; ++j) {{")
        lines.append(f"    yr[j] = static_cast<{ty}>(std::min(std::max(double({lo}), std::nearbyint("
                     f"static_cast<double>(acc[j]) * static_cast<double>(mult) + {zy})), double({hi})));")
        lines.append("  }")
    lines.append("}")
    lines += ["}"] * len(extents)
    return "{\n" + "\n".join("  " + s for s in lines) + "\n}\n"


def _emit_mm_cuda(node: "Node", cg: "Emitter", m, k, n, kza: str, bfun, extents, idx, sa, sb, off) -> str:
    """:func:`_emit_mm` on a GPU: one thread per output element ``t`` (row-major over the batch, i, j), an int32
    dot product over K, requantized in the thread for QLinearMatMul."""
    g = cg.g
    ia, ib, iza, _ = _mm_io(node)
    a, y = node.inputs[ia], node.outputs[0]
    M, K, N = D.cpp(m), D.cpp(k), D.cpp(n)
    L = [f"const int64_t j = t % {N}, i = (t / {N}) % {M};" if extents else f"const int64_t j = t % {N}, i = t / {N};"]
    if extents:
        L.append(f"const int64_t bt = t / {D.cpp(D.prod([m, n]))};")
        inner: D.DimLike = 1
        split = []
        for j in range(len(extents) - 1, -1, -1):
            if sa[j] != 0 or sb[j] != 0:
                q = f"(bt / {D.cpp(inner)})" if inner != 1 else "bt"
                split.insert(0, f"const int64_t {idx[j]} = {q} % {D.cpp(extents[j])};")
            inner = D.norm(inner * extents[j])
        L += split
    oa = off(sa, D.prod([m, k])) if extents else "0"
    ob = off(sb, D.prod([k, n])) if extents else "0"
    L.append(f"const int32_t za = {_pval(cg, node, iza, kza, 'i')};")
    bexpr = bfun("" if ob == "0" else f"{ob} + ")  # B's element (kk, j), at B's batch offset ob
    arow = f"{cg.ptr(a)} + " + (f"{oa} + " if oa != "0" else "") + f"i * {K}"
    L += [f"const auto* ar = {arow};",
          "int32_t acc = 0;",
          f"for (int64_t kk = 0; kk < {K}; ++kk) acc += (static_cast<int32_t>(ar[kk]) - za) * {bexpr};"]
    if node.op_type == "QLinearMatMul":
        ty = cg.ctype(y)
        lo, hi = _QRANGE[np.dtype(cg.dtype(y))]
        sa_ = _pval(cg, node, 1, _vec_param(node, g, 1, m, "a_scale"), "i", "float")
        sb_ = _pval(cg, node, 4, _vec_param(node, g, 4, n, "b_scale"), "j", "float")
        sy_ = _pval(cg, node, 6, "s", "0", "float")
        zy = _pval(cg, node, 7, "s" if node.input(7) else "", "0", "double")
        L += [f"const float mult = {sa_} * {sb_} / {sy_};",
              f"{cg.ptr(y)}[t] = static_cast<{ty}>(std::min(std::max(double({lo}), std::nearbyint("
              f"static_cast<double>(acc) * static_cast<double>(mult) + {zy})), double({hi})));"]
    else:
        L.append(f"{cg.ptr(y)}[t] = acc;")
    return cg.par_for("t", cg.numel(y), "\n".join(L) + "\n")


register("MatMulInteger", "QLinearMatMul", infer=_infer_mm, emit=_emit_mm, check=_check_mm, workspace=_ws_mm,
         cuda=True)


# ------------------------------------------------------------------------------------------------------
# integer convolutions: ConvInteger(x, w, x_zp?, w_zp?) and
# QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B?): a direct loop nest accumulating in int32
# (the zero-padded border contributes nothing: padding holds the zero point)

def _conv_io(node: "Node"):
    """Input indices (x, w, x_zp, w_zp)."""
    return (0, 1, 2, 3) if node.op_type == "ConvInteger" else (0, 3, 2, 5)


def _conv_geo(node: "Node", g: "Graph"):
    from ..graph import Node as _Node
    from .conv import conv_geometry

    ix, iw, _, _ = _conv_io(node)
    proxy = _Node(node.op_type, node.name, [node.inputs[ix], node.inputs[iw]], node.outputs, node.attrs)
    return conv_geometry(proxy, g)


def _check_conv(node: "Node", g: "Graph"):
    from .conv import check_auto_pad

    r = check_auto_pad(node)
    if r:
        return r
    ix, iw, izx, izw = _conv_io(node)
    for i in (ix, iw, izx, izw):
        t = g.tensors.get(node.input(i)) if node.input(i) else None
        if t is not None and np.dtype(t.dtype) not in _INT8:
            return f"input '{node.input(i)}' has dtype {t.dtype} (int8/uint8 only)"
    x = g.tensors.get(node.inputs[0])
    if x is not None and not 3 <= x.rank <= 5:
        return f"input of rank {x.rank}: only 1-D, 2-D and 3-D convolutions are supported"
    if node.op_type == "QLinearConv":
        for i in (1, 4, 6):
            t = g.tensors.get(node.input(i))
            if t is not None and not _float_ok(t.dtype):
                return f"scale '{node.input(i)}' has dtype {t.dtype}"
    return None


def _infer_conv_int(node: "Node", g: "Graph"):
    geo = _conv_geo(node, g)
    _, _, izx, izw = _conv_io(node)
    if _vec_param(node, g, izx, 1, "x_zero_point") not in ("", "s"):
        raise node_error(node, "x_zero_point must be a scalar")
    _vec_param(node, g, izw, geo.cout, "w_zero_point")
    shape = (geo.batch, geo.cout, *geo.outs[3 - geo.nsp:])
    if node.op_type == "ConvInteger":
        return [(np.dtype(np.int32), shape)]
    _vec_param(node, g, 4, geo.cout, "w_scale")
    for i, what in ((1, "x_scale"), (6, "y_scale"), (7, "y_zero_point")):
        if node.input(i) and _vec_param(node, g, i, 1, what) != "s":
            raise node_error(node, f"{what} must be a scalar")
    if node.input(8):
        b = g.t(node.inputs[8])
        if tuple(b.shape) != (geo.cout,) or b.dtype != np.int32:
            raise node_error(node, f"bias must be int32 of shape ({geo.cout},), got {b.dtype} {D.fmt_shape(b.shape)}")
    dt = g.t(node.inputs[7]).dtype if node.input(7) else g.t(node.inputs[0]).dtype
    return [(np.dtype(dt), shape)]


def _emit_conv_int(node: "Node", cg: "Emitter") -> str:
    g = cg.g
    geo = _conv_geo(node, g)
    ix, iw, izx, izw = _conv_io(node)
    x, w, y = node.inputs[ix], node.inputs[iw], node.outputs[0]
    kzx = _vec_param(node, g, izx, 1, "x_zero_point")
    kzw = _vec_param(node, g, izw, geo.cout, "w_zero_point")
    wv = cg.const(w)
    zwv = cg.const(node.input(izw)) if kzw else None
    m, cgi = geo.cout, geo.cg
    if wv is not None and (not kzw or zwv is not None):
        wi = np.asarray(wv).astype(np.int32).reshape(m, -1)
        if kzw:
            wi = wi - np.asarray(zwv).astype(np.int32).reshape(-1, 1)
        wexpr = f"{cg.weight(np.ascontiguousarray(wi), f'{node.name}.W')}[widx]"
    else:
        wexpr = f"(static_cast<int32_t>({cg.ptr(w)}[widx]) - {_pval(cg, node, izw, kzw, 'oc')})"
    (i0, i1, i2), (k0, k1, k2), (o0, o1, o2) = geo.ins, geo.ks, geo.outs
    (s0, s1, s2), (d0, d1, d2), (p0, p1, p2) = geo.st, geo.dl, geo.pb
    ksz, osp = k0 * k1 * k2, o0 * o1 * o2
    q = node.op_type == "QLinearConv"
    bias = f"{cg.ptr(node.inputs[8])}[oc]" if q and node.input(8) else "0"
    if cg.device != "cpu":
        return _emit_conv_int_cuda(node, cg, geo, kzx, wexpr, bias)
    L = [
        f"const int32_t xz = {_pval(cg, node, izx, kzx, '0')};",
        f"for (int64_t b = 0; b < {D.cpp(geo.batch)}; ++b) {{",
        f"  for (int64_t oc = 0; oc < {m}; ++oc) {{",
        f"    const int64_t xc0 = b * {geo.cin} + (oc / {geo.mg}) * {cgi};",
    ]
    if q:
        ty = cg.ctype(y)
        lo, hi = _QRANGE[np.dtype(cg.dtype(y))]
        sx = _pval(cg, node, 1, "s", "0", "float")
        sw = _pval(cg, node, 4, _vec_param(node, g, 4, m, "w_scale"), "oc", "float")
        sy = _pval(cg, node, 6, "s", "0", "float")
        zy = _pval(cg, node, 7, "s" if node.input(7) else "", "0", "double")
        L.append(f"    const double mult = static_cast<double>({sx} * {sw} / {sy});")
    L += [
        f"    for (int64_t od = 0; od < {o0}; ++od) for (int64_t oh = 0; oh < {o1}; ++oh) "
        f"for (int64_t ow = 0; ow < {o2}; ++ow) {{",
        f"      int32_t acc = {bias};",
        f"      for (int64_t ic = 0; ic < {cgi}; ++ic) {{",
        f"        for (int64_t kd = 0; kd < {k0}; ++kd) {{",
        f"          const int64_t id = od * {s0} - {p0} + kd * {d0}; if (id < 0 || id >= {i0}) continue;",
        f"          for (int64_t kh = 0; kh < {k1}; ++kh) {{",
        f"            const int64_t ih = oh * {s1} - {p1} + kh * {d1}; if (ih < 0 || ih >= {i1}) continue;",
        f"            for (int64_t kw = 0; kw < {k2}; ++kw) {{",
        f"              const int64_t iw = ow * {s2} - {p2} + kw * {d2}; if (iw < 0 || iw >= {i2}) continue;",
        f"              const int64_t widx = (oc * {cgi} + ic) * {ksz} + (kd * {k1} + kh) * {k2} + kw;",
        f"              acc += (static_cast<int32_t>({cg.ptr(x)}[(((xc0 + ic) * {i0} + id) * {i1} + ih) * {i2} + iw])"
        f" - xz) * {wexpr};",
        "            }", "          }", "        }", "      }",
        f"      const int64_t yo = (b * {m} + oc) * {osp} + (od * {o1} + oh) * {o2} + ow;",
    ]
    if q:
        L.append(f"      {cg.ptr(y)}[yo] = static_cast<{ty}>(std::nearbyint(std::min(std::max(double({lo}), "
                 f"static_cast<double>(acc) * mult + {zy}), double({hi}))));")
    else:
        L.append(f"      {cg.ptr(y)}[yo] = acc;")
    L += ["    }", "  }", "}"]
    return "{\n" + "\n".join("  " + s for s in L) + "\n}\n"


def _emit_conv_int_cuda(node: "Node", cg: "Emitter", geo, kzx: str, wexpr: str, bias: str) -> str:
    """:func:`_emit_conv_int` on a GPU: one thread per output element ``t`` (b, oc, od, oh, ow), the same int32
    loop nest over the window; the zero points and scales read in the thread."""
    g = cg.g
    ix, _, izx, _ = _conv_io(node)
    x, y = node.inputs[ix], node.outputs[0]
    m, cgi = geo.cout, geo.cg
    (i0, i1, i2), (k0, k1, k2), (o0, o1, o2) = geo.ins, geo.ks, geo.outs
    (s0, s1, s2), (d0, d1, d2), (p0, p1, p2) = geo.st, geo.dl, geo.pb
    ksz, osp = k0 * k1 * k2, o0 * o1 * o2
    L = [
        f"const int64_t ow = t % {o2}, oh = (t / {o2}) % {o1}, od = (t / {o1 * o2}) % {o0};",
        f"const int64_t oc = (t / {osp}) % {m}, b = t / {m * osp};",
        f"const int32_t xz = {_pval(cg, node, izx, kzx, '0')};",
        f"const int64_t xc0 = b * {geo.cin} + (oc / {geo.mg}) * {cgi};",
        f"int32_t acc = {bias};",
        f"for (int64_t ic = 0; ic < {cgi}; ++ic) {{",
        f"  for (int64_t kd = 0; kd < {k0}; ++kd) {{",
        f"    const int64_t id = od * {s0} - {p0} + kd * {d0}; if (id < 0 || id >= {i0}) continue;",
        f"    for (int64_t kh = 0; kh < {k1}; ++kh) {{",
        f"      const int64_t ih = oh * {s1} - {p1} + kh * {d1}; if (ih < 0 || ih >= {i1}) continue;",
        f"      for (int64_t kw = 0; kw < {k2}; ++kw) {{",
        f"        const int64_t iw = ow * {s2} - {p2} + kw * {d2}; if (iw < 0 || iw >= {i2}) continue;",
        f"        const int64_t widx = (oc * {cgi} + ic) * {ksz} + (kd * {k1} + kh) * {k2} + kw;",
        f"        acc += (static_cast<int32_t>({cg.ptr(x)}[(((xc0 + ic) * {i0} + id) * {i1} + ih) * {i2} + iw])"
        f" - xz) * {wexpr};",
        "      }", "    }", "  }", "}",
    ]
    if node.op_type == "QLinearConv":
        ty = cg.ctype(y)
        lo, hi = _QRANGE[np.dtype(cg.dtype(y))]
        sx = _pval(cg, node, 1, "s", "0", "float")
        sw = _pval(cg, node, 4, _vec_param(node, g, 4, m, "w_scale"), "oc", "float")
        sy = _pval(cg, node, 6, "s", "0", "float")
        zy = _pval(cg, node, 7, "s" if node.input(7) else "", "0", "double")
        L += [f"const double mult = static_cast<double>({sx} * {sw} / {sy});",
              f"{cg.ptr(y)}[t] = static_cast<{ty}>(std::nearbyint(std::min(std::max(double({lo}), "
              f"static_cast<double>(acc) * mult + {zy}), double({hi}))));"]
    else:
        L.append(f"{cg.ptr(y)}[t] = acc;")
    return cg.par_for("t", cg.numel(y), "\n".join(L) + "\n")


register("ConvInteger", "QLinearConv", infer=_infer_conv_int, emit=_emit_conv_int, check=_check_conv, cuda=True)
