"""TMVA BDT weight files (XML, ``<MethodSetup Method="BDT::name">``), as written by ROOT's TMVA.

Split convention ``<``. TMVA's rule (``DecisionTreeNode::GoesRight``): ``r = (x >= Cut)``; the event goes
right when ``r`` for ``cType="1"`` and when ``not r`` for ``cType="0"``. A ``cType="1"`` node therefore goes
left when ``x < Cut``; a ``cType="0"`` node goes left when ``x >= Cut``, and is stored here with its children
swapped, so every IR node goes (IR-)left when ``x < Cut``. Cuts, leaf responses, purities and boost weights
are ``Float_t`` in TMVA, as are the input values (``Event::GetValue``): thresholds are float32 (inputs are
compared as float32) and leaf values are the float32 numbers TMVA reads, widened to float64.

Missing values: TMVA has no learned missing direction. ``NaN >= Cut`` is false, so a NaN goes left at a
``cType="1"`` node and right at a ``cType="0"`` node: always to the ``x < Cut`` side, which is IR-left
(``default_left`` is True everywhere). This follows TMVA's arithmetic; TMVA itself does not document NaN input.

Outputs (``MethodBDT::PrivateGetMvaValue``, ``GetGradBoostMVA``, ``GetRegressionValues``, ``GetMulticlassValues``):

* classification, ``BoostType=Grad``: ``2 / (1 + exp(-2 s)) - 1`` (= ``tanh(s)``), ``s`` the sum of the leaf
  responses (``res``); :meth:`Forest.margin` is ``s``.
* classification, any other boost type (AdaBoost, RealAdaBoost, AdaCost, Bagging): the boost-weighted mean
  ``sum_i w_i v_i / sum_i w_i`` of the leaf values ``v`` (``nType``, +1 signal / -1 background, with
  ``UseYesNoLeaf=True``; the leaf ``purity`` otherwise; RealAdaBoost and AdaCost never use yes/no leaves).
  The weights ``w_i / sum w`` are folded into the leaf values. ``NodePurityLimit`` only decided each leaf's
  ``nType`` at training time; it plays no part in the evaluation. Old files with ``UseWeightedTrees=False``
  give every tree the weight 1.
* multiclass (``Grad``): softmax over the per-class sums; tree ``i`` feeds class ``i mod NClass``.
* regression: ``Grad``: sum of the leaf responses plus the first tree's boost weight (the initial response);
  AdaBoost/Bagging: boost-weighted mean of the leaf responses. ``AdaBoostR2`` (a weighted median) is not a
  sum of trees and is refused. TMVA's Reader returns regression and multiclass values as float32; these are
  the float64 values before that rounding.

Refused with a :class:`ModelError`: input transformations (any non-empty ``<Transformations>``), Fisher cuts
(``NCoef > 0``), active preselection cuts, truncated or malformed XML, files that are not a BDT.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import numpy as np

from . import read_model_file
from ..forest import Forest, ModelError, Tree

BOOST_TYPES = ("AdaBoost", "RealAdaBoost", "AdaCost", "Bagging", "AdaBoostR2", "Grad")
_REGRESSION_TREE = 1  # TMVA's Types::kRegression: the tree's leaves answer with their response (res)


def load(path: str | os.PathLike) -> Forest:
    """A TMVA BDT weight file (``*.weights.xml``)."""
    path, data = read_model_file(path)
    return from_string(data, path)


def from_string(text: str | bytes, source: str = "TMVA XML") -> Forest:
    """A TMVA BDT weight file's content."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ModelError(f"{source}: not readable XML, the file is truncated or malformed ({exc})") from None
    method = root.get("Method", "")
    if root.tag != "MethodSetup" or not method.startswith("BDT::"):
        what = f"Method={method!r}" if root.tag == "MethodSetup" else f"root element <{root.tag}>"
        raise ModelError(f"{source}: not a TMVA BDT weight file ({what}; expected <MethodSetup Method=\"BDT::...\">)")
    try:
        return _forest(root, method, source)
    except ModelError:
        raise
    except ValueError as exc:  # a number that does not parse
        raise ModelError(f"{source}: malformed weight file ({exc})") from None


