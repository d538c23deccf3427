// AVX2/FMA micro-kernels for gemm.cc, compiled for AVX2+FMA in this translation unit
// only and chosen at run time when the CPU has them (and lacks AVX-512).
//
// Tile: MR = 6 rows x NR = 2 vectors (16 floats / 8 doubles). Per k step: two vector
// loads of the packed B sliver, six broadcasts from the packed A sliver, 12 FMAs into
// 12 ymm accumulators (15 of the 16 registers in use).
#if defined(__x86_64__)
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#include "cpu/gemm.h"

namespace ng {
namespace detail {
namespace {

struct F32x8 {
  using T = float;
  using V = __m256;
  static constexpr int W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const T* p) { return _mm256_load_ps(p); }
  static V loadu(const T* p) { return _mm256_loadu_ps(p); }
  static void storeu(T* p, V v) { _mm256_storeu_ps(p, v); }
  static V set1(T x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
};

struct F64x4 {
  using T = double;
  using V = __m256d;
  static constexpr int W = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const T* p) { return _mm256_load_pd(p); }
  static V loadu(const T* p) { return _mm256_loadu_pd(p); }
  static void storeu(T* p, V v) { _mm256_storeu_pd(p, v); }
  static V set1(T x) { return _mm256_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
};

template <class S, int MR>
void ukr(int64_t k, const typename S::T* __restrict ap, const typename S::T* __restrict bp,
         typename S::T* __restrict c, int64_t ldc, typename S::T alpha, typename S::T beta) {
  using V = typename S::V;
  constexpr int W = S::W;
  // The C tile is touched only after the k loop; start fetching it now.
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 2 * W - 1), _MM_HINT_T0);
  }
  V acc0[MR], acc1[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = S::zero();
  for (int64_t p = 0; p < k; ++p) {
    V b0 = S::load(bp), b1 = S::load(bp + W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      V a = S::set1(ap[i]);
      acc0[i] = S::fma(a, b0, acc0[i]);
      acc1[i] = S::fma(a, b1, acc1[i]);
    }
    ap += MR;
    bp += 2 * W;
  }
  V va = S::set1(alpha), vb = S::set1(beta);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    typename S::T* cr = c + i * ldc;
    V r0 = S::mul(acc0[i], va), r1 = S::mul(acc1[i], va);
    if (beta != 0) {
      r0 = S::fma(vb, S::loadu(cr), r0);
      r1 = S::fma(vb, S::loadu(cr + W), r1);
    }
    S::storeu(cr, r0);
    S::storeu(cr + W, r1);
  }
}

}  // namespace

void gemm_kernels_avx2(GemmKernel<float>* f32, GemmKernel<double>* f64) {
  constexpr int MR = 6;
  // KC x NR B sliver (16 KiB f32) in L1, MC x KC block of A in L2, KC x NC panel in L3.
  *f32 = GemmKernel<float>{ukr<F32x8, MR>, MR, 16, 256, 6 * 32, 4096, "avx2 6x16"};
  *f64 = GemmKernel<double>{ukr<F64x4, MR>, MR, 8, 256, 6 * 16, 2048, "avx2 6x8"};
}

}  // namespace detail
}  // namespace ng
#else
#include "cpu/gemm.h"
namespace ng::detail {
void gemm_kernels_avx2(GemmKernel<float>*, GemmKernel<double>*) {}
}  // namespace ng::detail
#endif
