// ---- ml4ep runtime prelude: shared by every generated model (guarded: one copy per translation unit) ----
#ifndef ML4EP_PRELUDE_V1
#define ML4EP_PRELUDE_V1
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

// workspace bytes of one chunk of the batch: a batch-separable model's infer runs its batch in chunks this big,
// so that intermediates stay in the core's cache (define it to tune; 1 runs one sample at a time)
#ifndef ML4EP_CHUNK_BYTES
#define ML4EP_CHUNK_BYTES (1 << 20)
#endif

// BLAS through the standard CBLAS names; define ML4EP_CBLAS_SGEMM to use a prefixed build
// (e.g. -DML4EP_CBLAS_SGEMM=scipy_cblas_sgemm for the scipy-openblas32 wheel), or ML4EP_NO_BLAS to use
// the portable loops below instead.
#ifndef ML4EP_NO_BLAS
#ifndef ML4EP_CBLAS_SGEMM
#define ML4EP_CBLAS_SGEMM cblas_sgemm
#endif
extern "C" void ML4EP_CBLAS_SGEMM(int order, int transa, int transb, int m, int n, int k, float alpha,
                                  const float* a, int lda, const float* b, int ldb, float beta, float* c,
                                  int ldc);
#endif

// the elementwise math helpers below must be inlined into their loops for those to vectorise: inside a large
// generated infer() g++ otherwise may keep them as calls (one scalar call per element)
#if defined(__GNUC__) || defined(__clang__)
#define ML4EP_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ML4EP_ALWAYS_INLINE inline
#endif
// the scalar helpers that operator code calls inside its loops also run inside CUDA kernels (device="cuda": the same
// code built by nvcc, cpp/cuda.hpp); elsewhere ML4EP_HD is nothing
#ifndef ML4EP_HD
#if defined(__CUDACC__)
#define ML4EP_HD __host__ __device__
#else
#define ML4EP_HD
#endif
#endif

