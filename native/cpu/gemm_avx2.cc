// AVX2/FMA micro-kernels for gemm.cc, compiled for AVX2+FMA in this translation unit
// only and chosen at run time when the CPU has them (and lacks AVX-512).
//
// Tile: MR = 6 rows x NR = 2 vectors (16 floats / 8 doubles). Per k step: two vector
// loads of the packed B sliver, six broadcasts from the packed A sliver, 12 FMAs into
// 12 ymm accumulators (15 of the 16 registers in use).
#if defined(__x86_64__)
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#include <utility>
#ifndef NG_PF
#define NG_PF 16
#endif

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
  using M = __m256i;
  static M mask(int n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
  static V loadu_mask(const T* p, M m) { return _mm256_maskload_ps(p, m); }
  static void storeu_mask(T* p, M m, V v) { _mm256_maskstore_ps(p, m, v); }
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
  using M = __m256i;
  static M mask(int n) { return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)); }
  static V loadu_mask(const T* p, M m) { return _mm256_maskload_pd(p, m); }
  static void storeu_mask(T* p, M m, V v) { _mm256_maskstore_pd(p, m, v); }
};

// ROWS (1..MR) rows of an MR-row packed sliver; cols (1..2W) columns, masked.
template <class S, int MR, int ROWS>
void ukr(int64_t k, const typename S::T* __restrict ap, const typename S::T* __restrict bp, int64_t ldb,
         typename S::T* __restrict c, int64_t ldc, typename S::T alpha, typename S::T beta, int cols) {
  using V = typename S::V;
  constexpr int W = S::W;
  // The C tile is touched only after the k loop; start fetching it now.
#pragma GCC unroll 16
  for (int i = 0; i < ROWS; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 2 * W - 1), _MM_HINT_T0);
  }
  V acc0[ROWS], acc1[ROWS];
#pragma GCC unroll 16
  for (int i = 0; i < ROWS; ++i) acc0[i] = acc1[i] = S::zero();
  for (int64_t p = 0; p < k; ++p) {
    _mm_prefetch(reinterpret_cast<const char*>(bp + NG_PF * ldb), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(ap + NG_PF * MR), _MM_HINT_T0);
    V b0 = S::loadu(bp), b1 = S::loadu(bp + W);
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i) {
      V a = S::set1(ap[i]);
      acc0[i] = S::fma(a, b0, acc0[i]);
      acc1[i] = S::fma(a, b1, acc1[i]);
    }
    ap += MR;
    bp += ldb;
  }
  const V va = S::set1(alpha), vb = S::set1(beta);
  if (cols == 2 * W) {
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i) {
      typename S::T* cr = c + i * ldc;
      V r0 = S::mul(acc0[i], va), r1 = S::mul(acc1[i], va);
      if (beta != 0) {
        r0 = S::fma(vb, S::loadu(cr), r0);
        r1 = S::fma(vb, S::loadu(cr + W), r1);
      }
      S::storeu(cr, r0);
      S::storeu(cr + W, r1);
    }
  } else {
    const typename S::M m0 = S::mask(cols), m1 = S::mask(cols - W);
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i) {
      typename S::T* cr = c + i * ldc;
      V r0 = S::mul(acc0[i], va), r1 = S::mul(acc1[i], va);
      if (beta != 0) {
        r0 = S::fma(vb, S::loadu_mask(cr, m0), r0);
        r1 = S::fma(vb, S::loadu_mask(cr + W, m1), r1);
      }
      S::storeu_mask(cr, m0, r0);
      S::storeu_mask(cr + W, m1, r1);
    }
  }
}

template <class S, int MR, size_t... R>
void fill_kernels(GemmKernel<typename S::T>* g, std::index_sequence<R...>) {
  ((g->ukr[R + 1] = ukr<S, MR, R + 1>), ...);
  g->mr = MR;
  g->nr = 2 * S::W;
}

}  // namespace

void gemm_kernels_avx2(GemmKernel<float>* f32, GemmKernel<double>* f64) {
  constexpr int MR = 6;
  fill_kernels<F32x8, MR>(f32, std::make_index_sequence<MR>());
  fill_kernels<F64x4, MR>(f64, std::make_index_sequence<MR>());
  // KC x NR B sliver (16 KiB f32) in L1, MC x KC block of A in L2, KC x NC panel in L3.
  f32->kc = 256, f32->mc = 6 * 32, f32->nc = 4096, f32->name = "avx2 6x16";
  f64->kc = 256, f64->mc = 6 * 16, f64->nc = 2048, f64->name = "avx2 6x8";
}

}  // namespace detail
}  // namespace ng
#else
#include "cpu/gemm.h"
namespace ng::detail {
void gemm_kernels_avx2(GemmKernel<float>*, GemmKernel<double>*) {}
}  // namespace ng::detail
#endif
