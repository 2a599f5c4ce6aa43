"""The one forest IR every model format converts to, and its NumPy evaluator.

A :class:`Forest` is a list of binary trees, each adding its leaf values to one output (a class for
multiclass models), plus a base score and a final transform. Every loader states the split convention of
its source explicitly (``"<"``: go left when ``x < threshold``, as XGBoost and TMVA; ``"<="``: when
``x <= threshold``, as LightGBM's numerical splits and scikit-learn), and, per node, where a missing value goes.
Nothing is assumed.

Tree arrays (one entry per node, node 0 is the root): ``feature`` (-1 for a leaf), ``threshold``,
``left``, ``right`` (child node indices), ``default_left`` (NaN goes left), ``value`` (leaf values,
shape ``(n_nodes,)`` or ``(n_nodes, n_outputs)`` for trees that feed every output, as scikit-learn's
multiclass random forests), and optionally ``zero_missing`` (bool, default all False: a node where values
with ``|x| <= ZERO_BAND``, as well as NaN, take the default direction, as LightGBM's ``missing_type=Zero``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..errors import Ml4epError


class ModelError(Ml4epError, ValueError):
    """A tree model cannot be read or evaluated (unreadable file, unknown objective, bad input shape)."""


TRANSFORMS = ("identity", "sigmoid", "softmax", "exp", "tanh")
ZERO_BAND = float(np.float32(1e-35))  # LightGBM's kZeroThreshold: |x| <= this counts as zero


@dataclass
class Tree:
    feature: np.ndarray  # int32, -1 marks a leaf
    threshold: np.ndarray  # float32 or float64 (the source's own precision)
    left: np.ndarray  # int32
    right: np.ndarray  # int32
    default_left: np.ndarray  # bool: where NaN goes
    value: np.ndarray  # float64, (n_nodes,) or (n_nodes, n_outputs)
    zero_missing: np.ndarray | None = None  # bool or None (all False): |x| <= ZERO_BAND goes the default way too

    def __post_init__(self):
        n = len(self.feature)
        if self.zero_missing is not None:
            self.zero_missing = np.asarray(self.zero_missing, dtype=bool)
            if len(self.zero_missing) != n:
                raise ModelError(f"tree arrays disagree: zero_missing has {len(self.zero_missing)} nodes, feature {n}")
            if not self.zero_missing.any():
                self.zero_missing = None
        for name in ("threshold", "left", "right", "default_left", "value"):
            if len(getattr(self, name)) != n:
                raise ModelError(f"tree arrays disagree: {name} has {len(getattr(self, name))} nodes, feature {n}")
        inner = self.feature >= 0
        for name in ("left", "right"):
            child = getattr(self, name)[inner]
            if np.any((child <= 0) | (child >= n)):
                raise ModelError(f"tree has {name} children outside its {n} nodes")

    @cached_property
    def depth(self) -> int:
        """Edges on the longest path from the root to a leaf."""
        best, stack = 0, [(0, 0)]
        while stack:
            node, d = stack.pop()
            if self.feature[node] >= 0:
                if d + 1 > len(self.feature):
                    raise ModelError("tree has a cycle")
                stack.append((int(self.left[node]), d + 1))
                stack.append((int(self.right[node]), d + 1))
            else:
                best = max(best, d)
        return best


@dataclass
class Forest:
    trees: list[Tree]
    tree_output: np.ndarray  # int: the output each tree adds to (-1: a vector-valued tree adding to all)
    n_features: int
    n_outputs: int
    base_score: np.ndarray  # (n_outputs,), added to the sum of the trees, in margin space
    transform: str  # one of TRANSFORMS, applied to the margins
    split: str  # "<" or "<="
    average: bool = False  # divide the sum of the trees by their number (random forests), before base_score
    output_shape: str = "auto"  # how predict() shapes its result: "auto" | "vector" (binary: (n,)) | "matrix"
    feature_names: list[str] | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.split not in ("<", "<="):
            raise ModelError(f"split convention must be '<' or '<=', got {self.split!r}")
        if self.transform not in TRANSFORMS:
            raise ModelError(f"unknown output transform {self.transform!r}")
        self.tree_output = np.asarray(self.tree_output, dtype=np.int64)
        self.base_score = np.asarray(self.base_score, dtype=np.float64).reshape(self.n_outputs)

    # -- evaluation ------------------------------------------------------------------------------
    def _check(self, X) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2:
            raise ModelError(f"expected a 2-D array of rows x features, got shape {X.shape}")
        if X.shape[1] != self.n_features:
            raise ModelError(f"the model{self._named()} takes {self.n_features} features, got {X.shape[1]}")
        return X

    def _named(self) -> str:
        return f" ({self.source})" if self.source else ""

    def margin(self, X) -> np.ndarray:
        """Sum of the trees plus the base score, before the transform: shape ``(n, n_outputs)``."""
        X = self._check(X)
        precision = np.result_type(*[t.threshold.dtype for t in self.trees]) if self.trees else np.float64
        Xc = X.astype(precision, copy=False)
        n = Xc.shape[0]
        # sources that sum in float32 (XGBoost: from the base margin, tree by tree) are followed exactly
        acc = np.float32 if self.meta.get("accumulate") == "float32" else np.float64
        out = np.zeros((n, self.n_outputs), dtype=acc)
        if acc == np.float32:
            out += self.base_score.astype(np.float32)
        rows = np.arange(n)
        for tree, k in zip(self.trees, self.tree_output):
            leaf = _leaves(tree, Xc, rows, self.split)
            if k < 0:
                out += tree.value[leaf].reshape(n, self.n_outputs).astype(acc)
            else:
                out[:, k] += tree.value[leaf].astype(acc)
        if self.average and self.trees:
            out /= len(self.trees)
        if acc == np.float32:
            return out.astype(np.float64)
        return out + self.base_score

    def compile(self, name: str = "forest", threads: int = 1, portable: bool = False, march: str | None = None):
        """The forest as generated, compiled C++ behind the same ``predict`` (cached by content). ``march``: the
        target ISA (default ``$ML4EP_MARCH``, else native; ``portable=True`` is ``march="x86-64-v2"``)."""
        from .compiled import CompiledForest

        return CompiledForest(self, name=name, threads=threads, portable=portable, march=march)

    def save(self, outdir, name: str = "forest"):
        """``outdir/<name>.hpp`` (C++17 only: ``name::predict(x, n, y)``) and ``outdir/example.cpp``."""
        from .compiled import save

        return save(self, outdir, name)

    def predict(self, X) -> np.ndarray:
        """The source library's ``predict`` (``predict_proba`` for classifiers), same values and shape."""
        m = self.margin(X)
        if self.meta.get("argmax"):  # e.g. XGBoost's multi:softmax predicts the class index
            return np.argmax(m, axis=1).astype(np.float64)
        if self.transform == "sigmoid":
            p = 1.0 / (1.0 + np.exp(-m))
        elif self.transform == "softmax":
            e = np.exp(m - m.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
        elif self.transform == "exp":
            p = np.exp(m)
        elif self.transform == "tanh":  # TMVA's gradient-boost output 2 / (1 + exp(-2m)) - 1
            p = np.tanh(m)
        else:
            p = m
        if self.output_shape == "vector" or (self.output_shape == "auto" and self.n_outputs == 1):
            return p[:, 0]
        return p


def _leaves(tree: Tree, X: np.ndarray, rows: np.ndarray, split: str) -> np.ndarray:
    """The leaf each row reaches: all rows move one level per step, finished rows stay."""
    node = np.zeros(len(rows), dtype=np.int64)
    feature = tree.feature.astype(np.int64)
    for _ in range(tree.depth):
        f = feature[node]
        inner = f >= 0
        if not inner.any():
            break
        x = X[rows, np.where(inner, f, 0)]
        thr = tree.threshold[node]
        go_left = (x < thr) if split == "<" else (x <= thr)
        missing = np.isnan(x)
        if tree.zero_missing is not None:
            missing |= tree.zero_missing[node] & (np.abs(x) <= ZERO_BAND)
        go_left = np.where(missing, tree.default_left[node], go_left)
        nxt = np.where(go_left, tree.left[node], tree.right[node])
        node = np.where(inner, nxt, node)
    return node
