// ---- ml4ep low-precision storage types (bfloat16, float8, float4, int4, int2) ----
// One byte per element (bfloat16: two), as the ml_dtypes arrays of onnx's NumPy side (no packing). Each type
// converts implicitly to float (the integer ones to int) and from any arithmetic type, so operator code written
// for float reads and writes them. Every conversion is explicit integer code, the same on every CPU and compiler
// (no float-to-integer cast out of range, no dependence on denormal flushing or vector units):
// - to bfloat16 and the float8/float4 types: rounded once to nearest even from the exact source value (a double
//   is not rounded to float first), with saturation for the float8 types (ONNX Cast's default saturate=1;
//   `cast(x, false)` gives inf/NaN instead), NaN kept as NaN;
// - to float8e8m0: from float, rounding up with saturation (`cast(f, saturate, round_mode)`), as onnx's reference;
// - to int4/uint4/int2/uint2 from integers: the low bits (ONNX: discard the higher bits); from floating values:
//   truncated toward zero, NaN gives 0 and values beyond the type's range its nearest limit (ONNX leaves these
//   undefined; ml4ep_rt::to_int does the same for every integer type).
#ifndef ML4EP_LOWP_V1
#define ML4EP_LOWP_V1
// (every conversion also runs in CUDA kernels: ML4EP_HD, defined by cpp/prelude.hpp, or here when this file stands alone)
#ifndef ML4EP_HD
#if defined(__CUDACC__)
#define ML4EP_HD __host__ __device__
#else
#define ML4EP_HD
#endif
#endif
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

namespace ml4ep_rt {

namespace lowp {
ML4EP_HD inline uint32_t bits_of(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  return x;
}
ML4EP_HD inline float float_of(uint32_t x) {
  float f;
  std::memcpy(&f, &x, sizeof(f));
  return f;
}
ML4EP_HD inline uint64_t bits_of(double d) {
  uint64_t x;
  std::memcpy(&x, &d, sizeof(x));
  return x;
}
constexpr uint64_t kAbs64 = 0x7fffffffffffffffull, kInf64 = 0x7ff0000000000000ull;

// |x| (finite, as the bits of a double) rounded to nearest even in a binary float format of M mantissa bits and
// exponent bias Bias: its magnitude code, (biased exponent << M) | mantissa, subnormals below 2^(1 - Bias). A code
// beyond the format's largest finite one means overflow; the caller maps it to inf, NaN or the largest value.
template <int M, int Bias>
ML4EP_HD inline uint64_t round_code(uint64_t ax) {
  constexpr int emin = 1 - Bias;
  if (ax < (uint64_t(1) << 52)) return 0;  // zero and double subnormals: below half of every target's smallest
  const int e = static_cast<int>(ax >> 52) - 1023;
  const int et = e > emin ? e : emin;
  const int shift = 52 - M + (et - e);
  if (shift > 53) return 0;  // below half the smallest subnormal
  const uint64_t sig = (ax & ((uint64_t(1) << 52) - 1u)) | (uint64_t(1) << 52);
  uint64_t m = sig >> shift;
  const uint64_t rem = sig & ((uint64_t(1) << shift) - 1u), half = uint64_t(1) << (shift - 1);
  m += (rem > half || (rem == half && (m & 1u))) ? 1u : 0u;
  // a normal's hidden bit (and a carry out of the mantissa) lands in the exponent field
  return (static_cast<uint64_t>(et - emin) << M) + m;
}
// a class type (half, another low-precision type) converting to float: read through float
template <typename U>
using if_class = std::enable_if_t<!std::is_arithmetic<U>::value && std::is_convertible<U, float>::value, int>;
template <typename U>
using if_arith = std::enable_if_t<std::is_arithmetic<U>::value, int>;
}  // namespace lowp

// bfloat16: the upper half of a float; rounding to nearest even (from a float by its bits, from a double or an
// integer directly, not through float), NaN to the quiet NaN of its sign, no flushing of subnormals
struct bfloat16 {
  uint16_t bits;
  bfloat16() = default;
  template <typename U, lowp::if_arith<U> = 0>
  ML4EP_HD bfloat16(U v)  // NOLINT: implicit on purpose
      : bits(std::is_same<U, float>::value ? from_float(static_cast<float>(v)) : from_double(static_cast<double>(v))) {}
  template <typename U, lowp::if_class<U> = 0>
  ML4EP_HD bfloat16(const U& v) : bits(from_float(static_cast<float>(v))) {}  // NOLINT
  ML4EP_HD operator float() const { return lowp::float_of(static_cast<uint32_t>(bits) << 16); }  // NOLINT
  ML4EP_HD static bfloat16 from_bits(uint16_t b) {
    bfloat16 h;
    h.bits = b;
    return h;
  }
  ML4EP_HD static uint16_t from_float(float f) {
    const uint32_t x = lowp::bits_of(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(((x >> 16) & 0x8000u) | 0x7fc0u);
    return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
  }
  ML4EP_HD static uint16_t from_double(double d) {
    const uint64_t x = lowp::bits_of(d), ax = x & lowp::kAbs64;
    const uint16_t sign = static_cast<uint16_t>((x >> 48) & 0x8000u);
    if (ax > lowp::kInf64) return static_cast<uint16_t>(sign | 0x7fc0u);
    const uint64_t code = ax == lowp::kInf64 ? 0x7f80u : lowp::round_code<7, 127>(ax);
    return static_cast<uint16_t>(sign | (code > 0x7f7fu ? 0x7f80u : code));  // beyond the largest: inf
  }
};
static_assert(sizeof(bfloat16) == 2, "bfloat16 is two bytes");

// Small floats of M mantissa bits and exponent bias Bias, largest finite magnitude code MaxCode, Kind:
// 0 IEEE-like (inf and NaN at the all-ones exponent: float8e5m2), 1 "fn" (no inf, S.1111.111 is NaN:
// float8e4m3fn), 2 "fnuz" (no inf, no negative zero, 0x80 is NaN), 3 no inf and no NaN (float4e2m1, 4 bits).
template <int M, int Bias, int MaxCode, int Kind>
struct minifloat {
  static constexpr int kSignShift = Kind == 3 ? 3 : 7;
  uint8_t bits;
  minifloat() = default;
  template <typename U, lowp::if_arith<U> = 0>
  ML4EP_HD minifloat(U v) : bits(encode(static_cast<double>(v), true)) {}  // NOLINT: implicit on purpose
  template <typename U, lowp::if_class<U> = 0>
  ML4EP_HD minifloat(const U& v) : bits(encode(static_cast<float>(v), true)) {}  // NOLINT
  ML4EP_HD operator float() const { return decode(bits); }  // NOLINT
  ML4EP_HD static minifloat from_bits(uint8_t b) {
    minifloat h;
    h.bits = b;
    return h;
  }
  // ONNX Cast: saturate clamps out-of-range values (and inf) to the largest finite value of their sign;
  // without it they become inf (Kind 0) or NaN (Kinds 1, 2); float4e2m1 always saturates
  ML4EP_HD static minifloat cast(double x, bool saturate) { return from_bits(encode(x, saturate)); }

