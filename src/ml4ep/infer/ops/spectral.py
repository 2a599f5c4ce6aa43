"""Spectral operators: DFT, STFT, the window generators (HannWindow, HammingWindow, BlackmanWindow) and
MelWeightMatrix.

DFT and STFT are direct transforms (``O(n^2)`` per signal) over a constant table of twiddle factors computed
and accumulated in double precision (a float32 sum of n products would drift past the ONNX tests' tolerance). Signals are ``[..., 1]`` (real) or
``[..., 2]`` (complex); the output is complex ``[..., 2]`` except for the inverse one-sided DFT (a real signal
``[..., 1]``, as ``numpy.fft.irfft``: the imaginary parts of the DC and Nyquist bins are ignored). The
transform length, the axis, the frame step and the frame length must be compile-time constants. The window
generators and MelWeightMatrix only fold: all their inputs must be constant. On CUDA, DFT and STFT run one thread
per output bin, each the CPU code's sum.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from onnx import helper

from . import register
from .common import const_ints, is_float, norm_axis
from .conv import err
from .. import dims as D
from ..literals import literal
from ...errors import ShapeError

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node



def _scalar(node: "Node", g: "Graph", idx: int, what: str) -> int | None:
    vals = const_ints(node, g, idx, what)
    if vals is None:
        return None
    if len(vals) != 1 or not D.is_static(vals[0]):
        raise err(node, f"{what} {vals} must be one static integer")
    return int(vals[0])


def _twiddles(n: int, dt) -> np.ndarray:
    """cos and sin of 2*pi*k/n, k < n, interleaved: (n, 2)."""
    ang = 2.0 * np.pi * np.arange(n) / max(n, 1)
    return np.stack([np.cos(ang), np.sin(ang)], axis=1).astype(dt)


# ------------------------------------------------------------------------------------------------------
# DFT


def _dft_geom(node: "Node", g: "Graph"):
    x = g.t(node.inputs[0])
    if x.rank < 2 or x.shape[-1] not in (1, 2):
        raise err(node, f"input of shape {D.fmt_shape(x.shape)} must end in 1 (real) or 2 (complex)")
    if g.opset >= 20:
        ax = _scalar(node, g, 2, "axis") if node.input(2) else None
        axis = -2 if ax is None else ax
    else:
        axis = int(node.attr("axis", 1))
    axis = norm_axis(node, axis, x.rank)
    if axis == x.rank - 1:
        raise err(node, f"axis {axis} is the trailing (real, imaginary) axis")
    if not D.is_static(x.shape[axis]):
        raise err(node, f"input of shape {D.fmt_shape(x.shape)}: the transformed axis {axis} must be static")
    m = int(x.shape[axis])
    inverse, onesided = bool(node.attr("inverse", 0)), bool(node.attr("onesided", 0))
    n = _scalar(node, g, 1, "dft_length") if node.input(1) else None
    if n is None:
        n = 2 * (m - 1) if inverse and onesided else m
    if n <= 0:
        raise err(node, f"dft_length {n} must be positive")
    if inverse and onesided:
        out_len, comps = n, 1
    else:
        out_len, comps = (n // 2 + 1 if onesided else n), 2
    shape = list(x.shape)
    shape[axis], shape[-1] = out_len, comps
    return axis, m, n, out_len, inverse, onesided, tuple(shape)


def _check_dft(node: "Node", g: "Graph") -> str | None:
    t = g.tensors.get(node.inputs[0])
    if t is not None and not is_float(t.dtype):
        return f"input dtype {t.dtype} is not supported (floating point only)"
    return None


def _infer_dft(node: "Node", g: "Graph"):
    return [(g.t(node.inputs[0]).dtype, _dft_geom(node, g)[-1])]


def _emit_dft(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    axis, m, n, out_len, inverse, onesided, _ = _dft_geom(node, cg.g)
    xs = cg.shape(x)
    cin = int(xs[-1])
    outer = D.prod(xs[:axis])
    inner = D.prod(xs[axis + 1:-1])
    a, ct = "double", cg.ctype(x)  # sums of n products: double keeps float32 results within 1 ulp
    tw = cg.weight(_twiddles(n, np.float64), f"{node.name}.twiddles")
    taps = min(m, n)
    inn = D.cpp(inner)
    xi = "static_cast<{a}>(xr[t * {s} + 1])".format(a=a, s=f"{inn} * {cin}") if cin == 2 else None
    xre = f"static_cast<{a}>(xr[t * {inn} * {cin}])"
    if cg.device != "cpu":
        return _emit_dft_cuda(node, cg, tw, xre, xi)
    lines = [f"const {a}* __restrict tw = {tw};",
             f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o)",
             f"  for (int64_t i = 0; i < {inn}; ++i) {{",
             f"    const {ct}* __restrict xr = {cg.ptr(x)} + (o * {m} * {inn} + i) * {cin};",
             f"    {ct}* __restrict yr = {cg.ptr(y)} + (o * {out_len} * {inn} + i) * {2 if not (inverse and onesided) else 1};",
             f"    for (int64_t k = 0; k < {out_len}; ++k) {{",
             f"      {a} re = 0" + (";" if inverse and onesided else ", im = 0;")]
    if inverse and onesided:
        # real output t = k: sum over the one-sided bins j with Hermitian weights
        half = n // 2
        lines += [f"      for (int64_t t = 0; t < {min(m, half + 1)}; ++t) {{",
                  f"        const int64_t q = (t * k) % {n};",
                  f"        const {a} c = tw[2 * q], s = tw[2 * q + 1];",
                  f"        const {a} wgt = (t == 0 || 2 * t == {n}) ? {a}(1) : {a}(2);",
                  f"        re += wgt * ({xre} * c" + (f" - {xi} * s" if xi else "") + ");",
                  "      }",
                  f"      yr[k * {inn}] = static_cast<{ct}>(re * {literal(1.0 / n, a)});",
                  "    }", "  }"]
        return "\n".join(lines) + "\n"
    sgn = "+" if inverse else "-"
    lines += [f"      for (int64_t t = 0; t < {taps}; ++t) {{",
              f"        const int64_t q = (t * k) % {n};",
              f"        const {a} c = tw[2 * q], s = {sgn}tw[2 * q + 1];",
              f"        const {a} xre = {xre};"]
    if xi:
        lines += [f"        const {a} xim = {xi};",
                  "        re += xre * c - xim * s;",
                  "        im += xre * s + xim * c;"]
    else:
        lines += ["        re += xre * c;", "        im += xre * s;"]
    lines.append("      }")
    scale = f" * {literal(1.0 / n, a)}" if inverse else ""
    lines += [f"      yr[k * {inn} * 2] = static_cast<{ct}>(re{scale});",
              f"      yr[k * {inn} * 2 + 1] = static_cast<{ct}>(im{scale});",
              "    }", "  }"]
    return "\n".join(lines) + "\n"


def _emit_dft_cuda(node: "Node", cg: "Emitter", tw: str, xre: str, xi: str | None) -> str:
    """One thread per output element (outer, bin, inner): the CPU's sum over the signal for that bin."""
    x, y = node.inputs[0], node.outputs[0]
    axis, m, n, out_len, inverse, onesided, _ = _dft_geom(node, cg.g)
    xs = cg.shape(x)
    cin = int(xs[-1])
    outer, inner = D.prod(xs[:axis]), D.prod(xs[axis + 1:-1])
    a, ct = "double", cg.ctype(x)
    inn = D.cpp(inner)
    comps = 1 if inverse and onesided else 2
    body = [f"const int64_t i = u % {inn};",
            f"const int64_t k = u / {inn} % {out_len};",
            f"const {ct}* __restrict xr = {cg.ptr(x)} + ((u / {D.cpp(D.norm(inner * out_len))}) * {m} * {inn} + i)"
            f" * {cin};",
            f"{ct}* __restrict yr = {cg.ptr(y)} + u * {comps};",
            f"{a} re = 0" + (";" if comps == 1 else ", im = 0;")]
    if comps == 1:
        half = n // 2
        body += [f"for (int64_t t = 0; t < {min(m, half + 1)}; ++t) {{",
                 f"  const int64_t q = (t * k) % {n};",
                 f"  const {a} c = tw[2 * q], s = tw[2 * q + 1];",
                 f"  const {a} wgt = (t == 0 || 2 * t == {n}) ? {a}(1) : {a}(2);",
                 f"  re += wgt * ({xre} * c" + (f" - {xi} * s" if xi else "") + ");",
                 "}",
                 f"yr[0] = static_cast<{ct}>(re * {literal(1.0 / n, a)});"]
    else:
        sgn = "+" if inverse else "-"
        body += [f"for (int64_t t = 0; t < {min(m, n)}; ++t) {{",
                 f"  const int64_t q = (t * k) % {n};",
                 f"  const {a} c = tw[2 * q], s = {sgn}tw[2 * q + 1];",
                 f"  const {a} xre = {xre};"]
        if xi:
            body += [f"  const {a} xim = {xi};", "  re += xre * c - xim * s;", "  im += xre * s + xim * c;"]
        else:
            body += ["  re += xre * c;", "  im += xre * s;"]
        scale = f" * {literal(1.0 / n, a)}" if inverse else ""
        body += ["}", f"yr[0] = static_cast<{ct}>(re{scale});", f"yr[1] = static_cast<{ct}>(im{scale});"]
    return f"const {a}* __restrict tw = {tw};\n" + cg.par_for("u", D.norm(outer * out_len * inner),
                                                              "\n".join(body) + "\n")


