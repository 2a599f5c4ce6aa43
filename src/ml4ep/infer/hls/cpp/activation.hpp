// ml4ep_hls activations: hls4ml 1.3's nnet_activation.h (backends Vivado and Vitis, io_parallel) on raw int64_t
// values of ml4ep_fx types, bit for bit, one sample at a time (docs/fpga.md; ml4ep/infer/hls/activation.py).
// relu, leaky_relu, sigmoid, tanh and softmax's four implementations (stable, latency, legacy, argmax).
// The lookup tables are filled as hls4ml fills them at run time (the same float expressions, std::exp and std::tanh
// on float, the float converted to the table type), once per table type and size (function-local statics).
#ifndef ML4EP_HLS_ACTIVATION_HPP
#define ML4EP_HLS_ACTIVATION_HPP
#ifndef ML4EP_FIXED_HPP
#include "fixed.hpp"
#endif
#include <cmath>
#include <cstdint>
#include <vector>

namespace ml4ep_hls {
namespace act_detail {

// the low 64 bits of the 128-bit value hi:lo shifted right by s
inline uint64_t shr128(uint64_t hi, uint64_t lo, int s) {
  if (s <= 0) return lo;
  if (s < 64) return (lo >> s) | (hi << (64 - s));
  if (s < 128) return hi >> (s - 64);
  return 0;
}

// `int i = v * n / 2^d;` for an ap_fixed v of raw `raw` with F fraction bits and n an unsigned (a table size):
// the product is exact, the division by the int 2^d truncates toward zero at F fraction bits, the conversion to int
// truncates toward zero (F >= 0; a shift for F < 0) and keeps the low 32 bits
template <int F>
inline int32_t lut_round(int64_t raw, uint32_t n, int d) {
  const bool neg = raw < 0;
  const uint64_t a = neg ? 0 - static_cast<uint64_t>(raw) : static_cast<uint64_t>(raw);
  const uint64_t p0 = (a & 0xffffffffu) * n, p1 = (a >> 32) * n;  // a * n = p1 * 2^32 + p0
  const uint64_t lo = p0 + (p1 << 32);
  const uint64_t hi = (p1 >> 32) + (lo < p0 ? 1 : 0);
  uint64_t m;
  if constexpr (F >= 0) {
    m = shr128(hi, lo, d + F);
  } else {
    m = shr128(hi, lo, d);
    m = -F >= 64 ? 0 : m << -F;
  }
  uint32_t m32 = static_cast<uint32_t>(m);
  if (neg) m32 = 0u - m32;
  return static_cast<int32_t>(m32);
}

// hls4ml's clamp of a table index: `if (index < 0) index = 0; if (index > N - 1) index = N - 1;`
inline uint32_t clamp_index(int32_t index, uint32_t n) {
  if (index < 0) return 0;
  return static_cast<uint32_t>(index) > n - 1 ? n - 1 : static_cast<uint32_t>(index);
}

// nnet::ceillog2
constexpr int ceillog2(int x) { return x <= 2 ? 1 : 1 + ceillog2((x + 1) / 2); }
constexpr int floorlog2(int x) { return x < 2 ? 0 : 1 + floorlog2(x / 2); }

// the raw value of T whose top `bits` bits are i and the rest 0 (softmax_real_val_from_idx's x(W-1, W-N) = i)
template <class T>
inline int64_t top_bits_value(uint64_t i, int bits) {
  const uint64_t mask = (uint64_t(1) << T::W) - 1;
  const uint64_t u = (i << (T::W - bits)) & mask;
  if (T::S && (u >> (T::W - 1)) != 0) return static_cast<int64_t>(u | ~mask);
  return static_cast<int64_t>(u);
}

// softmax_idx_from_real_val: the top `bits` bits of the raw value as an unsigned index
template <class T>
inline uint32_t top_bits_index(int64_t raw, int bits) {
  const uint64_t mask = (uint64_t(1) << T::W) - 1;
  return static_cast<uint32_t>((static_cast<uint64_t>(raw) & mask) >> (T::W - bits));
}

// (float)x of an ap_fixed: the exact value (at most 24 significant bits here) as a float
template <class T>
inline float to_float(int64_t raw) { return static_cast<float>(std::ldexp(static_cast<double>(raw), -T::F)); }

// nnet::reduce with Op_add<T>: a balanced tree, every partial sum converted to T
template <class T>
inline int64_t tree_sum(const int64_t* x, int n) {
  if (n == 1) return x[0];
  if (n == 2) return ml4ep_fx::add<T>(x[0], x[1]);
  const int left = 1 << floorlog2(n - 1);
  return ml4ep_fx::add<T>(tree_sum<T>(x, left), tree_sum<T>(x + left, n - left));
}

// init_sigmoid_table / init_tanh_table
template <class Table, unsigned N>
const int64_t* sigmoid_table() {
  static const std::vector<int64_t> table = [] {
    std::vector<int64_t> t(N);
    for (int ii = 0; ii < static_cast<int>(N); ii++) {
      const float in_val = static_cast<float>(2 * 8.0 * (ii - float(N) / 2.0) / float(N));
      const float real_val = static_cast<float>(1.0 / (1 + std::exp(-in_val)));  // sigmoid_fcn_float
      t[ii] = ml4ep_fx::from_double<Table>(static_cast<double>(real_val));
    }
    return t;
  }();
  return table.data();
}

template <class Table, unsigned N>
const int64_t* tanh_table() {
  static const std::vector<int64_t> table = [] {
    std::vector<int64_t> t(N);
    for (int ii = 0; ii < static_cast<int>(N); ii++) {
      const float in_val = static_cast<float>(2 * 4.0 * (ii - float(N) / 2.0) / float(N));
      const float real_val = std::tanh(in_val);  // the float overload, as in hls4ml's csim
      t[ii] = ml4ep_fx::from_double<Table>(static_cast<double>(real_val));
    }
    return t;
  }();
  return table.data();
}

// init_exp_table<Addr> (exp_scale 1): entry i is exp(+-x) of the Addr value whose top bits are i
template <class ExpTable, class Addr, unsigned N, bool Negative>
const int64_t* softmax_exp_table() {
  static const std::vector<int64_t> table = [] {
    constexpr int bits = ceillog2(static_cast<int>(N));
    std::vector<int64_t> t(N);
    for (unsigned i = 0; i < N; i++) {
      float x = to_float<Addr>(top_bits_value<Addr>(i, bits)) * 1.0f;
      if (Negative) x = -x;
      const float e = std::exp(x);  // exp_fcn_float
      t[i] = ml4ep_fx::from_double<ExpTable>(static_cast<double>(e));
    }
    return t;
  }();
  return table.data();
}

// init_invert_table<InvInp>: entry i is 1/x (float) of the InvInp value whose top bits are i (1/0 = inf)
template <class InvTable, class InvInp, unsigned N>
const int64_t* softmax_inv_table() {
  static const std::vector<int64_t> table = [] {
    constexpr int bits = ceillog2(static_cast<int>(N));
    std::vector<int64_t> t(N);
    for (unsigned i = 0; i < N; i++) {
      const float x = to_float<InvInp>(top_bits_value<InvInp>(i, bits));
      const float inv = 1 / x;
      // 1/0 = inf, which ap_fixed takes as 2^1024: 0 when wrapping, the overflow of a huge value otherwise
      t[i] = std::isinf(inv) ? (InvTable::O == ml4ep_fx::WRAP ? 0 : ml4ep_fx::overflow<InvTable>(INT64_MAX))
                             : ml4ep_fx::from_double<InvTable>(static_cast<double>(inv));
    }
    return t;
  }();
  return table.data();
}

// init_exp_table_legacy / init_invert_table_legacy (table_t is nnet::activ_config's ap_fixed<18,8>)
template <class Table, unsigned N>
const int64_t* legacy_exp_table() {
  static const std::vector<int64_t> table = [] {
    std::vector<int64_t> t(N);
    for (int ii = 0; ii < static_cast<int>(N); ii++) {
      const float in_val = static_cast<float>(2 * 8.0 * (ii - float(N) / 2.0) / float(N));
      t[ii] = ml4ep_fx::from_double<Table>(static_cast<double>(std::exp(in_val)));
    }
    return t;
  }();
  return table.data();
}

template <class Table, unsigned N>
const int64_t* legacy_inv_table() {
  static const std::vector<int64_t> table = [] {
    std::vector<int64_t> t(N);
    for (int ii = 0; ii < static_cast<int>(N); ii++) {
      const float in_val = static_cast<float>(64.0 * ii / float(N));
      t[ii] = in_val > 0.0 ? ml4ep_fx::from_double<Table>(1.0 / in_val) : 0;  // a double quotient
    }
    return t;
  }();
  return table.data();
}

}  // namespace act_detail

// nnet::relu: x > 0 ? x : 0, converted to Out
template <class In, class Out>
inline void relu(const int64_t* x, int64_t* y, int n) {
  for (int i = 0; i < n; ++i) y[i] = x[i] > 0 ? ml4ep_fx::cast<Out, In::F>(x[i]) : ml4ep_fx::cast<Out, 0>(0);
}

// nnet::leaky_relu: alpha (the literal hls4ml writes into the call) converted to Param; x > 0 ? x : alpha * x (exact)
template <class In, class Param, class Out>
inline void leaky_relu(const int64_t* x, double alpha, int64_t* y, int n) {
  static_assert(In::W + Param::W <= 63, "ml4ep_hls::leaky_relu: the product must fit in int64");
  const int64_t a = ml4ep_fx::from_double<Param>(alpha);
  for (int i = 0; i < n; ++i)
    y[i] = x[i] > 0 ? ml4ep_fx::cast<Out, In::F>(x[i]) : ml4ep_fx::cast<Out, In::F + Param::F>(a * x[i]);
}

// nnet::sigmoid: index = int(x * N / 16) + 8 * N / 16, clamped to the table
template <class In, class Out, class Table, unsigned N>
inline void sigmoid(const int64_t* x, int64_t* y, int n) {
  static_assert(N >= 1 && N <= (1u << 24), "ml4ep_hls::sigmoid: table size 1 to 2^24");
  const int64_t* table = act_detail::sigmoid_table<Table, N>();
  for (int i = 0; i < n; ++i) {
    const int32_t data_round = act_detail::lut_round<In::F>(x[i], N, 4);
    const int32_t index = static_cast<int32_t>(static_cast<uint32_t>(data_round) + 8u * N / 16u);
    y[i] = ml4ep_fx::cast<Out, Table::F>(table[act_detail::clamp_index(index, N)]);
  }
}

// nnet::tanh: index = int(x * N / 8) + 4 * N / 8, clamped to the table
template <class In, class Out, class Table, unsigned N>
inline void tanh(const int64_t* x, int64_t* y, int n) {
  static_assert(N >= 1 && N <= (1u << 24), "ml4ep_hls::tanh: table size 1 to 2^24");
  const int64_t* table = act_detail::tanh_table<Table, N>();
  for (int i = 0; i < n; ++i) {
    const int32_t data_round = act_detail::lut_round<In::F>(x[i], N, 3);
    const int32_t index = static_cast<int32_t>(static_cast<uint32_t>(data_round) + 4u * N / 8u);
    y[i] = ml4ep_fx::cast<Out, Table::F>(table[act_detail::clamp_index(index, N)]);
  }
}

// the end of softmax_stable / softmax_latency: the exponentials (Accum) summed by a tree in Accum, the sum converted
// to InvInp, its top bits index the inverse table, each exponential times the inverse converted to Out
template <class Out, class InvTable, class Accum, class InvInp, unsigned NInv, int N>
inline void softmax_normalize(const int64_t* e, int64_t* y) {
  static_assert(Accum::W + InvTable::W <= 63, "ml4ep_hls::softmax: accum x inv_table must fit in int64");
  constexpr int bits = act_detail::ceillog2(static_cast<int>(NInv));
  static_assert((1u << bits) == NInv && bits <= InvInp::W, "ml4ep_hls::softmax: inv table size a power of two "
                "of at most 2^(inv_inp width)");
  const int64_t* inv_table = act_detail::softmax_inv_table<InvTable, InvInp, NInv>();
  const int64_t sum = ml4ep_fx::cast<InvInp, Accum::F>(act_detail::tree_sum<Accum>(e, N));
  const int64_t inv = inv_table[act_detail::top_bits_index<InvInp>(sum, bits)];
  for (int i = 0; i < N; ++i) y[i] = ml4ep_fx::cast<Out, Accum::F + InvTable::F>(e[i] * inv);
}

// nnet::softmax_stable (hls4ml's default): d = max(x) - x in InpNorm, exp(-d) from the top bits of d
template <class In, class Out, class ExpTable, class InvTable, class Accum, class InvInp, class InpNorm,
          unsigned NExp, unsigned NInv, int N>
inline void softmax_stable(const int64_t* x, int64_t* y) {
  static_assert(N >= 1, "ml4ep_hls::softmax: at least one class");
  constexpr int bits = act_detail::ceillog2(static_cast<int>(NExp));
  static_assert((1u << bits) == NExp && bits <= InpNorm::W, "ml4ep_hls::softmax_stable: exp table size a power "
                "of two of at most 2^(inp_norm width)");
  const int64_t* exp_table = act_detail::softmax_exp_table<ExpTable, InpNorm, NExp, true>();
  int64_t xmax = x[0];
  for (int i = 1; i < N; ++i) xmax = x[i] > xmax ? x[i] : xmax;
  int64_t e[N];
  for (int i = 0; i < N; ++i) {
    const int64_t d = ml4ep_fx::cast<InpNorm, In::F>(xmax - x[i]);
    e[i] = ml4ep_fx::cast<Accum, ExpTable::F>(exp_table[act_detail::top_bits_index<InpNorm>(d, bits)]);
  }
  softmax_normalize<Out, InvTable, Accum, InvInp, NInv, N>(e, y);
}

// nnet::softmax_latency: exp(x) from the top bits of x
template <class In, class Out, class ExpTable, class InvTable, class Accum, class InvInp, unsigned NExp,
          unsigned NInv, int N>
inline void softmax_latency(const int64_t* x, int64_t* y) {
  static_assert(N >= 1, "ml4ep_hls::softmax: at least one class");
  constexpr int bits = act_detail::ceillog2(static_cast<int>(NExp));
  static_assert((1u << bits) == NExp && bits <= In::W, "ml4ep_hls::softmax_latency: exp table size a power of "
                "two of at most 2^(input width)");
  const int64_t* exp_table = act_detail::softmax_exp_table<ExpTable, In, NExp, false>();
  int64_t e[N];
  for (int i = 0; i < N; ++i)
    e[i] = ml4ep_fx::cast<Accum, ExpTable::F>(exp_table[act_detail::top_bits_index<In>(x[i], bits)]);
  softmax_normalize<Out, InvTable, Accum, InvInp, NInv, N>(e, y);
}

// nnet::softmax_legacy: Table is nnet::activ_config's table_t (ap_fixed<18,8>); y_i = 1 / sum_j exp(x_j - x_i)
template <class In, class Out, class Table, unsigned NExp, unsigned NInv, int N>
inline void softmax_legacy(const int64_t* x, int64_t* y) {
  static_assert(N >= 1, "ml4ep_hls::softmax: at least one class");
  static_assert(NExp >= 1 && NExp <= (1u << 24) && NInv >= 1 && NInv <= (1u << 24),
                "ml4ep_hls::softmax_legacy: table sizes 1 to 2^24");
  const int64_t* exp_table = act_detail::legacy_exp_table<Table, NExp>();
  const int64_t* inv_table = act_detail::legacy_inv_table<Table, NInv>();
  const int64_t one = ml4ep_fx::cast<Table, 0>(1);
  for (int ii = 0; ii < N; ++ii) {
    int64_t sum = 0;
    for (int jj = 0; jj < N; ++jj) {
      int64_t diff = one;
      if (ii != jj) {
        const int32_t data_round = act_detail::lut_round<In::F>(x[jj] - x[ii], NExp, 4);
        const int32_t index = static_cast<int32_t>(static_cast<uint32_t>(data_round) + 8u * NExp / 16u);
        diff = exp_table[act_detail::clamp_index(index, NExp)];
      }
      sum = ml4ep_fx::add<Table>(sum, diff);
    }
    const int32_t index = act_detail::lut_round<Table::F>(sum, NInv, 6);
    y[ii] = ml4ep_fx::cast<Out, Table::F>(inv_table[act_detail::clamp_index(index, NInv)]);
  }
}

// nnet::softmax_argmax: 1 at the first maximum, 0 elsewhere
template <class In, class Out, int N>
inline void softmax_argmax(const int64_t* x, int64_t* y) {
  static_assert(N >= 1, "ml4ep_hls::softmax: at least one class");
  int idx = 0;
  for (int i = 1; i < N; ++i)
    if (x[i] > x[idx]) idx = i;
  for (int i = 0; i < N; ++i) y[i] = ml4ep_fx::cast<Out, 0>(i == idx ? 1 : 0);
}

}  // namespace ml4ep_hls
#endif  // ML4EP_HLS_ACTIVATION_HPP
