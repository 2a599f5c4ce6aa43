"""Bit-exact emulation of an hls4ml design in generated C++ (docs/fpga.md).

The header has the interface of every ml4ep model (``<name>::Model m("<name>.bin"); m.infer(in..., out...,
batch)``, float32 in and out, so :class:`~ml4ep.infer.runtime.CompiledModel` and the CPU bridge serve it unchanged)
and computes what hls4ml's C-simulation computes, sample by sample: each input converted to the input layer's
type, every layer in hls4ml's fixed-point arithmetic (the templates of ``cpp/*.hpp`` over ``ml4ep_fx`` of
``_native/fixed.hpp``), the outputs converted back to float. The weights are quantised here, as hls4ml writes them
(decimal text with as many digits as the type has fraction bits, read as a double, then converted), and stored as
64-bit raw values in ``<name>.bin``.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np

from ..._native import fixed
from ..._native.names import text
from .. import dims as D
from ..codegen import Generated, _bridge, _cmake, _example, ident, model_members, prelude, weights_file
from ..graph import Graph
from .layer import Layer
from .layers import Design, family

CPP = ("layers.hpp", "activation.hpp")


def quantize_weights(values: np.ndarray, t: fixed.FixedType) -> np.ndarray:
    """Raw values of ``t`` as hls4ml's weight files give them: ``'{:.Ff}'`` text (F = max(0, fraction bits)), read
    as a double (correctly rounded, like the C++ compiler reads the literal), then converted to ``t``."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    digits = max(0, t.frac)
    as_text = np.array([float(f"{x:.{digits}f}") for x in v.tolist()], dtype=np.float64)
    return t.raw_of(as_text)


def _support() -> str:
    cpp = resources.files("ml4ep.infer.hls").joinpath("cpp")
    return fixed.header() + "".join("\n" + cpp.joinpath(f).read_text() for f in CPP)


def generate(g: Graph, design: Design, name: str, module: str, march: str = "native") -> Generated:
    """The emulation's header, bridge, weights, meta, example and CMake file."""
    layers: list[Layer] = design.layers
    by_ident = {lay.ident: lay for lay in layers}
    # the weights: one 64-byte aligned block of int64 raws per (layer, key)
    blobs, offsets, size = [], {}, 0
    for lay in layers:
        for key, w in lay.weights.items():
            raw = quantize_weights(w, lay.types[key]).astype("<i8")
            offsets[(lay.ident, key)] = size
            blobs.append((size, raw.tobytes()))
            size += (raw.nbytes + 63) // 64 * 64
    weights, model_id = weights_file(size, blobs, name)

    # the per-sample buffers, one after the other in one workspace
    buf_off, work = {}, 0
    for lay in layers:
        if lay.kind == "Reshape":
            continue
        buf_off[lay.ident] = work
        work += int(np.prod(lay.out_shape)) if lay.out_shape else 1
    out_layer = design.outputs

    syms = list(g.symbols)
    batch = D.cpp_name(syms[0]) if syms else str(int(g.t(g.inputs[0]).shape[0]))
    params = ", ".join([f"const float* {ident(i, 'in_')}" for i in g.inputs]
                       + [f"float* {ident(o, 'out_')}" for o in g.outputs]
                       + [f"int64_t {D.cpp_name(s)}" for s in syms])
    arg_names = [ident(i, "in_") for i in g.inputs] + [ident(o, "out_") for o in g.outputs] + \
        [D.cpp_name(s) for s in syms]
    body = []
    for (lid, key), off in offsets.items():
        body.append(f"  const int64_t* w_{lid}_{key} = reinterpret_cast<const int64_t*>(weights_->data() + {off});\n")
    body.append(f"  if (work_.size() < {work}) work_.resize({work});\n")
    body.append("  int64_t* ws = work_.data();\n")
    for lay in layers:
        where = f"b_{lay.inputs[0]}" if lay.kind == "Reshape" else f"ws + {buf_off[lay.ident]}"
        body.append(f"  int64_t* b_{lay.ident} = {where};  // {text(lay.kind)} {text(lay.name)}\n")
    body.append(f"  for (int64_t n = 0; n < {batch}; ++n) {{\n")
    for i in g.inputs:
        lay = by_ident[design.inputs[i]]
        k = int(np.prod(lay.out_shape))
        body.append(f"    for (int i = 0; i < {k}; ++i) b_{lay.ident}[i] = "
                    f"ml4ep_fx::from_double<{lay.result.cpp()}>({ident(i, 'in_')}[n * {k} + i]);\n")
    for lay in layers:
        if lay.kind in ("Input", "Reshape"):
            continue
        code = family(lay.kind).emit(lay, [f"b_{x}" for x in lay.inputs], f"b_{lay.ident}")
        body.append(f"    {{  // {text(lay.kind)} {text(lay.name)}\n")
        body.extend(f"      {line}\n" for line in code.strip("\n").split("\n"))
        body.append("    }\n")
    for o in g.outputs:
        lay = by_ident[out_layer[o]]
        k = int(np.prod(lay.out_shape))
        body.append(f"    for (int i = 0; i < {k}; ++i) {ident(o, 'out_')}[n * {k} + i] = "
                    f"static_cast<float>(ml4ep_fx::to_double<{lay.result.cpp()}>(b_{lay.ident}[i]));\n")
    body.append("  }\n")

    build_id = hashlib.sha256(f"{module}:{model_id}".encode()).hexdigest()[:16].upper()
    guard = f"ML4EP_MODEL_{name.upper()}_{build_id}_HPP"
    layer_lines = "\n".join(f"//   {lay.ident}: {lay.kind} ({text(lay.name)}) -> {lay.out_shape}; "
                            + ", ".join(f"{k} {v}" for k, v in lay.types.items()) for lay in layers)
    header = f"""// Generated by ml4ep from '{text(g.source)}': bit-exact emulation of the hls4ml design of model '{name}'.
// Do not edit. Usage: {name}::Model m("{name}.bin"); m.infer({", ".join(arg_names)});
// Layers (hls4ml names) and fixed-point types:
{layer_lines}
#ifndef {guard}
#define {guard}
{prelude()}
{_support()}
namespace {name} {{

class Model {{
 public:
{model_members(name, model_id, size)}  static constexpr int kRuntimeDims = 0;

  void infer({params});

 private:
  std::shared_ptr<const ml4ep_rt::Weights> weights_;
  std::vector<int64_t> work_;  // one sample's layer outputs (raw values), sized on the first call
}};

inline void Model::infer({params}) {{
{"".join(body)}}}

}}  // namespace {name}
#endif  // {guard}
"""
    meta = {
        "name": name,
        "source": g.source,
        "symbols": syms,
        "batch_chunks": None,
        "derived": g.derived.to_json(),
        "inputs": [{"name": i, "dtype": "float32", "shape": [D.to_json(d) for d in g.t(i).shape]} for i in g.inputs],
        "outputs": [{"name": on, "dtype": "float32", "shape": [D.to_json(d) for d in g.t(o).shape]}
                    for o, on in zip(g.outputs, g.output_names or g.outputs)],
        "fixed_point": {lay.name: {k: str(v) for k, v in lay.types.items()} for lay in layers},
    }
    return Generated(name, header, _bridge(g, name, module), weights, meta, _example(g, name),
                     _cmake(name, march), model_id)

