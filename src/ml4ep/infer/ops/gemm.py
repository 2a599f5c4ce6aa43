"""Dense layers: Gemm and MatMul (batched, broadcasting).

A constant weight matrix is stored once, as a (K, N) row-major matrix already scaled by ``alpha``. Small row
counts (batch 1 inside an event loop) run a streaming kernel specialised at compile time for K and N; larger
ones call ``cblas_sgemm``. Bias and a fused activation are applied while the output row is hot in cache.
Fusion passes may give MatMul a third input, a bias broadcast along the last axis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import batch_rules as BR, register
from .common import broadcast_shapes, emit_broadcast
from .elementwise import unary_expr
from .. import dims as D
from ..literals import literal
from ...errors import ShapeError

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

# rows at or below which the streaming kernel beats a BLAS call (measured in benchmarks/infer_latency.py)
SMALL_M = 8


def _check_float_inputs(node: "Node", g: "Graph"):
    for i in node.inputs[:2]:
        t = g.tensors.get(i)
        if t is not None and t.dtype != np.float32:
            return f"input '{i}' has dtype {t.dtype} (float32 only)"
    return None


# ------------------------------------------------------------------------------------------------------
# Gemm

def _infer_gemm(node: "Node", g: "Graph"):
    a, b = g.t(node.inputs[0]), g.t(node.inputs[1])
    if a.rank != 2 or b.rank != 2:
        raise ShapeError(f"node '{node.name}' (Gemm): A and B must be 2-D, got {a.rank}-D and {b.rank}-D")
    m, k = (a.shape[1], a.shape[0]) if node.attr("transA", 0) else a.shape
    k2, n = (b.shape[1], b.shape[0]) if node.attr("transB", 0) else b.shape
    if k != k2:
        raise ShapeError(f"node '{node.name}' (Gemm): inner dimensions differ ({D.fmt(k)} vs {D.fmt(k2)})")
    if node.input(2):
        broadcast_shapes(node, (m, n), g.t(node.inputs[2]).shape)
    return [(a.dtype, (m, n))]


def activation_code(node: "Node", var: str) -> str:
    """``var = act(var);`` statements for the activations fused into ``node``."""
    return "".join(f"{var} = {unary_expr(op, attrs, var)}; " for op, attrs in node.fused)


def _dense(cg: "Emitter", node: "Node", a_ptr: str, rows, k: int, n: int, w: np.ndarray,
           bias: np.ndarray | None, y_ptr: str, a_trans: bool = False, with_act: bool = True) -> str:
    """Y[rows, n] = A[rows, k] @ W[k, n] + bias, then the fused activations (unless ``with_act`` is off)."""
    wp = cg.weight(np.ascontiguousarray(w, dtype=np.float32), f"{node.name}.W")
    bp = cg.weight(np.ascontiguousarray(bias, dtype=np.float32).reshape(-1), f"{node.name}.bias") \
        if bias is not None else "nullptr"
    act = activation_code(node, "v") if with_act else ""
    act_loop = ""
    if act:
        act_loop = f"  for (int64_t i = 0; i < int64_t({D.cpp(rows)}) * {n}; ++i) {{ float v = {y_ptr}[i]; {act}{y_ptr}[i] = v; }}\n"
    rows_c = D.cpp(rows)
    if a_trans:
        # A is stored (k, rows): BLAS handles the transpose; no streaming kernel
        return (
            f"ml4ep_rt::dense_blas({rows_c}, {n}, {k}, {a_ptr}, true, {wp}, {bp}, {y_ptr});\n" + act_loop
        )
    small = (
        f"  for (int64_t m = 0; m < {rows_c}; ++m) {{\n"
        f"    float* __restrict yr = {y_ptr} + m * {n};\n"
        f"    ml4ep_rt::gemv<{k}, {n}>({a_ptr} + m * {k}, {wp}, {bp}, yr);\n"
        + (f"    for (int64_t j = 0; j < {n}; ++j) {{ float v = yr[j]; {act}yr[j] = v; }}\n" if act else "")
        + "  }\n"
    )
    if D.is_static(rows) and int(rows) <= SMALL_M:
        return "{\n" + small + "}\n"
    large = f"  ml4ep_rt::dense_blas({rows_c}, {n}, {k}, {a_ptr}, false, {wp}, {bp}, {y_ptr});\n" + act_loop
    return f"if ({rows_c} <= {SMALL_M}) {{\n{small}}} else {{\n{large}}}\n"


def _emit_gemm(node: "Node", cg: "Emitter") -> str:
    a, b, c = node.inputs[0], node.inputs[1], node.input(2)
    y = node.outputs[0]
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    ta, tb = int(node.attr("transA", 0)), int(node.attr("transB", 0))
    m, n = cg.shape(y)
    bv = cg.const(b)
    cv = cg.const(c) if c else None
    if bv is not None and (not c or cv is not None):
        with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN products, as at run time
            w = (bv.T if tb else bv).astype(np.float32) * np.float32(alpha)
        k = w.shape[0]
        bias = None
        if c:
            with np.errstate(over="ignore", invalid="ignore"):
                cb = cv.astype(np.float32) * np.float32(beta)
            full = np.broadcast_to(cb, (1, n) if cv.ndim < 2 or cv.shape[0] == 1 else cv.shape)
            if full.shape[0] == 1:
                bias = full.reshape(-1)
            else:  # a full (M, N) bias: add it after the product
                code = _dense(cg, node, cg.ptr(a), m, k, n, w, None, cg.ptr(y), bool(ta), with_act=False)
                code += emit_broadcast(cg, y, [y, c], lambda v: f"{v[0]} + {literal(beta, 'float')} * {v[1]}")
                code += _act_pass(cg, node, y)
                return code
        return _dense(cg, node, cg.ptr(a), m, k, n, w, bias, cg.ptr(y), bool(ta))
    # general case: both operands at run time
    k = cg.shape(a)[0 if ta else 1]
    code = (
        f"ml4ep_rt::gemm({D.cpp(m)}, {D.cpp(n)}, {D.cpp(k)}, {literal(alpha, 'float')}, {cg.ptr(a)}, {'true' if ta else 'false'}, "
        f"{cg.ptr(b)}, {'true' if tb else 'false'}, 0.0f, {cg.ptr(y)});\n"
    )
    if c:
        code += emit_broadcast(cg, y, [y, c], lambda v: f"{v[0]} + {literal(beta, 'float')} * {v[1]}")
    return code + _act_pass(cg, node, y)


def _act_pass(cg: "Emitter", node: "Node", y: str) -> str:
    act = activation_code(node, "v")
    if not act:
        return ""
    return cg.par_for("i", cg.numel(y), f"float v = {cg.ptr(y)}[i]; {act}{cg.ptr(y)}[i] = v;")


# ------------------------------------------------------------------------------------------------------
# CUDA: the products through cuBLAS (ml4ep_cu::gemm, its column-major mapping in cpp/cuda.hpp), then one kernel for
# the bias and the fused activations

def _epilogue(cg: "Emitter", node: "Node", y: str, n, bias: str | None, per_row=None) -> str:
    """Y += bias (per column, or per row of ``per_row`` rows when given) and the fused activations, in one kernel."""
    act = activation_code(node, "v")
    if bias is None and not act:
        return ""
    if bias is None:
        add = ""
    elif per_row is not None:
        add = f" + {bias}[(i / {D.cpp(n)}) % {D.cpp(per_row)}]"
    else:
        add = f" + {bias}[i % {D.cpp(n)}]"
    return cg.par_for("i", cg.numel(y), f"float v = {cg.ptr(y)}[i]{add}; {act}{cg.ptr(y)}[i] = v;")


def _emit_gemm_cuda(node: "Node", cg: "Emitter") -> str:
    a, b, c = node.inputs[0], node.inputs[1], node.input(2)
    y = node.outputs[0]
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    ta, tb = bool(node.attr("transA", 0)), bool(node.attr("transB", 0))
    m, n = cg.shape(y)
    k = cg.shape(a)[0 if ta else 1]
    bv, cv = cg.const(b), (cg.const(c) if c else None)
    fl = lambda v: "true" if v else "false"  # noqa: E731
    if bv is not None:  # constant B: stored (K, N), scaled by alpha
        with np.errstate(over="ignore", invalid="ignore"):
            w = (bv.T if tb else bv).astype(np.float32) * np.float32(alpha)
        wp = cg.weight(np.ascontiguousarray(w), f"{node.name}.W")
        code = f"ml4ep_cu::gemm({cg.blas}, {D.cpp(m)}, {D.cpp(n)}, {D.cpp(k)}, 1.0f, {cg.ptr(a)}, {fl(ta)}, {wp}, false, 0.0f, {cg.ptr(y)});\n"
    else:
        code = (f"ml4ep_cu::gemm({cg.blas}, {D.cpp(m)}, {D.cpp(n)}, {D.cpp(k)}, {literal(alpha, 'float')}, {cg.ptr(a)}, "
                f"{fl(ta)}, {cg.ptr(b)}, {fl(tb)}, 0.0f, {cg.ptr(y)});\n")
    if c and cv is not None and (cv.ndim < 2 or cv.shape[0] == 1):  # a constant bias per column (or one value)
        with np.errstate(over="ignore", invalid="ignore"):
            cb = (cv.astype(np.float32) * np.float32(beta)).reshape(-1)
        bias = cg.weight(np.ascontiguousarray(cb), f"{node.name}.bias")
        return code + _epilogue(cg, node, y, 1 if cb.size == 1 else n, bias)
    if c:
        code += emit_broadcast(cg, y, [y, c], lambda v: f"{v[0]} + {literal(beta, 'float')} * {v[1]}")
    return code + _act_pass(cg, node, y)


def _batch_gemm(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule: the rows of A (its columns with transA) are the samples; B shared, C broadcast per row."""
    rows = 1 if int(node.attr("transA", 0)) else 0
    c = ins[2] if len(ins) > 2 else None
    return ins[0] == rows and ins[1] is None and BR.aligned(c, in_rank[2] if c is not None else 0, 0, 2) \
        and outs[0] == 0


