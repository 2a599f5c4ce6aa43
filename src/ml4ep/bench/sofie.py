"""SOFIE as a latency anchor for the inference benchmark.

SOFIE (https://github.com/ML4EP/SOFIE, Python package ``sofie``) translates an ONNX model into a
standalone C++ header: a ``Session`` class whose constructor reads the weights (from a text ``.dat``
file written next to the header) and whose ``infer(...)`` method runs the model.  The header includes
no SOFIE header; it only needs a Fortran-interface BLAS (it declares ``sgemm_``/``sgemv_``, and for
some operators ``saxpy_``/``scopy_``, itself, ``extern "C"``).

This module imports no heavy part of ``ml4ep``: it compiles through ml4ep's native build layer
(:func:`ml4ep._native.build.compile_program`, the compiler every ml4ep build uses) and writes names into C++ with
:mod:`ml4ep._native.names`.  It provides:

* :func:`sofie_available` -- whether the ``sofie`` package and a C++ compiler can be used;
* :func:`sofie_generate` -- parse an ONNX file with SOFIE and write the header and weights file;
* :func:`sofie_bench` -- generate code for one batch size, compile a small timing ``main`` with
  the C++ compiler against a BLAS, run it and return the per-call latency (median and min), peak RSS and the
  outputs (for checking against another runtime);
* :func:`openblas_from_pip` -- the ``blas`` description for the OpenBLAS of the ``scipy-openblas32``
  wheel, whose symbols carry a ``scipy_`` prefix (``scipy_sgemm_``...).  The SOFIE code is made to call
  them with ``-Dsgemm_=scipy_sgemm_``-style renaming defines, so no shim is needed;
* :func:`bench_inputs` -- the pseudo-random inputs the timing ``main`` uses, reproduced in numpy.

What the generated code looks like (sofie 0.1.0):

* namespace ``SOFIE_<model name>`` (the model name is the stem of the ONNX file name);
* ``Session(std::string filename = "<name>.dat" [, size_t <dim> = 0 ...])``: one ``size_t`` argument
  per symbolic input dimension (e.g. ``batch``), which is the *maximum* value of that dimension;
  the intermediate tensors are allocated in the constructor for that maximum;
* ``std::vector<float> infer([size_t <dim>, ...] float const* tensor_<input>, ...)`` for a single
  output, ``std::vector<std::vector<float>>`` for several.  ``infer`` allocates (and zero-fills) its
  output vector(s) on every call and copies them into the returned value; this cost is part of the
  measured latency (``sofie_bench(..., reuse_outputs=True)`` times the ``doInfer`` function that
  ``infer`` wraps, with output buffers allocated once, instead).

The batch size can therefore be either fixed when the code is generated (``batch_mode="fixed"``, the
default: a copy of the ONNX model with the batch dimension set is generated for each batch size, so all
loop bounds are compile-time constants) or left symbolic (``batch_mode="dynamic"``: the ``Session`` is
constructed for the benchmarked batch size, and the batch is passed to ``infer``).

Run ``python -m ml4ep.bench.sofie`` to check the harness against onnxruntime on a few small
models (needs torch, onnx and onnxruntime) and print a table of latencies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from .._native import build
from .._native.names import identifier, string
from ..errors import CompilerError

__all__ = [
    "SOFIE_BLAS_ROUTINES",
    "bench_inputs",
    "make_fixed_batch_model",
    "openblas_from_pip",
    "sofie_available",
    "sofie_bench",
    "sofie_generate",
]

#: The BLAS routines (Fortran interface) that SOFIE's generated code may declare and call.
SOFIE_BLAS_ROUTINES: tuple[str, ...] = ("sgemm_", "sgemv_", "saxpy_", "scopy_")

#: Seed of the pseudo-random inputs of the timing program (see :func:`bench_inputs`).
DEFAULT_SEED = 12345

_RESULT_MARKER = "@@SOFIE_ANCHOR_RESULT@@"
_MASK64 = (1 << 64) - 1

# Run in a separate interpreter: SOFIE's parser prints its diagnostics from C++ (to the process's
# stdout, which Python cannot capture in-process), and a crash in it must not take the benchmark down.
_GENERATE_SCRIPT = r"""
import json, sys, traceback
marker, onnx_path, header_path = sys.argv[1:4]
try:
    import sofie
    rmodel = sofie.RModelParser_ONNX().parse(onnx_path, False)
    rmodel.generate()
    rmodel.output_generated(header_path)
    result = {"ok": True, "name": rmodel.get_name(),
              "inputs": list(rmodel.get_input_tensor_names()),
              "outputs": list(rmodel.get_output_tensor_names())}
except BaseException as exc:  # report every failure of SOFIE to the caller
    result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
