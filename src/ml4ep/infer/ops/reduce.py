"""Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare,
ReduceLogSum, ReduceLogSumExp, and ArgMax / ArgMin.

The axes come from the ``axes`` attribute (ReduceSum before opset 13, the others before opset 18) or from a
constant second input. After dropping axes of extent 1 and merging neighbouring axes that are all reduced or
all kept, most reductions have the form ``(outer, R, inner)``: reduce the middle axis of a 3-D view. That case
gets dedicated loops (a scalar accumulator split into partial sums when ``inner == 1``, whole rows
accumulated at once otherwise, both contiguous in memory); other patterns, such as axes 1 and 3 of an NCHW
tensor, accumulate into the output in one pass over the input. The CUDA code (``_emit_reduce_cuda``,
``_emit_arg_cuda``) is one thread per output value looping over its reduced elements, for every pattern.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import register
from .common import get_ints, mul, norm_axis
from .. import dims as D
from ..literals import CPP_DTYPES, literal
from ...errors import ShapeError

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

# ------------------------------------------------------------------------------------------------------
# the arithmetic of each reduction: accumulate pre(x) with combine, starting from init, then apply post


@dataclass(frozen=True)
class Reduction:
    pre: Callable[[str], str]  # C++ expression of one input value
    combine: Callable[[str, str], str]  # C++ expression combining the accumulator and a value
    init: str  # "zero", "one", "lowest", "highest"
    post: Callable[[str, str], str] | None = None  # (accumulator, count expression) -> result
    float_only: bool = False


def _ident(v: str) -> str:
    return v


def _add(a: str, b: str) -> str:
    return f"{a} + {b}"


REDUCTIONS: dict[str, Reduction] = {
    "ReduceSum": Reduction(_ident, _add, "zero"),
    "ReduceMean": Reduction(_ident, _add, "zero", lambda a, n: f"{a} / {n}", float_only=True),
    "ReduceMax": Reduction(_ident, lambda a, b: f"std::max({a}, {b})", "lowest"),
    "ReduceMin": Reduction(_ident, lambda a, b: f"std::min({a}, {b})", "highest"),
    "ReduceProd": Reduction(_ident, lambda a, b: f"{a} * {b}", "one"),
    "ReduceL1": Reduction(lambda v: f"std::abs({v})", _add, "zero"),
    "ReduceL2": Reduction(
        lambda v: f"{v} * {v}", _add, "zero", lambda a, n: f"std::sqrt({a})", float_only=True
    ),
    "ReduceSumSquare": Reduction(lambda v: f"{v} * {v}", _add, "zero"),
    "ReduceLogSum": Reduction(_ident, _add, "zero", lambda a, n: f"std::log({a})", float_only=True),
    # ReduceLogSumExp is printed by its own code (max subtraction); this entry serves dtype checks
    "ReduceLogSumExp": Reduction(_ident, _add, "zero", float_only=True),
}
# floating point: a NaN wins, as in np.maximum / np.minimum and the reference (std::max and std::min would keep the
# accumulator when the pair is unordered, so a NaN would be dropped or not by its position)
NAN_COMBINE = {
    "ReduceMax": lambda a, b: f"(({b} > {a} || {b} != {b}) ? {b} : {a})",
    "ReduceMin": lambda a, b: f"(({b} < {a} || {b} != {b}) ? {b} : {a})",
}
# integers: sums and products wrap around (ml4ep_rt::iadd, imul) instead of C++'s undefined signed overflow
_iadd = lambda a, b: f"ml4ep_rt::iadd({a}, {b})"  # noqa: E731
INT_COMBINE = {
    "ReduceSum": {"combine": _iadd},
    "ReduceProd": {"combine": lambda a, b: f"ml4ep_rt::imul({a}, {b})"},
    "ReduceL1": {"pre": lambda v: f"ml4ep_rt::iabs({v})", "combine": _iadd},
    "ReduceSumSquare": {"pre": lambda v: f"ml4ep_rt::imul({v}, {v})", "combine": _iadd},
}
# opset from which the axes are an input instead of an attribute
AXES_INPUT_SINCE = {op: (13 if op == "ReduceSum" else 18) for op in REDUCTIONS}

FLOAT_TYPES = {np.dtype(np.float32), np.dtype(np.float64)}
INT_TYPES = {np.dtype(np.int32), np.dtype(np.int64)}
ARG_TYPES = FLOAT_TYPES | INT_TYPES | {np.dtype(np.int8), np.dtype(np.uint8)}
SMALL_INT_TYPES = {np.dtype(t) for t in (np.int8, np.int16, np.uint8, np.uint16, np.uint32, np.uint64)}


def init_value(kind: str, ct: str) -> str:
    """A C++ constant of type ``ct``: "zero" (-0.0 for floats: the additive identity, so that a sum of -0.0
    stays -0.0), "one", "lowest" (-inf for floats) or "highest"."""
    dt = CPP_DTYPES[ct]
    if kind == "zero" and dt.kind == "f":
        return literal(-0.0, ct)
    if kind in ("zero", "one"):
        return literal(int(kind == "one"), ct)
    if kind not in ("lowest", "highest"):
        raise KeyError(kind)
    lo = kind == "lowest"
    if dt.kind == "f":
        return literal(-np.inf if lo else np.inf, ct)
    if dt.kind == "b":
        return literal(not lo, ct)
    return literal(np.iinfo(dt).min if lo else np.iinfo(dt).max, ct)


def count_expr(count: D.DimLike, ct: str) -> str:
    """The number of reduced elements as a C++ value of type ``ct``."""
    if D.is_static(count):
        return literal(int(count), ct)
    return f"static_cast<{ct}>({D.cpp(count)})"


# ------------------------------------------------------------------------------------------------------
# loop helpers shared with softmax.py and normalization.py

# independent accumulators of a row reduction: g++ turns them into vector lanes. 32 suits sums and maxima
# with AVX2 and AVX-512 alike (measured on rows of 1024: 6-10x a plain loop; 8 lanes were no faster than a
# plain loop for -march=native on AVX-512, 16 lanes slow for maxima)
PARTIAL = 32


def row_reduce(
    acc: str,
    ct: str,
    extent: D.DimLike,
    value: Callable[[str], str],
    combine: Callable[[str, str], str],
    init: str,
    indent: str = "",
) -> str:
    """Statements declaring ``ct acc`` = combine-reduction of ``value(r)`` over ``r in [0, extent)``.

    Long static rows use ``PARTIAL`` interleaved accumulators, which turns the loop-carried dependency into
    independent lanes (vectorised by g++); the order of the additions differs from a plain loop only by
    rounding.
    """
    ext = D.cpp(extent)
    if D.is_static(extent) and int(extent) >= 2 * PARTIAL:
        p = f"{acc}_part"
        return (
            f"{indent}{ct} {p}[{PARTIAL}];\n"
            f"{indent}for (int j = 0; j < {PARTIAL}; ++j) {p}[j] = {init};\n"
            f"{indent}int64_t {acc}_r = 0;\n"
            f"{indent}for (; {acc}_r + {PARTIAL} <= {ext}; {acc}_r += {PARTIAL}) {{\n"
            f"{indent}  for (int j = 0; j < {PARTIAL}; ++j) {{ const {ct} v = {value(f'{acc}_r + j')}; "
            f"{p}[j] = {combine(f'{p}[j]', 'v')}; }}\n"
            f"{indent}}}\n"
            # the partial results combined pairwise, halving (vectorises; a chain of 31 would not)
            f"{indent}for (int w = {PARTIAL // 2}; w >= 1; w /= 2)\n"
            f"{indent}  for (int j = 0; j < w; ++j) {p}[j] = {combine(f'{p}[j]', f'{p}[j + w]')};\n"
            f"{indent}{ct} {acc} = {p}[0];\n"
            f"{indent}for (; {acc}_r < {ext}; ++{acc}_r) {{ const {ct} v = {value(f'{acc}_r')}; "
            f"{acc} = {combine(acc, 'v')}; }}\n"
        )
    return (
        f"{indent}{ct} {acc} = {init};\n"
        f"{indent}for (int64_t r = 0; r < {ext}; ++r) {{ const {ct} v = {value('r')}; "
        f"{acc} = {combine(acc, 'v')}; }}\n"
    )


def split_axis(shape, axis: int) -> tuple[D.DimLike, D.DimLike, D.DimLike]:
    """(outer, extent, inner) of a reduction along one axis."""
    return D.prod(shape[:axis]), D.norm(shape[axis]), D.prod(shape[axis + 1 :])



# ------------------------------------------------------------------------------------------------------
# axes and shapes


def _axes(node: "Node", g: "Graph", rank: int) -> list[int] | None:
    """Sorted normalised reduced axes; None means no reduction at all (noop_with_empty_axes)."""
    raw: list | None
    if node.input(1):
        v = g.const(node.input(1))
        if v is None:
            raise ShapeError(f"node '{node.name}' ({node.op_type}): the axes input must be a constant")
        raw = [int(a) for a in np.asarray(v).reshape(-1).tolist()]
    else:
        raw = get_ints(node, "axes")
    if not raw:
        if int(node.attr("noop_with_empty_axes", 0)):
            return None
        return list(range(rank))
    axes = sorted({norm_axis(node, a, rank) for a in raw})
    if len(axes) != len(raw):
        raise ShapeError(f"node '{node.name}' ({node.op_type}): repeated axes {raw}")
    return axes


def _check_reduce(node: "Node", g: "Graph") -> str | None:
    t = g.tensors.get(node.inputs[0])
    red = REDUCTIONS[node.op_type]
    if t is not None:
        ok = FLOAT_TYPES if red.float_only else FLOAT_TYPES | INT_TYPES | SMALL_INT_TYPES
        if node.op_type in ("ReduceMax", "ReduceMin"):
            ok = ok | {np.dtype(np.bool_)}  # max: any, min: all
        if t.dtype not in ok:
            return f"input dtype {t.dtype} is not supported (supported: {', '.join(sorted(map(str, ok)))})"
    if node.input(1) and not g.is_const(node.input(1)):
        return "the axes input must be a constant"
    if "axes" in node.attrs and g.opset >= AXES_INPUT_SINCE[node.op_type] and node.input(1):
        return "axes given both as attribute and as input"
    return None


def _out_shape(shape, axes: list[int] | None, keepdims: bool) -> tuple:
    if axes is None:
        return tuple(shape)
    if keepdims:
        return tuple(1 if a in axes else d for a, d in enumerate(shape))
    return tuple(d for a, d in enumerate(shape) if a not in axes)


def _infer_reduce(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    axes = _axes(node, g, t.rank)
    return [(t.dtype, _out_shape(t.shape, axes, bool(node.attr("keepdims", 1))))]


def segments(shape, axes: list[int]) -> list[tuple[D.DimLike, bool]]:
    """(extent, reduced) runs of the shape: extent-1 axes dropped, equal neighbours merged."""
    out: list[tuple[D.DimLike, bool]] = []
    for a, d in enumerate(shape):
        if d == 1:
            continue
        red = a in axes
        if out and out[-1][1] == red:
            out[-1] = (D.norm(out[-1][0] * d), red)
        else:
            out.append((D.norm(d), red))
    return out


# ------------------------------------------------------------------------------------------------------
# code


def _emit_reduce(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    ct = cg.ctype(x)
    axes = _axes(node, cg.g, len(shape))
    if axes is None:
        axes = []  # noop: each element on its own, still through pre/post (ReduceL2 of one value is |x|)
    count = D.prod(shape[a] for a in axes)
    segs = segments(shape, axes)
    xp, yp = cg.ptr(x), cg.ptr(y)
    if node.op_type == "ReduceLogSumExp":
        return _emit_logsumexp(node, cg, segs, ct, xp, yp)
    red = _reduction(node, cg)
    n_red = sum(1 for _, r in segs if r)
    if n_red <= 1:
        k = next((i for i, (_, r) in enumerate(segs) if r), len(segs))
        outer = D.prod(e for e, _ in segs[:k])
        extent = segs[k][0] if k < len(segs) else 1
        inner = D.prod(e for e, _ in segs[k + 1 :])
        return _emit_ori(red, ct, xp, yp, outer, extent, inner, count_expr(count, ct))
    return _emit_general(red, ct, xp, yp, segs, cg.numel(y), count_expr(count, ct))


def _reduction(node: "Node", cg: "Emitter") -> Reduction:
    """The arithmetic of the node's reduction for its input type (NaN-aware maxima, wrapping integer sums)."""
    red = REDUCTIONS[node.op_type]
    if cg.ctype(node.inputs[0]) in ("float", "double") and node.op_type in NAN_COMBINE:
        return replace(red, combine=NAN_COMBINE[node.op_type])
    kind = np.dtype(cg.dtype(node.inputs[0])).kind
    if node.op_type in INT_COMBINE and kind in "iu":
        red = replace(red, **INT_COMBINE[node.op_type])
        if kind == "u" and node.op_type == "ReduceL1":  # |v| = v (nvcc warns of iabs's test v < 0 there)
            red = replace(red, pre=_ident)
    return red