register("Gemm", infer=_infer_gemm, emit=_emit_gemm, check=_check_float_inputs, batch=_batch_gemm, cuda=_emit_gemm_cuda)


# ------------------------------------------------------------------------------------------------------
# MatMul (numpy semantics) with an optional fused bias as third input

def matmul_shapes(node: "Node", a: tuple, b: tuple) -> tuple[tuple, tuple, tuple, tuple]:
    """NumPy matmul shapes: ``(a as 2-D+, b as 2-D+, broadcast batch, output)`` (1-D operands promoted)."""
    if len(a) == 0 or len(b) == 0:
        raise ShapeError(f"node '{node.name}' ({node.op_type}): scalar operands are not allowed")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    if D.norm(a2[-1]) != D.norm(b2[-2]):
        raise ShapeError(f"node '{node.name}' ({node.op_type}): inner dimensions differ: "
                         f"{D.fmt_shape(a)} x {D.fmt_shape(b)}")
    batch = broadcast_shapes(node, a2[:-2], b2[:-2])
    out = list(batch) + [a2[-2], b2[-1]]
    if len(a) == 1:
        out.pop(-2)
    if len(b) == 1:
        out.pop(-1)
    return a2, b2, tuple(batch), tuple(out)


def _infer_matmul(node: "Node", g: "Graph"):
    out = matmul_shapes(node, g.t(node.inputs[0]).shape, g.t(node.inputs[1]).shape)[3]
    return [(g.t(node.inputs[0]).dtype, out)]


