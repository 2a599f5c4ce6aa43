"""C++ code generation: the graph, after its passes, printed as one header and a weights blob.

The header holds a ``<name>::Model`` class following the contract in docs/architecture.md: its constructor
reads ``<name>.bin``; ``infer`` takes one typed pointer per ONNX input, then per output, then the values of
the symbolic dimensions, and allocates nothing once its workspace has grown to the dimensions seen. Its body
declares the workspace, one named pointer per weight (``w_<name>``), the tensors (inputs const) in the order the
nodes use them, then each node's code as a block, indented by :func:`reindent` ("Reading a generated header" in
docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from importlib import resources

import numpy as np

from . import dims as D
from . import limits
from . import ops as O
from .graph import Graph, Node
from .._native.names import identifier, printf_text, string, text
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
    """What an operator's ``emit`` sees: pointers, shapes and constants of tensors as C++ expressions.

    ``device`` is "cpu" here; the CUDA emitter (:class:`ml4ep.infer.cuda.codegen.CudaEmitter`) prints the same
    operator code as kernels: code written with :meth:`par_for` (independent iterations) and :meth:`copy` serves
    both.
    """

    device = "cpu"
    arena = "arena_"  # the workspace object of the generated class
    weights_data = "weights_->data()"  # the start of the weights

    def __init__(self, g: Graph, plan: Plan):
        self.g = g
        self.plan = plan
        self.blobs: list[tuple[int, bytes]] = []  # (offset, bytes)
        self.size = 0
        self.const_ptr: dict[str, str] = {}
        self.node: Node | None = None
        # the named weight pointers: (C++ name, declaration), in the order of the weights file
        self.weight_decls: list[tuple[str, str]] = []
        self._weight_names: set[str] = set()
        self._weight_sources: set[str] = set()  # constants that named a weight pointer already
        # the tensors whose pointers the code uses, in the order of first use (declared in that order)
        self.used: dict[str, None] = {}

    # tensors --------------------------------------------------------------------------------------
    def ptr(self, name: str) -> str:
        v = self.g.const(name)
        if v is not None:
            if name not in self.const_ptr:
                if v.dtype == object:
                    raise D.SymbolicError(f"symbolic constant '{name}' used as run-time data")
                self.const_ptr[name] = self._store(v, name, name)
            return self.const_ptr[name]
        self.used.setdefault(name, None)
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
        """Store a constant array in the weights file; returns the C++ name of a typed pointer to it, declared
        once at the top of ``infer`` (``w_<name>``, after the constant it holds or else ``hint``)."""
        return self._store(array, hint)

    def _store(self, array: np.ndarray, hint: str, source: str | None = None) -> str:
        arr = np.ascontiguousarray(array)
        limits.check_weights(self.size + arr.nbytes, hint, self.node)
        data = arr.tobytes()
        off = self.size
        self.blobs.append((off, data))
        self.size = (off + len(data) + ALIGN - 1) // ALIGN * ALIGN
        ct = ctype(arr.dtype)
        if source is None:
            source = self._source_of(arr)
        # named after the constant it holds, unless another pointer took that name or the exporter made it up
        # (PyTorch's "onnx::MatMul_245"): then after what the operator calls it
        named_by = hint
        if source is not None and source not in self._weight_sources:
            self._weight_sources.add(source)
            if not source.startswith("onnx::") or not hint:
                named_by = source
        var = self._weight_var(named_by)
        what = f"{hint or 'constant'} {D.fmt_shape(arr.shape)}"  # names from the model: through text() only
        if source is not None and source != hint:
            what += f": the values of {source}"
        self.weight_decls.append((var, f"const {ct}* const {var} = reinterpret_cast<const {ct}*>(w_ + {off});"
                                       f"  // {text(what)}"))
        return var

    def _source_of(self, arr: np.ndarray) -> str | None:
        """The constant input of the current node whose values ``arr`` holds (the same values, maybe reordered:
        a transposed or packed matrix), which then names the pointer; None if there is none."""
        if self.node is None or arr.size == 0 or arr.dtype == object:
            return None
        nan = arr.dtype.kind in "fc"
        for name in self.node.inputs:
            v = self.g.const(name) if name else None
            if v is None or v.size != arr.size or v.dtype == object or name in self._weight_sources:
                continue
            if v.dtype != arr.dtype and not (v.dtype.kind == arr.dtype.kind == "f"):
                continue
            try:
                with np.errstate(all="ignore"):
                    c = np.asarray(v, dtype=arr.dtype)
                    if (np.array_equal(c.reshape(-1), arr.reshape(-1), equal_nan=nan)
                            or c.ndim == 2 and np.array_equal(c.T.reshape(-1), arr.reshape(-1), equal_nan=nan)
                            or np.array_equal(np.sort(c, axis=None), np.sort(arr, axis=None), equal_nan=nan)):
                        return name
            except (TypeError, ValueError):  # a type NumPy cannot compare or sort: no name from it
                continue
        return None

    def _weight_var(self, name: str) -> str:
        """A new C++ name ``w_<name>`` for a weight pointer: the characters of ``name`` that cannot be in an
        identifier as single underscores, a number appended where that name is taken (a numbered one for no
        name). No other variable of the generated code starts with ``w_``: not the tensors (``v_``, ``in_``,
        ``out_``), dimensions (``dim_``), groups (``g_``), nor the locals of the operators' code."""
        stem = re.sub(r"[^0-9A-Za-z]+", "_", str(name)).strip("_") if name else ""
        var = identifier(stem, "w_", unique=False) if stem else f"w_{len(self.weight_decls)}"
        base, k = var, 2
        while var in self._weight_names:
            var, k = f"{base}_{k}", k + 1
        self._weight_names.add(var)
        return var

    def emitter(self, opdef: "O.OpDef"):
        """The function that prints ``opdef``'s code for this emitter's device."""
        return opdef.emit

    # code that runs on either device ------------------------------------------------------------------
    def par_for(self, var: str, extent, body: str) -> str:
        """``body`` for every ``var`` in [0, extent), the iterations independent of one another: a loop here, a
        kernel over ``var`` on the GPU. ``body`` reads and writes tensors through their pointers only (no
        ``this``, nothing host-only)."""
        ext = extent if isinstance(extent, str) else D.cpp(extent)
        if "\n" not in body.strip():
            return f"for (int64_t {var} = 0; {var} < {ext}; ++{var}) {{ {body.strip()} }}\n"
        return f"for (int64_t {var} = 0; {var} < {ext}; ++{var}) {{\n{_indent(body, '  ')}}}\n"

    def copy(self, dst: str, src: str, nbytes: str) -> str:
        """Copy ``nbytes`` bytes between two tensors of the same device."""
        return f"std::memcpy({dst}, {src}, {nbytes});\n"

    def kernel_error(self, message: str) -> str:
        """The statement for bad data found inside a ``par_for`` body (an index out of range): here it throws
        ``std::out_of_range(message)``; in CUDA code, which cannot throw, it reports the message to the host, which
        raises it (docs/cuda.md), and the body goes on with something safe of its own (no access out of bounds)."""
        return f"throw std::out_of_range({string(message)});"

    def emit_nodes(self, nodes: list[Node]) -> str:
        """The code of a list of nodes (a control-flow body), each in its own block."""
        saved = self.node
        out = []
        for n in nodes:
            opdef = O.get(n.op_type)
            assert opdef is not None and self.emitter(opdef) is not None, n.op_type
            self.node = n
            code = self.emitter(opdef)(n, self)
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


