"""CUDA code generation: the lowered graph as ``<name>.hpp`` (the class), ``<name>.cu`` (its kernels), a C bridge.

The operator code comes from the same registry as the CPU code: each op's ``cuda`` fact (ops/__init__.py) names
its CUDA code, most often its CPU ``emit`` itself, whose independent loops :class:`CudaEmitter` prints as kernels
(``cg.par_for`` -> ``ml4ep_cu::launch(stream, n, [=] ML4EP_HD (int64_t i) {...})``). The declarations (dimensions,
workspace, weights, tensors) are the CPU code's (:func:`ml4ep.infer.codegen.infer_code`), pointing into device
memory. The generated ``infer`` takes device pointers, the dimensions and a stream; it checks sizes on the host,
then :class:`ml4ep_cu::Session` (cpp/cuda.hpp) runs ``run`` directly or replays it from a CUDA graph.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .. import dims as D
from .. import ops as O
from ..codegen import Emitter, InferCode, _derived_decl, _indent, example_inputs, ident, infer_code, prelude, reindent
from ..graph import Graph
from ..ops.common import CTYPES, ctype
from ..passes.memory import Plan
from ..._native.names import printf_text, string, text

# tensor types the CUDA code handles: all of the CPU code's (the 16-bit and smaller floats and the 4- and 2-bit integers
# are storage types whose conversions, cpp/prelude.hpp and cpp/lowp.hpp, run in kernels too; arithmetic is in float)
DTYPES = set(CTYPES)


class CudaEmitter(Emitter):
    """The emitter of CUDA code: ``par_for`` prints a kernel, ``copy`` a device copy; tensors are device memory."""

    device = "cuda"
    arena = "m.session.arena"
    weights_data = "m.weights->data()"
    stream = "stream"
    blas = "m.session.blas.on(stream)"  # the cuBLAS handle bound to the call's stream

    def emitter(self, opdef: O.OpDef):
        return O.cuda_emitter(opdef)

    def par_for(self, var: str, extent, body: str) -> str:
        ext = extent if isinstance(extent, str) else D.cpp(extent)
        param = f"int64_t {var}" if re.search(rf"\b{re.escape(var)}\b", body) else "int64_t"  # (unused: unnamed)
        if "\n" not in body.strip():
            return f"ml4ep_cu::launch(stream, {ext}, [=] ML4EP_HD ({param}) {{ {body.strip()} }});\n"
        return f"ml4ep_cu::launch(stream, {ext}, [=] ML4EP_HD ({param}) {{\n{_indent(body, '  ')}}});\n"

    def copy(self, dst: str, src: str, nbytes: str) -> str:
        return f"ml4ep_cu::copy({dst}, {src}, {nbytes}, stream);\n"

    def kernel_error(self, message: str) -> str:
        if message not in self.errors:
            self.errors.append(message)
        return f"ml4ep_cu::report(err_, {self.errors.index(message) + 1});"

    def __init__(self, g: Graph, plan: Plan):
        super().__init__(g, plan)
        self.errors: list[str] = []  # the messages of kernel_error, by code - 1


def problems(g: Graph) -> list[tuple[str, str, str]]:
    """``(node, op, reason)`` for everything in the lowered graph ``g`` that the CUDA code refuses."""
    out = []
    if g.derived.runtime:
        out.append(("(graph)", "-", "outputs whose size depends on the data (dimensions "
                    f"{', '.join(g.derived.runtime)}) are not supported on CUDA"))
    for name in dict.fromkeys([*g.inputs, *g.outputs]):
        dt = np.dtype(g.t(name).dtype)
        if dt not in DTYPES:
            out.append(("(graph)", "-", f"tensor '{name}' has dtype {dt}, not supported on CUDA"))
    for node in g.nodes:
        opdef = O.get(node.op_type)
        if opdef is None or O.cuda_emitter(opdef) is None:
            out.append((node.name, node.op_type, "no CUDA kernel for this operator"))
            continue
        why = opdef.cuda_check(node, g) if opdef.cuda_check else None
        if why:
            out.append((node.name, node.op_type, why))
            continue
        for t in [*node.inputs, *node.outputs]:
            if t and t in g.tensors and np.dtype(g.t(t).dtype) not in DTYPES:
                out.append((node.name, node.op_type, f"tensor '{t}' has dtype {g.t(t).dtype}, not supported on CUDA"))
                break
    return out


@dataclass
class GeneratedCuda:
    name: str
    header: str  # <name>.hpp
    source: str  # <name>.cu
    bridge: str  # bridge.cu: the extern "C" functions the Python runtime calls
    example: str  # example.cu
    cmake: str
    weights: bytes
    meta: dict


def _runtime() -> str:
    return resources.files("ml4ep.infer").joinpath("cpp").joinpath("cuda.hpp").read_text()


def generate(g: Graph, name: str, plan: Plan, module: str, archs: tuple[str, ...], host: bool) -> GeneratedCuda:
    em = CudaEmitter(g, plan)
    code = infer_code(g, name, plan, em)
    syms = g.symbols
    build_id = hashlib.sha256(f"{module}:{code.model_id}".encode()).hexdigest()[:16].upper()
    guard = f"ML4EP_CUDA_MODEL_{name.upper()}_{build_id}"
    io_doc = (f"// Inputs:  {text('; '.join(f'{i} {g.t(i).dtype} {D.fmt_shape(g.t(i).shape)}' for i in g.inputs))}\n"
              f"// Outputs: {text('; '.join(f'{o} {g.t(o).dtype} {D.fmt_shape(g.t(o).shape)}' for o in g.outputs))}\n")
    usage = f"{name}::Model m(\"{name}.bin\"); m.infer({', '.join(code.arg_names + ['stream'])});"
    # inputs or outputs of a low-precision type (ml4ep_rt::half, bfloat16, ...): the header declares the types
    io_types = {ctype(g.t(t).dtype) for t in [*g.inputs, *g.outputs]}
    lowp_types = ("// the low-precision storage types of the inputs and outputs\n" + prelude() + "\n"
                  if any(t.startswith("ml4ep_rt::") for t in io_types) else "")
    header = f"""// Generated by ml4ep from '{text(g.source)}': CUDA inference code for model '{name}'. Do not edit.
