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

Model files are untrusted: a :class:`Forest` checks its trees when it is made (:meth:`Tree.check`,
:func:`check_structure`, linear in the nodes) and refuses, naming the source, tree and node, node arrays that are
not one binary tree (shared children, cycles, unreachable nodes, children out of range), feature indices outside
``0..n_features-1``, NaN thresholds, leaf values and base scores that are not finite.
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
        if n == 0:
            raise ModelError("tree has no nodes")

    @cached_property
    def depth(self) -> int:
        """Edges on the longest path from the root to a leaf (checks that the nodes form one tree)."""
        return check_structure(self.left, self.right, self.feature >= 0, "tree")[1]

    def check(self, n_features: int, where: str) -> None:
        """Refuse what no model can mean, naming ``where`` (file and tree) and the node: node arrays that are
        not one binary tree rooted at node 0, feature indices outside ``0..n_features-1`` (or below the leaf
        marker -1), NaN thresholds, leaf values that are not finite. Linear in the number of nodes."""
        feature = np.asarray(self.feature)
        if feature.dtype.kind not in "iu":
            raise ModelError(f"{where}: feature indices are not integers ({feature.dtype})")
        inner = feature >= 0
        bad = np.flatnonzero((feature < -1) | (feature >= n_features))
        if len(bad):
            j = int(bad[0])
            raise ModelError(f"{where}, node {j}: split feature index {int(feature[j])} is outside the model's "
                             f"{n_features} features (0..{n_features - 1})")
        thr = np.asarray(self.threshold)
        if thr.dtype.kind != "f":
            raise ModelError(f"{where}: thresholds are not floating-point numbers ({thr.dtype})")
        bad = np.flatnonzero(inner & np.isnan(thr))
        if len(bad):
            raise ModelError(f"{where}, node {int(bad[0])}: the split threshold is NaN")
        value = np.asarray(self.value)
        if value.dtype.kind not in "fiu":
            raise ModelError(f"{where}: leaf values are not numbers ({value.dtype})")
        finite = np.isfinite(value) if value.ndim == 1 else np.isfinite(value).all(axis=tuple(range(1, value.ndim)))
        bad = np.flatnonzero(~inner & ~finite)
        if len(bad):
            j = int(bad[0])
            raise ModelError(f"{where}, node {j}: the leaf value {value[j].tolist()} is not a finite number")
        self.__dict__["depth"] = check_structure(self.left, self.right, inner, where)[1]


MAX_FEATURES = 2**31 - 1  # feature indices are int32 in the IR and the generated code


