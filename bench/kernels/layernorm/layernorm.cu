// LayerNorm kernel lab (llm.c dev/cuda style): forward and backward variants over a
// [rows, C] float32 or bfloat16 array, each checked against a CPU reference at every block
// size, then timed with the L2 flushed, in GB/s of the bytes that must move.
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -I. -Inative bench/kernels/layernorm/layernorm.cu -o /tmp/ln && /tmp/ln [rows C [bf16]]
//
// Forward variants:
//   1  one thread per row, three passes over the row (naive reference kernel)
//   2  one block per row, scalar loads, three passes (the general kernel of cuda/layernorm.cu)
//   3  row cached in registers, 128-bit loads: warp per row for C <= 1024, block per row
//      for C <= 32*B (PROMOTED: cuda/layernorm.cu ln_forward_cached)
// Backward variants (dx, dw, db; dw/db deterministic):
//   1  one thread per row for dx, then one thread per column over all rows for dw/db
//      (reads g and x twice)
//   2  row cached in registers, dw/db accumulated per thread in registers, per-block fp32
//      partials, then a column reduction over blocks (PROMOTED: ln_backward_cached +
//      ln_reduce_partials)
// The kernels of variants 2 and 3 are cuda/layernorm.cu's with the block size as a template
// parameter (the device helpers are shared through cuda/rowwise.cuh); keep them in step
// when the promoted kernels change.
#include "lab_common.cuh"

#include "cuda/rowwise.cuh"

#include <cuda_fp16.h>

#include <cstring>
#include <string>

// The device helpers (vector loads, group sums, the row limits) are the promoted kernels'
// own, from cuda/rowwise.cuh.
using namespace ng::cuda::rowwise;
using ng::cuda::from_f;
using ng::cuda::to_f;

// ---- forward ------------------------------------------------------------------------------

