"""The generated C++ kernels on random forests built directly in the IR: the ranked kernel (trees of depth <= 6;
vpermb with AVX-512 VBMI, byte shuffles with AVX-512BW, AVX2 or SSSE3), the padded and child-index walks (every
machine), against the NumPy evaluator and each other, with inputs equal to the thresholds, NaN and infinities;
the ranked kernel of every ISA level against the walk bit for bit and against XGBoost's and LightGBM's predict."""

from __future__ import annotations

import os
import platform
import subprocess

import numpy as np
import pytest

from ml4ep.bdt import Forest, Tree, codegen
from ml4ep.errors import UnsupportedCPUError
from ml4ep._native import build

NODE_LIMIT = 4000


def random_tree(rng, depth, n_features, grid, n_values=1, leaf_p=0.25):
    """A tree of at most ``depth`` levels (irregular: leaves at every level), thresholds drawn from ``grid``."""
    feature, threshold, left, right, dleft, value = [], [], [], [], [], []

    def node(level):
        i = len(feature)
        feature.append(-1)
        threshold.append(0.0)
        left.append(-1)
        right.append(-1)
        dleft.append(False)
        value.append(rng.normal(size=n_values))
        if level < depth and (level == 0 or rng.random() > leaf_p):
            f = int(rng.integers(n_features))
            feature[i], threshold[i], dleft[i] = f, float(rng.choice(grid[f])), bool(rng.random() < 0.5)
            left[i] = node(level + 1)
            right[i] = node(level + 1)
        return i

    node(0)
    v = np.array(value)
    return Tree(np.array(feature, np.int32), np.array(threshold), np.array(left, np.int32),
                np.array(right, np.int32), np.array(dleft), v[:, 0] if n_values == 1 else v)


def random_forest(seed, depth, n_trees=40, n_features=7, split="<", outputs=1, dtype=np.float32,
                  float32_sums=False, cuts_per_feature=30, vector_leaves=False):
    rng = np.random.default_rng(seed)
    grid = [np.unique(rng.normal(size=cuts_per_feature).astype(dtype)) for _ in range(n_features)]
    width = outputs if vector_leaves else 1
    trees = []
    for _ in range(n_trees):
        t = random_tree(rng, depth, n_features, grid, width)
        t.threshold = t.threshold.astype(dtype)
        trees.append(t)
    tree_output = [-1] * n_trees if vector_leaves else [i % outputs for i in range(n_trees)]
    forest = Forest(trees, tree_output, n_features, outputs, base_score=rng.normal(size=outputs),
                    transform="softmax" if outputs > 1 else "sigmoid", split=split,
                    meta={"accumulate": "float32"} if float32_sums else {}, source=f"random forest {seed}")
    return forest, grid


def probe_rows(grid, n_features, rng, n=600, dtype=np.float32):
    """Rows whose values sit exactly on thresholds, between them, at +-inf, -0.0 and NaN."""
    X = rng.normal(size=(n, n_features)) * 1.5
    for f in range(n_features):
        on = rng.random(n) < 0.4
        X[on, f] = rng.choice(grid[f], size=on.sum())
    special = rng.random(X.shape)
    X[special < 0.08] = np.nan
    X[(special >= 0.08) & (special < 0.10)] = np.inf
    X[(special >= 0.10) & (special < 0.12)] = -np.inf
    X[(special >= 0.12) & (special < 0.13)] = -0.0
    X[:3] = np.nan  # whole rows missing
    return X.astype(dtype)


def kernel_of(forest):
    tb = codegen.tables(forest)
    return "ranked" if codegen.ranked_tables(forest, tb) is not None else \
        "padded" if tb["padded"] else "child-index"


