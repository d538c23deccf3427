// RMSNorm on CUDA: forward (optionally fused with the residual add) and backward.
// Layers (DESIGN §5): static __global__ kernels, host launchers on the device's stream,
// checked entries. The thread layout is cuda/layernorm.cu's: a group of G threads owns
// one row at a time, G = 32 (warp per row) for C <= 1024 and G = 256 (block per row) for
// C <= 8192, each thread keeping at most 32 floats of the row in registers, read with
// 128-bit loads when every pointer is 16-byte aligned and C is a multiple of the vector
// width; anything else takes the general block-per-row kernel with scalar loads.
// Memory traffic: forward reads x (and residual) once and writes y (and sum) and 4 bytes
// of rstd per row; backward reads x and g once and writes gx, plus a [C] fp32 partial
// per block for gw. One pass fewer than layernorm: no mean.
#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/rmsnorm.h"
#include "cuda/rowwise.cuh"

namespace ng {
namespace cuda {
namespace {

using namespace rowwise;

// ---- forward ------------------------------------------------------------------------------

template <class T, int VEC, int G>
__global__ void __launch_bounds__(kThreads)
    rms_forward_cached(const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ sum,
                       const T* __restrict__ w, T* __restrict__ y, float* __restrict__ rstd, int64_t rows, int C,
                       float eps) {
  constexpr int W = kThreads / G;
  constexpr int NV = kMaxPerThread / VEC;
  __shared__ float red[32];
  const int gl = threadIdx.x % G, grp = threadIdx.x / G;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * W + grp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * W) {
    const int64_t base = row * C;
    float v[NV][VEC];
    float q = 0.f;
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
        for (int j = 0; j < VEC; ++j) q += v[k][j] * v[k][j];
      }
    }
    const float rs = 1.f / sqrtf(group_sum<G>(q, red) / C + eps);
    if (gl == 0 && rstd != nullptr) rstd[row] = rs;
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int c = (k * G + gl) * VEC;
      if (c < C) {
        float o[VEC];
        if (w != nullptr) {
          float wv[VEC];
          load_vec<T, VEC>(w + c, wv);
#pragma unroll
          for (int j = 0; j < VEC; ++j) o[j] = round_to<T>(v[k][j] * rs) * wv[j];
        } else {
#pragma unroll
          for (int j = 0; j < VEC; ++j) o[j] = v[k][j] * rs;
        }
        store_vec<T, VEC>(y + base + c, o);
      }
    }
  }
}

// General path (any C, any alignment): one block per row, scalar loads, two passes.
template <class T>
__global__ void __launch_bounds__(kThreads)
    rms_forward_rows(const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ sum,
                     const T* __restrict__ w, T* __restrict__ y, float* __restrict__ rstd, int64_t rows, int64_t C,
                     float eps) {
  __shared__ float red[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t base = row * C;
    auto value = [&](int64_t c) {
      float v = to_f<T>(x[base + c]);
      return res != nullptr ? round_to<T>(v + to_f<T>(res[base + c])) : v;
    };
    float q = 0.f;
    for (int64_t c = threadIdx.x; c < C; c += kThreads) {
      const float v = value(c);
      if (res != nullptr) sum[base + c] = from_f<T>(v);
      q += v * v;
    }
    const float rs = 1.f / sqrtf(group_sum<kThreads>(q, red) / C + eps);
    if (threadIdx.x == 0 && rstd != nullptr) rstd[row] = rs;
    for (int64_t c = threadIdx.x; c < C; c += kThreads) {
      const float h = value(c) * rs;
      y[base + c] = from_f<T>(w != nullptr ? round_to<T>(h) * to_f<T>(w[c]) : h);
    }
  }
}

// ---- backward -----------------------------------------------------------------------------

