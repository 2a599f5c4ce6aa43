"""Shape and data-movement operators.

Views (Reshape, Flatten, Squeeze, Unsqueeze) usually share their input's storage (see passes/memory.py) and
print no code; ``common.emit_view_copy`` copies only where the memory planner could not alias them. All other
copies go through :func:`copy_nd`, which collapses a strided copy into as few loops as possible and moves
contiguous runs with ``std::memcpy`` (Concat, Split, Slice, Gather of rows, Expand, Tile, Pad). On the GPU
(docs/cuda.md) the same copies are :func:`strided_copy`: a device copy when contiguous, else one kernel with a thread
per output element; Concat, Split, Gather and Pad have emitters of their own there (one kernel each).

Every op here also folds with NumPy. The ops found on shape values of exported PyTorch graphs (Shape,
Gather, Concat, Unsqueeze, Squeeze, Slice, Reshape, Expand, Identity...) fold object arrays whose entries are
``int`` or symbolic :class:`~ml4ep.infer.dims.Dim` values: ``Shape`` of a ``(N, 4)`` tensor is
``array([N, 4], dtype=object)``; :func:`tidy` turns such an array back into ``int64`` once it holds no
symbol. ``SymConst`` is an internal op writing such a symbolic value into an ``int64`` tensor at run time.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from . import batch_rules as BR, register
from .common import CTYPES, CannotFold, broadcast_shapes, const_ints, cpp_sum, emit_view_copy, get_ints, node_error, norm_axis, strides
from .. import dims as D
from .. import limits
from ..literals import literal
from ...errors import ShapeError
from ..._native.names import string

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node

# |start| or |end| of a Slice at or beyond this bound means "up to the boundary" on a symbolic axis
# (exporters write INT64_MAX, INT32_MAX or INT64_MIN there)
SLICE_INF = 2**31 - 1
# transposes whose two swapped axes are at least this long are copied in square tiles of this side
TILE = 32
# a Gather with at most this many constant indices is printed as one copy per index
GATHER_UNROLL = 8


# ------------------------------------------------------------------------------------------------------
# helpers


def _named(fn: Callable) -> Callable:
    """Prefix errors raised while inferring or folding a node with the node's name and op type."""

    @functools.wraps(fn)
    def wrapper(node: "Node", arg: Any):
        try:
            return fn(node, arg)
        except ShapeError as e:
            msg = str(e)
            if msg.startswith(f"node '{node.name}'"):
                raise
            raise type(e)(f"node '{node.name}' ({node.op_type}): {msg}") from e

    return wrapper


def _folding(fn: Callable) -> Callable:
    """A fold function: symbolic values it cannot evaluate become :class:`CannotFold`."""
    named = _named(fn)

    @functools.wraps(fn)
    def wrapper(node: "Node", vals: list):
        try:
            return named(node, vals)
        except D.SymbolicError as e:
            raise CannotFold(str(e)) from e

    return wrapper


def _str_attr(node: "Node", key: str, default: str) -> str:
    v = node.attrs.get(key, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def _value(vals: Sequence, i: int) -> np.ndarray | None:
    if i >= len(vals) or vals[i] is None:
        return None
    return np.asarray(vals[i])


def _dimlist(v: np.ndarray | None) -> list | None:
    """The entries of an integer (or symbolic object) array as ints/Dims."""
    if v is None:
        return None
    return [D.norm(x) for x in np.asarray(v).reshape(-1).tolist()]


def _static_ints(node: "Node", vals: list | None, what: str) -> list[int] | None:
    if vals is None:
        return None
    if not all(D.is_static(v) for v in vals):
        raise D.SymbolicError(f"node '{node.name}' ({node.op_type}): {what} {vals} must not be symbolic")
    return [int(v) for v in vals]


def tidy(arr: np.ndarray) -> np.ndarray:
    """An object array of ints and Dims as ``int64`` when no entry is symbolic; Dims normalised otherwise."""
    a = np.asarray(arr)
    if a.dtype != object:
        return a
    flat = [x if isinstance(x, (float, np.floating, bool, np.bool_)) else D.norm(x) for x in a.reshape(-1)]
    if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in flat):
        return np.array(flat, dtype=np.int64).reshape(a.shape)
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(a.shape)


def symbolic_array(values: Sequence, shape: tuple | None = None) -> np.ndarray:
    """ints/Dims as an int64 array when all static, an object array otherwise."""
    vals = [D.norm(v) for v in values]
    out = np.empty(len(vals), dtype=object)
    out[:] = vals
    return tidy(out.reshape(shape if shape is not None else (len(vals),)))


def _const_or_attr(node: "Node", g: "Graph", idx: int, attr: str, what: str) -> list | None:
    """A list of ints/Dims from a constant input (opset 13+ style) or from an attribute (older opsets)."""
    if node.input(idx):
        return const_ints(node, g, idx, what)
    v = node.attrs.get(attr)
    return None if v is None else [int(x) for x in v]


def _fold_const_or_attr(node: "Node", vals: list, idx: int, attr: str) -> list | None:
    v = _value(vals, idx)
    if v is not None:
        return _dimlist(v)
    a = node.attrs.get(attr)
    return None if a is None else [int(x) for x in a]


def _term(var: str, coeff: D.DimLike) -> str:
    """``var * coeff`` as C++ ("" when the coefficient is 0)."""
    c = D.norm(coeff)
    if c == 0:
        return ""
    if D.is_static(c) and int(c) < 0:
        return f"-{var}" if c == -1 else f"-{var} * {-int(c)}"
    return var if c == 1 else f"{var} * {D.cpp(c)}"



def _at(ptr: str, off: str) -> str:
    if off == "0":
        return ptr
    return f"{ptr} - {off[1:]}" if off.startswith("-") else f"{ptr} + {off}"


def _check_dtypes(node: "Node", g: "Graph", idx: Sequence[int] = (0,)) -> str | None:
    for i in idx:
        t = g.tensors.get(node.input(i))
        if t is not None and t.value is None and np.dtype(t.dtype) not in CTYPES:
            return f"input '{t.name}' has dtype {t.dtype}, not supported"
    return None


# ------------------------------------------------------------------------------------------------------
# strided copies

def collapse(extents: Sequence, dst_strides: Sequence, src_strides: Sequence) -> list[tuple]:
    """Drop extent-1 axes and merge neighbours that are contiguous in both source and destination.

    Returns ``[(extent, dst_stride, src_stride), ...]`` outermost first; an axis of static extent 0 gives
    ``None`` (nothing to copy).
    """
    axes: list[tuple] = []
    for e, ds, ss in zip(extents, dst_strides, src_strides):
        e = D.norm(e)
        if e == 0:
            return None  # type: ignore[return-value]
        if e == 1:
            continue
        axes.append((e, D.norm(ds), D.norm(ss)))
    out: list[tuple] = []
    for e, ds, ss in axes:
        if out:
            pe, pds, pss = out[-1]
            if D.norm(e * ds) == pds and D.norm(e * ss) == pss:
                out[-1] = (D.norm(pe * e), ds, ss)
                continue
        out.append((e, ds, ss))
    return out


def copy_nd(ct: str, dst: str, src: str, extents: Sequence, dst_strides: Sequence, src_strides: Sequence,
            dst_off: str = "0", src_off: str = "0") -> str:
    """C++ copying ``src[src_off + sum i_k*src_strides[k]]`` to ``dst[dst_off + sum i_k*dst_strides[k]]``.

    Contiguous innermost runs become ``std::memcpy``, broadcast ones (source stride 0) ``std::fill_n``.
    """
    axes = collapse(extents, dst_strides, src_strides)
    if axes is None:
        return ""
    if not axes:
        return f"{dst}[{dst_off}] = {src}[{src_off}];\n"
    *outer, (e, ds, ss) = axes
    lines = []
    for k, (ek, _, _) in enumerate(outer):
        lines.append("  " * k + f"for (int64_t i{k} = 0; i{k} < {D.cpp(ek)}; ++i{k}) {{")
    doff = cpp_sum([dst_off] + [_term(f"i{k}", a[1]) for k, a in enumerate(outer)])
    soff = cpp_sum([src_off] + [_term(f"i{k}", a[2]) for k, a in enumerate(outer)])
    ind = "  " * len(outer)
    if ds == 1 and ss == 1:
        n = D.cpp(e)
        lines.append(f"{ind}std::memcpy({_at(dst, doff)}, {_at(src, soff)}, sizeof({ct}) * size_t({n}));")
    elif ds == 1 and ss == 0:
        lines.append(f"{ind}std::fill_n({_at(dst, doff)}, {D.cpp(e)}, {src}[{soff}]);")
    else:
        lines.append(
            f"{ind}for (int64_t j = 0; j < {D.cpp(e)}; ++j) "
            f"{dst}[{cpp_sum([doff, _term('j', ds)])}] = {src}[{cpp_sum([soff, _term('j', ss)])}];"
        )
    for k in range(len(outer) - 1, -1, -1):
        lines.append("  " * k + "}")
    return "\n".join(lines) + "\n"


