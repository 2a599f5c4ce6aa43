"""Model files are untrusted: corrupt or hostile ones (shared children, cycles, feature indices beyond the input,
absurd counts, NaN numbers, deep nesting) get a ModelError naming the file, the tree and the node at fault, quickly,
never a hang, a raw traceback or a silently wrong answer. Valid models that exercise the same code paths (XGBoost's
pruned trees with deleted nodes, TMVA trees thousands of levels deep) still match their library's own predictions."""

from __future__ import annotations

import json
import re
import struct
import time

import numpy as np
import pytest

import ml4ep.bdt as mb
from ml4ep.bdt import Forest, ModelError, Tree
from ml4ep.bdt.formats import lightgbm as lgbfmt
from ml4ep.bdt.formats import tmva, ubjson
from ml4ep.bdt.formats import xgboost as xgbfmt


def refused(fn, *patterns, seconds=1.0):
    """``fn()`` raises a ModelError matching every pattern, within ``seconds``."""
    t = time.perf_counter()
    with pytest.raises(ModelError) as info:
        fn()
    took = time.perf_counter() - t
    for p in patterns:
        assert re.search(p, str(info.value)), f"{p!r} not in {str(info.value)!r}"
    assert took < seconds, f"took {took:.2f} s: {info.value}"
    return str(info.value)


# -- the forest IR: one structural check for every format ------------------------------------------------------
def _chain_dag(n):
    """n nodes, node k's left and right child both node k+1; the last is a leaf: 2**(n-1) root-leaf paths."""
    feature = np.r_[np.zeros(n - 1, np.int32), -1].astype(np.int32)
    nxt = np.r_[np.arange(1, n), 0].astype(np.int32)
    return Tree(feature, np.zeros(n), nxt, nxt.copy(), np.zeros(n, bool), np.r_[np.zeros(n - 1), 1.0])


def _forest(tree, n_features=1, **kw):
    return Forest([tree], [0], n_features, 1, [0.0], "identity", "<", source="hand.model", **kw)


def test_ir_refuses_a_dag_in_linear_time():
    for n in (26, 40, 2000):
        refused(lambda n=n: _forest(_chain_dag(n)), r"hand\.model: tree 0, node 1: is the child of more than one "
                r"node \(node 0, node 0\)")
        refused(lambda n=n: _chain_dag(n).depth, "node 1: is the child of more than one node")


def _tree(feature, left, right, value=None, threshold=None):
    n = len(feature)
    return Tree(np.array(feature, np.int32), np.zeros(n) if threshold is None else np.array(threshold, float),
                np.array(left, np.int32), np.array(right, np.int32), np.zeros(n, bool),
                np.arange(n, dtype=float) if value is None else np.array(value, float))


@pytest.mark.parametrize("tree, message", [
    (([0, 0, -1, -1, -1], [1, 3, 0, 0, 0], [2, 1, 0, 0, 0]), r"node 1: is the child of more than one"),
    (([0, 0, 0, -1, -1], [1, 3, 4, 0, 0], [2, 2, 1, 0, 0]), r"node [12]: is the child of more than one"),
    (([0, 0, -1, -1, -1], [1, 2, 0, 0, 0], [4, 0, 0, 0, 0]), r"node 1: points back to the root"),
    (([0, -1, -1, 0, 0], [1, 0, 0, 4, 3], [2, 0, 0, 3, 4]), r"node 3: is the child of more than one node \(node "
                                                             r"4, node 3\)"),  # a cycle 3 <-> 3, 4 off the root
    (([0, -1, -1, 0, 0], [1, 0, 0, 4, 3], [2, 0, 0, 4, 3]), r"node 3: is the child of more than one"),
    (([0, -1, -1, 0, 0], [1, 0, 0, 4, 3], [2, 0, 0, 0, 0]), r"node 3: points back to the root"),
    (([0, -1, -1, 0, 0, -1, -1], [1, 0, 0, 4, 3, 0, 0], [2, 0, 0, 5, 6, 0, 0]),
     r"node 3: is not reachable from the root \(4 such nodes"),  # a cycle 3 -> 4 -> 3 off the root
    (([0, -1, -1, 0, -1, -1], [1, 0, 0, 4, 0, 0], [2, 0, 0, 5, 0, 0]), r"node 3: is not reachable from the root"),
    (([0, -1, -1, -1], [1, 0, 0, 0], [2, 0, 0, 0]), r"node 3: is not reachable"),
    (([0, -1, -1], [1, 0, 0], [7, 0, 0]), r"node 0: right child 7 is not one of the tree's 3 nodes"),
    (([0, -1, -1], [-3, 0, 0], [2, 0, 0]), r"node 0: left child -3 is not one of"),
    (([0, 5, -1, -1, -1], [1, 3, 0, 0, 0], [2, 4, 0, 0, 0]), r"node 1: split feature index 5 is outside the "
                                                             r"model's 2 features"),
    (([0, -2, -1], [1, 0, 0], [2, 0, 0]), r"node 1: split feature index -2"),
])
def test_ir_refuses_what_is_not_a_tree(tree, message):
    refused(lambda: _forest(_tree(*tree), n_features=2), r"^hand\.model: tree 0, " + message)


