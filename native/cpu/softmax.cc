// Algorithm. Rows (I == 1): three passes over a row that stays in L1/L2: the max (two
// vector accumulators), exp(x - max) written to y while summing (two vector
// accumulators), then y *= 1/sum. Log-softmax only sums in the second pass and writes
// (x - max) - log(sum) in the third. Columns (I > 1): the same passes run over blocks of
// up to 256 adjacent i, vectorised across i. Parallel over rows or (m, i-block) units.
// float32 uses a branch-free polynomial exp (Cephes, ~1 ulp) on whole vectors.
// Memory traffic: forward reads x twice and writes y once (softmax re-reads y once,
// from cache); backward reads g and y twice and writes gx once.
//
// The kernel bodies (the #else branch at the end) are compiled twice by including this
// file into itself: portable with 16-byte vectors, and for AVX2/FMA with 32-byte vectors;
// the AVX2 build is picked at run time.
#ifndef NG_SOFTMAX_KERNELS
#include "cpu/softmax.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "cpu/isa.h"
#include "threadpool.h"

namespace ng {
namespace {
struct Shape {
  int64_t M, C, I;
};
constexpr int64_t kColBlock = 256;
inline int64_t col_blocks(const Shape& s) { return (s.I + kColBlock - 1) / kColBlock; }
}  // namespace
}  // namespace ng

#define NG_SOFTMAX_KERNELS
namespace ng {
namespace {
namespace generic {
constexpr int kVecBytes = 16;
#include "cpu/softmax.cc"
}  // namespace generic
}  // namespace
}  // namespace ng
#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace ng {
namespace {
namespace avx2 {
constexpr int kVecBytes = 32;
#include "cpu/softmax.cc"
}  // namespace avx2
}  // namespace
}  // namespace ng
#pragma GCC pop_options
#endif

namespace ng {
namespace {

int64_t units_of(const Shape& s) { return s.I == 1 ? s.M : s.M * col_blocks(s); }
int64_t grain_of(const Shape& s) {
  int64_t per_unit = s.C * std::min(s.I, kColBlock);
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, per_unit));
}

template <class T>
void forward_t(const T* x, T* y, const Shape& s, bool log) {
  auto fn = NG_PICK(forward_units);
  parallel_for(units_of(s), grain_of(s), [&](int64_t u0, int64_t u1) { fn(x, y, s, u0, u1, log); });
}

template <class T>
void backward_t(const T* g, const T* y, T* gx, const Shape& s, bool log) {
  auto fn = NG_PICK(backward_units);
  parallel_for(units_of(s), grain_of(s), [&](int64_t u0, int64_t u1) { fn(g, y, gx, s, u0, u1, log); });
}
#undef NG_PICK

const char* op_name(bool log) { return log ? "logSoftmax" : "softmax"; }

}  // namespace

void softmax_forward(const void* x, void* y, DType dt, int64_t M, int64_t C, int64_t I, bool log) {
  if (M < 0 || C < 0 || I < 0) throw Error(std::string(op_name(log)) + ": negative size");
  const Shape s{M, C, I};
  if (M == 0 || C == 0 || I == 0) return;
  switch (dt) {
    case DType::F32: return forward_t(static_cast<const float*>(x), static_cast<float*>(y), s, log);
    case DType::F64: return forward_t(static_cast<const double*>(x), static_cast<double*>(y), s, log);
    default: throw Error(std::string(op_name(log)) + ": unsupported dtype " + dtype_name(dt));
  }
}

void softmax_backward(const void* g, const void* y, void* gx, DType dt, int64_t M, int64_t C, int64_t I, bool log) {
  if (M < 0 || C < 0 || I < 0) throw Error(std::string(op_name(log)) + ": negative size");
  const Shape s{M, C, I};
  if (M == 0 || C == 0 || I == 0) return;
  switch (dt) {
    case DType::F32:
      return backward_t(static_cast<const float*>(g), static_cast<const float*>(y), static_cast<float*>(gx), s, log);
    case DType::F64:
      return backward_t(static_cast<const double*>(g), static_cast<const double*>(y), static_cast<double*>(gx), s, log);
    default: throw Error(std::string(op_name(log)) + ": unsupported dtype " + dtype_name(dt));
  }
}

}  // namespace ng

#else  // NG_SOFTMAX_KERNELS: the kernels, compiled once per instruction set (kVecBytes)

#include "cpu/simd_kernels.h"

template <class T> NG_INLINE vec<T> splat(T x) { return vec<T>{} + x; }
// max that ignores a NaN in x (a NaN still reaches its row through exp and the sum)
template <class U> NG_INLINE U vmax(U x, U m) { return x > m ? x : m; }

