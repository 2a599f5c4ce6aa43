"""TMVA BDT weight files. There is no TMVA here (pip ROOT has none), so the weight files are written by hand in
TMVA's XML layout and the oracle is TMVA's evaluation rule coded independently below, walking the XML per row:
``DecisionTreeNode::GoesRight`` (``x >= Cut`` in float32, negated for ``cType=0``), ``DecisionTree::CheckEvent``
and ``MethodBDT``'s output formulas."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ml4ep.bdt import ModelError
from ml4ep.bdt.formats import tmva

N_VARS = 3


# -- writing weight files ------------------------------------------------------------------------------
def _random_node(rng, depth, max_depth, pos, regression_tree):
    """One ``<Node>`` (and its daughters) as a string, TMVA's attribute layout."""
    leaf = depth == max_depth or (depth > 0 and rng.random() < 0.3)
    res = rng.normal(scale=0.5)
    purity = rng.random()
    if leaf:
        n_type = 1 if purity > 0.5 else -1
        return (f'<Node pos="{pos}" depth="{depth}" NCoef="0" IVar="-1" Cut="0.000000e+00" cType="1" '
                f'res="{res:.9e}" rms="0.0e+00" purity="{purity:.9e}" nType="{n_type}"/>')
    ivar = int(rng.integers(N_VARS))
    cut = rng.choice([0.0, 0.25, -0.5, rng.normal()])
    ctype = int(rng.integers(2))
    kids = [_random_node(rng, depth + 1, max_depth, p, regression_tree) for p in ("l", "r")]
    if rng.random() < 0.5:
        kids.reverse()  # TMVA finds daughters by pos, not by order
    return (f'<Node pos="{pos}" depth="{depth}" NCoef="0" IVar="{ivar}" Cut="{cut:.9e}" cType="{ctype}" '
            f'res="{res:.9e}" rms="0.0e+00" purity="{purity:.9e}" nType="0">' + "".join(kids) + "</Node>")


def weight_file(boost="Grad", analysis="Classification", n_trees=4, max_depth=2, seed=0, options=None,
                transformations='<Transformations NTransformations="0"/>', n_class=2, method="BDT::BDTG"):
    rng = np.random.default_rng(seed)
    tree_type = 1 if boost == "Grad" or analysis == "Regression" else 0
    opts = {} if boost is None else {"BoostType": boost}
    opts |= {"UseYesNoLeaf": "True", "NodePurityLimit": "5.000000e-01", "NTrees": str(n_trees)}
    opts.update(options or {})
    opt_xml = "".join(f'<Option name="{k}" modified="Yes">{v}</Option>' for k, v in opts.items())
    variables = "".join(
        f'<Variable VarIndex="{i}" Expression="x{i}*2" Label="v{i}" Title="v{i}" Unit="" Internal="v{i}" '
        f'Type="F" Min="-3.0e+00" Max="3.0e+00"/>' for i in range(N_VARS))
    classes = "".join(f'<Class Name="c{i}" Index="{i}"/>' for i in range(n_class))
    targets = '<Targets NTrgt="1"><Target TargetIndex="0" Expression="t" Label="t"/></Targets>' \
        if analysis == "Regression" else ""
    trees = []
    for i in range(n_trees):
        bw = rng.uniform(0.2, 2.0)
        trees.append(f'<BinaryTree type="DecisionTree" boostWeight="{bw:.9e}" itree="{i}">'
                     + _random_node(rng, 0, max_depth, "s", tree_type) + "</BinaryTree>")
    return (f'<?xml version="1.0"?>\n<MethodSetup Method="{method}">'
            f'<GeneralInfo><Info name="TMVA Release" value="4.2.1 [262657]"/>'
            f'<Info name="AnalysisType" value="{analysis}"/></GeneralInfo>'
            f"<Options>{opt_xml}</Options>"
            f'<Variables NVar="{N_VARS}">{variables}</Variables><Spectators NSpec="0"/>'
            f'<Classes NClass="{n_class}">{classes}</Classes>{targets}{transformations}<MVAPdfs/>'
            f'<Weights NTrees="{n_trees}" AnalysisType="{tree_type}">' + "".join(trees) + "</Weights></MethodSetup>")


