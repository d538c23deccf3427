// Flash attention forward on tensor cores (FlashAttention-2 scheme), bfloat16/float16
// with fp32 accumulation, head dim D in {32, 64, 96, 128} (Dv == D), sm_80+.
//
// One CTA of 4 warps owns a tile of 64 query rows of one (batch, head) slice; each warp
// owns 16 rows and keeps its Q fragments, its output accumulator O [16, D] and the running
// max / sum of its rows in registers. K and V tiles of 64 keys stream through shared
// memory with cp.async: V(j) is fetched while S = Q K(j)^T is computed (mma.sync
// m16n8k16, ldmatrix), K(j+1) while O += P V(j) is. Per tile: scale, causal / bool /
// additive mask and edges (-inf), online softmax in the exp2 domain, optional dropout on P
// (Philox, same counters as the CPU), P converted in registers to the A operand of the
// P V product. Causal CTAs stop at the diagonal tile, sliding-window CTAs start at the
// tile of their first row's window; the heaviest tiles launch first. Grouped-query
// attention: the CTA of query slice bh streams kv slice bh / group (no repeated K/V).
// Rows with every key masked end with l = 0: output 0 and lse = -inf.
// Memory traffic: Q and O once; K and V once per 64-row query tile (L2-friendly:
// the CTAs of one slice run together); lse 4 bytes per row.
#include "cuda/attention_kernels.cuh"

namespace ng {
namespace cuda {
namespace attn {

namespace {

constexpr int kThreads = 128;
constexpr int kBr = 64;  // query rows per CTA
constexpr int kBc = 64;  // keys per streamed tile
const char* kOp = "scaledDotProductAttention";

template <class T, int D>
__global__ void __launch_bounds__(kThreads) flash_fwd_kernel(Params p, int64_t nqt) {
#if __CUDA_ARCH__ >= 800
  constexpr int LDS = D + 8;  // 16-byte row padding: conflict-free ldmatrix
  constexpr int NT = kBc / 8, DT = D / 8, KD = D / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK = sQ + kBr * LDS;
  T* sV = sK + kBc * LDS;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int64_t bh = blockIdx.x / nqt;
  const int64_t q0 = (nqt - 1 - blockIdx.x % nqt) * kBr;
  const T* qb = static_cast<const T*>(p.q) + slice_base(p.qs, p.H, bh);
  const T* kb = static_cast<const T*>(p.k) + kv_base(p.ks, p, bh / p.group);
  const T* vb = static_cast<const T*>(p.v) + kv_base(p.vs, p, bh / p.group);
  const int64_t Tq = p.Tq, Tk = p.Tk;
  const int64_t qend = q0 + kBr < Tq ? q0 + kBr : Tq;
  const int64_t kend = p.causal ? (Tk < qend ? Tk : qend) : Tk;  // keys any row of the tile sees
  const int n_kv = static_cast<int>((kend + kBc - 1) / kBc);
  const int it0 = static_cast<int>(key_lo(p, q0) / kBc);  // the first tile the window reaches

  load_tile<T, kBr, D, LDS, kThreads>(sQ, qb, p.qs[2], q0, Tq, tid);
  if (n_kv > it0) load_tile<T, kBc, D, LDS, kThreads>(sK, kb, p.ks[2], static_cast<int64_t>(it0) * kBc, Tk, tid);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  uint32_t qf[KD][4];
#pragma unroll
  for (int kk = 0; kk < KD; ++kk)
    ldsm_x4(qf[kk], sQ + (warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + kk * 16 + (lane >> 4) * 8);

  float o[DT][4];
#pragma unroll
  for (int d = 0; d < DT; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const int64_t r0 = q0 + warp * 16 + g;  // this thread's rows: r0 and r0 + 8
  int64_t moff[2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) moff[rr] = (p.mask_kind && r0 + 8 * rr < Tq) ? mask_row(p, bh, r0 + 8 * rr) : 0;
  const float sc = static_cast<float>(p.scale) * kLog2e;
  const float ik = static_cast<float>(p.inv_keep);

  for (int it = it0; it < n_kv; ++it) {
    const int64_t kv0 = static_cast<int64_t>(it) * kBc;
    load_tile<T, kBc, D, LDS, kThreads>(sV, vb, p.vs[2], kv0, Tk, tid);
    cp_async_commit();

    float s[NT][4];
#pragma unroll
    for (int n = 0; n < NT; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
#pragma unroll
      for (int n2 = 0; n2 < NT / 2; ++n2) {
        uint32_t b[4];
        ldsm_x4(b, sK + (n2 * 16 + (lane & 7) + (lane >> 4) * 8) * LDS + kk * 16 + ((lane >> 3) & 1) * 8);
        mma16816<T>(s[2 * n2], qf[kk], b[0], b[1]);
        mma16816<T>(s[2 * n2 + 1], qf[kk], b[2], b[3]);
      }
    }
    // Scores in the log2 domain; excluded entries (edges, causal, masks) become -inf. Tiles
    // inside the key range, below the diagonal and without a mask skip the checks (rows
    // past Tq hold zero-filled q: finite scores, never stored).
    const bool edge = p.mask_kind || kv0 + kBc > Tk || (p.causal && kv0 + kBc - 1 > q0) ||
                      (p.window > 0 && kv0 <= q0 + kBr - 1 - p.window);
    if (edge) {
#pragma unroll
      for (int n = 0; n < NT; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t row = r0 + (e >> 1) * 8, j = kv0 + n * 8 + 2 * t + (e & 1);
          float x = s[n][e] * sc;
          const bool ok = row < Tq && j < Tk && visible(p, row, j);
          if (ok && p.mask_kind) x += mask_term<T, float>(p, moff[e >> 1], j) * kLog2e;
          s[n][e] = ok ? x : -INFINITY;
        }
      }
    } else {
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] *= sc;
    }
    // Online softmax: the row max over the quad that shares a row, rescale, exponentiate.
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < NT; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * rr], s[n][2 * rr + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mnew = fmaxf(m[rr], mx);
      const float ms = mnew == -INFINITY ? 0.f : mnew;  // nothing visible yet: keep zeros, no NaN
      const float alpha = exp2f(m[rr] - ms);
      float sum = 0.f;
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        s[n][2 * rr] = exp2f(s[n][2 * rr] - ms);
        s[n][2 * rr + 1] = exp2f(s[n][2 * rr + 1] - ms);
        sum += s[n][2 * rr] + s[n][2 * rr + 1];
      }
      l[rr] = l[rr] * alpha + sum;  // per-thread partial; the quad is summed at the end
      m[rr] = mnew;
#pragma unroll
      for (int d = 0; d < DT; ++d) o[d][2 * rr] *= alpha, o[d][2 * rr + 1] *= alpha;
    }
    if (p.dropout) {  // after the row sum: dropout acts on the normalised probabilities
      const uint32_t keep = dropout_bits<NT, false>(p, bh, r0, kv0 + 2 * t);
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] = (keep >> (n * 4 + e)) & 1u ? s[n][e] * ik : 0.f;
    }
    cp_async_wait<0>();
    __syncthreads();  // V(it) has landed; every warp is done reading K(it)
    if (it + 1 < n_kv) load_tile<T, kBc, D, LDS, kThreads>(sK, kb, p.ks[2], kv0 + kBc, Tk, tid);
    cp_async_commit();
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) {
      const uint32_t a[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                             pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int d2 = 0; d2 < D / 16; ++d2) {
        uint32_t b[4];
        ldsm_x4_t(b, sV + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + d2 * 16 + (lane >> 4) * 8);
        mma16816<T>(o[2 * d2], a, b[0], b[1]);
        mma16816<T>(o[2 * d2 + 1], a, b[2], b[3]);
      }
    }
    cp_async_wait<0>();
    __syncthreads();  // K(it + 1) has landed; every warp is done reading V(it)
  }

#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    float lt = l[rr];
    lt += __shfl_xor_sync(0xffffffffu, lt, 1);
    lt += __shfl_xor_sync(0xffffffffu, lt, 2);
    const int64_t row = r0 + 8 * rr;
    if (row >= Tq) continue;
    const float inv = lt > 0.f ? 1.f / lt : 0.f;
    T* orow = static_cast<T*>(p.out) + (bh * Tq + row) * D;
#pragma unroll
    for (int d = 0; d < DT; ++d)
      *reinterpret_cast<uint32_t*>(orow + d * 8 + 2 * t) = pack2<T>(o[d][2 * rr] * inv, o[d][2 * rr + 1] * inv);
    if (t == 0) static_cast<float*>(p.lse)[bh * Tq + row] = lt > 0.f ? (m[rr] + log2f(lt)) * kLn2 : -INFINITY;
  }