@dataclass
class InferCode:
    """The parts of a model's ``infer`` function, shared by the CPU and CUDA code (:func:`infer_code`)."""

    params: str  # the parameter list: inputs, outputs, dimensions
    arg_names: list[str]  # the parameters' names, in order
    decl: list[str]  # the declarations at the top (dimensions, workspace, weights, tensors)
    checks_at: int  # where in ``decl`` the size checks go
    checks: str  # the size checks of every tensor and dimension expression
    body: list[str]  # each node's code
    weights: bytes  # the weights file
    model_id: int
    runtime: list[str]  # the data-dependent dimensions


def infer_code(g: Graph, name: str, plan: Plan, em: "Emitter | None" = None) -> InferCode:
    """The declarations and node code of ``infer`` (``em``: the emitter, :class:`Emitter` for the CPU)."""
    em = em or Emitter(g, plan)
    body: list[str] = []
    # the inputs and outputs first, then the other tensors in the order the nodes first use them; all at the top of
    # infer (declared amid the nodes' code instead, g++ -O3 may inline and fuse multiply-adds differently)
    io = [t for t in dict.fromkeys([*g.inputs, *g.outputs]) if t in plan.storage_of]
    declared = set(io)
    em.used.update(dict.fromkeys(io))
    tensors: list[str] = []
    rendering, rendered = D.start_rendering()  # every dimension expression of the code: checked at run time
    for node in g.nodes:
        opdef = O.get(node.op_type)
        assert opdef is not None and em.emitter(opdef) is not None, node.op_type
        em.node = node
        origin = text(", ".join(node.origin) if node.origin else node.name)
        fused = "".join(f" + {op}" for op, _ in node.fused)
        outs = text(", ".join(f"{o} {D.fmt_shape(g.t(o).shape)}" for o in node.outputs if o))
        code = em.emitter(opdef)(node, em)
        body.append(f"  // {node.op_type}{fused} '{origin}' -> {outs}\n")
        first = {t: k for k, t in enumerate([*node.inputs, *node.outputs])}  # inputs, outputs, then the bodies'
        new = [t for t in em.used if t not in declared and t in plan.storage_of]
        tensors += sorted(new, key=lambda t: first.get(t, len(first)))
        declared.update(new)
        if code.strip():
            body.append("  {\n" + _indent(code, "    ") + "  }\n")
    D.stop_rendering(rendering)
    checks = limits.cpp_checks(g, plan, name, rendered)

    syms = g.symbols
    in_params = [f"const {ctype(g.t(i).dtype)}* {ident(i, 'in_')}" for i in g.inputs]
    out_params = [f"{ctype(g.t(o).dtype)}* {ident(o, 'out_')}" for o in g.outputs]
    dim_params = [f"int64_t {D.cpp_name(s)}" for s in syms]
    params = ", ".join(in_params + out_params + dim_params)

    # declarations: dimensions, the workspace, the weights, the inputs and outputs
    decl: list[str] = []
    for s in syms:
        decl.append(f"  if ({D.cpp_name(s)} < 0) throw std::invalid_argument(\"{name}: dimension '{text(s)}' is negative\");\n")
    checks_at = len(decl)  # the size checks go here, or into the chunked infer that calls this block
    for dname, poly in g.derived.defs.items():  # symbols standing for sums of monomials (L + 1, ...)
        decl.append(_derived_decl(dname, poly))
    runtime = list(g.derived.runtime)
    if runtime:
        decl.append("  // data-dependent dimensions: set by the node that finds them\n")
    for rname in runtime:  # data-dependent dimensions: set by the node that finds them (NonZero, ...)
        decl.append(f"  int64_t {D.cpp_name(rname)} = 0;\n")
    # group sizes and offsets
    gkeys = sorted(plan.groups, key=lambda k: (len(k), k))
    if gkeys:
        decl.append("  // the workspace (arena_, grown on the first calls): intermediate tensors and scratch space, one group\n"
                    "  // per product of the dimensions that their sizes scale with"
                    + (" (g_static: the fixed sizes)\n" if () in plan.groups else "\n"))
    acc = "0"
    for key in gkeys:
        decl.append(f"  const size_t {_group_var(key)} = {acc};\n")
        size = D.cpp(D.Dim.make(plan.groups[key], key)) if plan.groups[key] else "0"
        acc = f"{_group_var(key)} + size_t({size})"
    if gkeys:
        decl.append(f"  [[maybe_unused]] unsigned char* const ws = {em.arena}.reserve({acc});\n")
    used = _code_identifiers("".join(body))
    weights = [d for var, d in em.weight_decls if var in used]
    if weights:
        decl.append(f"  // the weights: pointers into {text(name)}.bin (loaded by the constructor)\n"
                    f"  const unsigned char* const w_ = {em.weights_data};\n")
        decl.extend(f"  {d}\n" for d in weights)
    if io:
        decl.append("  // inputs and outputs\n")
        decl.extend(_tensor_decl(g, t, plan.storage_of[t]) for t in io)
    if tensors:  # printed here, after the rendering of the code's dimensions: not expressions to check
        decl.append("  // the other tensors, in the order the nodes below first use them\n")
        decl.extend(_tensor_decl(g, t, plan.storage_of[t]) for t in tensors)

    weights, model_id = weights_file(em.size, em.blobs, name)

    arg_names = [ident(i, "in_") for i in g.inputs] + [ident(o, "out_") for o in g.outputs] + \
        [D.cpp_name(s) for s in syms]
    return InferCode(params, arg_names, decl, checks_at, checks, body, weights, model_id, runtime)


