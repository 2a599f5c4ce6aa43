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

The generated header needs only the C++17 standard library (and the compiler's intrinsics header when it
targets x86-64 with SSSE3 or more):

    #include "model.hpp"
    double y[N_OUTPUTS * n];
    model::predict(x, n, y);        // x: n rows x N_FEATURES, float or double; y: what predict() gives
"""

from __future__ import annotations

import numpy as np

from ..infer.literals import literal
from ..infer.names import text
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
    """The self-contained C++ header of ``forest`` in namespace ``name``."""
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
    out = [f"// ml4ep.bdt: {len(forest.trees)} trees, depth {tb['depth']}, {forest.n_features} features, "
           f"{forest.n_outputs} output(s); from {text(forest.source or 'a forest')}; split: go left when x {less} threshold",
           f"#pragma once\n#include <cmath>\n#include <cstdint>\n#include <cstddef>\n#include <limits>\n#include <thread>\n"
           f"#if defined(__AVX512BW__) || defined(__AVX2__) || (defined(__SSSE3__) && defined(__POPCNT__))  // ranked\n"
           f"#if defined(__GNUC__) && !defined(__clang__)  // GCC 12's intrinsics warn about their own undefined()\n"
           f"#pragma GCC diagnostic push\n#pragma GCC diagnostic ignored \"-Wmaybe-uninitialized\"\n#endif\n"
           f"#include <immintrin.h>\n"
           f"#if defined(__GNUC__) && !defined(__clang__)\n#pragma GCC diagnostic pop\n#endif\n#endif\n"
           f"#include <type_traits>\n#include <vector>\n\nnamespace {name} {{\n",
           f"constexpr int N_FEATURES = {forest.n_features};",
           f"constexpr int N_OUTPUTS = {forest.n_outputs};",
           f"constexpr int N_TREES = {len(forest.trees)};",
           f"constexpr int DEPTH = {tb['depth']};",
           f"constexpr bool PADDED = {'true' if tb['padded'] else 'false'};",
           f"constexpr int TRANSFORM = {transform};  // 0 identity, 1 sigmoid, 2 softmax, 3 exp, 4 tanh",
           f"constexpr bool AVERAGE = {'true' if forest.average else 'false'};",
           f"constexpr bool ARGMAX = {'true' if forest.meta.get('argmax') else 'false'};",
           f"using Threshold = {thr_type};\nusing Acc = {acc_type};\n",
           "namespace detail {",
           _array("int32_t", "feature", tb["feature"], str),
           _array("Threshold", "threshold", tb["threshold"], lambda v: _c_float(v, suffix)),
           _array("uint8_t", "flags", tb["flags"], str),
           _array("Acc", "leaf", tb["leaf"], lambda v: _c_float(v, lsuffix)),
           _array("int64_t", "node_off", tb["node_off"], str),
           _array("int64_t", "leaf_off", tb["leaf_off"], str),
           _array("int32_t", "tree_output", tb["tree_output"], str),
           _array("double", "base_score", forest.base_score, lambda v: _c_float(v, "")),
           ]
    # child indices: used by the unpadded walk only (one dummy entry otherwise)
    out += [_array("int32_t", "left", tb["left"], str), _array("int32_t", "right", tb["right"], str)]
    rk = ranked_tables(forest, tb)
    out.append(f"// the ranked kernel (x86-64 with SSSE3 and POPCNT, AVX2, AVX-512BW or VBMI): "
               f"{'used' if rk else 'not applicable to this forest'}")
    out.append(f"constexpr bool RANKED = {'true' if rk else 'false'};")
    out.append(f"constexpr int64_t RANK_NODES = {rk['nodes'] if rk else 0};")
    out.append(f"constexpr int RANK_SLOTS = {len(rk['source']) if rk else 0};  // table slots in use")
    out.append(f"constexpr int RANK_HALF = {rk['half'] if rk else 32};  // table entries per half")
    out.append(f"constexpr int RANK_CHUNKS = {rk['chunks'] if rk else 1};  // 16-byte table chunks (shuffles)")
    if rk is None:  # one placeholder entry each: the kernel compiles, and is never called
        rk = {"feature": [0] * 64, "rank": [0] * 64, "cuts": [0.0], "source": [0], "top": [0], "bottom": [0],
              "shuffle": [0] * 192}
    out += [_array("int32_t", "rank_source", rk["source"], str),
            _array("uint8_t", "rank_feature", rk["feature"], str),
            _array("uint8_t", "rank_threshold", rk["rank"], str),
            _array("uint8_t", "rank_shuffle", rk["shuffle"], str),
            _array("uint16_t", "leaf_top", rk["top"], str), _array("uint8_t", "leaf_bottom", rk["bottom"], str),
            _array("Threshold", "cuts", rk["cuts"], lambda v: _c_float(v, suffix)),
            _array("Threshold", "fences", np.asarray(rk["cuts"]).reshape(-1, 16)[:, 15] if len(rk["cuts"]) > 1
                   else [0.0], lambda v: _c_float(v, suffix))]
    zero_missing = any(t.zero_missing is not None for t in forest.trees)
    out.append(_KERNEL.replace("@LESS@", less).replace("@ZERO_BAND@", repr(ZERO_BAND))
               .replace("@ZERO_MISSING@", "true" if zero_missing else "false").replace("@BLOCK@", str(BLOCK))
               .replace("@CUT_PRED@", "_CMP_LE_OQ" if forest.split == "<" else "_CMP_LT_OQ")
               .replace("@CUT_SSE@", "le" if forest.split == "<" else "lt"))
    out.append(f"}}  // namespace {name}\n")
    return "\n".join(out)


_KERNEL = r"""
constexpr int BLOCK = @BLOCK@;  // rows walked side by side per tree

