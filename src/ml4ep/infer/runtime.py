"""The Python session over a compiled model: a call into the generated code through a tiny extension module.

The compiled library is a small CPython extension module (the bridge ``codegen`` writes): NumPy buffers go
to the C++ ``infer`` without copies, and the GIL is released while it runs. One library serves every batch
size; shapes are validated once per distinct set of input shapes. Calls are thread-safe: each concurrent
call borrows its own ``Model`` instance (a copy sharing the weights, with a workspace of its own) from a pool,
so threads run in parallel.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from . import dims as D
from . import limits
from ..errors import InputError, Ml4epError, UnsupportedCPUError

@functools.cache
def _set_blas_threads() -> None:
    """OpenBLAS inside the generated code runs single-threaded unless ML4EP_BLAS_THREADS says otherwise."""
    try:
        import scipy_openblas32 as sob

        lib = ctypes.CDLL(str(Path(sob.get_lib_dir()) / f"lib{sob.get_library()}.so"))
        lib.scipy_openblas_set_num_threads(int(os.environ.get("ML4EP_BLAS_THREADS", "1")))
    except (ImportError, OSError, AttributeError):
        pass


def _dtype(name: str) -> np.dtype:
    """A dtype from its meta.json name: NumPy's, or an ml_dtypes one (bfloat16, float8_e4m3fn, int4, ...)."""
    try:
        return np.dtype(name)
    except TypeError:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))


class _Refused:
    """Stands for the extension module of a library built for a CPU with extensions this one lacks."""

    def __init__(self, error: UnsupportedCPUError):
        self.error = error

    def clone(self, *_):
        raise UnsupportedCPUError(str(self.error))

    run = clone


