"""ml4ep.infer: ONNX models compiled into standalone C++ inference code.

The pipeline, top to bottom::

    ONNX file -> onnx_import (Graph IR) -> passes: fold (shapes, constants), fusion, dead code,
    memory plan -> codegen (<name>.hpp + <name>.bin) -> build (g++, cached) -> runtime (Python session over a tiny extension module)

>>> import ml4ep.infer as mi
>>> model = mi.compile("model.onnx")    # doctest: +SKIP
>>> y = model(x)                         # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from . import build
from .onnx_import import ModelLike, import_model, load_proto
from .runtime import CompiledModel
from ..errors import UnsupportedOperatorError

__all__ = ["compile", "check", "supported_operators", "CompiledModel", "Problem", "lower"]

log = logging.getLogger(__name__)


class Problem(NamedTuple):
    """A node ml4ep cannot compile."""

    node: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op_type}): {self.reason}"


def supported_operators() -> list[str]:
    """ONNX operator types ml4ep compiles, sorted."""
    from . import ops

    return [o for o in ops.supported() if o != "SymConst"]


def _model_name(model: ModelLike, proto) -> str:
    if isinstance(model, (str, os.PathLike)):
        base = Path(model).stem
    else:
        base = proto.graph.name or "model"
    s = re.sub(r"[^0-9A-Za-z_]", "_", base) or "model"
    if s[0].isdigit():
        s = "m_" + s
    return s


def lower(model: ModelLike, name: str | None = None):
    """Import and run every pass: returns ``(graph, memory_plan)`` ready for code generation."""
    from .passes import fold, fusion, memory

    g = import_model(model, name)
    fold.resolve(g)
    fusion.run_all(g)
    fold.dead_code(g)
    plan = memory.plan(g)
    return g, plan


def check(model: ModelLike) -> list[Problem]:
    """Everything in the model ml4ep cannot compile, all at once; empty when it compiles."""
    try:
        lower(model)
    except UnsupportedOperatorError as exc:
        return [Problem(*p) for p in exc.problems]
    return []


def compile(  # noqa: A001 - the natural name, as in torch.compile
    model: ModelLike,
    *,
    name: str | None = None,
    portable: bool = False,
    extra_flags: list[str] | None = None,
    cache: bool = True,
) -> CompiledModel:
    """Compile an ONNX model (path, bytes or ``ModelProto``) into a callable C++ model.

    Results are cached by the hash of the model, the code generator, the flags and the compiler version.
    ``portable=True`` builds for any x86-64-v2 machine instead of ``-march=native``.
    """
    proto, source = load_proto(model)
    name = re.sub(r"[^0-9A-Za-z_]", "_", name) if name else _model_name(model, proto)
    flags = build.flags(portable, extra_flags)
    cxx = build.compiler()
    key = hashlib.sha256()
    key.update(proto.SerializeToString(deterministic=True))
    for part in (build.generator_hash(), " ".join(flags), build.compiler_version(cxx), name, source):
        key.update(b"\0" + part.encode())
    target = build.cache_dir() / f"{name}-{key.hexdigest()[:20]}"
    if cache and (target / "lib.so").exists() and (target / "meta.json").exists():
        log.info("%s: cached build %s", source, target)
        return CompiledModel(target)

    t0 = time.perf_counter()
    g, plan = lower(proto, name)
    g.source = source
    from .codegen import generate

    module = f"ml4ep_{name}_{key.hexdigest()[:16]}"
    gen = generate(g, name, plan, module)
    t1 = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        (tmp / f"{name}.hpp").write_text(gen.header)
        (tmp / f"{name}.bin").write_bytes(gen.weights)
        (tmp / "bridge.cpp").write_text(gen.bridge)
        (tmp / "example.cpp").write_text(gen.example)
        (tmp / "CMakeLists.txt").write_text(gen.cmake)
        meta = dict(gen.meta, module=module, flags=flags, compiler=build.compiler_version(cxx))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        build.compile_shared(tmp / "bridge.cpp", tmp / "lib.so", flags)
        t2 = time.perf_counter()
        log.info("%s: generated in %.2f s, compiled in %.2f s", source, t1 - t0, t2 - t1)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race: use its build
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        # keep the generated sources for the error message's path; drop the half-built folder otherwise
        if not (tmp / "bridge.cpp").exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CompiledModel(target)
