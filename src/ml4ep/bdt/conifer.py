"""A forest as conifer's model JSON (``conifer.model.load_model`` reads it; docs/fpga.md, "BDTs: conifer").

conifer (https://github.com/thesps/conifer) turns tree ensembles into FPGA firmware (HLS, VHDL) and a C++
emulation. Its model is ``trees[n_trees][n_classes]`` of binary trees (nodes: ``feature``, -2 at leaves; a one-hot
``weight`` of ``n_features`` per node; ``threshold``; ``value``; ``children_left``/``children_right``, -1 at
leaves), summed per class from ``init_predict`` and multiplied by ``norm``; a node goes left when
``x . weight <splitting_convention> threshold``. ``n_classes`` 2 means one score.

What :func:`to_conifer` writes:

- thresholds, leaf values and ``init_predict`` as the forest's own numbers (float32 or float64, written by Python's
  ``json`` as the shortest text that reads back to the same double: no rounding to a few decimals);
- every tree renumbered depth-first from the root (parents before children, as conifer's HLS backend needs),
  unreachable nodes dropped; a node whose threshold is infinite (every finite value goes one way) is replaced
  by the child every finite value reaches;
- one conifer tree per (tree, class): a tree of vector leaves (scikit-learn's multiclass random forests) becomes
  one tree per class with that class's leaf values; classes with fewer trees are padded with single-leaf trees
  of value 0 (adding 0 changes no sum, in floating or fixed point);
- random forests (the mean of the trees): the ``1/n_trees`` is folded into the leaf values (as conifer's own
  scikit-learn converter does), ``norm`` is 1;
- two outputs: conifer's ``n_classes`` 2 is one score, so a two-output forest is written as one score where that
  loses nothing: under softmax (binary classifiers stored as two logits, e.g. scikit-learn's gradient boosting,
  XGBoost ``num_class=2``) the score is ``m1 - m0``, the logit of class 1 (``softmax(m)[1] = sigmoid(m1 - m0)``;
  scikit-learn's ``decision_function`` for log loss); otherwise, when every tree's two leaf values have the same sum
  at every leaf (class probabilities of a binary random forest; ONNX's ``(-s, s)`` and ``(1 - s, s)`` pairs), output
  0 is a constant minus output 1 and the score is output 1.

The final transform (sigmoid, softmax, exp, tanh) is not written: conifer's ``decision_function`` is the margin,
the sum before any transform, the same as :meth:`Forest.margin` (apply the transform on top if needed).

Refused, with a :class:`ModelError` naming the source, tree and node:

- a zero-as-missing node (LightGBM ``zero_as_missing``, the IR's ``zero_missing``) whose default direction differs
  from where the comparison with its threshold sends values with ``|x| <= 1e-35`` (zero included): conifer
  compares every value with the threshold and has no notion of a missing value, so these finite inputs would
  take another branch. Zero-as-missing nodes where both agree are written (no finite input changes its path);
- two outputs that are not one score as above (e.g. a two-target regression): conifer cannot hold two
  independent scores.

Missing values (NaN) are not represented: conifer has none. Its float emulation computes ``x . weight`` over all
features, so a NaN (or an infinity) in any feature turns every comparison false and every node sends the row
right; its fixed-point types turn NaN into 0 (WRAP) or a saturated value. No per-node default direction can
reproduce that, so the forest's NaN directions are dropped and conifer models are for finite inputs; every finite
input follows the same path as in the source model.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from .forest import ZERO_BAND, Forest, ModelError, Tree

__all__ = ["to_conifer"]

log = logging.getLogger(__name__)

LEAF_FEATURE = -2  # conifer's leaf marker (scikit-learn's)
LEAF_THRESHOLD = -2.0
PAIR_TOLERANCE = 1e-9  # relative: two leaf values per leaf "sum to the same" within this


def to_conifer(forest: Forest, path: str | os.PathLike | None = None) -> dict:
    """conifer's model dictionary of ``forest`` (see the module docstring), written as JSON to ``path`` if given."""
    model = convert(forest)
    if path is not None:
        with open(os.fspath(path), "w", encoding="utf-8") as f:
            json.dump(model, f, allow_nan=False)  # floats as repr: the exact double, read back exactly
        log.info("wrote conifer model %s: %d x %d trees, %d features", os.fspath(path), model["n_trees"],
                 len(model["init_predict"]), model["n_features"])
    return model


