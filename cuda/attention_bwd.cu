// Flash attention backward on tensor cores (FlashAttention-2 scheme without atomics),
// bfloat16/float16 with fp32 accumulation, D == Dv in {32, 64, 96, 128}, sm_80+.
// Runs after row_dot (cuda/attention_simple.cu) has written Di = rowsum(dO * O).
//
// dK/dV kernel: one CTA of 4 warps per tile of 64 keys (16 per warp; K and V stay in
// shared memory), streaming query tiles of 32 rows (Q, dO, lse, Di double-buffered with
// cp.async). Per query tile each warp recomputes S^T = K Q^T and dP^T = V dO^T (mma.sync
// m16n8k16), P^T = exp2(S^T - lse) with the same masks, dropout mask and edges as the
// forward, dS^T = P^T (dP~^T - Di), and accumulates dV += P~^T dO and dK += dS^T Q in
// registers (P~, dS converted in registers to A operands; dO and Q read with
// ldmatrix.trans). Causal CTAs start at the diagonal query tile, sliding-window CTAs stop
// at the last query that sees one of their keys. Grouped-query attention: the CTA owns
// 64 keys of one kv slice and streams the query tiles of each of the group's query heads
// in turn, so dK/dV sum over the group in registers, in a fixed order.
// dQ kernel: one CTA per tile of 64 query rows (16 per warp), streaming K/V tiles of 32
// keys (double-buffered), recomputing S, dP, dS the same way and accumulating dQ = dS K.
// Each gradient element is written once by one thread: deterministic, no atomics.
// Memory traffic: K, V, dK, dV once; Q, dO, lse, Di once per 64-key tile; dQ once and
// K, V once more per 64-row query tile.
#include "cuda/attention_kernels.cuh"

