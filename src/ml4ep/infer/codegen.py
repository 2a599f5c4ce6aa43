"""C++ code generation: the graph, after its passes, printed as one header and a weights blob.

The header holds a ``<name>::Model`` class following the contract in docs/architecture.md: its constructor
reads ``<name>.bin``; ``infer`` takes one typed pointer per ONNX input, then per output, then the values of
the symbolic dimensions, and allocates nothing once its workspace has grown to the dimensions seen.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from importlib import resources

import numpy as np

from . import dims as D
from . import limits
from . import ops as O
from .graph import Graph, Node
from .._native.names import identifier, printf_text, text
from .ops.common import ctype
from .passes.memory import ALIGN, Plan
from .passes import batching, memory

def ident(name: str, prefix: str = "") -> str:
    """The C++ variable of a tensor (``prefix`` ``v_``, ``in_``, ``out_``): :func:`names.identifier`."""
    return identifier(name, prefix)


def prelude() -> str:
    """The runtime support every header carries: cpp/prelude.hpp, then the low-precision types of cpp/lowp.hpp."""
    cpp = resources.files("ml4ep.infer").joinpath("cpp")
    return cpp.joinpath("prelude.hpp").read_text() + "\n" + cpp.joinpath("lowp.hpp").read_text()


@dataclass
class Generated:
    name: str
    header: str
    bridge: str
    weights: bytes
    meta: dict
    example: str = ""
    cmake: str = ""
    model_id: int = 0


class Emitter:
    """What an operator's ``emit`` sees: pointers, shapes and constants of tensors as C++ expressions."""

    def __init__(self, g: Graph, plan: Plan):
        self.g = g
        self.plan = plan
        self.blobs: list[tuple[int, bytes]] = []  # (offset, bytes)
        self.size = 0
        self.const_ptr: dict[str, str] = {}
        self.node: Node | None = None

    # tensors --------------------------------------------------------------------------------------
    def ptr(self, name: str) -> str:
        v = self.g.const(name)
        if v is not None:
            if name not in self.const_ptr:
                if v.dtype == object:
                    raise D.SymbolicError(f"symbolic constant '{name}' used as run-time data")
                self.const_ptr[name] = self.weight(v, name)
            return self.const_ptr[name]
        return ident(name, "v_")

    def shape(self, name: str) -> list:
        return list(self.g.t(name).shape)

    def cshape(self, name: str) -> list[str]:
        return [D.cpp(d) for d in self.shape(name)]

    def numel(self, name: str) -> str:
        return D.cpp(self.g.t(name).numel)

    def ctype(self, name: str) -> str:
        return ctype(self.g.t(name).dtype)

    def dtype(self, name: str) -> np.dtype:
        return self.g.t(name).dtype

    def const(self, name: str) -> np.ndarray | None:
        return self.g.const(name) if name else None

    def same_storage(self, a: str, b: str) -> bool:
        """Whether tensors a and b share their storage (a view and its source)."""
        sa, sb = self.plan.storage_of.get(a), self.plan.storage_of.get(b)
        return sa is not None and sa is sb

    # weights and scratch --------------------------------------------------------------------------
    def weight(self, array: np.ndarray, hint: str = "") -> str:
        """Store a constant array in the weights file; returns a typed C++ pointer expression."""
        arr = np.ascontiguousarray(array)
        limits.check_weights(self.size + arr.nbytes, hint, self.node)
        data = arr.tobytes()
        off = self.size
        self.blobs.append((off, data))
        self.size = (off + len(data) + ALIGN - 1) // ALIGN * ALIGN
        ct = ctype(arr.dtype)
        return f"reinterpret_cast<const {ct}*>(w_ + {off})"

    def emit_nodes(self, nodes: list[Node]) -> str:
        """The code of a list of nodes (a control-flow body), each in its own block."""
        saved = self.node
        out = []
        for n in nodes:
            opdef = O.get(n.op_type)
            assert opdef is not None and opdef.emit is not None, n.op_type
            self.node = n
            code = opdef.emit(n, self)
            out.append(f"// {n.op_type} '{text(n.name)}'\n")
            if code.strip():
                out.append("{\n" + _indent(code, "  ") + "}\n")
        self.node = saved
        return "".join(out)

    def workspace(self, k: int = 0, ct: str = "float") -> str:
        assert self.node is not None
        s = self.plan.workspaces[(self.node.name, k)]
        return f"reinterpret_cast<{ct}*>({_arena_addr(s)})"


