// Row-wise normalization helpers shared by cuda/layernorm.cu and cuda/rmsnorm.cu (and the
// lab bench/kernels/layernorm/): the thread layout's limits, 128-bit vector loads/stores
// converting to fp32, warp and group sums, and the host-side checks both launchers make.
// A "group" of G threads owns one row at a time: G = 32 (one warp per row) for
// C <= kWarpMaxC, G = kThreads (one block per row) for C <= kBlockMaxC; each thread keeps
// at most kMaxPerThread floats of the row in registers.
#pragma once

#include <cstdint>
#include <string>

#include "cuda/common.cuh"

namespace ng {
namespace cuda {
namespace rowwise {

constexpr int kThreads = 256;
constexpr int kMaxPerThread = 32;                     // row floats a thread keeps in registers
constexpr int kWarpMaxC = 32 * kMaxPerThread;         // 1024: warp-per-row limit
constexpr int kBlockMaxC = kThreads * kMaxPerThread;  // 8192: block-per-row (cached) limit

template <class T, int VEC>
__device__ __forceinline__ void load_vec(const T* p, float (&o)[VEC]) {
  if constexpr (VEC == 1) {
    o[0] = to_f<T>(p[0]);
  } else {
    static_assert(sizeof(T) * VEC == 16, "vector loads are 128-bit");
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < VEC; ++j) o[j] = to_f<T>(e[j]);
  }
}

template <class T, int VEC>
__device__ __forceinline__ void store_vec(T* p, const float (&o)[VEC]) {
  if constexpr (VEC == 1) {
    p[0] = from_f<T>(o[0]);
  } else {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int j = 0; j < VEC; ++j) e[j] = from_f<T>(o[j]);
    *reinterpret_cast<uint4*>(p) = raw;
  }
}

// v as a T holds it (identity for float): x + residual as the stored sum holds it, so the
// normalization of sum is exact.
template <class T>
__device__ __forceinline__ float round_to(float v) {
  return to_f<T>(from_f<T>(v));
}

// Sum over the warp, the same value (lane 0's) returned to every lane.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return __shfl_sync(0xffffffffu, v, 0);
}

// Sum over the group of G threads (G = 32: the warp; G = blockDim: the block); every
// thread of the group gets the identical result. red: __shared__ float[32].
template <int G>
__device__ __forceinline__ float group_sum(float a, float* red) {
  a = warp_sum(a);
  if constexpr (G == 32) {
    return a;
  } else {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();  // readers of the previous call are done with red
    if (lane == 0) red[warp] = a;
    __syncthreads();
    return warp_sum(lane < G / 32 ? red[lane] : 0.f);
  }
}

// group_sum of two values at once. red: __shared__ float2[32].
template <int G>
__device__ __forceinline__ float2 group_sum2(float a, float b, float2* red) {
  a = warp_sum(a);
  b = warp_sum(b);
  if constexpr (G == 32) {
    return make_float2(a, b);
  } else {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();  // readers of the previous call are done with red
    if (lane == 0) red[warp] = make_float2(a, b);
    __syncthreads();
    const float2 t = lane < G / 32 ? red[lane] : make_float2(0.f, 0.f);
    return make_float2(warp_sum(t.x), warp_sum(t.y));
  }
}

// ---- host side ----------------------------------------------------------------------------

inline bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Blocks for a backward kernel: as many as fit on the device at once (each block then
// carries one partial), never more than there are row groups.
template <class K>
int64_t backward_blocks(K kernel, int64_t groups, const char* op) {
  int per_sm = 0;
  NG_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0), op);
  int64_t n = static_cast<int64_t>(per_sm < 1 ? 1 : per_sm) * multiprocessors(current_device());
  return n < groups ? n : (groups < 1 ? 1 : groups);
}

inline void check_sizes(int64_t rows, int64_t C, const char* op) {
  if (rows < 0 || C < 0) throw Error(std::string(op) + ": invalid sizes (rows " + std::to_string(rows) + ", C " + std::to_string(C) + ")");
  if (C > (int64_t(1) << 30)) throw Error(std::string(op) + ": normalized size " + std::to_string(C) + " is too large for CUDA (max 2^30)");
}

}  // namespace rowwise
}  // namespace cuda
}  // namespace ng
