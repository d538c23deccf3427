// Simple SIMT attention kernels: every dtype (float32, float64, bfloat16, float16), any
// head dims up to kMaxHead, sm_75 and up. They are the reference on the device and the
// fallback for what the tensor-core flash kernels do not cover.
//
// Forward: one warp per query row. Keys go 32 at a time (one per lane): the lane forms
// its score (q row staged in shared memory, k row read from global/L1), the warp does an
// online softmax step (max, rescale, sum), and the 32 probabilities (after dropout) are
// applied to V with lanes spread over the output columns (coalesced V rows).
// Backward: rowsum(dO * O) per row (row_dot), then dQ with one warp per query row and
// dK/dV with one warp per key row of a kv slice (looping over the group's query heads in
// order), each recomputing P = exp(s - lse): no atomics, so the result is deterministic. Traffic: each warp reads its q (or k/v) row once and every
// key (query) row it sees once, mostly from L1/L2 since the warps of a block share them.
#include "cuda/attention_kernels.cuh"

namespace ng {
namespace cuda {
namespace attn {

constexpr int kWarps = 4;
constexpr int64_t kMaxHead = 256;  // keeps the per-block shared staging under 48 KiB (float64)

template <class T, class Acc>
__device__ __forceinline__ Acc ld(const T* p) {
  if constexpr (sizeof(Acc) == sizeof(double)) return static_cast<Acc>(*p);
  else return to_f<T>(*p);
}
template <class T, class Acc>
__device__ __forceinline__ T st(Acc v) {
  if constexpr (sizeof(Acc) == sizeof(double)) return static_cast<T>(v);
  else return from_f<T>(v);
}
__device__ __forceinline__ float ex(float x) { return expf(x); }
__device__ __forceinline__ double ex(double x) { return exp(x); }
__device__ __forceinline__ float lg(float x) { return logf(x); }
__device__ __forceinline__ double lg(double x) { return log(x); }

// Scaled, masked score of (bh, i, j) from shared q row `qs` (Acc) and k row `kr`; -inf when
// excluded. j must be < Tk.
template <class T, class Acc>
__device__ __forceinline__ Acc score(const Params& p, const Acc* qs, const T* kr, int64_t moff, int64_t i, int64_t j) {
  if (!visible(p, i, j)) return neg_inf<Acc>();
  const Acc mt = mask_term<T, Acc>(p, moff, j);
  if (mt == neg_inf<Acc>()) return mt;
  Acc dot = 0;
  for (int64_t d = 0; d < p.D; ++d) dot += qs[d] * ld<T, Acc>(kr + d);
  return dot * static_cast<Acc>(p.scale) + mt;
}

template <class T, class Acc>
__global__ void __launch_bounds__(kWarps * 32) simple_fwd_kernel(Params p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= p.BH * p.Tq) return;  // no block-wide barrier below: warps may leave
  Acc* qs = reinterpret_cast<Acc*>(smem_raw) + warp * (p.D + p.Dv + 32);
  Acc* acc = qs + p.D;
  Acc* ps = acc + p.Dv;
  const int64_t bh = row / p.Tq, i = row % p.Tq;
  const T* qr = static_cast<const T*>(p.q) + slice_base(p.qs, p.H, bh) + i * p.qs[2];
  const T* kb = static_cast<const T*>(p.k) + kv_base(p.ks, p, bh / p.group);
  const T* vb = static_cast<const T*>(p.v) + kv_base(p.vs, p, bh / p.group);
  for (int64_t d = lane; d < p.D; d += 32) qs[d] = ld<T, Acc>(qr + d);
  for (int64_t d = lane; d < p.Dv; d += 32) acc[d] = 0;
  __syncwarp();
  const int64_t moff = mask_row(p, bh, i);
  const int64_t jend = p.causal ? (p.Tk < i + 1 ? p.Tk : i + 1) : p.Tk;
  Acc m = neg_inf<Acc>(), l = 0;
  for (int64_t j0 = key_lo(p, i); j0 < jend; j0 += 32) {
    const int64_t j = j0 + lane;
    const Acc s = j < jend ? score<T, Acc>(p, qs, kb + j * p.ks[2], moff, i, j) : neg_inf<Acc>();
    const Acc mnew = fmax(m, warp_max(s));
    if (mnew == neg_inf<Acc>()) continue;  // warp-uniform: nothing visible yet
    const Acc alpha = ex(m - mnew);        // m = -inf gives 0, never NaN (mnew is finite)
    Acc pj = ex(s - mnew);
    l = l * alpha + warp_sum(pj);
    if (p.dropout && j < jend) pj = dropout_keep(p, bh, i, j) ? pj * static_cast<Acc>(p.inv_keep) : Acc(0);
    ps[lane] = pj;
    __syncwarp();
    const int n = static_cast<int>(jend - j0 < 32 ? jend - j0 : 32);
    for (int64_t d = lane; d < p.Dv; d += 32) {
      Acc a = acc[d] * alpha;
      for (int jj = 0; jj < n; ++jj) a += ps[jj] * ld<T, Acc>(vb + (j0 + jj) * p.vs[2] + d);
      acc[d] = a;
    }
    m = mnew;
    __syncwarp();
  }
  T* o = static_cast<T*>(p.out) + row * p.Dv;
  const Acc inv = l > 0 ? Acc(1) / l : Acc(0);
  for (int64_t d = lane; d < p.Dv; d += 32) o[d] = st<T, Acc>(acc[d] * inv);
  if (lane == 0) static_cast<Acc*>(p.lse)[row] = l > 0 ? m + lg(l) : neg_inf<Acc>();
}

template <class T, class Acc>
__global__ void row_dot_kernel(Params p) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= p.BH * p.Tq) return;
  const T* g = static_cast<const T*>(p.dout) + row * p.Dv;
  const T* o = static_cast<const T*>(p.o) + row * p.Dv;
  Acc s = 0;
  for (int64_t d = lane; d < p.Dv; d += 32) s += ld<T, Acc>(g + d) * ld<T, Acc>(o + d);
  s = warp_sum(s);
  if (lane == 0) static_cast<Acc*>(p.dsum)[row] = s;
}

