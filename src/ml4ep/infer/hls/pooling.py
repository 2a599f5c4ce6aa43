"""Max/AveragePooling1D/2D and their global forms as hls4ml 1.3 computes them (io_parallel): layer.py's four functions.

What hls4ml generates (``templates/vitis/nnet_utils/nnet_pooling.h``, arithmetic equal to the Vivado one):
``pooling{1,2}d_cl`` slides the window over the padded map from the top-left corner in steps of the stride while
the window fits (floor mode), filling padded cells with ``pad_val``; ``pool_op`` returns ``accum_t``, assigned to
``result_t``:

- Max: the largest input value, ``y = result_t(accum_t(max))``. The padding value is the input type's bit pattern
  100..0: its minimum for a signed type (the padding never wins), but 2^(W-1) raw for an unsigned one (hls4ml
  lets it win); reproduced as is.
- Average: ``accum_t acc = 0; acc += x`` over the window (each sum converted to ``accum_t``: quantised and
  overflowed at every step; padding cells are 0), then ``acc /= n`` with ``n`` an ``unsigned``: ap_fixed's division
  by ``ap_fixed<32,32,false>(n)`` divides the raw value, truncating towards zero, and keeps the fraction bits;
  ``n`` is the number of window cells inside the map, or the window's size with ``count_pad`` (ONNX's
  ``count_include_pad``).
- Global pooling: one window over the whole map (``global_pooling{1,2}d_cl``), the same ``pool_op``.

Types: ``accum`` (the model's accum by default; hls4ml's default is the model's precision), ``result``.
A window entirely in the padding (pads >= kernel) would divide by zero in hls4ml: refused. ONNX's ``ceil_mode``
and dilations are refused by the driver; the output shape must be hls4ml's floor-mode shape.
"""

from __future__ import annotations

from ..._native.fixed import FixedType
from .dense import aliases, check_exact, config, fail, in_type, mag
from .layer import Layer


def types(layer: Layer, precision: FixedType, accum: FixedType) -> dict[str, FixedType]:
    return {"accum": accum, "result": precision}


def _geometry(layer: Layer) -> dict:
    kind = layer.kind
    glob = kind.startswith("Global")
    op = "Max" if "MaxPooling" in kind else "Average" if "AveragePooling" in kind else None
    rank = 1 if kind.endswith("1D") else 2 if kind.endswith("2D") else 0
    if op is None or not rank:
        raise KeyError(kind)
    if layer.attrs.get("op", op) != op:
        raise fail(layer, f"attrs['op'] {layer.attrs.get('op')!r} contradicts the kind")
    if len(layer.in_shapes) != 1 or len(layer.in_shapes[0]) != rank + 1:
        raise fail(layer, f"a {kind} takes a map of rank {rank + 1} (channels last), not {layer.in_shapes}")
    shape = [int(s) for s in layer.in_shapes[0]]
    c = shape[-1]
    h, w = (1, shape[0]) if rank == 1 else (shape[0], shape[1])
    if glob:
        g = dict(H=h, W=w, KH=h, KW=w, SH=1, SW=1, PT=0, PB=0, PL=0, PR=0, count_pad=False)
        if tuple(int(s) for s in layer.out_shape) not in ((c,), (*([1] * rank), c)):
            raise fail(layer, f"output shape {tuple(layer.out_shape)} is not ({c},)")
    else:
        a = layer.attrs
        k = [int(v) for v in a.get("kernel", [])]
        strides = [int(v) for v in a.get("strides", k)]
        pads = [int(v) for v in a.get("pads", [0] * 2 * rank)]
        if len(k) != rank or len(strides) != rank or len(pads) != 2 * rank:
            raise fail(layer, f"kernel {k}, strides {strides}, pads {pads} do not fit a {kind}")
        if min(k) < 1 or min(strides) < 1 or min(pads) < 0:
            raise fail(layer, f"kernel {k}, strides {strides}, pads {pads}: sizes and strides >= 1, pads >= 0")
        if any(p >= k[i % rank] for i, p in enumerate(pads)):
            raise fail(layer, f"pads {pads} not smaller than the kernel {k}: a window could lie in the padding only "
                              "(hls4ml divides by zero there)")
        if a.get("ceil_mode"):
            raise fail(layer, "ceil_mode is not supported by hls4ml's pooling layers")
        if a.get("dilations") is not None and any(int(d) != 1 for d in a["dilations"]):
            raise fail(layer, "dilations are not supported by hls4ml's pooling layers")
        if rank == 1:
            g = dict(H=1, W=w, KH=1, KW=k[0], SH=1, SW=strides[0], PT=0, PB=0, PL=pads[0], PR=pads[1])
        else:
            g = dict(H=h, W=w, KH=k[0], KW=k[1], SH=strides[0], SW=strides[1], PT=pads[0], PB=pads[2], PL=pads[1],
                     PR=pads[3])
        g["count_pad"] = op == "Average" and bool(int(a.get("count_include_pad", 0)))
    g["OH"] = (g["H"] + g["PT"] + g["PB"] - g["KH"]) // g["SH"] + 1
    g["OW"] = (g["W"] + g["PL"] + g["PR"] - g["KW"]) // g["SW"] + 1
    if not glob:
        want = (g["OW"], c) if rank == 1 else (g["OH"], g["OW"], c)
        if g["OH"] < 1 or g["OW"] < 1 or tuple(int(s) for s in layer.out_shape) != want:
            raise fail(layer, f"output shape {tuple(layer.out_shape)} is not hls4ml's {want} (floor((in + pads - "
                              "kernel) / stride) + 1)")
    g.update(C=c, rank=rank, op=op, glob=glob)
    return g