// exp for float32 without branches or calls: n = round(x / ln 2), r = x - n ln 2 (two-part
// constant), exp(r) by a degree-7 Cephes polynomial, times 2^n built in the exponent bits.
// U is float or vec<float>, I the matching int32 type. Accurate to ~1 ulp for x <= 88.37
// (callers pass x <= 0); below ln(FLT_MIN) it returns 0; NaN stays NaN.
template <class U, class I>
NG_INLINE U exp_poly(U x) {
  const U lo = U{} + -87.33654475f, hi = U{} + 88.37f, zero = U{};
  U xc = x < lo ? lo : x;  // NaN passes through both selects
  xc = xc > hi ? hi : xc;
  U t = xc * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23: rounds to an integer
  U n = t - 12582912.0f;
  I ni;
  std::memcpy(&ni, &t, sizeof ni);
  ni -= 0x4B400000;
  U r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  U p = U{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  I bits = (ni + 127) << 23;
  U scale;
  std::memcpy(&scale, &bits, sizeof scale);
  U v = p * scale;
  return x < lo ? zero : v;
}
typedef int32_t vint __attribute__((vector_size(kVecBytes)));
NG_INLINE float fexp(float x) { return exp_poly<float, int32_t>(x); }
NG_INLINE vec<float> fexp(vec<float> x) { return exp_poly<vec<float>, vint>(x); }
NG_INLINE double fexp(double x) { return std::exp(x); }
NG_INLINE vec<double> fexp(vec<double> x) {
  for (int i = 0; i < kN<double>; ++i) x[i] = std::exp(x[i]);
  return x;
}

template <class T>
NG_INLINE T row_max(const T* x, int64_t C) {
  constexpr int64_t N = kN<T>;
  T r = -std::numeric_limits<T>::infinity();
  int64_t c = 0;
  if (C >= 2 * N) {
    vec<T> m0 = splat(r), m1 = m0;
    for (; c + 2 * N <= C; c += 2 * N) {
      m0 = vmax(load(x + c), m0);
      m1 = vmax(load(x + c + N), m1);
    }
    m0 = vmax(m0, m1);
    for (int i = 0; i < N; ++i) r = vmax(m0[i], r);
  }
  for (; c < C; ++c) r = vmax(x[c], r);
  return r;
}

// ---- forward ------------------------------------------------------------------------

// sum_c exp(x - m), also stored to y when y is not null
template <class T>
NG_INLINE T exp_sum(const T* x, T* y, int64_t C, T m) {
  constexpr int64_t N = kN<T>;
  const vec<T> vm = splat(m);
  vec<T> s0{}, s1{};
  int64_t c = 0;
  for (; c + 2 * N <= C; c += 2 * N) {
    vec<T> e0 = fexp(load(x + c) - vm), e1 = fexp(load(x + c + N) - vm);
    if (y) {
      store(y + c, e0);
      store(y + c + N, e1);
    }
    s0 += e0;
    s1 += e1;
  }
  T s = hsum<T>(s0 + s1);
  for (; c < C; ++c) {
    T e = fexp(x[c] - m);
    if (y) y[c] = e;
    s += e;
  }
  return s;
}

template <class T>
NG_INLINE void forward_row(const T* x, T* y, int64_t C, bool log) {
  const T m = row_max(x, C);
  if (log) {
    const T lse = std::log(exp_sum<T>(x, nullptr, C, m));
    for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - m) - lse;
    return;
  }
  const T inv = T(1) / exp_sum(x, y, C, m);
  for (int64_t c = 0; c < C; ++c) y[c] *= inv;
}

// n adjacent columns (stride I between the C entries of one column); the loops over j
// have no cross-lane reductions, so they vectorise as written.
template <class T>
NG_INLINE void forward_cols(const T* x, T* y, int64_t C, int64_t I, int64_t n, bool log) {
  T mx[kColBlock], s[kColBlock];
  for (int64_t j = 0; j < n; ++j) {
    mx[j] = -std::numeric_limits<T>::infinity();
    s[j] = 0;
  }
  for (int64_t c = 0; c < C; ++c) {
    const T* r = x + c * I;
    for (int64_t j = 0; j < n; ++j) mx[j] = vmax(r[j], mx[j]);
  }
  for (int64_t c = 0; c < C; ++c) {
    const T* r = x + c * I;
    T* o = y + c * I;
    if (log) {
      for (int64_t j = 0; j < n; ++j) s[j] += fexp(r[j] - mx[j]);
    } else {
      for (int64_t j = 0; j < n; ++j) {
        T e = fexp(r[j] - mx[j]);
        o[j] = e;
        s[j] += e;
      }
    }
  }
  if (log) {
    for (int64_t j = 0; j < n; ++j) s[j] = std::log(s[j]);
    for (int64_t c = 0; c < C; ++c) {
      const T* r = x + c * I;
      T* o = y + c * I;
      for (int64_t j = 0; j < n; ++j) o[j] = (r[j] - mx[j]) - s[j];
    }
  } else {
    for (int64_t j = 0; j < n; ++j) s[j] = T(1) / s[j];
    for (int64_t c = 0; c < C; ++c) {
      T* o = y + c * I;
      for (int64_t j = 0; j < n; ++j) o[j] *= s[j];
    }
  }
}

