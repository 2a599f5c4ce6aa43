"""XGBoost models (JSON and UBJSON files, Boosters in memory) against XGBoost's own predict."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ml4ep.bdt as mb
from ml4ep.bdt import ModelError

xgb = pytest.importorskip("xgboost")

OBJECTIVES = ["binary:logistic", "reg:logistic", "binary:logitraw", "reg:squarederror", "multi:softprob",
              "multi:softmax", "count:poisson", "reg:gamma"]


def data(n=3000, f=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    X[rng.random(X.shape) < 0.15] = np.nan  # missing values: each node's learned default direction
    x0, x1 = np.nan_to_num(X[:, 0]), np.nan_to_num(X[:, 1])
    return X, {
        "binary": ((x0 + 0.5 * x1 + 0.3 * rng.normal(size=n)) > 0).astype(np.float32),
        "multi": np.digitize(x0 + x1, [-0.7, 0.7]).astype(np.float32),
        "positive": np.exp(0.3 * x0) + 0.1 * rng.random(n),
        "real": x0 * 2 + np.sin(x1),
    }


def train(objective: str, rounds=30, depth=5):
    X, ys = data()
    label = ys["multi"] if objective.startswith("multi") else ys["binary"] if "logi" in objective else \
        ys["positive"] if objective in ("count:poisson", "reg:gamma") else ys["real"]
    params = {"objective": objective, "max_depth": depth, "eta": 0.3, "nthread": 1}
    if objective.startswith("multi"):
        params["num_class"] = 3
    return xgb.train(params, xgb.DMatrix(X, label=label), rounds), X


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("ext", ["json", "ubj"])
def test_file_predict_equals_xgboost(tmp_path, objective, ext):
    booster, X = train(objective)
    path = tmp_path / f"model.{ext}"
    booster.save_model(path)
    forest = mb.load(path)
    ref = booster.predict(xgb.DMatrix(X))
    got = forest.predict(X)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(forest.margin(X).reshape(ref.shape[0], -1),
                               booster.predict(xgb.DMatrix(X), output_margin=True).reshape(ref.shape[0], -1),
                               rtol=0, atol=1e-5)


def test_sklearn_api_and_booster_in_memory():
    X, ys = data()
    clf = xgb.XGBClassifier(n_estimators=40, max_depth=4, n_jobs=1).fit(X, ys["multi"])
    forest = mb.from_xgboost(clf)
    np.testing.assert_allclose(forest.predict(X), clf.predict_proba(X), rtol=0, atol=1e-6)
    assert forest.split == "<" and forest.n_outputs == 3


def test_base_score_given_as_a_number_and_as_an_array(tmp_path):
    booster, X = train("binary:logistic", rounds=5)
    model = json.loads(booster.save_raw("json"))
    ref = booster.predict(xgb.DMatrix(X))
    for text in ("0.3", "[3E-1]"):
        model["learner"]["learner_model_param"]["base_score"] = text
        path = tmp_path / "m.json"
        path.write_text(json.dumps(model))
        changed = xgb.Booster(model_file=str(path))
        np.testing.assert_allclose(mb.load(path).predict(X), changed.predict(xgb.DMatrix(X)), rtol=0, atol=1e-6)
        assert not np.allclose(changed.predict(xgb.DMatrix(X)), ref)


def test_feature_names_and_all_nan_rows(tmp_path):
    X, ys = data()
    names = [f"var{i}" for i in range(X.shape[1])]
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                        xgb.DMatrix(X, label=ys["binary"], feature_names=names), 10)
    booster.save_model(tmp_path / "m.json")
    forest = mb.load(tmp_path / "m.json")
    assert forest.feature_names == names
    nan_rows = np.full((4, X.shape[1]), np.nan, np.float32)
    np.testing.assert_allclose(forest.predict(nan_rows), booster.predict(xgb.DMatrix(nan_rows, feature_names=names)),
                               rtol=0, atol=1e-6)


def test_bad_inputs(tmp_path):
    booster, X = train("binary:logistic", rounds=3)
    booster.save_model(tmp_path / "m.json")
    booster.save_model(tmp_path / "m.ubj")
    forest = mb.load(tmp_path / "m.json")
    with pytest.raises(ModelError, match="takes 10 features, got 9"):
        forest.predict(X[:, :9])
    with pytest.raises(ModelError, match="file not found"):
        mb.load(tmp_path / "missing.json")
    data_ = (tmp_path / "m.ubj").read_bytes()
    (tmp_path / "cut.ubj").write_bytes(data_[: len(data_) // 2])
    with pytest.raises(ModelError, match="cut.ubj: not valid UBJSON.*truncated"):
        mb.load(tmp_path / "cut.ubj")
    text = (tmp_path / "m.json").read_text()
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    with pytest.raises(ModelError, match="cut.json: not a valid XGBoost JSON model"):
        mb.load(tmp_path / "cut.json")
    model = json.loads(text)
    model["learner"]["objective"]["name"] = "rank:pairwise"
    (tmp_path / "rank.json").write_text(json.dumps(model))
    with pytest.raises(ModelError, match="objective 'rank:pairwise' is not supported"):
        mb.load(tmp_path / "rank.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(ModelError, match="not an XGBoost model"):
        mb.load(tmp_path / "other.json")


def test_categorical_splits_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    X = np.c_[rng.integers(0, 4, 500), rng.normal(size=500)].astype(np.float32)
    dm = xgb.DMatrix(X, label=(X[:, 0] == 2).astype(float), feature_types=["c", "q"], enable_categorical=True)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1}, dm, 3)
    booster.save_model(tmp_path / "cat.json")
    with pytest.raises(ModelError, match="categorical splits"):
        mb.load(tmp_path / "cat.json")
