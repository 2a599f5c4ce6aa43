"""Pooling: MaxPool, AveragePool (1-D to 3-D windows), GlobalAveragePool and GlobalMaxPool.

Windows are seen as 3-D (1-D and 2-D problems get leading axes of extent 1), like convolutions. Every size is
a compile-time constant; where padding clips windows, the first and last valid tap of each output index are
read from small constant tables, and AveragePool multiplies by a precomputed table of reciprocal window sizes
(``count_include_pad`` decides which taps count). Axes whose windows are never clipped get plain loops with
constant bounds. Output sizes follow the ONNX specification, ``ceil_mode`` included (windows that would start
in the end padding are dropped).

CUDA (``cg.device == "cuda"``): one thread per output element, skipping the taps outside the input (no padded
copy), the same reciprocal table for AveragePool; global pooling is one thread per (sample, channel) plane.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import batch_rules as BR, register
from .conv import Nest, check_auto_pad, err, spatial_attr, static_spatial, to3, window_geometry
from .. import dims as D
from ..literals import literal

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

MAX_DTYPES = (np.float32, np.float64, np.int8, np.uint8)
AVG_DTYPES = (np.float32, np.float64)


def _check_dtype(node: "Node", g: "Graph", allowed) -> str | None:
    t = g.tensors.get(node.inputs[0])
    if t is not None and t.dtype not in [np.dtype(a) for a in allowed]:
        names = ", ".join(np.dtype(a).name for a in allowed)
        return f"input dtype {t.dtype} is not supported (supported: {names})"
    if t is not None and t.rank < 3:
        return f"input of rank {t.rank}: pooling needs (N, C, spatial...)"
    if t is not None and t.rank > 5 and node.op_type in ("MaxPool", "AveragePool"):
        return f"input of rank {t.rank}: only 1-D, 2-D and 3-D windows are supported"
    return None


def _check_maxpool(node: "Node", g: "Graph") -> str | None:
    if len(node.outputs) > 1 and node.outputs[1]:
        return "the second output (Indices) is not supported"
    return check_auto_pad(node) or _check_dtype(node, g, MAX_DTYPES)


def _check_avgpool(node: "Node", g: "Graph") -> str | None:
    return check_auto_pad(node) or _check_dtype(node, g, AVG_DTYPES)


def _check_global(node: "Node", g: "Graph") -> str | None:
    return _check_dtype(node, g, AVG_DTYPES)


class PoolGeom:
    """A pooling window problem seen as 3-D: ``planes`` = N*C independent planes."""

    def __init__(self, node: "Node", g: "Graph"):
        xs = g.t(node.inputs[0]).shape
        if len(xs) < 3:
            raise err(node, f"input of shape {D.fmt_shape(xs)} must be (N, C, spatial...)")
        self.nsp = nsp = len(xs) - 2
        c, *ins = static_spatial(node, xs, "input")
        kattr = node.attr("kernel_shape")
        if kattr is None:
            raise err(node, "the attribute kernel_shape is required")
        ks = [int(k) for k in kattr]
        if len(ks) != nsp or min(ks) <= 0:
            raise err(node, f"kernel_shape={ks} must have {nsp} positive entries")
        st = spatial_attr(node, "strides", nsp, 1)
        dl = spatial_attr(node, "dilations", nsp, 1)
        if min(st + dl) <= 0:
            raise err(node, f"strides {st} and dilations {dl} must be positive")
        outs, pb, pe = window_geometry(node, ins, ks, st, dl, ceil_mode=bool(node.attr("ceil_mode", 0)))
        self.batch, self.c = xs[0], c
        self.planes = D.norm(xs[0] * c)
        self.out_shape = (xs[0], c, *outs)
        self.ins, self.ks, self.st, self.dl = to3(ins, 1), to3(ks, 1), to3(st, 1), to3(dl, 1)
        self.pb, self.pe, self.outs = to3(pb, 0), to3(pe, 0), to3(outs, 1)

    def taps(self, axis: int) -> tuple[list[int], list[int]]:
        """Per output index along ``axis``: the first and one-past-last kernel tap inside the input."""
        lo, hi = [], []
        s, d, p, n, k = self.st[axis], self.dl[axis], self.pb[axis], self.ins[axis], self.ks[axis]
        for o in range(self.outs[axis]):
            start = o * s - p
            a = 0 if start >= 0 else -(start // d)  # ceil(-start / d)
            b = min(k, -((start - n) // d))  # ceil((n - start) / d)
            lo.append(min(a, k))
            hi.append(max(b, min(a, k)))
        return lo, hi

    def padded_taps(self, axis: int) -> list[int]:
        """Per output index: taps inside the input or the explicit padding (count_include_pad)."""
        out = []
        s, d, p, e = self.st[axis], self.dl[axis], self.pb[axis], self.pe[axis]
        n, k = self.ins[axis], self.ks[axis]
        for o in range(self.outs[axis]):
            start = o * s - p
            out.append(sum(1 for t in range(k) if -p <= start + t * d < n + e))
        return out


def _infer_pool(node: "Node", g: "Graph"):
    geo = PoolGeom(node, g)
    return [(g.t(node.inputs[0]).dtype, geo.out_shape)]


def _lowest(ct: str) -> str:
    return f"std::numeric_limits<{ct}>::lowest()"


def _padded(geo: PoolGeom) -> list[int]:
    """Extents of the padded plane every window of ``geo`` fits in."""
    return [max(geo.ins[i] + geo.pb[i], (geo.outs[i] - 1) * geo.st[i] + (geo.ks[i] - 1) * geo.dl[i] + 1)
            for i in range(3)]


def _needs_pad(geo: PoolGeom) -> bool:
    return any(geo.pb) or _padded(geo) != geo.ins


def _pool_workspace(node: "Node", g: "Graph"):
    geo = PoolGeom(node, g)
    if not _needs_pad(geo):
        return []
    return [(int(np.prod(_padded(geo))), g.t(node.inputs[0]).dtype)]


def _avg_scale(node: "Node", cg: "Emitter", geo: PoolGeom, ct: str, lines: list[str], oidx: str) -> str:
    """AveragePool's ``acc * 1 / count`` for the output index ``oidx`` of a plane: a constant, or a table of
    reciprocal window sizes (declared into ``lines``)."""
    if node.attr("count_include_pad", 0):
        counts = [geo.padded_taps(a) for a in range(3)]
    else:
        counts = [[h - lo_ for lo_, h in zip(*geo.taps(a))] for a in range(3)]
    div = np.einsum("i,j,k->ijk", *[np.asarray(c_, dtype=np.float64) for c_ in counts]).reshape(-1)
    if np.all(div == div[0]):  # (windows without a tap, all in the padding, give 0 as in the table below)
        return f"acc * {literal(1.0 / float(div[0]) if div[0] else 0.0, ct)}"
    inv = np.where(div > 0, 1.0 / np.maximum(div, 1), 0.0).astype(cg.dtype(node.inputs[0]))
    lines.append(f"const {ct}* __restrict inv = {cg.weight(inv, f'{node.name}.inv_count')};")
    return f"acc * inv[{oidx}]"


def _emit_pool_cuda(node: "Node", cg: "Emitter", geo: PoolGeom) -> str:
    """One thread per output element; taps outside the input are skipped (they hold no candidate for the maximum
    and add nothing to the sum)."""
    x, y = node.inputs[0], node.outputs[0]
    ct = cg.ctype(x)
    is_max = node.op_type == "MaxPool"
    osp = int(np.prod(geo.outs))
    lines = [f"// {'max' if is_max else 'average'} pooling: kernel {geo.ks}, strides {geo.st}, "
             f"dilations {geo.dl}, pads {geo.pb} / {geo.pe}; one thread per output element"]
    outv, tapv, inv_ = ("a", "b", "e"), ("i", "j", "k"), ("z", "u", "w")
    nest = Nest(a=geo.outs[0], b=geo.outs[1], e=geo.outs[2], i=geo.ks[0], j=geo.ks[1], k=geo.ks[2])
    # the output index split into the plane p and the output coordinates
    body = [f"const int64_t p = t / {osp};"] if osp > 1 else ["const int64_t p = t;"]
    ostr = [geo.outs[1] * geo.outs[2], geo.outs[2], 1]
    for ax in range(3):
        if geo.outs[ax] > 1:
            q = f"(t / {ostr[ax]})" if ostr[ax] > 1 else "t"
            body.append(f"const int64_t {outv[ax]} = {q} % {geo.outs[ax]};")
    body.append(f"const {ct}* __restrict xp = {cg.ptr(x)} + p * {int(np.prod(geo.ins))};")
    init = _lowest(ct) if is_max else literal(0, ct)
    body.append(f"{ct} acc = {init};")
    # per axis: whether some window reaches outside the input, and the input coordinate (None: always 0)
    clipped = [geo.pb[ax] > 0 or _padded(geo)[ax] > geo.ins[ax] for ax in range(3)]
    coords = [None if geo.ins[ax] == 1 and not clipped[ax] else inv_[ax] for ax in range(3)]
    depth, closes = 0, []
    for ax in range(3):
        coord = nest.lin([(outv[ax], geo.st[ax]), (tapv[ax], geo.dl[ax])], -geo.pb[ax])
        ind = "  " * depth
        if geo.ks[ax] > 1:
            body.append(f"{ind}for (int64_t {tapv[ax]} = 0; {tapv[ax]} < {geo.ks[ax]}; ++{tapv[ax]}) {{")
            closes.append("}")
            depth += 1
            ind = "  " * depth
        if coords[ax] is None:
            continue
        body.append(f"{ind}const int64_t {inv_[ax]} = {coord};")
        if clipped[ax]:
            cond = f"{inv_[ax]} >= {geo.ins[ax]}"
            if geo.pb[ax] > 0:
                cond = f"{inv_[ax]} < 0 || {cond}"
            if geo.ks[ax] > 1:
                body.append(f"{ind}if ({cond}) continue;")
            else:
                body.append(f"{ind}if (!({cond})) {{")
                closes.append("}")
                depth += 1
    istr = [geo.ins[1] * geo.ins[2], geo.ins[2], 1]
    xoff = " + ".join(c_ if istr[ax] == 1 else f"{c_} * {istr[ax]}" for ax, c_ in enumerate(coords)
                      if c_ is not None) or "0"
    upd = f"acc = std::max(acc, xp[{xoff}]);" if is_max else f"acc += xp[{xoff}];"
    body.append("  " * depth + upd)
    for k_ in range(len(closes)):
        body.append("  " * (len(closes) - 1 - k_) + closes[k_])
    if is_max:
        fin = "acc"
    else:
        fin = _avg_scale(node, cg, geo, ct, lines, f"t % {osp}" if osp > 1 else "0")
    body.append(f"{cg.ptr(y)}[t] = {fin};")
    return "\n".join(lines) + "\n" + cg.par_for("t", cg.numel(y), "\n".join(body) + "\n")


def _emit_pool(node: "Node", cg: "Emitter") -> str:
    geo = PoolGeom(node, cg.g)
    if cg.device != "cpu":
        return _emit_pool_cuda(node, cg, geo)
    x, y = node.inputs[0], node.outputs[0]
    ct = cg.ctype(x)
    is_max = node.op_type == "MaxPool"
    od, oh, ow = geo.outs
    osp = od * oh * ow
    isp = int(np.prod(geo.ins))
    lines = [f"// {'max' if is_max else 'average'} pooling: kernel {geo.ks}, strides {geo.st}, "
             f"dilations {geo.dl}, pads {geo.pb} / {geo.pe}"]
    pad_value = _lowest(ct) if is_max else literal(0, ct)
    per_plane = [f"const {ct}* __restrict xp = {cg.ptr(x)} + p * {isp};",
                 f"{ct}* __restrict yp = {cg.ptr(y)} + p * {osp};"]
    if _needs_pad(geo):
        # the plane, padded (with a value no window result can come from), so no window is clipped
        pd = _padded(geo)
        lines.append(f"{ct}* __restrict xpad = {cg.workspace(0, ct)};")
        lines.append(f"std::fill(xpad, xpad + {int(np.prod(pd))}, {pad_value});")
        cp = Nest(a=geo.ins[0], b=geo.ins[1])
        off = geo.pb[0] * pd[1] * pd[2] + geo.pb[1] * pd[2] + geo.pb[2]
        dst = cp.lin([("a", pd[1] * pd[2]), ("b", pd[2])], off)
        srco = cp.lin([("a", geo.ins[1] * geo.ins[2]), ("b", geo.ins[2])])
        per_plane += cp.loops(["a", "b"], [
            f"std::memcpy(xpad + {dst}, xp + {srco}, sizeof({ct}) * {geo.ins[2]});"])
        src = "xpad"
    else:
        pd, src = geo.ins, "xp"
    nest = Nest(a=od, b=oh, e=ow, i=geo.ks[0], j=geo.ks[1], k=geo.ks[2])
    sd, sh, sw = geo.st
    dd, dh, dw = geo.dl
    plane = pd[1] * pd[2]
    xoff = nest.lin([("a", sd * plane), ("i", dd * plane), ("b", sh * pd[2]), ("j", dh * pd[2]), ("e", sw),
                     ("k", dw)])
    if is_max:
        upd, fin = f"acc = std::max(acc, {src}[{xoff}]);", "acc"
    else:
        upd = f"acc += {src}[{xoff}];"
        fin = _avg_scale(node, cg, geo, ct, lines, nest.lin([("a", oh * ow), ("b", ow), ("e", 1)]))
    body = [f"{ct} acc = {pad_value};"]
    body += nest.loops(["i", "j", "k"], [upd])
    body.append(f"yp[{nest.lin([('a', oh * ow), ('b', ow), ('e', 1)])}] = {fin};")
    per_plane += nest.loops(["a", "b", "e"], body)
    lines.append(f"for (int64_t p = 0; p < {D.cpp(geo.planes)}; ++p) {{")
    lines += ["  " + s for s in per_plane]
    lines.append("}")
    return "\n".join(lines) + "\n"


register("MaxPool", infer=_infer_pool, emit=_emit_pool, check=_check_maxpool, workspace=_pool_workspace,
         batch=BR.nchw, cuda=True)
register("AveragePool", infer=_infer_pool, emit=_emit_pool, check=_check_avgpool, workspace=_pool_workspace,
         batch=BR.nchw, cuda=True)


# ------------------------------------------------------------------------------------------------------
# global pooling

def _infer_global(node: "Node", g: "Graph"):
    x = g.t(node.inputs[0])
    if x.rank < 3:
        raise err(node, f"input of shape {D.fmt_shape(x.shape)} must be (N, C, spatial...)")
    for d in x.shape[2:]:
        if not D.is_static(d):
            raise err(node, f"input {D.fmt_shape(x.shape)}: only the batch and channel axes may be symbolic")
    return [(x.dtype, (*x.shape[:2], *([1] * (x.rank - 2))))]


def _emit_global(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    xs = cg.shape(x)
    ct = cg.ctype(x)
    planes = D.cpp(D.norm(xs[0] * xs[1]))
    n = int(np.prod([int(d) for d in xs[2:]]))
    xp, yp = cg.ptr(x), cg.ptr(y)
    lanes = 16 if n >= 32 else 1
    if node.op_type == "GlobalMaxPool":
        init, comb = _lowest(ct), "std::max({a}, {b})"
        fin = "r"
    else:
        init, comb = literal(0, ct), "{a} + {b}"
        fin = f"r * {literal(1.0 / n, ct)}"
    if cg.device != "cpu":  # one thread per plane, a sequential loop over it
        return cg.par_for("p", D.norm(xs[0] * xs[1]), (
            f"const {ct}* xp = {xp} + p * {n};\n{ct} r = {init};\n"
            f"for (int64_t e = 0; e < {n}; ++e) r = {comb.format(a='r', b='xp[e]')};\n{yp}[p] = {fin};\n"))
    if lanes == 1:
        red = [f"{ct} r = {init};",
               f"for (int64_t e = 0; e < {n}; ++e) r = {comb.format(a='r', b='xp[e]')};"]
    else:
        # independent partial results per lane so the loop vectorises without reassociating one sum
        red = [f"{ct} part[{lanes}];",
               f"for (int64_t l = 0; l < {lanes}; ++l) part[l] = {init};",
               f"for (int64_t e = 0; e < {n // lanes * lanes}; e += {lanes})",
               f"  for (int64_t l = 0; l < {lanes}; ++l) "
               f"part[l] = {comb.format(a='part[l]', b='xp[e + l]')};",
               f"{ct} r = {init};",
               f"for (int64_t e = {n // lanes * lanes}; e < {n}; ++e) r = {comb.format(a='r', b='xp[e]')};",
               f"for (int64_t l = 0; l < {lanes}; ++l) r = {comb.format(a='r', b='part[l]')};"]
    lines = [f"for (int64_t p = 0; p < {planes}; ++p) {{",
             f"  const {ct}* __restrict xp = {xp} + p * {n};"]
    lines += ["  " + s for s in red]
    lines.append(f"  {yp}[p] = {fin};")
    lines.append("}")
    return "\n".join(lines) + "\n"


register("GlobalAveragePool", "GlobalMaxPool", infer=_infer_global, emit=_emit_global, check=_check_global,
         batch=BR.nchw, cuda=True)
