"""Compiler features beyond single kernels, each against onnxruntime: shape arguments given as graph inputs
(compiled per value), several models per compiler call, sums of symbolic dimensions, operators expanded into
their ONNX function, float16 computed in float32, and the half-precision conversions of the generated code."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import ml4ep.infer as mi
from ml4ep.errors import InputError, UnsupportedOperatorError
from ml4ep.infer import dims as D
from ml4ep.infer.specialize import SpecializingModel
from opcheck import finish_model, make_model, rand, run_ort


def _same(got, want, rtol=1e-5, atol=1e-6):
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def test_shape_arguments_as_graph_inputs_compile_per_value():
    x = h.make_tensor_value_info("x", T.FLOAT, [2, 3, 4])
    axes = h.make_tensor_value_info("axes", T.INT64, [None])
    shape = h.make_tensor_value_info("shape", T.INT64, [2])
    nodes = [h.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1, name="sum"),
             h.make_node("Reshape", ["s", "shape"], ["y"], name="reshape")]
    model = finish_model(h.make_graph(nodes, "spec", [x, axes, shape],
                                      [h.make_tensor_value_info("y", T.FLOAT, None)]), 18)
    assert mi.check(model) == []  # the nodes reading the shape arguments are checked when values are known
    m = mi.compile(model)
    assert isinstance(m, SpecializingModel) and m.params == ["axes", "shape"]
    a = rand(2, 3, 4)
    for ax, shp in (([1], [2, 4]), ([2], [3, 2]), ([1], [4, 2]), ([0, 2], [1, 3])):
        feeds = {"x": a, "axes": np.array(ax, np.int64), "shape": np.array(shp, np.int64)}
        _same(m.run(feeds)["y"], run_ort(model, feeds)[0])
    assert len(m._variants) == 4  # one per distinct value set, reused after
    _same(m(a, np.array([1], np.int64), np.array([2, 4], np.int64)),
          run_ort(model, {"x": a, "axes": np.array([1], np.int64), "shape": np.array([2, 4], np.int64)})[0])
    assert len(m._variants) == 4
    # fixed values give one ordinary compiled model (its C++ can be saved)
    fixed = mi.compile(model, constants={"axes": np.array([1], np.int64), "shape": np.array([-1, 4], np.int64)})
    assert isinstance(fixed, mi.CompiledModel) and fixed.input_names == ["x"]
    _same(fixed(a), a.sum(1, keepdims=True).reshape(-1, 4), rtol=1e-6)
    with pytest.raises(InputError, match="not graph inputs"):
        mi.compile(model, constants={"nope": np.zeros(1)})


def test_compile_many_builds_models_in_one_call_and_isolates_failures():
    models = [make_model("Relu", [rand(2, 3)]), make_model("Sigmoid", [rand(4)]),
              make_model("ImageDecoder", [rand(3)]), make_model("Tanh", [rand(2, 2)], symbolic={0: {0: "N"}})]
    out = mi.compile_many(models, names=["m_relu", "m_sigmoid", "m_bad", "m_tanh"], cache=False)
    assert isinstance(out[2], UnsupportedOperatorError)
    libs = {m.directory.joinpath("lib.so").resolve() for m in out if isinstance(m, mi.CompiledModel)}
    assert len(libs) == 1  # the three good models share one library
    a, b, c = rand(2, 3), rand(4), rand(5, 2)
    _same(out[0](a), np.maximum(a, 0))
    _same(out[1](b), 1 / (1 + np.exp(-b)), rtol=1e-6)
    _same(out[3](c), np.tanh(c), rtol=1e-6)


def test_sums_of_symbolic_dimensions_class_token():
    # (N, L, 4) -> prepend a class token -> (N, L+1, 4) -> softmax over L+1 -> drop the token -> back to L
    x = h.make_tensor_value_info("x", T.FLOAT, ["N", "L", 4])
    inits = [h.make_tensor("cls", T.FLOAT, [1, 1, 4], [0.5, -1.0, 2.0, 0.0]),
             h.make_tensor("zero", T.INT64, [1], [0]), h.make_tensor("one", T.INT64, [1], [1]),
             h.make_tensor("four", T.INT64, [1], [4]), h.make_tensor("ax", T.INT64, [1], [1]),
             h.make_tensor("end", T.INT64, [1], [2 ** 62])]
    nodes = [h.make_node("Shape", ["x"], ["s"]), h.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             h.make_node("Concat", ["n", "one", "four"], ["ts"], axis=0), h.make_node("Expand", ["cls", "ts"], ["c"]),
             h.make_node("Concat", ["c", "x"], ["xc"], axis=1), h.make_node("Softmax", ["xc"], ["sm"], axis=1),
             h.make_node("Slice", ["sm", "one", "end", "ax"], ["tail"]), h.make_node("Add", ["tail", "x"], ["y"]),
             h.make_node("ReduceSum", ["xc", "ax"], ["z"], keepdims=0)]
    model = finish_model(h.make_graph(nodes, "cls", [x], [h.make_tensor_value_info("y", T.FLOAT, None),
                                                          h.make_tensor_value_info("z", T.FLOAT, None)], inits), 17)
    m = mi.compile(model)
    assert "const int64_t dim_L_plus_1 = dim_L + int64_t(1);" in m.source
    for n, length in ((1, 1), (3, 5), (2, 9)):
        a = rand(n, length, 4)
        for got, want in zip(m(a), run_ort(model, {"x": a})):
            _same(got, want)
    # the standalone example declares the derived dimension too, and runs
    import subprocess
    import tempfile
    from pathlib import Path

    from ml4ep._native import build

    with tempfile.TemporaryDirectory() as d:
        out = m.save(Path(d) / "out")
        subprocess.run([build.compiler(), "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-DML4EP_NO_BLAS",
                        f"-I{out}", str(out / "example.cpp"), "-o", str(Path(d) / "ex")], check=True)
        res = subprocess.run([str(Path(d) / "ex"), str(out / "cls.bin"), "-", "2", "3"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


def test_derived_symbols_expand_back():
    t = D.Derived()
    n, length = D.Dim.symbol("N"), D.Dim.symbol("L")
    with D.scope(t):
        lp1 = length + 1
        assert D.fmt(lp1) == "L_plus_1" and t.defs["L_plus_1"] == {(("L", 1),): 1, (): 1}
        assert lp1 - 1 == length and (n * length + n) == n * lp1
        assert D.min_value(lp1) == 2 and t.values({"L": 4, "N": 2})["L_plus_1"] == 5
    with pytest.raises(D.SymbolicError):
        length + 1  # outside a compilation: not representable


def test_operator_expanded_into_its_onnx_function():
    # MeanVarianceNormalization has no kernel: its schema's function body is compiled instead
    a = rand(2, 3, 4, 5)
    model = make_model("MeanVarianceNormalization", [a], {"axes": [0, 2, 3]}, opset=18)
    got = mi.compile(model)(a)
    _same(got, run_ort(model, {"x0": a})[0], rtol=1e-4, atol=1e-5)


def test_float16_models_compute_in_float32_where_the_kernel_needs():
    a = rand(3, 7).astype(np.float16)
    for op, attrs in (("Softmax", {"axis": -1}), ("Relu", {}), ("Exp", {})):
        model = make_model(op, [a], attrs)
        got = mi.compile(model)(a)
        assert got.dtype == np.float16
        np.testing.assert_allclose(got.astype(np.float32), run_ort(model, {"x0": a})[0].astype(np.float32),
                                   rtol=2e-3, atol=1e-3)


def test_half_conversions_are_exact(tmp_path):
    from ml4ep.infer.codegen import prelude

    (tmp_path / "prelude.hpp").write_text(prelude())
    (tmp_path / "h.cpp").write_text("""#include "prelude.hpp"
