"""Helpers shared by the operator families: broadcasting, C++ types, loop printing."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

import ml_dtypes
import numpy as np

from .. import dims as D
from ...errors import ShapeError

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

CTYPES = {
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
    np.dtype(np.int64): "int64_t",
    np.dtype(np.int32): "int32_t",
    np.dtype(np.int16): "int16_t",
    np.dtype(np.int8): "int8_t",
    np.dtype(np.uint64): "uint64_t",
    np.dtype(np.uint32): "uint32_t",
    np.dtype(np.uint16): "uint16_t",
    np.dtype(np.uint8): "uint8_t",
    np.dtype(np.bool_): "bool",
    np.dtype(np.float16): "ml4ep_rt::half",
    # low-precision storage types (cpp/lowp.hpp), one byte per element (bfloat16: two), as ml_dtypes
    np.dtype(ml_dtypes.bfloat16): "ml4ep_rt::bfloat16",
    np.dtype(ml_dtypes.float8_e4m3fn): "ml4ep_rt::float8e4m3fn",
    np.dtype(ml_dtypes.float8_e4m3fnuz): "ml4ep_rt::float8e4m3fnuz",
    np.dtype(ml_dtypes.float8_e5m2): "ml4ep_rt::float8e5m2",
    np.dtype(ml_dtypes.float8_e5m2fnuz): "ml4ep_rt::float8e5m2fnuz",
    np.dtype(ml_dtypes.uint4): "ml4ep_rt::uint4",
    np.dtype(ml_dtypes.int4): "ml4ep_rt::int4",
    np.dtype(ml_dtypes.float4_e2m1fn): "ml4ep_rt::float4e2m1",
    np.dtype(ml_dtypes.float8_e8m0fnu): "ml4ep_rt::float8e8m0",
    np.dtype(ml_dtypes.uint2): "ml4ep_rt::uint2",
    np.dtype(ml_dtypes.int2): "ml4ep_rt::int2",
}

# ONNX TensorProto element types code generation handles, with their NumPy dtypes
ONNX_DTYPES = {1: np.float32, 11: np.float64, 10: np.float16, 7: np.int64, 6: np.int32, 5: np.int16, 3: np.int8,
               13: np.uint64, 12: np.uint32, 4: np.uint16, 2: np.uint8, 9: np.bool_,
               16: ml_dtypes.bfloat16, 17: ml_dtypes.float8_e4m3fn, 18: ml_dtypes.float8_e4m3fnuz,
               19: ml_dtypes.float8_e5m2, 20: ml_dtypes.float8_e5m2fnuz, 21: ml_dtypes.uint4, 22: ml_dtypes.int4,
               23: ml_dtypes.float4_e2m1fn, 24: ml_dtypes.float8_e8m0fnu, 25: ml_dtypes.uint2, 26: ml_dtypes.int2}


def node_error(node: "Node", msg: str) -> ShapeError:
    """The error of a node that cannot be compiled as it is: ``node 'name' (Op): msg``."""
    return ShapeError(f"node '{node.name}' ({node.op_type}): {msg}")


class CannotFold(Exception):
    """A fold that needs a numeric value where a symbolic one was given: the node is computed at run time.

    Deliberately not an :class:`~ml4ep.errors.Ml4epError`: the folding pass takes any other exception as
    "evaluate this node at run time" and reports only ml4ep errors.
    """


def is_float(dtype) -> bool:
    """Whether a NumPy dtype is a float type the kernels compute in (float16/32/64, bfloat16)."""
    dt = np.dtype(dtype)
    return dt.kind == "f" or dt.name == "bfloat16"


def mul(a: str, d: "D.DimLike") -> str:
    """C++ ``a * d`` for a dimension ``d``, simplified for 0 and 1."""
    if d == 0:
        return "0"
    return a if d == 1 else f"{a} * {D.cpp(d)}"


def cpp_sum(terms: Sequence[str]) -> str:
    """A C++ sum of terms; integer literals are added up into one constant, written last."""
    const = 0
    rest = []
    for t in terms:
        if not t or t == "0":
            continue
        if re.fullmatch(r"-?\d+", t):
            const += int(t)
        else:
            rest.append(t)
    if const:
        rest.append(str(const))
    if not rest:
        return "0"
    out = rest[0]
    for t in rest[1:]:
        out += f" - {t[1:]}" if t.startswith("-") else f" + {t}"
    return out


def ctype(dtype) -> str:
    dt = np.dtype(dtype)
    if dt not in CTYPES:
        raise ShapeError(f"dtype {dt} is not supported by ml4ep code generation")
    return CTYPES[dt]


def broadcast_shapes(node: "Node", *shapes: Sequence) -> tuple:
    """Multidirectional (NumPy) broadcasting with symbolic dimensions."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(rank):
        dim: D.DimLike = 1
        for s in shapes:
            k = axis - (rank - len(s))
            if k < 0:
                continue
            d = s[k]
            if d == 1:
                continue
            if dim == 1 or dim == d:
                dim = d
            else:
                raise ShapeError(
                    f"node '{node.name}' ({node.op_type}): shapes "
                    + " and ".join(D.fmt_shape(x) for x in shapes)
                    + " cannot be broadcast"
                )
        out.append(dim)
    return tuple(out)


