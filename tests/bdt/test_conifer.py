"""ml4ep.bdt's conifer JSON (``forest.to_conifer``) and fixed-point forests (``forest.compile(precision=...)``) against
the independent oracle: conifer's own compiled ``cpp`` backend, reading our JSON.

conifer compiles one pybind11 module per precision (~15 s each); the module reads the model JSON at run time
(``BDT(path)``), so each precision is compiled once (through conifer's ``compile()``) and its ``BDT`` class is reused
for every model here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import ml4ep.bdt as mb
from ml4ep._native import fixed as fx
from ml4ep.bdt import Forest, ModelError, Tree
from ml4ep.errors import InputError

N_ROWS, N_FEATURES = 300, 6
PRECISION = "ap_fixed<18,8>"
EXOTIC = ["ap_fixed<12,1,AP_RND_CONV,AP_SAT>",  # 1.0 saturates: the one-hot product and saturating sums
          "ap_fixed<10,3,AP_RND,AP_WRAP>"]  # rounding of inputs, thresholds and leaves


def _data(seed=0, n=N_ROWS):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(float), np.digitize(X[:, 0] + X[:, 2], [-0.7, 0.7])


# -- conifer's cpp backend ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def conifer_cpp(tmp_path_factory):
    """``run(json_path, precision, X)``: conifer's cpp ``decision_function`` of the model in ``json_path``."""
    conifer = pytest.importorskip("conifer", reason="conifer is the oracle of these tests")
    pytest.importorskip("conifer.backends.cpp", reason="conifer's cpp backend")
    for pkg in ("hls4ml", "nlohmann_json", "pybind11"):
        if importlib.util.find_spec(pkg) is None:
            pytest.skip(f"{pkg} is not installed: conifer's cpp backend needs its headers")
    hls4ml_dir = Path(importlib.util.find_spec("hls4ml").origin).parent
    json_dir = Path(importlib.util.find_spec("nlohmann_json").origin).parent / "include"
    mp = pytest.MonkeyPatch()
    mp.setenv("XILINX_AP_INCLUDE", str(hls4ml_dir / "templates" / "vivado" / "ap_types"))  # conifer reads this
    mp.setenv("CPLUS_INCLUDE_PATH", os.pathsep.join(filter(None, [str(json_dir), os.environ.get(
        "CPLUS_INCLUDE_PATH")])))  # nlohmann/json.hpp, which conifer looks for inside its own package only
    root = tmp_path_factory.mktemp("conifer")
    compiled: dict[str, type] = {}

    def run(path, precision: str, X) -> np.ndarray:
        if precision not in compiled:
            cfg = conifer.backends.cpp.auto_config()
            cfg.update(Precision=precision, OutputDir=str(root / f"prj{len(compiled)}"), ProjectName="prj")
            model = conifer.model.load_model(str(path), new_config=cfg)
            model.compile()
            compiled[precision] = type(model.bridge)
        bdt = compiled[precision](str(path))
        X = np.asarray(X, dtype=np.float64)
        return np.array([bdt.decision_function(row) for row in X], dtype=np.float64)

    yield run
    mp.undo()


def _python_conifer(path, tmp_path):
    """conifer's Python model of our JSON (its loader's checks; its NumPy ``decision_function``)."""
    conifer = pytest.importorskip("conifer")
    return conifer.model.load_model(str(path), new_config={"backend": "python", "output_dir": str(tmp_path),
                                                            "project_name": "py"})


# -- models ------------------------------------------------------------------------------------------------------
def _xgb_binary():
    xgb = pytest.importorskip("xgboost")
    X, yb, _ = _data()
    b = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgb.DMatrix(X, label=yb), 15)
    return mb.from_xgboost(b), lambda Z: b.predict(xgb.DMatrix(Z), output_margin=True)


def _xgb_multi():
    xgb = pytest.importorskip("xgboost")
    X, _, yc = _data()
    b = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1},
                  xgb.DMatrix(X, label=yc), 6)
    return mb.from_xgboost(b), lambda Z: b.predict(xgb.DMatrix(Z), output_margin=True)


