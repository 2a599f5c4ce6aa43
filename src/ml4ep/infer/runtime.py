"""The Python session over a compiled model: a ctypes call into the generated code.

One compiled library serves every batch size. Calls are thread-safe: each concurrent call borrows its own
``Model`` instance (a copy sharing the weights, with a workspace of its own) from a pool, and ctypes releases
the GIL during the call, so threads run in parallel.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from . import dims as D
from ..errors import InputError, Ml4epError

_ERRLEN = 1024


def _set_blas_threads() -> None:
    """OpenBLAS inside the generated code runs single-threaded unless ML4EP_BLAS_THREADS says otherwise."""
    try:
        import scipy_openblas32 as sob

        lib = ctypes.CDLL(str(Path(sob.get_lib_dir()) / f"lib{sob.get_library()}.so"))
        lib.scipy_openblas_set_num_threads(int(os.environ.get("ML4EP_BLAS_THREADS", "1")))
    except (ImportError, OSError, AttributeError):
        pass


class CompiledModel:
    """A model compiled to C++; call it with NumPy arrays.

    ``model(x)`` returns the output array (a tuple when there are several), ``model.run({"x": x})`` a dict
    by output name, ``model.save(dir)`` writes the header, weights, ``example.cpp`` and ``CMakeLists.txt``.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.meta: dict = json.loads((self.directory / "meta.json").read_text())
        self.name: str = self.meta["name"]
        self.input_names: list[str] = [i["name"] for i in self.meta["inputs"]]
        self.output_names: list[str] = [o["name"] for o in self.meta["outputs"]]
        self.symbols: list[str] = list(self.meta["symbols"])
        self._in = [(np.dtype(i["dtype"]), [D.from_json(d) for d in i["shape"]]) for i in self.meta["inputs"]]
        self._out = [(np.dtype(o["dtype"]), [D.from_json(d) for d in o["shape"]]) for o in self.meta["outputs"]]
        _set_blas_threads()
        self._lib = ctypes.CDLL(str(self.directory / "lib.so"), mode=ctypes.RTLD_LOCAL)
        self._lib.ml4ep_create.restype = ctypes.c_void_p
        self._lib.ml4ep_create.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        self._lib.ml4ep_clone.restype = ctypes.c_void_p
        self._lib.ml4ep_clone.argtypes = [ctypes.c_void_p]
        self._lib.ml4ep_destroy.argtypes = [ctypes.c_void_p]
        self._lib.ml4ep_infer.restype = ctypes.c_int
        self._lib.ml4ep_infer.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
        ]
        err = ctypes.create_string_buffer(_ERRLEN)
        h = self._lib.ml4ep_create(str(self.directory / f"{self.name}.bin").encode(), err, _ERRLEN)
        if not h:
            raise Ml4epError(err.value.decode(errors="replace"))
        self._first = h
        self._handles: list[int] = [h]
        self._pool: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._pool.put(h)
        self._destroy = self._lib.ml4ep_destroy

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
        for name, arr, (dt, shape) in zip(self.input_names, arrays, self._in):
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
        for name, arr, (dt, shape) in zip(self.input_names, arrays, self._in):
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
            a = np.asarray(x)
            if a.dtype != dt:
                if not isinstance(x, np.ndarray) and a.dtype.kind == dt.kind:
                    a = a.astype(dt)  # Python scalars and lists take the model's dtype
                else:
                    raise InputError(f"model '{self.name}': input '{name}' must have dtype {dt}, got {a.dtype}")
            arrays.append(a if a.flags.c_contiguous else np.ascontiguousarray(a))
        return arrays

    def _infer(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        values = self._bind(arrays)
        outs = [np.empty([D.evaluate(d, values) for d in shape], dtype=dt) for dt, shape in self._out]
        ins_p = (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
        outs_p = (ctypes.c_void_p * max(1, len(outs)))(*[o.ctypes.data for o in outs])
        dims = (ctypes.c_int64 * max(1, len(self.symbols)))(*[values[s] for s in self.symbols])
        err = ctypes.create_string_buffer(_ERRLEN)
        try:
            h = self._pool.get_nowait()
        except queue.Empty:
            h = self._lib.ml4ep_clone(self._first)
            self._handles.append(h)
        try:
            rc = self._lib.ml4ep_infer(h, ins_p, outs_p, dims, err, _ERRLEN)
        finally:
            self._pool.put(h)
        if rc != 0:
            raise Ml4epError(f"model '{self.name}': {err.value.decode(errors='replace')}")
        return outs

    def __call__(self, *inputs: Any) -> np.ndarray | tuple[np.ndarray, ...]:
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

    def __del__(self) -> None:
        for h in getattr(self, "_handles", []):
            try:
                self._destroy(h)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass
        self._handles = []
