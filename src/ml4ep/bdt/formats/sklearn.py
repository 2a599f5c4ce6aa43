"""scikit-learn tree ensembles in memory: gradient boosting, histogram gradient boosting, random forests,
extra trees and single decision trees (classifiers and regressors).

Split convention ``<=``. ``DecisionTree*``, ``RandomForest*``, ``ExtraTrees*`` and ``GradientBoosting*`` cast
their input to float32 and compare it with float64 thresholds; those thresholds are stored here rounded down
to float32, which gives the same comparisons on float32 input. ``HistGradientBoosting*`` compares float64 values
with float64 thresholds. NaN follows each node's ``missing_go_to_left``.

Classifiers reproduce ``predict_proba`` (binary: shape ``(n, 2)``), regressors ``predict``. A binary boosted
classifier's raw score ``r`` (sigmoid link) is expressed as two outputs ``(-r/2, r/2)`` under softmax, which
equals ``(1 - sigmoid(r), sigmoid(r))``: :meth:`Forest.margin` is then half the raw score, with either sign.
"""

from __future__ import annotations

import numpy as np

from ..forest import Forest, ModelError, Tree


def from_sklearn(estimator) -> Forest:
    """A fitted scikit-learn tree model (see the module docstring for the supported estimators)."""
    name = type(estimator).__name__
    if not hasattr(estimator, "n_features_in_"):
        raise ModelError(f"sklearn.{name}: the estimator is not fitted (or not a scikit-learn tree model)")
    try:  # these two read sklearn's private attributes, as converters do; a rename is reported, not a crash
        if name in ("GradientBoostingClassifier", "GradientBoostingRegressor"):
            return _gradient_boosting(estimator, name)
        if name in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"):
            return _hist_gradient_boosting(estimator, name)
    except AttributeError as exc:
        raise ModelError(f"sklearn.{name}: this scikit-learn version stores the model differently ({exc})") from None
    if name in ("RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor"):
        return _averaged(list(estimator.estimators_), estimator, name, average=True)
    if name in ("DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor"):
        return _averaged([estimator], estimator, name, average=False)
    raise ModelError(f"sklearn.{name}: not a supported estimator (GradientBoosting*, HistGradientBoosting*, "
                     "RandomForest*, ExtraTrees*, DecisionTree* classifiers and regressors)")


def _names(est) -> list[str] | None:
    names = getattr(est, "feature_names_in_", None)
    return [str(n) for n in names] if names is not None else None


def _float32_floor(t: np.ndarray) -> np.ndarray:
    """The largest float32 <= t: ``x32 <= floor32(t)`` exactly when ``x32 <= t``."""
    t32 = t.astype(np.float32)
    over = t32.astype(np.float64) > t
    t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
    return t32


def _tree(tree_, value: np.ndarray, float32: bool) -> Tree:
    """An sklearn ``tree_`` (``Tree`` object) with the given per-node values."""
    feature = np.asarray(tree_.feature, dtype=np.int64)
    leaf = tree_.children_left < 0
    thr = np.asarray(tree_.threshold, dtype=np.float64)
    thr = np.where(leaf, 0.0, thr)
    missing_left = getattr(tree_, "missing_go_to_left", None)
    if missing_left is None:  # before scikit-learn 1.3: NaN is not accepted at predict time
        missing_left = np.zeros(len(feature), bool)
    return Tree(feature=np.where(leaf, -1, feature).astype(np.int32),
                threshold=_float32_floor(thr) if float32 else thr,
                left=np.where(leaf, 0, tree_.children_left).astype(np.int32),
                right=np.where(leaf, 0, tree_.children_right).astype(np.int32),
                default_left=np.asarray(missing_left, dtype=bool) & ~leaf,
                value=np.where(leaf.reshape((-1,) + (1,) * (value.ndim - 1)), value, 0.0))


def _sigmoid_scale(link, name: str) -> float:
    """c such that the binary link's inverse is sigmoid(c * raw) (1 for log loss, 2 for exponential loss)."""
    r = np.array([0.5, 1.5])
    p = np.asarray(link.inverse(r), dtype=np.float64)
    c = np.log(p / (1 - p)) / r
    if not np.allclose(c[0], c[1], rtol=1e-9) or c[0] <= 0:
        raise ModelError(f"sklearn.{name}: binary link {type(link).__name__} is not a scaled sigmoid")
    return float(np.round(c[0], 9))


def _pair(tree: Tree, half: float) -> Tree:
    """A binary score tree as a two-output tree (-half*v, +half*v), for softmax."""
    tree.value = np.stack([-half * tree.value, half * tree.value], axis=1)
    return tree


def _link(est, name: str) -> str:
    link = type(est._loss.link).__name__
    if link == "IdentityLink":
        return "identity"
    if link == "LogLink":
        return "exp"
    raise ModelError(f"sklearn.{name}: loss {getattr(est, 'loss', '?')!r} (link {link}) is not supported")