def _xgb_large():
    """A regression whose scores (and base score) lie beyond ap_fixed<18,8>'s [-128, 128): the sums wrap."""
    xgb = pytest.importorskip("xgboost")
    X, _, _ = _data()
    y = 700.0 + 500.0 * X[:, 0] + 300.0 * X[:, 1]
    b = xgb.train({"objective": "reg:squarederror", "max_depth": 3, "nthread": 1, "eta": 0.5},
                  xgb.DMatrix(X, label=y), 12)
    return mb.from_xgboost(b), lambda Z: b.predict(xgb.DMatrix(Z), output_margin=True)


def _lightgbm():
    lgb = pytest.importorskip("lightgbm")
    X, yb, _ = _data()
    b = lgb.train({"objective": "binary", "num_leaves": 8, "max_depth": 3, "verbose": -1, "num_threads": 1},
                  lgb.Dataset(X, label=yb), 15)
    return mb.from_lightgbm(b), lambda Z: b.predict(Z, raw_score=True)


def _lightgbm_deep():
    """Trees deeper than 12 (the fixed-point code's walk with child indices) on a skewed target: leaf values far
    beyond ap_fixed<18,8>'s range."""
    lgb = pytest.importorskip("lightgbm")
    X, _, _ = _data()
    b = lgb.train({"objective": "regression", "num_leaves": 60, "max_depth": -1, "min_data_in_leaf": 1,
                   "min_data_in_bin": 1, "min_sum_hessian_in_leaf": 0, "verbose": -1, "num_threads": 1},
                  lgb.Dataset(X, label=np.exp(8.0 * X[:, 0])), 3)
    forest = mb.from_lightgbm(b)
    assert max(t.depth for t in forest.trees) > 12
    return forest, lambda Z: b.predict(Z, raw_score=True)


def _sk_gradient_boosting():
    ens = pytest.importorskip("sklearn.ensemble")
    X, yb, _ = _data()
    est = ens.GradientBoostingClassifier(n_estimators=15, max_depth=3, random_state=0).fit(X, yb)
    return mb.from_sklearn(est), est.decision_function  # conifer's one score: the raw score of class 1


def _sk_random_forest():
    ens = pytest.importorskip("sklearn.ensemble")
    X, _, yc = _data()
    est = ens.RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X, yc)
    return mb.from_sklearn(est), est.predict_proba  # vector leaves, split per class; the mean folded in


def _sk_random_forest_binary():
    ens = pytest.importorskip("sklearn.ensemble")
    X, yb, _ = _data()
    est = ens.RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(X, yb)
    return mb.from_sklearn(est), lambda Z: est.predict_proba(Z)[:, 1]  # one score: class 1's probability


MODELS = {"xgb_binary": _xgb_binary, "xgb_multi": _xgb_multi, "xgb_large": _xgb_large, "lightgbm": _lightgbm,
          "lightgbm_deep": _lightgbm_deep,
          "sk_gradient_boosting": _sk_gradient_boosting, "sk_random_forest": _sk_random_forest,
          "sk_random_forest_binary": _sk_random_forest_binary}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """``model(name)``: ``(forest, the source library's raw score, path of our conifer JSON)``, made once."""
    root = tmp_path_factory.mktemp("models")
    made: dict = {}

    def get(name):
        if name not in made:
            forest, raw = MODELS[name]()
            path = root / f"{name}.json"
            forest.to_conifer(path)
            made[name] = forest, raw, path
        return made[name]

    return get


