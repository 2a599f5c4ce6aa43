"""LightGBM models: text files (``booster.save_model("m.txt")``) and in-memory Boosters, parsed here.

Numerical splits go left when ``x <= threshold`` (float64). Each node's ``decision_type`` holds three
fields: bit 0 categorical (not supported), bit 1 default-left, bits 2-3 the missing type. LightGBM's rule
(``Tree::NumericalDecision``): a NaN becomes 0.0 unless the missing type is NaN; then a NaN (type NaN) or a
zero, ``|x| <= 1e-35`` (type Zero), takes the default direction, and everything else compares with the
threshold. So, per node: type NaN -> NaN follows default-left; type None -> NaN goes where 0.0 would
(``0 <= threshold``); type Zero -> NaN and zeros follow default-left (the IR's ``zero_missing``).

Binary and one-vs-all objectives apply ``sigmoid(s * margin)`` with the model's ``sigmoid:s`` parameter;
``s`` is folded into the leaf values, so :meth:`Forest.margin` is LightGBM's raw score times ``s``.
"""

from __future__ import annotations

import os

import numpy as np

from . import read_model_file
from ..forest import MAX_FEATURES, Forest, ModelError, Tree, check_structure

_IDENTITY = {"regression", "regression_l2", "l2", "mean_squared_error", "mse", "l2_root", "root_mean_squared_error",
             "rmse", "regression_l1", "l1", "mean_absolute_error", "mae", "huber", "fair", "quantile", "mape",
             "mean_absolute_percentage_error", "lambdarank", "rank_xendcg", "xendcg", "xe_ndcg", "xe_ndcg_mart",
             "xendcg_mart", "custom", "none", "null", "na"}
_EXP = {"poisson", "gamma", "tweedie"}
_SIGMOID = {"binary", "cross_entropy", "xentropy", "multiclassova", "multiclass_ova", "ova", "ovr"}
_SOFTMAX = {"multiclass", "softmax"}

_CATEGORICAL, _DEFAULT_LEFT = 1, 2
_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2