def _gradient_boosting(est, name: str) -> Forest:
    stages = est.estimators_  # (n_stages, K) DecisionTreeRegressor
    n_stages, k = stages.shape
    lr = float(est.learning_rate)
    n_features = int(est.n_features_in_)
    if isinstance(est.init_, str) and est.init_ == "zero":
        base = np.zeros(k)
    elif type(est.init_).__name__ in ("DummyClassifier", "DummyRegressor"):
        base = np.asarray(est._raw_predict_init(np.zeros((1, n_features), dtype=np.float32)),
                          dtype=np.float64).reshape(k)
    else:
        raise ModelError(f"sklearn.{name}: init estimator {type(est.init_).__name__} depends on the input; "
                         "only the default prior (or init='zero') is supported")
    trees, outputs = [], []
    for i in range(n_stages):
        for j in range(k):
            t = stages[i, j].tree_
            trees.append(_tree(t, lr * t.value[:, 0, 0].astype(np.float64), float32=True))
            outputs.append(j)
    return _boosted(est, name, trees, outputs, k, base, n_features)


def _hist_tree(nodes, i: int, name: str) -> Tree:
    leaf = nodes["is_leaf"].astype(bool)
    if np.any(nodes["is_categorical"].astype(bool) & ~leaf):
        raise ModelError(f"sklearn.{name}: tree {i} has categorical splits, which ml4ep.bdt does not support; "
                         "retrain with numerical (one-hot) features")
    return Tree(feature=np.where(leaf, -1, nodes["feature_idx"]).astype(np.int32),
                threshold=np.where(leaf, 0.0, nodes["num_threshold"]).astype(np.float64),
                left=np.where(leaf, 0, nodes["left"]).astype(np.int32),
                right=np.where(leaf, 0, nodes["right"]).astype(np.int32),
                default_left=nodes["missing_go_to_left"].astype(bool) & ~leaf,
                value=np.where(leaf, nodes["value"], 0.0).astype(np.float64))


def _hist_gradient_boosting(est, name: str) -> Forest:
    predictors = est._predictors  # [iteration][class] TreePredictor
    n_features = int(est.n_features_in_)
    base = np.asarray(est._baseline_prediction, dtype=np.float64).ravel()
    k = len(base)
    trees, outputs = [], []
    for it in predictors:
        if len(it) != k:
            raise ModelError(f"sklearn.{name}: {len(it)} trees in an iteration for {k} baseline values")
        for j, p in enumerate(it):
            trees.append(_hist_tree(p.nodes, len(trees), name))
            outputs.append(j)
    return _boosted(est, name, trees, outputs, k, base, n_features)


def _boosted(est, name: str, trees: list, outputs: list, k: int, base: np.ndarray, n_features: int) -> Forest:
    """The forest of a (hist) gradient boosting model: a binary classifier becomes two softmax outputs
    (-r/2, r/2) so that predict gives predict_proba's (n, 2); the others keep one output per class or target."""
    classifier = name.endswith("Classifier")
    meta = {"format": "sklearn", "estimator": name, "loss": getattr(est, "loss", None)}
    if classifier and k == 1:  # binary
        half = _sigmoid_scale(est._loss.link, name) / 2
        trees = [_pair(t, half) for t in trees]
        return Forest(trees=trees, tree_output=-np.ones(len(trees)), n_features=n_features, n_outputs=2,
                      base_score=np.array([-half, half]) * base[0], transform="softmax", split="<=",
                      output_shape="matrix", feature_names=_names(est), source=f"sklearn.{name}",
                      meta={**meta, "margin": "half the raw score, as (-r/2, r/2)"})
    transform = "softmax" if classifier else _link(est, name)
    return Forest(trees=trees, tree_output=np.asarray(outputs, dtype=np.int64), n_features=n_features, n_outputs=k,
                  base_score=base, transform=transform, split="<=",
                  output_shape="matrix" if classifier else "vector", feature_names=_names(est),
                  source=f"sklearn.{name}", meta=meta)


def _averaged(estimators: list, est, name: str, average: bool) -> Forest:
    """Random forests / extra trees (mean of the trees) and single decision trees."""
    n_features = int(est.n_features_in_)
    n_out = int(getattr(est, "n_outputs_", 1))
    classifier = name.endswith("Classifier")
    if classifier and n_out > 1:
        raise ModelError(f"sklearn.{name}: multi-output classifiers ({n_out} outputs) are not supported")
    trees = []
    for e in estimators:
        t = e.tree_
        v = np.asarray(t.value, dtype=np.float64)  # (n_nodes, n_outputs, max_n_classes)
        if classifier:
            v = v[:, 0, :int(est.n_classes_)]
            s = v.sum(axis=1, keepdims=True)
            v = v / np.where(s == 0, 1.0, s)  # predict_proba normalises every leaf
        else:
            v = v[:, :, 0] if n_out > 1 else v[:, 0, 0]
        trees.append(_tree(t, v, float32=True))
    k = int(est.n_classes_) if classifier else n_out
    vector = trees[0].value.ndim == 2
    return Forest(trees=trees, tree_output=-np.ones(len(trees)) if vector else np.zeros(len(trees)),
                  n_features=n_features, n_outputs=k, base_score=np.zeros(k), transform="identity", split="<=",
                  average=average, output_shape="matrix" if vector else "vector", feature_names=_names(est),
                  source=f"sklearn.{name}", meta={"format": "sklearn", "estimator": name})
