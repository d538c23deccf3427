// AVX2/FMA micro-kernels for gemm.cc, compiled for AVX2+FMA in this translation unit
// only and chosen at run time when the CPU has them (and lacks AVX-512).
//
// Tile: MR = 6 rows x NR = 2 vectors (16 floats / 8 doubles). Per k step: two vector
// loads of the packed B sliver, six broadcasts from the packed A sliver, 12 FMAs into
// 12 ymm accumulators (15 of the 16 registers in use).
#if defined(__x86_64__)
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "cpu/gemm.h"
#include "cpu/scratch.h"

namespace ng {
namespace detail {
namespace {

// Prefetch distance of the micro-kernel, in k steps of the packed panels.
constexpr int kPrefetchK = 16;

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
    _mm_prefetch(reinterpret_cast<const char*>(bp + kPrefetchK * ldb), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(ap + kPrefetchK * MR), _MM_HINT_T0);
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

// In-register transpose of 8 rows of 8 floats.
inline void transpose8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  __m256 u[8];
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

// MR (<= 8) rows of a row-major A into a k-major sliver, 8 k at a time: an 8 x 8
// transpose (rows MR..7 zero), then one 8-float store per k at stride MR, each store's
// tail overwritten by the next one (the last is masked so nothing is written past the
// sliver). Scalar packing costs as much as ~6% of the multiply at 512^3.
template <int MR>
void pack_a_rows_f32(const float* a, int64_t lda, int64_t kc, float* dst) {
  const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(MR), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  int64_t p0 = 0;
  for (; p0 + 8 <= kc; p0 += 8) {
    __m256 r[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      if (i < MR) {
        _mm_prefetch(reinterpret_cast<const char*>(a + i * lda + p0 + 64), _MM_HINT_T0);
        r[i] = _mm256_loadu_ps(a + i * lda + p0);
      } else {
        r[i] = _mm256_setzero_ps();
      }
    }
    transpose8(r);
    float* d = dst + p0 * MR;
#pragma GCC unroll 8
    for (int q = 0; q < 7; ++q) _mm256_storeu_ps(d + q * MR, r[q]);
    if (p0 + 8 < kc) _mm256_storeu_ps(d + 7 * MR, r[7]);
    else _mm256_maskstore_ps(d + 7 * MR, keep, r[7]);
  }
  for (; p0 < kc; ++p0)
    for (int i = 0; i < MR; ++i) dst[p0 * MR + i] = a[i * lda + p0];
}

// MR (<= 8) rows of a column-major A (column stride lda) into a k-major sliver: each k
// is a contiguous run of MR floats, moved as one 8-float load and store (loads masked on
// the last rows of A, the last store masked so nothing is written past the sliver).
template <int MR>
void pack_a_cols_f32(const float* a, int64_t lda, int64_t kc, int64_t avail, float* dst) {
  const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(MR), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  int64_t p = 0;
  if (avail < 8) {
    for (; p < kc; ++p) _mm256_maskstore_ps(dst + p * MR, keep, _mm256_maskload_ps(a + p * lda, keep));
    return;
  }
  for (; p + 1 < kc; ++p) {
    _mm_prefetch(reinterpret_cast<const char*>(a + (p + 8) * lda), _MM_HINT_T0);
    _mm256_storeu_ps(dst + p * MR, _mm256_loadu_ps(a + p * lda));
  }
  _mm256_maskstore_ps(dst + p * MR, keep, _mm256_loadu_ps(a + p * lda));
}

// 16 columns of column-major B into a k-major sliver, as two 8-column halves.
void pack_b_cols_f32(const float* b, int64_t ldb, int64_t kc, float* dst) {
  int64_t p0 = 0;
  for (; p0 + 8 <= kc; p0 += 8)
    for (int h = 0; h < 16; h += 8) {
      __m256 r[8];
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(b + (h + j) * ldb + p0 + 64), _MM_HINT_T0);
        r[j] = _mm256_loadu_ps(b + (h + j) * ldb + p0);
      }
      transpose8(r);
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q) _mm256_storeu_ps(dst + (p0 + q) * 16 + h, r[q]);
    }
  for (; p0 < kc; ++p0)
    for (int j = 0; j < 16; ++j) dst[p0 * 16 + j] = b[j * ldb + p0];
}

