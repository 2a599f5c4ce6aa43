"""Normalisation layers: BatchNormalization (inference), LayerNormalization, InstanceNormalization.

BatchNormalization with constant statistics becomes ``y = a[c] * x + b[c]`` with ``a = scale / sqrt(var +
eps)`` and ``b = B - mean * a`` computed once at code generation (a fusion pass folds it into a preceding Conv
where it can; this is the standalone case, e.g. after a Gemm). LayerNormalization and InstanceNormalization
compute the mean, then the variance from the centred values (two passes over a row in cache, robust against
large offsets), then write the scaled row.

CUDA (``cg.device == "cuda"``): BatchNormalization is one thread per element; LayerNormalization and
InstanceNormalization one thread per normalised row (plain sequential sums instead of the CPU's interleaved
partial sums); LRN one thread per element summing its channel window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import batch_rules as BR, register
from .common import check_floating, mul, norm_axis
from .gemm import activation_code
from .reduce import row_reduce
from .. import dims as D
from ..literals import literal
from ...errors import ShapeError

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node


def _add(a: str, b: str) -> str:
    return f"{a} + {b}"


def _check_float(g: "Graph", name: str) -> str | None:
    t = g.tensors.get(name)
    if t is not None and t.dtype != np.float32:
        return f"input '{name}' has dtype {t.dtype} (float32 only)"
    return None



def _row_stats(ext: D.DimLike, eps: float, ind: str, device: str = "cpu") -> str:
    """Statements computing ``mean`` and ``inv`` (1 / standard deviation) of the row ``xr[0:ext]``; on a GPU
    (one thread per row) plain sequential sums, without the partial-sum arrays that vectorise on the CPU."""
    n = literal(int(ext), "float") if D.is_static(ext) else f"static_cast<float>({D.cpp(ext)})"
    if device != "cpu":
        e = D.cpp(ext)
        return (
            f"{ind}float s = 0.0f;\n{ind}for (int64_t r = 0; r < {e}; ++r) s += xr[r];\n"
            f"{ind}const float mean = s / {n};\n"
            f"{ind}float q = 0.0f;\n"
            f"{ind}for (int64_t r = 0; r < {e}; ++r) {{ const float d = xr[r] - mean; q += d * d; }}\n"
            f"{ind}const float inv = 1.0f / std::sqrt(q / {n} + {literal(eps, 'float')});\n"
        )
    return (
        row_reduce("s", "float", ext, lambda r: f"xr[{r}]", _add, "0.0f", ind)
        + f"{ind}const float mean = s / {n};\n"
        + row_reduce("q", "float", ext, lambda r: f"(xr[{r}] - mean) * (xr[{r}] - mean)", _add, "0.0f", ind)
        + f"{ind}const float inv = 1.0f / std::sqrt(q / {n} + {literal(eps, 'float')});\n"
    )


# ------------------------------------------------------------------------------------------------------
# BatchNormalization (inference mode)


def _check_bn(node: "Node", g: "Graph") -> str | None:
    if int(node.attr("training_mode", 0)):
        return "training_mode=1 is not supported (inference only)"
    if "spatial" in node.attrs and not int(node.attr("spatial", 1)):
        return "spatial=0 (per-activation statistics, opset < 9) is not supported"
    if any(o for o in node.outputs[1:]):
        return "only the output Y is supported (the running statistics outputs are for training)"
    for i in node.inputs[:5]:
        r = _check_float(g, i)
        if r:
            return r
    return None


def _check_channel_params(node: "Node", g: "Graph", names: tuple[str, ...], c) -> None:
    """Inputs 1.. (named ``names``) hold one value per channel."""
    for k, what in enumerate(names, start=1):
        p = g.t(node.inputs[k])
        if p.numel != c:
            raise ShapeError(
                f"node '{node.name}' ({node.op_type}): {what} has shape {D.fmt_shape(p.shape)}, "
                f"expected ({D.fmt(c)})"
            )


def _infer_bn(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    if t.rank < 2:
        raise ShapeError(
            f"node '{node.name}' (BatchNormalization): input must be (N, C, ...), got rank {t.rank}"
        )
    c = t.shape[1]
    _check_channel_params(node, g, ("scale", "B", "mean", "var"), c)
    return [(t.dtype, t.shape)]


def _emit_bn(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    n, c, inner = shape[0], shape[1], D.prod(shape[2:])
    eps = float(node.attr("epsilon", 1e-5))
    params = [cg.const(i) for i in node.inputs[1:5]]
    act = activation_code(node, "v")
    xp, yp = cg.ptr(x), cg.ptr(y)
    if all(p is not None for p in params):
        scale, bias, mean, var = (np.asarray(p, dtype=np.float64).reshape(-1) for p in params)
        with np.errstate(invalid="ignore", divide="ignore"):  # a negative variance gives NaN, as at run time
            a = scale / np.sqrt(var + np.float64(np.float32(eps)))
            b = bias - mean * a
        ap = cg.weight(a.astype(np.float32), f"{node.name}.a")
        bp = cg.weight(b.astype(np.float32), f"{node.name}.b")
        decl = (
            "// y = a[c] * x + b[c] with a = scale / sqrt(var + epsilon), b = B - mean * a\n"
            f"const float* __restrict bn_a = {ap};\nconst float* __restrict bn_b = {bp};\n"
        )
        coef = "    const float a = bn_a[c], b = bn_b[c];\n"
    else:
        sp, bp_, mp, vp = (cg.ptr(i) for i in node.inputs[1:5])
        decl = ""
        coef = (
            f"    const float a = {sp}[c] / std::sqrt({vp}[c] + {literal(eps, 'float')});\n"
            f"    const float b = {bp_}[c] - {mp}[c] * a;\n"
        )
    if cg.device != "cpu":  # one thread per element
        ch = "0" if c == 1 else (f"i % {D.cpp(c)}" if inner == 1 else f"(i / {D.cpp(inner)}) % {D.cpp(c)}")
        return decl + cg.par_for("i", cg.numel(y), f"const int64_t c = {ch};\n{coef.strip()}\n"
                                                    f"float v = a * {xp}[i] + b; {act}{yp}[i] = v;\n")
    if inner == 1:
        body = f"    float v = a * xr[0] + b; {act}yr[0] = v;\n"
    else:
        body = (
            f"    for (int64_t i = 0; i < {D.cpp(inner)}; ++i) {{\n"
            f"      float v = a * xr[i] + b; {act}yr[i] = v;\n    }}\n"
        )
    return (
        decl + f"for (int64_t n = 0; n < {D.cpp(n)}; ++n) {{\n"
        f"  for (int64_t c = 0; c < {D.cpp(c)}; ++c) {{\n"
        f"    const float* __restrict xr = {xp} + {mul(f'(n * {D.cpp(c)} + c)', inner)};\n"
        f"    float* __restrict yr = {yp} + {mul(f'(n * {D.cpp(c)} + c)', inner)};\n"
        + coef
        + body
        + "  }\n}\n"
    )


register("BatchNormalization", infer=_infer_bn, emit=_emit_bn, check=_check_bn, batch=BR.nchw, cuda=True)


# ------------------------------------------------------------------------------------------------------
# LayerNormalization


def _ln_axis(node: "Node", rank: int) -> int:
    return norm_axis(node, int(node.attr("axis", -1)), rank)


def _strip(shape: tuple) -> tuple:
    k = 0
    while k < len(shape) and shape[k] == 1:
        k += 1
    return tuple(shape[k:])


def _param_ok(g: "Graph", name: str, norm_shape: tuple) -> bool:
    """Whether a Scale/B input broadcasts to the normalised shape (for a run-time input: equals it)."""
    shape = tuple(g.t(name).shape)
    if g.is_const(name):
        if len(_strip(shape)) > len(norm_shape):
            return False
        shape = _strip(shape)
        pad = (1,) * (len(norm_shape) - len(shape)) + shape
        return all(p == 1 or p == d for p, d in zip(pad, norm_shape, strict=True))
    return _strip(shape) == _strip(norm_shape)


def _check_ln(node: "Node", g: "Graph") -> str | None:
    for i in node.inputs[:3]:
        if i:
            r = _check_float(g, i)
            if r:
                return r
    t = g.tensors.get(node.inputs[0])
    if t is None:
        return None
    try:
        axis = _ln_axis(node, t.rank)
    except ShapeError:
        return None  # infer reports the bad axis
    norm_shape = tuple(t.shape[axis:])
    if not D.shape_static(norm_shape):
        return f"the normalised dimensions {D.fmt_shape(norm_shape)} must be static"
    for i in node.inputs[1:3]:
        if i and not g.is_const(i) and i in g.tensors and not _param_ok(g, i, norm_shape):
            return f"run-time input '{i}' must have the normalised shape {D.fmt_shape(norm_shape)}"
    return None


def _infer_ln(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    axis = _ln_axis(node, t.rank)
    norm_shape = tuple(t.shape[axis:])
    for i in node.inputs[1:3]:
        if i and not _param_ok(g, i, norm_shape):
            raise ShapeError(
                f"node '{node.name}' (LayerNormalization): '{i}' of shape {D.fmt_shape(g.t(i).shape)} "
                f"does not broadcast to the normalised shape {D.fmt_shape(norm_shape)}"
            )
    out = [(t.dtype, t.shape)]
    stat_shape = tuple(t.shape[:axis]) + (1,) * (t.rank - axis)
    for _ in node.outputs[1:3]:
        out.append((np.dtype(np.float32), stat_shape))
    return out


def _ln_param(cg: "Emitter", name: str, norm_shape: tuple, neutral: float) -> str | None:
    """Pointer to the Scale/B values over the whole normalised row; None when the values are all neutral."""
    if not name:
        return None
    v = cg.const(name)
    if v is None:
        return cg.ptr(name)
    v = np.asarray(v, dtype=np.float32)
    full = np.broadcast_to(v.reshape(_strip(v.shape)), tuple(int(d) for d in norm_shape))
    if np.all(full == neutral):
        return None
    return cg.weight(np.ascontiguousarray(full).reshape(-1), name)


def _emit_ln(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    axis = _ln_axis(node, len(shape))
    norm_shape = tuple(shape[axis:])
    outer, ext = D.prod(shape[:axis]), D.prod(norm_shape)
    eps = float(node.attr("epsilon", 1e-5))
    sp = _ln_param(cg, node.input(1), norm_shape, 1.0)
    bp = _ln_param(cg, node.input(2), norm_shape, 0.0)
    val = "(xr[r] - mean) * inv"
    decl = ""
    if sp:
        decl += f"const float* __restrict scale = {sp};\n"
        val += " * scale[r]"
    if bp:
        decl += f"const float* __restrict bias = {bp};\n"
        val += " + bias[r]"
    stats = ""
    mean_out = node.outputs[1] if len(node.outputs) > 1 else ""
    inv_out = node.outputs[2] if len(node.outputs) > 2 else ""
    if mean_out:
        stats += f"  {cg.ptr(mean_out)}[o] = mean;\n"
    if inv_out:
        stats += f"  {cg.ptr(inv_out)}[o] = inv;\n"
    if cg.device != "cpu":  # one thread per row
        return decl + cg.par_for("o", outer, (
            f"const float* xr = {cg.ptr(x)} + {mul('o', ext)};\n"
            f"float* yr = {cg.ptr(y)} + {mul('o', ext)};\n"
            + _row_stats(ext, eps, "", cg.device)
            + f"for (int64_t r = 0; r < {D.cpp(ext)}; ++r) yr[r] = {val};\n"
            + stats.replace("  ", "", 1).replace("\n  ", "\n")))
    return (
        decl + f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n"
        f"  const float* __restrict xr = {cg.ptr(x)} + {mul('o', ext)};\n"
        f"  float* __restrict yr = {cg.ptr(y)} + {mul('o', ext)};\n"
        + _row_stats(ext, eps, "  ")
        + f"  for (int64_t r = 0; r < {D.cpp(ext)}; ++r) yr[r] = {val};\n"
        + stats
        + "}\n"
    )


def _batch_ln(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule: the batch before the normalised axes; scale and bias shared by all samples."""
    axis = BR.axis_attr(node, in_rank[0], -1)
    return ins[0] is not None and ins[0] < axis and all(a is None for a in ins[1:]) and \
        all(a in (None, ins[0]) for a in outs)


