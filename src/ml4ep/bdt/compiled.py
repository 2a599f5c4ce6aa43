"""A forest compiled to C++ behind the same ``predict`` as :class:`~ml4ep.bdt.forest.Forest`.

The generated header (``codegen.header``) is compiled with a small CPython extension bridge (``codegen.bridge``,
the template ``cpp/bridge.cpp``: one ``predict`` taking the arrays' buffers, float32 or float64 rows as they come)
into a shared library, imported from its file. It is built and cached by ml4ep's native build layer
(:mod:`ml4ep._native.build`, the ``bdt`` folder of the cache), keyed by content (the header, the bridge, the flags,
the target and the compiler's version), like ``ml4ep.infer``'s builds. The forest's name becomes its C++ namespace
through :func:`ml4ep._native.names.identifier`.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np

from .._native import build, template
from .._native.names import identifier
from ..errors import UnsupportedCPUError
from . import codegen
from .forest import Forest, ModelError


_NATIVE = (np.dtype(np.float32), np.dtype(np.float64))


def load_extension(source: str, name: str, target: build.Target, module_prefix: str, folder_prefix: str,
                   model: str):
    """Build (once: cached by the header, the bridge and the flags) and load the CPython extension around a forest
    header ``source`` (namespace ``name``, ``cpp/bridge.cpp``): ``(library path, module)``, or the
    ``UnsupportedCPUError`` instead of the module when the build is for a CPU with extensions this one lacks.
    ``model`` names the model in errors."""
    cxxflags = target.cxxflags()
    bridge = template.load("ml4ep.bdt", "cpp/bridge.cpp")
    key = build.cache_key(source, bridge, " ".join(cxxflags), target.key)[:24]
    module = f"{module_prefix}_{name}_{key}"
    folder = build.cache_dir("bdt") / f"{folder_prefix}{key}"
    if not build.cached(folder):  # built in a private folder of its own, then moved in place at once
        tmp = build.new_build("bdt", name)
        (tmp / f"{name}.hpp").write_text(source)
        src = tmp / "bridge.cpp"
        src.write_text(codegen.bridge(name, module))
        try:
            build.compile_shared(src, tmp / f"lib{name}.so", cxxflags + ["-pthread"], use_blas=False)
            build.seal(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        build.install(tmp, folder)
    lib = folder / f"lib{name}.so"
    try:
        build.check_cpu(target.features, f"the compiled forest {name} ({lib})")
    except UnsupportedCPUError as exc:
        return lib, exc
    spec = importlib.util.spec_from_file_location(module, lib)
    if spec is None or spec.loader is None:
        raise ModelError(f"{model}: cannot load the compiled forest {lib}")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    return lib, ext


class CompiledForest:
    """``forest.compile()``: ``predict(X)`` gives the same values and shape as ``forest.predict(X)``."""

    def __init__(self, forest: Forest, name: str = "forest", threads: int = 1, portable: bool = False,
                 march: str | None = None):
        self.forest, self.name, self.threads = forest, identifier(name or "forest", unique=False), int(threads)
        self.source = codegen.header(forest, self.name)
        self.target = build.target(march, portable)  # $ML4EP_MARCH unless march= (or portable=True) says otherwise
        self.path, ext = load_extension(self.source, self.name, self.target, "ml4ep_bdt", "", forest.source)
        self._n_features = forest.n_features
        f = forest
        self._vector = bool(f.meta.get("argmax") or f.output_shape == "vector"
                            or (f.output_shape == "auto" and f.n_outputs == 1))
        # built for a CPU with extensions this one lacks: not loaded (SIGILL), predict names them
        self._refused: UnsupportedCPUError | None = ext if isinstance(ext, UnsupportedCPUError) else None
        if self._refused is not None:
            return
        self._ext = ext
        self._predict = self._ext.predict
        self._outputs = int(self._ext.OUTPUTS_PER_ROW)

    def predict(self, X) -> np.ndarray:
        if self._refused is not None:
            raise UnsupportedCPUError(str(self._refused))
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self._n_features:
            raise ModelError(f"the model ({self.forest.source}) takes {self._n_features} features, "
                             f"got an array of shape {X.shape}")
        if X.dtype not in _NATIVE or not X.flags.c_contiguous:  # float32 and float64 rows are read as they are
            X = np.ascontiguousarray(X, dtype=np.float64)
        n = X.shape[0]
        y = np.empty((n, self._outputs), dtype=np.float64)
        self._predict(X, y, n, self.threads)
        return y[:, 0] if self._vector else y

    def __repr__(self) -> str:
        return f"CompiledForest({self.name!r}, {len(self.forest.trees)} trees, {self.path})"


def save(forest: Forest, outdir, name: str = "forest") -> Path:
    """Writes ``outdir/<name>.hpp`` (self-contained, C++17) and ``outdir/example.cpp``."""
    name = identifier(name or "forest", unique=False)  # the C++ namespace
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.hpp").write_text(codegen.header(forest, name))
    (out / "example.cpp").write_text(codegen.example(name))
    return out