def test_ir_refuses_nan_thresholds_and_leaf_values():
    ok = _tree([0, -1, -1], [1, 0, 0], [2, 0, 0], value=[np.nan, 1.0, 2.0], threshold=[np.inf, np.nan, 0])
    _forest(ok)  # inner nodes' values and leaves' thresholds are never read; an infinite threshold is a threshold
    refused(lambda: _forest(_tree([0, -1, -1], [1, 0, 0], [2, 0, 0], threshold=[np.nan, 0, 0])),
            "tree 0, node 0: the split threshold is NaN")
    for bad in (np.nan, np.inf, -np.inf):
        refused(lambda bad=bad: _forest(_tree([0, -1, -1], [1, 0, 0], [2, 0, 0], value=[0, 1.0, bad])),
                "tree 0, node 2: the leaf value .* is not a finite number")
    refused(lambda: Forest([ok], [0], 1, 1, [np.nan], "identity", "<", source="b"), "b: the base score")
    refused(lambda: Forest([ok], [3], 1, 1, [0.0], "identity", "<", source="b"), "b: tree 0: adds to output 3")
    refused(lambda: Forest([ok], [0], -1, 1, [0.0], "identity", "<"), "number of features -1")


def test_predict_refuses_too_few_columns():
    forest = _forest(_tree([1, -1, -1], [1, 0, 0], [2, 0, 0]), n_features=2)
    refused(lambda: forest.predict(np.zeros((3, 1))), r"hand\.model\) takes 2 features, got 1")
    refused(lambda: forest.predict(np.zeros((3, 3))), "takes 2 features, got 3")
    assert forest.predict(np.array([[0.0, -1.0], [0.0, 1.0]])).tolist() == [1.0, 2.0]


# -- XGBoost --------------------------------------------------------------------------------------------------
def _xgb_model(**params):
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=1500) > 0).astype(np.float32)
    rounds = params.pop("rounds", 4)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1, **params},
                        xgb.DMatrix(X, label=y), rounds)
    return booster, X, json.loads(booster.save_raw("json"))


def _write(tmp_path, model, name="m.json"):
    path = tmp_path / name
    path.write_text(json.dumps(model))
    return path


def _set_tree(model, i, left, right, feature=None, cond=None):
    t = model["learner"]["gradient_booster"]["model"]["trees"][i]
    n = len(left)
    t["left_children"], t["right_children"] = list(left), list(right)
    t["split_indices"] = list(feature) if feature is not None else [0] * n
    t["split_conditions"] = list(cond) if cond is not None else [0.25 * k for k in range(n)]
    t["default_left"] = [0] * n
    t["split_type"] = [0] * n
    for key in ("base_weights", "loss_changes", "sum_hessian"):
        t[key] = [0.0] * n
    t["parents"] = [2147483647] + [0] * (n - 1)
    t["tree_param"]["num_nodes"] = str(n)


@pytest.mark.parametrize("n", [26, 40])
def test_xgboost_dag_is_refused_quickly(tmp_path, n):
    _, _, model = _xgb_model()
    # node k's left and right child both point to node k+1: exponential for a walk over all paths
    _set_tree(model, 1, [*range(1, n), -1], [*range(1, n), -1])
    path = _write(tmp_path, model)
    refused(lambda: mb.load(path), re.escape(str(path)) + r": tree 1, node 1: is the child of more than one node")


