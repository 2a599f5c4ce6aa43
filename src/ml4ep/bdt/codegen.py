"""C++ for a forest: the trees as data tables plus one kernel, so a forest of any size compiles in seconds.

Layout: every tree is padded to a complete binary tree of the forest's depth ``D``: internal node ``i`` has
children ``2i+1`` (left) and ``2i+2`` (right), and a leaf reached above depth ``D`` is pushed down along
always-left nodes, so that every row takes exactly ``D`` branch-free steps per tree and the step is
``i = 2i + 1 + right``. Rows are processed in blocks of 64 against one tree at a time (the tree stays in
cache, the 64 independent walks overlap); a single row walks 8 trees side by side. Forests deeper than
``MAX_PADDED_DEPTH`` keep their own node order and walk with child indices instead.

The generated header needs only the C++17 standard library:

    #include "model.hpp"
    double y[N_OUTPUTS * n];
    model::predict(x, n, y);        // x: n rows x N_FEATURES, float or double; y: what predict() gives
"""

from __future__ import annotations

import numpy as np

from .forest import ZERO_BAND, Forest, ModelError

MAX_PADDED_DEPTH = 12
BLOCK = 64


def _c_float(v: float, suffix: str) -> str:
    ctype = "float" if suffix == "f" else "double"
    if np.isnan(v):
        return f"std::numeric_limits<{ctype}>::quiet_NaN()"
    if np.isinf(v):
        return ("" if v > 0 else "-") + f"std::numeric_limits<{ctype}>::infinity()"
    return repr(float(v)) + suffix


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


def header(forest: Forest, name: str) -> str:
    """The self-contained C++ header of ``forest`` in namespace ``name``."""
    tb = tables(forest)
    thr_type = "float" if all(t.threshold.dtype == np.float32 for t in forest.trees) else "double"
    acc_type = "float" if forest.meta.get("accumulate") == "float32" else "double"
    suffix = "f" if thr_type == "float" else ""
    lsuffix = "f" if acc_type == "float" else ""
    less = "<" if forest.split == "<" else "<="
    transform = {"identity": 0, "sigmoid": 1, "softmax": 2, "exp": 3, "tanh": 4}[forest.transform]
    out = [f"// ml4ep.bdt: {len(forest.trees)} trees, depth {tb['depth']}, {forest.n_features} features, "
           f"{forest.n_outputs} output(s); from {forest.source or 'a forest'}; split: go left when x {less} threshold",
           f"#pragma once\n#include <cmath>\n#include <cstdint>\n#include <cstddef>\n#include <limits>\n#include <thread>\n"
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
    zero_missing = any(t.zero_missing is not None for t in forest.trees)
    out.append(_KERNEL.replace("@LESS@", less).replace("@ZERO_BAND@", repr(ZERO_BAND))
               .replace("@ZERO_MISSING@", "true" if zero_missing else "false").replace("@BLOCK@", str(BLOCK)))
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
  int t0 = 0;
  if constexpr (PADDED) {
    for (; t0 + G <= N_TREES; t0 += G) {
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
  for (int t = t0; t < N_TREES; ++t) {  // the rest (and every tree of unpadded forests)
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

template <class X>
void predict_range(const X* x, int64_t begin, int64_t end, double* y) {
  constexpr int OUT = ARGMAX ? 1 : N_OUTPUTS;
  constexpr int W = N_FEATURES + 1;
  Acc acc[BLOCK * N_OUTPUTS];
  Threshold xb[BLOCK * W];
  for (int64_t b = begin; b < end; b += BLOCK) {
    const int rows = static_cast<int>(end - b < BLOCK ? end - b : BLOCK);
    for (int r = 0; r < rows; ++r) {
      for (int j = 0; j < N_FEATURES; ++j) xb[r * W + j] = static_cast<Threshold>(x[(b + r) * N_FEATURES + j]);
      xb[r * W + N_FEATURES] = std::numeric_limits<Threshold>::quiet_NaN();
    }
    for (int i = 0; i < rows * N_OUTPUTS; ++i)
      acc[i] = std::is_same<Acc, float>::value ? static_cast<Acc>(base_score[i % N_OUTPUTS]) : Acc(0);
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
#include "@NAME@.hpp"
extern "C" __attribute__((visibility("default"))) void ml4ep_bdt_predict(const double* x, int64_t n, double* y,
                                                                          int threads) {
  @NAME@::predict(x, n, y, threads);
}
extern "C" __attribute__((visibility("default"))) int ml4ep_bdt_outputs() { return @NAME@::OUTPUTS_PER_ROW; }
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
