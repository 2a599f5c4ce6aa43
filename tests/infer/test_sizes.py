"""Absurd sizes from untrusted models: a clear ml4ep error naming the node and the dimensions, never a crash.

Run-time sizes (symbolic dimensions from Shape/Concat: L^3 * M elements) are checked by the generated code
before anything is allocated (limits.py); static ones at compile time; constant folding and the weights file are
capped; specialised builds are counted. Models that might crash run in a subprocess, so that a regression is a
failing test and not a dead test run. Normal results are compared with onnxruntime.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ml4ep.infer as mi
from ml4ep.errors import InputError, ShapeError
from ml4ep._native import build
from ml4ep.infer import limits
from opcheck import check_op, make_model, run_ort

pytestmark = pytest.mark.usefixtures("strict_warnings")

ONE = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "sizes", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _shape_cat():
    """s = Concat(Shape(x), Shape(x), Shape(x), Shape(z)) = [L, L, L, M]."""
    return [
        helper.make_node("Shape", ["x"], ["sx"], name="shape_x"),
        helper.make_node("Shape", ["z"], ["sz"], name="shape_z"),
        helper.make_node("Concat", ["sx", "sx", "sx", "sz"], ["s"], axis=0, name="cat"),
    ]


def _xz():
    return [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["L"]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["M"])]


def overflow_model():
    """The reported model: ConstantOfShape([L, L, L, M]) summed; L = 2^16, M = 2^14 is 2^62 elements."""
    nodes = _shape_cat() + [
        helper.make_node("ConstantOfShape", ["s"], ["c"], name="fill", value=ONE),
        helper.make_node("ReduceSum", ["c"], ["y"], keepdims=0, name="total"),
    ]
    return _model(nodes, _xz(), [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])


def expand_model(output_expanded: bool = False):
    """Expand of a constant to the run-time shape [L, L, L, M], summed (or returned as the output)."""
    nodes = _shape_cat() + [helper.make_node("Expand", ["one", "s"], ["e"], name="grow")]
    if output_expanded:
        nodes[-1].output[0] = "y"
    else:
        nodes.append(helper.make_node("ReduceSum", ["e"], ["y"], keepdims=0, name="total"))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return _model(nodes, _xz(), [out], [numpy_helper.from_array(np.ones(1, np.float32), "one")])


def _feeds(n_x: int, n_z: int) -> dict:
    return {"x": np.ones(n_x, np.float32), "z": np.ones(n_z, np.float32)}


def _run_isolated(model, tmp_path, calls: list[tuple[int, int]]) -> subprocess.CompletedProcess:
    """Compile ``model`` and call it with inputs x, z of the given sizes in turn, in a fresh interpreter (a crash
    fails the test, not the test run); per call it prints the result's sum or the error class and message."""
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    script = textwrap.dedent(f"""
        import numpy as np
        import ml4ep.infer as mi
        from ml4ep.errors import Ml4epError
        m = mi.compile({str(path)!r}, name="sizes_isolated")
        for n_x, n_z in {calls!r}:
            try:
                y = m(np.ones(n_x, np.float32), np.ones(n_z, np.float32))
            except Ml4epError as exc:
                print("RAISED", type(exc).__name__, str(exc).replace(chr(10), " "))
            else:
                print("SUM", float(np.sum(y, dtype=np.float64)))
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ))


def _check_isolated(model, tmp_path, calls, *needles: str) -> None:
    """Small calls agree with onnxruntime, huge ones (n_x >= 2^11) raise an Ml4epError containing ``needles``."""
    res = _run_isolated(model, tmp_path, calls)
    assert res.returncode == 0, f"the process died (rc {res.returncode}):\n{res.stdout}\n{res.stderr[-3000:]}"
    lines = res.stdout.strip().splitlines()
    assert len(lines) == len(calls), res.stdout + res.stderr[-3000:]
    for (n_x, n_z), line in zip(calls, lines):
        if n_x >= 2 ** 11:
            assert line.startswith("RAISED"), line
            for n in needles:
                assert n.format(n_x=n_x, n_z=n_z) in line, f"{n!r} not in {line!r}"
        else:
            expected = float(np.sum(run_ort(model, _feeds(n_x, n_z))[0], dtype=np.float64))
            assert line.startswith("SUM"), line
            np.testing.assert_allclose(float(line.split()[1]), expected, rtol=1e-6)


# ------------------------------------------------------------------------------------------------------
# run-time sizes from symbolic dimensions


def test_reported_workspace_overflow_is_a_clear_error(tmp_path):
    """The reported model: 2^62 elements (whose byte count wraps to 0) is an Ml4epError naming the node, the
    tensor and the dimensions; the model keeps working afterwards; 2^50 bytes (no wrap) is refused as well."""
    calls = [(3, 2), (2 ** 16, 2 ** 14), (5, 7), (2 ** 11, 2 ** 15), (8, 16)]
    _check_isolated(overflow_model(), tmp_path, calls, "Ml4epError", "tensor 'c' of node 'fill' (ConstantOfShape)",
                    "(L, L, L, M)", "L={n_x}, M={n_z}", "over the limit")


def test_expand_from_shape_overflow(tmp_path):
    # 2^62 elements, and 2^64 bytes (a product that wraps int64 to exactly 0)
    calls = [(4, 3), (2 ** 16, 2 ** 14), (2 ** 16, 2 ** 16), (2, 9)]
    _check_isolated(expand_model(), tmp_path, calls, "Ml4epError", "node 'grow' (Expand)", "L={n_x}, M={n_z}")


def test_expanded_output_refused_before_allocation(tmp_path):
    """The huge tensor is the output: refused in Python before NumPy allocates it (an InputError)."""
    calls = [(3, 2), (2 ** 16, 2 ** 14), (2, 2)]
    _check_isolated(expand_model(output_expanded=True), tmp_path, calls, "InputError", "output 'y'", "over the limit",
                    "L={n_x}, M={n_z}")


def test_sanitized_standalone_program_refuses(tmp_path):
    """The saved header in a standalone program built with -Wall -Wextra -Werror and ASan/UBSan: the huge
    dimensions give the error (no int64 overflow, no out-of-bounds write), small ones the right sum."""
    m = mi.compile(overflow_model(), name="sizes_standalone")
    d = m.save(tmp_path / "saved")
    exe = tmp_path / "prog"
    cmd = [build.compiler(), "-std=c++17", "-O1", "-DML4EP_NO_BLAS", "-Wall", "-Wextra", "-Werror",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=all", str(d / "example.cpp"), "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    bad = subprocess.run([str(exe), str(d / "sizes_standalone.bin"), "-", "65536", "16384"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert bad.returncode == 1, bad.stderr[-3000:]
    assert "error:" in bad.stderr and "'fill'" in bad.stderr and "L=65536" in bad.stderr, bad.stderr[-3000:]
    assert "runtime error" not in bad.stderr and "AddressSanitizer" not in bad.stderr
    ok = subprocess.run([str(exe), str(d / "sizes_standalone.bin"), "-", "3", "5"], capture_output=True, text=True,
                        env=env, timeout=300)
    assert ok.returncode == 0 and "sum 135" in ok.stdout, ok.stdout + ok.stderr[-3000:]


# ------------------------------------------------------------------------------------------------------
# static sizes, constant folding, weights


def _const_shape_model(op_nodes, inits, out_type=TensorProto.FLOAT):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", out_type, None)
    return _model(op_nodes + [helper.make_node("ReduceSum", ["big"], ["big_sum"], keepdims=0, name="total"),
                              helper.make_node("Add", ["big_sum", "x"], ["y"], name="plus_x")],
                  [x], [y], inits)


def _i64(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


@pytest.mark.parametrize("case", ["constant_of_shape", "expand", "tile"])
def test_static_huge_tensor_refused_at_compile_time(case):
    """2^48 elements from a 150-byte model: a ShapeError naming the node and the shape, no MemoryError."""
    n = 2 ** 24
    if case == "constant_of_shape":
        nodes = [helper.make_node("ConstantOfShape", ["s"], ["big"], name="huge", value=ONE)]
        inits = [_i64("s", [n, n])]
    elif case == "expand":
        nodes = [helper.make_node("Expand", ["one", "s"], ["big"], name="huge")]
        inits = [_i64("s", [n, n]), numpy_helper.from_array(np.ones(1, np.float32), "one")]
    else:
        nodes = [helper.make_node("Tile", ["w", "r"], ["big"], name="huge")]
        inits = [_i64("r", [n, n]), numpy_helper.from_array(np.ones((1, 1), np.float32), "w")]
    with pytest.raises(ShapeError, match=rf"'huge'.*\({n}, {n}\).*over the limit"):
        mi.compile(_const_shape_model(nodes, inits), cache=False)


def test_expand_shape_as_graph_input_refused():
    """Expand's shape a graph input (a specialised build per value): 2^62 elements refused, small ones work."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    s = helper.make_tensor_value_info("s", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    proto = _model([helper.make_node("Expand", ["x", "s"], ["e"], name="grow"),
                    helper.make_node("ReduceSum", ["e"], ["y"], keepdims=0, name="total")], [x, s], [y])
    m = mi.compile(proto)
    xv = np.array([0.5], np.float32)
    for shape in ([2, 3], [4, 1]):
        sv = np.array(shape, np.int64)
        np.testing.assert_allclose(m(xv, sv), run_ort(proto, {"x": xv, "s": sv})[0])
    with pytest.raises(ShapeError, match=r"'grow'.*\(2147483648, 2147483648\)"):
        m(xv, np.array([2 ** 31, 2 ** 31], np.int64))


