"""Elementwise operators: unary math and activations, broadcasting binary ops, comparisons, Where, Cast.

Activations are also printed, through :func:`unary_expr`, into the loops of Gemm, MatMul and Conv nodes
they were fused into.
"""

from __future__ import annotations

import re

from typing import TYPE_CHECKING, Any

import numpy as np

from . import batch_rules as BR, register
from .common import CTYPES, ONNX_DTYPES, CannotFold, broadcast_shapes, emit_broadcast, emit_view_copy
from .. import dims as D
from ..literals import is_floating, literal, round_to_odd32
from ...errors import ShapeError

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node


# ------------------------------------------------------------------------------------------------------
# unary ops: C++ scalar expression of the input value x (float unless stated)

def unary_expr(op: str, attrs: dict[str, Any], x: str, ct: str = "float") -> str:
    """``op`` applied to the C++ value ``x``; its constants are literals of ``ct`` (the fixed ``0.0f``-style
    ones become double through :func:`double_expr`)."""
    a = attrs

    def _f(v) -> str:  # an attribute (float32 in ONNX) or a value computed from them, rounded to float32
        return literal(np.float32(v), ct)

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
    if op == "Swish":
        return f"({x} * ml4ep_rt::sigmoidf({_f(a.get('alpha', 1.0))} * {x}))"
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
        return f"ml4ep_rt::ineg({x})" if ct in INT_CTYPES else f"(-{x})"
    if op == "Abs":
        if ct in INT_CTYPES:  # the lowest value stays itself (wraps), unsigned values are their own
            return f"ml4ep_rt::iabs({x})" if ct.startswith("int") else x
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
        if ct not in ("float", "double"):  # integers; float16 and the like: NaN gives 0, as in onnxruntime
            return f"(({x} > 0) - ({x} < 0))"
        # float and double: NaN stays NaN, as in onnxruntime
        return f"({x} != {x} ? {x} : static_cast<{ct}>(({x} > 0) - ({x} < 0)))"
    if op == "Sin":
        return f"std::sin({x})"
    if op == "Cos":
        return f"std::cos({x})"
    if op in _STD_FN:
        return f"std::{_STD_FN[op]}({x})"
    if op == "Softsign":
        return f"({x} / (1.0f + std::abs({x})))"
    if op == "HardSwish":
        return f"({x} * std::min(std::max({x} * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f))"
    if op == "Mish":
        return f"({x} * ml4ep_rt::tanhf(ml4ep_rt::softplusf({x})))"
    if op == "ThresholdedRelu":
        return f"({x} > {_f(a.get('alpha', 1.0))} ? {x} : 0.0f)"
    if op == "Celu":
        al = float(a.get("alpha", 1.0))
        return (f"(std::max({x}, 0.0f) + std::min(0.0f, {_f(al)} * std::expm1({x} * {_f(1.0 / al)})))"
                if al != 1.0 else f"(std::max({x}, 0.0f) + std::min(0.0f, std::expm1({x})))")
    if op == "Shrink":
        lam, bias = np.float32(a.get("lambd", 0.5)), np.float32(a.get("bias", 0.0))
        return f"({x} < {_f(-lam)} ? {x} + {_f(bias)} : ({x} > {_f(lam)} ? {x} - {_f(bias)} : 0.0f))"
    if op == "Not":
        return f"(!{x})"
    if op == "Identity":
        return x
    if op == "Clip":
        lo, hi = a.get("min"), a.get("max")
        e = x
        if lo is not None:
            e = f"({e} < {literal(lo, ct)} ? {literal(lo, ct)} : {e})"
        if hi is not None:
            e = f"({e} > {literal(hi, ct)} ? {literal(hi, ct)} : {e})"
        return e
    raise KeyError(op)


