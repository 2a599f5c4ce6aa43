"""Activations (ReLU, LeakyReLU, Sigmoid, Tanh) and Softmax as hls4ml 1.3 layers: layer.py's four functions
(docs/fpga.md). The C++ is ``cpp/activation.hpp`` (namespace ``ml4ep_hls``), bit for bit hls4ml's
``nnet_activation.h`` for the Vivado and Vitis backends (which share it) with io_parallel.

The layer: ``kind`` ``"Activation"`` with ``attrs["activation"]`` one of ``relu``, ``leaky_relu`` (``attrs["alpha"]``),
``sigmoid``, ``tanh``; or ``kind`` ``"Softmax"`` over a 1-D ``(n,)`` input (``attrs["axis"]`` -1). ``attrs["in_type"]``
is the producer's result type. Optional ``attrs``: ``"table_size"`` (Sigmoid, Tanh, Softmax; default 1024) and
``"implementation"`` (Softmax: ``stable`` (default), ``latency``, ``legacy``, ``argmax``).

What hls4ml 1.3 does (and ml4ep's defaults, equal to hls4ml's):

- relu: ``x > 0 ? x : 0`` converted to ``result``. leaky_relu: ``alpha`` is written into the call as Python's
  ``str(float)``, converted to ``param_t`` (``Precision['param']``; hls4ml's default with a fixed model precision is
  the model precision: ml4ep's ``param`` default is ``precision``), ``x > 0 ? x : alpha * x`` (exact) to ``result``.
- sigmoid / tanh: a table of ``table_size`` (N = 1024) entries of ``table_t`` (``ap_fixed<18,8>``, TRN, WRAP)
  filled at run time in float: entry i = f(float(R*(i - N/2)/N)) with R = 16 and f = ``1.0/(1+std::exp(-x))``
  (sigmoid) or R = 8 and f = ``std::tanh`` on float (tanh); index = ``int(x*N/16) + 8*N/16`` (sigmoid),
  ``int(x*N/8) + 4*N/8`` (tanh) in ap_fixed's arithmetic (exact product, the division by the int truncating toward
  zero at x's fraction bits, int() truncating toward zero, 32-bit wrap), clamped to [0, N-1].
- softmax ``stable`` (hls4ml's default): ``d_i = max(x) - x_i`` in ``inp_norm_t`` (``ap_ufixed<W-1,I-1>`` for a
  signed input ``ap_fixed<W,I>``, ``ap_ufixed<W,I>`` for an unsigned one), ``e_i = exp_table[top bits of d_i]``
  (``exp_table_t`` ``ap_fixed<18,8,AP_RND,AP_SAT>``, entry i = ``std::exp(-float(value whose top log2(N) bits are
  i))``) converted to ``accum_t``, summed by a balanced tree in ``accum_t``, the sum converted to ``inv_inp_t``
  (``ap_fixed<18,8,AP_RND,AP_SAT>``) whose top bits index ``inv_table_t`` (``ap_fixed<18,8,AP_RND,AP_SAT>``, entry =
  ``1/float(value)``), ``y_i = e_i * inv`` (exact) to ``result``. ``accum_t``'s default in hls4ml is the model's
  accumulator precision (``get_precision(layer, 'accum')``; its declared 18,8 default is never used): ml4ep's
  ``accum``. Table sizes: ``table_size`` (1024) lowered to ``2**min(input width, inv_table width)``
  (``fix_softmax_table_size``), the exp table further to ``2**(inp_norm width)`` (the softmax template).
  ``latency``: the exp table indexed by the top bits of x itself (``exp(+x)``). ``legacy``: tables of
  ``nnet::activ_config::table_t`` (``ap_fixed<18,8>``, not configurable in hls4ml 1.3), ``y_i = 1/sum_j
  exp(x_j - x_i)`` by products with the table sizes. ``argmax``: 1 at the first maximum.

Configuration keys (hls4ml 1.3): ``Precision`` ``result``, ``param`` (LeakyReLU), ``accum`` (Softmax) are read from
``HLSConfig['LayerName'][name]['Precision']``; the table types are NOT (hls4ml 1.3 never reads ``Precision['table']``,
``['exp_table']``, ... although its ``config_from_*`` helpers write them): they are set by the layer keys ``table_t``,
``exp_table_t``, ``inv_table_t``, ``inv_inp_t``, ``inp_norm_t``. Both spellings are written here. ``TableSize``, ``Implementation``, ``ExpTableSize``,
``InvTableSize`` pin the sizes (which also turns hls4ml's own table-size fix off: the sizes written are its result).
"""

from __future__ import annotations

import math

import numpy as np