def _post(red: Reduction, acc: str, cnt: str) -> str:
    return red.post(acc, cnt) if red.post else acc


def _emit_ori(red: Reduction, ct: str, xp: str, yp: str, outer, extent, inner, cnt: str) -> str:
    """Reduce the middle axis of an (outer, extent, inner) view."""
    init = init_value(red.init, ct)
    if inner == 1:
        body = row_reduce("acc", ct, extent, lambda r: red.pre(f"xr[{r}]"), red.combine, init, "  ")
        return (
            f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n"
            f"  const {ct}* __restrict xr = {xp} + {mul('o', extent)};\n"
            + body
            + f"  {yp}[o] = {_post(red, 'acc', cnt)};\n"
            "}\n"
        )
    inn = D.cpp(inner)
    if D.is_static(extent) and int(extent) >= 1:
        first = f"  for (int64_t i = 0; i < {inn}; ++i) yr[i] = {red.pre('xo[i]')};\n"
        start = "1"
    else:
        first = f"  for (int64_t i = 0; i < {inn}; ++i) yr[i] = {init};\n"
        start = "0"
    post = f"  for (int64_t i = 0; i < {inn}; ++i) yr[i] = {_post(red, 'yr[i]', cnt)};\n" if red.post else ""
    return (
        f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n"
        f"  const {ct}* __restrict xo = {xp} + {mul('o', D.norm(extent * inner))};\n"
        f"  {ct}* __restrict yr = {yp} + {mul('o', inner)};\n"
        + first
        + f"  for (int64_t r = {start}; r < {D.cpp(extent)}; ++r) {{\n"
        f"    const {ct}* __restrict xr = xo + {mul('r', inner)};\n"
        f"    for (int64_t i = 0; i < {inn}; ++i) {{ const {ct} v = {red.pre('xr[i]')}; "
        f"yr[i] = {red.combine('yr[i]', 'v')}; }}\n"
        "  }\n" + post + "}\n"
    )