def unflatten(axes: Sequence[tuple[str | None, Any]], var: str = "i") -> str:
    """C++ declaring the index of each named axis of ``axes`` (``(name, extent)``, outermost first; None: not
    needed) in the row-major flat index ``var``: the GPU code's per-axis indices of a thread's element."""
    named = [k for k, (n, _) in enumerate(axes) if n]
    lines = []
    q, div = var, 1  # q / div: the flat index without the axes after the current one
    for k in range(len(axes) - 1, named[0] - 1 if named else len(axes) - 1, -1):
        n, e = axes[k]
        if n:
            if div != 1 and k != named[0]:  # more indices to come: q itself divided
                lines.append(f"int64_t q = {var} / {D.cpp(div)};" if q == var else f"q /= {D.cpp(div)};")
                q, div = "q", 1
            base = q if div == 1 else f"{q} / {D.cpp(div)}"
            outer = all(D.norm(e2) == 1 for _, e2 in axes[:k])
            lines.append(f"const int64_t {n} = {'0' if D.norm(e) == 1 else base if outer else f'{base} % {D.cpp(e)}'};")
        div = D.norm(div * e)
    return "".join(line + "\n" for line in lines)


def strided_copy(cg: "Emitter", ct: str, dst: str, src: str, extents: Sequence, dst_strides: Sequence,
                 src_strides: Sequence, dst_off: str = "0", src_off: str = "0") -> str:
    """:func:`copy_nd` on the CPU; on the GPU a device copy where the whole of it is contiguous, else a kernel with
    one thread per element (its indices taken apart from the flat one; a contiguous side indexed by it directly)."""
    if cg.device == "cpu":
        return copy_nd(ct, dst, src, extents, dst_strides, src_strides, dst_off, src_off)
    axes = collapse(extents, dst_strides, src_strides)
    if axes is None:
        return ""
    if not axes or len(axes) == 1 and axes[0][1] == 1 and axes[0][2] == 1:
        n = f" * size_t({D.cpp(axes[0][0])})" if axes else ""
        return cg.copy(_at(dst, dst_off), _at(src, src_off), f"sizeof({ct}){n}")
    ext = [a[0] for a in axes]
    dense = strides(ext)
    used: set[int] = set()

    def index(off: str, st: list) -> str:
        if all(D.norm(s) == D.norm(r) for s, r in zip(st, dense)):
            return cpp_sum([off, "i"])
        used.update(k for k, s in enumerate(st) if D.norm(s) != 0)
        return cpp_sum([off] + [_term(f"i{k}", s) for k, s in enumerate(st)])

    d_idx, s_idx = index(dst_off, [a[1] for a in axes]), index(src_off, [a[2] for a in axes])
    decl = unflatten([(f"i{k}" if k in used else None, e) for k, e in enumerate(ext)])
    return cg.par_for("i", D.prod(ext), decl + f"{dst}[{d_idx}] = {src}[{s_idx}];\n")


def _fill(cg: "Emitter", out: str, value: Any) -> str:
    n = D.norm(cg.g.t(out).numel)
    if n == 0:
        return ""
    ct = cg.ctype(out)
    if cg.device != "cpu":
        return cg.par_for("i", n, f"{cg.ptr(out)}[i] = {literal(value, ct)};")
    return f"std::fill_n({cg.ptr(out)}, {D.cpp(n)}, {literal(value, ct)});\n"


def _store_exprs(cg: "Emitter", optr: str, exprs: Sequence[str]) -> str:
    """``optr[k] = exprs[k]`` (C++ scalar expressions): statements on the CPU, one thread per value on the GPU."""
    if cg.device == "cpu":
        return "".join(f"{optr}[{k}] = {e};\n" for k, e in enumerate(exprs))
    if not exprs:
        return ""
    sel = exprs[-1]
    for k in range(len(exprs) - 2, -1, -1):
        sel = f"i == {k} ? {exprs[k]} : {sel}"
    return cg.par_for("i", len(exprs), f"{optr}[i] = {sel};")


def _store_values(cg: "Emitter", out: str, values: np.ndarray) -> str:
    """Write a (possibly symbolic) constant into ``out``: element by element when small or symbolic."""
    v = np.asarray(values)
    if v.size == 0:
        return ""
    ct = cg.ctype(out)
    optr = cg.ptr(out)
    if v.dtype == object or v.size <= 16:
        flat = v.reshape(-1).tolist()
        if v.dtype == object:
            return _store_exprs(cg, optr, [f"{ct}({D.cpp(d)})" for d in flat])
        return _store_exprs(cg, optr, [literal(x, ct) for x in flat])
    w = cg.weight(v.astype(cg.dtype(out)), out)
    return cg.copy(optr, w, f"sizeof({ct}) * size_t({v.size})")


# ------------------------------------------------------------------------------------------------------
# Reshape, Flatten, Squeeze, Unsqueeze (views)

