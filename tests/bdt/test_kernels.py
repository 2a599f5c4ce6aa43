"""The generated C++ kernels on random forests built directly in the IR: the ranked kernel (AVX-512, trees of
depth <= 6), the padded and child-index walks (every machine), against the NumPy evaluator, with inputs equal
to the thresholds, NaN and infinities."""

from __future__ import annotations

import numpy as np
import pytest

from ml4ep.bdt import Forest, Tree, codegen

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
    # the same forest built for any x86-64 (no AVX-512: the padded walk) agrees
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