def convert(forest: Forest, weights: bool = True) -> dict:
    """The conifer dictionary (also what :mod:`ml4ep.bdt.fixed` compiles; ``weights=False`` leaves out the one-hot
    ``weight`` lists, which only the JSON needs)."""
    src = forest.source or "forest"
    scores, init = _scores(forest, src)
    n_classes = len(init)
    scale = 1.0 / len(forest.trees) if forest.average and forest.trees else 1.0
    per_class: list[list[dict]] = [[] for _ in range(n_classes)]
    depth = 0
    for i, tree in enumerate(forest.trees):
        where = f"{src}: tree {i}"
        order = _preorder(tree)
        _check_zero_missing(tree, [j for j, _, lc, _ in order if lc >= 0], forest.split, where)
        depth = max(depth, max(d for _, d, _, _ in order))
        for c, value in scores(i, tree):
            per_class[c].append(_conifer_tree(tree, order, value * scale if scale != 1.0 else value,
                                              forest.n_features if weights else 0, where))
    n_trees = max(1, max(len(ts) for ts in per_class))
    for ts in per_class:  # pad: single leaves of value 0
        ts.extend(_zero_tree(forest.n_features if weights else 0) for _ in range(n_trees - len(ts)))
    names = forest.feature_names
    if names is None or len(set(names)) != len(names) or len(names) != forest.n_features:
        names = [f"feat_{j}" for j in range(forest.n_features)]
    return {
        "n_classes": 2 if n_classes == 1 else n_classes,
        "n_features": forest.n_features,
        "n_trees": n_trees,
        "max_depth": depth,
        "init_predict": [float(v) for v in init],
        "norm": 1.0,
        "library": "ml4ep",
        "splitting_convention": forest.split,
        "feature_map": {str(n): j for j, n in enumerate(names)},
        "trees": [[per_class[c][t] for c in range(n_classes)] for t in range(n_trees)],
    }


# -- outputs ---------------------------------------------------------------------------------------------------
def _scores(forest: Forest, src: str):
    """``(scores, init)``: ``scores(i, tree)`` yields ``(class, per-node values)`` of the conifer trees tree ``i``
    becomes; ``init`` the per-class ``init_predict``."""
    k, outputs = forest.n_outputs, forest.tree_output
    base = np.asarray(forest.base_score, dtype=np.float64)

    def values(tree: Tree) -> np.ndarray:
        return np.asarray(tree.value, dtype=np.float64).reshape(len(tree.feature), -1)

    if k != 2:
        def scores(i, tree):
            v = values(tree)
            if outputs[i] >= 0:
                yield int(outputs[i]), v[:, 0]
            else:
                for c in range(k):
                    yield c, v[:, c]
        return scores, base.copy()
    if forest.transform == "softmax":  # one score, the logit of class 1
        def scores(i, tree):
            v = values(tree)
            if outputs[i] == 1:
                yield 0, v[:, 0]
            elif outputs[i] == 0:
                yield 0, -v[:, 0]
            else:
                yield 0, v[:, 1] - v[:, 0]
        return scores, np.array([base[1] - base[0]])
    for i, (tree, o) in enumerate(zip(forest.trees, outputs)):
        leaf = np.array([j for j, _, lc, _ in _preorder(tree) if lc < 0])  # the leaves finite inputs reach
        if o >= 0:
            raise ModelError(f"{src}: tree {i} adds to output {int(o)} only: this forest has two independent "
                             "outputs, and conifer's models have one score for two classes (n_classes 2); only "
                             "softmax pairs and pairs whose two values always have the same sum can be written")
        v = values(tree)[leaf]
        s = v[:, 0] + v[:, 1]
        if np.ptp(s) > PAIR_TOLERANCE * max(1.0, float(np.abs(v).max())):
            j = int(leaf[np.argmax(np.abs(s - s[0]))])
            raise ModelError(f"{src}: tree {i}, node {j}: the leaf's two values {values(tree)[j].tolist()} do not "
                             f"sum to {float(s[0])!r} like the tree's first leaf: the two outputs are independent, "
                             "and conifer's models have one score for two classes (n_classes 2)")
    return (lambda i, tree: iter([(0, values(tree)[:, 1])])), np.array([base[1]])


