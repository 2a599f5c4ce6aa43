"""XGBoost models: JSON and UBJSON files (``save_model("m.json" | "m.ubj")``) and in-memory Boosters.

Split convention ``<`` on float32 values and thresholds (as XGBoost compares); NaN follows each node's
learned ``default_left``. ``base_score`` is a number or, since XGBoost 3.1, an array string with one value per
class; it is stored in output space and mapped to margin space as XGBoost's objective does.
"""

from __future__ import annotations

import json
import os

import numpy as np

from . import read_model_file
from ..forest import MAX_FEATURES, Forest, ModelError, Tree, check_structure
from . import ubjson

# objective -> (transform, base score to margin)
_OBJECTIVES = {
    "binary:logistic": ("sigmoid", "logit"),
    "reg:logistic": ("sigmoid", "logit"),
    "binary:logitraw": ("identity", "identity"),
    "reg:squarederror": ("identity", "identity"),
    "reg:squaredlogerror": ("identity", "identity"),
    "reg:pseudohubererror": ("identity", "identity"),
    "reg:absoluteerror": ("identity", "identity"),
    "reg:linear": ("identity", "identity"),
    "multi:softprob": ("softmax", "identity"),
    "multi:softmax": ("softmax", "identity"),
    "count:poisson": ("exp", "log"),
    "reg:gamma": ("exp", "log"),
    "reg:tweedie": ("exp", "log"),
}


def load(path: str | os.PathLike) -> Forest:
    """An XGBoost model file: JSON, or UBJSON (``.ubj``)."""
    path, data = read_model_file(path)
    if data[:1] == b"{" and not path.endswith(".ubj"):
        try:
            model = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{path}: not a valid XGBoost JSON model ({exc})") from None
        except RecursionError:
            raise ModelError(f"{path}: not a valid XGBoost JSON model (nested too deep)") from None
    else:
        model = ubjson.loads(data, path)
    return from_dict(model, path)


def from_booster(booster) -> Forest:
    """An ``xgboost.Booster`` (or a scikit-learn ``XGBClassifier``/``XGBRegressor``) in memory."""
    if hasattr(booster, "get_booster"):
        booster = booster.get_booster()
    return from_dict(json.loads(booster.save_raw("json")), "xgboost.Booster")


def from_dict(model: dict, source: str) -> Forest:
    """An XGBoost model as the dict of its JSON (or UBJSON) document."""
    try:
        return _from_dict(model, source)
    except ModelError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, IndexError, OverflowError) as exc:
        raise ModelError(f"{source}: malformed XGBoost model ({type(exc).__name__}: {exc})") from None