register("DFT", infer=_infer_dft, emit=_emit_dft, check=_check_dft, const_inputs=(1, 2), shape_inputs=(), cuda=True)


# ------------------------------------------------------------------------------------------------------
# STFT


def _stft_geom(node: "Node", g: "Graph"):
    x = g.t(node.inputs[0])
    if x.rank != 3 or x.shape[-1] not in (1, 2) or not D.is_static(x.shape[1]):
        raise err(node, f"signal of shape {D.fmt_shape(x.shape)} must be (batch, length, 1 or 2), static length")
    length = int(x.shape[1])
    step = _scalar(node, g, 1, "frame_step")
    if step is None or step <= 0:
        raise err(node, f"frame_step {step} must be a positive constant")
    win = node.input(2)
    fl = _scalar(node, g, 3, "frame_length") if node.input(3) else None
    if win:
        wt = g.t(win)
        if wt.rank != 1 or not D.is_static(wt.shape[0]):
            raise err(node, f"window of shape {D.fmt_shape(wt.shape)} must be 1-D and static")
        if fl is not None and fl != int(wt.shape[0]):
            raise err(node, f"frame_length {fl} differs from the window length {D.cpp(wt.shape[0])}")
        fl = int(wt.shape[0])
    if fl is None:
        fl = length
    if fl <= 0 or fl > length:
        raise err(node, f"frame_length {fl} must be in 1..{length}")
    frames = 1 + (length - fl) // step
    onesided = bool(node.attr("onesided", 1))
    bins = fl // 2 + 1 if onesided else fl
    return length, step, fl, frames, bins, (x.shape[0], frames, bins, 2)


