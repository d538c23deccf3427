// LayerNorm on CUDA: forward (optionally fused with the residual add) and backward.
// Layers (DESIGN §5): static __global__ kernels, host launchers on the device's stream,
// checked entries. Lab with the variants and timings: bench/kernels/layernorm/.
//
// Thread layout. A "group" of G threads owns one row at a time: G = 32 (one warp per
// row, 8 rows per 256-thread block) for C <= 1024, G = 256 (one block per row) for
// C <= 8192. Each thread keeps at most 32 floats of the row in registers, loaded with
// 128-bit vector loads when every pointer is 16-byte aligned and C is a multiple of the
// vector width (4 floats, 8 halves). Anything else (C > 8192, C not a multiple of the
// vector width, unaligned views) takes the general block-per-row kernel with scalar
// loads, which re-reads the row from global memory (L2) and has no limit on C. (A scalar
// register-cached variant doubled the compile time for shapes models do not use.)
// Statistics and all arithmetic are fp32.
#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/layernorm.h"
#include "cuda/rowwise.cuh"

namespace ng {
namespace cuda {
namespace {

using namespace rowwise;

// ---- forward ------------------------------------------------------------------------------

// Row cached in registers. Per row: reads x (and residual) once, writes y (and sum), and
// 8 bytes of statistics; w and b are re-read per row from L1/L2. Two-pass variance over
// the registers (no cancellation from E[x^2] - mean^2).
template <class T, int VEC, int G>
__global__ void __launch_bounds__(kThreads)
    ln_forward_cached(const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ sum,
                      const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                      float* __restrict__ mean, float* __restrict__ rstd, int64_t rows, int C, float eps) {
  constexpr int W = kThreads / G;
  constexpr int NV = kMaxPerThread / VEC;
  __shared__ float2 red[32];
  const int gl = threadIdx.x % G, grp = threadIdx.x / G;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * W + grp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * W) {
    const int64_t base = row * C;
    float v[NV][VEC];
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int c = (k * G + gl) * VEC;
      if (c < C) {
        load_vec<T, VEC>(x + base + c, v[k]);
        if (res != nullptr) {
          float r[VEC];
          load_vec<T, VEC>(res + base + c, r);
#pragma unroll
          for (int j = 0; j < VEC; ++j) v[k][j] = round_to<T>(v[k][j] + r[j]);
          store_vec<T, VEC>(sum + base + c, v[k]);
        }
#pragma unroll
        for (int j = 0; j < VEC; ++j) s += v[k][j];
      } else {
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[k][j] = 0.f;
      }
    }
    const float mu = group_sum2<G>(s, 0.f, red).x / C;
    float q = 0.f;
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      if ((k * G + gl) * VEC < C) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const float d = v[k][j] - mu;
          q += d * d;
        }
      }
    }
    const float rs = 1.f / sqrtf(group_sum2<G>(q, 0.f, red).x / C + eps);
    if (gl == 0) {
      if (mean != nullptr) mean[row] = mu;
      if (rstd != nullptr) rstd[row] = rs;
    }
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int c = (k * G + gl) * VEC;
      if (c < C) {
        float wv[VEC], bv[VEC], o[VEC];
        if (w != nullptr) load_vec<T, VEC>(w + c, wv);
        else
          for (int j = 0; j < VEC; ++j) wv[j] = 1.f;
        if (b != nullptr) load_vec<T, VEC>(b + c, bv);
        else
          for (int j = 0; j < VEC; ++j) bv[j] = 0.f;
#pragma unroll
        for (int j = 0; j < VEC; ++j) o[j] = (v[k][j] - mu) * rs * wv[j] + bv[j];
        store_vec<T, VEC>(y + base + c, o);
      }
    }
  }
}