def weights_file(size: int, blobs, name: str) -> tuple[bytes, int]:
    """``(<name>.bin's bytes, model id)``: the 64-byte header (``ML4EPW01``, the id, the payload size) and a payload
    of ``size`` bytes holding each ``(offset, bytes)`` of ``blobs``; the id hashes the payload and the name."""
    payload = bytearray(size)
    for off, data in blobs:
        payload[off:off + len(data)] = data
    model_id = int.from_bytes(hashlib.sha256(bytes(payload) + name.encode()).digest()[:8], "little")
    return b"ML4EPW01" + struct.pack("<QQ", model_id, len(payload)) + bytes(40) + bytes(payload), model_id


def model_members(name: str, model_id: int, payload_bytes: int) -> str:
    """The first members of every CPU ``Model`` class (also the fixed-point emulation's, ml4ep.infer.hls): the id
    and size its weights file must have, the constructor loading it, the copy sharing the weights."""
    return f"""  static constexpr uint64_t kModelId = {model_id}ULL;
  static constexpr uint64_t kWeightBytes = {payload_bytes}ULL;
  explicit Model(const std::string& weights_path)
      : weights_(std::make_shared<ml4ep_rt::Weights>(weights_path, kModelId, kWeightBytes, "{name}")) {{}}
  // a copy shares the weights and has a workspace of its own: one Model per thread
  Model(const Model& other) : weights_(other.weights_) {{}}
  Model& operator=(const Model&) = delete;
"""


