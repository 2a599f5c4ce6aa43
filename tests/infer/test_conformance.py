"""The ONNX backend node tests through ``ml4ep.infer.backend``: every case listed as passing in
``conformance_cases.json`` must keep passing (outputs equal to the ONNX reference data within the case's
tolerances); every other case of the pinned onnx version is excluded there with its reason. The backend also
serves ``onnx.backend.test.BackendTest`` (checked on the simple model tests shipped with onnx).

The passing cases run in blocks: each block's models are compiled by one compiler call
(``ml4ep.infer.compile_many``), which keeps the suite within the CI budget."""

from __future__ import annotations

import json
import re
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import pytest

import ml4ep.infer as mi
from ml4ep.errors import InputError, UnsupportedOperatorError
from ml4ep.infer import backend
from ml4ep.infer.specialize import SpecializingModel

EXPECTED = json.loads((Path(__file__).parent / "conformance_cases.json").read_text())
BLOCK = 48
BLOCKS = [EXPECTED["pass"][k:k + BLOCK] for k in range(0, len(EXPECTED["pass"]), BLOCK)]


@lru_cache(maxsize=1)
def node_cases() -> dict:
    from onnx.backend.test.case import node

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return {c.name: c for c in node.collect_testcases(None)}


def same_onnx() -> bool:
    return onnx.__version__ == EXPECTED["onnx"]


def _graph_inputs(model: onnx.ModelProto) -> list[str]:
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def _arrays(values) -> list:
    """Case data as arrays: some cases keep theirs as TensorProto (the low-precision types)."""
    return [onnx.numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else v for v in values]


def _compare(name: str, got, want, rtol: float, atol: float) -> str:
    if isinstance(want, onnx.TensorProto):  # some cases keep their expected outputs as TensorProto
        want = onnx.numpy_helper.to_array(want)
    w = np.asarray(want)
    if got.shape != w.shape or got.dtype != w.dtype:
        return f"{name}: shape/dtype {got.shape} {got.dtype}, expected {w.shape} {w.dtype}"
    try:
        if w.dtype.kind in "biu":
            np.testing.assert_array_equal(got, w)
        else:
            np.testing.assert_allclose(got, w, rtol=rtol, atol=atol, equal_nan=True)
    except AssertionError as exc:
        return f"{name}: {str(exc).strip().splitlines()[-1]}"
    return ""


# Casts of floats to the 4- and 2-bit integers: a value out of the target's range (or NaN) has no defined result in
# the ONNX spec ("fixed point: undefined if OOR"), and the cases' expected data, computed by ml_dtypes when they
# are collected, differ by ml_dtypes version and CPU there (low bits, or 0). Those elements are compared with
# ml4ep's rule instead (truncation toward zero, saturation, NaN to 0); the others with the case's data.
_UNDEFINED_OOR = re.compile(r"test_cast(like)?_(FLOAT|FLOAT16|BFLOAT16|DOUBLE)_to_(U?INT[24])(_expanded)?$")


def _defined_only(name: str, inputs: list, outputs: list) -> list:
    if not _UNDEFINED_OOR.match(name):
        return outputs
    import ml_dtypes

    x = np.asarray(inputs[0]).astype(np.float64)
    out = np.asarray(outputs[0])
    info = ml_dtypes.iinfo(out.dtype)
    inside = (x >= int(info.min)) & (x < int(info.max) + 1)
    rule = np.clip(np.trunc(np.where(np.isnan(x), 0.0, x)), int(info.min), int(info.max)).astype(out.dtype)
    return [np.where(inside, out, rule)] + list(outputs[1:])


@pytest.mark.parametrize("block", range(len(BLOCKS)), ids=lambda k: f"{BLOCKS[k][0]}..")
def test_node_cases_keep_passing(block):
    _run_cases(BLOCKS[block])


