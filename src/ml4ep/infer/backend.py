"""ml4ep as an ONNX backend (``onnx.backend.base``): the interface ``onnx.backend.test.BackendTest`` and the
conformance runner (``benchmarks/onnx_conformance.py``) drive.

>>> from ml4ep.infer.backend import Backend
>>> rep = Backend.prepare(model)           # compiles (cached by content)
>>> outputs = rep.run([x, ...])            # graph inputs in order (initializers excluded); a list of arrays
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend as _Backend
from onnx.backend.base import BackendRep as _BackendRep

from ..errors import InputError
from .runtime import CompiledModel


class BackendRep(_BackendRep):
    """A compiled model behind the backend interface: ``run`` takes the graph's inputs in order (a list, a
    tuple, one array, or a dict by name) and returns the outputs in graph order."""

    def __init__(self, compiled: CompiledModel, graph_inputs: list[str], graph_outputs: list[str]):
        self.compiled = compiled
        self.graph_inputs = graph_inputs
        self.graph_outputs = graph_outputs

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
                inputs = [inputs]
            if len(inputs) != len(self.graph_inputs):
                raise InputError(f"model '{self.compiled.name}': {len(self.graph_inputs)} inputs "
                                 f"({', '.join(self.graph_inputs)}), got {len(inputs)}")
            feeds = dict(zip(self.graph_inputs, inputs))
        # inputs the compiler found unused (or folded) are not inputs of the compiled model
        outs = self.compiled.run({n: np.asarray(feeds[n]) for n in self.compiled.input_names})
        return tuple(outs[n] for n in self.graph_outputs)


class Backend(_Backend):
    """``prepare`` compiles a model with :func:`ml4ep.infer.compile`; CPU only."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        from . import check

        return cls.supports_device(device) and not check(model)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> BackendRep:
        from . import compile as compile_model

        if not cls.supports_device(device):
            raise InputError(f"ml4ep runs on the CPU, not on device {device!r}")
        initializers = {t.name for t in model.graph.initializer}
        graph_inputs = [i.name for i in model.graph.input if i.name not in initializers]
        compiled = compile_model(model, name=kwargs.get("name"))
        return BackendRep(compiled, graph_inputs, [o.name for o in model.graph.output])

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU", outputs_info=None, **kwargs: Any):
        """One node as a model of its own: input types and shapes from the arrays given."""
        arrays = [np.asarray(a) for a in inputs]
        names = [n for n in node.input if n]
        if len(names) != len(arrays):
            raise InputError(f"node {node.name or node.op_type}: {len(names)} inputs, got {len(arrays)} arrays")
        vin = [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for n, a in zip(names, arrays)]
        vout = [onnx.helper.make_empty_tensor_value_info(n) for n in node.output if n]
        graph = onnx.helper.make_graph([node], f"node_{node.op_type}", vin, vout)
        opset = kwargs.get("opset_version", onnx.defs.onnx_opset_version())
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        model = onnx.shape_inference.infer_shapes(model)
        return cls.prepare(model, device, **kwargs).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().startswith("CPU")


prepare = Backend.prepare
run_model = Backend.run_model
run_node = Backend.run_node
supports_device = Backend.supports_device