def _group_var(syms: tuple) -> str:
    if not syms:
        return "g_static"
    return "g_" + "_".join(f"{D.cpp_name(s)}{p if p > 1 else ''}" for s, p in syms)


def _arena_addr(s: memory.Storage) -> str:
    mono = D.cpp(D.Dim.make(s.offset, s.group)) if s.offset else "0"
    return f"(ws + {_group_var(s.group)} + {mono})"


def generate(g: Graph, name: str, plan: Plan, module: str | None = None, march: str = "native") -> Generated:
    em = Emitter(g, plan)
    body: list[str] = []
    rendering, rendered = D.start_rendering()  # every dimension expression of the code: checked at run time
    for node in g.nodes:
        opdef = O.get(node.op_type)
        assert opdef is not None and opdef.emit is not None, node.op_type
        em.node = node
        origin = text(", ".join(node.origin) if node.origin else node.name)
        fused = "".join(f" + {op}" for op, _ in node.fused)
        outs = text(", ".join(f"{o} {D.fmt_shape(g.t(o).shape)}" for o in node.outputs if o))
        code = opdef.emit(node, em)
        body.append(f"  // {node.op_type}{fused} '{origin}' -> {outs}\n")
        if code.strip():
            body.append("  {\n" + _indent(code, "    ") + "  }\n")
    D.stop_rendering(rendering)
    checks = limits.cpp_checks(g, plan, name, rendered)

    syms = g.symbols
    in_params = [f"const {ctype(g.t(i).dtype)}* {ident(i, 'in_')}" for i in g.inputs]
    out_params = [f"{ctype(g.t(o).dtype)}* {ident(o, 'out_')}" for o in g.outputs]
    dim_params = [f"int64_t {D.cpp_name(s)}" for s in syms]
    params = ", ".join(in_params + out_params + dim_params)

    # pointer declarations
    decl: list[str] = []
    for s in syms:
        decl.append(f"  if ({D.cpp_name(s)} < 0) throw std::invalid_argument(\"{name}: dimension '{text(s)}' is negative\");\n")
    checks_at = len(decl)  # the size checks go here, or into the chunked infer that calls this block
    for dname, poly in g.derived.defs.items():  # symbols standing for sums of monomials (L + 1, ...)
        decl.append(_derived_decl(dname, poly))
    runtime = list(g.derived.runtime)
    for rname in runtime:  # data-dependent dimensions: set by the node that finds them (NonZero, ...)
        decl.append(f"  int64_t {D.cpp_name(rname)} = 0;\n")
    # group sizes and offsets
    gkeys = sorted(plan.groups, key=lambda k: (len(k), k))
    acc = "0"
    for key in gkeys:
        decl.append(f"  const size_t {_group_var(key)} = {acc};\n")
        size = D.cpp(D.Dim.make(plan.groups[key], key)) if plan.groups[key] else "0"
        acc = f"{_group_var(key)} + size_t({size})"
    decl.append(f"  unsigned char* ws = arena_.reserve({acc});\n" if gkeys else "  unsigned char* ws = nullptr;\n")
    decl.append("  const unsigned char* w_ = weights_->data();\n  (void)ws; (void)w_;\n")
    for tname, s in sorted(plan.storage_of.items()):
        ct = ctype(g.t(tname).dtype)
        if s.kind == "input":
            expr = f"const_cast<{ct}*>(reinterpret_cast<const {ct}*>({ident(s.name, 'in_')}))"
        elif s.kind == "output":
            expr = f"reinterpret_cast<{ct}*>({ident(s.name, 'out_')})"
        else:
            expr = f"reinterpret_cast<{ct}*>{_arena_addr(s)}"
        decl.append(f"  {ct}* {ident(tname, 'v_')} = {expr};\n  (void){ident(tname, 'v_')};\n")

    for k, rname in enumerate(runtime):
        body.append(f"  runtime_dims_[{k}] = {D.cpp_name(rname)};\n")
    if runtime:
        rt_members = (f"  // data-dependent dimensions of the last call ({text(', '.join(runtime))}): outputs are allocated for\n"
                      f"  // their upper bounds and filled for the actual values, in row-major order\n"
                      f"  static constexpr int kRuntimeDims = {len(runtime)};\n"
                      f"  const int64_t* runtime_dims() const {{ return runtime_dims_; }}\n")
        rt_private = f"  int64_t runtime_dims_[{len(runtime)}] = {{}};\n"
    else:
        rt_members = "  static constexpr int kRuntimeDims = 0;\n"
        rt_private = ""
    payload = bytearray(em.size)
    for off, data in em.blobs:
        payload[off:off + len(data)] = data
    model_id = int.from_bytes(hashlib.sha256(bytes(payload) + name.encode()).digest()[:8], "little")
    weights = b"ML4EPW01" + struct.pack("<QQ", model_id, len(payload)) + bytes(40) + bytes(payload)

    arg_names = [ident(i, "in_") for i in g.inputs] + [ident(o, "out_") for o in g.outputs] + \
        [D.cpp_name(s) for s in syms]
    layout = batching.batch_layout(g)
    chunked, block, private_block = "", "infer", ""
    if layout is not None:
        block = "infer_block_"
        private_block = f"  void infer_block_({params});\n"
        chunked = _chunked_infer(g, plan, layout, params, arg_names, checks)
    else:
        decl.insert(checks_at, _indent(checks, "  "))

    # the build's own guard: two models of the same name in one translation unit (compile_many) never hide one
    # another's header (they then fail to build together instead, and are built apart)
    build_id = hashlib.sha256(f"{module}:{model_id}".encode()).hexdigest()[:16].upper()
    guard = f"ML4EP_MODEL_{name.upper()}_{build_id}_HPP"
    header = f"""// Generated by ml4ep from '{text(g.source)}': inference code for model '{name}'. Do not edit.
// Usage: {name}::Model m("{name}.bin"); m.infer({", ".join(arg_names)});
// Inputs:  {text("; ".join(f"{i} {g.t(i).dtype} {D.fmt_shape(g.t(i).shape)}" for i in g.inputs))}
// Outputs: {text("; ".join(f"{o} {g.t(o).dtype} {D.fmt_shape(g.t(o).shape)}" for o in g.outputs))}
#ifndef {guard}
#define {guard}
{prelude()}
namespace {name} {{

class Model {{
 public:
  static constexpr uint64_t kModelId = {model_id}ULL;
  static constexpr uint64_t kWeightBytes = {len(payload)}ULL;
  explicit Model(const std::string& weights_path)
      : weights_(std::make_shared<ml4ep_rt::Weights>(weights_path, kModelId, kWeightBytes, "{name}")) {{}}
  // a copy shares the weights and has a workspace of its own: one Model per thread
  Model(const Model& other) : weights_(other.weights_) {{}}
  Model& operator=(const Model&) = delete;

  void infer({params});
{rt_members}
 private:
{private_block}
  std::shared_ptr<const ml4ep_rt::Weights> weights_;
  ml4ep_rt::Arena arena_;
{rt_private}}};

{chunked}inline void Model::{block}({params}) {{
{"".join(decl)}
{"".join(body)}}}

}}  // namespace {name}
#endif  // {guard}
"""
    bridge = _bridge(g, name, module or f"ml4ep_{name}")
    meta = {
        "name": name,
        "source": g.source,
        "symbols": list(syms),
        "batch_chunks": layout.symbol if layout is not None else None,
        "derived": g.derived.to_json(),
        "inputs": [
            {"name": i, "dtype": str(g.t(i).dtype), "shape": [D.to_json(d) for d in g.t(i).shape]} for i in g.inputs
        ],
        "outputs": [
            {"name": on, "dtype": str(g.t(o).dtype), "shape": [D.to_json(d) for d in g.t(o).shape]}
            for o, on in zip(g.outputs, g.output_names or g.outputs)
        ],
    }
    return Generated(name, header, bridge, weights, meta, _example(g, name), _cmake(name, march), model_id)