@pytest.mark.parametrize("left, right, message", [
    ([1, 3, -1, -1, -1], [2, 1, -1, -1, -1], "node 1: is the child of more than one node"),
    ([1, -1, 0], [2, -1, 1], "node 2: points back to the root"),
    ([1, -1, 4, -1, 2], [2, -1, 3, -1, 3], r"node 2: is the child of more than one node \(node 4, node 0\)"),
    ([1, -1, -1, 4, 3], [2, -1, -1, 4, 3], r"node 3: is the child of more than one node \(node 4, node 4\)"),
    ([1, -1, -1, 4, -1], [2, -1, -1, 3, -1], r"node 3: is not reachable from the root"),  # a cycle 3 -> 3
    ([1, -1, -1, 4, -1, -1], [2, -1, -1, 5, -1, -1], "node 3: is not reachable from the root"),
    ([1, -1, 9], [2, -1, -1], "node 2: left child 9 and right child -1"),
    ([1, -1, -1], [7, -1, -1], "node 0: right child 7 is not one of the tree's 3 nodes"),
    ([1, -1, -1], [-5, -1, -1], "node 0: right child -5 is not one of the tree's 3 nodes"),
    ([1, -1, -1], [2**32 + 2, -1, -1], f"node 0: right child {2**32 + 2} is not one of"),  # 2 as int32
])
def test_xgboost_malformed_trees(tmp_path, left, right, message):
    _, _, model = _xgb_model()
    _set_tree(model, 0, left, right)
    path = _write(tmp_path, model)
    refused(lambda: mb.load(path), re.escape(str(path)) + ": tree 0, " + message)


def test_xgboost_pruned_trees_with_deleted_nodes_still_match_xgboost(tmp_path):
    """XGBoost's pruner leaves deleted, unreachable leaves in the arrays: they are allowed (and dropped)."""
    xgb = pytest.importorskip("xgboost")
    booster, X, model = _xgb_model(tree_method="exact", gamma=2.0, max_depth=6, rounds=10)
    trees = model["learner"]["gradient_booster"]["model"]["trees"]
    assert sum(int(t["tree_param"]["num_deleted"]) for t in trees) > 0  # the case is exercised
    booster.save_model(tmp_path / "pruned.ubj")
    for forest in (mb.load(_write(tmp_path, model)), mb.load(tmp_path / "pruned.ubj")):
        np.testing.assert_allclose(forest.predict(X), booster.predict(xgb.DMatrix(X)), rtol=0, atol=1e-6)
        assert sum(len(t.feature) for t in forest.trees) < sum(len(t["left_children"]) for t in trees)


@pytest.mark.parametrize("feature, message", [
    (-1, r"node 0: split feature index -1 is outside the model's 4 features"),
    (-7, "node 0: split feature index -7"),
    (4, "node 0: split feature index 4 is outside the model's 4 features"),
    (2**32 + 1, f"node 0: split feature index {2**32 + 1}"),  # would wrap to 1 as int32
])
def test_xgboost_feature_index_outside_the_input(tmp_path, feature, message):
    _, X, model = _xgb_model()
    _set_tree(model, 0, [1, -1, -1], [2, -1, -1], feature=[feature, 0, 0])
    path = _write(tmp_path, model)
    refused(lambda: mb.load(path), re.escape(str(path)) + ": tree 0, " + message)
    # a negative index used to turn the node silently into a leaf; a valid index loads, and equals XGBoost
    _set_tree(model, 0, [1, -1, -1], [2, -1, -1], feature=[3, 0, 0], cond=[0.1, -0.4, 0.6])
    xgb = pytest.importorskip("xgboost")
    good = _write(tmp_path, model, "good.json")
    np.testing.assert_allclose(mb.load(good).predict(X), xgb.Booster(model_file=str(good)).predict(xgb.DMatrix(X)),
                               rtol=0, atol=1e-6)


