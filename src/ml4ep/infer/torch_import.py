"""PyTorch ``nn.Module`` -> ONNX, for ``mi.compile(module, example_inputs=(x,))``.

:func:`to_onnx` exports a module through torch's exporters: the dynamo-based one (``torch.onnx.export(...,
dynamo=True)``, needs onnxscript) first, the TorchScript one (``dynamo=False``) as the fallback. Parameters and
buffers become initializers; the batch axis (axis 0 of every input and output) stays dynamic unless
``dynamic_axes`` says otherwise.

This module also holds what every framework converter shares (:mod:`ml4ep.infer.keras_import` uses it): the
errors, :class:`ExportInfo` (what the export produced and how to run the framework's own model), :func:`verify`
(the compiled model against the framework's outputs) and :func:`compile_converted` (export, compile, verify; the
next exporter when one fails). Nothing here imports torch unless the object given is a torch module.
"""

from __future__ import annotations

import inspect
import io
import logging
import re
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import onnx

from ..errors import InputError, Ml4epError, UnsupportedOperatorError

__all__ = ["EXPORTERS", "ExportError", "ExportInfo", "MismatchError", "compile_converted", "is_model", "to_onnx",
           "verify"]

log = logging.getLogger(__name__)

EXPORTERS = ("dynamo", "torchscript")  # tried in this order
RTOL = 1e-4  # the check of the compiled model: |got - ref| <= ATOL * max(1, max |ref|) + RTOL * |ref|
ATOL = 1e-5


class ExportError(Ml4epError):
    """A framework model (torch, Keras) could not be exported to ONNX; the message says what the exporters said."""


class MismatchError(ExportError):
    """The compiled model disagrees with the framework's own outputs; the message names the output and the largest
    difference."""


@dataclass
class ExportInfo:
    """What an export produced, and what the compiled model is checked against.

    ``examples``: input sets by ONNX input name (the example inputs, and where the batch is dynamic the same with a
    second batch size); ``reference(feeds)`` runs the framework's model on one of them and returns its outputs in
    ONNX output order, as NumPy arrays.
    """

    exporter: str
    name: str
    input_names: list[str]
    output_names: list[str]
    examples: list[dict[str, np.ndarray]]
    reference: Callable[[dict[str, np.ndarray]], list[np.ndarray]]
    notes: list[str] = field(default_factory=list)


