"""Image and sampling operators: GridSample, AffineGrid, LpPool, LpNormalization, Col2Im, MaxUnpool, RoiAlign
and DeformConv.

Elements are read and written through the tensor's C++ type; arithmetic runs in ``float`` (``double`` for
float64). Spatial sizes are compile-time constants, the batch axis (and the number of regions of RoiAlign) may
be symbolic. GridSample follows the ONNX reference: a coordinate outside the valid range is first clamped
(``border``) or reflected (``reflection``) as a real number, then every interpolation tap is read with the
padding rule (zero, clamped, or reflected index); ``cubic`` uses Keys' kernel with ``a = -0.75`` and, with
``border``, clamps only the taps, as onnxruntime and PyTorch do (the reference also clamps the coordinate; no
ONNX node test covers the pair); ``nearest`` rounds half to even. RoiAlign follows onnxruntime (``max`` takes the largest weighted corner of each sample).
CUDA (docs/cuda.md): one thread per output element (GridSample and AffineGrid per output point, LpNormalization
per line), the CPU code's arithmetic in each; Col2Im gathers the column entries of each image element from a
constant table instead of scattering them; MaxUnpool zeroes, then scatters one thread per input element (of two
equal indices, either value wins); DeformConv weights its group's samples as it makes them (no column scratch);
RoiAlign reports a batch index outside X (``cg.kernel_error``) and writes 0 for that region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import batch_rules as BR, register
from .common import const_ints, is_float, norm_axis
from .conv import check_auto_pad, err, static_spatial
from .pool import PoolGeom
from .. import dims as D
from ..literals import literal

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node



def _float_check(node: "Node", g: "Graph", idx=(0,)) -> str | None:
    for i in idx:
        name = node.input(i)
        t = g.tensors.get(name) if name else None
        if t is not None and not is_float(t.dtype):
            return f"input {i} of dtype {t.dtype} is not supported (floating point only)"
    return None


def _acc(cg: "Emitter", name: str) -> str:
    """The C++ type arithmetic on elements of ``name`` runs in."""
    return "double" if cg.dtype(name) == np.float64 else "float"


def _str_attr(node: "Node", key: str, default: str) -> str:
    v = node.attr(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    return str(v)


def _static(node: "Node", dims, what: str) -> list[int]:
    out = []
    for d in dims:
        if not D.is_static(d):
            raise err(node, f"{what} {D.fmt_shape(tuple(dims))}: this axis must be static")
        out.append(int(d))
    return out


# ------------------------------------------------------------------------------------------------------
# GridSample

_GS_MODES = {"bilinear": "linear", "linear": "linear", "nearest": "nearest", "bicubic": "cubic", "cubic": "cubic"}
_GS_PADS = ("zeros", "border", "reflection")


def _gs_attrs(node: "Node") -> tuple[str, str, bool]:
    mode = _GS_MODES.get(_str_attr(node, "mode", "linear"), "")
    return mode, _str_attr(node, "padding_mode", "zeros"), bool(node.attr("align_corners", 0))


def _check_gridsample(node: "Node", g: "Graph") -> str | None:
    if _str_attr(node, "mode", "linear") not in _GS_MODES:
        return f"mode '{_str_attr(node, 'mode', '')}' is not one of {', '.join(_GS_MODES)}"
    if _str_attr(node, "padding_mode", "zeros") not in _GS_PADS:
        return f"padding_mode '{_str_attr(node, 'padding_mode', '')}' is not one of {', '.join(_GS_PADS)}"
    return _float_check(node, g, (0, 1))


def _infer_gridsample(node: "Node", g: "Graph"):
    x, gr = g.t(node.inputs[0]), g.t(node.inputs[1])
    if x.rank not in (4, 5):
        raise err(node, f"input X of shape {D.fmt_shape(x.shape)} must be 4-D or 5-D (N, C, spatial...)")
    nsp = x.rank - 2
    if gr.rank != x.rank or gr.shape[-1] != nsp:
        raise err(node, f"grid of shape {D.fmt_shape(gr.shape)} must be (N, spatial..., {nsp}) for X of shape "
                  f"{D.fmt_shape(x.shape)}")
    if gr.shape[0] != x.shape[0]:
        raise err(node, f"batch sizes of X {D.fmt_shape(x.shape)} and grid {D.fmt_shape(gr.shape)} differ")
    static_spatial(node, x.shape, "input X")
    return [(x.dtype, (x.shape[0], x.shape[1], *gr.shape[1:-1]))]


def _emit_gridsample(node: "Node", cg: "Emitter") -> str:
    x, gname, y = node.inputs[0], node.inputs[1], node.outputs[0]
    xs, gs = cg.shape(x), cg.shape(gname)
    nsp = len(xs) - 2
    c = int(xs[1])
    sizes = [int(d) for d in xs[2:]]
    mode, pad, align = _gs_attrs(node)
    a = _acc(cg, x)
    L = lambda v: literal(v, a)  # noqa: E731
    ct, gct = cg.ctype(x), cg.ctype(gname)
    taps = {"nearest": 1, "linear": 2, "cubic": 4}[mode]
    p_out = D.prod(gs[1:-1])
    isp = int(np.prod(sizes))
    lines = [] if pad != "reflection" else [
        f"auto reflect = [](const {a} v, const {a} lo, const {a} hi) -> {a} {{",
        f"  const {a} rng = hi - lo;",
        "  if (v < lo) {",
        f"    const {a} dx = lo - v;",
        "    const int64_t k = ml4ep_rt::to_index(dx / rng);",
        f"    const {a} r = dx - static_cast<{a}>(k) * rng;",
        "    return k % 2 == 0 ? lo + r : hi - r;",
        "  }",
        "  if (v > hi) {",
        f"    const {a} dx = v - hi;",
        "    const int64_t k = ml4ep_rt::to_index(dx / rng);",
        f"    const {a} r = dx - static_cast<{a}>(k) * rng;",
        "    return k % 2 == 0 ? hi - r : lo + r;",
        "  }",
        "  return v;",
        "};",
    ]
    if mode == "cubic":
        lines += [
            f"auto cubic = [](const {a} t, {a}* w) {{",
            f"  const {a} A = {L(-0.75)};",
            f"  const {a} t1 = t + {L(1)}, t2 = {L(1)} - t, t3 = {L(2)} - t;",
            f"  w[0] = ((A * t1 - {L(5)} * A) * t1 + {L(8)} * A) * t1 - {L(4)} * A;",
            f"  w[1] = ((A + {L(2)}) * t - (A + {L(3)})) * t * t + {L(1)};",
            f"  w[2] = ((A + {L(2)}) * t2 - (A + {L(3)})) * t2 * t2 + {L(1)};",
            f"  w[3] = ((A * t3 - {L(5)} * A) * t3 + {L(8)} * A) * t3 - {L(4)} * A;",
            "};",
        ]
    body = [f"const {gct}* __restrict gp = {cg.ptr(gname)} + (n * {D.cpp(p_out)} + p) * {nsp};"]
    for k in range(nsp):
        size = sizes[k]
        lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
        v = f"static_cast<{a}>(gp[{nsp - 1 - k}])"
        if align:
            body.append(f"{a} x{k} = ({v} + {L(1)}) * {L(0.5 * (size - 1))};")
        else:
            body.append(f"{a} x{k} = (({v} + {L(1)}) * {L(size)} - {L(1)}) * {L(0.5)};")
        if mode == "nearest":
            body.append(f"x{k} = std::nearbyint(x{k});")
        if pad == "border" and mode != "cubic":
            body.append(f"if (x{k} < {L(lo)} || x{k} > {L(hi)}) "
                        f"x{k} = std::min(std::max(x{k}, {L(0)}), {L(size - 1)});")
        elif pad == "reflection":
            body.append(f"x{k} = reflect(x{k}, {L(lo)}, {L(hi)});")
        body.append(f"int64_t i{k}[{taps}];")
        body.append(f"{a} w{k}[{taps}];")
        if mode == "nearest":
            body.append(f"i{k}[0] = ml4ep_rt::to_index(x{k});")
            body.append(f"w{k}[0] = {L(1)};")
        else:
            body.append(f"const {a} f{k} = std::floor(x{k});")
            first = "" if mode == "linear" else " - 1"
            body.append(f"for (int64_t t = 0; t < {taps}; ++t) i{k}[t] = ml4ep_rt::to_index(f{k}){first} + t;")
            if mode == "linear":
                body.append(f"w{k}[1] = x{k} - f{k};")
                body.append(f"w{k}[0] = {L(1)} - w{k}[1];")
            else:
                body.append(f"cubic(x{k} - f{k}, w{k});")
        # the padding rule for each tap
        fix = {
            # outside: index -1, read as the padding 0 (never the pixel at 0: an inf or NaN there times 0 is NaN)
            "zeros": f"if (i{k}[t] < 0 || i{k}[t] >= {size}) i{k}[t] = -1;",
            "border": f"i{k}[t] = std::min<int64_t>(std::max<int64_t>(i{k}[t], 0), {size - 1});",
            "reflection": (f"i{k}[t] = std::min<int64_t>(std::max<int64_t>(ml4ep_rt::to_index("
                           f"reflect(static_cast<{a}>(i{k}[t]), {L(lo)}, {L(hi)})), 0), {size - 1});"),
        }[pad]
        body.append(f"for (int64_t t = 0; t < {taps}; ++t) {{ {fix} }}")
    # per channel: the weighted sum over the taps
    st = [int(np.prod(sizes[k + 1:])) for k in range(nsp)]
    inner = [f"for (int64_t c = 0; c < {c}; ++c) {{",
             f"  const {ct}* __restrict xc = {cg.ptr(x)} + (n * {c} + c) * {isp};",
             f"  {a} acc = {L(0)};"]
    depth = 1
    for k in range(nsp):
        inner.append("  " * depth + f"for (int64_t t{k} = 0; t{k} < {taps}; ++t{k}) {{")
        depth += 1
    w = " * ".join(f"w{k}[t{k}]" for k in range(nsp))
    off = " + ".join(f"i{k}[t{k}] * {st[k]}" if st[k] != 1 else f"i{k}[t{k}]" for k in range(nsp))
    val = f"static_cast<{a}>(xc[{off}])"
    if pad == "zeros":
        val = f"({' && '.join(f'i{k}[t{k}] >= 0' for k in range(nsp))} ? {val} : {L(0)})"
    inner.append("  " * depth + f"acc += {w} * {val};")
    for d in range(depth - 1, 0, -1):
        inner.append("  " * d + "}")
    inner.append(f"  {cg.ptr(y)}[(n * {c} + c) * {D.cpp(p_out)} + p] = static_cast<{ct}>(acc);")
    inner.append("}")
    body += inner
    if cg.device != "cpu":  # one thread per (n, output point), the helpers defined inside the kernel
        head = [f"const int64_t n = u / {D.cpp(p_out)};", f"const int64_t p = u % {D.cpp(p_out)};"]
        return cg.par_for("u", D.norm(xs[0] * p_out), "\n".join(head + lines + body) + "\n")
    lines.append(f"for (int64_t n = 0; n < {D.cpp(xs[0])}; ++n)")
    lines.append(f"  for (int64_t p = 0; p < {D.cpp(p_out)}; ++p) {{")
    lines += ["    " + s for s in body]
    lines.append("  }")
    return "\n".join(lines) + "\n"


register("GridSample", infer=_infer_gridsample, emit=_emit_gridsample, check=_check_gridsample, cuda=True)


# ------------------------------------------------------------------------------------------------------
# AffineGrid


def _affine_size(node: "Node", g: "Graph") -> list:
    size = const_ints(node, g, 1, "size")
    if size is None or len(size) not in (4, 5):
        raise err(node, f"size {size} must have 4 (N, C, H, W) or 5 (N, C, D, H, W) entries")
    return size


def _infer_affine(node: "Node", g: "Graph"):
    th = g.t(node.inputs[0])
    size = _affine_size(node, g)
    nsp = len(size) - 2
    if th.rank != 3 or th.shape[1] != nsp or th.shape[2] != nsp + 1:
        raise err(node, f"theta of shape {D.fmt_shape(th.shape)} must be (N, {nsp}, {nsp + 1}) for size {size}")
    sp = _static(node, size[2:], "size")
    if min(sp) <= 0:
        raise err(node, f"size {size} must be positive")
    return [(th.dtype, (th.shape[0], *sp, nsp))]


def _affine_base(sizes: list[int], align: bool) -> list[np.ndarray]:
    out = []
    for s in sizes:
        if align:
            out.append(np.linspace(-1.0, 1.0, s) if s > 1 else np.array([-1.0]))
        else:
            out.append((2.0 * np.arange(s) + 1.0) / s - 1.0)
    return out


def _emit_affine(node: "Node", cg: "Emitter") -> str:
    th, y = node.inputs[0], node.outputs[0]
    ys = cg.shape(y)
    sizes = [int(d) for d in ys[1:-1]]
    nsp = len(sizes)
    a = _acc(cg, th)
    ct = cg.ctype(y)
    base = _affine_base(sizes, bool(node.attr("align_corners", 0)))
    # the homogeneous base coordinates (x, y[, z], 1) of every output point, x from the last axis
    pts = np.stack(np.meshgrid(*base, indexing="ij")[::-1], axis=-1).reshape(-1, nsp)
    pts = np.concatenate([pts, np.ones((pts.shape[0], 1))], axis=1).astype(np.float64 if a == "double" else np.float32)
    wp = cg.weight(pts, f"{node.name}.base")
    npts = pts.shape[0]
    if cg.device != "cpu":  # one thread per (n, output point)
        return f"const {a}* __restrict base = {wp};\n" + cg.par_for("u", D.norm(ys[0] * npts), (
            f"const int64_t q = u % {npts};\n"
            f"const {cg.ctype(th)}* __restrict tn = {cg.ptr(th)} + (u / {npts}) * {nsp * (nsp + 1)};\n"
            f"{ct}* __restrict yq = {cg.ptr(y)} + u * {nsp};\n"
            f"for (int64_t r = 0; r < {nsp}; ++r) {{\n"
            f"  {a} s = 0;\n"
            f"  for (int64_t k = 0; k < {nsp + 1}; ++k) s += static_cast<{a}>(tn[r * {nsp + 1} + k]) * "
            f"base[q * {nsp + 1} + k];\n"
            f"  yq[r] = static_cast<{ct}>(s);\n"
            "}\n"))
    return (
        f"const {a}* __restrict base = {wp};\n"
        f"for (int64_t n = 0; n < {D.cpp(ys[0])}; ++n) {{\n"
        f"  const {cg.ctype(th)}* __restrict tn = {cg.ptr(th)} + n * {nsp * (nsp + 1)};\n"
        f"  {a} t[{nsp * (nsp + 1)}];\n"
        f"  for (int64_t k = 0; k < {nsp * (nsp + 1)}; ++k) t[k] = static_cast<{a}>(tn[k]);\n"
        f"  {ct}* __restrict yn = {cg.ptr(y)} + n * {npts * nsp};\n"
        f"  for (int64_t q = 0; q < {npts}; ++q)\n"
        f"    for (int64_t r = 0; r < {nsp}; ++r) {{\n"
        f"      {a} s = 0;\n"
        f"      for (int64_t k = 0; k < {nsp + 1}; ++k) s += t[r * {nsp + 1} + k] * base[q * {nsp + 1} + k];\n"
        f"      yn[q * {nsp} + r] = static_cast<{ct}>(s);\n"
        "    }\n"
        "}\n"
    )


register("AffineGrid", infer=_infer_affine, emit=_emit_affine, check=lambda n, g: _float_check(n, g, (0,)),
         const_inputs=(1,), shape_inputs=(), cuda=True)


# ------------------------------------------------------------------------------------------------------
# LpPool


def _check_lppool(node: "Node", g: "Graph") -> str | None:
    t = g.tensors.get(node.inputs[0])
    if t is not None and t.rank > 5:
        return f"input of rank {t.rank}: only 1-D, 2-D and 3-D windows are supported"
    return check_auto_pad(node) or _float_check(node, g)


def _infer_lppool(node: "Node", g: "Graph"):
    geo = PoolGeom(node, g)
    return [(g.t(node.inputs[0]).dtype, geo.out_shape)]


def _emit_lppool(node: "Node", cg: "Emitter") -> str:
    geo = PoolGeom(node, cg.g)
    x, y = node.inputs[0], node.outputs[0]
    a, ct = _acc(cg, x), cg.ctype(x)
    p = float(node.attr("p", 2))
    L = lambda v: literal(v, a)  # noqa: E731
    if p == 1.0:
        term, fin = "std::abs(v)", "acc"
    elif p == 2.0:
        term, fin = "v * v", "std::sqrt(acc)"
    else:
        term, fin = f"std::pow(std::abs(v), {L(p)})", f"std::pow(acc, {L(1.0 / p)})"
    od, oh, ow = geo.outs
    idd, ih, iw = geo.ins
    if cg.device != "cpu":  # one thread per output element: its plane and coordinates from the index
        body = [f"const int64_t pl = t / {od * oh * ow};",
                f"const int64_t a = t / {oh * ow} % {od};",
                f"const int64_t b = t / {ow} % {oh};",
                f"const int64_t e = t % {ow};",
                f"const {ct}* __restrict xp = {cg.ptr(x)} + pl * {idd * ih * iw};",
                f"{a} acc = {L(0)};"]
        for var, o, k, extent, ax in (("i", "a", "zi", idd, 0), ("j", "b", "zj", ih, 1), ("k", "e", "zk", iw, 2)):
            body.append(f"for (int64_t {var} = 0; {var} < {geo.ks[ax]}; ++{var}) {{")
            body.append(f"  const int64_t {k} = {o} * {geo.st[ax]} - {geo.pb[ax]} + {var} * {geo.dl[ax]};")
            body.append(f"  if ({k} < 0 || {k} >= {extent}) continue;")
        body.append(f"  const {a} v = static_cast<{a}>(xp[(zi * {ih} + zj) * {iw} + zk]);")
        body.append(f"  acc += {term};")
        body.append("}}}")
        body.append(f"{cg.ptr(y)}[t] = static_cast<{ct}>({fin});")
        return cg.par_for("t", cg.numel(y), "\n".join(body) + "\n")
    lines = [f"for (int64_t pl = 0; pl < {D.cpp(geo.planes)}; ++pl) {{",
             f"  const {ct}* __restrict xp = {cg.ptr(x)} + pl * {idd * ih * iw};",
             f"  {ct}* __restrict yp = {cg.ptr(y)} + pl * {od * oh * ow};",
             f"  for (int64_t a = 0; a < {od}; ++a)",
             f"  for (int64_t b = 0; b < {oh}; ++b)",
             f"  for (int64_t e = 0; e < {ow}; ++e) {{",
             f"    {a} acc = {L(0)};"]
    for var, o, k, extent, ax in (("i", "a", "zi", idd, 0), ("j", "b", "zj", ih, 1), ("k", "e", "zk", iw, 2)):
        lines.append(f"    for (int64_t {var} = 0; {var} < {geo.ks[ax]}; ++{var}) {{")
        lines.append(f"      const int64_t {k} = {o} * {geo.st[ax]} - {geo.pb[ax]} + {var} * {geo.dl[ax]};")
        lines.append(f"      if ({k} < 0 || {k} >= {extent}) continue;")
    lines.append(f"      const {a} v = static_cast<{a}>(xp[(zi * {ih} + zj) * {iw} + zk]);")
    lines.append(f"      acc += {term};")
    lines.append("    }}}")
    lines.append(f"    yp[(a * {oh} + b) * {ow} + e] = static_cast<{ct}>({fin});")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


register("LpPool", infer=_infer_lppool, emit=_emit_lppool, check=_check_lppool, batch=BR.nchw, cuda=True)


# ------------------------------------------------------------------------------------------------------
# LpNormalization


def _check_lpnorm(node: "Node", g: "Graph") -> str | None:
    if int(node.attr("p", 2)) not in (1, 2):
        return f"p={node.attr('p')} is not supported (1 or 2)"
    return _float_check(node, g)


def _lpnorm_view(node: "Node", shape):
    axis = norm_axis(node, int(node.attr("axis", -1)), max(len(shape), 1))
    return D.prod(shape[:axis]), D.norm(shape[axis]), D.prod(shape[axis + 1:])


def _infer_lpnorm(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    if t.rank == 0:
        raise err(node, "the input must have at least one axis")
    _lpnorm_view(node, t.shape)
    return [(t.dtype, t.shape)]


def _emit_lpnorm(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    outer, ext, inner = _lpnorm_view(node, cg.shape(x))
    a, ct = _acc(cg, x), cg.ctype(x)
    p1 = int(node.attr("p", 2)) == 1
    term = "std::abs(v)" if p1 else "v * v"
    norm = "s" if p1 else "std::sqrt(s)"
    if cg.device != "cpu":  # one thread per (outer, inner) line, as the CPU's loop body
        return cg.par_for("t", D.norm(outer * inner), (
            f"const {ct}* __restrict xr = {cg.ptr(x)} + (t / {D.cpp(inner)}) * {D.cpp(D.norm(ext * inner))} "
            f"+ t % {D.cpp(inner)};\n"
            f"{ct}* __restrict yr = {cg.ptr(y)} + (t / {D.cpp(inner)}) * {D.cpp(D.norm(ext * inner))} "
            f"+ t % {D.cpp(inner)};\n"
            f"{a} s = 0;\n"
            f"for (int64_t r = 0; r < {D.cpp(ext)}; ++r) {{\n"
            f"  const {a} v = static_cast<{a}>(xr[r * {D.cpp(inner)}]);\n"
            f"  s += {term};\n"
            "}\n"
            f"const {a} nrm = {norm};\n"
            f"const {a} inv = nrm == 0 ? {a}(0) : {a}(1) / nrm;\n"
            f"for (int64_t r = 0; r < {D.cpp(ext)}; ++r)\n"
            f"  yr[r * {D.cpp(inner)}] = static_cast<{ct}>(static_cast<{a}>(xr[r * {D.cpp(inner)}]) * inv);\n"))
    return (
        f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o)\n"
        f"  for (int64_t i = 0; i < {D.cpp(inner)}; ++i) {{\n"
        f"    const {ct}* __restrict xr = {cg.ptr(x)} + o * {D.cpp(D.norm(ext * inner))} + i;\n"
        f"    {ct}* __restrict yr = {cg.ptr(y)} + o * {D.cpp(D.norm(ext * inner))} + i;\n"
        f"    {a} s = 0;\n"
        f"    for (int64_t r = 0; r < {D.cpp(ext)}; ++r) {{\n"
        f"      const {a} v = static_cast<{a}>(xr[r * {D.cpp(inner)}]);\n"
        f"      s += {term};\n"
        "    }\n"
        f"    const {a} nrm = {norm};\n"
        f"    const {a} inv = nrm == 0 ? {a}(0) : {a}(1) / nrm;\n"
        f"    for (int64_t r = 0; r < {D.cpp(ext)}; ++r)\n"
        f"      yr[r * {D.cpp(inner)}] = static_cast<{ct}>(static_cast<{a}>(xr[r * {D.cpp(inner)}]) * inv);\n"
        "  }\n"
    )


register("LpNormalization", infer=_infer_lpnorm, emit=_emit_lpnorm, check=_check_lpnorm, cuda=True)


# ------------------------------------------------------------------------------------------------------
# Col2Im


def _col2im_geom(node: "Node", g: "Graph"):
    x = g.t(node.inputs[0])
    img = const_ints(node, g, 1, "image_shape")
    blk = const_ints(node, g, 2, "block_shape")
    if img is None or blk is None:
        raise err(node, "image_shape and block_shape are required")
    img = _static(node, img, "image_shape")
    blk = _static(node, blk, "block_shape")
    nsp = len(img)
    if len(blk) != nsp or nsp == 0:
        raise err(node, f"image_shape {img} and block_shape {blk} must have the same, positive length")
    if x.rank != 3:
        raise err(node, f"input of shape {D.fmt_shape(x.shape)} must be (N, C * prod(block_shape), L)")
    st = [int(v) for v in node.attr("strides", [1] * nsp)]
    dl = [int(v) for v in node.attr("dilations", [1] * nsp)]
    pads = [int(v) for v in node.attr("pads", [0] * (2 * nsp))]
    if len(st) != nsp or len(dl) != nsp or len(pads) != 2 * nsp:
        raise err(node, f"strides {st}, dilations {dl}, pads {pads} do not match {nsp} spatial axes")
    nb = []
    for i in range(nsp):
        n = (img[i] + pads[i] + pads[i + nsp] - dl[i] * (blk[i] - 1) - 1) // st[i] + 1
        if n <= 0:
            raise err(node, f"no sliding block fits on spatial axis {i}")
        nb.append(n)
    kprod = int(np.prod(blk))
    cb, ln = _static(node, x.shape[1:], "input")
    if cb % kprod or ln != int(np.prod(nb)):
        raise err(node, f"input of shape {D.fmt_shape(x.shape)} does not match block_shape {blk} and "
                  f"{int(np.prod(nb))} blocks ({nb})")
    return img, blk, st, dl, pads[:nsp], nb, cb // kprod


def _infer_col2im(node: "Node", g: "Graph"):
    img, _, _, _, _, _, c = _col2im_geom(node, g)
    x = g.t(node.inputs[0])
    return [(x.dtype, (x.shape[0], c, *img))]


def _emit_col2im(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    img, blk, st, dl, pb, nb, c = _col2im_geom(node, cg.g)
    nsp = len(img)
    ct = cg.ctype(x)
    a = _acc(cg, x)
    kprod, lb, isz = int(np.prod(blk)), int(np.prod(nb)), int(np.prod(img))
    # position in the image of every (kernel tap, block) pair, -1 outside: a constant table
    kk = np.indices(blk).reshape(nsp, -1)
    bb = np.indices(nb).reshape(nsp, -1)
    pos = np.zeros((kprod, lb), dtype=np.int64)
    ok = np.ones((kprod, lb), dtype=bool)
    for i in range(nsp):
        coord = bb[i][None, :] * st[i] - pb[i] + kk[i][:, None] * dl[i]
        ok &= (coord >= 0) & (coord < img[i])
        pos = pos * img[i] + coord
    pos = np.where(ok, pos, -1).astype(np.int64)
    if cg.device != "cpu":
        return _emit_col2im_cuda(node, cg, pos.reshape(-1), c, isz)
    tab = cg.weight(pos, f"{node.name}.positions")
    return (
        f"const int64_t* __restrict pos = {tab};\n"
        f"for (int64_t q = 0; q < {D.cpp(D.norm(cg.shape(y)[0] * c * isz))}; ++q) "
        f"{cg.ptr(y)}[q] = static_cast<{ct}>({a}(0));\n"
        f"for (int64_t nc = 0; nc < {D.cpp(D.norm(cg.shape(y)[0] * c))}; ++nc) {{\n"
        f"  const {ct}* __restrict xc = {cg.ptr(x)} + nc * {kprod * lb};\n"
        f"  {ct}* __restrict yc = {cg.ptr(y)} + nc * {isz};\n"
        f"  for (int64_t k = 0; k < {kprod * lb}; ++k)\n"
        f"    if (pos[k] >= 0) yc[pos[k]] = static_cast<{ct}>(static_cast<{a}>(yc[pos[k]]) + "
        f"static_cast<{a}>(xc[k]));\n"
        "}\n"
    )


def _emit_col2im_cuda(node: "Node", cg: "Emitter", pos: np.ndarray, c: int, isz: int) -> str:
    """One thread per output element, summing the column entries that land on it (no two threads write one
    element): the entries of each image position, in the CPU's order, from a constant table (CSR)."""
    x, y = node.inputs[0], node.outputs[0]
    ct, a = cg.ctype(x), _acc(cg, x)
    order = np.argsort(pos, kind="stable")  # the entries k by position, ascending k within one
    order = order[pos[order] >= 0]
    start = np.searchsorted(pos[order], np.arange(isz + 1)).astype(np.int64)
    nk = pos.shape[0]
    if order.size == 0:  # no block reaches the image: all zeros
        return cg.par_for("t", D.norm(cg.shape(y)[0] * c * isz), f"{cg.ptr(y)}[t] = static_cast<{ct}>({a}(0));\n")
    ks = cg.weight(order.astype(np.int64), f"{node.name}.entries")
    st = cg.weight(start, f"{node.name}.starts")
    return cg.par_for("t", D.norm(cg.shape(y)[0] * c * isz), (
        f"const {ct}* __restrict xc = {cg.ptr(x)} + (t / {isz}) * {nk};\n"
        f"const int64_t px = t % {isz};\n"
        f"{ct} v = static_cast<{ct}>({a}(0));\n"
        f"for (int64_t j = {st}[px]; j < {st}[px + 1]; ++j) "
        f"v = static_cast<{ct}>(static_cast<{a}>(v) + static_cast<{a}>(xc[{ks}[j]]));\n"
        f"{cg.ptr(y)}[t] = v;\n"))


