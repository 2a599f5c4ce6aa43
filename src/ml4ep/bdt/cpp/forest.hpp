// ml4ep.bdt: @N_TREES@ trees, depth @DEPTH@, @N_FEATURES@ features, @N_OUTPUTS@ output(s); from @SOURCE@; split: go left when x @LESS@ threshold
#pragma once
#include <cmath>
#include <cstdint>
#include <cstddef>
#include <limits>
#include <thread>
#if defined(__AVX512BW__) || defined(__AVX2__) || (defined(__SSSE3__) && defined(__POPCNT__))  // ranked
#if defined(__GNUC__) && !defined(__clang__)  // GCC 12's intrinsics warn about their own undefined()
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
#include <type_traits>
#include <vector>

namespace @NAME@ {

constexpr int N_FEATURES = @N_FEATURES@;
constexpr int N_OUTPUTS = @N_OUTPUTS@;
constexpr int N_TREES = @N_TREES@;
constexpr int DEPTH = @DEPTH@;
constexpr bool PADDED = @PADDED@;
constexpr int TRANSFORM = @TRANSFORM@;  // 0 identity, 1 sigmoid, 2 softmax, 3 exp, 4 tanh
constexpr bool AVERAGE = @AVERAGE@;
constexpr bool ARGMAX = @ARGMAX@;
using Threshold = @THRESHOLD@;
using Acc = @ACC@;

namespace detail {
@TABLES@
// the ranked kernel (x86-64 with SSSE3 and POPCNT, AVX2, AVX-512BW or VBMI): @RANKED_USE@
constexpr bool RANKED = @RANKED@;
constexpr int64_t RANK_NODES = @RANK_NODES@;
constexpr int RANK_SLOTS = @RANK_SLOTS@;  // table slots in use
constexpr int RANK_HALF = @RANK_HALF@;  // table entries per half
constexpr int RANK_CHUNKS = @RANK_CHUNKS@;  // 16-byte table chunks (shuffles)
@RANK_TABLES@

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

}  // namespace @NAME@
