"""Symbolic dimensions.

A dimension is either a plain ``int`` or a :class:`Dim`: a monomial ``coeff * s1^p1 * s2^p2 ...`` of named
symbols (the ONNX ``dim_param`` names, such as the batch size). Monomials are closed under product and exact
division, which is all that reshapes, flattening and concatenation along the batch axis need, and they let
the memory planner lay out every tensor that scales with the same monomial once for all batch sizes.

Sums of different monomials (``L + 1`` after prepending a class token, ``N*L + N``) become *derived* symbols
while a graph is being compiled (inside :func:`scope`): a new symbol such as ``L_plus_1`` standing for the
polynomial, times the common monomial factor (``N*L + N = N * L_plus_1``). The generated code computes derived
symbols from the input symbols at the top of ``infer``; arithmetic expands them back, so ``L_plus_1 - 1`` is
``L`` again. Outside a scope such sums raise :class:`SymbolicError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
from typing import Iterator, Union

from ..errors import ShapeError


class SymbolicError(ShapeError):
    """An operation on symbolic dimensions that ml4ep cannot represent."""


class Dim:
    __slots__ = ("coeff", "syms")

    def __init__(self, coeff: int, syms: tuple[tuple[str, int], ...]):
        self.coeff = int(coeff)
        self.syms = tuple(sorted((s, p) for s, p in syms if p != 0))

    # construction -------------------------------------------------------------------------------
    @staticmethod
    def symbol(name: str) -> "Dim":
        return Dim(1, ((name, 1),))

    @staticmethod
    def make(coeff: int, syms: tuple[tuple[str, int], ...]) -> "DimLike":
        d = Dim(coeff, syms)
        return d.coeff if not d.syms or d.coeff == 0 else d

    # arithmetic ---------------------------------------------------------------------------------
    def __mul__(self, other: "DimLike") -> "DimLike":
        if isinstance(other, Dim):
            powers: dict[str, int] = dict(self.syms)
            for s, p in other.syms:
                powers[s] = powers.get(s, 0) + p
            return Dim.make(self.coeff * other.coeff, tuple(powers.items()))
        other = _as_int(other)
        return Dim.make(self.coeff * other, self.syms)

    __rmul__ = __mul__

    def _div(self, num: "DimLike", den: "DimLike") -> "DimLike":
        num_c, num_s = split(num)
        den_c, den_s = split(den)
        powers = dict(num_s)
        for s, p in den_s:
            powers[s] = powers.get(s, 0) - p
        if any(p < 0 for p in powers.values()) or den_c == 0 or num_c % den_c != 0:
            raise SymbolicError(f"cannot divide dimension {fmt(num)} by {fmt(den)} exactly")
        return Dim.make(num_c // den_c, tuple(powers.items()))

    def __floordiv__(self, other: "DimLike") -> "DimLike":
        return self._div(self, other)

    def __rfloordiv__(self, other: "DimLike") -> "DimLike":
        return self._div(other, self)

    __truediv__ = __floordiv__
    __rtruediv__ = __rfloordiv__

    def __add__(self, other: "DimLike") -> "DimLike":
        if isinstance(other, (int,)) or _is_np_int(other):
            if int(other) == 0:
                return self
        elif isinstance(other, Dim) and other.syms == self.syms:
            return Dim.make(self.coeff + other.coeff, self.syms)
        elif not isinstance(other, Dim):
            raise SymbolicError(f"cannot add dimensions {fmt(self)} and {fmt(other)}")
        table = _SCOPE.get()
        if table is None:
            raise SymbolicError(f"cannot add dimensions {fmt(self)} and {fmt(other)}")
        return table.from_poly(_poly_add(table.poly(self), table.poly(other)))

    __radd__ = __add__

    def __sub__(self, other: "DimLike") -> "DimLike":
        return self + (-1) * other

    def __rsub__(self, other: "DimLike") -> "DimLike":
        return other + (-1) * self

    def __neg__(self) -> "DimLike":
        return (-1) * self

    def __mod__(self, other: "DimLike") -> "DimLike":
        o = _as_int(other)
        if o != 0 and self.coeff % o == 0:
            return 0
        raise SymbolicError(f"cannot take {fmt(self)} modulo {o}")

    # comparisons: only what is decidable for positive symbols -----------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dim) and self.coeff == other.coeff and self.syms == other.syms

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((self.coeff, self.syms))

    def __lt__(self, other: "DimLike") -> bool:
        # symbols are >= 1: c*N >= c, so a positive static bound below c is decidable
        if not isinstance(other, Dim) and self.coeff > 0 and int(other) <= self.coeff:
            return False
        raise SymbolicError(f"cannot compare dimension {fmt(self)} with {fmt(other)}")

    def __gt__(self, other: "DimLike") -> bool:
        if not isinstance(other, Dim) and self.coeff > 0 and int(other) < self.coeff:
            return True
        raise SymbolicError(f"cannot compare dimension {fmt(self)} with {fmt(other)}")

    def __ge__(self, other: "DimLike") -> bool:
        if not isinstance(other, Dim) and self.coeff > 0 and int(other) <= self.coeff:
            return True
        raise SymbolicError(f"cannot compare dimension {fmt(self)} with {fmt(other)}")

    def __le__(self, other: "DimLike") -> bool:
        if not isinstance(other, Dim) and self.coeff > 0 and int(other) < self.coeff:
            return False
        raise SymbolicError(f"cannot compare dimension {fmt(self)} with {fmt(other)}")

    def __index__(self) -> int:
        raise SymbolicError(f"dimension {fmt(self)} is symbolic where a number is needed")

    def __int__(self) -> int:
        return self.__index__()

    def __repr__(self) -> str:
        return fmt(self)

    # serialisation ------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"coeff": self.coeff, "syms": [list(s) for s in self.syms]}


DimLike = Union[int, Dim]

# polynomials over the input symbols: {monomial symbols: coefficient}
Poly = dict


def _poly_add(a: Poly, b: Poly) -> Poly:
    out = dict(a)
    for k, c in b.items():
        out[k] = out.get(k, 0) + c
    return {k: c for k, c in out.items() if c != 0}


def _poly_mul(a: Poly, b: Poly) -> Poly:
    out: Poly = {}
    for ka, ca in a.items():
        for kb, cb in b.items():
            pw = dict(ka)
            for s, p in kb:
                pw[s] = pw.get(s, 0) + p
            k = tuple(sorted(pw.items()))
            out[k] = out.get(k, 0) + ca * cb
    return {k: c for k, c in out.items() if c != 0}


class Derived:
    """The derived symbols of one compilation: name -> polynomial over the input symbols."""

    def __init__(self) -> None:
        self.defs: dict[str, Poly] = {}
        self._by_poly: dict[tuple, str] = {}
        # data-dependent symbols (the count of NonZero, ...): name -> upper bound in the input symbols
        self.runtime: dict[str, "DimLike"] = {}

    def new_runtime(self, base: str, bound: "DimLike") -> "Dim":
        """A symbol whose value the generated code computes while running, at most ``bound``."""
        name = _ident.sub("_", base)
        k = 0
        while f"{name}_{k}" in self.runtime or f"{name}_{k}" in self.defs:
            k += 1
        name = f"{name}_{k}"
        self.runtime[name] = norm(bound)
        return Dim.symbol(name)

    def bound(self, d: "DimLike") -> "DimLike":
        """``d`` with every data-dependent symbol replaced by its upper bound (for sizing storage)."""
        if not isinstance(d, Dim) or not any(s in self.runtime for s, _ in d.syms):
            return d
        out: DimLike = d.coeff
        for s, p in d.syms:
            for _ in range(p):
                out = out * (self.runtime[s] if s in self.runtime else Dim.symbol(s))
        return norm(out)

    def poly(self, d: "DimLike") -> Poly:
        if not isinstance(d, Dim):
            return {(): int(d)} if int(d) else {}
        out: Poly = {(): d.coeff}
        for s, p in d.syms:
            base = self.defs.get(s, {((s, 1),): 1})
            for _ in range(p):
                out = _poly_mul(out, base)
        return out

    def from_poly(self, poly: Poly) -> "DimLike":
        poly = {k: c for k, c in poly.items() if c != 0}
        if not poly:
            return 0
        if len(poly) == 1:
            (k, c), = poly.items()
            return Dim.make(c, k)
        # the common monomial factor (gcd of coefficients, lowest powers) times a primitive polynomial
        g = 0
        for c in poly.values():
            g = math.gcd(g, c)
        common = None
        for k in poly:
            pw = dict(k)
            common = pw if common is None else {s: min(p, pw.get(s, 0)) for s, p in common.items()}
        common = {s: p for s, p in (common or {}).items() if p > 0}
        prim = {}
        for k, c in poly.items():
            pw = dict(k)
            for s, p in common.items():
                pw[s] -= p
            prim[tuple(sorted((s, p) for s, p in pw.items() if p))] = c // g
        key = tuple(sorted(prim.items()))
        name = self._by_poly.get(key)
        if name is None:
            name = _poly_name(prim)
            while name in self.defs:
                name += "_"
            self.defs[name] = prim
            self._by_poly[key] = name
        return Dim.make(g, tuple(common.items()) + ((name, 1),))

    def values(self, base: dict[str, int]) -> dict[str, int]:
        """``base`` plus the values of the derived symbols."""
        out = dict(base)
        for name, poly in self.defs.items():
            out[name] = sum(c * math.prod(base[s] ** p for s, p in k) for k, c in poly.items())
        return out

    def to_json(self) -> dict:
        out: dict = {n: [[c, [list(x) for x in k]] for k, c in p.items()] for n, p in self.defs.items()}
        if self.runtime:
            out["__runtime__"] = {n: to_json(b) for n, b in self.runtime.items()}
        return out

    @staticmethod
    def from_json(j: dict) -> "Derived":
        t = Derived()
        for n, terms in j.items():
            if n == "__runtime__":
                t.runtime = {k: from_json(b) for k, b in terms.items()}
                continue
            t.defs[n] = {tuple((s, int(p)) for s, p in k): int(c) for c, k in terms}
        return t


def _poly_name(poly: Poly) -> str:
    parts = []
    for k, c in sorted(poly.items(), key=lambda kc: (-len(kc[0]), kc[0])):
        mono = "x".join(s if p == 1 else f"{s}p{p}" for s, p in k)
        mag = abs(c)
        term = mono if mag == 1 and mono else (f"{mag}x{mono}" if mono else str(mag))
        parts.append(("_minus_" if c < 0 else "_plus_") + term)
    name = "".join(parts)
    name = name[len("_plus_"):] if name.startswith("_plus_") else "neg_" + name[len("_minus_"):]
    return _ident.sub("_", name)


_SCOPE: contextvars.ContextVar["Derived | None"] = contextvars.ContextVar("ml4ep_derived_dims", default=None)


@contextlib.contextmanager
def scope(table: "Derived") -> Iterator["Derived"]:
    """Within the block, sums of different monomials become derived symbols recorded in ``table``."""
    token = _SCOPE.set(table)
    try:
        yield table
    finally:
        _SCOPE.reset(token)


def _is_np_int(x: object) -> bool:
    return hasattr(x, "dtype") and x.dtype.kind in "iu" and getattr(x, "ndim", 0) == 0


def _as_int(x: object) -> int:
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int):
        return x
    if _is_np_int(x):
        return int(x)  # type: ignore[call-overload]
    raise SymbolicError(f"expected an integer dimension, got {x!r}")


def norm(d: object) -> DimLike:
    """Normalise an int-like or Dim to ``int`` or ``Dim``."""
    if isinstance(d, Dim):
        return Dim.make(d.coeff, d.syms)
    return _as_int(d)


def split(d: DimLike) -> tuple[int, tuple[tuple[str, int], ...]]:
    return (d.coeff, d.syms) if isinstance(d, Dim) else (int(d), ())


def min_value(d: object) -> int:
    """A lower bound of a dimension's value, input symbols being at least 1 (0 when none is known)."""
    if not isinstance(d, Dim):
        return int(d)  # type: ignore[call-overload]
    table = _SCOPE.get()
    poly = table.poly(d) if table is not None else {d.syms: d.coeff}
    return sum(poly.values()) if all(c > 0 for c in poly.values()) else 0