@pytest.mark.parametrize("case", ["constant_of_shape", "range", "tile"])
def test_folding_capped_computed_at_run_time(monkeypatch, case):
    """Beyond the folding cap a node is left to run time (its kernel): the weights file stays small and the
    result still agrees with onnxruntime."""
    monkeypatch.setattr(limits, "FOLD_MAX_ELEMENTS", 1000)
    if case == "constant_of_shape":
        nodes = [helper.make_node("ConstantOfShape", ["s"], ["big"], name="big_fill",
                                  value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.25]))]
        inits = [_i64("s", [64, 64])]
    elif case == "range":
        nodes = [helper.make_node("Range", ["a", "b", "d"], ["big"], name="big_range")]
        inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("a", 1.0), ("b", 4097.0), ("d", 1.0))]
    else:
        nodes = [helper.make_node("Tile", ["w", "r"], ["big"], name="big_tile")]
        inits = [_i64("r", [64, 32]), numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(2, 2), "w")]
    proto = _const_shape_model(nodes, inits)
    m = mi.compile(proto, cache=False)
    assert (m.directory / f"{m.name}.bin").stat().st_size < 4000  # not materialised
    xv = np.array([1.5], np.float32)
    np.testing.assert_allclose(m(xv), run_ort(proto, {"x": xv})[0], rtol=1e-6)


