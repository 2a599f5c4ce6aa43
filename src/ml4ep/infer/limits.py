"""Size limits: what ml4ep plans, folds and lets the generated code allocate.

Models are untrusted: a 150-byte model can ask for a tensor of 2^62 elements, at compile time (static shapes,
constant folding) or at run time (symbolic dimensions such as ``L^3 * M`` from ``Shape`` and ``Concat``).

* Compile time: a tensor, workspace group or rendered dimension whose static part alone is beyond the limits is
  a :class:`~ml4ep.errors.ShapeError` naming the node and the shape (:func:`check_static`).
* Run time: :func:`cpp_checks` is the block at the top of every ``infer``. It evaluates, with saturating
  arithmetic (``ml4ep_rt::SizeCalc``, no int64 overflow), the derived dimensions, the byte size of every tensor
  (each symbolic dimension counted as at least 1, so that every partial product the code forms is bounded too),
  the workspace total and every other dimension expression the code uses. A tensor or the workspace beyond
  ``ML4EP_MAX_BYTES`` (:data:`MAX_BYTES`, 2^47 bytes) and an expression beyond 2^62 throw ``std::length_error``
  naming the tensor, its node, its shape and the dimension values, before anything is allocated or indexed.
  The Python bridge turns it into an :class:`~ml4ep.errors.Ml4epError`.
* Constant folding materialises at most :data:`FOLD_MAX_ELEMENTS` elements per node and :data:`FOLD_MAX_BYTES`
  in all per model; beyond that a node is left to run time (its kernel computes it; a node that has no kernel
  is a ShapeError). The weights file is at most :data:`MAX_WEIGHT_BYTES`.
"""

from __future__ import annotations

import math

import numpy as np

from . import dims as D
from .graph import Graph, nested_nodes
from ..errors import ShapeError
from .._native.names import string

MAX_BYTES = 1 << 47  # one tensor, or the whole workspace (must match ML4EP_MAX_BYTES of cpp/prelude.hpp)
SAT = 1 << 62  # a dimension expression of the generated code (ml4ep_rt::kSizeSat)
FOLD_MAX_ELEMENTS = 1 << 26  # what constant folding may materialise for one node
FOLD_MAX_BYTES = 1 << 28  # ... and for the whole model (256 MiB)
MAX_WEIGHT_BYTES = 1 << 34  # the weights file (16 GiB)


def static_bytes(shape, itemsize: int) -> int:
    """The bytes of a shape with every symbol at 1 (a lower bound for the non-empty ones, exact when static)."""
    out = int(itemsize)
    for d in shape:
        out *= max(1, abs(D.split(d)[0]))
    return out


def fmt_bytes(n: int) -> str:
    return f"{n} bytes" + (f" (2^{math.log2(n):.1f})" if n > 0 else "")


def _owners(g: Graph) -> dict[str, str]:
    """tensor -> "node 'name' (Op)" of the node producing it (bodies of control flow included)."""
    out: dict[str, str] = {}
    for top in g.nodes:
        for n in [top, *nested_nodes(top)]:
            for o in n.outputs:
                if o:
                    out.setdefault(o, f"node '{n.name}' ({n.op_type})")
    for i in g.inputs:
        out.setdefault(i, "graph input")
    return out


def check_static(g: Graph, plan=None) -> None:
    """Refuse, at compile time, tensors (and workspace groups) whose size is beyond the limits whatever the
    symbolic dimensions are."""
    owners = _owners(g)
    for name, t in g.tensors.items():
        if t.value is not None:
            continue
        shape = tuple(g.derived.bound(d) for d in t.shape)
        b = static_bytes(shape, t.dtype.itemsize)
        if b > MAX_BYTES:
            raise ShapeError(
                f"{g.source}: tensor '{name}' of {owners.get(name, 'the model')} has shape {D.fmt_shape(shape)} "
                f"({t.dtype}): {fmt_bytes(b)} or more, over the limit of {fmt_bytes(MAX_BYTES)}")
    if plan is not None:
        total = sum(int(c) for c in plan.groups.values())
        if total > MAX_BYTES:
            big = max(plan.groups.items(), key=lambda kv: kv[1])
            raise ShapeError(
                f"{g.source}: the workspace needs {fmt_bytes(total)} or more (largest part: "
                f"{D.fmt(D.Dim.make(big[1], big[0]))} bytes), over the limit of {fmt_bytes(MAX_BYTES)}")