register("Col2Im", infer=_infer_col2im, emit=_emit_col2im, check=lambda n, g: _float_check(n, g, (0,)),
         const_inputs=(1, 2), shape_inputs=(), cuda=True)


# ------------------------------------------------------------------------------------------------------
# MaxUnpool


def _unpool_shapes(node: "Node", g: "Graph"):
    x = g.t(node.inputs[0])
    if x.rank < 3:
        raise err(node, f"input of shape {D.fmt_shape(x.shape)} must be (N, C, spatial...)")
    nsp = x.rank - 2
    ks = node.attr("kernel_shape")
    if ks is None or len(ks) != nsp:
        raise err(node, f"kernel_shape {ks} must have {nsp} entries")
    ks = [int(k) for k in ks]
    st = [int(v) for v in node.attr("strides", [1] * nsp)]
    pads = [int(v) for v in node.attr("pads", [0] * (2 * nsp))]
    ins = static_spatial(node, x.shape, "input")[1:]
    inferred = [(ins[i] - 1) * st[i] - pads[i] - pads[i + nsp] + ks[i] for i in range(nsp)]
    out = inferred
    if node.input(2):
        shp = const_ints(node, g, 2, "output_shape")
        if shp is None or len(shp) != x.rank:
            raise err(node, f"output_shape {shp} must have {x.rank} entries")
        out = _static(node, shp[2:], "output_shape")
        if any(o < i for o, i in zip(out, inferred)):
            raise err(node, f"output_shape {shp} is smaller than the inferred spatial shape {inferred}")
    return x, inferred, out


