"""C++ for a forest: the trees as data tables plus one kernel, so a forest of any size compiles in seconds.

Layout: every tree is padded to a complete binary tree of the forest's depth ``D``: internal node ``i`` has
children ``2i+1`` (left) and ``2i+2`` (right), and a leaf reached above depth ``D`` is pushed down along
always-left nodes, so that every row takes exactly ``D`` branch-free steps per tree and the step is
``i = 2i + 1 + right``. Rows are processed in blocks of 64 against one tree at a time (the tree stays in
cache, the 64 independent walks overlap); a single row walks 8 trees side by side. Forests deeper than
``MAX_PADDED_DEPTH`` keep their own node order and walk with child indices instead.

Forests of depth <= 6 (XGBoost's default) take the ranked kernel (``ranked_tables``) on every x86-64 CPU with
SSSE3 and POPCNT (x86-64-v2 and up): every node of every tree is decided many at a time by byte operations on the
row's per-feature threshold ranks, and each tree's leaf is read from its 64-bit word with two table lookups; no
node-by-node walk, no branch, the same results. The row's rank table is looked up by one vpermb per 64 nodes with
AVX-512 VBMI (Intel Ice Lake and later, AMD Zen 4 and later), else by 16-entry byte shuffles (vpshufb) over 64
(AVX-512BW), 32 (AVX2) or 16 (SSSE3) nodes, one per 16-entry chunk of the table. The kernel is chosen by the ISA
macros when the header is compiled; elsewhere (baseline x86-64, other architectures) the walks above run.

The C++ that does not depend on the forest lives in template files beside this module (package data, filled by
:func:`ml4ep._native.template.render`): ``cpp/forest.hpp`` (the header: the kernels around the forest's constants
and tables, which this module computes), ``cpp/bridge.cpp`` (the CPython extension module of
:mod:`ml4ep.bdt.compiled`) and ``cpp/example.cpp`` (the example program ``forest.save`` writes).

The generated header needs only the C++17 standard library (and the compiler's intrinsics header when it
targets x86-64 with SSSE3 or more):

    #include "model.hpp"
    double y[N_OUTPUTS * n];
    model::predict(x, n, y);        // x: n rows x N_FEATURES, float or double; y: what predict() gives
"""

from __future__ import annotations

import numpy as np

from .._native import template
from .._native.names import text
from ..infer.literals import literal
from .forest import ZERO_BAND, Forest, ModelError

MAX_PADDED_DEPTH = 12
BLOCK = 64
MAX_FEATURES = 1 << 20  # input width of generated code


def _c_float(v: float, suffix: str) -> str:
    """A float (``suffix`` "f") or double literal: ml4ep.infer's one renderer (shortest round trip, inf, NaN, -0.0)."""
    return literal(v, "float" if suffix == "f" else "double")


def _array(ctype: str, name: str, values, fmt) -> str:
    items = [fmt(v) for v in values]
    lines = [", ".join(items[i:i + 16]) for i in range(0, len(items), 16)] or ["0"]
    return f"alignas(64) static const {ctype} {name}[] = {{\n  " + ",\n  ".join(lines) + "\n};\n"


