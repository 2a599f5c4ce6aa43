"""LightGBM text models -> forest IR: predictions equal Booster.predict for every supported objective."""

from __future__ import annotations

import numpy as np
import pytest

lgb = pytest.importorskip("lightgbm")

from ml4ep.bdt import ModelError  # noqa: E402
from ml4ep.bdt.formats import lightgbm as lgbfmt  # noqa: E402


def _data(seed=0, n=600):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    X[rng.random(X.shape) < 0.15] = np.nan
    X[rng.random(X.shape) < 0.10] = 0.0
    s = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 4]) + 0.3 * np.nan_to_num(X[:, 1])
    Xtrain = X.copy()
    Xtrain[:, 4] = np.nan_to_num(Xtrain[:, 4], nan=1.0)  # no NaN seen in training: missing type None
    return Xtrain, X, s


def _train(params, y, Xtrain, rounds=12):
    return lgb.train({"verbose": -1, "num_leaves": 8, "min_data_in_leaf": 10, "num_threads": 1, **params},
                     lgb.Dataset(Xtrain, y), rounds)


CASES = {
    "binary": ({"objective": "binary"}, lambda s: (s > 0).astype(int)),
    "binary_sigmoid": ({"objective": "binary", "sigmoid": 0.7}, lambda s: (s > 0).astype(int)),
    "multiclass": ({"objective": "multiclass", "num_class": 3}, lambda s: np.digitize(s, [-0.5, 0.5])),
    "multiclassova": ({"objective": "multiclassova", "num_class": 3, "sigmoid": 1.3},
                      lambda s: np.digitize(s, [-0.5, 0.5])),
    "regression": ({"objective": "regression"}, lambda s: 2 * s),
    "regression_l1": ({"objective": "regression_l1"}, lambda s: 2 * s),
    "poisson": ({"objective": "poisson"}, lambda s: np.abs(s)),
    "xentropy": ({"objective": "cross_entropy"}, lambda s: 1 / (1 + np.exp(-s))),
    "zero_as_missing": ({"objective": "regression", "zero_as_missing": True}, lambda s: 2 * s),
    "no_missing": ({"objective": "regression", "use_missing": False}, lambda s: 2 * s),
    "random_forest": ({"objective": "binary", "boosting": "rf", "bagging_freq": 1, "bagging_fraction": 0.7},
                      lambda s: (s > 0).astype(int)),
    "rf_multiclass": ({"objective": "multiclass", "num_class": 3, "boosting": "rf", "bagging_freq": 1,
                       "bagging_fraction": 0.7}, lambda s: np.digitize(s, [-0.5, 0.5])),
    "single_leaf": ({"objective": "regression", "min_data_in_leaf": 10_000}, lambda s: 2 * s),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_booster_predict(case, tmp_path):
    params, target = CASES[case]
    Xtrain, X, s = _data()
    booster = _train(params, target(s), Xtrain)
    ref = booster.predict(X)
    path = tmp_path / "m.txt"
    booster.save_model(path)
    for forest in (lgbfmt.load(path), lgbfmt.from_booster(booster)):
        got = forest.predict(X)
        assert got.shape == ref.shape
        assert np.max(np.abs(got - ref)) <= 1e-6
        assert forest.split == "<=" and forest.n_features == 5
    if case == "single_leaf":
        assert all(len(t.feature) == 1 for t in forest.trees)


def test_missing_types_are_exercised():
    """Zero-as-missing needs the IR's zero_missing; missing type None sends NaN where 0.0 goes."""
    Xtrain, X, s = _data()
    booster = _train({"objective": "regression", "zero_as_missing": True}, 2 * s, Xtrain)
    forest = lgbfmt.from_booster(booster)
    assert any(t.zero_missing is not None for t in forest.trees)
    ref = booster.predict(X)
    for t in forest.trees:
        t.zero_missing = None
    assert np.max(np.abs(forest.predict(X) - ref)) > 1e-3
    booster = _train({"objective": "regression", "use_missing": False}, 2 * s, Xtrain)
    text = booster.model_to_string()
    assert "decision_type=" in text
    forest = lgbfmt.from_string(text, "m")
    assert np.max(np.abs(forest.predict(X) - booster.predict(X))) <= 1e-6


def test_sklearn_wrapper():
    Xtrain, X, s = _data()
    clf = lgb.LGBMClassifier(n_estimators=8, num_leaves=8, verbose=-1, n_jobs=1).fit(Xtrain, (s > 0).astype(int))
    forest = lgbfmt.from_booster(clf)
    assert np.max(np.abs(forest.predict(X) - clf.predict_proba(X)[:, 1])) <= 1e-6


def test_truncated_file(tmp_path):
    Xtrain, X, s = _data()
    text = _train({"objective": "binary"}, (s > 0).astype(int), Xtrain).model_to_string()
    for cut in (len(text) // 2, text.index("end of trees")):
        path = tmp_path / "cut.txt"
        path.write_text(text[:cut])
        with pytest.raises(ModelError, match="truncated"):
            lgbfmt.load(path)
    with pytest.raises(ModelError, match="not a LightGBM"):
        lgbfmt.from_string("hello\n", "x")
    with pytest.raises(ModelError, match="cannot read"):
        lgbfmt.load(tmp_path / "missing.txt")


def test_categorical_split_is_an_error():
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.integers(0, 6, 500), rng.normal(size=500)]).astype(float)
    y = np.isin(X[:, 0], [1, 3, 4]).astype(float) + 0.1 * X[:, 1]
    booster = lgb.train({"objective": "regression", "verbose": -1, "min_data_per_group": 5, "cat_smooth": 1,
                         "num_threads": 1}, lgb.Dataset(X, y, categorical_feature=[0]), 5)
    with pytest.raises(ModelError, match="categorical"):
        lgbfmt.from_booster(booster)


def test_unsupported_objective():
    Xtrain, X, s = _data()
    text = _train({"objective": "regression"}, 2 * s, Xtrain).model_to_string()
    with pytest.raises(ModelError, match="objective 'wobble'"):
        lgbfmt.from_string(text.replace("objective=regression", "objective=wobble"), "m")


def test_load_recognises_lightgbm_text(tmp_path):
    import lightgbm as lgb

    import ml4ep.bdt as mb

    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 4))
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1},
                        lgb.Dataset(X, label=(X[:, 0] > 0).astype(float)), 5)
    booster.save_model(str(tmp_path / "model.txt"))
    np.testing.assert_allclose(mb.load(tmp_path / "model.txt").predict(X), booster.predict(X), rtol=0, atol=1e-9)
    np.testing.assert_allclose(mb.from_lightgbm(booster).predict(X), booster.predict(X), rtol=0, atol=1e-9)