// Usage: {usage}
//   with device pointers (device memory of the GPU that was current when the Model was made), the dimensions, and
//   the stream the kernels go to (in order after the work already there); one Model per thread (a copy shares the
//   weights). Built by g++ instead of nvcc (device="cuda-host"), the same code runs on the host with host pointers.
{io_doc}#ifndef {guard}_HPP
#define {guard}_HPP
#include <cstdint>
#include <memory>
#include <string>
{lowp_types}
struct CUstream_st;  // cudaStream_t

namespace {name} {{

class Model {{
 public:
  static constexpr uint64_t kModelId = {code.model_id}ULL;
  static constexpr uint64_t kWeightBytes = {len(code.weights) - 64}ULL;
  // reads <name>.bin and copies the weights to the current GPU
  explicit Model(const std::string& weights_path);
  // a copy shares the weights and has a workspace, cuBLAS handle and CUDA graphs of its own: one Model per thread
  Model(const Model& other);
  Model& operator=(const Model&) = delete;
  ~Model();

  void infer({code.params + ", " if code.params else ""}CUstream_st* stream = nullptr);
  // bad data a kernel found (an index out of range) as std::out_of_range: infer raises it at its next call (at the end
  // of the same call in the host build); after synchronising with `stream`, this raises it at once
  void raise_kernel_errors(CUstream_st* stream = nullptr);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
}};

}}  // namespace {name}
#endif  // {guard}_HPP
"""
    source = _source(g, name, code, guard, em)
    bridge = _bridge(g, name, module)
    meta = {
        "name": name,
        "source": g.source,
        "device": "cuda-host" if host else "cuda",
        "cuda_archs": list(archs),
        "symbols": list(syms),
        "derived": g.derived.to_json(),
        "inputs": [{"name": i, "dtype": str(g.t(i).dtype), "shape": [D.to_json(d) for d in g.t(i).shape]}
                   for i in g.inputs],
        "outputs": [{"name": on, "dtype": str(g.t(o).dtype), "shape": [D.to_json(d) for d in g.t(o).shape]}
                    for o, on in zip(g.outputs, g.output_names or g.outputs)],
    }
    return GeneratedCuda(name, header, source, bridge, _example(g, name), _cmake(name, archs), code.weights, meta)


def _nbytes(g: Graph, t: str) -> str:
    return f"sizeof({ctype(g.t(t).dtype)}) * size_t({D.cpp(g.t(t).numel)})"


def _source(g: Graph, name: str, code: InferCode, guard: str, em: CudaEmitter) -> str:
    syms = g.symbols
    params = code.params
    # run(): what infer_code declared, less the checks (infer makes them before anything is launched)
    decl = list(code.decl)
    neg = [d for d in decl[:code.checks_at]]
    run_decl = decl[code.checks_at:]
    derived = ["  [[maybe_unused]]" + _derived_decl(dn, poly)[1:] for dn, poly in g.derived.defs.items()]
    if em.errors:  # the word kernels report bad data into (Model::infer raises it)
        run_decl.insert(0, "  int* const err_ = m.session.status.device();  // errors found by the kernels\n")
        tail = f"  m.session.status.after(stream);\n  ml4ep_cu::launched(\"{name}\");\n"
    else:
        tail = f"  ml4ep_cu::launched(\"{name}\");\n"
    run_body = reindent("".join(run_decl) + "\n" + "".join(code.body) + tail, 1)
    cast_args = []
    for k, i in enumerate(g.inputs):
        cast_args.append(f"static_cast<const {ctype(g.t(i).dtype)}*>(i_[{k}])")
    for k, o in enumerate(g.outputs):
        cast_args.append(f"static_cast<{ctype(g.t(o).dtype)}*>(o_[{k}])")
    cast_args += [D.cpp_name(s) for s in syms]
    key = [D.cpp_name(s) for s in syms] or ["0"]
    ins = [ident(i, "in_") for i in g.inputs]
    outs = [ident(o, "out_") for o in g.outputs]
    in_bytes = [_nbytes(g, i) for i in g.inputs]
    out_bytes = [_nbytes(g, o) for o in g.outputs]

    def arr(ct: str, name_: str, items: list[str]) -> str:
        return f"  {ct} {name_}[] = {{{', '.join(items) or 'nullptr'}}};\n"

    infer_body = (
        "  raise_kernel_errors(stream);  // found by an earlier call's kernels\n"
        + "".join(neg) + _indent(code.checks, "  ") + "".join(derived)
        + f"  const int64_t key_[] = {{{', '.join(key)}}};\n"
        + arr("const void* const", "ins_", ins) + arr("const size_t", "in_bytes_", in_bytes or ["0"])
        + arr("void* const", "outs_", outs) + arr("const size_t", "out_bytes_", out_bytes or ["0"])
        + "  Impl& m = *impl_;\n"
        + "  ml4ep_cu::DeviceGuard device_(m.device);\n"
        + f"  m.session.infer(key_, {len(key)}, ins_, in_bytes_, {len(ins)}, outs_, out_bytes_, {len(outs)}, stream,\n"
        + "                  [&](const void* const* i_, void* const* o_, ml4ep_cu::stream_t s_) {\n"
        + f"                    detail::run(m, {', '.join(cast_args + ['s_'])});\n"
        + "                  });\n"
        + "#if !ML4EP_ON_GPU\n  raise_kernel_errors(stream);  // the host build: this call's\n#endif\n"
    )
    messages = "".join(f"    {string(f'{name}: {msg}')},\n" for msg in em.errors)
    raise_fn = ("void Model::raise_kernel_errors(CUstream_st* stream) {\n"
                + (f"  static const char* const kMessages[] = {{\n{messages}  }};\n"
                   "  const int code = impl_->session.status.take(stream);\n"
                   "  if (code > 0) throw std::out_of_range(kMessages[code - 1]);\n" if em.errors else
                   "  (void)stream;  // no kernel of this model reports errors\n")
                + "}\n")
    return f"""// Generated by ml4ep from '{text(g.source)}': the CUDA code of model '{name}' (see {name}.hpp). Do not edit.