def tables(forest: Forest) -> dict:
    """The forest as flat arrays for the kernel (padded layout when shallow enough)."""
    depth = max((t.depth for t in forest.trees), default=0)
    padded = depth <= MAX_PADDED_DEPTH
    k = forest.n_outputs
    vector = np.asarray(forest.tree_output) < 0
    feats, thrs, flags, leaves, lefts, rights = [], [], [], [], [], []
    for t, vec in zip(forest.trees, vector):
        value = np.asarray(t.value, dtype=np.float64).reshape(len(t.feature), -1)
        width = k if vec else 1
        if value.shape[1] != width:
            raise ModelError(f"{forest.source}: a tree's leaves have {value.shape[1]} values, expected {width}")
        zm = t.zero_missing if t.zero_missing is not None else np.zeros(len(t.feature), bool)
        if padded:
            n_inner, n_leaf = (1 << depth) - 1, 1 << depth
            # padding nodes read the NaN slot after the features and send NaN left: always left
            f = np.full(n_inner, forest.n_features, np.int32)
            th = np.zeros(n_inner)
            fl = np.ones(n_inner, np.uint8)
            lv = np.zeros((n_leaf, width))
            stack = [(0, 0, 0)]  # (source node, padded index, level)
            while stack:
                node, idx, level = stack.pop()
                if t.feature[node] < 0:
                    # push the leaf down the always-left path to the last level
                    while level < depth:
                        idx, level = 2 * idx + 1, level + 1
                    lv[idx - n_inner] = value[node]
                    continue
                f[idx] = t.feature[node]
                th[idx] = t.threshold[node]
                fl[idx] = int(bool(t.default_left[node])) | (int(bool(zm[node])) << 1)
                stack.append((int(t.left[node]), 2 * idx + 1, level + 1))
                stack.append((int(t.right[node]), 2 * idx + 2, level + 1))
            feats.append(f)
            thrs.append(th)
            flags.append(fl)
            leaves.append(lv.reshape(-1))
        else:
            feats.append(np.asarray(t.feature, np.int32))
            thrs.append(np.asarray(t.threshold, np.float64))
            flags.append((np.asarray(t.default_left, np.uint8) | (zm.astype(np.uint8) << 1)))
            lefts.append(np.asarray(t.left, np.int32))
            rights.append(np.asarray(t.right, np.int32))
            leaves.append(value.reshape(-1))
    node_off = np.r_[0, np.cumsum([len(f) for f in feats])].astype(np.int64)
    leaf_off = np.r_[0, np.cumsum([len(v) for v in leaves])].astype(np.int64)
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    return {
        "padded": padded, "depth": depth,
        "feature": cat(feats, np.int32), "threshold": cat(thrs, np.float64), "flags": cat(flags, np.uint8),
        "left": cat(lefts, np.int32), "right": cat(rights, np.int32), "leaf": cat(leaves, np.float64),
        "node_off": node_off, "leaf_off": leaf_off,
        "tree_output": np.asarray(forest.tree_output, np.int32),
    }


RANK_MAX_DEPTH = 6  # a tree's nodes fit one 64-bit word
RANK_CUTS = 254  # sorted cuts per table slot: ranks 0..254, and 255 for a missing value, fit a byte
RANK_SLOTS = 127  # table slots; twice that (the ranks, then the ranks + 1) fits 256 bytes


def _blocked_order(depth: int) -> np.ndarray:
    """Bit position of every heap-ordered node of a complete tree in the ranked kernel's word: the top
    ``depth - depth // 2`` levels first (heap order), then each bottom subtree's nodes together (heap order)."""
    d1, d2 = depth - depth // 2, depth // 2
    top, sub = (1 << d1) - 1, (1 << d2) - 1
    pos = np.zeros((1 << depth) - 1, np.int64)
    for i in range(len(pos)):
        d = (i + 1).bit_length() - 1
        p = i - ((1 << d) - 1)
        if d < d1:
            pos[i] = i
        else:
            dd = d - d1
            pos[i] = top + (p >> dd) * sub + (1 << dd) - 1 + (p & ((1 << dd) - 1))
    return pos


def _leaf_table(depth: int) -> np.ndarray:
    """Leaf reached in a complete tree of ``depth`` for every word of its nodes' go-right bits (heap order)."""
    n = (1 << depth) - 1
    out = np.zeros(1 << n, np.uint8)
    for m in range(1 << n):
        j = 1
        for _ in range(depth):
            j = 2 * j + ((m >> (j - 1)) & 1)
        out[m] = j - (1 << depth)
    return out