  ML4EP_HD static float decode(uint8_t b) {
    // float4e2m1: bytes with bits above the 4 set read as negative (as ml_dtypes)
    const uint32_t sign = Kind == 3 ? (b >= 8u ? 1u : 0u) : static_cast<uint32_t>(b >> 7);
    const uint32_t mag = Kind == 3 ? b & 7u : b & 0x7fu;
    const uint32_t e = mag >> M, m = mag & ((1u << M) - 1u);
    // NaN: the quiet NaN of the code's sign (fnuz: negative), as ml_dtypes
    const float nan = lowp::float_of((sign << 31) | 0x7fc00000u);
    if (Kind == 0 && e == (0x7fu >> M)) return m ? nan : lowp::float_of((sign << 31) | 0x7f800000u);
    if (Kind == 1 && mag == 0x7fu) return nan;
    if (Kind == 2 && b == 0x80u) return nan;
    // subnormals m * 2^(1 - Bias - M): exact in float
    const float v = e == 0 ? static_cast<float>(m) * lowp::float_of(static_cast<uint32_t>(128 - Bias - M) << 23)
                           : lowp::float_of(((e + 127u - Bias) << 23) | (m << (23 - M)));
    return sign ? -v : v;
  }

  ML4EP_HD static uint8_t encode(double d, bool saturate) {
    const uint64_t x = lowp::bits_of(d), ax = x & lowp::kAbs64;
    const uint32_t sign = static_cast<uint32_t>(x >> 63);
    if (ax > lowp::kInf64) {  // NaN (ml_dtypes: float4e2m1 gives the zero of the opposite sign)
      if (Kind == 0) return static_cast<uint8_t>((sign << 7) | 0x7eu);
      if (Kind == 1) return static_cast<uint8_t>((sign << 7) | 0x7fu);
      if (Kind == 2) return 0x80u;
      return static_cast<uint8_t>(sign ? 0u : 8u);
    }
    // inf: an overflow
    const uint64_t code = ax == lowp::kInf64 ? uint64_t(MaxCode) + 1u : lowp::round_code<M, Bias>(ax);
    if (code > static_cast<uint64_t>(MaxCode)) {
      if (saturate || Kind == 3) return static_cast<uint8_t>((sign << kSignShift) | uint32_t(MaxCode));
      if (Kind == 0) return static_cast<uint8_t>((sign << 7) | 0x7cu);  // inf
      if (Kind == 1) return static_cast<uint8_t>((sign << 7) | 0x7fu);
      return 0x80u;
    }
    if (Kind == 2 && code == 0) return 0;  // no negative zero
    return static_cast<uint8_t>((sign << kSignShift) | static_cast<uint32_t>(code));
  }
};

using float8e4m3fn = minifloat<3, 7, 0x7e, 1>;
using float8e4m3fnuz = minifloat<3, 8, 0x7f, 2>;
using float8e5m2 = minifloat<2, 15, 0x7b, 0>;
using float8e5m2fnuz = minifloat<2, 16, 0x7f, 2>;
using float4e2m1 = minifloat<1, 1, 0x7, 3>;
static_assert(sizeof(float8e4m3fn) == 1, "float8 is one byte");

// float8e8m0: 2^(bits - 127), 0xff NaN, no sign and no zero. From float as onnx.numpy_helper.to_float8e8m0:
// the float's exponent, rounded by round_mode (0 up: any fraction rounds up, 1 down, 2 nearest: up from x.5
// on); saturate keeps 2^127 from rounding up to NaN; inf and NaN give NaN; the sign is dropped.
struct float8e8m0 {
  uint8_t bits;
  float8e8m0() = default;
  template <typename U, lowp::if_arith<U> = 0>
  ML4EP_HD float8e8m0(U v) : bits(encode(static_cast<float>(v), true, 0)) {}  // NOLINT: implicit on purpose
  template <typename U, lowp::if_class<U> = 0>
  ML4EP_HD float8e8m0(const U& v) : bits(encode(static_cast<float>(v), true, 0)) {}  // NOLINT
  ML4EP_HD operator float() const {  // NOLINT
    if (bits == 0xffu) return std::numeric_limits<float>::quiet_NaN();
    return lowp::float_of(bits == 0 ? 0x00400000u : static_cast<uint32_t>(bits) << 23);
  }
  ML4EP_HD static float8e8m0 from_bits(uint8_t b) {
    float8e8m0 h;
    h.bits = b;
    return h;
  }
  ML4EP_HD static float8e8m0 cast(float f, bool saturate, int round_mode = 0) {
    return from_bits(encode(f, saturate, round_mode));
  }
  ML4EP_HD static uint8_t encode(float f, bool saturate, int round_mode) {
    const uint32_t x = lowp::bits_of(f);
    const uint32_t e = (x >> 23) & 0xffu;
    if (e == 0xffu) return 0xffu;
    bool up = false;
    if (round_mode == 0) {
      up = (x & 0x7fffffu) != 0;
    } else if (round_mode == 2) {
      up = (x & 0x400000u) && ((x & 0x3fffffu) || e > 0);  // guard and (round or sticky or lsb)
    }
    if (saturate && e == 0xfeu) up = false;
    return static_cast<uint8_t>(e + (up ? 1u : 0u));
  }
};
static_assert(sizeof(float8e8m0) == 1, "float8e8m0 is one byte");

// Bits-wide integers in one byte (the low bits; signed ones two's complement): from integers keeping the low
// bits (wrapping), from floating values truncating toward zero, NaN to 0, beyond the range to the nearest limit
template <bool Signed, int Bits>
struct smallint {
  static constexpr uint32_t kMask = (1u << Bits) - 1u, kSign = 1u << (Bits - 1);
  uint8_t bits;
  smallint() = default;
  template <typename U, lowp::if_arith<U> = 0>
  ML4EP_HD smallint(U v) : bits(encode(v)) {}  // NOLINT: implicit on purpose
  template <typename U, lowp::if_class<U> = 0>
  ML4EP_HD smallint(const U& v) : bits(encode(static_cast<float>(v))) {}  // NOLINT
  ML4EP_HD operator int() const {  // NOLINT
    const int u = static_cast<int>(bits & kMask);
    return Signed ? (u ^ static_cast<int>(kSign)) - static_cast<int>(kSign) : u;
  }
  ML4EP_HD static smallint from_bits(uint8_t b) {
    smallint h;
    h.bits = b;
    return h;
  }
  template <typename U>
  ML4EP_HD static uint8_t encode(U v) {
    if constexpr (std::is_floating_point<U>::value) {
      constexpr U lo = Signed ? -U(kSign) : U(0), hi = Signed ? U(kSign - 1u) : U(kMask);
      const U c = v < lo ? lo : (v > hi ? hi : (v == v ? v : U(0)));  // clamped first: the cast is in range
      return static_cast<uint8_t>(static_cast<uint32_t>(static_cast<int32_t>(c)) & kMask);
    } else {
      return static_cast<uint8_t>(static_cast<uint64_t>(v) & kMask);
    }
  }
};
using uint4 = smallint<false, 4>;
using int4 = smallint<true, 4>;
using uint2 = smallint<false, 2>;
using int2 = smallint<true, 2>;

}  // namespace ml4ep_rt

namespace std {
template <>
class numeric_limits<ml4ep_rt::bfloat16> {
  using T = ml4ep_rt::bfloat16;

