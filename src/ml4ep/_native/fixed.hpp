// ml4ep_fx: fixed-point arithmetic with the meaning of ap_fixed<W,I,Q,O> (docs/fpga.md), on raw int64_t values.
// A type is a tag fixed_t<W, F, S, Q, O>: W bits, F = W - I fraction bits (negative when the step is above 1),
// signed or not, a quantisation and an overflow mode. A value of the type is its raw integer r (r * 2^-F).
// Conversions quantise first (dropped fraction bits, by Q), then overflow (by O), as ap_fixed's assignments do;
// exact intermediate values (a product of two raws, a sum) are plain int64_t with a known number of fraction bits.
// Only the C++17 standard library; the Python twin is ml4ep._native.fixed (kept equal by the tests).
#ifndef ML4EP_FIXED_HPP
#define ML4EP_FIXED_HPP
#include <cmath>
#include <cstdint>

namespace ml4ep_fx {

enum Quant { TRN, TRN_ZERO, RND, RND_ZERO, RND_INF, RND_MIN_INF, RND_CONV };
enum Overflow { WRAP, SAT, SAT_ZERO, SAT_SYM };

template <int W_, int F_, bool S_ = true, Quant Q_ = TRN, Overflow O_ = WRAP>
struct fixed_t {
  static_assert(W_ >= 1 && W_ <= 62, "ml4ep_fx: 1 to 62 bits");
  static constexpr int W = W_;
  static constexpr int F = F_;
  static constexpr bool S = S_;
  static constexpr Quant Q = Q_;
  static constexpr Overflow O = O_;
  static constexpr int64_t kMin = S_ ? -(int64_t(1) << (W_ - 1)) : 0;
  static constexpr int64_t kMax = S_ ? (int64_t(1) << (W_ - 1)) - 1 : (int64_t(1) << W_) - 1;
};

// whether the quantised value goes one step up from the floor: `dropped` some bits were dropped, `half` the
// dropped part against half a step (-1 below, 0 exactly, +1 above), `neg` the value is negative, `odd` the floor is odd
template <Quant Q>
constexpr bool round_up(bool dropped, int half, bool neg, bool odd) {
  if (!dropped) return false;
  switch (Q) {
    case TRN: return false;
    case TRN_ZERO: return neg;
    case RND: return half >= 0;
    case RND_ZERO: return half > 0 || (half == 0 && neg);
    case RND_MIN_INF: return half > 0;
    case RND_INF: return half > 0 || (half == 0 && !neg);
    case RND_CONV: return half > 0 || (half == 0 && odd);
  }
  return false;
}

// an exact integer v on T's grid brought into T's range by T's overflow mode
template <class T>
inline int64_t overflow(int64_t v) {
  if constexpr (T::O == WRAP) {  // branch-free: the low W bits, sign-extended (arithmetic right shift)
    if constexpr (T::S) {
      return static_cast<int64_t>(static_cast<uint64_t>(v) << (64 - T::W)) >> (64 - T::W);
    } else {
      return static_cast<int64_t>(static_cast<uint64_t>(v) & ((uint64_t(1) << T::W) - 1));
    }
  }
  if (T::O == SAT_SYM && T::S && v <= T::kMin) return -T::kMax;  // ap_types: the most negative value too
  if (v >= T::kMin && v <= T::kMax) return v;
  switch (T::O) {
    case WRAP: {
      const uint64_t u = static_cast<uint64_t>(v) & ((uint64_t(1) << T::W) - 1);
      if (T::S && (u >> (T::W - 1)) != 0) return static_cast<int64_t>(u | ~((uint64_t(1) << T::W) - 1));
      return static_cast<int64_t>(u);
    }
    case SAT: return v < T::kMin ? T::kMin : T::kMax;
    case SAT_ZERO: return 0;
    case SAT_SYM: return v < T::kMin ? (T::S ? -T::kMax : T::kMin) : (v > T::kMax ? T::kMax : -T::kMax);
  }
  return v;
}

// an exact value v with Fsrc fraction bits converted to T
template <class T, int Fsrc>
inline int64_t cast(int64_t v) {
  constexpr int d = Fsrc - T::F;
  if constexpr (d <= 0) {
    constexpr int up = -d;
    if constexpr (up >= 63) {
      return overflow<T>(v == 0 ? 0 : (T::O == WRAP ? 0 : (v < 0 ? INT64_MIN : INT64_MAX)));
    } else {
      if (T::O == WRAP) return overflow<T>(static_cast<int64_t>(static_cast<uint64_t>(v) << up));
      constexpr int64_t lim = INT64_MAX >> up;
      if (v > lim) return overflow<T>(INT64_MAX);
      if (v < -lim) return overflow<T>(INT64_MIN);
      return overflow<T>(v * (int64_t(1) << up));
    }
  } else if constexpr (d >= 64) {
    // |v| < 2^63 <= half a step: the floor is 0 (v >= 0) or -1 (v < 0), whose remainder v + 2^d is above half a
    // step except for v = -2^63 at d = 64 (exactly half)
    const bool neg = v < 0;
    const int64_t fl = neg ? -1 : 0;
    const int hc = !neg ? -1 : (d == 64 && v == INT64_MIN ? 0 : 1);
    return overflow<T>(round_up<T::Q>(v != 0, hc, neg, fl != 0) ? fl + 1 : fl);
  } else {
    const int64_t fl = v >> d;  // arithmetic shift: the floor
    const uint64_t rest = static_cast<uint64_t>(v) & ((uint64_t(1) << d) - 1);
    const uint64_t half = uint64_t(1) << (d - 1);
    const int hc = rest < half ? -1 : (rest == half ? 0 : 1);
    return overflow<T>(round_up<T::Q>(rest != 0, hc, v < 0, (fl & 1) != 0) ? fl + 1 : fl);
  }
}

// a double converted to T as ap_fixed's constructor does (the exact value quantised, then overflowed); NaN counts
// as an infinity of its sign (0 when wrapping, the end of the range when saturating), as in ap_fixed
template <class T>
inline int64_t from_double(double x) {
  if (std::isnan(x)) x = std::copysign(HUGE_VAL, x);
  double s = std::ldexp(x, T::F);
  // beyond double's range (or infinite): a multiple of 2^W, which wraps to 0 and saturates as infinity does
  if (!(s < 0x1p1000)) s = 0x1p1000;
  if (!(s > -0x1p1000)) s = -0x1p1000;
  const double fl = std::floor(s);
  const double rest = s - fl;
  const int hc = rest < 0.5 ? -1 : (rest == 0.5 ? 0 : 1);
  const bool odd = T::Q == RND_CONV && std::fmod(fl, 2.0) != 0.0;  // only round-to-even asks (fmod is slow)
  const double q = round_up<T::Q>(rest > 0.0, hc, s < 0.0, odd) ? fl + 1.0 : fl;
  if (q >= -9.2e18 && q <= 9.2e18) return overflow<T>(static_cast<int64_t>(q));
  if (T::O == WRAP) {  // only the low W bits matter: q mod 2^W, exactly
    double m = std::fmod(q, std::ldexp(1.0, T::W));
    if (m < 0) m += std::ldexp(1.0, T::W);
    return overflow<T>(static_cast<int64_t>(m));
  }
  return overflow<T>(q < 0 ? INT64_MIN : INT64_MAX);
}

template <class T>
inline double to_double(int64_t raw) { return std::ldexp(static_cast<double>(raw), -T::F); }

// a sum in T: a += b as ap_fixed does for two values of T (exact, then T's overflow)
template <class T>
inline int64_t add(int64_t a, int64_t b) {
  if (T::O == WRAP) return overflow<T>(static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b)));
  return overflow<T>(a + b);
}

}  // namespace ml4ep_fx
#endif  // ML4EP_FIXED_HPP