def _forest(root, method: str, source: str) -> Forest:
    options = {o.get("name"): (o.text or "").strip() for o in root.iterfind("Options/Option")}
    info = {i.get("name"): i.get("value", "") for i in root.iterfind("GeneralInfo/Info")}

    analysis = _analysis(info, root, source)
    # TMVA's defaults (MethodBDT::Init) when a file does not state its BoostType
    boost = options.get("BoostType", "AdaBoostR2" if analysis == "Regression" else "AdaBoost")
    if boost not in BOOST_TYPES:
        raise ModelError(f"{source}: unknown BoostType {boost!r} (TMVA's are {', '.join(BOOST_TYPES)})")
    _no_transformations(root, source)
    names, meta = _variables(root, source)
    n_features = len(names)

    weights = root.find("Weights")
    if weights is None:
        raise ModelError(f"{source}: no <Weights> element (the file is truncated or not a trained BDT)")
    _no_preselection(weights, source)
    tree_type = int(_attr(weights, "AnalysisType", source, weights.get("TreeType")))
    trees_xml = list(weights.iterfind("BinaryTree"))
    n_trees = int(_attr(weights, "NTrees", source))
    if not trees_xml or len(trees_xml) != n_trees:
        raise ModelError(f"{source}: <Weights NTrees=\"{n_trees}\"> holds {len(trees_xml)} trees")
    boost_w = np.array([_f32(_attr(t, "boostWeight", source)) for t in trees_xml])
    bad = np.flatnonzero(~np.isfinite(boost_w))
    if len(bad):
        raise ModelError(f"{source}: tree {int(bad[0])}: boostWeight "
                         f"{trees_xml[bad[0]].get('boostWeight')!r} is not a finite number")

    yes_no = _bool(options.get("UseYesNoLeaf", "True")) and boost not in ("RealAdaBoost", "AdaCost")
    if tree_type == _REGRESSION_TREE:
        leaf_attr = "res"
    else:
        leaf_attr = "nType" if yes_no else "purity"

    trees = [_tree(t.find("Node"), i, leaf_attr, n_features, source) for i, t in enumerate(trees_xml)]
    meta.update(boost_type=boost, analysis=analysis, method=method, leaf_value=leaf_attr,
                tmva_release=info.get("TMVA Release", ""), boost_weights=boost_w.tolist())
    n_outputs, transform, base, output_shape = 1, "identity", 0.0, "vector"
    tree_output = np.zeros(len(trees), dtype=np.int64)

    if boost == "Grad":
        if analysis == "Multiclass":
            n_outputs = _n_classes(root, source)
            if n_outputs > len(trees) or len(trees) % n_outputs:
                raise ModelError(f"{source}: {len(trees)} trees do not make whole rounds of one tree per class "
                                 f"for NClass={n_outputs}")
            tree_output = np.arange(len(trees)) % n_outputs
            transform, output_shape = "softmax", "matrix"
        elif analysis == "Regression":
            base = boost_w[0]
        else:
            transform = "tanh"
    else:
        if analysis == "Multiclass":
            raise ModelError(f"{source}: multiclass BDT with BoostType={boost} (TMVA supports only Grad)")
        if analysis == "Regression" and boost == "AdaBoostR2":
            raise ModelError(f"{source}: BoostType=AdaBoostR2 regression (a weighted median of the trees) "
                             "is not a sum of trees and is not supported")
        if not _bool(options.get("UseWeightedTrees", "True")):
            boost_w = np.ones_like(boost_w)
        norm = boost_w.sum()
        scale = boost_w / norm if norm > np.finfo(np.float64).eps else np.zeros_like(boost_w)
        for t, s in zip(trees, scale):
            t.value = t.value * s
    meta["output"] = {"tanh": "2/(1+exp(-2*sum))-1", "softmax": "softmax of the class sums"}.get(
        transform, "sum of the trees" if boost == "Grad" else "boost-weighted mean of the trees")

    return Forest(trees=trees, tree_output=tree_output, n_features=n_features, n_outputs=n_outputs,
               base_score=np.full(n_outputs, base), transform=transform, split="<",
               output_shape=output_shape, feature_names=names, source=source, meta=meta)


# -- pieces --------------------------------------------------------------------------------------------
def _f32(text) -> float:
    """A number as TMVA reads it into a ``Float_t`` (beyond its range: +-inf)."""
    with np.errstate(over="ignore"):
        return float(np.float32(float(text)))