def is_static(d: object) -> bool:
    return not isinstance(d, Dim)


def shape_static(shape: tuple) -> bool:
    return all(is_static(d) for d in shape)


def prod(dims) -> DimLike:
    out: DimLike = 1
    for d in dims:
        out = out * d
    return norm(out)


def fmt(d: object) -> str:
    if isinstance(d, Dim):
        parts = [] if d.coeff == 1 else [str(d.coeff)]
        parts += [s if p == 1 else f"{s}^{p}" for s, p in d.syms]
        return "*".join(parts)
    return str(d)


def fmt_shape(shape) -> str:
    return "(" + ", ".join(fmt(d) for d in shape) + ")"


_ident = re.compile(r"[^0-9A-Za-z_]")


def cpp_name(sym: str) -> str:
    """The C++ variable of a symbol: ``dim_<name>`` (:func:`names.identifier`), so that no name from a model
    (``m``, ``ws``, ``i``) can shadow a variable of the generated code."""
    from .._native.names import identifier

    return identifier(sym, "dim_")


_RENDERED: contextvars.ContextVar["set | None"] = contextvars.ContextVar("ml4ep_rendered_dims", default=None)


def start_rendering() -> tuple[contextvars.Token, set]:
    """Record every symbolic dimension :func:`cpp` renders from now on (until :func:`stop_rendering`): the
    generated code checks each for int64 overflow before it runs (see :mod:`ml4ep.infer.limits`)."""
    seen: set = set()
    return _RENDERED.set(seen), seen