def test_xgboost_absurd_counts_and_numbers(tmp_path):
    _, _, model = _xgb_model()
    params = model["learner"]["learner_model_param"]

    def load_with(**change):
        m = json.loads(json.dumps(model))
        m["learner"]["learner_model_param"].update(change)
        return lambda: xgbfmt.from_dict(m, "x.json")

    refused(load_with(num_class="1000000000"), "x.json: num_class=1000000000 is not a class count for a model "
            "of 4 trees")
    refused(load_with(num_class="-3"), "num_class=-3")
    refused(load_with(num_feature="-2"), "num_feature=-2")
    refused(load_with(num_feature="99999999999"), "num_feature=99999999999")
    refused(load_with(num_feature="ten"), "x.json: malformed")
    for base in ("nan", "inf", "[nan]"):
        refused(load_with(base_score=base), "x.json: base_score .* is not finite")
    for base in ("1.0", "0", "-0.5"):  # logistic: XGBoost refuses base_score outside (0, 1) too
        refused(load_with(base_score=base), "x.json: base_score .* outside the objective")
    refused(load_with(base_score=[1, 2]), "x.json: base_score .* is not a number")
    assert params["base_score"]  # the untouched model still loads
    xgbfmt.from_dict(model, "x.json")
    m = json.loads(json.dumps(model))
    m["learner"]["gradient_booster"]["model"]["trees"][2]["split_conditions"][-1] = float("nan")
    refused(lambda: xgbfmt.from_dict(m, "x.json"), r"x.json: tree 2, node \d+: the leaf value nan")
    m = json.loads(json.dumps(model))
    m["learner"]["gradient_booster"]["model"]["trees"][2]["split_conditions"][0] = float("nan")
    refused(lambda: xgbfmt.from_dict(m, "x.json"), r"x.json: tree 2, node 0: the split condition nan")
    m = json.loads(json.dumps(model))
    m["learner"]["gradient_booster"]["model"]["trees"][1]["split_indices"].pop()
    refused(lambda: xgbfmt.from_dict(m, "x.json"), r"x.json: tree 1: node arrays disagree .*split_indices")
    m = json.loads(json.dumps(model))
    m["learner"]["gradient_booster"] = []
    refused(lambda: xgbfmt.from_dict(m, "x.json"), r"x.json: malformed XGBoost model")


def test_xgboost_multiclass_tree_info_and_num_class(tmp_path):
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 3)).astype(np.float32)
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(X, label=np.digitize(X[:, 0], [-0.5, 0.5])), 2)
    model = json.loads(booster.save_raw("json"))
    np.testing.assert_allclose(xgbfmt.from_dict(model, "m").predict(X), booster.predict(xgb.DMatrix(X)), atol=1e-6)
    m = json.loads(json.dumps(model))
    m["learner"]["gradient_booster"]["model"]["tree_info"][4] = 7
    refused(lambda: xgbfmt.from_dict(m, "m.json"), "m.json: tree 4 adds to class 7, the model has 3 classes")
    m["learner"]["gradient_booster"]["model"]["tree_info"][4] = -1
    refused(lambda: xgbfmt.from_dict(m, "m.json"), "m.json: tree 4 adds to class -1")
    m["learner"]["gradient_booster"]["model"]["tree_info"].pop()
    refused(lambda: xgbfmt.from_dict(m, "m.json"), "m.json: tree_info has 5 entries for 6 trees")
    m = json.loads(json.dumps(model))
    m["learner"]["learner_model_param"]["num_class"] = "7"
    refused(lambda: xgbfmt.from_dict(m, "m.json"), "num_class=7 is not a class count for a model of 6 trees")


