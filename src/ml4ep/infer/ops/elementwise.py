"""Elementwise operators: unary math and activations, broadcasting binary ops, comparisons, Where, Cast.

Activations are also printed, through :func:`unary_expr`, into the loops of Gemm, MatMul and Conv nodes
they were fused into.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import register
from .common import broadcast_shapes, emit_broadcast, emit_view_copy
from .. import dims as D
from ...errors import ShapeError

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node


def _f(x: float) -> str:
    """A float literal for C++."""
    r = repr(float(np.float32(x)))
    if r in ("inf", "-inf"):
        return "std::numeric_limits<float>::infinity()" if r == "inf" else "-std::numeric_limits<float>::infinity()"
    if "e" not in r and "." not in r:
        r += ".0"
    return r + "f"


# ------------------------------------------------------------------------------------------------------
# unary ops: C++ scalar expression of the input value x (float unless stated)

def unary_expr(op: str, attrs: dict[str, Any], x: str) -> str:
    a = attrs
    if op == "Relu":
        return f"std::max({x}, 0.0f)"
    if op == "LeakyRelu":
        return f"({x} >= 0.0f ? {x} : {_f(a.get('alpha', 0.01))} * {x})"
    if op == "Elu":
        return f"({x} >= 0.0f ? {x} : {_f(a.get('alpha', 1.0))} * (ml4ep_rt::expf({x}) - 1.0f))"
    if op == "Selu":
        al, ga = a.get("alpha", 1.67326319217681884765625), a.get("gamma", 1.05070102214813232421875)
        return f"({x} > 0.0f ? {_f(ga)} * {x} : {_f(ga)} * ({_f(al)} * ml4ep_rt::expf({x}) - {_f(al)}))"
    if op == "Sigmoid":
        return f"ml4ep_rt::sigmoidf({x})"
    if op == "HardSigmoid":
        return f"std::min(std::max({_f(a.get('alpha', 0.2))} * {x} + {_f(a.get('beta', 0.5))}, 0.0f), 1.0f)"
    if op == "Tanh":
        return f"ml4ep_rt::tanhf({x})"
    if op == "Softplus":
        return f"ml4ep_rt::softplusf({x})"
    if op == "Erf":
        return f"std::erf({x})"
    if op == "Gelu":
        if a.get("approximate", "none") == "tanh":
            return f"(0.5f * {x} * (1.0f + ml4ep_rt::tanhf(0.7978845608028654f * ({x} + 0.044715f * {x} * {x} * {x}))))"
        return f"(0.5f * {x} * (1.0f + std::erf({x} * 0.7071067811865476f)))"
    if op == "Sqrt":
        return f"std::sqrt({x})"
    if op == "Exp":
        return f"ml4ep_rt::expf({x})"
    if op == "Log":
        return f"std::log({x})"
    if op == "Neg":
        return f"(-{x})"
    if op == "Abs":
        return f"std::abs({x})"
    if op == "Reciprocal":
        return f"(1.0f / {x})"
    if op == "Floor":
        return f"std::floor({x})"
    if op == "Ceil":
        return f"std::ceil({x})"
    if op == "Round":
        return f"std::nearbyint({x})"
    if op == "Sign":
        return f"(({x} > 0) - ({x} < 0))"
    if op == "Sin":
        return f"std::sin({x})"
    if op == "Cos":
        return f"std::cos({x})"
    if op == "Not":
        return f"(!{x})"
    if op == "Identity":
        return x
    if op == "Clip":
        lo, hi = a.get("min"), a.get("max")
        e = x
        if lo is not None:
            e = f"({e} < {_lit(lo)} ? {_lit(lo)} : {e})"
        if hi is not None:
            e = f"({e} > {_lit(hi)} ? {_lit(hi)} : {e})"
        return e
    raise KeyError(op)


def _lit(v) -> str:
    if isinstance(v, (float, np.floating)):
        return _f(v)
    return f"({v})"


FLOAT_UNARY = [
    "Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh", "Softplus", "Erf", "Gelu",
    "Sqrt", "Exp", "Log", "Reciprocal", "Floor", "Ceil", "Round", "Sin", "Cos",
]
ANY_UNARY = ["Neg", "Abs", "Sign"]
# activations that Gemm/MatMul/Conv nodes can absorb
FUSABLE = ["Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh", "Softplus", "Gelu", "Clip"]


def _infer_same(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    return [(t.dtype, t.shape)]


def _emit_unary(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    attrs = dict(node.attrs)
    ct = cg.ctype(x)
    if node.op_type == "Clip":
        for key, idx in (("min", 1), ("max", 2)):
            v = cg.const(node.input(idx))
            if v is not None:
                attrs[key] = np.asarray(v).reshape(-1)[0].item()
        cast = float if ct == "float" else int
        attrs = {k: cast(v) for k, v in attrs.items() if k in ("min", "max")}
    expr = unary_expr(node.op_type, attrs, "v")
    n = cg.numel(y)
    return (
        f"for (int64_t i = 0; i < {n}; ++i) {{ const {ct} v = {cg.ptr(x)}[i]; "
        f"{cg.ptr(y)}[i] = static_cast<{cg.ctype(y)}>({expr}); }}\n"
    )


def _check_float(node: "Node", g: "Graph"):
    t = g.tensors.get(node.inputs[0])
    if t is not None and t.dtype != np.float32:
        return f"input dtype {t.dtype} is not supported (float32 only)"
    return None


def _check_clip(node: "Node", g: "Graph"):
    for i in (1, 2):
        if node.input(i) and not g.is_const(node.input(i)):
            return "min/max must be constants"
    return None


register(*FLOAT_UNARY, infer=_infer_same, emit=_emit_unary, check=_check_float)
register(*ANY_UNARY, infer=_infer_same, emit=_emit_unary)
register("Identity", infer=_infer_same, emit=emit_view_copy, fold=lambda node, v: [v[0]])
register("Clip", infer=_infer_same, emit=_emit_unary, check=_check_clip, const_inputs=(1, 2))


def _infer_not(node, g):
    return [(np.dtype(bool), g.t(node.inputs[0]).shape)]


register("Not", infer=_infer_not, emit=_emit_unary)


# Dropout in inference mode: identity plus an optional all-true mask
def _infer_dropout(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    out = [(t.dtype, t.shape)]
    if len(node.outputs) > 1 and node.outputs[1]:
        out.append((np.dtype(bool), t.shape))
    return out


def _emit_dropout(node: "Node", cg: "Emitter") -> str:
    code = emit_view_copy(node, cg)
    if len(node.outputs) > 1 and node.outputs[1]:
        code += f"std::fill_n({cg.ptr(node.outputs[1])}, {cg.numel(node.outputs[1])}, true);\n"
    return code


def _check_dropout(node: "Node", g: "Graph"):
    tm = node.input(2)
    if tm:
        v = g.const(tm)
        if v is None or bool(np.asarray(v)):
            return "training_mode must be a constant false"
    return None


register("Dropout", infer=_infer_dropout, emit=_emit_dropout, check=_check_dropout)

# ------------------------------------------------------------------------------------------------------
# binary and variadic ops

BINARY_EXPR = {
    "Add": lambda a, b: f"{a} + {b}",
    "Sub": lambda a, b: f"{a} - {b}",
    "Mul": lambda a, b: f"{a} * {b}",
    "Div": lambda a, b: f"{a} / {b}",
    "Min": lambda a, b: f"std::min({a}, {b})",
    "Max": lambda a, b: f"std::max({a}, {b})",
    "Equal": lambda a, b: f"{a} == {b}",
    "Less": lambda a, b: f"{a} < {b}",
    "Greater": lambda a, b: f"{a} > {b}",
    "LessOrEqual": lambda a, b: f"{a} <= {b}",
    "GreaterOrEqual": lambda a, b: f"{a} >= {b}",
    "And": lambda a, b: f"{a} && {b}",
    "Or": lambda a, b: f"{a} || {b}",
    "Xor": lambda a, b: f"{a} != {b}",
}
COMPARE = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"}
VARIADIC = {"Min", "Max", "Sum", "Mean"}


def _infer_binary(node: "Node", g: "Graph"):
    ts = [g.t(i) for i in node.inputs]
    dts = {t.dtype for t in ts}
    if len(dts) > 1 and node.op_type != "Pow":
        raise ShapeError(f"node '{node.name}' ({node.op_type}): input dtypes differ: {sorted(map(str, dts))}")
    shape = broadcast_shapes(node, *[t.shape for t in ts])
    dt = np.dtype(bool) if node.op_type in COMPARE else ts[0].dtype
    return [(dt, shape)]


def _pow_expr(cg: "Emitter", node: "Node"):
    e = cg.const(node.inputs[1])
    if e is not None and np.asarray(e).size == 1:
        p = float(np.asarray(e).reshape(-1)[0])
        if p == 2.0:
            return lambda v: f"{v[0]} * {v[0]}"
        if p == 3.0:
            return lambda v: f"{v[0]} * {v[0]} * {v[0]}"
        if p == 0.5:
            return lambda v: f"std::sqrt({v[0]})"
        if p == 1.0:
            return lambda v: v[0]
        if p == -1.0:
            return lambda v: f"1.0f / {v[0]}"
    base = cg.ctype(node.inputs[0])
    return lambda v: f"static_cast<{base}>(std::pow({v[0]}, {v[1]}))"


def _emit_binary(node: "Node", cg: "Emitter") -> str:
    op = node.op_type
    if op == "Pow":
        fn = _pow_expr(cg, node)
    elif op in VARIADIC:
        if op in ("Sum", "Mean"):
            n = len(node.inputs)
            scale = f" * {_f(1.0 / n)}" if op == "Mean" else ""
            fn = lambda v: "(" + " + ".join(v) + ")" + scale  # noqa: E731
        else:
            f2 = BINARY_EXPR[op]

            def fn(v):
                e = v[0]
                for x in v[1:]:
                    e = f2(e, x)
                return e
    else:
        f2 = BINARY_EXPR[op]
        fn = lambda v: f2(v[0], v[1])  # noqa: E731
    return emit_broadcast(cg, node.outputs[0], node.inputs, fn)


# NumPy folds for the ops that exported graphs apply to shape values: numeric inputs with ONNX semantics
# (integer Div truncates toward zero), object arrays of ints and Dims symbolically where decidable; otherwise
# CannotFold (not an Ml4epError) leaves the node to run time, fed by SymConst inputs.

def _sym_div(x, y):
    if isinstance(x, D.Dim) or isinstance(y, D.Dim):
        return D.norm(x // y)  # exact monomial division or SymbolicError
    q = abs(int(x)) // abs(int(y))
    return q if (x >= 0) == (y >= 0) else -q


def _sym_equal(x, y) -> bool:
    x, y = D.norm(x), D.norm(y)
    if D.is_static(x) and D.is_static(y):
        return int(x) == int(y)
    if isinstance(x, D.Dim) and isinstance(y, D.Dim):
        if x == y:
            return True
        if x.syms == y.syms:
            return False
        raise D.SymbolicError(f"cannot decide {D.fmt(x)} == {D.fmt(y)}")
    d, k = (x, int(y)) if isinstance(x, D.Dim) else (y, int(x))
    # d = c * M with M >= 1: d == k is possible only for k a positive multiple of c
    if d.coeff > 0 and (k < d.coeff or k % d.coeff):
        return False
    raise D.SymbolicError(f"cannot decide {D.fmt(d)} == {k}")


_SYM_BINARY = {
    "Add": lambda x, y: D.norm(x + y),
    "Sub": lambda x, y: D.norm(x - y),
    "Mul": lambda x, y: D.norm(x * y),
    "Div": _sym_div,
    "Equal": _sym_equal,
}


def _fold_shape_binary(node: "Node", vals: list) -> list:
    a, b = np.asarray(vals[0]), np.asarray(vals[1])
    op = node.op_type
    if a.dtype != object and b.dtype != object:
        if op == "Div" and a.dtype.kind in "iu":
            q = np.abs(a) // np.abs(b)
            return [np.where((a < 0) ^ (b < 0), -q, q).astype(a.dtype)]
        fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Equal": np.equal}[op]
        out = fn(a, b)
        return [out if op == "Equal" else out.astype(a.dtype)]
    from .shape_ops import CannotFold, tidy

    try:
        out = np.frompyfunc(_SYM_BINARY[op], 2, 1)(a, b)
    except D.SymbolicError as e:
        raise CannotFold(f"node '{node.name}' ({op}): {e}") from e
    out = np.asarray(out, dtype=object)
    return [out.astype(bool) if op == "Equal" else tidy(out)]


def _fold_where(node: "Node", vals: list) -> list:
    from .shape_ops import CannotFold, tidy

    c, x, y = (np.asarray(v) for v in vals[:3])
    if c.dtype == object:
        raise CannotFold(f"node '{node.name}' (Where): symbolic condition")
    out = np.where(c.astype(bool), x, y)
    if x.dtype != object and y.dtype != object:
        return [out.astype(x.dtype)]
    return [tidy(np.asarray(out, dtype=object))]


_SHAPE_FOLDED = {"Add", "Sub", "Mul", "Div", "Equal"}
register(*[k for k in BINARY_EXPR if k not in VARIADIC and k not in _SHAPE_FOLDED], "Pow", infer=_infer_binary,
         emit=_emit_binary)
register(*_SHAPE_FOLDED, infer=_infer_binary, emit=_emit_binary, fold=_fold_shape_binary)
register(*VARIADIC, infer=_infer_binary, emit=_emit_binary)


# Where(cond, x, y)
def _infer_where(node: "Node", g: "Graph"):
    c, x, y = (g.t(i) for i in node.inputs)
    if x.dtype != y.dtype:
        raise ShapeError(f"node '{node.name}' (Where): X and Y dtypes differ ({x.dtype}, {y.dtype})")
    return [(x.dtype, broadcast_shapes(node, c.shape, x.shape, y.shape))]


def _emit_where(node: "Node", cg: "Emitter") -> str:
    return emit_broadcast(cg, node.outputs[0], node.inputs, lambda v: f"{v[0]} ? {v[1]} : {v[2]}")


register("Where", infer=_infer_where, emit=_emit_where, fold=_fold_where)

# ------------------------------------------------------------------------------------------------------
# Cast

_ONNX_DTYPES = {1: np.float32, 11: np.float64, 7: np.int64, 6: np.int32, 9: np.bool_, 3: np.int8, 2: np.uint8}


def cast_dtype(node: "Node") -> np.dtype:
    to = int(node.attrs["to"])
    if to not in _ONNX_DTYPES:
        raise ShapeError(f"node '{node.name}' (Cast): target type {to} is not supported")
    return np.dtype(_ONNX_DTYPES[to])


def _infer_cast(node: "Node", g: "Graph"):
    return [(cast_dtype(node), g.t(node.inputs[0]).shape)]


def _check_cast(node: "Node", g: "Graph"):
    if int(node.attrs.get("to", 0)) not in _ONNX_DTYPES:
        return f"Cast to ONNX type {node.attrs.get('to')} is not supported"
    return None


def _emit_cast(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    src, dst = cg.ctype(x), cg.ctype(y)
    if dst == "bool":
        conv = "(v != 0)"
    elif src == "float" and dst in ("int64_t", "int32_t", "int8_t", "uint8_t"):
        conv = f"static_cast<{dst}>(v)"  # truncation toward zero, as ONNX
    else:
        conv = f"static_cast<{dst}>(v)"
    return (
        f"for (int64_t i = 0; i < {cg.numel(y)}; ++i) {{ const {src} v = {cg.ptr(x)}[i]; "
        f"{cg.ptr(y)}[i] = {conv}; }}\n"
    )


def _fold_cast(node: "Node", vals: list[np.ndarray]):
    v = vals[0]
    if v.dtype == object:  # symbolic shape values stay symbolic through integer casts
        return [v]
    return [v.astype(cast_dtype(node))]


register("Cast", infer=_infer_cast, emit=_emit_cast, fold=_fold_cast, check=_check_cast)


# CastLike(input, target_type): Cast to the element type of the second input (whose values are not read)
def _like_dtype(node: "Node", g: "Graph") -> np.dtype:
    dt = np.dtype(g.t(node.inputs[1]).dtype)
    if dt not in {np.dtype(t) for t in _ONNX_DTYPES.values()}:
        raise ShapeError(f"node '{node.name}' (CastLike): target type {dt} is not supported")
    return dt


def _infer_castlike(node: "Node", g: "Graph"):
    return [(_like_dtype(node, g), g.t(node.inputs[0]).shape)]


def _check_castlike(node: "Node", g: "Graph"):
    try:
        _like_dtype(node, g)
    except ShapeError as exc:
        return str(exc)
    return None


def _fold_castlike(node: "Node", vals: list[np.ndarray]):
    v = vals[0]
    return [v if v.dtype == object else v.astype(np.asarray(vals[1]).dtype)]


register("CastLike", infer=_infer_castlike, emit=_emit_cast, fold=_fold_castlike, check=_check_castlike)


# Mod(A, B): fmod=1 the sign of the dividend (C's fmod; required for floats), fmod=0 the sign of the divisor
def _check_mod(node: "Node", g: "Graph"):
    if int(node.attrs.get("fmod", 0)) == 0 and np.dtype(g.t(node.inputs[0]).dtype).kind == "f":
        return "Mod with fmod=0 on floating-point inputs is not defined by ONNX"
    return None


def _emit_mod(node: "Node", cg: "Emitter") -> str:
    a = node.inputs[0]
    if np.dtype(cg.dtype(a)).kind == "f":
        return emit_broadcast(cg, node.outputs[0], node.inputs, lambda v: f"std::fmod({v[0]}, {v[1]})")
    t = cg.ctype(a)
    if int(node.attrs.get("fmod", 0)):
        return emit_broadcast(cg, node.outputs[0], node.inputs, lambda v: f"static_cast<{t}>({v[0]} % {v[1]})")
    # the remainder takes the divisor's sign: shift C++'s truncated remainder when the signs differ
    return emit_broadcast(cg, node.outputs[0], node.inputs,
                          lambda v: f"[](const {t} x, const {t} y) {{ const {t} r = static_cast<{t}>(x % y); "
                                    f"return static_cast<{t}>((r != 0 && ((r < 0) != (y < 0))) ? r + y : r); }}"
                                    f"({v[0]}, {v[1]})")


def _fold_mod(node: "Node", vals: list):
    a, b = np.asarray(vals[0]), np.asarray(vals[1])
    if a.dtype == object or b.dtype == object:
        from .shape_ops import CannotFold

        raise CannotFold(f"node '{node.name}' (Mod): symbolic operands")
    return [(np.fmod(a, b) if int(node.attrs.get("fmod", 0)) else np.mod(a, b)).astype(a.dtype)]


register("Mod", infer=_infer_binary, emit=_emit_mod, fold=_fold_mod, check=_check_mod)
