"""Conv1D and Conv2D as hls4ml 1.3 computes them (io_parallel, Latency): layer.py's four functions.

What hls4ml generates: ``conv_1d_cl`` / ``conv_2d_cl`` (``templates/vitis/nnet_utils/nnet_conv{1,2}d*.h``; the
Vivado backend's are the same arithmetic) with ``conv_{1,2}d_latency_cl``: the ``vivado:generate_conv_im2col`` pass
writes a ``fill_buffer`` that gathers, per output pixel, the taps in (kh, kw, c_in) order with explicit zeros in
the padding (``_compute_conv{1,2}d_im2col``, strides applied there); then the Dense latency kernel on that buffer:
each product exact, converted to ``accum_t``; ``acc = accum_t(bias)``; ``acc += product`` tap by tap;
``y = result_t(acc)``. The padded taps add ``accum_t(0 * w) = 0``, which changes nothing in any overflow mode, so
they are skipped here. The default ParallelizationFactor 1 gives one output pixel per partition (the same
arithmetic for any factor).

A 1x1 kernel is turned into PointwiseConv1D/2D by ``vivado:optimize_pointwise_conv``: the 2-D one runs the same
``conv_2d_latency_cl``; the 1-D one runs ``Conv1DLatency`` too, or, for an output of width 1,
``BatchedDenseForConv1D`` -> ``pointwise_conv_1d_latency_cl``, which has the same order (bias, then the channels in
order), the same conversions, and zeros for padded pixels: nothing to emulate differently.

Types: ``weight``, ``bias``, ``accum``, ``result`` (defaults as for Dense, see dense.py). Weight layout
(kh, kw, c_in, c_out) / (k, c_in, c_out), channels-last maps, ONNX ``pads`` (begins, then ends). Dilation and
groups are refused by the driver.
"""

from __future__ import annotations

from ..._native.fixed import FixedType
from .dense import aliases, check_product, config, fail, in_type, weight
from .layer import Layer


def types(layer: Layer, precision: FixedType, accum: FixedType) -> dict[str, FixedType]:
    return {"weight": precision, "bias": precision, "accum": accum, "result": precision}


def _geometry(layer: Layer) -> dict:
    """The convolution as 2-D numbers (a Conv1D is one row): H, W, CI, KH, KW, CO, SH, SW, PT, PB, PL, PR, OH, OW."""
    rank = 1 if layer.kind == "Conv1D" else 2 if layer.kind == "Conv2D" else 0
    if not rank:
        raise KeyError(layer.kind)
    if len(layer.in_shapes) != 1 or len(layer.in_shapes[0]) != rank + 1 or len(layer.out_shape) != rank + 1:
        raise fail(layer, f"a {layer.kind} takes a map of rank {rank + 1} (channels last), not {layer.in_shapes} "
                          f"-> {layer.out_shape}")
    a = layer.attrs
    k = [int(v) for v in a.get("kernel", [])]
    strides = [int(v) for v in a.get("strides", [1] * rank)]
    pads = [int(v) for v in a.get("pads", [0] * 2 * rank)]
    if len(k) != rank or len(strides) != rank or len(pads) != 2 * rank:
        raise fail(layer, f"kernel {k}, strides {strides}, pads {pads} do not fit a {layer.kind}")
    if min(k) < 1 or min(strides) < 1 or min(pads) < 0:
        raise fail(layer, f"kernel {k}, strides {strides}, pads {pads}: sizes and strides >= 1, pads >= 0")
    if a.get("dilations") is not None and any(int(d) != 1 for d in a["dilations"]):
        raise fail(layer, "dilation is not supported by hls4ml's io_parallel convolutions")
    if int(a.get("group", 1)) != 1:
        raise fail(layer, "groups are not supported by hls4ml's Conv layers")
    shape = [int(s) for s in layer.in_shapes[0]]
    if rank == 1:
        g = dict(H=1, W=shape[0], KH=1, KW=k[0], SH=1, SW=strides[0], PT=0, PB=0, PL=pads[0], PR=pads[1])
    else:
        g = dict(H=shape[0], W=shape[1], KH=k[0], KW=k[1], SH=strides[0], SW=strides[1], PT=pads[0], PB=pads[2],
                 PL=pads[1], PR=pads[3])
    g["CI"] = shape[-1]
    g["CO"] = int(layer.out_shape[-1])
    g["OH"] = (g["H"] + g["PT"] + g["PB"] - g["KH"]) // g["SH"] + 1
    g["OW"] = (g["W"] + g["PL"] + g["PR"] - g["KW"]) // g["SW"] + 1
    want = (g["OW"], g["CO"]) if rank == 1 else (g["OH"], g["OW"], g["CO"])
    if g["OH"] < 1 or g["OW"] < 1 or tuple(int(s) for s in layer.out_shape) != want:
        raise fail(layer, f"output shape {tuple(layer.out_shape)} is not hls4ml's {want} (floor((in + pads - kernel) "
                          "/ stride) + 1)")
    g["rank"] = rank
    return g


def _weights(layer: Layer, g: dict):
    kshape = (g["KW"],) if g["rank"] == 1 else (g["KH"], g["KW"])
    return weight(layer, "weight", (*kshape, g["CI"], g["CO"])), weight(layer, "bias", (g["CO"],))


def _check(layer: Layer) -> dict:
    g = _geometry(layer)
    _weights(layer, g)
    check_product(layer, in_type(layer), layer.types["weight"])
    return g


def hls4ml_layer(layer: Layer) -> dict:
    g = _check(layer)
    w, b = _weights(layer, g)
    d = {"class_name": layer.kind, "name": layer.ident, "inputs": list(layer.inputs), "data_format": "channels_last",
         "in_width": g["W"], "out_width": g["OW"], "n_chan": g["CI"], "n_filt": g["CO"], "filt_width": g["KW"],
         "stride_width": g["SW"], "pad_left": g["PL"], "pad_right": g["PR"], "weight_data": w, "bias_data": b,
         "weight_quantizer": None, "bias_quantizer": None}
    if g["rank"] == 1:
        d["dilation"] = 1
    else:
        d.update(in_height=g["H"], out_height=g["OH"], filt_height=g["KH"], stride_height=g["SH"], pad_top=g["PT"],
                 pad_bottom=g["PB"])
    return d


def hls4ml_config(layer: Layer) -> dict:
    return config(layer, Strategy="latency", ParallelizationFactor=1)


def emit(layer: Layer, x: list[str], y: str) -> str:
    g = _check(layer)
    t = layer.types
    dims = ", ".join(str(g[k]) for k in ("H", "W", "CI", "KH", "KW", "CO", "SH", "SW", "PT", "PL", "OH", "OW"))
    w = f"w_{layer.ident}_"
    return (aliases([("X", in_type(layer)), ("Wt", t["weight"]), ("B", t["bias"]), ("A", t["accum"]),
                     ("R", t["result"])])
            + f"ml4ep_layers::conv2d<X, Wt, B, A, R, {dims}>({x[0]}, {y}, {w}weight, {w}bias);\n")
