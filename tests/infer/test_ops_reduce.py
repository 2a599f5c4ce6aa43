"""Reductions (ReduceSum, ReduceMean, ... ArgMax, ArgMin) against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

import ml4ep.infer as mi
from ml4ep.infer.dims import Dim
from ml4ep.infer.graph import Node
from ml4ep.infer.ops import OPS, get
from opcheck import check_op, make_model, rand, run_ort

get("ReduceSum")  # loads the registry

ALL = [
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSum",
    "ReduceLogSumExp",
]


def axes(*a: int) -> np.ndarray:
    return np.array(a, dtype=np.int64)


def positive(*shape: int) -> np.ndarray:
    return rand(*shape, low=0.5, high=1.5)  # ReduceLogSum needs positive sums, ReduceProd moderate values


@pytest.mark.parametrize("op", ALL)
def test_middle_axis_every_op(op):
    # (outer, R, inner) with inner > 1: whole rows accumulated
    check_op(op, [positive(3, 4, 5), axes(1)], const=(1,), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceL2", "ReduceLogSumExp"])
def test_last_axis_long_rows(op):
    # inner == 1 with a long row: partial accumulators
    check_op(op, [rand(6, 203), axes(-1)], {"keepdims": 0}, const=(1,), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "op,shape,ax,keep",
    [
        ("ReduceSum", (2, 3, 4, 5), (1, 3), 1),  # two separate reduced runs
        ("ReduceMax", (2, 3, 4, 5), (0, 2), 0),
        ("ReduceMean", (2, 3, 4, 5), (0, 3), 1),
        ("ReduceLogSumExp", (2, 3, 4, 5), (1, 3), 0),  # general LogSumExp with its workspace
        ("ReduceL2", (3, 1, 4), (1,), 1),  # the only reduced axis has extent 1
        ("ReduceSum", (2, 3, 4), (-1, -2), 0),  # negative axes merge into one run
        ("ReduceMin", (4, 5), (0,), 1),
        ("ReduceProd", (3, 4, 2), (0, 1, 2), 0),  # everything: scalar output
    ],
)
def test_axes_patterns(op, shape, ax, keep):
    check_op(op, [positive(*shape), axes(*ax)], {"keepdims": keep}, const=(1,), rtol=1e-5, atol=1e-5)


def test_empty_axes_reduce_all_or_noop():
    check_op("ReduceSum", [rand(3, 4), None], {"keepdims": 0})
    check_op("ReduceMean", [rand(3, 4), axes()], {"keepdims": 1}, const=(1,))
    check_op("ReduceL2", [rand(3, 4), None], {"noop_with_empty_axes": 1})


@pytest.mark.parametrize(
    "op,opset,attrs",
    [
        ("ReduceSum", 11, {"axes": [1], "keepdims": 0}),  # attribute form before opset 13
        ("ReduceMean", 13, {"axes": [-1]}),  # attribute form before opset 18
        ("ReduceMax", 17, {"axes": [0, 2], "keepdims": 0}),
        ("ReduceLogSumExp", 13, {}),  # no axes attribute: reduce all
    ],
)
def test_axes_attribute_opsets(op, opset, attrs):
    check_op(op, [rand(3, 4, 5)], attrs, opset=opset, rtol=1e-5, atol=1e-5)


def test_reduce_sum_axes_input_opset13():
    check_op("ReduceSum", [rand(3, 4, 5), axes(2)], const=(1,), opset=13)


def test_logsumexp_large_values_stable():
    x = rand(4, 30, low=80.0, high=120.0)
    check_op("ReduceLogSumExp", [x, axes(1)], const=(1,), rtol=1e-6)
    check_op("ReduceLogSumExp", [rand(3, 4, 5, low=80, high=120), axes(0, 2)], const=(1,), rtol=1e-6)


@pytest.mark.parametrize(
    "op,dtype",
    [
        ("ReduceSum", np.int64),
        ("ReduceMax", np.int32),
        ("ReduceProd", np.int32),
        ("ReduceLogSumExp", np.float64),
    ],
)
def test_other_dtypes(op, dtype):
    check_op(op, [rand(3, 5, 4, dtype=dtype, low=-3, high=4), axes(1)], const=(1,), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "op,dtype", [("ReduceMax", np.int8), ("ReduceMin", np.uint8), ("ReduceMax", np.bool_), ("ReduceMin", np.bool_)]
)
def test_small_int_and_bool(op, dtype):
    check_op(op, [rand(3, 4, 5, dtype=dtype, low=0, high=9), axes(0, 2)], const=(1,))


def test_l1_unsigned():
    # onnxruntime has no unsigned ReduceL1: NumPy is the reference
    x = rand(3, 4, 5, dtype=np.uint8, low=0, high=9)
    got = mi.compile(make_model("ReduceL1", [x, axes(1)], {"keepdims": 0}, const=(1,)))(x)
    np.testing.assert_array_equal(got, np.abs(x).sum(axis=1).astype(np.uint8))


@pytest.mark.parametrize(
    "op,ax", [("ReduceMean", (0, 1)), ("ReduceSum", (0,)), ("ReduceMax", (0, 2)), ("ReduceLogSumExp", (0,))]
)
def test_symbolic_batch(op, ax):
    check_op(
        op,
        [rand(5, 6, 7), axes(*ax)],
        {"keepdims": 0},
        const=(1,),
        symbolic={0: {0: "N"}},
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "op,axis,keep", [("ArgMax", 0, 1), ("ArgMin", 1, 0), ("ArgMax", -1, 0), ("ArgMin", -1, 1)]
)
def test_arg(op, axis, keep):
    check_op(op, [rand(4, 6, 5)], {"axis": axis, "keepdims": keep})


@pytest.mark.parametrize("op,axis", [("ArgMax", 1), ("ArgMin", 2)])
def test_arg_ties_select_last(op, axis):
    x = rand(3, 7, 6, dtype=np.int64, low=0, high=3)  # many ties
    check_op(op, [x], {"axis": axis, "select_last_index": 1})
    check_op(op, [x], {"axis": axis, "select_last_index": 0, "keepdims": 0})


def test_arg_symbolic_batch():
    check_op("ArgMax", [rand(5, 9)], {"axis": 1, "keepdims": 0}, symbolic={0: {0: "N"}})
    check_op("ArgMin", [rand(5, 3, 4)], {"axis": 1}, symbolic={0: {0: "N"}})


@pytest.mark.parametrize("op", ALL + ["ArgMax", "ArgMin"])
def test_constant_folding_matches_onnxruntime(op):
    # the NumPy fold used when the input is a constant (no C++ build)
    x = positive(3, 4, 5)
    if op.startswith("Arg"):
        inputs, attrs = [x], {"axis": 1, "keepdims": 0, "select_last_index": 1}
    else:
        inputs, attrs = [x, axes(0, 2)], {"keepdims": 0}
    model = make_model(op, inputs, attrs, const=(1,))
    expected = run_ort(model, {"x0": x})[0]
    node = Node(op, "n", ["x0", "x1"][: len(inputs)], ["y0"], attrs)
    (got,) = OPS[op].fold(node, inputs)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_constant_folding_symbolic_shape_values():
    # ReduceProd of a Shape with a symbolic batch (numel of a dynamic tensor)
    n = Dim.symbol("N")
    shape = np.array([n, 3, 4], dtype=object)
    node = Node("ReduceProd", "n", ["s"], ["p"], {"keepdims": 0})
    (got,) = OPS["ReduceProd"].fold(node, [shape])
    assert got.dtype == object and got.shape == () and got.item() == 12 * n