# -- trees -----------------------------------------------------------------------------------------------------
def _check_zero_missing(tree: Tree, inner: list[int], split: str, where: str) -> None:
    """Refuse a zero-as-missing node (of the ``inner`` nodes) where values with ``|x| <= ZERO_BAND`` take another
    branch by comparison."""
    if tree.zero_missing is None:
        return
    for j in inner:
        if not tree.zero_missing[j]:
            continue
        t, left = float(tree.threshold[j]), bool(tree.default_left[j])
        band_left = t >= ZERO_BAND if split == "<=" else t > ZERO_BAND
        band_right = t < -ZERO_BAND if split == "<=" else t <= -ZERO_BAND
        if (left and band_left) or (not left and band_right):
            continue
        compared = "left" if band_left else "right" if band_right else "partly left, partly right"
        raise ModelError(
            f"{where}, node {j}: zero-as-missing split (LightGBM zero_as_missing) on feature {int(tree.feature[j])}: "
            f"values with |x| <= {ZERO_BAND:g} (zero included) go {'left' if left else 'right'} as missing, but "
            f"'x {split} {t!r}' sends them {compared}; conifer compares every value with the threshold and has no "
            "missing values, so this forest cannot be written for conifer (retrain with zero_as_missing=false)")


def _taken(tree: Tree, j: int) -> int:
    """Node ``j``, or, while its threshold is infinite (every finite value goes one way), the child taken."""
    while tree.feature[j] >= 0 and np.isinf(tree.threshold[j]):
        j = int(tree.left[j]) if tree.threshold[j] > 0 else int(tree.right[j])
    return j


def _preorder(tree: Tree) -> list[tuple[int, int, int, int]]:
    """The nodes conifer gets, depth-first from the root, parents before children: ``(source node, depth, left,
    right)`` (source indices of the children, -1 at leaves); infinite-threshold nodes give way to the child every
    finite value takes."""
    out, stack = [], [(_taken(tree, 0), 0)]
    while stack:
        j, d = stack.pop()
        if tree.feature[j] >= 0:
            lc, rc = _taken(tree, int(tree.left[j])), _taken(tree, int(tree.right[j]))
            out.append((j, d, lc, rc))
            stack.append((rc, d + 1))
            stack.append((lc, d + 1))
        else:
            out.append((j, d, -1, -1))
    return out


def _conifer_tree(tree: Tree, order: list[tuple[int, int, int, int]], value: np.ndarray, n_weights: int,
                  where: str) -> dict:
    """One conifer tree: ``order`` from :func:`_preorder`, ``value`` the per-node values, ``n_weights`` the length
    of the one-hot ``weight`` lists (0: left out)."""
    index = {j: k for k, (j, _, _, _) in enumerate(order)}
    feature, threshold, val, left, right, weight = [], [], [], [], [], []
    for j, _, lc, rc in order:
        w = [0] * n_weights
        if lc >= 0:
            f = int(tree.feature[j])
            if n_weights:
                w[f] = 1
            feature.append(f)
            threshold.append(float(tree.threshold[j]))
            val.append(0.0)
            left.append(index[lc])
            right.append(index[rc])
        else:
            v = float(value[j])
            if not np.isfinite(v):  # e.g. two huge leaf values of a pair subtracted
                raise ModelError(f"{where}, node {j}: the leaf value {v!r} is not a finite number")
            feature.append(LEAF_FEATURE)
            threshold.append(LEAF_THRESHOLD)
            val.append(v)
            left.append(-1)
            right.append(-1)
        weight.append(w)
    return {"feature": feature, "threshold": threshold, "value": val, "children_left": left,
            "children_right": right, "weight": weight}


def _zero_tree(n_weights: int) -> dict:
    return {"feature": [LEAF_FEATURE], "threshold": [LEAF_THRESHOLD], "value": [0.0], "children_left": [-1],
            "children_right": [-1], "weight": [[0] * n_weights]}