def _infer_unpool(node: "Node", g: "Graph"):
    x, _, out = _unpool_shapes(node, g)
    it = g.t(node.inputs[1])
    if tuple(it.shape) != tuple(x.shape):
        raise err(node, f"indices of shape {D.fmt_shape(it.shape)} must have the shape of X {D.fmt_shape(x.shape)}")
    return [(x.dtype, (x.shape[0], x.shape[1], *out))]


def _check_unpool(node: "Node", g: "Graph") -> str | None:
    t = g.tensors.get(node.inputs[1])
    if t is not None and np.dtype(t.dtype) != np.int64:
        return f"indices of dtype {t.dtype} are not supported (int64)"
    return None


def _emit_unpool(node: "Node", cg: "Emitter") -> str:
    x, ix, y = node.inputs[0], node.inputs[1], node.outputs[0]
    xs = cg.shape(x)
    _, inferred, out = _unpool_shapes(node, cg.g)
    ct = cg.ctype(y)
    planes = D.norm(xs[0] * xs[1])
    isz, inf_sz, osz = int(np.prod([int(d) for d in xs[2:]])), int(np.prod(inferred)), int(np.prod(out))
    # indices address the whole (N, C, inferred...) tensor; each is moved into its plane of the output
    nsp = len(out)
    st_inf = [int(np.prod(inferred[k + 1:])) for k in range(nsp)]
    st_out = [int(np.prod(out[k + 1:])) for k in range(nsp)]
    remap = ["int64_t r = q % " + str(inf_sz) + ";", "int64_t o = 0;"]
    for k in range(nsp):
        remap.append(f"o += (r / {st_inf[k]}) * {st_out[k]};")
        remap.append(f"r %= {st_inf[k]};")
    if cg.device != "cpu":  # zero the output, then one thread per input element (indices outside: skipped)
        total = D.cpp(D.norm(planes * inf_sz))
        return cg.par_for("q", D.norm(planes * osz), f"{cg.ptr(y)}[q] = static_cast<{ct}>(0);\n") + cg.par_for(
            "u", D.norm(planes * isz), (
                f"const int64_t q = {cg.ptr(ix)}[u];\n"
                f"if (q >= 0 && q < {total}) {{\n"
                + "".join("  " + s + "\n" for s in remap) +
                f"  {cg.ptr(y)}[(q / {inf_sz}) * {osz} + o] = {cg.ptr(x)}[u];\n"
                "}\n"))
    body = "\n".join("      " + s for s in remap)
    return (
        f"for (int64_t q = 0; q < {D.cpp(D.norm(planes * osz))}; ++q) {cg.ptr(y)}[q] = static_cast<{ct}>(0);\n"
        f"for (int64_t pl = 0; pl < {D.cpp(planes)}; ++pl)\n"
        f"  for (int64_t e = 0; e < {isz}; ++e) {{\n"
        f"    const int64_t q = {cg.ptr(ix)}[pl * {isz} + e];\n"
        f"    if (q < 0 || q >= {D.cpp(D.norm(planes * inf_sz))}) continue;\n"
        "    {\n"
        f"{body}\n"
        f"      {cg.ptr(y)}[(q / {inf_sz}) * {osz} + o] = {cg.ptr(x)}[pl * {isz} + e];\n"
        "    }\n"
        "  }\n"
    )