# -- (a) float: our JSON in conifer's cpp backend equals the forest's margin --------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_conifer_float_equals_margin(name, model, conifer_cpp, tmp_path):
    forest, raw, path = model(name)
    X, _, _ = _data(seed=1)
    got = conifer_cpp(path, "float", X)
    ref = np.asarray(raw(X), dtype=np.float64).reshape(len(X), -1)
    assert got.shape == ref.shape
    # conifer's float backend adds float32 leaf values in float32, one rounding per addition, each at most half a
    # float32 ulp of a partial sum, which is bounded by |init| + the sum of the trees' largest |leaf|: that is the
    # tolerance (the leaf values' own rounding to float32 is within it too)
    tol = _float32_bound(forest.to_conifer())
    if name.startswith("xgb"):
        # float32 inputs, float32 thresholds and leaves, float32 sums from the base score in tree order: conifer's
        # float arithmetic is the arithmetic forest.margin follows for XGBoost, so equal bit for bit
        np.testing.assert_array_equal(got, forest.margin(X))
    # XGBoost's own predictor adds the same float32 numbers in another order; the others add float64 leaf values in
    # float64 (LightGBM's float64 thresholds are rounded to float32 by conifer: these random float32 inputs do not
    # fall between a threshold and its rounding)
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol)
    # conifer's Python model of the same JSON (float64 sums): read by its loader, the same scores
    py = np.asarray(_python_conifer(path, tmp_path).decision_function(X.astype(np.float64))).reshape(got.shape)
    np.testing.assert_allclose(py, ref, rtol=0, atol=tol)


def _float32_bound(conifer_model: dict) -> float:
    """A bound on the float32 rounding of conifer's sums: (additions + 1) x float32 epsilon x the largest partial
    sum."""
    largest = max(abs(conifer_model["init_predict"][c]) + sum(max(abs(v) for v in ts[c]["value"])
                                                                for ts in conifer_model["trees"])
                  for c in range(len(conifer_model["init_predict"])))
    return (conifer_model["n_trees"] + 2) * float(np.finfo(np.float32).eps) * largest


# -- (b) fixed point: forest.compile(precision=...) equals conifer's cpp backend bit for bit ------------------------
def _probe_rows(conifer_model: dict, ft: fx.FixedType, seed: int) -> np.ndarray:
    """Rows that put every feature on a quantised threshold of that feature (or one step beside it), random rows,
    rows that overflow the type, and NaN / infinities."""
    rng = np.random.default_rng(seed)
    per_feature = [[] for _ in range(conifer_model["n_features"])]
    for trees in conifer_model["trees"]:
        for t in trees:
            for f, thr in zip(t["feature"], t["threshold"]):
                if f >= 0:
                    per_feature[f].append(thr)
    step = 2.0 ** -ft.frac
    on = np.zeros((300, len(per_feature)))
    for f, thrs in enumerate(per_feature):
        q = rng.permutation(ft.quantize(np.asarray(thrs or [0.0])))
        on[:200, f] = np.resize(q, 200)  # every threshold (up to 200 per feature) exactly
        on[200:, f] = rng.choice(q, size=100) + step * rng.choice([-1, 1], size=100)  # one step beside
    big = rng.normal(size=(40, len(per_feature))) * 3 * max(abs(ft.min), ft.max)
    specials = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0])
    odd = np.stack([np.full(len(per_feature), v) for v in specials[:4]] + [np.resize(specials, len(per_feature))])
    X, _, _ = _data(seed=seed, n=100)
    return np.concatenate([on, X.astype(np.float64), big, odd])


def _check_fixed(forest, path, precision, conifer_cpp, seed=2):
    qf = forest.compile(precision=precision, name="qf")
    X = _probe_rows(qf.conifer, qf.precision, seed)
    ref = conifer_cpp(path, precision, X)
    got = qf.decision_function(X)
    assert got.shape == ref.shape
    bad = np.flatnonzero((got != ref).any(axis=1))
    assert not len(bad), f"{len(bad)} rows differ, first row {bad[0]}: {X[bad[0]]} -> {got[bad[0]]} vs {ref[bad[0]]}"
    return qf, X, got


