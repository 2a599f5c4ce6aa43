"""Resize against onnxruntime: nearest, n-linear and cubic (antialias too), every coordinate transformation
and nearest mode.

Where onnxruntime departs from the specification (``align_corners`` with scales whose product with the
input length is not an integer: it uses the truncated output length), the ONNX reference implementation is
the oracle instead.

Two layers: the index/weight tables built at code generation are checked against onnxruntime over a wide
matrix of modes and scales by applying them in NumPy (no C++ build, so cheap); compiled models then cover
the code paths of the emitted loops (1-D to 3-D spatial, channels last, symbolic batch, extrapolation).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from ml4ep.errors import UnsupportedOperatorError
from ml4ep.infer import lower
from ml4ep.infer.ops.resize import make_plan
from opcheck import check_op, make_model, rand, run_ort

import ml4ep.infer as mi

CTMS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


def f32(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float32)


def i64(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.int64)


def resize_inputs(x, scales=None, sizes=None, roi=None):
    """(inputs, const indices) of a Resize node, opset >= 11 layout."""
    return [x, roi, scales, sizes], tuple(k for k, v in ((1, roi), (2, scales), (3, sizes)) if v is not None)


# ------------------------------------------------------------------------------------------------------
# tables applied in NumPy


def apply_plan(plan, x: np.ndarray) -> np.ndarray:
    y = x.astype(np.float64)
    for a, m in enumerate(plan.axes):
        if m.idx is None:
            continue
        y = np.moveaxis(y, a, 0)
        if m.w is None:
            out = y[np.maximum(m.idx, 0)]
            out[m.idx < 0] = plan.extrapolation
        else:
            shape = (-1,) + (1,) * (y.ndim - 1)
            out = sum(m.w[:, k].reshape(shape) * y[np.maximum(m.idx[:, k], 0)] for k in range(m.w.shape[1]))
            out[m.idx[:, 0] < 0] = plan.extrapolation
        y = np.moveaxis(out, 0, a)
    return y


def tables_vs_ort(x, attrs, scales=None, sizes=None, roi=None, opset=19, atol=1e-5):
    if opset < 13:  # roi and scales are not optional there: empty tensors
        roi = f32() if roi is None else roi
        scales = f32() if scales is None else scales
    inputs, const = resize_inputs(x, scales, sizes, roi)
    model = make_model("Resize", inputs, attrs, const=const, opset=opset)
    expected = oracle(model, x, attrs, scales)
    g, _ = lower(model)
    node = next(n for n in g.nodes if n.op_type == "Resize")
    plan = make_plan(node, g)
    assert tuple(plan.out_shape) == expected.shape
    np.testing.assert_allclose(apply_plan(plan, x), expected, rtol=1e-5, atol=atol)


def spec_only(x, attrs, scales) -> bool:
    """align_corners with a non-integer scale * length: onnxruntime differs from the specification."""
    if attrs.get("coordinate_transformation_mode") != "align_corners" or scales is None or not len(scales):
        return False
    prod = scales.astype(np.float32) * np.array(x.shape, np.float32)
    return bool(np.any(prod != np.floor(prod)))


def oracle(model, x, attrs, scales) -> np.ndarray:
    if spec_only(x, attrs, scales):
        return ReferenceEvaluator(model).run(None, {"x0": x})[0]
    return run_ort(model, {"x0": x})[0]


SCALES_2D = [(2.0, 3.0), (1.5, 0.5), (0.6, 1.7), (0.25, 4.0), (1.0, 2.5), (0.8, 0.8)]


@pytest.mark.parametrize("ctm,nearest", list(itertools.product(CTMS + ["tf_half_pixel_for_nn"], NEAREST)))
def test_nearest_tables(ctm, nearest):
    x = rand(1, 2, 7, 9)
    for sh, sw in SCALES_2D:
        tables_vs_ort(
            x,
            {"mode": "nearest", "coordinate_transformation_mode": ctm, "nearest_mode": nearest},
            scales=f32(1, 1, sh, sw),
            opset=19 if ctm != "tf_half_pixel_for_nn" else 12,
        )
    for size in [(1, 2, 3, 20), (1, 2, 14, 5), (1, 2, 1, 1)]:
        tables_vs_ort(
            x,
            {"mode": "nearest", "coordinate_transformation_mode": ctm, "nearest_mode": nearest},
            sizes=i64(*size),
            opset=19 if ctm != "tf_half_pixel_for_nn" else 12,
        )


@pytest.mark.parametrize("ctm", CTMS)
def test_linear_tables(ctm):
    x = rand(2, 3, 6, 8)
    for sh, sw in SCALES_2D:
        tables_vs_ort(x, {"mode": "linear", "coordinate_transformation_mode": ctm}, scales=f32(1, 1, sh, sw))
    for size in [(2, 3, 3, 17), (2, 3, 13, 4), (2, 3, 1, 1)]:
        tables_vs_ort(x, {"mode": "linear", "coordinate_transformation_mode": ctm}, sizes=i64(*size))
    # trilinear
    tables_vs_ort(
        rand(1, 1, 4, 5, 6),
        {"mode": "linear", "coordinate_transformation_mode": ctm},
        scales=f32(1, 1, 1.5, 0.6, 2.0),
    )


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_crop_and_resize_tables(mode):
    x = rand(1, 2, 8, 9)
    roi = f32(0, 0, 0.1, -0.2, 1, 1, 0.7, 1.3)  # the width window reaches outside: extrapolation
    for size in [(1, 2, 5, 12), (1, 2, 11, 4), (1, 2, 1, 1)]:
        tables_vs_ort(
            x,
            {
                "mode": mode,
                "coordinate_transformation_mode": "tf_crop_and_resize",
                "extrapolation_value": -7.5,
            },
            sizes=i64(*size),
            roi=roi,
        )


@pytest.mark.parametrize("policy", ["not_larger", "not_smaller"])
def test_keep_aspect_ratio_tables(policy):
    x = rand(1, 3, 6, 10)
    tables_vs_ort(x, {"mode": "linear", "keep_aspect_ratio_policy": policy, "axes": [2, 3]}, sizes=i64(9, 12))
    tables_vs_ort(
        x, {"mode": "nearest", "keep_aspect_ratio_policy": policy, "axes": [3, 2]}, sizes=i64(7, 20)
    )


# ------------------------------------------------------------------------------------------------------
# compiled models


@pytest.mark.parametrize(
    "ctm,nearest,scales",
    [
        ("asymmetric", "floor", (1, 1, 2, 2)),  # torch nn.Upsample(scale_factor=2)
        ("half_pixel", "round_prefer_floor", (1, 1, 1.5, 0.5)),
        ("align_corners", "round_prefer_ceil", (1, 1, 0.5, 1.75)),
        ("pytorch_half_pixel", "ceil", (1, 1, 3, 0.75)),
        ("half_pixel_symmetric", "floor", (1, 1, 2.5, 1.25)),
    ],
)
def test_nearest_2d(ctm, nearest, scales):
    x = rand(2, 3, 6, 8)
    inputs, const = resize_inputs(x, scales=f32(*scales))
    check_op(
        "Resize",
        inputs,
        {"mode": "nearest", "coordinate_transformation_mode": ctm, "nearest_mode": nearest},
        const=const,
        opset=19,
    )


@pytest.mark.parametrize(
    "ctm,scales",
    [
        ("half_pixel", (1, 1, 2, 2)),
        ("half_pixel", (1, 1, 0.5, 0.75)),
        ("align_corners", (1, 1, 1.5, 0.75)),
        ("asymmetric", (1, 1, 3, 1)),
        ("pytorch_half_pixel", (1, 1, 0.4, 2.5)),
        ("half_pixel_symmetric", (1, 1, 1.5, 0.7)),
    ],
)
def test_linear_2d(ctm, scales):
    x = rand(2, 3, 6, 8)
    inputs, const = resize_inputs(x, scales=f32(*scales))
    check_op(
        "Resize", inputs, {"mode": "linear", "coordinate_transformation_mode": ctm}, const=const, opset=19
    )


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_1d_spatial(mode):
    # (N, W) rank 2, as onnxruntime's linear kernel accepts it: only the last axis resized
    inputs, const = resize_inputs(rand(4, 10), scales=f32(1, 2.3))
    check_op("Resize", inputs, {"mode": mode}, const=const)
    inputs, const = resize_inputs(rand(4, 10), sizes=i64(4, 6))
    check_op("Resize", inputs, {"mode": mode, "coordinate_transformation_mode": "align_corners"}, const=const)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_3d_spatial(mode):
    inputs, const = resize_inputs(rand(1, 2, 4, 5, 6), scales=f32(1, 1, 2, 0.6, 1.5))
    check_op("Resize", inputs, {"mode": mode}, const=const)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_channels_last(mode):
    # NHWC: the trailing channel axis is copied (or blended) as a contiguous block
    inputs, const = resize_inputs(rand(2, 5, 6, 3), scales=f32(1, 2, 0.5, 1))
    check_op("Resize", inputs, {"mode": mode}, const=const)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_symbolic_batch_sizes_and_axes(mode):
    x = rand(3, 2, 5, 7)
    inputs, const = resize_inputs(x, sizes=i64(9, 4))
    check_op("Resize", inputs, {"mode": mode, "axes": [2, -1]}, const=const, symbolic={0: {0: "N"}}, opset=19)
    inputs, const = resize_inputs(x, scales=f32(1, 1, 2, 1.5))
    check_op("Resize", inputs, {"mode": mode}, const=const, symbolic={0: {0: "N"}}, opset=13)


def test_two_symbolic_leading_axes():
    # batch and channels both symbolic: one outer index over them
    inputs, const = resize_inputs(rand(2, 3, 4, 5), scales=f32(1, 1, 2, 1.5))
    check_op("Resize", inputs, {"mode": "linear"}, const=const, symbolic={0: {0: "N", 1: "C"}}, opset=19)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_crop_and_resize(mode):
    roi = f32(0, 0, 0.1, -0.2, 1, 1, 0.7, 1.3)
    inputs, const = resize_inputs(rand(1, 2, 8, 9), sizes=i64(1, 2, 5, 12), roi=roi)
    check_op(
        "Resize",
        inputs,
        {"mode": mode, "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": -7.5},
        const=const,
        opset=13,
    )


def test_keep_aspect_ratio():
    inputs, const = resize_inputs(rand(1, 3, 6, 10), sizes=i64(9, 12))
    check_op(
        "Resize",
        inputs,
        {"mode": "linear", "keep_aspect_ratio_policy": "not_larger", "axes": [2, 3]},
        const=const,
        opset=18,
    )


def test_integer_nearest_and_identity():
    x = rand(2, 3, 4, 5, dtype=np.int8, low=-100, high=100)
    inputs, const = resize_inputs(x, scales=f32(1, 1, 2, 0.5))
    check_op("Resize", inputs, {"mode": "nearest"}, const=const)
    inputs, const = resize_inputs(rand(2, 3, 4), scales=f32(1, 1, 1))  # nothing resized: a copy
    check_op("Resize", inputs, {"mode": "linear"}, const=const)


def test_opset11_empty_scales_with_sizes():
    # opset 11: roi and scales present but empty next to sizes
    x = rand(1, 2, 3, 4)
    check_op("Resize", [x, f32(), f32(), i64(1, 2, 7, 5)], {"mode": "linear"}, const=(1, 2, 3), opset=11)
    check_op(
        "Resize",
        [x, f32(), f32(), i64(1, 2, 2, 9)],
        {"mode": "nearest", "nearest_mode": "ceil"},
        const=(1, 2, 3),
        opset=11,
    )


@pytest.mark.parametrize(
    "attrs,why",
    [
        ({"mode": "bicubic"}, "unknown mode 'bicubic'"),
        ({"mode": "cubic", "coordinate_transformation_mode": "center"}, "unknown coordinate_transformation_mode"),
    ],
)
def test_rejected_variants(attrs, why):
    inputs, const = resize_inputs(rand(1, 1, 4, 4), scales=f32(1, 1, 2, 2))
    model = make_model("Resize", inputs, attrs, const=const, opset=19)
    with pytest.raises(UnsupportedOperatorError, match=why):
        mi.compile(model)


def test_cubic_integer_input_rejected():
    inputs, const = resize_inputs(rand(1, 1, 4, 4, dtype=np.int32, low=0, high=9), scales=f32(1, 1, 2, 2))
    model = make_model("Resize", inputs, {"mode": "cubic"}, const=const, opset=19)
    with pytest.raises(UnsupportedOperatorError, match="mode 'cubic' needs a float input"):
        mi.compile(model)


def test_bad_scales_name_the_node():
    inputs, const = resize_inputs(rand(1, 1, 4, 4), scales=f32(2, 2))
    model = make_model("Resize", inputs, {"mode": "cubic"}, const=const, opset=19)
    with pytest.raises(Exception, match=r"node '.*' \(Resize\): 2 scales for 4 axes"):
        mi.compile(model)


def test_runtime_scales():
    # scales fed at run time: the model is compiled for each value met
    check_op("Resize", [rand(1, 2, 4, 5), None, f32(1, 1, 2, 0.6)], {"mode": "cubic"}, opset=19)


# ------------------------------------------------------------------------------------------------------
# cubic and antialias


CUBIC_SCALES = [(2.0, 3.0), (1.5, 0.5), (0.6, 1.7), (0.25, 4.0), (0.8, 0.8)]


@pytest.mark.parametrize("ctm", CTMS)
@pytest.mark.parametrize("a,exclude", [(-0.75, 0), (-0.5, 1)])
def test_cubic_tables(ctm, a, exclude):
    x = rand(1, 2, 7, 9)
    attrs = {"mode": "cubic", "coordinate_transformation_mode": ctm, "cubic_coeff_a": a, "exclude_outside": exclude}
    for sh, sw in CUBIC_SCALES:
        tables_vs_ort(x, attrs, scales=f32(1, 1, sh, sw))
    for size in [(1, 2, 3, 20), (1, 2, 14, 5)]:
        tables_vs_ort(x, attrs, sizes=i64(*size))


@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_antialias_tables(mode):
    x = rand(1, 2, 12, 15)
    attrs = {"mode": mode, "antialias": 1}
    for sh, sw in [(0.5, 0.6), (0.3, 0.25), (0.7, 2.0), (1.5, 0.45)]:
        tables_vs_ort(x, attrs, scales=f32(1, 1, sh, sw))
    tables_vs_ort(x, attrs, sizes=i64(1, 2, 5, 4))


@pytest.mark.parametrize(
    "attrs,scales",
    [
        ({"mode": "cubic"}, (1, 1, 2, 0.6)),
        ({"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}, (1, 1, 0.5, 1.25)),
        ({"mode": "linear", "antialias": 1}, (1, 1, 0.5, 0.3)),
        ({"mode": "cubic", "antialias": 1}, (1, 1, 0.4, 1.5)),
    ],
)
def test_cubic_antialias_symbolic_batch(attrs, scales):
    inputs, const = resize_inputs(rand(3, 2, 8, 10), scales=f32(*scales))
    check_op("Resize", inputs, attrs, const=const, symbolic={0: {0: "N"}}, opset=19, atol=2e-5)


def test_cubic_3d_channels_last_float64():
    # three resized axes (nested tap sums), then a trailing channel block; double precision (onnxruntime has
    # no double Resize: the ONNX reference is the oracle; coordinates are single precision, as for float32)
    x = rand(1, 4, 5, 6, 3, dtype=np.float64)
    inputs, const = resize_inputs(x, scales=f32(1, 1.5, 0.6, 2, 1))
    model = make_model("Resize", inputs, {"mode": "cubic", "antialias": 1}, const=const, opset=19)
    expected = ReferenceEvaluator(model).run(None, {"x0": x})[0]
    got = mi.compile(model).run({"x0": x})["y0"]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_cubic_crop_and_resize():
    roi = f32(0.1, -0.2, 0.7, 1.3)
    inputs, const = resize_inputs(rand(2, 3, 8, 9), sizes=i64(5, 12), roi=roi)
    check_op(
        "Resize",
        inputs,
        {
            "mode": "cubic",
            "coordinate_transformation_mode": "tf_crop_and_resize",
            "extrapolation_value": -7.5,
            "axes": [2, 3],
        },
        const=const,
        opset=19,
    )


def test_align_corners_follows_the_specification():
    # 0.6 * 8 = 4.8: the specification divides by 3.8, onnxruntime by 3 (its truncated output length)
    x = rand(2, 3, 6, 8)
    for mode in ["linear"]:
        attrs = {"mode": mode, "coordinate_transformation_mode": "align_corners"}
        inputs, const = resize_inputs(x, scales=f32(1, 1, 1.7, 0.6))
        model = make_model("Resize", inputs, attrs, const=const, opset=19)
        expected = ReferenceEvaluator(model).run(None, {"x0": x})[0]
        got = mi.compile(model).run({"x0": x})["y0"]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
