"""The `ml4ep` command: compile, check, operators."""

from __future__ import annotations

import subprocess
import sys

import onnx

from ml4ep.cli import main
from opcheck import make_model, rand


def test_compile_writes_the_standalone_files(tmp_path, capsys):
    path = tmp_path / "relu_model.onnx"
    onnx.save(make_model("Relu", [rand(3, 4)], symbolic={0: {0: "batch"}}), path)
    assert main(["compile", str(path), "-o", str(tmp_path / "out"), "--print"]) == 0
    out = capsys.readouterr().out
    assert "relu_model::Model" in out or "namespace relu_model" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "CMakeLists.txt", "example.cpp", "relu_model.bin", "relu_model.hpp"]
    assert "int64_t dim_batch" in (tmp_path / "out" / "relu_model.hpp").read_text()


def test_check_lists_problems_and_exit_code(tmp_path, capsys):
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    onnx.save(make_model("Relu", [rand(3, 4)]), good)
    onnx.save(make_model("ImageDecoder", [rand(3, 4)]), bad)
    assert main(["check", str(good)]) == 0
    assert main(["check", str(bad)]) == 1
    assert "imagedecoder_node" in capsys.readouterr().out


def test_errors_are_messages_not_tracebacks(tmp_path):
    res = subprocess.run([sys.executable, "-m", "ml4ep.cli", "compile", str(tmp_path / "missing.onnx"), "-o",
                          str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "missing.onnx: no such file" in res.stderr and "Traceback" not in res.stderr


def test_operators_lists_the_issue_set(capsys):
    assert main(["operators"]) == 0
    ops = set(capsys.readouterr().out.split())
    required = """Gemm MatMul Add Sub Mul Div Pow Sqrt Exp Log Neg Abs Reciprocal Relu LeakyRelu Elu Selu Sigmoid
    HardSigmoid Tanh Softplus Softmax LogSoftmax Erf Gelu Clip Min Max Conv ConvTranspose BatchNormalization
    MaxPool AveragePool GlobalAveragePool GlobalMaxPool LayerNormalization Flatten Reshape Transpose Squeeze
    Unsqueeze Concat Split Slice Gather Identity Dropout Constant ConstantOfShape Shape Cast Expand Tile Pad
    ReduceMean ReduceSum ReduceMax ReduceMin Where Equal Less Greater Resize""".split()
    assert set(required) <= ops, set(required) - ops


def test_compile_and_check_for_cuda(tmp_path, capsys):
    path = tmp_path / "relu_model.onnx"
    onnx.save(make_model("Relu", [rand(3, 4)], symbolic={0: {0: "batch"}}), path)
    assert main(["check", str(path), "--device", "cuda"]) == 0
    assert main(["compile", str(path), "-o", str(tmp_path / "out"), "--device", "cuda-host"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "CMakeLists.txt", "example.cu", "relu_model.bin", "relu_model.cu", "relu_model.hpp"]
    assert "ml4ep_cu::launch(stream" in (tmp_path / "out" / "relu_model.cu").read_text()
    assert "relu_model.cu" in capsys.readouterr().out