// Row cached in registers. Per row: reads x (and residual) once, writes y (and sum), and
// 8 bytes of statistics; w and b are re-read per row from L1/L2. Two-pass variance over
// the registers (no cancellation from E[x^2] - mean^2).
template <class T, int VEC, int G, int B>
__global__ void __launch_bounds__(B)
    ln_forward_cached(const T* __restrict__ x, const T* __restrict__ res, T* __restrict__ sum,
                      const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                      float* __restrict__ mean, float* __restrict__ rstd, int64_t rows, int C, float eps) {
  constexpr int W = B / G;
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
template <class T, int B>
__global__ void __launch_bounds__(B)
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
    for (int64_t c = threadIdx.x; c < C; c += B) {
      const float v = value(c);
      if (res != nullptr) sum[base + c] = from_f<T>(v);
      s += v;
    }
    const float mu = group_sum2<B>(s, 0.f, red).x / C;
    float q = 0.f;
    for (int64_t c = threadIdx.x; c < C; c += B) {
      const float d = value(c) - mu;
      q += d * d;
    }
    const float rs = 1.f / sqrtf(group_sum2<B>(q, 0.f, red).x / C + eps);
    if (threadIdx.x == 0) {
      if (mean != nullptr) mean[row] = mu;
      if (rstd != nullptr) rstd[row] = rs;
    }
    for (int64_t c = threadIdx.x; c < C; c += B) {
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
template <class T, int VEC, int G, int B>
__global__ void __launch_bounds__(B)
    ln_backward_cached(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ w,
                       const float* __restrict__ mean, const float* __restrict__ rstd, T* __restrict__ gx,
                       float* __restrict__ part, int64_t rows, int64_t rows_per_block, int C, float eps) {
  constexpr int W = B / G;
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
    for (int c = threadIdx.x; c < C; c += B) {
      pw[c] = acc_w[c];
      pb[c] = acc_b[c];
    }
  }
}

// General backward (any C, any alignment): the block walks its rows one at a time,
// re-reading g and x (L1/L2) per pass. Its partial [2][C] lives in global scratch and is
// updated in place: column c is only ever touched by thread c % B of this block,
// so there are no races and the order of additions is fixed.
template <class T, int B>
__global__ void __launch_bounds__(B)
    ln_backward_rows(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ w,
                     const float* __restrict__ mean, const float* __restrict__ rstd, T* __restrict__ gx,
                     float* __restrict__ part, int64_t rows, int64_t rows_per_block, int64_t C, float eps) {
  __shared__ float2 red[32];
  float* pw = part != nullptr ? part + static_cast<int64_t>(blockIdx.x) * 2 * C : nullptr;
  if (pw != nullptr)
    for (int64_t c = threadIdx.x; c < C; c += B) pw[c] = pw[C + c] = 0.f;
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
      for (int64_t c = threadIdx.x; c < C; c += B) s += to_f<T>(x[base + c]);
      mu = group_sum2<B>(s, 0.f, red).x / C;
      float q = 0.f;
      for (int64_t c = threadIdx.x; c < C; c += B) {
        const float d = to_f<T>(x[base + c]) - mu;
        q += d * d;
      }
      rs = 1.f / sqrtf(group_sum2<B>(q, 0.f, red).x / C + eps);
    }
    float a = 0.f, bsum = 0.f;
    for (int64_t c = threadIdx.x; c < C; c += B) {
      const float xhat = (to_f<T>(x[base + c]) - mu) * rs, gv = to_f<T>(g[base + c]);
      const float d = gv * (w != nullptr ? to_f<T>(w[c]) : 1.f);
      a += d;
      bsum += d * xhat;
      if (pw != nullptr) {
        pw[c] += gv * xhat;
        pw[C + c] += gv;
      }
    }
    const float2 t = group_sum2<B>(a, bsum, red);
    const float m1 = t.x / C, m2 = t.y / C;
    if (gx != nullptr) {
      for (int64_t c = threadIdx.x; c < C; c += B) {
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


// ---- variant 1 kernels ----------------------------------------------------------------------

template <class T>
__global__ void ln_forward_naive(const T* x, const T* w, const T* b, T* y, float* mean, float* rstd, int rows, int C,
                                 float eps) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  const T* xr = x + (size_t)row * C;
  float s = 0.f;
  for (int c = 0; c < C; ++c) s += to_f<T>(xr[c]);
  const float mu = s / C;
  float q = 0.f;
  for (int c = 0; c < C; ++c) {
    const float d = to_f<T>(xr[c]) - mu;
    q += d * d;
  }
  const float rs = 1.f / sqrtf(q / C + eps);
  for (int c = 0; c < C; ++c)
    y[(size_t)row * C + c] = from_f<T>((to_f<T>(xr[c]) - mu) * rs * to_f<T>(w[c]) + to_f<T>(b[c]));
  mean[row] = mu;
  rstd[row] = rs;
}

template <class T>
__global__ void ln_backward_naive_dx(const T* g, const T* x, const T* w, const float* mean, const float* rstd, T* gx,
                                     int rows, int C) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  const size_t base = (size_t)row * C;
  const float mu = mean[row], rs = rstd[row];
  float a = 0.f, bs = 0.f;
  for (int c = 0; c < C; ++c) {
    const float xhat = (to_f<T>(x[base + c]) - mu) * rs, d = to_f<T>(g[base + c]) * to_f<T>(w[c]);
    a += d;
    bs += d * xhat;
  }
  a /= C;
  bs /= C;
  for (int c = 0; c < C; ++c) {
    const float xhat = (to_f<T>(x[base + c]) - mu) * rs, d = to_f<T>(g[base + c]) * to_f<T>(w[c]);
    gx[base + c] = from_f<T>(rs * (d - a - xhat * bs));
  }
}

template <class T>
__global__ void ln_backward_naive_dwdb(const T* g, const T* x, const float* mean, const float* rstd, T* gw, T* gb,
                                       int rows, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float sw = 0.f, sb = 0.f;
  for (int r = 0; r < rows; ++r) {
    const float gv = to_f<T>(g[(size_t)r * C + c]);
    sw += gv * (to_f<T>(x[(size_t)r * C + c]) - mean[r]) * rstd[r];
    sb += gv;
  }
  gw[c] = from_f<T>(sw);
  gb[c] = from_f<T>(sb);
}


// ---- CPU reference (double) -------------------------------------------------------------------

static void cpu_forward(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                        std::vector<float>& y, std::vector<float>& mean, std::vector<float>& rstd, int rows, int C,
                        float eps) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = &x[(size_t)r * C];
    double s = 0;
    for (int c = 0; c < C; ++c) s += xr[c];
    const double mu = s / C;
    double q = 0;
    for (int c = 0; c < C; ++c) q += (xr[c] - mu) * (xr[c] - mu);
    const double rs = 1.0 / std::sqrt(q / C + eps);
    for (int c = 0; c < C; ++c) y[(size_t)r * C + c] = float((xr[c] - mu) * rs * w[c] + b[c]);
    mean[r] = float(mu);
    rstd[r] = float(rs);
  }
}