# -- UBJSON and JSON containers ---------------------------------------------------------------------------------
def test_ubjson_absurd_counts_and_nesting(tmp_path):
    huge = struct.pack(">q", 2**62)
    for data in (b"[$Z#L" + huge, b"[#L" + huge + b"Z", b"{#L" + huge, b"[$d#L" + huge, b"[$[#L" + huge):
        refused(lambda data=data: ubjson.loads(data, "h.ubj"), r"h.ubj: not valid UBJSON .*elements in the")
    refused(lambda: ubjson.loads(b"[" * 100_000, "deep.ubj"), "deep.ubj: not valid UBJSON.*nested more than")
    refused(lambda: ubjson.loads(b"C", "c.ubj"), "c.ubj: .*truncated")
    assert ubjson.loads(b"[[[i\x05]]]") == [[[5]]]
    assert ubjson.loads(b"[$i#i\x03\x01\x02\x03").tolist() == [1, 2, 3]
    (tmp_path / "deep.json").write_text("{" + '"a":[' * 200_000)
    refused(lambda: xgbfmt.load(tmp_path / "deep.json"), "deep.json: not a valid XGBoost JSON model")
    (tmp_path / "deep.ubj").write_bytes(b"{" + b"U\x01a{" * 100_000)
    refused(lambda: mb.load(tmp_path / "deep.ubj"), "deep.ubj: not valid UBJSON.*nested more than")


# -- LightGBM -------------------------------------------------------------------------------------------------
def _lgb_text(objective="binary", **params):
    lgb = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4))
    y = (X[:, 0] + 0.3 * rng.normal(size=500) > 0).astype(int)
    booster = lgb.train({"objective": objective, "verbose": -1, "num_leaves": 6, "num_threads": 1, **params},
                        lgb.Dataset(X, y), 4)
    return booster.model_to_string(), X, lgb


def _tree_block(text, i):
    start = text.index(f"Tree={i}\n")
    return start, text.index("\n\n", start)


def _set_lgb(text, i, **fields):
    start, end = _tree_block(text, i)
    block = text[start:end]
    for k, v in fields.items():
        block = re.sub(rf"^{k}=.*$", f"{k}={v}", block, flags=re.M)
    return text[:start] + block + text[end:]


@pytest.mark.parametrize("header, message", [
    ("num_class=0", "num_class=0 and num_tree_per_iteration=1 do not fit"),
    ("num_class=1000000000", "num_class=1000000000 and num_tree_per_iteration=1"),
    ("num_class=-4", "num_class=-4"),
    ("num_tree_per_iteration=1000000000", "num_class=1 and num_tree_per_iteration=1000000000"),
    ("max_feature_idx=-7", "max_feature_idx=-7 is not a feature index"),
])
def test_lightgbm_absurd_header_counts(header, message):
    text, _, _ = _lgb_text()
    key = header.split("=")[0]
    bad = re.sub(rf"^{key}=.*$", header, text, count=1, flags=re.M)
    assert bad != text
    refused(lambda: lgbfmt.from_string(bad, "m.txt"), "m.txt: " + message)


@pytest.mark.parametrize("sigmoid", ["-1", "0", "nan", "-inf"])
def test_lightgbm_sigmoid_parameter_must_be_positive_as_lightgbm_says(sigmoid):
    text, X, lgb = _lgb_text()
    assert "objective=binary sigmoid:1\n" in text
    bad = text.replace("objective=binary sigmoid:1\n", f"objective=binary sigmoid:{sigmoid}\n")
    refused(lambda: lgbfmt.from_string(bad, "m.txt"), f"m.txt: objective sigmoid parameter '{sigmoid}' is not a "
            "positive number")
    if sigmoid in ("-1", "0"):  # the oracle: LightGBM refuses these itself
        with pytest.raises(Exception, match="should be greater than zero"):
            lgb.Booster(model_str=bad)
    good = text.replace("objective=binary sigmoid:1\n", "objective=binary sigmoid:0.25\n")
    np.testing.assert_allclose(lgbfmt.from_string(good, "m").predict(X), lgb.Booster(model_str=good).predict(X),
                               rtol=0, atol=1e-9)


