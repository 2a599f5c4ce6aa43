"""Elementwise operators against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from opcheck import check_op, rand

UNARY = {
    "Relu": {}, "LeakyRelu": {"alpha": 0.07}, "Elu": {"alpha": 0.8}, "Selu": {}, "Sigmoid": {},
    "HardSigmoid": {"alpha": 0.3, "beta": 0.4}, "Tanh": {}, "Softplus": {}, "Erf": {}, "Exp": {}, "Neg": {},
    "Abs": {}, "Reciprocal": {}, "Floor": {}, "Ceil": {},
}


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary(op):
    x = rand(3, 5, 7, low=-6, high=6)
    if op == "Reciprocal":
        x = np.where(np.abs(x) < 0.1, 0.5, x).astype(np.float32)
    check_op(op, [x], UNARY[op], rtol=2e-6 if op not in ("Erf",) else 1e-5, atol=1e-6)


def test_unary_extreme_values():
    x = np.array([-200, -88.5, -87.0, -20, -1e-6, 0, 1e-6, 0.3, 20, 87, 88.6, 200], dtype=np.float32)
    for op in ("Exp", "Sigmoid", "Tanh", "Softplus", "Elu"):
        check_op(op, [x], rtol=2e-6, atol=1e-30 if op == "Exp" else 1e-7)


@pytest.mark.parametrize("op", ["Sqrt", "Log"])
def test_positive_domain(op):
    check_op(op, [rand(4, 9, low=0.01, high=50)], rtol=1e-6)


@pytest.mark.parametrize("approx", ["none", "tanh"])
def test_gelu(approx):
    check_op("Gelu", [rand(2, 33, low=-5, high=5)], {"approximate": approx}, opset=20, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Pow", "Min", "Max"])
@pytest.mark.parametrize(
    "shapes",
    [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (1, 3, 1)), ((5,), ()), ((1,), (2, 3)), ((2, 3, 1, 5), (3, 4, 1))],
)
def test_binary_broadcast(op, shapes):
    a, b = rand(*shapes[0], low=0.5, high=2), rand(*shapes[1], low=0.5, high=2)
    check_op(op, [a, b], rtol=1e-6)


def test_binary_const_operand_and_symbolic_batch():
    x, w = rand(6, 8), rand(8)
    check_op("Mul", [x, w], const=(1,), symbolic={0: {0: "N"}})
    check_op("Add", [rand(3, 1, 8), rand(3, 5, 1)], symbolic={0: {0: "N"}, 1: {0: "N"}})


def test_int64_arithmetic_and_compare():
    a, b = rand(4, 6, dtype=np.int64, low=-50, high=50), rand(6, dtype=np.int64, low=1, high=9)
    check_op("Add", [a, b])
    check_op("Mul", [a, b])
    for op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
        check_op(op, [a, b])


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater"])
def test_compare_float(op):
    a = rand(5, 7)
    b = a.copy()
    b[::2] += 0.5
    check_op(op, [a, b])


def test_variadic():
    xs = [rand(2, 3), rand(3), rand(1, 3)]
    for op in ("Min", "Max", "Sum", "Mean"):
        check_op(op, xs)


def test_pow_exponents():
    x = rand(3, 7, low=0.1, high=3)
    for p in (2.0, 3.0, 0.5, -1.0, 1.7):
        check_op("Pow", [x, np.array(p, dtype=np.float32)], const=(1,), rtol=1e-5)
    check_op("Pow", [x, rand(3, 7, low=-2, high=2)], rtol=1e-5)


def test_where():
    c = rand(4, 1, 5, dtype=np.bool_)
    check_op("Where", [c, rand(4, 3, 5), rand(5)])
    check_op("Where", [c, rand(1, 3, 1, dtype=np.int64, low=-9, high=9), rand(4, 3, 5, dtype=np.int64, low=0, high=5)])


@pytest.mark.parametrize("bounds", [(-0.5, 0.7), (None, 1.0), (-1.0, None), (None, None)])
def test_clip(bounds):
    lo, hi = bounds
    ins = [rand(3, 8),
           None if lo is None else np.array(lo, dtype=np.float32),
           None if hi is None else np.array(hi, dtype=np.float32)]
    while ins[-1] is None and len(ins) > 1:
        ins.pop()
    check_op("Clip", ins, const=tuple(range(1, len(ins))))


def test_clip_int():
    check_op("Clip", [rand(10, dtype=np.int64, low=-20, high=20), np.array(-3), np.array(4)], const=(1, 2))


@pytest.mark.parametrize("to,src", [(7, np.float32), (1, np.int64), (9, np.float32), (1, np.bool_), (6, np.int64)])
def test_cast(to, src):
    x = rand(4, 5, dtype=src, low=-30, high=30)
    check_op("Cast", [x], {"to": to})


def test_not_and_logic():
    a, b = rand(3, 4, dtype=np.bool_), rand(4, dtype=np.bool_)
    check_op("Not", [a])
    for op in ("And", "Or", "Xor"):
        check_op(op, [a, b])


def test_dropout_inference_is_identity():
    check_op("Dropout", [rand(3, 4)], n_outputs=1)