// General path (any C, any alignment): one block per row, scalar loads, three passes
// over the row (mean, variance, output). Global traffic is still one read of x and
// residual when the row fits in L1/L2; the extra passes hit cache.
template <class T>
__global__ void __launch_bounds__(kThreads)
    ln_forward_rows(const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ sum,
                    const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                    float* __restrict__ mean, float* __restrict__ rstd, int64_t rows, int64_t C, float eps) {
  __shared__ float2 red[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * C;
    // The value that is normalised: x, or x + residual rounded as stored in sum.
    auto value = [&](int64_t c) {
      float v = to_f<T>(x[base + c]);
      return res != nullptr ? round_to<T>(v + to_f<T>(res[base + c])) : v;
    };
    float s = 0.f;
    for (int64_t c = threadIdx.x; c < C; c += kThreads) {
      const float v = value(c);
      if (res != nullptr) sum[base + c] = from_f<T>(v);
      s += v;
    }
    const float mu = group_sum2<kThreads>(s, 0.f, red).x / C;
    float q = 0.f;
    for (int64_t c = threadIdx.x; c < C; c += kThreads) {
      const float d = value(c) - mu;
      q += d * d;
    }
    const float rs = 1.f / sqrtf(group_sum2<kThreads>(q, 0.f, red).x / C + eps);
    if (threadIdx.x == 0) {
      if (mean != nullptr) mean[row] = mu;
      if (rstd != nullptr) rstd[row] = rs;
    }
    for (int64_t c = threadIdx.x; c < C; c += kThreads) {
      const float wv = w != nullptr ? to_f<T>(w[c]) : 1.f, bv = b != nullptr ? to_f<T>(b[c]) : 0.f;
      y[base + c] = from_f<T>((value(c) - mu) * rs * wv + bv);
    }
  }
}

// ---- backward -----------------------------------------------------------------------------

// Row cached in registers; block `blockIdx.x` owns rows [r0, r1) (a fixed partition), its
// groups take every W-th of them. Per row: reads g and x once (w from L1/L2), writes gx.
// Each thread sums g*xhat and g for the columns it owns in registers; at the end the W
// groups of the block add theirs in group order through shared memory and the block
// writes one fp32 partial [2][C] (dw, db) to part[blockIdx.x]. No atomics anywhere.
template <class T, int VEC, int G>
__global__ void __launch_bounds__(kThreads)
    ln_backward_cached(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ w,
                       const float* __restrict__ mean, const float* __restrict__ rstd, T* __restrict__ gx,
                       float* __restrict__ part, int64_t rows, int64_t rows_per_block, int C, float eps) {
  constexpr int W = kThreads / G;
  constexpr int NV = kMaxPerThread / VEC;
  __shared__ float2 red[32];
  const int gl = threadIdx.x % G, grp = threadIdx.x / G;
  float dw[NV][VEC], db[NV][VEC];
#pragma unroll
  for (int k = 0; k < NV; ++k)
#pragma unroll
    for (int j = 0; j < VEC; ++j) dw[k][j] = db[k][j] = 0.f;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  for (int64_t row = r0 + grp; row < r1; row += W) {
    const int64_t base = row * C;
    float xh[NV][VEC], dy[NV][VEC];
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int c = (k * G + gl) * VEC;
      if (c < C) {
        load_vec<T, VEC>(x + base + c, xh[k]);
        load_vec<T, VEC>(g + base + c, dy[k]);
#pragma unroll
        for (int j = 0; j < VEC; ++j) s += xh[k][j];
      } else {
#pragma unroll
        for (int j = 0; j < VEC; ++j) xh[k][j] = dy[k][j] = 0.f;
      }
    }
    float mu, rs;
    if (mean != nullptr) {
      mu = mean[row];
      rs = rstd[row];
    } else {  // statistics not saved: recompute them from the cached row
      mu = group_sum2<G>(s, 0.f, red).x / C;
      float q = 0.f;
#pragma unroll
      for (int k = 0; k < NV; ++k) {
        if ((k * G + gl) * VEC < C) {
#pragma unroll
          for (int j = 0; j < VEC; ++j) {
            const float d = xh[k][j] - mu;
            q += d * d;
          }
        }
      }
      rs = 1.f / sqrtf(group_sum2<G>(q, 0.f, red).x / C + eps);
    }
    float a = 0.f, bsum = 0.f;
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int c = (k * G + gl) * VEC;
      if (c < C) {
        float wv[VEC];
        if (w != nullptr) load_vec<T, VEC>(w + c, wv);
        else
          for (int j = 0; j < VEC; ++j) wv[j] = 1.f;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const float xhat = (xh[k][j] - mu) * rs;
          xh[k][j] = xhat;
          db[k][j] += dy[k][j];
          dw[k][j] += dy[k][j] * xhat;
          dy[k][j] *= wv[j];  // now dxhat
          a += dy[k][j];
          bsum += dy[k][j] * xhat;
        }
      }
    }
    const float2 t = group_sum2<G>(a, bsum, red);
    const float m1 = t.x / C, m2 = t.y / C;
    if (gx != nullptr) {
#pragma unroll
      for (int k = 0; k < NV; ++k) {
        const int c = (k * G + gl) * VEC;
        if (c < C) {
          float o[VEC];
#pragma unroll
          for (int j = 0; j < VEC; ++j) o[j] = rs * (dy[k][j] - m1 - xh[k][j] * m2);
          store_vec<T, VEC>(gx + base + c, o);
        }
      }
    }
  }
  if (part == nullptr) return;  // block-uniform
  float* pw = part + static_cast<int64_t>(blockIdx.x) * 2 * C;
  float* pb = pw + C;
  if constexpr (W == 1) {
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int c = (k * G + gl) * VEC;
      if (c < C) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          pw[c + j] = dw[k][j];
          pb[c + j] = db[k][j];
        }
      }
    }
  } else {
    __shared__ float acc_w[kWarpMaxC], acc_b[kWarpMaxC];  // G = 32 only runs with C <= kWarpMaxC
    for (int wi = 0; wi < W; ++wi) {
      if (grp == wi) {
#pragma unroll
        for (int k = 0; k < NV; ++k) {
          const int c = (k * G + gl) * VEC;
          if (c < C) {
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
              acc_w[c + j] = (wi == 0 ? 0.f : acc_w[c + j]) + dw[k][j];
              acc_b[c + j] = (wi == 0 ? 0.f : acc_b[c + j]) + db[k][j];
            }
          }
        }
      }
      __syncthreads();
    }
    for (int c = threadIdx.x; c < C; c += kThreads) {
      pw[c] = acc_w[c];
      pb[c] = acc_b[c];
    }
  }
}