sys.stdout.flush()
print(marker + json.dumps(result), flush=True)
"""


# --------------------------------------------------------------------------------------------------
# availability
# --------------------------------------------------------------------------------------------------


def sofie_available() -> bool:
    """Whether SOFIE can be used here: the ``sofie`` package imports and there is a C++ compiler
    (:func:`ml4ep._native.build.compiler`: ``$CXX``, else ``g++``)."""
    try:
        import sofie  # light: the parsers' frameworks are imported lazily

        if not hasattr(sofie, "RModelParser_ONNX"):  # the compiled extension did not load
            return False
    except Exception:
        return False
    try:
        build.compiler()
    except CompilerError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# code generation
# --------------------------------------------------------------------------------------------------


def _split_params(params: str) -> list[str]:
    """Split a C++ parameter list on its top-level commas."""
    out: list[str] = []
    depth = 0
    cur = ""
    for ch in params:
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _param_name(param: str) -> str:
    """Name of a C++ parameter such as ``size_t batch = 0`` or ``float const* tensor_x`` ('' if none)."""
    decl = param.split("=", 1)[0].strip()
    m = re.search(r"([A-Za-z_]\w*)\s*$", decl)
    if m is None or m.group(1) in {"string", "size_t", "float", "double", "int"}:
        return ""
    return m.group(1)


def _parse_header(text: str) -> dict[str, Any]:
    """Extract from a SOFIE header what is needed to call it: namespace, constructor, infer, BLAS."""
    ns = re.search(r"^namespace\s+(\w+)\s*\{", text, re.MULTILINE)
    if ns is None:
        raise RuntimeError("SOFIE header: no namespace found")
    ctor = re.search(r"^Session\(([^)]*)\)\s*\{", text, re.MULTILINE)
    if ctor is None:
        raise RuntimeError("SOFIE header: no Session constructor found (generated with kNoSession?)")
    ctor_params = _split_params(ctor.group(1))
    if not ctor_params or "std::string" not in ctor_params[0]:
        raise RuntimeError(f"SOFIE header: unexpected Session constructor ({ctor.group(1)!r})")
    default_file = re.search(r'=\s*"([^"]*)"', ctor_params[0])
    ctor_dims = [_param_name(p) for p in ctor_params[1:]]
    if not all(p.startswith("size_t") for p in ctor_params[1:]):
        raise RuntimeError(f"SOFIE header: unexpected Session constructor ({ctor.group(1)!r})")

    infer = re.search(r"^[ \t]*(\S[^\n]*?)[ \t]+infer\(([^)]*)\)\s*\{", text, re.MULTILINE)
    if infer is None:
        raise RuntimeError("SOFIE header: no Session::infer found")
    infer_params = _split_params(infer.group(2))
    infer_dims = [_param_name(p) for p in infer_params if p.startswith("size_t")]
    infer_inputs = [p for p in infer_params if not p.startswith("size_t")]
    input_types = [p.split("const")[0].strip() for p in infer_inputs]
    input_tensors = [_param_name(p) for p in infer_inputs]

    # infer() allocates its outputs as `std::vector<T > output_tensor_<name>(<size expression>);`
    body_end = text.find("}", infer.end())
    outputs = re.findall(r"std::vector<\s*(\w+)\s*>\s+output_tensor_(\w+)\((.*?)\);", text[infer.end() : body_end])
    has_doinfer = re.search(r"void\s+doInfer\(\s*Session\s+const\s*&\s*session", text) is not None

    blas_symbols = sorted(set(re.findall(r'extern\s+"C"\s+[\w\s\*]*?\b(\w+_)\s*\(', text)))
    return {
        "namespace": ns.group(1),
        "default_weights_file": default_file.group(1) if default_file else "",
        "ctor_dims": ctor_dims,
        "infer_return_type": infer.group(1).strip(),
        "infer_dims": infer_dims,
        "infer_input_types": input_types,
        "infer_input_tensors": input_tensors,
        "infer_outputs": [{"type": t, "name": n, "size": e.strip()} for t, n, e in outputs],
        "has_doinfer": has_doinfer,
        "blas_symbols": blas_symbols,
    }


def sofie_generate(onnx_path: str, outdir: str) -> dict[str, Any]:
    """Translate an ONNX model with SOFIE and write the C++ header and weights file into ``outdir``.

    Calls, in a child interpreter, ``sofie.RModelParser_ONNX().parse(onnx_path)``, then
    ``rmodel.generate()`` (default options: weights in a text ``.dat`` file) and
    ``rmodel.output_generated(<outdir>/<name>.hxx)``, which also writes ``<outdir>/<name>.dat``.
    The model name (hence the namespace ``SOFIE_<name>``) is the stem of the ONNX file name; a stem
    that is not a C++ identifier is sanitised (the model is copied to ``outdir`` under that name).

    Returns a dict with:
      ``header``: path of the header; ``weights``: path of the weights file (None if the weights are in
      the header); ``namespace``: C++ namespace of the ``Session`` (``SOFIE_<name>``; older ROOT
      versions used ``TMVA_SOFIE_<name>``); ``session_ctor_arg``: the first constructor argument (the
      weights file path, or ``""``); ``session_dims``: names of the further ``size_t`` constructor
      arguments (symbolic dimensions, e.g. ``["batch"]``, whose maximum the session is built for);
      ``infer_dims``: the ``size_t`` arguments that ``infer`` takes first; ``infer_inputs``: the
      input tensor arguments of ``infer``, in order; ``inputs`` / ``outputs``: the model's tensor names;
      ``infer_return_type``; ``infer_outputs``: the output vectors ``infer`` allocates (type, tensor
      name, C++ size expression); ``has_doinfer``: whether the free function
      ``doInfer(session, [dims...,] inputs..., outputs...)`` that ``infer`` wraps is there;
      ``include_dirs``: what to add to the include path (the header is
      standalone); ``needs_blas`` and ``blas_symbols``: the BLAS routines the header declares.

    Raises RuntimeError with SOFIE's message (and its printed diagnostics) when SOFIE cannot parse
    or generate the model, e.g. for an unsupported operator.
    """
    src = Path(onnx_path).resolve()
    if not src.is_file():
        raise FileNotFoundError(f"ONNX model not found: {src}")
    out = Path(outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # SOFIE names the namespace after the file's stem; the namespace is then read back from the header, so any
    # identifier will do: ml4ep's (:func:`ml4ep._native.names.identifier`)
    name = identifier(src.stem, unique=False)
    if name != src.stem:
        shutil.copyfile(src, out / f"{name}.onnx")
        src = out / f"{name}.onnx"
    header = out / f"{name}.hxx"
    for stale in (header, out / f"{name}.dat"):
        stale.unlink(missing_ok=True)

    proc = subprocess.run(
        [sys.executable, "-c", _GENERATE_SCRIPT, _RESULT_MARKER, str(src), str(header)],
        capture_output=True,
        text=True,
        cwd=out,
    )
    result: dict[str, Any] | None = None
    printed: list[str] = []
    for line in proc.stdout.splitlines():
        if line.startswith(_RESULT_MARKER):
            result = json.loads(line[len(_RESULT_MARKER) :])
        elif line.strip():
            printed.append(line)
    diagnostics = "\n".join(printed[-30:] + proc.stderr.strip().splitlines()[-30:])
    if result is None:
        raise RuntimeError(
            f"SOFIE crashed while translating {src.name} (exit code {proc.returncode})"
            + (f":\n{diagnostics}" if diagnostics else "")
        )
    if not result["ok"]:
        raise RuntimeError(
            f"SOFIE cannot translate {src.name}: {result['error']}" + (f"\n{diagnostics}" if diagnostics else "")
        )
    if not header.is_file():
        raise RuntimeError(f"SOFIE did not write the header {header}")

    info = _parse_header(header.read_text())
    weights: Path | None = None
    if info["default_weights_file"]:
        weights = out / info["default_weights_file"]
        if not weights.is_file():
            raise RuntimeError(f"SOFIE did not write the weights file {weights}")
    return {
        "header": str(header),
        "weights": str(weights) if weights else None,
        "namespace": info["namespace"],
        "session_ctor_arg": str(weights) if weights else "",
        "session_dims": info["ctor_dims"],
        "infer_dims": info["infer_dims"],
        "infer_inputs": info["infer_input_tensors"],
        "infer_input_types": info["infer_input_types"],
        "infer_return_type": info["infer_return_type"],
        "infer_outputs": info["infer_outputs"],
        "has_doinfer": info["has_doinfer"],
        "inputs": result["inputs"],
        "outputs": result["outputs"],
        "include_dirs": [str(out)],
        "needs_blas": bool(info["blas_symbols"]),
        "blas_symbols": info["blas_symbols"],
    }


# --------------------------------------------------------------------------------------------------
# ONNX model with the batch dimension set
# --------------------------------------------------------------------------------------------------


def _full_input_shapes(model: Any, batch: int, input_shapes: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Full input shapes ``(batch, *per_sample)``, checked against the ONNX model's graph inputs."""
    graph_inputs = _graph_inputs(model)
    if len(input_shapes) != len(graph_inputs):
        raise ValueError(f"the model has {len(graph_inputs)} input(s), got {len(input_shapes)} input shape(s)")
    full: list[tuple[int, ...]] = []
    for vi, shape in zip(graph_inputs, input_shapes, strict=True):
        dims = vi.type.tensor_type.shape.dim
        shape = tuple(int(s) for s in shape)
        if len(shape) == len(dims) - 1:
            shape = (batch, *shape)
        elif len(shape) == len(dims):
            if shape[0] != batch:
                raise ValueError(f"input {vi.name}: shape {shape} given with batch {shape[0]} != {batch}")
        else:
            raise ValueError(f"input {vi.name} has rank {len(dims)}, got shape {shape}")
        for i, (d, s) in enumerate(zip(dims, shape, strict=True)):
            if i > 0 and d.HasField("dim_value") and d.dim_value != s:
                raise ValueError(f"input {vi.name}: dimension {i} is {d.dim_value} in the model, got {s}")
        full.append(shape)
    return full