// flags: bit 0 NaN goes left, bit 1 |x| <= ZERO_BAND counts as missing too
constexpr bool ZERO_MISSING = @ZERO_MISSING@;

inline bool goes_left(const Threshold* xr, int64_t i, const int32_t* f, const Threshold* th, const uint8_t* fl) {
  const Threshold v = xr[f[i]];
  bool missing = v != v;
  if constexpr (ZERO_MISSING) missing = missing | (((fl[i] & 2) != 0) & (std::fabs(v) <= Threshold(@ZERO_BAND@)));
  const bool cmp = (v @LESS@ th[i]) & !missing;  // comparisons with NaN are false anyway
  return cmp | (missing & ((fl[i] & 1) != 0));   // branch-free: no misprediction on random data
}

// margins of `rows` (<= BLOCK) rows already converted to Threshold, with a NaN slot after the features
inline void block_margins(const Threshold* xb, int rows, Acc* acc) {
  constexpr int W = N_FEATURES + 1;
  for (int t = 0; t < N_TREES; ++t) {
    const int32_t* f = feature + node_off[t];
    const Threshold* th = threshold + node_off[t];
    const uint8_t* fl = flags + node_off[t];
    int64_t idx[BLOCK];
    for (int r = 0; r < rows; ++r) idx[r] = 0;
    if constexpr (PADDED) {
      for (int d = 0; d < DEPTH; ++d)
        for (int r = 0; r < rows; ++r) idx[r] = 2 * idx[r] + 2 - goes_left(xb + r * W, idx[r], f, th, fl);
      for (int r = 0; r < rows; ++r) idx[r] -= (int64_t(1) << DEPTH) - 1;
    } else {
      const int32_t* lc = left + node_off[t];
      const int32_t* rc = right + node_off[t];
      for (int r = 0; r < rows; ++r) {
        int64_t i = 0;
        while (f[i] >= 0) i = goes_left(xb + r * W, i, f, th, fl) ? lc[i] : rc[i];
        idx[r] = i;
      }
    }
    const Acc* lv = leaf + leaf_off[t];
    const int k = tree_output[t];
    for (int r = 0; r < rows; ++r) {
      if (k >= 0) {
        acc[r * N_OUTPUTS + k] += lv[idx[r]];
      } else {
        for (int o = 0; o < N_OUTPUTS; ++o) acc[r * N_OUTPUTS + o] += lv[idx[r] * N_OUTPUTS + o];
      }
    }
  }
}

