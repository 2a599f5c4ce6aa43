"""Convolutions: Conv and ConvTranspose, 1-D to 3-D, grouped, strided, dilated and padded.

Every convolution is handled as a 3-D one: 1-D and 2-D problems get leading spatial axes of extent 1, so one
code generator serves all ranks. All sizes but the batch are compile-time constants and are printed as
literals, so g++ specialises (unrolls, vectorises) every loop nest for its shape.

Conv picks, per node, one of two kernels when the code is generated:

* ``direct``: a loop nest that accumulates ``w * input row`` into each output plane. The input is first copied
  into a zero-padded workspace so the loops have no bounds checks. Best for few channels, small images and
  depthwise convolutions (batch 1 inside an event loop).
* ``gemm``: im2col into a workspace (skipped for 1x1 convolutions without stride or padding) and one matrix
  product per group, ``Y[Mg, P] = W[Mg, Cg*K] @ col[Cg*K, P]``, through ``ml4ep_rt::gemm`` (cblas_sgemm for
  large sizes). Best for many channels.

Both apply the bias and the fused activations (``node.fused``) in one pass over each output plane.

ConvTranspose scatters ``w * input row`` into the output (``direct``), or, for many channels, computes
``col[Mg*K, P_in] = W^T @ X`` with one matrix product per group and scatters the columns (col2im).

Output shapes follow the ONNX operator specification (explicit pads, ``auto_pad`` SAME_UPPER / SAME_LOWER /
VALID, ConvTranspose ``output_padding`` and ``output_shape``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import register
from .gemm import activation_code
from .. import dims as D
from ...errors import ShapeError

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")

# kernel choice: a Conv uses im2col + GEMM when its per-group product is at least this many multiply-adds
# and it has enough output channels and reduction length to fill GEMM tiles; otherwise the direct loop nest
GEMM_MIN_MACS = 1 << 17
GEMM_MIN_MG = 8
GEMM_MIN_CK = 16


# ------------------------------------------------------------------------------------------------------
# attributes and geometry (shared with pool.py)

def err(node: "Node", msg: str) -> ShapeError:
    return ShapeError(f"node '{node.name}' ({node.op_type}): {msg}")


def auto_pad(node: "Node") -> str:
    v = node.attr("auto_pad", "NOTSET")
    if isinstance(v, bytes):
        v = v.decode()
    return str(v) or "NOTSET"


def check_auto_pad(node: "Node") -> str | None:
    ap = auto_pad(node)
    if ap not in AUTO_PADS:
        return f"auto_pad '{ap}' is not one of {', '.join(AUTO_PADS)}"
    return None


def spatial_attr(node: "Node", key: str, nsp: int, default: int) -> list[int]:
    v = node.attr(key)
    if v is None:
        return [default] * nsp
    vals = [int(x) for x in v]
    if len(vals) != nsp:
        raise err(node, f"attribute {key}={vals} must have {nsp} entries (one per spatial axis)")
    return vals


def explicit_pads(node: "Node", nsp: int) -> tuple[list[int], list[int]]:
    v = node.attr("pads")
    if v is None:
        return [0] * nsp, [0] * nsp
    vals = [int(x) for x in v]
    if len(vals) != 2 * nsp:
        raise err(node, f"attribute pads={vals} must have {2 * nsp} entries (begin and end per spatial axis)")
    if any(p < 0 for p in vals):
        raise err(node, f"negative pads {vals} are not supported")
    return vals[:nsp], vals[nsp:]


def static_spatial(node: "Node", shape: tuple, what: str) -> list[int]:
    """The channel and spatial dims of an (N, C, ...) shape as ints; symbolic ones are rejected."""
    out = []
    for d in shape[1:]:
        if not D.is_static(d):
            raise err(node, f"{what} {D.fmt_shape(shape)}: only the batch axis may be symbolic")
        out.append(int(d))
    return out


def window_geometry(node: "Node", ins: list[int], ks: list[int], st: list[int], dl: list[int],
                    ceil_mode: bool = False) -> tuple[list[int], list[int], list[int]]:
    """Output sizes and begin/end pads of a sliding window (Conv, MaxPool, AveragePool), per ONNX."""
    nsp = len(ins)
    ap = auto_pad(node)
    outs, pb, pe = [], [], []
    if ap == "NOTSET":
        pb, pe = explicit_pads(node, nsp)
    for i in range(nsp):
        ext = (ks[i] - 1) * dl[i] + 1  # dilated kernel extent
        if ap == "NOTSET":
            span = ins[i] + pb[i] + pe[i] - ext
            if span < 0:
                raise err(node, f"the kernel extent {ext} exceeds the padded input size {ins[i] + pb[i] + pe[i]} "
                          f"on spatial axis {i}")
            o = -(-span // st[i]) + 1 if ceil_mode else span // st[i] + 1
            if ceil_mode and (o - 1) * st[i] >= ins[i] + pb[i]:
                o -= 1  # windows that would start in the end padding are dropped
        elif ap == "VALID":
            span = ins[i] - ext
            if span < 0:
                raise err(node, f"the kernel extent {ext} exceeds the input size {ins[i]} on spatial axis {i}")
            # with ceil_mode, as onnxruntime: partial windows at the end, none starting past the input
            o = -(-span // st[i]) + 1 if ceil_mode else span // st[i] + 1
            if ceil_mode and (o - 1) * st[i] >= ins[i]:
                o -= 1
            pb.append(0)
            pe.append(0)
        else:  # SAME_UPPER / SAME_LOWER
            o = -(-ins[i] // st[i])
            total = max(0, (o - 1) * st[i] + ext - ins[i])
            small = total // 2
            if ap == "SAME_UPPER":
                pb.append(small)
                pe.append(total - small)
            else:
                pb.append(total - small)
                pe.append(small)
        if o <= 0:
            raise err(node, f"empty output on spatial axis {i}")
        outs.append(o)
    return outs, pb, pe


def to3(vals: list[int], fill: int) -> list[int]:
    """Left-pad a per-spatial-axis list to three axes."""
    return [fill] * (3 - len(vals)) + list(vals)


@dataclass
class Geom:
    """A (transposed) convolution or pooling window problem, seen as 3-D."""
    nsp: int
    batch: D.DimLike
    cin: int
    cout: int
    group: int
    ins: list[int]
    ks: list[int]
    st: list[int]
    dl: list[int]
    pb: list[int]
    pe: list[int]
    outs: list[int]

    @property
    def isp(self) -> int:
        return int(np.prod(self.ins))

    @property
    def osp(self) -> int:
        return int(np.prod(self.outs))

    @property
    def ksz(self) -> int:
        return int(np.prod(self.ks))

    @property
    def cg(self) -> int:
        return self.cin // self.group

    @property
    def mg(self) -> int:
        return self.cout // self.group

    @property
    def padded(self) -> list[int]:
        """Extents of the zero-padded input a window reads (at least the input itself)."""
        return [max(self.ins[i] + self.pb[i], (self.outs[i] - 1) * self.st[i] + (self.ks[i] - 1) * self.dl[i] + 1)
                for i in range(3)]

    @property
    def needs_pad(self) -> bool:
        return any(self.pb) or self.padded != self.ins


def _float_only(node: "Node", g: "Graph", idx: list[int]) -> str | None:
    for k in idx:
        name = node.input(k)
        t = g.tensors.get(name) if name else None
        if t is not None and t.dtype != np.float32:
            return f"input '{name}' has dtype {t.dtype} (float32 only)"
    return None


def _weight_shape(node: "Node", g: "Graph") -> tuple[int, ...]:
    ws = g.t(node.inputs[1]).shape
    if not D.shape_static(ws):
        raise err(node, f"weights of shape {D.fmt_shape(ws)} must have static dimensions")
    return tuple(int(d) for d in ws)


def _check_bias(node: "Node", g: "Graph", m: int) -> None:
    b = node.input(2)
    if b:
        bs = g.t(b).shape
        if tuple(bs) != (m,):
            raise err(node, f"bias of shape {D.fmt_shape(bs)} must be ({m},)")


def _common_check(node: "Node", g: "Graph") -> str | None:
    r = check_auto_pad(node) or _float_only(node, g, [0, 1, 2])
    if r:
        return r
    x = g.tensors.get(node.inputs[0])
    if x is not None and not 3 <= x.rank <= 5:
        return f"input of rank {x.rank}: only 1-D, 2-D and 3-D convolutions (rank 3 to 5) are supported"
    return None


# ------------------------------------------------------------------------------------------------------
# Conv

def conv_geometry(node: "Node", g: "Graph") -> Geom:
    xs = g.t(node.inputs[0]).shape
    if len(xs) < 3:
        raise err(node, f"input of shape {D.fmt_shape(xs)} must be (N, C, spatial...)")
    nsp = len(xs) - 2
    c, *ins = static_spatial(node, xs, "input")
    ws = _weight_shape(node, g)
    group = int(node.attr("group", 1))
    if len(ws) != len(xs):
        raise err(node, f"weights {ws} and input {D.fmt_shape(xs)} have different ranks")
    m, cg_w, *ks = ws
    if group <= 0 or c % group or m % group:
        raise err(node, f"group={group} must divide the input channels ({c}) and output channels ({m})")
    if cg_w * group != c:
        raise err(node, f"weights {ws} expect {cg_w * group} input channels, the input has {c}")
    kattr = node.attr("kernel_shape")
    if kattr is not None and [int(k) for k in kattr] != ks:
        raise err(node, f"kernel_shape={list(kattr)} differs from the weights' spatial shape {ks}")
    st = spatial_attr(node, "strides", nsp, 1)
    dl = spatial_attr(node, "dilations", nsp, 1)
    if min(st + dl) <= 0:
        raise err(node, f"strides {st} and dilations {dl} must be positive")
    outs, pb, pe = window_geometry(node, ins, ks, st, dl)
    _check_bias(node, g, m)
    return Geom(nsp, xs[0], c, m, group, to3(ins, 1), to3(ks, 1), to3(st, 1), to3(dl, 1), to3(pb, 0),
                to3(pe, 0), to3(outs, 1))


def _infer_conv(node: "Node", g: "Graph"):
    geo = conv_geometry(node, g)
    return [(np.dtype(np.float32), (geo.batch, geo.cout, *geo.outs[3 - geo.nsp:]))]


def _conv_kernel(geo: Geom) -> str:
    if geo.mg >= GEMM_MIN_MG and geo.cg * geo.ksz >= GEMM_MIN_CK and geo.mg * geo.cg * geo.ksz * geo.osp >= GEMM_MIN_MACS:
        return "gemm"
    return "direct"


def _pointwise(geo: Geom) -> bool:
    return geo.ksz == 1 and geo.st == [1, 1, 1] and not any(geo.pb) and not any(geo.pe)


def _conv_workspace(node: "Node", g: "Graph"):
    geo = conv_geometry(node, g)
    out = []
    if geo.needs_pad:
        out.append((geo.cin * int(np.prod(geo.padded)), np.float32))
    if _conv_kernel(geo) == "gemm" and not _pointwise(geo):
        out.append((geo.cg * geo.ksz * geo.osp, np.float32))
    return out


class Nest:
    """Loop variables of one emitted loop nest with their extents: extent-1 loops are not printed and their
    variables drop out of index expressions, so 1-D and 2-D problems read like hand-written code."""

    def __init__(self, **extents: int):
        self.ext = dict(extents)

    def v(self, name: str) -> str:
        return "0" if self.ext.get(name, 2) == 1 else name

    def lin(self, terms: list[tuple[str, int]], const: int = 0) -> str:
        """A C++ index expression ``sum(var*coeff) + const`` without zero terms."""
        parts = []
        for var, c in terms:
            if c == 0 or self.ext.get(var, 2) == 1:
                continue
            parts.append(var if c == 1 else f"{var} * {c}")
        out = " + ".join(parts)
        if const:
            out = (f"{out} - {-const}" if const < 0 else f"{out} + {const}") if out else str(const)
        return out or "0"

    def loops(self, names: list[str], body: list[str], bounds: dict[str, tuple[str, str]] | None = None) -> list[str]:
        """Nested ``for`` loops over ``names`` (outermost first) around body lines; ``bounds`` gives
        [lo, hi) C++ expressions for loops that do not start at 0."""
        lines = []
        depth = 0
        for n in names:
            if self.ext[n] == 1:
                continue
            lo, hi = (bounds or {}).get(n, ("0", str(self.ext[n])))
            lines.append("  " * depth + f"for (int64_t {n} = {lo}; {n} < {hi}; ++{n}) {{")
            depth += 1
        lines += ["  " * depth + b for b in body]
        for k in range(depth - 1, -1, -1):
            lines.append("  " * k + "}")
        return lines


def _emit_pad_copy(geo: Geom, src: str, dst: str, channels: int) -> list[str]:
    """Copy ``channels`` planes of the input into a zero-padded buffer."""
    p = geo.padded
    psz = int(np.prod(p))
    ins, pb = geo.ins, geo.pb
    nest = Nest(c=channels, a=ins[0], b=ins[1])
    dst_off = nest.lin([("c", psz), ("a", p[1] * p[2]), ("b", p[2])], pb[0] * p[1] * p[2] + pb[1] * p[2] + pb[2])
    src_off = nest.lin([("c", geo.isp), ("a", ins[1] * ins[2]), ("b", ins[2])])
    lines = [f"std::fill({dst}, {dst} + {channels * psz}, 0.0f);"]
    body = [f"std::memcpy({dst} + {dst_off}, {src} + {src_off}, sizeof(float) * {ins[2]});"]
    return lines + nest.loops(["c", "a", "b"], body)


def _bias_act_pass(node: "Node", cg: "Emitter", y: str, channel: str, n: int) -> list[str]:
    """``y[0:n] = act(y + bias[channel])`` for one output plane; nothing when there is neither."""
    b = node.input(2)
    act = activation_code(node, "v")
    if not b and not act:
        return []
    if b and not act:
        return [f"{{ const float bv = {cg.ptr(b)}[{channel}]; for (int64_t e = 0; e < {n}; ++e) {y}[e] += bv; }}"]
    add = f" + {cg.ptr(b)}[{channel}]" if b else ""
    return [f"for (int64_t e = 0; e < {n}; ++e) {{ float v = {y}[e]{add}; {act}{y}[e] = v; }}"]


def _indent(lines: list[str], by: str = "  ") -> list[str]:
    return [by + s for s in lines]


def _stepped(var: str, step: int) -> str:
    return var if step == 1 else f"{var} * {step}"


def _emit_conv(node: "Node", cg: "Emitter") -> str:
    geo = conv_geometry(node, cg.g)
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    kernel = _conv_kernel(geo)
    cin, cout, isp, osp = geo.cin, geo.cout, geo.isp, geo.osp
    kd, kh, kw = geo.ks
    sd, sh, sw = geo.st
    dd, dh, dw = geo.dl
    od, oh, ow = geo.outs
    lines = [f"// {kernel} convolution: {geo.group} group(s) of {geo.cg} -> {geo.mg} channels, kernel {geo.ks}, "
             f"strides {geo.st}, dilations {geo.dl}, pads {geo.pb} / {geo.pe}"]
    body = [f"const float* __restrict x = {cg.ptr(x)} + n * {cin * isp};",
            f"float* __restrict y = {cg.ptr(y)} + n * {cout * osp};"]
    ws_k = 0
    if geo.needs_pad:
        body.append(f"float* __restrict xpad = {cg.workspace(ws_k, 'float')};")
        ws_k += 1
        body += _emit_pad_copy(geo, "x", "xpad", cin)
        src, p = "xpad", geo.padded
    else:
        src, p = "x", geo.ins
    psz = int(np.prod(p))
    # offset in the (padded) input plane of window (a, b, .) = output (od, oh, .) at kernel tap (i, j, k)
    tap = [("a", sd * p[1] * p[2]), ("b", sh * p[2]), ("i", dd * p[1] * p[2]), ("j", dh * p[2]), ("k", dw)]
    nest = Nest(gr=geo.group, mm=geo.mg, m=cout, c=geo.cg, i=kd, j=kh, k=kw, a=od, b=oh)
    wptr = cg.ptr(w)
    if kernel == "gemm":
        ck = geo.cg * geo.ksz
        per_g = [f"const float* __restrict xg = {src} + {nest.lin([('gr', geo.cg * psz)])};"]
        if _pointwise(geo):
            bmat = "xg"
        else:
            # im2col: col[(c, i, j, k), (a, b, e)] = xpad[c, a*sd + i*dd, b*sh + j*dh, e*sw + k*dw]
            per_g.append(f"float* __restrict col = {cg.workspace(ws_k, 'float')};")
            row = nest.lin([("c", geo.ksz), ("i", kh * kw), ("j", kw), ("k", 1)])
            copy = [f"const float* __restrict s = xg + {nest.lin([('c', psz)] + tap)};",
                    f"float* __restrict r = col + {nest.lin([('a', oh * ow), ('b', ow)])}"
                    + (f" + ({row}) * {osp};" if row != "0" else ";"),
                    f"for (int64_t e = 0; e < {ow}; ++e) r[e] = s[{_stepped('e', sw)}];"]
            per_g += nest.loops(["c", "i", "j", "k", "a", "b"], copy)
            bmat = "col"
        per_g.append(f"ml4ep_rt::gemm({geo.mg}, {osp}, {ck}, 1.0f, {wptr} + {nest.lin([('gr', geo.mg * ck)])}, false, "
                     f"{bmat}, false, 0.0f, y + {nest.lin([('gr', geo.mg * osp)])});")
        body += nest.loops(["gr"], per_g)
        post = _bias_act_pass(node, cg, "yo", nest.v("m"), osp)
        if post:
            body += nest.loops(["m"], [f"float* __restrict yo = y + {nest.lin([('m', osp)])};"] + post)
    else:
        b = node.input(2)
        rowl = [
            f"const float* __restrict xr = xc + {nest.lin(tap)};",
            f"float* __restrict yr = yo + {nest.lin([('a', oh * ow), ('b', ow)])};",
            f"for (int64_t e = 0; e < {ow}; ++e) yr[e] += wv * xr[{_stepped('e', sw)}];",
        ]
        acc = [
            f"const float* __restrict xc = {src} + {nest.lin([('gr', geo.cg * psz), ('c', psz)])};",
            f"const float wv = wm[{nest.lin([('c', geo.ksz), ('i', kh * kw), ('j', kw), ('k', 1)])}];",
        ] + nest.loops(["a", "b"], rowl)
        m = nest.lin([("gr", geo.mg), ("mm", 1)])
        per_m = [
            f"float* __restrict yo = y + ({m}) * {osp};",
            f"const float* __restrict wm = {wptr} + ({m}) * {geo.cg * geo.ksz};",
            f"{{ const float bv = {f'{cg.ptr(b)}[{m}]' if b else '0.0f'}; for (int64_t e = 0; e < {osp}; ++e) yo[e] = bv; }}",
        ]
        per_m += nest.loops(["c", "i", "j", "k"], acc)
        act = activation_code(node, "v")
        if act:
            per_m.append(f"for (int64_t e = 0; e < {osp}; ++e) {{ float v = yo[e]; {act}yo[e] = v; }}")
        body += nest.loops(["gr", "mm"], per_m)
    lines.append(f"for (int64_t n = 0; n < {D.cpp(geo.batch)}; ++n) {{")
    lines += _indent(body)
    lines.append("}")
    return "\n".join(lines) + "\n"


register("Conv", infer=_infer_conv, emit=_emit_conv, check=_common_check, workspace=_conv_workspace)


# ------------------------------------------------------------------------------------------------------
# ConvTranspose

def convt_geometry(node: "Node", g: "Graph") -> Geom:
    xs = g.t(node.inputs[0]).shape
    if len(xs) < 3:
        raise err(node, f"input of shape {D.fmt_shape(xs)} must be (N, C, spatial...)")
    nsp = len(xs) - 2
    c, *ins = static_spatial(node, xs, "input")
    ws = _weight_shape(node, g)
    group = int(node.attr("group", 1))
    if len(ws) != len(xs):
        raise err(node, f"weights {ws} and input {D.fmt_shape(xs)} have different ranks")
    c_w, mg, *ks = ws
    if group <= 0 or c % group:
        raise err(node, f"group={group} must divide the input channels ({c})")
    if c_w != c:
        raise err(node, f"weights {ws} expect {c_w} input channels, the input has {c}")
    kattr = node.attr("kernel_shape")
    if kattr is not None and [int(k) for k in kattr] != ks:
        raise err(node, f"kernel_shape={list(kattr)} differs from the weights' spatial shape {ks}")
    st = spatial_attr(node, "strides", nsp, 1)
    dl = spatial_attr(node, "dilations", nsp, 1)
    if min(st + dl) <= 0:
        raise err(node, f"strides {st} and dilations {dl} must be positive")
    op = spatial_attr(node, "output_padding", nsp, 0)
    ap = auto_pad(node)
    full = [(ins[i] - 1) * st[i] + op[i] + (ks[i] - 1) * dl[i] + 1 for i in range(nsp)]
    oshape = node.attr("output_shape")
    target: list[int] | None = None
    if oshape is not None:
        target = [int(v) for v in oshape]
        if len(target) == nsp + 2:
            target = target[2:]
        if len(target) != nsp:
            raise err(node, f"output_shape={target} must have {nsp} entries")
    elif ap in ("SAME_UPPER", "SAME_LOWER"):
        # output in*stride; when the kernel is shorter than the stride, the pads clamp at 0 and the output is
        # shorter (as in onnx shape inference and onnxruntime)
        target = [min(ins[i] * st[i], full[i]) for i in range(nsp)]
    if target is not None:
        pb, pe = [], []
        for i in range(nsp):
            total = full[i] - target[i]
            if total < 0:  # a larger output than the input covers: zeros (bias) at the end
                pb.append(0)
                pe.append(total)
                continue
            small = total // 2
            if ap == "SAME_UPPER":
                pb.append(small)
                pe.append(total - small)
            else:
                pb.append(total - small)
                pe.append(small)
        outs = target
    else:
        if ap == "VALID":
            pb, pe = [0] * nsp, [0] * nsp
        else:
            pb, pe = explicit_pads(node, nsp)
        outs = [full[i] - pb[i] - pe[i] for i in range(nsp)]
    if min(outs) <= 0:
        raise err(node, f"empty output: spatial output shape {outs}")
    m = mg * group
    _check_bias(node, g, m)
    return Geom(nsp, xs[0], c, m, group, to3(ins, 1), to3(ks, 1), to3(st, 1), to3(dl, 1), to3(pb, 0),
                to3(pe, 0), to3(outs, 1))


def _infer_convt(node: "Node", g: "Graph"):
    geo = convt_geometry(node, g)
    return [(np.dtype(np.float32), (geo.batch, geo.cout, *geo.outs[3 - geo.nsp:]))]


def _convt_kernel(geo: Geom) -> str:
    if geo.cg >= GEMM_MIN_CK and geo.mg * geo.ksz >= GEMM_MIN_MG and geo.mg * geo.cg * geo.ksz * geo.isp >= GEMM_MIN_MACS:
        return "gemm"
    return "direct"


def _convt_workspace(node: "Node", g: "Graph"):
    geo = convt_geometry(node, g)
    if _convt_kernel(geo) == "gemm":
        return [(geo.mg * geo.ksz * geo.isp, np.float32)]
    return []


def _scatter_ranges(geo: Geom, axis: int) -> tuple[list[int], list[int]]:
    """Per kernel offset k: the input index range [lo, hi) whose output ``i*s - pb + k*d`` is inside."""
    lo, hi = [], []
    s, d, pb, o, n = geo.st[axis], geo.dl[axis], geo.pb[axis], geo.outs[axis], geo.ins[axis]
    for k in range(geo.ks[axis]):
        off = k * d - pb  # output = i*s + off
        a = max(0, -(-(-off) // s))  # ceil(-off / s)
        b = min(n, (o - 1 - off) // s + 1)
        lo.append(a)
        hi.append(max(a, b))
    return lo, hi


def _table(name: str, vals: list[int]) -> str:
    return f"constexpr int64_t {name}[{len(vals)}] = {{{', '.join(str(v) for v in vals)}}};"


def _emit_convt(node: "Node", cg: "Emitter") -> str:
    geo = convt_geometry(node, cg.g)
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    kernel = _convt_kernel(geo)
    cin, cout, isp, osp = geo.cin, geo.cout, geo.isp, geo.osp
    kd, kh, kw = geo.ks
    sd, sh, sw = geo.st
    dd, dh, dw = geo.dl
    idd, ih, iw = geo.ins
    od, oh, ow = geo.outs
    first = 3 - geo.nsp  # leading axes added to make the problem 3-D have extent 1 everywhere
    nest = Nest(gr=geo.group, c=geo.cg, m=geo.mg, mo=cout, i=kd, j=kh, k=kw,
                a=-1 if first <= 0 else 1, b=-1 if first <= 1 else 1)  # -1: a loop with table bounds
    lines = [f"// {kernel} transposed convolution: {geo.group} group(s) of {geo.cg} -> {geo.mg} channels, kernel "
             f"{geo.ks}, strides {geo.st}, dilations {geo.dl}, pads {geo.pb} / {geo.pe}"]
    bounds = {}
    for a, (var, kvar, nm) in enumerate([("a", "i", "d"), ("b", "j", "h"), ("e", "k", "w")]):
        if a < first:
            continue
        lo, hi = _scatter_ranges(geo, a)
        lines.append(_table(f"lo_{nm}", lo))
        lines.append(_table(f"hi_{nm}", hi))
        bounds[var] = (f"lo_{nm}[{nest.v(kvar)}]", f"hi_{nm}[{nest.v(kvar)}]")
    b = node.input(2)
    body = [f"const float* __restrict x = {cg.ptr(x)} + n * {cin * isp};",
            f"float* __restrict y = {cg.ptr(y)} + n * {cout * osp};"]
    init = f"{cg.ptr(b)}[{nest.v('mo')}]" if b else "0.0f"
    body += nest.loops(["mo"], [f"{{ const float bv = {init}; float* __restrict yo = y + {nest.lin([('mo', osp)])}; "
                                f"for (int64_t e = 0; e < {osp}; ++e) yo[e] = bv; }}"])
    # input (a, b, e) at kernel tap (i, j, k) lands on output (a*sd + i*dd - pd, b*sh + j*dh - ph, e*sw + k*dw - pw)
    orow = nest.lin([("a", sd * oh * ow), ("i", dd * oh * ow), ("b", sh * ow), ("j", dh * ow)],
                    -geo.pb[0] * oh * ow - geo.pb[1] * ow)
    ocol = nest.lin([("e", sw), ("k", dw)], -geo.pb[2])

    def scatter(src_row: str, scale: str) -> list[str]:
        inner = [f"float* __restrict yr = yo + {orow};",
                 f"const float* __restrict sr = {src_row};",
                 f"for (int64_t e = {bounds['e'][0]}; e < {bounds['e'][1]}; ++e) yr[{ocol}] += {scale}sr[e];"]
        return nest.loops(["a", "b"], inner, bounds)

    if kernel == "gemm":
        wv = cg.const(w)
        mk = geo.mg * geo.ksz
        if wv is not None:
            # (group, Cg, Mg*K) -> (group, Mg*K, Cg): the product's A without a transpose
            wt = np.ascontiguousarray(wv.astype(np.float32).reshape(geo.group, geo.cg, mk).transpose(0, 2, 1))
            wptr, ta = cg.weight(wt, f"{node.name}.W_t"), "false"
        else:
            wptr, ta = cg.ptr(w), "true"
        body.append(f"float* __restrict col = {cg.workspace(0, 'float')};")
        # col[(m, i, j, k), (a, b, e)] = sum_c W[c, m, i, j, k] * x[c, a, b, e], then scattered (col2im)
        per_g = [f"ml4ep_rt::gemm({mk}, {isp}, {geo.cg}, 1.0f, {wptr} + {nest.lin([('gr', mk * geo.cg)])}, {ta}, "
                 f"x + {nest.lin([('gr', geo.cg * isp)])}, false, 0.0f, col);"]
        rows = [f"float* __restrict yo = y + {nest.lin([('gr', geo.mg * osp), ('m', osp)])};"]
        col_terms = [("m", geo.ksz * isp), ("i", kh * kw * isp), ("j", kw * isp), ("k", isp), ("a", ih * iw), ("b", iw)]
        src_row = f"col + {nest.lin(col_terms)}"
        rows += nest.loops(["i", "j", "k"], scatter(src_row, ""))
        per_g += nest.loops(["m"], rows)
        body += nest.loops(["gr"], per_g)
    else:
        per = [
            f"float* __restrict yo = y + {nest.lin([('gr', geo.mg * osp), ('m', osp)])};",
            f"const float* __restrict xc = x + {nest.lin([('gr', geo.cg * isp), ('c', isp)])};",
            f"const float* __restrict wc = {cg.ptr(w)} + "
            f"{nest.lin([('gr', geo.cg * geo.mg * geo.ksz), ('c', geo.mg * geo.ksz), ('m', geo.ksz)])};",
        ]
        kbody = [f"const float wv = wc[{nest.lin([('i', kh * kw), ('j', kw), ('k', 1)])}];"]
        kbody += scatter(f"xc + {nest.lin([('a', ih * iw), ('b', iw)])}", "wv * ")
        per += nest.loops(["i", "j", "k"], kbody)
        body += nest.loops(["gr", "c", "m"], per)
    act = activation_code(node, "v")
    if act:
        body.append(f"for (int64_t e = 0; e < {cout * osp}; ++e) {{ float v = y[e]; {act}y[e] = v; }}")
    lines.append(f"for (int64_t n = 0; n < {D.cpp(geo.batch)}; ++n) {{")
    lines += _indent(body)
    lines.append("}")
    return "\n".join(lines) + "\n"


register("ConvTranspose", infer=_infer_convt, emit=_emit_convt, check=_common_check, workspace=_convt_workspace)