from ..._native.fixed import FixedType, parse
from ...errors import InputError
from .layer import Layer

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")
SOFTMAX_IMPLEMENTATIONS = ("stable", "latency", "legacy", "argmax")
TABLE = FixedType(18, 8)  # hls4ml's table_t default (Activation), and nnet::activ_config::table_t (softmax legacy)
SOFTMAX_TABLE = FixedType(18, 8, True, "RND", "SAT")  # exp_table_t, inv_table_t, inv_inp_t defaults
TABLE_SIZE = 1024
MAX_TABLE_SIZE = 1 << 20

__all__ = ["types", "hls4ml_layer", "hls4ml_config", "emit", "softmax_sizes", "ACTIVATIONS",
           "SOFTMAX_IMPLEMENTATIONS"]


def _what(layer: Layer) -> str:
    return f"{layer.kind} layer {layer.name!r}"


def _activation(layer: Layer) -> str:
    if layer.kind == "Softmax":
        return "softmax"
    if layer.kind != "Activation":
        raise InputError(f"{_what(layer)}: not an activation (Activation or Softmax)")
    act = layer.attrs.get("activation")
    if act not in ACTIVATIONS:
        raise InputError(f"{_what(layer)}: activation {act!r} is not supported (one of {', '.join(ACTIVATIONS)})")
    return act


def _in_type(layer: Layer) -> FixedType:
    t = layer.attrs.get("in_type")
    if t is None:
        raise InputError(f"{_what(layer)}: attrs['in_type'] (the producer's result type) is missing")
    return parse(t, f"{_what(layer)} input type")


def _implementation(layer: Layer) -> str:
    impl = layer.attrs.get("implementation", "stable")
    if impl not in SOFTMAX_IMPLEMENTATIONS:
        raise InputError(f"{_what(layer)}: softmax implementation {impl!r} is not supported (one of "
                         f"{', '.join(SOFTMAX_IMPLEMENTATIONS)})")
    return impl


def _table_size(layer: Layer) -> int:
    n = layer.attrs.get("table_size", TABLE_SIZE)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= int(n) <= MAX_TABLE_SIZE:
        raise InputError(f"{_what(layer)}: table_size must be an integer from 1 to {MAX_TABLE_SIZE}, not {n!r}")
    return int(n)


def _alpha(layer: Layer) -> float:
    a = layer.attrs.get("alpha")
    if a is None or isinstance(a, bool) or not isinstance(a, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(a)):
        raise InputError(f"{_what(layer)}: leaky_relu needs a finite attrs['alpha'], not {a!r}")
    return float(a)


def _softmax_n(layer: Layer) -> int:
    shape = layer.in_shapes[0] if layer.in_shapes else layer.out_shape
    if len(shape) != 1 or layer.attrs.get("axis", -1) not in (-1, 0):
        raise InputError(f"{_what(layer)}: softmax over the last axis of a 1-D (n,) input only (shape {shape}, "
                         f"axis {layer.attrs.get('axis', -1)})")
    return int(shape[0])


def types(layer: Layer, precision, accum) -> dict[str, FixedType]:
    """The types of the layer with ml4ep's defaults (equal to hls4ml 1.3's, see the module's docstring)."""
    precision = parse(precision)
    act = _activation(layer)
    out = {"result": precision}
    if act == "leaky_relu":
        out["param"] = precision
    elif act in ("sigmoid", "tanh"):
        out["table"] = TABLE
    elif act == "softmax":
        _softmax_n(layer)
        impl = _implementation(layer)
        if impl in ("stable", "latency"):
            out.update(exp_table=SOFTMAX_TABLE, inv_table=SOFTMAX_TABLE, inv_inp=SOFTMAX_TABLE,
                       accum=parse(accum) if accum is not None else precision)
        if impl == "stable":
            t = _in_type(layer)
            if t.signed and t.width < 2:
                raise InputError(f"{_what(layer)}: a 1-bit signed input has no inp_norm type (ap_ufixed<W-1,I-1>)")
            out["inp_norm"] = FixedType(t.width - 1, t.integer - 1, False) if t.signed else \
                FixedType(t.width, t.integer, False)
    return out


def softmax_sizes(layer: Layer) -> tuple[int, int]:
    """``(exp_table_size, inv_table_size)`` of a Softmax as hls4ml 1.3 derives them from ``table_size`` (checked)."""
    impl = _implementation(layer)
    t, in_t = layer.types, _in_type(layer)
    requested = _table_size(layer)
    inv_width = t["inv_table"].width if "inv_table" in t else SOFTMAX_TABLE.width
    size = min(requested, 2 ** min(in_t.width, inv_width))  # fix_softmax_table_size
    exp_size, inv_size = size, size
    if impl == "stable":
        exp_size = min(size, 2 ** t["inp_norm"].width)  # the softmax config template (2^(W-1) for a signed input)
    if impl in ("stable", "latency"):
        if size & (size - 1) or size < 2:
            raise InputError(f"{_what(layer)}: the {impl} softmax indexes its tables by the top bits of a value: "
                             f"table_size must be a power of two (at least 2), not {size}")
        bits = size.bit_length() - 1
        if bits > t["inv_inp"].width:
            raise InputError(f"{_what(layer)}: inv table of {size} entries needs an inv_inp type of at least {bits} "
                             f"bits, not {t['inv_inp']}")
    return exp_size, inv_size