_STD_FN = {
    "Acos": "acos", "Asin": "asin", "Atan": "atan", "Acosh": "acosh", "Asinh": "asinh", "Atanh": "atanh",
    "Cosh": "cosh", "Sinh": "sinh", "Tan": "tan",
}
FLOAT_UNARY = [
    "Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh", "Softplus", "Erf", "Gelu",
    "Sqrt", "Exp", "Log", "Reciprocal", "Sin", "Cos", "Softsign", "HardSwish", "Mish", "ThresholdedRelu",
    "Celu", "Shrink", "Swish",
]
# float ops whose expressions have no float literals: also run in double
FLOAT_ANY_UNARY = ["Floor", "Ceil", "Round", *_STD_FN]
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
        attrs = {k: v for k, v in attrs.items() if k in ("min", "max")}
    expr = unary_expr(node.op_type, attrs, "v", ct)
    if ct == "double":
        expr = double_expr(expr)
    return cg.par_for("i", cg.numel(y), f"const {ct} v = {cg.ptr(x)}[i]; {cg.ptr(y)}[i] = static_cast<{cg.ctype(y)}>({expr});")


def _check_float(node: "Node", g: "Graph"):
    t = g.tensors.get(node.inputs[0])
    if t is not None and t.dtype not in (np.float32, np.float64):
        return f"input dtype {t.dtype} is not supported (float32 and float64)"
    return None


_DOUBLE_FUNCS = {"ml4ep_rt::expf": "std::exp", "ml4ep_rt::tanhf": "std::tanh",
                 "ml4ep_rt::sigmoidf": "ml4ep_rt::sigmoid_d", "ml4ep_rt::softplusf": "ml4ep_rt::softplus_d"}


def double_expr(expr: str) -> str:
    """A float expression of ``unary_expr`` computed in double: std:: functions, double literals."""
    for a, b in _DOUBLE_FUNCS.items():
        expr = expr.replace(a, b)
    return re.sub(r"(?<![\w.])((?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)f\b", r"\1", expr)


def _check_float_any(node: "Node", g: "Graph"):
    """float32/float64, and the 16-bit floats once code generation has a C++ type for them (until then such
    nodes are refused, so that the float16 fallback computes them in float32)."""
    t = g.tensors.get(node.inputs[0])
    if t is not None and (np.dtype(t.dtype).kind not in "fV" or np.dtype(t.dtype) not in CTYPES):
        return f"input dtype {t.dtype} is not supported"
    return None


