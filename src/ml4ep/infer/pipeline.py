"""The compile pipeline of ml4ep.infer: ONNX model -> lowered graph -> C++ -> cached shared library -> model.

:func:`lower` imports the model (``onnx_import``) and runs the passes (``passes``: shapes and constants folded,
fusion, dead code, memory plan). :func:`compile` and :func:`compile_many` then, per model:

1. plan (``_plan``): freeze the ``constants``, give a :class:`~ml4ep.infer.specialize.SpecializingModel` for a model
   whose shape arguments are inputs, else compute the cache key (:func:`ml4ep._native.build.cache_key`) and use the
   cached build when it is sound, else lower and generate the code (``codegen``: ``<name>.hpp``, ``<name>.bin``,
   the bridge, the example, the CMake file): a ``_Job``;
2. build (``_build``): write each job into a private folder of the ``infer`` cache (``_write``), compile the
   bridges (:func:`ml4ep._native.build.compile_shared`; several models with the same flags in one compiler call,
   one by one when that fails), then seal and install each folder (``_install``);
3. load: a :class:`~ml4ep.infer.runtime.CompiledModel` over the installed folder.

The public names (``compile``, ``compile_many``, ``lower``) are re-exported by :mod:`ml4ep.infer`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import NamedTuple

from .._native import build
from .._native.names import identifier
from ..errors import CompilerError, InputError, UnsupportedOperatorError
from . import dims as D
from . import specialize
from .onnx_import import ModelLike, import_model, load_proto
from .runtime import CompiledModel
from .specialize import SpecializingModel

__all__ = ["compile", "compile_many", "lower"]

log = logging.getLogger(__name__)


def _model_name(model: ModelLike, proto) -> str:
    if isinstance(model, (str, os.PathLike)):
        base = Path(model).stem
    else:
        base = proto.graph.name or "model"
    return _cpp_name(base)


def _cpp_name(base: str) -> str:
    """A model name usable as a C++ namespace."""
    return identifier(base or "model", unique=False)  # the name becomes a C++ namespace


def lower(model: ModelLike, name: str | None = None):
    """Import and run every pass: returns ``(graph, memory_plan)`` ready for code generation."""
    from .passes import fold, fusion, memory

    g = import_model(model, name)
    with D.scope(g.derived):
        fold.resolve(g)
        fusion.run_all(g)
        fold.dead_code(g)
        plan = memory.plan(g)
    return g, plan


def compile(  # noqa: A001 - the natural name, as in torch.compile
    model: ModelLike,
    *,
    name: str | None = None,
    march: str | None = None,
    portable: bool = False,
    extra_flags: list[str] | None = None,
    cache: bool = True,
    constants: dict | None = None,
    device: str | None = None,
    cuda_archs=None,
    precision: str | None = None,
    accum: str | None = None,
    layer_precision: dict | None = None,
    example_inputs=None,
    dynamic_axes: str | dict | None = "batch",
):
    """Compile an ONNX model (path, bytes or ``ModelProto``), a PyTorch ``nn.Module`` or a Keras 3 model into a
    callable C++ model.

    Results are cached by the hash of the model, the code generator, the flags and the compiler version.
    ``march`` is the target ISA (``-march``: "native", "x86-64-v3", "znver4", ...; default ``$ML4EP_MARCH``, else
    native); ``portable=True`` is an alias of ``march="x86-64-v2"``. A build for another CPU can be saved anywhere;
    it is loaded only on a CPU with every extension it needs (an error names the missing ones). ``constants`` fixes graph
    inputs to values (they become initializers). A model whose shape arguments (Reshape's shape, reduction
    axes, pads, sizes, ...) are graph inputs gives a :class:`SpecializingModel`, compiled per distinct value of
    those inputs when it is called; fix them with ``constants`` to get one ``CompiledModel`` (and its C++).

    ``device`` (default ``$ML4EP_DEVICE``, else "cpu"): "cuda" (or "cuda:N") builds CUDA with nvcc for the GPU
    architectures ``cuda_archs`` (default ``$ML4EP_CUDA_ARCHS``, else 80 and 90) and gives a
    :class:`~ml4ep.infer.cuda.runtime.CudaModel` taking torch or CuPy tensors; "cuda-host" builds the same CUDA
    source with the host compiler (its kernels as loops: the CUDA code, tested on any machine). What the CUDA code
    refuses is listed at once (:func:`ml4ep.infer.check` with ``device="cuda"``).

    ``precision`` (with ``accum`` and ``layer_precision``, as :func:`ml4ep.infer.to_hls4ml` takes them): the model
    computed in fixed point exactly as the hls4ml design of those settings computes it in its C-simulation
    (bit for bit; docs/fpga.md), at compiled speed; float32 in and out.

    A torch ``nn.Module`` (in eval mode) is exported to ONNX first (:mod:`ml4ep.infer.torch_import`), called on
    ``example_inputs`` (a tensor or array, or a tuple of them: ``forward``'s positional arguments, which name the
    ONNX inputs): by torch's dynamo exporter, by the TorchScript one where dynamo fails (or its model does not
    compile or disagrees). A Keras 3 model (any backend; a Keras model is recognised before a torch module) is
    exported by Keras's own ``model.export(format="onnx")`` (:mod:`ml4ep.infer.keras_import`); ``example_inputs``
    are then optional (what ``predict`` takes; by default random inputs of the model's input shapes). Parameters and
    buffers become weights. ``dynamic_axes``: "batch" (axis 0 of every input and output dynamic, the default), None
    (the examples' shapes fixed) or torch's dict ``{name: {axis: dim_name}}``. The compiled model is checked against
    the framework's own outputs on the examples (and, with a dynamic batch, on a second batch size) before it is
    returned: a difference beyond 1e-4 relative raises a :class:`~ml4ep.infer.torch_import.MismatchError` naming the
    output and the largest difference (not checked for the fixed-point emulation). Its ``exporter`` attribute says
    which exporter made it ("dynamo", "torchscript", "keras-<backend>"); its name is the class name unless ``name``
    is given.
    """
    from . import keras_import, torch_import

    framework = keras_import if keras_import.is_model(model) else torch_import if torch_import.is_model(model) else None
    if framework is not None:
        exporters = keras_import.exporters(model) if framework is keras_import else torch_import.EXPORTERS

        def export(exporter: str):
            return framework.to_onnx(model, example_inputs, dynamic_axes, exporter=exporter)

        def build_proto(proto, default_name: str):
            return compile(proto, name=name or default_name, march=march, portable=portable, extra_flags=extra_flags,
                           cache=cache, constants=constants, device=device, cuda_archs=cuda_archs,
                           precision=precision, accum=accum, layer_precision=layer_precision)

        return torch_import.compile_converted(exporters, export, build_proto, check=precision is None)
    if example_inputs is not None:
        raise InputError("example_inputs= goes with a torch nn.Module or a Keras model, not with an ONNX model")
    fx = None
    if precision is not None:
        fx = (precision, accum, layer_precision)
    elif accum is not None or layer_precision:
        raise InputError("accum and layer_precision go with precision= (the fixed-point emulation)")
    job = _plan(model, name, build.target(march, portable), extra_flags, cache, constants, _device(device),
                cuda_archs, fx)
    if not isinstance(job, _Job):
        return job
    res = _build([job])[0]
    if isinstance(res, BaseException):
        raise res
    return res


def compile_many(
    models: list,
    *,
    names: list[str] | None = None,
    march: str | None = None,
    portable: bool = False,
    extra_flags: list[str] | None = None,
    cache: bool = True,
    device: str | None = None,
    cuda_archs=None,
) -> list:
    """Compile several models with one compiler call (one shared library holding every model's bridge).

    For many small models (test suites, the conformance cases) this saves a compiler start and the parsing of
    the common headers per model. Returns, per model, a ``CompiledModel`` or ``SpecializingModel``, or the
    exception that model raised (a model that does not lower does not stop the others; when the joint build
    fails, each model is built alone to find the culprit).
    """
    names = names or [None] * len(models)
    tgt = build.target(march, portable)
    dev = _device(device)
    out: list = [None] * len(models)
    jobs: list[tuple[int, _Job]] = []
    for k, (m, n) in enumerate(zip(models, names)):
        try:
            r = _plan(m, n, tgt, extra_flags, cache, None, dev, cuda_archs)
        except Exception as exc:  # noqa: BLE001 - reported per model
            out[k] = exc
            continue
        if isinstance(r, _Job):
            jobs.append((k, r))
        else:
            out[k] = r
    for k, res in zip([k for k, _ in jobs], _build([j for _, j in jobs])):
        out[k] = res
    return out


class _Job(NamedTuple):
    """A model lowered and generated, waiting for the compiler."""

    target: Path
    name: str
    module: str
    gen: object
    flags: list
    cxx: str
    source: str
    isa: build.Target
    device: tuple = ("cpu", None)  # (kind, GPU index): see _device


DEVICES = ("cpu", "cuda", "cuda-host")


def _device(device: str | None) -> tuple[str, int | None]:
    """``(kind, GPU index)`` of a ``device=`` argument: "cpu", "cuda", "cuda:N" or "cuda-host" (None:
    ``$ML4EP_DEVICE``, else "cpu")."""
    d = (device if device is not None else os.environ.get("ML4EP_DEVICE") or "cpu").strip().lower()
    if d.startswith("cuda:") and d[5:].isdigit():
        return "cuda", int(d[5:])
    if d not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)} or cuda:N, not {d!r} (device= or ML4EP_DEVICE)")
    return d, None


def _loaded(target: Path, dev: tuple):
    """The model of an installed build folder."""
    if dev[0] == "cpu":
        return CompiledModel(target)
    from .cuda.runtime import CudaModel

    return CudaModel(target, dev[1])


def _plan(model, name, tgt: build.Target, extra_flags, cache, constants, dev=("cpu", None), cuda_archs=None,
          fx=None):
    """A cached model, a ``SpecializingModel``, or a :class:`_Job` to build (``fx``: the fixed-point settings
    ``(precision, accum, layer_precision)`` of the hls4ml emulation)."""
    proto, source = load_proto(model)
    name = _cpp_name(name) if name else _model_name(model, proto)
    if constants:
        unknown = set(constants) - {i.name for i in proto.graph.input}
        if unknown:
            raise InputError(f"{source}: constants {sorted(unknown)} are not graph inputs")
        proto = specialize.freeze(proto, constants)
    params = specialize.shape_inputs(proto)
    if fx is not None and (params or dev[0] != "cpu"):
        raise InputError(f"{source}: the fixed-point emulation (precision=) runs on the CPU, for models whose shape "
                         "arguments are constants")
    if params:
        def build_variants(protos, variant_names):
            return compile_many(protos, names=variant_names, march=tgt.march, extra_flags=extra_flags, cache=cache,
                                device=dev[0] if dev[1] is None else f"cuda:{dev[1]}", cuda_archs=cuda_archs)

        return SpecializingModel(proto, name, params, build_variants)
    kind = dev[0]
    archs: tuple = ()
    if kind == "cuda":
        archs = build.cuda_archs(cuda_archs)
        cxx = build.nvcc()
        flags = build.CUDA_FLAGS + build.gencode_flags(archs) + build.nvcc_extra_flags() + list(extra_flags or [])
        key = build.cache_key(proto.SerializeToString(deterministic=True), " ".join(flags), kind,
                              build.nvcc_version(cxx), build.compiler_version(build.compiler()), name, source)
        target = build.cache_dir("infer") / f"{name}-cuda-{key[:20]}"
    else:
        flags = tgt.cxxflags(extra_flags)
        cxx = build.compiler()
        extra = [kind] if kind != "cpu" else []
        if fx is not None:
            from .hls import settings_key

            extra = ["hls4ml-emulation", settings_key(*fx)]
        key = build.cache_key(proto.SerializeToString(deterministic=True), " ".join(flags), tgt.key, name, source,
                              *extra)
        target = build.cache_dir("infer") / (f"{name}-{key[:20]}" if kind == "cpu" else f"{name}-{kind}-{key[:20]}")
    if cache and build.cached(target):
        log.info("%s: cached build %s", source, target)
        return _loaded(target, dev)

    t0 = time.perf_counter()
    if fx is not None:
        from .hls import codegen as hls_codegen
        from .hls.layers import from_graph

        g, _plan_unused = lower(proto, name)
        g.source = source
        design = from_graph(g, *fx)
        gen = hls_codegen.generate(g, design, name, f"ml4ep_{name}_{key[:16]}", tgt.march)
        log.info("%s: fixed-point emulation generated in %.2f s", source, time.perf_counter() - t0)
        return _Job(target, name, f"ml4ep_{name}_{key[:16]}", gen, flags, cxx, source, tgt, dev)
    g, plan = lower(proto, name)
    g.source = source
    from .codegen import generate

    module = f"ml4ep_{name}_{key[:16]}"
    with D.scope(g.derived):
        if kind == "cpu":
            gen = generate(g, name, plan, module, tgt.march)
        else:
            from .cuda import codegen as cuda_codegen

            problems = cuda_codegen.problems(g)
            if problems:
                raise UnsupportedOperatorError(problems, f"{source} (device='cuda')")
            gen = cuda_codegen.generate(g, name, plan, module, archs or build.cuda_archs(cuda_archs), kind == "cuda-host")
    log.info("%s: generated in %.2f s", source, time.perf_counter() - t0)
    return _Job(target, name, module, gen, flags, cxx, source, tgt, dev)


def _write(job: _Job) -> Path:
    gen = job.gen
    tmp = build.new_build("infer", job.name)
    if job.device[0] != "cpu":
        (tmp / f"{job.name}.hpp").write_text(gen.header)
        (tmp / f"{job.name}.cu").write_text(gen.source)
        (tmp / f"{job.name}.bin").write_bytes(gen.weights)
        (tmp / "bridge.cu").write_text(gen.bridge)
        (tmp / "example.cu").write_text(gen.example)
        (tmp / "CMakeLists.txt").write_text(gen.cmake)
        version = build.nvcc_version(job.cxx) if job.device[0] == "cuda" else build.compiler_version(job.cxx)
        (tmp / "meta.json").write_text(json.dumps(dict(gen.meta, module=job.module, flags=job.flags, compiler=version),
                                                  indent=1))
        return tmp
    (tmp / f"{job.name}.hpp").write_text(gen.header)
    (tmp / f"{job.name}.bin").write_bytes(gen.weights)
    (tmp / "bridge.cpp").write_text(gen.bridge)
    (tmp / "example.cpp").write_text(gen.example)
    (tmp / "CMakeLists.txt").write_text(gen.cmake)
    meta = dict(gen.meta, module=job.module, flags=job.flags, compiler=build.compiler_version(job.cxx),
                march=job.isa.march, features=list(job.isa.features))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return tmp


def _install(tmp: Path, target: Path, dev: tuple = ("cpu", None)):
    build.seal(tmp)
    return _loaded(build.install(tmp, target), dev)


def _bridge_name(job: _Job) -> str:
    return "bridge.cpp" if job.device[0] == "cpu" else "bridge.cu"


def _compile(job: _Job, src: Path, out: Path) -> None:
    if job.device[0] == "cpu":
        build.compile_shared(src, out, job.flags)
    else:
        build.compile_cuda_shared(src, out, job.flags, host=job.device[0] == "cuda-host")


def _build(jobs: list[_Job]) -> list:
    """Compile the jobs (jointly when there are several with the same flags); a model or exception each."""
    if not jobs:
        return []
    if len(jobs) == 1 or len({(tuple(j.flags), j.device) for j in jobs}) > 1:
        return [_build_one(j) for j in jobs]
    if len({j.name for j in jobs}) < len(jobs):  # one namespace each per translation unit: rounds of distinct names
        rounds: list[list[int]] = []
        for k, j in enumerate(jobs):
            r = next((r for r in rounds if all(jobs[i].name != j.name for i in r)), None)
            rounds.append([k]) if r is None else r.append(k)
        out: list = [None] * len(jobs)
        for r in rounds:
            for k, res in zip(r, _build([jobs[k] for k in r])):
                out[k] = res
        return out
    tmps = [_write(j) for j in jobs]
    batch = build.new_build("infer", "batch")
    src = batch / ("models.cpp" if jobs[0].device[0] == "cpu" else "models.cu")
    src.write_text("".join(f'#include "{t / _bridge_name(j)}"\n' for t, j in zip(tmps, jobs)))
    t0 = time.perf_counter()
    try:
        _compile(jobs[0], src, batch / "lib.so")
    except CompilerError as exc:
        log.info("joint build of %d models failed (%s); building them one by one", len(jobs), str(exc)[:200])
        for t in tmps:
            shutil.rmtree(t, ignore_errors=True)
        shutil.rmtree(batch, ignore_errors=True)
        return [_build_one(j) for j in jobs]
    log.info("%d models compiled in one call in %.2f s", len(jobs), time.perf_counter() - t0)
    # the batch's library stays where it is; every model's folder links to it
    final = jobs[0].target.parent / f"batch-{hashlib.sha256(''.join(j.module for j in jobs).encode()).hexdigest()[:20]}"
    build.seal(batch)
    final = build.install(batch, final)
    out = []
    for j, t in zip(jobs, tmps):
        (t / "lib.so").symlink_to(os.path.relpath(final / "lib.so", t.parent / j.target.name))
        try:
            out.append(_install(t, j.target, j.device))
        except Exception as exc:  # noqa: BLE001
            out.append(exc)
    return out


def _build_one(job: _Job):
    tmp = _write(job)
    try:
        t0 = time.perf_counter()
        _compile(job, tmp / _bridge_name(job), tmp / "lib.so")
        log.info("%s: compiled in %.2f s", job.source, time.perf_counter() - t0)
        return _install(tmp, job.target, job.device)
    except Exception as exc:  # noqa: BLE001 - returned to the caller, who raises it
        shutil.rmtree(tmp, ignore_errors=True)
        return exc