// Row cached in registers; block blockIdx.x owns rows [r0, r1) (a fixed partition), its
// groups take every W-th of them. Each thread sums g * round(xhat) for its columns in
// registers; the block's groups add theirs in group order through shared memory and the
// block writes one fp32 partial [C] to part[blockIdx.x]. No atomics.
template <class T, int VEC, int G>
__global__ void __launch_bounds__(kThreads)
    rms_backward_cached(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ w,
                        const float* __restrict__ rstd, T* __restrict__ gx, float* __restrict__ part, int64_t rows,
                        int64_t rows_per_block, int C, float eps) {
  constexpr int W = kThreads / G;
  constexpr int NV = kMaxPerThread / VEC;
  __shared__ float red[32];
  const int gl = threadIdx.x % G, grp = threadIdx.x / G;
  float dw[NV][VEC];
#pragma unroll
  for (int k = 0; k < NV; ++k)
#pragma unroll
    for (int j = 0; j < VEC; ++j) dw[k][j] = 0.f;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  for (int64_t row = r0 + grp; row < r1; row += W) {
    const int64_t base = row * C;
    float xh[NV][VEC], dy[NV][VEC];
    float q = 0.f;
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int c = (k * G + gl) * VEC;
      if (c < C) {
        load_vec<T, VEC>(x + base + c, xh[k]);
        load_vec<T, VEC>(g + base + c, dy[k]);
#pragma unroll
        for (int j = 0; j < VEC; ++j) q += xh[k][j] * xh[k][j];
      } else {
#pragma unroll
        for (int j = 0; j < VEC; ++j) xh[k][j] = dy[k][j] = 0.f;
      }
    }
    const float rs = rstd != nullptr ? rstd[row] : 1.f / sqrtf(group_sum<G>(q, red) / C + eps);
    float a = 0.f;
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
          const float xhat = xh[k][j] * rs;
          xh[k][j] = xhat;
          dw[k][j] += dy[k][j] * round_to<T>(xhat);
          dy[k][j] *= wv[j];  // now dxhat
          a += dy[k][j] * xhat;
        }
      }
    }
    const float m = group_sum<G>(a, red) / C;
    if (gx != nullptr) {
#pragma unroll
      for (int k = 0; k < NV; ++k) {
        const int c = (k * G + gl) * VEC;
        if (c < C) {
          float o[VEC];
#pragma unroll
          for (int j = 0; j < VEC; ++j) o[j] = rs * (dy[k][j] - xh[k][j] * m);
          store_vec<T, VEC>(gx + base + c, o);
        }
      }
    }
  }
  if (part == nullptr) return;  // block-uniform
  float* pw = part + static_cast<int64_t>(blockIdx.x) * C;
  if constexpr (W == 1) {
#pragma unroll
    for (int k = 0; k < NV; ++k) {
      const int c = (k * G + gl) * VEC;
      if (c < C) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) pw[c + j] = dw[k][j];
      }
    }
  } else {
    __shared__ float acc_w[kWarpMaxC];  // G = 32 only runs with C <= kWarpMaxC
    for (int wi = 0; wi < W; ++wi) {
      if (grp == wi) {
#pragma unroll
        for (int k = 0; k < NV; ++k) {
          const int c = (k * G + gl) * VEC;
          if (c < C) {
#pragma unroll
            for (int j = 0; j < VEC; ++j) acc_w[c + j] = (wi == 0 ? 0.f : acc_w[c + j]) + dw[k][j];
          }
        }
      }
      __syncthreads();
    }
    for (int c = threadIdx.x; c < C; c += kThreads) pw[c] = acc_w[c];
  }
}