def _from_dict(model: dict, source: str) -> Forest:
    try:
        learner = model["learner"]
        params = learner["learner_model_param"]
        objective = learner["objective"]["name"]
        booster = learner["gradient_booster"]
    except (KeyError, TypeError):
        raise ModelError(f"{source}: not an XGBoost model (no learner / objective / gradient_booster)") from None
    if booster.get("name") == "dart":
        booster = booster["gbtree"]
        try:
            weights = np.asarray(booster.get("weight_drop", []), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: dart weight_drop is not a list of numbers ({exc})") from None
    else:
        weights = None
    if booster.get("name") not in ("gbtree", None):
        raise ModelError(f"{source}: booster {booster.get('name')!r} is not a tree model (gbtree or dart)")
    if objective not in _OBJECTIVES:
        raise ModelError(f"{source}: objective {objective!r} is not supported "
                         f"(supported: {', '.join(sorted(_OBJECTIVES))})")
    transform, base_map = _OBJECTIVES[objective]
    try:
        n_features = int(params["num_feature"])
        n_class = int(params.get("num_class", 0) or 0)
        n_targets = int(params.get("num_target", 1) or 1)
        m = booster["model"]
        trees_json = m["trees"]
        tree_info = np.asarray(m.get("tree_info", []), dtype=np.int64).reshape(-1)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ModelError(f"{source}: malformed learner_model_param or model ({type(exc).__name__}: {exc})") from None
    if not isinstance(trees_json, list):
        raise ModelError(f"{source}: the model's trees are not a list")
    if not 0 <= n_features <= MAX_FEATURES:
        raise ModelError(f"{source}: num_feature={n_features} is not a feature count (0..{MAX_FEATURES})")
    if n_targets > 1:
        raise ModelError(f"{source}: multi-target models (num_target={n_targets}) are not supported")
    if n_class < 0 or (trees_json and n_class > len(trees_json)) or (not trees_json and n_class > 1 << 16):
        raise ModelError(f"{source}: num_class={n_class} is not a class count for a model of {len(trees_json)} trees")
    n_outputs = max(n_class, 1)
    if n_outputs > 1:
        if len(tree_info) != len(trees_json):
            raise ModelError(f"{source}: tree_info has {len(tree_info)} entries for {len(trees_json)} trees")
        bad = np.flatnonzero((tree_info < 0) | (tree_info >= n_outputs))
        if len(bad):
            raise ModelError(f"{source}: tree {int(bad[0])} adds to class {int(tree_info[bad[0]])}, "
                             f"the model has {n_outputs} classes (num_class)")
    base = _base_score(params.get("base_score", "0.5"), n_outputs, source)
    with np.errstate(divide="ignore", invalid="ignore"):
        if base_map == "logit":
            base = np.log(base / (1.0 - base))
        elif base_map == "log":
            base = np.log(base)
    if not np.isfinite(base).all():
        raise ModelError(f"{source}: base_score {params.get('base_score')!r} is outside the objective "
                         f"{objective!r}'s range (its margin {base.tolist()} is not finite)")
    trees = [_tree(t, i, n_features, source) for i, t in enumerate(trees_json)]
    if weights is not None and len(weights):
        if len(weights) != len(trees) or not np.isfinite(weights).all():
            raise ModelError(f"{source}: dart weight_drop has {len(weights)} weights for {len(trees)} trees "
                             "or a weight that is not a finite number")
        for t, w in zip(trees, weights):
            t.value = t.value * w
    names = learner.get("feature_names") or None
    return Forest(trees=trees, tree_output=tree_info if n_outputs > 1 else np.zeros(len(trees), np.int64),
                  n_features=n_features, n_outputs=n_outputs, base_score=base, transform=transform, split="<",
                  output_shape="matrix" if n_outputs > 1 else "vector",
                  feature_names=list(names) if names else None, source=source,
                  meta={"format": "xgboost", "objective": objective, "accumulate": "float32",
                        "argmax": objective == "multi:softmax"})


def _base_score(text, n: int, source: str) -> np.ndarray:
    try:
        if isinstance(text, str) and text.strip().startswith("["):
            vals = [float(v) for v in text.strip()[1:-1].split(",") if v.strip()]
        elif isinstance(text, (str, int, float)) and not isinstance(text, bool):
            vals = [float(text)]
        else:
            raise ValueError
    except (ValueError, OverflowError):
        raise ModelError(f"{source}: base_score {text!r} is not a number or an array of numbers") from None
    if not np.isfinite(vals).all():
        raise ModelError(f"{source}: base_score {text!r} is not finite")
    if len(vals) == 1:
        return np.full(n, vals[0])
    if len(vals) != n:
        raise ModelError(f"{source}: base_score has {len(vals)} values for {n} outputs")
    return np.asarray(vals, dtype=np.float64)


def _tree(t: dict, i: int, n_features: int, source: str) -> Tree:
    where = f"{source}: tree {i}"
    try:
        left = np.asarray(t["left_children"], dtype=np.int64).reshape(-1)
        right = np.asarray(t["right_children"], dtype=np.int64).reshape(-1)
        feature = np.asarray(t["split_indices"], dtype=np.int64).reshape(-1)
        cond = np.asarray(t["split_conditions"], dtype=np.float64).reshape(-1)
        default_left = np.asarray(t["default_left"], dtype=np.int64).reshape(-1)
        split_type = np.asarray(t.get("split_type", np.zeros(len(left))), dtype=np.int64).reshape(-1)
        leaf_size = int(t.get("tree_param", {}).get("size_leaf_vector", "1") or 1)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise ModelError(f"{where} is malformed ({type(exc).__name__}: {exc})") from None
    n = len(left)
    sizes = {"right_children": len(right), "split_indices": len(feature), "split_conditions": len(cond),
             "default_left": len(default_left), "split_type": len(split_type)}
    wrong = [f"{k} ({v})" for k, v in sizes.items() if v != n]
    if wrong or n == 0:
        raise ModelError(f"{where}: node arrays disagree with left_children ({n} nodes): {', '.join(wrong)}")
    if leaf_size > 1:
        raise ModelError(f"{where} has vector leaves (multi-target trees are not supported)")
    leaf = left == -1  # XGBoost's RegTree::Node::IsLeaf
    node = lambda j: f"node {j}"
    bad = np.flatnonzero(leaf != (right == -1))
    if len(bad):
        j = int(bad[0])
        raise ModelError(f"{where}, node {j}: left child {int(left[j])} and right child {int(right[j])} "
                         "(a leaf has both -1, an inner node neither)")
    # pruned nodes stay in XGBoost's arrays, unreachable (deleted): allowed as leaves, then dropped
    order, _ = check_structure(left, right, ~leaf, where, node, orphan_leaves=True)
    inner = ~leaf
    bad = np.flatnonzero(inner & ((feature < 0) | (feature >= n_features)))
    if len(bad):
        j = int(bad[0])
        raise ModelError(f"{where}, node {j}: split feature index {int(feature[j])} is outside the model's "
                         f"{n_features} features (num_feature)")
    cond32 = cond.astype(np.float32)
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(np.isnan(cond) | (leaf & ~np.isfinite(cond32)))
    if len(bad):
        j = int(bad[0])
        what = "leaf value" if leaf[j] else "split condition"
        raise ModelError(f"{where}, node {j}: the {what} {float(cond[j])} is not a finite number")
    if np.any(split_type[inner] != 0):
        raise ModelError(f"{where} has categorical splits, which ml4ep.bdt does not support; "
                         "retrain with numerical (one-hot) features")
    if len(order) < n:  # renumber the reachable nodes (root first) and drop the deleted ones
        new = np.full(n, -1, np.int64)
        new[order] = np.arange(len(order))
        left, right = np.where(leaf, -1, new[left]), np.where(leaf, -1, new[right])
        left, right, feature, cond32, default_left, leaf = (a[order] for a in (left, right, feature, cond32,
                                                                               default_left, leaf))
    return Tree(feature=np.where(leaf, -1, feature).astype(np.int32), threshold=cond32,
                left=np.where(leaf, 0, left).astype(np.int32), right=np.where(leaf, 0, right).astype(np.int32),
                default_left=default_left != 0, value=np.where(leaf, cond32.astype(np.float64), 0.0))