def is_model(obj: object) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module`` (without importing torch: if it is not imported, it is not one)."""
    torch = sys.modules.get("torch")
    nn = getattr(torch, "nn", None) if torch is not None else None
    return nn is not None and isinstance(obj, nn.Module)


# ------------------------------------------------------------------------------------------------------------------
# the export


def to_onnx(module: Any, example_inputs: Any, dynamic_axes: str | dict | None = "batch", *,
            exporter: str | None = None, opset: int | None = None,
            input_names: Sequence[str] | None = None) -> tuple[onnx.ModelProto, ExportInfo]:
    """Export ``module`` (an ``nn.Module`` in eval mode) called on ``example_inputs`` (a tensor or array, or a tuple
    of them, the positional arguments of ``forward``) to ONNX: ``(model, info)``.

    ``dynamic_axes``: "batch" (axis 0 of every input and output), None (every shape as in the examples) or torch's
    dict ``{name: {axis: dim_name}}`` (or ``{name: [axes]}``) over the input names (``forward``'s parameter names)
    and output names ("output", or "output_0", "output_1", ... for several). ``exporter``: "dynamo" or
    "torchscript" (default: dynamo, TorchScript where dynamo fails). ``input_names`` replace ``forward``'s
    parameter names.
    """
    import torch

    if exporter is not None and exporter not in EXPORTERS:
        raise InputError(f"exporter must be one of {EXPORTERS}, not {exporter!r}")
    cls = type(module).__name__
    _refuse_training(module, cls)
    args = _example_tensors(torch, example_inputs, cls)
    if input_names is not None and len(input_names) != len(args):
        raise InputError(f"{cls}: {len(input_names)} input names for {len(args)} example inputs")
    input_names = list(input_names) if input_names is not None else _input_names(module, len(args))
    with torch.no_grad():
        try:
            ref = _flat_outputs(torch, module(*args), cls)
        except Exception as exc:  # noqa: BLE001 - the module's own error, reported with what it was given
            raise InputError(f"{cls}: calling the module on example_inputs failed: {type(exc).__name__}: {exc}") from exc
    output_names = ["output"] if len(ref) == 1 else [f"output_{k}" for k in range(len(ref))]
    axes = _axes(dynamic_axes, input_names, output_names, args, ref, cls)
    trace_args = tuple(_grow(torch, a, axes.get(n, {})) for n, a in zip(input_names, args))
    errors: list[str] = []
    proto = None
    used = None
    for ex in [exporter] if exporter else EXPORTERS:
        try:
            proto = _export(torch, module, trace_args, ex, input_names, output_names, axes, opset)
            _check_proto(proto, input_names, axes, ex)
            used = ex
            break
        except Exception as exc:  # noqa: BLE001 - exporters raise anything; the next one is tried
            msg = _short(exc)
            errors.append(f"{ex}: {msg}")
            log.info("%s: the %s exporter failed (%s)", cls, ex, msg)
    if proto is None or used is None:
        if exporter:
            raise ExportError(f"{cls}: torch's {exporter} exporter failed: {errors[0].split(': ', 1)[1]}")
        raise ExportError(f"{cls}: torch could not export the module to ONNX:\n  " + "\n  ".join(errors))
    if errors:
        log.warning("%s: exported with the %s exporter (%s)", cls, used, "; ".join(errors))
    else:
        log.info("%s: exported with the %s exporter", cls, used)
    proto.graph.name = cls
    onnx_inputs = [i.name for i in proto.graph.input]
    feeds = dict(zip(input_names, (a.detach().cpu().numpy() for a in args)))
    unused = [n for n in input_names if n not in onnx_inputs]
    if unused:
        log.warning("%s: inputs %s are not used by the module and are not inputs of the ONNX model", cls, unused)
    examples = [{n: feeds[n] for n in onnx_inputs}]
    second = _second_batch(feeds, axes, input_names)
    if second is not None:
        examples.append({n: second[n] for n in onnx_inputs})

    def reference(f: dict[str, np.ndarray]) -> list[np.ndarray]:
        full = {**feeds, **f}
        with torch.no_grad():
            outs = _flat_outputs(torch, module(*(torch.from_numpy(np.ascontiguousarray(full[n])) for n in input_names)),
                                 cls)
        return [o.detach().cpu().numpy() for o in outs]

    info = ExportInfo(used, cls, onnx_inputs, [o.name for o in proto.graph.output], examples, reference, errors)
    return proto, info


def _refuse_training(module: Any, cls: str) -> None:
    training = [n or cls for n, m in module.named_modules() if m.training]
    if training:
        more = f" (also {len(training) - 3} more)" if len(training) > 3 else ""
        raise InputError(f"{cls} is in training mode ({', '.join(training[:3])}{more}): call module.eval() before "
                         "compiling it (dropout and batch norm compute differently in training)")


def _example_tensors(torch, example_inputs: Any, cls: str) -> tuple:
    if example_inputs is None:
        raise InputError(f"{cls}: a torch module is compiled from a call: give example_inputs=(x, ...), the "
                         "positional arguments of its forward")
    if isinstance(example_inputs, (torch.Tensor, np.ndarray)):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)):
        raise InputError(f"{cls}: example_inputs must be a tensor or a tuple of tensors, not "
                         f"{type(example_inputs).__name__}")
    out = []
    for k, a in enumerate(example_inputs):
        if isinstance(a, np.ndarray):
            a = torch.from_numpy(np.ascontiguousarray(a))
        if not isinstance(a, torch.Tensor):
            raise InputError(f"{cls}: example input {k} is a {type(a).__name__}: every example input must be a tensor "
                             "or a NumPy array (bind other arguments in the module, e.g. with a wrapper module)")
        out.append(a.detach().cpu())
    return tuple(out)


def _input_names(module: Any, n: int) -> list[str]:
    """ONNX input names: the names of ``forward``'s positional parameters, ``input_<k>`` past them."""
    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = params[:n] + [f"input_{k}" for k in range(len(params), n)]
    return names if len(set(names)) == n else [f"input_{k}" for k in range(n)]


def _flat_outputs(torch, out: Any, cls: str) -> list:
    """The module's outputs as a flat list in the exporters' order (tuples and lists in order, dicts by insertion)."""
    flat: list = []

    def walk(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            flat.append(o)
        elif isinstance(o, (tuple, list)):
            for v in o:
                walk(v)
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        else:
            raise InputError(f"{cls}: the module returns a {type(o).__name__}: only tensors (in tuples, lists or "
                             "dicts) can be outputs of an ONNX model")

    walk(out)
    if not flat:
        raise InputError(f"{cls}: the module returns no tensor")
    return flat


def _axes(dynamic_axes: str | dict | None, input_names: list[str], output_names: list[str], args: Sequence,
          ref: Sequence, cls: str) -> dict[str, dict[int, str]]:
    """Torch's dict form of ``dynamic_axes``: name -> {axis: dimension name}."""
    if dynamic_axes is None:
        return {}
    if dynamic_axes == "batch":
        return {n: {0: "batch"} for n, t in zip([*input_names, *output_names], [*args, *ref]) if t.dim() > 0}
    if not isinstance(dynamic_axes, dict):
        raise InputError(f'{cls}: dynamic_axes must be "batch", None or a dict {{name: {{axis: dim_name}}}}, not '
                         f"{dynamic_axes!r}")
    known = [*input_names, *output_names]
    unknown = [k for k in dynamic_axes if k not in known]
    if unknown:
        raise InputError(f"{cls}: dynamic_axes names {unknown} are neither inputs nor outputs; the names are "
                         f"{known}")
    out: dict[str, dict[int, str]] = {}
    rank = dict(zip(known, [t.dim() for t in [*args, *ref]]))
    for k, v in dynamic_axes.items():
        d = dict(v) if isinstance(v, dict) else {int(a): f"{k}_dim_{int(a)}" for a in v}
        bad = [a for a in d if not -rank[k] <= int(a) < rank[k]]
        if bad:
            raise InputError(f"{cls}: dynamic_axes[{k!r}] names axes {bad} of a tensor of rank {rank[k]}")
        out[k] = {int(a) % rank[k]: str(nm) for a, nm in d.items()}
    return out


def _grow(torch, t, axes: dict[int, str]):
    """The example with its dynamic axes of size 1 doubled: both exporters take a size-1 axis for a constant."""
    for a in axes:
        if t.shape[a] == 1:
            t = torch.cat([t, t], dim=a)
    return t


def _second_batch(feeds: dict[str, np.ndarray], axes: dict[str, dict[int, str]],
                  input_names: list[str]) -> dict[str, np.ndarray] | None:
    """The examples with another batch size (rows repeated in reverse order), where axis 0 of every input is dynamic
    and of the same size: a second check, which finds sizes an exporter baked into the graph."""
    sizes = {feeds[n].shape[0] if feeds[n].ndim else None for n in input_names}
    if len(sizes) != 1 or None in sizes or any(axes.get(n, {}).get(0) is None for n in input_names):
        return None
    return {n: np.concatenate([feeds[n], feeds[n][::-1], feeds[n][:1]]) for n in input_names}  # 2 b + 1 rows


def _export(torch, module, args: tuple, exporter: str, input_names: list[str], output_names: list[str],
            axes: dict[str, dict[int, str]], opset: int | None) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' own deprecation, tracer and constant warnings
        if exporter == "dynamo":
            shapes = _dynamo_shapes(module, tuple(axes.get(n) or None for n in input_names))
            prog = torch.onnx.export(module, args, None, dynamo=True, input_names=input_names,
                                     output_names=output_names, dynamic_shapes=shapes, opset_version=opset,
                                     verbose=False, external_data=False)
            return prog.model_proto
        buf = io.BytesIO()
        kw = {} if opset is None else {"opset_version": opset}
        torch.onnx.export(module, args, buf, dynamo=False, input_names=input_names, output_names=output_names,
                          dynamic_axes=axes or None, export_params=True, do_constant_folding=True,
                          keep_initializers_as_inputs=False, verbose=False, **kw)
        return onnx.load_from_string(buf.getvalue())


def _dynamo_shapes(module: Any, shapes: tuple) -> tuple:
    """``dynamic_shapes`` in the structure torch.export binds to ``forward``: the specs of a ``*args`` parameter in
    one tuple."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return shapes
    fixed = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    if any(p.kind == p.VAR_POSITIONAL for p in params) and fixed < len(shapes):
        return (*shapes[:fixed], tuple(shapes[fixed:]))
    return shapes


def _check_proto(proto: onnx.ModelProto, input_names: list[str], axes: dict[str, dict[int, str]],
                 exporter: str) -> None:
    """What ml4ep relies on: weights as initializers (not inputs), the dynamic axes asked for left symbolic."""
    inits = {t.name for t in proto.graph.initializer}
    as_inputs = [i.name for i in proto.graph.input if i.name in inits or i.name not in input_names]
    if as_inputs:
        raise ExportError(f"the {exporter} export has graph inputs {as_inputs[:5]} that are not the module's inputs")
    for i in proto.graph.input:
        dims = i.type.tensor_type.shape.dim
        static = [a for a in axes.get(i.name, {}) if a < len(dims) and dims[a].HasField("dim_value")]
        if static:
            raise ExportError(f"the {exporter} export made axes {static} of input '{i.name}' static "
                              f"(size {[dims[a].dim_value for a in static]}), not dynamic as asked")


def _short(exc: BaseException, limit: int = 600) -> str:
    """The first lines of an exporter's message (the dynamo exporter's run to pages)."""
    text = f"{type(exc).__name__}: {exc}".strip()
    if "## Exception summary" in text:  # the dynamo exporter's report: its summary says what went wrong
        text = text[text.index("## Exception summary") + len("## Exception summary"):]
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text)
    lines = [ln for ln in text.splitlines() if ln.strip() and ln.strip() != "\u2b06\ufe0f"
             and not ln.startswith("(Refer to")][:6]
    text = " | ".join(lines)
    return text if len(text) <= limit else text[:limit] + " ..."


# ------------------------------------------------------------------------------------------------------------------
# shared by the framework converters: compile, then check against the framework


def verify(compiled: Any, info: ExportInfo, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Run ``compiled`` on every example of ``info`` and compare with the framework's outputs; raise a
    :class:`MismatchError` naming the output and the largest difference where they disagree beyond the tolerance
    (``|got - ref| <= atol * max(1, max |ref|) + rtol * |ref|``, exact for integers and booleans)."""
    if getattr(compiled, "available", True) is False:
        log.warning("%s: not checked against the framework (the build cannot run here: %s)", info.name,
                    getattr(compiled, "problem", "?"))
        return
    for k, feeds in enumerate(info.examples):
        want = info.reference(feeds)
        got = compiled.run(feeds)
        names = list(getattr(compiled, "output_names", info.output_names))
        if len(names) != len(want):
            raise MismatchError(f"{info.name}: the compiled model has {len(names)} outputs, the framework's model "
                                f"{len(want)}")
        shape_note = "" if k == 0 else f" (batch {next(iter(feeds.values())).shape[0]}, not the example's)"
        for nm, ref in zip(names, want):
            g = _numpy(got[nm])
            if g.shape != ref.shape:
                raise MismatchError(f"{info.name}: output '{nm}' has shape {g.shape}, the framework's {ref.shape}"
                                    f"{shape_note} (exported with {info.exporter})")
            if ref.dtype.kind in "biu" or g.dtype.kind in "biu":
                bad = g != ref
                if bad.any():
                    raise MismatchError(f"{info.name}: output '{nm}' differs from the framework's in {int(bad.sum())} "
                                        f"of {bad.size} values{shape_note} (exported with {info.exporter})")
                continue
            r64, g64 = ref.astype(np.float64), g.astype(np.float64)
            nan = np.isnan(r64) != np.isnan(g64)
            finite = np.isfinite(r64)
            scale = max(1.0, float(np.abs(r64[finite]).max())) if finite.any() else 1.0
            diff = np.where(np.isnan(r64) & np.isnan(g64), 0.0, np.abs(g64 - r64))
            diff = np.where(r64 == g64, 0.0, diff)  # equal infinities
            tol = atol * scale + rtol * np.abs(np.where(finite, r64, 0.0))
            if nan.any() or (diff > tol).any():
                worst = np.unravel_index(int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff))), diff.shape)
                raise MismatchError(
                    f"{info.name}: output '{nm}' differs from the framework's output by up to {float(diff[worst]):.3g} "
                    f"at index {tuple(int(i) for i in worst)} (compiled {float(g64[worst]):.6g}, framework "
                    f"{float(r64[worst]):.6g}; tolerance {atol:g} * {scale:.3g} + {rtol:g} * |ref|){shape_note} "
                    f"(exported with {info.exporter})")
    log.info("%s: the compiled model agrees with the framework on %d input set(s)", info.name, len(info.examples))