register("MaxUnpool", infer=_infer_unpool, emit=_emit_unpool, check=_check_unpool, const_inputs=(2,),
         shape_inputs=(), cuda=True)


# ------------------------------------------------------------------------------------------------------
# RoiAlign


def _check_roialign(node: "Node", g: "Graph") -> str | None:
    if _str_attr(node, "mode", "avg") not in ("avg", "max"):
        return f"mode '{_str_attr(node, 'mode', '')}' is not avg or max"
    if _str_attr(node, "coordinate_transformation_mode", "half_pixel") not in ("half_pixel", "output_half_pixel"):
        return "coordinate_transformation_mode must be half_pixel or output_half_pixel"
    t = g.tensors.get(node.input(2))
    if t is not None and not np.issubdtype(t.dtype, np.integer):
        return f"batch_indices of dtype {t.dtype} are not supported (integer)"
    return _float_check(node, g, (0, 1))


def _infer_roialign(node: "Node", g: "Graph"):
    x, rois, bi = g.t(node.inputs[0]), g.t(node.inputs[1]), g.t(node.inputs[2])
    if x.rank != 4:
        raise err(node, f"X of shape {D.fmt_shape(x.shape)} must be (N, C, H, W)")
    static_spatial(node, x.shape, "X")
    if rois.rank != 2 or rois.shape[1] != 4:
        raise err(node, f"rois of shape {D.fmt_shape(rois.shape)} must be (num_rois, 4)")
    if bi.rank != 1 or bi.shape[0] != rois.shape[0]:
        raise err(node, f"batch_indices of shape {D.fmt_shape(bi.shape)} must be ({D.cpp(rois.shape[0])},)")
    oh, ow = int(node.attr("output_height", 1)), int(node.attr("output_width", 1))
    return [(x.dtype, (rois.shape[0], x.shape[1], oh, ow))]