inline void finish(const Acc* acc, double* y) {
  double m[N_OUTPUTS];
  for (int o = 0; o < N_OUTPUTS; ++o) {
    double a = static_cast<double>(acc[o]);
    if (AVERAGE) a /= N_TREES;
    m[o] = (std::is_same<Acc, float>::value ? a : a + base_score[o]);
  }
  if (ARGMAX) {
    int best = 0;
    for (int o = 1; o < N_OUTPUTS; ++o) if (m[o] > m[best]) best = o;
    y[0] = best;
    return;
  }
  if (TRANSFORM == 1) {
    for (int o = 0; o < N_OUTPUTS; ++o) y[o] = 1.0 / (1.0 + std::exp(-m[o]));
  } else if (TRANSFORM == 2) {
    double mx = m[0], s = 0;
    for (int o = 1; o < N_OUTPUTS; ++o) mx = m[o] > mx ? m[o] : mx;
    for (int o = 0; o < N_OUTPUTS; ++o) s += (y[o] = std::exp(m[o] - mx));
    for (int o = 0; o < N_OUTPUTS; ++o) y[o] /= s;
  } else if (TRANSFORM == 3) {
    for (int o = 0; o < N_OUTPUTS; ++o) y[o] = std::exp(m[o]);
  } else if (TRANSFORM == 4) {
    for (int o = 0; o < N_OUTPUTS; ++o) y[o] = std::tanh(m[o]);
  } else {
    for (int o = 0; o < N_OUTPUTS; ++o) y[o] = m[o];
  }
}

// one row: 8 trees walked side by side (independent chains of loads instead of one long one)
inline void row_margins(const Threshold* xr, Acc* acc) {
  constexpr int G = 8;
  constexpr int T0 = PADDED ? N_TREES / G * G : 0;  // trees walked G at a time
  if constexpr (PADDED) {
    for (int t0 = 0; t0 < T0; t0 += G) {
      int64_t idx[G] = {};
      for (int d = 0; d < DEPTH; ++d)
        for (int g = 0; g < G; ++g) {
          const int64_t o = node_off[t0 + g];
          idx[g] = 2 * idx[g] + 2 - goes_left(xr, idx[g], feature + o, threshold + o, flags + o);
        }
      for (int g = 0; g < G; ++g) {
        const Acc* lv = leaf + leaf_off[t0 + g];
        const int64_t li = idx[g] - ((int64_t(1) << DEPTH) - 1);
        const int k = tree_output[t0 + g];
        if (k >= 0) {
          acc[k] += lv[li];
        } else {
          for (int o = 0; o < N_OUTPUTS; ++o) acc[o] += lv[li * N_OUTPUTS + o];
        }
      }
    }
  }
  for (int t = T0; t < N_TREES; ++t) {  // the rest (and every tree of unpadded forests)
    const int64_t o = node_off[t];
    int64_t i = 0;
    if constexpr (PADDED) {
      for (int d = 0; d < DEPTH; ++d) i = 2 * i + 2 - goes_left(xr, i, feature + o, threshold + o, flags + o);
      i -= (int64_t(1) << DEPTH) - 1;
    } else {
      while (feature[o + i] >= 0)
        i = goes_left(xr, i, feature + o, threshold + o, flags + o) ? left[o + i] : right[o + i];
    }
    const Acc* lv = leaf + leaf_off[t];
    const int k = tree_output[t];
    if (k >= 0) {
      acc[k] += lv[i];
    } else {
      for (int q = 0; q < N_OUTPUTS; ++q) acc[q] += lv[i * N_OUTPUTS + q];
    }
  }
}