def _nest(segs, body: Callable[[str, str], str], ind0: str = "") -> str:
    """Loops over all segments in memory order; ``body(x_index, y_index)`` is the innermost statement."""
    lines, ind = [], ind0
    x_idx, y_idx = "", ""
    for k, (e, red) in enumerate(segs):
        v = f"a{k}"
        lines.append(f"{ind}for (int64_t {v} = 0; {v} < {D.cpp(e)}; ++{v}) {{")
        ind += "  "
        x_idx = f"({x_idx}) * {D.cpp(e)} + {v}" if x_idx else v
        if not red:
            y_idx = f"({y_idx}) * {D.cpp(e)} + {v}" if y_idx else v
    lines.append(ind + body(x_idx or "0", y_idx or "0"))
    for _ in segs:
        ind = ind[:-2]
        lines.append(ind + "}")
    return "\n".join(lines) + "\n"


def _emit_general(red: Reduction, ct: str, xp: str, yp: str, segs, ny: str, cnt: str) -> str:
    """Several separate reduced runs: accumulate into the output in one pass over the input."""
    code = f"for (int64_t i = 0; i < {ny}; ++i) {yp}[i] = {init_value(red.init, ct)};\n"
    if segs[-1][1]:
        # the last run is reduced: a contiguous row per innermost iteration, accumulated in a register
        ext = segs[-1][0]

        def body(xi: str, yi: str) -> str:
            return (
                f"{{ const {ct}* __restrict xr = {xp} + {mul(f'({xi})', ext)}; {ct} acc = {yp}[{yi}]; "
                f"for (int64_t r = 0; r < {D.cpp(ext)}; ++r) {{ const {ct} v = {red.pre('xr[r]')}; "
                f"acc = {red.combine('acc', 'v')}; }} {yp}[{yi}] = acc; }}"
            )

        code += _nest(segs[:-1], body)
    else:
        code += _nest(
            segs,
            lambda xi, yi: (
                f"{{ const {ct} v = {red.pre(f'{xp}[{xi}]')}; {yp}[{yi}] = "
                f"{red.combine(f'{yp}[{yi}]', 'v')}; }}"
            ),
        )
    if red.post:
        code += f"for (int64_t i = 0; i < {ny}; ++i) {yp}[i] = {red.post(f'{yp}[i]', cnt)};\n"
    return code