def test_folding_total_capped(monkeypatch):
    """Several folded constants: past the total budget the rest are computed at run time."""
    monkeypatch.setattr(limits, "FOLD_MAX_BYTES", 3 * 4096 * 4 + 100)
    nodes, names = [], []
    for k in range(6):
        nodes.append(helper.make_node("ConstantOfShape", [f"s{k}"], [f"c{k}"], name=f"fill{k}",
                                      value=helper.make_tensor("v", TensorProto.FLOAT, [1], [float(k + 1)])))
        names.append(f"c{k}")
    nodes.append(helper.make_node("Sum", names, ["big"], name="sum_all"))
    inits = [_i64(f"s{k}", [64, 64]) for k in range(6)]
    proto = _const_shape_model(nodes, inits)
    m = mi.compile(proto, cache=False)
    assert (m.directory / f"{m.name}.bin").stat().st_size < 6 * 4096 * 4
    xv = np.array([0.5], np.float32)
    np.testing.assert_allclose(m(xv), run_ort(proto, {"x": xv})[0], rtol=1e-6)


def test_weights_file_capped(monkeypatch):
    monkeypatch.setattr(limits, "MAX_WEIGHT_BYTES", 10_000)
    w = np.ones((64, 64), np.float32)
    proto = make_model("MatMul", [np.ones((2, 64), np.float32), w], const=(1,))
    with pytest.raises(ShapeError, match=r"weights file.*limit.*'matmul_node"):
        mi.compile(proto, cache=False)