// dQ (and dmask) for one query row per warp: dS_ij = P_ij (dP~_ij - D_i), dQ = scale dS K.
template <class T, class Acc>
__global__ void __launch_bounds__(kWarps * 32) simple_dq_kernel(Params p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= p.BH * p.Tq) return;
  Acc* qs = reinterpret_cast<Acc*>(smem_raw) + warp * (2 * p.D + p.Dv + 32);
  Acc* gs = qs + p.D;
  Acc* dq = gs + p.Dv;
  Acc* dss = dq + p.D;
  const int64_t bh = row / p.Tq, i = row % p.Tq;
  const T* qr = static_cast<const T*>(p.q) + slice_base(p.qs, p.H, bh) + i * p.qs[2];
  const T* gr = static_cast<const T*>(p.dout) + row * p.Dv;
  const T* kb = static_cast<const T*>(p.k) + kv_base(p.ks, p, bh / p.group);
  const T* vb = static_cast<const T*>(p.v) + kv_base(p.vs, p, bh / p.group);
  for (int64_t d = lane; d < p.D; d += 32) qs[d] = ld<T, Acc>(qr + d), dq[d] = 0;
  for (int64_t d = lane; d < p.Dv; d += 32) gs[d] = ld<T, Acc>(gr + d);
  __syncwarp();
  const Acc lse = static_cast<const Acc*>(p.lse)[row], Di = static_cast<const Acc*>(p.dsum)[row];
  const bool live = lse > neg_inf<Acc>();
  const int64_t moff = mask_row(p, bh, i);
  const int64_t jend = !live ? 0 : p.causal ? (p.Tk < i + 1 ? p.Tk : i + 1) : p.Tk;
  T* dm = p.dmask ? static_cast<T*>(p.dmask) + row * p.Tk : nullptr;
  const int64_t jloop = dm ? p.Tk : jend;  // dmask rows are written in full (zeros where masked)
  for (int64_t j0 = dm ? 0 : key_lo(p, i); j0 < jloop; j0 += 32) {
    const int64_t j = j0 + lane;
    Acc ds = 0;
    if (j < jend) {
      const Acc s = score<T, Acc>(p, qs, kb + j * p.ks[2], moff, i, j);
      if (s > neg_inf<Acc>()) {
        const Acc pr = ex(s - lse);
        const T* vr = vb + j * p.vs[2];
        Acc dp = 0;
        for (int64_t d = 0; d < p.Dv; ++d) dp += gs[d] * ld<T, Acc>(vr + d);
        if (p.dropout) dp = dropout_keep(p, bh, i, j) ? dp * static_cast<Acc>(p.inv_keep) : Acc(0);
        ds = pr * (dp - Di);
      }
    }
    if (dm && j < p.Tk) dm[j] = st<T, Acc>(ds);
    if (j0 >= jend) continue;  // warp-uniform
    dss[lane] = ds;
    __syncwarp();
    const int n = static_cast<int>(jend - j0 < 32 ? jend - j0 : 32);
    for (int64_t d = lane; d < p.D; d += 32) {
      Acc a = dq[d];
      for (int jj = 0; jj < n; ++jj) a += dss[jj] * ld<T, Acc>(kb + (j0 + jj) * p.ks[2] + d);
      dq[d] = a;
    }
    __syncwarp();
  }
  T* out = static_cast<T*>(p.dq) + row * p.D;
  for (int64_t d = lane; d < p.D; d += 32) out[d] = st<T, Acc>(dq[d] * static_cast<Acc>(p.scale));
}

