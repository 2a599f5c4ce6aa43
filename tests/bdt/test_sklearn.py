"""scikit-learn tree ensembles -> forest IR: predictions equal predict_proba / predict."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

import sklearn.ensemble as ens  # noqa: E402
import sklearn.tree as skt  # noqa: E402

from ml4ep.bdt import ModelError  # noqa: E402
from ml4ep.bdt.formats.sklearn import from_sklearn  # noqa: E402


def _data(seed=1, n=400):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    Xnan = X.copy()
    Xnan[rng.random(X.shape) < 0.1] = np.nan
    s = np.nan_to_num(Xnan[:, 0]) + 0.5 * np.nan_to_num(Xnan[:, 1])
    targets = {"binary": (s > 0).astype(int), "multiclass": np.digitize(s, [-0.5, 0.5]),
               "regression": 3 * s + 0.1 * rng.normal(size=n), "positive": np.abs(3 * s) + 0.1}
    return X, Xnan, targets


E = dict(random_state=0)
CASES = [
    ("gb_binary", lambda: ens.GradientBoostingClassifier(n_estimators=10, **E), "binary"),
    ("gb_binary_exponential", lambda: ens.GradientBoostingClassifier(n_estimators=10, loss="exponential", **E),
     "binary"),
    ("gb_multiclass", lambda: ens.GradientBoostingClassifier(n_estimators=8, **E), "multiclass"),
    ("gb_regression", lambda: ens.GradientBoostingRegressor(n_estimators=10, learning_rate=0.3, **E), "regression"),
    ("gb_huber", lambda: ens.GradientBoostingRegressor(n_estimators=10, loss="huber", **E), "regression"),
    ("gb_zero_init", lambda: ens.GradientBoostingRegressor(n_estimators=10, init="zero", **E), "regression"),
    ("hgb_binary", lambda: ens.HistGradientBoostingClassifier(max_iter=10, **E), "binary"),
    ("hgb_multiclass", lambda: ens.HistGradientBoostingClassifier(max_iter=8, **E), "multiclass"),
    ("hgb_regression", lambda: ens.HistGradientBoostingRegressor(max_iter=10, **E), "regression"),
    ("hgb_poisson", lambda: ens.HistGradientBoostingRegressor(max_iter=10, loss="poisson", **E), "positive"),
    ("rf_binary", lambda: ens.RandomForestClassifier(n_estimators=8, max_depth=6, **E), "binary"),
    ("rf_multiclass", lambda: ens.RandomForestClassifier(n_estimators=8, max_depth=6, **E), "multiclass"),
    ("rf_regression", lambda: ens.RandomForestRegressor(n_estimators=8, max_depth=6, **E), "regression"),
    ("et_binary", lambda: ens.ExtraTreesClassifier(n_estimators=8, max_depth=6, **E), "binary"),
    ("et_multiclass", lambda: ens.ExtraTreesClassifier(n_estimators=8, max_depth=6, **E), "multiclass"),
    ("et_regression", lambda: ens.ExtraTreesRegressor(n_estimators=8, max_depth=6, **E), "regression"),
    ("dt_binary", lambda: skt.DecisionTreeClassifier(**E), "binary"),
    ("dt_multiclass", lambda: skt.DecisionTreeClassifier(max_depth=5, **E), "multiclass"),
    ("dt_regression", lambda: skt.DecisionTreeRegressor(**E), "regression"),
]


def _fit(make, X, Xnan, y):
    """Fit on data with NaNs where the estimator accepts them, else on finite data."""
    est = make()
    try:
        return est.fit(Xnan, y), Xnan
    except ValueError:
        return make().fit(X, y), X


def _edge_rows(forest, X):
    """Rows that sit on, just below and just above the thresholds (float32 neighbours): the rounding cases."""
    thr = np.concatenate([t.threshold[t.feature >= 0].astype(np.float32) for t in forest.trees])
    thr = thr[np.isfinite(thr)][:200]
    vals = np.concatenate([thr, np.nextafter(thr, np.float32(-np.inf)), np.nextafter(thr, np.float32(np.inf))])
    rows = np.repeat(np.nan_to_num(X[:1]), len(vals) * X.shape[1], axis=0)
    for j in range(X.shape[1]):
        rows[j * len(vals):(j + 1) * len(vals), j] = vals
    return rows.astype(np.float64)


@pytest.mark.parametrize("name,make,target", CASES, ids=[c[0] for c in CASES])
def test_matches_sklearn(name, make, target):
    X, Xnan, targets = _data()
    y = targets[target]
    est, Xfit = _fit(make, X, Xnan, y)
    forest = from_sklearn(est)
    classifier = hasattr(est, "predict_proba")
    ref_fn = est.predict_proba if classifier else est.predict
    for Xe in (Xfit, _edge_rows(forest, Xfit)):
        ref = ref_fn(Xe)
        got = forest.predict(Xe)
        assert got.shape == ref.shape
        assert np.max(np.abs(got - ref)) <= 1e-6
    if classifier:
        assert got.shape[1] == len(est.classes_)
    assert forest.split == "<=" and forest.n_features == 4


def test_nan_is_exercised():
    """Trees fit on NaNs route them by missing_go_to_left (sklearn >= 1.3 for trees; HGB always)."""
    X, Xnan, targets = _data()
    for make in (lambda: ens.HistGradientBoostingRegressor(max_iter=10), lambda: skt.DecisionTreeRegressor()):
        try:
            est = make().fit(Xnan, targets["regression"])
        except ValueError:  # an older scikit-learn without NaN support in trees
            continue
        forest = from_sklearn(est)
        assert np.max(np.abs(forest.predict(Xnan) - est.predict(Xnan))) <= 1e-6
        for t in forest.trees:
            t.default_left = ~t.default_left & (t.feature >= 0)
        assert np.max(np.abs(forest.predict(Xnan) - est.predict(Xnan))) > 1e-6


def test_multioutput_regression_forest():
    X, _, targets = _data()
    Y = np.column_stack([targets["regression"], -targets["regression"]])
    est = ens.RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0).fit(X, Y)
    got = from_sklearn(est).predict(X)
    assert got.shape == (len(X), 2) and np.max(np.abs(got - est.predict(X))) <= 1e-6


def test_errors():
    X, _, targets = _data()
    with pytest.raises(ModelError, match="not fitted"):
        from_sklearn(ens.RandomForestClassifier())
    with pytest.raises(ModelError, match="not a supported estimator"):
        from_sklearn(type("Thing", (), {"n_features_in_": 3})())
    cat = np.column_stack([np.random.default_rng(0).integers(0, 5, len(X)), X[:, 1]])
    est = ens.HistGradientBoostingRegressor(max_iter=5, categorical_features=[0]).fit(cat, targets["regression"])
    with pytest.raises(ModelError, match="categorical"):
        from_sklearn(est)
    Y = np.column_stack([targets["binary"], targets["binary"]])
    with pytest.raises(ModelError, match="multi-output"):
        from_sklearn(skt.DecisionTreeClassifier(max_depth=3).fit(X, Y))
    est = ens.GradientBoostingRegressor(n_estimators=3, init=skt.DecisionTreeRegressor(max_depth=2))
    with pytest.raises(ModelError, match="init estimator"):
        from_sklearn(est.fit(X, targets["regression"]))