def _numpy(x: Any) -> np.ndarray:
    """A NumPy array of an output (NumPy, or a torch / CuPy tensor from a CUDA model)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    if hasattr(x, "get"):
        return x.get()
    return np.asarray(x)


def compile_converted(exporters: Sequence[str], export: Callable[[str], tuple[onnx.ModelProto, ExportInfo]],
                      build: Callable[[onnx.ModelProto, str], Any], check: bool = True) -> Any:
    """Export a framework's model with the first of ``exporters`` that works (``export(exporter)``), compile the ONNX model
    (``build(proto, name)``), check it against the framework (:func:`verify`, unless ``check`` is false) and return
    it with ``exporter`` set. An exporter whose model does not compile or disagrees gives way to the next one; the
    last one's error is raised (with the earlier ones' reasons in its notes)."""
    tried: list[str] = []
    for k, ex in enumerate(exporters):
        last = k == len(exporters) - 1
        try:
            proto, info = export(ex)
        except ExportError as exc:
            if last:
                raise ExportError("\n".join([*tried, str(exc)])) from exc
            tried.append(str(exc))
            log.warning("%s; trying the next exporter", " ".join(str(exc).split())[:400])
            continue
        try:
            compiled = build(proto, info.name)
            if check:
                verify(compiled, info)
            else:
                log.info("%s: not checked against the framework (fixed-point emulation)", info.name)
        except (UnsupportedOperatorError, MismatchError) as exc:
            if last:
                if tried:
                    exc.add_note("earlier exporters: " + " | ".join(tried))
                raise
            tried.append(f"{info.exporter}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            log.warning("%s: the %s export %s; trying the next exporter", info.name, info.exporter,
                        "does not compile" if isinstance(exc, UnsupportedOperatorError) else "disagrees")
            continue
        compiled.exporter = info.exporter
        return compiled
    raise AssertionError("unreachable")  # pragma: no cover