static void cpu_backward(const std::vector<float>& g, const std::vector<float>& x, const std::vector<float>& w,
                         const std::vector<float>& mean, const std::vector<float>& rstd, std::vector<float>& gx,
                         std::vector<float>& gw, std::vector<float>& gb, int rows, int C) {
  std::vector<double> dw(C, 0.0), db(C, 0.0);
  for (int r = 0; r < rows; ++r) {
    const size_t base = (size_t)r * C;
    double a = 0, bs = 0;
    for (int c = 0; c < C; ++c) {
      const double xhat = (x[base + c] - mean[r]) * double(rstd[r]), d = double(g[base + c]) * w[c];
      a += d;
      bs += d * xhat;
      dw[c] += g[base + c] * xhat;
      db[c] += g[base + c];
    }
    a /= C;
    bs /= C;
    for (int c = 0; c < C; ++c) {
      const double xhat = (x[base + c] - mean[r]) * double(rstd[r]), d = double(g[base + c]) * w[c];
      gx[base + c] = float(rstd[r] * (d - a - xhat * bs));
    }
  }
  for (int c = 0; c < C; ++c) {
    gw[c] = float(dw[c]);
    gb[c] = float(db[c]);
  }
}

// ---- launchers by variant and block size ----------------------------------------------------

template <class T>
struct Bufs {
  T *x, *w, *b, *y, *g, *gx, *gw, *gb;
  float *mean, *rstd, *part;
};

template <class T, int B>
bool forward_variant(int v, const Bufs<T>& d, int rows, int C, float eps) {
  constexpr int VEC = 16 / sizeof(T);
  switch (v) {
    case 1:
      ln_forward_naive<T><<<(rows + B - 1) / B, B>>>(d.x, d.w, d.b, d.y, d.mean, d.rstd, rows, C, eps);
      return true;
    case 2:
      ln_forward_rows<T, B><<<rows, B>>>(d.x, (const T*)nullptr, (T*)nullptr, d.w, d.b, d.y, d.mean, d.rstd, rows, C, eps);
      return true;
    case 3:
      if (C % VEC != 0) return false;
      if (C <= kWarpMaxC)
        ln_forward_cached<T, VEC, 32, B><<<(rows + B / 32 - 1) / (B / 32), B>>>(d.x, nullptr, nullptr, d.w, d.b, d.y,
                                                                                d.mean, d.rstd, rows, C, eps);
      else if (C <= B * kMaxPerThread)
        ln_forward_cached<T, VEC, B, B><<<rows, B>>>(d.x, nullptr, nullptr, d.w, d.b, d.y, d.mean, d.rstd, rows, C, eps);
      else
        return false;
      return true;
  }
  return false;
}

template <class T, int B>
bool backward_variant(int v, const Bufs<T>& d, int rows, int C, int nblocks) {
  constexpr int VEC = 16 / sizeof(T);
  switch (v) {
    case 1:
      ln_backward_naive_dx<T><<<(rows + B - 1) / B, B>>>(d.g, d.x, d.w, d.mean, d.rstd, d.gx, rows, C);
      ln_backward_naive_dwdb<T><<<(C + B - 1) / B, B>>>(d.g, d.x, d.mean, d.rstd, d.gw, d.gb, rows, C);
      return true;
    case 2: {
      if (C % VEC != 0) return false;
      const bool warp = C <= kWarpMaxC;
      if (!warp && C > B * kMaxPerThread) return false;
      const int groups_per_block = warp ? B / 32 : 1;
      long long rpb = (rows + nblocks - 1) / nblocks;
      rpb = (rpb + groups_per_block - 1) / groups_per_block * groups_per_block;
      const int nb = (int)((rows + rpb - 1) / rpb);
      if (warp)
        ln_backward_cached<T, VEC, 32, B><<<nb, B>>>(d.g, d.x, d.w, d.mean, d.rstd, d.gx, d.part, rows, rpb, C, 0.f);
      else
        ln_backward_cached<T, VEC, B, B><<<nb, B>>>(d.g, d.x, d.w, d.mean, d.rstd, d.gx, d.part, rows, rpb, C, 0.f);
      ln_reduce_partials<T><<<(C + 255) / 256, 256>>>(d.part, nb, C, d.gw, d.gb);
      return true;
    }
  }
  return false;
}

template <class T>
bool run_fwd(int v, int bs, const Bufs<T>& d, int rows, int C, float eps) {
  switch (bs) {
    case 128: return forward_variant<T, 128>(v, d, rows, C, eps);
    case 256: return forward_variant<T, 256>(v, d, rows, C, eps);
    case 512: return forward_variant<T, 512>(v, d, rows, C, eps);
    default: return forward_variant<T, 1024>(v, d, rows, C, eps);
  }
}

template <class T>
bool run_bwd(int v, int bs, const Bufs<T>& d, int rows, int C, int nblocks) {
  switch (bs) {
    case 128: return backward_variant<T, 128>(v, d, rows, C, nblocks);
    case 256: return backward_variant<T, 256>(v, d, rows, C, nblocks);
    case 512: return backward_variant<T, 512>(v, d, rows, C, nblocks);
    default: return backward_variant<T, 1024>(v, d, rows, C, nblocks);
  }
}