// ---------------------------------------------------------------- skinny products
// Shapes where a packed MR x NR tile wastes most of its work: a few rows of A (GEMV and
// decode steps, x @ W with W row-major) and a few columns of B (LoRA's x @ A^T, its
// gradient dY^T @ h). Neither packs A; see gemm.h for the contracts.

// C[m <= 4, n] = alpha * A @ B + beta * C with B row-major (row stride ldb) and C
// row-major: C rows stay in L1 in column chunks while B streams through once, four rows
// of B per pass over the chunk (four sequential streams). The chunk holds up to 16 KB of C
// (4096 columns for one row, 2048 for two, 1024 for three or four): for a GEMV each pass
// then reads 16 KB runs of B rows, whole pages rather than a new page every 4 KB. The prefetch asks for the same
// columns of the next four B rows, the data the next pass reads; prefetching further
// along the same rows ran past the chunk into lines used only K rows later, which halved
// the GEMV bandwidth ([1,2048] @ [2048,8192]: ~20 -> ~40 GB/s on two Zen 5 cores).
void short_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t rsa, int64_t csa, const float* b, int64_t ldb,
               float* c, int64_t rsc, float alpha, float beta) {
  const int64_t JC = 4096 / (m > 2 ? 4 : m);
  for (int64_t j0 = 0; j0 < n; j0 += JC) {
    const int64_t nj = std::min(JC, n - j0), nv = nj / 8, tail = nj - nv * 8;
    const __m256i tm = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(tail)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int64_t i = 0; i < m; ++i) {
      float* cr = c + i * rsc + j0;
      if (beta == 0) {
        for (int64_t j = 0; j < nj; ++j) cr[j] = 0;
      } else if (beta != 1) {
        for (int64_t j = 0; j < nj; ++j) cr[j] *= beta;
      }
    }
    int64_t p = 0;
    for (; p < k; p += 4) {
      const int q = static_cast<int>(std::min<int64_t>(4, k - p));
      const float* b0 = b + p * ldb + j0;
      __m256 av[4][4];
      for (int64_t i = 0; i < m; ++i)
        for (int r = 0; r < 4; ++r) av[i][r] = _mm256_set1_ps(r < q ? alpha * a[i * rsa + (p + r) * csa] : 0.f);
      const float* b1 = q > 1 ? b0 + ldb : b0;
      const float* b2 = q > 2 ? b0 + 2 * ldb : b0;
      const float* b3 = q > 3 ? b0 + 3 * ldb : b0;
      auto step = [&](int64_t j, auto load, auto store) {
        const __m256 x0 = load(b0 + j), x1 = load(b1 + j), x2 = load(b2 + j), x3 = load(b3 + j);
        for (int64_t i = 0; i < m; ++i) {
          float* cr = c + i * rsc + j0 + j;
          __m256 acc = load(cr);
          acc = _mm256_fmadd_ps(av[i][0], x0, acc);
          acc = _mm256_fmadd_ps(av[i][1], x1, acc);
          acc = _mm256_fmadd_ps(av[i][2], x2, acc);
          acc = _mm256_fmadd_ps(av[i][3], x3, acc);
          store(cr, acc);
        }
      };
      for (int64_t v = 0; v < nv; ++v) {
        if (p + 8 <= k) {
          const float* nb = b0 + 4 * ldb + v * 8;
          _mm_prefetch(reinterpret_cast<const char*>(nb), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(nb + ldb), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(nb + 2 * ldb), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(nb + 3 * ldb), _MM_HINT_T0);
        }
        step(v * 8, [](const float* x) { return _mm256_loadu_ps(x); }, [](float* x, __m256 y) { _mm256_storeu_ps(x, y); });
      }
      if (tail)
        step(nv * 8, [&](const float* x) { return _mm256_maskload_ps(x, tm); }, [&](float* x, __m256 y) { _mm256_maskstore_ps(x, tm, y); });
    }
  }
}