def load(path: str | os.PathLike) -> Forest:
    """A LightGBM text model file."""
    path, data = read_model_file(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not a LightGBM text model (not UTF-8 text)") from None
    return from_string(text, path)


def from_booster(booster) -> Forest:
    """A ``lightgbm.Booster`` (or a scikit-learn ``LGBMClassifier``/``LGBMRegressor``) in memory."""
    if hasattr(booster, "booster_"):
        booster = booster.booster_
    return from_string(booster.model_to_string(), "lightgbm.Booster")


def from_string(text: str, source: str) -> Forest:
    """A LightGBM model in its text format."""
    head, sep, rest = text.partition("\nTree=")
    header = _fields(head)
    if header.get("__first__") != "tree" or "max_feature_idx" not in header:
        raise ModelError(f"{source}: not a LightGBM text model (no 'tree' header with max_feature_idx)")
    if "end of trees" not in rest and not (not sep and "end of trees" in head):
        raise ModelError(f"{source}: the model is truncated (no 'end of trees' line)")
    try:
        n_features = int(header["max_feature_idx"]) + 1
        n_class = int(header.get("num_class", "1"))
        per_iter = int(header.get("num_tree_per_iteration", str(n_class)))
    except ValueError as exc:
        raise ModelError(f"{source}: malformed header ({exc})") from None
    if not 0 <= n_features <= MAX_FEATURES:
        raise ModelError(f"{source}: max_feature_idx={n_features - 1} is not a feature index (-1..{MAX_FEATURES - 1})")
    objective, *obj_params = (header.get("objective") or "regression").split()
    opts = dict(p.split(":", 1) for p in obj_params if ":" in p)
    flags = {p for p in obj_params if ":" not in p}
    if "sqrt" in flags:
        raise ModelError(f"{source}: objective {objective!r} with 'sqrt' (reg_sqrt) is not supported")
    scale = 1.0
    if objective in _SIGMOID:
        transform = "sigmoid"
        if objective not in ("cross_entropy", "xentropy"):
            try:
                scale = float(opts.get("sigmoid", "1"))
            except ValueError:
                raise ModelError(f"{source}: objective sigmoid parameter {opts['sigmoid']!r} is not a number") from None
            if not (np.isfinite(scale) and scale > 0):  # LightGBM: "Sigmoid parameter ... should be greater than zero"
                raise ModelError(f"{source}: objective sigmoid parameter {opts['sigmoid']!r} is not a positive "
                                 "number (LightGBM refuses it too)")
    elif objective in _SOFTMAX:
        transform = "softmax"
    elif objective in _EXP:
        transform = "exp"
    elif objective in _IDENTITY:
        transform = "identity"
    else:
        raise ModelError(f"{source}: objective {objective!r} is not supported")
    blocks = ("Tree=" + rest).split("end of trees")[0].split("\nTree=") if sep else []
    # LightGBM writes num_tree_per_iteration = num_class (1 but for multiclass and custom multi-output objectives)
    if n_class < 1 or per_iter != n_class or (blocks and per_iter > len(blocks)) \
            or (not blocks and per_iter > 1 << 16):
        raise ModelError(f"{source}: num_class={n_class} and num_tree_per_iteration={per_iter} do not fit "
                         f"objective {objective!r} and {len(blocks)} trees")
    n_outputs = per_iter

    trees = [_tree(_fields(b), i, n_features, source) for i, b in enumerate(blocks)]
    sizes = header.get("tree_sizes")
    if sizes is not None and len(sizes.split()) != len(trees):
        raise ModelError(f"{source}: the model is truncated or corrupt ({len(trees)} trees, "
                         f"tree_sizes lists {len(sizes.split())})")
    if trees and len(trees) % n_outputs:
        raise ModelError(f"{source}: {len(trees)} trees is not a multiple of {n_outputs} trees per iteration")
    if "average_output" in header:  # random-forest mode: mean over iterations
        scale /= max(len(trees) // n_outputs, 1)
    if scale != 1.0:
        for t in trees:
            t.value = t.value * scale
    names = header.get("feature_names")
    names = names.split() if names else None
    return Forest(trees=trees, tree_output=np.arange(len(trees)) % n_outputs, n_features=n_features,
                  n_outputs=n_outputs, base_score=np.zeros(n_outputs), transform=transform, split="<=",
                  output_shape="matrix" if n_outputs > 1 else "vector",
                  feature_names=names if names and len(names) == n_features else None, source=source,
                  meta={"format": "lightgbm", "objective": objective, "sigmoid": scale if transform == "sigmoid"
                        else None, "average_output": "average_output" in header})


def _fields(block: str) -> dict:
    """``key=value`` lines of one section; the first line also under ``__first__``."""
    out: dict = {}
    for i, line in enumerate(block.splitlines()):
        line = line.strip()
        if i == 0:
            out["__first__"] = line
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
        elif line:
            out.setdefault(line, "")
    return out


def _array(f: dict, key: str, n: int, dtype, i: int, source: str) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=dtype)
    if key not in f:
        raise ModelError(f"{source}: tree {i} is truncated or malformed (no {key})")
    integer = np.issubdtype(dtype, np.integer)
    try:
        a = np.array([int(v) if integer else float(v) for v in f[key].split()], dtype=np.int64 if integer
                     else np.float64)
    except (ValueError, OverflowError) as exc:
        raise ModelError(f"{source}: tree {i} has a malformed {key} ({exc})") from None
    if len(a) != n:
        raise ModelError(f"{source}: tree {i} is truncated or malformed ({key} has {len(a)} values, expected {n})")
    return a.astype(dtype)


def _tree(f: dict, i: int, n_features: int, source: str) -> Tree:
    where = f"{source}: tree {i}"
    try:
        n_leaves = int(f["num_leaves"])
    except (KeyError, ValueError):
        raise ModelError(f"{where} is truncated or malformed (no num_leaves)") from None
    if n_leaves < 1:
        raise ModelError(f"{where} has {n_leaves} leaves")
    try:
        n_cat = int(f.get("num_cat", "0") or 0)
    except ValueError:
        raise ModelError(f"{where} has a malformed num_cat {f['num_cat']!r}") from None
    if n_cat > 0:
        raise ModelError(f"{where} has categorical splits, which ml4ep.bdt does not support; "
                         "retrain with numerical (one-hot) features")
    if f.get("is_linear", "0").strip() not in ("0", ""):
        raise ModelError(f"{where} is a linear tree (linear_tree=true), which ml4ep.bdt does not support")
    n_inner = n_leaves - 1
    leaf_value = _array(f, "leaf_value", n_leaves, np.float64, i, source)
    feature = _array(f, "split_feature", n_inner, np.int64, i, source)
    threshold = _array(f, "threshold", n_inner, np.float64, i, source)
    decision = _array(f, "decision_type", n_inner, np.int64, i, source)
    left = _array(f, "left_child", n_inner, np.int64, i, source)
    right = _array(f, "right_child", n_inner, np.int64, i, source)
    if np.any(decision & _CATEGORICAL):
        raise ModelError(f"{where} has categorical splits, which ml4ep.bdt does not support; "
                         "retrain with numerical (one-hot) features")
    n = n_inner + n_leaves
    name = lambda j: f"node {j}" if j < n_inner else f"leaf {j - n_inner}"
    bad = np.flatnonzero((left >= n_inner) | (left < -n_leaves) | (right >= n_inner) | (right < -n_leaves))
    if len(bad):
        j = int(bad[0])
        raise ModelError(f"{where}, node {j}: children {int(left[j])}, {int(right[j])} are not among its "
                         f"{n_inner} nodes (0..{n_inner - 1}) and {n_leaves} leaves (-1..{-n_leaves})")
    node = lambda c: np.where(c >= 0, c, n_inner + ~c)
    check_structure(np.concatenate([node(left), np.zeros(n_leaves, np.int64)]),
                    np.concatenate([node(right), np.zeros(n_leaves, np.int64)]),
                    np.arange(n) < n_inner, where, name)
    bad = np.flatnonzero((feature < 0) | (feature >= n_features))
    if len(bad):
        j = int(bad[0])
        raise ModelError(f"{where}, node {j}: split feature {int(feature[j])} is outside the model's {n_features} "
                         f"features (max_feature_idx={n_features - 1})")
    bad = np.flatnonzero(np.isnan(threshold))
    if len(bad):
        raise ModelError(f"{where}, node {int(bad[0])}: the threshold is NaN")
    bad = np.flatnonzero(~np.isfinite(leaf_value))
    if len(bad):
        j = int(bad[0])
        raise ModelError(f"{where}, leaf {j}: the leaf value {leaf_value[j]!r} is not a finite number")
    missing = (decision >> 2) & 3
    default_left = (decision & _DEFAULT_LEFT) != 0
    # missing type None: NaN is read as 0.0 and compared with the threshold
    default_left = np.where(missing == _MISSING_NONE, threshold >= 0.0, default_left)
    pad = np.zeros(n_leaves)
    return Tree(feature=np.concatenate([feature, -np.ones(n_leaves, np.int64)]).astype(np.int32),
                threshold=np.concatenate([threshold, pad]),
                left=np.concatenate([node(left), pad]).astype(np.int32),
                right=np.concatenate([node(right), pad]).astype(np.int32),
                default_left=np.concatenate([default_left, np.zeros(n_leaves, bool)]),
                value=np.concatenate([np.zeros(n_inner), leaf_value]),
                zero_missing=np.concatenate([missing == _MISSING_ZERO, np.zeros(n_leaves, bool)]) if n else None)
