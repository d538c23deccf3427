// Algorithm: flash-attention style, on blocks of 4 query rows of one (batch*head) slice.
// Forward: S = Q_blk Kᵀ by a register-tiled micro-kernel over a transposed, zero-padded
// copy of the slice's K (built once per slice per thread), then per row scale + mask,
// max, exp, sum (lse = max + log sum is saved), optional dropout, and O_blk = P V / sum
// by a second micro-kernel. The [Tq, Tk] matrix only ever exists as 4 scratch rows.
// Backward: per block, S and dP = dO_blk Vᵀ are recomputed the same way, P = exp(S - lse),
// dS = P (dP - rowsum(dO O)); then dV += P~ᵀ dO, dK += scale dSᵀ Q (rank-4 updates) and
// dQ = scale dS K, where P~ and dP carry the same regenerated dropout mask.
// Grouped-query attention: query slice bh reads kv slice bh / group (no copy of K/V per
// query head). A sliding window (query i sees keys j > i - window) starts each block's
// key range at its first row's window, rounded down to a tile: only the keys some row
// of the block sees are multiplied.
// Work units are (slice, query range) taken from a shared counter (each writes only its
// own rows); in the backward a unit is (kv slice, query range) over all the group's query
// heads and owns a private dK/dV slice (the unit count depends on the shape only), the
// slices being summed in a fixed order, so results do not depend on threads or timing.
// Memory traffic: forward reads q, k, v once and K/V once more per 64 query rows (from
// cache), writes out and lse once; backward also reads out, dO, writes dq once and
// dk, dv once per unit. Inner loops are plain C++ compiled twice (baseline x86-64 and
// AVX2+FMA, chosen at run time); float uses a vectorisable polynomial exp.
#include "cpu/attention.h"

#include <atomic>
#include <cstring>
#include <limits>

#include "cpu/random.h"
#include "threadpool.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  // 32-byte vectors only cross always_inline calls
#endif
#if defined(__GNUC__)
#define NG_INLINE inline __attribute__((always_inline))
#else
#define NG_INLINE inline
#endif
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define NG_ATTN_AVX2 1
#define NG_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define NG_ATTN_AVX2 0
#define NG_TARGET_AVX2
#endif

namespace ng {
namespace {

constexpr int RB = 4;        // query rows per register block
constexpr int64_t QB = 64;   // query rows per forward work unit
template <class T>
constexpr int tile_w() { return 64 / static_cast<int>(sizeof(T)); }  // columns per register tile

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

template <class T>
struct Ptrs {
  const T *q, *k, *v, *out, *lse, *dout;
  T *o, *l, *dq, *dk, *dv, *dmask;
};

// Reductions with 8 independent lanes: they vectorise without reassociation flags.
template <class T>
NG_INLINE T dot(const T* a, const T* b, int64_t n) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= n; d += 8)
    for (int u = 0; u < 8; ++u) acc[u] += a[d + u] * b[d + u];
  T s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; d < n; ++d) s += a[d] * b[d];
  return s;
}
template <class T>
NG_INLINE T row_sum(const T* a, int64_t n) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= n; d += 8)
    for (int u = 0; u < 8; ++u) acc[u] += a[d + u];
  T s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; d < n; ++d) s += a[d];
  return s;
}
template <class T>
NG_INLINE T row_max(const T* a, int64_t n) {
  const T ninf = -std::numeric_limits<T>::infinity();
  T acc[8] = {ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf};
  int64_t d = 0;
  for (; d + 8 <= n; d += 8)
    for (int u = 0; u < 8; ++u) acc[u] = a[d + u] > acc[u] ? a[d + u] : acc[u];
  T m = ninf;
  for (int u = 0; u < 8; ++u) m = acc[u] > m ? acc[u] : m;
  for (; d < n; ++d) m = a[d] > m ? a[d] : m;
  return m;
}

