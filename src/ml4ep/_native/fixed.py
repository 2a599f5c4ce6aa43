"""Fixed-point types as the FPGA tools of the field spell them, and their arithmetic (docs/fpga.md).

A :class:`FixedType` is what ``ap_fixed<W,I,Q,O,N>`` means in Xilinx's ``ap_types`` (which hls4ml and conifer
generate): a ``W``-bit two's complement (or unsigned) integer ``raw`` standing for ``raw * 2**-F`` with
``F = W - I`` fraction bits; a value is first quantised to the ``2**-F`` grid by the quantisation mode ``Q``, then
brought into range by the overflow mode ``O``. :func:`parse` reads the spellings hls4ml accepts
(``ap_fixed<16,6>``, ``fixed<16,6,RND,SAT>``, ``ap_ufixed<8,0>``, ``ap_int<8>``, ``uint<4>``, the modes with or
without the ``AP_`` prefix).

The same arithmetic exists twice, kept equal by the tests: :meth:`FixedType.raw_of` and :meth:`FixedType.quantize`
here (NumPy, for weights quantised at code-generation time and for tests), and ``fixed.hpp`` (namespace
``ml4ep_fx``, the C++ the generated code of :mod:`ml4ep.infer.hls` and :mod:`ml4ep.bdt.fixed` carries).
Raw values are held in 64-bit integers, so every type is at most :data:`MAX_WIDTH` bits wide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..errors import InputError

__all__ = ["FixedType", "MAX_WIDTH", "QUANT_MODES", "OVERFLOW_MODES", "parse", "header"]

QUANT_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
MAX_WIDTH = 62  # raw values and the exact products of two of them live in int64_t (see product_ok)

_SPELLING = re.compile(r"^\s*(ap_)?(u?fixed|u?int)\s*<([^<>]*)>\s*$")


@dataclass(frozen=True)
class FixedType:
    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "WRAP"
    is_int: bool = False  # ap_int<W> / ap_uint<W>: converts like C's integers (toward zero, wrapping)

    @property
    def frac(self) -> int:
        """Fraction bits F (negative when the type's step is above 1)."""
        return self.width - self.integer

    @property
    def raw_min(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def raw_max(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min(self) -> float:
        return float(np.ldexp(float(self.raw_min), -self.frac))

    @property
    def max(self) -> float:
        return float(np.ldexp(float(self.raw_max), -self.frac))

    def __str__(self) -> str:
        if self.is_int:
            return f"ap_{'' if self.signed else 'u'}int<{self.width}>"
        base = ("ap_fixed" if self.signed else "ap_ufixed") + f"<{self.width},{self.integer}"
        if self.rounding != "TRN" or self.overflow != "WRAP":
            base += f",AP_{self.rounding}"
        if self.overflow != "WRAP":
            base += f",AP_{self.overflow}"
        return base + ">"

    def hls4ml(self) -> str:
        """The spelling hls4ml's configuration takes (``fixed<16,6>``, ``ufixed<8,0,RND,SAT>``)."""
        if self.is_int:
            return f"{'' if self.signed else 'u'}int<{self.width}>"
        s = ("fixed" if self.signed else "ufixed") + f"<{self.width},{self.integer}"
        if self.rounding != "TRN" or self.overflow != "WRAP":
            s += f",{self.rounding}"
        if self.overflow != "WRAP":
            s += f",{self.overflow}"
        return s + ">"

    def cpp(self) -> str:
        """The C++ type of ``fixed.hpp``."""
        return (f"ml4ep_fx::fixed_t<{self.width}, {self.frac}, {'true' if self.signed else 'false'}, "
                f"ml4ep_fx::{self.rounding}, ml4ep_fx::{self.overflow}>")

    # -- arithmetic (NumPy; equal to fixed.hpp) ------------------------------------------------------------------
    def _round(self, fl: np.ndarray, frac_num: np.ndarray, half_cmp: np.ndarray, negative: np.ndarray) -> np.ndarray:
        """Quantisation: ``fl`` the floor on the type's grid, ``frac_num`` > 0 where bits were dropped, ``half_cmp``
        the comparison of the dropped part with one half step (-1, 0, +1), ``negative`` the sign of the value."""
        q = self.rounding
        up = np.zeros(fl.shape, dtype=bool)
        if q == "TRN":
            pass
        elif q == "TRN_ZERO":
            up = negative & frac_num
        elif q == "RND":
            up = half_cmp >= 0
        elif q == "RND_ZERO":
            up = (half_cmp > 0) | ((half_cmp == 0) & negative)
        elif q == "RND_MIN_INF":
            up = half_cmp > 0
        elif q == "RND_INF":
            up = (half_cmp > 0) | ((half_cmp == 0) & ~negative)
        elif q == "RND_CONV":
            up = (half_cmp > 0) | ((half_cmp == 0) & (np.mod(fl, 2) != 0))
        return np.where(up & frac_num, fl + 1, fl)

    def _saturate(self, v) -> np.ndarray:
        """Overflow of exact integers ``v`` (Python ints in an object array, or int64) at the type's grid."""
        v = np.asarray(v, dtype=object)
        lo, hi = self.raw_min, self.raw_max
        o = self.overflow
        if o == "WRAP":
            m = 1 << self.width
            w = np.mod(v, m)
            return np.where(self.signed & (w > hi), w - m, w).astype(np.int64)
        if o == "SAT":
            return np.clip(v, lo, hi).astype(np.int64)
        if o == "SAT_ZERO":
            return np.where((v < lo) | (v > hi), 0, v).astype(np.int64)
        # SAT_SYM: signed types saturate to +-max (ap_types maps the most negative value to -max too)
        lo_sym = -hi if self.signed else lo
        return np.clip(v, lo_sym, hi).astype(np.int64)

    def raw_of(self, x) -> np.ndarray:
        """The raw integers (int64) of the values ``x`` (float32 or float64) converted to this type, as
        ``ap_fixed``'s constructor from ``double`` converts: the exact value quantised, then overflowed.
        +-inf is the type's overflow of a huge value (0 when wrapping), NaN an infinity of its sign."""
        x = np.asarray(x, dtype=np.float64)
        x = np.where(np.isnan(x), np.copysign(np.inf, x), x)
        with np.errstate(over="ignore"):
            s = np.ldexp(x, self.frac)  # exact: a power-of-two scaling (or +-inf beyond double's range)
        s = np.clip(s, -2.0**1000, 2.0**1000)  # a multiple of 2^W: wraps to 0, saturates as infinity does
        fl = np.floor(s)
        rest = s - fl  # exact, in [0, 1)
        half_cmp = np.sign(rest - 0.5).astype(np.int64)
        q = self._round(fl, rest > 0, half_cmp, s < 0)
        ints = np.frompyfunc(lambda f: int(f), 1, 1)(q) if q.size else q.astype(object)
        return self._saturate(ints)

    def from_raw(self, raw) -> np.ndarray:
        """The float64 values of raw integers."""
        return np.ldexp(np.asarray(raw, dtype=np.float64), -self.frac)

    def quantize(self, x) -> np.ndarray:
        """The float64 values of ``x`` converted to this type."""
        return self.from_raw(self.raw_of(x))

    def cast_raw(self, raw, frac: int) -> np.ndarray:
        """Raw integers with ``frac`` fraction bits (an exact wider value) converted to this type, as assigning one
        ``ap_fixed`` to another does."""
        v = np.asarray(raw, dtype=object)
        d = frac - self.frac
        if d <= 0:
            return self._saturate(v * (1 << -d))
        fl = v >> d  # Python ints: arithmetic shift, floor
        rest = v - (fl << d)
        half = 1 << (d - 1)
        half_cmp = np.sign(rest - half).astype(np.int64)
        q = self._round(fl, rest > 0, half_cmp, v < 0)
        return self._saturate(q)


def product_ok(a: FixedType, b: FixedType) -> bool:
    """Whether the exact product of two raw values fits the int64 arithmetic of ``fixed.hpp``."""
    return a.width + b.width <= 63


def parse(spec, what: str = "precision") -> FixedType:
    """A :class:`FixedType` from a spelling hls4ml accepts; a :class:`FixedType` passes through. ``what`` names the
    setting in the error (``"precision"``, ``"accum"``, ``"layer 'fc1' weight"``)."""
    if isinstance(spec, FixedType):
        return spec
    if not isinstance(spec, str):
        raise InputError(f"{what}: a fixed-point type is spelled like 'ap_fixed<16,6>', not {spec!r}")
    m = _SPELLING.match(spec)
    if not m:
        raise InputError(f"{what}: cannot read {spec!r} as a fixed-point type (ap_fixed<W,I[,Q[,O[,N]]]>, "
                         "ap_ufixed<W,I,...>, fixed<W,I,...>, ap_int<W>, ap_uint<W>)")
    kind = m.group(2)
    fields = [f.strip() for f in m.group(3).split(",")]
    try:
        if kind.endswith("fixed"):
            if len(fields) < 2:
                raise ValueError("needs a width and an integer width")
            width, integer = int(fields[0]), int(fields[1])
            modes = fields[2:]
        else:
            width = int(fields[0])
            integer = width
            modes = fields[1:]
            if any(modes):
                raise ValueError("an integer type has no modes")
    except ValueError as exc:
        raise InputError(f"{what}: cannot read {spec!r} as a fixed-point type ({exc})") from None
    signed = not kind.startswith("u")
    if not 1 <= width <= MAX_WIDTH:
        raise InputError(f"{what}: {spec!r} is {width} bits wide; ml4ep's fixed-point arithmetic takes 1 to "
                         f"{MAX_WIDTH} bits")
    if abs(integer) > 512:
        raise InputError(f"{what}: {spec!r}: integer width {integer} is out of range")
    modes = [md.upper().removeprefix("AP_") for md in modes]
    rounding = modes[0] if len(modes) > 0 and modes[0] else "TRN"
    overflow = modes[1] if len(modes) > 1 and modes[1] else "WRAP"
    if rounding not in QUANT_MODES:
        raise InputError(f"{what}: {spec!r}: unknown quantisation mode {modes[0]!r} (one of {', '.join(QUANT_MODES)})")
    if overflow not in OVERFLOW_MODES:
        raise InputError(f"{what}: {spec!r}: unknown overflow mode {modes[1]!r} (one of {', '.join(OVERFLOW_MODES)})")
    if len(modes) > 2 and int(modes[2] or 0) != 0:
        raise InputError(f"{what}: {spec!r}: saturation bits (the N of WRAP mode) are not supported")
    if len(modes) > 3:
        raise InputError(f"{what}: {spec!r}: too many fields")
    if kind.endswith("int"):  # C's conversion: toward zero, wrapping
        return FixedType(width, width, signed, "TRN_ZERO", "WRAP", is_int=True)
    return FixedType(width, integer, signed, rounding, overflow)


def header() -> str:
    """The C++ of ``fixed.hpp`` (namespace ``ml4ep_fx``), carried by every generated fixed-point header."""
    return resources.files("ml4ep._native").joinpath("fixed.hpp").read_text()
