"""ml4ep.infer: ONNX models compiled into standalone C++ inference code.

The pipeline, top to bottom::

    ONNX file -> onnx_import (Graph IR) -> passes: fold (shapes, constants), fusion, dead code,
    memory plan -> codegen (<name>.hpp + <name>.bin) -> build (g++, cached) -> runtime (Python session over a tiny extension module)

This module holds the public API only: :func:`compile`, :func:`compile_many` and :func:`lower` (defined in
:mod:`ml4ep.infer.pipeline`, which runs the steps above), :func:`check`, :func:`supported_operators`,
:func:`partially_supported_operators`, and the models they give (:class:`CompiledModel`, from
:mod:`ml4ep.infer.runtime`; :class:`SpecializingModel`, from :mod:`ml4ep.infer.specialize`). The compiler call, the
build cache and the name sanitiser are ml4ep's native build layer, shared with ml4ep.bdt and the benchmarks
(:mod:`ml4ep._native`).

>>> import ml4ep.infer as mi
>>> model = mi.compile("model.onnx")    # doctest: +SKIP
>>> y = model(x)                         # doctest: +SKIP
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import UnsupportedOperatorError
from . import specialize
from .onnx_import import ModelLike, load_proto
from .pipeline import compile, compile_many, lower  # noqa: A004 - compile is the API's name, as torch.compile
from .runtime import CompiledModel
from .specialize import SpecializingModel

__all__ = ["compile", "compile_many", "check", "to_hls4ml", "supported_operators", "partially_supported_operators", "CompiledModel", "SpecializingModel", "Problem", "lower"]


def to_hls4ml(model: ModelLike, output_dir, **kwargs):
    """An ONNX model as an hls4ml ``ModelGraph`` (:func:`ml4ep.infer.hls.to_hls4ml`, docs/fpga.md); ``mi.compile``
    with the same ``precision``, ``accum`` and ``layer_precision`` gives its bit-exact emulation."""
    from .hls import to_hls4ml as export

    return export(model, output_dir, **kwargs)


class Problem(NamedTuple):
    """A node ml4ep cannot compile."""

    node: str
    op_type: str
    reason: str

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op_type}): {self.reason}"


def supported_operators() -> list[str]:
    """ONNX operator types ml4ep compiles in every variant the ONNX node tests exercise, sorted (the claim is
    checked against those tests by ``benchmarks/onnx_conformance.py``). Operators without a kernel of their own
    but with an ONNX function body compile through it; see also :func:`partially_supported_operators`."""
    from . import ops

    return [o for o in ops.supported() if o != "SymConst"]


def partially_supported_operators() -> dict[str, str]:
    """Operators ml4ep compiles except for some variants (refused by :func:`check`): operator -> what is missing."""
    from . import ops

    return ops.partial()


def check(model: ModelLike, device: str | None = None) -> list[Problem]:
    """Everything in the model ml4ep cannot compile, all at once; empty when it compiles.

    ``device="cuda"`` (or "cuda-host"; default ``$ML4EP_DEVICE``, else "cpu") adds what the CUDA code refuses: operators without CUDA code, variants it
    lacks, data types it does not handle, outputs whose size depends on the data. For a model with shape arguments
    as graph inputs (see :mod:`ml4ep.infer.specialize`), the nodes reading them are checked once their values are
    known, at run time.
    """
    from .pipeline import _device

    kind = _device(device)[0]
    proto, _ = load_proto(model)
    try:
        g, _plan = lower(proto)
        if kind != "cpu":
            from .cuda.codegen import problems

            found = problems(g)
            if found:
                raise UnsupportedOperatorError(found)
    except UnsupportedOperatorError as exc:
        problems = [Problem(*p) for p in exc.problems]
        params = specialize.shape_inputs(proto)
        if params:
            from .onnx_import import node_names

            idx = specialize.late_nodes(proto, params)
            late = {nm for k, nm in enumerate(node_names(proto.graph)) if k in idx}
            problems = [p for p in problems if p.node.split("/")[0] not in late]  # expanded nodes: a/b
        return problems
    return []