// General backward (any C, any alignment): the block walks its rows one at a time; its
// partial [C] lives in global scratch, column c touched only by thread c % kThreads.
template <class T>
__global__ void __launch_bounds__(kThreads)
    rms_backward_rows(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ w,
                      const float* __restrict__ rstd, T* __restrict__ gx, float* __restrict__ part, int64_t rows,
                      int64_t rows_per_block, int64_t C, float eps) {
  __shared__ float red[32];
  float* pw = part != nullptr ? part + static_cast<int64_t>(blockIdx.x) * C : nullptr;
  if (pw != nullptr)
    for (int64_t c = threadIdx.x; c < C; c += kThreads) pw[c] = 0.f;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t base = row * C;
    float rs;
    if (rstd != nullptr) {
      rs = rstd[row];
    } else {
      float q = 0.f;
      for (int64_t c = threadIdx.x; c < C; c += kThreads) {
        const float v = to_f<T>(x[base + c]);
        q += v * v;
      }
      rs = 1.f / sqrtf(group_sum<kThreads>(q, red) / C + eps);
    }
    float a = 0.f;
    for (int64_t c = threadIdx.x; c < C; c += kThreads) {
      const float xhat = to_f<T>(x[base + c]) * rs, gv = to_f<T>(g[base + c]);
      a += gv * (w != nullptr ? to_f<T>(w[c]) : 1.f) * xhat;
      if (pw != nullptr) pw[c] += gv * round_to<T>(xhat);
    }
    const float m = group_sum<kThreads>(a, red) / C;
    if (gx != nullptr) {
      for (int64_t c = threadIdx.x; c < C; c += kThreads) {
        const float xhat = to_f<T>(x[base + c]) * rs;
        const float d = to_f<T>(g[base + c]) * (w != nullptr ? to_f<T>(w[c]) : 1.f);
        gx[base + c] = from_f<T>(rs * (d - xhat * m));
      }
    }
  }
}

// Second stage of gw: column c sums the nparts partials in block order (fp32).
template <class T>
__global__ void rms_reduce_partials(const float* __restrict__ part, int nparts, int64_t C, T* __restrict__ gw) {
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int p = 0; p < nparts; ++p) s += part[static_cast<int64_t>(p) * C + c];
    gw[c] = from_f<T>(s);
  }
}

// ---- host launchers -------------------------------------------------------------------------

template <class T>
void launch_forward(const T* x, const T* res, T* sum, const T* w, T* y, float* rstd, int64_t rows, int64_t C,
                    float eps, cudaStream_t st) {
  constexpr int VEC = 16 / sizeof(T);
  const bool vec =
      C % VEC == 0 && aligned16(x) && aligned16(res) && aligned16(sum) && aligned16(w) && aligned16(y);
  const int c32 = static_cast<int>(C < kBlockMaxC ? C : kBlockMaxC);
  if (vec && C <= kWarpMaxC) {
    rms_forward_cached<T, VEC, 32><<<blocks_for(rows, kThreads / 32), kThreads, 0, st>>>(x, res, sum, w, y, rstd,
                                                                                         rows, c32, eps);
  } else if (vec && C <= kBlockMaxC) {
    rms_forward_cached<T, VEC, kThreads><<<blocks_for(rows, 1), kThreads, 0, st>>>(x, res, sum, w, y, rstd, rows, c32,
                                                                                   eps);
  } else {
    rms_forward_rows<T><<<blocks_for(rows, 1), kThreads, 0, st>>>(x, res, sum, w, y, rstd, rows, C, eps);
  }
}