def _roi_samples(a: str, L, h: int, w: int, upd: str, pre: str) -> str:
    """The lines of RoiAlign's sampling grid of one output bin (CPU and CUDA code alike): each sample point's four
    bilinear taps of plane ``xc`` (none outside the plane, NaN coordinates included), then ``upd`` accumulates them."""
    lines = [
        "for (int64_t iy = 0; iy < gh; ++iy)",
        "  for (int64_t ix = 0; ix < gw; ++ix) {",
        f"    {a} yy = sh + static_cast<{a}>(ph) * bh + (static_cast<{a}>(iy) + {L(0.5)}) * bh / static_cast<{a}>(gh);",
        f"    {a} xx = sw + static_cast<{a}>(pw) * bw + (static_cast<{a}>(ix) + {L(0.5)}) * bw / static_cast<{a}>(gw);",
        f"    {a} w1 = 0, w2 = 0, w3 = 0, w4 = 0;",
        "    int64_t p1 = 0, p2 = 0, p3 = 0, p4 = 0;",
        # NaN coordinates fail the test (they are outside): no index is made of them
        f"    if (yy >= {L(-1)} && yy <= {L(h)} && xx >= {L(-1)} && xx <= {L(w)}) {{",
        f"      yy = std::max(yy, {a}(0));",
        f"      xx = std::max(xx, {a}(0));",
        "      int64_t yl = static_cast<int64_t>(yy), xl = static_cast<int64_t>(xx), yhh, xhh;",
        f"      if (yl >= {h - 1}) {{ yhh = yl = {h - 1}; yy = static_cast<{a}>(yl); }} else yhh = yl + 1;",
        f"      if (xl >= {w - 1}) {{ xhh = xl = {w - 1}; xx = static_cast<{a}>(xl); }} else xhh = xl + 1;",
        f"      const {a} ly = yy - static_cast<{a}>(yl), lx = xx - static_cast<{a}>(xl);",
        f"      const {a} hy = {L(1)} - ly, hx = {L(1)} - lx;",
        "      w1 = hy * hx; w2 = hy * lx; w3 = ly * hx; w4 = ly * lx;",
        f"      p1 = yl * {w} + xl; p2 = yl * {w} + xhh; p3 = yhh * {w} + xl; p4 = yhh * {w} + xhh;",
        "    }",
        f"    const {a} v1 = static_cast<{a}>(xc[p1]), v2 = static_cast<{a}>(xc[p2]);",
        f"    const {a} v3 = static_cast<{a}>(xc[p3]), v4 = static_cast<{a}>(xc[p4]);",
        *[f"    {ln.strip()}" for ln in upd.split("\n")],
        "  }",
    ]
    return "".join(pre + ln + "\n" for ln in lines)


