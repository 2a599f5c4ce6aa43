"""If, Loop and Scan (bodies compiled inline) and the operators whose output size depends on the data
(NonZero, Compress, Unique), against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import ml4ep.infer as mi
from ml4ep.errors import UnsupportedOperatorError
from opcheck import finish_model, make_model, rand, run_ort


def _vi(name, elem, shape):
    return h.make_tensor_value_info(name, elem, shape)


def _check(model, feeds_list, rtol=1e-5, atol=1e-6):
    m = mi.compile(model)
    for feeds in feeds_list:
        want = run_ort(model, feeds)
        got = m.run(feeds)
        for o, w in zip(model.graph.output, want):
            g = got[o.name]
            assert g.shape == w.shape and g.dtype == w.dtype, (o.name, g.shape, w.shape, g.dtype, w.dtype)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return m


def test_if_with_a_run_time_condition():
    then_g = h.make_graph([h.make_node("Mul", ["x", "two"], ["t"])], "then", [], [_vi("t", T.FLOAT, ["N", 3])],
                          [h.make_tensor("two", T.FLOAT, [], [2.0])])
    else_g = h.make_graph([h.make_node("Neg", ["x"], ["e"])], "else", [], [_vi("e", T.FLOAT, ["N", 3])])
    nodes = [h.make_node("Relu", ["x0"], ["x"]),
             h.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)]
    model = finish_model(h.make_graph(nodes, "if", [_vi("x0", T.FLOAT, ["N", 3]), _vi("c", T.BOOL, [])],
                                      [_vi("y", T.FLOAT, None)]), 17)
    a = rand(4, 3)
    _check(model, [{"x0": a, "c": np.array(True)}, {"x0": a[:2], "c": np.array(False)}])


def test_scan_cumulative_sum_over_a_symbolic_length():
    body = h.make_graph([h.make_node("Add", ["s_in", "x_t"], ["s_out"]), h.make_node("Identity", ["s_out"], ["y_t"])],
                        "body", [_vi("s_in", T.FLOAT, [2]), _vi("x_t", T.FLOAT, [2])],
                        [_vi("s_out", T.FLOAT, [2]), _vi("y_t", T.FLOAT, [2])])
    for direction in (0, 1):
        node = h.make_node("Scan", ["init", "xs"], ["final", "ys"], body=body, num_scan_inputs=1,
                           scan_input_directions=[direction])
        model = finish_model(h.make_graph([node], "scan", [_vi("init", T.FLOAT, [2]), _vi("xs", T.FLOAT, ["L", 2])],
                                          [_vi("final", T.FLOAT, None), _vi("ys", T.FLOAT, None)]), 17)
        _check(model, [{"init": rand(2), "xs": rand(n, 2)} for n in (1, 5, 12)])


def test_loop_with_carried_values_condition_and_scan_outputs():
    # acc = acc * 0.5 + i while acc < limit, at most M = 6 iterations; scan output: acc per iteration
    body = h.make_graph(
        [h.make_node("Cast", ["i"], ["fi"], to=T.FLOAT), h.make_node("Mul", ["acc", "half"], ["a1"]),
         h.make_node("Add", ["a1", "fi"], ["acc_out"]), h.make_node("ReduceMax", ["acc_out"], ["mx"], keepdims=0),
         h.make_node("Less", ["mx", "limit"], ["cond_out"]), h.make_node("Identity", ["acc_out"], ["scan"])],
        "body", [_vi("i", T.INT64, []), _vi("cond", T.BOOL, []), _vi("acc", T.FLOAT, [3])],
        [_vi("cond_out", T.BOOL, []), _vi("acc_out", T.FLOAT, [3]), _vi("scan", T.FLOAT, [3])],
        [h.make_tensor("half", T.FLOAT, [], [0.5])])
    node = h.make_node("Loop", ["M", "", "acc0"], ["acc_final", "scans"], body=body)
    model = finish_model(h.make_graph([node], "loop", [_vi("acc0", T.FLOAT, [3]), _vi("limit", T.FLOAT, [])],
                                      [_vi("acc_final", T.FLOAT, None), _vi("scans", T.FLOAT, None)],
                                      [h.make_tensor("M", T.INT64, [], [6])]), 17)
    # the loop stops early (scans has fewer than M rows) or runs all M iterations
    _check(model, [{"acc0": rand(3), "limit": np.array(lim, np.float32)} for lim in (1.5, 3.0, 100.0)])


def test_loop_scan_outputs_need_a_known_trip_count():
    body = h.make_graph([h.make_node("Identity", ["c"], ["c_out"]), h.make_node("Identity", ["i"], ["s"])], "b",
                        [_vi("i", T.INT64, []), _vi("c", T.BOOL, [])], [_vi("c_out", T.BOOL, []), _vi("s", T.INT64, [])])
    # a trip count given as a graph input is a shape argument: the loop is compiled per value
    node = h.make_node("Loop", ["M", ""], ["s_all"], body=body, name="the_loop")
    model = finish_model(h.make_graph([node], "l", [_vi("M", T.INT64, [])], [_vi("s_all", T.INT64, None)]), 17)
    _check(model, [{"M": np.array(m, np.int64)} for m in (0, 3, 7)])
    # a trip count computed from data is not known before the loop runs: refused, naming the node
    nodes = [h.make_node("ReduceSum", ["x"], ["sx"], keepdims=0), h.make_node("Cast", ["sx"], ["M"], to=T.INT64),
             node]
    model = finish_model(h.make_graph(nodes, "l", [_vi("x", T.FLOAT, [3])], [_vi("s_all", T.INT64, None)]), 17)
    with pytest.raises(UnsupportedOperatorError, match="the_loop.*trip count"):
        mi.compile(model)


def test_nonzero_compress_unique_have_data_dependent_sizes():
    a = rand(4, 5)
    a[a < 0.5] = 0
    m = _check(make_model("NonZero", [a], symbolic={0: {0: "N"}}), [{"x0": a}, {"x0": a[:2]}, {"x0": a * 0}])
    assert "runtime_dims()" in m.source
    cond = np.array([True, False, True, True])
    _check(make_model("Compress", [a, cond], {"axis": 0}), [{"x0": a, "x1": cond}, {"x0": a, "x1": cond * False}])
    _check(make_model("Compress", [a, cond]), [{"x0": a, "x1": cond}])
    ints = np.array([[2, 1, 2], [0, 1, 0], [2, 1, 2], [5, 5, 5]], np.int64)
    for attrs in ({}, {"sorted": 0}, {"axis": 0}, {"axis": 1, "sorted": 0}):
        model = make_model("Unique", [ints], attrs, n_outputs=4)
        _check(model, [{"x0": ints}])