#if defined(__AVX512BW__) || defined(__AVX2__) || (defined(__SSSE3__) && defined(__POPCNT__))
// The ranked kernel: a row becomes one byte per table slot, q = how many of the slot's sorted cuts send it
// right (255: missing); a node sends it right when q (+1 for default-left nodes, wrapping) > its byte. Many
// nodes are decided by one byte table lookup and one comparison; a tree's leaf is then read from its word with
// two table lookups, and the leaves are added in tree order (the same sums as the other kernels).

inline unsigned popcount16(unsigned m) {  // m < 2^16
#if defined(__POPCNT__)
  return static_cast<unsigned>(_mm_popcnt_u32(m));
#else
  m = m - ((m >> 1) & 0x5555u);
  m = (m & 0x3333u) + ((m >> 2) & 0x3333u);
  m = (m + (m >> 4)) & 0x0F0Fu;
  return (m + (m >> 8)) & 0x1Fu;
#endif
}

// how many of the 16 values at p (sorted, NaN-padded, 64-byte aligned) send v right
template <class T>
inline unsigned count16(const T* p, T v) {
#if defined(__AVX512F__)
  if constexpr (std::is_same<T, float>::value) {
    return popcount16(_mm512_cmp_ps_mask(_mm512_load_ps(p), _mm512_set1_ps(v), @CUT_PRED@));
  } else {
    const __m512d x = _mm512_set1_pd(v);
    return popcount16(_mm512_cmp_pd_mask(_mm512_load_pd(p), x, @CUT_PRED@)) +
           popcount16(_mm512_cmp_pd_mask(_mm512_load_pd(p + 8), x, @CUT_PRED@));
  }
#elif defined(__AVX2__)
  if constexpr (std::is_same<T, float>::value) {
    const __m256 x = _mm256_set1_ps(v);
    const unsigned lo = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_load_ps(p), x, @CUT_PRED@)));
    const unsigned hi = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_load_ps(p + 8), x, @CUT_PRED@)));
    return popcount16(lo | hi << 8);
  } else {
    const __m256d x = _mm256_set1_pd(v);
    unsigned m = 0;
    for (int i = 0; i < 4; ++i)
      m |= static_cast<unsigned>(_mm256_movemask_pd(_mm256_cmp_pd(_mm256_load_pd(p + 4 * i), x, @CUT_PRED@))) << 4 * i;
    return popcount16(m);
  }
#else
  if constexpr (std::is_same<T, float>::value) {
    const __m128 x = _mm_set1_ps(v);
    unsigned m = 0;
    for (int i = 0; i < 4; ++i)
      m |= static_cast<unsigned>(_mm_movemask_ps(_mm_cmp@CUT_SSE@_ps(_mm_load_ps(p + 4 * i), x))) << 4 * i;
    return popcount16(m);
  } else {
    const __m128d x = _mm_set1_pd(v);
    unsigned m = 0;
    for (int i = 0; i < 8; ++i)
      m |= static_cast<unsigned>(_mm_movemask_pd(_mm_cmp@CUT_SSE@_pd(_mm_load_pd(p + 2 * i), x))) << 2 * i;
    return popcount16(m);
  }
#endif
}

// q of every slot: the block of 16 cuts from the 16 blocks' last cuts, then the cuts in that block
inline void slot_ranks(const Threshold* xr, uint8_t* q) {
  for (int k = 0; k < RANK_SLOTS; ++k) {
    const Threshold v = xr[rank_source[k]];
    const unsigned b = count16(fences + 16 * k, v);  // <= 15: the last cut is NaN padding
    const unsigned c = count16(cuts + 256 * k + 16 * b, v);
    q[k] = v != v ? uint8_t(255) : static_cast<uint8_t>(16 * b + c);
  }
}

