// Algorithm: one elementwise pass, parallel over fixed chunks; sigmoid is built on the
// branch-free vectorisable exp of cpu/vmath.h for float32 (std::exp for float64), the
// float32 loops compiled twice (baseline and AVX2+FMA, chosen at run time). Memory
// traffic: forward reads gate and up and writes y; backward reads dy, gate, up and writes
// dgate, dup (the composed silu(gate) * up reads and writes an extra tensor each way).
#include "cpu/swiglu.h"

#include <type_traits>

#include "cpu/vmath.h"
#include "threadpool.h"

namespace ng {
namespace {

constexpr int64_t kGrain = 16384;

// vmath's sigmoid_fast keeps full relative precision on both sides (e / (1 + e) for x < 0).
NG_VMATH_INLINE float sigmoid(float x) { return sigmoid_fast(x); }
NG_VMATH_INLINE double sigmoid(double x) { return sigmoid_fast(x); }

template <class T>
NG_VMATH_INLINE void forward_range(const T* g, const T* u, T* y, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) y[i] = g[i] * sigmoid(g[i]) * u[i];
}

template <class T>
NG_VMATH_INLINE void backward_range(const T* dy, const T* g, const T* u, T* dg, T* du, int64_t i0, int64_t i1) {
  if (dg && du) {
    for (int64_t i = i0; i < i1; ++i) {
      const T s = sigmoid(g[i]);
      dg[i] = dy[i] * u[i] * (s * (T(1) + g[i] * (T(1) - s)));
      du[i] = dy[i] * (g[i] * s);
    }
  } else if (dg) {
    for (int64_t i = i0; i < i1; ++i) {
      const T s = sigmoid(g[i]);
      dg[i] = dy[i] * u[i] * (s * (T(1) + g[i] * (T(1) - s)));
    }
  } else if (du) {
    for (int64_t i = i0; i < i1; ++i) du[i] = dy[i] * (g[i] * sigmoid(g[i]));
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) void forward_avx2(const float* g, const float* u, float* y, int64_t i0, int64_t i1) {
  forward_range(g, u, y, i0, i1);
}
__attribute__((target("avx2,fma"))) void backward_avx2(const float* dy, const float* g, const float* u, float* dg,
                                                       float* du, int64_t i0, int64_t i1) {
  backward_range(dy, g, u, dg, du, i0, i1);
}
bool use_avx2() {
  static const bool v = cpu_features().avx2 && cpu_features().fma;
  return v;
}
#else
bool use_avx2() { return false; }
#endif

template <class T>
void forward_t(const T* g, const T* u, T* y, int64_t n) {
  const bool avx2 = std::is_same<T, float>::value && use_avx2();
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
#if defined(__x86_64__) && defined(__GNUC__)
    if constexpr (std::is_same<T, float>::value)
      if (avx2) return forward_avx2(g, u, y, i0, i1);
#endif
    (void)avx2;
    forward_range(g, u, y, i0, i1);
  });
}

template <class T>
void backward_t(const T* dy, const T* g, const T* u, T* dg, T* du, int64_t n) {
  const bool avx2 = std::is_same<T, float>::value && use_avx2();
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
#if defined(__x86_64__) && defined(__GNUC__)
    if constexpr (std::is_same<T, float>::value)
      if (avx2) return backward_avx2(dy, g, u, dg, du, i0, i1);
#endif
    (void)avx2;
    backward_range(dy, g, u, dg, du, i0, i1);
  });
}

}  // namespace

void swiglu_forward(const void* gate, const void* up, void* y, DType dt, int64_t n) {
  NG_CHECK(n >= 0, "swiglu: negative size");
  switch (dt) {
    case DType::F32:
      return forward_t(static_cast<const float*>(gate), static_cast<const float*>(up), static_cast<float*>(y), n);
    case DType::F64:
      return forward_t(static_cast<const double*>(gate), static_cast<const double*>(up), static_cast<double*>(y), n);
    default: throw Error(std::string("swiglu: unsupported dtype ") + dtype_name(dt));
  }
}

void swiglu_backward(const void* dy, const void* gate, const void* up, void* dgate, void* dup, DType dt, int64_t n) {
  NG_CHECK(n >= 0, "swiglu backward: negative size");
  switch (dt) {
    case DType::F32:
      return backward_t(static_cast<const float*>(dy), static_cast<const float*>(gate), static_cast<const float*>(up),
                        static_cast<float*>(dgate), static_cast<float*>(dup), n);
    case DType::F64:
      return backward_t(static_cast<const double*>(dy), static_cast<const double*>(gate),
                        static_cast<const double*>(up), static_cast<double*>(dgate), static_cast<double*>(dup), n);
    default: throw Error(std::string("swiglu backward: unsupported dtype ") + dtype_name(dt));
  }
}

}  // namespace ng