def ranked_tables(forest: Forest, tb: dict) -> dict | None:
    """Tables of the ranked kernel, or None when the forest does not fit it.

    Every feature's distinct thresholds are sorted and cut into slots of at most 254 (``cuts``, NaN-padded to
    256 per slot; a feature with more thresholds takes several slots). A row becomes one byte per slot,
    ``q`` = how many of the slot's cuts send it right (255 when the value is missing), and a node one byte, its
    threshold's rank ``r`` in its slot (plus one when a missing value goes left). A node sends the row right
    exactly when ``q > r`` (``q + 1 > r + 1`` for default-left nodes, where a missing value's 255 wraps to 0),
    so 64 nodes are decided by one byte permutation and one byte comparison, for rows with and without NaN
    (``feature``/``rank``: the table index, q or q + 1, and ``r``, for vpermb). Without VBMI the row's q are
    looked up by 16-entry byte shuffles, one per ``chunks`` of 16 slots, and default-left nodes add their 1 after
    the lookup (``shuffle``: per 64 nodes, the slots, ``r`` as signed bytes, the default-left bits).
    A tree's nodes sit in one 64-bit word in the order of ``_blocked_order``: the leaf is then read from two
    small tables (top levels, then the bottom subtree they lead to: ``top`` holds where its bits start and its
    first leaf), with no walk node by node.
    Needs a padded forest of depth <= 6, at most 127 slots, no zero-as-missing nodes, no NaN thresholds.
    """
    depth, nf = tb["depth"], forest.n_features
    if not tb["padded"] or not 1 <= depth <= RANK_MAX_DEPTH or not forest.trees:
        return None
    if any(t.zero_missing is not None for t in forest.trees):
        return None
    if any(np.isnan(t.threshold[t.feature >= 0]).any() for t in forest.trees):
        return None  # a NaN threshold sends every value right: no rank says that
    n_inner, slots = (1 << depth) - 1, 1 << depth
    n_trees = len(forest.trees)
    feat = tb["feature"].reshape(n_trees, n_inner)
    dtype = np.float32 if all(t.threshold.dtype == np.float32 for t in forest.trees) else np.float64
    thr = tb["threshold"].reshape(n_trees, n_inner).astype(dtype)
    dl = (tb["flags"].reshape(n_trees, n_inner) & 1).astype(np.int64)
    real = feat < nf
    slot = np.zeros(feat.shape, np.int64)
    rank = np.zeros(feat.shape, np.int64)
    source, cuts = [], []
    for f in np.unique(feat[real]).tolist():  # the features splits use (a file may declare billions)
        sel = real & (feat == f)
        u = np.unique(thr[sel])
        idx = np.searchsorted(u, thr[sel])
        slot[sel] = len(source) + idx // RANK_CUTS
        rank[sel] = idx % RANK_CUTS
        for c in range(0, len(u), RANK_CUTS):
            source.append(f)
            cuts.append(np.pad(u[c:c + RANK_CUTS], (0, 256 - len(u[c:c + RANK_CUTS])), constant_values=np.nan))
            if len(source) > RANK_SLOTS:
                return None
    n_slots = len(source)
    half = 32 if n_slots <= 32 else 64 if n_slots <= 64 else 128
    total = -(-n_trees * slots // 64) * 64
    # padding nodes (and the unused last bit of every tree's word) read slot 0 against 255: never right
    rf = np.zeros(total, np.uint8)
    rt = np.full(total, 255, np.uint8)
    pos = (np.arange(n_trees)[:, None] * slots + _blocked_order(depth)[None, :]).reshape(-1)
    # default-left nodes read the second half of the row's table, which holds q + 1 (ranks are <= 253: a real
    # node's byte is at most 254)
    rf[pos] = np.where(real, slot + half * dl, 0).reshape(-1)
    rt[pos] = np.where(real, rank + dl, 255).reshape(-1)
    d1, d2 = depth - depth // 2, depth // 2
    # the byte-shuffle variant (AVX2, SSSE3, AVX-512BW without VBMI): per 64 nodes, 64 bytes of slot indices,
    # 64 of thresholds (r + 1 for default-left nodes) as signed bytes (+128), 64 of default-left bits
    slot_b = (rf.astype(np.int64) % half).astype(np.uint8).reshape(-1, 64)
    dl_b = (rf >= half).astype(np.uint8).reshape(-1, 64)
    thr_b = (rt ^ 0x80).astype(np.uint8).reshape(-1, 64)
    # the top table gives where the bottom subtree's bits start (low byte) and its first leaf (high byte)
    top = _leaf_table(d1).astype(np.int64)
    top_entry = ((1 << d1) - 1 + top * ((1 << d2) - 1)) | (top << d2) << 8
    return {"feature": rf, "rank": rt, "half": half, "nodes": total, "top": top_entry,
            "shuffle": np.stack([slot_b, thr_b, dl_b], axis=1).reshape(-1), "chunks": (n_slots + 15) // 16,
            "bottom": _leaf_table(d2) if d2 else np.zeros(1, np.uint8),
            "source": np.asarray(source, np.int32), "cuts": np.concatenate(cuts).astype(dtype)}


def header(forest: Forest, name: str) -> str:
    """The self-contained C++ header of ``forest`` in namespace ``name``: the template ``cpp/forest.hpp`` (the kernels)
    filled with the forest's constants and tables."""
    if forest.n_features > MAX_FEATURES:  # rows are copied into blocks of BLOCK rows: keep that within memory
        raise ModelError(f"{forest.source}: the model declares {forest.n_features} input features; generated code "
                         f"takes at most {MAX_FEATURES} (forest.predict in Python has no such limit)")
    tb = tables(forest)
    thr_type = "float" if all(t.threshold.dtype == np.float32 for t in forest.trees) else "double"
    acc_type = "float" if forest.meta.get("accumulate") == "float32" else "double"
    suffix = "f" if thr_type == "float" else ""
    lsuffix = "f" if acc_type == "float" else ""
    less = "<" if forest.split == "<" else "<="
    transform = {"identity": 0, "sigmoid": 1, "softmax": 2, "exp": 3, "tanh": 4}[forest.transform]
    arrays = [_array("int32_t", "feature", tb["feature"], str),
              _array("Threshold", "threshold", tb["threshold"], lambda v: _c_float(v, suffix)),
              _array("uint8_t", "flags", tb["flags"], str),
              _array("Acc", "leaf", tb["leaf"], lambda v: _c_float(v, lsuffix)),
              _array("int64_t", "node_off", tb["node_off"], str),
              _array("int64_t", "leaf_off", tb["leaf_off"], str),
              _array("int32_t", "tree_output", tb["tree_output"], str),
              _array("double", "base_score", forest.base_score, lambda v: _c_float(v, "")),
              # child indices: used by the unpadded walk only (one dummy entry otherwise)
              _array("int32_t", "left", tb["left"], str), _array("int32_t", "right", tb["right"], str)]
    rk = ranked_tables(forest, tb)
    ranked = {"RANKED_USE": "used" if rk else "not applicable to this forest", "RANKED": _bool(rk is not None),
              "RANK_NODES": rk["nodes"] if rk else 0, "RANK_SLOTS": len(rk["source"]) if rk else 0,
              "RANK_HALF": rk["half"] if rk else 32, "RANK_CHUNKS": rk["chunks"] if rk else 1}
    if rk is None:  # one placeholder entry each: the kernel compiles, and is never called
        rk = {"feature": [0] * 64, "rank": [0] * 64, "cuts": [0.0], "source": [0], "top": [0], "bottom": [0],
              "shuffle": [0] * 192}
    rank_arrays = [_array("int32_t", "rank_source", rk["source"], str),
                   _array("uint8_t", "rank_feature", rk["feature"], str),
                   _array("uint8_t", "rank_threshold", rk["rank"], str),
                   _array("uint8_t", "rank_shuffle", rk["shuffle"], str),
                   _array("uint16_t", "leaf_top", rk["top"], str), _array("uint8_t", "leaf_bottom", rk["bottom"], str),
                   _array("Threshold", "cuts", rk["cuts"], lambda v: _c_float(v, suffix)),
                   _array("Threshold", "fences", np.asarray(rk["cuts"]).reshape(-1, 16)[:, 15] if len(rk["cuts"]) > 1
                          else [0.0], lambda v: _c_float(v, suffix))]
    zero_missing = any(t.zero_missing is not None for t in forest.trees)
    return template.render(
        "ml4ep.bdt", "cpp/forest.hpp", NAME=name, SOURCE=text(forest.source or "a forest"),
        N_FEATURES=forest.n_features, N_OUTPUTS=forest.n_outputs, N_TREES=len(forest.trees), DEPTH=tb["depth"],
        PADDED=_bool(tb["padded"]), TRANSFORM=transform, AVERAGE=_bool(forest.average),
        ARGMAX=_bool(forest.meta.get("argmax")), THRESHOLD=thr_type, ACC=acc_type,
        TABLES="\n".join(arrays), RANK_TABLES="\n".join(rank_arrays), **ranked,
        LESS=less, ZERO_BAND=repr(ZERO_BAND), ZERO_MISSING=_bool(zero_missing), BLOCK=BLOCK,
        CUT_PRED="_CMP_LE_OQ" if forest.split == "<" else "_CMP_LT_OQ", CUT_SSE="le" if forest.split == "<" else "lt")


def _bool(v) -> str:
    return "true" if v else "false"


def bridge(name: str, module: str) -> str:
    """The CPython extension module ``module`` around ``<name>.hpp`` (``cpp/bridge.cpp``): ``predict(x, y, n,
    threads)`` and ``OUTPUTS_PER_ROW``."""
    return template.render("ml4ep.bdt", "cpp/bridge.cpp", NAME=name, MODULE=module)


def example(name: str) -> str:
    """The example program saved beside ``<name>.hpp`` (``cpp/example.cpp``)."""
    return template.render("ml4ep.bdt", "cpp/example.cpp", NAME=name)