// the leaves of the trees whose node bits are in `right` (64 nodes from node n), added in tree order
template <int R>
inline void add_leaves(int64_t n, const uint64_t* right, Acc* a1, Acc* acc) {
  constexpr int S = RANKED && DEPTH <= 6 ? 1 << DEPTH : 64;  // nodes per tree (the last one unused)
  constexpr int D2 = DEPTH / 2, D1 = DEPTH - D2;  // levels read from leaf_top, then from leaf_bottom
  constexpr int TOP = (1 << D1) - 1, SUB = (1 << D2) - 1;  // nodes of the top tree, of a bottom subtree
  for (int k = 0; k < 64 / S; ++k) {
    const int64_t t = n / S + k;
    if (t >= N_TREES) break;
    const Acc* lv = leaf + leaf_off[t];
    const int o = N_OUTPUTS == 1 ? 0 : tree_output[t];
    for (int r = 0; r < R; ++r) {
      const uint64_t m = right[r] >> (k * S);
      const unsigned top = leaf_top[m & ((uint64_t(1) << TOP) - 1)];  // bottom subtree: its bits, its leaves
      const unsigned li = (top >> 8) | leaf_bottom[(m >> (top & 63)) & ((uint64_t(1) << SUB) - 1)];
      if constexpr (N_OUTPUTS == 1) {
        a1[r] += lv[li];
      } else if (o >= 0) {
        acc[r * N_OUTPUTS + o] += lv[li];
      } else {
        for (int c = 0; c < N_OUTPUTS; ++c) acc[r * N_OUTPUTS + c] += lv[li * N_OUTPUTS + c];
      }
    }
  }
}
#endif

#if defined(__AVX512BW__) && defined(__AVX512VBMI__)
// AVX-512 VBMI: the row's table (q of every slot, then q + 1) is looked up 64 nodes at a time by one vpermb
constexpr int TABW = 2 * RANK_HALF;

template <int N> struct ByteTable { __m512i t[N / 64]; };

template <int N>
inline __m512i lookup(const ByteTable<N>& T, __m512i idx) {
  if constexpr (N == 64) {
    // maskz, all lanes: GCC 12 at -O2 warns about the undefined() inside the plain _mm512_permutexvar_epi8
    return _mm512_maskz_permutexvar_epi8(~__mmask64(0), idx, T.t[0]);
  } else if constexpr (N == 128) {
    return _mm512_permutex2var_epi8(T.t[0], idx, T.t[1]);
  } else {
    const __m512i lo = _mm512_permutex2var_epi8(T.t[0], idx, T.t[1]);
    const __m512i hi = _mm512_permutex2var_epi8(T.t[2], idx, T.t[3]);
    return _mm512_mask_mov_epi8(lo, _mm512_movepi8_mask(idx), hi);
  }
}