def _check(layer: Layer) -> str:
    act = _activation(layer)
    t = layer.types
    in_t = _in_type(layer)
    if act == "leaky_relu":
        _alpha(layer)
        if in_t.width + t["param"].width > 63:
            raise InputError(f"{_what(layer)}: input {in_t} times param {t['param']} exceeds 63 bits")
    elif act in ("sigmoid", "tanh"):
        _table_size(layer)
    elif act == "softmax":
        _softmax_n(layer)
        softmax_sizes(layer)
        if _implementation(layer) in ("stable", "latency") and t["accum"].width + t["inv_table"].width > 63:
            raise InputError(f"{_what(layer)}: accum {t['accum']} times inv_table {t['inv_table']} exceeds 63 bits")
    return act


def hls4ml_layer(layer: Layer) -> dict:
    act = _activation(layer)
    base = {"name": layer.ident, "inputs": list(layer.inputs)}
    if act == "softmax":
        return {"class_name": "Softmax", **base, "activation": "softmax", "axis": -1}
    if act == "leaky_relu":
        return {"class_name": "LeakyReLU", **base, "activation": "LeakyReLU", "activ_param": _alpha(layer)}
    return {"class_name": "Activation", **base, "activation": act}


def hls4ml_config(layer: Layer) -> dict:
    act = _check(layer)
    t = layer.types
    prec = {"result": t["result"].hls4ml()}
    cfg: dict = {"Precision": prec}
    if act == "leaky_relu":
        prec["param"] = t["param"].hls4ml()
    elif act in ("sigmoid", "tanh"):
        prec["table"] = t["table"].hls4ml()
        cfg["table_t"] = t["table"].hls4ml()
        cfg["TableSize"] = _table_size(layer)
    elif act == "softmax":
        impl = _implementation(layer)
        exp_size, inv_size = softmax_sizes(layer)
        for key in ("exp_table", "inv_table", "inv_inp", "inp_norm"):
            if key in t:
                prec[key] = t[key].hls4ml()
                cfg[f"{key}_t"] = t[key].hls4ml()
        if "accum" in t:
            prec["accum"] = t["accum"].hls4ml()
        cfg.update(Implementation=impl, TableSize=inv_size, ExpTableSize=exp_size, InvTableSize=inv_size)
    return cfg


def emit(layer: Layer, x: list[str], y: str) -> str:
    """One sample: ``ml4ep_hls::<activation><types...>(x, y[, n])`` of cpp/activation.hpp."""
    act = _check(layer)
    t = layer.types
    lines = [f"using In = {_in_type(layer).cpp()};", f"using Out = {t['result'].cpp()};"]
    n = int(np.prod(layer.out_shape)) if layer.out_shape else 1
    if act == "relu":
        lines.append(f"ml4ep_hls::relu<In, Out>({x[0]}, {y}, {n});")
    elif act == "leaky_relu":
        lines += [f"using Param = {t['param'].cpp()};",
                  f"ml4ep_hls::leaky_relu<In, Param, Out>({x[0]}, {_alpha(layer)!r}, {y}, {n});"]
    elif act in ("sigmoid", "tanh"):
        lines += [f"using Table = {t['table'].cpp()};",
                  f"ml4ep_hls::{act}<In, Out, Table, {_table_size(layer)}u>({x[0]}, {y}, {n});"]
    else:
        impl = _implementation(layer)
        exp_size, inv_size = softmax_sizes(layer)
        n = _softmax_n(layer)
        if impl == "argmax":
            lines.append(f"ml4ep_hls::softmax_argmax<In, Out, {n}>({x[0]}, {y});")
        elif impl == "legacy":
            lines += [f"using Table = {TABLE.cpp()};",
                      f"ml4ep_hls::softmax_legacy<In, Out, Table, {exp_size}u, {inv_size}u, {n}>({x[0]}, {y});"]
        else:
            lines += [f"using ExpTable = {t['exp_table'].cpp()};", f"using InvTable = {t['inv_table'].cpp()};",
                      f"using Accum = {t['accum'].cpp()};", f"using InvInp = {t['inv_inp'].cpp()};"]
            if impl == "stable":
                lines += [f"using InpNorm = {t['inp_norm'].cpp()};",
                          f"ml4ep_hls::softmax_stable<In, Out, ExpTable, InvTable, Accum, InvInp, InpNorm, "
                          f"{exp_size}u, {inv_size}u, {n}>({x[0]}, {y});"]
            else:
                lines.append(f"ml4ep_hls::softmax_latency<In, Out, ExpTable, InvTable, Accum, InvInp, {exp_size}u, "
                             f"{inv_size}u, {n}>({x[0]}, {y});")
    return "\n".join(lines) + "\n"
