"""Einsum against onnxruntime: batched matrix products (the gemm path, transposed operands, swapped output),
diagonals, sums, ellipsis broadcasting, implicit output, three operands, integer and float64 loops."""

from __future__ import annotations

import numpy as np
import pytest

import ml4ep.infer as mi
from ml4ep.errors import UnsupportedOperatorError
from opcheck import check_op, make_model, rand, run_ort

pytestmark = pytest.mark.usefixtures("strict_warnings")


@pytest.mark.parametrize("eq,shapes", [
    ("bkm,bnk->bmn", [(5, 7, 3), (5, 4, 7)]),  # both operands transposed: one gemm per batch
    ("ij,jk->ki", [(30, 40), (40, 20)]),  # output transposed: the operands swap roles
])
def test_matmul_forms_symbolic_batch(eq, shapes):
    check_op("Einsum", [rand(*s) for s in shapes], {"equation": eq}, symbolic={0: {0: "N"}, 1: {0: "N"}}
             if eq.startswith("b") else None, rtol=1e-4, atol=1e-4)


def test_diagonals_sums_and_implicit_output():
    check_op("Einsum", [rand(3, 4, 4)], {"equation": "bii->bi"}, symbolic={0: {0: "N"}})
    check_op("Einsum", [rand(4, 4, 3)], {"equation": "iij"}, rtol=1e-5, atol=1e-5)  # implicit: 'j'
    # implicit output with capitals, sorted like NumPy (capitals first); onnxruntime rejects this equation
    a, b = rand(2, 3), rand(3, 5)
    got = mi.compile(make_model("Einsum", [a, b], {"equation": "Ba,aC"})).run({"x0": a, "x1": b})["y0"]
    np.testing.assert_allclose(got, np.einsum("Ba,aC", a, b), rtol=1e-5, atol=1e-5)


def test_ellipsis_broadcast_and_three_operands():
    a, b = rand(2, 1, 3, 4), rand(1, 5, 4, 6)
    model = make_model("Einsum", [a, b], {"equation": "...ij,...jk->...ik"})
    model.graph.output[0].type.tensor_type.elem_type = 1  # ONNX shape inference gives up on this broadcast
    want = run_ort(model, {"x0": a, "x1": b})[0]
    assert want.shape == (2, 5, 3, 6)
    np.testing.assert_allclose(mi.compile(model).run({"x0": a, "x1": b})["y0"], want, rtol=1e-5, atol=1e-5)
    check_op("Einsum", [rand(3, 4), rand(4, 5), rand(5, 2)], {"equation": "ij,jk,kl->li"}, rtol=1e-5, atol=1e-5)
    check_op("Einsum", [rand(2, 3, 4)], {"equation": "i...->...i"})


def test_integer_and_float64():
    check_op("Einsum", [rand(4, 5, dtype=np.int32, low=-9, high=9), rand(4, 5, dtype=np.int32, low=-9, high=9)],
             {"equation": "ij,ij->i"})
    check_op("Einsum", [rand(3, 4, dtype=np.float64), rand(4, 2, dtype=np.float64)], {"equation": "ij,jk"},
             rtol=1e-12, atol=1e-12)


def test_bad_equations_name_the_node():
    with pytest.raises(UnsupportedOperatorError, match=r"einsum_node.*label 'j' has extents 3 and 4"):
        mi.compile(make_model("Einsum", [rand(2, 3), rand(4, 5)], {"equation": "ij,jk->ik"}))
    with pytest.raises(UnsupportedOperatorError, match=r"einsum_node.*names 1 operands"):
        mi.compile(make_model("Einsum", [rand(2, 3), rand(3, 5)], {"equation": "ij->i"}))
