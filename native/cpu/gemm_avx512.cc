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

#include <utility>

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
  using M = __mmask16;
  static M mask(int n) { return n >= W ? M(0xFFFF) : n <= 0 ? M(0) : M((1u << n) - 1); }
  static V loadu_mask(const T* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static void storeu_mask(T* p, M m, V v) { _mm512_mask_storeu_ps(p, m, v); }
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
  using M = __mmask8;
  static M mask(int n) { return n >= W ? M(0xFF) : n <= 0 ? M(0) : M((1u << n) - 1); }
  static V loadu_mask(const T* p, M m) { return _mm512_maskz_loadu_pd(m, p); }
  static void storeu_mask(T* p, M m, V v) { _mm512_mask_storeu_pd(p, m, v); }
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
    // KC is deep enough that the B sliver streams from L2 along with A: fetch ahead.
    _mm_prefetch(reinterpret_cast<const char*>(bp + 16 * ldb), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(bp + 16 * ldb + 2 * W - 1), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(ap + 16 * MR), _MM_HINT_T0);
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

// In-register transpose of a 16 x 16 float block: r[i][j] becomes r[j][i].
// (GCC 12's _mm512_undefined_ps trips -Wmaybe-uninitialized inside these intrinsics:
// GCC bug 105593.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}
#pragma GCC diagnostic pop

// MR (<= 16) rows of row-major A into a k-major sliver, 16 k at a time by transposes.
template <int MR>
void pack_a_rows_f32(const float* a, int64_t lda, int64_t kc, float* dst) {
  const __mmask16 keep = static_cast<__mmask16>((1u << MR) - 1);
  int64_t p0 = 0;
  for (; p0 + 16 <= kc; p0 += 16) {
    __m512 r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      if (i < MR) {
        _mm_prefetch(reinterpret_cast<const char*>(a + i * lda + p0 + 64), _MM_HINT_T0);
        r[i] = _mm512_loadu_ps(a + i * lda + p0);
      } else {
        r[i] = _mm512_setzero_ps();
      }
    }
    transpose16(r);
#pragma GCC unroll 16
    for (int q = 0; q < 16; ++q) _mm512_mask_storeu_ps(dst + (p0 + q) * MR, keep, r[q]);
  }
  for (; p0 < kc; ++p0)
    for (int i = 0; i < MR; ++i) dst[p0 * MR + i] = a[i * lda + p0];
}

// 32 columns of column-major B into a k-major sliver, as two 16-column halves.
void pack_b_cols_f32(const float* b, int64_t ldb, int64_t kc, float* dst) {
  int64_t p0 = 0;
  for (; p0 + 16 <= kc; p0 += 16)
    for (int h = 0; h < 32; h += 16) {
      __m512 r[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(b + (h + j) * ldb + p0 + 64), _MM_HINT_T0);
        r[j] = _mm512_loadu_ps(b + (h + j) * ldb + p0);
      }
      transpose16(r);
#pragma GCC unroll 16
      for (int q = 0; q < 16; ++q) _mm512_store_ps(dst + (p0 + q) * 32 + h, r[q]);
    }
  for (; p0 < kc; ++p0)
    for (int j = 0; j < 32; ++j) dst[p0 * 32 + j] = b[j * ldb + p0];
}

template <class S, int MR, size_t... R>
void fill_kernels(GemmKernel<typename S::T>* g, std::index_sequence<R...>) {
  ((g->ukr[R + 1] = ukr<S, MR, R + 1>), ...);
  g->mr = MR;
  g->nr = 2 * S::W;
}

}  // namespace

void gemm_kernels_avx512(GemmKernel<float>* f32, GemmKernel<double>* f64) {
  constexpr int MR = 14;
  fill_kernels<F32x16, MR>(f32, std::make_index_sequence<MR>());
  fill_kernels<F64x8, MR>(f64, std::make_index_sequence<MR>());
  f32->pack_a_rows = pack_a_rows_f32<MR>;
  f32->pack_b_cols = pack_b_cols_f32;
  // Measured on a Xeon with 48 KiB L1d / 2 MiB L2 per core: a deep KC (fewer passes
  // over C) beats keeping the KC x NR B sliver (64 KiB) inside L1; the MC x KC block of
  // A (448 KiB) sits in L2 next to the B sliver, and the KC x NC panel of B in L3.
  f32->kc = 512, f32->mc = 14 * 16, f32->nc = 4096, f32->name = "avx512 14x32";
  f64->kc = 512, f64->mc = 14 * 8, f64->nc = 2048, f64->name = "avx512 14x16";
}

}  // namespace detail
}  // namespace ng
#else
#include "cpu/gemm.h"
namespace ng::detail {
void gemm_kernels_avx512(GemmKernel<float>*, GemmKernel<double>*) {}
}  // namespace ng::detail
#endif