template <class T>
void launch_backward(const T* g, const T* x, const T* w, const float* rstd, T* gx, T* gw, int64_t rows, int64_t C,
                     float eps, const char* op) {
  cudaStream_t st = stream();
  constexpr int VEC = 16 / sizeof(T);
  const bool vec = C % VEC == 0 && aligned16(g) && aligned16(x) && aligned16(w) && aligned16(gx);
  const int c32 = static_cast<int>(C < kBlockMaxC ? C : kBlockMaxC);
  const int dev = current_device();
  const int kind = vec && C <= kWarpMaxC ? 0 : vec && C <= kBlockMaxC ? 1 : 2;
  const int64_t groups_per_block = kind == 0 ? kThreads / 32 : 1;
  const int64_t groups = (rows + groups_per_block - 1) / groups_per_block;
  int64_t nblocks;
  switch (kind) {
    case 0: nblocks = backward_blocks(rms_backward_cached<T, VEC, 32>, groups, op); break;
    case 1: nblocks = backward_blocks(rms_backward_cached<T, VEC, kThreads>, groups, op); break;
    default: nblocks = backward_blocks(rms_backward_rows<T>, groups, op); break;
  }
  // Keep the fp32 partials (C floats per block) under ~64 MiB for very wide rows.
  const int64_t cap = std::max<int64_t>(multiprocessors(dev), (int64_t(1) << 26) / (4 * C));
  if (gw != nullptr && nblocks > cap) nblocks = cap;
  int64_t rpb = (rows + nblocks - 1) / nblocks;
  rpb = (rpb + groups_per_block - 1) / groups_per_block * groups_per_block;
  nblocks = (rows + rpb - 1) / rpb;
  if (nblocks > 65535LL * 32) throw Error(std::string(op) + ": too many rows");
  float* part = gw != nullptr ? static_cast<float*>(alloc(dev, static_cast<size_t>(nblocks) * C * sizeof(float), op))
                              : nullptr;
  const unsigned grid = static_cast<unsigned>(nblocks);
  switch (kind) {
    case 0: rms_backward_cached<T, VEC, 32><<<grid, kThreads, 0, st>>>(g, x, w, rstd, gx, part, rows, rpb, c32, eps); break;
    case 1: rms_backward_cached<T, VEC, kThreads><<<grid, kThreads, 0, st>>>(g, x, w, rstd, gx, part, rows, rpb, c32, eps); break;
    default: rms_backward_rows<T><<<grid, kThreads, 0, st>>>(g, x, w, rstd, gx, part, rows, rpb, C, eps); break;
  }
  try {
    check_launch(op);
    if (gw != nullptr) {
      rms_reduce_partials<T><<<blocks_for(C, kThreads), kThreads, 0, st>>>(part, static_cast<int>(nblocks), C, gw);
      check_launch(op);
    }
  } catch (...) {
    if (part != nullptr) free(dev, part);
    throw;
  }
  if (part != nullptr) free(dev, part);  // stream-ordered: safe right after queuing its readers
}

}  // namespace

void rmsnorm_forward(const void* x, const void* residual, void* sum, const void* w, void* y, void* rstd, DType dt,
                     int64_t rows, int64_t C, double eps) {
  const char* op = residual != nullptr ? "addRmsNorm" : "rmsNorm";
  check_sizes(rows, C, op);
  if ((residual == nullptr) != (sum == nullptr)) throw Error(std::string(op) + ": residual and sum go together");
  if (rows == 0 || C == 0) return;
  dispatch_half_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    launch_forward<T>(static_cast<const T*>(x), static_cast<const T*>(residual), static_cast<T*>(sum),
                      static_cast<const T*>(w), static_cast<T*>(y), static_cast<float*>(rstd), rows, C,
                      static_cast<float>(eps), stream());
  });
  check_launch(op);
}

void rmsnorm_backward(const void* g, const void* x, const void* w, const void* rstd, void* gx, void* gw, DType dt,
                      int64_t rows, int64_t C, double eps) {
  const char* op = "rmsNorm backward";
  check_sizes(rows, C, op);
  if (C == 0) return;
  dispatch_half_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    if (rows == 0) {  // gw is a sum over no rows
      if (gw != nullptr) memset_zero(current_device(), gw, static_cast<size_t>(C) * sizeof(T));
      return;
    }
    if (gx == nullptr && gw == nullptr) return;
    launch_backward<T>(static_cast<const T*>(g), static_cast<const T*>(x), static_cast<const T*>(w),
                       static_cast<const float*>(rstd), static_cast<T*>(gx), static_cast<T*>(gw), rows, C,
                       static_cast<float>(eps), op);
  });
}

}  // namespace cuda
}  // namespace ng