template <int R>
inline void ranked_rows(const Threshold* xb, int stride, Acc* acc) {
  ByteTable<TABW> tab[R];
  for (int r = 0; r < R; ++r) {
    alignas(64) uint8_t q[TABW];
    slot_ranks(xb + r * stride, q);
    for (int k = RANK_SLOTS; k < RANK_HALF; ++k) q[k] = 0;  // unused entries
    for (int k = 0; k < RANK_HALF; ++k) q[RANK_HALF + k] = static_cast<uint8_t>(q[k] + 1);
    for (int i = 0; i < TABW / 64; ++i) tab[r].t[i] = _mm512_load_si512(q + 64 * i);
  }
  Acc a1[R];  // one output: the sums stay in registers (through memory, each add would wait for a store)
  for (int r = 0; r < R; ++r) a1[r] = acc[r * N_OUTPUTS];
  for (int64_t n = 0; n < RANK_NODES; n += 64) {
    const __m512i fi = _mm512_load_si512(rank_feature + n);
    const __m512i th = _mm512_load_si512(rank_threshold + n);
    uint64_t right[R];
    for (int r = 0; r < R; ++r) right[r] = _cvtmask64_u64(_mm512_cmpgt_epu8_mask(lookup(tab[r], fi), th));
    add_leaves<R>(n, right, a1, acc);
  }
  if constexpr (N_OUTPUTS == 1)
    for (int r = 0; r < R; ++r) acc[r] = a1[r];
}
constexpr int RANK_ROWS = 4;  // rows sharing each load of the node tables
constexpr bool RANK_SINGLE = true;  // single rows too
#elif defined(__AVX512BW__) || defined(__AVX2__) || (defined(__SSSE3__) && defined(__POPCNT__))
// Byte shuffles (vpshufb: 16-entry tables, in each 16-byte lane): the row's table (q of every slot, as signed
// bytes q - 128) is cut into RANK_CHUNKS chunks of 16; chunk c is looked up with index slot - 16c, which is
// negative (a zero byte) below the chunk and 16 or more above it, so the chunks are stored XORed with the chunk
// before and the XOR of all lookups telescopes to the entry's own chunk. Default-left nodes then add 1 (missing:
// 127 + 1 wraps to -128, below every threshold) and a signed compare decides W nodes at once.
#if defined(__AVX512BW__)
struct Bytes {
  using V = __m512i;
  static constexpr int W = 64;
  static V chunk(const uint8_t* p) {  // maskz: GCC 12 warns about the plain broadcast's undefined()
    return _mm512_maskz_broadcast_i32x4(0xFFFF, _mm_load_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static V load(const uint8_t* p) { return _mm512_load_si512(p); }
  static V set1(int v) { return _mm512_set1_epi8(static_cast<char>(v)); }
  static V shuffle(V t, V i) { return _mm512_shuffle_epi8(t, i); }
  static V xor_(V a, V b) { return _mm512_xor_si512(a, b); }
  static V add(V a, V b) { return _mm512_add_epi8(a, b); }
  static V sub(V a, V b) { return _mm512_sub_epi8(a, b); }
  static uint64_t gt(V a, V b) { return _cvtmask64_u64(_mm512_cmpgt_epi8_mask(a, b)); }
};
#elif defined(__AVX2__)
struct Bytes {
  using V = __m256i;
  static constexpr int W = 32;
  static V chunk(const uint8_t* p) {
    return _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static V load(const uint8_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }
  static V set1(int v) { return _mm256_set1_epi8(static_cast<char>(v)); }
  static V shuffle(V t, V i) { return _mm256_shuffle_epi8(t, i); }
  static V xor_(V a, V b) { return _mm256_xor_si256(a, b); }
  static V add(V a, V b) { return _mm256_add_epi8(a, b); }
  static V sub(V a, V b) { return _mm256_sub_epi8(a, b); }
  static uint64_t gt(V a, V b) { return static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpgt_epi8(a, b))); }
};
#else
struct Bytes {
  using V = __m128i;
  static constexpr int W = 16;
  static V chunk(const uint8_t* p) { return _mm_load_si128(reinterpret_cast<const __m128i*>(p)); }
  static V load(const uint8_t* p) { return _mm_load_si128(reinterpret_cast<const __m128i*>(p)); }
  static V set1(int v) { return _mm_set1_epi8(static_cast<char>(v)); }
  static V shuffle(V t, V i) { return _mm_shuffle_epi8(t, i); }
  static V xor_(V a, V b) { return _mm_xor_si128(a, b); }
  static V add(V a, V b) { return _mm_add_epi8(a, b); }
  static V sub(V a, V b) { return _mm_sub_epi8(a, b); }
  static uint64_t gt(V a, V b) { return static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpgt_epi8(a, b))); }
};
#endif

