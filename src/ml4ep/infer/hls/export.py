"""An ONNX model as an hls4ml project: ``ModelGraph.from_layer_list`` over ml4ep's own lowered graph (docs/fpga.md).

The layers come from :func:`ml4ep.infer.hls.layers.from_graph` (the same list the bit-exact emulation is generated
from), and every fixed-point type of every layer is pinned in the configuration, so hls4ml infers none of them and
its C-simulation computes what ml4ep's emulation computes.
"""

from __future__ import annotations

import logging
import os

from ..._optional import require
from ...errors import InputError
from .layers import Design, family

log = logging.getLogger(__name__)

BACKENDS = ("Vivado", "Vitis")  # the backends whose arithmetic the emulation reproduces (and tests)
IO_TYPES = ("io_parallel",)


def config(design: Design, output_dir: str, project_name: str, backend: str, io_type: str, reuse_factor: int,
           precision: str) -> dict:
    """The hls4ml configuration dictionary of a design."""
    hls4ml = require("hls4ml", "fpga")
    cfg = hls4ml.utils.config.create_config(output_dir=str(output_dir), project_name=project_name, backend=backend,
                                            io_type=io_type)
    cfg["HLSConfig"] = {
        "Model": {"Precision": precision, "ReuseFactor": int(reuse_factor), "Strategy": "Latency",
                  "BramFactor": 1_000_000_000, "TraceOutput": False},
        "LayerName": {},
    }
    for lay in design.layers:
        entry = family(lay.kind).hls4ml_config(lay)
        if entry:
            entry.setdefault("ReuseFactor", int(reuse_factor))
            cfg["HLSConfig"]["LayerName"][lay.ident] = entry
    return cfg


def layer_list(design: Design) -> list[dict]:
    return [family(lay.kind).hls4ml_layer(lay) for lay in design.layers]


def to_hls4ml(design: Design, output_dir, *, project_name: str = "myproject", backend: str = "Vitis",
              io_type: str = "io_parallel", reuse_factor: int = 1):
    """An ``hls4ml.model.ModelGraph`` of ``design`` writing its project into ``output_dir``."""
    hls4ml = require("hls4ml", "fpga")
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: ml4ep exports to hls4ml's {' and '.join(BACKENDS)} backends (the ones "
                         "whose fixed-point arithmetic its emulation reproduces)")
    if io_type not in IO_TYPES:
        raise InputError(f"io_type {io_type!r}: ml4ep exports io_parallel designs")
    if int(reuse_factor) < 1:
        raise InputError(f"reuse_factor must be at least 1, not {reuse_factor}")
    first = design.layers[0].types["result"]
    cfg = config(design, os.fspath(output_dir), project_name, backend, io_type, reuse_factor, first.hls4ml())
    layers = layer_list(design)
    inputs = [design.inputs[i] for i in design.inputs]
    outputs = [design.outputs[o] for o in design.outputs]
    log.info("hls4ml project %s: %d layers, backend %s", output_dir, len(layers), backend)
    return hls4ml.model.ModelGraph.from_layer_list(cfg, layers, inputs=inputs, outputs=outputs)