@pytest.mark.parametrize("depth,split,outputs,dtype,float32_sums", [
    (6, "<", 1, np.float32, True),     # XGBoost-like binary
    (6, "<", 3, np.float32, True),     # XGBoost-like multiclass
    (5, "<=", 1, np.float64, False),   # LightGBM-like: double thresholds, x <= t
    (3, "<=", 3, np.float64, False),
    (1, "<", 1, np.float32, False),    # stumps: one level
    (2, "<", 2, np.float32, True),
    (4, "<=", 1, np.float32, False),
])
def test_ranked_kernel_equals_numpy(depth, split, outputs, dtype, float32_sums):
    forest, grid = random_forest(depth * 10 + outputs, depth, split=split, outputs=outputs, dtype=dtype,
                                 float32_sums=float32_sums)
    assert kernel_of(forest) == "ranked"
    rng = np.random.default_rng(depth)
    X = probe_rows(grid, forest.n_features, rng, dtype=dtype)
    ref = forest.predict(X)
    fast = forest.compile()
    # blocks of 4 rows, the rows after them, and single rows
    for lo, hi in ((0, len(X)), (0, 1), (3, 4), (0, 7)):
        np.testing.assert_allclose(fast.predict(X[lo:hi]), ref[lo:hi], rtol=0, atol=1e-12)


def test_ranked_kernel_many_cuts_vector_leaves_and_portable_build():
    # 600 distinct thresholds for a feature: three table slots; leaves with a value per class (random forests)
    forest, grid = random_forest(5, 6, n_trees=60, n_features=3, outputs=3, dtype=np.float64,
                                 cuts_per_feature=600, vector_leaves=True)
    tb = codegen.tables(forest)
    rk = codegen.ranked_tables(forest, tb)
    assert rk is not None and len(rk["source"]) > forest.n_features
    X = probe_rows(grid, forest.n_features, np.random.default_rng(1), dtype=np.float64)
    ref = forest.predict(X)
    np.testing.assert_allclose(forest.compile().predict(X), ref, rtol=0, atol=1e-12)
    # the same forest built for any x86-64 of the last decade (x86-64-v2: the SSSE3 byte shuffles) agrees
    np.testing.assert_allclose(forest.compile(portable=True).predict(X), ref, rtol=0, atol=1e-12)


def test_forests_outside_the_ranked_kernel_use_the_walks():
    deep, grid = random_forest(7, 7, n_trees=12)
    assert kernel_of(deep) == "padded"
    wide, wgrid = random_forest(8, 3, n_trees=150, n_features=140, cuts_per_feature=5)
    assert len({int(f) for t in wide.trees for f in t.feature if f >= 0}) > codegen.RANK_SLOTS
    assert kernel_of(wide) == "padded"
    nan_thr, _ = random_forest(9, 4, n_trees=5)
    nan_thr.trees[0].threshold[0] = np.nan  # compares false: never left; the ranked kernel leaves it alone
    assert kernel_of(nan_thr) == "padded"
    zero, _ = random_forest(10, 4, n_trees=5)
    zero.trees[1].zero_missing = np.ones(len(zero.trees[1].feature), bool)
    zero.trees[1].__post_init__()
    assert kernel_of(zero) == "padded"
    for forest, g in ((deep, grid), (wide, wgrid)):
        X = probe_rows(g, forest.n_features, np.random.default_rng(3))
        np.testing.assert_allclose(forest.compile().predict(X), forest.predict(X), rtol=0, atol=1e-12)
    X = probe_rows(_grid_of(nan_thr), nan_thr.n_features, np.random.default_rng(4))
    np.testing.assert_allclose(nan_thr.compile().predict(X), nan_thr.predict(X), rtol=0, atol=1e-12)


def _grid_of(forest):
    return [np.unique(np.concatenate([t.threshold[t.feature == f] for t in forest.trees] + [[0.0]]))
            for f in range(forest.n_features)]


