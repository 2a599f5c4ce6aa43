"""ONNX-ML TreeEnsembleRegressor / TreeEnsembleClassifier against onnxruntime: scikit-learn models converted
with skl2onnx, and models built by hand with onnx.helper for the modes and corner cases converters never emit."""

from __future__ import annotations

import numpy as np
import pytest

from ml4ep.bdt import ModelError
from ml4ep.bdt.formats import onnx_ml

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def run_ort(model, X):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outs = sess.run(None, {name: X})
    return outs[-1]  # regressors: the only output; classifiers: the probabilities (after the label)


def data(n=2000, f=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    x0, x1 = X[:, 0], X[:, 1]
    return X, {"binary": (x0 + 0.5 * x1 + 0.3 * rng.normal(size=n) > 0).astype(int),
               "multi": np.digitize(x0 + x1, [-0.7, 0.7]),
               "real": x0 * 2 + np.sin(x1)}


# ---------------------------------------------------------------------------------------------------------------
# scikit-learn models converted by skl2onnx
# ---------------------------------------------------------------------------------------------------------------

def _sklearn_cases():
    from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier,
                                  RandomForestRegressor)

    return {
        "gb-binary": (lambda: GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0), "binary"),
        "rf-binary": (lambda: RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0), "binary"),
        "gb-multi": (lambda: GradientBoostingClassifier(n_estimators=15, max_depth=3, random_state=0), "multi"),
        "rf-multi": (lambda: RandomForestClassifier(n_estimators=15, max_depth=5, random_state=0), "multi"),
        "gb-reg": (lambda: GradientBoostingRegressor(n_estimators=30, max_depth=4, random_state=0), "real"),
        "rf-reg": (lambda: RandomForestRegressor(n_estimators=15, max_depth=6, random_state=0), "real"),
    }


CASES = ["gb-binary", "rf-binary", "gb-multi", "rf-multi", "gb-reg", "rf-reg"]


def converted(case: str):
    skl2onnx = pytest.importorskip("skl2onnx")
    make, target = _sklearn_cases()[case]
    X, ys = data()
    est = make().fit(X, ys[target])
    options = {id(est): {"zipmap": False}} if target != "real" else None
    return skl2onnx.to_onnx(est, X[:1], options=options), est, X


@pytest.mark.parametrize("case", CASES)
def test_converted_sklearn_equals_onnxruntime(tmp_path, case):
    model, est, X = converted(case)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    forest = onnx_ml.load(path)
    ref = run_ort(model, X)
    got = forest.predict(X)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)  # onnxruntime sums in float32
    assert forest.split == "<=" and forest.n_features == X.shape[1]
    assert forest.source == str(path)
    if case.endswith(("binary", "multi")):  # and the converted model still is scikit-learn's
        np.testing.assert_allclose(got, est.predict_proba(X), rtol=0, atol=1e-5)