def _emit_logsumexp(node: "Node", cg: "Emitter", segs, ct: str, xp: str, yp: str) -> str:
    """log(sum(exp(x))) = m + log(sum(exp(x - m))) with m the maximum (no overflow)."""
    exp = "ml4ep_rt::expf" if ct == "float" else "std::exp"
    mx = lambda a, b: f"std::max({a}, {b})"  # noqa: E731
    add = _add
    lowest, zero = init_value("lowest", ct), init_value("zero", ct)
    if _lse_rowwise(segs):
        # reduced run last: one row per output value
        outer = D.prod(e for e, r in segs if not r)
        extent = segs[-1][0]
        return (
            f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n"
            f"  const {ct}* __restrict xr = {xp} + {mul('o', extent)};\n"
            + row_reduce("m", ct, extent, lambda r: f"xr[{r}]", mx, lowest, "  ")
            + f"  const {ct} mm = std::isinf(m) ? {zero} : m;\n"
            + row_reduce("s", ct, extent, lambda r: f"{exp}(xr[{r}] - mm)", add, zero, "  ")
            + f"  {yp}[o] = mm + std::log(s);\n"
            "}\n"
        )
    # general: maximum into y, sum of exponentials into the workspace, then combine
    ws = cg.workspace(0, ct)
    ny = cg.numel(node.outputs[0])
    code = f"{ct}* __restrict s = {ws};\n"
    code += f"for (int64_t i = 0; i < {ny}; ++i) {{ {yp}[i] = {lowest}; s[i] = {zero}; }}\n"
    code += _nest(segs, lambda xi, yi: f"{yp}[{yi}] = std::max({yp}[{yi}], {xp}[{xi}]);")
    code += f"for (int64_t i = 0; i < {ny}; ++i) if (std::isinf({yp}[i])) {yp}[i] = {zero};\n"
    code += _nest(segs, lambda xi, yi: f"s[{yi}] += {exp}({xp}[{xi}] - {yp}[{yi}]);")
    code += f"for (int64_t i = 0; i < {ny}; ++i) {yp}[i] += std::log(s[i]);\n"
    return code


