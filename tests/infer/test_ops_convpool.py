"""Conv, ConvTranspose and pooling against onnxruntime: 1-D/2-D/3-D, groups, strides, dilations, pads."""

from __future__ import annotations

import pytest

from opcheck import check_op, rand

TOL = {"rtol": 1e-4, "atol": 1e-4}


@pytest.mark.parametrize(
    "xshape,wshape,attrs",
    [
        ((1, 2, 17), (4, 2, 3), {}),
        ((2, 4, 9, 11), (6, 2, 3, 3), {"group": 2, "strides": [2, 1], "pads": [1, 0, 2, 1]}),
        ((1, 3, 10, 10), (3, 1, 3, 3), {"group": 3, "dilations": [2, 2], "pads": [2, 1, 2, 2]}),
        ((1, 16, 12, 12), (32, 16, 3, 3), {"pads": [1, 1, 1, 1]}),
        ((3, 2, 6, 5, 7), (4, 2, 3, 2, 3), {"strides": [1, 2, 2], "auto_pad": "SAME_LOWER"}),
        ((1, 1, 8, 8), (2, 1, 1, 1), {"auto_pad": "VALID"}),
    ],
)
def test_conv(xshape, wshape, attrs):
    check_op("Conv", [rand(*xshape), rand(*wshape), rand(wshape[0])], attrs, const=(1, 2),
             symbolic={0: {0: "N"}}, **TOL)


def test_conv_without_bias():
    check_op("Conv", [rand(2, 3, 7, 7), rand(5, 3, 3, 3)], {"strides": [2, 2]}, const=(1,), **TOL)


@pytest.mark.parametrize(
    "xshape,wshape,attrs",
    [
        ((1, 4, 5), (4, 2, 3), {"strides": [2]}),
        ((2, 4, 5, 6), (4, 3, 3, 3), {"strides": [2, 2], "pads": [1, 0, 1, 1], "output_padding": [1, 0]}),
        ((1, 4, 4, 4), (4, 1, 2, 2), {"group": 2, "dilations": [2, 1]}),
        ((1, 2, 3, 4, 3), (2, 2, 2, 2, 2), {"strides": [2, 2, 1]}),
    ],
)
def test_conv_transpose(xshape, wshape, attrs):
    cout = wshape[1] * attrs.get("group", 1)
    check_op("ConvTranspose", [rand(*xshape), rand(*wshape), rand(cout)], attrs, const=(1, 2), **TOL)


@pytest.mark.parametrize(
    "xshape,attrs",
    [
        ((1, 2, 9), {"kernel_shape": [3], "strides": [2]}),
        ((2, 3, 7, 8), {"kernel_shape": [2, 3], "pads": [1, 1, 0, 1], "ceil_mode": 1, "strides": [2, 2]}),
        ((1, 2, 8, 8), {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
        ((1, 1, 6, 6, 6), {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2]}),
    ],
)
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool(op, xshape, attrs):
    check_op(op, [rand(*xshape)], attrs, symbolic={0: {0: "N"}}, **TOL)


def test_maxpool_dilations_and_avg_count_include_pad():
    check_op("MaxPool", [rand(1, 2, 10, 10)], {"kernel_shape": [3, 3], "dilations": [2, 2]}, **TOL)
    check_op("AveragePool", [rand(1, 2, 7, 7)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                                   "count_include_pad": 1}, **TOL)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("xshape", [(2, 3, 5), (1, 4, 3, 6), (2, 2, 3, 2, 4)])
def test_global_pool(op, xshape):
    check_op(op, [rand(*xshape)], symbolic={0: {0: "N"}}, **TOL)