def test_compiled_predict_takes_float32_float64_and_other_layouts():
    forest, grid = random_forest(11, 6, n_trees=30, dtype=np.float32, float32_sums=True)
    X = probe_rows(grid, forest.n_features, np.random.default_rng(5), dtype=np.float32)
    fast = forest.compile()
    ref = forest.predict(X)
    for x in (X, X.astype(np.float64), np.asfortranarray(X), X[::-1][::-1], X.astype(np.float16).astype(np.float32)):
        np.testing.assert_allclose(fast.predict(x), forest.predict(x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.predict(X[0]), ref[:1], rtol=0, atol=1e-12)  # one row as a 1-D array
    ints = np.arange(5 * forest.n_features).reshape(5, -1) % 3 - 1
    np.testing.assert_allclose(fast.predict(ints), forest.predict(ints.astype(np.float64)), rtol=0, atol=1e-12)
    assert fast.predict(X[:0]).shape == (0,)


# ---- the ranked kernel per ISA level: bit for bit the walk's sums --------------------------------------------

# every level is named explicitly (march=): checked once, in the run for the default target, not again when the
# kernel tests are repeated under ML4EP_MARCH=x86-64-v3 / x86-64-v2 (`make test`)
x86_only = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64")
    or (os.environ.get("ML4EP_MARCH") or "native") != "native",
    reason="x86-64 ISA levels named explicitly: checked on x86-64 in the run with the default ML4EP_MARCH")
WALK = "x86-64"  # baseline x86-64 (SSE2): no byte shuffle, the padded walk


def unrunnable(march) -> str:
    """Why this CPU cannot run code built for ``march`` ("" when it can)."""
    try:
        build.check_cpu(build.target(march).features, f"code for -march={march}")
    except UnsupportedCPUError as exc:
        return str(exc)
    return ""


# (seed, depth, split, outputs, threshold dtype, float32 sums, features, cuts per feature, vector leaves): compiled
# for the walk and for the levels listed
ISA_CASES = {
    "xgb-like-binary-d6": ((31, 6, "<", 1, np.float32, True, 7, 30, False), ("x86-64-v3", "x86-64-v4", "native")),
    # AVX-512BW without VBMI as GCC targets Skylake-X (its -march also implies PKU and SGX, which not every
    # AVX-512 CPU has: then skipped, with the reason)
    "xgb-like-binary-d6-skx": ((31, 6, "<", 1, np.float32, True, 7, 30, False), ("skylake-avx512",)),
    "xgb-like-3class-d6": ((32, 6, "<", 3, np.float32, True, 7, 30, False), ("x86-64-v3",)),
    "lgb-like-double-d5": ((33, 5, "<=", 1, np.float64, False, 7, 30, False), ("x86-64-v2", "x86-64-v3")),
    # 600 thresholds a feature: 3 table slots each; a value per class in every leaf
    "vector-leaves-d3": ((34, 3, "<=", 3, np.float64, False, 4, 600, True), ("x86-64-v3",)),
    "stumps-d1": ((35, 1, "<", 1, np.float32, False, 7, 30, False), ("x86-64-v3",)),
    "d2-2class": ((36, 2, "<", 2, np.float32, True, 7, 30, False), ("x86-64-v3",)),
    # 100 features: 7 chunks of 16 table entries (the XOR-telescoped lookups)
    "wide-d4": ((37, 4, "<", 1, np.float32, True, 100, 8, False), ("x86-64-v2", "x86-64-v3")),
}


@x86_only
@pytest.mark.parametrize("case", list(ISA_CASES))
def test_ranked_kernel_per_isa_equals_the_walk_bit_for_bit(case):
    (seed, depth, split, outputs, dtype, f32, nf, cuts, vec), levels = ISA_CASES[case]
    skipped = [why for why in map(unrunnable, levels) if why]
    if len(skipped) == len(levels):
        pytest.skip("; ".join(skipped))
    forest, grid = random_forest(seed, depth, n_trees=45, n_features=nf, split=split, outputs=outputs, dtype=dtype,
                                 float32_sums=f32, cuts_per_feature=cuts, vector_leaves=vec)
    assert kernel_of(forest) == "ranked"
    dl = np.concatenate([t.default_left[t.feature >= 0] for t in forest.trees])
    assert dl.any() and not dl.all()  # missing values go left at some nodes, right at others
    X = probe_rows(grid, nf, np.random.default_rng(seed), n=400, dtype=dtype)
    other = X.astype(np.float64 if dtype == np.float32 else np.float32)  # the other input type
    walk = forest.compile(march=WALK)
    ref, ref_other = walk.predict(X), walk.predict(other)
    np.testing.assert_allclose(ref, forest.predict(X), rtol=0, atol=1e-12)
    for march in (m for m in levels if not unrunnable(m)):
        fast = forest.compile(march=march)
        np.testing.assert_array_equal(fast.predict(X), ref, err_msg=f"{case} -march={march}")
        np.testing.assert_array_equal(fast.predict(other), ref_other, err_msg=f"{case} -march={march}")
        # one row at a time (the single-row path), and rows after the blocks of 4
        for i in (0, 5, 397, 398, 399):
            np.testing.assert_array_equal(fast.predict(X[i:i + 1]), ref[i:i + 1], err_msg=f"{case} {march} row {i}")
        np.testing.assert_array_equal(fast.predict(X[:7]), ref[:7])