def generate(g: Graph, name: str, plan: Plan, module: str | None = None, march: str = "native") -> Generated:
    """The CPU code of a lowered graph: the header, the Python bridge, the example, the CMake file, the weights."""
    code = infer_code(g, name, plan)
    params, arg_names, decl, body, checks = code.params, code.arg_names, code.decl, code.body, code.checks
    runtime, syms, checks_at = code.runtime, g.symbols, code.checks_at
    weights, model_id = code.weights, code.model_id
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
{model_members(name, model_id, len(weights) - 64)}
  void infer({params});
{rt_members}
 private:
{private_block}
  std::shared_ptr<const ml4ep_rt::Weights> weights_;
  ml4ep_rt::Arena arena_;
{rt_private}}};

{chunked}inline void Model::{block}({params}) {{
{reindent("".join(decl) + chr(10) + "".join(body), 1)}}}

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


def _tensor_decl(g: Graph, t: str, s: memory.Storage) -> str:
    """The declaration of tensor ``t``'s pointer ``v_<t>``: the caller's buffer (const for an input) or its place
    in the workspace."""
    ct = ctype(g.t(t).dtype)
    if s.kind == "input":
        src, ptr = ident(s.name, "in_"), f"const {ct}*"
    elif s.kind == "output":
        src, ptr = ident(s.name, "out_"), f"{ct}*"
    else:
        src, ptr = _arena_addr(s), f"{ct}*"
    src_ct = ctype(g.t(s.name).dtype) if s.kind in ("input", "output") else "unsigned char"
    expr = src if src_ct == ct else f"reinterpret_cast<{ptr}>{src if src.startswith('(') else f'({src})'}"
    what = {"input": "input ", "output": "output "}.get(s.kind, "") if t == s.name else ""
    note = f"{what}{t} {D.fmt_shape(g.t(t).shape)}"  # names from the model: through text() only
    if t != s.name:
        note += f", a view of {s.kind + ' ' if s.kind in ('input', 'output') else ''}{s.name}"
    return f"  [[maybe_unused]] {ptr} const {ident(t, 'v_')} = {expr};  // {text(note)}\n"


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
    derived = ["  [[maybe_unused]]" + _derived_decl(dn, poly)[1:] for dn, poly in g.derived.defs.items() if dn in used]
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


