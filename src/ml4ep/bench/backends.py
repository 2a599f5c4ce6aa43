"""The engines `ml4ep bench` compares, and how each loads a model and runs it.

Every backend runs in a process of its own (:mod:`ml4ep.bench.worker`), so its memory figures are its own.
Python backends are objects with ``imports()`` (the engine's modules, imported before the memory baseline) and
``load(onnx_path, model, work)`` returning ``run(arrays) -> list of outputs``; C++ backends build a timing
program (:mod:`ml4ep.bench.cpp`) that is itself the measured process.

All backends but ``onnxruntime-mt`` run on one thread: the thread settings of the engine, the BLAS and OpenMP
are set to 1, and the worker process is bound to one CPU.

The GPU backends (``ml4ep-cuda``, ``torch-cuda``; not in the default set, :data:`DEFAULT_BACKENDS`) take part
where torch sees a CUDA GPU (and, for ``ml4ep-cuda``, nvcc is there); elsewhere :func:`missing_dependency` says
why and the run reports them unavailable. Their runner (:class:`GpuRunner`) checks with NumPy arrays copied to the
GPU and back, and is timed on inputs already on the GPU with CUDA events, each block of back-to-back calls
between two events (the memory figures stay those of the host process). ``ML4EP_BENCH_GPU=cuda-host`` (for the
tests) runs both on the CPU instead: ml4ep's CUDA source built for the host, torch on the CPU.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._native.names import string as cpp_string
from .._optional import require
from ..errors import Ml4epError
from . import cpp
from .zoo import BenchModel

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    kind: str  # "python" or "cpp"
    requires: tuple[tuple[str, str], ...]  # (module, extra) pairs
    single_thread: bool = True
    gpu: bool = False  # needs a CUDA GPU (torch.cuda.is_available())


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("ml4ep", "ml4ep compiled model called from Python (NumPy in and out)", "python", ()),
    Backend("ml4ep-cpp", "ml4ep's generated header in a C++ program", "cpp", ()),
    Backend("sofie", "SOFIE's generated header in a C++ program (same compiler flags and BLAS)", "cpp",
            (("sofie", "bench"),)),
    Backend("onnxruntime", "ONNX Runtime, 1 thread, default graph optimisations", "python",
            (("onnxruntime", "bench"),)),
    Backend("onnxruntime-mt", "ONNX Runtime, all threads (the process is not pinned)", "python",
            (("onnxruntime", "bench"),), single_thread=False),
    Backend("torch", "PyTorch eager, 1 thread, inference mode", "python", (("torch", "torch"),)),
    Backend("torch-compile", "torch.compile (inductor, CPU), 1 thread", "python", (("torch", "torch"),)),
    Backend("jax", "JAX/XLA: jax.jit of the ONNX graph written in jax.numpy, 1 thread", "python",
            (("jax", "jax"),)),
    Backend("ml4ep-cuda", "ml4ep's CUDA build (device='cuda', CUDA graphs) on torch CUDA tensors, CUDA events",
            "python", (("torch", "torch"),), gpu=True),
    Backend("torch-cuda", "PyTorch eager on the GPU, inference mode, CUDA events", "python", (("torch", "torch"),),
            gpu=True),
)}
DEFAULT_BACKENDS: tuple[str, ...] = tuple(b for b in BACKENDS if not BACKENDS[b].gpu)  # the GPU ones: opt-in
GPU_ENV = "ML4EP_BENCH_GPU"  # "cuda-host": the GPU backends run on the CPU (the tests of their code path)


def backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise Ml4epError(f"unknown bench backend '{name}'; known: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def missing_dependency(name: str) -> str | None:
    """Why ``name`` cannot run here (a missing module, with the extra to install), or None."""
    import importlib.util

    for module, extra in BACKENDS[name].requires:
        if importlib.util.find_spec(module) is None:
            return f"the '{module}' package is not installed (pip install 'ml4ep[{extra}]')"
    if BACKENDS[name].gpu and os.environ.get(GPU_ENV) != "cuda-host":
        return _gpu_problem(name == "ml4ep-cuda")
    return None


@functools.lru_cache(maxsize=None)
def _gpu_problem(nvcc: bool) -> str | None:
    """Why the GPU backends cannot run here, in one line (no GPU torch can use; no nvcc), or None."""
    import torch

    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            return f"no CUDA GPU torch can use: torch {torch.__version__} is a CPU-only build"
        from ..infer.cuda.runtime import _cuda_problem

        return f"no CUDA GPU: {_cuda_problem() or 'torch.cuda.is_available() is False'}"
    if nvcc:
        from .._native import build

        try:
            build.nvcc()
        except Ml4epError as exc:
            return str(exc).split(":")[0]
    return None


def gpu_name() -> str:
    """The GPU the GPU backends use (torch's device 0), or why there is none."""
    if os.environ.get(GPU_ENV) == "cuda-host":
        return "none (ML4EP_BENCH_GPU=cuda-host: the GPU backends ran on the CPU)"
    why = _gpu_problem(False)
    if why:
        return f"none ({why})"
    import torch

    return torch.cuda.get_device_name(0)


# ------------------------------------------------------------------------------------------------------
# Python backends
# ------------------------------------------------------------------------------------------------------
class _Ml4ep:
    def imports(self) -> None:
        import ml4ep.infer  # noqa: F401

    def load(self, path: Path, model: BenchModel, work: Path) -> Runner:
        import ml4ep.infer as mi

        compiled = mi.compile(path, cache=False)  # the compile time is part of the load time

        def run(arrays):
            out = compiled(*arrays)
            return list(out) if isinstance(out, tuple) else [out]
        return run


class _OnnxRuntime:
    def __init__(self, threads: int):
        self.threads = threads

    def imports(self) -> None:
        import onnxruntime  # noqa: F401

    def load(self, path: Path, model: BenchModel, work: Path) -> Runner:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads  # 0: one per core
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        return lambda arrays: sess.run(None, dict(zip(names, arrays)))


class _Torch:
    def __init__(self, compiled: bool):
        self.compiled = compiled

    def imports(self) -> None:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)

    def load(self, path: Path, model: BenchModel, work: Path) -> Runner:
        import torch

        module = model.module()
        fn = torch.compile(module) if self.compiled else module

        def run(arrays):
            with torch.inference_mode():
                out = fn(*[torch.from_numpy(a) for a in arrays])
            return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
        return run