// dK, dV for one key row of a kv slice per warp, summed over the group's query heads in
// order: dV_j = sum_{h, i} P~_ij dO_i, dK_j = scale sum_{h, i} dS_ij q_i.
template <class T, class Acc>
__global__ void __launch_bounds__(kWarps * 32) simple_dkdv_kernel(Params p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= p.BH / p.group * p.Tk) return;
  Acc* ks = reinterpret_cast<Acc*>(smem_raw) + warp * (2 * p.D + 2 * p.Dv + 64);
  Acc* vs = ks + p.D;
  Acc* dk = vs + p.Dv;
  Acc* dv = dk + p.D;
  Acc* pds = dv + p.Dv;
  Acc* dss = pds + 32;
  const int64_t kvh = row / p.Tk, j = row % p.Tk;
  const T* kr = static_cast<const T*>(p.k) + kv_base(p.ks, p, kvh) + j * p.ks[2];
  const T* vr = static_cast<const T*>(p.v) + kv_base(p.vs, p, kvh) + j * p.vs[2];
  for (int64_t d = lane; d < p.D; d += 32) ks[d] = ld<T, Acc>(kr + d), dk[d] = 0;
  for (int64_t d = lane; d < p.Dv; d += 32) vs[d] = ld<T, Acc>(vr + d), dv[d] = 0;
  __syncwarp();
  const int64_t istart = p.causal ? j : 0;  // query i sees key j iff j <= i (causal)
  const int64_t iend = p.window > 0 && j + p.window < p.Tq ? j + p.window : p.Tq;  // ... and i < j + window
  for (int64_t bh = kvh * p.group; bh < (kvh + 1) * p.group; ++bh) {
    const T* qb = static_cast<const T*>(p.q) + slice_base(p.qs, p.H, bh);
    const T* gb = static_cast<const T*>(p.dout) + bh * p.Tq * p.Dv;
    const Acc* lse = static_cast<const Acc*>(p.lse) + bh * p.Tq;
    const Acc* dsum = static_cast<const Acc*>(p.dsum) + bh * p.Tq;
    for (int64_t i0 = istart; i0 < iend; i0 += 32) {
      const int64_t i = i0 + lane;
      Acc pd = 0, ds = 0;
      if (i < iend && lse[i] > neg_inf<Acc>()) {
        const Acc mt = mask_term<T, Acc>(p, mask_row(p, bh, i), j);
        if (mt > neg_inf<Acc>()) {
          const T* qr = qb + i * p.qs[2];
          const T* gr = gb + i * p.Dv;
          Acc dot = 0, dp = 0;
          for (int64_t d = 0; d < p.D; ++d) dot += ks[d] * ld<T, Acc>(qr + d);
          for (int64_t d = 0; d < p.Dv; ++d) dp += vs[d] * ld<T, Acc>(gr + d);
          const Acc pr = ex(dot * static_cast<Acc>(p.scale) + mt - lse[i]);
          pd = pr;
          if (p.dropout) {
            const bool kept = dropout_keep(p, bh, i, j);
            pd = kept ? pr * static_cast<Acc>(p.inv_keep) : Acc(0);
            dp = kept ? dp * static_cast<Acc>(p.inv_keep) : Acc(0);
          }
          ds = pr * (dp - dsum[i]);
        }
      }
      pds[lane] = pd;
      dss[lane] = ds;
      __syncwarp();
      const int n = static_cast<int>(iend - i0 < 32 ? iend - i0 : 32);
      for (int64_t d = lane; d < p.Dv; d += 32) {
        Acc a = dv[d];
        for (int ii = 0; ii < n; ++ii) a += pds[ii] * ld<T, Acc>(gb + (i0 + ii) * p.Dv + d);
        dv[d] = a;
      }
      for (int64_t d = lane; d < p.D; d += 32) {
        Acc a = dk[d];
        for (int ii = 0; ii < n; ++ii) a += dss[ii] * ld<T, Acc>(qb + (i0 + ii) * p.qs[2] + d);
        dk[d] = a;
      }
      __syncwarp();
    }
  }
  T* dko = static_cast<T*>(p.dk) + row * p.D;
  T* dvo = static_cast<T*>(p.dv) + row * p.Dv;
  for (int64_t d = lane; d < p.D; d += 32) dko[d] = st<T, Acc>(dk[d] * static_cast<Acc>(p.scale));
  for (int64_t d = lane; d < p.Dv; d += 32) dvo[d] = st<T, Acc>(dv[d]);
}