def _lse_rowwise(segs) -> bool:
    """Whether a LogSumExp reduces one run at the end (one contiguous row per output value)."""
    return sum(1 for _, r in segs if r) == 1 and segs[-1][1]


# ------------------------------------------------------------------------------------------------------
# CUDA: one thread per output value, looping over the reduced elements (for an (outer, R, inner) view with
# inner > 1, neighbouring threads read neighbouring values: coalesced)


def thread_view(segs, var: str = "i") -> tuple[str, list[tuple[str, D.DimLike]], str]:
    """The input elements thread ``var`` (one output value) reduces, from the (extent, reduced) runs ``segs``:
    ``(base, loops, offset)`` with ``base`` the C++ offset of its first element (an expression of ``var``),
    ``loops`` the ``(index, extent)`` of the reduced runs, outermost first, and ``offset`` the C++ offset of
    an element from ``base`` (an expression of the loop indices)."""
    strides: list[D.DimLike] = []
    acc: D.DimLike = 1
    for e, _ in reversed(segs):
        strides.insert(0, acc)
        acc = D.norm(acc * e)
    kept = [(e, s) for (e, r), s in zip(segs, strides) if not r]
    terms, ystride = [], 1
    for k in range(len(kept) - 1, -1, -1):
        e, s = kept[k]
        q = f"{var} / {D.cpp(ystride)}" if ystride != 1 else var
        idx = q if k == 0 else f"{q if q == var else f'({q})'} % {D.cpp(e)}"
        terms.insert(0, mul(idx if idx == var else f"({idx})", s))
        ystride = D.norm(ystride * e)
    loops, off = [], []
    for (e, r), s in zip(segs, strides):
        if r:
            v = f"r{len(loops)}"
            loops.append((v, e))
            off.append(mul(v, s))
    return " + ".join(terms) or "0", loops, " + ".join(off) or "0"


