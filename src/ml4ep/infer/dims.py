"""Symbolic dimensions.

A dimension is either a plain ``int`` or a :class:`Dim`: a monomial ``coeff * s1^p1 * s2^p2 ...`` of named
symbols (the ONNX ``dim_param`` names, such as the batch size). Monomials are closed under product and exact
division, which is all that reshapes, flattening and concatenation along the batch axis need, and they let
the memory planner lay out every tensor that scales with the same monomial once for all batch sizes.
Sums of different monomials are not representable and raise :class:`SymbolicError`.
"""

from __future__ import annotations

import math
import re
from typing import Union

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
        raise SymbolicError(f"cannot add dimensions {fmt(self)} and {fmt(other)}")

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
    """The C++ parameter name of a symbol."""
    s = _ident.sub("_", sym)
    if not s or s[0].isdigit():
        s = "d_" + s
    return s


def cpp(d: object) -> str:
    """C++ expression (int64_t) of a dimension."""
    if isinstance(d, Dim):
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
