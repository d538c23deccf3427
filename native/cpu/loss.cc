// Algorithm: cross-entropy runs one pass per row for the max, one for the sum of
// exp(x - max) and, with label smoothing, the (weighted) sum of the logits; it stores
// only loss[r] and lse[r]. float32 rows that are contiguous and unweighted (the
// language-model case) take a vectorised path (polynomial exp, 8-lane partial sums
// flushed to double, AVX2+FMA when the CPU has it); other cases run in double. The backward recomputes
// p_c = exp(x_c - lse) on the fly, so no [N, C] probability tensor exists at any time.
// Traffic: forward reads the logits twice (three times with smoothing) and writes 2
// values per row; backward reads the logits once and writes dx once. Rows are
// independent and split over threads. Targets are checked serially before any thread
// starts, so a bad target raises an Error instead of a crash.
#include "cpu/loss.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "threadpool.h"

#if defined(__GNUC__)
#define NG_INLINE inline __attribute__((always_inline))
#else
#define NG_INLINE inline
#endif
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define NG_LOSS_AVX2 1
#define NG_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define NG_LOSS_AVX2 0
#define NG_TARGET_AVX2
#endif

namespace ng {
namespace {

template <class T>
struct Rows {
  const T* x;
  const T* w;
  const int32_t* t;
  int64_t C, I, ignore;
  // Element c of row r, and its target.
  const T* row(int64_t r) const { return x + (r / I) * C * I + (r % I); }
  T* row(T* base, int64_t r) const { return base + (r / I) * C * I + (r % I); }
  double wc(int64_t c) const { return w ? static_cast<double>(w[c]) : 1.0; }
};

template <class T>
Rows<T> rows_of(const ClassLossArgs& a) {
  return Rows<T>{static_cast<const T*>(a.x), static_cast<const T*>(a.weight), a.targets, a.C, a.I, a.ignore_index};
}

int64_t row_grain(int64_t C) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(C, 1)); }

template <class T>
double total_weight(const Rows<T>& R, int64_t rows) {
  double tw = 0;
  for (int64_t r = 0; r < rows; ++r)
    if (R.t[r] != R.ignore) tw += R.wc(R.t[r]);
  return tw;
}

// One row of the general path: any layout (stride I), optional weights, double math.
template <class T>
void ce_row_forward(const Rows<T>& R, int64_t r, double eps, double W, T* loss, T* lse) {
  const int64_t C = R.C, I = R.I;
  const int32_t t = R.t[r];
  const T* x = R.row(r);
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < C; ++c) m = std::max(m, static_cast<double>(x[c * I]));
  double s = 0;
  for (int64_t c = 0; c < C; ++c) s += std::exp(static_cast<double>(x[c * I]) - m);
  const double l = m + std::log(s);
  double v = (1 - eps) * R.wc(t) * (l - static_cast<double>(x[t * I]));
  if (eps > 0) {
    double wx = 0;
    for (int64_t c = 0; c < C; ++c) wx += R.wc(c) * static_cast<double>(x[c * I]);
    v += eps / C * (l * W - wx);
  }
  loss[r] = static_cast<T>(v);
  lse[r] = static_cast<T>(l);
}

template <class T>
void ce_row_backward(const Rows<T>& R, int64_t r, double eps, double W, const T* lse, const T* g, T* dx) {
  const int64_t C = R.C, I = R.I;
  const int32_t t = R.t[r];
  T* d = R.row(dx, r);
  const T* x = R.row(r);
  const double gr = static_cast<double>(g[r]), l = static_cast<double>(lse[r]);
  const double wt = (1 - eps) * R.wc(t), sc = eps / C;
  const double scale_p = wt + sc * W;
  for (int64_t c = 0; c < C; ++c) {
    double v = std::exp(static_cast<double>(x[c * I]) - l) * scale_p - sc * R.wc(c);
    d[c * I] = static_cast<T>(gr * v);
  }
  d[t * I] = static_cast<T>(static_cast<double>(d[t * I]) - gr * wt);
}