def _emit_roialign(node: "Node", cg: "Emitter") -> str:
    x, rois, bi, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    _, c, h, w = cg.shape(x)
    c, h, w = int(c), int(h), int(w)
    oh, ow = int(node.attr("output_height", 1)), int(node.attr("output_width", 1))
    sr = int(node.attr("sampling_ratio", 0))
    scale = float(node.attr("spatial_scale", 1.0))
    half = _str_attr(node, "coordinate_transformation_mode", "half_pixel") == "half_pixel"
    is_max = _str_attr(node, "mode", "avg") == "max"
    a, ct = _acc(cg, x), cg.ctype(x)
    L = lambda v: literal(v, a)  # noqa: E731
    nr = cg.shape(rois)[0]
    off = L(0.5 if half else 0.0)
    grid_h = str(sr) if sr > 0 else f"static_cast<int64_t>(std::ceil(rh / {L(oh)}))"
    grid_w = str(sr) if sr > 0 else f"static_cast<int64_t>(std::ceil(rw / {L(ow)}))"
    minsize = "" if half else (f"  rw = std::max(rw, {L(1)});\n  rh = std::max(rh, {L(1)});\n")
    if is_max:
        upd = ("const {a} val = std::max(std::max(w1 * v1, w2 * v2), std::max(w3 * v3, w4 * v4));\n"
               "            acc = first ? val : std::max(acc, val);\n            first = false;")
        fin = "acc"
    else:
        upd = "acc += w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4;"
        fin = "acc / static_cast<{a}>(count)"
    upd, fin = upd.format(a=a), fin.format(a=a)
    if cg.device != "cpu":
        return _emit_roialign_cuda(node, cg, grid_h, grid_w, minsize, upd, fin)
    return (
        f"for (int64_t r = 0; r < {D.cpp(nr)}; ++r) {{\n"
        f"  const {cg.ctype(rois)}* __restrict rr = {cg.ptr(rois)} + r * 4;\n"
        f"  const int64_t b = static_cast<int64_t>({cg.ptr(bi)}[r]);\n"
        f"  if (b < 0 || b >= {D.cpp(cg.shape(x)[0])}) "
        f"{cg.kernel_error(f'node {chr(39)}{node.name}{chr(39)} (RoiAlign): batch index out of range')}\n"
        f"  const {a} sw = static_cast<{a}>(rr[0]) * {L(scale)} - {off};\n"
        f"  const {a} sh = static_cast<{a}>(rr[1]) * {L(scale)} - {off};\n"
        f"  {a} rw = static_cast<{a}>(rr[2]) * {L(scale)} - {off} - sw;\n"
        f"  {a} rh = static_cast<{a}>(rr[3]) * {L(scale)} - {off} - sh;\n"
        f"{minsize}"
        f"  const {a} bh = rh / {L(oh)}, bw = rw / {L(ow)};\n"
        f"  const int64_t gh = {grid_h}, gw = {grid_w};\n"
        + ("" if is_max else "  const int64_t count = std::max<int64_t>(gh * gw, 1);\n") +
        f"  for (int64_t c = 0; c < {c}; ++c) {{\n"
        f"    const {ct}* __restrict xc = {cg.ptr(x)} + (b * {c} + c) * {h * w};\n"
        f"    for (int64_t ph = 0; ph < {oh}; ++ph)\n"
        f"      for (int64_t pw = 0; pw < {ow}; ++pw) {{\n"
        f"        {a} acc = 0;\n"
        + ("        bool first = true;\n" if is_max else "")
        + _roi_samples(a, L, h, w, upd, "        ") +
        f"        {cg.ptr(y)}[((r * {c} + c) * {oh} + ph) * {ow} + pw] = static_cast<{ct}>({fin});\n"
        "      }\n"
        "  }\n"
        "}\n"
    )


