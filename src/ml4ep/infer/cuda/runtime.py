"""The Python session over a CUDA model (device="cuda" or "cuda-host"): the bridge's C functions through ctypes.

Inputs for device="cuda" are PyTorch or CuPy tensors on the model's GPU (used in place; the kernels go to the
caller's current stream, so the outputs are ready in stream order, as for any PyTorch or CuPy operation) or NumPy
arrays (copied to the GPU and back; the call returns when the outputs are there). Outputs are fresh arrays of the
inputs' kind. For device="cuda-host" (the same code built for the host) inputs are NumPy arrays or CPU tensors.
Calls are thread-safe: each concurrent call borrows its own session (workspace, cuBLAS handle, CUDA graphs) from a
pool, as the CPU model does. This module imports nothing of ONNX (benchmarks/gpu_check.py loads it on machines
without it).
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import dims as D
from .. import limits
from ..runtime import CompiledModel
from ...errors import DeviceError, InputError, Ml4epError

_ERR = 2048


def _cuda_problem() -> str | None:
    """Why no CUDA GPU can be used here (no driver, no device), or None."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return f"no NVIDIA driver on this machine: libcuda.so.1 cannot be loaded ({exc})"
    init = cuda.cuInit(0)
    if init != 0:
        return f"the NVIDIA driver does not start (cuInit error {init}: no GPU, or the driver is too old)"
    n = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(n)) != 0 or n.value == 0:
        return "the NVIDIA driver sees no GPU"
    return None


def _preload_cublas() -> None:
    """Load cuBLAS (ML4EP_CUBLAS, else the nvidia-cublas wheel PyTorch brings) so that the generated code's dlopen
    finds it by its soname; nothing when it is already loaded or installed system-wide."""
    if os.environ.get("ML4EP_CUBLAS"):
        return
    for name in ("libcublas.so.13", "libcublas.so.12"):
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            return
        except OSError:
            pass
    for base in sys.path:
        for pattern in ("nvidia/cu13/lib/libcublas.so.13", "nvidia/cublas/lib/libcublas.so.1[23]"):
            for path in sorted(glob.glob(os.path.join(base, pattern))):
                try:
                    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                    return
                except OSError:
                    continue


def _torch_dtype(torch, dt: np.dtype, model: str):
    """The torch dtype of a tensor type (float16, bfloat16, the float8 types, ...); an error for those torch lacks."""
    found = getattr(torch, "bool" if dt == np.bool_ else str(dt), None)
    if not isinstance(found, torch.dtype):
        raise InputError(f"model '{model}': torch has no dtype {dt}; pass NumPy arrays (or CuPy) for this model")
    return found


def _kind(x: Any) -> str:
    mod = type(x).__module__.split(".")[0]
    if mod == "torch":
        return "torch"
    if mod == "cupy":
        return "cupy"
    return "numpy"


