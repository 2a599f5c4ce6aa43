// ml4ep_layers: hls4ml's compute layers (io_parallel, Latency strategy) on raw int64_t values, bit for bit
// (docs/fpga.md). One sample per call; x, y are the raw values of the input's and the result's types, channels-last.
// What hls4ml 1.3's nnet_utils compute, and how it is reproduced here:
//   Dense, Conv1D/2D  acc = accum_t(bias); acc += accum_t(x * w) in hls4ml's order; y = result_t(acc)
//                     (the product is exact; each product is converted to accum_t, then added in accum_t).
//                     WRAP accumulators are summed modulo 2^64 and wrapped once (the same value, modular
//                     arithmetic); other overflow modes saturate at every step, in hls4ml's order.
//   BatchNorm         y = result_t(x * scale + bias), one conversion of the exact value
//   MaxPooling        y = result_t(accum_t(max)), padding is the input type's bit pattern 100..0
//   AveragePooling    acc = 0; acc += x (each sum converted to accum_t, padding skipped: it adds 0);
//                     acc = acc / n (ap_fixed division by an unsigned: the raw quotient truncated towards 0);
//                     y = result_t(acc); n counts the window's pixels inside the image, or all of them (count_pad)
//   Add               y = result_t(a + b), the exact sum
//   Concatenate       y = result_t(a) and result_t(b) in the concatenated order
// Exact intermediate values (products, sums) must fit 63 bits: the Python side (dense.py, conv.py, pooling.py,
// merge.py) refuses the types where they would not.
#ifndef ML4EP_HLS_LAYERS_HPP
#define ML4EP_HLS_LAYERS_HPP
#include <cstdint>
#include <type_traits>

namespace ml4ep_layers {

// An exact value v with Fsrc fraction bits quantised to T's grid by T's quantisation mode, without overflow.
// Where Fsrc <= T::F the value is scaled up modulo 2^64 (used only where T wraps: just the low bits matter).
template <class T, int Fsrc>
inline int64_t quant(int64_t v) {
  constexpr int d = Fsrc - T::F;
  if constexpr (d <= -64) {
    (void)v;
    return 0;
  } else if constexpr (d <= 0) {
    return static_cast<int64_t>(static_cast<uint64_t>(v) << (-d));
  } else if constexpr (d >= 64) {  // |v| <= 2^63 <= half a step: the floor is -1 or 0
    if (v == 0) return 0;
    const bool neg = v < 0;
    const int hc = !neg ? -1 : ((d == 64 && v == INT64_MIN) ? 0 : 1);  // the rest 2^d + v against 2^(d-1)
    const int64_t fl = neg ? -1 : 0;
    return ml4ep_fx::round_up<T::Q>(true, hc, neg, neg) ? fl + 1 : fl;
  } else {
    const int64_t fl = v >> d;  // arithmetic shift: the floor
    const uint64_t rest = static_cast<uint64_t>(v) & ((uint64_t(1) << d) - 1);
    const uint64_t half = uint64_t(1) << (d - 1);
    const int hc = rest < half ? -1 : (rest == half ? 0 : 1);
    return ml4ep_fx::round_up<T::Q>(rest != 0, hc, v < 0, (fl & 1) != 0) ? fl + 1 : fl;
  }
}

// v * 2^S modulo 2^64
template <int S>
inline uint64_t ushift(int64_t v) {
  if constexpr (S >= 64) {
    (void)v;
    return 0;
  } else {
    return static_cast<uint64_t>(v) << S;
  }
}

// An exact value v with Fsrc fraction bits converted to T (quantised, then overflowed), as ap_fixed assigns.
template <class T, int Fsrc>
inline int64_t cvt(int64_t v) {
  if constexpr (Fsrc <= T::F) {
    return ml4ep_fx::cast<T, Fsrc>(v);
  } else {
    return ml4ep_fx::overflow<T>(quant<T, Fsrc>(v));
  }
}

// v (Fsrc fraction bits) on a grid of Fdst >= Fsrc fraction bits, exactly
template <int Fdst, int Fsrc>
inline int64_t align(int64_t v) {
  static_assert(Fdst >= Fsrc, "ml4ep_layers: align only scales up");
  return v * (int64_t(1) << (Fdst - Fsrc));
}

constexpr int imax(int a, int b) { return a > b ? a : b; }

// The accumulation of one output's products, acc += accum_t(x * w), for N outputs at once.
template <class X, class Wt, class A, int N>
struct Mac {
  static constexpr int Fp = X::F + Wt::F;  // the exact product's fraction bits
  static constexpr bool kWrap = A::O == ml4ep_fx::WRAP;
  static constexpr bool kScaleLater = kWrap && Fp <= A::F;  // sum the products, scale the sum once
  // WRAP: sums modulo 2^64, or modulo 2^32 where the accumulator has at most 32 bits and the products are only
  // summed (the low W bits of a modular sum are exact; 32-bit lanes vectorise twice as wide, also on AVX2)
  using U = std::conditional_t<kScaleLater && A::W <= 32, uint32_t, uint64_t>;
  static constexpr bool kSkipZeros = !kWrap;  // adding accum_t(0) changes nothing; branch-free sums vectorise
  U acc[N];
  int64_t sat[N];  // other overflow modes: accum_t values

