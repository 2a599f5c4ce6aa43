"""Gemm and MatMul against onnxruntime: the streaming kernel (small batch) and the BLAS path."""

from __future__ import annotations

import pytest

from opcheck import check_op, rand


@pytest.mark.parametrize("m", [1, 3, 8, 9, 64])
@pytest.mark.parametrize("tb", [0, 1])
def test_gemm_const_weight(m, tb):
    k, n = 37, 21
    b = rand(n, k) if tb else rand(k, n)
    check_op("Gemm", [rand(m, k), b, rand(n)], {"transB": tb}, const=(1, 2), symbolic={0: {0: "N"}}, rtol=1e-4,
             atol=1e-5)


@pytest.mark.parametrize("n", [1, 5, 700])
def test_gemm_output_widths(n):
    check_op("Gemm", [rand(2, 50), rand(n, 50), rand(n)], {"transB": 1}, const=(1, 2), rtol=1e-4, atol=1e-5)


def test_gemm_alpha_beta_transA_and_full_bias():
    a = rand(12, 5)  # transA: A is (K, M)
    check_op("Gemm", [a, rand(12, 7), rand(5, 7)], {"transA": 1, "alpha": 0.5, "beta": 2.0}, const=(1, 2),
             rtol=1e-4, atol=1e-5)
    check_op("Gemm", [rand(4, 6), rand(6, 3), rand(1, 3)], {"alpha": -1.5, "beta": 0.25}, const=(1, 2), rtol=1e-5)
    check_op("Gemm", [rand(4, 6), rand(6, 3)], {}, const=(1,), rtol=1e-5)


def test_gemm_runtime_operands():
    check_op("Gemm", [rand(20, 30), rand(40, 30), rand(40)], {"transB": 1, "alpha": 0.7}, rtol=1e-4, atol=1e-5)
    check_op("Gemm", [rand(3, 4), rand(4, 5), rand(3, 5)], {"beta": 0.5}, rtol=1e-5)


@pytest.mark.parametrize(
    "sa,sb",
    [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((1, 3, 4), (6, 4, 2)),
     ((4,), (4, 3)), ((3, 4), (4,)), ((2, 1, 3, 4), (5, 4, 6)), ((50, 64), (64, 80))],
)
def test_matmul_runtime(sa, sb):
    check_op("MatMul", [rand(*sa), rand(*sb)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sa", [(1, 16), (7, 3, 16), (300, 16)])
def test_matmul_const_weight(sa):
    check_op("MatMul", [rand(*sa), rand(16, 24)], const=(1,), symbolic={0: {0: "N"}}, rtol=1e-4, atol=1e-5)