// General backward (any C, any alignment): the block walks its rows one at a time,
// re-reading g and x (L1/L2) per pass. Its partial [2][C] lives in global scratch and is
// updated in place: column c is only ever touched by thread c % kThreads of this block,
// so there are no races and the order of additions is fixed.
template <class T>
__global__ void __launch_bounds__(kThreads)
    ln_backward_rows(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ w,
                     const float* __restrict__ mean, const float* __restrict__ rstd, T* __restrict__ gx,
                     float* __restrict__ part, int64_t rows, int64_t rows_per_block, int64_t C, float eps) {
  __shared__ float2 red[32];
  float* pw = part != nullptr ? part + static_cast<int64_t>(blockIdx.x) * 2 * C : nullptr;
  if (pw != nullptr)
    for (int64_t c = threadIdx.x; c < C; c += kThreads) pw[c] = pw[C + c] = 0.f;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t base = row * C;
    float mu, rs;
    if (mean != nullptr) {
      mu = mean[row];
      rs = rstd[row];
    } else {
      float s = 0.f;
      for (int64_t c = threadIdx.x; c < C; c += kThreads) s += to_f<T>(x[base + c]);
      mu = group_sum2<kThreads>(s, 0.f, red).x / C;
      float q = 0.f;
      for (int64_t c = threadIdx.x; c < C; c += kThreads) {
        const float d = to_f<T>(x[base + c]) - mu;
        q += d * d;
      }
      rs = 1.f / sqrtf(group_sum2<kThreads>(q, 0.f, red).x / C + eps);
    }
    float a = 0.f, bsum = 0.f;
    for (int64_t c = threadIdx.x; c < C; c += kThreads) {
      const float xhat = (to_f<T>(x[base + c]) - mu) * rs, gv = to_f<T>(g[base + c]);
      const float d = gv * (w != nullptr ? to_f<T>(w[c]) : 1.f);
      a += d;
      bsum += d * xhat;
      if (pw != nullptr) {
        pw[c] += gv * xhat;
        pw[C + c] += gv;
      }
    }
    const float2 t = group_sum2<kThreads>(a, bsum, red);
    const float m1 = t.x / C, m2 = t.y / C;
    if (gx != nullptr) {
      for (int64_t c = threadIdx.x; c < C; c += kThreads) {
        const float xhat = (to_f<T>(x[base + c]) - mu) * rs;
        const float d = to_f<T>(g[base + c]) * (w != nullptr ? to_f<T>(w[c]) : 1.f);
        gx[base + c] = from_f<T>(rs * (d - m1 - xhat * m2));
      }
    }
  }
}

