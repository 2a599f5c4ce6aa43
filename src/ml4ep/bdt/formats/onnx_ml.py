"""ONNX-ML tree ensembles: the ``TreeEnsembleRegressor`` and ``TreeEnsembleClassifier`` operators
(domain ``ai.onnx.ml``, opsets 1 and 3), from ``.onnx`` files or ``onnx.ModelProto`` objects in memory.

Split convention: ``BRANCH_LEQ`` (true branch when ``x <= t``) and ``BRANCH_LT`` map directly to ``"<="`` and
``"<"`` with the true node on the left. ``BRANCH_GT`` (``x > t``, i.e. not ``x <= t``) and ``BRANCH_GTE``
(``x >= t``, i.e. not ``x < t``) become ``"<="`` and ``"<"`` with the children swapped. A model whose modes need
both conventions, and ``BRANCH_EQ`` / ``BRANCH_NEQ``, are refused. A NaN takes the true branch where
``nodes_missing_value_tracks_true`` is set, the false branch otherwise (every comparison with NaN is false).
Thresholds keep the attribute's precision (``nodes_values``: float32, compared with float32 inputs, as
onnxruntime does for a float input).

Outputs follow onnxruntime's: regressors give ``(n, n_targets)``, classifiers the ``(n, n_classes)`` scores
after ``post_transform`` (``NONE``, ``LOGISTIC``, ``SOFTMAX``; ``SOFTMAX_ZERO`` and ``PROBIT`` are refused).
A binary classifier with a single weight set (``class_ids`` all 0), as converted gradient boosting and random
forests are, gives two columns from its score ``s``: ``(sigmoid(-s), sigmoid(s))`` under ``LOGISTIC``, otherwise
``(1 - s, s)`` when all weights are >= 0 and ``(-s, s)`` when some is negative; :meth:`Forest.margin` is then
``(-s, s)`` or ``(1 - s, s)``. A regressor with one target ignores ``post_transform``, as onnxruntime does.
onnxruntime adds an output's base value only in rows where a leaf weighted that output: models where this
depends on the row are refused. Aggregation ``SUM`` and ``AVERAGE`` only.
"""

from __future__ import annotations

import os

import numpy as np

from . import read_model_file
from ..forest import MAX_FEATURES, Forest, ModelError, Tree, check_structure

_OPS = ("TreeEnsembleRegressor", "TreeEnsembleClassifier")
_DIRECT = {"BRANCH_LEQ": "<=", "BRANCH_LT": "<"}
_SWAPPED = {"BRANCH_GT": "<=", "BRANCH_GTE": "<"}
_TRANSFORMS = {"NONE": "identity", "LOGISTIC": "sigmoid", "SOFTMAX": "softmax"}
_MAX_CELLS = 1 << 27  # nodes x outputs held as dense leaf values (1 GiB of float64): beyond, refused


def load(path: str | os.PathLike) -> Forest:
    """An ONNX model file holding one ``TreeEnsembleRegressor`` or ``TreeEnsembleClassifier`` node."""
    path = os.fspath(path)
    onnx = _onnx(path)
    path, data = read_model_file(path)
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from None
    return from_model(model, source=path)