class CudaModel:
    """A model compiled to CUDA (or to the same code for the host); call it with tensors.

    ``model(x)`` returns the output (a tuple when there are several), ``model.run({"x": x})`` a dict by output
    name, ``model.save(dir)`` writes ``<name>.hpp``, ``<name>.cu``, ``<name>.bin``, ``example.cu`` and
    ``CMakeLists.txt``. ``available`` says whether it can run here; if not, calling it raises a
    :class:`~ml4ep.errors.DeviceError` naming what is missing (the build can still be saved).
    """

    _bind = CompiledModel._bind
    _read_meta = CompiledModel._read_meta

    def __init__(self, directory: str | os.PathLike, device_index: int | None = None):
        self._read_meta(directory)
        self.device: str = self.meta["device"]
        self._plans: dict[tuple, tuple[list[int], list[tuple[int, ...]]]] = {}
        self._fast: dict[tuple, tuple] = {}  # input shapes -> what a call with torch tensors needs (_remember)
        n = len(self._in) + len(self._out)
        self._zeros = (ctypes.c_int64 * max(1, n))(*[0] * n)  # no staging: the host build's run_host
        self._pool: list[int] = []
        self._first: int | None = None
        self.device_index = 0
        self.problem: str | None = None
        if self.device == "cuda":
            self.problem = _cuda_problem()
        if self.problem is None:
            self._load(device_index)

    @property
    def available(self) -> bool:
        return self.problem is None

    def _load(self, device_index: int | None) -> None:
        if self.device == "cuda":
            _preload_cublas()
        self._lib = ctypes.CDLL(str(self.directory / "lib.so"))
        module = self.meta["module"]
        self._create = getattr(self._lib, f"{module}_create")
        self._create.restype = ctypes.c_void_p
        self._create.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        self._clone = getattr(self._lib, f"{module}_clone")
        self._clone.restype = ctypes.c_void_p
        self._clone.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self._destroy = getattr(self._lib, f"{module}_destroy")
        self._destroy.argtypes = [ctypes.c_void_p]
        self._destroy.restype = None
        self._run_dev = getattr(self._lib, f"{module}_run")
        self._run_dev.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
                                  ctypes.c_int]
        self._run_host = getattr(self._lib, f"{module}_run_host")
        self._run_host.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                   ctypes.c_char_p, ctypes.c_int]
        if self.device == "cuda" and device_index is not None:
            self.device_index = int(device_index)
            cudart = self._set_device(self.device_index)
        else:
            cudart = None
        err = ctypes.create_string_buffer(_ERR)
        h = self._create(str(self.directory / f"{self.name}.bin").encode(), err, _ERR)
        if cudart is not None:
            cudart()
        if not h:
            raise DeviceError(f"model '{self.name}': {err.value.decode(errors='replace')}")
        self._first = h
        self._pool = [h]
        self._all = [h]

    def _set_device(self, index: int):
        """Make GPU ``index`` current while the session is created (through PyTorch or CuPy, whichever is there);
        returns the function that restores the previous one."""
        try:
            import torch

            old = torch.cuda.current_device()
            torch.cuda.set_device(index)
            return lambda: torch.cuda.set_device(old)
        except ImportError:
            import cupy

            old = cupy.cuda.runtime.getDevice()
            cupy.cuda.runtime.setDevice(index)
            return lambda: cupy.cuda.runtime.setDevice(old)

    def __del__(self):
        for h in getattr(self, "_all", []):
            try:
                self._destroy(h)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass

    def __repr__(self) -> str:
        ins = ", ".join(f"{n}: {dt} {D.fmt_shape(s)}" for n, (dt, s) in zip(self.input_names, self._in))
        outs = ", ".join(f"{n}: {dt} {D.fmt_shape(s)}" for n, (dt, s) in zip(self.output_names, self._out))
        return f"<ml4ep CudaModel '{self.name}' on {self.device} ({ins}) -> ({outs})>"

    @property
    def source(self) -> str:
        """The generated CUDA code (``<name>.cu``)."""
        return (self.directory / f"{self.name}.cu").read_text()

    def print_code(self) -> None:
        print(self.source)  # noqa: T201 - explicit user request

    # ----------------------------------------------------------------------------------------------
    def _check(self, feeds: list[Any]) -> str:
        """The kind of the inputs ("numpy", "torch" or "cupy"), after checking each one's device, dtype and layout."""
        kinds = {_kind(x) for x in feeds}
        if len(kinds) > 1:
            raise InputError(f"model '{self.name}': inputs mix {' and '.join(sorted(kinds))} arrays; pass one kind")
        kind = kinds.pop() if kinds else "numpy"
        for name, x, (dt, _shape) in zip(self.input_names, feeds, self._in):
            if kind == "numpy":
                continue
            if kind == "torch":
                on_gpu, index = bool(x.is_cuda), (x.device.index or 0) if x.is_cuda else None
                got_dt = str(x.dtype).removeprefix("torch.")
                contiguous = x.is_contiguous()
            else:
                on_gpu, index, got_dt = True, int(x.device.id), str(x.dtype)
                contiguous = bool(x.flags.c_contiguous)
            where = f"cuda:{index}" if on_gpu else "the CPU"
            if self.device == "cuda" and not on_gpu:
                raise InputError(f"model '{self.name}' runs on the GPU: input '{name}' is a {kind} tensor on the CPU; "
                                 f"pass a CUDA tensor (x.cuda()) or a NumPy array (copied)")
            if self.device == "cuda" and index != self.device_index:
                raise DeviceError(f"model '{self.name}' runs on cuda:{self.device_index}: input '{name}' is on {where}")
            if self.device == "cuda-host" and on_gpu:
                raise InputError(f"model '{self.name}' was built for the host (device='cuda-host'): input '{name}' is "
                                 f"on {where}; pass NumPy arrays or CPU tensors")
            want = "bool" if dt == np.bool_ else str(dt)
            if got_dt != want:
                raise InputError(f"model '{self.name}': input '{name}' must have dtype {want}, got {got_dt}")
            if not contiguous:
                raise InputError(f"model '{self.name}': input '{name}' must be contiguous (call .contiguous())")
        return kind

    def _plan(self, shapes: list[tuple]) -> tuple[list[int], list[tuple[int, ...]]]:
        key = tuple(shapes)
        plan = self._plans.get(key)
        if plan is None:
            values = self._bind([_Shape(s) for s in shapes])
            values = self._derived.values(values) if self._derived.defs else values
            plan = ([values[s] for s in self.symbols],
                    [tuple(D.evaluate(d, values) for d in shape) for _dt, shape in self._out])
            too_big = limits.runtime_output_check(self.name, self.output_names, plan[1], [dt for dt, _ in self._out],
                                                  {s: values[s] for s in self.symbols})
            if too_big:
                raise InputError(too_big)
            if len(self._plans) < 1024:
                self._plans[key] = plan
        return plan

    def _session(self) -> int:
        try:
            return self._pool.pop()
        except IndexError:
            err = ctypes.create_string_buffer(_ERR)
            h = self._clone(self._first, err, _ERR)
            if not h:
                raise DeviceError(f"model '{self.name}': {err.value.decode(errors='replace')}") from None
            self._all.append(h)
            return h

    def _infer(self, feeds: list[Any]) -> list[Any]:
        if self.problem is not None:
            raise DeviceError(f"model '{self.name}' (device='cuda') cannot run here: {self.problem}. The build can be "
                              f"saved (model.save) and run on a machine with an NVIDIA GPU")
        kind = self._check(feeds)
        if kind == "numpy":
            feeds = self._numpy(feeds)
        dims, shapes = self._plan([tuple(x.shape) for x in feeds])
        err = ctypes.create_string_buffer(_ERR)
        cdims = (ctypes.c_int64 * max(1, len(dims)))(*dims)
        if kind == "numpy":
            outs = [np.empty(s, dtype=dt) for s, (dt, _) in zip(shapes, self._out)]
            arrays = [*feeds, *outs]
            ptrs = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
            nbytes = (ctypes.c_int64 * len(arrays))(*[a.nbytes for a in arrays])
            h = self._session()
            try:
                rc = self._run_host(h, ptrs, nbytes, cdims, err, _ERR)
            finally:
                self._pool.append(h)
        else:
            outs, ptrs, stream = self._device_outputs(kind, feeds, shapes)
            if kind == "torch" and len(self._fast) < 64:
                self._remember(feeds, dims, shapes)
            h = self._session()
            try:
                if self.device == "cuda-host":
                    rc = self._run_host(h, ptrs, self._zeros, cdims, err, _ERR)
                else:
                    rc = self._run_dev(h, ptrs, cdims, ctypes.c_void_p(stream), err, _ERR)
            finally:
                self._pool.append(h)
        if rc != 0:
            raise Ml4epError(f"model '{self.name}': {err.value.decode(errors='replace')}")
        return outs

    def _remember(self, feeds: list[Any], dims: list[int], shapes: list[tuple]) -> None:
        """The fast path of later calls with torch tensors of these shapes (on the same device, same dtypes)."""
        import torch

        dev = feeds[0].device
        self._fast[tuple(x.shape for x in feeds)] = (
            (ctypes.c_int64 * max(1, len(dims)))(*dims), shapes,
            [_torch_dtype(torch, dt, self.name) for dt, _ in self._in],
            [_torch_dtype(torch, dt, self.name) for dt, _ in self._out], dev, torch)

    def _run_fast(self, fast, inputs) -> list | None:
        """A call with torch tensors like those of an earlier call (~the cost of the tensors' allocation); None when the
        inputs differ in kind, device, dtype or layout (the full path then checks and explains)."""
        cdims, shapes, in_dts, out_dts, dev, torch = fast
        for x, dt in zip(inputs, in_dts):
            if type(x) is not torch.Tensor or x.dtype != dt or x.device != dev or not x.is_contiguous():
                return None
        outs = [torch.empty(s, dtype=dt, device=dev) for s, dt in zip(shapes, out_dts)]
        ptrs = (ctypes.c_void_p * (len(inputs) + len(outs)))(*[t.data_ptr() for t in inputs], *[t.data_ptr() for t in outs])
        err = ctypes.create_string_buffer(_ERR)
        h = self._session()
        try:
            if self.device == "cuda":
                rc = self._run_dev(h, ptrs, cdims, ctypes.c_void_p(torch.cuda.current_stream(dev).cuda_stream), err, _ERR)
            else:
                rc = self._run_host(h, ptrs, self._zeros, cdims, err, _ERR)
        finally:
            self._pool.append(h)
        if rc != 0:
            raise Ml4epError(f"model '{self.name}': {err.value.decode(errors='replace')}")
        return outs

    def _numpy(self, feeds: list[Any]) -> list[np.ndarray]:
        arrays = []
        for name, x, (dt, _shape) in zip(self.input_names, feeds, self._in):
            a = np.asarray(x)
            if a.dtype != dt:
                if not isinstance(x, np.ndarray) and a.dtype.kind == dt.kind:
                    a = a.astype(dt)
                else:
                    raise InputError(f"model '{self.name}': input '{name}' must have dtype {dt}, got {a.dtype}")
            arrays.append(np.ascontiguousarray(a) if a.ndim else a.copy())
        return arrays

    def _device_outputs(self, kind: str, feeds: list[Any], shapes: list[tuple]):
        if kind == "torch":
            import torch

            device = feeds[0].device if feeds else torch.device("cuda" if self.device == "cuda" else "cpu",
                                                                 self.device_index if self.device == "cuda" else None)
            outs = [torch.empty(s, dtype=_torch_dtype(torch, dt, self.name), device=device)
                    for s, (dt, _) in zip(shapes, self._out)]
            ptrs = [t.data_ptr() for t in [*feeds, *outs]]
            stream = torch.cuda.current_stream(device).cuda_stream if self.device == "cuda" else 0
        else:
            import cupy

            with cupy.cuda.Device(self.device_index):
                outs = [cupy.empty(s, dtype=dt) for s, (dt, _) in zip(shapes, self._out)]
            ptrs = [int(a.data.ptr) for a in [*feeds, *outs]]
            stream = cupy.cuda.get_current_stream().ptr
        return outs, (ctypes.c_void_p * len(ptrs))(*ptrs), stream

    def __call__(self, *inputs: Any):
        fast = self._fast.get(tuple(getattr(x, "shape", ()) for x in inputs)) if self._fast else None
        if fast is not None:
            outs = self._run_fast(fast, inputs)
            if outs is not None:
                return outs[0] if len(outs) == 1 else tuple(outs)
        if len(inputs) != len(self.input_names):
            raise InputError(
                f"model '{self.name}' takes {len(self.input_names)} input(s) {self.input_names}, got {len(inputs)}")
        outs = self._infer(list(inputs))
        return outs[0] if len(outs) == 1 else tuple(outs)

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        missing = [n for n in self.input_names if n not in feeds]
        extra = [n for n in feeds if n not in self.input_names]
        if missing or extra:
            raise InputError(f"model '{self.name}': inputs are {self.input_names}; missing {missing}, unknown {extra}")
        return dict(zip(self.output_names, self._infer([feeds[n] for n in self.input_names])))

    def save(self, outdir: str | os.PathLike) -> Path:
        """Write ``<name>.hpp``, ``<name>.cu``, ``<name>.bin``, ``example.cu`` and ``CMakeLists.txt`` into ``outdir``."""
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        for f in (f"{self.name}.hpp", f"{self.name}.cu", f"{self.name}.bin", "example.cu", "CMakeLists.txt"):
            shutil.copyfile(self.directory / f, out / f)
        return out


class _Shape:
    """A shape standing in for an array in shape binding (``CompiledModel._bind`` reads ``ndim`` and ``shape``)."""

    def __init__(self, shape: tuple):
        self.shape = tuple(int(d) for d in shape)
        self.ndim = len(self.shape)