class CompiledModel:
    """A model compiled to C++; call it with NumPy arrays.

    ``model(x)`` returns the output array (a tuple when there are several), ``model.run({"x": x})`` a dict
    by output name, ``model.save(dir)`` writes the header, weights, ``example.cpp`` and ``CMakeLists.txt``.
    """

    def _read_meta(self, directory: str | os.PathLike) -> None:
        """The build folder's meta.json: name, inputs and outputs (dtypes, symbolic shapes), dimensions (also the
        CUDA model's, :class:`ml4ep.infer.cuda.runtime.CudaModel`)."""
        self.directory = Path(directory)
        self.meta: dict = json.loads((self.directory / "meta.json").read_text())
        self.name: str = self.meta["name"]
        self.input_names: list[str] = [i["name"] for i in self.meta["inputs"]]
        self.output_names: list[str] = [o["name"] for o in self.meta["outputs"]]
        self.symbols: list[str] = list(self.meta["symbols"])
        self._derived = D.Derived.from_json(self.meta.get("derived", {}))
        self._in = [(_dtype(i["dtype"]), [D.from_json(d) for d in i["shape"]]) for i in self.meta["inputs"]]
        self._out = [(_dtype(o["dtype"]), [D.from_json(d) for d in o["shape"]]) for o in self.meta["outputs"]]

    def __init__(self, directory: str | os.PathLike):
        self._read_meta(directory)
        self._out_dtypes = [dt for dt, _ in self._out]
        self._runtime_dims = list(self._derived.runtime)
        self._one_to_one = len(self._in) == 1 and len(self._out) == 1 and not self._runtime_dims
        self._in0_dtype = self._in[0][0] if self._in else None
        self._out0_dtype = self._out[0][0] if self._out else None
        self._plans: dict[tuple, tuple[list[int], list[tuple[int, ...]]]] = {}
        _set_blas_threads()
        from .._native import build

        # a library for another CPU is not loaded (it could die of SIGILL): it can be saved, and calling it raises an
        # error naming the missing extensions
        try:
            build.check_cpu(self.meta.get("features", ()), f"model '{self.name}' ({self.directory})")
        except UnsupportedCPUError as exc:
            self._ext = _Refused(exc)
            self._first, self._pool, self._run = None, [], self._ext.run
            return
        module = self.meta.get("module", f"ml4ep_{self.name}")
        spec = importlib.util.spec_from_file_location(module, self.directory / "lib.so")
        if spec is None or spec.loader is None:
            raise Ml4epError(f"model '{self.name}': cannot load {self.directory / 'lib.so'}")
        self._ext = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self._ext)
        try:
            self._first = self._ext.create(str(self.directory / f"{self.name}.bin"))
        except RuntimeError as exc:
            raise Ml4epError(str(exc)) from None
        # models free for a call: each concurrent call takes its own (list.pop/append are atomic)
        self._pool: list[Any] = [self._first]
        self._run = self._ext.run

    # ----------------------------------------------------------------------------------------------
    @property
    def header_path(self) -> Path:
        return self.directory / f"{self.name}.hpp"

    @property
    def source(self) -> str:
        """The generated C++ header."""
        return self.header_path.read_text()

    def print_code(self) -> None:
        """Print the generated C++ (the switch to read what ml4ep made of the model)."""
        print(self.source)  # noqa: T201 - explicit user request

    def __repr__(self) -> str:
        ins = ", ".join(f"{n}: {dt} {D.fmt_shape(s)}" for n, (dt, s) in zip(self.input_names, self._in))
        outs = ", ".join(f"{n}: {dt} {D.fmt_shape(s)}" for n, (dt, s) in zip(self.output_names, self._out))
        return f"<ml4ep CompiledModel '{self.name}' ({ins}) -> ({outs})>"

    # ----------------------------------------------------------------------------------------------
    def _bind(self, arrays: list[np.ndarray]) -> dict[str, int]:
        values: dict[str, int] = {}
        for name, arr, (_dt, shape) in zip(self.input_names, arrays, self._in):
            if arr.ndim != len(shape):
                raise InputError(
                    f"model '{self.name}': input '{name}' must have rank {len(shape)} {D.fmt_shape(shape)}, "
                    f"got shape {arr.shape}"
                )
            for ax, (want, got) in enumerate(zip(shape, arr.shape)):
                if isinstance(want, D.Dim):
                    if len(want.syms) == 1 and want.syms[0][1] == 1 and want.syms[0][0] not in values:
                        sym = want.syms[0][0]
                        if got % want.coeff:
                            raise InputError(
                                f"model '{self.name}': input '{name}' axis {ax} must be a multiple of "
                                f"{want.coeff} ({D.fmt(want)}), got {got}"
                            )
                        values[sym] = got // want.coeff
                    elif D.symbols([want]) <= values.keys() and D.evaluate(want, values) != got:
                        raise InputError(
                            f"model '{self.name}': input '{name}' axis {ax} is {D.fmt(want)} = "
                            f"{D.evaluate(want, values)} from the other inputs, got {got}"
                        )
                elif want != got:
                    raise InputError(
                        f"model '{self.name}': input '{name}' must have shape {D.fmt_shape(shape)}, "
                        f"got {arr.shape} (axis {ax}: expected {want}, got {got})"
                    )
        for name, arr, (_dt, shape) in zip(self.input_names, arrays, self._in):
            for ax, (want, got) in enumerate(zip(shape, arr.shape)):
                if isinstance(want, D.Dim):
                    missing = D.symbols([want]) - values.keys()
                    if missing:
                        raise InputError(f"model '{self.name}': cannot infer dimension(s) {sorted(missing)}")
                    if D.evaluate(want, values) != got:
                        raise InputError(
                            f"model '{self.name}': input '{name}' axis {ax} must be {D.fmt(want)} = "
                            f"{D.evaluate(want, values)}, got {got}"
                        )
        return values

    def _prepare(self, feeds: list[Any]) -> list[np.ndarray]:
        arrays = []
        for name, x, (dt, _shape) in zip(self.input_names, feeds, self._in):
            if type(x) is np.ndarray and x.dtype == dt and x.flags.c_contiguous:
                arrays.append(x)
                continue
            a = np.asarray(x)
            if a.dtype != dt:
                if not isinstance(x, np.ndarray) and a.dtype.kind == dt.kind:
                    a = a.astype(dt)  # Python scalars and lists take the model's dtype
                else:
                    raise InputError(f"model '{self.name}': input '{name}' must have dtype {dt}, got {a.dtype}")
            arrays.append(np.ascontiguousarray(a) if a.ndim else a.copy())
        return arrays

    def _infer(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        key = tuple(a.shape for a in arrays)
        plan = self._plans.get(key)
        if plan is None:  # first call with these shapes: validate and bind the symbolic dimensions
            values = self._bind(arrays)
            values = self._derived.values(values) if self._derived.defs else values
            plan = ([values[s] for s in self.symbols],
                    [tuple(D.evaluate(self._derived.bound(d), values) for d in shape) for _dt, shape in self._out])
            # outputs beyond the size limit (or of negative size) are refused before NumPy allocates them
            too_big = limits.runtime_output_check(self.name, self.output_names, plan[1], self._out_dtypes,
                                                  {s: values[s] for s in self.symbols})
            if too_big:
                raise InputError(too_big)
            if len(self._plans) < 1024:
                self._plans[key] = plan
        dims, shapes = plan
        outs = [np.empty(s, dtype=dt) for s, dt in zip(shapes, self._out_dtypes)]
        try:
            h = self._pool.pop()
        except IndexError:
            h = self._ext.clone(self._first)
        try:
            found = self._run(h, *arrays, *outs, *dims)
        except RuntimeError as exc:
            raise Ml4epError(f"model '{self.name}': {exc}") from None
        finally:
            self._pool.append(h)
        if found:  # data-dependent dimensions: the outputs were sized for their bounds
            values = self._derived.values(dict(zip(self.symbols, dims)))
            values.update(zip(self._runtime_dims, found))
            for k, (_dt, shape) in enumerate(self._out):
                if D.symbols(shape) & set(self._runtime_dims):
                    real = tuple(D.evaluate(d, values) for d in shape)
                    outs[k] = outs[k].reshape(-1)[:int(np.prod(real))].reshape(real)
        return outs

    def __call__(self, *inputs: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        if self._one_to_one and len(inputs) == 1:
            # fast path of the common case (one input, one output, shapes seen before): ~1 us of Python
            x = inputs[0]
            if type(x) is np.ndarray and x.dtype == self._in0_dtype and x.flags.c_contiguous:
                plan = self._plans.get((x.shape,))
                if plan is not None:
                    y = np.empty(plan[1][0], dtype=self._out0_dtype)
                    pool = self._pool
                    h = pool.pop() if pool else self._ext.clone(self._first)
                    try:
                        self._run(h, x, y, *plan[0])
                    except RuntimeError as exc:
                        raise Ml4epError(f"model '{self.name}': {exc}") from None
                    finally:
                        pool.append(h)
                    return y
        if len(inputs) != len(self.input_names):
            raise InputError(
                f"model '{self.name}' takes {len(self.input_names)} input(s) {self.input_names}, got {len(inputs)}"
            )
        outs = self._infer(self._prepare(list(inputs)))
        return outs[0] if len(outs) == 1 else tuple(outs)

    def run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        extra = [n for n in feeds if n not in self.input_names]
        if missing or extra:
            raise InputError(
                f"model '{self.name}': inputs are {self.input_names}; missing {missing}, unknown {extra}"
            )
        outs = self._infer(self._prepare([feeds[n] for n in self.input_names]))
        return dict(zip(self.output_names, outs))

    # ----------------------------------------------------------------------------------------------
    def save(self, outdir: str | os.PathLike) -> Path:
        """Write ``<name>.hpp``, ``<name>.bin``, ``example.cpp`` and ``CMakeLists.txt`` into ``outdir``."""
        out = Path(outdir)
        out.mkdir(parents=True, exist_ok=True)
        for f in (f"{self.name}.hpp", f"{self.name}.bin", "example.cpp", "CMakeLists.txt"):
            shutil.copyfile(self.directory / f, out / f)
        return out
