"""Keras 3 model -> ONNX through Keras's own exporter, for ``mi.compile(keras_model)``.

Keras 3 exports a model with ``model.export(path, format="onnx", input_signature=...)``: with the TensorFlow
backend through tf2onnx, with JAX through jax2onnx, with torch through torch's ONNX exporters (TorchScript when a
dimension is dynamic, dynamo when every shape is fixed). :func:`to_onnx` gives that export an input signature in
which the batch axis is dynamic (``None``) and the other axes are those of the example inputs (or of the model's
inputs), and describes how to run the model (``model.predict``) for the check :func:`ml4ep.infer.torch_import.verify`
makes. With the torch backend, where Keras's export fails (Keras 3.15 exports a dynamic batch through TorchScript,
which cannot trace its layer normalization) or its model does not compile or disagrees, the model (a
``torch.nn.Module`` there) goes through torch's own exporters: dynamo, then TorchScript (:func:`exporters`). Keras is
never imported here unless the model given is a Keras model.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import InputError, OptionalDependencyError
from .torch_import import ExportError, ExportInfo, _second_batch, _short

__all__ = ["exporters", "is_model", "to_onnx"]

log = logging.getLogger(__name__)

_BACKEND_NEEDS = {"tensorflow": "tf2onnx", "jax": "jax2onnx"}  # the converter Keras calls, per backend


def is_model(obj: object) -> bool:
    """Whether ``obj`` is a Keras 3 model (without importing Keras: if it is not imported, it is not one)."""
    keras = sys.modules.get("keras")
    model = getattr(keras, "Model", None) if keras is not None else None
    return isinstance(model, type) and isinstance(obj, model)


def exporters(model: Any) -> tuple[str, ...]:
    """The exporters :func:`to_onnx` takes for this model, in the order :func:`ml4ep.infer.compile` tries them:
    Keras's own ("keras-<backend>"); with the torch backend then torch's exporters called directly on the model (a
    ``torch.nn.Module`` there): Keras's export of a dynamic batch through TorchScript fails on some layers
    (LayerNormalization in Keras 3.15)."""
    import keras

    backend = keras.backend.backend()
    return (f"keras-{backend}", "dynamo", "torchscript") if backend == "torch" else (f"keras-{backend}",)


def to_onnx(model: Any, example_inputs: Any = None, dynamic_axes: str | dict | None = "batch", *,
            exporter: str | None = None, opset: int | None = None) -> tuple[onnx.ModelProto, ExportInfo]:
    """Export a built Keras 3 model to ONNX with ``model.export(..., format="onnx")``: ``(model, info)``.

    ``example_inputs``: what ``model.predict`` takes (an array, or a list/dict of arrays as the model's inputs are
    structured); by default random values of the shapes of the model's inputs with a batch of 2.
    ``dynamic_axes``: "batch" (axis 0 of every input), None (every shape fixed) or ``{input_name: {axis: name}}``
    (or ``{input_name: [axes]}``) over the ONNX input names (the Keras inputs' names). The check runs
    ``model.predict`` on the examples.
    """
    import keras

    cls = type(model).__name__
    major = int(str(keras.__version__).split(".")[0])
    if major < 3:
        raise InputError(f"{cls}: Keras {keras.__version__} models are not supported: Keras 3 is needed (its "
                         "model.export(format='onnx'))")
    backend = keras.backend.backend()
    if exporter is not None and exporter not in exporters(model):
        raise InputError(f"{cls}: a Keras model with the {backend} backend is exported by "
                         f"{' or '.join(exporters(model))}, not {exporter!r}")
    need = _BACKEND_NEEDS.get(backend)
    if need is not None:
        try:
            __import__(need)
        except ImportError as exc:
            raise OptionalDependencyError(f"{cls}: Keras exports a {backend}-backend model to ONNX through {need}; "
                                          f"install it with pip install {need}") from exc
    if not getattr(model, "built", False):
        raise InputError(f"{cls}: the Keras model is not built: give it an Input, or call it once, before compiling it")
    from keras.src.export.export_utils import get_input_signature

    try:
        sig = get_input_signature(model)
    except ValueError as exc:
        raise InputError(f"{cls}: {exc}") from exc
    call_struct = sig[0] if len(sig) == 1 else list(sig)  # what predict takes
    specs = keras.tree.flatten(sig)
    if example_inputs is None:
        arrays = _random_examples(specs)
    else:
        arrays = [np.asarray(keras.ops.convert_to_numpy(a)) for a in keras.tree.flatten(example_inputs)]
        if len(arrays) != len(specs):
            raise InputError(f"{cls}: example_inputs hold {len(arrays)} arrays, the model takes {len(specs)} inputs")
        for k, (a, s) in enumerate(zip(arrays, specs)):
            shape = tuple(s.shape) if s.shape is not None else None
            if shape is not None and (a.ndim != len(shape) or any(d is not None and d != n
                                                                   for d, n in zip(shape, a.shape))):
                raise InputError(f"{cls}: example input {k} has shape {a.shape}, the model's input {shape}")
    names = [getattr(s, "name", None) or f"input_{k}" for k, s in enumerate(specs)]
    axes = _axes(dynamic_axes, names, arrays, cls)
    new_specs = [keras.InputSpec(shape=tuple(None if a in axes.get(n, {}) else int(d) for a, d in enumerate(x.shape)),
                                 dtype=s.dtype, name=getattr(s, "name", None))
                 for n, x, s in zip(names, arrays, specs)]
    signature = keras.tree.pack_sequence_as(sig, new_specs)
    used = exporter or f"keras-{backend}"

    def predict(values: list[np.ndarray]) -> list[np.ndarray]:
        x = keras.tree.pack_sequence_as(call_struct, values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # predict's NumPy conversion of torch tensors
            out = model.predict(x, verbose=0)
        return [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(out)]

    if used in ("dynamo", "torchscript"):
        proto, info = _torch_export(model, call_struct, arrays, names, dynamic_axes, used, opset)
        given = dict(zip(names, arrays))  # inputs the export left out (unused) keep their example values
        info.reference = lambda f: predict([{**given, **f}[n] for n in names])
        return proto, info
    with tempfile.TemporaryDirectory(prefix="ml4ep-keras-") as tmp:
        path = Path(tmp) / f"{cls}.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporters' own deprecation and tracer warnings
                model.export(str(path), format="onnx", verbose=False, input_signature=signature,
                             **({} if opset is None else {"opset_version": opset}))
            proto = onnx.load(str(path))
        except Exception as exc:  # noqa: BLE001 - the exporters raise anything
            raise ExportError(f"{cls}: Keras could not export the model to ONNX ({used}): {_short(exc)}") from exc
    log.info("%s: exported by Keras (%s backend)", cls, backend)
    proto.graph.name = cls
    inits = {t.name for t in proto.graph.initializer}
    onnx_inputs = [i.name for i in proto.graph.input if i.name not in inits]
    if len(onnx_inputs) != len(arrays):
        raise ExportError(f"{cls}: the ONNX model Keras exported has {len(onnx_inputs)} inputs {onnx_inputs}, the "
                          f"model {len(arrays)}")
    feeds = dict(zip(onnx_inputs, arrays))
    batch_axes = {o: axes.get(n, {}) for o, n in zip(onnx_inputs, names)}
    examples = [feeds]
    second = _second_batch(feeds, batch_axes, onnx_inputs)
    if second is not None:
        examples.append(second)
    info = ExportInfo(used, cls, onnx_inputs, [o.name for o in proto.graph.output], examples,
                      lambda f: predict([f[n] for n in onnx_inputs]))
    return proto, info


def _torch_export(model: Any, call_struct: Any, arrays: list[np.ndarray], names: list[str],
                  dynamic_axes: str | dict | None, exporter: str, opset: int | None) -> tuple[onnx.ModelProto, ExportInfo]:
    """A torch-backend Keras model exported by torch's own exporter: a Keras model is a ``torch.nn.Module`` there,
    called here (in inference mode) on its inputs packed as it takes them."""
    import keras
    import torch

    from . import torch_import

    class KerasCall(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *flat):
            return self.model(keras.tree.pack_sequence_as(call_struct, list(flat)), training=False)

    was_training = model.training
    wrapper = KerasCall().eval()  # Keras layers take training=False; torch's flag only satisfies the exporter's check
    try:
        proto, info = torch_import.to_onnx(wrapper, tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays),
                                           dynamic_axes, exporter=exporter, opset=opset, input_names=names)
    finally:
        model.train(was_training)
    cls = type(model).__name__
    proto.graph.name = info.name = cls
    log.info("%s: exported by torch's %s exporter (as a torch module)", cls, exporter)
    return proto, info


def _random_examples(specs: list) -> list[np.ndarray]:
    """Inputs of the model's input shapes (batch 2, other free axes 3): normal floats, zero integers."""
    rng = np.random.default_rng(0)
    out = []
    for s in specs:
        shape = tuple(2 if k == 0 and d is None else 3 if d is None else int(d) for k, d in enumerate(s.shape))
        dt = np.dtype(str(s.dtype) if s.dtype is not None else "float32")
        out.append(rng.standard_normal(shape).astype(dt) if dt.kind == "f" else np.zeros(shape, dt))
    return out


def _axes(dynamic_axes: str | dict | None, names: list[str], arrays: list[np.ndarray],
          cls: str) -> dict[str, dict[int, str]]:
    if dynamic_axes is None:
        return {}
    if dynamic_axes == "batch":
        return {n: {0: "batch"} for n, a in zip(names, arrays) if a.ndim > 0}
    if not isinstance(dynamic_axes, dict):
        raise InputError(f'{cls}: dynamic_axes must be "batch", None or a dict {{input_name: {{axis: name}}}}, not '
                         f"{dynamic_axes!r}")
    unknown = [k for k in dynamic_axes if k not in names]
    if unknown:
        raise InputError(f"{cls}: dynamic_axes names {unknown} are not inputs of the model; its inputs are {names} "
                         "(Keras names the output axes itself)")
    rank = dict(zip(names, [a.ndim for a in arrays]))
    out = {}
    for k, v in dynamic_axes.items():
        d = dict(v) if isinstance(v, dict) else {int(a): f"{k}_dim_{int(a)}" for a in v}
        bad = [a for a in d if not -rank[k] <= int(a) < rank[k]]
        if bad:
            raise InputError(f"{cls}: dynamic_axes[{k!r}] names axes {bad} of an input of rank {rank[k]}")
        out[k] = {int(a) % rank[k]: str(nm) for a, nm in d.items()}
    return out
