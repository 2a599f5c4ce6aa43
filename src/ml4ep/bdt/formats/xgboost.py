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
from ..forest import Forest, ModelError, Tree
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
    else:
        model = ubjson.loads(data, path)
    return from_dict(model, path)


def from_booster(booster) -> Forest:
    """An ``xgboost.Booster`` (or a scikit-learn ``XGBClassifier``/``XGBRegressor``) in memory."""
    if hasattr(booster, "get_booster"):
        booster = booster.get_booster()
    return from_dict(json.loads(booster.save_raw("json")), "xgboost.Booster")


def from_dict(model: dict, source: str) -> Forest:
    try:
        learner = model["learner"]
        params = learner["learner_model_param"]
        objective = learner["objective"]["name"]
        booster = learner["gradient_booster"]
    except (KeyError, TypeError):
        raise ModelError(f"{source}: not an XGBoost model (no learner / objective / gradient_booster)") from None
    if booster.get("name") == "dart":
        booster = booster["gbtree"]
        weights = np.asarray(booster.get("weight_drop", []), dtype=np.float64)
    else:
        weights = None
    if booster.get("name") not in ("gbtree", None):
        raise ModelError(f"{source}: booster {booster.get('name')!r} is not a tree model (gbtree or dart)")
    if objective not in _OBJECTIVES:
        raise ModelError(f"{source}: objective {objective!r} is not supported "
                         f"(supported: {', '.join(sorted(_OBJECTIVES))})")
    transform, base_map = _OBJECTIVES[objective]
    n_features = int(params["num_feature"])
    n_class = int(params.get("num_class", 0) or 0)
    n_targets = int(params.get("num_target", 1) or 1)
    if n_targets > 1:
        raise ModelError(f"{source}: multi-target models (num_target={n_targets}) are not supported")
    n_outputs = max(n_class, 1)
    base = _base_score(params.get("base_score", "0.5"), n_outputs, source)
    if base_map == "logit":
        base = np.log(base / (1.0 - base))
    elif base_map == "log":
        base = np.log(base)
    m = booster["model"]
    tree_info = np.asarray(m.get("tree_info", []), dtype=np.int64)
    trees = [_tree(t, i, source) for i, t in enumerate(m["trees"])]
    if weights is not None and len(weights):
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
        else:
            vals = [float(text)]
    except ValueError:
        raise ModelError(f"{source}: base_score {text!r} is not a number or an array of numbers") from None
    if len(vals) == 1:
        vals = vals * n
    if len(vals) != n:
        raise ModelError(f"{source}: base_score has {len(vals)} values for {n} outputs")
    return np.asarray(vals, dtype=np.float64)


def _tree(t: dict, i: int, source: str) -> Tree:
    try:
        left = np.asarray(t["left_children"], dtype=np.int64)
        right = np.asarray(t["right_children"], dtype=np.int64)
        feature = np.asarray(t["split_indices"], dtype=np.int64)
        cond = np.asarray(t["split_conditions"], dtype=np.float32)
        default_left = np.asarray(t["default_left"], dtype=bool)
        split_type = np.asarray(t.get("split_type", np.zeros(len(left))), dtype=np.int64)
        leaf_size = int(t.get("tree_param", {}).get("size_leaf_vector", "1") or 1)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{source}: tree {i} is malformed ({exc})") from None
    if leaf_size > 1:
        raise ModelError(f"{source}: tree {i} has vector leaves (multi-target trees are not supported)")
    leaf = left < 0
    if np.any(split_type[~leaf] != 0):
        raise ModelError(f"{source}: tree {i} has categorical splits, which ml4ep.bdt does not support; "
                         "retrain with numerical (one-hot) features")
    return Tree(feature=np.where(leaf, -1, feature).astype(np.int32), threshold=cond,
                left=np.where(leaf, 0, left).astype(np.int32), right=np.where(leaf, 0, right).astype(np.int32),
                default_left=default_left, value=np.where(leaf, cond.astype(np.float64), 0.0))
