"""The input layer, Reshape (a no-op in io_parallel: the same flat array, the same type) and Transpose (channels-first
ONNX maps to channels-last and back): layer.py's four functions."""

from __future__ import annotations

import numpy as np

from .layer import Layer


def types(layer: Layer, precision, accum) -> dict:
    if layer.kind == "Input":
        return {"result": precision}
    return {"result": layer.attrs["in_type"]}  # hls4ml: a Transpose or Reshape keeps its input's type


def hls4ml_layer(layer: Layer) -> dict:
    if layer.kind == "Input":
        return {"class_name": "InputLayer", "name": layer.ident, "input_shape": list(layer.out_shape)}
    if layer.kind == "Reshape":
        return {"class_name": "Reshape", "name": layer.ident, "inputs": list(layer.inputs),
                "target_shape": list(layer.attrs["target_shape"])}
    return {"class_name": "Transpose", "name": layer.ident, "inputs": list(layer.inputs), "perm": list(layer.attrs["perm"])}


def hls4ml_config(layer: Layer) -> dict:
    if layer.kind == "Input":
        return {"Precision": {"result": layer.types["result"].hls4ml()}}
    return {}


def emit(layer: Layer, x: list[str], y: str) -> str:
    """A Transpose: a permutation (exact). The input layer is filled by the driver; a Reshape's buffer is its input's
    (codegen)."""
    shape = layer.in_shapes[0]
    perm = layer.attrs["perm"]
    src = np.transpose(np.arange(int(np.prod(shape))).reshape(shape), perm).reshape(-1)
    table = f"kPerm_{layer.ident}"
    vals = ", ".join(str(int(v)) for v in src)
    return (f"static constexpr int32_t {table}[{len(src)}] = {{{vals}}};\n"
            f"for (int i = 0; i < {len(src)}; ++i) {y}[i] = {x[0]}[{table}[i]];\n")