// Second stage of dw/db: column c sums the nparts partials in block order (fp32).
// Traffic: reads nparts * 2C floats, writes 2C elements.
template <class T>
__global__ void ln_reduce_partials(const float* __restrict__ part, int nparts, int64_t C, T* __restrict__ gw,
                                   T* __restrict__ gb) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sw = 0.f, sb = 0.f;
    for (int p = 0; p < nparts; ++p) {
      const float* pp = part + static_cast<int64_t>(p) * 2 * C;
      sw += pp[c];
      sb += pp[C + c];
    }
    if (gw != nullptr) gw[c] = from_f<T>(sw);
    if (gb != nullptr) gb[c] = from_f<T>(sb);
  }
}

// ---- host launchers -------------------------------------------------------------------------

template <class T>
void launch_forward(const T* x, const T* res, T* sum, const T* w, const T* b, T* y, float* mean, float* rstd,
                    int64_t rows, int64_t C, float eps, cudaStream_t st) {
  constexpr int VEC = 16 / sizeof(T);
  const bool vec = C % VEC == 0 && aligned16(x) && aligned16(res) && aligned16(sum) && aligned16(w) &&
                   aligned16(b) && aligned16(y);
  const int c32 = static_cast<int>(C < kBlockMaxC ? C : kBlockMaxC);
  if (vec && C <= kWarpMaxC) {
    ln_forward_cached<T, VEC, 32><<<blocks_for(rows, kThreads / 32), kThreads, 0, st>>>(x, res, sum, w, b, y, mean,
                                                                                        rstd, rows, c32, eps);
  } else if (vec && C <= kBlockMaxC) {
    ln_forward_cached<T, VEC, kThreads><<<blocks_for(rows, 1), kThreads, 0, st>>>(x, res, sum, w, b, y, mean, rstd,
                                                                                  rows, c32, eps);
  } else {
    ln_forward_rows<T><<<blocks_for(rows, 1), kThreads, 0, st>>>(x, res, sum, w, b, y, mean, rstd, rows, C, eps);
  }
}

template <class T>
void launch_backward(const T* g, const T* x, const T* w, const float* mean, const float* rstd, T* gx, T* gw, T* gb,
                     int64_t rows, int64_t C, float eps, const char* op) {
  cudaStream_t st = stream();
  constexpr int VEC = 16 / sizeof(T);
  const bool vec = C % VEC == 0 && aligned16(g) && aligned16(x) && aligned16(w) && aligned16(gx);
  const int c32 = static_cast<int>(C < kBlockMaxC ? C : kBlockMaxC);
  const bool want_params = gw != nullptr || gb != nullptr;
  const int dev = current_device();

  // Pick the kernel and its grid first: the scratch size depends on the grid.
  int kind;  // 0: warp/vec, 2: block/vec, 3: general
  int64_t groups_per_block;
  if (vec && C <= kWarpMaxC) {
    kind = 0;
    groups_per_block = kThreads / 32;
  } else if (vec && C <= kBlockMaxC) {
    kind = 2;
    groups_per_block = 1;
  } else {
    kind = 3;
    groups_per_block = 1;
  }
  const int64_t groups = (rows + groups_per_block - 1) / groups_per_block;
  int64_t nblocks;
  switch (kind) {
    case 0: nblocks = backward_blocks(ln_backward_cached<T, VEC, 32>, groups, op); break;
    case 2: nblocks = backward_blocks(ln_backward_cached<T, VEC, kThreads>, groups, op); break;
    default: nblocks = backward_blocks(ln_backward_rows<T>, groups, op); break;
  }
  // Keep the fp32 partials (2 C floats per block) under ~64 MiB for very wide rows.
  const int64_t sms = multiprocessors(dev);
  const int64_t cap = std::max<int64_t>(sms, (int64_t(1) << 26) / (8 * C));
  if (want_params && nblocks > cap) nblocks = cap;
  // Whole groups per block (so a block's groups stay busy), then drop empty blocks.
  int64_t rpb = (rows + nblocks - 1) / nblocks;
  rpb = (rpb + groups_per_block - 1) / groups_per_block * groups_per_block;
  nblocks = (rows + rpb - 1) / rpb;
  if (nblocks > 65535LL * 32) throw Error(std::string(op) + ": too many rows");
  float* part = want_params ? static_cast<float*>(alloc(dev, static_cast<size_t>(nblocks) * 2 * C * sizeof(float), op))
                            : nullptr;
  const unsigned grid = static_cast<unsigned>(nblocks);
  switch (kind) {
    case 0: ln_backward_cached<T, VEC, 32><<<grid, kThreads, 0, st>>>(g, x, w, mean, rstd, gx, part, rows, rpb, c32, eps); break;
    case 2: ln_backward_cached<T, VEC, kThreads><<<grid, kThreads, 0, st>>>(g, x, w, mean, rstd, gx, part, rows, rpb, c32, eps); break;
    default: ln_backward_rows<T><<<grid, kThreads, 0, st>>>(g, x, w, mean, rstd, gx, part, rows, rpb, C, eps); break;
  }
  try {
    check_launch(op);
    if (want_params) {
      ln_reduce_partials<T><<<blocks_for(C, kThreads), kThreads, 0, st>>>(part, static_cast<int>(nblocks), C, gw, gb);
      check_launch(op);
    }
  } catch (...) {
    if (part != nullptr) free(dev, part);
    throw;
  }
  if (part != nullptr) free(dev, part);  // stream-ordered: safe right after queuing its readers
}