def test_static_limit_is_not_too_eager():
    """A static tensor of 2^20 elements is fine (the compile-time check must not refuse ordinary models)."""
    nodes = [helper.make_node("ConstantOfShape", ["s"], ["big"], name="fine", value=ONE)]
    proto = _const_shape_model(nodes, [_i64("s", [1024, 1024])])
    xv = np.array([2.0], np.float32)
    np.testing.assert_allclose(mi.compile(proto)(xv), run_ort(proto, {"x": xv})[0])


# ------------------------------------------------------------------------------------------------------
# specialised builds


def _reshape_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])
    s = helper.make_tensor_value_info("s", TensorProto.INT64, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return _model([helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")], [x, s], [y])


def test_specialisation_variants_capped():
    proto = _reshape_model()
    m = mi.compile(proto)
    assert isinstance(m, mi.SpecializingModel) and m.max_variants == mi.SpecializingModel.MAX_VARIANTS == 32
    m.max_variants = 2
    x = np.arange(6, dtype=np.float32)
    for shape in ([2, 3], [3, 2], [2, 3]):
        s = np.array(shape, np.int64)
        np.testing.assert_array_equal(m(x, s), run_ort(proto, {"x": x, "s": s})[0])
    with pytest.raises(InputError, match=r"limit of 2 variants"):
        m(x, np.array([6, 1], np.int64))
    with pytest.raises(InputError, match=r"limit of 2 variants"):
        m.prepare([{"s": np.array([1, 6], np.int64)}])
    np.testing.assert_array_equal(m(x, np.array([3, 2], np.int64)), x.reshape(3, 2))  # built ones still work
    m.max_variants = 3
    np.testing.assert_array_equal(m(x, np.array([6, 1], np.int64)), x.reshape(6, 1))


# ------------------------------------------------------------------------------------------------------
# special values, against onnxruntime


def test_reduce_logsumexp_infinities():
    inf = np.inf
    x = np.array([[1, inf, 2], [1, -inf, 2], [inf, -inf, 0], [-inf, -inf, -inf], [inf, inf, 1], [-inf, 3, -inf],
                  [0, 0, 0]], np.float32)
    for dt in (np.float32, np.float64):
        for axes, keep in (([1], 0), ([0], 1), ([1], 1)):
            check_op("ReduceLogSumExp", [x.astype(dt), np.array(axes, np.int64)], {"keepdims": keep}, const=(1,))


def test_hardmax_nan_rows():
    nan = np.nan
    x = np.array([[nan, nan, nan], [nan, 2, 1], [1, 3, 2], [-np.inf, -np.inf, -np.inf], [2, 2, 1]], np.float32)
    got = check_op("Hardmax", [x], {"axis": 1})[0]  # onnxruntime has Hardmax for float only
    assert not got[0].any() and not got[1].any()  # what onnxruntime gives (this test can fail)
    assert got[2].tolist() == [0, 1, 0]
    got64 = mi.compile(make_model("Hardmax", [x.astype(np.float64)], {"axis": 1}))(x.astype(np.float64))
    np.testing.assert_array_equal(got64, got.astype(np.float64))


def test_sign_nan():
    v = [np.nan, -np.nan, 0.0, -0.0, np.inf, -np.inf, 1.5, -2.0]
    for dt in (np.float32, np.float64, np.float16):
        got = check_op("Sign", [np.array(v, dt)])[0]
        if dt != np.float16:  # onnxruntime: NaN for float and double, 0 for float16
            assert np.isnan(got[:2]).all()