@pytest.mark.parametrize("name", list(MODELS))
def test_fixed_point_bit_exact(name, model, conifer_cpp):
    forest, _, path = model(name)
    qf, X, got = _check_fixed(forest, path, PRECISION, conifer_cpp)
    # the threshold rows do hit the thresholds: every node's quantised threshold is some row's value
    nodes = [(f, thr) for ts in qf.conifer["trees"] for t in ts for f, thr in zip(t["feature"], t["threshold"])
             if f >= 0]
    assert all((X[:200, f] == qf.precision.quantize(np.array([thr]))[0]).any() for f, thr in nodes)
    data = slice(300, 400)  # the random rows
    if name == "xgb_large":  # the sums did wrap around: the margin lies beyond the type's range
        margin = forest.margin(X[data])
        assert (np.abs(margin) > qf.precision.max).any()
        assert np.abs(got[data] - margin).max() > 100
    # single rows and float32 rows give the same
    np.testing.assert_array_equal(qf.decision_function(X[0]), got[0])
    rows = X[data].astype(np.float32)
    np.testing.assert_array_equal(qf.decision_function(rows), qf.decision_function(rows.astype(np.float64)))


@pytest.mark.parametrize("precision", EXOTIC)
@pytest.mark.parametrize("name", ["xgb_binary", "sk_random_forest"])
def test_fixed_point_other_modes(name, precision, model, conifer_cpp):
    forest, _, path = model(name)
    _check_fixed(forest, path, precision, conifer_cpp, seed=3)