namespace ng {
namespace cuda {
namespace attn {

namespace {

constexpr int kThreads = 128;
constexpr int kKeys = 64;  // dK/dV kernel: keys per CTA
constexpr int kQs = 32;    // dK/dV kernel: queries per streamed tile
constexpr int kRows = 64;  // dQ kernel: query rows per CTA
constexpr int kKs = 32;    // dQ kernel: keys per streamed tile
const char* kOp = "scaledDotProductAttention backward";

// Probability of (row i, key j) from the raw dot product x, in the log2 domain with the
// row's lse2 = lse * log2(e); 0 when excluded (edges, causal, bool mask, dead row).
template <class T>
__device__ __forceinline__ float prob(const Params& p, float x, float sc, float lse2, int64_t moffb, int64_t i,
                                      int64_t j) {
  if (i >= p.Tq || j >= p.Tk || lse2 == -INFINITY || !visible(p, i, j)) return 0.f;
  x *= sc;
  if (p.mask_kind) x += mask_term<T, float>(p, moffb + i * p.mask_si, j) * kLog2e;
  return exp2f(x - lse2);  // x = -inf gives 0
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) flash_dkdv_kernel(Params p, int64_t nkt) {
#if __CUDA_ARCH__ >= 800
  constexpr int LDS = D + 8, DT = D / 8, KD = D / 16, NT = kQs / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sK = reinterpret_cast<T*>(smem_raw);
  T* sV = sK + kKeys * LDS;
  T* sQ = sV + kKeys * LDS;   // [2][kQs][LDS]
  T* sG = sQ + 2 * kQs * LDS;  // [2][kQs][LDS] (dO)
  float* sL = reinterpret_cast<float*>(sG + 2 * kQs * LDS);  // [2][kQs] lse * log2(e)
  float* sDi = sL + 2 * kQs;                                  // [2][kQs]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int64_t kvh = blockIdx.x / nkt;  // kv slice; its query slices are kvh * group + [0, group)
  const int64_t kv0 = (blockIdx.x % nkt) * kKeys;
  const int64_t Tq = p.Tq, Tk = p.Tk;
  const T* kb = static_cast<const T*>(p.k) + kv_base(p.ks, p, kvh);
  const T* vb = static_cast<const T*>(p.v) + kv_base(p.vs, p, kvh);
  const int64_t i_first = p.causal ? (kv0 / kQs) * kQs : 0;  // query i sees key j iff j <= i
  // ... and, with a window, iff i < j + window: no query from i_end on sees a key of the tile
  const int64_t i_end = p.window > 0 && kv0 + kKeys - 1 + p.window < Tq ? kv0 + kKeys - 1 + p.window : Tq;
  const int n_qt = i_first < i_end ? static_cast<int>((i_end - i_first + kQs - 1) / kQs) : 0;
  const int n_q = n_qt * static_cast<int>(p.group);  // (query head, query tile) steps, head-major
  auto head_of = [&](int it) { return kvh * p.group + it / n_qt; };
  auto row0_of = [&](int it) { return i_first + static_cast<int64_t>(it % n_qt) * kQs; };

  auto load_q = [&](int it, int buf) {
    const int64_t bh = head_of(it), i0 = row0_of(it);
    const float* lse = static_cast<const float*>(p.lse) + bh * Tq;
    const float* di = static_cast<const float*>(p.dsum) + bh * Tq;
    load_tile<T, kQs, D, LDS, kThreads>(sQ + buf * kQs * LDS, static_cast<const T*>(p.q) + slice_base(p.qs, p.H, bh),
                                        p.qs[2], i0, Tq, tid);
    load_tile<T, kQs, D, LDS, kThreads>(sG + buf * kQs * LDS, static_cast<const T*>(p.dout) + bh * Tq * D, D, i0, Tq,
                                        tid);
    if (tid < kQs) {
      const int64_t i = i0 + tid;
      const float lv = i < Tq ? lse[i] : -INFINITY;
      sL[buf * kQs + tid] = lv == -INFINITY ? -INFINITY : lv * kLog2e;
      sDi[buf * kQs + tid] = i < Tq ? di[i] : 0.f;
    }
  };
  load_tile<T, kKeys, D, LDS, kThreads>(sK, kb, p.ks[2], kv0, Tk, tid);
  load_tile<T, kKeys, D, LDS, kThreads>(sV, vb, p.vs[2], kv0, Tk, tid);
  if (n_q > 0) load_q(0, 0);
  cp_async_commit();

  float dk[DT][4], dv[DT][4];
#pragma unroll
  for (int d = 0; d < DT; ++d)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[d][e] = dv[d][e] = 0.f;
  const int64_t j0 = kv0 + warp * 16 + g;  // this thread's keys: j0 and j0 + 8
  const float sc = static_cast<float>(p.scale) * kLog2e;
  const float ik = static_cast<float>(p.inv_keep);

  for (int it = 0; it < n_q; ++it) {
    const int buf = it & 1;
    if (it + 1 < n_q) load_q(it + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // tile it (and K, V) have landed
    const T* q = sQ + buf * kQs * LDS;
    const T* gq = sG + buf * kQs * LDS;
    const int64_t bh = head_of(it), i0 = row0_of(it);
    const int64_t moffb = p.mask_kind ? p.mask_off[bh] : 0;

    float st[NT][4], dpt[NT][4];
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) st[n][e] = dpt[n][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      uint32_t ak[4], av[4];
      const int arow = (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + kk * 16 + (lane >> 4) * 8;
      ldsm_x4(ak, sK + arow);
      ldsm_x4(av, sV + arow);
#pragma unroll
      for (int n2 = 0; n2 < NT / 2; ++n2) {
        const int brow = (n2 * 16 + (lane & 7) + (lane >> 4) * 8) * LDS + kk * 16 + ((lane >> 3) & 1) * 8;
        uint32_t b[4];
        ldsm_x4(b, q + brow);
        mma16816<T>(st[2 * n2], ak, b[0], b[1]);
        mma16816<T>(st[2 * n2 + 1], ak, b[2], b[3]);
        ldsm_x4(b, gq + brow);
        mma16816<T>(dpt[2 * n2], av, b[0], b[1]);
        mma16816<T>(dpt[2 * n2 + 1], av, b[2], b[3]);
      }
    }
    // st becomes P~^T (after dropout), dpt becomes dS^T. Interior tiles (no mask, no edge,
    // below the diagonal: every lse there is finite) skip the checks.
    const bool edge = p.mask_kind || kv0 + kKeys > Tk || i0 + kQs > Tq || (p.causal && kv0 + kKeys - 1 > i0) ||
                      (p.window > 0 && kv0 <= i0 + kQs - 1 - p.window);
    const uint32_t keep = p.dropout ? dropout_bits<NT, true>(p, bh, j0, i0 + 2 * t) : 0u;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int il = n * 8 + 2 * t + (e & 1);
        const int64_t i = i0 + il, j = j0 + (e >> 1) * 8;
        const float L = sL[buf * kQs + il];
        const float pr = edge ? prob<T>(p, st[n][e], sc, L, moffb, i, j) : exp2f(st[n][e] * sc - L);
        float dp = dpt[n][e], pd = pr;
        if (p.dropout) {
          const bool kept = (keep >> (n * 4 + e)) & 1u;
          pd = kept ? pr * ik : 0.f;
          dp = kept ? dp * ik : 0.f;
        }
        dpt[n][e] = pr * (dp - sDi[buf * kQs + il]);
        st[n][e] = pd;
      }
    }
#pragma unroll
    for (int kk = 0; kk < kQs / 16; ++kk) {
      const uint32_t ap[4] = {pack2<T>(st[2 * kk][0], st[2 * kk][1]), pack2<T>(st[2 * kk][2], st[2 * kk][3]),
                              pack2<T>(st[2 * kk + 1][0], st[2 * kk + 1][1]),
                              pack2<T>(st[2 * kk + 1][2], st[2 * kk + 1][3])};
      const uint32_t as[4] = {pack2<T>(dpt[2 * kk][0], dpt[2 * kk][1]), pack2<T>(dpt[2 * kk][2], dpt[2 * kk][3]),
                              pack2<T>(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]),
                              pack2<T>(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3])};
#pragma unroll
      for (int d2 = 0; d2 < D / 16; ++d2) {
        const int brow = (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + d2 * 16 + (lane >> 4) * 8;
        uint32_t b[4];
        ldsm_x4_t(b, gq + brow);
        mma16816<T>(dv[2 * d2], ap, b[0], b[1]);
        mma16816<T>(dv[2 * d2 + 1], ap, b[2], b[3]);
        ldsm_x4_t(b, q + brow);
        mma16816<T>(dk[2 * d2], as, b[0], b[1]);
        mma16816<T>(dk[2 * d2 + 1], as, b[2], b[3]);
      }
    }
    __syncthreads();  // the next iteration's prefetch overwrites this buffer
  }
  cp_async_wait<0>();  // no copy may still be in flight at exit (n_q == 0 never waited)