def _emit_roialign_cuda(node: "Node", cg: "Emitter", grid_h: str, grid_w: str, minsize: str, upd: str,
                        fin: str) -> str:
    """One thread per output element (region, channel, bin): the region's geometry, then the CPU's sampling loop;
    a batch index outside X is reported (``cg.kernel_error``) and its outputs set to 0."""
    x, rois, bi, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    xs = cg.shape(x)
    c, h, w = int(xs[1]), int(xs[2]), int(xs[3])
    oh, ow = int(node.attr("output_height", 1)), int(node.attr("output_width", 1))
    scale = float(node.attr("spatial_scale", 1.0))
    half = _str_attr(node, "coordinate_transformation_mode", "half_pixel") == "half_pixel"
    is_max = _str_attr(node, "mode", "avg") == "max"
    a, ct = _acc(cg, x), cg.ctype(x)
    L = lambda v: literal(v, a)  # noqa: E731
    off = L(0.5 if half else 0.0)
    bad = cg.kernel_error(f"node '{node.name}' (RoiAlign): batch index out of range")
    body = (
        f"const int64_t pw = t % {ow};\n"
        f"const int64_t ph = t / {ow} % {oh};\n"
        f"const int64_t c = t / {oh * ow} % {c};\n"
        f"const int64_t r = t / {c * oh * ow};\n"
        f"const {cg.ctype(rois)}* __restrict rr = {cg.ptr(rois)} + r * 4;\n"
        f"const int64_t b = static_cast<int64_t>({cg.ptr(bi)}[r]);\n"
        f"if (b < 0 || b >= {D.cpp(xs[0])}) {{\n"
        f"  {bad}\n"
        f"  {cg.ptr(y)}[t] = static_cast<{ct}>(0);\n"
        "  return;\n"
        "}\n"
        f"const {a} sw = static_cast<{a}>(rr[0]) * {L(scale)} - {off};\n"
        f"const {a} sh = static_cast<{a}>(rr[1]) * {L(scale)} - {off};\n"
        f"{a} rw = static_cast<{a}>(rr[2]) * {L(scale)} - {off} - sw;\n"
        f"{a} rh = static_cast<{a}>(rr[3]) * {L(scale)} - {off} - sh;\n"
        + minsize.replace("  ", "", 1).replace("\n  ", "\n") +
        f"const {a} bh = rh / {L(oh)}, bw = rw / {L(ow)};\n"
        f"const int64_t gh = {grid_h}, gw = {grid_w};\n"
        + ("" if is_max else "const int64_t count = std::max<int64_t>(gh * gw, 1);\n") +
        f"const {ct}* __restrict xc = {cg.ptr(x)} + (b * {c} + c) * {h * w};\n"
        f"{a} acc = 0;\n"
        + ("bool first = true;\n" if is_max else "")
        + _roi_samples(a, L, h, w, upd, "") +
        f"{cg.ptr(y)}[t] = static_cast<{ct}>({fin});\n"
    )
    return cg.par_for("t", cg.numel(y), body)


register("RoiAlign", infer=_infer_roialign, emit=_emit_roialign, check=_check_roialign,
         cuda=True)


# ------------------------------------------------------------------------------------------------------
# DeformConv (2-D)


def _deform_geom(node: "Node", g: "Graph"):
    x, wt, off = g.t(node.inputs[0]), g.t(node.inputs[1]), g.t(node.inputs[2])
    if x.rank != 4:
        raise err(node, f"X of shape {D.fmt_shape(x.shape)}: only 2-D deformable convolution (N, C, H, W)")
    c, h, w = static_spatial(node, x.shape, "X")
    if wt.rank != 4:
        raise err(node, f"W of shape {D.fmt_shape(wt.shape)} must be (M, C/group, kH, kW)")
    m, cg_, kh, kw = _static(node, wt.shape, "W")
    ks = [int(v) for v in node.attr("kernel_shape", [kh, kw])]
    if ks != [kh, kw]:
        raise err(node, f"kernel_shape {ks} does not match W {D.fmt_shape(wt.shape)}")
    group = int(node.attr("group", 1))
    og = int(node.attr("offset_group", 1))
    st = [int(v) for v in node.attr("strides", [1, 1])]
    dl = [int(v) for v in node.attr("dilations", [1, 1])]
    pads = [int(v) for v in node.attr("pads", [0, 0, 0, 0])]
    if c != cg_ * group or m % group or c % og:
        raise err(node, f"channels of X ({c}), W {D.fmt_shape(wt.shape)}, group {group} and offset_group {og} "
                  "do not match")
    oh = (h + pads[0] + pads[2] - ((kh - 1) * dl[0] + 1)) // st[0] + 1
    ow = (w + pads[1] + pads[3] - ((kw - 1) * dl[1] + 1)) // st[1] + 1
    if off.rank != 4 or tuple(off.shape[1:]) != (og * kh * kw * 2, oh, ow) or off.shape[0] != x.shape[0]:
        raise err(node, f"offset of shape {D.fmt_shape(off.shape)} must be "
                  f"({D.cpp(x.shape[0])}, {og * kh * kw * 2}, {oh}, {ow})")
    if node.input(4):
        mk = g.t(node.inputs[4])
        if mk.rank != 4 or tuple(mk.shape[1:]) != (og * kh * kw, oh, ow):
            raise err(node, f"mask of shape {D.fmt_shape(mk.shape)} must be (N, {og * kh * kw}, {oh}, {ow})")
    if node.input(3):
        b = g.t(node.inputs[3])
        if tuple(b.shape) != (m,):
            raise err(node, f"B of shape {D.fmt_shape(b.shape)} must be ({m},)")
    return dict(c=c, h=h, w=w, m=m, cg=cg_, kh=kh, kw=kw, group=group, og=og, st=st, dl=dl, pads=pads, oh=oh,
                ow=ow)


