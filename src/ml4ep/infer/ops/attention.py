"""Transformer blocks: Attention (opsets 23-25), RotaryEmbedding and RMSNormalization (opset 23).

Attention views Q, K, V as (batch, heads, sequence, head size) through strides, so 3-D inputs
(batch, sequence, heads * head size) are read in place. Query head ``h`` reads key/value head
``h / (q_heads / kv_heads)`` (grouped-query attention). With ``past_key``/``past_value`` the keys and values
are first concatenated into ``present_key``/``present_value`` (the outputs when requested, else scratch).

Per (batch, kv head) and block of up to ``QB`` query rows the scores ``S = scale * Q K^T`` go to a scratch
block; each row is soft-capped, masked (``attn_mask`` float or bool, padded with -inf to the key length, the
causal and sliding-window frontiers at the cache offset, ``nonpad_kv_seqlen``) and normalised by a softmax
with its maximum subtracted; a row whose every key is disallowed becomes zeros (so is its output row). Then
``Y = P V``, each row normalised after the product unless ``qk_matmul_output`` shows the probabilities.
(``qk_matmul_output`` mode 0 is the product before the softcap, as the specification and onnxruntime have
it; the ONNX reference soft-caps it.) For float32 the two products call BLAS (``cblas_sgemm``, the strides as
leading dimensions) when a block is large; otherwise, and for other dtypes, K is transposed once per head
into scratch so that both products are loops over contiguous rows that g++ vectorises. Arithmetic is in
float (double for float64 tensors); elements are read and written through their own C++ type. On CUDA one
thread computes each query row (two passes over the keys, see ``_emit_attention_cuda``); RotaryEmbedding runs one
thread per element, RMSNormalization one per normalised row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import register
from .common import broadcast_index_plan, cpp_sum, is_float, mul, node_error, norm_axis
from .reduce import row_reduce
from .. import dims as D
from ..literals import literal
from ..._native.names import string

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

# query rows per block of scores (the scratch holds QB rows of the key length)
QB = 256
# multiply-adds of one Q K^T block from which float32 blocks go to BLAS
BLAS_MIN_WORK = 1 << 15
LANES = 32




def _acc_type(*dtypes) -> str:
    return "double" if any(np.dtype(d) == np.float64 for d in dtypes) else "float"



def _lane_reduce(acc: str, ct: str, n: str, value: Callable[[str], str], combine: Callable[[str, str], str],
                 init: str, ind: str) -> str:
    """``ct acc`` = reduction of ``value(j)`` over ``j < n`` (a run-time extent) in LANES independent lanes."""
    p, j = f"{acc}_l", f"{acc}_j"
    return (
        f"{ind}{ct} {p}[{LANES}];\n"
        f"{ind}for (int l = 0; l < {LANES}; ++l) {p}[l] = {init};\n"
        f"{ind}int64_t {j} = 0;\n"
        f"{ind}for (; {j} + {LANES} <= {n}; {j} += {LANES})\n"
        f"{ind}  for (int l = 0; l < {LANES}; ++l) {{ const {ct} v = {value(f'{j} + l')}; "
        f"{p}[l] = {combine(f'{p}[l]', 'v')}; }}\n"
        + _fold_lanes(p, combine, ind)
        + f"{ind}{ct} {acc} = {p}[0];\n"
        f"{ind}for (; {j} < {n}; ++{j}) {{ const {ct} v = {value(j)}; {acc} = {combine(acc, 'v')}; }}\n"
    )


def _fold_lanes(p: str, combine: Callable[[str, str], str], ind: str) -> str:
    """Combine the lanes ``p[0:LANES]`` pairwise into ``p[0]`` (vector operations, unlike a serial chain)."""
    code, w = "", LANES // 2
    while w:
        code += f"{ind}for (int l = 0; l < {w}; ++l) {p}[l] = {combine(f'{p}[l]', f'{p}[l + {w}]')};\n"
        w //= 2
    return code


def _max(a: str, b: str) -> str:
    return f"std::max({a}, {b})"


def _add(a: str, b: str) -> str:
    return f"{a} + {b}"


# ------------------------------------------------------------------------------------------------------
# Attention


@dataclass
class _Att:
    rank3: bool
    b: D.DimLike
    hq: D.DimLike
    hkv: D.DimLike
    sq: D.DimLike
    skv: D.DimLike  # keys in K (the new ones when there is a past)
    sp: D.DimLike  # past keys (0 without a past)
    t: D.DimLike  # all keys: sp + skv
    dk: D.DimLike
    dv: D.DimLike
    mask: str
    past_k: str
    past_v: str
    nonpad: str
    qb: D.DimLike  # query rows per block


def _opt(node: "Node", i: int) -> str:
    return node.input(i)


def _att_plan(node: "Node", g: "Graph") -> _Att:
    q, k, v = (g.t(node.inputs[i]) for i in range(3))
    if not (q.rank == k.rank == v.rank) or q.rank not in (3, 4):
        raise node_error(node, f"Q, K and V must all be 3-D or all 4-D, got ranks {q.rank}, {k.rank}, {v.rank}")
    rank3 = q.rank == 3
    if rank3:
        nq, nkv = node.attr("q_num_heads"), node.attr("kv_num_heads")
        if not nq or not nkv:
            raise node_error(node, "3-D Q, K, V need the attributes q_num_heads and kv_num_heads")
        hq, hkv = int(nq), int(nkv)
        b, sq = q.shape[0], q.shape[1]
        skv = k.shape[1]
        try:
            dk, dkk, dv = D.norm(q.shape[2] // hq), D.norm(k.shape[2] // hkv), D.norm(v.shape[2] // hkv)
        except D.SymbolicError as exc:
            raise node_error(node, f"hidden sizes do not divide by the head counts: {exc}") from None
        if D.norm(dk * hq) != q.shape[2] or D.norm(dkk * hkv) != k.shape[2] or D.norm(dv * hkv) != v.shape[2]:
            raise node_error(node, f"hidden sizes {D.fmt(q.shape[2])}, {D.fmt(k.shape[2])}, {D.fmt(v.shape[2])} do not "
                             f"divide by q_num_heads={hq}, kv_num_heads={hkv}")
        vb, vs = v.shape[0], v.shape[1]
        kb = k.shape[0]
    else:
        b, hq, sq, dk = q.shape
        kb, hkv, skv, dkk = k.shape
        vb, hv, vs, dv = v.shape
        if hv != hkv:
            raise node_error(node, f"K has {D.fmt(hkv)} heads, V has {D.fmt(hv)}")
    if kb != b or vb != b:
        raise node_error(node, f"batch sizes of Q, K, V differ ({D.fmt(b)}, {D.fmt(kb)}, {D.fmt(vb)})")
    if vs != skv:
        raise node_error(node, f"K and V sequence lengths differ ({D.fmt(skv)} vs {D.fmt(vs)})")
    if dkk != dk:
        raise node_error(node, f"Q and K head sizes differ ({D.fmt(dk)} vs {D.fmt(dkk)})")
    if not D.is_static(hq) or not D.is_static(hkv):
        raise node_error(node, "the head counts must be static")
    if int(hkv) == 0 or int(hq) % int(hkv):
        raise node_error(node, f"q heads ({hq}) must be a multiple of kv heads ({hkv})")
    past_k, past_v, nonpad = _opt(node, 4), _opt(node, 5), _opt(node, 6)
    if bool(past_k) != bool(past_v):
        raise node_error(node, "past_key and past_value must be given together")
    if nonpad and past_k:
        raise node_error(node, "nonpad_kv_seqlen cannot be combined with past_key/past_value")
    sp: D.DimLike = 0
    if past_k:
        pk, pv = g.t(past_k).shape, g.t(past_v).shape
        if len(pk) != 4 or len(pv) != 4 or tuple(pk[:2]) != (b, hkv) or pk[3] != dk \
                or tuple(pv[:3]) != tuple(pk[:3]) or pv[3] != dv:
            raise node_error(node, f"past_key {D.fmt_shape(pk)} / past_value {D.fmt_shape(pv)} do not match "
                             f"(batch {D.fmt(b)}, kv heads {D.fmt(hkv)}, head sizes {D.fmt(dk)}, {D.fmt(dv)})")
        sp = pk[2]
    try:
        t = D.norm(sp + skv)
    except D.SymbolicError:
        raise node_error(node, f"past length {D.fmt(sp)} + new length {D.fmt(skv)} is not representable "
                         "(symbolic dimensions must be monomials)") from None
    if nonpad:
        ns = g.t(nonpad).shape
        if len(ns) != 1 or ns[0] != b:
            raise node_error(node, f"nonpad_kv_seqlen must have shape ({D.fmt(b)}), got {D.fmt_shape(ns)}")
    mask = _opt(node, 3)
    if mask:
        ms = g.t(mask).shape
        full = (b, hq, sq, t)
        if len(ms) > 4 or len(ms) == 0:
            raise node_error(node, f"attn_mask must have rank 1 to 4, got {D.fmt_shape(ms)}")
        for m, f in zip(reversed(ms[:-1]), reversed(full[:-1])):
            if m != 1 and m != f:
                raise node_error(node, f"attn_mask {D.fmt_shape(ms)} does not broadcast to {D.fmt_shape(full)}")
        last = ms[-1]
        if last != t and not (D.is_static(last) and D.is_static(t) and int(last) <= int(t)):
            raise node_error(node, f"attn_mask's last dimension {D.fmt(last)} exceeds the key length {D.fmt(t)}")
    qb: D.DimLike = min(int(sq), QB) if D.is_static(sq) else QB
    return _Att(rank3, b, int(hq), int(hkv), sq, skv, sp, t, dk, dv, mask, past_k, past_v, nonpad, max(qb, 1))


def _check_attention(node: "Node", g: "Graph") -> str | None:
    for i, what in ((0, "Q"), (1, "K"), (2, "V"), (4, "past_key"), (5, "past_value")):
        name = node.input(i)
        t = g.tensors.get(name) if name else None
        if t is not None and not is_float(t.dtype):
            return f"{what} has dtype {t.dtype} (floating point expected)"
    m = node.input(3)
    if m and m in g.tensors and not (is_float(g.tensors[m].dtype) or g.tensors[m].dtype == np.bool_):
        return f"attn_mask has dtype {g.tensors[m].dtype} (bool or floating point expected)"
    mode = int(node.attr("qk_matmul_output_mode", 0))
    if mode not in (0, 1, 2, 3):
        return f"qk_matmul_output_mode={mode} is not one of 0, 1, 2, 3"
    for key in ("left_window_size", "right_window_size"):
        if int(node.attr(key, -1)) < -1:
            return f"{key}={node.attr(key)} (must be -1 or nonnegative)"
    return None


def _infer_attention(node: "Node", g: "Graph"):
    a = _att_plan(node, g)
    dt = g.t(node.inputs[0]).dtype
    y = (a.b, a.sq, D.norm(a.hq * a.dv)) if a.rank3 else (a.b, a.hq, a.sq, a.dv)
    kdt = g.t(node.inputs[1]).dtype
    vdt = g.t(node.inputs[2]).dtype
    return [
        (dt, y),
        (kdt, (a.b, a.hkv, a.t, a.dk)),
        (vdt, (a.b, a.hkv, a.t, a.dv)),
        (dt, (a.b, a.hq, a.sq, a.t)),
    ]


def _out(node: "Node", i: int) -> str:
    return node.outputs[i] if i < len(node.outputs) else ""


def _att_ws(node: "Node", g: "Graph"):
    a = _att_plan(node, g)
    ft = np.float64 if _acc_type(*(g.t(n).dtype for n in node.inputs[:3])) == "double" else np.float32
    ws = [
        (D.norm(a.qb * a.t), ft),  # 0: scores of a block of query rows
        (D.norm(a.dk * a.t), ft),  # 1: K^T of one head (loop path)
        (a.dv, ft),  # 2: one output row (loop path)
        (0, np.float32),  # 3: K with its past (when present_key is no output)
        (0, np.float32),  # 4: V with its past
        (a.qb, ft),  # 5: 1 / softmax sums of a block's rows
    ]
    if a.past_k:
        if not _out(node, 1):
            ws[3] = (D.norm(a.b * a.hkv * a.t * a.dk), g.t(node.inputs[1]).dtype)
        if not _out(node, 2):
            ws[4] = (D.norm(a.b * a.hkv * a.t * a.dv), g.t(node.inputs[2]).dtype)
    return ws


def _strides4(a: _Att, rank3: bool, heads: D.DimLike, seq: D.DimLike, d: D.DimLike):
    """(batch, head, row) element strides of a (b, heads, seq, d) view; 3-D tensors are (b, seq, heads * d)."""
    if rank3:
        return D.norm(seq * heads * d), d, D.norm(heads * d)
    return D.norm(heads * seq * d), D.norm(seq * d), d


def _scale(node: "Node", a: _Att, dtype) -> str:
    s = node.attr("scale")
    if s is None:
        if not D.is_static(a.dk):
            return f"1.0 / std::sqrt(double({D.cpp(a.dk)}))"
        s = 1.0 / np.sqrt(float(int(a.dk)))
    # as the specification: Q and K are each scaled by sqrt(scale) rounded to their type
    try:
        r = float(np.asarray(np.sqrt(float(s))).astype(dtype).astype(np.float64))
    except (TypeError, ValueError):
        r = float(np.sqrt(float(s)))
    return literal(r * r, "double")


def _att_options(node: "Node") -> tuple[int, float, bool, int, int]:
    """Attention's ``(qk_matmul_output_mode, softcap, is_causal, left_window_size, right_window_size)``, defaults
    filled in."""
    return (int(node.attr("qk_matmul_output_mode", 0)), float(node.attr("softcap", 0.0) or 0.0),
            bool(int(node.attr("is_causal", 0))), int(node.attr("left_window_size", -1)),
            int(node.attr("right_window_size", -1)))


def _emit_attention(node: "Node", cg: "Emitter") -> str:
    a = _att_plan(node, cg.g)
    qn, kn, vn = node.inputs[:3]
    y, pres_k, pres_v, qk_out = (_out(node, i) for i in range(4))
    qt, kt, vt = cg.ctype(qn), cg.ctype(kn), cg.ctype(vn)
    ft = _acc_type(cg.dtype(qn), cg.dtype(kn), cg.dtype(vn))
    ninf = literal(-np.inf, ft)
    mode, softcap, causal, left, right = _att_options(node)
    T, B, HKV = D.cpp(a.t), D.cpp(a.b), a.hkv
    reps = a.hq // a.hkv

    q_st = _strides4(a, a.rank3, a.hq, a.sq, a.dk)
    y_st = _strides4(a, a.rank3, a.hq, a.sq, a.dv)
    code = f"const {ft} scale = static_cast<{ft}>({_scale(node, a, cg.dtype(qn))});\n"

    # keys and values: the inputs in place, or concatenated with the past
    k_st = _strides4(a, a.rank3, a.hkv, a.skv, a.dk)
    v_st = _strides4(a, a.rank3, a.hkv, a.skv, a.dv)
    kp, vp = cg.ptr(kn), cg.ptr(vn)
    if a.past_k:
        kdst = pres_k or cg.workspace(3, kt)
        vdst = pres_v or cg.workspace(4, vt)
        code += f"{kt}* __restrict kall = {cg.ptr(kdst) if pres_k else kdst};\n"
        code += f"{vt}* __restrict vall = {cg.ptr(vdst) if pres_v else vdst};\n"
        code += _copy_kv_named(cg, a, kn, a.past_k, "kall", a.dk, k_st)
        code += _copy_kv_named(cg, a, vn, a.past_v, "vall", a.dv, v_st)
        kp, vp = "kall", "vall"
        k_st = (D.norm(a.hkv * a.t * a.dk), D.norm(a.t * a.dk), a.dk)
        v_st = (D.norm(a.hkv * a.t * a.dv), D.norm(a.t * a.dv), a.dv)
    else:
        if pres_k:
            code += _copy_kv_named(cg, a, kn, "", cg.ptr(pres_k), a.dk, k_st)
        if pres_v:
            code += _copy_kv_named(cg, a, vn, "", cg.ptr(pres_v), a.dv, v_st)

    blas = (ft == "float" and all(cg.dtype(n) == np.float32 for n in (qn, kn, vn))
            and (not y or cg.dtype(y) == np.float32))
    S = cg.workspace(0, ft)
    KT = cg.workspace(1, ft)
    ACC = cg.workspace(2, ft)
    Sq, Dk, Dv, QBc = D.cpp(a.sq), D.cpp(a.dk), D.cpp(a.dv), D.cpp(a.qb)
    code += (f"{ft}* __restrict sc = {S};\n{ft}* __restrict kt = {KT};\n{ft}* __restrict acc = {ACC};\n"
             f"{ft}* __restrict rinv = {cg.workspace(5, ft)};\n(void)acc;\n(void)rinv;\n")
    if blas:
        code += (
            "#ifndef ML4EP_NO_BLAS\n"
            f"const bool use_blas = int64_t({QBc}) * {T} * {Dk} >= {BLAS_MIN_WORK} && {Dv} > 0;\n"
            "#else\nconst bool use_blas = false;\n#endif\n"
        )
    else:
        code += "const bool use_blas = false;\n"

    # mask addressing: right-aligned broadcast against (b, hq, sq, mask length)
    mask_dt = cg.dtype(a.mask) if a.mask else None
    if a.mask:
        ms = list(cg.shape(a.mask))
        mlen = ms[-1]
        pad = [1] * (4 - len(ms)) + ms
        st: list[D.DimLike] = []
        acc_st: D.DimLike = 1
        for m in reversed(pad):
            st.insert(0, 0 if m == 1 else acc_st)
            acc_st = D.norm(acc_st * m)
        m_b, m_h, m_s = st[0], st[1], st[2]
        code += f"const {cg.ctype(a.mask)}* __restrict mk = {cg.ptr(a.mask)};\n"
    npad = f"const int64_t* __restrict npad = {cg.ptr(a.nonpad)};\n" if a.nonpad else ""
    if a.nonpad and cg.dtype(a.nonpad) != np.int64:
        npad = f"const {cg.ctype(a.nonpad)}* __restrict npad = {cg.ptr(a.nonpad)};\n"
    code += npad
    limit_rows = causal or left >= 0 or right >= 0 or a.nonpad

    # ---- per (batch, kv head)
    code += f"for (int64_t b = 0; b < {B}; ++b) {{\n"
    if a.nonpad:
        code += "  const int64_t nvalid = static_cast<int64_t>(npad[b]);\n"
        code += f"  const int64_t off = nvalid - {Sq};\n"
    else:
        code += f"  const int64_t off = {D.cpp(a.sp)};\n"
    code += "  (void)off;\n"
    code += f"  for (int64_t hk = 0; hk < {HKV}; ++hk) {{\n"
    code += f"    const {kt}* __restrict kb = {kp} + {cpp_sum([mul('b', k_st[0]), mul('hk', k_st[1])])};\n"
    code += f"    const {vt}* __restrict vb = {vp} + {cpp_sum([mul('b', v_st[0]), mul('hk', v_st[1])])};\n"
    code += (
        "    if (!use_blas) {\n"
        f"      for (int64_t j = 0; j < {T}; ++j)\n"
        f"        for (int64_t d = 0; d < {Dk}; ++d) kt[d * {T} + j] = static_cast<{ft}>(kb[{mul('j', k_st[2])} + d]);\n"
        "    }\n"
    )
    code += f"    for (int64_t r = 0; r < {reps}; ++r) {{\n"
    code += f"      const int64_t h = hk * {reps} + r;\n"
    code += f"      const {qt}* __restrict qh = {cg.ptr(qn)} + {cpp_sum([mul('b', q_st[0]), mul('h', q_st[1])])};\n"
    if y:
        yt = cg.ctype(y)
        code += f"      {yt}* __restrict yh = {cg.ptr(y)} + {cpp_sum([mul('b', y_st[0]), mul('h', y_st[1])])};\n"
    code += f"      for (int64_t i0 = 0; i0 < {Sq}; i0 += {QBc}) {{\n"
    code += f"        const int64_t rows = std::min<int64_t>({QBc}, {Sq} - i0);\n"
    # scores
    qs = D.cpp(q_st[2])
    if blas:
        code += (
            "        if (use_blas) {\n"
            "#ifndef ML4EP_NO_BLAS\n"
            f"          ML4EP_CBLAS_SGEMM(101, 111, 112, int(rows), int({T}), int({Dk}), scale, qh + i0 * {qs}, "
            f"int({qs}), kb, int({D.cpp(k_st[2])}), 0.0f, sc, int({T}));\n"
            "#endif\n"
            "        } else {\n"
        )
    else:
        code += "        {\n"
    code += (
        "          for (int64_t ii = 0; ii < rows; ++ii) {\n"
        f"            {ft}* __restrict srow = sc + ii * {T};\n"
        f"            const {qt}* __restrict qr = qh + (i0 + ii) * {qs};\n"
        f"            for (int64_t j = 0; j < {T}; ++j) srow[j] = 0;\n"
        # four key dimensions per pass over the row (as ml4ep_rt::gemv): a quarter of the row traffic
        "            int64_t d = 0;\n"
        f"            for (; d + 4 <= {Dk}; d += 4) {{\n"
        f"              const {ft} q0 = scale * static_cast<{ft}>(qr[d]), q1 = scale * static_cast<{ft}>(qr[d + 1]);\n"
        f"              const {ft} q2 = scale * static_cast<{ft}>(qr[d + 2]), q3 = scale * static_cast<{ft}>(qr[d + 3]);\n"
        f"              const {ft}* __restrict k0 = kt + d * {T};\n"
        f"              const {ft}* __restrict k1 = k0 + {T};\n"
        f"              const {ft}* __restrict k2 = k1 + {T};\n"
        f"              const {ft}* __restrict k3 = k2 + {T};\n"
        f"              for (int64_t j = 0; j < {T}; ++j) srow[j] += q0 * k0[j] + q1 * k1[j] + q2 * k2[j] + q3 * k3[j];\n"
        "            }\n"
        f"            for (; d < {Dk}; ++d) {{\n"
        f"              const {ft} qd = scale * static_cast<{ft}>(qr[d]);\n"
        f"              const {ft}* __restrict kr = kt + d * {T};\n"
        f"              for (int64_t j = 0; j < {T}; ++j) srow[j] += qd * kr[j];\n"
        "            }\n"
        "          }\n"
        "        }\n"
    )
    # per row: softcap, bias, softmax
    code += "        for (int64_t ii = 0; ii < rows; ++ii) {\n"
    code += "          const int64_t i = i0 + ii;\n          (void)i;\n"
    code += f"          {ft}* __restrict srow = sc + ii * {T};\n"
    ind = "          "
    if qk_out:
        qkt = cg.ctype(qk_out)
        code += f"{ind}{qkt}* __restrict qkr = {cg.ptr(qk_out)} + ((b * {a.hq} + h) * {Sq} + i) * {T};\n"
    qk_copy = f"{ind}for (int64_t j = 0; j < {T}; ++j) qkr[j] = static_cast<{qkt if qk_out else ''}>(srow[j]);\n"
    if qk_out and mode == 0:  # the raw product (as the specification and onnxruntime; the reference soft-caps it)
        code += qk_copy
    if softcap > 0:
        c = literal(softcap, ft)
        th = "ml4ep_rt::tanhf" if ft == "float" else "std::tanh"
        code += f"{ind}for (int64_t j = 0; j < {T}; ++j) srow[j] = {c} * {th}(srow[j] / {c});\n"
    if qk_out and mode == 1:
        code += qk_copy
    # allowed key range [jlo, jhi) from the causal / window frontiers and the padding
    if limit_rows:
        code += f"{ind}int64_t jlo = 0, jhi = {T};\n"
        if a.nonpad:
            code += f"{ind}jhi = std::min<int64_t>(jhi, nvalid);\n"
        if causal:
            code += f"{ind}jhi = std::min<int64_t>(jhi, i + off + 1);\n"
        if right >= 0:
            code += f"{ind}jhi = std::min<int64_t>(jhi, i + off + {right} + 1);\n"
        if left >= 0:
            code += f"{ind}jlo = std::max<int64_t>(jlo, i + off - {left});\n"
        code += f"{ind}jhi = std::max<int64_t>(jhi, int64_t(0));\n{ind}jlo = std::min<int64_t>(jlo, jhi);\n"
        code += f"{ind}for (int64_t j = 0; j < jlo; ++j) srow[j] = {ninf};\n"
        code += f"{ind}for (int64_t j = jhi; j < {T}; ++j) srow[j] = {ninf};\n"
    else:
        code += f"{ind}const int64_t jlo = 0, jhi = {T};\n"
    if a.mask:
        mlen_c = D.cpp(mlen)
        moff = cpp_sum([mul("b", m_b), mul("h", m_h), mul("i", m_s)])
        code += f"{ind}const {cg.ctype(a.mask)}* __restrict mr = mk + {moff};\n"
        code += f"{ind}const int64_t mhi = std::min<int64_t>(jhi, {mlen_c});\n"
        code += f"{ind}for (int64_t j = std::max<int64_t>(mhi, jlo); j < jhi; ++j) srow[j] = {ninf};\n"
        code += f"{ind}int64_t allowed = 0;\n"
        if mask_dt == np.bool_:
            code += (f"{ind}for (int64_t j = jlo; j < mhi; ++j) {{ allowed += mr[j] ? 1 : 0; "
                     f"srow[j] = mr[j] ? srow[j] : {ninf}; }}\n")
        else:
            code += (f"{ind}for (int64_t j = jlo; j < mhi; ++j) {{ const {ft} m = static_cast<{ft}>(mr[j]); "
                     f"allowed += m == {ninf} ? 0 : 1; srow[j] += m; }}\n")
    else:
        code += f"{ind}const int64_t allowed = jhi - jlo;\n"
    if qk_out and mode == 2:
        code += qk_copy
    # softmax with the maximum subtracted; a row with no allowed key is zero
    ex = "ml4ep_rt::expf" if ft == "float" else "std::exp"
    # the row is left unnormalised when only Y needs it: Y's row is scaled instead (Dv values, not T)
    defer = not (qk_out and mode == 3)
    L = LANES
    code += f"{ind}if (allowed > 0) {{\n"
    code += _lane_reduce("mx", ft, T, lambda j: f"srow[{j}]", _max, ninf, ind + "  ")
    code += (
        f"{ind}  if (mx == {ninf}) mx = 0;\n"
        f"{ind}  {ft} sm_l[{L}];\n"
        f"{ind}  for (int l = 0; l < {L}; ++l) sm_l[l] = 0;\n"
        f"{ind}  int64_t j = 0;\n"
        f"{ind}  for (; j + {L} <= {T}; j += {L})\n"
        f"{ind}    for (int l = 0; l < {L}; ++l) {{ const {ft} e = {ex}(srow[j + l] - mx); srow[j + l] = e; "
        "sm_l[l] += e; }\n"
        + _fold_lanes("sm_l", _add, ind + "  ")
        + f"{ind}  {ft} sm = sm_l[0];\n"
        f"{ind}  for (; j < {T}; ++j) {{ const {ft} e = {ex}(srow[j] - mx); srow[j] = e; sm += e; }}\n"
        f"{ind}  const {ft} inv = sm == 0 ? {ft}(1) : {ft}(1) / sm;\n"
    )
    if defer:
        code += f"{ind}  rinv[ii] = inv;\n"
    else:
        code += f"{ind}  for (int64_t j = 0; j < {T}; ++j) srow[j] *= inv;\n"
    code += f"{ind}}} else {{\n{ind}  for (int64_t j = 0; j < {T}; ++j) srow[j] = 0;\n"
    code += f"{ind}  rinv[ii] = 0;\n" if defer else ""
    code += f"{ind}}}\n"
    if qk_out and mode == 3:
        code += qk_copy
    code += "        }\n"
    # Y = P V
    if y:
        ys = D.cpp(y_st[2])
        vs = D.cpp(v_st[2])
        if blas:
            code += (
                "        if (use_blas) {\n"
                "#ifndef ML4EP_NO_BLAS\n"
                f"          ML4EP_CBLAS_SGEMM(101, 111, 111, int(rows), int({Dv}), int({T}), 1.0f, sc, int({T}), "
                f"vb, int({vs}), 0.0f, yh + i0 * {ys}, int({ys}));\n"
                + (f"          for (int64_t ii = 0; ii < rows; ++ii)\n"
                   f"            for (int64_t d = 0; d < {Dv}; ++d) yh[(i0 + ii) * {ys} + d] *= rinv[ii];\n"
                   if defer else "")
                + "#endif\n"
                "        } else {\n"
            )
        else:
            code += "        {\n"
        code += (
            "          for (int64_t ii = 0; ii < rows; ++ii) {\n"
            f"            const {ft}* __restrict prow = sc + ii * {T};\n"
            f"            for (int64_t d = 0; d < {Dv}; ++d) acc[d] = 0;\n"
            "            int64_t j = 0;\n"
            f"            for (; j + 4 <= {T}; j += 4) {{\n"
            f"              const {ft} p0 = prow[j], p1 = prow[j + 1], p2 = prow[j + 2], p3 = prow[j + 3];\n"
            f"              const {vt}* __restrict v0 = vb + {mul('j', v_st[2])};\n"
            f"              const {vt}* __restrict v1 = v0 + {vs};\n"
            f"              const {vt}* __restrict v2 = v1 + {vs};\n"
            f"              const {vt}* __restrict v3 = v2 + {vs};\n"
            f"              for (int64_t d = 0; d < {Dv}; ++d)\n"
            f"                acc[d] += p0 * static_cast<{ft}>(v0[d]) + p1 * static_cast<{ft}>(v1[d]) + "
            f"p2 * static_cast<{ft}>(v2[d]) + p3 * static_cast<{ft}>(v3[d]);\n"
            "            }\n"
            f"            for (; j < {T}; ++j) {{\n"
            f"              const {ft} p = prow[j];\n"
            f"              const {vt}* __restrict vr = vb + {mul('j', v_st[2])};\n"
            f"              for (int64_t d = 0; d < {Dv}; ++d) acc[d] += p * static_cast<{ft}>(vr[d]);\n"
            "            }\n"
            f"            {yt}* __restrict yr = yh + (i0 + ii) * {ys};\n"
            + (f"            const {ft} rs = rinv[ii];\n"
               f"            for (int64_t d = 0; d < {Dv}; ++d) yr[d] = static_cast<{yt}>(acc[d] * rs);\n" if defer else
               f"            for (int64_t d = 0; d < {Dv}; ++d) yr[d] = static_cast<{yt}>(acc[d]);\n")
            + "          }\n"
            "        }\n"
        )
    code += "      }\n    }\n  }\n}\n"
    return code


def _copy_kv_named(cg: "Emitter", a: _Att, src: str, past: str, dst_expr: str, d: D.DimLike, strides) -> str:
    """dst_expr (b, hkv, t, d) = concat(past, rows of src with ``strides``) along the sequence axis."""
    sb, sh, ss = strides
    ct = cg.ctype(src)
    row = f"sizeof({ct}) * size_t({D.cpp(d)})"
    code = (
        f"for (int64_t b = 0; b < {D.cpp(a.b)}; ++b)\n"
        f"  for (int64_t h = 0; h < {a.hkv}; ++h) {{\n"
        f"    {ct}* __restrict dst = {dst_expr} + (b * {a.hkv} + h) * {D.cpp(D.norm(a.t * d))};\n"
    )
    if past:
        code += (
            f"    std::memcpy(dst, {cg.ptr(past)} + (b * {a.hkv} + h) * {D.cpp(D.norm(a.sp * d))}, "
            f"{row} * size_t({D.cpp(a.sp)}));\n"
            f"    dst += {D.cpp(D.norm(a.sp * d))};\n"
        )
    src_off = cpp_sum([mul("b", sb), mul("h", sh)])
    if ss == d:  # the new rows are contiguous
        code += f"    std::memcpy(dst, {cg.ptr(src)} + {src_off}, {row} * size_t({D.cpp(a.skv)}));\n"
    else:
        code += (
            f"    for (int64_t j = 0; j < {D.cpp(a.skv)}; ++j)\n"
            f"      std::memcpy(dst + j * {D.cpp(d)}, {cg.ptr(src)} + {src_off} + j * {D.cpp(ss)}, {row});\n"
        )
    return code + "  }\n"


# ------------------------------------------------------------------------------------------------------
# CUDA: one thread per query row (batch, head, row). A first pass over the keys finds the row's maximum score (and
# writes qk_matmul_output for modes 0-2); a second computes the exponentials, their sum and the unnormalised
# P V (in a local array for a static value head size up to ACC_MAX, else in Y's row), scaled by 1 / sum at the end.
# The scores are computed twice instead of being kept: no scratch of the key length per thread.

# the largest static value head size accumulated in registers (a local array) instead of in Y's row
ACC_MAX = 64


def _copy_kv_cuda(cg: "Emitter", a: _Att, src: str, past: str, dst: str, d: D.DimLike, strides) -> str:
    """dst (b, hkv, t, d) = concat(past, rows of src with ``strides``) along the sequence axis: one thread per
    element."""
    sb, sh, ss = strides
    Dd, T = D.cpp(d), D.cpp(a.t)
    body = (
        f"const int64_t dd = i % {Dd};\n"
        f"const int64_t j = (i / {Dd}) % {T};\n"
        f"const int64_t bh = i / ({Dd} * {T});\n"
    )
    new = (f"{cg.ptr(src)}[{cpp_sum([mul('(bh / ' + str(a.hkv) + ')', sb), mul('(bh % ' + str(a.hkv) + ')', sh)])}"
           f" + {mul('(j - ' + D.cpp(a.sp) + ')' if past else 'j', ss)} + dd]")
    if past:
        body += (f"{dst}[i] = j < {D.cpp(a.sp)} ? {cg.ptr(past)}[(bh * {D.cpp(a.sp)} + j) * {Dd} + dd] : {new};\n")
    else:
        body += f"{dst}[i] = {new};\n"
    return cg.par_for("i", D.norm(a.b * a.hkv * a.t * d), body)


def _emit_attention_cuda(node: "Node", cg: "Emitter") -> str:
    a = _att_plan(node, cg.g)
    qn, kn, vn = node.inputs[:3]
    y, pres_k, pres_v, qk_out = (_out(node, i) for i in range(4))
    qt, kt, vt = cg.ctype(qn), cg.ctype(kn), cg.ctype(vn)
    ft = _acc_type(cg.dtype(qn), cg.dtype(kn), cg.dtype(vn))
    ninf = literal(-np.inf, ft)
    mode, softcap, causal, left, right = _att_options(node)
    T, Sq, Dk, Dv = D.cpp(a.t), D.cpp(a.sq), D.cpp(a.dk), D.cpp(a.dv)
    reps = a.hq // a.hkv
    q_st = _strides4(a, a.rank3, a.hq, a.sq, a.dk)
    y_st = _strides4(a, a.rank3, a.hq, a.sq, a.dv)
    k_st = _strides4(a, a.rank3, a.hkv, a.skv, a.dk)
    v_st = _strides4(a, a.rank3, a.hkv, a.skv, a.dv)
    code = f"const {ft} scale = static_cast<{ft}>({_scale(node, a, cg.dtype(qn))});\n"
    kp, vp = cg.ptr(kn), cg.ptr(vn)
    if a.past_k:  # keys and values with their past: into the present outputs, or scratch
        kp = cg.ptr(pres_k) if pres_k else cg.workspace(3, kt)
        vp = cg.ptr(pres_v) if pres_v else cg.workspace(4, vt)
        code += _copy_kv_cuda(cg, a, kn, a.past_k, kp, a.dk, k_st)
        code += _copy_kv_cuda(cg, a, vn, a.past_v, vp, a.dv, v_st)
        k_st = (D.norm(a.hkv * a.t * a.dk), D.norm(a.t * a.dk), a.dk)
        v_st = (D.norm(a.hkv * a.t * a.dv), D.norm(a.t * a.dv), a.dv)
    else:
        if pres_k:
            code += _copy_kv_cuda(cg, a, kn, "", cg.ptr(pres_k), a.dk, k_st)
        if pres_v:
            code += _copy_kv_cuda(cg, a, vn, "", cg.ptr(pres_v), a.dv, v_st)
    if not y and not qk_out:
        return code
    body = (
        f"const int64_t i = n % {Sq};\n"
        f"const int64_t h = (n / {Sq}) % {a.hq};\n"
        f"const int64_t b = n / ({Sq} * {a.hq});\n"
        f"const int64_t hk = h / {reps};\n"
        f"const {qt}* __restrict qr = {cg.ptr(qn)} + {cpp_sum([mul('b', q_st[0]), mul('h', q_st[1]), mul('i', q_st[2])])};\n"
        f"const {kt}* __restrict kb = {kp} + {cpp_sum([mul('b', k_st[0]), mul('hk', k_st[1])])};\n"
    )
    if a.nonpad:
        body += f"const int64_t nvalid = static_cast<int64_t>({cg.ptr(a.nonpad)}[b]);\n"
    if causal or left >= 0 or right >= 0:  # the query rows' offset in the keys
        body += f"const int64_t off = {'nvalid - ' + Sq if a.nonpad else D.cpp(a.sp)};\n"
    # the allowed key range [jlo, jhi) from the causal / window frontiers and the padding
    body += f"int64_t jlo = 0, jhi = {T};\n"
    if a.nonpad:
        body += "jhi = std::min<int64_t>(jhi, nvalid);\n"
    if causal:
        body += "jhi = std::min<int64_t>(jhi, i + off + 1);\n"
    if right >= 0:
        body += f"jhi = std::min<int64_t>(jhi, i + off + {right} + 1);\n"
    if left >= 0:
        body += f"jlo = std::max<int64_t>(jlo, i + off - {left});\n"
    body += "jhi = std::max<int64_t>(jhi, int64_t(0));\njlo = std::min<int64_t>(jlo, jhi);\n"
    mask_dt = cg.dtype(a.mask) if a.mask else None
    if a.mask:
        ms = list(cg.shape(a.mask))
        pad = [1] * (4 - len(ms)) + ms
        st: list[D.DimLike] = []
        acc_st: D.DimLike = 1
        for m in reversed(pad):
            st.insert(0, 0 if m == 1 else acc_st)
            acc_st = D.norm(acc_st * m)
        moff = cpp_sum([mul("b", st[0]), mul("h", st[1]), mul("i", st[2])])
        body += f"const {cg.ctype(a.mask)}* __restrict mr = {cg.ptr(a.mask)} + {moff};\n"
        body += f"const int64_t mhi = std::min<int64_t>(jhi, {D.cpp(ms[-1])});\n"
    if qk_out:
        qkt = cg.ctype(qk_out)
        body += f"{qkt}* __restrict qkr = {cg.ptr(qk_out)} + n * {T};\n"

    def score(ind: str, first: bool) -> str:
        """Statements giving ``s``, the masked score of key j (pass 1 also writes modes 0-2 and counts)."""
        c = (f"{ind}const {kt}* __restrict kr = kb + {mul('j', k_st[2])};\n"
             f"{ind}{ft} s = 0;\n"
             f"{ind}for (int64_t d = 0; d < {Dk}; ++d) s += scale * static_cast<{ft}>(qr[d]) * static_cast<{ft}>(kr[d]);\n")
        if first and qk_out and mode == 0:
            c += f"{ind}qkr[j] = static_cast<{qkt}>(s);\n"
        if softcap > 0:
            sc_ = literal(softcap, ft)
            th = "ml4ep_rt::tanhf" if ft == "float" else "std::tanh"
            c += f"{ind}s = {sc_} * {th}(s / {sc_});\n"
        if first and qk_out and mode == 1:
            c += f"{ind}qkr[j] = static_cast<{qkt}>(s);\n"
        if a.mask:
            c += f"{ind}if (j < jlo || j >= mhi) {{\n{ind}  s = {ninf};\n{ind}}} else {{\n"
            if mask_dt == np.bool_:
                c += f"{ind}  if (!mr[j]) s = {ninf};\n"
                if first:
                    c += f"{ind}  else ++allowed;\n"
            else:
                c += f"{ind}  const {ft} m = static_cast<{ft}>(mr[j]);\n{ind}  s += m;\n"
                if first:
                    c += f"{ind}  allowed += m == {ninf} ? 0 : 1;\n"
            c += f"{ind}}}\n"
        else:
            c += f"{ind}if (j < jlo || j >= jhi) s = {ninf};\n"
        if first and qk_out and mode == 2:
            c += f"{ind}qkr[j] = static_cast<{qkt}>(s);\n"
        return c

    ex = "ml4ep_rt::expf" if ft == "float" else "std::exp"
    body += "int64_t allowed = 0;\n" if a.mask else "const int64_t allowed = jhi - jlo;\n"
    body += f"{ft} mx = {ninf};\n"
    body += f"for (int64_t j = 0; j < {T}; ++j) {{\n" + score("  ", True) + "  mx = std::max(mx, s);\n}\n"
    local = bool(y) and D.is_static(a.dv) and 0 < int(a.dv) <= ACC_MAX
    if y:
        yt = cg.ctype(y)
        body += f"{yt}* __restrict yr = {cg.ptr(y)} + {cpp_sum([mul('b', y_st[0]), mul('h', y_st[1]), mul('i', y_st[2])])};\n"
        body += f"const {vt}* __restrict vb = {vp} + {cpp_sum([mul('b', v_st[0]), mul('hk', v_st[1])])};\n"
        acc = "acc" if local else "yr"
        if local:
            body += f"{ft} acc[{Dv}];\n"
        body += f"for (int64_t d = 0; d < {Dv}; ++d) {acc}[d] = 0;\n"
    body += "if (allowed > 0) {\n"
    body += f"  if (mx == {ninf}) mx = 0;\n  {ft} sm = 0;\n"
    body += f"  for (int64_t j = 0; j < {T}; ++j) {{\n" + score("    ", False)
    body += f"    const {ft} e = {ex}(s - mx);\n    sm += e;\n"
    if qk_out and mode == 3:
        body += f"    qkr[j] = static_cast<{qkt}>(e);\n"
    if y:
        body += (f"    const {vt}* __restrict vr = vb + {mul('j', v_st[2])};\n"
                 f"    for (int64_t d = 0; d < {Dv}; ++d) {acc}[d] += e * static_cast<{ft}>(vr[d]);\n")
    body += "  }\n"
    body += f"  const {ft} inv = sm == 0 ? {ft}(1) : {ft}(1) / sm;\n"
    if qk_out and mode == 3:
        body += f"  for (int64_t j = 0; j < {T}; ++j) qkr[j] = static_cast<{qkt}>(static_cast<{ft}>(qkr[j]) * inv);\n"
    if y:
        body += f"  for (int64_t d = 0; d < {Dv}; ++d) yr[d] = static_cast<{yt}>({acc}[d] * inv);\n"
    body += "}"
    if (y and local) or (qk_out and mode == 3):
        body += " else {\n"
        if y and local:
            body += f"  for (int64_t d = 0; d < {Dv}; ++d) yr[d] = static_cast<{yt}>(0);\n"
        if qk_out and mode == 3:
            body += f"  for (int64_t j = 0; j < {T}; ++j) qkr[j] = static_cast<{qkt}>(0);\n"
        body += "}"
    body += "\n"
    return code + cg.par_for("n", D.norm(a.b * a.hq * a.sq), body)


register("Attention", infer=_infer_attention, emit=_emit_attention, check=_check_attention, workspace=_att_ws,
         cuda=_emit_attention_cuda)


# ------------------------------------------------------------------------------------------------------
# RotaryEmbedding


@dataclass
class _Rot:
    rank3: bool
    b: D.DimLike
    h: int
    s: D.DimLike
    d: D.DimLike
    rd: int  # rotated width
    pos: str


def _rot_plan(node: "Node", g: "Graph") -> _Rot:
    x = g.t(node.inputs[0])
    cos, sin = g.t(node.inputs[1]), g.t(node.inputs[2])
    pos = node.input(3)
    if x.rank == 4:
        b, h, s, d = x.shape
        if not D.is_static(h):
            raise node_error(node, "the number of heads must be static")
        h = int(h)
    elif x.rank == 3:
        nh = int(node.attr("num_heads", 0) or 0)
        if nh <= 0:
            raise node_error(node, "a 3-D input needs the attribute num_heads")
        b, s, hidden = x.shape
        try:
            d = D.norm(hidden // nh)
        except D.SymbolicError:
            d = None
        if d is None or D.norm(d * nh) != hidden:
            raise node_error(node, f"hidden size {D.fmt(hidden)} does not divide by num_heads={nh}")
        h = nh
    else:
        raise node_error(node, f"input must be 3-D or 4-D, got {D.fmt_shape(x.shape)}")
    rd_attr = int(node.attr("rotary_embedding_dim", 0) or 0)
    if rd_attr == 0 and not D.is_static(d):
        raise node_error(node, "the head size must be static")
    rd = rd_attr or int(d)
    if rd % 2 or (D.is_static(d) and rd > int(d)):
        raise node_error(node, f"rotary_embedding_dim {rd} must be even and at most the head size {D.fmt(d)}")
    half = rd // 2
    for what, c in (("cos_cache", cos), ("sin_cache", sin)):
        want = "(max_position, rotary_dim / 2)" if pos else "(batch, sequence, rotary_dim / 2)"
        ok = (c.rank == 2 and c.shape[1] == half) if pos else (c.rank == 3 and tuple(c.shape) == (b, s, half))
        if not ok:
            raise node_error(node, f"{what} has shape {D.fmt_shape(c.shape)}, expected {want} with rotary_dim {rd}")
    if cos.shape != sin.shape:
        raise node_error(node, f"cos_cache {D.fmt_shape(cos.shape)} and sin_cache {D.fmt_shape(sin.shape)} differ")
    if pos:
        ps = g.t(pos).shape
        if tuple(ps) != (b, s):
            raise node_error(node, f"position_ids has shape {D.fmt_shape(ps)}, expected ({D.fmt(b)}, {D.fmt(s)})")
    return _Rot(x.rank == 3, b, h, s, d, rd, pos)


def _check_rot(node: "Node", g: "Graph") -> str | None:
    for i, what in ((0, "input"), (1, "cos_cache"), (2, "sin_cache")):
        t = g.tensors.get(node.inputs[i])
        if t is not None and not is_float(t.dtype):
            return f"{what} has dtype {t.dtype} (floating point expected)"
    p = node.input(3)
    if p and p in g.tensors and g.tensors[p].dtype.kind not in "iu":
        return f"position_ids has dtype {g.tensors[p].dtype} (integer expected)"
    return None


def _infer_rot(node: "Node", g: "Graph"):
    _rot_plan(node, g)
    x = g.t(node.inputs[0])
    return [(x.dtype, x.shape)]


def _emit_rot(node: "Node", cg: "Emitter") -> str:
    r = _rot_plan(node, cg.g)
    x, c, s_, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    xt, ct = cg.ctype(x), cg.ctype(c)
    ft = _acc_type(cg.dtype(x), cg.dtype(c))
    half = r.rd // 2
    B, S, Dh = D.cpp(r.b), D.cpp(r.s), D.cpp(r.d)
    code = f"const {ct}* __restrict cosc = {cg.ptr(c)};\nconst {ct}* __restrict sinc = {cg.ptr(s_)};\n"
    if r.pos:
        n_pos = D.cpp(cg.shape(c)[0])
        msg = string(f"node '{node.name}' (RotaryEmbedding): position id out of range")
        code += f"const {cg.ctype(r.pos)}* __restrict pos = {cg.ptr(r.pos)};\n"
        row = (
            "    const int64_t p = static_cast<int64_t>(pos[b * " + S + " + s]);\n"
            f"    if (p < 0 || p >= {n_pos}) throw std::out_of_range({msg});\n"
            f"    const {ct}* __restrict cr = cosc + p * {half};\n"
            f"    const {ct}* __restrict sr = sinc + p * {half};\n"
        )
    else:
        row = (
            f"    const {ct}* __restrict cr = cosc + (b * {S} + s) * {half};\n"
            f"    const {ct}* __restrict sr = sinc + (b * {S} + s) * {half};\n"
        )
    if r.rank3:
        xoff = f"(b * {S} + s) * {D.cpp(D.norm(r.h * r.d))} + h * {Dh}"
    else:
        xoff = f"((b * {r.h} + h) * {S} + s) * {Dh}"
    interleaved = bool(int(node.attr("interleaved", 0) or 0))
    i1, i2 = ("2 * k", "2 * k + 1") if interleaved else ("k", f"k + {half}")
    code += (
        f"for (int64_t b = 0; b < {B}; ++b)\n"
        f"  for (int64_t s = 0; s < {S}; ++s) {{\n"
        + row
        + f"    for (int64_t h = 0; h < {r.h}; ++h) {{\n"
        f"      const {xt}* __restrict xr = {cg.ptr(x)} + {xoff};\n"
        f"      {xt}* __restrict yr = {cg.ptr(y)} + {xoff};\n"
        f"      for (int64_t k = 0; k < {half}; ++k) {{\n"
        f"        const {ft} cv = static_cast<{ft}>(cr[k]), sv = static_cast<{ft}>(sr[k]);\n"
        f"        const {ft} x1 = static_cast<{ft}>(xr[{i1}]), x2 = static_cast<{ft}>(xr[{i2}]);\n"
        f"        yr[{i1}] = static_cast<{xt}>(cv * x1 - sv * x2);\n"
        f"        yr[{i2}] = static_cast<{xt}>(sv * x1 + cv * x2);\n"
        "      }\n"
        f"      for (int64_t k = {r.rd}; k < {Dh}; ++k) yr[k] = xr[k];\n"
        "    }\n  }\n"
    )
    return code


def _emit_rot_cuda(node: "Node", cg: "Emitter") -> str:
    """One thread per output element: the rotated pair it belongs to (or a copy beyond the rotated width). A
    position id out of range throws in the host build (as the CPU code) and gives a zero rotation on the GPU."""
    r = _rot_plan(node, cg.g)
    x, c, s_, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    xt = cg.ctype(x)
    ft = _acc_type(cg.dtype(x), cg.dtype(c))
    half = r.rd // 2
    S, Dh = D.cpp(r.s), D.cpp(r.d)
    xp, yp = cg.ptr(x), cg.ptr(y)
    body = f"const int64_t e = t % {Dh};\n"
    if r.rank3:
        body += f"const int64_t bs = t / {D.cpp(D.norm(r.h * r.d))};\n"
    else:
        body += f"const int64_t bs = (t / {D.cpp(D.norm(r.h * r.s * r.d))}) * {S} + (t / {Dh}) % {S};\n"
    interleaved = bool(int(node.attr("interleaved", 0) or 0))
    if interleaved:
        body += ("const bool first = e % 2 == 0;\nconst int64_t k = e / 2;\n"
                 "const int64_t i1 = t - e + 2 * k, i2 = i1 + 1;\n")
    else:
        body += (f"const bool first = e < {half};\nconst int64_t k = first ? e : e - {half};\n"
                 f"const int64_t i1 = t - e + k, i2 = i1 + {half};\n")
    if r.pos:
        n_pos = D.cpp(cg.shape(c)[0])
        msg = f"node '{node.name}' (RotaryEmbedding): position id out of range"
        body += (
            f"const int64_t p = static_cast<int64_t>({cg.ptr(r.pos)}[bs]);\n"
            f"if (p < 0 || p >= {n_pos}) {cg.kernel_error(msg)}\n"
            f"const bool ok = p >= 0 && p < {n_pos};\n"
            f"const int64_t cs = ok ? p * {half} + k : 0;\n"
        )
        cv = f"ok ? static_cast<{ft}>({cg.ptr(c)}[cs]) : {ft}(0)"
        sv = f"ok ? static_cast<{ft}>({cg.ptr(s_)}[cs]) : {ft}(0)"
    else:
        body += f"const int64_t cs = bs * {half} + k;\n"
        cv, sv = f"static_cast<{ft}>({cg.ptr(c)}[cs])", f"static_cast<{ft}>({cg.ptr(s_)}[cs])"
    body += (
        f"if (e >= {r.rd}) {{\n  {yp}[t] = {xp}[t];\n}} else {{\n"
        f"  const {ft} cv = {cv}, sv = {sv};\n"
        f"  const {ft} x1 = static_cast<{ft}>({xp}[i1]), x2 = static_cast<{ft}>({xp}[i2]);\n"
        f"  {yp}[t] = static_cast<{xt}>(first ? cv * x1 - sv * x2 : sv * x1 + cv * x2);\n"
        "}\n"
    )
    return cg.par_for("t", cg.numel(x), body)


register("RotaryEmbedding", infer=_infer_rot, emit=_emit_rot, check=_check_rot, cuda=_emit_rot_cuda)


# ------------------------------------------------------------------------------------------------------
# RMSNormalization


def _strip(shape) -> tuple:
    k = 0
    while k < len(shape) and shape[k] == 1:
        k += 1
    return tuple(shape[k:])


def _rms_axis(node: "Node", rank: int) -> int:
    return norm_axis(node, int(node.attr("axis", -1)), rank)


def _check_rms(node: "Node", g: "Graph") -> str | None:
    for i, what in ((0, "X"), (1, "scale")):
        t = g.tensors.get(node.inputs[i])
        if t is not None and not is_float(t.dtype):
            return f"{what} has dtype {t.dtype} (floating point expected)"
    st = int(node.attr("stash_type", 1))
    if st not in (1, 11):
        return f"stash_type={st} is not supported (1: float, 11: double)"
    return None


def _infer_rms(node: "Node", g: "Graph"):
    x = g.t(node.inputs[0])
    axis = _rms_axis(node, x.rank)
    norm_shape = tuple(x.shape[axis:])
    ws = _strip(g.t(node.inputs[1]).shape)
    ok = len(ws) <= len(norm_shape) and all(
        w == 1 or w == n for w, n in zip(reversed(ws), reversed(norm_shape)))
    if not ok:
        raise node_error(node, f"scale of shape {D.fmt_shape(g.t(node.inputs[1]).shape)} does not broadcast to the "
                         f"normalised shape {D.fmt_shape(norm_shape)}")
    return [(x.dtype, x.shape)]


def _emit_rms(node: "Node", cg: "Emitter") -> str:
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    shape = cg.shape(x)
    axis = _rms_axis(node, len(shape))
    norm_shape = tuple(shape[axis:])
    outer, ext = D.prod(shape[:axis]), D.prod(norm_shape)
    xt = cg.ctype(x)
    ft = "double" if int(node.attr("stash_type", 1)) == 11 or cg.dtype(x) == np.float64 else "float"
    eps = float(node.attr("epsilon", 1e-5))
    n = literal(int(ext), ft) if D.is_static(ext) else f"static_cast<{ft}>({D.cpp(ext)})"
    wv = cg.const(w)
    wshape = tuple(cg.shape(w))
    code = ""
    inner = ""
    if wv is not None and D.shape_static(norm_shape):
        full = np.broadcast_to(np.asarray(wv).reshape(_strip(wv.shape)).astype(np.float64),
                               tuple(int(d) for d in norm_shape))
        if not np.all(full == 1.0):
            wp = cg.weight(np.ascontiguousarray(full, dtype=np.float64 if ft == "double" else np.float32)
                           .reshape(-1), f"{node.name}.scale")
            code += f"const {ft}* __restrict wr = {wp};\n"
            inner = " * wr[r]"
        body = (f"  for (int64_t r = 0; r < {D.cpp(ext)}; ++r) "
                f"yr[r] = static_cast<{xt}>(static_cast<{ft}>(xr[r]) * inv{inner});\n")
    elif D.prod(_strip(wshape)) == ext:
        code += f"const {cg.ctype(w)}* __restrict wr = {cg.ptr(w)};\n"
        body = (f"  for (int64_t r = 0; r < {D.cpp(ext)}; ++r) "
                f"yr[r] = static_cast<{xt}>(static_cast<{ft}>(xr[r]) * inv * static_cast<{ft}>(wr[r]));\n")
    else:  # a run-time scale broadcast within the normalised block
        code += f"const {cg.ctype(w)}* __restrict wr = {cg.ptr(w)};\n"
        extents, (st_x, st_w) = broadcast_index_plan(norm_shape, [norm_shape, _strip(wshape)])
        idx = [f"k{i}" for i in range(len(extents))]
        body = ""
        for i, e in enumerate(extents):
            body += "  " * (i + 1) + f"for (int64_t {idx[i]} = 0; {idx[i]} < {D.cpp(e)}; ++{idx[i]}) {{\n"
        xo = cpp_sum([mul(idx[i], s) for i, s in enumerate(st_x)])
        wo = cpp_sum([mul(idx[i], s) for i, s in enumerate(st_w)])
        body += ("  " * (len(extents) + 1) + f"yr[{xo}] = static_cast<{xt}>(static_cast<{ft}>(xr[{xo}]) * inv * "
                 f"static_cast<{ft}>(wr[{wo}]));\n")
        for i in range(len(extents) - 1, -1, -1):
            body += "  " * (i + 1) + "}\n"
    square = lambda r: f"static_cast<{ft}>(xr[{r}]) * static_cast<{ft}>(xr[{r}])"  # noqa: E731
    if cg.device != "cpu":  # one thread per row, the scale pointer declared in it
        return cg.par_for("o", outer, (
            code
            + f"const {xt}* __restrict xr = {cg.ptr(x)} + {mul('o', ext)};\n"
            f"{xt}* __restrict yr = {cg.ptr(y)} + {mul('o', ext)};\n"
            f"{ft} ss = 0;\n"
            f"for (int64_t r = 0; r < {D.cpp(ext)}; ++r) ss += {square('r')};\n"
            f"const {ft} inv = {ft}(1) / std::sqrt(ss / {n} + {literal(eps, ft)});\n"
            + body))
    code += (
        f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n"
        f"  const {xt}* __restrict xr = {cg.ptr(x)} + {mul('o', ext)};\n"
        f"  {xt}* __restrict yr = {cg.ptr(y)} + {mul('o', ext)};\n"
        + row_reduce("ss", ft, ext, square, _add, "0", "  ")
        + f"  const {ft} inv = {ft}(1) / std::sqrt(ss / {n} + {literal(eps, ft)});\n"
        + body
        + "}\n"
    )
    return code


register("RMSNormalization", infer=_infer_rms, emit=_emit_rms, check=_check_rms, cuda=True)