  const float scale = static_cast<float>(p.scale);
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int64_t j = j0 + 8 * rr;
    if (j >= Tk) continue;
    T* dkr = static_cast<T*>(p.dk) + (kvh * Tk + j) * D;
    T* dvr = static_cast<T*>(p.dv) + (kvh * Tk + j) * D;
#pragma unroll
    for (int d = 0; d < DT; ++d) {
      *reinterpret_cast<uint32_t*>(dkr + d * 8 + 2 * t) = pack2<T>(dk[d][2 * rr] * scale, dk[d][2 * rr + 1] * scale);
      *reinterpret_cast<uint32_t*>(dvr + d * 8 + 2 * t) = pack2<T>(dv[d][2 * rr], dv[d][2 * rr + 1]);
    }
  }
#endif
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) flash_dq_kernel(Params p, int64_t nqt) {
#if __CUDA_ARCH__ >= 800
  constexpr int LDS = D + 8, DT = D / 8, KD = D / 16, NT = kKs / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sG = sQ + kRows * LDS;
  T* sK = sG + kRows * LDS;   // [2][kKs][LDS]
  T* sV = sK + 2 * kKs * LDS;  // [2][kKs][LDS]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int64_t bh = blockIdx.x / nqt;
  const int64_t q0 = (nqt - 1 - blockIdx.x % nqt) * kRows;
  const int64_t Tq = p.Tq, Tk = p.Tk;
  const T* qb = static_cast<const T*>(p.q) + slice_base(p.qs, p.H, bh);
  const T* kb = static_cast<const T*>(p.k) + kv_base(p.ks, p, bh / p.group);
  const T* vb = static_cast<const T*>(p.v) + kv_base(p.vs, p, bh / p.group);
  const T* gb = static_cast<const T*>(p.dout) + bh * Tq * D;
  const int64_t qend = q0 + kRows < Tq ? q0 + kRows : Tq;
  const int64_t kend = p.causal ? (Tk < qend ? Tk : qend) : Tk;
  const int n_kv = static_cast<int>((kend + kKs - 1) / kKs);
  const int it0 = static_cast<int>(key_lo(p, q0) / kKs);  // the first tile the window reaches

  load_tile<T, kRows, D, LDS, kThreads>(sQ, qb, p.qs[2], q0, Tq, tid);
  load_tile<T, kRows, D, LDS, kThreads>(sG, gb, D, q0, Tq, tid);
  if (n_kv > it0) {
    const int64_t k0 = static_cast<int64_t>(it0) * kKs;
    load_tile<T, kKs, D, LDS, kThreads>(sK + (it0 & 1) * kKs * LDS, kb, p.ks[2], k0, Tk, tid);
    load_tile<T, kKs, D, LDS, kThreads>(sV + (it0 & 1) * kKs * LDS, vb, p.vs[2], k0, Tk, tid);
  }
  cp_async_commit();

  const int64_t r0 = q0 + warp * 16 + g;  // this thread's rows: r0 and r0 + 8
  float L[2], Di[2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int64_t row = r0 + 8 * rr;
    const float lv = row < Tq ? static_cast<const float*>(p.lse)[bh * Tq + row] : -INFINITY;
    L[rr] = lv == -INFINITY ? -INFINITY : lv * kLog2e;
    Di[rr] = row < Tq ? static_cast<const float*>(p.dsum)[bh * Tq + row] : 0.f;
  }
  const int64_t moffb = p.mask_kind ? p.mask_off[bh] : 0;
  const float sc = static_cast<float>(p.scale) * kLog2e;
  const float ik = static_cast<float>(p.inv_keep);
  float dq[DT][4];
#pragma unroll
  for (int d = 0; d < DT; ++d) dq[d][0] = dq[d][1] = dq[d][2] = dq[d][3] = 0.f;

  for (int it = it0; it < n_kv; ++it) {
    const int buf = it & 1;
    const int64_t kv0 = static_cast<int64_t>(it) * kKs;
    if (it + 1 < n_kv) {
      load_tile<T, kKs, D, LDS, kThreads>(sK + (buf ^ 1) * kKs * LDS, kb, p.ks[2], kv0 + kKs, Tk, tid);
      load_tile<T, kKs, D, LDS, kThreads>(sV + (buf ^ 1) * kKs * LDS, vb, p.vs[2], kv0 + kKs, Tk, tid);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const T* k = sK + buf * kKs * LDS;
    const T* v = sV + buf * kKs * LDS;

    float s[NT][4], dp[NT][4];
#pragma unroll
    for (int n = 0; n < NT; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      uint32_t aq[4], ag[4];
      const int arow = (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + kk * 16 + (lane >> 4) * 8;
      ldsm_x4(aq, sQ + arow);
      ldsm_x4(ag, sG + arow);
#pragma unroll
      for (int n2 = 0; n2 < NT / 2; ++n2) {
        const int brow = (n2 * 16 + (lane & 7) + (lane >> 4) * 8) * LDS + kk * 16 + ((lane >> 3) & 1) * 8;
        uint32_t b[4];
        ldsm_x4(b, k + brow);
        mma16816<T>(s[2 * n2], aq, b[0], b[1]);
        mma16816<T>(s[2 * n2 + 1], aq, b[2], b[3]);
        ldsm_x4(b, v + brow);
        mma16816<T>(dp[2 * n2], ag, b[0], b[1]);
        mma16816<T>(dp[2 * n2 + 1], ag, b[2], b[3]);
      }
    }
    // s becomes dS (interior tiles skip the checks, as in the dK/dV kernel).
    const bool edge = p.mask_kind || kv0 + kKs > Tk || q0 + kRows > Tq || (p.causal && kv0 + kKs - 1 > q0) ||
                      (p.window > 0 && kv0 <= q0 + kRows - 1 - p.window);
    const uint32_t keep = p.dropout ? dropout_bits<NT, false>(p, bh, r0, kv0 + 2 * t) : 0u;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int rr = e >> 1;
        const int64_t i = r0 + 8 * rr, j = kv0 + n * 8 + 2 * t + (e & 1);
        const float pr = edge ? prob<T>(p, s[n][e], sc, L[rr], moffb, i, j) : exp2f(s[n][e] * sc - L[rr]);
        float d = dp[n][e];
        if (p.dropout) d = (keep >> (n * 4 + e)) & 1u ? d * ik : 0.f;
        s[n][e] = pr * (d - Di[rr]);
      }
    }
#pragma unroll
    for (int kk = 0; kk < kKs / 16; ++kk) {
      const uint32_t a[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                             pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int d2 = 0; d2 < D / 16; ++d2) {
        uint32_t b[4];
        ldsm_x4_t(b, k + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + d2 * 16 + (lane >> 4) * 8);
        mma16816<T>(dq[2 * d2], a, b[0], b[1]);
        mma16816<T>(dq[2 * d2 + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // the next iteration's prefetch overwrites this buffer
  }
  cp_async_wait<0>();  // no copy may still be in flight at exit (n_kv == 0 never waited)

  const float scale = static_cast<float>(p.scale);
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const int64_t row = r0 + 8 * rr;
    if (row >= Tq) continue;
    T* out = static_cast<T*>(p.dq) + (bh * Tq + row) * D;
#pragma unroll
    for (int d = 0; d < DT; ++d)
      *reinterpret_cast<uint32_t*>(out + d * 8 + 2 * t) = pack2<T>(dq[d][2 * rr] * scale, dq[d][2 * rr + 1] * scale);
  }
#endif
}

template <class T, int D>
void launch_bwd(const Params& p, cudaStream_t s) {
  constexpr size_t tiles = static_cast<size_t>(2 * kKeys + 4 * kQs) * (D + 8) * sizeof(T);
  constexpr size_t smem_kv = tiles + 4 * kQs * sizeof(float);
  constexpr size_t smem_q = static_cast<size_t>(2 * kRows + 4 * kKs) * (D + 8) * sizeof(T);
  const int64_t nkt = (p.Tk + kKeys - 1) / kKeys, nqt = (p.Tq + kRows - 1) / kRows;
  const int64_t BHk = p.BH / p.group;  // kv slices
  if (BHk * nkt > INT32_MAX || p.BH * nqt > INT32_MAX) throw Error(std::string(kOp) + ": too many tiles for one launch");
  if (BHk * nkt > 0) {
    NG_CUDA_CHECK(cudaFuncSetAttribute(flash_dkdv_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem_kv)),
                  kOp);
    flash_dkdv_kernel<T, D><<<static_cast<unsigned>(BHk * nkt), kThreads, smem_kv, s>>>(p, nkt);
    check_launch(kOp);
  }
  if (p.BH * nqt > 0) {
    NG_CUDA_CHECK(cudaFuncSetAttribute(flash_dq_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem_q)),
                  kOp);
    flash_dq_kernel<T, D><<<static_cast<unsigned>(p.BH * nqt), kThreads, smem_q, s>>>(p, nqt);
    check_launch(kOp);
  }
}

template <class T>
void bwd_for_dim(const Params& p, cudaStream_t s) {
  switch (p.D) {
    case 32: return launch_bwd<T, 32>(p, s);
    case 64: return launch_bwd<T, 64>(p, s);
    case 96: return launch_bwd<T, 96>(p, s);
    case 128: return launch_bwd<T, 128>(p, s);
    default: throw Error(std::string(kOp) + ": flash kernel has no head dim " + std::to_string(p.D));
  }
}

}  // namespace

void flash_backward(const Params& p, DType dt, cudaStream_t s) {
  if (dt == DType::BF16) bwd_for_dim<__nv_bfloat16>(p, s);
  else bwd_for_dim<__half>(p, s);
}

}  // namespace attn
}  // namespace cuda
}  // namespace ng