// The common language-model case: float32, contiguous rows (I == 1), no class weights.
// 8 independent lanes vectorise; partial sums go to double every 2048 elements.
NG_INLINE float max_f32(const float* x, int64_t n) {
  const float ninf = -std::numeric_limits<float>::infinity();
  float acc[8] = {ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    for (int u = 0; u < 8; ++u) acc[u] = x[c + u] > acc[u] ? x[c + u] : acc[u];
  float m = ninf;
  for (int u = 0; u < 8; ++u) m = acc[u] > m ? acc[u] : m;
  for (; c < n; ++c) m = x[c] > m ? x[c] : m;
  return m;
}
// exp(x) for x <= 0 (the callers pass x - max or x - lse), or NaN: Cephes' degree-7
// polynomial as cpu/softmax.cc's exp_poly, n = round(x / ln 2) by the 1.5 * 2^23 trick and
// 2^n built in the exponent bits at once (no floor, no overflow split: n >= -126), ~1 ulp;
// below ln(FLT_MIN) it returns 0, NaN stays NaN. Written on scalars so that GCC
// vectorises the loops that call it (about 40% fewer instructions than exp_fast's
// general-range version).
NG_INLINE float exp_nonpos(float x) {
  const float lo = -87.33654475f;
  const float xc = x < lo ? lo : x;  // NaN passes through
  const float t = xc * 1.44269504088896341f + 12582912.0f;
  const float n = t - 12582912.0f;
  int32_t ni;
  std::memcpy(&ni, &t, sizeof ni);
  ni -= 0x4B400000;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t bits = (ni + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float v = p * scale;
  return x < lo ? 0.0f : v;
}
template <bool Exp>
NG_INLINE double sum_f32(const float* x, int64_t n, float shift) {
  double total = 0;
  for (int64_t c0 = 0; c0 < n; c0 += 2048) {
    const int64_t c1 = std::min(n, c0 + 2048);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t c = c0;
    for (; c + 8 <= c1; c += 8)
      for (int u = 0; u < 8; ++u) acc[u] += Exp ? exp_nonpos(x[c + u] - shift) : x[c + u];
    for (; c < c1; ++c) total += Exp ? exp_nonpos(x[c] - shift) : x[c];
    // pairwise in float, one conversion (a lane-by-lane flush to double was a chain of
    // 16 dependent operations per row)
    for (int w = 4; w > 0; w /= 2)
      for (int u = 0; u < w; ++u) acc[u] += acc[u + w];
    total += acc[0];
  }
  return total;
}
// The forward row loop; Lse(xr, C) gives the row's log-sum-exp (in double).
template <class Lse>
NG_INLINE void ce_rows_f32(const ClassLossArgs& a, int64_t r0, int64_t r1, float* loss, float* lse, Lse lse_of) {
  const float* x = static_cast<const float*>(a.x);
  const int64_t C = a.C;
  const double eps = a.label_smoothing;
  for (int64_t r = r0; r < r1; ++r) {
    const int32_t t = a.targets[r];
    if (t == a.ignore_index) {
      loss[r] = lse[r] = 0;
      continue;
    }
    const float* xr = x + r * C;
    const double l = lse_of(xr, C);
    double v = (1 - eps) * (l - xr[t]);
    if (eps > 0) v += eps / C * (l * C - sum_f32<false>(xr, C, 0));
    loss[r] = static_cast<float>(v);
    lse[r] = static_cast<float>(l);
  }
}
struct LseBase {
  NG_INLINE double operator()(const float* xr, int64_t C) const {
    const float m = max_f32(xr, C);
    return m + std::log(sum_f32<true>(xr, C, m));
  }
};
NG_INLINE void ce_rows_back_f32(const ClassLossArgs& a, int64_t r0, int64_t r1, const float* lse, const float* g,
                                float* dx) {
  const float* x = static_cast<const float*>(a.x);
  const int64_t C = a.C;
  const double eps = a.label_smoothing;
  for (int64_t r = r0; r < r1; ++r) {
    const int32_t t = a.targets[r];
    const float* xr = x + r * C;
    float* d = dx + r * C;
    const float gr = t == a.ignore_index ? 0.f : g[r], l = lse[r], off = static_cast<float>(gr * eps / C);
    for (int64_t c = 0; c < C; ++c) d[c] = gr * exp_nonpos(xr[c] - l) - off;
    if (t != a.ignore_index) d[t] -= static_cast<float>(gr * (1 - eps));
    else std::fill(d, d + C, 0.f);
  }
}
#if NG_LOSS_AVX2
// The row max in AVX2 intrinsics: GCC leaves the 8-lane max above scalar (8 dependent
// vmaxss per 8 elements); at C = 64 that, the partial sums' flush and the double log were
// half the row's time.
NG_TARGET_AVX2 NG_INLINE float hmax_v(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
// max over the row; a NaN element makes the row's sum (hence its loss) NaN below.
NG_TARGET_AVX2 NG_INLINE float max_f32_v(const float* x, int64_t n) {
  const float ninf = -std::numeric_limits<float>::infinity();
  __m256 a0 = _mm256_set1_ps(ninf), a1 = a0;
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) {
    a0 = _mm256_max_ps(a0, _mm256_loadu_ps(x + c));
    a1 = _mm256_max_ps(a1, _mm256_loadu_ps(x + c + 8));
  }
  if (c + 8 <= n) a0 = _mm256_max_ps(a0, _mm256_loadu_ps(x + c)), c += 8;
  float m = hmax_v(_mm256_max_ps(a0, a1));
  for (; c < n; ++c) m = x[c] > m ? x[c] : m;
  return m;
}
struct LseAvx2 {
  NG_TARGET_AVX2 double operator()(const float* xr, int64_t C) const {  // (not always_inline: the row loop is not AVX2 code)
    const float m = max_f32_v(xr, C);
    const double s = sum_f32<true>(xr, C, m);  // (GCC vectorises this one)
    // s is in [1, C] for finite rows: a float log is exact to < 1 ulp of the float result
    // up to C = 2048 (one partial sum); longer rows keep the double log.
    return m + (C <= 2048 ? static_cast<double>(std::log(static_cast<float>(s))) : std::log(s));
  }
};
NG_TARGET_AVX2 void ce_rows_f32_avx2(const ClassLossArgs& a, int64_t r0, int64_t r1, float* loss, float* lse) {
  ce_rows_f32(a, r0, r1, loss, lse, LseAvx2{});
}
NG_TARGET_AVX2 void ce_rows_back_f32_avx2(const ClassLossArgs& a, int64_t r0, int64_t r1, const float* lse,
                                          const float* g, float* dx) {
  ce_rows_back_f32(a, r0, r1, lse, g, dx);
}
#endif
void ce_rows_f32_base(const ClassLossArgs& a, int64_t r0, int64_t r1, float* loss, float* lse) {
  ce_rows_f32(a, r0, r1, loss, lse, LseBase{});
}
void ce_rows_back_f32_base(const ClassLossArgs& a, int64_t r0, int64_t r1, const float* lse, const float* g,
                           float* dx) {
  ce_rows_back_f32(a, r0, r1, lse, g, dx);
}
bool use_avx2() {
#if NG_LOSS_AVX2
  return cpu_features().avx2 && cpu_features().fma;
#else
  return false;
#endif
}
template <class T>
bool fast_rows(const ClassLossArgs& a) {
  return std::is_same<T, float>::value && a.I == 1 && a.weight == nullptr;
}

template <class T>
double ce_forward(const ClassLossArgs& a, T* loss, T* lse) {
  const Rows<T> R = rows_of<T>(a);
  const int64_t rows = a.N * a.I, C = a.C;
  const double eps = a.label_smoothing;
  double W = 0;
  for (int64_t c = 0; c < C; ++c) W += R.wc(c);
  const bool fast = fast_rows<T>(a), avx2 = use_avx2();
  parallel_for(rows, row_grain(C), [&](int64_t r0, int64_t r1) {
    if (fast) {
      float* lo = reinterpret_cast<float*>(loss);
      float* ls = reinterpret_cast<float*>(lse);
#if NG_LOSS_AVX2
      if (avx2) return ce_rows_f32_avx2(a, r0, r1, lo, ls);
#endif
      return ce_rows_f32_base(a, r0, r1, lo, ls);
    }
    for (int64_t r = r0; r < r1; ++r) {
      if (R.t[r] == R.ignore) loss[r] = lse[r] = 0;
      else ce_row_forward(R, r, eps, W, loss, lse);
    }
  });
  (void)avx2;
  return total_weight(R, rows);
}

template <class T>
void ce_backward(const ClassLossArgs& a, const T* lse, const T* g, T* dx) {
  const Rows<T> R = rows_of<T>(a);
  const int64_t rows = a.N * a.I, C = a.C, I = a.I;
  const double eps = a.label_smoothing;
  double W = 0;
  for (int64_t c = 0; c < C; ++c) W += R.wc(c);
  const bool fast = fast_rows<T>(a), avx2 = use_avx2();
  parallel_for(rows, row_grain(C), [&](int64_t r0, int64_t r1) {
    if (fast) {
      const float* ls = reinterpret_cast<const float*>(lse);
      const float* gg = reinterpret_cast<const float*>(g);
      float* d = reinterpret_cast<float*>(dx);
#if NG_LOSS_AVX2
      if (avx2) return ce_rows_back_f32_avx2(a, r0, r1, ls, gg, d);
#endif
      return ce_rows_back_f32_base(a, r0, r1, ls, gg, d);
    }
    for (int64_t r = r0; r < r1; ++r) {
      if (R.t[r] != R.ignore) {
        ce_row_backward(R, r, eps, W, lse, g, dx);
        continue;
      }
      T* d = R.row(dx, r);
      for (int64_t c = 0; c < C; ++c) d[c * I] = 0;
    }
  });
  (void)avx2;
}

template <class T>
double nll_forward(const ClassLossArgs& a, T* loss) {
  const Rows<T> R = rows_of<T>(a);
  const int64_t rows = a.N * a.I;
  parallel_for(rows, 4096, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int32_t t = R.t[r];
      loss[r] = t == R.ignore ? T(0) : static_cast<T>(-R.wc(t) * static_cast<double>(R.row(r)[t * a.I]));
    }
  });
  return total_weight(R, rows);
}

