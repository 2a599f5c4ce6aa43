"""Recurrent layers: LSTM, GRU and RNN (ONNX semantics, every direction, layout 0 and 1, optional inputs and
outputs, activations with their alpha/beta, clip, GRU ``linear_before_reset``, LSTM peepholes and
``input_forget``).

Per direction the weights are prepared once as row-major ``(K, N)`` matrices: ``W^T`` (input, gates*hidden),
``R^T`` (hidden, gates*hidden; for GRU two blocks, update/reset gates then the hidden gate) and one bias row
(``Wb + Rb`` wherever the two only add up, plus GRU's ``Rbh`` when it is applied before the reset gate).
Constant weights are prepared at compile time and stored in the weights file; weights given at run time are
prepared into the workspace at the start of each call. The input projection of all time steps is then one
matrix product (``seq * batch`` rows); each time step adds one product of the hidden state with ``R^T``
(a streaming ``gemv`` specialised for the sizes up to 8 rows, BLAS above) and one elementwise pass over the
gates. Rows past their ``sequence_lens`` keep their state and write zeros to ``Y``.

Arithmetic is done in ``float`` (``double`` for float64); elements are read and written through the
tensors' own C++ types.

On CUDA (:func:`_emit_cuda`) each time step is one kernel over (batch, hidden unit), which also computes the
recurrent product where R is small, or a cuBLAS product and that kernel where it is not (see the notes there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import register
from .. import dims as D
from ..literals import literal
from ..._native.names import text
from .common import node_error

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
# lower-case name -> (takes alpha, takes beta, default alpha, default beta), as onnxruntime consumes them
ACTIVATIONS = {
    "relu": (False, False, 0.0, 0.0),
    "tanh": (False, False, 0.0, 0.0),
    "sigmoid": (False, False, 0.0, 0.0),
    "affine": (True, True, 1.0, 0.0),
    "leakyrelu": (True, False, 0.01, 0.0),
    "thresholdedrelu": (True, False, 1.0, 0.0),
    "scaledtanh": (True, True, 1.0, 1.0),
    "hardsigmoid": (True, True, 0.2, 0.5),
    "elu": (True, False, 1.0, 0.0),
    "softsign": (False, False, 0.0, 0.0),
    "softplus": (False, False, 0.0, 0.0),
}
DIRECTIONS = ("forward", "reverse", "bidirectional")
# rows of a product at or below which the streaming kernel runs (as in gemm.py)
SMALL_M = 8



def _activations(node: "Node") -> list[list[tuple[str, float, float]]]:
    """Per direction, the (lower-case name, alpha, beta) of each activation; raises ValueError when invalid."""
    op = node.op_type
    n_dir = 2 if node.attr("direction", "forward") == "bidirectional" else 1
    per = len(DEFAULT_ACTS[op])
    names = list(node.attr("activations", None) or DEFAULT_ACTS[op] * n_dir)
    if len(names) == per and n_dir == 2:
        names = names * 2
    if len(names) != per * n_dir:
        raise ValueError(f"activations lists {len(names)} functions, expected {per * n_dir}")
    alphas = [float(a) for a in node.attr("activation_alpha", None) or []]
    betas = [float(b) for b in node.attr("activation_beta", None) or []]
    out: list[tuple[str, float, float]] = []
    for name in names:
        key = str(name).lower()
        if key not in ACTIVATIONS:
            raise ValueError(f"activation '{name}' is not supported")
        ua, ub, a, b = ACTIVATIONS[key]
        if ua and alphas:
            a = alphas.pop(0)
        if ub and betas:
            b = betas.pop(0)
        out.append((key, a, b))
    return [out[d * per:(d + 1) * per] for d in range(n_dir)]


def _check(node: "Node", g: "Graph") -> str | None:
    direction = node.attr("direction", "forward")
    if direction not in DIRECTIONS:
        return f"direction '{direction}' is not one of {', '.join(DIRECTIONS)}"
    if int(node.attr("layout", 0)) not in (0, 1):
        return f"layout {node.attr('layout')} is not 0 or 1"
    try:
        _activations(node)
    except ValueError as exc:
        return str(exc)
    for k in (0, 1, 2, 3, 5, 6, 7):
        name = node.input(k)
        t = g.tensors.get(name) if name else None
        if t is not None and (t.dtype.kind in "iub" or t.dtype == object):
            return f"input '{name}' has dtype {t.dtype} (floating point only)"
    sl = node.input(4)
    t = g.tensors.get(sl) if sl else None
    if t is not None and t.dtype.kind not in "iu":
        return f"sequence_lens '{sl}' has dtype {t.dtype} (an integer type is required)"
    return None


@dataclass
class _Params:
    op: str
    G: int  # gates
    H: int  # hidden size
    NI: int  # input size
    T: D.DimLike  # sequence length
    B: D.DimLike  # batch size
    n_dir: int
    layout: int
    direction: str
    acts: list[list[tuple[str, float, float]]]
    clip: float | None
    lbr: int
    input_forget: int


def _params(node: "Node", g: "Graph") -> _Params:
    op = node.op_type
    x, w, r = (g.t(node.inputs[k]) for k in range(3))
    for what, t in (("X", x), ("W", w), ("R", r)):
        if t.rank != 3:
            raise node_error(node, f"{what} '{t.name}' must be 3-D, got shape {D.fmt_shape(t.shape)}")
    layout = int(node.attr("layout", 0))
    direction = node.attr("direction", "forward")
    n_dir = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    hs = node.attr("hidden_size", None)
    H = int(hs) if hs is not None else r.shape[2]
    if not D.is_static(H):
        raise node_error(node, "the hidden size must be static")
    H = int(H)
    T, B = (x.shape[0], x.shape[1]) if layout == 0 else (x.shape[1], x.shape[0])
    if not D.is_static(x.shape[2]):
        raise node_error(node, f"the input size of X {D.fmt_shape(x.shape)} must be static")
    NI = int(x.shape[2])

    def expect(k: int, what: str, shape: tuple) -> None:
        name = node.input(k)
        if name and tuple(g.t(name).shape) != tuple(D.norm(s) for s in shape):
            raise node_error(node, f"{what} '{name}' has shape {D.fmt_shape(g.t(name).shape)}, expected "
                             f"{D.fmt_shape(shape)} (direction {direction}, hidden_size {H}, "
                             f"input size {NI}, layout {layout})")

    expect(1, "W", (n_dir, G * H, NI))
    expect(2, "R", (n_dir, G * H, H))
    expect(3, "B", (n_dir, 2 * G * H))
    expect(4, "sequence_lens", (B,))
    state = (n_dir, B, H) if layout == 0 else (B, n_dir, H)
    expect(5, "initial_h", state)
    if op == "LSTM":
        expect(6, "initial_c", state)
        expect(7, "P", (n_dir, 3 * H))
    clip = node.attr("clip", None)
    return _Params(op, G, H, NI, D.norm(T), D.norm(B), n_dir, layout, direction, _activations(node),
                   None if clip is None else float(clip), int(node.attr("linear_before_reset", 0)),
                   int(node.attr("input_forget", 0)))


def _infer(node: "Node", g: "Graph"):
    p = _params(node, g)
    dt = g.t(node.inputs[0]).dtype
    state = (p.n_dir, p.B, p.H) if p.layout == 0 else (p.B, p.n_dir, p.H)
    y = (p.T, p.n_dir, p.B, p.H) if p.layout == 0 else (p.B, p.T, p.n_dir, p.H)
    shapes = [y, state, state][: 3 if p.op == "LSTM" else 2]
    if len(node.outputs) > len(shapes):
        raise node_error(node, f"has {len(node.outputs)} outputs, at most {len(shapes)} allowed")
    return [(dt, s) for s in shapes[: len(node.outputs)]]


def _compute_dtype(dt: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dt == np.float64 else np.dtype(np.float32)


def _workspace(node: "Node", g: "Graph"):
    p = _params(node, g)
    ct = _compute_dtype(g.t(node.inputs[0]).dtype)
    GH, H = p.G * p.H, p.H
    const = [g.is_const(node.input(k)) or not node.input(k) for k in (1, 2, 3)]
    return [
        (D.norm(p.T * p.B * GH), ct),  # 0: input projection of every step
        (D.norm(p.B * GH), ct),  # 1: recurrent products of one step
        (D.norm(p.B * H), ct),  # 2: hidden state
        (D.norm(p.B * H), ct),  # 3: cell state (LSTM), reset hidden state (GRU)
        (1 if const[0] else p.n_dir * p.NI * GH, ct),  # 4: W^T prepared at run time
        (1 if const[1] else p.n_dir * H * GH, ct),  # 5: R^T prepared at run time
        (1 if const[2] else p.n_dir * (GH + H), ct),  # 6: bias prepared at run time
    ]


# ------------------------------------------------------------------------------------------------------
# code printing helpers


def _act(act: tuple[str, float, float], v: str, ct: str) -> str:
    name, a, b = act
    f = ct == "float"
    L = lambda x: literal(x, ct)  # noqa: E731
    exp = "ml4ep_rt::expf" if f else "std::exp"
    tanh = "ml4ep_rt::tanhf" if f else "std::tanh"
    if name == "relu":
        return f"std::max({v}, {L(0)})"
    if name == "tanh":
        return f"{tanh}({v})"
    if name == "sigmoid":
        return f"ml4ep_rt::sigmoidf({v})" if f else f"(1.0 / (1.0 + std::exp(-{v})))"
    if name == "affine":
        return f"({L(a)} * {v} + {L(b)})"
    if name == "leakyrelu":
        return f"({v} >= {L(0)} ? {v} : {L(a)} * {v})"
    if name == "thresholdedrelu":
        return f"({v} > {L(a)} ? {v} : {L(0)})"
    if name == "scaledtanh":
        return f"({L(a)} * {tanh}({L(b)} * {v}))"
    if name == "hardsigmoid":
        return f"std::min(std::max({L(a)} * {v} + {L(b)}, {L(0)}), {L(1)})"
    if name == "elu":
        return f"({v} >= {L(0)} ? {v} : {L(a)} * ({exp}({v}) - {L(1)}))"
    if name == "softsign":
        return f"({v} / ({L(1)} + std::abs({v})))"
    if name == "softplus":
        return f"ml4ep_rt::softplusf({v})" if f else f"std::log1p(std::exp({v}))"
    raise AssertionError(name)



def _matmul(fast: bool, ct: str, M: D.DimLike, N: int, K: int, a: str, a_ct: str, w: str, y: str) -> str:
    """y[M, N] = a[M, K] @ w[K, N] (w row-major in the compute type ``ct``); ``fast``: all float32."""
    if fast:
        small = (f"for (int64_t m = 0; m < {D.cpp(M)}; ++m)\n"
                 f"  ml4ep_rt::gemv<{K}, {N}>({a} + m * {K}, {w}, nullptr, {y} + m * {N});\n")
        big = f"ml4ep_rt::gemm({D.cpp(M)}, {N}, {K}, 1.0f, {a}, false, {w}, false, 0.0f, {y});\n"
        if D.is_static(M):
            return small if int(M) <= SMALL_M else big
        return f"if ({D.cpp(M)} <= {SMALL_M}) {{\n{_ind(small)}}} else {{\n{_ind(big)}}}\n"
    zero = literal(0, ct)
    return (
        f"for (int64_t m = 0; m < {D.cpp(M)}; ++m) {{\n"
        f"  {ct}* __restrict yr = {y} + m * {N};\n"
        f"  const {a_ct}* __restrict ar = {a} + m * {K};\n"
        f"  for (int64_t j = 0; j < {N}; ++j) yr[j] = {zero};\n"
        f"  for (int64_t k = 0; k < {K}; ++k) {{\n"
        f"    const {ct} av = static_cast<{ct}>(ar[k]);\n"
        f"    const {ct}* __restrict wr = {w} + k * {N};\n"
        f"    for (int64_t j = 0; j < {N}; ++j) yr[j] += av * wr[j];\n"
        "  }\n}\n"
    )


def _ind(code: str, pre: str = "  ") -> str:
    return "".join(pre + ln if ln.strip() else ln for ln in code.splitlines(True))


# ------------------------------------------------------------------------------------------------------
# weight preparation: W^T, R^T (GRU: [R_zr^T | R_h^T] per direction), bias [Wb + Rb | Rbh]


def _prep_r(p: _Params, r: np.ndarray) -> np.ndarray:
    H = p.H
    if p.op != "GRU":
        return np.ascontiguousarray(r.transpose(0, 2, 1))
    return np.stack([np.concatenate([r[d, : 2 * H].T.ravel(), r[d, 2 * H:].T.ravel()]) for d in range(p.n_dir)])


def _prep_bias(p: _Params, b: np.ndarray | None, dt: np.dtype) -> np.ndarray:
    GH, H = p.G * p.H, p.H
    out = np.zeros((p.n_dir, GH + H), dtype=np.float64)
    if b is not None:
        b = b.astype(np.float64)
        wb, rb = b[:, :GH], b[:, GH:]
        out[:, :GH] = wb + rb
        if p.op == "GRU" and p.lbr:
            out[:, 2 * H:GH] = wb[:, 2 * H:]
            out[:, GH:] = rb[:, 2 * H:]
    return out.astype(dt)


def _emit_prep(node: "Node", cg: "Emitter", p: _Params, ct: str, ctd: np.dtype) -> tuple[str, str, str, str]:
    """Code preparing the weights at run time where needed, and the pointers of W^T, R^T and the bias."""
    GH, H, NI = p.G * p.H, p.H, p.NI
    code = ""
    wname, rname, bname = node.inputs[1], node.inputs[2], node.input(3)
    wv, rv = cg.const(wname), cg.const(rname)
    if wv is not None:
        wt = cg.weight(np.ascontiguousarray(wv.astype(np.float64).transpose(0, 2, 1)).astype(ctd), f"{node.name}.WT")
    else:
        wt = cg.workspace(4, ct)
        code += (
            f"for (int64_t d = 0; d < {p.n_dir}; ++d)\n"
            f"  for (int64_t j = 0; j < {GH}; ++j)\n"
            f"    for (int64_t k = 0; k < {NI}; ++k)\n"
            f"      {wt}[(d * {NI} + k) * {GH} + j] = static_cast<{ct}>({cg.ptr(wname)}[(d * {GH} + j) * {NI} + k]);\n"
        )
    if rv is not None:
        rt = cg.weight(_prep_r(p, rv.astype(np.float64)).astype(ctd), f"{node.name}.RT")
    else:
        rt = cg.workspace(5, ct)
        src = cg.ptr(rname)
        if p.op != "GRU":
            code += (
                f"for (int64_t d = 0; d < {p.n_dir}; ++d)\n"
                f"  for (int64_t j = 0; j < {GH}; ++j)\n"
                f"    for (int64_t k = 0; k < {H}; ++k)\n"
                f"      {rt}[(d * {H} + k) * {GH} + j] = static_cast<{ct}>({src}[(d * {GH} + j) * {H} + k]);\n"
            )
        else:
            code += (
                f"for (int64_t d = 0; d < {p.n_dir}; ++d)\n"
                f"  for (int64_t j = 0; j < {GH}; ++j)\n"
                f"    for (int64_t k = 0; k < {H}; ++k) {{\n"
                f"      const {ct} v = static_cast<{ct}>({src}[(d * {GH} + j) * {H} + k]);\n"
                f"      if (j < {2 * H}) {rt}[d * {H * GH} + k * {2 * H} + j] = v;\n"
                f"      else {rt}[d * {H * GH} + {2 * H * H} + k * {H} + (j - {2 * H})] = v;\n"
                "    }\n"
            )
    bv = cg.const(bname) if bname else None
    if not bname or bv is not None:
        bias = cg.weight(_prep_bias(p, bv, ctd), f"{node.name}.bias")
    else:
        bias = cg.workspace(6, ct)
        src = cg.ptr(bname)
        gru_lbr = p.op == "GRU" and p.lbr
        code += (
            f"for (int64_t d = 0; d < {p.n_dir}; ++d) {{\n"
            f"  const auto* __restrict bs = {src} + d * {2 * GH};\n"
            f"  {ct}* __restrict bd = {bias} + d * {GH + H};\n"
            f"  for (int64_t j = 0; j < {GH}; ++j) bd[j] = static_cast<{ct}>(bs[j])"
            + ("" if gru_lbr else f" + static_cast<{ct}>(bs[{GH} + j])") + ";\n"
        )
        if gru_lbr:
            code += (
                f"  for (int64_t j = 0; j < {2 * H}; ++j) bd[j] += static_cast<{ct}>(bs[{GH} + j]);\n"
                f"  for (int64_t j = 0; j < {H}; ++j) bd[{GH} + j] = static_cast<{ct}>(bs[{GH + 2 * H} + j]);\n"
            )
        else:
            code += f"  for (int64_t j = 0; j < {H}; ++j) bd[{GH} + j] = {literal(0, ct)};\n"
        code += "}\n"
    return code, wt, rt, bias


# ------------------------------------------------------------------------------------------------------
# emit


def _emit(node: "Node", cg: "Emitter") -> str:
    p = _params(node, cg.g)
    x = node.inputs[0]
    dt = cg.dtype(x)
    ctd = _compute_dtype(dt)
    ct = "double" if ctd == np.float64 else "float"
    xt = cg.ctype(x)
    fast = dt == np.float32
    GH, H, NI, T, B, ND = p.G * p.H, p.H, p.NI, p.T, p.B, p.n_dir
    Tc, Bc = D.cpp(T), D.cpp(B)
    out = [node.outputs[k] if k < len(node.outputs) else "" for k in range(3)]
    y, yh, yc = out
    yt = cg.ctype(y) if y else xt
    L = lambda v: literal(v, ct)  # noqa: E731
    clip = (lambda v: f"std::min(std::max({v}, {L(-p.clip)}), {L(p.clip)})") if p.clip is not None else (lambda v: v)

    code, wt, rt, bias = _emit_prep(node, cg, p, ct, ctd)
    sl = node.input(4)
    if sl:
        code += (
            f"for (int64_t b = 0; b < {Bc}; ++b)\n"
            f"  if (static_cast<int64_t>({cg.ptr(sl)}[b]) < 0 || static_cast<int64_t>({cg.ptr(sl)}[b]) > {Tc})\n"
            f"    throw std::invalid_argument(\"node '{text(node.name)}' ({node.op_type}): sequence_lens[\" + "
            f"std::to_string(b) + \"] = \" + std::to_string({cg.ptr(sl)}[b]) + \" is outside [0, \" + "
            f"std::to_string({Tc}) + \"]\");\n"
        )
    xw, gs, hs, cs = (cg.workspace(k, ct) for k in range(4))

    def state_off(d: int, b: str) -> str:  # element offset of (direction d, batch b) in initial_h / Y_h
        return f"({d} * {Bc} + {b}) * {H}" if p.layout == 0 else f"({b} * {ND} + {d}) * {H}"

    def y_off(d: int) -> str:  # element offset of Y[t, d, b] (layout 0) or Y[b, t, d] (layout 1)
        return f"((t * {ND} + {d}) * {Bc} + b) * {H}" if p.layout == 0 else f"((b * {Tc} + t) * {ND} + {d}) * {H}"

    xrow = f"(t * {Bc} + b)" if p.layout == 0 else f"(b * {Tc} + t)"
    for d in range(ND):
        rev = p.direction == "reverse" or d == 1
        acts = p.acts[d]
        c = f"// direction {d} ({'reverse' if rev else 'forward'})\n{{\n"
        body = (
            f"const {ct}* __restrict wt = {wt} + {d * NI * GH};\n"
            f"const {ct}* __restrict rt = {rt} + {d * H * GH};\n"
            f"const {ct}* __restrict bx = {bias} + {d * (GH + H)};\n"
            f"{ct}* __restrict xw = {xw};\n{ct}* __restrict gs = {gs};\n"
            f"{ct}* __restrict hs = {hs};\n{ct}* __restrict cs = {cs};\n(void)cs;\n"
        )
        if p.op == "GRU":
            body += f"const {ct}* __restrict brh = bx + {GH};\n(void)brh;\n"
        # the input projection of every step, plus the bias
        M = D.norm(T * B)
        body += _matmul(fast, ct, M, GH, NI, cg.ptr(x), xt, "wt", "xw")
        body += (f"for (int64_t m = 0; m < {D.cpp(M)}; ++m)\n"
                 f"  for (int64_t j = 0; j < {GH}; ++j) xw[m * {GH} + j] += bx[j];\n")
        # initial state
        ih, ic = node.input(5), (node.input(6) if p.op == "LSTM" else "")
        body += f"for (int64_t b = 0; b < {Bc}; ++b)\n  for (int64_t j = 0; j < {H}; ++j) {{\n"
        body += (f"    hs[b * {H} + j] = static_cast<{ct}>({cg.ptr(ih)}[{state_off(d, 'b')} + j]);\n" if ih
                 else f"    hs[b * {H} + j] = {L(0)};\n")
        if p.op == "LSTM":
            body += (f"    cs[b * {H} + j] = static_cast<{ct}>({cg.ptr(ic)}[{state_off(d, 'b')} + j]);\n" if ic
                     else f"    cs[b * {H} + j] = {L(0)};\n")
        body += "  }\n"
        # the time loop
        step = f"const int64_t t = {f'{Tc} - 1 - s' if rev else 's'};\n"
        valid = f"t < static_cast<int64_t>({cg.ptr(sl)}[b])" if sl else ""
        if p.op == "GRU":
            step += _matmul(fast, ct, B, 2 * H, H, "hs", ct, "rt", "gs")
            gh = f"(gs + {D.cpp(D.norm(B * 2 * H))})"
            if p.lbr:
                step += _matmul(fast, ct, B, H, H, "hs", ct, f"rt + {2 * H * H}", gh)
            step += (
                f"for (int64_t b = 0; b < {Bc}; ++b) {{\n"
                f"  const {ct}* __restrict xr = xw + {xrow} * {GH};\n"
                f"  {ct}* __restrict gr = gs + b * {2 * H};\n"
                f"  for (int64_t j = 0; j < {H}; ++j) {{\n"
                f"    gr[j] = {_act(acts[0], clip('(xr[j] + gr[j])'), ct)};\n"
                f"    gr[{H} + j] = {_act(acts[0], clip(f'(xr[{H} + j] + gr[{H} + j])'), ct)};\n"
                + ("" if p.lbr else f"    cs[b * {H} + j] = gr[{H} + j] * hs[b * {H} + j];\n")
                + "  }\n}\n"
            )
            if not p.lbr:
                step += _matmul(fast, ct, B, H, H, "cs", ct, f"rt + {2 * H * H}", gh)
            pre = (f"xr[{2 * H} + j] + gr[{H} + j] * (ghr[j] + brh[j])" if p.lbr else f"xr[{2 * H} + j] + ghr[j]")
            upd = (
                f"const {ct} z = gr[j];\n"
                f"const {ct} hn = ({L(1)} - z) * {_act(acts[1], clip(f'({pre})'), ct)} + z * hr[j];\n"
            )
            rows = (f"const {ct}* __restrict gr = gs + b * {2 * H};\n"
                    f"const {ct}* __restrict ghr = {gh} + b * {H};\n")
        else:
            step += _matmul(fast, ct, B, GH, H, "hs", ct, "rt", "gs")
            rows = f"const {ct}* __restrict gr = gs + b * {GH};\n"
            if p.op == "RNN":
                upd = f"const {ct} hn = {_act(acts[0], clip('(xr[j] + gr[j])'), ct)};\n"
            else:
                pp = node.input(7)
                P = cg.ptr(pp) if pp else ""
                def peep(k: int, v: str, P: str = P, d: int = d) -> str:
                    return f" + static_cast<{ct}>({P}[{d * 3 * H + k * H} + j]) * {v}" if P else ""
                f_, g_, h_ = acts
                pi = clip(f"(xr[j] + gr[j]{peep(0, 'cp')})")
                pf = clip(f"(xr[{2 * H} + j] + gr[{2 * H} + j]{peep(2, 'cp')})")
                pc = clip(f"(xr[{3 * H} + j] + gr[{3 * H} + j])")
                po = clip(f"(xr[{H} + j] + gr[{H} + j]{peep(1, 'cn')})")
                fg = f"{L(1)} - ig" if p.input_forget else _act(f_, pf, ct)
                upd = (
                    f"const {ct} cp = cr[j];\n"
                    f"const {ct} ig = {_act(f_, pi, ct)};\n"
                    f"const {ct} fg = {fg};\n"
                    f"const {ct} cc = {_act(g_, pc, ct)};\n"
                    f"const {ct} cn = fg * cp + ig * cc;\n"
                    f"const {ct} og = {_act(f_, po, ct)};\n"
                    f"const {ct} hn = og * {_act(h_, 'cn', ct)};\n"
                    "cr[j] = cn;\n"
                )
        rows = (f"const {ct}* __restrict xr = xw + {xrow} * {GH};\n" + rows
                + f"{ct}* __restrict hr = hs + b * {H};\n"
                + (f"{ct}* __restrict cr = cs + b * {H};\n" if p.op == "LSTM" else ""))
        if y:
            rows += f"{yt}* __restrict yr = {cg.ptr(y)} + {y_off(d)};\n"
        loop = (f"for (int64_t j = 0; j < {H}; ++j) {{\n" + _ind(upd)
                + "  hr[j] = hn;\n" + (f"  yr[j] = static_cast<{yt}>(hn);\n" if y else "") + "}\n")
        if valid:
            loop = f"if ({valid}) {{\n" + _ind(loop) + "}" + (
                f" else {{\n  for (int64_t j = 0; j < {H}; ++j) yr[j] = static_cast<{yt}>({L(0)});\n}}\n"
                if y else "\n")
        step += f"for (int64_t b = 0; b < {Bc}; ++b) {{\n" + _ind(rows + loop) + "}\n"
        body += f"for (int64_t s = 0; s < {Tc}; ++s) {{\n" + _ind(step) + "}\n"
        # final states
        for o, buf in ((yh, "hs"), (yc, "cs")):
            if o:
                ot = cg.ctype(o)
                body += (f"for (int64_t b = 0; b < {Bc}; ++b)\n  for (int64_t j = 0; j < {H}; ++j)\n"
                         f"    {cg.ptr(o)}[{state_off(d, 'b')} + j] = static_cast<{ot}>({buf}[b * {H} + j]);\n")
        code += c + _ind(body) + "}\n"
    return code


# ------------------------------------------------------------------------------------------------------
# CUDA (docs/cuda.md): per direction, the input projection of every step is one product (cuBLAS; float64: a
# kernel) into the workspace, then each time step is one kernel over (batch, hidden unit) for the gates. With a
# small R (up to FUSED_R_BYTES) that kernel also computes the recurrent product, each thread its own dot
# products with R^T (small enough to stay in cache), reading the previous hidden state from one buffer and
# writing the next into the other; with a larger R the product is a cuBLAS call before the gate kernel, which
# then updates the state in place. (GRU with linear_before_reset=0 takes one more kernel per step, for r * h,
# and one more product.) The first step reads the initial state where it is (none: zero), the last
# writes the final state straight into Y_h / Y_c. Rows past their sequence_lens keep their state and write zeros
# to Y; a length outside [0, seq_length] is reported by the kernel (cg.kernel_error: infer raises it, as the CPU code
# does) and makes every output of its row NaN meanwhile.

# R^T (gates * hidden * hidden * sizeof(float)) up to which a step's kernel computes the recurrent product itself
FUSED_R_BYTES = 64 << 10


def _emit_cuda(node: "Node", cg: "Emitter") -> str:
    p = _params(node, cg.g)
    x = node.inputs[0]
    dt = cg.dtype(x)
    ctd = _compute_dtype(dt)
    ct = "double" if ctd == np.float64 else "float"
    fast = dt == np.float32  # products through cuBLAS (float32 only)
    GH, H, NI, T, B, ND = p.G * p.H, p.H, p.NI, p.T, p.B, p.n_dir
    Tc, Bc = D.cpp(T), D.cpp(B)
    fused = not fast or p.G * H * H * 4 <= FUSED_R_BYTES
    out = [node.outputs[k] if k < len(node.outputs) else "" for k in range(3)]
    y, yh, yc = out
    for o in out:
        assert not o or cg.ctype(o) == cg.ctype(x), (o, cg.ctype(o))
    L = lambda v: literal(v, ct)  # noqa: E731
    clip = (lambda v: f"std::min(std::max({v}, {L(-p.clip)}), {L(p.clip)})") if p.clip is not None else (lambda v: v)
    wname, rname, bname = node.inputs[1], node.inputs[2], node.input(3)
    gru0 = p.op == "GRU" and not p.lbr  # the reset gate applied before the hidden gate's product
    code = ""

    # weights: W as stored ([G*H, I] per direction; the product transposes it); R as stored for cuBLAS, as
    # R^T ([H, G*H] per direction) for the fused kernels; the bias as on the CPU ([Wb + Rb | Rbh])
    wp = cg.ptr(wname)
    if fused:
        rv = cg.const(rname)
        if rv is not None:
            rp = cg.weight(np.ascontiguousarray(rv.astype(np.float64).transpose(0, 2, 1)).astype(ctd),
                           f"{node.name}.RT")
        else:
            rp = cg.workspace(5, ct)
            code += "// R^T\n" + cg.par_for("i", ND * H * GH, (
                f"const int64_t dk = i / {GH}, jc = i % {GH};\n"
                f"{rp}[i] = static_cast<{ct}>({cg.ptr(rname)}[(dk / {H} * {GH} + jc) * {H} + dk % {H}]);\n"))
    else:
        rp = cg.ptr(rname)
    bias = ""
    if bname:
        bv = cg.const(bname)
        if bv is not None:
            bias = cg.weight(_prep_bias(p, bv, ctd), f"{node.name}.bias")
        else:
            bias = cg.workspace(6, ct)
            bt = cg.ctype(bname)
            if p.op == "GRU" and p.lbr:
                val = (f"j < {2 * H} ? static_cast<{ct}>(bs[j]) + static_cast<{ct}>(bs[{GH} + j])\n"
                       f"  : j < {GH} ? static_cast<{ct}>(bs[j]) : static_cast<{ct}>(bs[{2 * H} + j])")
            else:
                val = f"j < {GH} ? static_cast<{ct}>(bs[j]) + static_cast<{ct}>(bs[{GH} + j]) : {L(0)}"
            code += "// the bias: Wb + Rb" + (", Rbh" if p.op == "GRU" and p.lbr else "") + "\n" + cg.par_for(
                "i", ND * (GH + H),
                f"const int64_t j = i % {GH + H};\n"
                f"const {bt}* __restrict bs = {cg.ptr(bname)} + i / {GH + H} * {2 * GH};\n"
                f"{bias}[i] = {val};\n")

    sl = node.input(4)
    ih = node.input(5)
    ic = node.input(6) if p.op == "LSTM" else ""
    pp = node.input(7) if p.op == "LSTM" else ""
    P = cg.ptr(pp) if pp else ""
    xrow = f"(t * {Bc} + b)" if p.layout == 0 else f"(b * {Tc} + t)"

    def state(d: int) -> tuple[str, str]:  # (element offset, batch stride) of direction d in initial_h, Y_h, ...
        if p.layout == 0:
            return D.cpp(D.norm(d * B * H)), str(H)
        return str(d * H), str(ND * H)

    def y_off(d: int) -> str:  # element offset of Y[t, d, b, j] (layout 0) or Y[b, t, d, j] (layout 1)
        return (f"((t * {ND} + {d}) * {Bc} + b) * {H} + j" if p.layout == 0
                else f"((b * {Tc} + t) * {ND} + {d}) * {H} + j")

    def at(ptr: str, off: str) -> str:
        return ptr if off == "0" else f"({ptr} + {off})"

    def pick(cond: str, a: str, b: str) -> str:
        return a if a == b else f"{cond} ? {a} : {b}"

    nan = f"std::numeric_limits<{ct}>::quiet_NaN()"
    bad_len = f"node '{node.name}' ({node.op_type}): a value of sequence_lens is outside [0, sequence length]"
    for d in range(ND):
        rev = p.direction == "reverse" or d == 1
        acts = p.acts[d]
        soff, sst = state(d)
        blk = (f"{ct}* const xw = {cg.workspace(0, ct)};\n"
               f"const {ct}* const rd = {at(rp, str(d * GH * H))};\n")
        if bias:
            blk += f"const {ct}* const bx = {at(bias, str(d * (GH + H)))};\n"
        # the input projection of every step
        M = D.norm(T * B)
        if fast:
            blk += (f"ml4ep_cu::gemm({cg.blas}, {D.cpp(M)}, {GH}, {NI}, 1.0f, {cg.ptr(x)}, false, "
                    f"{at(wp, str(d * GH * NI))}, true, 0.0f, xw);\n")
        else:
            blk += cg.par_for("i", D.norm(M * GH), (
                f"const {cg.ctype(x)}* __restrict xr = {cg.ptr(x)} + i / {GH} * {NI};\n"
                f"const {cg.ctype(wname)}* __restrict wr = {wp} + ({f'{d * GH} + ' if d else ''}i % {GH}) * {NI};\n"
                f"{ct} acc = {L(0)};\n"
                f"for (int64_t k = 0; k < {NI}; ++k) acc += static_cast<{ct}>(xr[k]) * static_cast<{ct}>(wr[k]);\n"
                "xw[i] = acc;\n"))
        # the state buffers
        init_h = at(cg.ptr(ih), soff) if ih else "nullptr"
        init_c = at(cg.ptr(ic), soff) if ic else "nullptr"
        yh_p, yc_p = (at(cg.ptr(yh), soff) if yh else ""), (at(cg.ptr(yc), soff) if yc else "")
        last = f"s == {Tc} - 1"
        if fused:
            blk += f"{ct}* const h0 = {cg.workspace(2, ct)};\n{ct}* const h1 = {cg.workspace(3, ct)};\n"
            hin = f"s == 0 ? {init_h} : s % 2 == 1 ? h0 : h1"
            hs_in = pick("s == 0", sst, str(H)) if ih else str(H)
            hout = "s % 2 == 0 ? h0 : h1"
        else:
            blk += f"{ct}* const hb = {cg.workspace(2, ct)};\n"
            if ih:  # the initial state into the buffer, whose rows the products read
                blk += cg.par_for("i", D.norm(B * H), f"hb[i] = {init_h}[i / {H} * {sst} + i % {H}];")
                hin = "hb"
            else:
                hin = "s == 0 ? nullptr : hb"
            hs_in = str(H)
            hout = "hb"
        hs_out = pick(last, sst, str(H)) if yh else str(H)
        if yh:
            hout = f"{last} ? {yh_p} : {hout}"
        aux = cg.workspace(1 if fused else 3, ct)  # LSTM: cell state; GRU (reset before the product): r * h
        if p.op == "LSTM" or gru0:
            blk += f"{ct}* const aux = {aux};\n"
        if not fused:
            blk += f"{ct}* const gs = {cg.workspace(1, ct)};\n"
        if not (D.is_static(T) and int(T) > 0) and (yh or yc):
            # no step: the final states are the initial ones
            body = f"const int64_t b = i / {H}, j = i % {H};\n"
            bad = ""
            if sl:
                body += (f"const bool bad = static_cast<int64_t>({cg.ptr(sl)}[b]) != 0;\n"
                         f"if (bad && j == 0) {cg.kernel_error(bad_len)}\n")
                bad = f"bad ? {nan} : "
            for o, init in ((yh_p, init_h), (yc_p, init_c)):
                if o:
                    body += (f"{o}[b * {sst} + j] = {bad}"
                             + (f"{init}[b * {sst} + j]" if init != "nullptr" else L(0)) + ";\n")
            blk += f"if ({Tc} == 0) {{\n" + _ind(cg.par_for("i", D.norm(B * H), body)) + "}\n"

        # one time step: the gates' pre-activations (input projection + bias + recurrent product), then the update
        def pre(col: str) -> str:
            return f"xr[{col}]" + (f" + bx[{col}]" if bias else "")

        def dots(accs: list[tuple[str, int]], src: str, stride: str) -> str:
            """acc += src[b] . R[gate] for each (acc, gate), in the thread (fused kernels: R^T is rd)."""
            return (f"for (int64_t k = 0; k < {H}; ++k) {{\n"
                    f"  const {ct} hk = {src}[b * {stride} + k];\n"
                    f"  const {ct}* __restrict rk = rd + k * {GH} + j;\n"
                    + "".join(f"  {a} += hk * rk[{g * H}];\n" for a, g in accs) + "}\n")

        lstm = p.op == "LSTM"
        # the batch strides of the states that vary between steps are locals: hs_in, hs_out (cs_in, cs_out)
        hs_in_v = "hs_in" if hs_in != str(H) else str(H)
        hs_out_v = "hs_out" if hs_out != str(H) else str(H)
        step = (f"const int64_t t = {f'{Tc} - 1 - s' if rev else 's'};\n"
                f"const {ct}* const hin = {hin};\n"
                + (f"const int64_t hs_in = {hs_in};\n" if hs_in_v != str(H) else "")
                + f"{ct}* const hout = {hout};\n"
                + (f"const int64_t hs_out = {hs_out};\n" if hs_out_v != str(H) else ""))
        if lstm:
            cs_in = pick("s == 0", sst, str(H)) if ic else str(H)
            cs_out = pick(last, sst, str(H)) if yc else str(H)
            cs_in_v = "cs_in" if cs_in != str(H) else str(H)
            cs_out_v = "cs_out" if cs_out != str(H) else str(H)
            step += (f"const {ct}* const cin = s == 0 ? {init_c} : aux;\n"
                     + (f"const int64_t cs_in = {cs_in};\n" if cs_in_v != str(H) else "")
                     + f"{ct}* const cout = {f'{last} ? {yc_p} : aux' if yc else 'aux'};\n"
                     + (f"const int64_t cs_out = {cs_out};\n" if cs_out_v != str(H) else ""))
        gh = f"gs + {D.cpp(D.norm(B * 2 * H))}"  # GRU (reset before the product), cuBLAS: (r * h) R_h^T
        if gru0:
            # r * h_prev for every unit, which the hidden gate's product reads
            ka = (f"const int64_t b = i / {H}, j = i % {H};\n"
                  f"const {ct}* __restrict xr = xw + {xrow} * {GH};\n"
                  f"{ct} ar = {pre(f'{H} + j')};\n"
                  + (dots([("ar", 1)], "hin", hs_in_v) if fused else f"ar += gs[b * {2 * H} + {H} + j];\n")
                  + f"const {ct} zr = {clip('ar')};\n"
                  f"aux[b * {H} + j] = {_act(acts[0], 'zr', ct)} * hin[b * {hs_in_v} + j];\n")
            if fused:
                step += "if (hin != nullptr) {\n" + _ind(cg.par_for("i", D.norm(B * H), ka)) + "}\n"
            else:
                step += ("if (hin != nullptr) {\n"
                         f"  ml4ep_cu::gemm({cg.blas}, {Bc}, {2 * H}, {H}, 1.0f, hin, false, rd, true, 0.0f, gs);\n"
                         + _ind(cg.par_for("i", D.norm(B * H), ka))
                         + f"  ml4ep_cu::gemm({cg.blas}, {Bc}, {H}, {H}, 1.0f, aux, false, rd + {2 * H * H}, true, "
                         f"0.0f, {gh});\n}}\n")
        elif not fused:
            step += (f"if (hin != nullptr) ml4ep_cu::gemm({cg.blas}, {Bc}, {GH}, {H}, 1.0f, hin, false, rd, true, "
                     "0.0f, gs);\n")

        # the gate kernel
        yo = f"{cg.ptr(y)}[{y_off(d)}]" if y else ""
        kb = f"const int64_t b = i / {H}, j = i % {H};\n"
        if sl:
            kb += (f"const int64_t len = static_cast<int64_t>({cg.ptr(sl)}[b]);\n"
                   f"if (len < 0 || len > {Tc}) {{  // an invalid length: reported (infer raises it), NaN meanwhile\n"
                   f"  {cg.kernel_error(bad_len)}\n"
                   f"  hout[b * {hs_out_v} + j] = {nan};\n"
                   + (f"  cout[b * {cs_out_v} + j] = {nan};\n" if lstm else "")
                   + (f"  {yo} = {nan};\n" if y else "") + "  return;\n}\n"
                   "if (t >= len) {  // past the row's sequence: the state stays\n"
                   f"  hout[b * {hs_out_v} + j] = hin != nullptr ? hin[b * {hs_in_v} + j] : {L(0)};\n"
                   + (f"  cout[b * {cs_out_v} + j] = cin != nullptr ? cin[b * {cs_in_v} + j] : {L(0)};\n"
                      if lstm else "")
                   + (f"  {yo} = {L(0)};\n" if y else "") + "  return;\n}\n")
        kb += f"const {ct}* __restrict xr = xw + {xrow} * {GH};\n"
        if lstm:
            names = ["ai", "ao", "af", "ac"]  # ONNX's gate order: input, output, forget, cell
            kb += f"{ct} " + ", ".join(f"{a} = {pre(f'{g * H} + j' if g else 'j')}"
                                       for g, a in enumerate(names)) + ";\n"
            kb += "if (hin != nullptr) {\n" + _ind(
                dots([(a, g) for g, a in enumerate(names)], "hin", hs_in_v) if fused
                else "".join(f"{a} += gs[b * {GH} + {g * H} + j];\n" for g, a in enumerate(names))) + "}\n"

            def peep(k: int, v: str, d: int = d) -> str:
                return f" + static_cast<{ct}>({P}[{d * 3 * H + k * H} + j]) * {v}" if P else ""

            f_, g_, h_ = acts
            kb += (f"const {ct} cp = cin != nullptr ? cin[b * {cs_in_v} + j] : {L(0)};\n"
                   f"const {ct} zi = {clip('ai' + peep(0, 'cp'))};\n"
                   f"const {ct} ig = {_act(f_, 'zi', ct)};\n")
            if p.input_forget:
                kb += f"const {ct} fg = {L(1)} - ig;\n"
            else:
                kb += (f"const {ct} zf = {clip('af' + peep(2, 'cp'))};\n"
                       f"const {ct} fg = {_act(f_, 'zf', ct)};\n")
            kb += (f"const {ct} zc = {clip('ac')};\n"
                   f"const {ct} cn = fg * cp + ig * {_act(g_, 'zc', ct)};\n"
                   f"const {ct} zo = {clip('ao' + peep(1, 'cn'))};\n"
                   f"const {ct} hn = {_act(f_, 'zo', ct)} * {_act(h_, 'cn', ct)};\n"
                   f"cout[b * {cs_out_v} + j] = cn;\n")
        elif p.op == "GRU":
            kb += f"{ct} az = {pre('j')}, ah = {pre(f'{2 * H} + j')};\n"
            if p.lbr:  # h~ = g(x W_h + Wb_h + r * (h R_h + Rb_h))
                kb += (f"{ct} ar = {pre(f'{H} + j')}, hr = {f'bx[{GH} + j]' if bias else L(0)};\n"
                       f"{ct} hp = {L(0)};\n"
                       "if (hin != nullptr) {\n"
                       f"  hp = hin[b * {hs_in_v} + j];\n"
                       + _ind(dots([("az", 0), ("ar", 1), ("hr", 2)], "hin", hs_in_v) if fused else
                              f"az += gs[b * {GH} + j];\nar += gs[b * {GH} + {H} + j];\n"
                              f"hr += gs[b * {GH} + {2 * H} + j];\n")
                       + "}\n"
                       f"const {ct} zz = {clip('az')}, zr = {clip('ar')};\n"
                       f"const {ct} z = {_act(acts[0], 'zz', ct)};\n"
                       f"const {ct} r = {_act(acts[0], 'zr', ct)};\n"
                       f"const {ct} zh = {clip('ah + r * hr')};\n")
            else:  # h~ = g(x W_h + (r * h) R_h + Wb_h + Rb_h)
                kb += (f"{ct} hp = {L(0)};\n"
                       "if (hin != nullptr) {\n"
                       f"  hp = hin[b * {hs_in_v} + j];\n"
                       + _ind(dots([("az", 0)], "hin", hs_in_v) + dots([("ah", 2)], "aux", str(H)) if fused else
                              f"az += gs[b * {2 * H} + j];\nah += ({gh})[b * {H} + j];\n")
                       + "}\n"
                       f"const {ct} zz = {clip('az')};\n"
                       f"const {ct} z = {_act(acts[0], 'zz', ct)};\n"
                       f"const {ct} zh = {clip('ah')};\n")
            kb += f"const {ct} hn = ({L(1)} - z) * {_act(acts[1], 'zh', ct)} + z * hp;\n"
        else:
            kb += (f"{ct} a = {pre('j')};\n"
                   "if (hin != nullptr) {\n"
                   + _ind(dots([("a", 0)], "hin", hs_in_v) if fused else f"a += gs[b * {GH} + j];\n") + "}\n"
                   f"const {ct} za = {clip('a')};\n"
                   f"const {ct} hn = {_act(acts[0], 'za', ct)};\n")
        kb += f"hout[b * {hs_out_v} + j] = hn;\n" + (f"{yo} = hn;\n" if y else "")
        step += cg.par_for("i", D.norm(B * H), kb)
        blk += f"for (int64_t s = 0; s < {Tc}; ++s) {{\n" + _ind(step) + "}\n"
        code += f"// direction {d} ({'reverse' if rev else 'forward'})\n{{\n" + _ind(blk) + "}\n"
    return code


register("LSTM", "GRU", "RNN", infer=_infer, emit=_emit, check=_check, workspace=_workspace,
         cuda=_emit_cuda)
