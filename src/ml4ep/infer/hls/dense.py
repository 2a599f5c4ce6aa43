"""Dense and BatchNormalization as hls4ml 1.3 computes them (io_parallel, Latency): layer.py's four functions.

What hls4ml generates (``nnet_dense_latency.h``, ``nnet_batchnorm.h``; the same for the Vivado and Vitis backends):

- Dense: every product ``x[i] * w[i][j]`` exact (``product::mult``: ap_fixed's full-width product), converted to
  ``accum_t``; ``acc[j] = accum_t(bias[j])``; ``acc[j] += product`` for i = 0, 1, ... (each sum converted to
  ``accum_t``); ``y[j] = result_t(acc[j])``. Types: ``weight``, ``bias``, ``accum``, ``result``.
- BatchNormalization: ``y = result_t(x * scale[c] + bias[c])``, the product and the sum exact, one conversion; ``c``
  the channel (the last axis; ``n_filt = -1`` for a flat input: one scale per element). Types: ``scale``, ``bias``,
  ``result`` (no accumulator).

hls4ml passes that would change these layers: ``fuse_batch_normalization`` (a BatchNormalization folded into the
Dense/Conv before it) and ``fuse_consecutive_batch_normalization`` only fire when the earlier layer's result type is
'auto': every type here is pinned, so they never do. ``remove_nop_batch_normalization`` removes a BatchNormalization
whose scale is all 1.0 and bias all 0.0 (no conversion at all): emulated as a copy, with the result type forced to
the input's (a different result type is refused). ``replace_multidimensional_dense_with_conv`` (a Dense over a map)
cannot fire: a Dense takes a flat input here. Binary/ternary/exponent products (``weight_binary``,
``weight_ternary``, ...) are chosen only for hls4ml's Xnor, ``int<2>`` and exponent types, which the ``fixed<W,I>``
spellings written here never are.

Defaults: ``weight``, ``bias``, ``scale``, ``result`` are the model's precision and ``accum`` the model's accum.
hls4ml's own defaults differ: with a ``Model: Precision`` string every type, the accumulator included, is that one
precision; its ``config_from_*`` helpers set ``accum``/``result`` to 'auto' (a type wide enough for the exact sum).
"""

from __future__ import annotations

import numpy as np

from ..._native.fixed import FixedType, product_ok
from ...errors import InputError
from .layer import Layer

# -- helpers shared by conv.py, pooling.py, merge.py ----------------------------------------------------------


def fail(layer: Layer, why: str):
    """The error for a layer the emulation (or hls4ml) cannot reproduce, naming the layer."""
    return InputError(f"hls4ml {layer.kind} layer {layer.name!r}: {why}")


def in_type(layer: Layer, k: int = 0) -> FixedType:
    types = layer.attrs.get("in_types")
    if not types or len(types) <= k:
        raise fail(layer, f"the type of input {k} is not known (attrs['in_types'])")
    return types[k]


def mag(t: FixedType) -> int:
    """The largest magnitude of a raw value of ``t``."""
    return max(-t.raw_min, t.raw_max)


def check_exact(layer: Layer, what: str, bound: int) -> None:
    """Refuse where an exact intermediate value (magnitude up to ``bound`` raw units) would not fit int64."""
    if bound >= 1 << 63:
        raise fail(layer, f"{what} needs {bound.bit_length() + 1} bits, more than the 64 of ml4ep's fixed-point "
                          "emulation: use narrower types")


def check_product(layer: Layer, x: FixedType, w: FixedType, what: str = "weight") -> None:
    if not product_ok(x, w):
        raise fail(layer, f"the exact product of its input ({x}) and {what} ({w}) has {x.width + w.width} bits, "
                          "more than the 63 of ml4ep's fixed-point emulation: use narrower types")


def weight(layer: Layer, key: str, shape: tuple[int, ...]) -> np.ndarray:
    w = layer.weights.get(key)
    if w is None:
        raise fail(layer, f"has no {key!r} weights")
    w = np.asarray(w, dtype=np.float32)
    if tuple(w.shape) != tuple(shape):
        raise fail(layer, f"{key!r} weights have shape {tuple(w.shape)}, expected {tuple(shape)}")
    return w


def config(layer: Layer, **extra) -> dict:
    """``HLSConfig['LayerName'][ident]``: every type pinned (the reuse factor is the driver's: it changes pragmas,
    not the arithmetic of the Latency kernels)."""
    out = {"Precision": {k: t.hls4ml() for k, t in layer.types.items()}}
    out.update(extra)
    return out


def aliases(keys) -> str:
    """C++ type aliases of the layer's types (``using A = ...;``) for ``keys`` (name -> FixedType)."""
    return "".join(f"using {n} = {t.cpp()};\n" for n, t in keys)


# -- Dense ------------------------------------------------------------------------------------------------------


def _is_nop_bn(layer: Layer) -> bool:
    s, b = layer.weights.get("scale"), layer.weights.get("bias")
    if s is None or b is None:
        return False
    s, b = np.asarray(s), np.asarray(b)
    return bool((s == np.ones_like(s)).all() and (b == np.zeros_like(b)).all())