template <class T>
void nll_backward(const ClassLossArgs& a, const T* g, T* dx) {
  const Rows<T> R = rows_of<T>(a);
  const int64_t rows = a.N * a.I, C = a.C, I = a.I;
  parallel_for(rows, row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* d = R.row(dx, r);
      for (int64_t c = 0; c < C; ++c) d[c * I] = 0;
      const int32_t t = R.t[r];
      if (t != R.ignore) d[t * I] = static_cast<T>(-R.wc(t) * static_cast<double>(g[r]));
    }
  });
}

inline double softplus_neg(double x) { return std::max(-x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }

template <class T>
void bce_forward(const T* x, const T* y, const T* pw, int64_t n, T* loss) {
  parallel_for(n, 8192, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const double xi = x[i], yi = y[i];
      const double L = pw ? 1 + (static_cast<double>(pw[i]) - 1) * yi : 1.0;
      loss[i] = static_cast<T>((1 - yi) * xi + L * softplus_neg(xi));
    }
  });
}

template <class T>
void bce_backward(const T* x, const T* y, const T* pw, const T* g, int64_t n, T* dx, T* dy, T* dpw) {
  parallel_for(n, 8192, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const double xi = x[i], yi = y[i], gi = g[i];
      const double p = pw ? static_cast<double>(pw[i]) : 1.0;
      const double L = 1 + (p - 1) * yi;
      const double sig = xi >= 0 ? 1 / (1 + std::exp(-xi)) : std::exp(xi) / (1 + std::exp(xi));
      if (dx) dx[i] = static_cast<T>(gi * ((1 - yi) + L * (sig - 1)));
      if (dy || dpw) {
        const double sp = softplus_neg(xi);
        if (dy) dy[i] = static_cast<T>(gi * (-xi + (p - 1) * sp));
        if (dpw) dpw[i] = static_cast<T>(gi * yi * sp);
      }
    }
  });
}