@x86_only
def test_ranked_kernel_per_isa_equals_xgboost_and_lightgbm():
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    import ml4ep.bdt as mb

    rng = np.random.default_rng(3)
    X = rng.normal(size=(1500, 12)).astype(np.float32)
    X[rng.random(X.shape) < 0.15] = np.nan  # missing values: learned default directions, both ways
    s = np.nan_to_num(X[:, 0]) + 0.7 * np.nan_to_num(X[:, 1]) - 0.5 * np.nan_to_num(X[:, 2]) ** 2
    models = []
    for params in ({"objective": "binary:logistic"}, {"objective": "multi:softprob", "num_class": 3}):
        y = np.digitize(s, [-0.7, 0.4]) if params["objective"].startswith("multi") else (s > 0)
        booster = xgb.train({**params, "max_depth": 6, "eta": 0.3, "nthread": 1}, xgb.DMatrix(X, label=y), 25)
        models.append((mb.from_xgboost(booster), booster.predict(xgb.DMatrix(X)), "xgboost"))
    lbooster = lgb.train({"objective": "binary", "num_leaves": 40, "max_depth": 6, "verbose": -1, "num_threads": 1},
                         lgb.Dataset(X.astype(np.float64), (s > 0).astype(int)), 25)
    models.append((mb.from_lightgbm(lbooster), lbooster.predict(X.astype(np.float64), num_threads=1), "lightgbm"))
    for forest, ref, source in models:
        assert kernel_of(forest) == "ranked", source
        dl = np.concatenate([t.default_left[t.feature >= 0] for t in forest.trees])
        assert dl.any() and not dl.all(), source
        fast = forest.compile(march="x86-64-v3")  # the AVX2 shuffles (bit for bit the walk: the test above)
        got = fast.predict(X)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6, err_msg=source)
        np.testing.assert_allclose(got, forest.predict(X), rtol=0, atol=1e-12, err_msg=source)
        np.testing.assert_array_equal(fast.predict(X[7:8]), got[7:8])


MAIN = r"""
#include "ranked.hpp"
#include "walked.hpp"
#include <cstdio>
int main() {
  float xf[3 * 7] = {};
  double xd[3 * 7] = {}, y[3 * 3];
  ranked::predict(xf, 3, y);
  ranked::predict(xd, 1, y);
  walked::predict(xf, 3, y);
  walked::predict(xd, 1, y, 2);
  std::printf("%g\n", y[0]);
  return 0;
}
"""


@x86_only
def test_headers_compile_warning_free_for_every_isa_level(tmp_path):
    ranked, _ = random_forest(41, 6, n_trees=24, outputs=3, float32_sums=True)
    walked, _ = random_forest(42, 8, n_trees=16)  # deeper than the ranked kernel: the padded walk
    ranked.save(tmp_path, name="ranked")
    walked.save(tmp_path, name="walked")
    (tmp_path / "main.cpp").write_text(MAIN)
    # each kernel: the walk, SSSE3, AVX2, AVX-512BW shuffles, and this CPU's (vpermb where it has VBMI)
    for march in ("x86-64", "x86-64-v2", "x86-64-v3", "skylake-avx512", "native"):
        cmd = [build.compiler(), "-std=c++17", "-O2", f"-march={march}", "-Wall", "-Wextra", "-Werror", "-c",
               str(tmp_path / "main.cpp"), "-o", str(tmp_path / "main.o")]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0 and not res.stderr, f"{' '.join(cmd)}\n{res.stderr[-3000:]}"
