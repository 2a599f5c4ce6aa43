"""The layer of ml4ep.infer.hls: one hls4ml layer, as the lowered graph gives it (docs/fpga.md).

:mod:`ml4ep.infer.hls.layers` turns a lowered graph into a list of :class:`Layer` (channels-last shapes, weights in
hls4ml's layouts, every fixed-point type resolved); each layer family has one module (``dense.py``, ``conv.py``,
``pooling.py``, ``activation.py``, ``merge.py``) with the same four functions:

- ``types(layer, precision, accum) -> dict[str, FixedType]``: the type variables hls4ml has for this layer
  (``"weight"``, ``"bias"``, ``"accum"``, ``"result"``, ``"table"``, ...) with ml4ep's defaults from the model's
  ``precision`` and ``accum``; the user's per-layer settings then replace some of them;
- ``hls4ml_layer(layer) -> dict``: the layer dict of ``hls4ml.model.ModelGraph.from_layer_list``;
- ``hls4ml_config(layer) -> dict``: the layer's ``HLSConfig['LayerName'][name]`` entry (every type pinned, so
  hls4ml infers nothing);
- ``emit(layer, x, y) -> str``: C++ statements computing one sample, ``x`` the names of the input buffers
  (``const int64_t*``: raw values of the producers' ``result`` types), ``y`` the output buffer (``int64_t*``), the
  weights as ``w_<ident>_<key>`` (``const int64_t*``, raw values of ``types[key]``), helpers from
  ``cpp/<family>.hpp``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..._native.fixed import FixedType


@dataclass
class Layer:
    kind: str  # hls4ml's class name: Dense, Conv1D, Conv2D, BatchNormalization, MaxPooling2D, Activation, Softmax, ...
    name: str  # the ONNX node's name (the key of per-layer settings)
    ident: str  # a C++ identifier and hls4ml layer name made from it
    inputs: list[str]  # idents of the producing layers (the input layer's ident for the graph input)
    in_shapes: list[tuple[int, ...]]  # per input, channels-last, without the batch axis
    out_shape: tuple[int, ...]  # channels-last, without the batch axis
    attrs: dict = field(default_factory=dict)  # family-specific (activation, alpha, kernel, strides, pads, axis, ...)
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # float32 in hls4ml's layouts
    types: dict[str, FixedType] = field(default_factory=dict)  # resolved

    @property
    def result(self) -> FixedType:
        return self.types["result"]