// nvcc builds it for the GPU (flags: -std=c++17 --expt-relaxed-constexpr --extended-lambda); g++ -x c++ builds the
// same code for the host, where each kernel is a loop over its index and cuBLAS a column-major stand-in.
#ifndef {guard}_CU
#define {guard}_CU
#ifndef ML4EP_NO_BLAS
#define ML4EP_NO_BLAS  // products go to cuBLAS (or its host stand-in), not to a CBLAS
#endif
{prelude()}
{_runtime()}
#include "{name}.hpp"

namespace {name} {{

struct Model::Impl {{
  std::shared_ptr<const ml4ep_cu::DeviceWeights> weights;
  ml4ep_cu::Session session;
  int device = 0;
}};

namespace detail {{
// the kernels of one call, in order on `stream` (captured once in a CUDA graph per set of dimensions)
inline void run([[maybe_unused]] Model::Impl& m, {params + ", " if params else ""}[[maybe_unused]] ml4ep_cu::stream_t stream) {{
{run_body}}}
}}  // namespace detail

Model::Model(const std::string& weights_path) : impl_(new Impl) {{
  impl_->device = ml4ep_cu::current_device();
  impl_->weights = std::make_shared<const ml4ep_cu::DeviceWeights>(weights_path, kModelId, kWeightBytes, "{name}");
}}

Model::Model(const Model& other) : impl_(new Impl) {{
  impl_->device = other.impl_->device;
  impl_->weights = other.impl_->weights;
}}

Model::~Model() = default;

void Model::infer({params + ", " if params else ""}CUstream_st* stream) {{
{reindent(infer_body, 1)}}}

{raise_fn}
}}  // namespace {name}
#endif  // {guard}_CU
"""


def _bridge(g: Graph, name: str, module: str) -> str:
    """``extern "C"`` functions over the model for the Python runtime (ctypes): create, clone, destroy, run (device
    pointers on a stream), run_host (host arrays, staged through device buffers)."""
    n_in, n_out = len(g.inputs), len(g.outputs)
    args = []
    for k, i in enumerate(g.inputs):
        args.append(f"static_cast<const {ctype(g.t(i).dtype)}*>(p[{k}])")
    for k, o in enumerate(g.outputs):
        args.append(f"static_cast<{ctype(g.t(o).dtype)}*>(p[{n_in + k}])")
    args += [f"dims[{k}]" for k in range(len(g.symbols))]
    call = ", ".join(args)
    sep = ", " if call else ""
    return f"""// C bridge of the CUDA model '{name}' (loaded with ctypes by ml4ep.infer.cuda.runtime)
