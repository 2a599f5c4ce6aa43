"""Add and Concatenate of two layer outputs as hls4ml 1.3 computes them (io_parallel): layer.py's four functions.

What hls4ml generates (``nnet_merge.h``): ``add``: ``y[i] = result_t(a[i % n1] + b[i % n2])``, the sum exact
(ap_fixed's ``+`` widens), one conversion; the inputs here have equal shapes. ``concatenate{1,2,3}d``:
``y = result_t(a)`` and ``result_t(b)`` in the concatenated order; the hls4ml layer's ``axis`` counts the batch axis
(Keras style), the C++ picks the last axis for ``axis == rank`` or -1, and so on. Ranks above 3 have no hls4ml
concatenate. The layer dicts are those of hls4ml's Keras reader: ``Merge`` with ``op='add'``, ``Concatenate`` with
``op='concatenate<rank>d'``.

Types: ``result`` only (the model's precision by default; hls4ml's 'auto' would be the exact sum's type).
"""

from __future__ import annotations

import numpy as np

from ..._native.fixed import FixedType
from .dense import aliases, check_exact, config, fail, in_type, mag
from .layer import Layer


def types(layer: Layer, precision: FixedType, accum: FixedType) -> dict[str, FixedType]:
    return {"result": precision}


def _shapes(layer: Layer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if len(layer.in_shapes) != 2 or len(layer.inputs) != 2:
        raise fail(layer, f"hls4ml merges exactly two inputs, not {len(layer.in_shapes)}")
    a, b = (tuple(int(s) for s in sh) for sh in layer.in_shapes)
    return a, b


def _check(layer: Layer):
    a, b = _shapes(layer)
    t1, t2 = in_type(layer, 0), in_type(layer, 1)
    if layer.kind == "Add":
        if a != b or tuple(layer.out_shape) != a:
            raise fail(layer, f"inputs {a} and {b} -> {tuple(layer.out_shape)}: hls4ml adds tensors of one shape "
                              "(its broadcasting repeats the smaller one cyclically, unlike ONNX)")
        fm = max(t1.frac, t2.frac)
        check_exact(layer, "a + b", (mag(t1) << (fm - t1.frac)) + (mag(t2) << (fm - t2.frac)))
        return None
    if layer.kind != "Concatenate":
        raise KeyError(layer.kind)
    rank = len(a)
    axis = int(layer.attrs.get("axis", -1))
    axis = axis + rank if axis < 0 else axis
    if not 1 <= rank <= 3:
        raise fail(layer, f"hls4ml concatenates tensors of rank 1 to 3 (without batch), not {rank}")
    if not 0 <= axis < rank or len(b) != rank or a[:axis] != b[:axis] or a[axis + 1:] != b[axis + 1:]:
        raise fail(layer, f"cannot concatenate {a} and {b} along axis {layer.attrs.get('axis')}")
    out = list(a)
    out[axis] += b[axis]
    if tuple(layer.out_shape) != tuple(out):
        raise fail(layer, f"output shape {tuple(layer.out_shape)} is not {tuple(out)}")
    return axis


def hls4ml_layer(layer: Layer) -> dict:
    axis = _check(layer)
    d = {"name": layer.ident, "inputs": list(layer.inputs)}
    if layer.kind == "Add":
        return {"class_name": "Merge", "op": "add", **d}
    rank = len(layer.in_shapes[0])
    return {"class_name": "Concatenate", "op": f"concatenate{rank}d", "axis": axis + 1, **d}


def hls4ml_config(layer: Layer) -> dict:
    return config(layer)


def emit(layer: Layer, x: list[str], y: str) -> str:
    axis = _check(layer)
    head = aliases([("T1", in_type(layer, 0)), ("T2", in_type(layer, 1)), ("R", layer.types["result"])])
    a, b = _shapes(layer)
    if layer.kind == "Add":
        return head + f"ml4ep_layers::add<T1, T2, R, {int(np.prod(a))}>({x[0]}, {x[1]}, {y});\n"
    outer = int(np.prod(a[:axis]))
    n1, n2 = int(np.prod(a[axis:])), int(np.prod(b[axis:]))
    return head + f"ml4ep_layers::concatenate<T1, T2, R, {outer}, {n1}, {n2}>({x[0]}, {x[1]}, {y});\n"