 public:
  static constexpr bool is_specialized = true, is_signed = true, is_integer = false, is_exact = false;
  static constexpr bool has_infinity = true, has_quiet_NaN = true;
  static constexpr int digits = 8;
  ML4EP_HD static T min() { return T::from_bits(0x0080u); }
  ML4EP_HD static T max() { return T::from_bits(0x7f7fu); }
  ML4EP_HD static T lowest() { return T::from_bits(0xff7fu); }
  ML4EP_HD static T epsilon() { return T::from_bits(0x3c00u); }
  ML4EP_HD static T infinity() { return T::from_bits(0x7f80u); }
  ML4EP_HD static T quiet_NaN() { return T::from_bits(0x7fc0u); }
  ML4EP_HD static T denorm_min() { return T::from_bits(0x0001u); }
};

// types without inf give their largest finite value for infinity() (so -infinity() starts a max-reduction),
// float4e2m1 gives zero for quiet_NaN()
template <int M, int Bias, int MaxCode, int Kind>
class numeric_limits<ml4ep_rt::minifloat<M, Bias, MaxCode, Kind>> {
  using T = ml4ep_rt::minifloat<M, Bias, MaxCode, Kind>;

 public:
  static constexpr bool is_specialized = true, is_signed = true, is_integer = false, is_exact = false;
  static constexpr bool has_infinity = Kind == 0, has_quiet_NaN = Kind != 3;
  static constexpr int digits = M + 1;
  ML4EP_HD static T min() { return T::from_bits(static_cast<uint8_t>(1u << M)); }
  ML4EP_HD static T max() { return T::from_bits(static_cast<uint8_t>(MaxCode)); }
  ML4EP_HD static T lowest() { return T::from_bits(static_cast<uint8_t>(MaxCode | (1u << T::kSignShift))); }
  ML4EP_HD static T epsilon() { return T(1.0f / static_cast<float>(1u << M)); }
  ML4EP_HD static T infinity() { return T::from_bits(static_cast<uint8_t>(Kind == 0 ? 0x7cu : MaxCode)); }
  ML4EP_HD static T quiet_NaN() {
    return T::from_bits(static_cast<uint8_t>(Kind == 0 ? 0x7eu : Kind == 1 ? 0x7fu : Kind == 2 ? 0x80u : 0u));
  }
  ML4EP_HD static T denorm_min() { return T::from_bits(1u); }
};

template <>
class numeric_limits<ml4ep_rt::float8e8m0> {
  using T = ml4ep_rt::float8e8m0;

