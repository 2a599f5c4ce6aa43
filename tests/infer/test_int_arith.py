"""Integer arithmetic of generated code at the edges: sums, differences and products that overflow wrap around
(two's complement, as NumPy and ONNX runtimes compute; C++ leaves signed overflow undefined), a division or
remainder by zero gives 0 and lowest / -1 gives lowest (undefined in C++, SIGFPE on x86), Neg and Abs of the
lowest value give it back, and integer reductions and cumulative sums wrap the same way. Checked against NumPy
formulas, and the same graph folded at compile time (constant inputs) against the generated code."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import ml4ep.infer as mi

TYPES = [np.int8, np.uint16, np.int32, np.int64, np.uint64]
BINARY = ["Add", "Sub", "Mul", "Div", "Mod0", "Mod1"]


def _values(dt, n: int, seed: int) -> np.ndarray:
    info = np.iinfo(dt)
    rng = np.random.default_rng(seed)
    edges = [info.min, info.max, 0, 1, 2, info.max - 1, info.min + 1] + ([-1, -2] if info.min < 0 else [])
    rand = rng.integers(info.min, info.max, n - len(edges), dtype=dt, endpoint=True)
    return np.concatenate([np.array(edges, dt), rand]).astype(dt)


def _pairs(dt, n: int = 63):  # 81 + 63 = 144 values: 18 rows of 8
    a, b = _values(dt, n, 1), _values(dt, n, 2)
    # every edge against every edge, and random values
    ea = np.repeat(a[:9], 9)
    eb = np.tile(b[:9], 9)
    return np.concatenate([ea, a]).astype(dt), np.concatenate([eb, b]).astype(dt)


def _want(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dt = a.dtype
    with np.errstate(all="ignore"):
        if op in ("Add", "Sub", "Mul"):
            return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}[op](a, b).astype(dt)
        pa, pb = [int(x) for x in a], [int(y) for y in b]  # exact, in Python integers
        bits = 8 * dt.itemsize
        wrap = (lambda v: ((v + 2 ** (bits - 1)) % 2 ** bits) - 2 ** (bits - 1)) if dt.kind == "i" else \
            (lambda v: v % 2 ** bits)
        out = []
        for x, y in zip(pa, pb):
            if y == 0:
                out.append(0)
            elif op == "Div":
                q = abs(x) // abs(y)
                out.append(wrap(q if (x < 0) == (y < 0) else -q))
            elif op == "Mod1":  # C's fmod: the dividend's sign
                out.append(wrap(x - y * int(abs(x) // abs(y)) * (1 if (x < 0) == (y < 0) else -1)))
            else:  # Mod0: Python's %: the divisor's sign
                out.append(wrap(x % y))
        return np.array(out, dtype=object).astype(dt)


def _model(dt, n: int, constant: bool) -> onnx.ModelProto:
    """Every op on inputs a, b (graph inputs, or initializers to be folded when ``constant``)."""
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dt))
    nodes, outs = [], []
    for op in BINARY:
        kind = op[:3] if op.startswith("Mod") else op
        attrs = {"fmod": int(op[-1])} if op.startswith("Mod") else {}
        nodes.append(helper.make_node(kind, ["a", "b"], [f"y_{op}"], **attrs))
        outs.append(helper.make_tensor_value_info(f"y_{op}", et, [n]))
    unary = ["Abs"] + (["Neg"] if np.dtype(dt).kind == "i" else [])
    for op in unary:
        nodes.append(helper.make_node(op, ["a"], [f"y_{op}"]))
        outs.append(helper.make_tensor_value_info(f"y_{op}", et, [n]))
    if np.dtype(dt).itemsize >= 4:  # ReduceSum/Prod and CumSum take 32- and 64-bit integers
        nodes += [helper.make_node("Reshape", ["a", "shape"], ["a2"]),
                  helper.make_node("ReduceSum", ["a2", "ax"], ["y_rsum"], keepdims=0),
                  helper.make_node("ReduceProd", ["a2", "ax"], ["y_rprod"], keepdims=0),
                  helper.make_node("CumSum", ["a2", "ax0"], ["y_csum"])]
        outs += [helper.make_tensor_value_info("y_rsum", et, [n // 8]),
                 helper.make_tensor_value_info("y_rprod", et, [n // 8]),
                 helper.make_tensor_value_info("y_csum", et, [n // 8, 8])]
    inits = [onnx.numpy_helper.from_array(np.array([n // 8, 8], np.int64), "shape"),
             onnx.numpy_helper.from_array(np.array([1], np.int64), "ax"),
             onnx.numpy_helper.from_array(np.array(1, np.int64), "ax0")]
    ins = []
    a, b = _pairs(dt)
    if constant:
        inits += [onnx.numpy_helper.from_array(a, "a"), onnx.numpy_helper.from_array(b, "b")]
    else:
        ins = [helper.make_tensor_value_info("a", et, [n]), helper.make_tensor_value_info("b", et, [n])]
    g = helper.make_graph(nodes, "ints", ins, outs, initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def compiled():
    n = len(_pairs(np.int8)[0])
    models = [_model(dt, n, c) for dt in TYPES for c in (False, True)]
    names = [f"ints_{np.dtype(dt).name}_{'folded' if c else 'run'}" for dt in TYPES for c in (False, True)]
    out = mi.compile_many(models, names=names)
    for m in out:
        if isinstance(m, BaseException):
            raise m
    return {(dt, c): m for (dt, c), m in zip([(dt, c) for dt in TYPES for c in (False, True)], out)}


@pytest.mark.parametrize("dt", TYPES, ids=lambda t: np.dtype(t).name)
def test_wrapping_and_division_by_zero(compiled, dt):
    a, b = _pairs(dt)
    got = compiled[(dt, False)].run({"a": a, "b": b})
    folded = compiled[(dt, True)].run({})
    for op in BINARY:
        want = _want(op, a, b)
        np.testing.assert_array_equal(got[f"y_{op}"], want, err_msg=op)
        np.testing.assert_array_equal(folded[f"y_{op}"], want, err_msg=f"{op} folded")
    with np.errstate(all="ignore"):
        unary = {"Abs": np.abs(a)} | ({"Neg": np.negative(a)} if np.dtype(dt).kind == "i" else {})
        if np.dtype(dt).itemsize >= 4:
            a2 = a.reshape(-1, 8)
            unary |= {"rsum": a2.sum(axis=1, dtype=dt), "rprod": a2.prod(axis=1, dtype=dt),
                      "csum": a2.cumsum(axis=1, dtype=dt)}
    for op, want in unary.items():
        np.testing.assert_array_equal(got[f"y_{op}"], want, err_msg=op)
        np.testing.assert_array_equal(folded[f"y_{op}"], want, err_msg=f"{op} folded")
