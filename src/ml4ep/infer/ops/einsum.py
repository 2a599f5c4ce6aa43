"""Einsum: any equation, explicit (``->``) or implicit output, ellipsis (broadcast like NumPy), repeated
indices within one operand (diagonals), summed indices.

The equation is resolved into labels: each operand's element stride per label (the sum of the strides of its
positions, so a repeated label walks the diagonal; 0 where the operand broadcasts a dimension of extent 1).
Two float32 operands whose labels form a batched matrix product (batch labels leading everywhere, the row,
column and contracted groups contiguous in each operand, in the same order) run one ``gemm`` per batch
(BLAS for large products, either operand may be transposed). Everything else is printed as loops: the
output labels outside, the summed labels inside, accumulating in ``float`` (``double`` for float64, 64-bit
integers for integer types). On CUDA the product is one strided-batched cuBLAS call and the loops one thread per
output element.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import register
from .. import dims as D
from .common import CannotFold, node_error

if TYPE_CHECKING:
    from ..codegen import Emitter
    from ..graph import Graph, Node



def _parse_term(node: "Node", term: str, what: str) -> tuple[list[str], bool, int]:
    """(labels with '.' for the ellipsis position, has ellipsis, index of the ellipsis in the labels)."""
    if term.count("...") > 1:
        raise node_error(node, f"{what} '{term}' has more than one ellipsis")
    pos = term.find("...")
    rest = term.replace("...", "")
    for ch in rest:
        if not ch.isascii() or not ch.isalpha():
            raise node_error(node, f"{what} '{term}' has the character '{ch}' (letters and '...' only)")
    return list(rest), pos >= 0, (len(term[:pos]) if pos >= 0 else -1)


@dataclass
class _Plan:
    in_labels: list[list[str]]  # per operand, the label of every axis (ellipsis expanded)
    out_labels: list[str]
    sizes: dict[str, D.DimLike]
    sum_labels: list[str]

    def strides(self, shapes: list) -> list[dict[str, D.DimLike]]:
        """Per operand, the element stride of each label (0 where the operand broadcasts it)."""
        out = []
        for labels, shape in zip(self.in_labels, shapes):
            st: dict[str, D.DimLike] = {}
            acc: D.DimLike = 1
            for lab, dim in reversed(list(zip(labels, shape))):
                if not (dim == 1 and self.sizes[lab] != 1):
                    st[lab] = D.norm(st.get(lab, 0) + acc)
                acc = D.norm(acc * dim)
            out.append(st)
        return out


def _plan(node: "Node", shapes: list) -> _Plan:
    eq = str(node.attr("equation", "")).replace(" ", "")
    if not eq:
        raise node_error(node, "the equation attribute is missing")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise node_error(node, f"equation '{eq}' names {len(terms)} operands, the node has {len(shapes)} inputs")
    parsed = [_parse_term(node, t, f"operand {k}") for k, t in enumerate(terms)]
    n_ell = 0
    for (labels, has_ell, _), shape, term in zip(parsed, shapes, terms):
        extra = len(shape) - len(labels)
        if (extra != 0 and not has_ell) or extra < 0:
            raise node_error(node, f"operand '{term}' has {len(labels)} labels but its shape is {D.fmt_shape(shape)}")
        n_ell = max(n_ell, extra)
    ell = [f"#{k}" for k in range(n_ell)]  # ellipsis labels, right-aligned per operand
    in_labels = []
    for (labels, has_ell, pos), shape in zip(parsed, shapes):
        if has_ell:
            extra = len(shape) - len(labels)
            labels = labels[:pos] + ell[n_ell - extra:] + labels[pos:]
        in_labels.append(labels)
    sizes: dict[str, D.DimLike] = {}
    for labels, shape, term in zip(in_labels, shapes, terms):
        for lab, dim in zip(labels, shape):
            old = sizes.get(lab)
            if old is None or old == 1:
                sizes[lab] = D.norm(dim)
            elif dim != 1 and dim != old:
                name = "the ellipsis" if lab.startswith("#") else f"label '{lab}'"
                raise node_error(node, f"{name} has extents {D.fmt(old)} and {D.fmt(dim)} (operand '{term}')")
    if arrow:
        out, has_ell, pos = _parse_term(node, rhs, "output")
        if has_ell:
            out = out[:pos] + ell + out[pos:]
        for lab in out:
            if out.count(lab) > 1:
                raise node_error(node, f"output label '{lab}' is repeated")
            if lab not in sizes:
                raise node_error(node, f"output label '{lab}' appears in no operand")
    else:
        counts: dict[str, int] = {}
        for labels in in_labels:
            for lab in labels:
                counts[lab] = counts.get(lab, 0) + 1
        out = ell + sorted(lab for lab, c in counts.items() if c == 1 and not lab.startswith("#"))
    summed = [lab for lab in sizes if lab not in out]
    return _Plan(in_labels, out, sizes, summed)


def _check(node: "Node", g: "Graph") -> str | None:
    for i in node.inputs:
        t = g.tensors.get(i)
        if t is not None and (t.dtype == np.bool_ or t.dtype == object):
            return f"input '{i}' has dtype {t.dtype} (numbers only)"
    if len({g.t(i).dtype for i in node.inputs if i in g.tensors}) > 1:
        return "the inputs have different dtypes"
    return None


def _infer(node: "Node", g: "Graph"):
    if not node.inputs:
        raise node_error(node, "has no inputs")
    p = _plan(node, [g.t(i).shape for i in node.inputs])
    return [(g.t(node.inputs[0]).dtype, tuple(p.sizes[lab] for lab in p.out_labels))]


def _fold(node: "Node", vals: list[np.ndarray]) -> list[np.ndarray]:
    if any(np.asarray(v).dtype == object for v in vals):
        raise CannotFold(f"node '{node.name}' (Einsum): symbolic operands")
    eq = str(node.attr("equation", "")).replace(" ", "")
    res = np.einsum(eq, *vals)
    return [np.asarray(res).astype(np.asarray(vals[0]).dtype)]


def _acc_type(dt: np.dtype) -> str:
    if dt == np.float64:
        return "double"
    if dt.kind == "u":
        return "uint64_t"
    if dt.kind == "i":
        return "int64_t"
    return "float"


# ------------------------------------------------------------------------------------------------------
# a batched matrix product, when the labels allow one without moving data


def _split(seq: list[str], *groups: list[str]) -> bool:
    return seq == [lab for grp in groups for lab in grp]


def _as_gemm(p: _Plan, shapes: list):
    """(batch, M, N, K, ta, tb, swap) when the two-operand einsum is a batched matrix product, else None."""
    if len(p.in_labels) != 2:
        return None
    la, lb = p.in_labels
    if len(set(la)) != len(la) or len(set(lb)) != len(lb):
        return None
    for labels, shape in zip(p.in_labels, shapes):  # no broadcasting
        if any(dim != p.sizes[lab] for lab, dim in zip(labels, shape)):
            return None
    out = p.out_labels
    batch = [lab for lab in out if lab in la and lab in lb]
    k = [lab for lab in la if lab in lb and lab not in out]
    if any(lab not in out and lab not in k for lab in la + lb):
        return None  # a label summed within one operand only
    nb = len(batch)
    if out[:nb] != batch or la[:nb] != batch or lb[:nb] != batch:
        return None
    ra, rb, ro = la[nb:], lb[nb:], out[nb:]
    for a, b, swap in ((ra, rb, False), (rb, ra, True)):
        m = [lab for lab in ro if lab in a]
        n = [lab for lab in ro if lab in b]
        if not _split(ro, m, n):
            continue
        ka = [lab for lab in a if lab in k]
        if [lab for lab in b if lab in k] != ka:
            continue
        if _split(a, m, ka):
            ta = False
        elif _split(a, ka, m):
            ta = True
        else:
            continue
        if _split(b, ka, n):
            tb = False
        elif _split(b, n, ka):
            tb = True
        else:
            continue
        size = lambda labs: D.prod([p.sizes[lab] for lab in labs])  # noqa: E731
        return size(batch), size(m), size(n), size(ka), ta, tb, swap
    return None


def _emit(node: "Node", cg: "Emitter") -> str:
    ins, y = node.inputs, node.outputs[0]
    shapes = [cg.shape(i) for i in ins]
    p = _plan(node, shapes)
    dt = cg.dtype(y)
    yt = cg.ctype(y)
    if dt == np.float32 and all(cg.dtype(i) == np.float32 for i in ins):
        mm = _as_gemm(p, shapes)
        if mm is not None:
            nb, M, N, K, ta, tb, swap = mm
            a, b = (ins[1], ins[0]) if swap else (ins[0], ins[1])
            mk, kn, mn = (D.cpp(D.norm(u * v)) for u, v in ((M, K), (K, N), (M, N)))
            return (
                f"for (int64_t q = 0; q < {D.cpp(nb)}; ++q)\n"
                f"  ml4ep_rt::gemm({D.cpp(M)}, {D.cpp(N)}, {D.cpp(K)}, 1.0f, {cg.ptr(a)} + q * {mk}, "
                f"{'true' if ta else 'false'}, {cg.ptr(b)} + q * {kn}, {'true' if tb else 'false'}, 0.0f, "
                f"{cg.ptr(y)} + q * {mn});\n"
            )
    # loops: output labels outside, summed labels inside
    at = _acc_type(dt)
    strides = p.strides(shapes)
    var = {lab: f"i{k}" for k, lab in enumerate(p.out_labels + p.sum_labels)}
    ptrs = [cg.ptr(i) for i in ins]

    def off(st: dict[str, D.DimLike]) -> str:
        terms = [var[lab] if s == 1 else f"{var[lab]} * {D.cpp(s)}" for lab, s in st.items() if s != 0]
        return " + ".join(terms) if terms else "0"

    out_st: dict[str, D.DimLike] = {}
    acc: D.DimLike = 1
    for lab in reversed(p.out_labels):
        out_st[lab] = acc
        acc = D.norm(acc * p.sizes[lab])
    prod = " * ".join(f"static_cast<{at}>({ptr}[{off(st)}])" for ptr, st in zip(ptrs, strides))
    zero = "0.0f" if at == "float" else f"{at}(0)"
    inner = f"acc += {prod};\n"
    for lab in reversed(p.sum_labels):
        inner = f"for (int64_t {var[lab]} = 0; {var[lab]} < {D.cpp(p.sizes[lab])}; ++{var[lab]})\n" + _ind(inner)
    code = f"{at} acc = {zero};\n" + inner + f"{cg.ptr(y)}[{off(out_st)}] = static_cast<{yt}>(acc);\n"
    for lab in reversed(p.out_labels):
        code = (f"for (int64_t {var[lab]} = 0; {var[lab]} < {D.cpp(p.sizes[lab])}; ++{var[lab]}) {{\n"
                + _ind(code) + "}\n")
    return "{\n" + _ind(code) + "}\n" if not p.out_labels else code


def _emit_cuda(node: "Node", cg: "Emitter") -> str:
    """The batched matrix product as one strided-batched cuBLAS call; everything else one thread per output
    element, summing over the summed labels (as the CPU loops)."""
    ins, y = node.inputs, node.outputs[0]
    shapes = [cg.shape(i) for i in ins]
    p = _plan(node, shapes)
    dt = cg.dtype(y)
    yt = cg.ctype(y)
    if dt == np.float32 and all(cg.dtype(i) == np.float32 for i in ins):
        mm = _as_gemm(p, shapes)
        if mm is not None:
            nb, M, N, K, ta, tb, swap = mm
            a, b = (ins[1], ins[0]) if swap else (ins[0], ins[1])
            mk, kn, mn = (D.cpp(D.norm(u * v)) for u, v in ((M, K), (K, N), (M, N)))
            return (f"ml4ep_cu::gemm_batched({cg.blas}, {D.cpp(M)}, {D.cpp(N)}, {D.cpp(K)}, 1.0f, {cg.ptr(a)}, "
                    f"{'true' if ta else 'false'}, {mk}, {cg.ptr(b)}, {'true' if tb else 'false'}, {kn}, 0.0f, "
                    f"{cg.ptr(y)}, {mn}, {D.cpp(nb)});\n")
    at = _acc_type(dt)
    strides = p.strides(shapes)
    var = {lab: f"i{k}" for k, lab in enumerate(p.out_labels + p.sum_labels)}
    ptrs = [cg.ptr(i) for i in ins]

    def off(st: dict[str, D.DimLike]) -> str:
        terms = [var[lab] if s == 1 else f"{var[lab]} * {D.cpp(s)}" for lab, s in st.items() if s != 0]
        return " + ".join(terms) if terms else "0"

    used = {lab for st in strides for lab, s in st.items() if s != 0}
    body = ""
    acc: D.DimLike = 1
    for k in range(len(p.out_labels) - 1, -1, -1):  # the output labels' indices from the element's index
        lab = p.out_labels[k]
        if lab in used:
            q = "t" if acc == 1 else f"(t / {D.cpp(acc)})"
            body += f"const int64_t {var[lab]} = {q if k == 0 else f'{q} % {D.cpp(p.sizes[lab])}'};\n"
        acc = D.norm(acc * p.sizes[lab])
    prod = " * ".join(f"static_cast<{at}>({ptr}[{off(st)}])" for ptr, st in zip(ptrs, strides))
    zero = "0.0f" if at == "float" else f"{at}(0)"
    inner = f"acc += {prod};\n"
    for lab in reversed(p.sum_labels):
        inner = f"for (int64_t {var[lab]} = 0; {var[lab]} < {D.cpp(p.sizes[lab])}; ++{var[lab]})\n" + _ind(inner)
    body += f"{at} acc = {zero};\n" + inner + f"{cg.ptr(y)}[t] = static_cast<{yt}>(acc);\n"
    return cg.par_for("t", cg.numel(y), body)


def _ind(code: str, pre: str = "  ") -> str:
    return "".join(pre + ln if ln.strip() else ln for ln in code.splitlines(True))


register("Einsum", infer=_infer, emit=_emit, fold=_fold, check=_check, cuda=_emit_cuda)
