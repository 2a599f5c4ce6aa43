"""A small, safe expression language for ``filter=`` strings, evaluated column-wise with NumPy.

The text is parsed with Python's :mod:`ast` and only a whitelist of node types is accepted: numbers,
column names, arithmetic (``+ - * / // % **``), comparisons (chains such as ``0 < eta < 2.4`` included),
``and`` / ``or`` / ``not`` (also ``& | ~``), and calls of a fixed set of NumPy functions (``abs``,
``sqrt``, ``exp``, ``log``, ``sin``, ``cos``, ``tan``, ``arctan2``, ``hypot``, ``minimum``, ``maximum``,
``isnan``, ``isfinite``, ...). Nothing is ever passed to :func:`eval`; attribute access, subscripts,
lambdas, comprehensions and unknown names are errors that name the offending piece of text.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

import numpy as np

from ..errors import Ml4epError


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
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise FilterError(f"invalid filter {text!r}: {exc.msg} at column {exc.offset}") from None
        self._body = tree.body
        names: list[str] = []
        self._check(self._body, names)
        self.columns = list(dict.fromkeys(names))

    def _fail(self, node: ast.AST, why: str) -> FilterError:
        piece = ast.get_source_segment(self.text.strip(), node) or type(node).__name__
        return FilterError(f"invalid filter {self.text!r}: {why}: {piece!r}")

    def _check(self, node: ast.AST, names: list[str]) -> None:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (bool, int, float)):
                raise self._fail(node, "only numbers are allowed as constants")
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
            for a in node.args:
                self._check(a, names)
        else:
            raise self._fail(node, "this construct is not allowed in a filter")

    def evaluate(self, arrays: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """A boolean mask of length ``n`` (scalar results are broadcast)."""
        with np.errstate(all="ignore"):
            out = self._eval(self._body, arrays)
        out = np.asarray(out)
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
            return _BINOPS[type(node.op)](self._eval(node.left, arrays), self._eval(node.right, arrays))
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, arrays)
            if isinstance(node.op, ast.USub):
                return np.negative(v)
            if isinstance(node.op, ast.UAdd):
                return v
            return np.logical_not(v)
        if isinstance(node, ast.BoolOp):
            f = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = self._eval(node.values[0], arrays)
            for v in node.values[1:]:
                out = f(out, self._eval(v, arrays))
            return out
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, arrays)
            out = None
            for op, comp in zip(node.ops, node.comparators):
                right = self._eval(comp, arrays)
                r = _CMPOPS[type(op)](left, right)
                out = r if out is None else np.logical_and(out, r)
                left = right
            return out
        assert isinstance(node, ast.Call)
        return _FUNCTIONS[node.func.id](*[self._eval(a, arrays) for a in node.args])