template <int R>
inline void ranked_rows(const Threshold* xb, int stride, Acc* acc) {
  using V = Bytes::V;
  constexpr int K = RANK_CHUNKS, W = Bytes::W;
  V tab[R][K];
  for (int r = 0; r < R; ++r) {
    alignas(64) uint8_t q[16 * K + 16];
    slot_ranks(xb + r * stride, q + 16);
    for (int k = 0; k < 16; ++k) q[k] = 0;  // chunk -1 (XOR with it changes nothing)
    for (int k = 16 + RANK_SLOTS; k < 16 * K + 16; ++k) q[k] = 0;  // unused entries
    for (int k = 16; k < 16 * K + 16; ++k) q[k] = static_cast<uint8_t>(q[k] ^ 0x80);
    for (int c = 0; c < K; ++c) tab[r][c] = Bytes::xor_(Bytes::chunk(q + 16 * c + 16), Bytes::chunk(q + 16 * c));
  }
  Acc a1[R];  // one output: the sums stay in registers (through memory, each add would wait for a store)
  for (int r = 0; r < R; ++r) a1[r] = acc[r * N_OUTPUTS];
  for (int64_t n = 0; n < RANK_NODES; n += 64) {
    const uint8_t* nodes = rank_shuffle + 3 * n;  // 64 slots, 64 thresholds, 64 default-left bits
    uint64_t right[R] = {};
    for (int h = 0; h < 64; h += W) {
      V ix[K];
      ix[0] = Bytes::load(nodes + h);
      for (int c = 1; c < K; ++c) ix[c] = Bytes::sub(ix[0], Bytes::set1(16 * c));
      const V th = Bytes::load(nodes + 64 + h);
      const V dl = Bytes::load(nodes + 128 + h);
      for (int r = 0; r < R; ++r) {
        V v = Bytes::shuffle(tab[r][0], ix[0]);
        for (int c = 1; c < K; ++c) v = Bytes::xor_(v, Bytes::shuffle(tab[r][c], ix[c]));
        right[r] |= Bytes::gt(Bytes::add(v, dl), th) << h;
      }
    }
    add_leaves<R>(n, right, a1, acc);
  }
  if constexpr (N_OUTPUTS == 1)
    for (int r = 0; r < R; ++r) acc[r] = a1[r];
}
constexpr int RANK_ROWS = 4;  // rows sharing each load of the node tables
// single rows too, except with 16-byte shuffles and many chunks (5+, 65+ slots), where the walk is faster
constexpr bool RANK_SINGLE = Bytes::W > 16 || RANK_CHUNKS <= 4;
#endif

template <class X>
void predict_range(const X* x, int64_t begin, int64_t end, double* y) {
  constexpr int OUT = ARGMAX ? 1 : N_OUTPUTS;
  constexpr int W = N_FEATURES + 1;
  // scratch of each thread, on the heap (a wide or many-output model would overflow the stack), grown once
  static thread_local std::vector<Acc> acc_scratch;
  static thread_local std::vector<Threshold> xb_scratch;
  if (acc_scratch.size() < size_t(BLOCK) * N_OUTPUTS) acc_scratch.resize(size_t(BLOCK) * N_OUTPUTS);
  if (xb_scratch.size() < size_t(BLOCK) * W) xb_scratch.resize(size_t(BLOCK) * W);
  Acc* const acc = acc_scratch.data();
  Threshold* const xb = xb_scratch.data();
  for (int64_t b = begin; b < end; b += BLOCK) {
    const int rows = static_cast<int>(end - b < BLOCK ? end - b : BLOCK);
    for (int r = 0; r < rows; ++r) {
      for (int j = 0; j < N_FEATURES; ++j) xb[r * W + j] = static_cast<Threshold>(x[(b + r) * N_FEATURES + j]);
      xb[r * W + N_FEATURES] = std::numeric_limits<Threshold>::quiet_NaN();
    }
    for (int i = 0; i < rows * N_OUTPUTS; ++i)
      acc[i] = std::is_same<Acc, float>::value ? static_cast<Acc>(base_score[i % N_OUTPUTS]) : Acc(0);
#if defined(__AVX512BW__) || defined(__AVX2__) || (defined(__SSSE3__) && defined(__POPCNT__))
    if constexpr (RANKED) {
      int r = 0;
      for (; r + RANK_ROWS <= rows; r += RANK_ROWS) ranked_rows<RANK_ROWS>(xb + r * W, W, acc + r * N_OUTPUTS);
      if constexpr (RANK_SINGLE) {
        for (; r < rows; ++r) ranked_rows<1>(xb + r * W, W, acc + r * N_OUTPUTS);
      } else {
        for (; r < rows; ++r) row_margins(xb + r * W, acc + r * N_OUTPUTS);
      }
    } else
#endif
    if (rows < 4) {
      for (int r = 0; r < rows; ++r) row_margins(xb + r * W, acc + r * N_OUTPUTS);
    } else {
      block_margins(xb, rows, acc);
    }
    for (int r = 0; r < rows; ++r) finish(acc + r * N_OUTPUTS, y + (b + r) * OUT);
  }
}
}  // namespace detail