def test_lightgbm_malformed_trees():
    text, X, lgb = _lgb_text()
    start, end = _tree_block(text, 1)
    block = text[start:end]
    n_inner = int(re.search(r"^num_leaves=(\d+)$", block, re.M).group(1)) - 1
    left = re.search(r"^left_child=(.*)$", block, re.M).group(1).split()
    right = re.search(r"^right_child=(.*)$", block, re.M).group(1).split()
    features = re.search(r"^split_feature=(.*)$", block, re.M).group(1).split()
    assert n_inner >= 3

    def with_(**f):
        return lambda: lgbfmt.from_string(_set_lgb(text, 1, **f), "m.txt")

    # the DAG: node 0's two children are both node 1
    refused(with_(left_child=" ".join(["1"] + left[1:]), right_child=" ".join(["1"] + right[1:])),
            r"m.txt: tree 1, node 1: is the child of more than one node \(node 0, node 0\)")
    shared = [left[0], left[0], *left[2:]]  # two nodes share a leaf or a subtree
    refused(with_(left_child=" ".join(shared)), r"m.txt: tree 1, (node|leaf) \d+: is the child of more than one")
    refused(with_(left_child=" ".join(["0"] + left[1:])), r"m.txt: tree 1, node 0: points back to the root")
    refused(with_(left_child=" ".join([str(n_inner)] + left[1:])), r"m.txt: tree 1, node 0: children .* not among")
    for bad, msg in (("-1", "split feature -1 is outside"), ("4", "split feature 4 is outside the model's 4"),
                     ("1.5", "malformed split_feature"), ("99999999999999999999", "malformed split_feature")):
        refused(with_(split_feature=" ".join([bad] + features[1:])), r"m.txt: tree 1.*" + msg)
    thr = re.search(r"^threshold=(.*)$", block, re.M).group(1).split()
    refused(with_(threshold=" ".join(["nan"] + thr[1:])), "m.txt: tree 1, node 0: the threshold is NaN")
    values = re.search(r"^leaf_value=(.*)$", block, re.M).group(1).split()
    for v in ("nan", "inf", "-inf"):
        refused(with_(leaf_value=" ".join(values[:-1] + [v])), rf"m.txt: tree 1, leaf {len(values) - 1}: the leaf "
                "value .* is not a finite number")
    # unchanged, the model still equals LightGBM's predict
    np.testing.assert_allclose(lgbfmt.from_string(text, "m").predict(X), lgb.Booster(model_str=text).predict(X),
                               rtol=0, atol=1e-9)


# -- TMVA -----------------------------------------------------------------------------------------------------
def _deep_tmva(depth):
    """A one-tree Grad BDT: a chain ``depth`` levels deep (every left daughter a leaf), TMVA's XML layout."""
    from test_tmva import weight_file

    base = weight_file("Grad", n_trees=1)
    leaf = ('<Node pos="{p}" depth="{d}" NCoef="0" IVar="-1" Cut="0.0e+00" cType="1" res="{r:.6e}" rms="0.0e+00" '
            'purity="5.0e-01" nType="1"/>')
    head = "".join(f'<Node pos="{"s" if d == 0 else "r"}" depth="{d}" NCoef="0" IVar="{d % 3}" '
                   f'Cut="{(d % 50 - 25) * 0.07:.6e}" cType="{d % 2}" res="0.0e+00" rms="0.0e+00" purity="5.0e-01" '
                   f'nType="0">' + leaf.format(p="l", d=d + 1, r=0.001 * (d % 17 - 8)) for d in range(depth))
    nodes = head + leaf.format(p="r", d=depth, r=-0.5) + "</Node>" * depth
    return base[:base.index("<Node")] + nodes + base[base.index("</BinaryTree>"):]


