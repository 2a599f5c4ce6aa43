"""The generated C++ (compiled behind predict, and the saved header on its own) against the NumPy evaluator and
the libraries that trained the models."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import ml4ep.bdt as mb
from ml4ep.bdt import ModelError


def data(n=1500, f=8, seed=0, nan=0.1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    X[rng.random(X.shape) < nan] = np.nan
    x0, x1 = np.nan_to_num(X[:, 0]), np.nan_to_num(X[:, 1])
    return X, (x0 + 0.5 * x1 > 0).astype(float), np.digitize(x0 + x1, [-0.7, 0.7]), x0 * 2 + np.sin(x1)


@pytest.mark.parametrize("objective", ["binary:logistic", "multi:softprob", "multi:softmax", "reg:squarederror"])
def test_xgboost_compiled(objective):
    xgb = pytest.importorskip("xgboost")
    X, yb, yc, yr = data()
    label = yc if objective.startswith("multi") else yb if objective.startswith("binary") else yr
    params = {"objective": objective, "max_depth": 5, "nthread": 1}
    if objective.startswith("multi"):
        params["num_class"] = 3
    booster = xgb.train(params, xgb.DMatrix(X, label=label), 40)
    forest = mb.from_xgboost(booster)
    fast = forest.compile()
    ref = booster.predict(xgb.DMatrix(X))
    for rows in (X, X[:1], X[:3], X[:17]):  # the single-row path, short and full blocks
        got = fast.predict(rows)
        assert got.shape == ref[: len(rows)].shape
        np.testing.assert_allclose(got, ref[: len(rows)], rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast.predict(X), forest.predict(X), rtol=0, atol=1e-12)


def test_lightgbm_zero_as_missing_and_deep_trees():
    lgb = pytest.importorskip("lightgbm")
    X, yb, _, yr = data(n=3000, nan=0.05)
    X[::7, 2] = 0.0
    booster = lgb.train({"objective": "binary", "zero_as_missing": True, "num_leaves": 200, "max_depth": -1,
                         "min_data_in_leaf": 2, "verbose": -1, "num_threads": 1},
                        lgb.Dataset(X, label=yb), 20)
    forest = mb.from_lightgbm(booster)
    assert max(t.depth for t in forest.trees) > 12  # the unpadded walk
    np.testing.assert_allclose(forest.compile().predict(X), booster.predict(X), rtol=0, atol=1e-9)


def test_sklearn_random_forest_vector_leaves_and_threads():
    ensemble = pytest.importorskip("sklearn.ensemble")
    X, _, yc, _ = data(nan=0.0)
    rf = ensemble.RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0).fit(X, yc)
    forest = mb.from_sklearn(rf)
    big = np.tile(X, (3, 1))
    np.testing.assert_allclose(forest.compile().predict(X), rf.predict_proba(X), rtol=0, atol=1e-9)
    np.testing.assert_allclose(forest.compile(threads=2).predict(big), rf.predict_proba(big), rtol=0, atol=1e-9)


def test_saved_header_compiles_alone_and_agrees(tmp_path):
    xgb = pytest.importorskip("xgboost")
    X, yb, _, _ = data()
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 1},
                        xgb.DMatrix(X, label=yb), 20)
    forest = mb.from_xgboost(booster)
    out = forest.save(tmp_path / "cpp", name="higgs_bdt")
    row = np.full((1, X.shape[1]), 0.5, np.float32)
    # any x86-64 (the walks), and this machine's instruction set (the ranked kernel where it has AVX-512 VBMI)
    for flags in (["-O2"], ["-O3", "-march=native"]):
        exe = tmp_path / "example"
        subprocess.run(["g++", "-std=c++17", *flags, "-Wall", "-Wextra", "-Werror", "-pthread",
                        str(out / "example.cpp"), "-o", str(exe)], check=True, capture_output=True, text=True)
        printed = float(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()[0])
        assert abs(printed - float(booster.predict(xgb.DMatrix(row))[0])) < 1e-6


def test_compiled_errors_and_cli(tmp_path, capsys):
    xgb = pytest.importorskip("xgboost")
    X, yb, _, _ = data()
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                        xgb.DMatrix(X, label=yb), 5)
    fast = mb.from_xgboost(booster).compile()
    with pytest.raises(ModelError, match="takes 8 features"):
        fast.predict(X[:, :7])
    booster.save_model(tmp_path / "m.json")
    from ml4ep.cli import main

    assert main(["bdt", "compile", str(tmp_path / "m.json"), "-o", str(tmp_path / "out"), "--name", "m"]) == 0
    assert (tmp_path / "out" / "m.hpp").exists() and (tmp_path / "out" / "example.cpp").exists()
    assert "m.json: wrote" in capsys.readouterr().out
    assert main(["bdt", "compile", str(tmp_path / "nope.json"), "-o", str(tmp_path / "o2")]) == 2
    assert "nope.json: file not found" in capsys.readouterr().err
