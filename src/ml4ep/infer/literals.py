"""C++ literals of scalar values: the one renderer every code generator of ml4ep uses.

``literal(value, ctype)`` gives a C++ expression of exactly type ``ctype`` whose value is ``value`` converted
to that type, bit for bit:

========================================  ==============================================================
C++ type                                  rendering
========================================  ==============================================================
``float``                                 shortest decimal that reads back as the same float32 + ``f``
                                          (``0.1f``, ``1.0f``, ``-0.0f``, ``1e-45f``, ``3.4028235e+38f``)
``double``                                shortest round-trip decimal (``0.1``, ``5e-324``)
either, not finite                        ``std::numeric_limits<T>::infinity()`` / ``quiet_NaN()``, with a
                                          leading ``-`` for -inf and for a NaN whose sign bit is set
``int8_t`` ... ``int64_t``,               ``T(n)`` (``int64_t(5)``), suffixed where the decimal alone would
``uint8_t`` ... ``uint64_t``              not fit an int (``uint64_t(18446744073709551615ULL)``); the most
                                          negative value as ``int64_t(-9223372036854775807LL - 1)``
``bool``                                  ``true`` / ``false``
``ml4ep_rt::half``, ``bfloat16``,         ``T::from_bits(0x3c00u)``: the exact bits (as ml_dtypes stores
float8*, ``float4e2m1``, ``int4``, ...    them), so nothing is rounded in C++
========================================  ==============================================================

The value is converted to the type first, as NumPy converts: a Python float to ``float`` rounds to nearest
(exactly as ``static_cast<float>`` of the double would); to the low-precision float types rounded once from the
exact value, as the C++ types of ``cpp/lowp.hpp`` convert from a double; pass a NumPy scalar of the type itself (e.g. an element
of a constant tensor) to choose the bits. Integer types take integral values in their range only (a
``ValueError`` otherwise: a rounded or wrapped bound would be a silent bug). The NaN payload is not kept,
its sign is.

Every rendering is a primary expression (a literal, ``T(...)``, a call) or a unary minus applied to one, so it
is safe as an operand of any binary operator. Print it after a binary operator and a space (``x - {lit}``),
never right after another minus (``-{lit}`` can read as ``--``): render the negated value instead.

>>> literal(0.1, "float"), literal(-0.0, "double"), literal(float("nan"), "float")
('0.1f', '-0.0', 'std::numeric_limits<float>::quiet_NaN()')
>>> literal(-2**63, "int64_t")
'int64_t(-9223372036854775807LL - 1)'
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

__all__ = ["literal", "literal_for", "is_floating", "round_to_odd32", "CPP_DTYPES"]

# C++ type name -> NumPy dtype of the values it holds (the C++ names of ml4ep.infer.ops.common.CTYPES)
CPP_DTYPES: dict[str, np.dtype] = {
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
    "int64_t": np.dtype(np.int64),
    "int32_t": np.dtype(np.int32),
    "int16_t": np.dtype(np.int16),
    "int8_t": np.dtype(np.int8),
    "uint64_t": np.dtype(np.uint64),
    "uint32_t": np.dtype(np.uint32),
    "uint16_t": np.dtype(np.uint16),
    "uint8_t": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
    "ml4ep_rt::half": np.dtype(np.float16),
    "ml4ep_rt::bfloat16": np.dtype(ml_dtypes.bfloat16),
    "ml4ep_rt::float8e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "ml4ep_rt::float8e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "ml4ep_rt::float8e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "ml4ep_rt::float8e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "ml4ep_rt::float8e8m0": np.dtype(ml_dtypes.float8_e8m0fnu),
    "ml4ep_rt::float4e2m1": np.dtype(ml_dtypes.float4_e2m1fn),
    "ml4ep_rt::uint4": np.dtype(ml_dtypes.uint4),
    "ml4ep_rt::int4": np.dtype(ml_dtypes.int4),
    "ml4ep_rt::uint2": np.dtype(ml_dtypes.uint2),
    "ml4ep_rt::int2": np.dtype(ml_dtypes.int2),
}
_CPP_NAMES = {dt: name for name, dt in CPP_DTYPES.items()}
# the low-precision integers of lowp.hpp: a value and its stored bits (the low bits of the byte)
_SMALL_INTS = {"ml4ep_rt::uint4": (0, 15, 4), "ml4ep_rt::int4": (-8, 7, 4),
               "ml4ep_rt::uint2": (0, 3, 2), "ml4ep_rt::int2": (-2, 1, 2)}


def _scalar(value: Any) -> Any:
    if isinstance(value, (bool, int, float)):  # Python ints of any size (2**64 - 1 is no int64)
        return value
    a = np.asarray(value)
    if a.size != 1:
        raise ValueError(f"a C++ literal needs one value, got an array of shape {a.shape}")
    return a.reshape(-1)[0]


def _integral(v: Any, ctype: str, lo: int, hi: int) -> int:
    if isinstance(v, (np.integer, np.bool_, int, bool)):
        i = int(v)
    else:
        f = float(v)
        if not (np.isfinite(f) and f == int(f)):
            raise ValueError(f"{v!r} is not an integer, so not a value of C++ type {ctype}")
        i = int(f)
    if not lo <= i <= hi:
        raise ValueError(f"{i} is out of the range [{lo}, {hi}] of C++ type {ctype}")
    return i


def _floating(x: np.floating, ctype: str) -> str:
    if np.isnan(x):
        return ("-" if np.signbit(x) else "") + f"std::numeric_limits<{ctype}>::quiet_NaN()"
    if np.isinf(x):
        return ("-" if x < 0 else "") + f"std::numeric_limits<{ctype}>::infinity()"
    # NumPy prints a float32 as the shortest decimal that reads back as the same float32 (Python's repr does
    # the same for a double); the compiler rounds a decimal literal correctly, subnormals included
    r = str(x) if ctype == "float" else repr(float(x))
    if "e" not in r and "." not in r:
        r += ".0"
    return r + ("f" if ctype == "float" else "")


def _integer(i: int, ctype: str) -> str:
    bits = np.dtype(CPP_DTYPES[ctype]).itemsize * 8
    if ctype.startswith("u"):
        return f"{ctype}({i}{'ULL' if i > 0x7FFFFFFF else ''})"
    if i == -(1 << (bits - 1)) and bits >= 32:  # the decimal of its magnitude would not fit the type
        return f"{ctype}({i + 1}{'LL' if bits == 64 else ''} - 1)"
    return f"{ctype}({i}{'LL' if not -(1 << 31) <= i < (1 << 31) else ''})"


def literal(value: Any, ctype: str) -> str:
    """A C++ expression of type ``ctype`` (a C++ type name, as ``ops.common.ctype`` gives, or a NumPy dtype)
    holding ``value`` (a Python or NumPy scalar, or a one-element array) converted to that type.

    See the module docstring for the renderings; raises ``ValueError`` for a type it does not know and for
    integer types given a value that is not an integer in their range.
    """
    if not isinstance(ctype, str):
        dt = np.dtype(ctype)
        if dt not in _CPP_NAMES:
            raise ValueError(f"no C++ literal for values of dtype {dt}")
        ctype = _CPP_NAMES[dt]
    if ctype not in CPP_DTYPES:
        raise ValueError(f"no C++ literal for values of C++ type {ctype!r}")
    v = _scalar(value)
    dt = CPP_DTYPES[ctype]
    if ctype == "bool":
        return "true" if bool(v) else "false"
    if ctype in ("float", "double"):
        with np.errstate(all="ignore"):
            return _floating(dt.type(v), ctype)
    if ctype in _SMALL_INTS:
        lo, hi, nbits = _SMALL_INTS[ctype]
        i = _integral(v, ctype, lo, hi)
        return f"{ctype}::from_bits(0x{i & ((1 << nbits) - 1):x}u)"
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return _integer(_integral(v, ctype, int(info.min), int(info.max)), ctype)
    # low-precision floats: rounded once (or as given, when already of the type), then the stored bits
    with np.errstate(all="ignore"):
        x = np.asarray(v)
        if x.dtype != dt:
            x = x.astype(np.float64)
            x = x.astype(dt) if dt == np.float16 else round_to_odd32(x).astype(dt)
        b = int(x.view(np.uint16 if dt.itemsize == 2 else np.uint8))
    return f"{ctype}::from_bits(0x{b:0{2 * dt.itemsize}x}u)"


def round_to_odd32(x: np.ndarray) -> np.ndarray:
    """float64 to float32 truncated toward zero, the last bit set when inexact ("round to odd"): rounding that float
    to nearest even in any format of at most 22 bits (bfloat16, float8, float4) gives the once-rounded value of
    ``x``, as the generated code converts a double; NumPy's and ml_dtypes' float32 casts then finish the job."""
    x = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        f = x.astype(np.float32)
        f = np.where(np.abs(f.astype(np.float64)) > np.abs(x), np.nextafter(f, np.float32(0)), f)
        inexact = (f.astype(np.float64) != x) & ~np.isnan(x)
        return np.where(inexact, (f.view(np.uint32) | np.uint32(1)).view(np.float32), f)


def is_floating(ctype: str) -> bool:
    """Whether the C++ type holds floating-point values (``float``, ``double``, half, bfloat16, float8, ...)."""
    return ctype in CPP_DTYPES and ctype not in _SMALL_INTS and CPP_DTYPES[ctype].kind not in "iub"


def literal_for(value: Any, dtype: Any) -> str:
    """``literal`` by the NumPy dtype of the tensor the value belongs to."""
    return literal(value, np.dtype(dtype))