def _infer_stft(node: "Node", g: "Graph"):
    return [(g.t(node.inputs[0]).dtype, _stft_geom(node, g)[-1])]


def _emit_stft(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    length, step, fl, frames, bins, _ = _stft_geom(node, cg.g)
    cin = int(cg.shape(x)[-1])
    a, ct = "double", cg.ctype(x)
    tw = cg.weight(_twiddles(fl, np.float64), f"{node.name}.twiddles")
    win = node.input(2)
    wv = f"static_cast<{a}>({cg.ptr(win)}[t])" if win else None
    xre = f"static_cast<{a}>(xf[t * {cin}])"
    xim = f"static_cast<{a}>(xf[t * {cin} + 1])" if cin == 2 else None
    if cg.device != "cpu":  # one thread per output bin (batch, frame, bin)
        head = [f"const int64_t k = u % {bins};",
                f"const {ct}* __restrict xf = {cg.ptr(x)} + ((u / {frames * bins}) * {length} + "
                f"(u / {bins} % {frames}) * {step}) * {cin};",
                f"{a} re = 0, im = 0;",
                f"for (int64_t t = 0; t < {fl}; ++t) {{",
                f"  const int64_t q = (t * k) % {fl};",
                f"  const {a} c = tw[2 * q], s = -tw[2 * q + 1];",
                f"  {a} xr = {xre};"]
        if xim:
            head.append(f"  {a} xi = {xim};")
        if wv:
            head.append(f"  xr *= {wv};")
            if xim:
                head.append(f"  xi *= {wv};")
        if xim:
            head += ["  re += xr * c - xi * s;", "  im += xr * s + xi * c;"]
        else:
            head += ["  re += xr * c;", "  im += xr * s;"]
        head += ["}", f"{cg.ptr(y)}[2 * u] = static_cast<{ct}>(re);", f"{cg.ptr(y)}[2 * u + 1] = static_cast<{ct}>(im);"]
        return f"const {a}* __restrict tw = {tw};\n" + cg.par_for(
            "u", D.norm(cg.shape(x)[0] * frames * bins), "\n".join(head) + "\n")
    lines = [f"const {a}* __restrict tw = {tw};",
             f"for (int64_t b = 0; b < {D.cpp(cg.shape(x)[0])}; ++b)",
             f"  for (int64_t f = 0; f < {frames}; ++f) {{",
             f"    const {ct}* __restrict xf = {cg.ptr(x)} + (b * {length} + f * {step}) * {cin};",
             f"    {ct}* __restrict yf = {cg.ptr(y)} + (b * {frames} + f) * {bins * 2};",
             f"    for (int64_t k = 0; k < {bins}; ++k) {{",
             f"      {a} re = 0, im = 0;",
             f"      for (int64_t t = 0; t < {fl}; ++t) {{",
             f"        const int64_t q = (t * k) % {fl};",
             f"        const {a} c = tw[2 * q], s = -tw[2 * q + 1];",
             f"        {a} xr = {xre};"]
    if xim:
        lines.append(f"        {a} xi = {xim};")
    if wv:
        lines.append(f"        xr *= {wv};")
        if xim:
            lines.append(f"        xi *= {wv};")
    if xim:
        lines += ["        re += xr * c - xi * s;", "        im += xr * s + xi * c;"]
    else:
        lines += ["        re += xr * c;", "        im += xr * s;"]
    lines += ["      }",
              f"      yf[2 * k] = static_cast<{ct}>(re);",
              f"      yf[2 * k + 1] = static_cast<{ct}>(im);",
              "    }", "  }"]
    return "\n".join(lines) + "\n"


def _check_stft(node: "Node", g: "Graph") -> str | None:
    for i in (0, 2):
        t = g.tensors.get(node.input(i)) if node.input(i) else None
        if t is not None and not is_float(t.dtype):
            return f"input {i} of dtype {t.dtype} is not supported (floating point only)"
    return None


register("STFT", infer=_infer_stft, emit=_emit_stft, check=_check_stft, const_inputs=(1, 3), shape_inputs=(),
         cuda=True)


# ------------------------------------------------------------------------------------------------------
# window generators and MelWeightMatrix: compile-time only


def _out_dtype(node: "Node"):
    code = int(node.attr("output_datatype", 1))
    try:
        return helper.tensor_dtype_to_np_dtype(code)
    except (KeyError, ValueError) as exc:
        raise err(node, f"output_datatype {code} is not supported") from exc


def _window_fold(node: "Node", values):
    size = values[0]
    if size is None or size.dtype == object:
        raise err(node, "the size input must be a numeric constant")
    n = int(np.asarray(size).reshape(-1)[0])
    if n < 0:
        raise err(node, f"size {n} must not be negative")
    denom = n if int(node.attr("periodic", 1)) else n - 1
    k = np.arange(n, dtype=np.float64)
    ph = 2.0 * np.pi * k / denom if denom > 0 else np.zeros(n)
    if node.op_type == "HannWindow":
        w = np.sin(ph / 2.0) ** 2
    elif node.op_type == "HammingWindow":
        alpha = 25.0 / 46.0
        w = alpha - (1.0 - alpha) * np.cos(ph)
    else:
        w = 0.42 - 0.5 * np.cos(ph) + 0.08 * np.cos(2.0 * ph)
    return [w.astype(_out_dtype(node))]


def _const_only(node: "Node", g: "Graph"):
    raise ShapeError(f"node '{node.name}' ({node.op_type}): all inputs must be compile-time constants")


register("HannWindow", "HammingWindow", "BlackmanWindow", infer=_const_only, emit=None, fold=_window_fold)


def _mel_fold(node: "Node", values):
    if any(v is None or v.dtype == object for v in values[:5]):
        raise err(node, "all inputs must be numeric constants")
    bins, dft_len, rate = (int(np.asarray(v).reshape(-1)[0]) for v in values[:3])
    lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in values[3:5])
    if bins <= 0 or dft_len <= 0 or rate <= 0 or not 0 <= lo < hi:
        raise err(node, f"invalid arguments num_mel_bins={bins}, dft_length={dft_len}, sample_rate={rate}, "
                  f"lower_edge_hertz={lo}, upper_edge_hertz={hi}")
    nspec = dft_len // 2 + 1
    mel = lambda f: 2595.0 * np.log1p(f / 700.0) / np.log(10.0)  # noqa: E731
    hz = lambda m: 700.0 * np.expm1(m / 2595.0 * np.log(10.0))  # noqa: E731
    # bins + 2 points spaced by (high - low) / (bins + 2) from the low edge, as the ONNX definition has it
    pts = mel(lo) + np.arange(bins + 2) * ((mel(hi) - mel(lo)) / (bins + 2))
    # mel points to FFT bin indices (floored), triangles rising then falling over integer bins
    idx = np.floor_divide((dft_len + 1) * hz(pts), rate).astype(np.int64)
    if idx.min() < 0 or idx.max() >= nspec:
        raise err(node, f"mel edges {lo}..{hi} Hz fall outside the {nspec} spectrogram bins")
    out = np.zeros((nspec, bins), dtype=np.float64)
    for i in range(bins):
        lo_b, c_b, hi_b = idx[i], idx[i + 1], idx[i + 2]
        if c_b == lo_b:
            out[c_b, i] = 1.0
        else:
            for j in range(lo_b, c_b + 1):
                out[j, i] = (j - lo_b) / (c_b - lo_b)
        for j in range(c_b, hi_b):
            out[j, i] = (hi_b - j) / (hi_b - c_b)
    return [out.astype(_out_dtype(node))]


register("MelWeightMatrix", infer=_const_only, emit=None, fold=_mel_fold)