def check_structure(left, right, inner, where: str, name=None, orphan_leaves: bool = False):
    """Check that node arrays form one binary tree rooted at node 0, in time linear in the number of nodes:
    every inner node's two children lie among the nodes, no node is the child of two parents (or twice of one),
    the root is nobody's child, and every node is reachable from the root (which rules out cycles). A DAG of
    shared children would make a walk over all paths exponential; a cycle would make it endless.

    ``left``, ``right``: child indices (read at inner nodes only); ``inner``: bool mask of the inner nodes;
    ``where``: the file and tree, for the error; ``name(j)``: how node ``j`` is called in the source (default
    ``"node j"``); ``orphan_leaves``: unreachable *leaves* are allowed (XGBoost keeps pruned nodes in its arrays,
    unreachable and marked deleted). Returns the reachable nodes, root first, level by level, and the depth
    (edges on the longest root-to-leaf path)."""
    name = name or (lambda j: f"node {j}")
    inner = np.asarray(inner, dtype=bool)
    n = len(inner)
    if n == 0:
        raise ModelError(f"{where}: the tree has no nodes")
    parents = np.flatnonzero(inner)
    kids = []
    for side in ("left", "right"):
        c = np.asarray(left if side == "left" else right)
        if c.dtype.kind not in "iu":
            raise ModelError(f"{where}: {side} child indices are not integers ({c.dtype})")
        c = c[parents].astype(np.int64)
        bad = np.flatnonzero((c < 0) | (c >= n))
        if len(bad):
            p = int(parents[bad[0]])
            raise ModelError(f"{where}, {name(p)}: {side} child {int(c[bad[0]])} is not one of the tree's {n} nodes")
        kids.append(c)
    children = np.concatenate(kids)
    owner = np.concatenate([parents, parents])
    count = np.bincount(children, minlength=n)
    if count[0]:
        p = int(owner[np.flatnonzero(children == 0)[0]])
        raise ModelError(f"{where}, {name(p)}: points back to the root ({name(0)}): a cycle, not a tree")
    shared = np.flatnonzero(count > 1)
    if len(shared):
        c = int(shared[0])
        who = ", ".join(name(int(p)) for p in owner[children == c][:4])
        raise ModelError(f"{where}, {name(c)}: is the child of more than one node ({who}): the nodes share "
                         "children, which is not a tree")
    # each node has at most one parent and the root none: a walk from the root meets every node at most once
    seen = np.zeros(n, dtype=bool)
    seen[0] = True
    levels, frontier, depth = [np.zeros(1, np.int64)], np.zeros(1, np.int64), 0
    lc, rc = np.asarray(left), np.asarray(right)
    while True:
        split = frontier[inner[frontier]]
        if not len(split):
            break
        frontier = np.concatenate([lc[split], rc[split]]).astype(np.int64)
        seen[frontier] = True
        levels.append(frontier)
        depth += 1
    lost = np.flatnonzero(~seen & (inner if orphan_leaves else True))
    if len(lost):
        raise ModelError(f"{where}, {name(int(lost[0]))}: is not reachable from the root ({len(lost)} such "
                         "nodes: orphans or a cycle), not a tree")
    return np.concatenate(levels), depth


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
        src = self.source or "forest"
        if not isinstance(self.n_features, (int, np.integer)) or not 0 <= self.n_features <= MAX_FEATURES:
            raise ModelError(f"{src}: the number of features {self.n_features!r} is not an integer in "
                             f"0..{MAX_FEATURES}")
        if not isinstance(self.n_outputs, (int, np.integer)) or self.n_outputs < 1:
            raise ModelError(f"{src}: the number of outputs {self.n_outputs!r} is not a positive integer")
        self.n_features, self.n_outputs = int(self.n_features), int(self.n_outputs)
        self.tree_output = np.asarray(self.tree_output, dtype=np.int64).reshape(-1)
        if len(self.tree_output) != len(self.trees):
            raise ModelError(f"{src}: {len(self.tree_output)} tree outputs for {len(self.trees)} trees")
        base = np.asarray(self.base_score, dtype=np.float64)
        if base.size != self.n_outputs:
            raise ModelError(f"{src}: {base.size} base scores for {self.n_outputs} outputs")
        if not np.isfinite(base).all():
            raise ModelError(f"{src}: the base score {base.tolist()} is not finite")
        self.base_score = base.reshape(self.n_outputs)
        for i, (tree, k) in enumerate(zip(self.trees, self.tree_output)):
            where = f"{src}: tree {i}"
            vector = np.ndim(tree.value) == 2
            if not -1 <= k < self.n_outputs or (k == -1) != vector or np.ndim(tree.value) > 2:
                raise ModelError(f"{where}: adds to output {int(k)}, which does not match the model's "
                                 f"{self.n_outputs} outputs and its leaf values of shape {np.shape(tree.value)}")
            if vector and np.shape(tree.value)[1] != self.n_outputs:
                raise ModelError(f"{where}: {np.shape(tree.value)[1]} leaf values per leaf for "
                                 f"{self.n_outputs} outputs")
            tree.check(self.n_features, where)

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

    def compile(self, name: str = "forest", threads: int = 1, portable: bool = False, march: str | None = None,
                precision=None):
        """The forest as generated, compiled C++ behind the same ``predict`` (cached by content). ``march``: the
        target ISA (default ``$ML4EP_MARCH``, else native; ``portable=True`` is ``march="x86-64-v2"``).

        ``precision`` (e.g. ``"ap_fixed<18,8>"``): instead, a :class:`~ml4ep.bdt.fixed.FixedForest` whose
        ``decision_function(X)`` is conifer's fixed-point one, bit for bit, for the model :meth:`to_conifer` writes."""
        if precision is not None:
            from .fixed import FixedForest

            return FixedForest(self, precision, name=name, threads=threads, portable=portable, march=march)
        from .compiled import CompiledForest

        return CompiledForest(self, name=name, threads=threads, portable=portable, march=march)

    def to_conifer(self, path=None) -> dict:
        """conifer's model JSON (``conifer.model.load_model`` reads it), written to ``path`` if given; the dictionary
        is returned. Refuses what conifer cannot represent (see :mod:`ml4ep.bdt.conifer`)."""
        from .conifer import to_conifer

        return to_conifer(self, path)

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
