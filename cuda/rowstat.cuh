// Row statistics shared by the softmax and cross-entropy kernels (never included from
// native/): the accumulator type per dtype, 16-byte packs, loads and stores through the
// accumulator, the online max/sum-of-exp state and its warp/block all-reduce.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cuda/common.cuh"

namespace ng {
namespace cuda {
namespace rowstat {

template <class T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

template <class T> struct alignas(16) Pack {
  static constexpr int N = 16 / sizeof(T);
  T v[N];
};

// Loads into the accumulator type A (float, or double for float64 data) and stores back.
template <class A, class T> __device__ __forceinline__ A ld(T v) {
  if constexpr (std::is_same<T, double>::value) return v;
  else return static_cast<A>(to_f<T>(v));
}
template <class T, class A> __device__ __forceinline__ T st(A v) {
  if constexpr (std::is_same<T, double>::value) return v;
  else return from_f<T>(static_cast<float>(v));
}

__device__ __forceinline__ float exp_a(float v) { return expf(v); }
__device__ __forceinline__ double exp_a(double v) { return exp(v); }
__device__ __forceinline__ float log_a(float v) { return logf(v); }
__device__ __forceinline__ double log_a(double v) { return log(v); }

template <class A> __device__ __forceinline__ A ninf() { return -static_cast<A>(INFINITY); }

// Online softmax state: m = running max, s = sum of exp(x - m). -inf values are skipped
// (they add exp(-inf) = 0), which keeps s finite for rows that start with -inf.
template <class A> __device__ __forceinline__ void ms_push(A& m, A& s, A v) {
  if (v == ninf<A>()) return;
  if (v > m) {
    s = s * exp_a(m - v) + A(1);
    m = v;
  } else {
    s += exp_a(v - m);
  }
}
template <class A> __device__ __forceinline__ void ms_combine(A& m, A& s, A m2, A s2) {
  const A mm = m > m2 ? m : m2;
  // m == -inf: nothing but -inf (s = 0) or a NaN (s = NaN) was pushed; s * 0 keeps that
  // NaN (a NaN anywhere makes the whole row NaN, as on the CPU) without exp(-inf - -inf).
  const A a = m == ninf<A>() ? s * A(0) : s * exp_a(m - mm);
  const A b = m2 == ninf<A>() ? s2 * A(0) : s2 * exp_a(m2 - mm);
  m = mm;
  s = a + b;
}

// All-reduce over a group of G threads (G = 1, 32 or the whole 256-thread block).
// sh: G/32 scratch slots in shared memory (G > 32 only).
template <int G, class A> __device__ __forceinline__ A group_sum(A v, A* sh) {
  if constexpr (G > 1) {
    constexpr int W = G < 32 ? G : 32;
#pragma unroll
    for (int o = W / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  }
  if constexpr (G > 32) {
    __syncthreads();  // sh may still be read by a previous call
    if (threadIdx.x % 32 == 0) sh[threadIdx.x / 32] = v;
    __syncthreads();
    v = sh[0];
#pragma unroll
    for (int w = 1; w < G / 32; ++w) v += sh[w];
  }
  return v;
}
template <int G, class A> __device__ __forceinline__ void group_ms(A& m, A& s, A* shm, A* shs) {
  if constexpr (G > 1) {
    constexpr int W = G < 32 ? G : 32;
#pragma unroll
    for (int o = W / 2; o > 0; o >>= 1) {
      A m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
      ms_combine(m, s, m2, s2);
    }
  }
  if constexpr (G > 32) {
    __syncthreads();
    if (threadIdx.x % 32 == 0) {
      shm[threadIdx.x / 32] = m;
      shs[threadIdx.x / 32] = s;
    }
    __syncthreads();
    m = shm[0];
    s = shs[0];
#pragma unroll
    for (int w = 1; w < G / 32; ++w) ms_combine(m, s, shm[w], shs[w]);
  }
  // A +inf in the row: the CPU's sum of exp(x - max) holds exp(inf - inf) = NaN, so every
  // output of the row is NaN (as PyTorch); the online sum skipped that NaN, so put it back.
  if (m == -ninf<A>()) s = static_cast<A>(NAN);
}

// Row r's first element and the stride between its C values.
template <int G> __device__ __forceinline__ int64_t row_base(int64_t r, int64_t C, int64_t I) {
  if constexpr (G == 1) return (r / I) * C * I + (r % I);
  else return r * C;
}

}  // namespace rowstat
}  // namespace cuda
}  // namespace ng
