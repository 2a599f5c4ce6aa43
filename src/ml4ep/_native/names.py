"""Names from models in generated C++: one sanitiser for identifiers, one escaper for comments and strings.

Every name that reaches generated code (ONNX tensor, node and graph names, symbolic dimensions, a BDT's source
path and namespace, the fast-sim hook's model and condition names, file paths in the benchmarks' programs) comes
from a file or an argument of unknown origin: a name holding a newline and C++ text would otherwise run as code
when the library is loaded, and stay in the header that experiments ship. So every such name, in ml4ep.infer,
ml4ep.bdt, ml4ep.fastsim.hook and ml4ep.bench alike, goes through one of:

- :func:`identifier` for C++ identifiers: ``[A-Za-z0-9_]`` only, never a keyword, a leading digit or a leading
  underscore; with ``unique=True`` a name that had to change gets a short hash of the original (``input.1`` ->
  ``input_1_3d1f0a``), so two names never share an identifier.
- :func:`text` for comments and the inside of string literals: printable ASCII except ``\\ " ? *``, every other
  byte of the UTF-8 encoding as a three-digit octal escape (``\\012`` for a newline). Safe in ``//`` and
  ``/* */`` comments (no line break, no backslash before a line end, no ``*/``, no trigraph) and in string
  literals, where the escapes give back the original bytes, so error messages name the node exactly.
- :func:`string`: ``text`` in double quotes, a C++ string literal.
- :func:`printf_text`: ``text`` with ``%`` doubled, for format strings.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["CPP_KEYWORDS", "identifier", "printf_text", "string", "text"]

CPP_KEYWORDS = frozenset("""
    alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class
    compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype
    default delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline
    int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register
    reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch template
    this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile wchar_t
    while xor xor_eq
    assert errno stdin stdout stderr offsetof linux unix i386 NULL EOF
""".split())  # the last line: macros of the standard headers and of GNU mode, unusable as names

_NOT_IDENT = re.compile(r"[^0-9A-Za-z_]")
_PLAIN = frozenset(range(0x20, 0x7F)) - {ord(c) for c in '\\"?*'}


def _utf8(name: object) -> bytes:
    return str(name).encode("utf-8", "backslashreplace")


def identifier(name: object, prefix: str = "", unique: bool = True) -> str:
    """A C++ identifier for ``name``: ``prefix`` + the name with every other character than ``[A-Za-z0-9_]``
    replaced by ``_`` (plus a hash of the original where that changed it and ``unique``); ``t_`` in front of a
    result that would be empty, a keyword or a reserved macro name, or start with a digit or an underscore."""
    raw = str(name)
    s = _NOT_IDENT.sub("_", raw)
    if unique and s != raw:
        s = f"{s}_{hashlib.sha256(_utf8(raw)).hexdigest()[:6]}"
    s = prefix + s
    if not s or s[0].isdigit() or s[0] == "_" or s in CPP_KEYWORDS:
        s = "t_" + s
    return s


def text(name: object) -> str:
    """``name`` for a C++ comment or the inside of a string literal (see the module's docstring)."""
    return "".join(chr(b) if b in _PLAIN else f"\\{b:03o}" for b in _utf8(name))


def string(name: object) -> str:
    """A C++ string literal whose value is ``name``'s UTF-8 bytes."""
    return f'"{text(name)}"'


def printf_text(name: object) -> str:
    """``name`` for the inside of a printf format string literal (a NUL, which would end the format, shows as
    ``\\0``)."""
    return text(str(name).replace("\0", "\\0")).replace("%", "%%")