// 32-byte vectors (GCC/Clang vector extensions): one AVX register in the AVX2 build,
// two SSE registers in the baseline one. Accumulators live in named variables so they
// stay in registers.
template <class T>
struct Vec {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int n = 32 / static_cast<int>(sizeof(T));
};
template <class T>
NG_INLINE typename Vec<T>::type vload(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
NG_INLINE void vstore(T* p, typename Vec<T>::type v) {
  std::memcpy(p, &v, sizeof v);
}

// S[r][j] = sum_d A[r][d] BT[d][j] for j < jp (a multiple of tile_w; BT is zero-padded).
template <class T>
NG_INLINE void gemm_abt(const T* const* A, int64_t D, const T* BT, int64_t ldb, int64_t jp, T* S, int64_t lds) {
  static_assert(RB == 4 && tile_w<T>() == 2 * Vec<T>::n, "tile shape");
  typedef typename Vec<T>::type V;
  constexpr int N = Vec<T>::n;
  const T *a0 = A[0], *a1 = A[1], *a2 = A[2], *a3 = A[3];
  for (int64_t j0 = 0; j0 < jp; j0 += 2 * N) {
    V c00 = {}, c01 = {}, c10 = {}, c11 = {}, c20 = {}, c21 = {}, c30 = {}, c31 = {};
    const T* b = BT + j0;
    for (int64_t d = 0; d < D; ++d, b += ldb) {
      const V b0 = vload(b), b1 = vload(b + N);
      const T x0 = a0[d], x1 = a1[d], x2 = a2[d], x3 = a3[d];
      c00 += b0 * x0;
      c01 += b1 * x0;
      c10 += b0 * x1;
      c11 += b1 * x1;
      c20 += b0 * x2;
      c21 += b1 * x2;
      c30 += b0 * x3;
      c31 += b1 * x3;
    }
    T* s = S + j0;
    vstore(s, c00), vstore(s + N, c01), s += lds;
    vstore(s, c10), vstore(s + N, c11), s += lds;
    vstore(s, c20), vstore(s + N, c21), s += lds;
    vstore(s, c30), vstore(s + N, c31);
  }
}

// O[r][c] = sum_{j < jn} P[r][j] B[j][c] for c < n (B is [jn, n] contiguous).
template <class T>
NG_INLINE void gemm_pb(const T* P, int64_t ldp, int64_t jn, const T* B, int64_t n, T* const* O) {
  typedef typename Vec<T>::type V;
  constexpr int N = Vec<T>::n;
  const T *p0 = P, *p1 = P + ldp, *p2 = P + 2 * ldp, *p3 = P + 3 * ldp;
  int64_t c0 = 0;
  for (; c0 + 2 * N <= n; c0 += 2 * N) {
    V c00 = {}, c01 = {}, c10 = {}, c11 = {}, c20 = {}, c21 = {}, c30 = {}, c31 = {};
    const T* b = B + c0;
    for (int64_t j = 0; j < jn; ++j, b += n) {
      const V b0 = vload(b), b1 = vload(b + N);
      const T x0 = p0[j], x1 = p1[j], x2 = p2[j], x3 = p3[j];
      c00 += b0 * x0;
      c01 += b1 * x0;
      c10 += b0 * x1;
      c11 += b1 * x1;
      c20 += b0 * x2;
      c21 += b1 * x2;
      c30 += b0 * x3;
      c31 += b1 * x3;
    }
    vstore(O[0] + c0, c00), vstore(O[0] + c0 + N, c01);
    vstore(O[1] + c0, c10), vstore(O[1] + c0 + N, c11);
    vstore(O[2] + c0, c20), vstore(O[2] + c0 + N, c21);
    vstore(O[3] + c0, c30), vstore(O[3] + c0 + N, c31);
  }
  if (c0 == n) return;
  for (int r = 0; r < RB; ++r)
    for (int64_t c = c0; c < n; ++c) O[r][c] = 0;
  for (int64_t j = 0; j < jn; ++j) {
    const T* b = B + j * n;
    const T x0 = p0[j], x1 = p1[j], x2 = p2[j], x3 = p3[j];
    for (int64_t c = c0; c < n; ++c) {
      O[0][c] += x0 * b[c];
      O[1][c] += x1 * b[c];
      O[2][c] += x2 * b[c];
      O[3][c] += x3 * b[c];
    }
  }
}

// Y[j][c] += alpha sum_r P[r][j] X[r][c] for j < jn, c < n.
template <class T>
NG_INLINE void rank_update(T* Y, int64_t n, const T* P, int64_t ldp, int64_t jn, const T* const* X, T alpha) {
  static_assert(RB == 4, "rank_update is written for 4-row blocks");
  for (int64_t j = 0; j < jn; ++j) {
    const T a0 = alpha * P[j], a1 = alpha * P[ldp + j], a2 = alpha * P[2 * ldp + j], a3 = alpha * P[3 * ldp + j];
    if (a0 == 0 && a1 == 0 && a2 == 0 && a3 == 0) continue;
    T* y = Y + j * n;
    for (int64_t c = 0; c < n; ++c) y[c] += a0 * X[0][c] + a1 * X[1][c] + a2 * X[2][c] + a3 * X[3][c];
  }
}

// The bernoulli(1 - p) rule of cpu/random.cc: keep when a 53-bit uniform in (0, 1] is <= keep.
NG_INLINE bool dropout_keep(uint64_t seed, uint64_t counter, double keep) {
  uint32_t w[4];
  Philox::generate(seed, counter, w);
  uint64_t x = ((static_cast<uint64_t>(w[0]) << 21) ^ (w[1] >> 11)) & ((1ull << 53) - 1);
  return (static_cast<double>(x) + 1.0) * (1.0 / 9007199254740992.0) <= keep;
}

// Raw dot products s[0..jp) of query row i become scaled, masked scores; excluded keys
// (causal, bool mask, j >= Tk) get -inf.
// First key query row i sees (the sliding window's start; 0 without one).
NG_INLINE int64_t key_lo(const AttnArgs& a, int64_t i) { return a.window > 0 ? std::max<int64_t>(0, i - a.window + 1) : 0; }

// Raw dot products s[j0..jp) of query row i become scaled, masked scores; excluded keys
// (causal, window, bool mask, j >= Tk) get -inf.
template <class T>
NG_INLINE void mask_scores(const AttnArgs& a, int64_t bh, int64_t i, T* s, int64_t j0, int64_t jp) {
  const int64_t jn = std::max(j0, a.causal ? std::min(a.Tk, i + 1) : a.Tk);
  const int64_t lo = std::min(jn, std::max(j0, key_lo(a, i)));
  const T scale = static_cast<T>(a.scale), ninf = -std::numeric_limits<T>::infinity();
  const int64_t off = a.mask_kind == AttnMask::None ? 0 : a.mask_off[bh] + i * a.mask_si, sj = a.mask_sj;
  for (int64_t j = j0; j < lo; ++j) s[j] = ninf;
  if (a.mask_kind == AttnMask::Float) {
    const T* f = static_cast<const T*>(a.mask) + off;
    if (sj == 1) {
      for (int64_t j = lo; j < jn; ++j) s[j] = s[j] * scale + f[j];
    } else {
      for (int64_t j = lo; j < jn; ++j) s[j] = s[j] * scale + f[j * sj];
    }
  } else if (a.mask_kind == AttnMask::Bool) {
    const uint8_t* b = static_cast<const uint8_t*>(a.mask) + off;
    for (int64_t j = lo; j < jn; ++j) s[j] = b[j * sj] ? s[j] * scale : ninf;
  } else {
    for (int64_t j = lo; j < jn; ++j) s[j] *= scale;
  }
  for (int64_t j = jn; j < jp; ++j) s[j] = ninf;
}

// The keys [*j0, jblk) some row of the block i0..i0+nr-1 sees, with *j0 a multiple of
// the tile width (so the micro-kernels stay aligned) and jblk <= Tk.
template <class T>
NG_INLINE int64_t block_keys(const AttnArgs& a, int64_t i0, int nr, int64_t* j0) {
  const int64_t jblk = a.causal ? std::min(a.Tk, i0 + nr) : a.Tk;
  *j0 = std::min(key_lo(a, i0), jblk) / tile_w<T>() * tile_w<T>();
  return jblk;
}

// Per-thread scratch: the current slice's K (and V) transposed to [D, Tkp], zero-padded.
template <class T>
struct Scratch {
  int64_t Tkp, bh = -1;
  std::vector<T> kT, vT, s, dp, pd, zero, dummy;
  Scratch(const AttnArgs& a, bool backward) : Tkp(round_up(std::max<int64_t>(a.Tk, 1), tile_w<T>())) {
    kT.assign(static_cast<size_t>(a.D * Tkp), T(0));
    s.assign(static_cast<size_t>(RB * Tkp), T(0));
    const size_t w = static_cast<size_t>(std::max<int64_t>(std::max(a.D, a.Dv), 1));
    zero.assign(w, T(0));
    dummy.assign(w, T(0));
    if (backward) {
      vT.assign(static_cast<size_t>(a.Dv * Tkp), T(0));
      dp.assign(static_cast<size_t>(RB * Tkp), T(0));
      pd.assign(static_cast<size_t>(RB * Tkp), T(0));
    }
  }
  // b: the kv slice
  void load(const AttnArgs& a, const Ptrs<T>& p, int64_t b, bool with_v) {
    if (b == bh) return;
    bh = b;
    const T* k = p.k + b * a.Tk * a.D;
    for (int64_t j = 0; j < a.Tk; ++j)
      for (int64_t d = 0; d < a.D; ++d) kT[d * Tkp + j] = k[j * a.D + d];
    if (!with_v) return;
    const T* v = p.v + b * a.Tk * a.Dv;
    for (int64_t j = 0; j < a.Tk; ++j)
      for (int64_t d = 0; d < a.Dv; ++d) vT[d * Tkp + j] = v[j * a.Dv + d];
  }
};

template <class T>
NG_INLINE void forward_block(const AttnArgs& a, const Ptrs<T>& p, Scratch<T>& w, int64_t bh, int64_t i0, int nr) {
  const int64_t Tq = a.Tq, Tk = a.Tk, D = a.D, Dv = a.Dv, Tkp = w.Tkp;
  const T ninf = -std::numeric_limits<T>::infinity();
  const T* A[RB];
  T* O[RB];
  for (int r = 0; r < RB; ++r) {
    A[r] = r < nr ? p.q + (bh * Tq + i0 + r) * D : w.zero.data();
    O[r] = r < nr ? p.o + (bh * Tq + i0 + r) * Dv : w.dummy.data();
  }
  int64_t j0;  // keys [j0, jblk) are the ones any row of the block sees
  const int64_t jblk = block_keys<T>(a, i0, nr, &j0);
  const int64_t jp = round_up(jblk, tile_w<T>());
  gemm_abt(A, D, w.kT.data() + j0, Tkp, jp - j0, w.s.data() + j0, Tkp);
  const double keep = 1 - a.dropout_p;
  T norm[RB] = {0, 0, 0, 0};
  for (int r = 0; r < RB; ++r) {
    T* s = w.s.data() + r * Tkp;
    const int64_t i = i0 + r, row = bh * Tq + i;
    if (r < nr) mask_scores(a, bh, i, s, j0, jp);
    const T m = r < nr ? row_max(s + j0, jblk - j0) : ninf;
    if (!(m > ninf)) {  // every key masked (or none exists): a defined zero row
      std::fill(s + j0, s + jp, T(0));
      if (r < nr) p.l[row] = ninf;
      continue;
    }
    for (int64_t j = j0; j < jp; ++j) s[j] = exp_fast(s[j] - m);
    const T sum = row_sum(s + j0, jblk - j0);
    p.l[row] = m + std::log(sum);
    norm[r] = 1 / sum;
    if (a.dropout_p > 0) {
      const uint64_t ctr = a.seed_offset + static_cast<uint64_t>(row) * Tk;
      for (int64_t j = j0; j < jblk; ++j)
        if (s[j] != 0 && !dropout_keep(a.seed, ctr + j, keep)) s[j] = 0;
      norm[r] = keep > 0 ? static_cast<T>(norm[r] / keep) : T(0);
    }
  }
  gemm_pb(w.s.data() + j0, Tkp, jblk - j0, p.v + (bh / a.group) * Tk * Dv + j0 * Dv, Dv, O);
  for (int r = 0; r < nr; ++r)
    for (int64_t d = 0; d < Dv; ++d) O[r][d] *= norm[r];
}

template <class T>
NG_INLINE void backward_block(const AttnArgs& a, const Ptrs<T>& p, Scratch<T>& w, int64_t bh, int64_t i0, int nr,
                              T* dk, T* dv) {
  const int64_t Tq = a.Tq, Tk = a.Tk, D = a.D, Dv = a.Dv, Tkp = w.Tkp;
  const T ninf = -std::numeric_limits<T>::infinity(), scale = static_cast<T>(a.scale);
  const T *A[RB], *G[RB];
  T* DQ[RB];
  for (int r = 0; r < RB; ++r) {
    const int64_t row = bh * Tq + i0 + r;
    A[r] = r < nr ? p.q + row * D : w.zero.data();
    G[r] = r < nr ? p.dout + row * Dv : w.zero.data();
    DQ[r] = r < nr ? p.dq + row * D : w.dummy.data();
  }
  int64_t j0;
  const int64_t jblk = block_keys<T>(a, i0, nr, &j0);
  const int64_t jp = round_up(jblk, tile_w<T>());
  gemm_abt(A, D, w.kT.data() + j0, Tkp, jp - j0, w.s.data() + j0, Tkp);   // q . k
  gemm_abt(G, Dv, w.vT.data() + j0, Tkp, jp - j0, w.dp.data() + j0, Tkp);  // dO . v
  const bool drop = a.dropout_p > 0;
  const double keep = 1 - a.dropout_p;
  const T inv_keep = keep > 0 ? static_cast<T>(1 / keep) : T(0);
  for (int r = 0; r < RB; ++r) {
    T* s = w.s.data() + r * Tkp;   // becomes P
    T* dp = w.dp.data() + r * Tkp;  // becomes dS
    T* pd = w.pd.data() + r * Tkp;  // P after dropout
    const int64_t i = i0 + r, row = bh * Tq + i;
    const T l = r < nr ? p.lse[row] : ninf;
    if (!(l > ninf)) {
      std::fill(s + j0, s + jp, T(0));
      std::fill(dp + j0, dp + jp, T(0));
      if (drop) std::fill(pd + j0, pd + jp, T(0));
      continue;
    }
    mask_scores(a, bh, i, s, j0, jp);
    for (int64_t j = j0; j < jp; ++j) s[j] = exp_fast(s[j] - l);
    const T Di = dot(G[r], p.out + row * Dv, Dv);
    if (drop) {
      const uint64_t ctr = a.seed_offset + static_cast<uint64_t>(row) * Tk;
      for (int64_t j = j0; j < jp; ++j) {
        const bool kept = j < jblk && s[j] != 0 && dropout_keep(a.seed, ctr + j, keep);
        pd[j] = kept ? s[j] * inv_keep : T(0);
        dp[j] = kept ? dp[j] * inv_keep : T(0);
      }
    }
    for (int64_t j = j0; j < jp; ++j) dp[j] = s[j] * (dp[j] - Di);
    if (p.dmask && jblk > j0) std::copy(dp + j0, dp + jblk, p.dmask + row * Tk + j0);
  }
  if (jblk <= j0) {  // no row of the block sees a key: dq rows are zero
    for (int r = 0; r < nr; ++r) std::fill(DQ[r], DQ[r] + D, T(0));
    return;
  }
  rank_update(dv + j0 * Dv, Dv, (drop ? w.pd.data() : w.s.data()) + j0, Tkp, jblk - j0, G, T(1));
  rank_update(dk + j0 * D, D, w.dp.data() + j0, Tkp, jblk - j0, A, scale);
  gemm_pb(w.dp.data() + j0, Tkp, jblk - j0, p.k + (bh / a.group) * Tk * D + j0 * D, D, DQ);
  for (int r = 0; r < nr; ++r)
    for (int64_t d = 0; d < D; ++d) DQ[r][d] *= scale;
}

template <class T>
NG_INLINE void forward_unit(const AttnArgs& a, const Ptrs<T>& p, Scratch<T>& w, int64_t bh, int64_t q0, int64_t q1) {
  w.load(a, p, bh / a.group, false);
  for (int64_t i0 = q0; i0 < q1; i0 += RB) forward_block(a, p, w, bh, i0, static_cast<int>(std::min<int64_t>(RB, q1 - i0)));
}

// kv slice kvh: the query rows [q0, q1) of each of its group's query slices, in order.
template <class T>
NG_INLINE void backward_unit(const AttnArgs& a, const Ptrs<T>& p, Scratch<T>& w, int64_t kvh, int64_t q0, int64_t q1,
                             T* dk, T* dv) {
  std::fill(dk, dk + a.Tk * a.D, T(0));
  std::fill(dv, dv + a.Tk * a.Dv, T(0));
  w.load(a, p, kvh, true);
  for (int64_t bh = kvh * a.group; bh < (kvh + 1) * a.group; ++bh)
    for (int64_t i0 = q0; i0 < q1; i0 += RB)
      backward_block(a, p, w, bh, i0, static_cast<int>(std::min<int64_t>(RB, q1 - i0)), dk, dv);
}

#if NG_ATTN_AVX2
template <class T>
NG_TARGET_AVX2 void forward_unit_avx2(const AttnArgs& a, const Ptrs<T>& p, Scratch<T>& w, int64_t bh, int64_t q0,
                                      int64_t q1) {
  forward_unit<T>(a, p, w, bh, q0, q1);
}
template <class T>
NG_TARGET_AVX2 void backward_unit_avx2(const AttnArgs& a, const Ptrs<T>& p, Scratch<T>& w, int64_t bh, int64_t q0,
                                       int64_t q1, T* dk, T* dv) {
  backward_unit<T>(a, p, w, bh, q0, q1, dk, dv);
}
#endif
template <class T>
void forward_unit_base(const AttnArgs& a, const Ptrs<T>& p, Scratch<T>& w, int64_t bh, int64_t q0, int64_t q1) {
  forward_unit<T>(a, p, w, bh, q0, q1);
}
template <class T>
void backward_unit_base(const AttnArgs& a, const Ptrs<T>& p, Scratch<T>& w, int64_t bh, int64_t q0, int64_t q1, T* dk,
                        T* dv) {
  backward_unit<T>(a, p, w, bh, q0, q1, dk, dv);
}

bool use_avx2() {
#if NG_ATTN_AVX2
  return cpu_features().avx2 && cpu_features().fma;
#else
  return false;
#endif
}

// Runs fn(unit, scratch) for units [0, n) on up to num_threads() threads, each taking the
// next unit from a shared counter (causal units differ in cost) with its own scratch.
template <class T, class F>
void run_units(const AttnArgs& a, int64_t n, bool backward, const F& fn) {
  if (n <= 0) return;
  const int64_t work = a.BH * a.Tq * std::max<int64_t>(a.Tk, 1) * std::max<int64_t>(a.D + a.Dv, 1);
  const int64_t nt = std::min<int64_t>({static_cast<int64_t>(num_threads()), n, std::max<int64_t>(1, work / 65536)});
  std::atomic<int64_t> next{0};
  parallel_run(static_cast<int>(nt), [&](int, int) {
    Scratch<T> w(a, backward);
    for (int64_t u = next.fetch_add(1); u < n; u = next.fetch_add(1)) fn(u, w);
  });
}

template <class T>
void forward_t(const AttnArgs& a, const Ptrs<T>& p) {
  const int64_t nqb = (a.Tq + QB - 1) / QB;
  const bool avx2 = use_avx2();
  run_units<T>(a, a.BH * nqb, false, [&](int64_t u, Scratch<T>& w) {
    const int64_t bh = u / nqb, q0 = (u % nqb) * QB, q1 = std::min(a.Tq, q0 + QB);
#if NG_ATTN_AVX2
    if (avx2) return forward_unit_avx2<T>(a, p, w, bh, q0, q1);
#endif
    (void)avx2;
    forward_unit_base<T>(a, p, w, bh, q0, q1);
  });
}

// Query chunks per slice: enough work units for a machine's threads when BH is small,
// fixed by the shape alone so that the summation order never changes.
int64_t query_chunks(int64_t BH, int64_t Tq) {
  if (BH >= 16) return 1;
  return std::max<int64_t>(1, std::min<int64_t>((16 + BH - 1) / BH, Tq / 16));
}

template <class T>
void backward_t(const AttnArgs& a, const Ptrs<T>& p) {
  const int64_t BH = a.BH / a.group, Tq = a.Tq, Tk = a.Tk, D = a.D, Dv = a.Dv;  // BH: kv slices here
  const int64_t nc = query_chunks(BH, Tq);
  const int64_t per = round_up((Tq + nc - 1) / nc, RB);
  const int64_t kv = Tk * (D + Dv);
  std::vector<T> part(nc > 1 ? static_cast<size_t>(BH * nc * kv) : 0);
  if (p.dmask) std::memset(p.dmask, 0, sizeof(T) * static_cast<size_t>(a.BH * Tq * Tk));
  const bool avx2 = use_avx2();
  run_units<T>(a, BH * nc, true, [&](int64_t u, Scratch<T>& w) {
    const int64_t bh = u / nc, c = u % nc;
    T* dk = nc > 1 ? part.data() + u * kv : p.dk + bh * Tk * D;
    T* dv = nc > 1 ? dk + Tk * D : p.dv + bh * Tk * Dv;
    const int64_t q0 = std::min(Tq, c * per), q1 = std::min(Tq, q0 + per);
#if NG_ATTN_AVX2
    if (avx2) return backward_unit_avx2<T>(a, p, w, bh, q0, q1, dk, dv);
#endif
    (void)avx2;
    backward_unit_base<T>(a, p, w, bh, q0, q1, dk, dv);
  });
  if (nc == 1) return;
  parallel_for(BH * Tk, std::max<int64_t>(1, 4096 / std::max<int64_t>(D + Dv, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t bh = r / Tk, j = r % Tk;
      T* dkj = p.dk + r * D;
      T* dvj = p.dv + r * Dv;
      std::fill(dkj, dkj + D, T(0));
      std::fill(dvj, dvj + Dv, T(0));
      for (int64_t c = 0; c < nc; ++c) {
        const T* src = part.data() + (bh * nc + c) * kv;
        for (int64_t d = 0; d < D; ++d) dkj[d] += src[j * D + d];
        for (int64_t d = 0; d < Dv; ++d) dvj[d] += src[Tk * D + j * Dv + d];
      }
    }
  });
}

void check_args(const AttnArgs& a) {
  NG_CHECK(a.dtype == DType::F32 || a.dtype == DType::F64,
           std::string("scaledDotProductAttention: expected float32 or float64 (got ") + dtype_name(a.dtype) + ")");
  NG_CHECK(a.BH >= 0 && a.Tq >= 0 && a.Tk >= 0 && a.D >= 0 && a.Dv >= 0, "scaledDotProductAttention: negative size");
  NG_CHECK(a.mask_kind == AttnMask::None || static_cast<int64_t>(a.mask_off.size()) == a.BH,
           "scaledDotProductAttention: mask offsets do not cover every slice");
  NG_CHECK(a.dropout_p >= 0 && a.dropout_p <= 1, "scaledDotProductAttention: dropoutP must be in [0, 1]");
  NG_CHECK(a.group >= 1 && a.BH % a.group == 0, "scaledDotProductAttention: the kv-head group must divide the query slices");
  NG_CHECK(a.window >= 0, "scaledDotProductAttention: negative sliding window");
}

}  // namespace