register("LayerNormalization", infer=_infer_ln, emit=_emit_ln, check=_check_ln, batch=_batch_ln, cuda=True)


# ------------------------------------------------------------------------------------------------------
# InstanceNormalization


def _check_in(node: "Node", g: "Graph") -> str | None:
    for i in node.inputs[:3]:
        r = _check_float(g, i)
        if r:
            return r
    t = g.tensors.get(node.inputs[0])
    if t is not None and t.rank >= 3 and not D.shape_static(t.shape[2:]):
        return f"the spatial dimensions {D.fmt_shape(t.shape[2:])} must be static"
    return None


def _infer_in(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    if t.rank < 2:
        raise ShapeError(
            f"node '{node.name}' (InstanceNormalization): input must be (N, C, ...), got rank {t.rank}"
        )
    _check_channel_params(node, g, ("scale", "B"), t.shape[1])
    return [(t.dtype, t.shape)]


def _emit_in(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    n, c, ext = shape[0], shape[1], D.prod(shape[2:])
    eps = float(node.attr("epsilon", 1e-5))
    sp, bp = cg.ptr(node.inputs[1]), cg.ptr(node.inputs[2])
    if cg.device != "cpu":  # one thread per (sample, channel) plane
        return cg.par_for("k", D.norm(n * c), (
            f"const int64_t c = k % {D.cpp(c)};\n"
            f"const float* xr = {cg.ptr(x)} + {mul('k', ext)};\n"
            f"float* yr = {cg.ptr(y)} + {mul('k', ext)};\n"
            + _row_stats(ext, eps, "", cg.device)
            + f"const float a = inv * {sp}[c], b = {bp}[c] - mean * a;\n"
            f"for (int64_t r = 0; r < {D.cpp(ext)}; ++r) yr[r] = a * xr[r] + b;\n"))
    return (
        f"for (int64_t k = 0; k < {D.cpp(D.norm(n * c))}; ++k) {{\n"
        f"  const int64_t c = k % {D.cpp(c)};\n"
        f"  const float* __restrict xr = {cg.ptr(x)} + {mul('k', ext)};\n"
        f"  float* __restrict yr = {cg.ptr(y)} + {mul('k', ext)};\n"
        + _row_stats(ext, eps, "  ")
        + f"  const float a = inv * {sp}[c], b = {bp}[c] - mean * a;\n"
        f"  for (int64_t r = 0; r < {D.cpp(ext)}; ++r) yr[r] = a * xr[r] + b;\n"
        "}\n"
    )


register("InstanceNormalization", infer=_infer_in, emit=_emit_in, check=_check_in, batch=BR.nchw, cuda=True)


# ------------------------------------------------------------------------------------------------------
# LRN (local response normalisation across channels)
#
# y[n, c, ...] = x[n, c, ...] / (bias + alpha / size * sum of x[n, c', ...]^2 over the channels
# c' in [c - floor((size - 1) / 2), c + ceil((size - 1) / 2)]) ^ beta; computed in float (double for
# float64): per output channel the window's sum of squares is accumulated for all spatial positions at once in
# workspace scratch (contiguous loops the compiler vectorises).


def _check_lrn(node: "Node", g: "Graph") -> str | None:
    if "size" not in node.attrs:
        return "the attribute size is required"
    if int(node.attr("size")) < 1:
        return f"size={int(node.attr('size'))} (must be at least 1)"
    return check_floating(node, g)


def _infer_lrn(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    if t.rank < 2:
        raise ShapeError(f"node '{node.name}' (LRN): input must be (N, C, ...), got rank {t.rank}")
    return [(t.dtype, t.shape)]


def _emit_lrn(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    n, c, ext = D.cpp(shape[0]), D.cpp(shape[1]), D.cpp(D.prod(shape[2:]))
    size = int(node.attr("size"))
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    ft = "double" if cg.ctype(x) == "double" else "float"
    alpha, beta, bias = (float(node.attr(k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    xp, yp, yt = cg.ptr(x), cg.ptr(y), cg.ctype(y)
    if cg.device != "cpu":  # one thread per element: its channel window's sum of squares, in the CPU's order
        return f"""const int64_t C = {c}, E = {ext};
const {ft} a_over_n = {literal(alpha / size, ft)}, beta = {literal(beta, ft)};
const {ft} bias = {literal(bias, ft)};
""" + cg.par_for("i", cg.numel(y), f"""const int64_t e = i % E, ch = (i / E) % C, b = i / (C * E);
const int64_t c0 = std::max<int64_t>(0, ch - {lo}), c1 = std::min<int64_t>(C - 1, ch + {hi});
{ft} s = 0;
for (int64_t k = c0; k <= c1; ++k) {{
  const {ft} v = static_cast<{ft}>({xp}[(b * C + k) * E + e]);
  s += v * v;
}}
{yp}[i] = static_cast<{yt}>(static_cast<{ft}>({xp}[i]) / std::pow(bias + a_over_n * s, beta));
""")
    return f"""{ft}* __restrict s = {cg.workspace(0, ft)};
const int64_t C = {c}, E = {ext};
const {ft} a_over_n = {literal(alpha / size, ft)}, beta = {literal(beta, ft)};
const {ft} bias = {literal(bias, ft)};
for (int64_t b = 0; b < {n}; ++b) {{
  const auto* __restrict xb = {xp} + b * C * E;
  {yt}* __restrict yb = {yp} + b * C * E;
  for (int64_t ch = 0; ch < C; ++ch) {{
    const int64_t c0 = std::max<int64_t>(0, ch - {lo}), c1 = std::min<int64_t>(C - 1, ch + {hi});
    for (int64_t e = 0; e < E; ++e) s[e] = 0;
    for (int64_t k = c0; k <= c1; ++k)
      for (int64_t e = 0; e < E; ++e) {{
        const {ft} v = static_cast<{ft}>(xb[k * E + e]);
        s[e] += v * v;
      }}
    for (int64_t e = 0; e < E; ++e)
      yb[ch * E + e] = static_cast<{yt}>(static_cast<{ft}>(xb[ch * E + e]) / std::pow(bias + a_over_n * s[e], beta));
  }}
}}
"""


def _ws_lrn(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    return [(D.prod(t.shape[2:]), np.float64 if t.dtype == np.float64 else np.float32)]


register("LRN", infer=_infer_lrn, emit=_emit_lrn, check=_check_lrn, workspace=_ws_lrn, batch=BR.nchw, cuda=True)