def cpp_checks(g: Graph, plan, name: str, rendered: set | None = None) -> str:
    """The run-time size checks of ``infer`` (see the module docstring); "" when every size is static."""
    check_static(g, plan)
    inputs = list(g.symbols)
    if not inputs:
        return ""
    owners = _owners(g)
    value: dict[str, str] = {s: f"zs_{D.cpp_name(s)}" for s in inputs}
    lines = ["ml4ep_rt::SizeCalc z_;"]
    for s in inputs:
        lines.append(f"const int64_t zs_{D.cpp_name(s)} = std::max<int64_t>(1, {D.cpp_name(s)});")
    shaped = {s for t in g.tensors.values() if t.value is None for d in t.shape for s, _ in D.split(g.derived.bound(d))[1]}
    dims_text = " + ".join(f'std::string({string((", " if k else "") + s + "=")}) + std::to_string({D.cpp_name(s)})'
                           for k, s in enumerate(inputs))
    lines.append(f"auto dims_ = [&]() {{ return {dims_text}; }};")
    lines.append("(void)z_; (void)dims_;")
    model = string(name)
    for dname, poly in g.derived.defs.items():
        if not all(s in value and s in inputs for k in poly for s, _ in k):
            continue
        terms = []
        for k, c in poly.items():
            fs = [D.cpp_name(s) for s, p in k for _ in range(p)]
            terms.append(f"z_.mono({int(c)}, {{{', '.join(fs)}}})")
        expr = terms[0]
        for t in terms[1:]:
            expr = f"z_.add({expr}, {t})"
        zd = f"zd_{D.cpp_name(dname)}"
        text = string(f"dimension '{dname}' = " + " + ".join(D.fmt(D.Dim.make(c, k)) if k else str(c)
                                                            for k, c in poly.items()))
        lines.append(f"const int64_t {zd} = {expr};")
        lines.append(f"if (z_.overflow) ml4ep_rt::size_error({model}, {text}, \"\", ml4ep_rt::kSizeSat, dims_());")
        if dname in shaped:
            lines.append(f"if ({zd} < 0) ml4ep_rt::negative_dim({model}, {text}, {zd}, dims_());")
        lines.append(f"const int64_t zs_{D.cpp_name(dname)} = std::max<int64_t>(1, {zd} < 0 ? -{zd} : {zd});")
        value[dname] = f"zs_{D.cpp_name(dname)}"

    def mono(c: int, syms) -> str | None:
        if not all(s in value for s, _ in syms):
            return None
        fs = [value[s] for s, p in syms for _ in range(p)]
        return f"z_.mono({abs(int(c))}, {{{', '.join(fs)}}})"

    # tensors: for each monomial, the largest static factor (bytes, symbols at >= 1)
    sizes: dict[tuple, tuple[int, str, str]] = {}
    for tname, t in g.tensors.items():
        if t.value is not None:
            continue
        shape = tuple(g.derived.bound(d) for d in t.shape)
        powers: dict[str, int] = {}
        for d in shape:
            for s, p in D.split(d)[1]:
                powers[s] = powers.get(s, 0) + p
        if not powers:
            continue
        key = tuple(sorted(powers.items()))
        c = static_bytes(shape, t.dtype.itemsize)
        if key not in sizes or sizes[key][0] < c:
            sizes[key] = (c, f"tensor '{tname}' of {owners.get(tname, 'the model')}", D.fmt_shape(shape))
    for key, (c, what, shape_text) in sorted(sizes.items()):
        e = mono(c, key)
        if e is None:
            continue
        lines.append(f"if (const int64_t b_ = {e}; b_ > int64_t(ML4EP_MAX_BYTES)) "
                     f"ml4ep_rt::size_error({model}, {string(what + ' of shape ' + shape_text)}, \"bytes\", b_, dims_());")
    # workspace total: every group at its actual size is at most this (symbols at >= 1), plus alignment
    ws = []
    for key, c in plan.groups.items():
        e = mono(c, key) if key else str(int(c))
        if e is not None and c:
            ws.append(e)
    if ws:
        expr = ws[0]
        for t in ws[1:]:
            expr = f"z_.add({expr}, {t})"
        lines.append(f"if (const int64_t b_ = {expr}; b_ > int64_t(ML4EP_MAX_BYTES)) "
                     f"ml4ep_rt::size_error({model}, \"the workspace\", \"bytes\", b_, dims_());")
    # every other dimension expression of the code: no int64 overflow
    for d in sorted(rendered or (), key=lambda d: (d.syms, abs(d.coeff))):
        d = g.derived.bound(d)
        if not isinstance(d, D.Dim):
            continue
        c, key = abs(d.coeff), d.syms
        if key in sizes and sizes[key][0] >= c:
            continue
        e = mono(c, key)
        if e is None:
            continue
        lines.append(f"if (const int64_t v_ = {e}; v_ >= ml4ep_rt::kSizeSat) "
                     f"ml4ep_rt::size_error({model}, {string('dimension ' + D.fmt(d))}, \"\", v_, dims_());")
    return "{  // sizes from the run-time dimensions, checked before any is used (limits.py)\n" + \
        "".join(f"  {ln}\n" for ln in lines) + "}\n"


