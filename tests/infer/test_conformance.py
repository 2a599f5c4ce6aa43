"""The ONNX backend node tests through ``ml4ep.infer.backend``: every case listed as passing in
``conformance_cases.json`` must keep passing (outputs equal to the ONNX reference data within the case's
tolerances); every other case of the pinned onnx version is excluded there with its reason. The backend also
serves ``onnx.backend.test.BackendTest`` (checked on the simple model tests shipped with onnx)."""

from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import pytest

from ml4ep.errors import InputError
from ml4ep.infer import backend

EXPECTED = json.loads((Path(__file__).parent / "conformance_cases.json").read_text())


@lru_cache(maxsize=1)
def node_cases() -> dict:
    from onnx.backend.test.case import node

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return {c.name: c for c in node.collect_testcases(None)}


def same_onnx() -> bool:
    return onnx.__version__ == EXPECTED["onnx"]


@pytest.mark.parametrize("name", EXPECTED["pass"])
def test_node_case_keeps_passing(name):
    case = node_cases().get(name)
    if case is None:
        pytest.fail(f"{name} is not a node test of onnx {onnx.__version__} (the list is for {EXPECTED['onnx']})")
    rep = backend.prepare(case.model, name=name)
    for inputs, outputs in case.data_sets:
        got = rep.run(list(inputs))
        assert len(got) == len(outputs)
        for g, w in zip(got, outputs):
            w = np.asarray(w)
            assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
            if w.dtype.kind in "biu":
                np.testing.assert_array_equal(g, w)
            else:
                np.testing.assert_allclose(g, w, rtol=case.rtol, atol=case.atol, equal_nan=True)


def test_every_case_is_listed_with_a_reason():
    if not same_onnx():
        pytest.skip(f"the list is for onnx {EXPECTED['onnx']}, this is {onnx.__version__}")
    names = set(node_cases())
    listed = set(EXPECTED["pass"]) | set(EXPECTED["excluded"])
    assert not names - listed, f"cases neither passing nor excluded: {sorted(names - listed)[:20]}"
    assert not set(EXPECTED["pass"]) & set(EXPECTED["excluded"])
    assert all(reason.strip() for reason in EXPECTED["excluded"].values())


def test_backend_interface():
    from onnx import helper

    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    a = np.array([[-1.0, 0.5, 2.0], [3.0, -4.0, 0.0]], np.float32)
    assert backend.supports_device("CPU") and not backend.supports_device("CUDA:0")
    assert backend.Backend.is_compatible(model)
    (out,) = backend.run_model(model, [a])
    np.testing.assert_array_equal(out, np.maximum(a, 0))
    rep = backend.prepare(model)
    np.testing.assert_array_equal(rep.run({"x": a[:1]})[0], np.maximum(a[:1], 0))  # any batch, by name
    with pytest.raises(InputError, match="1 inputs"):
        rep.run([a, a])
    with pytest.raises(InputError, match="CPU"):
        backend.prepare(model, device="CUDA")
    (out,) = backend.run_node(helper.make_node("Sigmoid", ["a"], ["b"]), [a])
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-a)), rtol=1e-6)
    unique = helper.make_model(helper.make_graph([helper.make_node("Unique", ["x"], ["y"])], "g", [x], [y]),
                               opset_imports=[helper.make_opsetid("", 17)])
    assert not backend.Backend.is_compatible(unique)  # not supported (yet): refused before any code


def test_onnx_backend_test_runner(tmp_path):
    # onnx's own runner drives the backend on two of the simple models shipped with onnx
    import unittest

    import onnx.backend.test

    bt = onnx.backend.test.BackendTest(backend, __name__)
    bt.include(r"^(test_single_relu_model|test_sign_model)_cpu$")
    suite = unittest.TestSuite()
    for case in bt.test_cases.values():
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(case))
    with open(tmp_path / "log.txt", "w") as log:
        result = unittest.TextTestRunner(stream=log, verbosity=0).run(suite)
    assert result.testsRun - len(result.skipped) == 2, (result.testsRun, len(result.skipped))
    assert result.wasSuccessful(), (tmp_path / "log.txt").read_text()