void check_float(DType dt, const char* op) {
  if (dt != DType::F32 && dt != DType::F64)
    throw Error(std::string(op) + ": expected float32 or float64 (got " + dtype_name(dt) + ")");
}

}  // namespace

void check_class_targets(const char* op, const int32_t* targets, int64_t rows, int64_t C, int64_t ignore_index) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = targets[r];
    if (t == ignore_index) continue;
    if (t < 0 || t >= C) {
      throw Error(std::string(op) + ": target " + std::to_string(t) + " at position " + std::to_string(r) +
                  " is out of range for " + std::to_string(C) + " classes (expected 0 <= target < " +
                  std::to_string(C) + " or ignoreIndex " + std::to_string(ignore_index) + ")");
    }
  }
}

double cross_entropy_forward(const ClassLossArgs& a, void* loss, void* lse) {
  check_float(a.dtype, "crossEntropy");
  check_class_targets("crossEntropy", a.targets, a.N * a.I, a.C, a.ignore_index);
  if (a.dtype == DType::F32) return ce_forward<float>(a, static_cast<float*>(loss), static_cast<float*>(lse));
  return ce_forward<double>(a, static_cast<double*>(loss), static_cast<double*>(lse));
}

void cross_entropy_backward(const ClassLossArgs& a, const void* lse, const void* g, void* dx) {
  check_float(a.dtype, "crossEntropy");
  check_class_targets("crossEntropy", a.targets, a.N * a.I, a.C, a.ignore_index);
  if (a.dtype == DType::F32)
    return ce_backward<float>(a, static_cast<const float*>(lse), static_cast<const float*>(g), static_cast<float*>(dx));
  ce_backward<double>(a, static_cast<const double*>(lse), static_cast<const double*>(g), static_cast<double*>(dx));
}

