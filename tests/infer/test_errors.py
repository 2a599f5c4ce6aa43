"""Bad input gets a clear ml4ep error naming what is at fault, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import ml4ep.infer as mi
from ml4ep.errors import CompilerError, InputError, ModelLoadError, UnsupportedOperatorError
from opcheck import make_model, rand


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        mi.compile(tmp_path / "nope.onnx")


def test_not_onnx(tmp_path):
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"\x00\x01 this is not a protobuf at all \xff" * 10)
    with pytest.raises(ModelLoadError, match="junk.onnx"):
        mi.compile(p)
    p2 = tmp_path / "text.onnx"
    p2.write_text("hello")
    with pytest.raises(ModelLoadError, match="text.onnx"):
        mi.check(p2)


def _two_bad_ops_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("ImageDecoder", ["a"], ["b"], name="bad_one"),
        helper.make_node("FooBar", ["b"], ["c"], name="bad_two", domain="com.example"),
        helper.make_node("StringNormalizer", ["c"], ["y"], name="bad_three"),
    ]
    g = helper.make_graph(nodes, "g", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])


def test_unsupported_operators_listed_all_at_once(tmp_path):
    m = _two_bad_ops_model()
    with pytest.raises(UnsupportedOperatorError) as info:
        mi.compile(m)
    msg = str(info.value)
    for name in ("bad_one", "bad_two", "bad_three", "ImageDecoder", "FooBar", "StringNormalizer"):
        assert name in msg
    assert "'ok'" not in msg
    problems = mi.check(m)
    assert [p.node for p in problems] == ["bad_one", "bad_two", "bad_three"]


def test_unsupported_variant_is_named():
    m = make_model("Dropout", [rand(2, 3), np.array(0.5, np.float32), np.array(True)], const=(1, 2))
    problems = mi.check(m)
    assert len(problems) == 1 and problems[0].op_type == "Dropout" and "training_mode" in problems[0].reason


def test_check_clean_model_is_empty():
    assert mi.check(make_model("Relu", [rand(2, 3)])) == []


def test_wrong_input_shape_dtype_and_names():
    model = mi.compile(make_model("Relu", [rand(5, 3)], symbolic={0: {0: "N"}}))
    assert model(rand(2, 3)).shape == (2, 3)
    with pytest.raises(InputError, match=r"x0.*shape"):
        model(rand(2, 4))
    with pytest.raises(InputError, match="rank"):
        model(rand(2, 3, 1))
    with pytest.raises(InputError, match="dtype float32"):
        model(np.zeros((2, 3), dtype=np.float64))
    with pytest.raises(InputError, match="missing"):
        model.run({"x": rand(2, 3)})
    with pytest.raises(InputError, match="takes 1 input"):
        model(rand(2, 3), rand(2, 3))


def test_inconsistent_symbolic_dims():
    m = make_model("Add", [rand(4, 3), rand(4, 3)], symbolic={0: {0: "N"}, 1: {0: "N"}})
    model = mi.compile(m)
    with pytest.raises(InputError, match="N"):
        model(rand(4, 3), rand(5, 3))


def test_shape_error_names_node():
    m = make_model("Add", [rand(4, 3), rand(5, 3)])
    with pytest.raises(UnsupportedOperatorError, match="add_node"):
        mi.compile(m)


def test_missing_compiler(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    with pytest.raises(CompilerError, match="nonexistent"):
        mi.compile(make_model("Relu", [rand(7, 1)]), cache=False)


def test_failing_compiler_names_generated_file(monkeypatch):
    monkeypatch.setenv("CXX", "false")  # a "compiler" that exits 1 at once
    with pytest.raises(CompilerError):
        mi.compile(make_model("Relu", [rand(7, 2)]), cache=False)


def test_compile_error_reports_path():
    # defining the prelude's include guard hides the runtime helpers: the generated code cannot compile
    with pytest.raises(CompilerError, match=r"bridge\.cpp"):
        mi.compile(make_model("Relu", [rand(7, 3)]), cache=False, extra_flags=["-DML4EP_PRELUDE_V1"])


def test_wrong_weights_file(tmp_path):
    a = mi.compile(make_model("Relu", [rand(2, 2)]), name="model_a")
    import shutil

    from ml4ep.infer.runtime import CompiledModel

    d = tmp_path / "copy"
    shutil.copytree(a.directory, d)
    (d / "model_a.bin").write_bytes(b"ML4EPW01" + bytes(100))
    with pytest.raises(Exception, match="another model|not an ml4ep|truncated"):
        CompiledModel(d)


def test_two_models_of_one_name_in_one_process():
    """Same C++ namespace, different weights and shapes: each library keeps its own code and data."""
    a = mi.compile(make_model("Gemm", [rand(2, 3), rand(3, 4)], const=(1,)), name="same")
    wb = rand(5, 2)
    b = mi.compile(make_model("Gemm", [rand(2, 5), wb], const=(1,)), name="same")
    xa, xb = rand(2, 3), rand(2, 5)
    ya, yb = a(xa), b(xb)
    assert ya.shape == (2, 4) and yb.shape == (2, 2)
    np.testing.assert_allclose(yb, xb @ wb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a(xa), ya)