#include <cstdio>

#include "{name}.cu"

#define ML4EP_EXPORT extern "C" __attribute__((visibility("default")))

namespace {module}_bridge {{
constexpr int kInputs = {n_in}, kOutputs = {n_out};
struct Handle {{
  explicit Handle(const char* path) : model(path) {{}}
  Handle(const Handle& other) : model(other.model) {{}}
  {name}::Model model;
  ml4ep_cu::Staging staging;  // device buffers for calls with host arrays
}};
int fail(const std::exception& e, char* err, int n) {{
  std::snprintf(err, size_t(n), "%s", e.what());
  return 1;
}}
}}  // namespace {module}_bridge

ML4EP_EXPORT void* {module}_create(const char* weights, char* err, int n) {{
  try {{
    return new {module}_bridge::Handle(weights);
  }} catch (const std::exception& e) {{
    {module}_bridge::fail(e, err, n);
    return nullptr;
  }}
}}

ML4EP_EXPORT void* {module}_clone(void* h, char* err, int n) {{
  try {{
    return new {module}_bridge::Handle(*static_cast<{module}_bridge::Handle*>(h));
  }} catch (const std::exception& e) {{
    {module}_bridge::fail(e, err, n);
    return nullptr;
  }}
}}

ML4EP_EXPORT void {module}_destroy(void* h) {{ delete static_cast<{module}_bridge::Handle*>(h); }}

// p: the inputs then the outputs, device pointers; the kernels go to `stream` (nothing waits for them)
ML4EP_EXPORT int {module}_run(void* h, void* const* p, const int64_t* dims, void* stream, char* err, int n) {{
  (void)dims;
  try {{
    static_cast<{module}_bridge::Handle*>(h)->model.infer({call}{sep}static_cast<CUstream_st*>(stream));
    return 0;
  }} catch (const std::exception& e) {{
    return {module}_bridge::fail(e, err, n);
  }}
}}