double nll_loss_forward(const ClassLossArgs& a, void* loss) {
  check_float(a.dtype, "nllLoss");
  check_class_targets("nllLoss", a.targets, a.N * a.I, a.C, a.ignore_index);
  if (a.dtype == DType::F32) return nll_forward<float>(a, static_cast<float*>(loss));
  return nll_forward<double>(a, static_cast<double*>(loss));
}

void nll_loss_backward(const ClassLossArgs& a, const void* g, void* dx) {
  check_float(a.dtype, "nllLoss");
  check_class_targets("nllLoss", a.targets, a.N * a.I, a.C, a.ignore_index);
  if (a.dtype == DType::F32) return nll_backward<float>(a, static_cast<const float*>(g), static_cast<float*>(dx));
  nll_backward<double>(a, static_cast<const double*>(g), static_cast<double*>(dx));
}

void bce_logits_forward(DType dt, const void* x, const void* y, const void* pw, int64_t n, void* loss) {
  check_float(dt, "binaryCrossEntropyWithLogits");
  if (dt == DType::F32)
    return bce_forward<float>(static_cast<const float*>(x), static_cast<const float*>(y),
                              static_cast<const float*>(pw), n, static_cast<float*>(loss));
  bce_forward<double>(static_cast<const double*>(x), static_cast<const double*>(y), static_cast<const double*>(pw), n,
                      static_cast<double*>(loss));
}

void bce_logits_backward(DType dt, const void* x, const void* y, const void* pw, const void* g, int64_t n, void* dx,
                         void* dy, void* dpw) {
  check_float(dt, "binaryCrossEntropyWithLogits");
  if (dt == DType::F32)
    return bce_backward<float>(static_cast<const float*>(x), static_cast<const float*>(y),
                               static_cast<const float*>(pw), static_cast<const float*>(g), n,
                               static_cast<float*>(dx), static_cast<float*>(dy), static_cast<float*>(dpw));
  bce_backward<double>(static_cast<const double*>(x), static_cast<const double*>(y), static_cast<const double*>(pw),
                       static_cast<const double*>(g), n, static_cast<double*>(dx), static_cast<double*>(dy),
                       static_cast<double*>(dpw));
}

}  // namespace ng