def _emit_matmul(node: "Node", cg: "Emitter") -> str:
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    ash, bsh = cg.shape(a), cg.shape(b)
    bv = cg.const(b)
    bias_name = node.input(2)
    bias = cg.const(bias_name) if bias_name else None
    if bv is not None and bv.ndim == 2 and len(ash) >= 1:
        k, n = bv.shape
        rows = D.prod(ash[:-1]) if len(ash) > 1 else 1
        return _dense(cg, node, cg.ptr(a), rows, k, n, bv, bias, cg.ptr(y))
    # general batched product
    a2 = [1] + list(ash) if len(ash) == 1 else list(ash)
    b2 = list(bsh) + [1] if len(bsh) == 1 else list(bsh)
    m, k, n = a2[-2], a2[-1], b2[-1]
    batch = broadcast_shapes(node, a2[:-2], b2[:-2])
    from .common import broadcast_index_plan
    extents, (sa, sb) = broadcast_index_plan(batch, [a2[:-2], b2[:-2]]) if batch else ([], ([], []))
    mk, kn, mn = D.prod([m, k]), D.prod([k, n]), D.prod([m, n])
    lines = []
    idx = [f"b{j}" for j in range(len(extents))]
    for j, e in enumerate(extents):
        lines.append(f"for (int64_t {idx[j]} = 0; {idx[j]} < {D.cpp(e)}; ++{idx[j]}) {{")
    out_strides = []
    acc: D.DimLike = 1
    for e in reversed(extents):
        out_strides.insert(0, acc)
        acc = D.norm(acc * e)

    def off(st, unit):
        terms = [f"{idx[j]}*{D.cpp(D.norm(s * unit))}" for j, s in enumerate(st) if s != 0]
        return " + ".join(terms) if terms else "0"

    lines.append(
        f"ml4ep_rt::gemm({D.cpp(m)}, {D.cpp(n)}, {D.cpp(k)}, 1.0f, {cg.ptr(a)} + {off(sa, mk)}, false, "
        f"{cg.ptr(b)} + {off(sb, kn)}, false, 0.0f, {cg.ptr(y)} + {off(out_strides, mn)});"
    )
    row_bias = bias_name and node.attrs.get("_row_bias")
    act = activation_code(node, "v")
    if row_bias or (act and not bias_name):
        # a bias per output row (a 1x1 convolution as MatMul) and the activations, on each product's block
        # while it is still in cache
        bias_v = f"{cg.ptr(bias_name)}[i]" if row_bias else "0.0f"
        lines.append(f"{{\n  float* __restrict yb = {cg.ptr(y)} + {off(out_strides, mn)};\n"
                     f"  for (int64_t i = 0; i < {D.cpp(m)}; ++i) {{\n    const float bi = {bias_v};\n"
                     f"    for (int64_t j = 0; j < {D.cpp(n)}; ++j) {{ float v = yb[i * {D.cpp(n)} + j] + bi; "
                     f"{act}yb[i * {D.cpp(n)} + j] = v; }}\n  }}\n}}")
        lines += ["}"] * len(extents)
        return "\n".join(lines) + "\n"
    lines += ["}"] * len(extents)
    code = "\n".join(lines) + "\n"
    if bias_name:
        code += emit_broadcast(cg, y, [y, bias_name], lambda v: f"{v[0]} + {v[1]}")
    return code + _act_pass(cg, node, y)


