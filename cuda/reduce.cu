// Reductions over the middle axis of a contiguous [M, R, I] array, out[m, i] = red_r x[m, r, i].
//
// Every op is expressed as a small state St (sum; product; value + index for max/min/arg;
// count + mean + M2 for the variance, combined with Chan's formula) with push (one
// element) and combine (two partial states). Combination trees are fixed (xor butterflies,
// ordered loops), so results are bit-identical run to run; arg ties go to the lower index
// and NaN wins (first NaN), whatever the tree, so they match the CPU exactly.
//  - R <= 32: one thread per output, a plain loop.
//  - I == 1 (rows): a group of G threads per (row, chunk): G = 32 (a warp, 8 rows per
//    block) for R <= 2048, else G = 256 (a block). Rows too few to fill the GPU are split
//    into S chunks whose partial states go to scratch and a finishing kernel combines them.
//  - I > 1 (columns): a 32 x 8 block covers 32 adjacent i (coalesced loads) and 8 lanes
//    over r; the 8 lanes combine through shared memory in fixed order; with few columns
//    R is likewise split into S chunks plus the finishing kernel.
// Memory traffic: x read once, out written once (+ M*I*S small states when split).
#include "cuda/reduce.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/common.cuh"

namespace ng {
namespace cuda {
namespace {

struct St {
  double a, b;  // sum | product | value | mean;  M2 (variance)
  long long n;  // index (max/min/arg, -1 = empty) | count (variance)
};

template <class T> __device__ __forceinline__ double ld(T v) {
  if constexpr (std::is_same<T, double>::value || std::is_same<T, int32_t>::value) return static_cast<double>(v);
  else return static_cast<double>(to_f<T>(v));
}

__device__ __forceinline__ bool is_arg(ReduceOp op) {
  return op == ReduceOp::Max || op == ReduceOp::Min || op == ReduceOp::Argmax || op == ReduceOp::Argmin;
}

__device__ __forceinline__ St st_init(ReduceOp op) {
  switch (op) {
    case ReduceOp::Prod: return St{1.0, 0.0, 0};
    case ReduceOp::Max:
    case ReduceOp::Min:
    case ReduceOp::Argmax:
    case ReduceOp::Argmin: return St{0.0, 0.0, -1};
    default: return St{0.0, 0.0, 0};
  }
}

// a (value, index) pair ranks first: NaN first (lower index among NaNs), then the larger
// (max) or smaller (min) value, then the lower index.
__device__ __forceinline__ bool arg_first(double va, long long ia, double vb, long long ib, bool mx) {
  if (ib < 0) return true;
  if (ia < 0) return false;
  const bool na = va != va, nb = vb != vb;
  if (na || nb) return na && nb ? ia < ib : na;
  if (va == vb) return ia < ib;
  return mx ? va > vb : va < vb;
}

__device__ __forceinline__ St st_combine(ReduceOp op, const St& x, const St& y) {
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Mean: return St{x.a + y.a, 0.0, 0};
    case ReduceOp::Prod: return St{x.a * y.a, 0.0, 0};
    case ReduceOp::Var: {
      if (x.n == 0) return y;
      if (y.n == 0) return x;
      const double n = static_cast<double>(x.n + y.n), d = y.a - x.a;
      return St{x.a + d * (static_cast<double>(y.n) / n), x.b + y.b + d * d * (static_cast<double>(x.n) * y.n / n),
                x.n + y.n};
    }
    default: {
      const bool mx = op == ReduceOp::Max || op == ReduceOp::Argmax;
      return arg_first(x.a, x.n, y.a, y.n, mx) ? x : y;
    }
  }
}

__device__ __forceinline__ void st_push(ReduceOp op, St& s, double v, long long r) {
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Mean: s.a += v; return;
    case ReduceOp::Prod: s.a *= v; return;
    case ReduceOp::Var: {  // Welford
      s.n += 1;
      const double d = v - s.a;
      s.a += d / static_cast<double>(s.n);
      s.b += d * (v - s.a);
      return;
    }
    default: {
      const bool mx = op == ReduceOp::Max || op == ReduceOp::Argmax;
      if (arg_first(v, r, s.a, s.n, mx)) {
        s.a = v;
        s.n = r;
      }
    }
  }
}

__device__ __forceinline__ St shfl_xor(const St& s, int o) {
  return St{__shfl_xor_sync(0xffffffffu, s.a, o), __shfl_xor_sync(0xffffffffu, s.b, o),
            __shfl_xor_sync(0xffffffffu, s.n, o)};
}

// Writes the final value of a state (same conversions as the CPU's store()).
template <class T>
__device__ __forceinline__ void st_store(ReduceOp op, const St& s, int64_t R, double correction, T* out,
                                         int32_t* idx, int64_t k) {
  double v = s.a;
  if (op == ReduceOp::Mean) v = s.a / static_cast<double>(R);
  if (op == ReduceOp::Var) {
    const double denom = static_cast<double>(R) - correction;
    v = denom > 0 ? s.b / denom : NAN;
  }
  if (op == ReduceOp::Argmax || op == ReduceOp::Argmin) {
    reinterpret_cast<int32_t*>(out)[k] = static_cast<int32_t>(s.n);
    return;
  }
  if constexpr (std::is_same<T, int32_t>::value) {
    // int32 results wrap like int32 arithmetic (CPU: fmod by 2^32, exact in double)
    out[k] = v == v ? static_cast<int32_t>(static_cast<uint32_t>(static_cast<long long>(fmod(v, 4294967296.0))))
                    : 0;
  } else if constexpr (std::is_same<T, double>::value) {
    out[k] = v;
  } else {
    out[k] = from_f<T>(static_cast<float>(v));
  }
  if (idx) idx[k] = is_arg(op) ? static_cast<int32_t>(s.n) : 0;
}

constexpr int kThreads = 256;

// Rows (I == 1): group g = (row, chunk); chunk covers [ch * L, min(R, ch * L + L)).
template <class T, int G>
__global__ void __launch_bounds__(kThreads) reduce_rows_kernel(ReduceOp op, const T* __restrict__ x, int64_t M,
                                                               int64_t R, int S, int64_t L, double correction,
                                                               T* out, int32_t* idx, St* part) {
  __shared__ St sh[kThreads / 32];
  const int64_t g = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / G;
  const int gl = static_cast<int>(threadIdx.x % G);
  if (g >= M * S) return;  // uniform over a group
  const int64_t row = g / S, lo = (g % S) * L, hi = lo + L < R ? lo + L : R;
  const T* xr = x + row * R;
  St s = st_init(op);
  int64_t r = lo + gl;
  for (; r + 3 * G < hi; r += 4 * G) {  // 4 independent loads in flight, pushed in r order
    const double v0 = ld(xr[r]), v1 = ld(xr[r + G]), v2 = ld(xr[r + 2 * G]), v3 = ld(xr[r + 3 * G]);
    st_push(op, s, v0, r);
    st_push(op, s, v1, r + G);
    st_push(op, s, v2, r + 2 * G);
    st_push(op, s, v3, r + 3 * G);
  }
  for (; r < hi; r += G) st_push(op, s, ld(xr[r]), r);
#pragma unroll
  for (int o = (G < 32 ? G : 32) / 2; o > 0; o >>= 1) s = st_combine(op, s, shfl_xor(s, o));
  if constexpr (G > 32) {
    if (gl % 32 == 0) sh[gl / 32] = s;
    __syncthreads();
    if (gl != 0) return;
    s = sh[0];
    for (int w = 1; w < G / 32; ++w) s = st_combine(op, s, sh[w]);
  }
  if (gl != 0) return;
  if (S == 1) st_store<T>(op, s, R, correction, out, idx, row);
  else part[g] = s;
}

// Columns (I > 1): block (32, 8) over (i tile, chunk, m); partial layout [M, S, I].
template <class T>
__global__ void __launch_bounds__(kThreads) reduce_cols_kernel(ReduceOp op, const T* __restrict__ x, int64_t M,
                                                               int64_t R, int64_t I, int S, int64_t L,
                                                               double correction, T* out, int32_t* idx, St* part) {
  __shared__ St sh[8][32];
  const int64_t tiles = (I + 31) / 32, b = blockIdx.x;
  const int64_t it = b % tiles, rest = b / tiles, ch = rest % S, m = rest / S;
  const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
  const int64_t i = it * 32 + tx, lo = ch * L, hi = lo + L < R ? lo + L : R;
  St s = st_init(op);
  if (i < I) {
    const T* base = x + m * R * I + i;
    int64_t r = lo + ty;
    for (; r + 24 < hi; r += 32) {  // 4 independent loads in flight, pushed in r order
      const double v0 = ld(base[r * I]), v1 = ld(base[(r + 8) * I]), v2 = ld(base[(r + 16) * I]),
                   v3 = ld(base[(r + 24) * I]);
      st_push(op, s, v0, r);
      st_push(op, s, v1, r + 8);
      st_push(op, s, v2, r + 16);
      st_push(op, s, v3, r + 24);
    }
    for (; r < hi; r += 8) st_push(op, s, ld(base[r * I]), r);
  }
  sh[ty][tx] = s;
  __syncthreads();
  if (ty != 0 || i >= I) return;
  for (int y = 1; y < 8; ++y) s = st_combine(op, s, sh[y][tx]);
  if (S == 1) st_store<T>(op, s, R, correction, out, idx, m * I + i);
  else part[(m * S + ch) * I + i] = s;
}

// Combines the S partial states of every output in chunk order.
template <class T>
__global__ void reduce_finish_kernel(ReduceOp op, const St* __restrict__ part, int64_t M, int64_t R, int64_t I, int S,
                                     double correction, T* out, int32_t* idx) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < M * I;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = k / I, i = k % I;
    St s = part[m * S * I + i];
    for (int c = 1; c < S; ++c) s = st_combine(op, s, part[(m * S + c) * I + i]);
    st_store<T>(op, s, R, correction, out, idx, k);
  }
}