_RAW_STRING = re.compile(r'(?:u8|[uUL])?R"([^()\\ \t]{0,16})\(')
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _lex_lines(code: str) -> list[tuple[str, str, bool]]:
    """Each line of C++ ``code`` as (line, its code: comments removed and literals emptied, whether the line is
    to be kept as it is: it starts inside a block comment or raw string, or continues a line ending in ``\\``)."""
    out = []
    state: str | None = None  # None, "*/" in a block comment, or the end of a raw string
    cont = False
    for line in code.split("\n"):
        verbatim = state is not None or cont
        kept: list[str] = []
        i, n = 0, len(line)
        while i < n:
            if state is not None:
                j = line.find(state, i)
                if j < 0:
                    break
                kept.append(" " if state == "*/" else '""')
                i, state = j + len(state), None
                continue
            c = line[i]
            if line.startswith("//", i):
                break
            if line.startswith("/*", i):
                state, i = "*/", i + 2
                continue
            after_ident = i > 0 and (line[i - 1].isalnum() or line[i - 1] == "_")
            m = _RAW_STRING.match(line, i)
            if m and not after_ident:
                state, i = ")" + m.group(1) + '"', m.end()
                continue
            if c == '"' or (c == "'" and not after_ident):  # a literal (a ' after a digit separates digits)
                j = i + 1
                while j < n and line[j] != c:
                    j += 2 if line[j] == "\\" else 1
                kept.append('""')
                i = j + 1
                continue
            kept.append(c)
            i += 1
        cont = state is None and line.endswith("\\")
        out.append((line, "".join(kept), verbatim))
    return out


def _code_identifiers(code: str) -> set[str]:
    """The identifiers that C++ ``code`` uses outside its comments and literals."""
    return {m.group() for _, kept, _ in _lex_lines(code) for m in _IDENT.finditer(kept)}


def reindent(code: str, depth: int = 0, unit: str = "  ") -> str:
    """C++ ``code`` indented by its blocks: a statement one ``unit`` beyond the line that opened its block (``depth``
    units at the start), a closing brace at the indentation of that line, a line that continues a statement (an
    open parenthesis, no ``;`` yet, a loop without braces) as far beyond its predecessor as in ``code`` (one unit,
    two in parentheses, where it was before it). Preprocessor lines are indented as statements. Only leading
    whitespace changes, never in a block comment, raw string or macro continuation: the code means what it
    meant."""
    w = len(unit)
    out: list[str] = []
    blocks = [depth * w]  # the indentation of the statements of each open block
    parens = [0]  # open parentheses and brackets, per open block
    prev: tuple[int, int, bool, bool] | None = None  # the last code line: its indent before, after; ends; starts
    for line, kept, verbatim in _lex_lines(code):
        stripped = line.lstrip(" \t")
        body = kept.strip()
        new = len(line) - len(stripped)
        if verbatim or not stripped:
            out.append(line if verbatim else "")
        elif stripped.startswith("#"):
            out.append(" " * blocks[-1] + stripped)
            continue
        else:
            orig = len(line) - len(stripped)
            closers = min(len(body) - len(body.lstrip("}")), len(blocks) - 1)
            starts = prev is None or prev[2] or closers > 0
            if closers:
                new = blocks[-closers] - w
            elif starts:
                new = blocks[-1]
            elif orig < prev[0] and prev[3]:
                new = prev[1] + (2 * w if parens[-1] else w)
            else:
                new = max(prev[1] + orig - prev[0], blocks[-1])
            out.append(" " * new + stripped)
        for ch in kept:
            if ch == "{":
                blocks.append(new + w)
                parens.append(0)
            elif ch == "}":
                if len(blocks) > 1:
                    blocks.pop()
                    parens.pop()
            elif ch in "([":
                parens[-1] += 1
            elif ch in ")]":
                parens[-1] = max(0, parens[-1] - 1)
        if body and stripped and not verbatim:
            end = body[-1]
            ends = end == "{" or parens[-1] == 0 and (end in ";}" or end == ":" and not body.endswith("::"))
            prev = (orig, new, ends, starts)
    return "\n".join(out)


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


def example_inputs(g: Graph, name: str) -> list[str]:
    """The first lines of an example program's main (the CPU one, and the CUDA one of ml4ep.infer.cuda.codegen): the
    symbolic dimensions from the command line, the host buffers of the inputs and outputs, the inputs read from a raw
    file (or made up), the model constructed from its weights file."""
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
    return lines


def _example(g: Graph, name: str) -> str:
    """A standalone program: reads raw inputs (or makes them), runs the model, writes raw outputs."""
    lines = example_inputs(g, name)
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