def _derived_decl(name: str, poly: dict) -> str:
    """The C++ declaration of a derived symbol from its polynomial in the input symbols."""
    terms = " + ".join(D.cpp(D.Dim.make(c, k)) if k else f"int64_t({c})" for k, c in poly.items())
    return f"  const int64_t {D.cpp_name(name)} = {terms};\n"


def _chunked_infer(g: Graph, plan: Plan, layout: "batching.BatchLayout", params: str, whole: list[str],
                   checks: str = "") -> str:
    """``infer`` of a batch-separable model: the batch in chunks of at most ML4EP_CHUNK_BYTES of workspace."""
    sym = layout.symbol
    n = D.cpp_name(sym)
    per = [D.cpp(D.Dim.make(c, tuple((s, p) for s, p in key if s != sym))) for key, c in plan.groups.items()
           if (sym, 1) in key and c]
    used = {s for key in plan.groups for s, _ in key if s != sym}
    derived = [_derived_decl(dn, poly) + f"  (void){D.cpp_name(dn)};\n"
               for dn, poly in g.derived.defs.items() if dn in used]
    args = []
    for i, batched in zip(g.inputs, layout.batched_inputs):
        v = ident(i, "in_")
        args.append(f"{v} + n0_ * {D.cpp(D.prod(g.t(i).shape[1:]))}" if batched else v)
    args += [f"{ident(o, 'out_')} + n0_ * {D.cpp(D.prod(g.t(o).shape[1:]))}" for o in g.outputs]
    args += ["nc_" if s == sym else D.cpp_name(s) for s in g.symbols]
    return f"""// batch-separable (each sample of the outputs depends on the same sample of the inputs only): the batch
// '{text(sym)}' runs in chunks whose workspace stays within ML4EP_CHUNK_BYTES, so intermediates stay in cache
inline void Model::infer({params}) {{
{_indent(checks, "  ")}{"".join(derived)}  const int64_t per_sample_ = {" + ".join(per) or "0"};  // workspace bytes per sample
  const int64_t chunk_ = std::max<int64_t>(1, int64_t(ML4EP_CHUNK_BYTES) / std::max<int64_t>(1, per_sample_));
  if ({n} <= chunk_) {{
    infer_block_({", ".join(whole)});
    return;
  }}
  for (int64_t n0_ = 0; n0_ < {n}; n0_ += chunk_) {{
    const int64_t nc_ = std::min(chunk_, {n} - n0_);
    infer_block_({", ".join(args)});
  }}
}}

"""