template <class T>
using AccOf = typename std::conditional<std::is_same<T, double>::value, double, float>::type;

static void check_heads(const Params& p) {
  if (p.D > kMaxHead || p.Dv > kMaxHead)
    throw Error("scaledDotProductAttention: head dim too large for the CUDA kernels (got D = " + std::to_string(p.D) +
                ", Dv = " + std::to_string(p.Dv) + "; expected at most " + std::to_string(kMaxHead) + ")");
}

void simple_forward(const Params& p, DType dt, cudaStream_t s) {
  check_heads(p);
  if (p.BH * p.Tq == 0) return;
  dispatch_float(dt, "scaledDotProductAttention", [&](auto tag) {
    using T = decltype(tag);
    using Acc = AccOf<T>;
    const size_t smem = sizeof(Acc) * kWarps * static_cast<size_t>(p.D + p.Dv + 32);
    simple_fwd_kernel<T, Acc><<<blocks_for(p.BH * p.Tq, kWarps, INT32_MAX), kWarps * 32, smem, s>>>(p);
    check_launch("scaledDotProductAttention");
  });
}

void row_dot(const Params& p, DType dt, cudaStream_t s) {
  if (p.BH * p.Tq == 0) return;
  dispatch_float(dt, "scaledDotProductAttention backward", [&](auto tag) {
    using T = decltype(tag);
    row_dot_kernel<T, AccOf<T>><<<blocks_for(p.BH * p.Tq, kWarps, INT32_MAX), kWarps * 32, 0, s>>>(p);
    check_launch("scaledDotProductAttention backward");
  });
}

void simple_backward(const Params& p, DType dt, cudaStream_t s) {
  check_heads(p);
  dispatch_float(dt, "scaledDotProductAttention backward", [&](auto tag) {
    using T = decltype(tag);
    using Acc = AccOf<T>;
    if (p.BH * p.Tq > 0) {
      const size_t smem = sizeof(Acc) * kWarps * static_cast<size_t>(2 * p.D + p.Dv + 32);
      simple_dq_kernel<T, Acc><<<blocks_for(p.BH * p.Tq, kWarps, INT32_MAX), kWarps * 32, smem, s>>>(p);
      check_launch("scaledDotProductAttention backward");
    }
    if (p.BH / p.group * p.Tk > 0) {
      const size_t smem = sizeof(Acc) * kWarps * static_cast<size_t>(2 * p.D + 2 * p.Dv + 64);
      simple_dkdv_kernel<T, Acc><<<blocks_for(p.BH / p.group * p.Tk, kWarps, INT32_MAX), kWarps * 32, smem, s>>>(p);
      check_launch("scaledDotProductAttention backward");
    }
  });
}

}  // namespace attn
}  // namespace cuda
}  // namespace ng