def from_model(model, source: str = "onnx.ModelProto") -> Forest:
    """An ``onnx.ModelProto`` (or ``GraphProto``) holding one tree-ensemble node."""
    onnx = _onnx(source)
    graph = model.graph if hasattr(model, "graph") else model
    if not hasattr(graph, "node"):
        raise ModelError(f"{source}: not an ONNX model or graph ({type(model).__name__})")
    trees = [n for n in graph.node if n.op_type in _OPS and n.domain == "ai.onnx.ml"]
    if not trees:
        others = sorted({n.op_type for n in graph.node})
        hint = " (TreeEnsemble of ai.onnx.ml opset 5 is not supported)" if "TreeEnsemble" in others else ""
        raise ModelError(f"{source}: no TreeEnsembleRegressor / TreeEnsembleClassifier node in the graph "
                         f"(nodes: {', '.join(others) or 'none'}){hint}")
    if len(trees) > 1:
        raise ModelError(f"{source}: {len(trees)} tree-ensemble nodes in the graph; only one is supported")
    node = trees[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    n_declared = _input_width(graph, node, source)
    return _convert(node.op_type, attrs, n_declared, source, onnx)


def _onnx(source: str):
    try:
        import onnx
    except ImportError:
        raise ModelError(f"{source}: reading ONNX models needs the 'onnx' package (pip install onnx)") from None
    return onnx


def _input_width(graph, node, source: str) -> int | None:
    """The feature count declared by the graph input feeding the node (through Cast / Identity only)."""
    producers = {out: n for n in graph.node for out in n.output}
    name = node.input[0]
    while name in producers:
        p = producers[name]
        if p.op_type not in ("Cast", "Identity"):
            raise ModelError(f"{source}: the tree ensemble's input comes from a {p.op_type} node; preprocessing "
                             "before the trees is not supported (export the trees alone)")
        name = p.input[0]
    for inp in graph.input:
        if inp.name == name:
            dims = inp.type.tensor_type.shape.dim
            if len(dims) == 2 and dims[1].HasField("dim_value"):
                return int(dims[1].dim_value)
            return None
    return None


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _array(attrs: dict, name: str, onnx, dtype=None) -> np.ndarray | None:
    """An attribute given as a list, or its ``*_as_tensor`` form (opset 3), as an array."""
    if f"{name}_as_tensor" in attrs:
        a = onnx.numpy_helper.to_array(attrs[f"{name}_as_tensor"]).ravel()
    elif name in attrs:
        a = np.asarray(attrs[name])
        if a.dtype.kind == "f":
            a = a.astype(np.float32)  # float attributes are float32 in ONNX
    else:
        return None
    return a.astype(dtype) if dtype is not None else a


def _convert(op: str, attrs: dict, n_declared: int | None, source: str, onnx) -> Forest:
    classifier = op == "TreeEnsembleClassifier"
    prefix = "class" if classifier else "target"
    need = ["nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_truenodeids",
            "nodes_falsenodeids", f"{prefix}_treeids", f"{prefix}_nodeids", f"{prefix}_ids"]
    missing = [k for k in need if k not in attrs]
    if "nodes_values" not in attrs and "nodes_values_as_tensor" not in attrs:
        missing.append("nodes_values")
    if f"{prefix}_weights" not in attrs and f"{prefix}_weights_as_tensor" not in attrs:
        missing.append(f"{prefix}_weights")
    if missing:
        raise ModelError(f"{source}: {op} lacks the attributes {', '.join(missing)}")

    modes = [_text(m) for m in attrs["nodes_modes"]]
    post = _text(attrs.get("post_transform", b"NONE"))
    aggregate = _text(attrs.get("aggregate_function", b"SUM"))
    unsupported = []
    bad_modes = sorted(set(modes) - set(_DIRECT) - set(_SWAPPED) - {"LEAF"})
    if bad_modes:
        unsupported.append(f"node modes {', '.join(bad_modes)}")
    conventions = {(_DIRECT.get(m) or _SWAPPED.get(m)) for m in modes if m in _DIRECT or m in _SWAPPED}
    if len(conventions) > 1:
        used = sorted({m for m in modes if m != "LEAF"})
        unsupported.append(f"mixed split modes {', '.join(used)} (both '<' and '<=' comparisons)")
    if post not in _TRANSFORMS:
        unsupported.append(f"post_transform {post}")
    if aggregate not in ("SUM", "AVERAGE"):
        unsupported.append(f"aggregate_function {aggregate}")
    if unsupported:
        raise ModelError(f"{source}: {op} uses what ml4ep.bdt does not support: {'; '.join(unsupported)}")
    split = conventions.pop() if conventions else "<="

    tree_ids = np.asarray(attrs["nodes_treeids"], dtype=np.int64)
    node_ids = np.asarray(attrs["nodes_nodeids"], dtype=np.int64)
    feature_ids = np.asarray(attrs["nodes_featureids"], dtype=np.int64)
    true_ids = np.asarray(attrs["nodes_truenodeids"], dtype=np.int64)
    false_ids = np.asarray(attrs["nodes_falsenodeids"], dtype=np.int64)
    values = _array(attrs, "nodes_values", onnx)
    n = len(tree_ids)
    tracks = np.asarray(attrs.get("nodes_missing_value_tracks_true", np.zeros(n)), dtype=bool)
    if tracks.size == 0:
        tracks = np.zeros(n, bool)
    lengths = {"nodes_nodeids": len(node_ids), "nodes_featureids": len(feature_ids), "nodes_modes": len(modes),
               "nodes_truenodeids": len(true_ids), "nodes_falsenodeids": len(false_ids),
               "nodes_values": len(values), "nodes_missing_value_tracks_true": len(tracks)}
    wrong = [f"{k} ({v})" for k, v in lengths.items() if v != n]
    w_tree = np.asarray(attrs[f"{prefix}_treeids"], dtype=np.int64)
    w_node = np.asarray(attrs[f"{prefix}_nodeids"], dtype=np.int64)
    w_out = np.asarray(attrs[f"{prefix}_ids"], dtype=np.int64)
    w_val = _array(attrs, f"{prefix}_weights", onnx, np.float64)
    wrong += [f"{prefix}_{k} ({len(a)})" for k, a in (("nodeids", w_node), ("ids", w_out), ("weights", w_val))
              if len(a) != len(w_tree)]
    if wrong:
        raise ModelError(f"{source}: {op} attribute lengths disagree with nodes_treeids ({n}): {', '.join(wrong)}")
    base = _array(attrs, "base_values", onnx, np.float64)
    base = np.zeros(0) if base is None else base.reshape(-1)
    if not np.isfinite(base).all():
        raise ModelError(f"{source}: {op} has base_values {base.tolist()[:8]} that are not all finite numbers")
    bad = np.flatnonzero(~np.isfinite(w_val))
    if len(bad):
        j = int(bad[0])
        raise ModelError(f"{source}: {op}'s {prefix}_weights[{j}] (tree {w_tree[j]}, node {w_node[j]}) is "
                         f"{float(w_val[j])}, not a finite number")

    if classifier:
        labels = attrs.get("classlabels_int64s") or [_text(s) for s in attrs.get("classlabels_strings", [])]
        n_outputs = len(labels)
        if n_outputs < 2:
            raise ModelError(f"{source}: {op} has {n_outputs} class labels; at least 2 are needed")
    else:
        labels = None
        named = max(int(w_out.max()) + 1 if len(w_out) else 1, len(base), 1)
        n_outputs = int(attrs.get("n_targets", named))
        if not 1 <= n_outputs <= named:
            raise ModelError(f"{source}: {op} has n_targets={n_outputs}, but its target_ids and base_values name "
                             f"{named} targets")
    if len(w_out) and (w_out.min() < 0 or w_out.max() >= n_outputs):
        raise ModelError(f"{source}: {op} has {prefix}_ids outside 0..{n_outputs - 1}")
    if n * n_outputs > _MAX_CELLS:
        raise ModelError(f"{source}: {op} has {n} nodes and {n_outputs} outputs: {n * n_outputs} leaf values "
                         f"would be held, more than the {_MAX_CELLS} supported")

    # one IR tree per ONNX tree: leaf values per output; the trees in the order they first appear
    uniq, first, inv = np.unique(tree_ids, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    by_tree = np.argsort(inv, kind="stable")  # every tree's nodes together, in their order in the attributes
    ends = np.cumsum(np.bincount(inv, minlength=len(uniq)))
    order = np.argsort(first, kind="stable")
    position = {(int(t), int(i)): k for k, (t, i) in enumerate(zip(tree_ids, node_ids))}
    if len(position) != n:
        raise ModelError(f"{source}: {op} repeats a (tree id, node id) pair")
    leaf_value = np.zeros((n, n_outputs))
    for t, i, k, w in zip(w_tree, w_node, w_out, w_val):
        at = position.get((int(t), int(i)))
        if at is None:
            raise ModelError(f"{source}: {op} gives a weight to node {i} of tree {t}, which does not exist")
        leaf_value[at, k] += w
    touched = np.zeros((n, n_outputs), bool)
    for t, i, k in zip(w_tree, w_node, w_out):
        touched[position[(int(t), int(i))], k] = True

    trees, outputs, max_feature = [], [], -1
    for u in order:
        t = int(uniq[u])
        where = f"{source}: tree {t}"
        idx = by_tree[(ends[u - 1] if u else 0):ends[u]]
        local = {int(node_ids[j]): m for m, j in enumerate(idx)}
        leaf = np.array([modes[j] == "LEAF" for j in idx])
        swap = np.array([modes[j] in _SWAPPED for j in idx])
        try:
            tn = np.array([local[int(true_ids[j])] if not leaf[m] else 0 for m, j in enumerate(idx)], np.int64)
            fn = np.array([local[int(false_ids[j])] if not leaf[m] else 0 for m, j in enumerate(idx)], np.int64)
        except KeyError as exc:
            raise ModelError(f"{where} points to node {exc.args[0]}, which it does not have") from None
        children = set(tn[~leaf].tolist()) | set(fn[~leaf].tolist())
        roots = [m for m in range(len(idx)) if m not in children]
        if not roots:
            raise ModelError(f"{where} has no root: every node is the child of another (a cycle)")
        # the first node no other points to is the root; check_structure names whatever else is wrong
        # renumber so the root is node 0
        perm = [roots[0]] + [m for m in range(len(idx)) if m != roots[0]]
        new = np.empty(len(idx), np.int64)
        new[perm] = np.arange(len(idx))
        idx, leaf, swap, tn, fn = idx[perm], leaf[perm], swap[perm], new[tn[perm]], new[fn[perm]]
        ids = node_ids[idx]
        name = lambda m, ids=ids: f"node {int(ids[m])}"  # the ONNX node id
        check_structure(tn, fn, ~leaf, where, name)
        feat = feature_ids[idx]
        width = n_declared if n_declared is not None else MAX_FEATURES
        bad = np.flatnonzero(~leaf & ((feat < 0) | (feat >= width)))
        if len(bad):
            m = int(bad[0])
            raise ModelError(f"{where}, {name(m)}: splits on feature {int(feat[m])} but the input has "
                             f"{width} features" if feat[m] >= 0 else
                             f"{where}, {name(m)}: has the negative feature id {int(feat[m])}")
        max_feature = max(max_feature, int(feat[~leaf].max()) if (~leaf).any() else -1)
        thr = values[idx]
        bad = np.flatnonzero(~leaf & np.isnan(thr))
        if len(bad):
            raise ModelError(f"{where}, {name(int(bad[0]))}: the split threshold (nodes_values) is NaN")
        mtt = tracks[idx]
        vals = leaf_value[idx] * leaf[:, None]
        hit = touched[idx] & leaf[:, None]
        used = np.flatnonzero(hit.any(axis=0))
        scalar = len(used) <= 1
        value = vals[:, used[0]] if len(used) == 1 else np.zeros(len(idx)) if scalar else vals
        trees.append(Tree(feature=np.where(leaf, -1, feat).astype(np.int32),
                          threshold=np.where(leaf, thr.dtype.type(0), thr).astype(thr.dtype),
                          left=np.where(leaf, 0, np.where(swap, fn, tn)).astype(np.int32),
                          right=np.where(leaf, 0, np.where(swap, tn, fn)).astype(np.int32),
                          default_left=~leaf & (mtt ^ swap),
                          value=value))
        outputs.append(int(used[0]) if len(used) == 1 else 0 if scalar else -1)

    n_features = n_declared if n_declared is not None else max_feature + 1
    if max_feature >= n_features:
        raise ModelError(f"{source}: the trees use feature {max_feature} but the input has {n_features} features")
    meta = {"format": "onnx-ml", "op": op, "post_transform": post, "aggregate_function": aggregate}
    common = dict(n_features=n_features, split=split, average=aggregate == "AVERAGE", source=source)
    is_leaf = np.array([m == "LEAF" for m in modes], dtype=bool)
    if not classifier:
        if n_outputs > 1:
            _always_scored(base, touched, inv, is_leaf, "target", op, source)
        return _regressor(trees, outputs, n_outputs, base, post, meta, common, source)
    meta["classlabels"] = list(labels)
    return _classifier(trees, outputs, n_outputs, base, post, w_out, w_val, touched & is_leaf[:, None], inv,
                       is_leaf, meta, common, source)


def _scored_everywhere(touched_k, inv, is_leaf) -> bool:
    """Whether some tree gives output k a weight in every one of its leaves (``inv``: each node's tree)."""
    n_trees = int(inv.max()) + 1 if len(inv) else 0
    leaves = np.bincount(inv[is_leaf], minlength=n_trees)
    unscored = np.bincount(inv[is_leaf & ~touched_k], minlength=n_trees)
    return bool(np.any((leaves > 0) & (unscored == 0)))


def _always_scored(base, touched, inv, is_leaf, what: str, op: str, source: str) -> None:
    """onnxruntime adds an output's base value only in rows where some leaf gave that output a weight: refuse
    models where that depends on the row (a nonzero base value for an output that some path never weights)."""
    for k, b in enumerate(base):
        if b != 0 and not _scored_everywhere(touched[:, k], inv, is_leaf):
            raise ModelError(f"{source}: {op} has base value {b:g} for {what} {k}, which only some leaves weight; "
                             "onnxruntime then adds it to some rows only, which is not supported")


def _regressor(trees, outputs, n_outputs, base, post, meta, common, source) -> Forest:
    if n_outputs == 1:
        if len(base) > 1:
            raise ModelError(f"{source}: TreeEnsembleRegressor has {len(base)} base_values for 1 target")
        transform = "identity"  # onnxruntime applies no post_transform but PROBIT to a single target
    else:
        if len(base) not in (0, n_outputs):
            raise ModelError(f"{source}: TreeEnsembleRegressor has {len(base)} base_values for {n_outputs} targets")
        transform = _TRANSFORMS[post]
    return Forest(trees=trees, tree_output=np.asarray(outputs), n_outputs=n_outputs,
                  base_score=base if len(base) else np.zeros(n_outputs), transform=transform,
                  output_shape="matrix", meta=meta, **common)


def _classifier(trees, outputs, n_classes, base, post, w_out, w_val, touched, inv, is_leaf, meta, common,
                source) -> Forest:
    op = "TreeEnsembleClassifier"
    classes = set(w_out.tolist())
    if n_classes == 2 and classes == {0} and len(base) <= 1:
        # onnxruntime's binary case: one score s, written as two columns
        b = float(base[0]) if len(base) else 0.0
        for tree in trees:
            v = tree.value if tree.value.ndim == 1 else tree.value[:, 0]
            tree.value = np.stack([-v, v], axis=1)
        if post == "LOGISTIC":
            base_score, transform = np.array([-b, b]), "sigmoid"
            meta["binary"] = "(sigmoid(-s), sigmoid(s))"
        elif np.all(w_val >= 0):
            base_score, transform = np.array([1.0 - b, b]), "identity"
            meta["binary"] = "(1 - s, s): all weights >= 0 (onnxruntime)"
        else:
            base_score, transform = np.array([-b, b]), "identity"
            meta["binary"] = "(-s, s): some weight < 0 (onnxruntime)"
        return Forest(trees=trees, tree_output=-np.ones(len(trees)), n_outputs=2, base_score=base_score,
                      transform=transform, output_shape="matrix", meta=meta, **common)
    if n_classes == 2:
        # onnxruntime's second column needs a class-1 weight in a leaf every row reaches
        if 1 in classes:
            always = _scored_everywhere(touched[:, 1], inv, is_leaf)
            if not always:
                raise ModelError(f"{source}: {op} gives class 1 weights to some leaves only; onnxruntime's output "
                                 "then changes shape row by row, which is not supported")
            if len(base) == 2:
                raise ModelError(f"{source}: {op} with two classes, weights for class 1 and two base_values: "
                                 "onnxruntime's result (it drops the class-1 scores) is not supported")
            if len(base) == 1:
                base = np.array([base[0], 0.0])
        elif len(base) not in (0, 2):
            raise ModelError(f"{source}: {op} with two classes and {len(base)} base_values is not supported")
    elif len(base) > n_classes:
        raise ModelError(f"{source}: {op} has {len(base)} base_values for {n_classes} classes")
    _always_scored(base, touched, inv, is_leaf, "class", op, source)
    base = np.concatenate([base, np.zeros(n_classes - len(base))])
    return Forest(trees=trees, tree_output=np.asarray(outputs), n_outputs=n_classes, base_score=base,
                  transform=_TRANSFORMS[post], output_shape="matrix", meta=meta, **common)