#include <cstdio>
int main(int argc, char** argv) {
  (void)argc;
  FILE* f = std::fopen(argv[1], "wb");
  for (uint32_t b = 0; b < 65536; ++b) { float v = ml4ep_rt::half::to_float(uint16_t(b)); std::fwrite(&v, 4, 1, f); }
  std::fclose(f);
  FILE* in = std::fopen(argv[2], "rb"); FILE* out = std::fopen(argv[3], "wb"); float v;
  while (std::fread(&v, 4, 1, in) == 1) { ml4ep_rt::half x(v); std::fwrite(&x.bits, 2, 1, out); }
  std::fclose(in); std::fclose(out);
  return 0;
}
""")
    subprocess.run(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", str(tmp_path / "h.cpp"), "-o",
                    str(tmp_path / "h")], check=True)
    rng = np.random.default_rng(3)
    floats = np.concatenate([
        (rng.standard_normal(100000) * 10.0 ** rng.integers(-9, 6, 100000)).astype(np.float32),
        np.array([0, -0.0, np.inf, -np.inf, 65504, 65519.99, 65520, 6e-8, 2.98e-8, 2.99e-8, 1e-10], np.float32),
        np.arange(65536, dtype=np.uint16).view(np.float16)[np.isfinite(np.arange(65536, dtype=np.uint16)
                                                                      .view(np.float16))].astype(np.float32),
    ]).astype(np.float32)
    floats.tofile(tmp_path / "in.bin")
    subprocess.run([str(tmp_path / "h"), str(tmp_path / "h2f.bin"), str(tmp_path / "in.bin"),
                    str(tmp_path / "f2h.bin")], check=True)
    ref = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    got = np.fromfile(tmp_path / "h2f.bin", np.float32)
    nan = np.isnan(ref)
    assert np.array_equal(got[~nan].view(np.uint32), ref[~nan].view(np.uint32)) and np.isnan(got[nan]).all()
    with np.errstate(over="ignore"):
        want = floats.astype(np.float16).view(np.uint16)
    assert np.array_equal(np.fromfile(tmp_path / "f2h.bin", np.uint16), want)


def test_pointwise_conv_over_symbolic_axes_with_bias_and_relu():
    # EdgeConv's 1x1 convolutions over (points, neighbours): MatMul with the bias per row and the ReLU fused
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 4, 1, 1)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    nodes = [h.make_node("Conv", ["x", "w", "b"], ["c"]), h.make_node("Relu", ["c"], ["y"])]
    model = finish_model(h.make_graph(nodes, "pw", [h.make_tensor_value_info("x", T.FLOAT, ["N", 4, "P", 3])],
                                      [h.make_tensor_value_info("y", T.FLOAT, None)],
                                      [h.make_tensor("w", T.FLOAT, w.shape, w.ravel()),
                                       h.make_tensor("b", T.FLOAT, b.shape, b)]), 17)
    g, _ = mi.lower(model)
    mm = [n for n in g.nodes if n.op_type == "MatMul"]
    assert len(mm) == 1 and mm[0].attrs.get("_row_bias") and [f for f, _ in mm[0].fused] == ["Relu"]
    assert not [n for n in g.nodes if n.op_type in ("Add", "Relu")]
    m = mi.compile(model)
    for n, p in ((1, 5), (3, 9)):
        a = rng.standard_normal((n, 4, p, 3)).astype(np.float32)
        _same(m(a), run_ort(model, {"x": a})[0], rtol=1e-5, atol=1e-5)
