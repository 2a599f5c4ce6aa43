"""The intermediate representation: a topologically ordered list of nodes over named tensors.

Tensors carry a dtype (a NumPy dtype) and a shape of :mod:`dims` entries. Constant tensors (initializers and
folded values) carry their value; a value may be a NumPy ``object`` array of symbolic dimensions (what
``Shape`` produces for a dynamic batch), which later passes fold into static attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from . import dims as D


@dataclass
class Tensor:
    name: str
    dtype: np.dtype
    shape: tuple  # of int | Dim
    value: np.ndarray | None = None  # constant value (initializer or folded)

    @property
    def is_const(self) -> bool:
        return self.value is not None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> D.DimLike:
        return D.prod(self.shape)


@dataclass
class Node:
    op_type: str
    name: str
    inputs: list[str]  # "" for an omitted optional input
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""
    # set by fusion passes: an activation applied to the output ("Relu", ...), with its attributes
    fused: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # names of original ONNX nodes this node stands for (for comments in generated code)
    origin: list[str] = field(default_factory=list)
    # control flow (If, Loop, Scan): attribute name -> body
    subgraphs: dict[str, "SubGraph"] = field(default_factory=dict)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def input(self, i: int) -> str:
        """The i-th input name or "" when absent."""
        return self.inputs[i] if i < len(self.inputs) else ""


@dataclass
class SubGraph:
    """The body of a control-flow node: its own nodes over its formal inputs, its constants and the tensors of
    the enclosing graph (read by name). Names defined inside are made unique at import."""

    inputs: list[str]  # formal parameters, in ONNX order
    input_types: list[tuple[Any, tuple | None]]  # declared (dtype, shape) of each, None where not declared
    outputs: list[str]
    nodes: list[Node]
    consts: dict[str, np.ndarray] = field(default_factory=dict)

    def defined(self) -> set[str]:
        out = set(self.inputs) | set(self.consts)
        for n in self.nodes:
            out.update(o for o in n.outputs if o)
        return out


def nested_nodes(node: Node) -> list[Node]:
    """Every node inside the bodies of ``node`` (recursively), in order."""
    out: list[Node] = []
    for sg in node.subgraphs.values():
        for n in sg.nodes:
            out.append(n)
            out.extend(nested_nodes(n))
    return out


def reads(node: Node) -> list[str]:
    """Tensors of the enclosing graph ``node`` reads: its inputs and what its bodies read from outside."""
    out = [i for i in node.inputs if i]
    for sg in node.subgraphs.values():
        inner = sg.defined()
        for n in sg.nodes:
            out.extend(i for i in reads(n) if i not in inner)
        out.extend(o for o in sg.outputs if o and o not in inner)
    return out


class Graph:
    def __init__(self, name: str, opset: int):
        self.name = name
        self.opset = opset
        self.nodes: list[Node] = []
        self.tensors: dict[str, Tensor] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.output_names: list[str] = []  # ONNX names of the outputs (a pass may rename output tensors)
        self.symbols: list[str] = []  # symbolic dimension names in order of first appearance
        self.derived = D.Derived()  # symbols standing for sums (L + 1, ...), computed from the others
        self.source = "model"  # file name for messages

    # tensors --------------------------------------------------------------------------------------
    def add_tensor(self, name: str, dtype, shape: Iterable, value: np.ndarray | None = None) -> Tensor:
        t = Tensor(name, np.dtype(dtype), tuple(D.norm(d) for d in shape), value)
        self.tensors[name] = t
        return t

    def t(self, name: str) -> Tensor:
        return self.tensors[name]

    def const(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        t = self.tensors.get(name)
        return None if t is None else t.value

    def is_const(self, name: str) -> bool:
        return self.const(name) is not None

    # structure ------------------------------------------------------------------------------------
    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs if o}

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in dict.fromkeys(reads(n)):
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def unique_name(self, base: str) -> str:
        name, k = base, 0
        while name in self.tensors:
            k += 1
            name = f"{base}_{k}"
        return name

    def __repr__(self) -> str:
        lines = [f"graph {self.name} (opset {self.opset})"]
        for i in self.inputs:
            t = self.tensors[i]
            lines.append(f"  input {i}: {t.dtype} {D.fmt_shape(t.shape)}")
        for n in self.nodes:
            outs = ", ".join(f"{o}{D.fmt_shape(self.tensors[o].shape)}" for o in n.outputs if o)
            fused = "+" + "+".join(f for f, _ in n.fused) if n.fused else ""
            lines.append(f"  {n.op_type}{fused} [{n.name}] ({', '.join(n.inputs)}) -> {outs}")
        lines.append(f"  outputs: {', '.join(self.outputs)}")
        return "\n".join(lines)