def test_float32_thresholds_compared_in_float32():
    """Inputs equal to a float32 threshold, and one float32 step either side, go the way onnxruntime sends them."""
    model, _, X = converted("gb-reg")
    forest = onnx_ml.from_model(model)
    thr = np.concatenate([t.threshold[t.feature >= 0] for t in forest.trees]).astype(np.float32)
    feats = np.concatenate([t.feature[t.feature >= 0] for t in forest.trees])
    rows = []
    for t, f in zip(thr[:40], feats[:40]):
        for v in (np.nextafter(t, np.float32(-np.inf)), t, np.nextafter(t, np.float32(np.inf))):
            r = X[len(rows) % len(X)].copy()
            r[f] = v
            rows.append(r)
    Xe = np.asarray(rows, dtype=np.float32)
    assert forest.trees[0].threshold.dtype == np.float32
    np.testing.assert_allclose(forest.predict(Xe), run_ort(model, Xe), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# hand-built models: one stump-and-a-half per tree, modes and options chosen explicitly
# ---------------------------------------------------------------------------------------------------------------

def tree_attrs(trees, mode="BRANCH_LEQ", tracks_true=0):
    """trees: list of (feature_a, thr_a, feature_b, thr_b, leaves{node: [(out, w), ...]}) with the layout
    0: x[a] ? thr_a -> true 1, false 2; 2: x[b] ? thr_b -> true 3, false 4."""
    a = {k: [] for k in ("treeids", "nodeids", "featureids", "values", "modes", "true", "false", "mtt")}
    w = {k: [] for k in ("treeids", "nodeids", "ids", "weights")}
    for t, (fa, ta, fb, tb, leaves) in enumerate(trees):
        for nid, feat, thr, md, tr, fa_ in [(0, fa, ta, mode, 1, 2), (1, 0, 0.0, "LEAF", 0, 0),
                                            (2, fb, tb, mode, 3, 4), (3, 0, 0.0, "LEAF", 0, 0),
                                            (4, 0, 0.0, "LEAF", 0, 0)]:
            for k, v in zip(a, (t, nid, feat, thr, md, tr, fa_, tracks_true if md != "LEAF" else 0)):
                a[k].append(v)
        for nid, pairs in leaves.items():
            for out, weight in pairs:
                for k, v in zip(w, (t, nid, out, weight)):
                    w[k].append(v)
    return a, w


def make_model(op, trees, n_features=3, mode="BRANCH_LEQ", tracks_true=0, dtype=TensorProto.FLOAT, opset=1,
               **extra):
    a, w = tree_attrs(trees, mode, tracks_true)
    prefix = "class" if op == "TreeEnsembleClassifier" else "target"
    attrs = dict(nodes_treeids=a["treeids"], nodes_nodeids=a["nodeids"], nodes_featureids=a["featureids"],
                 nodes_modes=a["modes"], nodes_truenodeids=a["true"], nodes_falsenodeids=a["false"],
                 nodes_missing_value_tracks_true=a["mtt"], **{f"{prefix}_treeids": w["treeids"],
                 f"{prefix}_nodeids": w["nodeids"], f"{prefix}_ids": w["ids"]}, **extra)
    if opset == 3:
        attrs["nodes_values_as_tensor"] = numpy_helper.from_array(np.asarray(a["values"], np.float64))
        attrs[f"{prefix}_weights_as_tensor"] = numpy_helper.from_array(np.asarray(w["weights"], np.float64))
    else:
        attrs["nodes_values"] = a["values"]
        attrs[f"{prefix}_weights"] = w["weights"]
    if op == "TreeEnsembleClassifier":
        outputs = ["label", "probs"]
        n_out = len(extra.get("classlabels_int64s") or extra["classlabels_strings"])
        label = TensorProto.INT64 if "classlabels_int64s" in extra else TensorProto.STRING
        vi = [helper.make_tensor_value_info("label", label, [None]),
              helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, n_out])]
    else:
        outputs = ["y"]
        vi = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, extra.get("n_targets", 1)])]
    node = helper.make_node(op, ["X"], outputs, domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", dtype, [None, n_features])], vi)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("ai.onnx.ml", opset)])


def grid(n=3000, seed=1, nan=True):
    rng = np.random.default_rng(seed)
    X = rng.choice(np.float32([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0]), size=(n, 3))  # many exact ties
    if nan:
        X[rng.random(X.shape) < 0.2] = np.nan
    return X.astype(np.float32)


TREES = [(0, 0.5, 1, 0.25, {1: [(0, 0.4)], 3: [(0, -0.7)], 4: [(0, 1.3)]}),
         (2, 0.0, 0, -0.5, {1: [(0, -0.2)], 3: [(0, 0.9)], 4: [(0, -1.1)]})]


@pytest.mark.parametrize("mode", ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GT", "BRANCH_GTE"])
@pytest.mark.parametrize("tracks_true", [0, 1])
def test_split_modes_and_missing_values(mode, tracks_true):
    model = make_model("TreeEnsembleRegressor", TREES, mode=mode, tracks_true=tracks_true, n_targets=1,
                       base_values=[0.3])
    X = grid()
    forest = onnx_ml.from_model(model)
    assert forest.split == ("<=" if mode in ("BRANCH_LEQ", "BRANCH_GT") else "<")
    np.testing.assert_allclose(forest.predict(X), run_ort(model, X), rtol=0, atol=1e-6)


@pytest.mark.parametrize("aggregate", ["SUM", "AVERAGE"])
@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_regressor_targets_aggregation_and_transform(aggregate, post):
    trees = [(0, 0.5, 1, 0.25, {1: [(0, 0.4), (1, -0.3)], 3: [(1, 0.8)], 4: [(0, 1.3), (2, 0.5)]}),
             (2, 0.0, 0, -0.5, {1: [(0, 0.1), (1, 0.2), (2, -0.2)], 3: [(0, 0.3), (1, -0.1), (2, 0.9)],
                                4: [(0, -0.6), (1, 0.7), (2, -1.1)]})]
    model = make_model("TreeEnsembleRegressor", trees, n_targets=3, base_values=[0.1, -0.2, 0.3],
                       aggregate_function=aggregate, post_transform=post)
    X = grid()
    forest = onnx_ml.from_model(model)
    assert forest.average == (aggregate == "AVERAGE")
    ref = run_ort(model, X)
    assert forest.predict(X).shape == ref.shape == (len(X), 3)
    np.testing.assert_allclose(forest.predict(X), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_single_target_regressor_ignores_post_transform_as_onnxruntime(post):
    model = make_model("TreeEnsembleRegressor", TREES, n_targets=1, base_values=[0.3], post_transform=post)
    X = grid()
    np.testing.assert_allclose(onnx_ml.from_model(model).predict(X), run_ort(model, X), rtol=0, atol=1e-6)


def test_double_thresholds_opset3():
    trees = [(0, 0.1, 1, 1 / 3, {1: [(0, 0.4)], 3: [(0, -0.7)], 4: [(0, 1.3)]})]
    model = make_model("TreeEnsembleRegressor", trees, n_targets=1, dtype=TensorProto.DOUBLE, opset=3)
    X = np.array([[0.1, 1 / 3, 0], [np.nextafter(0.1, 1), 1 / 3, 0], [0.2, np.nextafter(1 / 3, 1), 0],
                  [np.float32(0.1), np.float32(1 / 3), 0]], dtype=np.float64)
    forest = onnx_ml.from_model(model)
    assert forest.trees[0].threshold.dtype == np.float64
    np.testing.assert_allclose(forest.predict(X), run_ort(model, X), rtol=0, atol=1e-6)  # float32 output


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC"])
@pytest.mark.parametrize("signs", ["mixed", "positive"])
@pytest.mark.parametrize("base", [[], [0.25]])
def test_binary_classifier_with_one_weight_set(post, signs, base):
    s = 1.0 if signs == "positive" else -1.0
    trees = [(0, 0.5, 1, 0.25, {1: [(0, 0.4)], 3: [(0, 0.1)], 4: [(0, 0.3)]}),
             (2, 0.0, 0, -0.5, {1: [(0, 0.2 * s)], 3: [(0, 0.05)], 4: [(0, 0.15)]})]
    extra = {"base_values": base} if base else {}
    model = make_model("TreeEnsembleClassifier", trees, classlabels_int64s=[0, 1], post_transform=post, **extra)
    X = grid()
    ref = run_ort(model, X)
    got = onnx_ml.from_model(model).predict(X)
    assert got.shape == ref.shape == (len(X), 2)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_classifier_with_weights_for_every_class(post):
    trees = [(0, 0.5, 1, 0.25, {n: [(0, 0.1 * n), (1, -0.2 * n), (2, 0.3)] for n in (1, 3, 4)}),
             (2, 0.0, 0, -0.5, {1: [(1, 0.5)], 3: [(1, -0.4)], 4: [(1, 0.2)]})]
    model = make_model("TreeEnsembleClassifier", trees, classlabels_strings=["a", "b", "c"], post_transform=post,
                       base_values=[0.1, 0.0, -0.1])
    X = grid()
    np.testing.assert_allclose(onnx_ml.from_model(model).predict(X), run_ort(model, X), rtol=0, atol=1e-6)


def test_graph_with_other_nodes_and_tree_order():
    """Nodes listed out of id order and a Cast before the trees are fine."""
    model = make_model("TreeEnsembleRegressor", TREES, n_targets=1)
    node = model.graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    perm = [0, 4, 2, 3, 1, 5, 9, 7, 6, 8]  # roots first: onnxruntime takes a tree's first node as its root
    for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
              "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true"):
        attrs[k] = [attrs[k][i] for i in perm]
    cast = helper.make_node("Cast", ["Xd"], ["X"], to=TensorProto.FLOAT)
    tree = helper.make_node("TreeEnsembleRegressor", ["X"], ["y"], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph([cast, tree], "g", [helper.make_tensor_value_info("Xd", TensorProto.DOUBLE, [None, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])])
    shuffled = helper.make_model(graph, opset_imports=model.opset_import)
    X = grid(nan=False).astype(np.float64)
    np.testing.assert_allclose(onnx_ml.from_model(shuffled).predict(X), run_ort(shuffled, X), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------------

def _with(model, **changes):
    node = model.graph.node[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs.update(changes)
    del node.attribute[:]
    node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
    return model


@pytest.mark.parametrize("change, message", [
    ({"nodes_modes": ["BRANCH_EQ", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF"] * 2}, "BRANCH_EQ"),
    ({"nodes_modes": ["BRANCH_NEQ", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF"] * 2}, "BRANCH_NEQ"),
    ({"nodes_modes": ["BRANCH_LT", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF"] * 2}, "mixed split modes"),
    ({"nodes_modes": ["BRANCH_GTE", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF"] * 2}, "mixed split modes"),
    ({"aggregate_function": "MAX"}, "aggregate_function MAX"),
    ({"aggregate_function": "MIN"}, "aggregate_function MIN"),
    ({"post_transform": "PROBIT"}, "post_transform PROBIT"),
    ({"post_transform": "SOFTMAX_ZERO", "aggregate_function": "MIN"}, "post_transform SOFTMAX_ZERO; aggregate"),
    ({"target_nodeids": [1, 3, 7, 1, 3, 4]}, "node 7 of tree 0"),
    ({"nodes_truenodeids": [1, 0, 9, 0, 0, 1, 0, 3, 0, 0]}, "node 9"),
    ({"nodes_featureids": [0, 0]}, "lengths disagree"),
])
def test_unsupported_and_malformed_models(change, message):
    model = _with(make_model("TreeEnsembleRegressor", TREES, n_targets=1), **change)
    with pytest.raises(ModelError, match=message):
        onnx_ml.from_model(model, source="m.onnx")


def test_base_value_of_an_output_some_rows_never_score():
    """onnxruntime adds a target's base value only where a leaf weighted it: row-dependent, refused."""
    trees = [(0, 0.5, 1, 0.25, {1: [(0, 0.4), (1, -0.3)], 3: [(1, 0.8)], 4: [(0, 1.3), (1, 0.2)]})]
    ok = make_model("TreeEnsembleRegressor", trees, n_targets=2, base_values=[0.0, 0.5])
    X = grid()
    np.testing.assert_allclose(onnx_ml.from_model(ok).predict(X), run_ort(ok, X), rtol=0, atol=1e-6)
    bad = make_model("TreeEnsembleRegressor", trees, n_targets=2, base_values=[0.1, 0.5])
    with pytest.raises(ModelError, match="base value 0.1 for target 0"):
        onnx_ml.from_model(bad)


def test_graph_level_errors(tmp_path):
    model = make_model("TreeEnsembleRegressor", TREES, n_targets=1)
    two = onnx.ModelProto()
    two.CopyFrom(model)
    extra = onnx.NodeProto()
    extra.CopyFrom(model.graph.node[0])
    extra.output[0] = "y2"
    two.graph.node.append(extra)
    with pytest.raises(ModelError, match="2 tree-ensemble nodes"):
        onnx_ml.from_model(two)
    empty = helper.make_model(helper.make_graph([helper.make_node("Relu", ["X"], ["y"])], "g",
                                                [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])]))
    with pytest.raises(ModelError, match="no TreeEnsembleRegressor.*Relu"):
        onnx_ml.from_model(empty)
    pre = onnx.ModelProto()
    pre.CopyFrom(model)
    pre.graph.node[0].input[0] = "Xs"
    pre.graph.node.insert(0, helper.make_node("Relu", ["X"], ["Xs"]))
    with pytest.raises(ModelError, match="Relu node; preprocessing"):
        onnx_ml.from_model(pre)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01not a protobuf at all" * 10)
    with pytest.raises(ModelError, match="bad.onnx"):
        onnx_ml.load(bad)
    with pytest.raises(ModelError, match="cannot read"):
        onnx_ml.load(tmp_path / "missing.onnx")
    narrow = make_model("TreeEnsembleRegressor", TREES, n_features=2, n_targets=1)
    with pytest.raises(ModelError, match="feature 2 but the input has 2 features"):
        onnx_ml.from_model(narrow)


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
@pytest.mark.parametrize("base", [[], [0.25]])
def test_binary_classifier_with_weights_for_both_classes(post, base):
    trees = [(0, 0.5, 1, 0.25, {1: [(0, 0.6), (1, 0.4)], 3: [(0, 0.1), (1, 0.9)], 4: [(0, 0.7), (1, 0.3)]}),
             (2, 0.0, 0, -0.5, {1: [(0, 0.2)], 3: [(1, -0.5)], 4: [(0, 0.15)]})]
    extra = {"base_values": base} if base else {}
    model = make_model("TreeEnsembleClassifier", trees, classlabels_int64s=[3, 7], post_transform=post, **extra)
    X = grid()
    ref = run_ort(model, X)
    got = onnx_ml.from_model(model).predict(X)
    assert got.shape == ref.shape == (len(X), 2)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_load_dispatches_onnx_files(tmp_path):
    import ml4ep.bdt as mb

    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="bad.onnx"):
        mb.load(tmp_path / "bad.onnx")
