"""Convolutions: Conv and ConvTranspose, 1-D to 3-D, grouped, strided, dilated and padded.

Every convolution is handled as a 3-D one: 1-D and 2-D problems get leading spatial axes of extent 1, so one
code generator serves all ranks. All sizes but the batch are compile-time constants and are printed as
literals, so g++ specialises (unrolls, vectorises) every loop nest for its shape.

Conv with constant weights (the usual case) runs a register-blocked ``vector`` kernel. The weights are packed
at code generation into blocks of up to 8 output channels, ``(group, block, C, tap, 8)``; for each block and
each run of ``NV`` vectors of output positions, the ``8 x NV`` accumulators stay in vector registers over all
input channels and kernel taps, so every input vector loaded feeds 8 FMAs. The vector width follows the
target at C++ compile time (16 floats with AVX-512, 8 with AVX, 4 otherwise; GCC/Clang vector extensions,
with a plain-struct fallback for other compilers). The positions the kernel runs over are either

* the padded input itself (stride 1): output rows get the padded input's width, so tap ``(i, j, k)`` is a
  constant offset and a vector of outputs reads one contiguous vector of input; the pad columns are computed
  and dropped. No im2col copy, and good for any image size (1-D, 2-D and 3-D alike); or
* an im2col buffer (strided windows, or small images where the dropped columns would cost more than the
  copy; see ``_use_wide``).

A pass then adds the bias, applies the fused activations (``node.fused``) and writes the output planes.
Run-time weights take im2col + ``ml4ep_rt::gemm`` (cblas_sgemm for large sizes) instead.

ConvTranspose computes ``col[(m, tap), P_in] = W^T @ X`` per group with the same vector kernel (a 1x1
problem; ``ml4ep_rt::gemm`` for run-time weights) and scatters each row onto the output (col2im), with
per-tap valid input ranges from small constant tables: no bounds checks in the loops.

Output shapes follow the ONNX operator specification (explicit pads, ``auto_pad`` SAME_UPPER / SAME_LOWER /
VALID, ConvTranspose ``output_padding`` and ``output_shape``).

The CUDA code (device="cuda", docs/cuda.md) has emitters of its own: see the section "CUDA" below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import batch_rules as BR, register
from .gemm import _epilogue, activation_code
from .. import dims as D
from ...errors import ShapeError

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")

# the vector kernel reads an im2col buffer (rather than the padded input) only when it is at most this big
COL_MAX_BYTES = 256 << 10
# floats of slack after the vector kernel's buffers: a position block may run past the last position
VEC_SLACK = 512
# output channels per register block of the vector kernel (at most)
VEC_MB = 8
# force (True/False) or leave to the cost model (None) the vector kernel's direct reading of padded input
WIDE_POLICY: bool | None = None


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
                raise err(node, f"the kernel extent {ext} exceeds the padded input size "
                          f"{ins[i] + pb[i] + pe[i]} on spatial axis {i}")
            o = -(-span // st[i]) + 1 if ceil_mode else span // st[i] + 1
            if ceil_mode and (o - 1) * st[i] >= ins[i] + pb[i]:
                o -= 1  # windows that would start in the end padding are dropped
        elif ap == "VALID":
            span = ins[i] - ext
            if span < 0:
                raise err(node, f"the kernel extent {ext} exceeds the input size {ins[i]} "
                          f"on spatial axis {i}")
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
        return [max(self.ins[i] + self.pb[i],
                    (self.outs[i] - 1) * self.st[i] + (self.ks[i] - 1) * self.dl[i] + 1) for i in range(3)]

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


def _output_info(geo: Geom) -> list[tuple[np.dtype, tuple]]:
    return [(np.dtype(np.float32), (geo.batch, geo.cout, *geo.outs[3 - geo.nsp:]))]


def _infer_conv(node: "Node", g: "Graph"):
    return _output_info(conv_geometry(node, g))


def _kernel(const_w: bool) -> str:
    """``vector`` for constant weights (packed at code generation), ``blas`` (im2col + sgemm) otherwise;
    ConvTranspose adds its col2im scatter to either."""
    return "vector" if const_w else "blas"


def _pointwise(geo: Geom) -> bool:
    return geo.ksz == 1 and geo.st == [1, 1, 1] and not any(geo.pb) and not any(geo.pe)


def _vectors(positions: int, mb: int, vb: int = 16, acc: int = 24) -> int:
    """Vectors the vector kernel computes per output channel for ``positions`` (its blocking, in C++)."""
    nvmax = min(8, max(1, acc // mb))
    nvec = -(-positions // vb)
    npb = -(-nvec // nvmax)
    return npb * -(-nvec // npb)


def _use_wide(geo: Geom) -> bool:
    """Whether the vector kernel reads the padded input directly (stride 1: output rows of padded width,
    the pad columns computed and dropped) rather than an im2col buffer (any stride, no dropped columns).

    Cost model in vector operations per input channel and kernel tap (AVX-512 blocking; FMA and copy alike):
    the direct way computes ``Mg * vectors(wide positions)``, im2col ``Mg * vectors(outputs)`` plus the copy
    of the outputs (counted as two channels' worth: stores cost about twice an FMA)."""
    if geo.st != [1, 1, 1]:
        return False
    if WIDE_POLICY is not None:
        return WIDE_POLICY
    if geo.cg * geo.ksz * geo.osp * 4 > COL_MAX_BYTES:
        return True  # the im2col buffer would not stay in cache while all channel blocks read it
    mb = _block(geo.mg)
    m = -(-geo.mg // mb) * mb
    return m * _vectors(_wide_positions(geo), mb) <= (m + 2) * _vectors(geo.osp, mb)


def _wide_positions(geo: Geom) -> int:
    """Output positions of the stride-1 vector kernel in the padded input's layout (rows of padded width)."""
    p = geo.padded
    a, b, e = geo.outs
    return (a - 1) * p[1] * p[2] + (b - 1) * p[2] + e


def _conv_workspace(node: "Node", g: "Graph"):
    geo = conv_geometry(node, g)
    psz = geo.cin * int(np.prod(geo.padded))
    if _kernel(g.is_const(node.inputs[1])) == "blas":
        out = [(psz, np.float32)] if geo.needs_pad else [(1, np.float32)]
        if not _pointwise(geo):
            out.append((geo.cg * geo.ksz * geo.osp, np.float32))
        return out
    mb = _block(geo.mg)
    if _use_wide(geo):
        # padded input (with slack for the last position block), wide output rows of one channel block
        return [(psz + VEC_SLACK, np.float32), (mb * (_wide_positions(geo) + VEC_SLACK), np.float32)]
    return [(psz if geo.needs_pad else 1, np.float32), (geo.cg * geo.ksz * geo.osp + VEC_SLACK, np.float32),
            (mb * (geo.osp + VEC_SLACK), np.float32)]


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

    def loops(self, names: list[str], body: list[str],
              bounds: dict[str, tuple[str, str]] | None = None) -> list[str]:
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


def _emit_pad_copy(geo: Geom, src: str, dst: str, channels: int, slack: int = 0) -> list[str]:
    """Copy ``channels`` input planes into a zero-padded buffer (and zero ``slack`` floats after it)."""
    p = geo.padded
    psz = int(np.prod(p))
    ins, pb = geo.ins, geo.pb
    nest = Nest(c=channels, a=ins[0], b=ins[1])
    first = pb[0] * p[1] * p[2] + pb[1] * p[2] + pb[2]
    dst_off = nest.lin([("c", psz), ("a", p[1] * p[2]), ("b", p[2])], first)
    src_off = nest.lin([("c", geo.isp), ("a", ins[1] * ins[2]), ("b", ins[2])])
    lines = [f"std::fill({dst}, {dst} + {channels * psz + slack}, 0.0f);"]
    body = [f"std::memcpy({dst} + {dst_off}, {src} + {src_off}, sizeof(float) * {ins[2]});"]
    return lines + nest.loops(["c", "a", "b"], body)


def _bias_act_pass(node: "Node", cg: "Emitter", y: str, channel: str, n: int) -> list[str]:
    """``y[0:n] = act(y + bias[channel])`` for one output plane; nothing when there is neither."""
    b = node.input(2)
    act = activation_code(node, "v")
    if not b and not act:
        return []
    if b and not act:
        return [f"{{ const float bv = {cg.ptr(b)}[{channel}]; "
                f"for (int64_t e = 0; e < {n}; ++e) {y}[e] += bv; }}"]
    if b:
        return [f"{{ const float bv = {cg.ptr(b)}[{channel}]; "
                f"for (int64_t e = 0; e < {n}; ++e) {{ float v = {y}[e] + bv; {act}{y}[e] = v; }} }}"]
    return [f"for (int64_t e = 0; e < {n}; ++e) {{ float v = {y}[e]; {act}{y}[e] = v; }}"]


def _plus(a: str, b: str) -> str:
    """``a + b`` for C++ expressions, dropping zeros."""
    if a == "0":
        return b
    return a if b == "0" else f"{a} + {b}"


def _indent(lines: list[str], by: str = "  ") -> list[str]:
    return [by + s for s in lines]


def _stepped(var: str, step: int) -> str:
    return var if step == 1 else f"{var} * {step}"


def _block(m: int) -> int:
    """Output channels per register block: all of them when few, else a divisor near VEC_MB."""
    if m <= VEC_MB:
        return m
    for mb in range(VEC_MB, VEC_MB // 2 - 1, -1):
        if m % mb == 0:
            return mb
    return VEC_MB


def _pack(w: np.ndarray, group: int, mb: int) -> np.ndarray:
    """Weights (group*M, C, T) -> (group, blocks, C, T, mb), output channels zero-padded to whole blocks."""
    gm, c, t = w.shape
    m = gm // group
    nblk = -(-m // mb)
    wp = np.zeros((group, nblk * mb, c, t), dtype=np.float32)
    wp[:, :m] = w.reshape(group, m, c, t)
    return np.ascontiguousarray(wp.reshape(group, nblk, mb, c, t).transpose(0, 1, 3, 4, 2))


VEC_TYPES = """// vector registers: VB floats, ACC accumulators per register block
#if defined(__AVX512F__)
constexpr int64_t VB = 16, ACC = 24;
#elif defined(__AVX__)
constexpr int64_t VB = 8, ACC = 12;
#else
constexpr int64_t VB = 4, ACC = 12;
#endif
#if defined(__GNUC__)
typedef float vf __attribute__((vector_size(VB * sizeof(float))));
#else
struct vf {
  float l[VB];
  vf& operator+=(const vf& o) { for (int64_t u = 0; u < VB; ++u) l[u] += o.l[u]; return *this; }
  vf operator*(float s) const { vf r; for (int64_t u = 0; u < VB; ++u) r.l[u] = l[u] * s; return r; }
};
#endif""".splitlines()


def _vec_kernel(*, src: str, cstride: int, cin: int, nest: "Nest", taps: list[tuple[str, int]],
                tap_index: str, ntaps: int, positions: int, wb: str, mb: int, nblk: int, yw: str,
                per_block: list[str]) -> list[str]:
    """Register-blocked ``yw[q, p] = sum_{c, t} wb[blk, c, t, q] * src[c * cstride + p + offset(t)]``.

    For each block of ``mb`` output channels and each block of ``NV`` vectors of positions, the ``mb * NV``
    accumulators stay in registers over all input channels and taps. ``per_block`` (C++ lines) then consumes
    the ``mb`` rows of ``yw`` (row stride ``PR``) of channel block ``blk``.
    """
    toff = nest.lin(taps)
    lines = [
        f"constexpr int64_t MB = {mb}, P = {positions};",
        "// at most 8 vectors per block: g++ unrolls the loops and keeps the accumulators in registers",
        "constexpr int64_t NVMAX = ACC / MB > 8 ? 8 : (ACC / MB > 0 ? ACC / MB : 1);",
        "constexpr int64_t NVEC = (P + VB - 1) / VB;",
        "constexpr int64_t NPB = (NVEC + NVMAX - 1) / NVMAX;  // position blocks",
        "constexpr int64_t NV = (NVEC + NPB - 1) / NPB;  // vectors per position block",
        "constexpr int64_t PR = NPB * NV * VB;  // row stride of the block's output rows",
    ]
    tap = [f"const float* __restrict xt = xc{' + ' + toff if toff != '0' else ''};",
           f"const float* __restrict wt = wc{' + (' + tap_index + ') * MB' if tap_index != '0' else ''};",
           "vf xv[NV];",
           "for (int64_t v = 0; v < NV; ++v) std::memcpy(&xv[v], xt + v * VB, sizeof(vf));",
           "for (int64_t q = 0; q < MB; ++q) {",
           "  const float wq = wt[q];",
           "  for (int64_t v = 0; v < NV; ++v) acc[q][v] += xv[v] * wq;",
           "}"]
    chan = [f"const float* __restrict xc = {src} + c * {cstride} + pb * (NV * VB);",
            f"const float* __restrict wc = wb + c * {f'{ntaps} * ' if ntaps > 1 else ''}MB;"]
    chan += nest.loops(["i", "j", "k"], tap)
    pblock = ["vf acc[MB][NV] = {};",
              f"for (int64_t c = 0; c < {cin}; ++c) {{"]
    pblock += _indent(chan)
    pblock += ["}",
               "for (int64_t q = 0; q < MB; ++q)",
               "  for (int64_t v = 0; v < NV; ++v)",
               f"    std::memcpy({yw} + q * PR + pb * (NV * VB) + v * VB, &acc[q][v], sizeof(vf));"]
    blk = [f"const float* __restrict wb = {wb};",
           "for (int64_t pb = 0; pb < NPB; ++pb) {"]
    blk += _indent(pblock)
    blk.append("}")
    blk += per_block
    lines.append(f"for (int64_t blk = 0; blk < {nblk}; ++blk) {{")
    lines += _indent(blk)
    lines.append("}")
    return lines


def _emit_conv(node: "Node", cg: "Emitter") -> str:
    geo = conv_geometry(node, cg.g)
    if _kernel(cg.const(node.inputs[1]) is not None) == "blas":
        return _emit_conv_blas(node, cg, geo)
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    cin, cout, isp, osp = geo.cin, geo.cout, geo.isp, geo.osp
    kd, kh, kw = geo.ks
    dd, dh, dw = geo.dl
    od, oh, ow = geo.outs
    p = geo.padded
    psz = int(np.prod(p))
    mb = _block(geo.mg)
    nblk = -(-geo.mg // mb)
    wide = _use_wide(geo)
    wv = cg.const(w)
    assert wv is not None  # run-time weights take the BLAS path
    if wide:
        wpk = _pack(wv.reshape(cout, geo.cg, geo.ksz), geo.group, mb)
    else:  # im2col rows (c, i, j, k): one tap
        wpk = _pack(wv.reshape(cout, geo.cg * geo.ksz, 1), geo.group, mb)
    wptr = cg.weight(wpk, f"{node.name}.W_packed")
    lines = [f"// vector convolution ({'padded input' if wide else 'im2col'}): {geo.group} group(s) of "
             f"{geo.cg} -> {geo.mg} channels, kernel {geo.ks}, strides {geo.st}, dilations {geo.dl}, "
             f"pads {geo.pb} / {geo.pe}"]
    lines += VEC_TYPES
    body = [f"const float* __restrict x = {cg.ptr(x)} + n * {cin * isp};",
            f"float* __restrict y = {cg.ptr(y)} + n * {cout * osp};"]
    nest = Nest(gr=geo.group, c=-1, i=kd if wide else 1, j=kh if wide else 1, k=kw if wide else 1, a=od, b=oh)
    b = node.input(2)
    act = activation_code(node, "v")
    # the bias is read once per channel into a local: a load inside the row loop could alias the stores
    # (both float) and would keep g++ from vectorising the loop
    bias = " + bm" if b else ""
    bias_decl = [f"  const float bm = {cg.ptr(b)}[m];"] if b else []
    if wide:
        body.append(f"float* __restrict xpad = {cg.workspace(0, 'float')};")
        body += _emit_pad_copy(geo, "x", "xpad", cin, slack=VEC_SLACK)
        yw = cg.workspace(1, "float")
        src = _plus("xpad", nest.lin([("gr", geo.cg * psz)]))
        taps = [("i", dd * p[1] * p[2]), ("j", dh * p[2]), ("k", dw)]
        positions = _wide_positions(geo)
        rows = nest.loops(["a", "b"], [
            f"float* __restrict yr = yo + {nest.lin([('a', oh * ow), ('b', ow)])};",
            f"const float* __restrict wr = ywq + {nest.lin([('a', p[1] * p[2]), ('b', p[2])])};",
            f"for (int64_t e = 0; e < {ow}; ++e) {{ float v = wr[e]{bias}; {act}yr[e] = v; }}",
        ])
        cstride, cin_k, ntaps = psz, geo.cg, geo.ksz
        tap_index = nest.lin([("i", kh * kw), ("j", kw), ("k", 1)])
    else:
        # im2col: col[(c, i, j, k), (a, b, e)] = xpad[c, a*sd + i*dd, b*sh + j*dh, e*sw + k*dw]
        if geo.needs_pad:
            body.append(f"float* __restrict xpad = {cg.workspace(0, 'float')};")
            body += _emit_pad_copy(geo, "x", "xpad", cin)
            xsrc = "xpad"
        else:
            xsrc, p, psz = "x", geo.ins, isp
        yw = cg.workspace(2, "float")
        body.append(f"float* __restrict col = {cg.workspace(1, 'float')};")
        ncol = geo.cg * geo.ksz * osp
        body.append(f"std::fill(col + {ncol}, col + {ncol + VEC_SLACK}, 0.0f);  // read by the last position block")
        sd, sh, sw = geo.st
        src = "col"
        taps, positions = [], osp
        rows = [f"for (int64_t e = 0; e < {osp}; ++e) {{ float v = ywq[e]{bias}; {act}yo[e] = v; }}"]
        cstride, cin_k, ntaps, tap_index = osp, geo.cg * geo.ksz, 1, "0"
        tap_src = [("a", sd * p[1] * p[2]), ("b", sh * p[2]), ("i", dd * p[1] * p[2]), ("j", dh * p[2]),
                   ("k", dw)]
        im2col_nest = Nest(c=geo.cg, i=kd, j=kh, k=kw, a=od, b=oh)
        row = im2col_nest.lin([("c", geo.ksz), ("i", kh * kw), ("j", kw), ("k", 1)])
        copy = [f"const float* __restrict s = xg + {im2col_nest.lin([('c', psz)] + tap_src)};",
                f"float* __restrict r = col + {im2col_nest.lin([('a', oh * ow), ('b', ow)])}"
                + (f" + ({row}) * {osp};" if row != "0" else ";"),
                f"for (int64_t e = 0; e < {ow}; ++e) r[e] = s[{_stepped('e', sw)}];"]
        im2col = [f"const float* __restrict xg = {_plus(xsrc, nest.lin([('gr', geo.cg * psz)]))};"]
        im2col += im2col_nest.loops(["c", "i", "j", "k", "a", "b"], copy)
    valid = "MB" if geo.mg % mb == 0 else f"std::min<int64_t>(MB, {geo.mg} - blk * MB)"
    per_block = [f"for (int64_t q = 0; q < {valid}; ++q) {{",
                 f"  const int64_t m = {_plus(nest.lin([('gr', geo.mg)]), 'blk * MB + q')};",
                 f"  float* __restrict yo = y + m * {osp};",
                 "  const float* __restrict ywq = yw + q * PR;"] + bias_decl
    per_block += _indent(rows)
    per_block.append("}")
    kern = _vec_kernel(src=src, cstride=cstride, cin=cin_k, nest=nest, taps=taps if wide else [],
                       tap_index=tap_index, ntaps=ntaps, positions=positions,
                       wb=f"{wptr} + ({_plus(nest.lin([('gr', nblk)]), 'blk')}) * {cin_k * ntaps * mb}",
                       mb=mb, nblk=nblk, yw="yw", per_block=per_block)
    if not wide:
        kern = im2col + kern
    body.append(f"float* __restrict yw = {yw};")
    grp = nest.loops(["gr"], kern)
    body += grp
    lines.append(f"for (int64_t n = 0; n < {D.cpp(geo.batch)}; ++n) {{")
    lines += _indent(body)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _emit_conv_blas(node: "Node", cg: "Emitter", geo: Geom) -> str:
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    cin, cout, isp, osp = geo.cin, geo.cout, geo.isp, geo.osp
    kd, kh, kw = geo.ks
    sd, sh, sw = geo.st
    dd, dh, dw = geo.dl
    od, oh, ow = geo.outs
    lines = [f"// im2col + sgemm convolution: {geo.group} group(s) of {geo.cg} -> {geo.mg} channels, "
             f"kernel {geo.ks}, strides {geo.st}, dilations {geo.dl}, pads {geo.pb} / {geo.pe}"]
    body = [f"const float* __restrict x = {cg.ptr(x)} + n * {cin * isp};",
            f"float* __restrict y = {cg.ptr(y)} + n * {cout * osp};"]
    if geo.needs_pad:
        body.append(f"float* __restrict xpad = {cg.workspace(0, 'float')};")
        body += _emit_pad_copy(geo, "x", "xpad", cin)
        src, p = "xpad", geo.padded
    else:
        src, p = "x", geo.ins
    psz = int(np.prod(p))
    tap = [("a", sd * p[1] * p[2]), ("b", sh * p[2]), ("i", dd * p[1] * p[2]), ("j", dh * p[2]), ("k", dw)]
    nest = Nest(gr=geo.group, m=cout, c=geo.cg, i=kd, j=kh, k=kw, a=od, b=oh)
    ck = geo.cg * geo.ksz
    per_g = [f"const float* __restrict xg = {src} + {nest.lin([('gr', geo.cg * psz)])};"]
    if _pointwise(geo):
        bmat = "xg"
    else:
        per_g.append(f"float* __restrict col = {cg.workspace(1, 'float')};")
        row = nest.lin([("c", geo.ksz), ("i", kh * kw), ("j", kw), ("k", 1)])
        copy = [f"const float* __restrict s = xg + {nest.lin([('c', psz)] + tap)};",
                f"float* __restrict r = col + {nest.lin([('a', oh * ow), ('b', ow)])}"
                + (f" + ({row}) * {osp};" if row != "0" else ";"),
                f"for (int64_t e = 0; e < {ow}; ++e) r[e] = s[{_stepped('e', sw)}];"]
        per_g += nest.loops(["c", "i", "j", "k", "a", "b"], copy)
        bmat = "col"
    wg = _plus(cg.ptr(w), nest.lin([("gr", geo.mg * ck)]))
    per_g.append(f"ml4ep_rt::gemm({geo.mg}, {osp}, {ck}, 1.0f, {wg}, false, {bmat}, false, 0.0f, "
                 f"{_plus('y', nest.lin([('gr', geo.mg * osp)]))});")
    body += nest.loops(["gr"], per_g)
    post = _bias_act_pass(node, cg, "yo", nest.v("m"), osp)
    if post:
        body += nest.loops(["m"], [f"float* __restrict yo = y + {nest.lin([('m', osp)])};"] + post)
    lines.append(f"for (int64_t n = 0; n < {D.cpp(geo.batch)}; ++n) {{")
    lines += _indent(body)
    lines.append("}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------
# CUDA (docs/cuda.md). A pointwise convolution (1x1, stride 1, no padding) with few groups is a cuBLAS product
# per group, strided over the batch (Y[n] = W @ X[n], the weights repeated by a stride of 0), then one kernel adds
# the bias and applies the fused activations. Every other Conv and ConvTranspose is a direct kernel: one thread per
# output position and block of MB output channels, whose MB accumulators stay in registers over the kernel taps
# (bounds checked only on the axes where a window can reach the padding) and the input channels; the bias and the
# activations are applied as it stores. Adjacent threads take adjacent output positions (coalesced input reads and
# output writes) and read the same weights (one broadcast load per warp). No workspace is used.

# output channels per thread (at most): accumulators in registers. More would save input loads, but ptxas, which
# aims the kernels (__launch_bounds__(256), no minimum of blocks) at full occupancy, then spills some of them
CU_MB = 4
# pointwise convolutions with more groups than this take the direct kernel (one cuBLAS call per group)
CU_GEMM_GROUPS = 8
# the widest channel block is used when it gives at least this many threads (a batch that fills the GPU) ...
CU_WIDE_THREADS = 1 << 17
# ... else the widest block that gives a sample at least this many threads (batch-1 latency), or one channel
CU_MIN_THREADS = 1 << 15


def _cu_blocks(mg: int, const_w: bool) -> list[int]:
    """Channels per thread the direct kernel may take, widest first: the widest (a divisor of ``mg`` for run-time
    weights, which are read in place; constant weights are padded to whole blocks), then its halvings."""
    mb = min(CU_MB, mg)
    if not const_w:
        while mg % mb:
            mb -= 1
    out = [mb]
    while out[-1] > 1:
        out.append(out[-1] // 2 if out[-1] % 2 == 0 else 1)
    return out


def _cu_axis(v: str, o: int, n: int, k: int, s: int, d: int, pb: int, kv: str,
             transposed: bool) -> tuple[list[str], list[str], str] | None:
    """The loop over kernel offset ``kv`` on one axis (output index ``v`` < ``o``, input extent ``n``, kernel
    extent ``k``, stride, dilation, begin pad): (opening lines, closing lines, the input index) with the bounds
    checks that can fail; None when the axis is a constant 0 (an axis of extent 1 added to make the problem 3-D)."""
    if n == 1 and o == 1 and k == 1 and pb == 0:
        return None
    iv = f"i{v}"
    vv = v if o > 1 else "0"
    open_ = [f"for (int {kv} = 0; {kv} < {k}; ++{kv}) {{"] if k > 1 else []
    kd = (kv if d == 1 else f"{kv} * {d}") if k > 1 else "0"
    checks = []
    if not transposed:
        # input index v*s - pb + kv*d
        expr = _cu_sum([(vv, s), (kd, 1)], -pb)
        open_.append(f"const int {iv} = {expr};")
        if pb > 0:
            checks.append(f"{iv} < 0")
        if (o - 1) * s - pb + (k - 1) * d >= n:
            checks.append(f"{iv} >= {n}")
    else:
        # output v = iv*s - pb + kv*d: iv = (v + pb - kv*d) / s where that divides
        expr = _cu_sum([(vv, 1), (kd, -1)], pb)
        uv = f"u{v}" if s > 1 else iv
        open_.append(f"const int {uv} = {expr};")
        if pb - (k - 1) * d < 0:
            checks.append(f"{uv} < 0")
        if s > 1:
            checks.append(f"{uv} % {s} != 0")
        if (o - 1 + pb) // s >= n:
            checks.append(f"{uv} >= {n * s}" if s > 1 else f"{uv} >= {n}")
        if s > 1:
            open_.append(f"const int {iv} = {uv} / {s};")
    close = []
    if checks:
        # before the division (if any), which they do not need; a kernel extent of 1: a block instead of a loop
        at = len(open_) - 1 if s > 1 and transposed else len(open_)
        if k > 1:
            open_.insert(at, f"if ({' || '.join(checks)}) continue;")
        else:
            open_.insert(at, f"if (!({' || '.join(checks)})) {{")
            close.append("}")
    if k > 1:
        close.append("}")
    return open_, close, iv


def _cu_sum(terms: list[tuple[str, int]], const: int) -> str:
    """``sum(var * coeff) + const`` as C++, without zero terms (a var "0" is a zero term)."""
    parts = []
    for var, c in terms:
        if var == "0" or c == 0:
            continue
        t = var if abs(c) == 1 else f"{var} * {abs(c)}"
        parts.append(("- " if c < 0 else "+ ") + t)
    if const:
        parts.append(("- " if const < 0 else "+ ") + str(abs(const)))
    if not parts:
        return "0"
    s = " ".join(parts)
    return s[2:] if s.startswith("+ ") else "-" + s[2:]


def _cu_direct_body(node: "Node", cg: "Emitter", geo: Geom, transposed: bool, wptr: str, const_w: bool,
                    mgp: int, mb: int) -> str:
    """The body of the direct kernel over thread ``t`` with ``mb`` output channels per thread."""
    x, y, b = node.inputs[0], node.outputs[0], node.input(2)
    group, cgr, mg, ksz, isp, osp = geo.group, geo.cg, geo.mg, geo.ksz, geo.isp, geo.osp
    nblk = -(-mg // mb)  # constant weights are padded to whole blocks: the last may be partial
    od, oh, ow = geo.outs
    ih, iw = geo.ins[1:]
    lines = []
    # t = ((n * group + gr) * nblk + blk) * osp + p
    if osp > 1:
        lines.append(f"const int p = int(t % {osp});")
    r = f"t / {osp}" if osp > 1 else "t"
    if nblk > 1:
        lines += [f"const int64_t r = {r};", f"const int blk = int(r % {nblk});", f"const int64_t ng = r / {nblk};"]
    else:
        lines.append(f"const int64_t ng = {r};")
    gr = "0"
    if group > 1:
        lines.append(f"const int gr = int(ng % {group});")
        gr = "gr"
    blk = "blk" if nblk > 1 else "0"
    # output coordinates
    if od > 1:
        lines.append(f"const int a = p / {oh * ow};")
    if oh > 1:
        lines.append(f"const int b = p / {ow}{f' % {oh}' if od > 1 else ''};")
    if ow > 1:
        lines.append(f"const int e = p{f' % {ow}' if od > 1 or oh > 1 else ''};")
    lines.append(f"const float* __restrict__ xg = {cg.ptr(x)} + ng * {cgr * isp};")
    # the weights of tap, channel and output channel q of the block: wb + tap * ts + c * cs + q * qs
    m0 = _cu_sum([(blk, mb)], 0)
    if const_w:  # packed (group, tap, C, Mg padded)
        wb = _cu_sum([(gr, ksz * cgr * mgp), (blk, mb)], 0)
        ts, cs, qs = cgr * mgp, mgp, 1
    elif not transposed:  # (group * Mg, C, taps)
        wb = _cu_sum([(gr, mg * cgr * ksz), (blk, mb * cgr * ksz)], 0)
        ts, cs, qs = 1, ksz, cgr * ksz
    else:  # (group * C, Mg, taps)
        wb = _cu_sum([(gr, cgr * mg * ksz), (blk, mb * ksz)], 0)
        ts, cs, qs = 1, mg * ksz, ksz
    lines.append(f"const float* __restrict__ wb = {_plus(wptr, wb)};")
    lines.append(f"float acc[{mb}] = {{}};")
    # the tap loops, outermost axis first
    opens, closes, idx = [], [], []
    kdims = geo.ks
    tapn = Nest(i=kdims[0], j=kdims[1], k=kdims[2])
    strides_in = [ih * iw, iw, 1]
    for ax, (v, kv) in enumerate([("a", "i"), ("b", "j"), ("e", "k")]):
        got = _cu_axis(v, geo.outs[ax], geo.ins[ax], kdims[ax], geo.st[ax], geo.dl[ax], geo.pb[ax], kv, transposed)
        if got is None:
            continue
        o_, c_, iv = got
        opens.append(o_)
        closes.insert(0, c_)
        idx.append((iv, strides_in[ax]))
    tap = tapn.lin([("i", kdims[1] * kdims[2]), ("j", kdims[2]), ("k", 1)])
    xoff = _cu_sum(idx, 0)
    inner = [f"const float* __restrict__ xt = {_plus('xg', xoff)};"]
    if ts != 1 and "+" in tap:
        tap = f"({tap})"
    wt = "wb" if tap == "0" else (f"wb + {tap}" if ts == 1 else f"wb + {tap} * {ts}")
    inner.append(f"const float* __restrict__ wt = {wt};")
    chan = [f"const float xv = xt[{'c * ' + str(isp) if isp > 1 else 'c'}];",
            f"const float* __restrict__ wc = wt + c{f' * {cs}' if cs != 1 else ''};"]
    chan.append(f"for (int q = 0; q < {mb}; ++q) acc[q] += wc[{'q' if qs == 1 else f'q * {qs}'}] * xv;")
    inner.append(f"for (int c = 0; c < {cgr}; ++c) {{")
    inner += _indent(chan)
    inner.append("}")
    depth = 0
    nest_lines = []
    for o_ in opens:
        for ln in o_:
            nest_lines.append("  " * depth + ln)
            if ln.endswith("{"):
                depth += 1
    nest_lines += ["  " * depth + ln for ln in inner]
    for c_ in closes:
        for ln in c_:
            depth -= 1
            nest_lines.append("  " * depth + ln)
    lines += nest_lines
    # the stores: bias, activations
    act = activation_code(node, "v")
    bias = ""
    if b:
        bias = f" + {cg.ptr(b)}[{_cu_sum([(gr, mg), ('m', 1)], 0)}]"
    lines.append(f"float* __restrict__ yo = {cg.ptr(y)} + ng * {mg * osp}{' + p' if osp > 1 else ''};")
    store = [f"const int m = {_cu_sum([(m0, 1), ('q', 1)], 0)};"]
    if mg % mb:
        store.append(f"if (m >= {mg}) break;")
    store.append(f"float v = acc[q]{bias}; {act}yo[m{f' * {osp}' if osp > 1 else ''}] = v;")
    lines.append(f"for (int q = 0; q < {mb}; ++q) {{")
    lines += _indent(store)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _cu_direct(node: "Node", cg: "Emitter", geo: Geom, transposed: bool) -> str:
    w = node.inputs[1]
    wv = cg.const(w)
    const_w = wv is not None
    group, cgr, mg, ksz = geo.group, geo.cg, geo.mg, geo.ksz
    blocks = _cu_blocks(mg, const_w)
    mgp = -(-mg // blocks[0]) * blocks[0]
    if const_w:
        wf = wv.astype(np.float32)
        if transposed:  # (group * C, Mg, taps) -> (group, taps, C, Mg)
            packed = wf.reshape(group, cgr, mg, ksz).transpose(0, 3, 1, 2)
        else:  # (group * Mg, C, taps) -> (group, taps, C, Mg)
            packed = wf.reshape(group, mg, cgr, ksz).transpose(0, 3, 2, 1)
        full = np.zeros((group, ksz, cgr, mgp), dtype=np.float32)
        full[..., :mg] = packed
        wptr = cg.weight(full, f"{node.name}.W_packed")
    else:
        wptr = cg.ptr(w)

    def per_sample(mb: int) -> int:
        return group * -(-mg // mb) * geo.osp

    wide = blocks[0]
    narrow = next((mb for mb in blocks if per_sample(mb) >= CU_MIN_THREADS), blocks[-1])
    kind = "transposed convolution" if transposed else "convolution"
    head = (f"// direct {kind} kernel: {group} group(s) of {cgr} -> {mg} channels, kernel {geo.ks}, "
            f"strides {geo.st}, dilations {geo.dl}, pads {geo.pb} / {geo.pe}; a thread per output position and "
            f"block of {{mb}} output channels\n")

    def launch(mb: int) -> str:
        total = D.cpp(D.norm(geo.batch * per_sample(mb)))
        body = _cu_direct_body(node, cg, geo, transposed, wptr, const_w, mgp, mb)
        return head.format(mb=mb) + cg.par_for("t", total, body)

    if D.is_static(geo.batch):
        n = int(geo.batch)
        use = wide if n * per_sample(wide) >= CU_WIDE_THREADS else \
            next((mb for mb in blocks if n * per_sample(mb) >= CU_MIN_THREADS), blocks[-1])
        return launch(use)
    if wide == narrow:
        return launch(wide)
    # the batch is known at run time: wide blocks for large batches, narrow ones for small
    return (f"if (int64_t({D.cpp(geo.batch)}) * {per_sample(wide)} >= {CU_WIDE_THREADS}) {{\n"
            + "".join("  " + ln + "\n" for ln in launch(wide).splitlines()) + "} else {\n"
            + "".join("  " + ln + "\n" for ln in launch(narrow).splitlines()) + "}\n")


def _cu_pointwise(node: "Node", cg: "Emitter", geo: Geom, transposed: bool) -> str:
    """A 1x1 (transposed) convolution, stride 1, no padding: per group, Y[n] = W @ X[n] over the batch."""
    x, w, y, b = node.inputs[0], node.inputs[1], node.outputs[0], node.input(2)
    group, cgr, mg, osp = geo.group, geo.cg, geo.mg, geo.osp
    lines = [f"// pointwise {'transposed ' if transposed else ''}convolution as cuBLAS products over the batch: "
             f"{group} group(s) of {cgr} -> {mg} channels, {osp} positions\n"]
    for gr in range(group):
        # Conv weights (group * Mg, C): A = W[gr]; ConvTranspose weights (group * C, Mg): A = W[gr]^T
        a = _plus(cg.ptr(w), str(gr * mg * cgr) if gr else "0")
        xg = _plus(cg.ptr(x), str(gr * cgr * osp) if gr else "0")
        yg = _plus(cg.ptr(y), str(gr * mg * osp) if gr else "0")
        lines.append(f"ml4ep_cu::gemm_batched({cg.blas}, {mg}, {osp}, {cgr}, 1.0f, {a}, "
                     f"{'true' if transposed else 'false'}, 0, {xg}, false, {geo.cin * osp}, 0.0f, {yg}, "
                     f"{geo.cout * osp}, {D.cpp(geo.batch)});\n")
    return "".join(lines) + _epilogue(cg, node, y, osp, cg.ptr(b) if b else None, per_row=geo.cout)


def _emit_conv_cuda(node: "Node", cg: "Emitter") -> str:
    geo = conv_geometry(node, cg.g)
    if _pointwise(geo) and geo.group <= CU_GEMM_GROUPS:
        return _cu_pointwise(node, cg, geo, False)
    return _cu_direct(node, cg, geo, False)


def _emit_convt_cuda(node: "Node", cg: "Emitter") -> str:
    geo = convt_geometry(node, cg.g)
    if _pointwise(geo) and geo.outs == geo.ins and geo.group <= CU_GEMM_GROUPS:
        return _cu_pointwise(node, cg, geo, True)
    return _cu_direct(node, cg, geo, True)


register("Conv", infer=_infer_conv, emit=_emit_conv, check=_common_check, workspace=_conv_workspace,
         batch=BR.nchw, cuda=_emit_conv_cuda)


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
    return _output_info(convt_geometry(node, g))


def _convt_workspace(node: "Node", g: "Graph"):
    geo = convt_geometry(node, g)
    if _kernel(g.is_const(node.inputs[1])) == "blas":
        return [(geo.mg * geo.ksz * geo.isp, np.float32)]
    mb = _block(geo.mg * geo.ksz)
    return [(geo.cin * geo.isp + VEC_SLACK, np.float32), (mb * (geo.isp + VEC_SLACK), np.float32)]


def _scatter_ranges(geo: Geom, axis: int) -> tuple[list[int], list[int]]:
    """Per kernel offset k: the input index range [lo, hi) whose output ``i*s - pb + k*d`` is inside."""
    lo, hi = [], []
    s, d, pb, o, n = geo.st[axis], geo.dl[axis], geo.pb[axis], geo.outs[axis], geo.ins[axis]
    for k in range(geo.ks[axis]):
        off = k * d - pb  # output = i*s + off
        a = max(0, -(off // s))  # ceil(-off / s)
        b = min(n, (o - 1 - off) // s + 1)
        lo.append(a)
        hi.append(max(a, b))
    return lo, hi


def _table(name: str, vals: list[int]) -> str:
    return f"constexpr int64_t {name}[{len(vals)}] = {{{', '.join(str(v) for v in vals)}}};"


def _emit_convt(node: "Node", cg: "Emitter") -> str:
    geo = convt_geometry(node, cg.g)
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    wv = cg.const(w)
    kernel = _kernel(wv is not None)
    cin, cout, isp, osp = geo.cin, geo.cout, geo.isp, geo.osp
    kd, kh, kw = geo.ks
    sd, sh, sw = geo.st
    dd, dh, dw = geo.dl
    ih, iw = geo.ins[1:]
    oh, ow = geo.outs[1:]
    mk = geo.mg * geo.ksz
    first = 3 - geo.nsp  # leading axes added to make the problem 3-D have extent 1 everywhere
    nest = Nest(gr=geo.group, m=geo.mg, mo=cout, i=kd, j=kh, k=kw,
                a=-1 if first <= 0 else 1, b=-1 if first <= 1 else 1)  # -1: a loop with table bounds
    lines = [f"// {'sgemm' if kernel == 'blas' else 'vector'} + col2im transposed convolution: "
             f"{geo.group} group(s) of {geo.cg} -> {geo.mg} channels, kernel {geo.ks}, strides {geo.st}, "
             f"dilations {geo.dl}, pads {geo.pb} / {geo.pe}"]
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
    yo = _plus("y", nest.lin([("mo", osp)]))
    body += nest.loops(["mo"], [f"{{ const float bv = {init}; float* __restrict yo = {yo};",
                                f"  for (int64_t e = 0; e < {osp}; ++e) yo[e] = bv; }}"])
    # col row (m, i, j, k) holds the products of kernel tap (i, j, k) for every input position (a, b, e);
    # input (a, b, e) at tap (i, j, k) lands on output (a*sd + i*dd - pd, b*sh + j*dh - ph, e*sw + k*dw - pw)
    orow = nest.lin([("a", sd * oh * ow), ("i", dd * oh * ow), ("b", sh * ow), ("j", dh * ow)],
                    -geo.pb[0] * oh * ow - geo.pb[1] * ow)
    ocol = nest.lin([("e", sw), ("k", dw)], -geo.pb[2])

    def scatter(src_row: str) -> list[str]:
        inner = [f"float* __restrict yr = yo + {orow};",
                 f"const float* __restrict sr = {src_row} + {nest.lin([('a', ih * iw), ('b', iw)])};",
                 f"for (int64_t e = {bounds['e'][0]}; e < {bounds['e'][1]}; ++e) yr[{ocol}] += sr[e];"]
        return nest.loops(["a", "b"], inner, bounds)

    if kernel == "blas":
        if wv is not None:
            # (group, Cg, Mg*K) -> (group, Mg*K, Cg): the product's A without a transpose
            wt = np.ascontiguousarray(wv.astype(np.float32).reshape(geo.group, geo.cg, mk).transpose(0, 2, 1))
            wptr, ta = cg.weight(wt, f"{node.name}.W_t"), "false"
        else:
            wptr, ta = cg.ptr(w), "true"
        body.append(f"float* __restrict col = {cg.workspace(0, 'float')};")
        wg = _plus(wptr, nest.lin([("gr", mk * geo.cg)]))
        per_g = [f"ml4ep_rt::gemm({mk}, {isp}, {geo.cg}, 1.0f, {wg}, {ta}, "
                 f"{_plus('x', nest.lin([('gr', geo.cg * isp)]))}, false, 0.0f, col);"]
        rows = [f"float* __restrict yo = y + {nest.lin([('gr', geo.mg * osp), ('m', osp)])};"]
        row = nest.lin([("m", geo.ksz * isp), ("i", kh * kw * isp), ("j", kw * isp), ("k", isp)])
        rows += nest.loops(["i", "j", "k"], scatter(_plus("col", row)))
        per_g += nest.loops(["m"], rows)
        body += nest.loops(["gr"], per_g)
    else:
        lines += VEC_TYPES
        mb = _block(mk)
        nblk = -(-mk // mb)
        # rows r = (m, i, j, k) of col, per group: weights (group*Mg*K, Cg, 1)
        w2 = wv.astype(np.float32).reshape(geo.group, geo.cg, mk).transpose(0, 2, 1)
        w2 = w2.reshape(geo.group * mk, geo.cg, 1)
        wptr = cg.weight(_pack(w2, geo.group, mb), f"{node.name}.W_packed")
        body.append(f"float* __restrict xb = {cg.workspace(0, 'float')};")
        body.append(f"std::memcpy(xb, x, sizeof(float) * {cin * isp});")
        body.append(f"std::fill(xb + {cin * isp}, xb + {cin * isp + VEC_SLACK}, 0.0f);")
        body.append(f"float* __restrict yw = {cg.workspace(1, 'float')};")
        tap_of = []
        if kd > 1:
            tap_of.append(f"const int64_t i = t / {kh * kw};")
        if kh > 1:
            tap_of.append(f"const int64_t j = t / {kw} % {kh};" if kd > 1 else f"const int64_t j = t / {kw};")
        if kw > 1:
            tap_of.append(f"const int64_t k = t % {kw};")
        valid = "MB" if mk % mb == 0 else f"std::min<int64_t>(MB, {mk} - blk * MB)"
        m_of_r = "r" if geo.ksz == 1 else f"r / {geo.ksz}"
        per_block = [f"for (int64_t q = 0; q < {valid}; ++q) {{",
                     "  const int64_t r = blk * MB + q;",
                     *(["  const int64_t t = r % " + str(geo.ksz) + ";"] if geo.ksz > 1 else []),
                     *["  " + t for t in tap_of],
                     f"  float* __restrict yo = y + ({_plus(nest.lin([('gr', geo.mg)]), m_of_r)}) * {osp};",
                     "  const float* __restrict yq = yw + q * PR;"]
        per_block += _indent(scatter("yq"))
        per_block.append("}")
        kn = Nest(c=-1, i=1, j=1, k=1)
        body += nest.loops(["gr"], _vec_kernel(
            src=_plus("xb", nest.lin([("gr", geo.cg * isp)])), cstride=isp, cin=geo.cg, nest=kn, taps=[],
            tap_index="0", ntaps=1, positions=isp,
            wb=f"{wptr} + ({_plus(nest.lin([('gr', nblk)]), 'blk')}) * {geo.cg * mb}", mb=mb, nblk=nblk,
            yw="yw", per_block=per_block))
    act = activation_code(node, "v")
    if act:
        body.append(f"for (int64_t e = 0; e < {cout * osp}; ++e) {{ float v = y[e]; {act}y[e] = v; }}")
    lines.append(f"for (int64_t n = 0; n < {D.cpp(geo.batch)}; ++n) {{")
    lines += _indent(body)
    lines.append("}")
    return "\n".join(lines) + "\n"


register("ConvTranspose", infer=_infer_convt, emit=_emit_convt, check=_common_check,
         workspace=_convt_workspace, batch=BR.nchw, cuda=_emit_convt_cuda)