template <class T>
int lab(int rows, int C) {
  const float eps = 1e-5f;
  const size_t N = (size_t)rows * C, e = sizeof(T);
  // inputs rounded to T first, so the CPU reference sees what the GPU sees
  auto round = [](std::vector<float> v) { for (auto& x : v) x = static_cast<float>(static_cast<T>(x)); return v; };
  std::vector<float> x = round(randn(N, 1, 2.f, 0.5f)), w = round(randn(C, 2, 0.5f, 1.f)), b = round(randn(C, 3, 0.5f)),
                     g = round(randn(N, 4));
  std::vector<float> y(N), mean(rows), rstd(rows), gx(N), gw(C), gb(C);
  cpu_forward(x, w, b, y, mean, rstd, rows, C, eps);
  cpu_backward(g, x, w, mean, rstd, gx, gw, gb, rows, C);
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int nblocks = std::min(rows, sms * 2);
  Bufs<T> d{};
  d.x = to_device<T>(x); d.w = to_device<T>(w); d.b = to_device<T>(b); d.g = to_device<T>(g);
  CK(cudaMalloc(&d.y, N * e)); CK(cudaMalloc(&d.gx, N * e)); CK(cudaMalloc(&d.gw, C * e)); CK(cudaMalloc(&d.gb, C * e));
  CK(cudaMalloc(&d.mean, rows * 4)); CK(cudaMalloc(&d.rstd, rows * 4));
  CK(cudaMalloc(&d.part, (size_t)sms * 2 * 2 * C * 4));
  const float tol = e == 4 ? 1e-4f : 2e-2f;
  const double fwd_bytes = 2.0 * N * e + 2.0 * C * e + 8.0 * rows, bwd_bytes = 3.0 * N * e + 3.0 * C * e + 8.0 * rows;
  std::printf("rows %d, C %d, %s\n", rows, C, e == 4 ? "float32" : "bfloat16");
  const int sizes[] = {128, 256, 512, 1024};
  for (int v = 1; v <= 3; ++v) {
    for (int bs : sizes) {
      if (!run_fwd<T>(v, bs, d, rows, C, eps)) continue;
      CK(cudaGetLastError());
      bool ok = check("y", to_host(d.y, N), y, tol, tol) && check("mean", to_host(d.mean, rows), mean, 1e-5f, 1e-4f) &&
                check("rstd", to_host(d.rstd, rows), rstd, 1e-5f, 1e-4f);
      const float ms = time_ms([&] { run_fwd<T>(v, bs, d, rows, C, eps); });
      std::printf("  forward  %d  block %4d  %s  %8.4f ms  %7.1f GB/s\n", v, bs, ok ? "ok  " : "FAIL", ms, fwd_bytes / ms / 1e6);
    }
  }
  // the backward reads the reference statistics
  CK(cudaMemcpy(d.mean, mean.data(), rows * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d.rstd, rstd.data(), rows * 4, cudaMemcpyHostToDevice));
  for (int v = 1; v <= 2; ++v) {
    for (int bs : sizes) {
      if (!run_bwd<T>(v, bs, d, rows, C, nblocks)) continue;
      CK(cudaGetLastError());
      const float ptol = e == 4 ? 1e-3f : 5e-2f;
      bool ok = check("gx", to_host(d.gx, N), gx, tol, tol) && check("gw", to_host(d.gw, C), gw, ptol, ptol) &&
                check("gb", to_host(d.gb, C), gb, ptol, ptol);
      const float ms = time_ms([&] { run_bwd<T>(v, bs, d, rows, C, nblocks); });
      std::printf("  backward %d  block %4d  %s  %8.4f ms  %7.1f GB/s\n", v, bs, ok ? "ok  " : "FAIL", ms, bwd_bytes / ms / 1e6);
    }
  }
  for (void* p : {(void*)d.x, (void*)d.w, (void*)d.b, (void*)d.g, (void*)d.y, (void*)d.gx, (void*)d.gw, (void*)d.gb,
                  (void*)d.mean, (void*)d.rstd, (void*)d.part})
    CK(cudaFree(p));
  return 0;
}

int main(int argc, char** argv) {
  const int rows = argc > 1 ? std::atoi(argv[1]) : 8192, C = argc > 2 ? std::atoi(argv[2]) : 768;
  const bool bf16 = argc > 3 && std::strcmp(argv[3], "bf16") == 0;
  return bf16 ? lab<__nv_bfloat16>(rows, C) : lab<float>(rows, C);
}