def test_threads_and_saved_header(model, tmp_path):
    forest, _, _ = model("xgb_multi")
    qf = forest.compile(precision=PRECISION, name="qf_threads", threads=3)
    X = np.random.default_rng(4).normal(size=(5000, N_FEATURES))
    threaded = qf.decision_function(X)
    qf.threads = 1
    np.testing.assert_array_equal(threaded, qf.decision_function(X))
    out = qf.save(tmp_path / "saved")
    exe = tmp_path / "example"
    subprocess.run(["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", str(out / "example.cpp"),
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    printed = np.array([float(v) for v in subprocess.run([str(exe)], check=True, capture_output=True,
                                                         text=True).stdout.split()])
    np.testing.assert_allclose(printed, qf.decision_function(np.full(N_FEATURES, 0.5)), rtol=1e-8)  # "%.9g"


# -- (c) what conifer cannot take ------------------------------------------------------------------------------------
def test_precision_that_does_not_parse(model):
    forest, _, _ = model("xgb_binary")
    for bad in ("ap_fixed<18>", "float", "ap_fixed<18,8,AP_NOPE>"):
        with pytest.raises(InputError, match="^precision: .*" + re.escape(repr(bad))):
            forest.compile(precision=bad)


def test_lightgbm_zero_as_missing_is_refused():
    lgb = pytest.importorskip("lightgbm")
    X, yb, _ = _data()
    X[np.random.default_rng(5).random(X.shape) < 0.3] = 0.0
    b = lgb.train({"objective": "binary", "zero_as_missing": True, "num_leaves": 8, "max_depth": 3, "verbose": -1,
                   "num_threads": 1}, lgb.Dataset(X, label=yb), 5)
    forest = mb.from_lightgbm(b)
    pattern = r"lightgbm\.Booster: tree \d+, node \d+: zero-as-missing split .* feature \d+: values with \|x\| <= "
    with pytest.raises(ModelError, match=pattern + r".*conifer compares every value"):
        forest.to_conifer()
    with pytest.raises(ModelError, match=pattern):
        forest.compile(precision=PRECISION)


def _stump(threshold, default_left, zero_missing=False, values=(1.0, 2.0)):
    return Tree(feature=np.array([0, -1, -1], np.int32), threshold=np.array([threshold, 0, 0], np.float64),
                left=np.array([1, 0, 0], np.int32), right=np.array([2, 0, 0], np.int32),
                default_left=np.array([default_left, False, False]), value=np.array([0.0, *values]),
                zero_missing=np.array([zero_missing, False, False]))


def _forest(trees, **kw):
    args = dict(tree_output=np.zeros(len(trees)), n_features=2, n_outputs=1, base_score=np.zeros(1),
                transform="identity", split="<=", source="hand-made")
    args.update(kw)
    return Forest(trees=trees, **args)


def test_zero_as_missing_refused_only_where_it_matters(tmp_path):
    # 0 <= 0.5 goes left by comparison, and left as missing: no finite input changes its path
    ok = _forest([_stump(0.5, True, zero_missing=True), _stump(-0.5, False, zero_missing=True)])
    ok.to_conifer(tmp_path / "ok.json")
    for thr, left in ((0.5, False), (-0.5, True), (0.0, True)):
        with pytest.raises(ModelError, match=r"hand-made: tree 1, node 0: zero-as-missing .* go (left|right) as "
                                             r"missing, but 'x <= .*' sends them"):
            _forest([_stump(0.5, True), _stump(thr, left, zero_missing=True)]).to_conifer()


def test_independent_two_outputs_refused():
    ens = pytest.importorskip("sklearn.ensemble")
    X, _, _ = _data()
    est = ens.RandomForestRegressor(n_estimators=3, max_depth=3, random_state=0).fit(X, X[:, :2] * [1.0, -3.0])
    with pytest.raises(ModelError, match=r"sklearn\.RandomForestRegressor: tree 0, node \d+: the leaf's two values "
                                         r".* conifer's models have one score for two classes"):
        mb.from_sklearn(est).to_conifer()
    scalar = _forest([_stump(0.5, True), _stump(0.5, True)], tree_output=[0, 1], n_outputs=2, base_score=[0, 0])
    with pytest.raises(ModelError, match=r"hand-made: tree 0 adds to output 0 only: this forest has two independent"):
        scalar.to_conifer()


def test_infinite_thresholds_and_exact_text(tmp_path):
    """A node with an infinite threshold becomes the child every finite value takes (JSON has no infinity);
    thresholds are written as the exact doubles."""
    inf = Tree(feature=np.array([1, 0, -1, -1, -1], np.int32), threshold=np.array([np.inf, 0.1, 0, 0, 0]),
               left=np.array([1, 3, 0, 0, 0], np.int32), right=np.array([2, 4, 0, 0, 0], np.int32),
               default_left=np.zeros(5, bool), value=np.array([0, 0, 9.0, 1.0, 2.0]))
    thr = np.float32(0.1)
    forest = _forest([inf, _stump(float(np.nextafter(thr, np.float32(1))), False)], base_score=[0.25])
    d = forest.to_conifer(tmp_path / "m.json")
    assert d["trees"][0][0]["feature"] == [0, -2, -2] and d["trees"][0][0]["value"] == [0.0, 1.0, 2.0]
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["trees"][1][0]["threshold"][0] == float(np.nextafter(thr, np.float32(1)))
    X = np.array([[0.1, 5.0], [0.10000001, -1e30], [-3.0, 0.0]])
    py = _python_conifer(tmp_path / "m.json", tmp_path).decision_function(X)
    np.testing.assert_array_equal(py, forest.margin(X)[:, 0])


# -- (d) the command line ----------------------------------------------------------------------------------------------
def test_cli_writes_json_conifer_loads(tmp_path, capsys, conifer_cpp):
    xgb = pytest.importorskip("xgboost")
    from ml4ep.cli import main

    X, yb, _ = _data()
    b = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgb.DMatrix(X, label=yb), 5)
    b.save_model(tmp_path / "model.json")
    assert main(["bdt", "conifer", str(tmp_path / "model.json"), "-o", str(tmp_path / "bdt.json")]) == 0
    assert "conifer JSON: 5 trees x 1 score(s), 6 features" in capsys.readouterr().out
    forest = mb.load(tmp_path / "model.json")
    np.testing.assert_array_equal(conifer_cpp(tmp_path / "bdt.json", "float", X), forest.margin(X))
    assert main(["bdt", "conifer", str(tmp_path / "model.json"), "-o", str(tmp_path / "b2.json"),
                 "--precision", "ap_fixed<8"]) == 2
    assert "cannot read 'ap_fixed<8'" in capsys.readouterr().err
    assert not (tmp_path / "b2.json").exists()
