// AVX-512 micro-kernels for gemm.cc, compiled for AVX-512F in this translation unit
// only and chosen at run time when the CPU has it.
//
// Tile: MR = 14 rows x NR = 2 vectors (32 floats / 16 doubles). Per k step the kernel
// loads two vectors of the packed B sliver, broadcasts the 14 values of the packed A
// sliver and issues 28 FMAs into 28 zmm accumulators (31 of the 32 registers in use),
// so each FMA needs 1/14 of a vector load from B and 1/2 of a broadcast load from A:
// well within two loads per cycle while both FMA ports stay busy.
#if defined(__x86_64__)
#pragma GCC target("avx512f")
#include <immintrin.h>

#include "cpu/gemm.h"

namespace ng {
namespace detail {
namespace {

struct F32x16 {
  using T = float;
  using V = __m512;
  static constexpr int W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const T* p) { return _mm512_load_ps(p); }
  static V loadu(const T* p) { return _mm512_loadu_ps(p); }
  static void storeu(T* p, V v) { _mm512_storeu_ps(p, v); }
  static V set1(T x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
};

struct F64x8 {
  using T = double;
  using V = __m512d;
  static constexpr int W = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const T* p) { return _mm512_load_pd(p); }
  static V loadu(const T* p) { return _mm512_loadu_pd(p); }
  static void storeu(T* p, V v) { _mm512_storeu_pd(p, v); }
  static V set1(T x) { return _mm512_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
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

void gemm_kernels_avx512(GemmKernel<float>* f32, GemmKernel<double>* f64) {
  constexpr int MR = 14;
  // KC x NR B sliver (32 KiB f32) stays in L1 across the MR slivers of A; the MC x KC
  // block of A (~900 KiB) stays in L2; the KC x NC panel of B lives in L3.
  *f32 = GemmKernel<float>{ukr<F32x16, MR>, MR, 32, 256, 14 * 64, 4096, "avx512 14x32"};
  *f64 = GemmKernel<double>{ukr<F64x8, MR>, MR, 16, 256, 14 * 32, 2048, "avx512 14x16"};
}

}  // namespace detail
}  // namespace ng
#else
#include "cpu/gemm.h"
namespace ng::detail {
void gemm_kernels_avx512(GemmKernel<float>*, GemmKernel<double>*) {}
}  // namespace ng::detail
#endif
