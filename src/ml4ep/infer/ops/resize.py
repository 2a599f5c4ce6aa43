"""Resize (opset 10 to 19+): modes ``nearest``, ``linear`` (n-linear over any number of axes) and ``cubic``.

Scales or sizes are compile-time constants, so every resized axis gets a table at code generation: for each
output index, the input offset(s) (already multiplied by the input stride) and, in linear mode, the two
interpolation weights; cubic and antialiased modes get K taps (offsets and weights) per output index.
Axes that keep their size (scale 1) are copied straight through; leading ones
(typically N and C, which may be symbolic) form one outer loop, trailing ones a contiguous block per output
point (channels-last layouts). The output is written sequentially.

Every coordinate transformation is supported, ``tf_crop_and_resize`` included (constant roi; points outside
the input get ``extrapolation_value``), and every nearest mode, as are the ``axes`` attribute and
``keep_aspect_ratio_policy``. Where the specification leaves rounding open, onnxruntime is followed:
coordinates in single precision in its order of operations, a coordinate within 1e-6 of a half counts as a
tie for the ``round_prefer_*`` modes, a scale of exactly 1 leaves an axis untouched, and an output of the
input's shape is a copy.

Cubic (``cubic_coeff_a``, ``exclude_outside``) and ``antialias=1`` (linear and cubic: when downsampling, the
filter is widened by 1/scale and its weights normalised) follow the specification's reference: taps beyond
the input repeat the edge (or are dropped and the rest renormalised with ``exclude_outside``). There, and for
``align_corners`` whenever scales are given, the specification uses the exact output length scale * input
length, not its truncation (onnxruntime uses the truncated length: the two differ when the product is not an
integer); this follows the specification.

On CUDA one thread computes each output element from the same tables (its index on every axis from the first
resized one, then the offsets and weights).

Not supported (``check`` says so): scales or sizes known only at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import register
from .common import node_error, norm_axis
from .. import dims as D
from ..literals import is_floating, literal

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

F32 = np.float32
CTMS = {
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
    "tf_crop_and_resize",
}
NEAREST_MODES = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}
POLICIES = {"stretch", "not_larger", "not_smaller"}
TIE_EPS = 1e-6


@dataclass
class AxisMap:
    n_in: D.DimLike
    n_out: D.DimLike
    # None: output index i reads input index i. Nearest: (n_out,) input indices, -1 where the extrapolation
    # value is written; linear: (n_out, 2) indices (first -1: extrapolation) and (n_out, 2) weights; cubic or
    # antialias ("taps" plans): (n_out, K) indices (first -1: extrapolation) and (n_out, K) weights
    idx: np.ndarray | None = None
    w: np.ndarray | None = None


@dataclass
class Plan:
    mode: str  # "nearest", "linear" or "taps" (cubic, or linear with antialias)
    out_shape: tuple
    axes: list[AxisMap] = field(default_factory=list)
    extrapolation: float = 0.0


# ------------------------------------------------------------------------------------------------------
# attributes and constant inputs


def _settings(node: "Node", opset: int) -> dict:
    legacy = opset < 11
    return {
        "mode": str(node.attr("mode", "nearest")),
        "ctm": "asymmetric" if legacy else str(node.attr("coordinate_transformation_mode", "half_pixel")),
        "nearest": "simple" if legacy else str(node.attr("nearest_mode", "round_prefer_floor")),
        "policy": str(node.attr("keep_aspect_ratio_policy", "stretch")),
        "antialias": int(node.attr("antialias", 0)),
        "cubic_a": float(node.attr("cubic_coeff_a", -0.75)),
        "exclude_outside": int(node.attr("exclude_outside", 0)),
        "extrapolation": float(node.attr("extrapolation_value", 0.0)),
        "roi": "" if legacy else node.input(1),
        "scales": node.input(1) if legacy else node.input(2),
        "sizes": "" if legacy else node.input(3),
    }


def _check(node: "Node", g: "Graph") -> str | None:
    s = _settings(node, g.opset)
    if s["mode"] not in ("nearest", "linear", "cubic"):
        return f"unknown mode '{s['mode']}'"
    if s["ctm"] not in CTMS:
        return f"unknown coordinate_transformation_mode '{s['ctm']}'"
    if s["mode"] == "nearest" and s["nearest"] != "simple" and s["nearest"] not in NEAREST_MODES:
        return f"unknown nearest_mode '{s['nearest']}'"
    if s["policy"] not in POLICIES:
        return f"unknown keep_aspect_ratio_policy '{s['policy']}'"
    for what in ("scales", "sizes"):
        if s[what] and not g.is_const(s[what]):
            return f"{what} must be a constant (resizing to sizes known only at run time is not supported)"
    if s["ctm"] == "tf_crop_and_resize" and s["roi"] and not g.is_const(s["roi"]):
        return "roi must be a constant"
    t = g.tensors.get(node.inputs[0])
    if (
        t is not None
        and s["mode"] in ("linear", "cubic")
        and t.dtype not in (np.dtype(np.float32), np.dtype(np.float64))
    ):
        return f"mode '{s['mode']}' needs a float input, not {t.dtype}"
    return None


def _const(g: "Graph", name: str) -> np.ndarray | None:
    v = g.const(name) if name else None
    if v is None or np.asarray(v).size == 0:
        return None
    return np.asarray(v).reshape(-1)



# ------------------------------------------------------------------------------------------------------
# output shape and tables


def make_plan(node: "Node", g: "Graph") -> Plan:
    s = _settings(node, g.opset)
    in_shape = tuple(g.t(node.inputs[0]).shape)
    rank = len(in_shape)
    if rank == 0:
        raise node_error(node, "the input must have at least one dimension")
    axes_attr = node.attr("axes")
    axes = [norm_axis(node, int(a), rank) for a in axes_attr] if axes_attr is not None else list(range(rank))
    if len(set(axes)) != len(axes):
        raise node_error(node, f"repeated axes {list(axes_attr)}")
    scales_v, sizes_v = _const(g, s["scales"]), _const(g, s["sizes"])
    if (scales_v is None) == (sizes_v is None):
        raise node_error(node, "exactly one of scales and sizes must be given (and non-empty)")
    scale = [F32(1.0)] * rank
    out: list = list(in_shape)
    if scales_v is not None:
        if len(scales_v) != len(axes):
            raise node_error(node, f"{len(scales_v)} scales for {len(axes)} axes")
        for a, v in zip(axes, scales_v.astype(np.float32), strict=True):
            if not v > 0:
                raise node_error(node, f"scale {v} of axis {a} is not positive")
            scale[a] = F32(v)
            if v != 1:
                if not D.is_static(in_shape[a]):
                    raise node_error(node, f"cannot resize the symbolic axis {a} ({D.fmt(in_shape[a])})")
                out[a] = int(F32(v) * F32(int(in_shape[a])))  # truncation, as onnxruntime
    else:
        if len(sizes_v) != len(axes):
            raise node_error(node, f"{len(sizes_v)} sizes for {len(axes)} axes")
        for a, v in zip(axes, sizes_v.tolist(), strict=True):
            v = D.norm(v)
            if v == in_shape[a]:
                continue
            if not D.is_static(in_shape[a]) or not D.is_static(v):
                raise node_error(node, f"cannot resize the symbolic axis {a} ({D.fmt(in_shape[a])} to {D.fmt(v)})")
            out[a] = int(v)
            scale[a] = F32(int(v)) / F32(int(in_shape[a])) if int(in_shape[a]) else F32(1.0)
        if s["policy"] != "stretch":
            chosen = axes if axes_attr is not None else list(range(rank))
            pick = min if s["policy"] == "not_larger" else max
            common = pick(scale[a] for a in chosen)
            for a in chosen:
                scale[a] = F32(common)
                if common != 1:
                    if not D.is_static(in_shape[a]):
                        raise node_error(node, f"cannot resize the symbolic axis {a} ({D.fmt(in_shape[a])})")
                    # std::round of the single-precision product: halves away from zero
                    out[a] = int(np.floor(np.float64(F32(common) * F32(int(in_shape[a]))) + 0.5))
                else:
                    out[a] = in_shape[a]
    roi = [(0.0, 1.0)] * rank
    if s["ctm"] == "tf_crop_and_resize":
        rv = _const(g, s["roi"])
        if rv is not None:
            rv = rv.astype(np.float32)
            k = len(axes)
            if len(rv) != 2 * k:
                raise node_error(node, f"roi has {len(rv)} values, expected {2 * k}")
            for j, a in enumerate(axes):
                roi[a] = (float(rv[j]), float(rv[k + j]))
    taps = s["mode"] == "cubic" or (s["mode"] == "linear" and bool(s["antialias"]))
    plan = Plan("taps" if taps else s["mode"], tuple(out), extrapolation=s["extrapolation"])
    crop = s["ctm"] == "tf_crop_and_resize" and any(r != (0.0, 1.0) for r in roi)
    # an output of the input's shape is a copy (as in onnxruntime), even for a scale such as 1.25 on 3 pixels
    same = tuple(out) == in_shape and not crop
    for a in range(rank):
        m = AxisMap(in_shape[a], out[a])
        cropped = s["ctm"] == "tf_crop_and_resize" and roi[a] != (0.0, 1.0)
        if not same and (scale[a] != 1 or cropped):
            n_in, n_out = int(in_shape[a]), int(out[a])
            # the specification's output length: scale * input length where scales are given
            width = F32(scale[a]) * F32(n_in) if scales_v is not None else F32(n_out)
            c = _coords(s["ctm"], n_in, n_out, scale[a], roi[a], width)
            extrap = (c < 0) | (c > F32(n_in - 1)) if s["ctm"] == "tf_crop_and_resize" else None
            if s["mode"] == "nearest":
                m.idx = _nearest(s["nearest"], c, n_in, scale[a] < 1)
                if extrap is not None:
                    m.idx[extrap] = -1
            elif taps:
                m.idx, m.w = _taps(c, n_in, scale[a], s)
                if extrap is not None:
                    m.idx[extrap, 0] = -1
            else:
                m.idx, m.w = _linear(c, n_in)
                if extrap is not None:
                    m.idx[extrap, 0] = -1
            if _is_identity(m):
                m.idx = m.w = None
        plan.axes.append(m)
    return plan


def _coords(
    ctm: str, n_in: int, n_out: int, s: np.float32, roi: tuple[float, float], width: np.float32
) -> np.ndarray:
    """Input coordinate of every output index (float32 arithmetic in onnxruntime's order)."""
    x = np.arange(n_out, dtype=np.float32)
    half = F32(0.5)
    if ctm == "half_pixel":
        return (x + half) / s - half
    if ctm == "asymmetric":
        return x / s
    if ctm == "pytorch_half_pixel":
        return (x + half) / s - half if n_out > 1 else np.zeros(n_out, np.float32)
    if ctm == "tf_half_pixel_for_nn":
        return (x + half) / s
    if ctm == "align_corners":
        if n_out > 1 and width != 1:
            return (x * F32(n_in - 1) / (width - F32(1))).astype(np.float32)
        return np.zeros(n_out, np.float32)
    if ctm == "half_pixel_symmetric":
        out_width = s * F32(n_in)
        adjustment = F32(n_out) / out_width
        center = F32(n_in) / F32(2)
        offset = center * (F32(1) - adjustment)
        return (np.float64(offset) + (x.astype(np.float64) + 0.5) / np.float64(s) - 0.5).astype(np.float32)
    if ctm == "tf_crop_and_resize":
        start, end = F32(roi[0]), F32(roi[1])
        if n_out > 1:
            return start * F32(n_in - 1) + (x * (end - start) * F32(n_in - 1)) / F32(n_out - 1)
        return np.full(n_out, 0.5 * np.float64(start + end) * np.float64(F32(n_in - 1)), dtype=np.float32)
    raise KeyError(ctm)


def _nearest(mode: str, c: np.ndarray, n_in: int, downsample: bool) -> np.ndarray:
    x = c.astype(np.float64)  # exact; the rounding decisions below are then exact too
    away = np.sign(x) * np.floor(np.abs(x) + 0.5)  # std::round: halves away from zero
    # a coordinate within 1e-6 of a half is a tie (onnxruntime >= 1.2x does the same): coordinates that are
    # halves in exact arithmetic often come out one or two ulps off in single precision
    tie = np.abs(x - np.floor(x) - 0.5) <= TIE_EPS
    if mode == "round_prefer_floor":
        r = np.where(tie, np.floor(x), away)
    elif mode == "round_prefer_ceil":
        r = np.where(tie, np.ceil(x), away)
    elif mode == "floor":
        r = np.floor(x)
    elif mode == "ceil":
        r = np.ceil(x)
    elif mode == "simple":  # opset 10
        r = np.ceil(x) if downsample else np.trunc(x)
    else:
        raise KeyError(mode)
    return np.clip(r, 0, n_in - 1).astype(np.int64)


def _linear(c: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.clip(c, F32(0), F32(n_in - 1)).astype(np.float32)
    i0 = np.minimum(x.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w0 = np.abs(x - i1.astype(np.float32))  # weight of i0: distance to i1
    w1 = np.abs(x - i0.astype(np.float32))
    same = i0 == i1
    w0[same] = F32(0.5)
    w1[same] = F32(0.5)
    return np.stack([i0, i1], axis=1), np.stack([w0, w1], axis=1).astype(np.float32)


def _cubic_kernel(d: np.ndarray, a: float) -> np.ndarray:
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _taps(c: np.ndarray, n_in: int, scale: np.float32, s: dict) -> tuple[np.ndarray, np.ndarray]:
    """K input indices and weights per output coordinate (cubic, or linear with antialias)."""
    cubic = s["mode"] == "cubic"
    aa = min(float(scale), 1.0) if s["antialias"] else 1.0  # antialias: the filter widened by 1/scale
    support = 2.0 if cubic else 1.0
    start = int(np.floor(-support / aa) + 1)
    rel = np.arange(start, 2 - start, dtype=np.int64)  # tap offsets from the left neighbour
    x = c.astype(np.float64)
    left = np.floor(x)
    ratio = x - left
    whole = ratio == 0  # as the reference: an integer coordinate is taken as ratio 1 from the pixel before
    left[whole] -= 1
    ratio[whole] = 1.0
    d = (rel[None, :] - ratio[:, None]) * aa
    w = _cubic_kernel(d, s["cubic_a"]) if cubic else np.clip(1 - np.abs(d), 0, 1)
    if s["antialias"]:
        w = w / w.sum(axis=1, keepdims=True)
    idx = left.astype(np.int64)[:, None] + rel[None, :]
    if s["exclude_outside"]:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        w = w / w.sum(axis=1, keepdims=True)
    return np.clip(idx, 0, n_in - 1), w


def _is_identity(m: AxisMap) -> bool:
    if m.idx is None:
        return True
    if m.n_in != m.n_out:
        return False
    ar = np.arange(int(m.n_out))
    if m.w is None:
        return bool(np.array_equal(m.idx, ar))
    if m.w.shape[1] != 2:
        return False
    return bool(np.array_equal(m.idx[:, 0], ar) and np.all(m.w[:, 1] == 0) and np.all(m.w[:, 0] == 1))


# ------------------------------------------------------------------------------------------------------
# registry functions


def _infer(node: "Node", g: "Graph"):
    plan = make_plan(node, g)
    mapped = [a for a, m in enumerate(plan.axes) if m.idx is not None]
    if mapped:
        later = plan.out_shape[mapped[0] :]
        if not D.shape_static(later) or not D.shape_static(g.t(node.inputs[0]).shape[mapped[0] :]):
            raise node_error(node, "only axes before the first resized axis may be symbolic")
    return [(g.t(node.inputs[0]).dtype, plan.out_shape)]


@dataclass
class _Level:
    kind: str  # "id", "nearest", "linear", "taps"
    n_out: int
    stride: int  # input stride of the level (elements)
    tab: str = ""  # C++ pointer to the offsets table
    wtab: str = ""  # C++ pointer to the weights table
    k: int = 2  # taps per output index


def _emit(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    plan = make_plan(node, cg.g)
    in_shape = cg.shape(x)
    ct = cg.ctype(x)
    xp, yp = cg.ptr(x), cg.ptr(y)
    mapped = [a for a, m in enumerate(plan.axes) if m.idx is not None]
    if not mapped:
        return f"std::memcpy({yp}, {xp}, sizeof({ct}) * size_t({cg.numel(x)}));\n"
    first, last = mapped[0], mapped[-1]
    rank = len(in_shape)
    in_strides = [int(D.prod(in_shape[a + 1 :])) for a in range(first, rank)]
    outer = D.prod(in_shape[:first])
    in_block = int(D.prod(in_shape[first:]))
    block = int(D.prod(in_shape[last + 1 :]))  # trailing identity axes: contiguous copies
    extrap = any(m.idx is not None and np.any((m.idx if m.w is None else m.idx[:, 0]) < 0) for m in plan.axes)

    wdt = np.float64 if ct == "double" else np.float32  # weights and sums of the taps plans
    wct = "double" if ct == "double" else "float"
    levels: list[_Level] = []
    decls: list[str] = []  # the tables, named once
    for a in range(first, last + 1):
        m = plan.axes[a]
        st = in_strides[a - first]
        if m.idx is None:
            if levels and levels[-1].kind == "id":
                levels[-1].n_out *= int(m.n_out)
                levels[-1].stride = st
            else:
                levels.append(_Level("id", int(m.n_out), st))
            continue
        offs = np.where(m.idx >= 0, m.idx * st, -1).astype(np.int64)
        tab = f"offsets{a}"
        ntap = 1 if m.w is None else int(m.w.shape[1])
        what = "input offset" if plan.mode == "nearest" else f"{ntap} input offsets and weights"
        decls.append(f"// axis {a}: {m.n_in} -> {m.n_out}, {what} per output index")
        tab_ptr = cg.weight(np.ascontiguousarray(offs).reshape(-1), f"{node.name}.offsets{a}")
        decls.append(f"const int64_t* __restrict {tab} = {tab_ptr};")
        if plan.mode == "nearest":
            levels.append(_Level("nearest", int(m.n_out), st, tab))
        else:
            wtab = f"weights{a}"
            w_ptr = cg.weight(np.ascontiguousarray(m.w, dtype=wdt).reshape(-1), f"{node.name}.weights{a}")
            decls.append(f"const {wct}* __restrict {wtab} = {w_ptr};")
            levels.append(_Level(plan.mode, int(m.n_out), st, tab, wtab, ntap))
    rest = [block] * (len(levels) + 1)  # output elements written per iteration of each level
    for k in range(len(levels) - 1, -1, -1):
        rest[k] = rest[k + 1] * levels[k].n_out

    # the float attribute in the tensor's type (integer types: converted in C++, truncating as onnxruntime does)
    exv = literal(plan.extrapolation, ct) if is_floating(ct) \
        else f"static_cast<{ct}>({literal(plan.extrapolation, 'float')})"
    lines = decls + [
        f"const {ct}* __restrict xin = {xp};",
        f"{ct}* __restrict yo = {yp};",
        f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{",
        f"  const {ct}* __restrict p_ = xin + {'o' if in_block == 1 else f'o * {in_block}'};",
    ]
    weights: list[tuple[str, str]] = []  # weight variables of the enclosing linear levels, outermost first

    def value(ptrs: dict[str, str], bits: str, b: str) -> str:
        """n-linear combination: nested weighted sums over the linear levels (bits: a/b path so far)."""
        k = len(bits)
        if k == len(weights):
            return f"{ptrs[bits]}[{b}]"
        wa, wb = weights[k]
        return f"{wa} * ({value(ptrs, bits + '0', b)}) + {wb} * ({value(ptrs, bits + '1', b)})"

    taps: list[int] = []  # the taps levels enclosing the innermost point

    def tap_sum(base: str, ind: str, b: str) -> None:
        """s<first taps level> = the weighted sum over the taps of every taps level (nested loops)."""
        expr = base
        for depth, k in enumerate(taps):
            lv = levels[k]
            lines.append(f"{ind}{wct} s{k} = 0;")
            lines.append(f"{ind}for (int64_t u{k} = 0; u{k} < {lv.k}; ++u{k}) {{")
            expr = f"{expr} + o{k}[u{k}]"
            ind += "  "
            if depth == len(taps) - 1:
                lines.append(f"{ind}s{k} += w{k}[u{k}] * static_cast<{wct}>(({expr})[{b}]);")
        for depth in range(len(taps) - 1, -1, -1):
            ind = ind[:-2]
            lines.append(f"{ind}}}")
            if depth > 0:
                o = taps[depth - 1]
                lines.append(f"{ind}s{o} += w{o}[u{o}] * s{taps[depth]};")

    def gen(k: int, ptrs: dict[str, str], ind: str) -> None:
        if k == len(levels) and plan.mode == "taps":
            if block == 1:
                tap_sum(ptrs[""], ind, "0")
                lines.append(f"{ind}*yo++ = static_cast<{ct}>(s{taps[0]});")
            else:
                lines.append(f"{ind}for (int64_t b = 0; b < {block}; ++b) {{")
                tap_sum(ptrs[""], ind + "  ", "b")
                lines.append(f"{ind}  yo[b] = static_cast<{ct}>(s{taps[0]});")
                lines.append(f"{ind}}}")
                lines.append(f"{ind}yo += {block};")
            return
        if k == len(levels):
            if block == 1:
                lines.append(f"{ind}*yo++ = {value(ptrs, '', '0')};")
            else:
                if plan.mode == "nearest":
                    lines.append(f"{ind}std::memcpy(yo, {ptrs['']}, sizeof({ct}) * {block});")
                else:
                    lines.append(
                        f"{ind}for (int64_t b = 0; b < {block}; ++b) yo[b] = {value(ptrs, '', 'b')};"
                    )
                lines.append(f"{ind}yo += {block};")
            return
        lv = levels[k]
        j = f"j{k}"
        lines.append(f"{ind}for (int64_t {j} = 0; {j} < {lv.n_out}; ++{j}) {{")
        inner = ind + "  "
        new: dict[str, str] = {}
        if lv.kind == "id":
            step = j if lv.stride == 1 else f"{j} * {lv.stride}"
            for bits, p in ptrs.items():
                new[bits] = f"{p}{k}"
                lines.append(f"{inner}const {ct}* __restrict {new[bits]} = {p} + {step};")
        elif lv.kind == "taps":
            lines.append(f"{inner}const int64_t* __restrict o{k} = {lv.tab} + {j} * {lv.k};")
            if extrap:
                lines.append(
                    f"{inner}if (o{k}[0] < 0) {{ std::fill_n(yo, {rest[k + 1]}, {exv}); "
                    f"yo += {rest[k + 1]}; continue; }}"
                )
            lines.append(f"{inner}const {wct}* __restrict w{k} = {lv.wtab} + {j} * {lv.k};")
            taps.append(k)
            new = dict(ptrs)
        elif lv.kind == "nearest":
            lines.append(f"{inner}const int64_t t{k} = {lv.tab}[{j}];")
            if extrap:
                lines.append(
                    f"{inner}if (t{k} < 0) {{ std::fill_n(yo, {rest[k + 1]}, {exv}); "
                    f"yo += {rest[k + 1]}; continue; }}"
                )
            for bits, p in ptrs.items():
                new[bits] = f"{p}{k}"
                lines.append(f"{inner}const {ct}* __restrict {new[bits]} = {p} + t{k};")
        else:
            lines.append(f"{inner}const int64_t ta{k} = {lv.tab}[2 * {j}], tb{k} = {lv.tab}[2 * {j} + 1];")
            if extrap:
                lines.append(
                    f"{inner}if (ta{k} < 0) {{ std::fill_n(yo, {rest[k + 1]}, {exv}); "
                    f"yo += {rest[k + 1]}; continue; }}"
                )
            lines.append(f"{inner}const float wa{k} = {lv.wtab}[2 * {j}], wb{k} = {lv.wtab}[2 * {j} + 1];")
            weights.append((f"wa{k}", f"wb{k}"))
            for bits, p in ptrs.items():
                new[bits + "0"], new[bits + "1"] = f"{p}{k}a", f"{p}{k}b"
                lines.append(f"{inner}const {ct}* __restrict {p}{k}a = {p} + ta{k};")
                lines.append(f"{inner}const {ct}* __restrict {p}{k}b = {p} + tb{k};")
        gen(k + 1, new, inner)
        if lv.kind == "linear":
            weights.pop()
        if lv.kind == "taps":
            taps.pop()
        lines.append(f"{ind}}}")

    gen(0, {"": "p_"}, "  ")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _emit_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per output element: its index on each axis from the first resized one, the input offsets (and
    weights) from the same tables as the CPU code, the n-linear combination or the sum over the taps."""
    x, y = node.inputs[0], node.outputs[0]
    plan = make_plan(node, cg.g)
    in_shape = cg.shape(x)
    ct = cg.ctype(x)
    xp, yp = cg.ptr(x), cg.ptr(y)
    mapped = [a for a, m in enumerate(plan.axes) if m.idx is not None]
    if not mapped:
        return cg.copy(yp, xp, f"sizeof({ct}) * size_t({cg.numel(x)})")
    first, rank = mapped[0], len(in_shape)
    in_strides = {a: int(D.prod(in_shape[a + 1:])) for a in range(first, rank)}  # (the leading ones may be symbolic)
    in_block = int(D.prod(in_shape[first:]))
    wdt = np.float64 if ct == "double" else np.float32
    wct = "double" if ct == "double" else "float"
    exv = literal(plan.extrapolation, ct) if is_floating(ct) \
        else f"static_cast<{ct}>({literal(plan.extrapolation, 'float')})"
    # the output index on each axis from `first` on (innermost first), the outer block index last
    body, acc = "", 1
    for a in range(rank - 1, first - 1, -1):
        n_out = int(plan.axes[a].n_out)
        q = "t" if acc == 1 else f"(t / {acc})"
        body += f"const int64_t j{a} = {q} % {n_out};\n"
        acc *= n_out
    body += f"const {ct}* __restrict p_ = {xp} + {'t' if acc == 1 else f'(t / {acc})'} * {in_block};\n"
    offs = [f"j{a} * {in_strides[a]}" if in_strides[a] != 1 else f"j{a}"
            for a in range(first, rank) if plan.axes[a].idx is None]  # the axes read straight through
    weights: list[tuple[str, str]] = []
    taps: list[tuple[int, int]] = []  # (axis, taps per output index)
    extrap: list[str] = []  # conditions for the extrapolation value
    for a in mapped:
        m = plan.axes[a]
        st = in_strides[a]
        tab = cg.weight(np.ascontiguousarray(np.where(m.idx >= 0, m.idx * st, -1).astype(np.int64)).reshape(-1),
                        f"{node.name}.offsets{a}")
        if plan.mode == "nearest":
            body += f"const int64_t t{a} = {tab}[j{a}];\n"
            extrap.append(f"t{a} < 0")
            offs.append(f"t{a}")
            continue
        wtab = cg.weight(np.ascontiguousarray(m.w, dtype=wdt).reshape(-1), f"{node.name}.weights{a}")
        if plan.mode == "linear":
            body += (f"const int64_t ta{a} = {tab}[2 * j{a}], tb{a} = {tab}[2 * j{a} + 1];\n"
                     f"const {wct} wa{a} = {wtab}[2 * j{a}], wb{a} = {wtab}[2 * j{a} + 1];\n")
            extrap.append(f"ta{a} < 0")
            weights.append((f"wa{a}", f"wb{a}"))
        else:
            k = int(m.w.shape[1])
            body += (f"const int64_t* __restrict o{a} = {tab} + j{a} * {k};\n"
                     f"const {wct}* __restrict w{a} = {wtab} + j{a} * {k};\n")
            extrap.append(f"o{a}[0] < 0")
            taps.append((a, k))
    base = " + ".join(offs) or "0"
    if plan.mode == "taps":
        inner = f"s{taps[-1][0]} += w{taps[-1][0]}[u{taps[-1][0]}] * static_cast<{wct}>(p_[{base}" \
                + "".join(f" + o{a}[u{a}]" for a, _ in taps) + "]);\n"
        for depth in range(len(taps) - 1, -1, -1):
            a, k = taps[depth]
            loop = f"for (int64_t u{a} = 0; u{a} < {k}; ++u{a}) {{\n" + _ind(inner)
            if depth + 1 < len(taps):
                loop += f"  s{a} += w{a}[u{a}] * s{taps[depth + 1][0]};\n"
            inner = f"{wct} s{a} = 0;\n" + loop + "}\n"
        value = f"static_cast<{ct}>(s{taps[0][0]})"
        compute = inner
    else:
        lin = list(mapped) if plan.mode == "linear" else []

        def corner(bits: str) -> str:
            terms = [base] + [f"t{b}{a}" for a, b in zip(lin, bits)]  # ta or tb per linear axis
            return f"p_[{' + '.join(t for t in terms if t != '0') or '0'}]"

        def comb(bits: str) -> str:
            if len(bits) == len(weights):
                return corner(bits)
            wa, wb = weights[len(bits)]
            return f"{wa} * ({comb(bits + 'a')}) + {wb} * ({comb(bits + 'b')})"

        value, compute = comb(""), ""
    if any(np.any((m.idx if m.w is None else m.idx[:, 0]) < 0) for m in plan.axes if m.idx is not None):
        body += f"if ({' || '.join(extrap)}) {{\n  {yp}[t] = {exv};\n  return;\n}}\n"
    body += compute + f"{yp}[t] = {value};\n"
    return cg.par_for("t", cg.numel(y), body)


def _ind(code: str, pre: str = "  ") -> str:
    return "".join(pre + ln if ln.strip() else ln for ln in code.splitlines(True))


register("Resize", infer=_infer, emit=_emit, check=_check, const_inputs=(1, 2, 3), shape_inputs=(), cuda=_emit_cuda)