# -- the oracle: TMVA's rules, per row -----------------------------------------------------------------
def tmva_value(xml_text, x):
    root = ET.fromstring(xml_text)
    opts = {o.get("name"): o.text for o in root.iter("Option")}
    boost = opts.get("BoostType", "AdaBoost")  # MethodBDT::Init's default for classification
    analysis = [i.get("value") for i in root.iter("Info") if i.get("name") == "AnalysisType"][0]
    weights = root.find("Weights")
    regression_tree = weights.get("AnalysisType") == "1"
    yes_no = opts.get("UseYesNoLeaf") == "True" and boost not in ("RealAdaBoost", "AdaCost")
    x32 = np.asarray(x, dtype=np.float32)

    def check_event(node):
        while int(node.get("nType")) == 0:
            r = x32[int(node.get("IVar"))] >= np.float32(node.get("Cut"))
            goes_right = bool(r) if node.get("cType") == "1" else not bool(r)
            node = [c for c in node.findall("Node") if c.get("pos") == ("r" if goes_right else "l")][0]
        if regression_tree:
            return float(np.float32(node.get("res")))
        return float(node.get("nType")) if yes_no else float(np.float32(node.get("purity")))

    trees = weights.findall("BinaryTree")
    outs = [check_event(t.find("Node")) for t in trees]
    bws = [float(np.float32(t.get("boostWeight"))) for t in trees]
    if analysis == "Multiclass":
        k = int(root.find("Classes").get("NClass"))
        temp = [sum(outs[i::k]) for i in range(k)]
        e = [math.exp(t) for t in temp]
        return [v / sum(e) for v in e]
    if boost == "Grad":
        s = sum(outs)
        return s + bws[0] if analysis == "Regression" else 2.0 / (1.0 + math.exp(-2.0 * s)) - 1
    if opts.get("UseWeightedTrees") == "False":
        bws = [1.0] * len(bws)
    num = sum(w * o for w, o in zip(bws, outs))
    norm = sum(bws)
    return num / norm if norm > np.finfo(float).eps else 0.0


def rows(n=400, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_VARS)).astype(np.float32)
    X[:40] = rng.choice(np.float32([0.0, 0.25, -0.5]), size=(40, N_VARS))  # exactly on the cuts: x >= cut
    X[rng.random(X.shape) < 0.1] = np.nan  # NaN >= cut is false
    return X


def check(tmp_path, text, rtol=1e-12, atol=1e-13):
    path = tmp_path / "TMVAClassification_BDT.weights.xml"
    path.write_text(text)
    forest = tmva.load(path)
    X = rows()
    got = forest.predict(X)
    ref = np.array([tmva_value(text, x) for x in X])
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)
    return forest, X