def _emit_float_any(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    f = "double" if cg.dtype(x) == np.float64 else "float"
    expr = unary_expr(node.op_type, node.attrs, "v", f)
    return cg.par_for("i", cg.numel(y), f"const {f} v = static_cast<{f}>({cg.ptr(x)}[i]); "
                                        f"{cg.ptr(y)}[i] = static_cast<{cg.ctype(y)}>({expr});")


def _check_clip(node: "Node", g: "Graph"):
    t = g.tensors.get(node.inputs[0])
    if t is not None and np.dtype(t.dtype) not in CTYPES:
        return f"input dtype {t.dtype} is not supported"
    for i in (1, 2):
        name = node.input(i)
        if name and name in g.tensors and D.is_static(g.t(name).numel) and int(g.t(name).numel) != 1:
            return f"{'min' if i == 1 else 'max'} must be a scalar"
    return None


def _emit_clip(node: "Node", cg: "Emitter") -> str:
    lo, hi = node.input(1), node.input(2)
    if all(not n or cg.const(n) is not None for n in (lo, hi)) and cg.ctype(node.inputs[0]) in (
            "float", "int64_t", "int32_t", "int8_t", "uint8_t"):
        return _emit_unary(node, cg)  # constant bounds: literals in the loop
    # bounds read at run time from their (scalar) inputs, in the tensor's own type
    x, y = node.inputs[0], node.outputs[0]
    t = cg.ctype(x)
    body = f"{t} v = {cg.ptr(x)}[i]; "
    if lo:
        body += f"const {t} lo = {cg.ptr(lo)}[0]; v = v < lo ? lo : v; "
    if hi:
        body += f"const {t} hi = {cg.ptr(hi)}[0]; v = v > hi ? hi : v; "
    return cg.par_for("i", cg.numel(y), body + f"{cg.ptr(y)}[i] = v;")


register(*[op for op in FLOAT_UNARY if op != "Swish"], infer=_infer_same, emit=_emit_unary, check=_check_float,
         batch=BR.broadcast, cuda=True)
# elementwise too, but not (yet) declared batch-separable
register("Swish", infer=_infer_same, emit=_emit_unary, check=_check_float, cuda=True)
register(*FLOAT_ANY_UNARY, infer=_infer_same, emit=_emit_float_any, check=_check_float_any, batch=BR.broadcast, cuda=True)
register(*ANY_UNARY, infer=_infer_same, emit=_emit_unary, batch=BR.broadcast, cuda=True)
register("Identity", infer=_infer_same, emit=emit_view_copy, fold=lambda node, v: [v[0]], view="same",
         batch=BR.broadcast, cuda=True)
register("Clip", infer=_infer_same, emit=_emit_clip, check=_check_clip, batch=BR.broadcast, cuda=True)


# IsNaN(x), IsInf(x; detect_negative, detect_positive) -> bool
def _emit_isx(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    f = "double" if cg.dtype(x) == np.float64 else "float"
    if node.op_type == "IsNaN":
        expr = "(v != v)"
    else:
        neg, pos = int(node.attrs.get("detect_negative", 1)), int(node.attrs.get("detect_positive", 1))
        expr = " || ".join([f"v == {literal(np.inf, f)}"] * pos + [f"v == {literal(-np.inf, f)}"] * neg) or "false"
    return cg.par_for("i", cg.numel(y), f"const {f} v = static_cast<{f}>({cg.ptr(x)}[i]); {cg.ptr(y)}[i] = {expr};")


def _infer_bool(node: "Node", g: "Graph"):
    return [(np.dtype(bool), g.t(node.inputs[0]).shape)]


register("IsNaN", "IsInf", infer=_infer_bool, emit=_emit_isx, check=_check_float_any, batch=BR.broadcast, cuda=True)


# BitwiseNot(x), BitwiseAnd/Or/Xor(a, b), BitShift(x, y; direction): integer types
def _check_int(node: "Node", g: "Graph"):
    for i in node.inputs:
        t = g.tensors.get(i)
        if t is not None and (np.dtype(t.dtype).kind not in "iu" or np.dtype(t.dtype) not in CTYPES):
            return f"input dtype {t.dtype} is not supported (integer types only)"
    if node.op_type == "BitShift" and node.attrs.get("direction") not in ("LEFT", "RIGHT"):
        return f"direction {node.attrs.get('direction')!r} is not LEFT or RIGHT"
    return None


_BITWISE = {"BitwiseAnd": "&", "BitwiseOr": "|", "BitwiseXor": "^"}


def _emit_bitwise(node: "Node", cg: "Emitter") -> str:
    t = cg.ctype(node.outputs[0])
    if node.op_type == "BitwiseNot":
        return cg.par_for("i", cg.numel(node.outputs[0]),
                          f"{cg.ptr(node.outputs[0])}[i] = static_cast<{t}>(~{cg.ptr(node.inputs[0])}[i]);")
    if node.op_type in _BITWISE:
        o = _BITWISE[node.op_type]
        return emit_broadcast(cg, node.outputs[0], node.inputs, lambda v: f"static_cast<{t}>({v[0]} {o} {v[1]})")
    dt = np.dtype(cg.dtype(node.inputs[0]))
    bits, signed = dt.itemsize * 8, dt.kind == "i"
    u = f"uint{bits}_t"
    # shifts outside [0, bits) give 0 (and -1 for a negative signed value shifted right), as the reference
    bad = (lambda b: f"({b} < 0 || {b} >= {bits})") if signed else (lambda b: f"({b} >= {bits})")
    if node.attrs.get("direction") == "LEFT":
        def fn(v):
            return f"static_cast<{t}>({bad(v[1])} ? 0 : static_cast<{u}>(static_cast<{u}>({v[0]}) << {v[1]}))"
    else:
        def fn(v):
            fill = f"({v[0]} < 0 ? -1 : 0)" if signed else "0"
            return f"static_cast<{t}>({bad(v[1])} ? {fill} : ({v[0]} >> {v[1]}))"
    return emit_broadcast(cg, node.outputs[0], node.inputs, fn)


register("BitwiseNot", infer=_infer_same, emit=_emit_bitwise, check=_check_int, batch=BR.broadcast, cuda=True)
register("BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitShift", infer=lambda n, g: _infer_binary(n, g),
         emit=_emit_bitwise, check=_check_int, batch=BR.broadcast, cuda=True)


# PRelu(x, slope): slope broadcast to x's shape
def _infer_prelu(node: "Node", g: "Graph"):
    x, s = g.t(node.inputs[0]), g.t(node.inputs[1])
    if x.dtype != s.dtype:
        raise ShapeError(f"node '{node.name}' (PRelu): X and slope dtypes differ ({x.dtype}, {s.dtype})")
    out = broadcast_shapes(node, x.shape, s.shape)
    if D.norm(D.prod(out)) != D.norm(x.numel) or len(out) != x.rank:
        raise ShapeError(f"node '{node.name}' (PRelu): slope shape {D.fmt_shape(s.shape)} does not broadcast to "
                         f"X's {D.fmt_shape(x.shape)}")
    return [(x.dtype, x.shape)]


def _check_prelu(node: "Node", g: "Graph"):
    t = g.tensors.get(node.inputs[0])
    if t is not None and (np.dtype(t.dtype).kind not in "fiV" or np.dtype(t.dtype) not in CTYPES):
        return f"input dtype {t.dtype} is not supported"
    return None


def _emit_prelu(node: "Node", cg: "Emitter") -> str:
    t = cg.ctype(node.outputs[0])
    return emit_broadcast(cg, node.outputs[0], node.inputs,
                          lambda v: f"static_cast<{t}>({v[0]} < 0 ? {v[1]} * {v[0]} : {v[0]})")


register("PRelu", infer=_infer_prelu, emit=_emit_prelu, check=_check_prelu, batch=BR.broadcast, cuda=True)


def _infer_not(node, g):
    return [(np.dtype(bool), g.t(node.inputs[0]).shape)]


register("Not", infer=_infer_not, emit=_emit_unary, batch=BR.broadcast, cuda=True)


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
        code += cg.par_for("i", cg.numel(node.outputs[1]), f"{cg.ptr(node.outputs[1])}[i] = true;")
    return code


def _check_dropout(node: "Node", g: "Graph"):
    tm = node.input(2)
    if tm:
        v = g.const(tm)
        if v is None or bool(np.asarray(v)):
            # training: the identity only when nothing is dropped (ratio 0); random masks are not supported
            r = g.const(node.input(1)) if node.input(1) else None
            if r is None or float(np.asarray(r).reshape(-1)[0]) != 0.0:
                return "training_mode must be a constant false (or the ratio a constant 0)"
    return None


register("Dropout", infer=_infer_dropout, emit=_emit_dropout, check=_check_dropout, view="same", cuda=True)

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
# integer types: wrapping arithmetic, division by zero gives 0 (cpp/prelude.hpp's iadd, ..., idiv)
INT_CTYPES = {ct for dt, ct in CTYPES.items() if dt.kind in "iu"}
INT_EXPR = {op: (lambda a, b, f=f: f"ml4ep_rt::{f}({a}, {b})")
            for op, f in (("Add", "iadd"), ("Sub", "isub"), ("Mul", "imul"), ("Div", "idiv"))}
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
        if cg.ctype(node.inputs[0]) in INT_CTYPES and p in (2.0, 3.0):
            return (lambda v: f"ml4ep_rt::imul({v[0]}, {v[0]})") if p == 2.0 else \
                (lambda v: f"ml4ep_rt::imul(ml4ep_rt::imul({v[0]}, {v[0]}), {v[0]})")
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
    if base in INT_CTYPES:  # an integer power out of range saturates (a float cast there is undefined)
        return lambda v: f"ml4ep_rt::to_int<{base}>(std::pow(static_cast<double>({v[0]}), static_cast<double>({v[1]})))"
    return lambda v: f"static_cast<{base}>(std::pow({v[0]}, {v[1]}))"


def _emit_binary(node: "Node", cg: "Emitter") -> str:
    op = node.op_type
    if op == "Pow":
        fn = _pow_expr(cg, node)
    elif op in VARIADIC:
        if op in ("Sum", "Mean"):
            n = len(node.inputs)
            acc = "double" if cg.ctype(node.outputs[0]) == "double" else "float"
            scale = f" * {literal(1.0 / n, acc)}" if op == "Mean" else ""
            if op == "Sum" and cg.ctype(node.outputs[0]) in INT_CTYPES:
                def fn(v):
                    e = v[0]
                    for x in v[1:]:
                        e = f"ml4ep_rt::iadd({e}, {x})"
                    return e
            else:
                fn = lambda v: "(" + " + ".join(v) + ")" + scale  # noqa: E731
        else:
            f2 = BINARY_EXPR[op]
            if is_floating(cg.ctype(node.outputs[0])):  # a NaN operand wins, as np.maximum / np.minimum
                f2 = lambda e, x, f2=f2: f"({x} != {x} ? {x} : {f2(e, x)})"  # noqa: E731

            def fn(v):
                e = v[0]
                for x in v[1:]:
                    e = f2(e, x)
                return e
    else:
        f2 = INT_EXPR[op] if op in INT_EXPR and cg.ctype(node.outputs[0]) in INT_CTYPES else BINARY_EXPR[op]
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
        with np.errstate(all="ignore"):  # integers wrap around and x / 0 gives 0, as the generated code
            if op == "Div" and a.dtype.kind in "iu":
                q = (a - np.fmod(a, b)) // np.where(b == 0, 1, b)  # an exact quotient: floor is truncation
                return [np.where(b == 0, 0, q).astype(a.dtype)]
            fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Equal": np.equal}[op]
            out = fn(a, b)
        return [out if op == "Equal" else out.astype(a.dtype)]
    from .shape_ops import tidy

    try:
        out = np.frompyfunc(_SYM_BINARY[op], 2, 1)(a, b)
    except D.SymbolicError as e:
        raise CannotFold(f"node '{node.name}' ({op}): {e}") from e
    out = np.asarray(out, dtype=object)
    return [out.astype(bool) if op == "Equal" else tidy(out)]


def _fold_where(node: "Node", vals: list) -> list:
    from .shape_ops import tidy

    c, x, y = (np.asarray(v) for v in vals[:3])
    if c.dtype == object:
        raise CannotFold(f"node '{node.name}' (Where): symbolic condition")
    out = np.where(c.astype(bool), x, y)
    if x.dtype != object and y.dtype != object:
        return [out.astype(x.dtype)]
    return [tidy(np.asarray(out, dtype=object))]


_SHAPE_FOLDED = {"Add", "Sub", "Mul", "Div", "Equal"}
register(*[k for k in BINARY_EXPR if k not in VARIADIC and k not in _SHAPE_FOLDED], "Pow", infer=_infer_binary,
         emit=_emit_binary, batch=BR.broadcast, cuda=True)
register(*_SHAPE_FOLDED, infer=_infer_binary, emit=_emit_binary, fold=_fold_shape_binary, batch=BR.broadcast, cuda=True)
register(*VARIADIC, infer=_infer_binary, emit=_emit_binary, batch=BR.broadcast, cuda=True)


# Where(cond, x, y)
def _infer_where(node: "Node", g: "Graph"):
    c, x, y = (g.t(i) for i in node.inputs)
    if x.dtype != y.dtype:
        raise ShapeError(f"node '{node.name}' (Where): X and Y dtypes differ ({x.dtype}, {y.dtype})")
    return [(x.dtype, broadcast_shapes(node, c.shape, x.shape, y.shape))]


def _emit_where(node: "Node", cg: "Emitter") -> str:
    return emit_broadcast(cg, node.outputs[0], node.inputs, lambda v: f"{v[0]} ? {v[1]} : {v[2]}")


register("Where", infer=_infer_where, emit=_emit_where, fold=_fold_where, batch=BR.broadcast, cuda=True)

# ------------------------------------------------------------------------------------------------------
# Cast

_ONNX_DTYPES = ONNX_DTYPES


# the float8 targets with a saturate choice, and float8e8m0 (saturate and round_mode); code of cpp/lowp.hpp
_SATURATING = {17, 18, 19, 20}
_E8M0 = 24
_ROUND_MODES = {"up": 0, "down": 1, "nearest": 2}


def _cast_mode(node: "Node") -> tuple[bool, str]:
    """Cast/CastLike's saturate (default 1) and round_mode (default "up"; float8e8m0 targets only)."""
    return bool(int(node.attrs.get("saturate", 1))), str(node.attrs.get("round_mode", "up"))


def _cast_problem(node: "Node", g: "Graph") -> str | None:
    """Why this Cast/CastLike cannot be generated (source type, round_mode), or None."""
    src = np.dtype(g.t(node.inputs[0]).dtype)
    if src not in CTYPES:
        return f"casting from {src} is not supported"
    mode = _cast_mode(node)[1]
    if mode not in _ROUND_MODES:
        return f"round_mode '{mode}' is not one of up, down, nearest"
    return None


_SMALL_INTS = {21, 22, 25, 26}  # uint4, int4, uint2, int2
_SMALL_FLOATS = {16, 17, 18, 19, 20, 23}  # bfloat16, the float8 types and float4e2m1: rounded once from a double


def float_to_int(x: np.ndarray, dtype) -> np.ndarray:
    """Float to integer as the generated code (``ml4ep_rt::to_int``): truncated toward zero, NaN to 0, beyond
    the range to the nearest limit (the ONNX spec leaves those undefined; NumPy's and ml_dtypes' casts differ
    by CPU and version there)."""
    import ml_dtypes

    dt = np.dtype(dtype)
    info = ml_dtypes.iinfo(dt)
    bits = 8 * dt.itemsize if dt.kind in "iu" else int(np.log2(int(info.max) - int(info.min) + 1))
    lo, hi = float(info.min), float(2 ** (bits - 1) if int(info.min) < 0 else 2 ** bits)  # exact powers of two
    t = np.trunc(np.nan_to_num(np.asarray(x, np.float64), nan=0.0, posinf=hi, neginf=lo))
    inside = (t > lo) & (t < hi)
    out = np.where(inside, t, 0.0).astype(dt)
    out[t <= lo] = info.min
    out[t >= hi] = info.max
    return out


def _cast_values(node: "Node", v: np.ndarray, to: int) -> np.ndarray:
    """Fold as the generated code converts: onnx's reference, except where it is undefined or differs by version
    (floats to integers, doubles to the small float types, see :func:`float_to_int`); object (symbolic) arrays stay."""
    if v.dtype == object:  # symbolic shape values stay symbolic through integer casts
        return v
    from onnx.reference.ops.op_cast import cast_to

    saturate, mode = _cast_mode(node)
    dst = np.dtype(_ONNX_DTYPES[to])
    floating = v.dtype in CTYPES and is_floating(CTYPES[v.dtype])
    with np.errstate(all="ignore"):
        if floating and (dst.kind in "iu" or to in _SMALL_INTS):
            return float_to_int(v, dst)
        if to in _SMALL_FLOATS and v.dtype.kind != "b":
            v = round_to_odd32(v)
        return np.asarray(cast_to(v, to, saturate, mode))


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
    return _cast_problem(node, g)


def _emit_cast(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    src, dst = cg.ctype(x), cg.ctype(y)
    to = {np.dtype(t): k for k, t in _ONNX_DTYPES.items()}[np.dtype(cg.dtype(y))]
    saturate, mode = _cast_mode(node)
    # wrapper types (half, bfloat16, float8, float4, int4, int2) are read as float (the small ints as int)
    if src.startswith("ml4ep_rt::"):
        src = "int" if src.endswith(("int4", "int2")) else "float"
    if dst == "bool":
        conv = "(v != 0)"
    elif to in _SATURATING:  # from the exact value: a double is rounded once
        conv = f"{dst}::cast(v, {'true' if saturate else 'false'})"
    elif to == _E8M0:  # through float, as onnx's reference
        conv = f"{dst}::cast(static_cast<float>(v), {'true' if saturate else 'false'}, {_ROUND_MODES[mode]})"
    elif src in ("float", "double") and dst in INT_CTYPES:
        # float to integer: truncated toward zero, NaN to 0, out of range to the nearest limit (ONNX: undefined)
        conv = f"ml4ep_rt::to_int<{dst}>(v)"
    else:  # integers wrap (ONNX: the higher bits discarded); int4/int2 from floats saturate as to_int
        conv = f"static_cast<{dst}>(v)"
    return cg.par_for("i", cg.numel(y), f"const {src} v = {cg.ptr(x)}[i]; {cg.ptr(y)}[i] = {conv};")


def _fold_cast(node: "Node", vals: list[np.ndarray]):
    cast_dtype(node)
    return [_cast_values(node, vals[0], int(node.attrs["to"]))]


register("Cast", infer=_infer_cast, emit=_emit_cast, fold=_fold_cast, check=_check_cast, batch=BR.broadcast, cuda=True)


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
    return _cast_problem(node, g)


def _fold_castlike(node: "Node", vals: list[np.ndarray]):
    dt = np.dtype(np.asarray(vals[1]).dtype)
    return [_cast_values(node, vals[0], {np.dtype(t): k for k, t in _ONNX_DTYPES.items()}[dt])]


register("CastLike", infer=_infer_castlike, emit=_emit_cast, fold=_fold_castlike, check=_check_castlike,
         batch=BR.broadcast, cuda=True)


# Mod(A, B): fmod=1 the sign of the dividend (C's fmod; required for floats), fmod=0 the sign of the divisor
def _check_mod(node: "Node", g: "Graph"):
    return None


def _emit_mod(node: "Node", cg: "Emitter") -> str:
    a = node.inputs[0]
    if np.dtype(cg.dtype(a)).kind == "f" or cg.ctype(a) == "ml4ep_rt::half":
        f = "double" if cg.ctype(a) == "double" else "float"
        if int(node.attrs.get("fmod", 0)):
            return emit_broadcast(cg, node.outputs[0], node.inputs,
                                  lambda v: f"std::fmod(static_cast<{f}>({v[0]}), static_cast<{f}>({v[1]}))")
        # fmod=0 on floats: the remainder takes the divisor's sign (Python's %)
        return emit_broadcast(cg, node.outputs[0], node.inputs,
                              lambda v: f"[](const {f} x, const {f} y) {{ const {f} r = std::fmod(x, y); "
                                        f"return (r != 0 && ((r < 0) != (y < 0))) ? r + y : r; }}"
                                        f"(static_cast<{f}>({v[0]}), static_cast<{f}>({v[1]}))")
    t = cg.ctype(a)
    # integers: a zero divisor gives 0 (undefined in C++, SIGFPE on x86), as lowest % -1 (ml4ep_rt::irem)
    if int(node.attrs.get("fmod", 0)) or t.startswith("u"):  # unsigned: both remainders agree
        return emit_broadcast(cg, node.outputs[0], node.inputs, lambda v: f"ml4ep_rt::irem({v[0]}, {v[1]})")
    # the remainder takes the divisor's sign: shift C++'s truncated remainder when the signs differ
    return emit_broadcast(cg, node.outputs[0], node.inputs,
                          lambda v: f"[](const {t} x, const {t} y) {{ const {t} r = ml4ep_rt::irem(x, y); "
                                    f"return static_cast<{t}>((r != 0 && ((r < 0) != (y < 0))) ? r + y : r); }}"
                                    f"({v[0]}, {v[1]})")


def _fold_mod(node: "Node", vals: list):
    a, b = np.asarray(vals[0]), np.asarray(vals[1])
    if a.dtype == object or b.dtype == object:
        raise CannotFold(f"node '{node.name}' (Mod): symbolic operands")
    with np.errstate(all="ignore"):  # a zero divisor gives 0, as the generated code
        return [(np.fmod(a, b) if int(node.attrs.get("fmod", 0)) else np.mod(a, b)).astype(a.dtype)]


register("Mod", infer=_infer_binary, emit=_emit_mod, fold=_fold_mod, check=_check_mod, batch=BR.broadcast, cuda=True)


# BitCast(x; to): the same bits read as another type of the same width
def _bitcast_dtype(node: "Node", g: "Graph") -> np.dtype:
    to = int(node.attrs.get("to", 0))
    if to not in ONNX_DTYPES:
        raise ShapeError(f"node '{node.name}' (BitCast): target type {to} is not supported")
    dt = np.dtype(ONNX_DTYPES[to])
    src = np.dtype(g.t(node.inputs[0]).dtype)
    if src.itemsize != dt.itemsize or src not in CTYPES:
        raise ShapeError(f"node '{node.name}' (BitCast): {src} and {dt} differ in width or are not supported")
    return dt


def _infer_bitcast(node: "Node", g: "Graph"):
    return [(_bitcast_dtype(node, g), g.t(node.inputs[0]).shape)]


def _emit_bitcast(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    return cg.copy(cg.ptr(y), cg.ptr(x), f"sizeof(*{cg.ptr(x)}) * size_t({cg.numel(y)})")


def _fold_bitcast(node: "Node", vals: list):
    v = np.ascontiguousarray(vals[0])
    return [v.view(np.dtype(ONNX_DTYPES[int(node.attrs["to"])]))]


register("BitCast", infer=_infer_bitcast, emit=_emit_bitcast, fold=_fold_bitcast, cuda=True)
