"""A reader for Universal Binary JSON (UBJSON, https://ubjson.org), the format of XGBoost's ``.ubj`` models.

Typed, counted arrays of numbers (``[$d#L<n>...``, which XGBoost writes for every per-node array) come
back as NumPy arrays in one read; everything else as Python values.
"""

from __future__ import annotations

import struct

import numpy as np

from ..forest import ModelError

_SCALARS = {
    b"i": (">i1", 1), b"U": (">u1", 1), b"I": (">i2", 2), b"l": (">i4", 4), b"L": (">i8", 8),
    b"d": (">f4", 4), b"D": (">f8", 8),
}


MAX_DEPTH = 256  # containers nested deeper than this are refused (XGBoost's models nest about 6 deep)


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source, self.depth = data, 0, source, 0

    def fail(self, why: str) -> ModelError:
        return ModelError(f"{self.source}: not valid UBJSON at byte {self.pos}: {why}")

    def marker(self) -> bytes:
        while True:
            if self.pos >= len(self.data):
                raise self.fail("the file ends in the middle of a value (truncated?)")
            m = self.data[self.pos:self.pos + 1]
            self.pos += 1
            if m != b"N":  # no-op
                return m

    def scalar(self, m: bytes):
        dtype, size = _SCALARS[m]
        if self.pos + size > len(self.data):
            raise self.fail("the file ends in the middle of a number (truncated?)")
        v = np.frombuffer(self.data, dtype=dtype, count=1, offset=self.pos)[0]
        self.pos += size
        return v.item()

    def length(self) -> int:
        m = self.marker()
        if m not in (b"i", b"U", b"I", b"l", b"L"):
            raise self.fail(f"expected an integer length, got {m!r}")
        n = self.scalar(m)
        if n < 0:
            raise self.fail("negative length")
        return n

    def string(self) -> str:
        n = self.length()
        if self.pos + n > len(self.data):
            raise self.fail("the file ends in the middle of a string (truncated?)")
        s = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, m: bytes | None = None):
        m = m or self.marker()
        if m in _SCALARS:
            return self.scalar(m)
        if m == b"S" or m == b"H":
            return self.string()
        if m == b"C":
            if self.pos >= len(self.data):
                raise self.fail("the file ends in the middle of a char (truncated?)")
            self.pos += 1
            return self.data[self.pos - 1:self.pos].decode("latin-1")
        if m == b"Z":
            return None
        if m == b"T":
            return True
        if m == b"F":
            return False
        if m == b"[" or m == b"{":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(f"containers nested more than {MAX_DEPTH} deep")
            v = self.array() if m == b"[" else self.obj()
            self.depth -= 1
            return v
        raise self.fail(f"unknown type marker {m!r}")

    def _container_header(self) -> tuple[bytes | None, int | None]:
        typ = count = None
        if self.data[self.pos:self.pos + 1] == b"$":
            self.pos += 1
            typ = self.data[self.pos:self.pos + 1]
            self.pos += 1
        if self.data[self.pos:self.pos + 1] == b"#":
            self.pos += 1
            count = self.length()
            # every element takes at least one byte but those of a typed null / true / false / no-op container:
            # a count beyond the bytes left is a corrupt file, refused before anything is allocated or looped
            if count > len(self.data) - self.pos:
                raise self.fail(f"a container of {count} elements in the {len(self.data) - self.pos} bytes left "
                                "(corrupt or truncated)")
        elif typ is not None:
            raise self.fail("a typed container without a count")
        return typ, count

    def array(self):
        typ, count = self._container_header()
        if typ in _SCALARS and count is not None:
            dtype, size = _SCALARS[typ]
            if self.pos + size * count > len(self.data):
                raise self.fail("the file ends in the middle of an array (truncated?)")
            a = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
            self.pos += size * count
            return a.astype(a.dtype.newbyteorder("="))
        out = []
        if count is not None:
            for _ in range(count):
                out.append(self.value(typ))
            return out
        while True:
            m = self.marker()
            if m == b"]":
                return out
            out.append(self.value(m))

    def obj(self):
        typ, count = self._container_header()
        out = {}
        if count is not None:
            for _ in range(count):
                k = self.string()
                out[k] = self.value(typ)
            return out
        while True:
            if self.data[self.pos:self.pos + 1] == b"}":
                self.pos += 1
                return out
            k = self.string()
            out[k] = self.value()


def loads(data: bytes, source: str = "UBJSON") -> object:
    r = _Reader(data, source)
    try:
        v = r.value()
    except ModelError:
        raise
    except (struct.error, ValueError, UnicodeDecodeError, KeyError) as exc:
        raise r.fail(str(exc)) from None
    return v