// Outputs per row: N_OUTPUTS values (probabilities, or the regression value), 1 (the class) with ARGMAX.
constexpr int OUTPUTS_PER_ROW = ARGMAX ? 1 : N_OUTPUTS;

// x: n rows of N_FEATURES values (float or double; NaN = missing), y: n * OUTPUTS_PER_ROW values.
// Threads: 0 or 1 runs in the calling thread. Allocates nothing with one thread.
template <class X>
void predict(const X* x, int64_t n, double* y, int threads = 1) {
  if (threads <= 1 || n < 1024) {
    detail::predict_range(x, 0, n, y);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t step = (n + threads - 1) / threads;
  for (int64_t b = 0; b < n; b += step) {
    const int64_t e = b + step < n ? b + step : n;
    pool.emplace_back([=] { detail::predict_range(x, b, e, y); });
  }
  for (auto& th : pool) th.join();
}
"""


BRIDGE = r"""
// CPython extension around @NAME@.hpp: predict(x, y, n, threads), x float32 or float64, y float64, both
// C-contiguous buffers whose sizes the Python caller has checked against n.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "@NAME@.hpp"

namespace {
PyObject* predict(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 4) {
    PyErr_SetString(PyExc_TypeError, "predict(x, y, n, threads)");
    return nullptr;
  }
  const long long n = PyLong_AsLongLong(args[2]);
  const long threads = PyLong_AsLong(args[3]);
  if (PyErr_Occurred()) return nullptr;
  Py_buffer x, y;
  if (PyObject_GetBuffer(args[0], &x, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return nullptr;
  if (PyObject_GetBuffer(args[1], &y, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
    PyBuffer_Release(&x);
    return nullptr;
  }
  const bool f32 = x.itemsize == 4 && x.format && x.format[0] == 'f' && !x.format[1];
  const bool f64 = x.itemsize == 8 && x.format && x.format[0] == 'd' && !x.format[1];
  const bool ok = (f32 || f64) && y.itemsize == 8 &&
                  x.len >= Py_ssize_t(n) * @NAME@::N_FEATURES * x.itemsize &&
                  y.len >= Py_ssize_t(n) * @NAME@::OUTPUTS_PER_ROW * 8;
  if (ok) {
    Py_BEGIN_ALLOW_THREADS
    if (f32) {
      @NAME@::predict(static_cast<const float*>(x.buf), n, static_cast<double*>(y.buf), int(threads));
    } else {
      @NAME@::predict(static_cast<const double*>(x.buf), n, static_cast<double*>(y.buf), int(threads));
    }
    Py_END_ALLOW_THREADS
  }
  PyBuffer_Release(&x);
  PyBuffer_Release(&y);
  if (!ok) {
    PyErr_SetString(PyExc_ValueError, "predict: x must be float32 or float64 and x, y large enough for n rows");
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"predict", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(predict)), METH_FASTCALL,
     "predict(x, y, n, threads)"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "@MODULE@", "ml4ep.bdt forest @NAME@", -1, methods,
                          nullptr, nullptr, nullptr, nullptr};
}  // namespace

PyMODINIT_FUNC PyInit_@MODULE@(void) {
  PyObject* m = PyModule_Create(&module_def);
  if (m && PyModule_AddIntConstant(m, "OUTPUTS_PER_ROW", @NAME@::OUTPUTS_PER_ROW) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
"""

EXAMPLE = r"""// Build: g++ -std=c++17 -O3 -march=native example.cpp -o example -lpthread
#include <cstdio>
#include <vector>
#include "@NAME@.hpp"

int main() {
  std::vector<double> x(@NAME@::N_FEATURES, 0.5);     // one row, every feature 0.5
  std::vector<double> y(@NAME@::OUTPUTS_PER_ROW);
  @NAME@::predict(x.data(), 1, y.data());
  for (double v : y) std::printf("%.9g\n", v);
  return 0;
}
"""