# -- tests ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_grad_classification(tmp_path, seed):
    forest, X = check(tmp_path, weight_file("Grad", seed=seed, n_trees=5))
    assert forest.split == "<" and forest.n_outputs == 1
    assert forest.feature_names == ["v0", "v1", "v2"]
    assert forest.meta["expressions"] == ["x0*2", "x1*2", "x2*2"]
    assert forest.meta["ranges"][0] == (-3.0, 3.0)
    # the margin is the plain sum of leaf responses; the output is tanh of it
    np.testing.assert_allclose(forest.predict(X), np.tanh(forest.margin(X)[:, 0]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("yes_no", ["True", "False"])
@pytest.mark.parametrize("boost", ["AdaBoost", "Bagging"])
def test_adaboost_weighted_vote(tmp_path, seed, yes_no, boost):
    forest, _ = check(tmp_path, weight_file(boost, seed=seed, options={"UseYesNoLeaf": yes_no}, n_trees=6))
    assert forest.meta["leaf_value"] == ("nType" if yes_no == "True" else "purity")


def test_yes_no_leaf_votes_are_plus_minus_one(tmp_path):
    # one tree: the answer is the leaf's nType itself, +1 or -1
    forest, X = check(tmp_path, weight_file("AdaBoost", n_trees=1, seed=3))
    assert set(np.unique(forest.predict(X))) <= {-1.0, 1.0}


@pytest.mark.parametrize("boost", ["RealAdaBoost", "AdaCost"])
def test_real_adaboost_uses_purity(tmp_path, boost):
    forest, _ = check(tmp_path, weight_file(boost, seed=2, options={"UseYesNoLeaf": "True"}))
    assert forest.meta["leaf_value"] == "purity"


def test_unweighted_trees_in_old_files(tmp_path):
    # TMVA before the option was removed: UseWeightedTrees=False adds up the trees with weight 1
    forest, X = check(tmp_path, weight_file("AdaBoost", seed=4, options={"UseWeightedTrees": "False"}))
    assert len(set(forest.meta["boost_weights"])) > 1


def test_default_boost_type(tmp_path):
    # files without a BoostType option (as some converters write) get TMVA's defaults
    forest, _ = check(tmp_path, weight_file(None, seed=7))
    assert forest.meta["boost_type"] == "AdaBoost"
    with pytest.raises(ModelError, match="AdaBoostR2"):
        tmva.from_string(weight_file(None, analysis="Regression"), "r")


@pytest.mark.parametrize("seed", range(3))
def test_grad_regression(tmp_path, seed):
    forest, X = check(tmp_path, weight_file("Grad", analysis="Regression", seed=seed, max_depth=2))
    assert forest.base_score[0] == pytest.approx(float(np.float32(forest.meta["boost_weights"][0])))


@pytest.mark.parametrize("boost", ["AdaBoost", "Bagging"])
def test_averaged_regression(tmp_path, boost):
    check(tmp_path, weight_file(boost, analysis="Regression", seed=5))


def test_grad_multiclass(tmp_path):
    forest, X = check(tmp_path, weight_file("Grad", analysis="Multiclass", n_class=3, n_trees=6, seed=6))
    assert forest.predict(X).shape == (len(X), 3)


def test_cut_types_and_nan(tmp_path):
    """cType=1: x >= cut goes right; cType=0: x >= cut goes left; NaN goes where x >= cut is false."""
    def one(ctype):
        return ('<?xml version="1.0"?><MethodSetup Method="BDT::B"><GeneralInfo>'
                '<Info name="AnalysisType" value="Classification"/></GeneralInfo><Options>'
                '<Option name="BoostType" modified="Yes">Grad</Option></Options>'
                '<Variables NVar="1"><Variable VarIndex="0" Expression="a" Label="a" Type="F" Min="0" Max="1"/>'
                '</Variables><Transformations NTransformations="0"/>'
                '<Weights NTrees="1" AnalysisType="1"><BinaryTree type="DecisionTree" boostWeight="1" itree="0">'
                f'<Node pos="s" depth="0" NCoef="0" IVar="0" Cut="5.0e-01" cType="{ctype}" res="0" rms="0" '
                'purity="0.5" nType="0">'
                '<Node pos="l" depth="1" NCoef="0" IVar="-1" Cut="0" cType="1" res="-1.0" rms="0" purity="0.2" '
                'nType="-1"/><Node pos="r" depth="1" NCoef="0" IVar="-1" Cut="0" cType="1" res="1.0" rms="0" '
                'purity="0.8" nType="1"/></Node></BinaryTree></Weights></MethodSetup>')
    X = np.array([[0.4], [0.5], [0.6], [np.nan]])
    left, right = math.tanh(-1.0), math.tanh(1.0)
    f1 = tmva.from_string(one(1), "c1")
    np.testing.assert_allclose(f1.predict(X), [left, right, right, left], rtol=1e-12)
    f0 = tmva.from_string(one(0), "c0")
    np.testing.assert_allclose(f0.predict(X), [right, left, left, right], rtol=1e-12)


def test_errors(tmp_path):
    good = weight_file("Grad")
    cases = {
        "truncated": (good[: len(good) // 2], "truncated"),
        "not_bdt": (good.replace('Method="BDT::BDTG"', 'Method="MLP::MLP"'), "not a TMVA BDT"),
        "not_tmva": ("<model><tree/></model>", "not a TMVA BDT"),
        "boost": (weight_file("SuperBoost"), "unknown BoostType"),
        "transform": (weight_file(transformations='<Transformations NTransformations="1"><Transform '
                                                  'Name="Decorrelation"/></Transformations>'), "transformations"),
        "fisher": (good.replace('NCoef="0" IVar="', 'NCoef="1" fC0="0.5" IVar="', 1), "Fisher"),
        "r2": (weight_file("AdaBoostR2", analysis="Regression"), "AdaBoostR2"),
        "ntrees": (good.replace('<Weights NTrees="4"', '<Weights NTrees="5"'), "holds 4 trees"),
        "number": (good.replace('<Weights NTrees="4"', '<Weights NTrees="four"'), "malformed"),
    }
    for name, (text, msg) in cases.items():
        p = tmp_path / f"{name}.xml"
        p.write_text(text)
        with pytest.raises(ModelError, match=msg) as info:
            tmva.load(p)
        assert str(p) in str(info.value)
    with pytest.raises(ModelError, match="cannot read"):
        tmva.load(tmp_path / "missing.xml")


@pytest.mark.parametrize("boost,analysis", [("Grad", "Classification"), ("AdaBoost", "Classification"),
                                            ("Grad", "Regression")])
def test_load_dispatch_and_compiled(tmp_path, boost, analysis):
    """ml4ep.bdt.load recognises the XML, and the generated C++ (tanh output included) gives TMVA's values."""
    import ml4ep.bdt as mb

    text = weight_file(boost=boost, analysis=analysis, n_trees=6, seed=3)
    path = tmp_path / "TMVA_BDT.weights.xml"
    path.write_text(text)
    forest = mb.load(path)
    X = rows()
    ref = np.array([tmva_value(text, x) for x in X])
    np.testing.assert_allclose(forest.compile().predict(X), ref, rtol=1e-12, atol=1e-12)