  template <class B>
  inline void reset(const int64_t* b) {
    for (int j = 0; j < N; ++j) {
      if constexpr (kWrap) {
        acc[j] = 0;
      } else {
        sat[j] = cvt<A, B::F>(b[j]);
      }
    }
  }
  // acc[j] += accum_t(xi * w[j]) for j < N (w: the raw weights, or their low 32 bits where U is 32 bits wide)
  template <class WP>
  inline void row(int64_t xi, const WP* w) {
    if constexpr (kScaleLater) {
      const U ux = static_cast<U>(xi);
      for (int j = 0; j < N; ++j) acc[j] += ux * static_cast<U>(w[j]);
    } else if constexpr (kWrap) {
      for (int j = 0; j < N; ++j) acc[j] += static_cast<uint64_t>(quant<A, Fp>(xi * w[j]));
    } else {
      for (int j = 0; j < N; ++j) sat[j] = ml4ep_fx::add<A>(sat[j], cvt<A, Fp>(xi * w[j]));
    }
  }
  // y[j] = result_t(acc[j] + accum_t(bias[j]))
  template <class B, class R>
  inline void result(const int64_t* b, int64_t* y) const {
    for (int j = 0; j < N; ++j) {
      int64_t a;
      if constexpr (kWrap) {
        uint64_t s = acc[j];  // from 32 bits: zero-extended, the low 32 bits are the ones that matter
        if constexpr (kScaleLater) s = static_cast<uint64_t>(quant<A, Fp>(static_cast<int64_t>(s)));
        s += static_cast<uint64_t>(cvt<A, B::F>(b[j]));
        a = ml4ep_fx::overflow<A>(static_cast<int64_t>(s));
      } else {
        a = sat[j];
      }
      y[j] = cvt<R, A::F>(a);
    }
  }
};

// Dense: x (NIN), w (NIN, NOUT), b (NOUT) -> y (NOUT)
template <class X, class Wt, class B, class A, class R, int NIN, int NOUT>
inline void dense(const int64_t* x, int64_t* y, const int64_t* w, const int64_t* b) {
  Mac<X, Wt, A, NOUT> m;
  m.template reset<B>(b);
  for (int i = 0; i < NIN; ++i) {
    const int64_t xi = x[i];
    if (decltype(m)::kSkipZeros && xi == 0) continue;  // adds accum_t(0) = 0: no change in any mode
    m.row(xi, w + static_cast<int64_t>(i) * NOUT);
  }
  m.template result<B, R>(b, y);
}

// Conv2D (Conv1D: H = KH = SH = 1, PT = 0): x (H, W, CI), w (KH, KW, CI, CO), b (CO) -> y (OH, OW, CO).
// hls4ml's im2col order: for each output pixel, the taps (kh, kw, ci) in order; padded taps are zeros (skipped).
template <class X, class Wt, class B, class A, class R, int H, int W, int CI, int KH, int KW, int CO, int SH, int SW,
          int PT, int PL, int OH, int OW, class WP>
inline void conv2d_taps(const int64_t* x, int64_t* y, const WP* w, const int64_t* b) {
  Mac<X, Wt, A, CO> m;
  for (int oh = 0; oh < OH; ++oh) {
    for (int ow = 0; ow < OW; ++ow) {
      m.template reset<B>(b);
      for (int kh = 0; kh < KH; ++kh) {
        const int ih = oh * SH + kh - PT;
        if (ih < 0 || ih >= H) continue;
        for (int kw = 0; kw < KW; ++kw) {
          const int iw = ow * SW + kw - PL;
          if (iw < 0 || iw >= W) continue;
          const int64_t* xp = x + (static_cast<int64_t>(ih) * W + iw) * CI;
          const WP* wp = w + static_cast<int64_t>(kh * KW + kw) * CI * CO;
          for (int c = 0; c < CI; ++c) {
            const int64_t xi = xp[c];
            if (decltype(m)::kSkipZeros && xi == 0) continue;
            m.row(xi, wp + static_cast<int64_t>(c) * CO);
          }
        }
      }
      m.template result<B, R>(b, y + (static_cast<int64_t>(oh) * OW + ow) * CO);
    }
  }
}

template <class X, class Wt, class B, class A, class R, int H, int W, int CI, int KH, int KW, int CO, int SH, int SW,
          int PT, int PL, int OH, int OW>
inline void conv2d(const int64_t* x, int64_t* y, const int64_t* w, const int64_t* b) {
  constexpr int kTaps = KH * KW * CI * CO;
  if constexpr (std::is_same_v<typename Mac<X, Wt, A, CO>::U, uint32_t> && kTaps <= 16384) {
    // 32-bit sums: the weights' low 32 bits, read by every output pixel, converted once per call
    uint32_t wl[kTaps];
    for (int i = 0; i < kTaps; ++i) wl[i] = static_cast<uint32_t>(w[i]);
    conv2d_taps<X, Wt, B, A, R, H, W, CI, KH, KW, CO, SH, SW, PT, PL, OH, OW>(x, y, wl, b);
  } else {
    conv2d_taps<X, Wt, B, A, R, H, W, CI, KH, KW, CO, SH, SW, PT, PL, OH, OW>(x, y, w, b);
  }
}

// BatchNormalization: y[p, c] = result_t(x[p, c] * s[c] + b[c]), NPIX pixels of C channels
template <class X, class S, class B, class R, int NPIX, int C>
inline void batchnorm(const int64_t* x, int64_t* y, const int64_t* s, const int64_t* b) {
  constexpr int Fp = X::F + S::F;
  constexpr int Fs = imax(Fp, B::F);
  for (int p = 0; p < NPIX; ++p) {
    const int64_t* xp = x + static_cast<int64_t>(p) * C;
    int64_t* yp = y + static_cast<int64_t>(p) * C;
    for (int c = 0; c < C; ++c) yp[c] = cvt<R, Fs>(align<Fs, Fp>(xp[c] * s[c]) + align<Fs, B::F>(b[c]));
  }
}

// Max/AveragePooling2D (1-D: H = KH = SH = 1, PT = 0; global: the whole map, one window):
// x (H, W, C) -> y (OH, OW, C). The window's cells are visited in hls4ml's order (kh, kw), all channels at once.
template <class X, class A, class R, bool MAX, bool COUNT_PAD, int H, int W, int C, int KH, int KW, int SH, int SW,
          int PT, int PL, int OH, int OW>
inline void pool2d(const int64_t* x, int64_t* y) {
  // hls4ml's pad value for max pooling: the bit pattern 100..0 of the input type (its minimum if signed)
  constexpr int64_t kPad = X::S ? X::kMin : (int64_t(1) << (X::W - 1));
  constexpr bool kFastSum = A::O == ml4ep_fx::WRAP && X::F <= A::F;  // sum modulo 2^64, wrap once
  int64_t acc[C];
  uint64_t u[C];
  for (int oh = 0; oh < OH; ++oh) {
    const int h0 = oh * SH - PT;
    for (int ow = 0; ow < OW; ++ow) {
      const int w0 = ow * SW - PL;
      int n = 0;  // the window's cells inside the map
      for (int kh = 0; kh < KH; ++kh)
        for (int kw = 0; kw < KW; ++kw)
          n += (h0 + kh >= 0 && h0 + kh < H && w0 + kw >= 0 && w0 + kw < W) ? 1 : 0;
      if constexpr (MAX) {
        const int64_t start = n < KH * KW ? kPad : X::kMin;
        for (int c = 0; c < C; ++c) acc[c] = start;
      } else {
        for (int c = 0; c < C; ++c) acc[c] = 0, u[c] = 0;
      }
      for (int kh = 0; kh < KH; ++kh) {
        const int ih = h0 + kh;
        if (ih < 0 || ih >= H) continue;
        for (int kw = 0; kw < KW; ++kw) {
          const int iw = w0 + kw;
          if (iw < 0 || iw >= W) continue;  // padding: loses every max, adds 0 to a sum
          const int64_t* xp = x + (static_cast<int64_t>(ih) * W + iw) * C;
          if constexpr (MAX) {
            for (int c = 0; c < C; ++c) acc[c] = xp[c] > acc[c] ? xp[c] : acc[c];
          } else if constexpr (kFastSum) {
            for (int c = 0; c < C; ++c) u[c] += ushift<A::F - X::F>(xp[c]);
          } else {  // each sum converted to accum_t
            constexpr int Fm = imax(A::F, X::F);
            for (int c = 0; c < C; ++c) acc[c] = cvt<A, Fm>(align<Fm, A::F>(acc[c]) + align<Fm, X::F>(xp[c]));
          }
        }
      }
      int64_t* yp = y + (static_cast<int64_t>(oh) * OW + ow) * C;
      if constexpr (MAX) {
        for (int c = 0; c < C; ++c) yp[c] = cvt<R, A::F>(cvt<A, X::F>(acc[c]));
      } else {
        // ap_fixed's acc /= n: the raw value divided, truncated towards zero (C++'s division), then accum_t
        constexpr int64_t kFull = KH * KW;
        const int64_t len = COUNT_PAD ? kFull : n;
        for (int c = 0; c < C; ++c) {
          const int64_t s = kFastSum ? ml4ep_fx::overflow<A>(static_cast<int64_t>(u[c])) : acc[c];
          yp[c] = cvt<R, A::F>(cvt<A, A::F>(len == kFull ? s / kFull : s / len));
        }
      }
    }
  }
}

// Add: y = result_t(a + b), N values
template <class T1, class T2, class R, int N>
inline void add(const int64_t* a, const int64_t* b, int64_t* y) {
  constexpr int Fm = imax(T1::F, T2::F);
  for (int i = 0; i < N; ++i) y[i] = cvt<R, Fm>(align<Fm, T1::F>(a[i]) + align<Fm, T2::F>(b[i]));
}

// Concatenate: a (OUTER, N1), b (OUTER, N2) -> y (OUTER, N1 + N2), each value converted to the result type
template <class T1, class T2, class R, int OUTER, int N1, int N2>
inline void concatenate(const int64_t* a, const int64_t* b, int64_t* y) {
  for (int o = 0; o < OUTER; ++o) {
    const int64_t* ap = a + static_cast<int64_t>(o) * N1;
    const int64_t* bp = b + static_cast<int64_t>(o) * N2;
    int64_t* yp = y + static_cast<int64_t>(o) * (N1 + N2);
    for (int i = 0; i < N1; ++i) yp[i] = cvt<R, T1::F>(ap[i]);
    for (int i = 0; i < N2; ++i) yp[N1 + i] = cvt<R, T2::F>(bp[i]);
  }
}

}  // namespace ml4ep_layers
#endif  // ML4EP_HLS_LAYERS_HPP
