"""Models whose shape arguments are graph inputs: compiled per distinct value, at run time.

ONNX lets a model take the arguments that decide output shapes (Reshape's shape, the axes of a reduction, Pad's
pads, Resize's sizes or scales, Slice's starts/ends, Range's bounds, ...) as graph inputs instead of
initializers. ml4ep's generated code has static loop structure over symbolic dimensions, so such a model is
compiled once per distinct value of those inputs: ``compile`` returns a :class:`SpecializingModel` that reads
them at each call, compiles the variant on first sight (cached in memory and on disk like any build) and runs
it. Data inputs are never specialized on: only inputs that feed a shape argument, directly or through small
integer arithmetic (Cast, Add, Concat, Gather, ...). For C++ code of one variant, pass the values to ``ml4ep.infer.compile(..., constants={...})``.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any, Callable

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import InputError

_REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]
# per operator: the inputs that are shape arguments (they decide output shapes or loop structure)
SHAPE_ARGS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Pad": (1, 3), "Squeeze": (1,),
    "Unsqueeze": (1,), "Split": (1,), "Resize": (1, 2, 3), "Upsample": (1,), "Range": (0, 1, 2),
    "ConstantOfShape": (0,), "TopK": (1,), "OneHot": (1,), "CumSum": (1,), "CumProd": (1,), "Trilu": (1,),
    "CenterCropPad": (1,), "Col2Im": (1, 2), "AffineGrid": (1,), "DFT": (1, 2), "STFT": (1, 3),
    "HannWindow": (0,), "HammingWindow": (0,), "BlackmanWindow": (0,), "MelWeightMatrix": (0, 1, 2, 3, 4),
    "MaxUnpool": (2,), "Loop": (0,), "Dropout": (1, 2),
    **{op: (1,) for op in _REDUCE},
}
# small integer arithmetic that carries a shape argument from a graph input to the node using it (Shape and Size
# are not here: their outputs depend on shapes, not on the values of data inputs)
_PASS_THROUGH = {"Cast", "Identity", "CastLike", "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Max", "Min", "Ceil",
                 "Floor", "Round", "Relu", "Sqrt", "Pow", "Mod", "Squeeze", "Unsqueeze", "Concat", "Gather", "Slice",
                 "Reshape", "Expand", "Where"}


def shape_inputs(proto: onnx.ModelProto) -> list[str]:
    """Graph inputs (not initializers) that feed a shape argument, in graph input order."""
    g = proto.graph
    inits = {t.name for t in g.initializer}
    graph_inputs = [i.name for i in g.input if i.name not in inits]
    # tensors computed from graph inputs by small arithmetic: the graph inputs they come from
    origin: dict[str, set[str]] = {n: {n} for n in graph_inputs}
    for node in g.node:
        if node.op_type in _PASS_THROUGH:
            args = node.input[:1] if node.op_type == "CastLike" else node.input  # CastLike's 2nd: a type only
            src = set().union(*(origin.get(i, set()) for i in args if i))
            if src:
                for o in node.output:
                    origin[o] = src
    found: set[str] = set()
    for node in g.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        for k in SHAPE_ARGS.get(node.op_type, ()):
            if k < len(node.input) and node.input[k] in origin:
                found |= origin[node.input[k]]
    return [n for n in graph_inputs if n in found]


def late_nodes(proto: onnx.ModelProto, params: list[str]) -> set[int]:
    """Indices of the nodes that read a tensor computed from the shape arguments ``params``: checked only
    when the values are known."""
    derived = set(params)
    out: set[int] = set()
    for k, node in enumerate(proto.graph.node):
        if any(i in derived for i in node.input if i):
            out.add(k)
            if node.op_type in _PASS_THROUGH:
                derived.update(o for o in node.output if o)
    return out


def freeze(proto: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of the model with the given graph inputs turned into initializers."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    keep = [vi for vi in out.graph.input if vi.name not in values]
    del out.graph.input[:]
    out.graph.input.extend(keep)
    for name, v in values.items():
        out.graph.initializer.append(numpy_helper.from_array(np.asarray(v), name))
    return out


class SpecializingModel:
    """A model compiled per distinct value of its shape-argument inputs (see the module docstring).

    Same calling interface as :class:`ml4ep.infer.CompiledModel`: ``model(*inputs)`` and ``model.run(feeds)``
    with every graph input, shape arguments included.

    Every variant is a compiler run and a library loaded for good, and the values come from the caller: at most
    ``max_variants`` variants are built (:data:`MAX_VARIANTS`, 32, unless given; settable on the instance).
    A call that needs one more raises :class:`~ml4ep.errors.InputError` saying so; the variants built keep
    working (nothing is evicted: a loaded library cannot be unloaded, and re-compiling on every call would
    be a denial of service of its own).
    """

    MAX_VARIANTS = 32

    def __init__(self, proto: onnx.ModelProto, name: str, params: list[str],
                 build: Callable[[list[onnx.ModelProto], list[str]], list], max_variants: int | None = None):
        self.max_variants = self.MAX_VARIANTS if max_variants is None else int(max_variants)
        self.proto = proto
        self.name = name
        self.params = params
        inits = {t.name for t in proto.graph.initializer}
        self.input_names = [i.name for i in proto.graph.input if i.name not in inits]
        self.output_names = [o.name for o in proto.graph.output]
        self._build = build
        self._variants: dict[bytes, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"<ml4ep SpecializingModel '{self.name}' (compiled per value of {', '.join(self.params)}; "
                f"{len(self._variants)} variant(s))>")

    def _key(self, values: dict[str, Any]) -> tuple[bytes, str, dict[str, np.ndarray]]:
        arrays = {}
        key = hashlib.sha256()
        for p in self.params:
            if p not in values:
                raise InputError(f"model '{self.name}': the shape argument '{p}' is missing")
            a = np.asarray(values[p], order="C")  # (ascontiguousarray would make a scalar 1-D)
            arrays[p] = a
            key.update(f"{p}\0{a.dtype}\0{a.shape}\0".encode() + a.tobytes())
        return key.digest(), f"{self.name}_v{key.hexdigest()[:8]}", arrays

    def pending(self, value_sets: list[dict[str, Any]]) -> list[tuple[bytes, onnx.ModelProto, str]]:
        """``(key, frozen model, name)`` of the variants these value sets need that are not built yet."""
        todo: dict[bytes, tuple[bytes, onnx.ModelProto, str]] = {}
        for values in value_sets:
            k, name, arrays = self._key(values)
            if k not in self._variants and k not in todo:
                self._check_room(len(todo) + 1, arrays)
                todo[k] = (k, freeze(self.proto, arrays), name)
        return list(todo.values())

    def _check_room(self, more: int, arrays: dict[str, np.ndarray]) -> None:
        """Refuse to build ``more`` new variants beyond ``max_variants``."""
        if len(self._variants) + more > self.max_variants:
            shown = ", ".join(f"{p}={np.asarray(a).tolist()!r:.80}" for p, a in arrays.items())
            raise InputError(
                f"model '{self.name}': these values of its shape arguments ({shown}) need a new specialised build, "
                f"but the limit of {self.max_variants} variants is reached (compiled per distinct value of "
                f"{', '.join(self.params)}; raise the model's max_variants to allow more)")

    def adopt(self, key: bytes, model: Any) -> None:
        """Use ``model`` (compiled from ``pending``'s frozen model) for the variant ``key``."""
        with self._lock:
            self._variants[key] = model

    def prepare(self, value_sets: list[dict[str, Any]]) -> None:
        """Compile the variants for several sets of values at once (one compiler call)."""
        todo = self.pending(value_sets)
        if not todo:
            return
        built = self._build([p for _, p, _ in todo], [n for _, _, n in todo])
        for (k, _, _), m in zip(todo, built):
            if isinstance(m, BaseException):
                raise m
            self.adopt(k, m)

    def variant(self, values: dict[str, Any]):
        """The compiled model for these values of the shape arguments (compiled on first use)."""
        k, name, arrays = self._key(values)
        m = self._variants.get(k)
        if m is None:
            with self._lock:
                m = self._variants.get(k)
                if m is None:
                    self._check_room(1, arrays)
                    (m,) = self._build([freeze(self.proto, arrays)], [name])
                    if isinstance(m, BaseException):
                        raise m
                    self._variants[k] = m
        return m

    def run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        extra = [n for n in feeds if n not in self.input_names]
        if missing or extra:
            raise InputError(f"model '{self.name}': inputs are {self.input_names}; missing {missing}, unknown {extra}")
        m = self.variant(feeds)
        return m.run({n: feeds[n] for n in m.input_names})

    def __call__(self, *inputs: Any):
        if len(inputs) != len(self.input_names):
            raise InputError(
                f"model '{self.name}' takes {len(self.input_names)} input(s) {self.input_names}, got {len(inputs)}")
        outs = self.run(dict(zip(self.input_names, inputs)))
        vals = [outs[n] for n in self.output_names]
        return vals[0] if len(vals) == 1 else tuple(vals)
