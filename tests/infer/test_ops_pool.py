"""MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool against onnxruntime.

1-D/2-D/3-D windows, strides, dilations, asymmetric pads, ceil_mode (including windows that would start in
the end padding), every auto_pad, count_include_pad, batch 1 and more, symbolic batch, float64 and 8-bit
MaxPool. Cases are compiled several to a model (one node each) to keep the file fast.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import ml4ep.infer as mi
from ml4ep.infer.graph import Graph, Node
from ml4ep.infer.ops import pool as P
from opcheck import OPSET, check_op, make_model, rand, run_ort

TOL = {"rtol": 1e-5, "atol": 1e-5}


def check_cases(op: str, cases, batch: int = 1, symbolic_batch: bool = False, dtype=np.float32,
                oracle: str = "onnxruntime") -> None:
    """One ``op`` node per ``(spatial shape, channels, attrs)`` case, each with its own input and output.

    ``oracle="reference"`` compares with ``onnx.reference`` instead (for what onnxruntime does not implement).
    """
    nodes, inputs, outputs, feeds = [], [], [], {}
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    for k, (spatial, c, attrs) in enumerate(cases):
        x = rand(batch, c, *spatial, dtype=dtype, low=-100 if np.dtype(dtype).kind in "iu" else -2,
                 high=100 if np.dtype(dtype).kind in "iu" else 2)
        feeds[f"x{k}"] = x
        shape = ["N" if symbolic_batch else batch, c, *spatial]
        inputs.append(helper.make_tensor_value_info(f"x{k}", elem, shape))
        nodes.append(helper.make_node(op, [f"x{k}"], [f"y{k}"], name=f"{op.lower()}{k}", **attrs))
        outputs.append(helper.make_tensor_value_info(f"y{k}", elem, None))
    model = helper.make_model(helper.make_graph(nodes, "pools", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    if oracle == "reference":
        from onnx.reference import ReferenceEvaluator

        expected = ReferenceEvaluator(model).run(None, feeds)
    else:
        expected = run_ort(model, feeds)
    got = mi.compile(model).run(feeds)
    for k, e in enumerate(expected):
        what = f"case {k}: {op} x{feeds[f'x{k}'].shape} {cases[k][2]}"
        assert got[f"y{k}"].shape == e.shape, f"{what}: shape {got[f'y{k}'].shape} != {oracle} {e.shape}"
        assert got[f"y{k}"].dtype == e.dtype, what
        np.testing.assert_allclose(got[f"y{k}"], e, err_msg=what, **TOL)


def k(*kernel, **attrs):
    return dict(kernel_shape=list(kernel), **attrs)


WINDOW_CASES = {
    "2d": [
        ((8, 8), 3, k(2, 2, strides=[2, 2])),
        ((7, 9), 2, k(3, 3)),
        ((7, 8), 2, k(3, 2, strides=[2, 3], pads=[1, 0, 2, 1])),
        ((9, 9), 1, k(3, 3, strides=[2, 2], pads=[1, 1, 1, 1])),
        ((10, 10), 2, k(3, 3, dilations=[2, 2])),
        ((9, 11), 1, k(2, 3, dilations=[3, 2], pads=[1, 2, 1, 0], strides=[2, 1])),
        ((6, 6), 1, k(1, 1, strides=[2, 3])),
    ],
    "ceil_mode": [
        ((6, 6), 2, k(2, 2, strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
        ((6, 7), 1, k(2, 3, strides=[3, 2], ceil_mode=1)),  # the last window along H would start past the end
        ((7, 8), 2, k(2, 3, pads=[1, 1, 0, 1], ceil_mode=1, strides=[2, 2])),
        ((5, 8), 1, k(3, 3, strides=[2, 2], auto_pad="VALID", ceil_mode=1)),
        ((9, 6), 1, k(2, 2, dilations=[2, 1], strides=[2, 2], ceil_mode=1)),
    ],
    "auto_pad": [
        ((8, 8), 2, k(3, 3, auto_pad="SAME_UPPER", strides=[2, 2])),
        ((8, 7), 1, k(3, 2, auto_pad="SAME_LOWER", strides=[2, 2])),
        ((6, 7), 1, k(4, 3, auto_pad="SAME_UPPER")),
        ((6, 7), 1, k(4, 3, auto_pad="SAME_LOWER")),
        ((9, 8), 1, k(2, 3, auto_pad="VALID", strides=[3, 2])),
    ],
    "1d_3d": [
        ((9,), 2, k(3, strides=[2])),
        ((64,), 8, k(2, strides=[2])),
        ((10,), 1, k(4, strides=[3], pads=[2, 1], ceil_mode=1)),
        ((6, 6, 6), 1, k(2, 2, 2, strides=[2, 2, 2])),
        ((5, 6, 7), 2, k(3, 2, 3, strides=[2, 1, 2], pads=[1, 0, 1, 1, 1, 0])),
        ((5, 5, 5), 1, k(2, 2, 2, strides=[2, 2, 2], ceil_mode=1, auto_pad="NOTSET")),
    ],
}


@pytest.mark.parametrize("group", sorted(WINDOW_CASES))
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_window_pool(op, group):
    check_cases(op, WINDOW_CASES[group])


def test_average_pool_count_include_pad():
    explicit = WINDOW_CASES["2d"] + WINDOW_CASES["ceil_mode"] + WINDOW_CASES["1d_3d"]
    cases = [(s, c, dict(a, count_include_pad=1)) for s, c, a in explicit if "auto_pad" not in a]
    check_cases("AveragePool", cases)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_window_pool_symbolic_batch(op):
    check_cases(op, WINDOW_CASES["2d"][:4] + WINDOW_CASES["1d_3d"][:4], batch=3, symbolic_batch=True)


def test_window_pool_check_op():
    check_op("MaxPool", [rand(2, 3, 7, 8)], k(2, 3, pads=[1, 1, 0, 1], ceil_mode=1, strides=[2, 2]), **TOL)
    check_op("AveragePool", [rand(1, 2, 7, 7)], k(3, 3, pads=[1, 1, 1, 1], count_include_pad=1),
             symbolic={0: {0: "N"}}, **TOL)


@pytest.mark.parametrize("dtype", [np.float64, np.int8, np.uint8])
def test_maxpool_dtypes(dtype):
    check_cases("MaxPool", [((8, 8), 2, k(2, 2, strides=[2, 2])), ((7, 7), 1, k(3, 3, pads=[1, 1, 1, 1]))],
                batch=2, dtype=dtype)


def test_average_pool_float64():
    # onnxruntime has no double AveragePool: onnx.reference is the oracle
    cases = [((8, 8), 2, k(2, 2, strides=[2, 2])), ((7, 7), 1, k(3, 3, pads=[1, 1, 1, 1]))]
    check_cases("AveragePool", cases, dtype=np.float64, oracle="reference")


# ------------------------------------------------------------------------------------------------------
# global pooling

GLOBAL_SHAPES = [(5,), (40,), (3, 6), (16, 16), (3, 2, 4), (2, 1, 1)]


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(op):
    check_cases(op, [(s, 3, {}) for s in GLOBAL_SHAPES], batch=2, symbolic_batch=True)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool_float64(op):
    # onnxruntime has no double GlobalAveragePool; onnx.reference drops the unit axis of 1-D GlobalMaxPool
    check_cases(op, [((5, 7), 2, {}), ((3, 11), 1, {})], dtype=np.float64, oracle="reference")


# ------------------------------------------------------------------------------------------------------
# rejections and output sizes


def test_rejections():
    model = make_model("MaxPool", [rand(1, 2, 6, 6)], k(2, 2), n_outputs=2)
    [p] = mi.check(model)
    assert p.op_type == "MaxPool" and "Indices" in p.reason
    [p] = mi.check(make_model("AveragePool", [rand(1, 2, 6, 6, dtype=np.int8, low=-5, high=5)], k(2, 2)))
    assert "dtype int8" in p.reason
    [p] = mi.check(make_model("MaxPool", [rand(1, 2, 6, 6)], {}))
    assert "kernel_shape" in p.reason
    [p] = mi.check(make_model("MaxPool", [rand(1, 2, 6, 6)], k(2, 2, auto_pad="FOO")))
    assert "auto_pad 'FOO'" in p.reason
    [p] = mi.check(make_model("MaxPool", [rand(1, 2, 2, 2)], k(3, 3)))
    assert "kernel extent 3 exceeds" in p.reason


def _out(spatial, **attrs):
    g = Graph("t", OPSET)
    g.add_tensor("x", np.float32, (1, 1, *spatial))
    return P._infer_pool(Node("MaxPool", "n", ["x"], ["y"], attrs), g)[0][1][2:]


def test_output_shape_formulas():
    assert _out((7,), **k(3, strides=[2])) == (3,)
    assert _out((6,), **k(2, strides=[3], ceil_mode=1)) == (2,)  # the third window would start at 6
    assert _out((6,), **k(2, strides=[2], pads=[1, 1], ceil_mode=1)) == (4,)
    assert _out((6,), **k(3, strides=[2], auto_pad="SAME_UPPER")) == (3,)
    assert _out((6,), **k(3, strides=[2], auto_pad="VALID")) == (2,)
    assert _out((9,), **k(3, dilations=[3])) == (3,)


def test_symbolic_spatial_axis_rejected():
    model = make_model("MaxPool", [rand(1, 2, 6, 6)], k(2, 2), symbolic={0: {2: "H"}})
    [p] = mi.check(model)
    assert "only the batch axis may be symbolic" in p.reason