#endif
}

template <class T, int D>
void launch_fwd(const Params& p, cudaStream_t s) {
  constexpr size_t smem = static_cast<size_t>(kBr + 2 * kBc) * (D + 8) * sizeof(T);
  const int64_t nqt = (p.Tq + kBr - 1) / kBr;
  if (p.BH * nqt == 0) return;
  if (p.BH * nqt > INT32_MAX) throw Error(std::string(kOp) + ": too many query tiles for one launch");
  NG_CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     static_cast<int>(smem)),
                kOp);
  flash_fwd_kernel<T, D><<<static_cast<unsigned>(p.BH * nqt), kThreads, smem, s>>>(p, nqt);
  check_launch(kOp);
}

template <class T>
void fwd_for_dim(const Params& p, cudaStream_t s) {
  switch (p.D) {
    case 32: return launch_fwd<T, 32>(p, s);
    case 64: return launch_fwd<T, 64>(p, s);
    case 96: return launch_fwd<T, 96>(p, s);
    case 128: return launch_fwd<T, 128>(p, s);
    default: throw Error(std::string(kOp) + ": flash kernel has no head dim " + std::to_string(p.D));
  }
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

}  // namespace

bool flash_supported(const Params& p, DType dt, int cc) {
  if (dt != DType::BF16 && dt != DType::F16) return false;
  if (cc < 80) return false;  // no m16n8k16 / cp.async / bf16 mma before Ampere
  if (p.D != p.Dv || (p.D != 32 && p.D != 64 && p.D != 96 && p.D != 128)) return false;
  // cp.async moves 16-byte chunks: every row start must be 16-byte aligned.
  for (const void* ptr : {p.q, p.k, p.v, p.dout})
    if (ptr && !aligned16(ptr)) return false;
  for (int i = 0; i < 3; ++i)
    if (p.qs[i] % 8 || p.ks[i] % 8 || p.vs[i] % 8) return false;
  return true;
}

void flash_forward(const Params& p, DType dt, cudaStream_t s) {
  if (dt == DType::BF16) fwd_for_dim<__nv_bfloat16>(p, s);
  else fwd_for_dim<__half>(p, s);
}

}  // namespace attn
}  // namespace cuda
}  // namespace ng