def _loops(loops: list[tuple[str, D.DimLike]], stmt: str) -> str:
    """``stmt`` inside sequential loops over ``loops``."""
    code, ind = "", ""
    for v, e in loops:
        code += f"{ind}for (int64_t {v} = 0; {v} < {D.cpp(e)}; ++{v})\n"
        ind += "  "
    return code + ind + stmt + "\n"


def _emit_reduce_cuda(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    ct = cg.ctype(x)
    axes = _axes(node, cg.g, len(shape)) or []  # None (noop): each value on its own, through pre and post
    segs = segments(shape, axes)
    base, loops, off = thread_view(segs)
    xp, yp = cg.ptr(x), cg.ptr(y)
    body = f"const {ct}* __restrict xr = {xp} + {base};\n"
    if node.op_type == "ReduceLogSumExp":  # m + log(sum(exp(x - m))), m the maximum (as the CPU code)
        exp = "ml4ep_rt::expf" if ct == "float" else "std::exp"
        zero = init_value("zero", ct)
        body += (
            f"{ct} mx = {init_value('lowest', ct)};\n"
            + _loops(loops, f"mx = std::max(mx, xr[{off}]);")
            + f"const {ct} mm = std::isinf(mx) ? {zero} : mx;\n{ct} s = {zero};\n"
            + _loops(loops, f"s = s + {exp}(xr[{off}] - mm);")
            + f"{yp}[i] = mm + std::log(s);\n"
        )
    else:
        red = _reduction(node, cg)
        cnt = count_expr(D.prod(shape[a] for a in axes), ct)
        body += (
            f"{ct} acc = {init_value(red.init, ct)};\n"
            + _loops(loops, f"{{ const {ct} v = {red.pre(f'xr[{off}]')}; acc = {red.combine('acc', 'v')}; }}")
            + f"{yp}[i] = {_post(red, 'acc', cnt)};\n"
        )
    return cg.par_for("i", cg.numel(y), body)


def _workspace_reduce(node: "Node", g: "Graph"):
    if node.op_type != "ReduceLogSumExp":
        return []
    t = g.t(node.inputs[0])
    axes = _axes(node, g, t.rank)
    if _lse_rowwise(segments(t.shape, axes or [])):
        return []
    return [(g.t(node.outputs[0]).numel, t.dtype)]


# ------------------------------------------------------------------------------------------------------
# constant folding (NumPy; ReduceSum/Prod also on symbolic shape values)


def _fold_reduce(node: "Node", vals: list[np.ndarray]):
    x = np.asarray(vals[0])
    rank = x.ndim
    if len(vals) > 1 and vals[1] is not None and np.asarray(vals[1]).size:
        raw = [int(a) for a in np.asarray(vals[1]).reshape(-1)]
    else:
        raw = get_ints(node, "axes") or []
    if not raw and int(node.attr("noop_with_empty_axes", 0)):
        axes: tuple[int, ...] | None = None
    else:
        axes = tuple(sorted({norm_axis(node, a, rank) for a in raw})) if raw else tuple(range(rank))
    keep = bool(node.attr("keepdims", 1))
    op = node.op_type
    if x.dtype == object:
        if op not in ("ReduceSum", "ReduceProd", "ReduceMax", "ReduceMin"):
            raise ShapeError(f"node '{node.name}' ({op}): cannot fold symbolic values")
        if axes is None:
            return [x.copy()]
        fn = {"ReduceSum": np.sum, "ReduceProd": np.prod, "ReduceMax": np.max, "ReduceMin": np.min}[op]
        r = np.asarray(fn(x, axis=axes, keepdims=keep), dtype=object)
        return [np.vectorize(D.norm, otypes=[object])(r) if r.size else r]
    dt = x.dtype
    if axes is None:
        axes = ()
    xf = x.astype(np.float64) if dt.kind == "f" else x
    kw = {"axis": axes, "keepdims": keep}
    if op == "ReduceSum":
        r = np.sum(xf, **kw)
    elif op == "ReduceMean":
        r = np.mean(xf, **kw)
    elif op == "ReduceMax":
        r = np.max(xf, **kw, initial=-np.inf if dt.kind == "f" else np.iinfo(dt).min)
    elif op == "ReduceMin":
        r = np.min(xf, **kw, initial=np.inf if dt.kind == "f" else np.iinfo(dt).max)
    elif op == "ReduceProd":
        r = np.prod(xf, **kw)
    elif op == "ReduceL1":
        r = np.sum(np.abs(xf), **kw)
    elif op == "ReduceL2":
        r = np.sqrt(np.sum(xf * xf, **kw))
    elif op == "ReduceSumSquare":
        r = np.sum(xf * xf, **kw)
    elif op == "ReduceLogSum":
        r = np.log(np.sum(xf, **kw))
    elif op == "ReduceLogSumExp":
        m = np.max(xf, axis=axes, keepdims=True, initial=-np.inf)
        m = np.where(np.isinf(m), 0.0, m)
        r = np.log(np.sum(np.exp(xf - m), axis=axes, keepdims=True)) + m
        if not keep:
            r = r.reshape(_out_shape(x.shape, list(axes), False))
    else:
        raise KeyError(op)
    return [np.asarray(r).astype(dt)]


def _batch_reduce(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule: a reduction over axes other than the batch's (which then moves left by the axes dropped
    before it)."""
    a = ins[0]
    if a is None:
        return False
    red = _axes(node, g, in_rank[0])
    if red is None:
        return outs[0] == a
    if a in red:
        return False
    keep = int(node.attr("keepdims", 1))
    return outs[0] == (a if keep else a - sum(1 for r in red if r < a))


register(
    *REDUCTIONS,
    infer=_infer_reduce,
    emit=_emit_reduce,
    fold=_fold_reduce,
    check=_check_reduce,
    workspace=_workspace_reduce,
    const_inputs=(1,),
    shape_inputs=(),  # the axes
    batch=_batch_reduce,
    cuda=_emit_reduce_cuda,
)


# ------------------------------------------------------------------------------------------------------
# ArgMax / ArgMin


def _check_arg(node: "Node", g: "Graph") -> str | None:
    t = g.tensors.get(node.inputs[0])
    if t is not None and t.dtype not in ARG_TYPES:
        return f"input dtype {t.dtype} is not supported"
    return None


def _arg_axis(node: "Node", rank: int) -> int:
    return norm_axis(node, int(node.attr("axis", 0)), rank)


def _infer_arg(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    axis = _arg_axis(node, t.rank)
    if t.shape[axis] == 0:
        raise ShapeError(f"node '{node.name}' ({node.op_type}): cannot reduce an empty axis")
    return [(np.dtype(np.int64), _out_shape(t.shape, [axis], bool(node.attr("keepdims", 1))))]


def _arg_better(node: "Node") -> str:
    """The C++ comparison by which ArgMax/ArgMin takes a value as the new best: ``>``/``<``, or ``>=``/``<=``
    with select_last_index (the last of equal values wins)."""
    better = ">" if node.op_type == "ArgMax" else "<"
    return better + "=" if int(node.attr("select_last_index", 0)) else better


def _emit_arg(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    ct = cg.ctype(x)
    outer, extent, inner = split_axis(shape, _arg_axis(node, len(shape)))
    better = _arg_better(node)
    xp, yp = cg.ptr(x), cg.ptr(y)
    if inner == 1:
        return (
            f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n"
            f"  const {ct}* __restrict xr = {xp} + {mul('o', extent)};\n"
            f"  {ct} best = xr[0];\n"
            "  int64_t at = 0;\n"
            f"  for (int64_t r = 1; r < {D.cpp(extent)}; ++r)\n"
            f"    if (xr[r] {better} best) {{ best = xr[r]; at = r; }}\n"
            f"  {yp}[o] = at;\n"
            "}\n"
        )
    inn = D.cpp(inner)
    return (
        f"{ct}* __restrict best = {cg.workspace(0, ct)};\n"
        f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n"
        f"  const {ct}* __restrict xo = {xp} + {mul('o', D.norm(extent * inner))};\n"
        f"  int64_t* __restrict yr = {yp} + {mul('o', inner)};\n"
        f"  for (int64_t i = 0; i < {inn}; ++i) {{ best[i] = xo[i]; yr[i] = 0; }}\n"
        f"  for (int64_t r = 1; r < {D.cpp(extent)}; ++r) {{\n"
        f"    const {ct}* __restrict xr = xo + {mul('r', inner)};\n"
        f"    for (int64_t i = 0; i < {inn}; ++i)\n"
        f"      if (xr[i] {better} best[i]) {{ best[i] = xr[i]; yr[i] = r; }}\n"
        "  }\n"
        "}\n"
    )


def _emit_arg_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per output value, scanning its run of the axis (the CPU code's comparisons)."""
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    ct = cg.ctype(x)
    outer, extent, inner = split_axis(shape, _arg_axis(node, len(shape)))
    better = _arg_better(node)
    if inner == 1:
        base = mul("i", extent)
    else:
        inn = D.cpp(inner)
        base = f"{mul(f'(i / {inn})', D.norm(extent * inner))} + i % {inn}"
    body = (
        f"const {ct}* __restrict xr = {cg.ptr(x)} + {base};\n"
        f"{ct} best = xr[0];\n"
        "int64_t at = 0;\n"
        f"for (int64_t r = 1; r < {D.cpp(extent)}; ++r) {{\n"
        f"  const {ct} v = xr[{mul('r', inner)}];\n"
        f"  if (v {better} best) {{ best = v; at = r; }}\n"
        "}\n"
        f"{cg.ptr(y)}[i] = at;\n"
    )
    return cg.par_for("i", D.norm(outer * inner), body)


def _workspace_arg(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    _, _, inner = split_axis(t.shape, _arg_axis(node, t.rank))
    return [] if inner == 1 else [(inner, t.dtype)]


def _fold_arg(node: "Node", vals: list[np.ndarray]):
    x = np.asarray(vals[0])
    axis = _arg_axis(node, x.ndim)
    fn = np.argmax if node.op_type == "ArgMax" else np.argmin
    if int(node.attr("select_last_index", 0)):
        flipped = np.flip(x, axis)
        r = x.shape[axis] - 1 - fn(flipped, axis=axis)
    else:
        r = fn(x, axis=axis)
    r = np.asarray(r, dtype=np.int64)
    if int(node.attr("keepdims", 1)):
        r = np.expand_dims(r, axis)
    return [r]


register(
    "ArgMax",
    "ArgMin",
    infer=_infer_arg,
    emit=_emit_arg,
    fold=_fold_arg,
    check=_check_arg,
    workspace=_workspace_arg,
    cuda=_emit_arg_cuda,
)
