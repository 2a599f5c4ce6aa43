"""Softmax, LogSoftmax and Hardmax against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

import ml4ep.infer as mi
from opcheck import check_op, make_model, rand, run_ort


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape,axis", [((6, 203), -1), ((3, 4, 5), 1), ((4, 3, 2), 0)])
def test_axes(op, shape, axis):
    # axis -1: one contiguous row per output row; 1 and 0: rows strided over an inner block
    check_op(op, [rand(*shape)], {"axis": axis}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_opset11_flattens_at_axis(op):
    # before opset 13 the input is flattened to 2-D at axis (default 1) and the whole block normalised
    check_op(op, [rand(2, 3, 4)], {}, opset=11, rtol=1e-5, atol=1e-6)
    check_op(op, [rand(2, 3, 4)], {"axis": 2}, opset=11, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_large_values_stable(op):
    x = rand(5, 40, low=-1000.0, high=1000.0)
    check_op(op, [x], {}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op,axis", [("Softmax", -1), ("LogSoftmax", 0)])
def test_symbolic_batch(op, axis):
    check_op(op, [rand(7, 9)], {"axis": axis}, symbolic={0: {0: "N"}}, rtol=1e-5, atol=1e-6)


def test_masked_rows_and_rank1():
    x = rand(3, 8)
    x[:, ::3] = -np.inf  # attention masks: those entries get probability 0
    check_op("Softmax", [x], {}, rtol=1e-5, atol=1e-6)
    check_op("LogSoftmax", [rand(11)], {}, rtol=1e-5, atol=1e-6)


# (Hardmax before opset 13: test_hardmax_before_opset_13_works_on_the_2d_view)
@pytest.mark.parametrize("shape,axis", [((6, 203), -1), ((3, 4, 5), 1), ((4, 3, 2), 0)])
def test_hardmax(shape, axis):
    x = rand(*shape)
    x.reshape(-1)[::7] = 2.0  # ties: the first maximum wins
    x.reshape(-1)[3::7] = 2.0
    check_op("Hardmax", [x], {"axis": axis})


def test_hardmax_float64_and_symbolic_batch():
    x = rand(5, 3, 4)
    x[:, 1:, 2] = 3.0
    got = check_op("Hardmax", [x], {"axis": 1}, symbolic={0: {0: "N"}})[0]
    got64 = mi.compile(make_model("Hardmax", [x.astype(np.float64)], {"axis": 1}))(x.astype(np.float64))
    np.testing.assert_array_equal(got64, got.astype(np.float64))  # onnxruntime has Hardmax for float only


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_hardmax_before_opset_13_works_on_the_2d_view(axis):
    """Hardmax-11 coerces its input to 2-D at ``axis`` (one 1 per row of that view, not per 1-D slice): checked
    against NumPy (onnxruntime agrees)."""
    import onnx
    from onnx import helper, TensorProto

    x = np.random.default_rng(axis + 5).standard_normal((2, 3, 4)).astype(np.float32)
    node = helper.make_node("Hardmax", ["x"], ["y"], axis=axis)
    g = helper.make_graph([node], "hm11", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    onnx.checker.check_model(model)
    a = axis % 3
    rows = x.reshape(int(np.prod(x.shape[:a])), -1)
    want = np.zeros_like(rows)
    want[np.arange(rows.shape[0]), rows.argmax(axis=1)] = 1
    want = want.reshape(x.shape)
    got = mi.compile(model).run({"x": x})["y"]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(run_ort(model, {"x": x})[0], want)