def norm_axis(node: "Node", axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"node '{node.name}' ({node.op_type}): axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def strides(shape: Sequence) -> list:
    """Row-major strides (DimLike) of a shape."""
    out: list = [1] * len(shape)
    acc: D.DimLike = 1
    for i in range(len(shape) - 1, -1, -1):
        out[i] = acc
        acc = D.norm(acc * shape[i])
    return out


def broadcast_index_plan(out_shape: Sequence, in_shapes: Sequence[Sequence]):
    """Collapse the output into as few loops as possible for a broadcast.

    Returns ``(loop_extents, in_strides)``: extents of the collapsed loops (outermost first) and, per input,
    its element stride (DimLike; 0 where broadcast) in every loop.
    """
    rank = len(out_shape)
    padded = [[1] * (rank - len(s)) + list(s) for s in in_shapes]
    # per axis: for each input, whether it varies along the axis
    varies = [[(p[a] != 1) for p in padded] for a in range(rank)]
    # merge axes of extent 1 away and neighbours with equal broadcast pattern
    groups: list[tuple[list[int], list[bool]]] = []
    for a in range(rank):
        if out_shape[a] == 1:
            continue
        if groups and groups[-1][1] == varies[a]:
            groups[-1][0].append(a)
        else:
            groups.append(([a], varies[a]))
    extents = [D.prod(out_shape[a] for a in axes) for axes, _ in groups]
    in_strides = []
    for k, p in enumerate(padded):
        st_full = strides(p)
        row = []
        for axes, var in groups:
            row.append(st_full[axes[-1]] if var[k] else 0)
        in_strides.append(row)
    return extents, in_strides


def emit_broadcast(cg: "Emitter", out: str, ins: Sequence[str], expr_fn, out_ctype: str | None = None) -> str:
    """Loop over ``out`` computing ``expr_fn([in0, in1, ...])`` (C++ scalar expressions) with broadcasting."""
    out_shape = cg.shape(out)
    extents, in_strides = broadcast_index_plan(out_shape, [cg.shape(i) for i in ins])
    optr = cg.ptr(out)
    iptrs = [cg.ptr(i) for i in ins]
    if not extents:  # a scalar output
        vals = [f"{p}[0]" for p in iptrs]
        if cg.device != "cpu":
            return cg.par_for("i", 1, f"{optr}[i] = {expr_fn(vals)};")
        return f"{optr}[0] = {expr_fn(vals)};\n"
    n = len(extents)
    idx = [f"i{k}" for k in range(n)]
    vals = []
    for p, st in zip(iptrs, in_strides):
        terms = [f"{idx[k]}*{D.cpp(s)}" if s != 1 else idx[k] for k, s in enumerate(st) if s != 0]
        vals.append(f"{p}[{' + '.join(terms) if terms else '0'}]")
    if cg.device != "cpu":  # one kernel over the output, each loop index computed from the output's index
        used = set(re.findall(r"\bi\d+\b", " ".join(vals)))
        split = []
        for k, st in enumerate(strides(extents)):
            if idx[k] in used:
                q = f"i / {D.cpp(st)}" if st != 1 else "i"
                split.append(f"const int64_t {idx[k]} = {q if k == 0 else f'({q}) % {D.cpp(extents[k])}'}; ")
        return cg.par_for("i", D.prod(extents), "".join(split) + f"{optr}[i] = {expr_fn(vals)};")
    lines = []
    # offsets of each input: sum of idx*stride
    for k in range(n):
        lines.append("  " * k + f"for (int64_t {idx[k]} = 0; {idx[k]} < {D.cpp(extents[k])}; ++{idx[k]}) {{")
    ind = "  " * n
    out_off = " + ".join(
        f"{idx[k]}*{D.cpp(s)}" if s != 1 else idx[k] for k, s in enumerate(strides(extents))
    )
    lines.append(f"{ind}{optr}[{out_off}] = {expr_fn(vals)};")
    for k in range(n - 1, -1, -1):
        lines.append("  " * k + "}")
    return "\n".join(lines) + "\n"


def get_ints(node: "Node", key: str, default=None) -> list[int] | None:
    v = node.attrs.get(key, default)
    return None if v is None else [int(x) for x in v]


def const_ints(node: "Node", g: "Graph", idx: int, what: str) -> list | None:
    """Values of a constant integer input (e.g. a shape), possibly symbolic; None when the input is absent."""
    name = node.input(idx)
    if not name:
        return None
    v = g.const(name)
    if v is None:
        raise ShapeError(
            f"node '{node.name}' ({node.op_type}): input '{name}' ({what}) must be known at compile time"
        )
    return [D.norm(x) for x in np.asarray(v).reshape(-1).tolist()]


def loop(var: str, extent, body: str, indent: str = "") -> str:
    return f"{indent}for (int64_t {var} = 0; {var} < {D.cpp(extent)}; ++{var}) {{\n{body}{indent}}}\n"


def emit_view_copy(node: "Node", cg: "Emitter") -> str:
    """Code of a view op (Reshape, Identity, ...): nothing when the planner aliased output and input."""
    x, y = node.inputs[0], node.outputs[0]
    if not y or cg.same_storage(x, y):
        return ""
    return cg.copy(cg.ptr(y), cg.ptr(x), f"sizeof({cg.ctype(y)}) * size_t({cg.numel(y)})")


def check_floating(node: "Node", g: "Graph") -> str | None:
    """``check`` of ops that take floating-point inputs only (any width, low-precision types included)."""
    t = g.tensors.get(node.inputs[0])
    if t is not None and t.dtype.kind in "iub":
        return f"input dtype {t.dtype} is not supported (floating-point only)"
    return None