namespace ml4ep_rt {

// exp with range reduction and a degree-6 polynomial (max. error ~1 ulp); branch-free so loops vectorise
ML4EP_HD ML4EP_ALWAYS_INLINE float expf(float x) {
  // NaN is replaced before the float-to-int conversion below (a NaN there is undefined) and returned at the end
  const float xc = x < -87.33654f ? -87.33654f : (x > 88.72283f ? 88.72283f : (x == x ? x : 0.0f));
  // round to nearest by the 1.5 * 2^23 trick (std::floor keeps g++ from vectorising the loop)
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n as 2^(n-1) * 2 so that n = 128 (x close to the float limit) stays finite
  const int32_t bits = (static_cast<int32_t>(n) + 126) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  float y = (p * scale) * 2.0f;
  y = x > 88.72283f ? std::numeric_limits<float>::infinity() : y;
  y = x < -87.33654f ? 0.0f : y;
  return x == x ? y : x;
}

ML4EP_HD ML4EP_ALWAYS_INLINE float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

ML4EP_HD ML4EP_ALWAYS_INLINE float tanhf(float x) {
  const float ax = std::abs(x);
  const float z = x * x;
  float small = -5.70498872745e-3f;
  small = small * z + 2.06390887954e-2f;
  small = small * z - 5.37397155531e-2f;
  small = small * z + 1.33314422036e-1f;
  small = small * z - 3.33332819422e-1f;
  small = small * z * x + x;
  const float e = expf(2.0f * std::min(ax, 20.0f));
  const float big = std::copysign(1.0f - 2.0f / (e + 1.0f), x);
  return ax < 0.625f ? small : big;
}

ML4EP_HD ML4EP_ALWAYS_INLINE float softplusf(float x) { return x > 20.0f ? x : std::log1p(expf(x)); }
ML4EP_HD inline double sigmoid_d(double x) { return 1.0 / (1.0 + std::exp(-x)); }
ML4EP_HD inline double softplus_d(double x) { return x > 40.0 ? x : std::log1p(std::exp(x)); }

// Float to integer, for every integer type I: truncated toward zero; NaN gives 0 and values beyond I's range its
// nearest limit (C++ leaves those casts undefined and x86 CPUs give INT_MIN or wrapped bits; ONNX leaves them
// undefined too). Branch-free selects, so loops of it vectorise.
template <typename I, typename F>
ML4EP_HD ML4EP_ALWAYS_INLINE I to_int(F v) {
  static_assert(std::is_integral<I>::value && std::is_floating_point<F>::value, "float to integer");
  if constexpr (std::is_same<I, bool>::value) {
    return v != F(0);
  } else {
    // the bounds are powers of two (or 0): exact in every float type
    constexpr F lo = std::is_signed<I>::value ? F(std::numeric_limits<I>::min()) : F(0);
    constexpr F hi = std::is_signed<I>::value ? -F(std::numeric_limits<I>::min())
                                              : F(2) * F(std::numeric_limits<I>::max() / 2 + 1);
    const F c = v == v ? v : F(0);
    const I t = static_cast<I>(c > lo && c < hi ? c : F(0));
    return c <= lo ? std::numeric_limits<I>::min() : (c >= hi ? std::numeric_limits<I>::max() : t);
  }
}

// A coordinate computed in floating point (GridSample, RoiAlign, DeformConv, float OneHot indices) as an index:
// truncated; NaN and values beyond +-2^62 become +-2^62, far outside every tensor, so the bounds checks that follow
// see them as outside and adding a few taps cannot overflow (a cast of those would be undefined)
template <typename F>
ML4EP_HD ML4EP_ALWAYS_INLINE int64_t to_index(F v) {
  constexpr F lim = F(4611686018427387904.0);  // 2^62
  const F c = v == v ? (v < -lim ? -lim : (v > lim ? lim : v)) : -lim;
  return static_cast<int64_t>(c);
}

// Integer arithmetic of generated code: two's complement wrap-around (what ONNX runtimes compute) where C++ leaves
// signed overflow undefined; x / 0 and x % 0 give 0, lowest / -1 gives lowest (undefined in C++, SIGFPE on x86).
// The operands go through an unsigned type at least as wide as int, so no promotion to int can overflow either.
template <typename T>
using uwide = std::conditional_t<(sizeof(T) > 4), uint64_t, uint32_t>;
template <typename T>
ML4EP_HD ML4EP_ALWAYS_INLINE T iadd(T a, T b) { return static_cast<T>(static_cast<uwide<T>>(a) + static_cast<uwide<T>>(b)); }
template <typename T>
ML4EP_HD ML4EP_ALWAYS_INLINE T isub(T a, T b) { return static_cast<T>(static_cast<uwide<T>>(a) - static_cast<uwide<T>>(b)); }
template <typename T>
ML4EP_HD ML4EP_ALWAYS_INLINE T imul(T a, T b) { return static_cast<T>(static_cast<uwide<T>>(a) * static_cast<uwide<T>>(b)); }
template <typename T>
ML4EP_HD ML4EP_ALWAYS_INLINE T ineg(T a) { return static_cast<T>(uwide<T>(0) - static_cast<uwide<T>>(a)); }
template <typename T>
ML4EP_HD ML4EP_ALWAYS_INLINE T iabs(T a) {
  if constexpr (std::is_unsigned<T>::value) {
    return a;  // (no comparison with zero: nvcc warns that it is pointless)
  } else {
    return a < T(0) ? ineg(a) : a;
  }
}
template <typename T>
ML4EP_HD inline T idiv(T a, T b) {  // truncating, as C++ and ONNX
  if constexpr (std::is_signed<T>::value) {
    if (b == T(-1)) return ineg(a);
  }
  return b == T(0) ? T(0) : static_cast<T>(a / b);
}
template <typename T>
ML4EP_HD inline T irem(T a, T b) {  // the remainder of idiv (the dividend's sign)
  if constexpr (std::is_signed<T>::value) {
    if (b == T(-1)) return T(0);
  }
  return b == T(0) ? T(0) : static_cast<T>(a % b);
}

// IEEE binary16 storage (ONNX float16): arithmetic happens in float through the implicit conversions, so the
// operator code written for float serves float16 tensors; conversions round to nearest even once (a double is
// not rounded to float first)
struct half {
  uint16_t bits;
  half() = default;
  ML4EP_HD half(float f) : bits(from_float(f)) {}  // NOLINT: implicit on purpose
  ML4EP_HD half(double d) : bits(from_double(d)) {}  // NOLINT
  template <typename U, std::enable_if_t<std::is_integral<U>::value, int> = 0>
  ML4EP_HD half(U v) : bits(from_double(static_cast<double>(v))) {}  // NOLINT
  ML4EP_HD operator float() const { return to_float(bits); }  // NOLINT
  ML4EP_HD static half from_bits(uint16_t b) {
    half h;
    h.bits = b;
    return h;
  }
  ML4EP_HD static float to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {  // zero or subnormal: m * 2^-24
      const float v = static_cast<float>(m) * 5.9604644775390625e-08f;
      return sign ? -v : v;
    }
    const uint32_t bits = sign | (e == 31 ? (0x7f800000u | (m << 13)) : (((e + 112u) << 23) | (m << 13)));
    float out;
    std::memcpy(&out, &bits, sizeof(out));
    return out;
  }
  ML4EP_HD static uint16_t from_float(float f) {
    uint32_t x;
    std::memcpy(&x, &f, sizeof(x));
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN stays NaN
    if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 and inf: inf
    if (ax < 0x38800000u) {  // below 2^-14: a subnormal; adding 0.5 makes the FPU round at 2^-24
      float a;
      std::memcpy(&a, &ax, sizeof(a));
      a += 0.5f;
      uint32_t b;
      std::memcpy(&b, &a, sizeof(b));
      return static_cast<uint16_t>(sign | (b - 0x3f000000u));
    }
    ax += 0xc8000fffu + ((ax >> 13) & 1u);  // rebias the exponent (-112) and round to nearest even
    return static_cast<uint16_t>(sign | (ax >> 13));
  }
  ML4EP_HD static uint16_t from_double(double d) {
    uint64_t x;
    std::memcpy(&x, &d, sizeof(x));
    const uint16_t sign = static_cast<uint16_t>((x >> 48) & 0x8000u);
    const uint64_t ax = x & 0x7fffffffffffffffull;
    if (ax > 0x7ff0000000000000ull) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN stays NaN
    if (ax >= 0x40effe0000000000ull) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 and inf: inf
    if (ax < 0x3e60000000000000ull) return sign;  // <= 2^-25, half the smallest subnormal: zero
    // 2^-25 < |d| < 65520: the exponent relative to half's smallest normal, then round to nearest even
    const int e = static_cast<int>(ax >> 52) - 1023;
    const int shift = 42 + (e < -14 ? -14 - e : 0);  // 52 - 10 mantissa bits, more for subnormals
    const uint64_t sig = (ax & 0xfffffffffffffull) | (uint64_t(1) << 52);
    uint64_t m = sig >> shift;
    const uint64_t rem = sig & ((uint64_t(1) << shift) - 1u), h = uint64_t(1) << (shift - 1);
    m += (rem > h || (rem == h && (m & 1u))) ? 1u : 0u;
    const uint64_t code = (static_cast<uint64_t>(e < -14 ? 0 : e + 14) << 10) + m;
    return static_cast<uint16_t>(sign | code);
  }
};
static_assert(sizeof(half) == 2, "half is two bytes");