void forward_entry(const void* x, const void* res, void* sum, const void* w, const void* b, void* y, void* mean,
                   void* rstd, DType dt, int64_t rows, int64_t C, double eps, const char* op) {
  check_sizes(rows, C, op);
  if (rows == 0 || C == 0) return;
  dispatch_half_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    launch_forward<T>(static_cast<const T*>(x), static_cast<const T*>(res), static_cast<T*>(sum),
                      static_cast<const T*>(w), static_cast<const T*>(b), static_cast<T*>(y), static_cast<float*>(mean),
                      static_cast<float*>(rstd), rows, C, static_cast<float>(eps), stream());
  });
  check_launch(op);
}

}  // namespace

void layernorm_forward(const void* x, const void* w, const void* b, void* y, void* mean, void* rstd, DType dt,
                       int64_t rows, int64_t C, double eps) {
  forward_entry(x, nullptr, nullptr, w, b, y, mean, rstd, dt, rows, C, eps, "layerNorm");
}

void add_layernorm_forward(const void* x, const void* residual, void* sum, const void* w, const void* b, void* y,
                           void* mean, void* rstd, DType dt, int64_t rows, int64_t C, double eps) {
  const char* op = "addLayerNorm";
  if (residual == nullptr || sum == nullptr) throw Error(std::string(op) + ": residual and sum are required");
  forward_entry(x, residual, sum, w, b, y, mean, rstd, dt, rows, C, eps, op);
}

void layernorm_backward(const void* g, const void* x, const void* w, const void* mean, const void* rstd, void* gx,
                        void* gw, void* gb, DType dt, int64_t rows, int64_t C, double eps) {
  const char* op = "layerNorm backward";
  check_sizes(rows, C, op);
  if (mean == nullptr || rstd == nullptr) mean = rstd = nullptr;  // both or neither
  if (C == 0) return;
  dispatch_half_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    if (rows == 0) {  // gw, gb are sums over no rows
      if (gw != nullptr) memset_zero(current_device(), gw, static_cast<size_t>(C) * sizeof(T));
      if (gb != nullptr) memset_zero(current_device(), gb, static_cast<size_t>(C) * sizeof(T));
      return;
    }
    if (gx == nullptr && gw == nullptr && gb == nullptr) return;
    launch_backward<T>(static_cast<const T*>(g), static_cast<const T*>(x), static_cast<const T*>(w),
                       static_cast<const float*>(mean), static_cast<const float*>(rstd), static_cast<T*>(gx),
                       static_cast<T*>(gw), static_cast<T*>(gb), rows, C, static_cast<float>(eps), op);
  });
}

}  // namespace cuda
}  // namespace ng