def _indent(code: str, pre: str) -> str:
    return "".join(pre + line if line.strip() else line for line in code.splitlines(True))


def _bridge(g: Graph, name: str, module: str) -> str:
    """A CPython extension module over the model: buffers in, no copies, the GIL released during infer."""
    n_in, n_out, n_dim = len(g.inputs), len(g.outputs), len(g.symbols)
    args = []
    for k, i in enumerate(g.inputs):
        args.append(f"static_cast<const {ctype(g.t(i).dtype)}*>(bufs[{k}].buf)")
    for k, o in enumerate(g.outputs):
        args.append(f"static_cast<{ctype(g.t(o).dtype)}*>(bufs[{n_in + k}].buf)")
    for k in range(n_dim):
        args.append(f"dims[{k}]")
    if g.derived.runtime:  # the data-dependent dimensions found by this call
        rt_return = (f"  PyObject* out = PyTuple_New({name}::Model::kRuntimeDims);\n"
                     f"  for (int k = 0; out && k < {name}::Model::kRuntimeDims; ++k)\n"
                     f"    PyTuple_SET_ITEM(out, k, PyLong_FromLongLong(m->runtime_dims()[k]));\n"
                     f"  return out;\n")
    else:
        rt_return = "  Py_RETURN_NONE;\n"
    return f"""// Python bridge of model '{name}' (a CPython extension module loaded by ml4ep.infer.runtime)
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "{name}.hpp"

// a named namespace (not an anonymous one): several bridges can share one translation unit (compile_many)
namespace {module}_bridge {{
constexpr Py_ssize_t kInputs = {n_in}, kOutputs = {n_out}, kDims = {n_dim};

void destroy(PyObject* capsule) {{
  delete static_cast<{name}::Model*>(PyCapsule_GetPointer(capsule, "ml4ep.Model"));
}}

PyObject* create(PyObject*, PyObject* arg) {{
  const char* path = PyUnicode_AsUTF8(arg);
  if (!path) return nullptr;
  try {{
    return PyCapsule_New(new {name}::Model(path), "ml4ep.Model", destroy);
  }} catch (const std::exception& e) {{
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }}
}}

PyObject* clone(PyObject*, PyObject* capsule) {{
  auto* m = static_cast<{name}::Model*>(PyCapsule_GetPointer(capsule, "ml4ep.Model"));
  if (!m) return nullptr;
  return PyCapsule_New(new {name}::Model(*m), "ml4ep.Model", destroy);
}}

// run(model, inputs..., outputs..., dims...): shapes and dtypes are checked by the Python caller
PyObject* run(PyObject*, PyObject* const* args, Py_ssize_t nargs) {{
  if (nargs != 1 + kInputs + kOutputs + kDims) {{
    PyErr_SetString(PyExc_TypeError, "{name}.run: wrong number of arguments");
    return nullptr;
  }}
  auto* m = static_cast<{name}::Model*>(PyCapsule_GetPointer(args[0], "ml4ep.Model"));
  if (!m) return nullptr;
  Py_buffer bufs[kInputs + kOutputs + 1];
  Py_ssize_t got = 0;
  int64_t dims[kDims + 1] = {{0}};
  bool ok = true;
  for (; got < kInputs + kOutputs; ++got) {{
    const int flags = got < kInputs ? PyBUF_C_CONTIGUOUS : (PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE);
    if (PyObject_GetBuffer(args[1 + got], &bufs[got], flags) < 0) {{
      ok = false;
      break;
    }}
  }}
  for (Py_ssize_t k = 0; ok && k < kDims; ++k) {{
    dims[k] = PyLong_AsLongLong(args[1 + kInputs + kOutputs + k]);
    if (dims[k] == -1 && PyErr_Occurred()) ok = false;
  }}
  std::string error;
  if (ok) {{
    Py_BEGIN_ALLOW_THREADS
    try {{
      m->infer({", ".join(args)});
    }} catch (const std::exception& e) {{
      error = e.what();
    }}
    Py_END_ALLOW_THREADS
  }}
  for (Py_ssize_t k = 0; k < got; ++k) PyBuffer_Release(&bufs[k]);
  (void)dims;
  if (!ok) return nullptr;
  if (!error.empty()) {{
    PyErr_SetString(PyExc_RuntimeError, error.c_str());
    return nullptr;
  }}
{rt_return}}}

PyMethodDef methods[] = {{
    {{"create", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(create)), METH_O, "load the weights"}},
    {{"clone", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(clone)), METH_O, "a model sharing the weights"}},
    {{"run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(run)), METH_FASTCALL, "run the model"}},
    {{nullptr, nullptr, 0, nullptr}}}};

PyModuleDef module_def = {{PyModuleDef_HEAD_INIT, "{module}", "ml4ep model {name}", -1, methods,
                          nullptr, nullptr, nullptr, nullptr}};
}}  // namespace {module}_bridge

PyMODINIT_FUNC PyInit_{module}(void) {{ return PyModule_Create(&{module}_bridge::module_def); }}
"""