// y[0:N] = x[0:K] @ W[K, N] (+ bias): streams W once, row by row, four rows at a time
template <int64_t K, int64_t N>
inline void gemv(const float* __restrict x, const float* __restrict w, const float* __restrict bias,
                 float* __restrict y) {
  if constexpr (N == 1) {  // a dot product, with 16 partial sums so that it vectorises
    constexpr int64_t K16 = K - K % 16;
    float acc[16] = {0.0f};
    for (int64_t k = 0; k < K16; k += 16)
      for (int j = 0; j < 16; ++j) acc[j] += x[k + j] * w[k + j];
    float s = bias ? bias[0] : 0.0f;
    if constexpr (K16 < K)
      for (int64_t k = K16; k < K; ++k) s += x[k] * w[k];
    for (int j = 0; j < 16; ++j) s += acc[j];
    y[0] = s;
  } else {
    constexpr int64_t K4 = K - K % 4;
    if (bias) {
      for (int64_t j = 0; j < N; ++j) y[j] = bias[j];
    } else {
      for (int64_t j = 0; j < N; ++j) y[j] = 0.0f;
    }
    for (int64_t k = 0; k < K4; k += 4) {
      const float a0 = x[k], a1 = x[k + 1], a2 = x[k + 2], a3 = x[k + 3];
      const float* __restrict w0 = w + k * N;
      const float* __restrict w1 = w0 + N;
      const float* __restrict w2 = w1 + N;
      const float* __restrict w3 = w2 + N;
      for (int64_t j = 0; j < N; ++j) y[j] += a0 * w0[j] + a1 * w1[j] + a2 * w2[j] + a3 * w3[j];
    }
    if constexpr (K4 < K) {
      for (int64_t k = K4; k < K; ++k) {
        const float a0 = x[k];
        const float* __restrict w0 = w + k * N;
        for (int64_t j = 0; j < N; ++j) y[j] += a0 * w0[j];
      }
    }
  }
}