def _run_cases(names: list[str]) -> list[str]:
    """Compile the cases with one compiler call and compare every data set with the expected outputs. Under
    ML4EP_DEVICE=cuda-host (make test's rerun through the CUDA code), cases with an operator the CUDA code refuses are
    left out; returns their names."""
    cases = node_cases()
    missing = [n for n in names if n not in cases]
    assert not missing, f"not node tests of onnx {onnx.__version__} (the list is for {EXPECTED['onnx']}): {missing}"
    compiled = mi.compile_many([cases[n].model for n in names], names=[re.sub(r"\W", "_", n) for n in names])
    # variants of the models with shape arguments as inputs, for the values of the data sets: one more call
    pending = []
    for n, m in zip(names, compiled):
        if isinstance(m, SpecializingModel):
            feeds = [dict(zip(_graph_inputs(cases[n].model), _arrays(ins))) for ins, _ in cases[n].data_sets]
            pending += [(m, key, proto, vname) for key, proto, vname in m.pending(feeds)]
    errors, refused = [], []
    if pending:
        for (m, key, _, _), v in zip(pending, mi.compile_many([p[2] for p in pending], names=[p[3] for p in pending])):
            if not isinstance(v, BaseException):
                m.adopt(key, v)
            elif isinstance(v, UnsupportedOperatorError) and "(device='cuda')" in str(v):
                case = next(n for n, c in zip(names, compiled) if c is m)
                if case not in refused:
                    refused.append(case)
    for n, m in zip(names, compiled):
        if n in refused:
            continue
        if isinstance(m, UnsupportedOperatorError) and "(device='cuda')" in str(m):
            refused.append(n)
            continue
        if isinstance(m, BaseException):
            errors.append(f"{n}: {type(m).__name__}: {str(m)[:300]}")
            continue
        case = cases[n]
        rep = backend.BackendRep(m, _graph_inputs(case.model), [o.name for o in case.model.graph.output])
        for inputs, outputs in case.data_sets:
            inputs, outputs = _arrays(inputs), _arrays(outputs)
            outputs = _defined_only(n, inputs, outputs)
            try:
                got = rep.run(list(inputs))
            except Exception as exc:  # noqa: BLE001 - reported with the case's name
                errors.append(f"{n}: {type(exc).__name__}: {str(exc)[:300]}")
                break
            if len(got) != len(outputs):
                errors.append(f"{n}: {len(got)} outputs, expected {len(outputs)}")
                break
            errors += [e for e in (_compare(n, g, w, case.rtol, case.atol) for g, w in zip(got, outputs)) if e]
    assert not errors, "\n".join(errors)
    return refused


# A fixed sample (every 8th passing case, > 200, every operator family) for the runs of the kernel tests at other
# ISA levels (make test: ML4EP_MARCH=x86-64-v3 and x86-64-v2), where the whole list would cost too much
SAMPLE = EXPECTED["pass"][::8]


@pytest.mark.parametrize("part", range(4))
def test_isa_sample(part):
    names = SAMPLE[part::4]
    assert len(SAMPLE) >= 200
    _run_cases(names)


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
    decoder = helper.make_model(helper.make_graph([helper.make_node("ImageDecoder", ["x"], ["y"])], "g", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 20)])
    assert not backend.Backend.is_compatible(decoder)  # not supported: refused before any code


def test_onnx_backend_test_runner(tmp_path):
    # onnx's own runner drives the backend on two of the simple models shipped with onnx
    import unittest

    import onnx.backend.test

    # building the runner generates onnx's node cases, whose generators warn (NumPy overflow in their casts)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        bt = onnx.backend.test.BackendTest(backend, __name__)
    bt.include(r"^(test_single_relu_model|test_sign_model)_cpu$")
    suite = unittest.TestSuite()
    for case in bt.test_cases.values():
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(case))
    with open(tmp_path / "log.txt", "w") as log:
        result = unittest.TextTestRunner(stream=log, verbosity=0).run(suite)
    assert result.testsRun - len(result.skipped) == 2, (result.testsRun, len(result.skipped))
    assert result.wasSuccessful(), (tmp_path / "log.txt").read_text()