// Short reductions (R <= 32, any I): one thread per output walks its R elements (adjacent
// threads on adjacent i, so loads are coalesced when I > 1 and cache-line shared when I == 1).
template <class T>
__global__ void reduce_short_kernel(ReduceOp op, const T* __restrict__ x, int64_t M, int64_t R, int64_t I,
                                    double correction, T* out, int32_t* idx) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < M * I;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T* base = x + (k / I) * R * I + k % I;
    St s = st_init(op);
    for (int64_t r = 0; r < R; ++r) st_push(op, s, ld(base[r * I]), r);
    st_store<T>(op, s, R, correction, out, idx, k);
  }
}

template <class T>
__global__ void reduce_fill_kernel(ReduceOp op, int64_t n, T* out, int32_t* idx) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    St s = st_init(op);  // sum 0, prod 1; mean and var divide by R = 0 -> NaN
    st_store<T>(op, s, 0, 0.0, out, idx, k);
  }
}

template <class Fn>
void dispatch_reduce(DType dt, Fn&& fn) {
  switch (dt) {
    case DType::F32: fn(float{}); return;
    case DType::F64: fn(double{}); return;
    case DType::I32: fn(int32_t{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
    default: throw Error(std::string("reduce: unsupported dtype ") + dtype_name(dt));
  }
}

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <class T>
void launch(ReduceOp op, const T* x, int64_t M, int64_t R, int64_t I, T* out, int32_t* idx, double correction) {
  const char* name = "reduce";
  const int dev = current_device();
  const int64_t target = static_cast<int64_t>(multiprocessors(dev)) * 8;  // blocks that fill the GPU
  St* part = nullptr;
  int S = 1;
  if (R <= 32) {
    reduce_short_kernel<T><<<blocks_for(M * I, 256), 256, 0, stream()>>>(op, x, M, R, I, correction, out, idx);
    check_launch(name);
    return;
  }
  if (I == 1) {
    const int G = R <= 2048 ? 32 : kThreads;
    const int64_t blocks1 = cdiv(M * G, kThreads);
    if (blocks1 < target) {
      const int64_t max_s = R / (static_cast<int64_t>(G) * 16);  // at least 16 elements per thread
      S = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({cdiv(target, blocks1), max_s, 1024})));
    }
    const int64_t L = cdiv(R, S);
    if (S > 1) part = static_cast<St*>(alloc(dev, sizeof(St) * M * S, name));
    const unsigned blocks = static_cast<unsigned>(cdiv(M * S * G, kThreads));
    if (G == 32)
      reduce_rows_kernel<T, 32><<<blocks, kThreads, 0, stream()>>>(op, x, M, R, S, L, correction, out, idx, part);
    else
      reduce_rows_kernel<T, kThreads><<<blocks, kThreads, 0, stream()>>>(op, x, M, R, S, L, correction, out, idx,
                                                                         part);
    check_launch(name);
  } else {
    const int64_t tiles = M * cdiv(I, 32);
    if (tiles < target) {
      const int64_t max_s = R / 64;  // at least 8 rows per lane
      S = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({cdiv(target, tiles), max_s, 1024})));
    }
    const int64_t L = cdiv(R, S);
    if (S > 1) part = static_cast<St*>(alloc(dev, sizeof(St) * M * S * I, name));
    const int64_t blocks = tiles * S;
    if (blocks > 0x7fffffffLL) throw Error("reduce: too many outputs for one launch");
    reduce_cols_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream()>>>(op, x, M, R, I, S, L, correction,
                                                                                    out, idx, part);
    check_launch(name);
  }
  if (S > 1) {
    reduce_finish_kernel<T><<<blocks_for(M * I, 256), 256, 0, stream()>>>(op, part, M, R, I, S, correction, out, idx);
    check_launch(name);
    free(dev, part);  // stream-ordered: safe right after queuing the kernels that use it
  }
}

}  // namespace

void reduce(ReduceOp op, const void* x, DType dt, int64_t M, int64_t R, int64_t I, void* out, int32_t* idx,
            double correction) {
  const int code = static_cast<int>(op);
  if (code < 0 || code > 7) throw Error("reduce: unknown op");
  if (M < 0 || R < 0 || I < 0) throw Error("reduce: negative size");
  const bool arg = op == ReduceOp::Max || op == ReduceOp::Min || op == ReduceOp::Argmax || op == ReduceOp::Argmin;
  if (M == 0 || I == 0) return;
  if (R == 0 && arg) throw Error("max/min/argmax: cannot reduce over a dimension of size 0");
  if (R > 0x7fffffffLL && arg) throw Error("reduce: dimension too large for int32 indices");
  dispatch_reduce(dt, [&](auto tag) {
    using T = decltype(tag);
    if (R == 0) {
      reduce_fill_kernel<T><<<blocks_for(M * I, 256), 256, 0, stream()>>>(op, M * I, static_cast<T*>(out), idx);
      check_launch("reduce");
      return;
    }
    launch<T>(op, static_cast<const T*>(x), M, R, I, static_cast<T*>(out), idx, correction);
  });
}

}  // namespace cuda
}  // namespace ng