// ---- backward -----------------------------------------------------------------------

// sum_c a[c] * b[c], or sum_c a[c] when b is null
template <class T>
NG_INLINE T dot(const T* a, const T* b, int64_t C) {
  constexpr int64_t N = kN<T>;
  vec<T> s0{}, s1{};
  int64_t c = 0;
  if (b) {
    for (; c + 2 * N <= C; c += 2 * N) {
      s0 += load(a + c) * load(b + c);
      s1 += load(a + c + N) * load(b + c + N);
    }
  } else {
    for (; c + 2 * N <= C; c += 2 * N) {
      s0 += load(a + c);
      s1 += load(a + c + N);
    }
  }
  T s = hsum<T>(s0 + s1);
  for (; c < C; ++c) s += b ? a[c] * b[c] : a[c];
  return s;
}

template <class T>
NG_INLINE void backward_row(const T* g, const T* y, T* gx, int64_t C, bool log) {
  if (log) {
    const T sg = dot<T>(g, nullptr, C);
    for (int64_t c = 0; c < C; ++c) gx[c] = g[c] - fexp(y[c]) * sg;
    return;
  }
  const T d = dot(g, y, C);
  for (int64_t c = 0; c < C; ++c) gx[c] = y[c] * (g[c] - d);
}

template <class T>
NG_INLINE void backward_cols(const T* g, const T* y, T* gx, int64_t C, int64_t I, int64_t n, bool log) {
  T s[kColBlock];
  for (int64_t j = 0; j < n; ++j) s[j] = 0;
  for (int64_t c = 0; c < C; ++c) {
    const T* gr = g + c * I;
    const T* yr = y + c * I;
    if (log) {
      for (int64_t j = 0; j < n; ++j) s[j] += gr[j];
    } else {
      for (int64_t j = 0; j < n; ++j) s[j] += gr[j] * yr[j];
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    const T* gr = g + c * I;
    const T* yr = y + c * I;
    T* o = gx + c * I;
    if (log) {
      for (int64_t j = 0; j < n; ++j) o[j] = gr[j] - fexp(yr[j]) * s[j];
    } else {
      for (int64_t j = 0; j < n; ++j) o[j] = yr[j] * (gr[j] - s[j]);
    }
  }
}

// ---- work units: one row (I == 1) or one block of kColBlock columns of one m ----------

template <class T>
void forward_units(const T* x, T* y, const Shape& s, int64_t u0, int64_t u1, bool log) {
  if (s.I == 1) {
    for (int64_t u = u0; u < u1; ++u) forward_row(x + u * s.C, y + u * s.C, s.C, log);
    return;
  }
  const int64_t nb = col_blocks(s);
  for (int64_t u = u0; u < u1; ++u) {
    int64_t m = u / nb, i0 = (u % nb) * kColBlock, off = m * s.C * s.I + i0;
    forward_cols(x + off, y + off, s.C, s.I, std::min(kColBlock, s.I - i0), log);
  }
}

template <class T>
void backward_units(const T* g, const T* y, T* gx, const Shape& s, int64_t u0, int64_t u1, bool log) {
  if (s.I == 1) {
    for (int64_t u = u0; u < u1; ++u) backward_row(g + u * s.C, y + u * s.C, gx + u * s.C, s.C, log);
    return;
  }
  const int64_t nb = col_blocks(s);
  for (int64_t u = u0; u < u1; ++u) {
    int64_t m = u / nb, i0 = (u % nb) * kColBlock, off = m * s.C * s.I + i0;
    backward_cols(g + off, y + off, gx + off, s.C, s.I, std::min(kColBlock, s.I - i0), log);
  }
}

#undef NG_INLINE
#endif  // NG_SOFTMAX_KERNELS