def _bool(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes", "t")


def _attr(el, name: str, source: str, default: str | None = None) -> str:
    v = el.get(name, default)
    if v is None:
        raise ModelError(f"{source}: <{el.tag}> lacks the attribute {name!r}")
    return v


def _no_transformations(root, source: str) -> None:
    tr = root.find("Transformations")
    if tr is None:
        return
    kinds = [t.get("Name", "?") for t in tr.iterfind("Transform")]
    if kinds or int(tr.get("NTransformations", "0") or 0) > 0:
        raise ModelError(f"{source}: the BDT applies input transformations ({', '.join(kinds) or 'unnamed'}); "
                         "models with <Transformations> are not supported (retrain without VarTransform)")


def _no_preselection(weights, source: str) -> None:
    for k, v in weights.attrib.items():
        if k.startswith("Preselection") and not k.endswith("Value") and _bool(v):
            raise ModelError(f"{source}: the BDT uses preselection cuts (DoPreselection, {k}); not supported")


def _variables(root, source: str):
    var_el = root.find("Variables")
    if var_el is None:
        raise ModelError(f"{source}: no <Variables> element")
    variables = sorted(var_el.iterfind("Variable"), key=lambda v: int(v.get("VarIndex", "0")))
    if not variables:
        raise ModelError(f"{source}: <Variables> lists no variable")
    nvar = var_el.get("NVar")
    if nvar is not None and int(nvar) != len(variables):
        raise ModelError(f"{source}: <Variables NVar=\"{nvar}\"> lists {len(variables)} variables")
    names = [v.get("Label") or v.get("Expression") or f"var{i}" for i, v in enumerate(variables)]
    meta = {
        "expressions": [v.get("Expression", n) for v, n in zip(variables, names)],
        "ranges": [(float(v.get("Min", "nan")), float(v.get("Max", "nan"))) for v in variables],
        "types": [v.get("Type", "F") for v in variables],
    }
    return names, meta


def _analysis(info: dict, root, source: str) -> str:
    a = info.get("AnalysisType")
    if a is None:  # old files: infer it
        if root.find("Targets") is not None and int(root.find("Targets").get("NTrgt", "0") or 0) > 0:
            return "Regression"
        classes = root.find("Classes")
        if classes is not None and int(classes.get("NClass", "2") or 2) > 2:
            return "Multiclass"
        return "Classification"
    a = a.strip().capitalize()
    if a not in ("Classification", "Regression", "Multiclass"):
        raise ModelError(f"{source}: unknown AnalysisType {a!r}")
    return a


def _n_classes(root, source: str) -> int:
    classes = root.find("Classes")
    n = int(classes.get("NClass", "0") or 0) if classes is not None else 0
    if n < 2:
        raise ModelError(f"{source}: multiclass BDT without a <Classes NClass=...> count")
    return n


def _tree(node_el, index: int, leaf_attr: str, n_features: int, source: str) -> Tree:
    """One ``<BinaryTree>``'s nodes, depth first (a node, its left daughter's subtree, its right daughter's),
    children found by their ``pos`` (``l``/``r``). Iterative: a tree as deep as TMVA can write is read."""
    where = f"{source}: tree {index}"
    if node_el is None:
        raise ModelError(f"{where} has no <Node>")
    feature, thr, below, above, ctypes, value = [], [], [], [], [], []
    stack = [(node_el, -1, 0, 0)]  # element, parent, which daughter slot (0: below, 1: above), depth
    while stack:
        el, parent, slot, depth = stack.pop()
        i = len(feature)
        if parent >= 0:
            (below if slot == 0 else above)[parent] = i
        feature.append(-1)
        thr.append(0.0)
        below.append(0)
        above.append(0)
        ctypes.append(1)
        value.append(0.0)
        node = f"{where}, node {i} (depth {depth})"
        try:
            n_type = int(_attr(el, "nType", node))
            if n_type != 0:  # a leaf: TMVA stops at the first node whose nType is not 0
                if leaf_attr == "purity" and el.get("purity") is None:
                    ns, nb = _f32(_attr(el, "nS", node)), _f32(_attr(el, "nB", node))
                    # DecisionTreeNode::SetPurity: 0.5 when the node holds no events
                    value[i] = _f32(ns / (ns + nb)) if ns + nb > 0 else 0.5
                else:
                    value[i] = _f32(_attr(el, leaf_attr, node))
                if not np.isfinite(value[i]):
                    raise ModelError(f"{node}: the leaf's {leaf_attr} {value[i]!r} is not a finite number")
                continue
            if int(el.get("NCoef", "0") or 0) > 0:
                raise ModelError(f"{where} uses Fisher cuts (NCoef > 0); not supported")
            ivar = int(_attr(el, "IVar", node))
            cut = _f32(_attr(el, "Cut", node))
            ctype = int(_attr(el, "cType", node))
        except ValueError as exc:
            if isinstance(exc, ModelError):
                raise
            raise ModelError(f"{node}: malformed node attribute ({exc})") from None
        if not 0 <= ivar < n_features:
            raise ModelError(f"{node}: cuts on variable {ivar}, the model has {n_features}")
        if not np.isfinite(cut):
            raise ModelError(f"{node}: the cut {el.get('Cut')!r} is not a finite number (as a float)")
        kids = {c.get("pos"): c for c in el.iterfind("Node")}
        if "l" not in kids or "r" not in kids:
            raise ModelError(f"{node}: an inner node without both daughters (truncated?)")
        feature[i], thr[i], ctypes[i] = ivar, cut, ctype
        stack.append((kids["r"], i, 1, depth + 1))
        stack.append((kids["l"], i, 0, depth + 1))  # popped first: the left daughter's subtree comes next
    n = len(feature)
    below, above, ctypes = np.array(below), np.array(above), np.array(ctypes)
    # cType 1: right when x >= cut, so x < cut -> left; cType 0: the reverse, so swap
    return Tree(feature=np.array(feature, dtype=np.int32), threshold=np.array(thr, dtype=np.float32),
                left=np.where(ctypes != 0, below, above).astype(np.int32),
                right=np.where(ctypes != 0, above, below).astype(np.int32),
                default_left=np.ones(n, dtype=bool), value=np.array(value, dtype=np.float64))