// ROWS rows of C[., n <= 8] from B packed as k rows of 8 (zero-padded columns).
template <int ROWS>
inline void narrow_rows(int64_t k, const float* a, int64_t rsa, int64_t csa, const float* bp, float* c, int64_t rsc,
                        int64_t csc, int n, float alpha, float beta) {
  __m256 acc[ROWS];
#pragma GCC unroll 12
  for (int i = 0; i < ROWS; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t p = 0; p < k; ++p) {
    const __m256 bv = _mm256_load_ps(bp + p * 8);
    const float* ap = a + p * csa;
#pragma GCC unroll 12
    for (int i = 0; i < ROWS; ++i) acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(ap[i * rsa]), bv, acc[i]);
  }
  const __m256 va = _mm256_set1_ps(alpha);
  if (csc == 1 && n == 8) {
#pragma GCC unroll 12
    for (int i = 0; i < ROWS; ++i) {
      __m256 r = _mm256_mul_ps(acc[i], va);
      if (beta != 0) r = _mm256_fmadd_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(c + i * rsc), r);
      _mm256_storeu_ps(c + i * rsc, r);
    }
    return;
  }
  alignas(32) float t[8];
  for (int i = 0; i < ROWS; ++i) {
    _mm256_store_ps(t, _mm256_mul_ps(acc[i], va));
    for (int j = 0; j < n; ++j) {
      float& d = c[i * rsc + j * csc];
      d = beta == 0 ? t[j] : t[j] + beta * d;
    }
  }
}

thread_local Scratch tl_narrow("matmul");

// C[m, n <= 8] = alpha * A @ B + beta * C, A and B and C with any strides: B (k x n) is
// packed once into k rows of 8, A is read in place, 12 rows of C at a time.
void narrow_f32(int64_t m, int n, int64_t k, const float* a, int64_t rsa, int64_t csa, const float* b, int64_t rsb,
                int64_t csb, float* c, int64_t rsc, int64_t csc, float alpha, float beta) {
  float* bp = tl_narrow.get<float>(static_cast<size_t>(k) * 8);
  for (int64_t p = 0; p < k; ++p)
    for (int j = 0; j < 8; ++j) bp[p * 8 + j] = j < n ? b[p * rsb + j * csb] : 0.f;
  int64_t i = 0;
  for (; i + 12 <= m; i += 12) narrow_rows<12>(k, a + i * rsa, rsa, csa, bp, c + i * rsc, rsc, csc, n, alpha, beta);
  const float* at = a + i * rsa;
  float* ct = c + i * rsc;
  switch (m - i) {
    case 11: return narrow_rows<11>(k, at, rsa, csa, bp, ct, rsc, csc, n, alpha, beta);
    case 10: return narrow_rows<10>(k, at, rsa, csa, bp, ct, rsc, csc, n, alpha, beta);
    case 9: return narrow_rows<9>(k, at, rsa, csa, bp, ct, rsc, csc, n, alpha, beta);
    case 8: return narrow_rows<8>(k, at, rsa, csa, bp, ct, rsc, csc, n, alpha, beta);
    case 7: return narrow_rows<7>(k, at, rsa, csa, bp, ct, rsc, csc, n, alpha, beta);
    case 6: return narrow_rows<6>(k, at, rsa, csa, bp, ct, rsc, csc, n, alpha, beta);
    case 5: return narrow_rows<5>(k, at, rsa, csa, bp, ct, rsc, csc, n, alpha, beta);
    case 4: return narrow_rows<4>(k, at, rsa, csa, bp, ct, rsc, csc, n, alpha, beta);
    case 3: return narrow_rows<3>(k, at, rsa, csa, bp, ct, rsc, csc, n, alpha, beta);
    case 2: return narrow_rows<2>(k, at, rsa, csa, bp, ct, rsc, csc, n, alpha, beta);
    case 1: return narrow_rows<1>(k, at, rsa, csa, bp, ct, rsc, csc, n, alpha, beta);
    default: return;
  }
}