void attention_forward(const AttnArgs& a, const void* q, const void* k, const void* v, void* out, void* lse) {
  check_args(a);
  if (a.dtype == DType::F32) {
    Ptrs<float> p{static_cast<const float*>(q), static_cast<const float*>(k), static_cast<const float*>(v)};
    p.o = static_cast<float*>(out);
    p.l = static_cast<float*>(lse);
    return forward_t<float>(a, p);
  }
  Ptrs<double> p{static_cast<const double*>(q), static_cast<const double*>(k), static_cast<const double*>(v)};
  p.o = static_cast<double*>(out);
  p.l = static_cast<double*>(lse);
  forward_t<double>(a, p);
}

template <class T>
static Ptrs<T> backward_ptrs(const void* q, const void* k, const void* v, const void* out, const void* lse,
                             const void* dout, void* dq, void* dk, void* dv, void* dmask) {
  Ptrs<T> p{static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
            static_cast<const T*>(out), static_cast<const T*>(lse), static_cast<const T*>(dout)};
  p.dq = static_cast<T*>(dq);
  p.dk = static_cast<T*>(dk);
  p.dv = static_cast<T*>(dv);
  p.dmask = static_cast<T*>(dmask);
  return p;
}

void attention_backward(const AttnArgs& a, const void* q, const void* k, const void* v, const void* out,
                        const void* lse, const void* dout, void* dq, void* dk, void* dv, void* dmask) {
  check_args(a);
  if (a.dtype == DType::F32) return backward_t<float>(a, backward_ptrs<float>(q, k, v, out, lse, dout, dq, dk, dv, dmask));
  backward_t<double>(a, backward_ptrs<double>(q, k, v, out, lse, dout, dq, dk, dv, dmask));
}

}  // namespace ng