def types(layer: Layer, precision: FixedType, accum: FixedType) -> dict[str, FixedType]:
    if layer.kind == "Dense":
        return {"weight": precision, "bias": precision, "accum": accum, "result": precision}
    if layer.kind == "BatchNormalization":
        # hls4ml removes a BatchNormalization of scale 1 and bias 0: its output is its input, in the input's type
        result = in_type(layer) if _is_nop_bn(layer) and layer.attrs.get("in_types") else precision
        return {"scale": precision, "bias": precision, "result": result}
    raise KeyError(layer.kind)


def _dense_shape(layer: Layer) -> tuple[int, int]:
    if len(layer.in_shapes) != 1 or len(layer.in_shapes[0]) != 1:
        raise fail(layer, f"a Dense layer takes one flat input, not {layer.in_shapes}")
    n_in = int(layer.in_shapes[0][0])
    if len(layer.out_shape) != 1:
        raise fail(layer, f"a Dense layer gives a flat output, not {layer.out_shape}")
    return n_in, int(layer.out_shape[0])


def _bn_shape(layer: Layer) -> tuple[int, int]:
    """(the number of pixels, the number of channels) of a BatchNormalization's input."""
    if len(layer.in_shapes) != 1 or not layer.in_shapes[0]:
        raise fail(layer, f"a BatchNormalization takes one input, not {layer.in_shapes}")
    shape = tuple(int(s) for s in layer.in_shapes[0])
    if tuple(layer.out_shape) != shape:
        raise fail(layer, f"output shape {layer.out_shape} differs from the input's {shape}")
    c = shape[-1]
    return int(np.prod(shape)) // c, c


def _check(layer: Layer) -> None:
    t = layer.types
    x = in_type(layer)
    if layer.kind == "Dense":
        n_in, n_out = _dense_shape(layer)
        weight(layer, "weight", (n_in, n_out))
        weight(layer, "bias", (n_out,))
        check_product(layer, x, t["weight"])
    elif layer.kind == "BatchNormalization":
        _, c = _bn_shape(layer)
        weight(layer, "scale", (c,))
        weight(layer, "bias", (c,))
        if _is_nop_bn(layer):
            if t["result"] != x:
                raise fail(layer, f"scale 1 and bias 0: hls4ml removes this layer (remove_nop_batch_normalization) "
                                  f"and its consumers see the input's type {x}, so its result type must be {x}, "
                                  f"not {t['result']}")
            return
        check_product(layer, x, t["scale"], "scale")
        fp = x.frac + t["scale"].frac
        fs = max(fp, t["bias"].frac)
        check_exact(layer, "x * scale + bias", (mag(x) * mag(t["scale"]) << (fs - fp)) + (mag(t["bias"]) << (fs - t["bias"].frac)))
    else:
        raise KeyError(layer.kind)


def hls4ml_layer(layer: Layer) -> dict:
    _check(layer)
    if layer.kind == "Dense":
        n_in, n_out = _dense_shape(layer)
        return {"class_name": "Dense", "name": layer.ident, "inputs": list(layer.inputs), "n_in": n_in,
                "n_out": n_out, "weight_data": weight(layer, "weight", (n_in, n_out)),
                "bias_data": weight(layer, "bias", (n_out,)), "weight_quantizer": None, "bias_quantizer": None}
    npix, c = _bn_shape(layer)
    return {"class_name": "BatchNormalization", "name": layer.ident, "inputs": list(layer.inputs),
            "n_in": npix * c, "n_out": npix * c, "n_filt": -1 if len(layer.in_shapes[0]) == 1 else c,
            "scale_data": weight(layer, "scale", (c,)), "bias_data": weight(layer, "bias", (c,)),
            "data_format": "channels_last"}


def hls4ml_config(layer: Layer) -> dict:
    if layer.kind == "Dense":
        return config(layer, Strategy="latency")
    return config(layer)


def emit(layer: Layer, x: list[str], y: str) -> str:
    _check(layer)
    t = layer.types
    xt = in_type(layer)
    w = f"w_{layer.ident}_"
    if layer.kind == "Dense":
        n_in, n_out = _dense_shape(layer)
        return (aliases([("X", xt), ("Wt", t["weight"]), ("B", t["bias"]), ("A", t["accum"]),
                                ("R", t["result"])])
                + f"ml4ep_layers::dense<X, Wt, B, A, R, {n_in}, {n_out}>({x[0]}, {y}, {w}weight, {w}bias);\n")
    npix, c = _bn_shape(layer)
    if _is_nop_bn(layer):
        return f"for (int i = 0; i < {npix * c}; ++i) {y}[i] = {x[0]}[i];  // removed by hls4ml: a copy\n"
    return (aliases([("X", xt), ("S", t["scale"]), ("B", t["bias"]), ("R", t["result"])])
            + f"ml4ep_layers::batchnorm<X, S, B, R, {npix}, {c}>({x[0]}, {y}, {w}scale, {w}bias);\n")