def _example(g: Graph, name: str) -> str:
    """A standalone program: reads raw inputs (or makes them), runs the model, writes raw outputs."""
    lines = []
    lines.append("  // symbolic dimensions (batch size, ...): from the command line, default 1")
    for k, s in enumerate(g.symbols):
        lines.append(f"  const int64_t {D.cpp_name(s)} = argc > {k + 3} ? std::atoll(argv[{k + 3}]) : 1;")
    for dname, poly in g.derived.defs.items():  # sums of them (L + 1, ...) that shapes use
        lines.append(_derived_decl(dname, poly) + f"  (void){D.cpp_name(dname)};")
    for i in g.inputs:
        t = g.t(i)
        vt = "unsigned char" if ctype(t.dtype) == "bool" else ctype(t.dtype)
        lines.append(f"  std::vector<{vt}> {ident(i, 'in_')}(static_cast<size_t>({D.cpp(t.numel)}));")
    for o in g.outputs:
        t = g.t(o)
        # std::vector<bool> is packed (no data()): bool outputs are held as bytes; an output whose size depends on
        # the data (NonZero, Unique, ...) is allocated for its bound, as infer() expects
        vt = "unsigned char" if ctype(t.dtype) == "bool" else ctype(t.dtype)
        lines.append(f"  std::vector<{vt}> {ident(o, 'out_')}(static_cast<size_t>({D.cpp(g.derived.bound(t.numel))}));")
    lines.append("  if (argc > 2 && std::string(argv[2]) != \"-\") {  // inputs: raw little-endian, in ONNX order")
    lines.append("    std::ifstream f(argv[2], std::ios::binary);")
    lines.append("    if (!f) { std::fprintf(stderr, \"cannot open %s\\n\", argv[2]); return 1; }")
    for i in g.inputs:
        v = ident(i, "in_")
        lines.append(f"    f.read(reinterpret_cast<char*>({v}.data()), std::streamsize({v}.size() * sizeof({v}[0])));")
    lines.append("    if (!f) { std::fprintf(stderr, \"input file too short\\n\"); return 1; }")
    lines.append("  } else {")
    for i in g.inputs:
        v = ident(i, "in_")
        lines.append(f"    for (size_t j = 0; j < {v}.size(); ++j) {v}[j] = static_cast<{ctype(g.t(i).dtype)}>((j % 7) * 0.25);")
    lines.append("  }")
    lines.append(f"  {name}::Model model(argc > 1 ? argv[1] : \"{name}.bin\");")
    def data(o: str, pre: str) -> str:
        d = ident(o, pre) + ".data()"
        return f"reinterpret_cast<bool*>({d})" if ctype(g.t(o).dtype) == "bool" else d

    call = ", ".join([data(i, "in_") for i in g.inputs] + [data(o, "out_") for o in g.outputs]
                     + [D.cpp_name(s) for s in g.symbols])
    lines.append(f"  model.infer({call});")
    lines.append("  if (argc > 2 && std::string(argv[2]) != \"-\") {  // outputs next to the inputs: <inputs>.out")
    lines.append("    std::ofstream f(std::string(argv[2]) + \".out\", std::ios::binary);")
    for o in g.outputs:
        v = ident(o, "out_")
        lines.append(f"    f.write(reinterpret_cast<const char*>({v}.data()), std::streamsize({v}.size() * sizeof({v}[0])));")
    lines.append("  }")
    for o in g.outputs:
        v = ident(o, "out_")
        lines.append(f"  double sum_{v} = 0; for (auto x : {v}) sum_{v} += double(x);")
        lines.append(f"  std::printf(\"{printf_text(o)}: %zu values, sum %.6g\\n\", {v}.size(), sum_{v});")
    body = "\n".join(lines)
    return f"""// Example use of the generated model '{name}': ./example [{name}.bin] [inputs.raw|-] [dims...]
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "{name}.hpp"

int main(int argc, char** argv) {{
  try {{
{_indent(body, "  ")}
  }} catch (const std::exception& e) {{
    std::fprintf(stderr, "error: %s\\n", e.what());
    return 1;
  }}
  return 0;
}}
"""


def _cmake(name: str, march: str = "native") -> str:
    return f"""# Builds the example program of the ml4ep model '{name}'. The model itself is header-only.
cmake_minimum_required(VERSION 3.16)
project({name}_example CXX)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
option(ML4EP_USE_BLAS "link the large matrix products against a CBLAS" ON)
# the target ISA the model was compiled for by ml4ep (empty: the compiler's default)
set(ML4EP_MARCH "{march}" CACHE STRING "target CPU (-march): native, x86-64-v2, x86-64-v3, ...")
add_executable({name}_example example.cpp)
if(ML4EP_MARCH AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options({name}_example PRIVATE -march=${{ML4EP_MARCH}})
endif()
if(ML4EP_USE_BLAS)
  find_package(BLAS REQUIRED)
  target_link_libraries({name}_example PRIVATE ${{BLAS_LIBRARIES}})
else()
  target_compile_definitions({name}_example PRIVATE ML4EP_NO_BLAS)
endif()
"""