// C[M, N] = alpha * op(A) @ op(B) + beta * C, all row-major and contiguous
inline void gemm(int64_t M, int64_t N, int64_t K, float alpha, const float* a, bool ta, const float* b,
                 bool tb, float beta, float* c) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < M * N; ++i) c[i] = beta == 0.0f ? 0.0f : beta * c[i];
    return;
  }
#ifndef ML4EP_NO_BLAS
  if (M * N * K >= 4096) {
    ML4EP_CBLAS_SGEMM(101, ta ? 112 : 111, tb ? 112 : 111, int(M), int(N), int(K), alpha, a,
                      int(ta ? M : K), b, int(tb ? K : N), beta, c, int(N));
    return;
  }
#endif
  for (int64_t i = 0; i < M; ++i) {
    float* __restrict ci = c + i * N;
    for (int64_t j = 0; j < N; ++j) ci[j] = beta == 0.0f ? 0.0f : beta * ci[j];
    for (int64_t p = 0; p < K; ++p) {
      const float av = alpha * (ta ? a[p * M + i] : a[i * K + p]);
      if (tb) {
        for (int64_t j = 0; j < N; ++j) ci[j] += av * b[j * K + p];
      } else {
        const float* __restrict bp = b + p * N;
        for (int64_t j = 0; j < N; ++j) ci[j] += av * bp[j];
      }
    }
  }
}

// Y[M, N] = op(A)[M, K] @ W[K, N] + bias[N]
inline void dense_blas(int64_t M, int64_t N, int64_t K, const float* a, bool ta, const float* w,
                       const float* bias, float* y) {
  if (M <= 0) return;
  float beta = 0.0f;
  if (bias) {
    for (int64_t i = 0; i < M; ++i) std::memcpy(y + i * N, bias, sizeof(float) * size_t(N));
    beta = 1.0f;
  }
  gemm(M, N, K, 1.0f, a, ta, w, false, beta, y);
}

// the weights file: a 64-byte header (magic, model id, payload size) then 64-byte aligned tensors
class Weights {
 public:
  Weights(const std::string& path, uint64_t model_id, uint64_t payload_bytes, const char* model_name) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error(std::string(model_name) + ": cannot open weights file '" + path + "'");
    char header[64];
    f.read(header, 64);
    uint64_t id = 0, size = 0;
    std::memcpy(&id, header + 8, 8);
    std::memcpy(&size, header + 16, 8);
    if (!f || std::memcmp(header, "ML4EPW01", 8) != 0)
      throw std::runtime_error(std::string(model_name) + ": '" + path + "' is not an ml4ep weights file");
    if (id != model_id || size != payload_bytes)
      throw std::runtime_error(std::string(model_name) + ": weights file '" + path +
                               "' belongs to another model (id or size differ)");
    data_.reset(static_cast<unsigned char*>(::operator new(payload_bytes + 64, std::align_val_t(64))));
    f.read(reinterpret_cast<char*>(data_.get()), std::streamsize(payload_bytes));
    if (!f) throw std::runtime_error(std::string(model_name) + ": weights file '" + path + "' is truncated");
  }
  const unsigned char* data() const { return data_.get(); }

 private:
  struct Free {
    void operator()(unsigned char* p) const { ::operator delete(p, std::align_val_t(64)); }
  };
  std::unique_ptr<unsigned char, Free> data_;
};