def _graph_inputs(model: Any) -> list[Any]:
    """The graph inputs that are not initializers (old exporters list weights as inputs too)."""
    inits = {t.name for t in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def make_fixed_batch_model(
    onnx_path: str,
    out_path: str,
    batch: int,
    input_shapes: Sequence[Sequence[int]],
    *,
    symbolic_batch: bool = False,
) -> list[tuple[int, ...]]:
    """Write a copy of an ONNX model whose input shapes are fully set.

    ``input_shapes`` are the per-sample shapes of the inputs (without the batch dimension; full shapes
    whose first dimension is ``batch`` are accepted too).  With ``symbolic_batch`` the first dimension
    of every input becomes the symbolic dimension ``batch`` instead (SOFIE then generates a session
    whose batch is given at run time) and only the other dimensions are set.  The symbolic batch
    dimension of the original model is substituted wherever it appears (outputs, value_info).
    Returns the full input shapes ``(batch, *per_sample)``.

    Only the graph's input (and output) shapes are changed: a model exported with a fixed batch size
    whose nodes bake it in (e.g. a ``Reshape`` to ``[1, -1]``) cannot be re-batched this way; a warning
    is given when an input's first dimension is a fixed value other than ``batch``.
    """
    import warnings

    import onnx

    model = onnx.load(onnx_path)
    shapes = _full_input_shapes(model, batch, input_shapes)
    batch_params: set[str] = set()
    for vi, shape in zip(_graph_inputs(model), shapes, strict=True):
        if vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise ValueError(f"input {vi.name}: only float32 inputs are supported by the SOFIE anchor")
        dims = vi.type.tensor_type.shape.dim
        if dims[0].HasField("dim_param"):
            batch_params.add(dims[0].dim_param)
        elif dims[0].HasField("dim_value") and (symbolic_batch or dims[0].dim_value != batch):
            warnings.warn(
                f"{Path(onnx_path).name}: input {vi.name} has a fixed first dimension {dims[0].dim_value}; "
                "setting it to another batch size is only right if no node depends on it",
                stacklevel=2,
            )
        for i, (d, s) in enumerate(zip(dims, shape, strict=True)):
            d.Clear()
            if i == 0 and symbolic_batch:
                d.dim_param = "batch"
            else:
                d.dim_value = s
    for vi in list(model.graph.output) + list(model.graph.value_info):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in batch_params:
                if symbolic_batch:
                    d.dim_param = "batch"
                else:
                    d.Clear()
                    d.dim_value = batch
    onnx.save(model, out_path)
    return shapes


# --------------------------------------------------------------------------------------------------
# inputs of the timing program
# --------------------------------------------------------------------------------------------------


def bench_inputs(shapes: Sequence[Sequence[int]], seed: int = DEFAULT_SEED) -> list[Any]:
    """The inputs the timing program fills, as float32 numpy arrays of the given (full) shapes.

    Element ``i`` of input ``k`` is ``splitmix64(base_k + i)``, with
    ``base_k = seed * 2**32 + k * 0x9E3779B97F4A7C15 (mod 2**64)``, mapped to ``[-1, 1)`` through its
    top 24 bits (exact in float32).  The C++ side computes the same values.
    """
    import numpy as np

    arrays = []
    with np.errstate(over="ignore"):
        for k, shape in enumerate(shapes):
            n = int(np.prod(shape, dtype=np.int64))
            base = ((seed << 32) + k * 0x9E3779B97F4A7C15) & _MASK64
            z = np.arange(n, dtype=np.uint64) + np.uint64(base) + np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
            vals = (z >> np.uint64(40)).astype(np.float64) * (2.0 / (1 << 24)) - 1.0
            arrays.append(vals.astype(np.float32).reshape(tuple(shape)))
    return arrays


# --------------------------------------------------------------------------------------------------
# the timing program
# --------------------------------------------------------------------------------------------------

_MAIN_TEMPLATE = r"""// Timing program of the SOFIE anchor (generated by ml4ep.bench.sofie).
#include "@HEADER@"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>
#include <sys/resource.h>

#ifdef SOFIE_BENCH_BLAS_SET_NUM_THREADS
extern "C" void SOFIE_BENCH_BLAS_SET_NUM_THREADS(int);
#endif
#ifdef SOFIE_BENCH_BLAS_GET_NUM_THREADS
extern "C" int SOFIE_BENCH_BLAS_GET_NUM_THREADS(void);
#endif

namespace {

// Same values as bench_inputs() in ml4ep/bench/sofie.py.
void fill_input(float *x, std::size_t n, std::uint64_t seed, std::uint64_t k)
{
   const std::uint64_t golden = 0x9E3779B97F4A7C15ULL;
   const std::uint64_t base = (seed << 32) + k * golden;
   for (std::size_t i = 0; i < n; ++i) {
      std::uint64_t z = base + i + golden;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      z = z ^ (z >> 31);
      x[i] = static_cast<float>(static_cast<double>(z >> 40) * (2.0 / 16777216.0) - 1.0);
   }
}

// Peak resident set size of this process image in kB: VmHWM of /proc/self/status (Linux), -1 if
// unavailable.  getrusage's ru_maxrss is not used as the peak: Linux carries it over execve, so it
// also holds the high-water mark of the parent process that forked this one (e.g. a Python process).
long peak_rss_kb()
{
   std::ifstream status("/proc/self/status");
   std::string key;
   while (status >> key) {
      if (key == "VmHWM:") {
         long kb = -1;
         status >> kb;
         return kb;
      }
      status.ignore(1 << 20, '\n');
   }
   return -1;
}

// Flatten what infer() returns (a vector, a vector of vectors, or a tuple of them) to doubles.
template <class T>
void collect(const std::vector<T> &v, std::vector<std::vector<double>> &out)
{
   out.emplace_back(v.begin(), v.end());
}
template <class T>
void collect(const std::vector<std::vector<T>> &v, std::vector<std::vector<double>> &out)
{
   for (const auto &x : v)
      collect(x, out);
}
template <class... Ts>
void collect(const std::tuple<Ts...> &t, std::vector<std::vector<double>> &out)
{
   std::apply([&](const auto &...x) { (collect(x, out), ...); }, t);
}

} // namespace

int main()
{
   try {
#ifdef SOFIE_BENCH_BLAS_SET_NUM_THREADS
      SOFIE_BENCH_BLAS_SET_NUM_THREADS(1);
#endif
      const int n_iter = @N_ITER@;
      const int n_warmup = @N_WARMUP@;
      const std::uint64_t seed = @SEED@ULL;
@INPUTS@
      @NS@::Session session(@CTOR_ARGS@);
@PROLOGUE@
      for (int i = 0; i < n_warmup; ++i) {
         @CALL@;
      }
      std::vector<double> times_us(n_iter);
      for (int i = 0; i < n_iter; ++i) {
         const auto t0 = std::chrono::steady_clock::now();
         @CALL@;
         const auto t1 = std::chrono::steady_clock::now();
         times_us[i] = std::chrono::duration<double, std::micro>(t1 - t0).count();
      }
      // memory peak of the inference itself (before the checking copies below)
      const long peak_kb = peak_rss_kb();
      struct rusage usage;
      getrusage(RUSAGE_SELF, &usage);

      std::vector<std::vector<double>> outputs;
      @COLLECT@

      double checksum = 0;
      for (std::size_t k = 0; k < outputs.size(); ++k) {
         for (double v : outputs[k])
            checksum += v;
         const std::string path = "output_" + std::to_string(k) + ".bin";
         std::FILE *f = std::fopen(path.c_str(), "wb");
         const std::size_t n = outputs[k].size();
         if (f == nullptr || std::fwrite(outputs[k].data(), sizeof(double), n, f) != n) {
            std::fprintf(stderr, "cannot write %s\n", path.c_str());
            return 2;
         }
         std::fclose(f);
      }
      std::vector<double> sorted = times_us;
      std::sort(sorted.begin(), sorted.end());
      const double median = n_iter % 2 ? sorted[n_iter / 2] : 0.5 * (sorted[n_iter / 2 - 1] + sorted[n_iter / 2]);
      double mean = 0;
      for (double t : times_us)
         mean += t / n_iter;
      char checksum_json[32] = "null";  // JSON has no NaN/inf
      if (std::isfinite(checksum))
         std::snprintf(checksum_json, sizeof(checksum_json), "%.17g", checksum);
      int blas_threads = -1;
#ifdef SOFIE_BENCH_BLAS_GET_NUM_THREADS
      blas_threads = SOFIE_BENCH_BLAS_GET_NUM_THREADS();
#endif
      std::printf("@MARKER@{\"median_us\": %.6g, \"min_us\": %.6g, \"mean_us\": %.6g, \"peak_rss_kb\": %ld, "
                  "\"ru_maxrss_kb\": %ld, \"checksum\": %s, \"n_outputs\": %zu, \"blas_threads\": %d, "
                  "\"output_sizes\": [",
                  median, sorted.front(), mean, peak_kb, usage.ru_maxrss, checksum_json, outputs.size(),
                  blas_threads);
      for (std::size_t k = 0; k < outputs.size(); ++k)
         std::printf("%s%zu", k ? ", " : "", outputs[k].size());
      std::printf("]}\n");
   } catch (const std::exception &e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
   }
   return 0;
}
"""


def _write_main(
    gen: dict[str, Any],
    shapes: list[tuple[int, ...]],
    batch: int,
    n_iter: int,
    n_warmup: int,
    seed: int,
    reuse_outputs: bool,
    path: Path,
) -> None:
    """Write the timing program for a generated header."""
    n_inputs = len(gen["infer_inputs"])
    if n_inputs != len(shapes):
        raise RuntimeError(f"the generated infer() takes {n_inputs} input(s), {len(shapes)} shape(s) given")
    bad = [t for t in gen["infer_input_types"] if t != "float"]
    if bad:
        raise RuntimeError(f"the generated infer() takes non-float inputs ({bad}); not supported here")
    for what, dims in (("Session constructor", gen["session_dims"]), ("infer()", gen["infer_dims"])):
        if len(dims) > 1:
            raise RuntimeError(
                f"the generated {what} takes several dynamic dimensions {dims}; only the batch may be symbolic"
            )
    inputs = []
    for k, shape in enumerate(shapes):
        n = 1
        for s in shape:
            n *= s
        inputs.append(f"      std::vector<float> in{k}({n});\n      fill_input(in{k}.data(), in{k}.size(), seed, {k});")
    ctor_args = [string(gen["session_ctor_arg"])] + [str(batch)] * len(gen["session_dims"])
    dim_args = [str(batch)] * len(gen["infer_dims"])
    input_args = [f"in{k}.data()" for k in range(n_inputs)]
    ns = gen["namespace"]
    if reuse_outputs:
        if not gen["has_doinfer"] or not gen["infer_outputs"]:
            raise RuntimeError("reuse_outputs: the generated header has no doInfer() to call with output buffers")
        # the output sizes are C++ expressions of the dynamic dimensions (e.g. `batch * 10`)
        prologue = [f"      const std::size_t {d} = {batch};" for d in gen["infer_dims"]]
        prologue += [f"      std::vector<{o['type']}> out{k}({o['size']});" for k, o in enumerate(gen["infer_outputs"])]
        output_args = [f"out{k}.data()" for k in range(len(gen["infer_outputs"]))]
        call = f"{ns}::doInfer({', '.join(['session', *dim_args, *input_args, *output_args])})"
        collect = " ".join(f"collect(out{k}, outputs);" for k in range(len(gen["infer_outputs"])))
    else:
        prologue = []
        call = f"auto r = session.infer({', '.join(dim_args + input_args)}); (void)r"
        collect = f"collect(session.infer({', '.join(dim_args + input_args)}), outputs);"
    text = (
        _MAIN_TEMPLATE.replace("@HEADER@", Path(gen["header"]).name)
        .replace("@N_ITER@", str(n_iter))
        .replace("@N_WARMUP@", str(n_warmup))
        .replace("@SEED@", str(seed))
        .replace("@INPUTS@", "\n".join(inputs))
        .replace("@NS@", ns)
        .replace("@CTOR_ARGS@", ", ".join(ctor_args))
        .replace("@PROLOGUE@", "\n".join(prologue))
        .replace("@CALL@", call)
        .replace("@COLLECT@", collect)
        .replace("@MARKER@", _RESULT_MARKER)
    )
    path.write_text(text)


def _blas_flags(blas: dict[str, Any], symbols: Sequence[str]) -> tuple[list[str], list[str]]:
    """Compile flags (defines, include dirs) and link flags for the ``blas`` description."""
    cflags = [f"-I{d}" for d in blas.get("include_dirs", [])]
    defines = list(blas.get("extra_defines", []))
    prefix = blas.get("symbol_prefix", "")
    if prefix:
        # Rename the routines the header declares (extern "C" sgemm_ -> scipy_sgemm_ ...).
        defines += [f"{s}={prefix}{s}" for s in symbols if f"{s}={prefix}{s}" not in defines]
    cflags += [f"-D{d}" for d in defines]
    ldflags: list[str] = []
    for d in blas.get("library_dirs", []):
        ldflags += [f"-L{d}", f"-Wl,-rpath,{d}"]
    ldflags += [f"-l{lib}" for lib in blas.get("libraries", [])]
    ldflags += list(blas.get("extra_link_args", []))
    return cflags, ldflags


def sofie_bench(
    onnx_path: str,
    batch: int,
    input_shapes: list[tuple[int, ...]],
    n_iter: int,
    cxxflags: list[str],
    blas: dict[str, Any],
    workdir: str,
    *,
    n_warmup: int = 10,
    batch_mode: Literal["fixed", "dynamic"] = "fixed",
    reuse_outputs: bool = False,
    seed: int = DEFAULT_SEED,
    max_output_values: int | None = None,
    cxx: str | None = None,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """Time SOFIE's generated code for one model and batch size.

    Writes under ``workdir/<model>_b<batch>`` (``_dyn<batch>``, ``..._reuse``): a copy of the model with the
    input shapes set (see :func:`make_fixed_batch_model`), SOFIE's header and weights
    (:func:`sofie_generate`), and ``main.cpp``, which constructs the ``Session`` once, fills the inputs
    with fixed pseudo-random floats (:func:`bench_inputs`), runs ``n_warmup`` calls, then times each of
    ``n_iter`` calls of ``session.infer(...)`` with ``std::chrono::steady_clock``.  It is compiled with
    ``cxx`` (default: :func:`ml4ep._native.build.compiler`) and ``cxxflags`` (e.g. ``["-O3", "-march=native",
    "-std=c++17"]``), linked to the BLAS described by ``blas`` (see :func:`openblas_from_pip`), and run
    with ``OPENBLAS_NUM_THREADS=1`` (plus ``blas["env"]``).

    ``input_shapes``: one per-sample shape per model input (full shapes starting with ``batch`` are
    accepted too).  ``batch_mode``: ``"fixed"`` generates code for this batch size only;
    ``"dynamic"`` generates code with a symbolic batch and builds the session for ``batch``.
    ``reuse_outputs``: time the generated free function ``doInfer(session, ..., outputs)`` writing
    into output buffers allocated once, instead of ``Session::infer``, which allocates, zero-fills
    and copies its output vectors on every call (this shows what that costs; the default times
    ``Session::infer``, SOFIE's public API).

    ``blas``: ``include_dirs``, ``library_dirs``, ``libraries``, ``extra_defines`` (``NAME=VALUE``),
    and optionally ``symbol_prefix`` (every ``extern "C"`` routine the header declares is renamed
    to ``<prefix><name>``), ``env`` (added to the environment of the run) and ``extra_link_args``.

    Returns a dict with:
      ``median_us``, ``min_us``, ``mean_us``: latency of one call (``Session::infer``, including its
      allocation of the outputs; ``doInfer`` with ``reuse_outputs``);
      ``peak_rss_kb``: peak resident memory of the process up to the end of the timed loop (weights
      parsing, session, inputs and outputs included): ``VmHWM`` of ``/proc/self/status``;
      ``ru_maxrss_kb``: ``getrusage``'s ``ru_maxrss`` at the same point; Linux carries it over
      ``execve``, so it also covers the peak of the forking Python process (only an upper bound);
      ``compile_s``: the compiler's wall time; ``generate_s``: SOFIE's parsing and code generation time;
      ``checksum``: sum of all outputs of a final call (None if not finite);
      ``outputs``: the first output of that call, flattened, as a list of floats (at most
      ``max_output_values`` of them); ``output_sizes``; ``n_outputs``; ``input_shapes`` (full);
      ``blas_threads``: as reported by the BLAS if ``blas`` names a get-threads function, else -1;
      ``batch_mode``, ``reuse_outputs``, ``n_iter``, ``workdir``, and ``generated`` (the dict of
      :func:`sofie_generate`).

    Raises RuntimeError if SOFIE cannot translate the model, or compilation or the run fails.
    """
    import numpy as np

    if batch < 1 or n_iter < 1 or n_warmup < 0:
        raise ValueError("batch and n_iter must be >= 1, n_warmup >= 0")
    if batch_mode not in ("fixed", "dynamic"):
        raise ValueError(f"batch_mode must be 'fixed' or 'dynamic', not {batch_mode!r}")
    src = Path(onnx_path).resolve()
    tag = (f"b{batch}" if batch_mode == "fixed" else f"dyn{batch}") + ("_reuse" if reuse_outputs else "")
    name = f"{identifier(src.stem, unique=False)}_{tag}"
    run_dir = Path(workdir).resolve() / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)

    model_copy = run_dir / f"{name}.onnx"
    shapes = make_fixed_batch_model(
        str(src), str(model_copy), batch, input_shapes, symbolic_batch=batch_mode == "dynamic"
    )

    t0 = time.perf_counter()
    gen = sofie_generate(str(model_copy), str(run_dir / "generated"))
    generate_s = time.perf_counter() - t0
    if batch_mode == "fixed" and (gen["session_dims"] or gen["infer_dims"]):
        raise RuntimeError(f"SOFIE left dynamic dimensions {gen['session_dims'] or gen['infer_dims']} in {name}")

    main_cpp = run_dir / "main.cpp"
    _write_main(gen, shapes, batch, n_iter, n_warmup, seed, reuse_outputs, main_cpp)
    exe = run_dir / "sofie_bench"
    cflags, ldflags = _blas_flags(blas, gen["blas_symbols"])
    cxx = cxx or build.compiler()
    cmd = build.program_command(main_cpp, exe, cxxflags, gen["include_dirs"], cflags, ldflags, cxx=cxx)
    (run_dir / "compile_command.txt").write_text(" ".join(cmd) + "\n")
    try:
        compile_s = build.compile_program(main_cpp, exe, cxxflags, gen["include_dirs"], cflags, ldflags, cxx=cxx,
                                          cwd=run_dir, timeout=timeout_s)
    except CompilerError as exc:
        raise RuntimeError(f"the SOFIE code of {name}: {exc}") from exc

    env = dict(os.environ)
    env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    env.update({str(k): str(v) for k, v in blas.get("env", {}).items()})
    proc = subprocess.run([str(exe)], capture_output=True, text=True, cwd=run_dir, env=env, timeout=timeout_s)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_RESULT_MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"running the SOFIE code of {name} failed (exit code {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    res: dict[str, Any] = json.loads(lines[-1][len(_RESULT_MARKER) :])
    first = np.fromfile(run_dir / "output_0.bin", dtype=np.float64)
    if max_output_values is not None:
        first = first[:max_output_values]
    res.update(
        {
            "compile_s": compile_s,
            "generate_s": generate_s,
            "outputs": first.tolist(),
            "input_shapes": shapes,
            "batch_mode": batch_mode,
            "reuse_outputs": reuse_outputs,
            "n_iter": n_iter,
            "generated": gen,
            "workdir": str(run_dir),
        }
    )
    return res


# --------------------------------------------------------------------------------------------------
# BLAS
# --------------------------------------------------------------------------------------------------


def openblas_from_pip() -> dict[str, Any]:
    """The ``blas`` description for the OpenBLAS of the ``scipy-openblas32`` wheel.

    Its symbols carry the prefix ``scipy_`` (``scipy_sgemm_``, ``scipy_cblas_sgemm``...).  SOFIE's
    header declares the Fortran routines itself (``extern "C" void sgemm_(...)``, also ``sgemv_``,
    ``saxpy_``, ``scopy_`` depending on the operators), so they are renamed with defines
    (``-Dsgemm_=scipy_sgemm_``...): the declarations and calls then refer to the wheel's symbols.
    ``sofie_bench`` also renames any other ``extern "C"`` routine found in the header
    (``symbol_prefix``), and the timing program calls ``scipy_openblas_set_num_threads(1)``, on top
    of ``OPENBLAS_NUM_THREADS=1`` in its environment.
    """
    try:
        import scipy_openblas32 as sob
    except ImportError as exc:
        raise RuntimeError("the scipy-openblas32 package is not installed (pip install scipy-openblas32)") from exc
    prefix = "scipy_"
    lib_dir = sob.get_lib_dir()
    return {
        "include_dirs": [sob.get_include_dir()],
        "library_dirs": [lib_dir],
        "libraries": [sob.get_library()],
        "extra_defines": [f"{s}={prefix}{s}" for s in SOFIE_BLAS_ROUTINES]
        + [
            f"SOFIE_BENCH_BLAS_SET_NUM_THREADS={prefix}openblas_set_num_threads",
            f"SOFIE_BENCH_BLAS_GET_NUM_THREADS={prefix}openblas_get_num_threads",
        ],
        "symbol_prefix": prefix,
        "env": {"OPENBLAS_NUM_THREADS": "1"},
        "name": f"scipy-openblas32 {getattr(sob, '__version__', '')}".strip(),
    }


# --------------------------------------------------------------------------------------------------
# self-check
# --------------------------------------------------------------------------------------------------


def _test_models() -> dict[str, tuple[Any, tuple[int, ...]]]:
    """Small torch models to check the harness with: name -> (module, per-sample input shape)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return {
        "mlp": (
            nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1), nn.Sigmoid()),
            (16,),
        ),
        "cnn2d": (
            nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 7 * 7, 10)),
            (1, 16, 16),
        ),
        "cnn1d": (
            nn.Sequential(nn.Conv1d(2, 8, 5), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(8 * 30, 4)),
            (2, 64),
        ),
        "cnn3d": (
            nn.Sequential(nn.Conv3d(1, 4, 3), nn.ReLU(), nn.MaxPool3d(2), nn.Flatten(), nn.Linear(4 * 3 * 3 * 3, 2)),
            (1, 8, 8, 8),
        ),
        "vae_decoder": (
            nn.Sequential(
                nn.Linear(14, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 6480), nn.Sigmoid()
            ),
            (14,),
        ),
    }


def _export(module: Any, shape: tuple[int, ...], path: Path) -> None:
    """Export a torch module to ONNX with a dynamic batch dimension (TorchScript exporter)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.zeros(2, *shape),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
            opset_version=17,
            dynamo=False,
        )


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import tempfile

    import numpy as np

    parser = argparse.ArgumentParser(description="Check the SOFIE anchor against onnxruntime and time it.")
    parser.add_argument("--models", nargs="*", default=None, help="subset of the test models")
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 64, 1024])
    parser.add_argument("--modes", nargs="*", default=["fixed"], choices=["fixed", "dynamic"])
    parser.add_argument(
        "--calls",
        nargs="*",
        default=["infer"],
        choices=["infer", "doInfer"],
        help="time Session::infer and/or doInfer with reused output buffers",
    )
    parser.add_argument("--cxxflags", default="-O3 -march=native -std=c++17")
    parser.add_argument("--workdir", default=None, help="where to write the models and code (default: a temp dir)")
    parser.add_argument("--time-budget-s", type=float, default=1.0, help="approximate timed seconds per case")
    args = parser.parse_args(argv)

    if not sofie_available():
        print("SOFIE is not available (package sofie or a C++ compiler missing)")
        return 1
    import onnxruntime as ort

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sofie_anchor_"))
    workdir.mkdir(parents=True, exist_ok=True)
    blas = openblas_from_pip()
    models = _test_models()
    names = args.models or list(models)
    rows: list[tuple[str, ...]] = []
    failures = 0
    for name in names:
        module, shape = models[name]
        onnx_path = workdir / f"{name}.onnx"
        _export(module, shape, onnx_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        for mode, call in [(m, c) for m in args.modes for c in args.calls]:
            for batch in args.batches:
                x = bench_inputs([(batch, *shape)])[0]
                ref = sess.run(None, {sess.get_inputs()[0].name: x})[0].ravel()
                # a rough estimate of the cost of one call (onnxruntime's), to choose n_iter
                costs = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    sess.run(None, {sess.get_inputs()[0].name: x})
                    costs.append(time.perf_counter() - t0)
                est = max(sorted(costs)[2], 1e-6)
                n_iter = int(min(5000, max(20, args.time_budget_s / est)))
                try:
                    r = sofie_bench(
                        str(onnx_path),
                        batch,
                        [shape],
                        n_iter,
                        args.cxxflags.split(),
                        blas,
                        str(workdir),
                        batch_mode=mode,
                        reuse_outputs=call == "doInfer",
                    )
                except RuntimeError as exc:
                    failures += 1
                    msg = str(exc).splitlines()[0][:90]
                    rows.append((name, str(batch), mode, call, "FAIL", "-", "-", "-", "-", "-", msg))
                    continue
                out = np.asarray(r["outputs"], dtype=np.float64)
                err = float(np.max(np.abs(out - ref))) if out.shape == ref.shape else float("inf")
                ok = out.shape == ref.shape and np.allclose(out, ref, rtol=1e-4, atol=1e-5)
                failures += not ok
                rows.append(
                    (
                        name,
                        str(batch),
                        mode,
                        call,
                        "ok" if ok else "MISMATCH",
                        f"{r['median_us']:.2f}",
                        f"{r['min_us']:.2f}",
                        str(r["peak_rss_kb"]),
                        f"{r['compile_s']:.1f}",
                        f"{err:.1e}",
                        f"n_iter={n_iter} blas_threads={r['blas_threads']}",
                    )
                )
    head = ("model", "batch", "mode", "call", "check", "median_us", "min_us", "rss_kb", "compile_s", "max_err", "note")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)] if rows else []
    for row in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"\nBLAS: {blas['name']}; work dir: {workdir}")

    # SOFIE must refuse a model with an operator it does not support, with its message.
    try:
        sofie_generate(str(_unsupported_model(workdir / "unsupported_hardmax.onnx")), str(workdir / "unsupported"))
        print("unsupported operator: SOFIE did NOT raise (unexpected)")
        failures += 1
    except RuntimeError as exc:
        print(f"unsupported operator, as expected: {str(exc).splitlines()[0]}")
    return 1 if failures else 0


def _unsupported_model(path: Path) -> Path:
    """A tiny ONNX model with an operator (Hardmax) that SOFIE does not support."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    graph = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"])], "unsupported", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


if __name__ == "__main__":
    sys.exit(_main())