def check_fold(node, g: Graph, infos) -> bool:
    """Whether a node whose outputs have these ``(dtype, shape)`` may be folded (False: leave it to run time)."""
    total = 0
    for dtype, shape in infos:
        if not D.shape_static(shape):
            return True  # symbolic values (Shape arithmetic): small
        n = math.prod(int(d) for d in shape)
        if n > FOLD_MAX_ELEMENTS:
            return False
        total += n * np.dtype(dtype).itemsize
    return getattr(g, "folded_bytes", 0) + total <= FOLD_MAX_BYTES


def refuse_fold(node, infos) -> ShapeError:
    shapes = ", ".join(D.fmt_shape(s) for _, s in infos)
    return ShapeError(
        f"node '{node.name}' ({node.op_type}): its output of shape {shapes} is too large to compute at compile "
        f"time (at most {FOLD_MAX_ELEMENTS} elements per node and {FOLD_MAX_BYTES} bytes in all are folded), and "
        f"the operator has no run-time kernel")


def runtime_output_check(model: str, outputs, shapes, dtypes, values: dict) -> str | None:
    """Python side, first call at given shapes: an output too large to allocate (the message), or None."""
    for o, shape, dt in zip(outputs, shapes, dtypes):
        if any(int(d) < 0 for d in shape):
            return (f"model '{model}': output '{o}' would have the negative shape {tuple(shape)}; dimensions: "
                    + ", ".join(f"{k}={v}" for k, v in values.items()))
        n = math.prod(max(1, int(d)) for d in shape) * np.dtype(dt).itemsize
        if n > MAX_BYTES:
            return (f"model '{model}': output '{o}' of shape {tuple(shape)} would take {fmt_bytes(n)}, over the "
                    f"limit of {fmt_bytes(MAX_BYTES)}; dimensions: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return None


def check_weights(total: int, tensor: str, node) -> None:
    """Refuse a weights file beyond :data:`MAX_WEIGHT_BYTES` (``total``: its size with ``tensor`` added)."""
    if total > MAX_WEIGHT_BYTES:
        where = f" (read by node '{node.name}' ({node.op_type}))" if node is not None else ""
        raise ShapeError(f"the weights file would exceed the limit of {fmt_bytes(MAX_WEIGHT_BYTES)} with constant "
                         f"'{tensor}'{where}: {fmt_bytes(total)}")