class GpuRunner:
    """A model on the GPU: called with NumPy arrays for the check (copied in and out), timed with
    :meth:`time_block` on inputs already on the device (:meth:`device_feeds`)."""

    def __init__(self, fn: Callable, device: str):
        import torch

        self.torch, self.fn, self.device = torch, fn, torch.device(device)
        self.gpu = self.device.type == "cuda"

    def device_feeds(self, arrays: list[np.ndarray]) -> list:
        return [self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays]

    def _call(self, feeds: list):
        with self.torch.inference_mode():
            return self.fn(*feeds)

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        out = self._call(self.device_feeds(arrays))
        return [o.cpu().numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]

    def time_block(self, feeds: list, n: int) -> float:
        """ms per call of ``n`` back-to-back calls: CUDA events around the block (perf_counter on the CPU)."""
        torch = self.torch
        if not self.gpu:
            t0 = time.perf_counter()
            for _ in range(n):
                self._call(feeds)
            return (time.perf_counter() - t0) * 1e3 / n
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(n):
            self._call(feeds)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / n


def _gpu_device() -> str:
    return "cpu" if os.environ.get(GPU_ENV) == "cuda-host" else "cuda"


class _Ml4epCuda:
    def imports(self) -> None:
        import torch

        import ml4ep.infer  # noqa: F401

        torch.set_num_threads(1)
        if _gpu_device() == "cuda":
            torch.cuda.init()

    def load(self, path: Path, model: BenchModel, work: Path) -> Runner:
        import torch

        import ml4ep.infer as mi

        if _gpu_device() == "cpu":
            compiled = mi.compile(path, cache=False, device="cuda-host")
        else:  # for this GPU only (unless ML4EP_CUDA_ARCHS says otherwise): a shorter nvcc run
            major, minor = torch.cuda.get_device_capability()
            compiled = mi.compile(path, cache=False, device="cuda",
                                  cuda_archs=os.environ.get("ML4EP_CUDA_ARCHS") or f"{major}{minor}")
        return GpuRunner(compiled, _gpu_device())


class _TorchCuda:
    def imports(self) -> None:
        import torch

        torch.set_num_threads(1)
        if _gpu_device() == "cuda":
            torch.cuda.init()

    def load(self, path: Path, model: BenchModel, work: Path) -> Runner:
        return GpuRunner(model.module().to(_gpu_device()).eval(), _gpu_device())


class _Jax:
    def imports(self) -> None:
        require("jax", "jax", "the JAX/XLA backend")

    def load(self, path: Path, model: BenchModel, work: Path) -> Runner:
        import jax

        from .jax_onnx import to_jax

        fn, _inputs, _outputs = to_jax(path)
        jitted = jax.jit(fn)

        def run(arrays):
            out = jax.block_until_ready(jitted(*arrays))
            return [np.asarray(o) for o in out]
        return run


