"""NonMaxSuppression, Det and LRN against onnxruntime, symbolic batch dimensions included."""

from __future__ import annotations

import numpy as np
import pytest

import ml4ep.infer as mi
from ml4ep.errors import Ml4epError
from opcheck import RNG, check_op, make_model, rand, run_ort


def _boxes(n, s, center=False):
    """Boxes clustered around a few centres so that many overlap."""
    c = RNG.uniform(0, 10, size=(n, 3, 2))[:, RNG.integers(0, 3, size=s)] + RNG.normal(0, 0.7, size=(n, s, 2))
    wh = RNG.uniform(0.5, 3.0, size=(n, s, 2))
    if center:
        return np.concatenate([c, wh], -1).astype(np.float32)
    # (y1, x1, y2, x2) with the corners sometimes swapped
    lo, hi = c - wh / 2, c + wh / 2
    out = np.concatenate([lo[..., ::-1], hi[..., ::-1]], -1)
    swap = RNG.random((n, s)) < 0.3
    out[swap] = out[swap][:, [2, 3, 0, 1]]
    return out.astype(np.float32)


def _nms_feeds(n, s, c, m, iou, score):
    scores = RNG.random((n, c, s)).astype(np.float32)
    scores[..., 1::4] = scores[..., ::4][..., : scores[..., 1::4].shape[-1]]  # ties: lower box index first
    return {"x0": _boxes(n, s), "x1": scores, "x2": np.array([m], np.int64),
            "x3": np.array([iou], np.float32), "x4": np.array([score], np.float32)}


def test_nms_run_time_thresholds_and_symbolic_dims():
    f = _nms_feeds(2, 9, 3, 4, 0.3, 0.2)
    model = make_model("NonMaxSuppression", [f[f"x{k}"] for k in range(5)],
                       symbolic={0: {0: "N", 1: "S"}, 1: {0: "N", 1: "C", 2: "S"}})
    m = mi.compile(model)
    for feeds in (f, _nms_feeds(3, 17, 2, 100, 0.5, 0.0), _nms_feeds(1, 5, 4, 0, 0.5, 0.1),
                  _nms_feeds(2, 30, 1, 7, 0.0, 0.9), _nms_feeds(1, 1, 1, 3, 0.5, 0.0)):
        want = run_ort(model, feeds)[0]
        got = m.run(feeds)["y0"]
        assert got.dtype == np.int64 and got.shape == want.shape, (got.shape, want.shape)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("center", [0, 1])
def test_nms_constant_thresholds(center):
    boxes = _boxes(2, 12, center=bool(center))
    scores = rand(2, 3, 12, low=0.0, high=1.0)
    ins = [boxes, scores, np.array([3], np.int64), np.array([0.4], np.float32), np.array([0.3], np.float32)]
    check_op("NonMaxSuppression", ins, {"center_point_box": center}, const=(2, 3, 4))


def test_nms_optional_inputs_absent():
    boxes, scores = _boxes(1, 10), rand(1, 2, 10, low=0.0, high=1.0)
    # no score threshold: every box is a candidate
    check_op("NonMaxSuppression", [boxes, scores, np.array([10], np.int64), np.array([0.5], np.float32)],
             const=(2, 3))
    # no max_output_boxes_per_class: nothing is selected
    check_op("NonMaxSuppression", [boxes, scores])


def _check_det(x, symbolic=None, rtol=1e-5):
    # onnxruntime has no CPU kernel for Det: NumPy's LAPACK determinant (in double) is the oracle
    m = mi.compile(make_model("Det", [x], symbolic=symbolic))
    got = m.run({"x0": x})["y0"]
    want = np.linalg.det(x.astype(np.float64))
    assert got.dtype == x.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6)
    return m


def test_det():
    a = rand(6, 4, 4)
    a[1, 2] = a[1, 0] * 2.0  # singular
    a[2] = np.eye(4, dtype=np.float32)[[1, 0, 3, 2]]  # a pivot swap is needed
    a[3, :, 0] = 0  # a zero pivot column
    m = _check_det(a, symbolic={0: {0: "N"}})
    b = rand(2, 4, 4)
    np.testing.assert_allclose(m.run({"x0": b})["y0"], np.linalg.det(b.astype(np.float64)), rtol=1e-5, atol=1e-6)
    _check_det(rand(2, 3, 5, 5).astype(np.float64), rtol=1e-12)
    _check_det(rand(7, 7))


@pytest.mark.parametrize("shape,attrs", [
    ((3, 7, 4, 5), {"size": 3}),
    ((2, 6, 9, 2), {"size": 5, "alpha": 0.01, "beta": 0.5, "bias": 2.0}),
    ((2, 5, 1, 3), {"size": 9, "alpha": 0.3}),
])
def test_lrn(shape, attrs):
    check_op("LRN", [rand(*shape)], attrs, symbolic={0: {0: "N"}}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape,size", [((2, 6, 3), 4), ((3, 5), 2), ((1, 4, 2, 2, 3), 3)])
def test_lrn_even_size_other_ranks(shape, size):
    # onnxruntime (and the ONNX reference) take odd sizes and rank 4 only: here the spec's formula in NumPy
    x = rand(*shape)
    model = make_model("LRN", [x], {"size": size, "alpha": 0.05})
    sq, lo, hi = x.astype(np.float64) ** 2, (size - 1) // 2, size // 2
    s = np.stack([sq[:, max(0, c - lo):c + hi + 1].sum(1) for c in range(x.shape[1])], 1)
    want = x / (1.0 + 0.05 / size * s) ** 0.75
    np.testing.assert_allclose(mi.compile(model).run({"x0": x})["y0"], want, rtol=1e-5, atol=1e-6)


def test_bad_input_names_the_node():
    boxes, scores = rand(1, 4, 5), rand(1, 2, 4)
    with pytest.raises(Ml4epError, match="nonmaxsuppression_node.*boxes"):
        mi.compile(make_model("NonMaxSuppression", [boxes, scores]))
    with pytest.raises(Ml4epError, match="nonmaxsuppression_node.*differ in boxes"):
        mi.compile(make_model("NonMaxSuppression", [rand(1, 4, 4), rand(1, 2, 5)]))
    with pytest.raises(Ml4epError, match="det_node.*square"):
        mi.compile(make_model("Det", [rand(2, 3, 4)]))
    with pytest.raises(Ml4epError, match="lrn_node.*rank"):
        mi.compile(make_model("LRN", [rand(5)], {"size": 3}))


def test_det_cuda_refuses_large_matrices():
    # the CUDA code factors each matrix in a local array: static sizes up to 16 (the CPU code takes any)
    assert mi.check(make_model("Det", [rand(2, 16, 16)]), device="cuda") == []
    problems = mi.check(make_model("Det", [rand(2, 17, 17)]), device="cuda")
    assert [p.op_type for p in problems] == ["Det"] and "up to 16" in problems[0].reason
