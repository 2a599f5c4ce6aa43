"""The generated header reads like hand-written code: named weight pointers, const inputs, tensors declared in the
order the nodes use them, consistent indentation; and it still compiles warning-free and computes what onnxruntime
does."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import ml4ep.infer as mi
from ml4ep.infer.codegen import reindent
from opcheck import run_ort

RNG = np.random.default_rng(19)


def _init(name, *shape):
    return nh.from_array(RNG.normal(size=shape).astype(np.float32), name)


def _mlp() -> onnx.ModelProto:
    """Gemm -> Relu -> Gemm over a dynamic batch, with PyTorch-style initializer names."""
    nodes = [h.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h1"], name="/fc1/Gemm", transB=1),
             h.make_node("Relu", ["h1"], ["a1"], name="/act/Relu"),
             h.make_node("Gemm", ["a1", "fc2.weight", "fc2.bias"], ["y"], name="/fc2/Gemm", transB=1)]
    g = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("x", T.FLOAT, ["N", 8])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 4])],
                     [_init("fc1.weight", 16, 8), _init("fc1.bias", 16), _init("fc2.weight", 4, 16),
                      _init("fc2.bias", 4)])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _loop_with_a_weight() -> onnx.ModelProto:
    """A Loop whose body reads an initializer of its own: the pointer is declared in infer, outside the loop."""
    body = h.make_graph([h.make_node("Identity", ["c"], ["c_out"]),
                         h.make_node("Mul", ["acc", "body.scale"], ["m"]),
                         h.make_node("Add", ["m", "x"], ["acc_out"])], "body",
                        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c", T.BOOL, []),
                         h.make_tensor_value_info("acc", T.FLOAT, ["N", 3])],
                        [h.make_tensor_value_info("c_out", T.BOOL, []),
                         h.make_tensor_value_info("acc_out", T.FLOAT, ["N", 3])],
                        [nh.from_array(np.array([0.5, -1.0, 2.0], np.float32), "body.scale")])
    nodes = [h.make_node("Loop", ["M", "", "x"], ["y"], body=body)]
    g = h.make_graph(nodes, "loop", [h.make_tensor_value_info("x", T.FLOAT, ["N", 3])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 3])],
                     [nh.from_array(np.array(4, np.int64), "M")])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _infer_bodies(header: str) -> list[str]:
    return re.findall(r"^inline void Model::\w+\(.*?\) \{\n(.*?)^\}\n", header, re.S | re.M)


def _build_and_run(out, name: str, x: np.ndarray, batch: int) -> np.ndarray:
    """The saved example program, built with -Wall -Wextra -Werror (no BLAS), run on ``x``."""
    exe = out / "example"
    res = subprocess.run(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-DML4EP_NO_BLAS",
                          str(out / "example.cpp"), "-o", str(exe)], capture_output=True, text=True)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    raw = out / "x.raw"
    raw.write_bytes(x.tobytes())
    run = subprocess.run([str(exe), str(out / f"{name}.bin"), str(raw), str(batch)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return np.fromfile(str(raw) + ".out", dtype=np.float32)


def test_mlp_header_names_its_weights_and_keeps_inputs_const(tmp_path):
    model = _mlp()
    m = mi.compile(model.SerializeToString(), name="mlp")
    out = m.save(tmp_path / "saved")
    header = (out / "mlp.hpp").read_text()
    # one named pointer per weight, named after the initializer it holds, used by name
    for w in ("fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"):
        assert re.search(rf"^  const float\* const w_{w} = reinterpret_cast<const float\*>\(w_ \+ \d+\);", header,
                         re.M), w
        assert header.count(f"w_{w}") >= 2, w
    assert not re.search(r"reinterpret_cast<const float\*>\(w_ \+ \d+\)[^;]", header)  # no inline weight address
    # the input stays const; no (void) statements, no const_cast
    assert re.search(r"^  \[\[maybe_unused\]\] const float\* const v_x = in_x;", header, re.M)
    assert "(void)v_" not in header and "const_cast" not in header
    # declared in order: the weights, the inputs and outputs, the other tensors in the order the nodes use them
    body = _infer_bodies(header)[-1]
    assert body.index("w_fc2_bias =") < body.index("v_x =") < body.index("v_y =") < body.index("v_a1 =") \
        < body.index("// Gemm + Relu")
    # blocks consistently indented: a statement two spaces beyond the line opening its block
    for fn in _infer_bodies(header):
        assert reindent(fn, 1) == fn

    x = RNG.normal(size=(37, 8)).astype(np.float32)
    ref = run_ort(model, {"x": x})[0]
    np.testing.assert_allclose(m(x), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_build_and_run(out, "mlp", x, 37).reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)


def test_weight_read_in_a_loop_body(tmp_path):
    model = _loop_with_a_weight()
    m = mi.compile(model.SerializeToString(), name="loopw")
    out = m.save(tmp_path / "saved")
    header = (out / "loopw.hpp").read_text()
    decl = re.search(r"^  const float\* const (w_\w*body_scale\w*) = ", header, re.M)
    assert decl, "no named pointer for body.scale"
    body = _infer_bodies(header)[-1]
    assert body.index(decl.group(1)) < body.index("for (;")  # declared before the loop, used inside it
    x = RNG.normal(size=(5, 3)).astype(np.float32)
    ref = run_ort(model, {"x": x})[0]
    np.testing.assert_allclose(m(x), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_build_and_run(out, "loopw", x, 5).reshape(ref.shape), ref, rtol=1e-6, atol=1e-6)


def test_reindent_by_blocks_leaves_literals_and_comments_alone():
    ragged = (
        "{\n"
        "for (int i = 0; i < n; ++i) {\n"
        "      y[i] = f(x[i],\n"
        "               2);\n"
        "}\n"
        "    for (int a = 0; a < 2; ++a)\n"
        "      for (int b = 0; b < 2; ++b) {\n"
        "  s += \"}{\"[a] + '{';  // } not a brace\n"
        "      }\n"
        "#if defined(X)\n"
        "/* a comment {\n"
        "   over lines } */\n"
        "#endif\n"
        "}\n"
    )
    want = (
        "  {\n"
        "    for (int i = 0; i < n; ++i) {\n"
        "      y[i] = f(x[i],\n"
        "               2);\n"
        "    }\n"
        "    for (int a = 0; a < 2; ++a)\n"
        "      for (int b = 0; b < 2; ++b) {\n"
        "        s += \"}{\"[a] + '{';  // } not a brace\n"
        "      }\n"
        "    #if defined(X)\n"
        "    /* a comment {\n"
        "   over lines } */\n"
        "    #endif\n"
        "  }\n"
    )
    assert reindent(ragged, 1) == want
    assert reindent(want, 1) == want