def stop_rendering(token: contextvars.Token) -> None:
    _RENDERED.reset(token)


def cpp(d: object) -> str:
    """C++ expression (int64_t) of a dimension."""
    if isinstance(d, Dim):
        seen = _RENDERED.get()
        if seen is not None:
            seen.add(d)
        terms = [cpp_name(s) for s, p in d.syms for _ in range(p)]
        if d.coeff != 1:
            terms.insert(0, f"int64_t({d.coeff})")
        return "(" + "*".join(terms) + ")" if len(terms) > 1 else terms[0]
    return str(int(d))  # type: ignore[arg-type]


def evaluate(d: object, values: dict[str, int]) -> int:
    if isinstance(d, Dim):
        return d.coeff * math.prod(values[s] ** p for s, p in d.syms)
    return int(d)  # type: ignore[arg-type]


def from_json(j) -> DimLike:
    if isinstance(j, dict):
        return Dim.make(j["coeff"], tuple((s, p) for s, p in j["syms"]))
    return int(j)


def to_json(d: DimLike):
    return d.to_json() if isinstance(d, Dim) else int(d)


def symbols(shape) -> set[str]:
    out: set[str] = set()
    for d in shape:
        if isinstance(d, Dim):
            out.update(s for s, _ in d.syms)
    return out
