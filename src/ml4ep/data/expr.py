"""A small, safe expression language for ``filter=`` strings, evaluated column-wise with NumPy.

The text is parsed with Python's :mod:`ast` and only a whitelist of node types is accepted: numbers,
column names, arithmetic (``+ - * / // % **``), comparisons (chains such as ``0 < eta < 2.4`` included),
``and`` / ``or`` / ``not`` (also ``& | ~``), and calls of a fixed set of NumPy functions (``abs``,
``sqrt``, ``exp``, ``log``, ``sin``, ``cos``, ``tan``, ``arctan2``, ``hypot``, ``minimum``, ``maximum``,
``isnan``, ``isfinite``, ...). Nothing is ever passed to :func:`eval`; attribute access, subscripts,
lambdas, comprehensions and unknown names are errors that name the offending piece of text.

Numbers follow Python's exact integer arithmetic, never NumPy's wrap-around: integer constants and constant
expressions are computed exactly and become float64 when they leave the int64 range (``10**400`` is ``inf``, so
``pt > 10**400`` keeps no row and ``pt < 10**400`` every finite one); integer columns are computed in int64
(uint64 if unsigned), or in float64 (with its 53-bit precision) when a result would leave that range, divide by
zero or have a negative exponent. Limits, each a :class:`FilterError` naming it: at most :data:`MAX_LENGTH` characters,
:data:`MAX_NODES` syntax-tree nodes and :data:`MAX_DEPTH` levels of nesting, and no integer of more than
:data:`MAX_INT_BITS` bits (``10**10**10`` is refused instead of being computed).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping

import numpy as np

from ..errors import Ml4epError


#: the longest filter text (characters), the most syntax-tree nodes, the deepest nesting, the largest integer (bits)
MAX_LENGTH, MAX_NODES, MAX_DEPTH, MAX_INT_BITS = 100_000, 50_000, 200, 4096


class FilterError(Ml4epError, ValueError):
    """A ``filter`` expression is invalid or refers to unknown columns."""


_FUNCTIONS = {
    "abs": np.abs, "sqrt": np.sqrt, "exp": np.exp, "log": np.log, "log10": np.log10, "log1p": np.log1p,
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "arcsin": np.arcsin, "arccos": np.arccos,
    "arctan": np.arctan, "arctan2": np.arctan2, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "hypot": np.hypot, "minimum": np.minimum, "maximum": np.maximum, "min": np.minimum, "max": np.maximum,
    "isnan": np.isnan, "isfinite": np.isfinite, "isinf": np.isinf, "floor": np.floor, "ceil": np.ceil,
    "round": np.round, "sign": np.sign, "where": np.where,
}
_CONSTANTS = {"pi": np.pi, "inf": np.inf, "nan": np.nan, "True": True, "False": False}
_BINOPS = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide, ast.Mod: np.mod, ast.Pow: np.power,
    ast.BitAnd: np.logical_and, ast.BitOr: np.logical_or, ast.BitXor: np.logical_xor,
}
_ARITY = {name: (f.nin,) for name, f in _FUNCTIONS.items() if isinstance(f, np.ufunc)}
_ARITY.update(round=(1, 2), where=(3,))
#: integer operations computed exactly (Python ints) or checked against the int64 / uint64 range (columns)
_INT_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
            ast.Mod: operator.mod, ast.Pow: operator.pow}
_CMPOPS = {
    ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
    ast.Eq: np.equal, ast.NotEq: np.not_equal,
}


class Expression:
    """A parsed filter. ``columns`` names the columns it reads; ``evaluate(arrays)`` gives a boolean mask."""

    def __init__(self, text: str):
        if not isinstance(text, str) or not text.strip():
            raise FilterError(f"filter must be a non-empty string, got {text!r}")
        self.text = text
        if len(text) > MAX_LENGTH:
            raise FilterError(f"filter {_short(text)} is too long: {len(text)} characters (the limit is "
                              f"MAX_LENGTH = {MAX_LENGTH})")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise FilterError(f"invalid filter {_short(text)}: {exc.msg} at column {exc.offset}") from None
        except (RecursionError, MemoryError, ValueError):
            raise FilterError(f"filter {_short(text)} is too deeply nested to parse (the limit is "
                              f"MAX_DEPTH = {MAX_DEPTH} levels)") from None
        self._body = tree.body
        self._measure()
        names: list[str] = []
        self._check(self._body, names)
        self.columns = list(dict.fromkeys(names))

    def _measure(self) -> None:
        """Refuse trees of more than MAX_NODES nodes or MAX_DEPTH levels (before any recursion over them)."""
        stack, n = [(self._body, 1)], 0
        while stack:
            node, depth = stack.pop()
            n += 1
            if n > MAX_NODES or depth > MAX_DEPTH:
                what = f"{n}+ nodes" if n > MAX_NODES else f"{depth}+ levels of nesting"
                limit = f"MAX_NODES = {MAX_NODES}" if n > MAX_NODES else f"MAX_DEPTH = {MAX_DEPTH}"
                raise FilterError(f"filter {_short(self.text)} is too complex: {what} (the limit is {limit})")
            stack.extend((c, depth + 1) for c in ast.iter_child_nodes(node))

    def _fail(self, node: ast.AST, why: str) -> FilterError:
        piece = ast.get_source_segment(self.text.strip(), node) or type(node).__name__
        return FilterError(f"invalid filter {_short(self.text)}: {why}: {_short(piece)}")

    def _check(self, node: ast.AST, names: list[str]) -> None:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (bool, int, float)):
                raise self._fail(node, "only numbers are allowed as constants")
            if isinstance(node.value, int) and node.value.bit_length() > MAX_INT_BITS:
                raise self._fail(node, f"integer of more than MAX_INT_BITS = {MAX_INT_BITS} bits")
        elif isinstance(node, ast.Name):
            if node.id not in _CONSTANTS:
                names.append(node.id)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise self._fail(node, "operator not allowed")
            self._check(node.left, names)
            self._check(node.right, names)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not, ast.Invert)):
                raise self._fail(node, "operator not allowed")
            self._check(node.operand, names)
        elif isinstance(node, ast.BoolOp):
            for v in node.values:
                self._check(v, names)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _CMPOPS:
                    raise self._fail(node, "comparison not allowed (use < <= > >= == !=)")
            self._check(node.left, names)
            for c in node.comparators:
                self._check(c, names)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                raise self._fail(node, f"unknown function (allowed: {', '.join(sorted(_FUNCTIONS))})")
            if node.keywords:
                raise self._fail(node, "keyword arguments are not allowed")
            if len(node.args) not in _ARITY[node.func.id]:
                raise self._fail(node, f"{node.func.id} takes {' or '.join(map(str, _ARITY[node.func.id]))} "
                                       f"argument(s), got {len(node.args)}")
            for a in node.args:
                self._check(a, names)
        else:
            raise self._fail(node, "this construct is not allowed in a filter")

    def evaluate(self, arrays: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """A boolean mask of length ``n`` (scalar results are broadcast)."""
        try:
            with np.errstate(all="ignore"):
                out = np.asarray(_np(self._eval(self._body, arrays)))
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. a column of strings
            if isinstance(exc, FilterError):
                raise
            raise FilterError(f"filter {_short(self.text)} cannot be evaluated: {exc}") from None
        if out.dtype != np.bool_:
            out = out != 0
        if out.ndim == 0:
            return np.full(n, bool(out))
        if out.shape != (n,):
            raise FilterError(
                f"filter {self.text!r} gives shape {out.shape} instead of one value per entry ({n},); "
                "use scalar columns only (vector columns need a reduction such as max(...))"
            )
        return out

    def _eval(self, node: ast.AST, arrays: Mapping[str, np.ndarray]):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return arrays[node.id] if node.id not in _CONSTANTS else _CONSTANTS[node.id]
        if isinstance(node, ast.BinOp):
            a, b = self._eval(node.left, arrays), self._eval(node.right, arrays)
            if type(node.op) in _INT_OPS and _is_int(a) and _is_int(b):
                if isinstance(a, int) and isinstance(b, int):
                    return self._exact(node, a, b)
                return _int_safe(_BINOPS[type(node.op)], a, b)
            return _BINOPS[type(node.op)](_np(a), _np(b))
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, arrays)
            if isinstance(node.op, ast.USub):
                return -v if isinstance(v, int) else _int_safe(np.subtract, 0, v) if _is_int(v) else np.negative(v)
            if isinstance(node.op, ast.UAdd):
                return v
            return np.logical_not(_np(v))
        if isinstance(node, ast.BoolOp):
            f = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = _np(self._eval(node.values[0], arrays))
            for v in node.values[1:]:
                out = f(out, _np(self._eval(v, arrays)))
            return out
        if isinstance(node, ast.Compare):
            left = _np(self._eval(node.left, arrays))
            out = None
            for op, comp in zip(node.ops, node.comparators):
                right = _np(self._eval(comp, arrays))
                r = _CMPOPS[type(op)](left, right)
                out = r if out is None else np.logical_and(out, r)
                left = right
            return out
        assert isinstance(node, ast.Call)
        args = [self._eval(a, arrays) for a in node.args]
        if node.func.id == "abs" and _is_int(args[0]) and not isinstance(args[0], int):
            return _int_safe(np.abs, args[0])
        return _FUNCTIONS[node.func.id](*map(_np, args))

    def _exact(self, node: ast.BinOp, a: int, b: int):
        """``a op b`` of two Python ints, exactly (Python's semantics), refusing results of more than MAX_INT_BITS
        bits before computing them; division by zero and negative powers go to float64 as for columns."""
        op = type(node.op)
        if (op in (ast.FloorDiv, ast.Mod) and b == 0) or (op is ast.Pow and b < 0):
            return _BINOPS[op](float(_np(a)), float(b))
        bits = {ast.Mult: a.bit_length() + b.bit_length(),
                ast.Pow: b * max(abs(a).bit_length() - 1, 0)}.get(op, 0)
        out = _INT_OPS[op](a, b) if bits <= MAX_INT_BITS else None
        if out is None or out.bit_length() > MAX_INT_BITS:
            raise self._fail(node, f"the number is too large (more than MAX_INT_BITS = {MAX_INT_BITS} bits)")
        return out


def _short(text: str, n: int = 80) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def _is_int(v) -> bool:
    """An integer (or bool) Python number, NumPy scalar or array."""
    return isinstance(v, (int, np.integer, np.bool_)) or (isinstance(v, np.ndarray) and v.dtype.kind in "biu")


def _np(v):
    """``v`` for NumPy: Python ints outside the int64 range become float64 (``inf`` beyond float64's range)."""
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
        try:
            return float(v)
        except OverflowError:
            return np.inf if v > 0 else -np.inf
    return v


def _widen(v):
    if isinstance(v, (int, float)):
        return _np(v)
    v = np.asarray(v)
    return v.astype(np.uint64 if v.dtype.kind == "u" else np.int64, copy=False)


def _int_safe(func, *args):
    """``func`` of integer operands without wrap-around: in int64 (uint64 for unsigned columns), or in float64
    where a result leaves that range (or divides by zero, or a power has a negative exponent)."""
    wide = [_widen(a) for a in args]
    approx = func(*[np.asarray(a, np.float64) for a in wide])
    if func is np.power and np.any(np.asarray(wide[1]) < 0):
        return approx
    try:
        out = func(*wide)
    except OverflowError:  # a Python int out of the range of an unsigned column
        return approx
    if out.dtype.kind not in "iu":  # int64 with uint64 gives float64 in NumPy
        return out
    lo, hi = float(np.iinfo(out.dtype).min), float(np.iinfo(out.dtype).max)  # hi rounds up to 2**63 or 2**64
    inside = (approx < hi) & ((approx > lo) if lo else (approx >= 0))
    return out if np.all(inside) else approx
