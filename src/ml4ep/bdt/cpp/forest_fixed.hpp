// ml4ep.bdt fixed point: @N_TREES@ x @N_CLASSES@ trees, depth @DEPTH@, @N_FEATURES@ features; from @SOURCE@
// conifer's decision_function in @PRECISION@, bit for bit (its cpp backend; the HLS backends share the arithmetic):
//   x, thresholds, leaf values, init_predict: each converted from double to the type (quantised, then overflowed);
//   a node compares x[f] * weight (weight = 1 in the type, the product cast back to the type) with its threshold,
//   goes left when it is @LESS@ the threshold;
//   per class: init_predict, then + each tree's leaf in tree order (each sum overflowed to the type), then * norm.
// Only the C++17 standard library and ml4ep_fx (below). Threshold and leaf tables hold raw values (raw * 2^-F).
#pragma once
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

@FIXED@

namespace @NAME@ {

constexpr int N_FEATURES = @N_FEATURES@;
constexpr int N_CLASSES = @N_CLASSES@;  // scores per row (conifer's n_classes, 1 for two classes)
constexpr int N_TREES = @N_TREES@;  // trees per class
constexpr int DEPTH = @DEPTH@;
constexpr bool PADDED = @PADDED@;  // complete trees: node i has children 2i+1 (left) and 2i+2 (right)
constexpr bool LESS_EQUAL = @LESS_EQUAL@;  // conifer's splitting_convention: "<=" (true) or "<"
using T = @TYPE@;  // @PRECISION@
constexpr int OUTPUTS_PER_ROW = N_CLASSES;

namespace detail {
constexpr bool WEIGHT_ONE = @WEIGHT_ONE@;  // 1.0 is exact in T: x * weight is x
constexpr int64_t WEIGHT = @WEIGHT@;  // raw of (T) 1.0
constexpr bool NORM_ONE = @NORM_ONE@;  // norm is exactly 1 in T
constexpr int64_t NORM = @NORM@;  // raw of (T) norm
constexpr int N_INNER = PADDED ? (1 << DEPTH) - 1 : 0;
constexpr int N_LEAVES = PADDED ? 1 << DEPTH : 0;

@TABLES@

// a feature value as the node sees it: (T) x, times the one-hot weight; ap_fixed reads NaN's bits as an infinity
// of its sign
inline int64_t node_input(double x) {
  if (std::isnan(x)) x = std::copysign(HUGE_VAL, x);
  const int64_t r = ml4ep_fx::from_double<T>(x);
  if constexpr (WEIGHT_ONE) {
    return r;
  } else {
    return ml4ep_fx::cast<T, 2 * T::F>(r * WEIGHT);
  }
}

inline bool goes_left(int64_t v, int64_t threshold) { return LESS_EQUAL ? v <= threshold : v < threshold; }

// the leaf value (raw) of conifer tree k = tree * N_CLASSES + class (child indices count from the tree's first node)
inline int64_t leaf_of(int k, const int64_t* v) {
  if constexpr (PADDED) {
    const int32_t* f = feature + int64_t(k) * N_INNER;
    const int64_t* th = threshold + int64_t(k) * N_INNER;
    int i = 0;
    for (int d = 0; d < DEPTH; ++d) i = 2 * i + (goes_left(v[f[i]], th[i]) ? 1 : 2);
    return leaf[int64_t(k) * N_LEAVES + i - N_INNER];
  } else {
    int64_t j = node_off[k];
    while (feature[j] >= 0) j = node_off[k] + (goes_left(v[feature[j]], threshold[j]) ? left[j] : right[j]);
    return leaf[j];
  }
}

constexpr int BLOCK = 16;  // rows walk each tree together: their independent walks overlap

template <class X>
void predict_range(const X* x, int64_t begin, int64_t end, double* y) {
  constexpr int NF = N_FEATURES > 0 ? N_FEATURES : 1;
  std::vector<int64_t> v(int64_t(BLOCK) * NF, 0);
  int64_t acc[BLOCK][N_CLASSES];
  for (int64_t b = begin; b < end; b += BLOCK) {
    const int rows = end - b < BLOCK ? int(end - b) : BLOCK;
    for (int r = 0; r < rows; ++r) {
      const X* row = x + (b + r) * N_FEATURES;
      for (int f = 0; f < N_FEATURES; ++f) v[r * NF + f] = node_input(static_cast<double>(row[f]));
      for (int c = 0; c < N_CLASSES; ++c) acc[r][c] = init[c];
    }
    for (int t = 0; t < N_TREES; ++t) {
      for (int c = 0; c < N_CLASSES; ++c) {
        const int k = t * N_CLASSES + c;
        for (int r = 0; r < rows; ++r) acc[r][c] = ml4ep_fx::add<T>(acc[r][c], leaf_of(k, v.data() + r * NF));
      }
    }
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < N_CLASSES; ++c) {
        const int64_t s = NORM_ONE ? acc[r][c] : ml4ep_fx::cast<T, 2 * T::F>(acc[r][c] * NORM);
        y[(b + r) * N_CLASSES + c] = ml4ep_fx::to_double<T>(s);
      }
    }
  }
}
}  // namespace detail

// x: n rows of N_FEATURES values (float or double), y: n * OUTPUTS_PER_ROW scores (exact values of T).
// Threads: 0 or 1 runs in the calling thread.
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

}  // namespace @NAME@