def test_tmva_a_tree_3000_deep_is_read_and_evaluated(tmp_path):
    from test_tmva import tmva_value

    text = _deep_tmva(3000)
    (tmp_path / "deep.weights.xml").write_text(text)
    forest = mb.load(tmp_path / "deep.weights.xml")
    assert forest.trees[0].depth == 3000
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(60, 3)) * 1.5).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    np.testing.assert_allclose(forest.predict(X), [tmva_value(text, x) for x in X], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("cut", ["nan", "NaN", "inf", "-inf", "1e39"])
def test_tmva_cut_that_is_not_a_finite_number(tmp_path, cut):
    from test_tmva import weight_file

    text = weight_file("Grad", n_trees=3, max_depth=3, seed=2)
    trees = text.split("<BinaryTree")
    trees[2] = re.sub(r'Cut="[^"]*"', f'Cut="{cut}"', trees[2], count=1)
    (tmp_path / "bad.weights.xml").write_text("<BinaryTree".join(trees))
    refused(lambda: tmva.load(tmp_path / "bad.weights.xml"),
            rf"bad.weights.xml: tree 1, node 0 \(depth 0\): the cut '{cut}' is not a finite number")


def test_tmva_leaf_values_boost_weights_and_class_counts(tmp_path):
    from test_tmva import weight_file

    text = weight_file("Grad", analysis="Regression", n_trees=3, max_depth=2, seed=1)
    bad = re.sub(r'(nType="-?1"[^>]*/>)', lambda m: m.group(1), text)
    leaf = re.search(r'<Node [^>]*res="([^"]*)"[^>]*nType="-?1"/>', text)
    bad = text[:leaf.start(1)] + "nan" + text[leaf.end(1):]
    refused(lambda: tmva.from_string(bad, "r.xml"), r"r.xml: tree 0, node \d+ \(depth \d\): the leaf's res nan is "
            "not a finite number")
    bad = re.sub(r'boostWeight="[^"]*"', 'boostWeight="inf"', text, count=1)
    refused(lambda: tmva.from_string(bad, "r.xml"), "r.xml: tree 0: boostWeight 'inf' is not a finite number")
    multi = weight_file("Grad", analysis="Multiclass", n_trees=6, n_class=3)
    tmva.from_string(multi, "m.xml")
    refused(lambda: tmva.from_string(multi.replace('NClass="3"', 'NClass="1000000000"'), "m.xml"),
            "m.xml: 6 trees do not make whole rounds of one tree per class for NClass=1000000000")
    refused(lambda: tmva.from_string(multi.replace('NClass="3"', 'NClass="4"'), "m.xml"), "NClass=4")


def test_tmva_purity_of_an_empty_leaf_is_one_half_as_tmva():
    """Old files give nS, nB instead of purity; TMVA's SetPurity answers 0.5 for a node with no events."""
    from test_tmva import weight_file

    text = weight_file("AdaBoost", n_trees=2, max_depth=1, seed=3, options={"UseYesNoLeaf": "False"})
    text = re.sub(r'purity="[^"]*"', 'nS="0" nB="0"', text)
    forest = tmva.from_string(text, "old.xml")
    X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    np.testing.assert_allclose(forest.predict(X), 0.5, rtol=1e-12)  # the weighted mean of leaves all 0.5


# -- ONNX-ML --------------------------------------------------------------------------------------------------
def _onnx_regressor(**change):
    pytest.importorskip("onnx")
    from test_onnx_ml import TREES, _with, make_model

    return _with(make_model("TreeEnsembleRegressor", TREES, n_targets=1), **change)


@pytest.mark.parametrize("change, message", [
    # tree 0: node 0 -> (1, 2), node 2 -> (3, 4); below, node 2's children are both node 3: a shared child
    ({"nodes_falsenodeids": [2, 0, 3, 0, 0, 2, 0, 4, 0, 0]}, r"tree 0, node 3: is the child of more than one node"),
    ({"nodes_falsenodeids": [2, 0, 0, 0, 0, 2, 0, 4, 0, 0]},  # node 2 -> (3, 0): a cycle, node 4 an orphan
     r"tree 0, node 0: is not reachable from the root \(4 such nodes"),
    ({"nodes_modes": ["BRANCH_LEQ", "LEAF", "BRANCH_LEQ", "LEAF", "BRANCH_LEQ"] * 2},  # node 4 -> (0, 0)
     r"tree 0 has no root: every node is the child of another \(a cycle\)"),
    ({"nodes_truenodeids": [1, 0, 2, 0, 0, 1, 0, 3, 0, 0]}, r"tree 0, node 2: is the child of more than one"),
    ({"nodes_featureids": [0, 0, -1, 0, 0, 2, 0, 0, 0, 0]}, r"tree 0, node 2: has the negative feature id -1"),
    ({"nodes_featureids": [0, 0, 1, 0, 0, 3, 0, 0, 0, 0]}, r"tree 1, node 0: splits on feature 3 but the input "
                                                           r"has 3 features"),
    ({"nodes_values": [0.5, 0, float("nan"), 0, 0, 0, 0, -0.5, 0, 0]}, r"tree 0, node 2: the split threshold"),
    ({"target_weights": [0.4, float("nan"), 1.3, -0.2, 0.9, -1.1]}, r"target_weights\[1\] \(tree 0, node 3\) is "
                                                                     r"nan, not a finite"),
    ({"target_weights": [0.4, float("inf"), 1.3, -0.2, 0.9, -1.1]}, r"target_weights\[1\] .* is inf"),
    ({"base_values": [float("nan")]}, r"base_values \[nan\] that are not all finite"),
    ({"n_targets": 1_000_000_000}, r"n_targets=1000000000, but its target_ids and base_values name 1 targets"),
    ({"n_targets": 0}, r"n_targets=0"),
    ({"nodes_featureids": [0, 0, 1, 0, 0, 2, 0, 0, 0]}, r"lengths disagree with nodes_treeids \(10\): "
                                                        r"nodes_featureids \(9\)"),
    ({"nodes_treeids": [0, 0, 0, 0, 0, 1, 1, 1, 1]}, r"lengths disagree with nodes_treeids \(9\)"),
])
def test_onnx_malformed_tree_ensembles(change, message):
    from ml4ep.bdt.formats import onnx_ml

    model = _onnx_regressor(**change)
    refused(lambda: onnx_ml.from_model(model, source="e.onnx"), "^e.onnx: .*" + message)


def test_onnx_many_trees_grouped_by_tree_id():
    """Nodes are grouped by tree id in one sort (a scan per tree was quadratic): 20000 stumps load in a bounded
    time, with every tree's own nodes, and match onnxruntime."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from test_onnx_ml import run_ort

    from ml4ep.bdt.formats import onnx_ml

    k = 20000
    t = np.repeat(np.arange(k), 3)
    attrs = dict(nodes_treeids=t.tolist(), nodes_nodeids=[0, 1, 2] * k, nodes_featureids=[i % 3 for i in t],
                 nodes_values=[((i % 7) - 3) * 0.25 for i in t], nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"] * k,
                 nodes_truenodeids=[1, 0, 0] * k, nodes_falsenodeids=[2, 0, 0] * k,
                 target_treeids=np.repeat(np.arange(k), 2).tolist(), target_nodeids=[1, 2] * k, target_ids=[0] * 2 * k,
                 target_weights=[(i % 5 - 2) * 1e-3 for i in range(2 * k)], n_targets=1)
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["y"], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])
    t0 = time.perf_counter()
    forest = onnx_ml.from_model(model)
    assert time.perf_counter() - t0 < 20
    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    np.testing.assert_allclose(forest.predict(X), run_ort(model, X), rtol=0, atol=1e-4)


def test_huge_declared_width(tmp_path):
    """A file may declare 2^31 - 1 features while its splits use four: compile() refuses it at once naming the
    count (generated code copies rows into blocks), predict() refuses rows narrower than the declared width."""
    booster, X, model = _xgb_model()
    model["learner"]["learner_model_param"]["num_feature"] = str(2**31 - 1)
    forest = mb.load(_write(tmp_path, model))
    refused(lambda: forest.compile(name="wide"), str(2**31 - 1), "at most 1048576")
    with pytest.raises(Exception, match=str(2**31 - 1)):
        forest.predict(X)
    model["learner"]["learner_model_param"]["num_feature"] = str(2**20)  # the largest width that compiles
    wide = mb.load(_write(tmp_path, model, "wide.json"))
    Xw = np.zeros((3, 2**20), np.float32)
    Xw[:, :4] = X[:3]
    np.testing.assert_allclose(wide.compile(name="wide").predict(Xw), booster.predict(
        __import__("xgboost").DMatrix(X[:3])), rtol=1e-6)


def test_many_outputs_compile_and_match_predict():
    """20000 outputs (one stump each): the per-thread scratch of the generated code is on the heap, not the stack
    (64 rows x 20000 doubles overflowed it)."""
    k = 20000
    trees = [_tree([0, -1, -1], [1, -1, -1], [2, -1, -1], value=[0.0, -float(o % 7), float(o % 5)]) for o in range(k)]
    forest = Forest(trees, list(range(k)), 1, k, np.zeros(k), "identity", "<", source="many.model")
    X = np.array([[-1.0], [1.0], [0.0]])
    np.testing.assert_array_equal(forest.compile(name="many", threads=2).predict(X), forest.predict(X))
