"""BatchNormalization (inference), LayerNormalization and InstanceNormalization against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

import ml4ep.infer as mi
from ml4ep.errors import UnsupportedOperatorError
from opcheck import check_op, make_model, rand


def bn_params(c: int):
    return [rand(c), rand(c), rand(c), rand(c, low=0.1, high=2.0)]  # scale, B, mean, var (> 0)


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 7), (2, 5, 4, 3)])
def test_batchnorm_constant_stats(shape):
    check_op(
        "BatchNormalization",
        [rand(*shape)] + bn_params(shape[1]),
        {"epsilon": 1e-3},
        const=(1, 2, 3, 4),
        rtol=1e-5,
        atol=1e-5,
    )


def test_batchnorm_runtime_stats_and_symbolic_batch():
    check_op("BatchNormalization", [rand(3, 4, 5)] + bn_params(4), {}, rtol=1e-5, atol=1e-5)
    check_op(
        "BatchNormalization",
        [rand(5, 8)] + bn_params(8),
        {},
        const=(1, 2, 3, 4),
        symbolic={0: {0: "N"}},
        rtol=1e-5,
        atol=1e-5,
    )


def test_batchnorm_opset9():
    check_op(
        "BatchNormalization",
        [rand(2, 3, 4, 4)] + bn_params(3),
        {"momentum": 0.9},
        const=(1, 2, 3, 4),
        opset=9,
        rtol=1e-5,
        atol=1e-5,
    )


def test_batchnorm_training_mode_rejected():
    model = make_model(
        "BatchNormalization",
        [rand(2, 3)] + bn_params(3),
        {"training_mode": 1},
        const=(1, 2, 3, 4),
        n_outputs=3,
    )
    with pytest.raises(UnsupportedOperatorError, match="training_mode"):
        mi.compile(model)


@pytest.mark.parametrize(
    "shape,axis,pshape",
    [
        ((4, 16), -1, (16,)),
        ((2, 5, 300), -1, (300,)),  # long rows: partial sums
        ((2, 3, 4, 5), 2, (4, 5)),  # several normalised axes
        ((3, 6, 8), 1, (1, 8)),  # scale broadcast over the normalised shape
    ],
)
def test_layernorm_constant_params(shape, axis, pshape):
    check_op(
        "LayerNormalization",
        [rand(*shape), rand(*pshape), rand(*pshape)],
        {"axis": axis, "epsilon": 1e-4},
        const=(1, 2),
        opset=17,
        rtol=1e-4,
        atol=1e-5,
    )


def test_layernorm_no_bias_runtime_scale_and_symbolic_batch():
    check_op(
        "LayerNormalization",
        [rand(3, 10), np.ones(10, np.float32)],
        {},
        const=(1,),
        opset=17,
        rtol=1e-4,
        atol=1e-5,
    )
    check_op(
        "LayerNormalization",
        [rand(4, 3, 12), rand(12), rand(12)],
        {},
        symbolic={0: {0: "N"}},
        opset=17,
        rtol=1e-4,
        atol=1e-5,
    )


def test_layernorm_mean_and_invstddev_outputs():
    x = rand(3, 4, 6) + 3.0  # an offset: the centred variance matters
    check_op(
        "LayerNormalization",
        [x, rand(4, 6), rand(4, 6)],
        {"axis": 1},
        const=(1, 2),
        n_outputs=3,
        opset=17,
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 4, 50)])
def test_instancenorm(shape):
    c = shape[1]
    check_op(
        "InstanceNormalization",
        [rand(*shape), rand(c), rand(c)],
        {"epsilon": 1e-3},
        const=(1, 2),
        rtol=1e-4,
        atol=1e-5,
    )


def test_instancenorm_symbolic_batch_runtime_params():
    check_op(
        "InstanceNormalization",
        [rand(3, 2, 7), rand(2), rand(2)],
        {},
        symbolic={0: {0: "N"}},
        rtol=1e-4,
        atol=1e-5,
    )