def _infer_deform(node: "Node", g: "Graph"):
    geo = _deform_geom(node, g)
    x = g.t(node.inputs[0])
    return [(x.dtype, (x.shape[0], geo["m"], geo["oh"], geo["ow"]))]


def _emit_deform(node: "Node", cg: "Emitter") -> str:
    x, wt, off, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    gm = _deform_geom(node, cg.g)
    c, h, w, m, cpg, kh, kw = gm["c"], gm["h"], gm["w"], gm["m"], gm["cg"], gm["kh"], gm["kw"]
    oh, ow, og, group = gm["oh"], gm["ow"], gm["og"], gm["group"]
    a, ct = _acc(cg, x), cg.ctype(x)
    L = lambda v: literal(v, a)  # noqa: E731
    mpg, cpog = m // group, c // og
    bias = f"static_cast<{a}>({cg.ptr(node.inputs[3])}[mo])" if node.input(3) else L(0)
    mask = (f"static_cast<{a}>({cg.ptr(node.inputs[4])}[((n * {og * kh * kw} + gi * {kh * kw} + ki * {kw} + kj) "
            f"* {oh} + i) * {ow} + j])") if node.input(4) else None
    ksz = cpg * kh * kw

    def sample(pre: str) -> str:
        """The lines giving ``v``: the bilinear sample of plane ``xc`` at tap (ki, kj) of output position (i, j), moved
        by its offset (sample n, offset group gi), times the mask when there is one (CPU and CUDA code alike)."""
        return "".join(pre + ln + "\n" for ln in (
            f"const int64_t oc = (n * {og * kh * kw * 2} + ((gi * {kh} + ki) * {kw} + kj) * 2) * {oh * ow} + i * {ow} + j;",
            f"const {a} py = static_cast<{a}>(i * {gm['st'][0]} - {gm['pads'][0]} + ki * {gm['dl'][0]}) + "
            f"static_cast<{a}>({cg.ptr(off)}[oc]);",
            f"const {a} px = static_cast<{a}>(j * {gm['st'][1]} - {gm['pads'][1]} + kj * {gm['dl'][1]}) + "
            f"static_cast<{a}>({cg.ptr(off)}[oc + {oh * ow}]);",
            f"const {a} fy = std::floor(py), fx = std::floor(px);",
            "const int64_t y0 = ml4ep_rt::to_index(fy), x0 = ml4ep_rt::to_index(fx);",
            f"const {a} ty = py - fy, tx = px - fx;",
            f"{a} v = 0;",
            "for (int64_t dy = 0; dy < 2; ++dy)",
            "  for (int64_t dx = 0; dx < 2; ++dx) {",
            "    const int64_t yy = y0 + dy, xx = x0 + dx;",
            f"    if (yy < 0 || yy >= {h} || xx < 0 || xx >= {w}) continue;",
            f"    v += (dy ? ty : {L(1)} - ty) * (dx ? tx : {L(1)} - tx) * static_cast<{a}>(xc[yy * {w} + xx]);",
            "  }",
            *([f"v *= {mask};"] if mask else [])))

    if cg.device != "cpu":  # one thread per output element: its group's samples, weighted as they are made
        return cg.par_for("t", cg.numel(y), (
            f"const int64_t j = t % {ow};\n"
            f"const int64_t i = t / {ow} % {oh};\n"
            f"const int64_t mo = t / {oh * ow} % {m};\n"
            f"const int64_t n = t / {m * oh * ow};\n"
            f"const {cg.ctype(wt)}* __restrict wm = {cg.ptr(wt)} + mo * {ksz};\n"
            f"{a} s = {bias};\n"
            f"for (int64_t cl = 0; cl < {cpg}; ++cl) {{\n"
            f"  const int64_t ci = (mo / {mpg}) * {cpg} + cl;\n"
            f"  const int64_t gi = ci / {cpog};\n"
            f"  const {ct}* __restrict xc = {cg.ptr(x)} + (n * {c} + ci) * {h * w};\n"
            f"  for (int64_t ki = 0; ki < {kh}; ++ki)\n"
            f"    for (int64_t kj = 0; kj < {kw}; ++kj) {{\n"
            + sample("      ")
            + f"      s += static_cast<{a}>(wm[(cl * {kh} + ki) * {kw} + kj]) * v;\n"
            "    }\n"
            "}\n"
            f"{cg.ptr(y)}[t] = static_cast<{ct}>(s);\n"))
    ws = cg.workspace(0, a)
    # per (n, output position, input channel, tap): the bilinear sample, then a dot product per output channel
    return (
        f"{a}* __restrict col = {ws};\n"
        f"for (int64_t n = 0; n < {D.cpp(cg.shape(x)[0])}; ++n)\n"
        f"  for (int64_t i = 0; i < {oh}; ++i)\n"
        f"    for (int64_t j = 0; j < {ow}; ++j) {{\n"
        f"      for (int64_t ci = 0; ci < {c}; ++ci) {{\n"
        f"        const int64_t gi = ci / {cpog};\n"
        f"        const {ct}* __restrict xc = {cg.ptr(x)} + (n * {c} + ci) * {h * w};\n"
        f"        for (int64_t ki = 0; ki < {kh}; ++ki)\n"
        f"          for (int64_t kj = 0; kj < {kw}; ++kj) {{\n"
        + sample("            ")
        + f"            col[(ci * {kh} + ki) * {kw} + kj] = v;\n"
        "          }\n"
        "      }\n"
        f"      for (int64_t mo = 0; mo < {m}; ++mo) {{\n"
        f"        const {cg.ctype(wt)}* __restrict wm = {cg.ptr(wt)} + mo * {ksz};\n"
        f"        const {a}* __restrict cm = col + (mo / {mpg}) * {ksz};\n"
        f"        {a} s = {bias};\n"
        f"        for (int64_t k = 0; k < {ksz}; ++k) s += static_cast<{a}>(wm[k]) * cm[k];\n"
        f"        {cg.ptr(y)}[((n * {m} + mo) * {oh} + i) * {ow} + j] = static_cast<{ct}>(s);\n"
        "      }\n"
        "    }\n"
    )


def _deform_workspace(node: "Node", g: "Graph"):
    gm = _deform_geom(node, g)
    dt = np.float64 if g.t(node.inputs[0]).dtype == np.float64 else np.float32
    return [(gm["c"] * gm["kh"] * gm["kw"], dt)]


register("DeformConv", infer=_infer_deform, emit=_emit_deform, workspace=_deform_workspace,
         check=lambda n, g: _float_check(n, g, (0, 1, 2)), cuda=True)