PYTHON_BACKENDS: dict[str, Callable[[], Any]] = {
    "ml4ep": _Ml4ep,
    "onnxruntime": lambda: _OnnxRuntime(1),
    "onnxruntime-mt": lambda: _OnnxRuntime(0),
    "torch": lambda: _Torch(False),
    "torch-compile": lambda: _Torch(True),
    "jax": _Jax,
    "ml4ep-cuda": _Ml4epCuda,
    "torch-cuda": _TorchCuda,
}


# ------------------------------------------------------------------------------------------------------
# C++ backends: the timing program for each engine
# ------------------------------------------------------------------------------------------------------
def _tensors(model: BenchModel, feeds: dict, outputs: list[np.ndarray]) -> tuple[list, list]:
    batched = set(model.batch_inputs or model.input_names)
    ins = [cpp.Tensor(n, str(feeds[n].dtype), int(np.prod(feeds[n].shape[1:] if n in batched else feeds[n].shape)),
                      n in batched) for n in model.input_names]
    outs = [cpp.Tensor(n, str(o.dtype), int(np.prod(o.shape[1:]))) for n, o in zip(model.output_names, outputs)]
    return ins, outs


def _ptr(t: cpp.Tensor, k: int) -> str:
    return f"reinterpret_cast<const bool*>(f.in{k}.data())" if t.dtype == "bool" else f"f.in{k}.data()"


def build_ml4ep_cpp(path: Path, model: BenchModel, feeds: dict, ref: list[np.ndarray], work: Path) -> dict:
    """Generate the header with ml4ep and compile the timing program around ``<name>::Model``."""
    import ml4ep.infer as mi

    t0 = time.perf_counter()
    compiled = mi.compile(path, cache=False, name=f"bench_{model.name}")
    compiled.save(work)
    ins, outs = _tensors(model, feeds, ref)
    args = [_ptr(t, k) for k, t in enumerate(ins)] + [f"out{k}.data()" for k in range(len(outs))]
    args += ["static_cast<int64_t>(b)"] * len(compiled.symbols)
    name = compiled.name
    src = work / "bench_main.cpp"
    cpp.write_program(src, "ml4ep", f"{name}.hpp", ins, outs,
                      load=f'  {name}::Model model(dir + "/{name}.bin");', setup="",
                      expr=f"model.infer({', '.join(args)})", result_vectors=False)
    exe = work / "bench_ml4ep"
    cpp.compile_program(src, exe, [str(work)], [])
    return {"exe": exe, "inputs": ins, "outputs": outs, "build_s": time.perf_counter() - t0}


def build_sofie(path: Path, model: BenchModel, feeds: dict, ref: list[np.ndarray], work: Path) -> dict:
    """Translate the model with SOFIE (symbolic batch) and compile the timing program around its ``Session``."""
    from . import sofie

    t0 = time.perf_counter()
    gen = sofie.sofie_generate(str(path), str(work / "generated"))
    ins, outs = _tensors(model, feeds, ref)
    if len(gen["infer_inputs"]) != len(ins):
        raise Ml4epError(f"SOFIE's infer() takes {len(gen['infer_inputs'])} inputs, the model has {len(ins)}")
    if len(gen["session_dims"]) > 1 or len(gen["infer_dims"]) > 1:
        raise Ml4epError(f"SOFIE's code has several dynamic dimensions {gen['session_dims']}; only the batch may be")
    casts = []
    for k, (t, ct) in enumerate(zip(ins, gen["infer_input_types"])):
        if t.dtype == "bool" or ct.strip() not in ("float", "int64_t", "double", "int32_t"):
            raise Ml4epError(f"SOFIE's infer() takes the input '{t.name}' as {ct}, the model gives {t.dtype}")
        casts.append(f"f.in{k}.data()")
    ns = gen["namespace"]
    weights = gen["session_ctor_arg"]
    ctor = [cpp_string(weights)] + ["static_cast<std::size_t>(b)"] * len(gen["session_dims"])
    args = ["static_cast<std::size_t>(b)"] * len(gen["infer_dims"]) + casts
    src = work / "bench_main.cpp"
    cpp.write_program(src, "SOFIE", Path(gen["header"]).name, ins, outs, load="",
                      setup=f"    {ns}::Session session({', '.join(ctor)});",
                      expr=f"session.infer({', '.join(args)})", result_vectors=True)
    blas_defines = [f"-D{s}=scipy_{s}" for s in gen["blas_symbols"]]
    exe = work / "bench_sofie"
    cpp.compile_program(src, exe, gen["include_dirs"], blas_defines)
    return {"exe": exe, "inputs": ins, "outputs": outs, "build_s": time.perf_counter() - t0}


CPP_BACKENDS = {"ml4ep-cpp": build_ml4ep_cpp, "sofie": build_sofie}
