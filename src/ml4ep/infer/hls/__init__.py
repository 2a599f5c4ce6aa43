"""ml4ep.infer.hls: ONNX models as hls4ml designs, and their bit-exact fixed-point emulation (docs/fpga.md).

>>> hls = mi.to_hls4ml("model.onnx", "prj/", precision="ap_fixed<16,6>", accum="ap_fixed<32,12>")  # doctest: +SKIP
>>> q = mi.compile("model.onnx", precision="ap_fixed<16,6>", accum="ap_fixed<32,12>")            # doctest: +SKIP

One path, top to bottom: the lowered graph (:func:`ml4ep.infer.lower`) -> :mod:`.layers` (hls4ml layers,
channels-last, every fixed-point type resolved) -> either :mod:`.export` (hls4ml's ``ModelGraph``) or
:mod:`.codegen` (C++ computing what hls4ml's C-simulation computes). Each layer family has one module (``dense``,
``conv``, ``pooling``, ``activation``, ``merge``, ``reshape``) and one C++ header under ``cpp/``.
"""

from __future__ import annotations

import json
import os

from ..onnx_import import ModelLike

__all__ = ["design", "settings_key", "to_hls4ml"]


def design(model: ModelLike, precision="ap_fixed<16,6>", accum=None, layer_precision=None, name=None):
    """``(graph, Design)``: the lowered graph and its hls4ml layers."""
    from ..pipeline import lower
    from .layers import from_graph

    g, _plan = lower(model, name)
    return g, from_graph(g, precision, accum, layer_precision)


def settings_key(precision, accum, layer_precision) -> str:
    """The fixed-point settings as text, for the build cache's key."""
    return json.dumps([str(precision), str(accum), {str(k): {str(a): str(b) for a, b in v.items()}
                                                   for k, v in (layer_precision or {}).items()}], sort_keys=True)


def to_hls4ml(model: ModelLike, output_dir: str | os.PathLike, *, precision: str = "ap_fixed<16,6>",
              accum: str | None = None, layer_precision: dict | None = None, backend: str = "Vitis",
              io_type: str = "io_parallel", reuse_factor: int = 1, project_name: str = "myproject"):
    """An ONNX model (path, bytes or ``ModelProto``) as an ``hls4ml.model.ModelGraph`` whose project goes to
    ``output_dir``: ``hls.compile()``, ``hls.predict(x)`` (C-simulation; inputs in the ONNX layout, flattened per
    sample), ``hls.build()`` with the vendor tools.

    ``precision`` is the type of the inputs, weights, biases and layer results, ``accum`` the accumulators' (default:
    ``precision``), spelled as hls4ml spells them (``ap_fixed<W,I[,Q[,O]]>``, ``fixed<...>``, ``ap_int<W>``);
    ``layer_precision`` maps ONNX node names to ``{"weight", "bias", "accum", "result", ...}`` (the types the layer
    has; tables for Sigmoid/Tanh/Softmax). Nodes outside hls4ml's subset are refused all at once. ``mi.compile`` with
    the same settings gives the bit-exact emulation of this design.
    """
    from .export import to_hls4ml as export

    _g, d = design(model, precision, accum, layer_precision)
    return export(d, output_dir, project_name=project_name, backend=backend, io_type=io_type,
                  reuse_factor=reuse_factor)