 public:
  static constexpr bool is_specialized = true, is_signed = false, is_integer = false, is_exact = false;
  static constexpr bool has_infinity = false, has_quiet_NaN = true;
  static constexpr int digits = 1;
  ML4EP_HD static T min() { return T::from_bits(0u); }
  ML4EP_HD static T max() { return T::from_bits(0xfeu); }
  ML4EP_HD static T lowest() { return T::from_bits(0u); }
  ML4EP_HD static T epsilon() { return T::from_bits(127u); }
  ML4EP_HD static T infinity() { return T::from_bits(0xfeu); }
  ML4EP_HD static T quiet_NaN() { return T::from_bits(0xffu); }
  ML4EP_HD static T denorm_min() { return T::from_bits(0u); }
};

template <bool Signed, int Bits>
class numeric_limits<ml4ep_rt::smallint<Signed, Bits>> {
  using T = ml4ep_rt::smallint<Signed, Bits>;

 public:
  static constexpr bool is_specialized = true, is_signed = Signed, is_integer = true, is_exact = true;
  static constexpr bool has_infinity = false, has_quiet_NaN = false;
  static constexpr int digits = Signed ? Bits - 1 : Bits;
  ML4EP_HD static T min() { return T::from_bits(static_cast<uint8_t>(Signed ? T::kSign : 0u)); }
  ML4EP_HD static T max() { return T::from_bits(static_cast<uint8_t>(Signed ? T::kSign - 1u : T::kMask)); }
  ML4EP_HD static T lowest() { return min(); }
  ML4EP_HD static T epsilon() { return T::from_bits(0u); }
  ML4EP_HD static T infinity() { return T::from_bits(0u); }
  ML4EP_HD static T quiet_NaN() { return T::from_bits(0u); }
  ML4EP_HD static T denorm_min() { return T::from_bits(0u); }
};
}  // namespace std
#endif  // ML4EP_LOWP_V1