// Dot form: C[m <= 4, n] with rows of A and columns of B contiguous (x @ W^T, W [n, k]
// row-major, as a Linear layer's decode step): four columns of B at a time, each output
// summed in 8-lane vectors, so m x 4 accumulators stream four rows of W.
void dot_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t rsa, const float* b, int64_t csb, float* c,
             int64_t rsc, int64_t csc, float alpha, float beta) {
  const int64_t kv = k / 8 * 8;
  auto hsum = [](__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  };
  for (int64_t i0 = 0; i0 < m; i0 += 2) {
    const int mi = static_cast<int>(std::min<int64_t>(2, m - i0));
    const float* a0 = a + i0 * rsa;
    const float* a1 = mi > 1 ? a0 + rsa : a0;
    for (int64_t j = 0; j < n; j += 4) {
      const int nj = static_cast<int>(std::min<int64_t>(4, n - j));
      const float* w[4];
      for (int q = 0; q < 4; ++q) w[q] = b + (j + std::min(q, nj - 1)) * csb;
      __m256 s0[4], s1[4];
      for (int q = 0; q < 4; ++q) s0[q] = s1[q] = _mm256_setzero_ps();
      for (int64_t p = 0; p < kv; p += 8) {
        const __m256 x0 = _mm256_loadu_ps(a0 + p), x1 = _mm256_loadu_ps(a1 + p);
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
          _mm_prefetch(reinterpret_cast<const char*>(w[q] + p + 128), _MM_HINT_T0);
          const __m256 wv = _mm256_loadu_ps(w[q] + p);
          s0[q] = _mm256_fmadd_ps(x0, wv, s0[q]);
          s1[q] = _mm256_fmadd_ps(x1, wv, s1[q]);
        }
      }
      for (int q = 0; q < nj; ++q) {
        float r[2] = {hsum(s0[q]), hsum(s1[q])};
        for (int64_t p = kv; p < k; ++p) {
          r[0] += a0[p] * w[q][p];
          r[1] += a1[p] * w[q][p];
        }
        for (int i = 0; i < mi; ++i) {
          float& d = c[(i0 + i) * rsc + (j + q) * csc];
          d = beta == 0 ? alpha * r[i] : alpha * r[i] + beta * d;
        }
      }
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

void gemm_skinny_avx2(GemmKernel<float>* f32) {
  f32->gemm_short = short_f32;
  f32->gemm_narrow = narrow_f32;
  f32->gemm_dot = dot_f32;
}

// L1 data cache per core, 32 KiB where the system does not say.
static int64_t l1d_bytes() {
#ifdef _SC_LEVEL1_DCACHE_SIZE
  const long v = sysconf(_SC_LEVEL1_DCACHE_SIZE);
  if (v > 0) return v;
#endif
  return 32 * 1024;
}

void gemm_kernels_avx2(GemmKernel<float>* f32, GemmKernel<double>* f64) {
  constexpr int MR = 6;
  fill_kernels<F32x8, MR>(f32, std::make_index_sequence<MR>());
  fill_kernels<F64x4, MR>(f64, std::make_index_sequence<MR>());
  f32->pack_a_rows = pack_a_rows_f32<MR>;
  f32->pack_b_cols = pack_b_cols_f32;
  f32->pack_a_cols = pack_a_cols_f32<MR>;
  gemm_skinny_avx2(f32);
  // KC x NR B sliver in L1, MC x KC block of A in L2, KC x NC panel in L3. With a 48 KiB
  // L1d (Zen 5, Intel since Ice Lake) the sliver can be 32 KiB: KC 512 halves the C
  // traffic and the per-step work of the shared threads (2-thread 2048^3 on Zen 5: 175
  // -> 182 GFLOP/s); a 32 KiB L1d keeps KC 256 (16 KiB for f32 and f64 alike).
  const int64_t kc = l1d_bytes() >= 48 * 1024 ? 512 : 256;
  f32->kc = kc, f32->mc = 6 * 32, f32->nc = 4096, f32->name = "avx2 6x16";
  f64->kc = kc, f64->mc = 6 * 16, f64->nc = 2048, f64->name = "avx2 6x8";
}

}  // namespace detail
}  // namespace ng
#else
#include "cpu/gemm.h"
namespace ng::detail {
void gemm_kernels_avx2(GemmKernel<float>*, GemmKernel<double>*) {}
void gemm_skinny_avx2(GemmKernel<float>*) {}
}  // namespace ng::detail
#endif