def _emit_matmul_cuda(node: "Node", cg: "Emitter") -> str:
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    ash, bsh = cg.shape(a), cg.shape(b)
    bv = cg.const(b)
    bias_name = node.input(2)
    if bv is not None and bv.ndim == 2 and len(ash) >= 1:  # a constant weight: one product over every row
        kk, n = bv.shape
        rows = D.prod(ash[:-1]) if len(ash) > 1 else 1
        wp = cg.weight(np.ascontiguousarray(bv, dtype=np.float32), f"{node.name}.W")
        code = f"ml4ep_cu::gemm({cg.blas}, {D.cpp(rows)}, {n}, {kk}, 1.0f, {cg.ptr(a)}, false, {wp}, false, 0.0f, {cg.ptr(y)});\n"
    else:
        a2 = [1] + list(ash) if len(ash) == 1 else list(ash)
        b2 = list(bsh) + [1] if len(bsh) == 1 else list(bsh)
        m, kk, n = a2[-2], a2[-1], b2[-1]
        batch = broadcast_shapes(node, a2[:-2], b2[:-2])
        from .common import broadcast_index_plan

        extents, (sa, sb) = broadcast_index_plan(batch, [a2[:-2], b2[:-2]]) if batch else ([], ([], []))
        mk, kn, mn = D.prod([m, kk]), D.prod([k_ for k_ in (kk, n)]), D.prod([m, n])
        if not extents:
            extents, sa, sb = [1], [0], [0]
        ostr = []
        acc: D.DimLike = 1
        for e in reversed(extents):
            ostr.insert(0, acc)
            acc = D.norm(acc * e)
        idx = [f"b{j}" for j in range(len(extents) - 1)]

        def off(st, unit):
            terms = [f"{idx[j]}*{D.cpp(D.norm(s_ * unit))}" for j, s_ in enumerate(st[:-1]) if s_ != 0]
            return " + ".join(terms) if terms else "0"

        # the last batch loop is one strided-batched call (a stride of 0 repeats the broadcast operand); any outer ones
        # are host loops over such calls
        lines = [f"for (int64_t {v} = 0; {v} < {D.cpp(e)}; ++{v}) {{" for v, e in zip(idx, extents[:-1])]
        lines.append(
            f"ml4ep_cu::gemm_batched({cg.blas}, {D.cpp(m)}, {D.cpp(n)}, {D.cpp(kk)}, 1.0f, {cg.ptr(a)} + {off(sa, mk)}, "
            f"false, {D.cpp(D.norm(sa[-1] * mk))}, {cg.ptr(b)} + {off(sb, kn)}, false, {D.cpp(D.norm(sb[-1] * kn))}, 0.0f, "
            f"{cg.ptr(y)} + {off(ostr, mn)}, {D.cpp(mn)}, {D.cpp(extents[-1])});")
        lines += ["}"] * len(idx)
        code = "\n".join(lines) + "\n"
        if bias_name and node.attrs.get("_row_bias"):
            return code + _epilogue(cg, node, y, n, cg.ptr(bias_name), per_row=m)
    if bias_name:
        bias = cg.const(bias_name)
        ysh = cg.shape(y)
        if bias is not None and bias.ndim <= 1 and len(ysh) >= 1 and (bias.size == 1 or
                                                                      D.norm(ysh[-1]) == bias.size):
            return code + _epilogue(cg, node, y, ysh[-1] if bias.size > 1 else 1, cg.ptr(bias_name))
        code += emit_broadcast(cg, y, [y, bias_name], lambda v: f"{v[0]} + {v[1]}")
    return code + _act_pass(cg, node, y)


def _batch_matmul(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule: the batch never in a contracted dimension; when both sides hold it, in the stacked (leading)
    dimensions, aligned."""
    a, b = ins[0], ins[1]
    ra, rb = in_rank[0], in_rank[1]
    if a is not None and a == ra - 1:  # contracted (K of A)
        return False
    if b is not None and (b == rb - 2 or rb == 1):  # contracted (K of B)
        return False
    if a is not None and b is not None:  # both batched: only in the stacked (leading) dimensions, aligned
        return a < ra - 2 and b < rb - 2 and ra - a == rb - b
    return outs[0] is not None


register("MatMul", infer=_infer_matmul, emit=_emit_matmul, check=_check_float_inputs, batch=_batch_matmul,
         cuda=_emit_matmul_cuda)