def reshape_shape(node: "Node", in_shape: Sequence, spec: Sequence, allowzero: bool = False) -> tuple:
    """Resolve a Reshape ``shape`` (0 copies the input dim unless ``allowzero``, -1 is inferred)."""
    out: list = []
    minus = -1
    for k, s in enumerate(spec):
        s = D.norm(s)
        if s == -1:
            if minus >= 0:
                raise node_error(node, f"shape {spec} has more than one -1")
            minus = k
            out.append(-1)
        elif s == 0 and not allowzero:
            if k >= len(in_shape):
                raise node_error(node, f"shape {spec}: 0 at position {k} beyond the input rank {len(in_shape)}")
            out.append(D.norm(in_shape[k]))
        elif D.is_static(s) and int(s) < 0:
            raise node_error(node, f"shape {spec} has a negative entry")
        else:
            out.append(s)
    total = D.prod(in_shape)
    if minus >= 0:
        known = D.prod(d for k, d in enumerate(out) if k != minus)
        if D.is_static(total) and D.is_static(known):
            if known == 0 or int(total) % int(known) != 0:
                raise node_error(node, f"cannot reshape {D.fmt_shape(in_shape)} to {list(spec)}")
            out[minus] = int(total) // int(known)
        else:
            try:
                out[minus] = D.norm(total // known)
            except ShapeError as e:
                raise node_error(node, f"cannot reshape {D.fmt_shape(in_shape)} to {D.fmt_shape(spec)}: {e}") from e
    if D.prod(out) != total:
        raise node_error(node, f"cannot reshape {D.fmt_shape(in_shape)} ({D.fmt(total)} elements) "
                         f"to {D.fmt_shape(out)}")
    return tuple(out)


@_named
def _infer_reshape(node: "Node", g: "Graph"):
    spec = const_ints(node, g, 1, "shape")
    if spec is None:
        raise node_error(node, "the shape input is missing")
    t = g.t(node.inputs[0])
    return [(t.dtype, reshape_shape(node, t.shape, spec, bool(node.attrs.get("allowzero", 0))))]


@_folding
def _fold_reshape(node: "Node", vals: list):
    x = np.asarray(vals[0])
    spec = _static_ints(node, _dimlist(_value(vals, 1)), "shape")
    shape = reshape_shape(node, x.shape, spec or [], bool(node.attrs.get("allowzero", 0)))
    return [x.reshape(shape)]


def flatten_shape(node: "Node", shape: Sequence) -> tuple:
    r = len(shape)
    axis = int(node.attrs.get("axis", 1))
    if not -r <= axis <= r:
        raise node_error(node, f"axis {axis} out of range for rank {r}")
    axis = axis + r if axis < 0 else axis
    return (D.prod(shape[:axis]), D.prod(shape[axis:]))


@_named
def _infer_flatten(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    return [(t.dtype, flatten_shape(node, t.shape))]


@_folding
def _fold_flatten(node: "Node", vals: list):
    x = np.asarray(vals[0])
    return [x.reshape(flatten_shape(node, x.shape))]


def squeeze_shape(node: "Node", shape: Sequence, axes: list | None) -> tuple:
    r = len(shape)
    if axes is None:
        return tuple(d for d in shape if d != 1)
    ax = sorted({norm_axis(node, int(a), r) for a in _static_ints(node, axes, "axes") or []})
    for a in ax:
        if shape[a] != 1:
            raise node_error(node, f"cannot squeeze axis {a} of size {D.fmt(shape[a])} "
                             f"(shape {D.fmt_shape(shape)})")
    return tuple(d for k, d in enumerate(shape) if k not in ax)


def unsqueeze_shape(node: "Node", shape: Sequence, axes: list | None) -> tuple:
    if axes is None:
        raise node_error(node, "axes are missing")
    r = len(shape) + len(axes)
    ax = [norm_axis(node, int(a), r) for a in _static_ints(node, axes, "axes") or []]
    if len(set(ax)) != len(ax):
        raise node_error(node, f"repeated axes {axes}")
    it = iter(shape)
    return tuple(1 if k in ax else next(it) for k in range(r))


@_named
def _infer_squeeze(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    return [(t.dtype, squeeze_shape(node, t.shape, _const_or_attr(node, g, 1, "axes", "axes")))]


@_folding
def _fold_squeeze(node: "Node", vals: list):
    x = np.asarray(vals[0])
    return [x.reshape(squeeze_shape(node, x.shape, _fold_const_or_attr(node, vals, 1, "axes")))]


@_named
def _infer_unsqueeze(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    return [(t.dtype, unsqueeze_shape(node, t.shape, _const_or_attr(node, g, 1, "axes", "axes")))]


@_folding
def _fold_unsqueeze(node: "Node", vals: list):
    x = np.asarray(vals[0])
    return [x.reshape(unsqueeze_shape(node, x.shape, _fold_const_or_attr(node, vals, 1, "axes")))]


def _check_data(node: "Node", g: "Graph"):
    return _check_dtypes(node, g)


register("Reshape", infer=_infer_reshape, emit=emit_view_copy, fold=_fold_reshape, check=_check_data,
         const_inputs=(1,), view="reshape", batch=BR.reshape, cuda=True)
register("Flatten", infer=_infer_flatten, emit=emit_view_copy, fold=_fold_flatten, check=_check_data,
         view="reshape", batch=BR.reshape, cuda=True)
register("Squeeze", infer=_infer_squeeze, emit=emit_view_copy, fold=_fold_squeeze, check=_check_data,
         const_inputs=(1,), view="reshape", batch=BR.reshape, cuda=True)
register("Unsqueeze", infer=_infer_unsqueeze, emit=emit_view_copy, fold=_fold_unsqueeze, check=_check_data,
         const_inputs=(1,), view="reshape", batch=BR.reshape, cuda=True)


# ------------------------------------------------------------------------------------------------------
# Transpose

def _perm(node: "Node", rank: int) -> list[int]:
    perm = get_ints(node, "perm")
    if perm is None:
        return list(range(rank - 1, -1, -1))
    # negative axes count from the end (torch exports movedim so; onnxruntime accepts it)
    perm = [p + rank if -rank <= p < 0 else p for p in perm]
    if sorted(perm) != list(range(rank)):
        raise node_error(node, f"perm {perm} is not a permutation of the {rank} axes")
    return perm


@_named
def _infer_transpose(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    return [(t.dtype, tuple(t.shape[p] for p in _perm(node, t.rank)))]


@_folding
def _fold_transpose(node: "Node", vals: list):
    x = np.asarray(vals[0])
    return [np.transpose(x, _perm(node, x.ndim))]


def _emit_transpose(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    perm = _perm(node, len(shape))
    out_shape = [shape[p] for p in perm]
    ist = strides(shape)
    axes = collapse(out_shape, strides(out_shape), [ist[p] for p in perm])
    ct = cg.ctype(y)
    if axes is None:
        return ""
    if len(axes) >= 2 and axes[-1][2] != 1 and cg.device == "cpu":  # the GPU: one thread per output element
        j = next((k for k, a in enumerate(axes) if a[2] == 1), None)
        ej, el = axes[j][0] if j is not None else 0, axes[-1][0]
        if j is not None and D.is_static(ej) and D.is_static(el) and int(ej) >= TILE and int(el) >= TILE:
            return _tiled_transpose(cg.ptr(y), cg.ptr(x), axes, j)
    ext = [a[0] for a in axes]
    return strided_copy(cg, ct, cg.ptr(y), cg.ptr(x), ext, [a[1] for a in axes], [a[2] for a in axes])


def _tiled_transpose(dst: str, src: str, axes: list[tuple], j: int) -> str:
    """Copy in TILE x TILE blocks over axis ``j`` (contiguous in the source) and the last axis."""
    last = len(axes) - 1
    outer = [k for k in range(len(axes)) if k not in (j, last)]
    lines = []
    depth = 0
    for k in outer:
        lines.append("  " * depth + f"for (int64_t i{k} = 0; i{k} < {D.cpp(axes[k][0])}; ++i{k}) {{")
        depth += 1
    ej, el = int(axes[j][0]), int(axes[last][0])
    lines.append("  " * depth + f"for (int64_t b{j} = 0; b{j} < {ej}; b{j} += {TILE}) {{")
    lines.append("  " * (depth + 1) + f"for (int64_t b{last} = 0; b{last} < {el}; b{last} += {TILE}) {{")
    for d, (k, e) in enumerate(((j, ej), (last, el))):
        lines.append("  " * (depth + 2 + d) + f"for (int64_t i{k} = b{k}; "
                     f"i{k} < std::min<int64_t>(b{k} + {TILE}, {e}); ++i{k}) {{")
    doff = cpp_sum([_term(f"i{k}", axes[k][1]) for k in range(len(axes))])
    soff = cpp_sum([_term(f"i{k}", axes[k][2]) for k in range(len(axes))])
    lines.append("  " * (depth + 4) + f"{dst}[{doff}] = {src}[{soff}];")
    for k in range(depth + 3, -1, -1):
        lines.append("  " * k + "}")
    return "\n".join(lines) + "\n"


def _batch_transpose(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule: separable whatever the permutation; the batch lands where the permutation puts it."""
    perm = node.attr("perm")
    perm = list(range(in_rank[0]))[::-1] if perm is None else [int(p) for p in perm]
    return ins[0] is not None and outs[0] == perm.index(ins[0])


register("Transpose", infer=_infer_transpose, emit=_emit_transpose, fold=_fold_transpose, check=_check_data,
         batch=_batch_transpose, cuda=True)


# ------------------------------------------------------------------------------------------------------
# Concat and Split

def concat_shape(node: "Node", shapes: Sequence[Sequence]) -> tuple:
    if not shapes:
        raise node_error(node, "no inputs")
    r = len(shapes[0])
    if r == 0:
        raise node_error(node, "scalars cannot be concatenated")
    axis = norm_axis(node, int(node.attrs.get("axis", 0)), r)
    total: D.DimLike = 0
    for s in shapes:
        if len(s) != r or any(s[k] != shapes[0][k] for k in range(r) if k != axis):
            raise node_error(node, "input shapes differ outside the concatenation axis: "
                             + ", ".join(D.fmt_shape(x) for x in shapes))
        total = D.norm(total + s[axis])
    out = list(shapes[0])
    out[axis] = total
    return tuple(out)


@_named
def _infer_concat(node: "Node", g: "Graph"):
    ts = [g.t(i) for i in node.inputs if i]
    dts = {t.dtype for t in ts}
    if len(dts) > 1:
        raise node_error(node, f"input dtypes differ: {sorted(map(str, dts))}")
    return [(ts[0].dtype, concat_shape(node, [t.shape for t in ts]))]


@_folding
def _fold_concat(node: "Node", vals: list):
    xs = [np.asarray(v) for v in vals if v is not None]
    concat_shape(node, [x.shape for x in xs])
    if any(x.dtype == object for x in xs):
        xs = [x.astype(object) for x in xs]
    axis = int(node.attrs.get("axis", 0))
    return [tidy(np.concatenate(xs, axis=axis))]


def _concat_parts(node: "Node", cg: "Emitter") -> tuple[D.DimLike, D.DimLike, list[tuple[str, D.DimLike, D.DimLike]]]:
    """Concat's output as ``outer`` rows of ``row`` elements (the concatenation axis and those after it), and
    its parts ``(input, width, offset)``: every present input fills ``width`` elements of each row from ``offset``
    on (inputs of width 0 included)."""
    out_shape = cg.shape(node.outputs[0])
    axis = norm_axis(node, int(node.attrs.get("axis", 0)), len(out_shape))
    rest = D.prod(out_shape[axis + 1:])
    parts = []
    off: D.DimLike = 0
    for x in node.inputs:
        if not x:
            continue
        width = D.norm(cg.shape(x)[axis] * rest)
        parts.append((x, width, off))
        off = D.norm(off + width)
    return D.prod(out_shape[:axis]), D.prod(out_shape[axis:]), parts


def _emit_concat(node: "Node", cg: "Emitter") -> str:
    y = node.outputs[0]
    outer, row, parts = _concat_parts(node, cg)
    ct = cg.ctype(y)
    return "".join(copy_nd(ct, cg.ptr(y), cg.ptr(x), [outer, width], [row, 1], [width, 1], dst_off=D.cpp(off))
                   for x, width, off in parts)


def _parts_chain(c: str, parts: list[tuple], width, stmt: Callable[[str, Any, Any], str]) -> str:
    """An if/else chain over the position ``c`` in a row of ``width``: ``stmt(name, part width, offset)`` for
    the part ``(name, part width, offset)`` holding ``c`` (parts in order; positions outside them do nothing)."""
    lines = []
    end: D.DimLike = 0
    for k, (name, w, off) in enumerate(parts):
        new_end = D.norm(off + w)
        conds = [f"{c} >= {D.cpp(off)}"] if D.norm(off) != D.norm(end) else []
        last = k == len(parts) - 1 and D.norm(new_end) == D.norm(width)
        if not last:
            conds.append(f"{c} < {D.cpp(new_end)}")
        head = "" if k == 0 else "} else "
        lines.append(f"{head}if ({' && '.join(conds)}) {{" if conds else f"{head}{{")
        lines.append(f"  {stmt(name, w, off)}")
        end = new_end
    if len(lines) == 2 and lines[0] == "{":
        return lines[1].strip() + "\n"
    return "\n".join(lines) + "\n}\n"


def _emit_concat_cuda(node: "Node", cg: "Emitter") -> str:
    """Concat on the GPU: one kernel over the output, each thread reading its element from the input holding it."""
    y = node.outputs[0]
    outer, row, parts = _concat_parts(node, cg)
    parts = [p for p in parts if p[1] != 0]
    ct = cg.ctype(y)
    if not parts or outer == 0:
        return ""
    yp = cg.ptr(y)
    if len(parts) == 1:
        x, width, off = parts[0]
        return strided_copy(cg, ct, yp, cg.ptr(x), [outer, width], [row, 1], [width, 1], dst_off=D.cpp(off))
    c = "i" if outer == 1 else "c"
    head = "" if outer == 1 else f"const int64_t o = i / {D.cpp(row)};\nconst int64_t c = i - o * {D.cpp(row)};\n"

    def read(x: str, w, o) -> str:
        pos = c if D.norm(o) == 0 else f"{c} - {D.cpp(o)}"
        return f"{yp}[i] = {cg.ptr(x)}[{cpp_sum(['' if outer == 1 else _term('o', w), pos])}];"

    return cg.par_for("i", D.norm(outer * row), head + _parts_chain(c, parts, row, read))


def _batch_concat(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule: all inputs batched on one axis, concatenated along another."""
    return all(a is not None for a in ins) and BR.same_axis_not(BR.axis_attr(node, out_rank[0], 0), ins, outs)


register("Concat", infer=_infer_concat, emit=_emit_concat, fold=_fold_concat,
         check=lambda n, g: _check_dtypes(n, g, range(len(n.inputs))), batch=_batch_concat,
         cuda=_emit_concat_cuda)


def split_sizes(node: "Node", dim: D.DimLike, sizes: list | None, n_out: int) -> list:
    if sizes is not None:
        if len(sizes) != n_out:
            raise node_error(node, f"split {sizes} has {len(sizes)} entries for {n_out} outputs")
        if any(D.is_static(s) and int(s) < 0 for s in sizes):
            raise node_error(node, f"split {sizes} has negative entries")
        if D.norm(sum(sizes[1:], sizes[0]) if sizes else 0) != D.norm(dim):
            raise node_error(node, f"split {sizes} does not add up to the axis length {D.fmt(dim)}")
        return [D.norm(s) for s in sizes]
    num = node.attrs.get("num_outputs")
    n = int(num) if num is not None else n_out
    if num is not None and n != n_out:
        raise node_error(node, f"num_outputs={n} but the node has {n_out} outputs")
    if D.is_static(dim):
        d = int(dim)
        if num is None:
            if d % n:
                raise node_error(node, f"axis length {d} cannot be split into {n} equal parts")
            return [d // n] * n
        chunk = -(-d // n)
        sizes = [min(chunk, max(d - k * chunk, 0)) for k in range(n)]
        return sizes
    try:
        part = D.norm(dim // n)
    except ShapeError as e:
        raise node_error(node, f"symbolic axis length {D.fmt(dim)} cannot be split into {n} equal parts") from e
    return [part] * n


def _split_setup(node: "Node", shape: Sequence, sizes: list | None) -> tuple[int, list]:
    axis = norm_axis(node, int(node.attrs.get("axis", 0)), len(shape))
    return axis, split_sizes(node, shape[axis], sizes, len(node.outputs))


@_named
def _infer_split(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    axis, sizes = _split_setup(node, t.shape, _const_or_attr(node, g, 1, "split", "split"))
    out = []
    for s in sizes:
        shape = list(t.shape)
        shape[axis] = s
        out.append((t.dtype, tuple(shape)))
    return out


@_folding
def _fold_split(node: "Node", vals: list):
    x = np.asarray(vals[0])
    axis, sizes = _split_setup(node, x.shape, _fold_const_or_attr(node, vals, 1, "split"))
    bounds = np.cumsum([int(s) for s in sizes])[:-1]
    return [tidy(p) for p in np.split(x, bounds, axis=axis)]


def _split_parts(node: "Node", cg: "Emitter") -> tuple[D.DimLike, D.DimLike, list[tuple[str, D.DimLike, D.DimLike]]]:
    """Split's input as ``outer`` rows of ``row`` elements (the split axis and those after it), and its parts
    ``(output, width, offset)``: every present output takes ``width`` elements of each row from ``offset`` on
    (outputs of width 0 included)."""
    shape = cg.shape(node.inputs[0])
    axis = norm_axis(node, int(node.attrs.get("axis", 0)), len(shape))
    rest = D.prod(shape[axis + 1:])
    parts = []
    off: D.DimLike = 0
    for y in node.outputs:
        width = D.norm(cg.g.t(y).shape[axis] * rest) if y else 0
        if y:
            parts.append((y, width, off))
        off = D.norm(off + width)
    return D.prod(shape[:axis]), D.prod(shape[axis:]), parts


def _emit_split(node: "Node", cg: "Emitter") -> str:
    x = node.inputs[0]
    outer, row, parts = _split_parts(node, cg)
    ct = cg.ctype(x)
    return "".join(copy_nd(ct, cg.ptr(y), cg.ptr(x), [outer, width], [width, 1], [row, 1], src_off=D.cpp(off))
                   for y, width, off in parts)


def _emit_split_cuda(node: "Node", cg: "Emitter") -> str:
    """Split on the GPU: one kernel over the input, each thread writing its element to the output holding it."""
    x = node.inputs[0]
    outer, row, parts = _split_parts(node, cg)
    parts = [p for p in parts if p[1] != 0]
    ct = cg.ctype(x)
    if not parts or outer == 0:
        return ""
    xp = cg.ptr(x)
    if len(parts) == 1:
        y, width, off = parts[0]
        return strided_copy(cg, ct, cg.ptr(y), xp, [outer, width], [width, 1], [row, 1], src_off=D.cpp(off))
    c = "i" if outer == 1 else "c"
    head = "" if outer == 1 else f"const int64_t o = i / {D.cpp(row)};\nconst int64_t c = i - o * {D.cpp(row)};\n"

    def write(y: str, w, o) -> str:
        pos = c if D.norm(o) == 0 else f"{c} - {D.cpp(o)}"
        return f"{cg.ptr(y)}[{cpp_sum(['' if outer == 1 else _term('o', w), pos])}] = {xp}[i];"

    return cg.par_for("i", D.norm(outer * row), head + _parts_chain(c, parts, row, write))


def _check_split(node: "Node", g: "Graph"):
    if node.input(1) and not g.is_const(node.input(1)):
        return "the split input must be a constant"
    return _check_data(node, g)


def _batch_split(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule: split along an axis other than the batch's."""
    return BR.same_axis_not(BR.axis_attr(node, in_rank[0], 0), ins[:1], outs)


register("Split", infer=_infer_split, emit=_emit_split, fold=_fold_split, check=_check_split,
         const_inputs=(1,), batch=_batch_split, cuda=_emit_split_cuda)


# ------------------------------------------------------------------------------------------------------
# Slice

def _always_ge(p: tuple[int, int], q: tuple[int, int], mmin: int = 1) -> bool:
    """Whether a*M + b >= c*M + d for every M >= mmin, for p = (a, b) and q = (c, d)."""
    a, b = p[0] - q[0], p[1] - q[1]
    return a >= 0 and a * mmin + b >= 0


def _clamp(p: tuple[int, int], lo: tuple[int, int], hi: tuple[int, int], mmin: int = 1) -> tuple[int, int]:
    checks = ((lo, _always_ge(p, lo, mmin), _always_ge(lo, p, mmin)),
              (hi, _always_ge(hi, p, mmin), _always_ge(p, hi, mmin)))
    for bound, keep, take in checks:
        if keep:
            continue
        if take:
            p = bound
            continue
        raise D.SymbolicError(f"slice position {p[0]}*M{p[1]:+d} may or may not lie within the symbolic axis "
                              f"(bound {bound[0]}*M{bound[1]:+d})")
    return p


def slice_axis(d: D.DimLike, start: D.DimLike, end: D.DimLike, step: int):
    """ONNX slicing of one axis of length ``d``.

    Returns ``(first, count)``: ``first`` is the first index as ``(a, b)``, meaning ``a*M + b`` where ``M`` is
    the monomial of a symbolic ``d`` (``a`` is 0 for a static axis), and ``count`` the number of elements.
    """
    if step == 0:
        raise ShapeError("slice step is 0")
    if D.is_static(d):
        if not (D.is_static(start) and D.is_static(end)):
            raise D.SymbolicError(f"symbolic slice bounds {D.fmt(start)}:{D.fmt(end)} "
                                  f"on a static axis of length {d}")
        s, e, st = slice(int(start), int(end), int(step)).indices(int(d))
        return (0, s), len(range(s, e, st))
    c, syms = d.coeff, d.syms  # type: ignore[union-attr]
    full = (c, 0)

    def pos(v: D.DimLike, is_start: bool) -> tuple[int, int]:
        if isinstance(v, D.Dim):
            if v.syms != syms:
                raise D.SymbolicError(f"slice bound {D.fmt(v)} on an axis of length {D.fmt(d)}")
            return (v.coeff + c, 0) if v.coeff < 0 else (v.coeff, 0)
        v = int(v)
        if v >= SLICE_INF:
            return full if step > 0 or not is_start else (c, -1)
        if v <= -SLICE_INF:
            return (0, 0) if step > 0 or is_start else (0, -1)
        return (c, v) if v < 0 else (0, v)

    s, e = pos(start, True), pos(end, False)
    if step > 0:
        lo_s, hi_s, lo_e, hi_e = (0, 0), full, (0, 0), full
    else:
        lo_s, hi_s, lo_e, hi_e = (0, 0), (c, -1), (0, -1), (c, -1)
    mmin = max(D.min_value(D.Dim(1, syms)), 1)  # derived symbols (L + 1) are larger than 1
    s, e = _clamp(s, lo_s, hi_s, mmin), _clamp(e, lo_e, hi_e, mmin)
    diff = (e[0] - s[0], e[1] - s[1]) if step > 0 else (s[0] - e[0], s[1] - e[1])
    st = abs(step)
    if _always_ge((0, 0), diff, mmin):
        return s, 0
    if not _always_ge(diff, (0, 1), mmin):
        raise D.SymbolicError(f"slice may or may not be empty on an axis of length {D.fmt(d)}")
    a, b = diff
    if a == 0:
        return s, -(-b // st)
    if b == 0 and a % st == 0:
        return s, D.Dim.make(a // st, syms)
    if st == 1:  # a sum (L + 1 - 1, L - 1): a derived symbol while compiling, or an error outside
        return s, D.Dim.make(a, syms) + b
    raise D.SymbolicError(f"slice of length ({a}*{D.fmt(D.Dim(1, syms))} + {b}) / {st} is not a monomial")


def _slice_params(node: "Node", rank: int, starts, ends, axes, steps):
    if starts is None or ends is None:
        raise node_error(node, "starts and ends are required")
    if len(starts) != len(ends):
        raise node_error(node, f"starts {starts} and ends {ends} differ in length")
    axes = list(range(len(starts))) if axes is None else [norm_axis(node, int(a), rank) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    if len(axes) != len(starts) or len(steps) != len(starts):
        raise node_error(node, "starts, ends, axes and steps differ in length")
    if len(set(axes)) != len(axes):
        raise node_error(node, f"repeated axes {axes}")
    if any(s == 0 for s in steps):
        raise node_error(node, "a step is 0")
    return starts, ends, axes, steps


def slice_plan(node: "Node", shape: Sequence, starts, ends, axes, steps) -> list[tuple]:
    """Per axis ``(first (a, b), count, step)``."""
    starts, ends, axes, steps = _slice_params(node, len(shape), starts, ends, axes, steps)
    plan = [((0, 0), D.norm(d), 1) for d in shape]
    for s, e, a, st in zip(starts, ends, axes, steps):
        first, count = slice_axis(shape[a], s, e, st)
        plan[a] = (first, D.norm(count), st)
    return plan


def slice_inputs(node: "Node", g: "Graph"):
    """Slice's ``(starts, ends, axes, steps)``: from its constant inputs (opset 10+) or its attributes (opset 1);
    None for an absent one (a ShapeError when one is not known at compile time)."""
    if node.input(1) or "starts" not in node.attrs:
        what = ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps"))
        return tuple(const_ints(node, g, i, w) for i, w in what)
    return node.attrs["starts"], node.attrs["ends"], node.attrs.get("axes"), None


@_named
def _infer_slice(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    plan = slice_plan(node, t.shape, *slice_inputs(node, g))
    return [(t.dtype, tuple(c for _, c, _ in plan))]


@_folding
def _fold_slice(node: "Node", vals: list):
    x = np.asarray(vals[0])
    if _value(vals, 1) is not None or "starts" not in node.attrs:
        args = [_dimlist(_value(vals, i)) for i in (1, 2, 3, 4)]
    else:
        args = [node.attrs["starts"], node.attrs["ends"], node.attrs.get("axes"), None]
    starts, ends, axes, steps = _slice_params(node, x.ndim, *args)
    idx: list[Any] = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if not (D.is_static(s) and D.is_static(e)):
            raise D.SymbolicError(f"symbolic slice bounds {D.fmt(s)}:{D.fmt(e)}")
        lo, hi, _ = slice(int(s), int(e), st).indices(x.shape[a])
        idx[a] = slice(lo, hi if hi >= 0 else None, st)
    return [tidy(x[tuple(idx)])]


def _first_expr(first: tuple[int, int], d: D.DimLike, stride: D.DimLike) -> str:
    a, b = first
    terms = []
    if a:
        terms.append(D.cpp(D.norm(D.Dim.make(a, d.syms) * stride)))  # type: ignore[union-attr]
    if b:
        terms.append(D.cpp(D.norm(b * stride)))
    return cpp_sum(terms)


def _emit_slice(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    plan = slice_plan(node, shape, *slice_inputs(node, cg.g))
    ist = strides(shape)
    src_off = cpp_sum([_first_expr(f, d, s) for (f, _, _), d, s in zip(plan, shape, ist)])
    ext = [c for _, c, _ in plan]
    return strided_copy(cg, cg.ctype(y), cg.ptr(y), cg.ptr(x), ext, strides(ext),
                        [D.norm(s * st) for (_, _, st), s in zip(plan, ist)], src_off=src_off)


def _check_slice(node: "Node", g: "Graph"):
    for i, what in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")):
        if node.input(i) and not g.is_const(node.input(i)):
            return f"{what} must be a constant"
    return _check_data(node, g)


def _batch_slice(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule: slices of other axes; along the batch only the whole of it."""
    a = ins[0]
    if a is None or outs[0] != a or any(x is not None for x in ins[1:]):
        return False
    starts, ends, sl_axes, steps = slice_inputs(node, g)
    rank = in_rank[0]
    if sl_axes is None:  # axes 0, 1, ...: one per start value
        sliced = list(range(len(starts)))
    else:
        sliced = [int(x) + rank if int(x) < 0 else int(x) for x in sl_axes]
    if a not in sliced:
        return True
    # along the batch only the whole of it: start 0, step 1, end the batch size itself or "to the end"
    j = sliced.index(a)
    start, end, step = starts[j], ends[j], (steps[j] if steps else 1)
    sym = g.t(node.inputs[0]).shape[a].syms[0][0]
    whole = BR.is_batch(end, sym) or (not isinstance(end, D.Dim) and int(end) >= 2**31)
    return not isinstance(start, D.Dim) and int(start) == 0 and not isinstance(step, D.Dim) and int(step) == 1 \
        and whole


register("Slice", infer=_infer_slice, emit=_emit_slice, fold=_fold_slice, check=_check_slice,
         const_inputs=(1, 2, 3, 4), batch=_batch_slice, cuda=True)


# ------------------------------------------------------------------------------------------------------
# Gather

def _gather_axis(node: "Node", rank: int) -> int:
    return norm_axis(node, int(node.attrs.get("axis", 0)), rank)


@_named
def _infer_gather(node: "Node", g: "Graph"):
    t, ind = g.t(node.inputs[0]), g.t(node.inputs[1])
    if ind.dtype not in (np.int64, np.int32):
        raise node_error(node, f"indices dtype {ind.dtype} (int64 or int32 expected)")
    if t.rank == 0:
        raise node_error(node, "data must have rank >= 1")
    axis = _gather_axis(node, t.rank)
    v = g.const(node.inputs[1])
    if v is not None and D.is_static(t.shape[axis]):
        _check_indices(node, np.asarray(v), int(t.shape[axis]))
    return [(t.dtype, tuple(t.shape[:axis]) + tuple(ind.shape) + tuple(t.shape[axis + 1:]))]


def _check_indices(node: "Node", idx: np.ndarray, n: int) -> np.ndarray:
    if idx.dtype == object:
        raise D.SymbolicError(f"node '{node.name}' (Gather): symbolic indices")
    i = idx.astype(np.int64)
    if i.size and (i.min() < -n or i.max() >= n):
        raise node_error(node, f"indices {i.reshape(-1).tolist()} out of range for an axis of length {n}")
    return np.where(i < 0, i + n, i)


@_folding
def _fold_gather(node: "Node", vals: list):
    x, idx = np.asarray(vals[0]), np.asarray(vals[1])
    axis = _gather_axis(node, x.ndim)
    i = _check_indices(node, idx, x.shape[axis])
    return [tidy(np.take(x, i, axis=axis))]


def _gather_dims(node: "Node", cg: "Emitter") -> tuple[Any, Any, Any, Any]:
    """Gather's ``(n_ax, outer, inner, nidx)``: the data's extent on the gather axis, the products of its extents
    before and after that axis, and the number of indices."""
    shape = cg.shape(node.inputs[0])
    axis = _gather_axis(node, len(shape))
    return shape[axis], D.prod(shape[:axis]), D.prod(shape[axis + 1:]), D.prod(cg.shape(node.inputs[1]))


def _gather_const_indices(node: "Node", cg: "Emitter", n_ax: D.DimLike) -> np.ndarray | None:
    """Gather's indices as a flat int64 array when they are constant and known to be in range at compile time
    (on a static axis checked, negative ones made positive; on a symbolic axis all of them non-negative and below
    its coefficient); None otherwise."""
    v = cg.const(node.inputs[1])
    if v is None or v.dtype == object:
        return None
    iv = np.asarray(v).astype(np.int64).reshape(-1)
    if D.is_static(n_ax):
        return _check_indices(node, iv, int(n_ax)).reshape(-1)
    if iv.size > 0 and iv.min() >= 0 and int(iv.max()) < n_ax.coeff:
        return iv
    return None


def _emit_gather(node: "Node", cg: "Emitter") -> str:
    x, ind, y = node.inputs[0], node.inputs[1], node.outputs[0]
    n_ax, outer, inner, nidx = _gather_dims(node, cg)
    if nidx == 0 or outer == 0 or inner == 0:
        return ""
    ct = cg.ctype(y)
    iv = _gather_const_indices(node, cg, n_ax)
    if iv is not None:
        if iv.size == 0:
            return ""
        k0 = int(iv[0])
        if np.array_equal(iv, np.arange(k0, k0 + iv.size)):  # a contiguous block of rows: a slice
            return copy_nd(ct, cg.ptr(y), cg.ptr(x), [outer, iv.size, inner],
                           [D.norm(iv.size * inner), inner, 1], [D.norm(n_ax * inner), inner, 1],
                           src_off=D.cpp(D.norm(k0 * inner)))
        if iv.size <= GATHER_UNROLL:  # one copy per index and outer row, offsets known at compile time
            o = "o" if outer != 1 else ""
            body = ""
            for j, k in enumerate(iv.tolist()):
                doff = cpp_sum([_term(o, D.norm(nidx * inner)) if o else "", D.cpp(D.norm(j * inner))])
                soff = cpp_sum([_term(o, D.norm(n_ax * inner)) if o else "", D.cpp(D.norm(k * inner))])
                body += _row_copy(ct, cg.ptr(y), doff, cg.ptr(x), soff, inner)
            if not o:
                return body
            return f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n" + "".join(
                "  " + line + "\n" for line in body.splitlines()) + "}\n"
        wp = cg.weight(iv.astype(np.int64), f"{node.name}.indices")
        body = _gather_body(ct, cg.ptr(y), cg.ptr(x), "k", outer, n_ax, nidx, inner)
        return (f"const int64_t* idx = {wp};\n"
                + _gather_loops(outer, nidx, f"const int64_t k = idx[j];\n{body}"))
    ict = cg.ctype(ind)
    msg = string(f"node '{node.name}' (Gather): index out of range")
    n_c = D.cpp(n_ax)
    body = (
        f"int64_t k = static_cast<int64_t>(idx[j]);\n"
        f"if (k < 0) k += {n_c};\n"
        f"if (k < 0 || k >= {n_c}) throw std::out_of_range({msg});\n"
        + _gather_body(ct, cg.ptr(y), cg.ptr(x), "k", outer, n_ax, nidx, inner)
    )
    return f"const {ict}* idx = {cg.ptr(ind)};\n" + _gather_loops(outer, nidx, body)


def _emit_gather_cuda(node: "Node", cg: "Emitter") -> str:
    """Gather on the GPU: one thread per output element (a contiguous block of constant indices: a slice).

    A run-time index out of range gives 0 on the GPU, which cannot throw (as onnxruntime's CUDA Gather); the host
    build of the same code (cuda-host) throws as the CPU code does."""
    x, ind, y = node.inputs[0], node.inputs[1], node.outputs[0]
    n_ax, outer, inner, nidx = _gather_dims(node, cg)
    if nidx == 0 or outer == 0 or inner == 0:
        return ""
    ct = cg.ctype(y)
    yp, xp = cg.ptr(y), cg.ptr(x)
    iv = _gather_const_indices(node, cg, n_ax)
    idx, checked = cg.ptr(ind), False
    if iv is not None:
        if iv.size == 0:
            return ""
        k0 = int(iv[0])
        if np.array_equal(iv, np.arange(k0, k0 + iv.size)):  # a contiguous block of rows: a slice
            return strided_copy(cg, ct, yp, xp, [outer, iv.size, inner], [D.norm(iv.size * inner), inner, 1],
                                [D.norm(n_ax * inner), inner, 1], src_off=D.cpp(D.norm(k0 * inner)))
        idx, checked = cg.weight(iv.astype(np.int64), f"{node.name}.indices"), True
    decl = unflatten([("o" if outer != 1 else None, outer), ("j" if nidx != 1 else None, nidx),
                      ("r" if inner != 1 else None, inner)])
    j = "j" if nidx != 1 else "0"
    soff = cpp_sum([_term("o", D.norm(n_ax * inner)) if outer != 1 else "", _term("k", inner),
                    "r" if inner != 1 else ""])
    if checked:
        return cg.par_for("i", D.norm(outer * nidx * inner), decl + f"const int64_t k = {idx}[{j}];\n"
                          f"{yp}[i] = {xp}[{soff}];\n")
    n_c = D.cpp(n_ax)
    msg = f"node '{node.name}' (Gather): index out of range"
    body = (f"int64_t k = static_cast<int64_t>({idx}[{j}]);\n"
            f"if (k < 0) k += {n_c};\n"
            f"if (k >= {n_c} || k < 0) {cg.kernel_error(msg)}\n"
            f"{yp}[i] = k >= 0 && k < {n_c} ? {xp}[{soff}] : {ct}(0);\n")
    return cg.par_for("i", D.norm(outer * nidx * inner), decl + body)


def _row_copy(ct: str, dst: str, doff: str, src: str, soff: str, n) -> str:
    if n == 1:
        return f"{dst}[{doff}] = {src}[{soff}];\n"
    return f"std::memcpy({_at(dst, doff)}, {_at(src, soff)}, sizeof({ct}) * size_t({D.cpp(n)}));\n"


def _gather_body(ct: str, dst: str, src: str, k: str, outer, n_ax, nidx, inner) -> str:
    o = "o" if outer != 1 else ""
    doff = cpp_sum([_term(o, D.norm(nidx * inner)) if o else "", _term("j", inner)])
    soff = cpp_sum([_term(o, D.norm(n_ax * inner)) if o else "", _term(k, inner)])
    return _row_copy(ct, dst, doff, src, soff, inner)


def _gather_loops(outer, nidx, body: str) -> str:
    inner_loop = f"for (int64_t j = 0; j < {D.cpp(nidx)}; ++j) {{\n" + "".join(
        "  " + line + "\n" for line in body.splitlines()) + "}\n"
    if outer == 1:
        return inner_loop
    return f"for (int64_t o = 0; o < {D.cpp(outer)}; ++o) {{\n" + "".join(
        "  " + line + "\n" for line in inner_loop.splitlines()) + "}\n"


def _check_gather(node: "Node", g: "Graph"):
    t = g.tensors.get(node.input(1))
    if t is not None and t.dtype not in (np.int64, np.int32):
        return f"indices of dtype {t.dtype} are not supported (int64, int32)"
    return _check_data(node, g)


def _batch_gather(node: "Node", g: "Graph", ins, outs, in_rank, out_rank) -> bool:
    """Batch rule: samples of data gathered along another axis with shared indices, or a shared table looked
    up by each sample's indices; never both batched."""
    axis = BR.axis_attr(node, in_rank[0], 0)
    d, i = ins[0], ins[1]
    o = outs[0]
    if d is not None and i is None:  # samples of data, the same indices for each: out = d[:axis] + idx + d[axis+1:]
        return d != axis and o == (d if d < axis else d - 1 + in_rank[1])
    if d is None and i is not None:  # a shared table looked up by each sample's indices
        return o == axis + i
    return False


register("Gather", infer=_infer_gather, emit=_emit_gather, fold=_fold_gather, check=_check_gather,
         batch=_batch_gather, cuda=_emit_gather_cuda)


# ------------------------------------------------------------------------------------------------------
# Constant, ConstantOfShape, SymConst

def _tensor_attr(v: Any) -> np.ndarray:
    """A tensor-valued attribute (TensorProto or array) as a NumPy array."""
    if isinstance(v, np.ndarray):
        return v
    if hasattr(v, "dims") and hasattr(v, "data_type"):
        from onnx import numpy_helper

        return numpy_helper.to_array(v)
    return np.asarray(v)


def constant_value(node: "Node") -> np.ndarray:
    a = node.attrs
    if "value" in a:
        return _tensor_attr(a["value"])
    if "value_float" in a:
        return np.array(a["value_float"], dtype=np.float32)
    if "value_floats" in a:
        return np.array(list(a["value_floats"]), dtype=np.float32)
    if "value_int" in a:
        return np.array(a["value_int"], dtype=np.int64)
    if "value_ints" in a:
        return np.array(list(a["value_ints"]), dtype=np.int64)
    raise node_error(node, "no supported value attribute")


def _check_constant(node: "Node", g: "Graph"):
    a = node.attrs
    for k in ("sparse_value", "value_string", "value_strings"):
        if k in a:
            return f"attribute '{k}' is not supported"
    if not any(k in a for k in ("value", "value_float", "value_floats", "value_int", "value_ints")):
        return "no value attribute"
    v = constant_value(node)
    if np.dtype(v.dtype) not in CTYPES:
        return f"constant of dtype {v.dtype} is not supported"
    return None


@_named
def _infer_constant(node: "Node", g: "Graph"):
    v = constant_value(node)
    return [(v.dtype, tuple(v.shape))]


def _fold_constant(node: "Node", vals: list):
    return [constant_value(node)]


def _emit_constant(node: "Node", cg: "Emitter") -> str:
    return _store_values(cg, node.outputs[0], constant_value(node))


register("Constant", infer=_infer_constant, emit=_emit_constant, fold=_fold_constant, check=_check_constant,
         cuda=True)


def _cos_value(node: "Node") -> np.ndarray:
    v = node.attrs.get("value")
    if v is None:
        return np.zeros(1, dtype=np.float32)
    return _tensor_attr(v).reshape(-1)[:1]


def _cos_shape(node: "Node", spec: list | None) -> tuple:
    if spec is None:
        raise node_error(node, "the shape input is missing")
    if any(D.is_static(d) and int(d) < 0 for d in spec):
        raise node_error(node, f"negative dimension in shape {spec}")
    return tuple(D.norm(d) for d in spec)


@_named
def _infer_cos(node: "Node", g: "Graph"):
    return [(_cos_value(node).dtype, _cos_shape(node, const_ints(node, g, 0, "shape")))]


@_folding
def _fold_cos(node: "Node", vals: list):
    shape = _static_ints(node, list(_cos_shape(node, _dimlist(_value(vals, 0)))), "shape")
    v = _cos_value(node)
    return [np.full(tuple(shape or ()), v[0], dtype=v.dtype)]


def _emit_cos(node: "Node", cg: "Emitter") -> str:
    return _fill(cg, node.outputs[0], _cos_value(node)[0])


def _check_cos(node: "Node", g: "Graph"):
    v = _cos_value(node)
    if np.dtype(v.dtype) not in CTYPES:
        return f"value of dtype {v.dtype} is not supported"
    if node.input(0) and not g.is_const(node.input(0)):
        return "the shape input must be a constant"
    return None


register("ConstantOfShape", infer=_infer_cos, emit=_emit_cos, fold=_fold_cos, check=_check_cos,
         const_inputs=(0,), batch=BR.constant, cuda=True)


def _symconst_value(node: "Node") -> np.ndarray:
    return np.asarray(node.attrs["value"])


def _infer_symconst(node: "Node", g: "Graph"):
    return [(np.dtype(np.int64), tuple(_symconst_value(node).shape))]


def _fold_symconst(node: "Node", vals: list):
    return [tidy(_symconst_value(node))]


def _emit_symconst(node: "Node", cg: "Emitter") -> str:
    v = _symconst_value(node)
    return _store_exprs(cg, cg.ptr(node.outputs[0]), [D.cpp(D.norm(d)) for d in v.reshape(-1).tolist()])


register("SymConst", infer=_infer_symconst, emit=_emit_symconst, fold=_fold_symconst, cuda=True)


# ------------------------------------------------------------------------------------------------------
# Shape and Size

def _shape_range(node: "Node", rank: int) -> tuple[int, int]:
    start, end = int(node.attrs.get("start", 0)), node.attrs.get("end")
    lo, hi, _ = slice(start, None if end is None else int(end)).indices(rank)
    return lo, max(hi, lo)


def shape_value(node: "Node", g: "Graph") -> np.ndarray:
    """The value of a Shape node: int64 when static, an object array holding Dims otherwise."""
    shape = g.t(node.inputs[0]).shape
    lo, hi = _shape_range(node, len(shape))
    return symbolic_array(shape[lo:hi])


def size_value(node: "Node", g: "Graph") -> np.ndarray:
    """The value of a Size node: an int64 scalar, or a 0-d object array holding a Dim."""
    n = D.norm(g.t(node.inputs[0]).numel)
    return symbolic_array([n], ())


def fold_shape(node: "Node", g: "Graph") -> list[np.ndarray]:
    """Fold Shape or Size from the input's (possibly symbolic) shape: no input value is needed."""
    if node.op_type == "Size":
        return [size_value(node, g)]
    return [shape_value(node, g)]


@_named
def _infer_shape(node: "Node", g: "Graph"):
    lo, hi = _shape_range(node, g.t(node.inputs[0]).rank)
    return [(np.dtype(np.int64), (hi - lo,))]


def _infer_size(node: "Node", g: "Graph"):
    return [(np.dtype(np.int64), ())]


def _emit_shape(node: "Node", cg: "Emitter") -> str:
    v = shape_value(node, cg.g) if node.op_type == "Shape" else size_value(node, cg.g)
    return _store_exprs(cg, cg.ptr(node.outputs[0]), [D.cpp(D.norm(d)) for d in v.reshape(-1).tolist()])


register("Shape", infer=_infer_shape, emit=_emit_shape, cuda=True)
register("Size", infer=_infer_size, emit=_emit_shape, cuda=True)


# ------------------------------------------------------------------------------------------------------
# Expand and Tile

@_named
def _infer_expand(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    spec = const_ints(node, g, 1, "shape")
    if spec is None:
        raise node_error(node, "the shape input is missing")
    return [(t.dtype, broadcast_shapes(node, t.shape, spec))]


@_folding
def _fold_expand(node: "Node", vals: list):
    x = np.asarray(vals[0])
    spec = _static_ints(node, _dimlist(_value(vals, 1)), "shape")
    shape = broadcast_shapes(node, x.shape, spec or [])
    return [tidy(np.broadcast_to(x, shape).copy())]


def _emit_expand(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    out = cg.shape(y)
    ins = [1] * (len(out) - len(cg.shape(x))) + cg.shape(x)
    ist = strides(ins)
    src = [0 if d == 1 else s for d, s in zip(ins, ist)]
    return strided_copy(cg, cg.ctype(y), cg.ptr(y), cg.ptr(x), out, strides(out), src)


register("Expand", infer=_infer_expand, emit=_emit_expand, fold=_fold_expand, check=_check_data,
         const_inputs=(1,), batch=BR.broadcast_data, cuda=True)


def _repeats(node: "Node", reps: list | None, rank: int) -> list[int]:
    r = _static_ints(node, reps, "repeats")
    if r is None or len(r) != rank:
        raise node_error(node, f"repeats {r} must have one entry per axis ({rank})")
    if any(x < 0 for x in r):
        raise node_error(node, f"negative repeats {r}")
    return r


@_named
def _infer_tile(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    reps = _repeats(node, const_ints(node, g, 1, "repeats"), t.rank)
    return [(t.dtype, tuple(D.norm(d * r) for d, r in zip(t.shape, reps)))]


@_folding
def _fold_tile(node: "Node", vals: list):
    x = np.asarray(vals[0])
    return [tidy(np.tile(x, _repeats(node, _dimlist(_value(vals, 1)), x.ndim)))]


def _emit_tile(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = cg.shape(x)
    reps = _repeats(node, const_ints(node, cg.g, 1, "repeats"), len(shape))
    # the output as (r0, d0, r1, d1, ...) in row-major order: the input repeated along the r axes
    ext, src = [], []
    for d, r, s in zip(shape, reps, strides(shape)):
        ext += [r, d]
        src += [0, s]
    return strided_copy(cg, cg.ctype(y), cg.ptr(y), cg.ptr(x), ext, strides(ext), src)


register("Tile", infer=_infer_tile, emit=_emit_tile, fold=_fold_tile, check=_check_data, const_inputs=(1,),
         shape_inputs=(), cuda=True)


# ------------------------------------------------------------------------------------------------------
# Pad

PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_setup(node: "Node", shape: Sequence, pads: list | None, axes: list | None) -> list[tuple[int, int]]:
    r = len(shape)
    p = _static_ints(node, pads, "pads")
    if p is None:
        raise node_error(node, "pads are missing")
    ax = list(range(r)) if axes is None else [norm_axis(node, int(a), r) for a in axes]
    if len(p) != 2 * len(ax):
        raise node_error(node, f"pads {p} must have 2 entries per padded axis ({len(ax)} axes)")
    out = [(0, 0)] * r
    for k, a in enumerate(ax):
        out[a] = (p[k], p[k + len(ax)])
    mode = _str_attr(node, "mode", "constant")
    for a, (b, e) in enumerate(out):
        d = shape[a]
        if (b or e) and not D.is_static(d):
            raise D.SymbolicError(f"node '{node.name}' (Pad): cannot pad symbolic axis {a} ({D.fmt(d)})")
        if (b or e) and mode != "constant":
            if b < 0 or e < 0:
                raise node_error(node, f"negative pads are only supported in constant mode (pads {p})")
            if int(d) == 0:
                raise node_error(node, f"cannot pad an empty axis {a} in {mode} mode")
            if mode == "reflect" and (b >= int(d) or e >= int(d)):
                raise node_error(node, f"reflect pads {b}, {e} must be smaller than axis {a} of length {d}")
        if D.is_static(d) and int(d) + b + e < 0:
            raise node_error(node, f"pads {b}, {e} remove more than axis {a} of length {d}")
    return out


def _pad_inputs(node: "Node", g: "Graph"):
    if node.input(1) or "pads" not in node.attrs:
        pads = const_ints(node, g, 1, "pads")
        axes = const_ints(node, g, 3, "axes")
        cv = g.const(node.input(2)) if node.input(2) else None
    else:
        pads, axes = list(node.attrs["pads"]), None
        cv = np.array(node.attrs.get("value", 0.0))
    return pads, axes, cv


@_named
def _infer_pad(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    pads, axes, _ = _pad_inputs(node, g)
    pp = _pad_setup(node, t.shape, pads, axes)
    return [(t.dtype, tuple(D.norm(d + b + e) if (b or e) else d for d, (b, e) in zip(t.shape, pp)))]


@_folding
def _fold_pad(node: "Node", vals: list):
    x = np.asarray(vals[0])
    if _value(vals, 1) is not None or "pads" not in node.attrs:
        pads, axes = _dimlist(_value(vals, 1)), _dimlist(_value(vals, 3))
        cv = _value(vals, 2)
    else:
        pads, axes, cv = list(node.attrs["pads"]), None, np.array(node.attrs.get("value", 0.0))
    pp = _pad_setup(node, x.shape, pads, axes)
    # negative pads crop first
    crop = tuple(slice(max(-b, 0), x.shape[a] - max(-e, 0)) for a, (b, e) in enumerate(pp))
    x = x[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in pp]
    mode = _str_attr(node, "mode", "constant")
    if mode == "constant":
        c = 0 if cv is None or np.asarray(cv).size == 0 else np.asarray(cv).reshape(-1)[0]
        return [np.pad(x, width, mode="constant", constant_values=c)]
    return [np.pad(x, width, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])]


def _pad_plan(node: "Node", cg: "Emitter") -> tuple[Sequence, Sequence, list[tuple[int, int]], str, Any]:
    """Pad's ``(input shape, output shape, (begin, end) pads per axis, mode, constant value or None)``."""
    shape, out = cg.shape(node.inputs[0]), cg.shape(node.outputs[0])
    pads, axes, cv = _pad_inputs(node, cg.g)
    return shape, out, _pad_setup(node, shape, pads, axes), _str_attr(node, "mode", "constant"), cv


def _pad_source(mode: str, i: str, s: str, b: int, n: int) -> list[str]:
    """The lines that set ``s``, the source index of the output index ``i`` on an axis of ``n`` elements padded
    by ``b`` in front, in the edge, reflect or wrap ``mode``."""
    if mode == "edge":
        return [f"const int64_t {s} = std::min<int64_t>(std::max<int64_t>({i} - {b}, 0), {n - 1});"]
    if mode == "reflect":
        return [f"int64_t {s} = {i} - {b};",
                f"{s} = {s} < 0 ? -{s} : {s};",
                f"{s} = {s} >= {n} ? {2 * (n - 1)} - {s} : {s};"]
    return [f"const int64_t {s} = (({i} - {b}) % {n} + {n}) % {n};"]  # wrap


def _emit_pad(node: "Node", cg: "Emitter") -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape, out, pp, mode, cv = _pad_plan(node, cg)
    ct = cg.ctype(y)
    ist, ost = strides(shape), strides(out)
    if mode == "constant" or all(b == 0 and e == 0 for b, e in pp):
        code = ""
        if any(b > 0 or e > 0 for b, e in pp):
            cname = node.input(2) if len(node.inputs) > 2 else ""
            if cname and cg.const(cname) is None:  # the value given at run time: read from its input
                n = D.norm(cg.g.t(y).numel)
                code = f"std::fill_n({cg.ptr(y)}, {D.cpp(n)}, {cg.ptr(cname)}[0]);\n" if n != 0 else ""
            else:
                c = 0 if cv is None or np.asarray(cv).size == 0 else np.asarray(cv).reshape(-1)[0]
                code = _fill(cg, y, c)
        ext = [D.norm(d + min(b, 0) + min(e, 0)) if (b or e) else d for d, (b, e) in zip(shape, pp)]
        if any(D.is_static(n) and int(n) <= 0 for n in ext):
            return code
        doff = cpp_sum([D.cpp(D.norm(max(b, 0) * s)) for (b, _), s in zip(pp, ost)])
        soff = cpp_sum([D.cpp(D.norm(max(-b, 0) * s)) for (b, _), s in zip(pp, ist)])
        return code + copy_nd(ct, cg.ptr(y), cg.ptr(x), ext, ost, ist, dst_off=doff, src_off=soff)
    # edge / reflect / wrap: loops over the output with the source index of every padded axis
    last = max(a for a, (b, e) in enumerate(pp) if b or e)
    row = D.prod(shape[last + 1:])  # unpadded trailing axes: one contiguous run per output position
    lines = []
    dterms, sterms = [], []
    for a in range(last + 1):
        ind = "  " * a
        b, _ = pp[a]
        d = shape[a]
        lines.append(f"{ind}for (int64_t i{a} = 0; i{a} < {D.cpp(out[a])}; ++i{a}) {{")
        dterms.append(_term(f"i{a}", ost[a]))
        if not pp[a][0] and not pp[a][1]:
            sterms.append(_term(f"i{a}", ist[a]))
            continue
        lines += [f"{ind}  {line}" for line in _pad_source(mode, f"i{a}", f"s{a}", b, int(d))]
        sterms.append(_term(f"s{a}", ist[a]))
    ind = "  " * (last + 1)
    doff, soff = cpp_sum(dterms), cpp_sum(sterms)
    if row == 1:
        lines.append(f"{ind}{cg.ptr(y)}[{doff}] = {cg.ptr(x)}[{soff}];")
    else:
        lines.append(f"{ind}std::memcpy({_at(cg.ptr(y), doff)}, {_at(cg.ptr(x), soff)}, "
                     f"sizeof({ct}) * size_t({D.cpp(row)}));")
    for a in range(last, -1, -1):
        lines.append("  " * a + "}")
    return "\n".join(lines) + "\n"


def _emit_pad_cuda(node: "Node", cg: "Emitter") -> str:
    """Pad on the GPU: one thread per output element, its source index per padded axis (or the padding value)."""
    x, y = node.inputs[0], node.outputs[0]
    shape, out, pp, mode, cv = _pad_plan(node, cg)
    ct = cg.ctype(y)
    yp, xp = cg.ptr(y), cg.ptr(x)
    n_out = D.norm(cg.g.t(y).numel)
    if n_out == 0:
        return ""
    if all(b == 0 and e == 0 for b, e in pp):
        return cg.copy(yp, xp, f"sizeof({ct}) * size_t({D.cpp(n_out)})")
    # (output extent, input extent, input stride, pads); neighbouring unpadded axes merged into one
    groups: list[list] = []
    for d, o, st, (b, e) in zip(shape, out, strides(shape), pp):
        if not (b or e) and groups and not (groups[-1][3] or groups[-1][4]):
            groups[-1] = [D.norm(groups[-1][0] * d), D.norm(groups[-1][1] * d), st, 0, 0]
        else:
            groups.append([o, d, st, b, e])
    lines, conds, sterms = [], [], []
    for k, (_, d, st, b, e) in enumerate(groups):
        if not (b or e):
            sterms.append(_term(f"i{k}", st))
            continue
        n = int(d)
        if mode == "constant":
            lines.append(f"const int64_t s{k} = {cpp_sum([f'i{k}', str(-b)])};")
            conds += ([f"s{k} >= 0"] if b > 0 else []) + ([f"s{k} < {n}"] if e > 0 else [])
        else:
            lines += _pad_source(mode, f"i{k}", f"s{k}", b, n)
        sterms.append(_term(f"s{k}", st))
    code = "".join(line + "\n" for line in lines) + cpp_sum(sterms)
    decl = unflatten([(f"i{k}" if re.search(rf"\bi{k}\b", code) else None, g[0]) for k, g in enumerate(groups)])
    src = f"{xp}[{cpp_sum(sterms)}]"
    if conds:
        cname = node.input(2) if len(node.inputs) > 2 else ""
        if cname and cg.const(cname) is None:  # the value given at run time: read from its input
            value = f"{cg.ptr(cname)}[0]"
        else:
            value = literal(0 if cv is None or np.asarray(cv).size == 0 else np.asarray(cv).reshape(-1)[0], ct)
        src = f"{' && '.join(conds)} ? {src} : {value}"
    return cg.par_for("i", n_out, decl + "".join(line + "\n" for line in lines) + f"{yp}[i] = {src};\n")


def _check_pad(node: "Node", g: "Graph"):
    mode = _str_attr(node, "mode", "constant")
    if mode not in PAD_MODES:
        return f"mode '{mode}' is not supported ({', '.join(PAD_MODES)})"
    for i, what in ((1, "pads"), (3, "axes")):
        if node.input(i) and not g.is_const(node.input(i)):
            return f"{what} must be a constant"
    cname = node.input(2)
    if cname and not g.is_const(cname) and (not D.is_static(g.t(cname).numel) or int(g.t(cname).numel) != 1):
        return "constant_value must be one value"
    return _check_data(node, g)


# constant_value may be computed at run time (it is a value, not a shape)
register("Pad", infer=_infer_pad, emit=_emit_pad, fold=_fold_pad, check=_check_pad, const_inputs=(1, 3),
         shape_inputs=(), cuda=_emit_pad_cuda)


# ------------------------------------------------------------------------------------------------------
# Range

def _range_count(node: "Node", start, limit, delta) -> D.DimLike:
    if any(isinstance(v, D.Dim) for v in (start, delta)):
        raise D.SymbolicError(f"node '{node.name}' (Range): symbolic start or delta")
    if isinstance(limit, D.Dim):
        s, dl = int(start), int(delta)
        if s == 0 and dl > 0 and limit.coeff > 0 and limit.coeff % dl == 0:
            return D.norm(limit // dl)
        raise D.SymbolicError(f"node '{node.name}' (Range): length of range({s}, {D.fmt(limit)}, {dl}) "
                              "is not a monomial")
    if delta == 0:
        raise node_error(node, "delta is 0")
    if all(isinstance(v, int) for v in (start, limit, delta)):
        return max(-((start - limit) // delta), 0)
    return max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)


def _range_scalars(node: "Node", vals: Sequence) -> list:
    out = []
    for k, v in enumerate(vals):
        if v is None:
            raise node_error(node, f"input {k} must be a constant")
        a = np.asarray(v).reshape(-1)
        if a.size != 1:
            raise node_error(node, f"input {k} must be a scalar")
        x = a[0]
        out.append(D.norm(x) if a.dtype == object or a.dtype.kind in "iu" else float(x))
    return out


@_named
def _infer_range(node: "Node", g: "Graph"):
    t = g.t(node.inputs[0])
    start, limit, delta = _range_scalars(node, [g.const(i) for i in node.inputs[:3]])
    return [(t.dtype, (_range_count(node, start, limit, delta),))]


@_folding
def _fold_range(node: "Node", vals: list):
    start, limit, delta = _range_scalars(node, vals[:3])
    n = _range_count(node, start, limit, delta)
    if not D.is_static(n):
        raise D.SymbolicError(f"node '{node.name}' (Range): symbolic length {D.fmt(n)}")
    dt = np.asarray(vals[0]).dtype
    if dt == np.dtype(object):
        dt = np.dtype(np.int64)
    out = np.array([start + k * delta for k in range(int(n))], dtype=dt) if dt.kind in "iu" \
        else (np.float64(start) + np.arange(int(n)) * np.float64(delta)).astype(dt)
    return [out]


def _emit_range(node: "Node", cg: "Emitter") -> str:
    y = node.outputs[0]
    start, limit, delta = _range_scalars(node, [cg.const(i) for i in node.inputs[:3]])
    n = _range_count(node, start, limit, delta)
    if D.is_static(n) and int(n) <= limits.FOLD_MAX_ELEMENTS:  # larger: computed at run time (limits.py)
        return _store_values(cg, y, _fold_range(node, [cg.const(i) for i in node.inputs[:3]])[0])
    ct = cg.ctype(y)
    expr = "i" if ct == "int64_t" else f"static_cast<{ct}>(i)"
    if delta != 1:
        expr = f"{expr} * {literal(delta, ct)}"
    if start != 0:
        expr = f"{literal(start, ct)} + {expr}"
    if ct not in ("int64_t", "float", "double"):
        expr = f"static_cast<{ct}>({expr})"
    return cg.par_for("i", n, f"{cg.ptr(y)}[i] = {expr};")


def _check_range(node: "Node", g: "Graph"):
    for k in range(3):
        if not g.is_const(node.input(k)):
            return "start, limit and delta must be constants (the output length must be known)"
    return _check_data(node, g)


register("Range", infer=_infer_range, emit=_emit_range, fold=_fold_range, check=_check_range,
         const_inputs=(0, 1, 2), shape_inputs=(), cuda=True)