// Size arithmetic of run-time dimensions (limits.py): the check block at the top of infer evaluates every tensor
// size, the workspace and every dimension expression of the code with these, saturating at kSizeSat = 2^62 (no
// int64 overflow), and refuses a tensor or a workspace over ML4EP_MAX_BYTES before anything is allocated
#ifndef ML4EP_MAX_BYTES
#define ML4EP_MAX_BYTES (int64_t(1) << 47)
#endif
constexpr int64_t kSizeSat = int64_t(1) << 62;
struct SizeCalc {
  bool overflow = false;  // some result was beyond +-kSizeSat (and saturated there)
  int64_t sat(bool wrapped, int64_t r, bool negative) {
    if (wrapped || r > kSizeSat || r < -kSizeSat) {
      overflow = true;
      return negative ? -kSizeSat : kSizeSat;
    }
    return r;
  }
  int64_t mul(int64_t a, int64_t b) {
    int64_t r = 0;
    const bool w = __builtin_mul_overflow(a, b, &r);
    return sat(w, r, (a < 0) != (b < 0));
  }
  int64_t add(int64_t a, int64_t b) {
    int64_t r = 0;
    const bool w = __builtin_add_overflow(a, b, &r);
    return sat(w, r, w ? a < 0 : r < 0);
  }
  // c * f1 * f2 * ...
  int64_t mono(int64_t c, std::initializer_list<int64_t> factors) {
    int64_t r = c;
    for (int64_t f : factors) r = mul(r, f);
    return r;
  }
};
[[noreturn]] inline void size_error(const char* model, const char* what, const char* unit, int64_t value,
                                    const std::string& dims) {
  const std::string v = value >= kSizeSat ? "2^62 or more" : (value <= -kSizeSat ? "-2^62 or less" : std::to_string(value));
  throw std::length_error(std::string(model) + ": " + what + ": " + v + (*unit ? " " : "") + unit +
                          (*unit ? ", over the limit of " + std::to_string(int64_t(ML4EP_MAX_BYTES)) + " bytes"
                                 : ", too large") +
                          " (dimensions " + dims + ")");
}
[[noreturn]] inline void negative_dim(const char* model, const char* what, int64_t value, const std::string& dims) {
  throw std::length_error(std::string(model) + ": " + what + " is negative: " + std::to_string(value) +
                          " (dimensions " + dims + ")");
}

// the workspace of intermediate tensors: grows only when a larger set of symbolic dimensions is seen
class Arena {
 public:
  unsigned char* reserve(size_t bytes) {
    if (bytes > capacity_) {
      data_.reset();
      capacity_ = 0;
      try {
        data_.reset(static_cast<unsigned char*>(::operator new(bytes, std::align_val_t(64))));
      } catch (const std::bad_alloc&) {
        throw std::length_error("cannot allocate the workspace of " + std::to_string(bytes) + " bytes (out of memory)");
      }
      capacity_ = bytes;
    }
    return data_.get();
  }
  size_t capacity() const { return capacity_; }

 private:
  struct Free {
    void operator()(unsigned char* p) const { ::operator delete(p, std::align_val_t(64)); }
  };
  std::unique_ptr<unsigned char, Free> data_;
  size_t capacity_ = 0;
};

}  // namespace ml4ep_rt
// limits of half, so that reductions and clamps written for any T see the right bounds
namespace std {
template <>
class numeric_limits<ml4ep_rt::half> {
 public:
  static constexpr bool is_specialized = true, is_signed = true, is_integer = false, is_exact = false;
  static constexpr bool has_infinity = true, has_quiet_NaN = true;
  static constexpr int digits = 11;
  ML4EP_HD static ml4ep_rt::half min() { return ml4ep_rt::half::from_bits(0x0400u); }
  ML4EP_HD static ml4ep_rt::half max() { return ml4ep_rt::half::from_bits(0x7bffu); }
  ML4EP_HD static ml4ep_rt::half lowest() { return ml4ep_rt::half::from_bits(0xfbffu); }
  ML4EP_HD static ml4ep_rt::half epsilon() { return ml4ep_rt::half::from_bits(0x1400u); }
  ML4EP_HD static ml4ep_rt::half infinity() { return ml4ep_rt::half::from_bits(0x7c00u); }
  ML4EP_HD static ml4ep_rt::half quiet_NaN() { return ml4ep_rt::half::from_bits(0x7e00u); }
  ML4EP_HD static ml4ep_rt::half denorm_min() { return ml4ep_rt::half::from_bits(0x0001u); }
};
}  // namespace std
#endif  // ML4EP_PRELUDE_V1