// host arrays (p, with their sizes in bytes): copied to the device, run, copied back; returns when done
ML4EP_EXPORT int {module}_run_host(void* h, void* const* host, const int64_t* bytes, const int64_t* dims, char* err,
                                   int n) {{
  (void)dims;
  try {{
    auto* hd = static_cast<{module}_bridge::Handle*>(h);
    void* p[{module}_bridge::kInputs + {module}_bridge::kOutputs + 1];
#if ML4EP_ON_GPU
    for (int k = 0; k < {module}_bridge::kInputs + {module}_bridge::kOutputs; ++k)
      p[k] = hd->staging.buffer(size_t(k), size_t(bytes[k]));
    for (int k = 0; k < {module}_bridge::kInputs; ++k) ml4ep_cu::to_device(p[k], host[k], size_t(bytes[k]), nullptr);
#else
    for (int k = 0; k < {module}_bridge::kInputs + {module}_bridge::kOutputs; ++k) p[k] = host[k];
    (void)bytes;
#endif
    hd->model.infer({call}{sep}nullptr);
    for (int k = {module}_bridge::kInputs; k < {module}_bridge::kInputs + {module}_bridge::kOutputs; ++k)
      ml4ep_cu::to_host(host[k], p[k], size_t(bytes[k]), nullptr);
    ml4ep_cu::synchronize(nullptr);
    hd->model.raise_kernel_errors(nullptr);
    return 0;
  }} catch (const std::exception& e) {{
    return {module}_bridge::fail(e, err, n);
  }}
}}
"""


def _example(g: Graph, name: str) -> str:
    """A standalone CUDA program: inputs from a raw file (or made up), copied to the GPU, run, outputs summed."""
    lines = example_inputs(g, name)
    lines.append("  std::vector<void*> device;  // the GPU copies of the inputs and outputs")
    for t in [*g.inputs, *g.outputs]:
        v = ident(t, "in_" if t in g.inputs else "out_")
        lines.append("  device.push_back(nullptr);")
        lines.append(f"  check(cudaMalloc(&device.back(), {v}.size() * sizeof({v}[0]) + 1), \"cudaMalloc\");")
        if t in g.inputs:
            lines.append(f"  check(cudaMemcpy(device.back(), {v}.data(), {v}.size() * sizeof({v}[0]), "
                         "cudaMemcpyHostToDevice), \"cudaMemcpy\");")
    args = [f"static_cast<const {ctype(g.t(i).dtype)}*>(device[{k}])" for k, i in enumerate(g.inputs)]
    args += [f"static_cast<{ctype(g.t(o).dtype)}*>(device[{len(g.inputs) + k}])" for k, o in enumerate(g.outputs)]
    args += [D.cpp_name(s) for s in g.symbols]
    lines.append(f"  model.infer({', '.join(args + ['nullptr'])});")
    for k, o in enumerate(g.outputs):
        v = ident(o, "out_")
        lines.append(f"  check(cudaMemcpy({v}.data(), device[{len(g.inputs) + k}], {v}.size() * sizeof({v}[0]), "
                     "cudaMemcpyDeviceToHost), \"cudaMemcpy\");")
        lines.append(f"  double sum_{v} = 0; for (auto x : {v}) sum_{v} += double(x);")
        lines.append(f"  std::printf(\"{printf_text(o)}: %zu values, sum %.6g\\n\", {v}.size(), sum_{v});")
    lines.append("  for (void* p : device) cudaFree(p);")
    return f"""// Example use of the generated CUDA model '{name}': ./example [{name}.bin] [inputs.raw|-] [dims...]
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "{name}.hpp"

static void check(cudaError_t e, const char* what) {{
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}}

int main(int argc, char** argv) {{
  try {{
{_indent(chr(10).join(lines), "    ")}
  }} catch (const std::exception& e) {{
    std::fprintf(stderr, "error: %s\\n", e.what());
    return 1;
  }}
  return 0;
}}
"""


def _cmake(name: str, archs: tuple[str, ...]) -> str:
    arch_list = ";".join([f"{a}-real" for a in archs[:-1]] + [archs[-1]])
    return f"""# Builds the example program of the ml4ep CUDA model '{name}' ({name}.cu holds the model's code).
cmake_minimum_required(VERSION 3.18)
project({name}_example LANGUAGES CXX CUDA)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
# the GPU architectures ml4ep built for (the last one also as PTX, for later GPUs)
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "{arch_list}")
endif()
add_executable({name}_example example.cu {name}.cu)
target_compile_options({name}_example PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr --extended-lambda>)
target_compile_definitions({name}_example PRIVATE ML4EP_NO_BLAS)
target_link_libraries({name}_example PRIVATE ${{CMAKE_DL_LIBS}})
"""