def _check(layer: Layer) -> dict:
    g = _geometry(layer)
    x, a = in_type(layer), layer.types["accum"]
    if g["op"] == "Average" and not (a.overflow == "WRAP" and x.frac <= a.frac):
        fm = max(a.frac, x.frac)  # the sums are exact values, converted at each step
        check_exact(layer, "acc + x", (mag(a) << (fm - a.frac)) + (mag(x) << (fm - x.frac)))
    return g


def hls4ml_layer(layer: Layer) -> dict:
    g = _check(layer)
    d = {"class_name": layer.kind, "name": layer.ident, "inputs": list(layer.inputs), "data_format": "channels_last",
         "n_filt": g["C"]}
    if g["glob"]:
        if g["rank"] == 1:
            d["n_in"] = g["W"]
        else:
            d.update(in_height=g["H"], in_width=g["W"])
        return d
    if g["rank"] == 1:
        d.update(n_in=g["W"], n_out=g["OW"], pool_width=g["KW"], stride_width=g["SW"], pad_left=g["PL"],
                 pad_right=g["PR"])
    else:
        d.update(in_height=g["H"], in_width=g["W"], out_height=g["OH"], out_width=g["OW"], pool_height=g["KH"],
                 pool_width=g["KW"], stride_height=g["SH"], stride_width=g["SW"], pad_top=g["PT"],
                 pad_bottom=g["PB"], pad_left=g["PL"], pad_right=g["PR"])
    d["count_pad"] = g["count_pad"]
    return d


def hls4ml_config(layer: Layer) -> dict:
    return config(layer)


def emit(layer: Layer, x: list[str], y: str) -> str:
    g = _check(layer)
    t = layer.types
    flags = f"{'true' if g['op'] == 'Max' else 'false'}, {'true' if g['count_pad'] else 'false'}"
    dims = ", ".join(str(g[k]) for k in ("H", "W", "C", "KH", "KW", "SH", "SW", "PT", "PL", "OH", "OW"))
    return (aliases([("X", in_type(layer)), ("A", t["accum"]), ("R", t["result"])])
            + f"ml4ep_layers::pool2d<X, A, R, {flags}, {dims}>({x[0]}, {y});\n")
