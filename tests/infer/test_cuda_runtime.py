"""The CUDA backend's interface on a machine without a GPU: device="cuda-host" runs the generated CUDA code (built by
g++) against onnxruntime, device="cuda" builds with nvcc and refuses to run with an error naming what is missing,
mi.check(device="cuda") lists everything the CUDA code refuses at once, and bad inputs get clear errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx import numpy_helper as nh

import ml4ep.infer as mi
from ml4ep.errors import DeviceError, InputError, UnsupportedOperatorError
from ml4ep.infer.cuda.runtime import CudaModel, _cuda_problem

HAVE_NVCC = shutil.which("nvcc") is not None or os.path.exists("/usr/local/cuda/bin/nvcc")
NO_GPU = _cuda_problem() is not None


def _model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "cudatest", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = nh.from_array(rng.standard_normal((16, 8)).astype(np.float32), "W")
    b = nh.from_array(rng.standard_normal(8).astype(np.float32), "b")
    w2 = nh.from_array(rng.standard_normal((8, 3)).astype(np.float32), "W2")
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["m"]), helper.make_node("Sigmoid", ["m"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", T.FLOAT, ["N", 16])],
                  [helper.make_tensor_value_info("y", T.FLOAT, ["N", 3])], [w, b, w2])


def _ort(model, feeds):
    return ort.InferenceSession(model.SerializeToString()).run(None, feeds)


def test_cuda_host_matches_onnxruntime_and_keeps_the_kind_of_the_inputs():
    torch = pytest.importorskip("torch")
    model = _mlp()
    m = mi.compile(model, device="cuda-host")
    assert isinstance(m, CudaModel) and m.device == "cuda-host" and m.available
    for n in (1, 5, 64, 0):
        x = np.random.default_rng(n).standard_normal((n, 16)).astype(np.float32)
        want = _ort(model, {"x": x})[0]
        got = m(x)
        assert isinstance(got, np.ndarray) and got.shape == (n, 3)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        t = m(torch.from_numpy(x))
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
        np.testing.assert_allclose(t.numpy(), want, rtol=1e-5, atol=1e-6)
    assert "ml4ep_cu::launch(stream" in m.source and "ml4ep_cu::gemm(" in m.source


def test_cuda_host_from_several_threads():
    model = _mlp()
    m = mi.compile(model, device="cuda-host")
    xs = [np.random.default_rng(k).standard_normal((k + 1, 16)).astype(np.float32) for k in range(8)]
    want = [_ort(model, {"x": x})[0] for x in xs]
    errors = []

    def work(k):
        for _ in range(20):
            got = m(xs[k])
            if not np.allclose(got, want[k], rtol=1e-5, atol=1e-6):
                errors.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_products_through_the_cublas_stand_in(ta, tb):
    """Gemm with run-time operands (transposes, alpha, beta, a bias matrix) and batched MatMul with broadcasting go
    through ml4ep_cu::gemm / gemm_batched: the row-major to column-major mapping the GPU uses, checked here."""
    rng = np.random.default_rng(ta * 2 + tb)
    a_shape, b_shape = ((7, 5) if ta else (5, 7)), ((4, 7) if tb else (7, 4))
    nodes = [helper.make_node("Gemm", ["a", "b", "c"], ["g"], transA=ta, transB=tb, alpha=0.5, beta=2.0),
             helper.make_node("MatMul", ["p", "q"], ["mm"]),
             helper.make_node("MatMul", ["p2", "q2"], ["mm2"])]
    ins = [helper.make_tensor_value_info("a", T.FLOAT, list(a_shape)),
           helper.make_tensor_value_info("b", T.FLOAT, list(b_shape)),
           helper.make_tensor_value_info("c", T.FLOAT, [5, 4]),
           helper.make_tensor_value_info("p", T.FLOAT, [2, 1, 3, 6]),
           helper.make_tensor_value_info("q", T.FLOAT, [4, 6, 5]),
           helper.make_tensor_value_info("p2", T.FLOAT, [6]),
           helper.make_tensor_value_info("q2", T.FLOAT, [3, 6, 2])]
    outs = [helper.make_tensor_value_info("g", T.FLOAT, [5, 4]),
            helper.make_tensor_value_info("mm", T.FLOAT, [2, 4, 3, 5]),
            helper.make_tensor_value_info("mm2", T.FLOAT, [3, 2])]
    model = _model(nodes, ins, outs)
    feeds = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in ins}
    m = mi.compile(model, device="cuda-host")
    for got, want in zip(m(*feeds.values()), _ort(model, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_bad_device_names():
    with pytest.raises(InputError, match="device must be one of"):
        mi.compile(_mlp(), device="gpu")
    with pytest.raises(InputError, match="device must be one of"):
        mi.check(_mlp(), device="tpu")


def test_check_lists_everything_the_cuda_code_refuses_at_once():
    """Every problem at once: data-dependent output sizes, an operator without CUDA code (control flow)."""
    then = helper.make_graph([helper.make_node("Neg", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", T.FLOAT, [4, 3])])
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", T.FLOAT, [4, 3])])
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    model = _model(nodes, [helper.make_tensor_value_info("x", T.FLOAT, [4, 3]),
                           helper.make_tensor_value_info("c", T.BOOL, [])],
                   [helper.make_tensor_value_info("nz", T.INT64, [2, None]),
                    helper.make_tensor_value_info("y", T.FLOAT, [4, 3])])
    assert mi.check(model) == []  # the CPU code takes it
    problems = mi.check(model, device="cuda")
    text = "\n".join(map(str, problems))
    assert "depends on the data" in text and "(If): no CUDA kernel" in text, text
    with pytest.raises(UnsupportedOperatorError, match="device='cuda'") as info:
        mi.compile(model, device="cuda-host")
    assert len(info.value.problems) == len(problems)


@pytest.mark.skipif(not HAVE_NVCC, reason="no nvcc")
@pytest.mark.skipif(not NO_GPU, reason="a GPU is present: this checks the error without one")
def test_cuda_without_a_gpu_builds_saves_and_names_what_is_missing(tmp_path):
    torch = pytest.importorskip("torch")
    m = mi.compile(_mlp(), device="cuda", extra_flags=["-Werror", "all-warnings"])
    assert isinstance(m, CudaModel) and m.device == "cuda" and not m.available
    assert "libcuda.so.1" in m.problem or "GPU" in m.problem
    with pytest.raises(DeviceError, match="cannot run here.*(libcuda.so.1|GPU)"):
        m(np.zeros((1, 16), np.float32))
    with pytest.raises(DeviceError):
        m(torch.zeros(1, 16))
    out = m.save(tmp_path / "saved")
    names = {p.name for p in out.iterdir()}
    assert {"cudatest.hpp", "cudatest.cu", "cudatest.bin", "example.cu", "CMakeLists.txt"} <= names
    assert "CUDA" in (out / "CMakeLists.txt").read_text()
    # the saved example builds with nvcc against the saved model
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    res = subprocess.run([nvcc, "-std=c++17", "--expt-relaxed-constexpr", "--extended-lambda", "-DML4EP_NO_BLAS",
                          "-arch=sm_90", "-Werror", "all-warnings", "-o", str(tmp_path / "example"),
                          str(out / "example.cu"), str(out / "cudatest.cu"), "-ldl"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def test_input_errors_name_the_input():
    torch = pytest.importorskip("torch")
    host = mi.compile(_mlp(), device="cuda-host")
    x = np.zeros((2, 16), np.float32)
    with pytest.raises(InputError, match="mix"):
        host._check([x, torch.zeros(1)])
    with pytest.raises(InputError, match="input 'x' must have dtype float32, got float64"):
        host(torch.zeros(2, 16, dtype=torch.float64))
    with pytest.raises(InputError, match="contiguous"):
        host(torch.zeros(16, 2).t())
    with pytest.raises(InputError, match="axis 1"):
        host(np.zeros((2, 15), np.float32))
    with pytest.raises(InputError, match="takes 1 input"):
        host(x, x)
    # a model built for the GPU refuses host tensors (checked before anything runs)
    gpu = CudaModel.__new__(CudaModel)
    gpu.__dict__.update(host.__dict__)
    gpu.device, gpu.problem, gpu.device_index, gpu._all = "cuda", None, 0, []  # (the sessions stay the host's)
    with pytest.raises(InputError, match="runs on the GPU: input 'x' is a torch tensor on the CPU"):
        gpu._check([torch.zeros(2, 16)])


def test_low_precision_tensors_through_the_cuda_code():
    """float16 and bfloat16 tensors (storage types computed in float, as on the CPU): NumPy and torch tensors."""
    torch = pytest.importorskip("torch")
    import ml_dtypes

    nodes = [helper.make_node("Mul", ["a", "a"], ["p"]), helper.make_node("Add", ["p", "b"], ["y"]),
             helper.make_node("Cast", ["y"], ["z"], to=T.BFLOAT16)]
    model = _model(nodes, [helper.make_tensor_value_info("a", T.FLOAT16, ["N", 5]),
                           helper.make_tensor_value_info("b", T.FLOAT16, [5])],
                   [helper.make_tensor_value_info("y", T.FLOAT16, ["N", 5]),
                    helper.make_tensor_value_info("z", T.BFLOAT16, ["N", 5])])
    assert mi.check(model, device="cuda") == []
    m = mi.compile(model, device="cuda-host")
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((3, 5)).astype(np.float16), rng.standard_normal(5).astype(np.float16)
    want = a * a + b  # NumPy's float16 arithmetic rounds each operation's float result, as ONNX runtimes do
    y, z = m(a, b)
    assert y.dtype == np.float16 and z.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(z, want.astype(np.float32).astype(ml_dtypes.bfloat16))
    ty, tz = m(torch.from_numpy(a), torch.from_numpy(b))
    assert ty.dtype == torch.float16 and tz.dtype == torch.bfloat16
    np.testing.assert_array_equal(ty.numpy(), want)
    np.testing.assert_array_equal(tz.float().numpy(), z.astype(np.float32))
