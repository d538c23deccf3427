// Softmax / log-softmax over the middle axis of a contiguous [M, C, I] array.
//
// Algorithm: each row (m, i) is owned by a group of G threads. G = 32 (one warp per row,
// 8 rows per 256-thread block) when I == 1 and C <= 1024; G = 256 (one block per row)
// when I == 1 and C > 1024; G = 1 (one thread per row, adjacent threads on adjacent i,
// so loads along C at stride I are coalesced across the warp) when I > 1.
// Forward: one pass keeps an online (max, sum of exp(x - max)) per thread, the group
// combines the pairs with an xor butterfly (every lane gets bit-identical results, so the
// kernel is deterministic), then a second pass writes y. With I == 1 and 16-byte aligned
// rows whose length is a multiple of 16 / sizeof(T), loads and stores are 16-byte vectors;
// then the warp path keeps its row in registers between the passes, and rows longer than
// 1024 that fit in shared memory (C * sizeof(T) <= the opt-in limit: 227 KB on H100, so
// 50304 float32 fits) take a 1024-thread block per row that stages the row in shared
// memory. Backward: one pass for the row dot (softmax: sum g*y; log-softmax: sum g), one
// pass writing gx.
// Memory traffic: forward reads x once and writes y once on the register / shared-memory
// paths (the scalar and too-long-row paths re-read x, from L2 when it still holds it);
// backward reads g and y once (warp path, vectorised) or twice and writes gx once.
#include "cuda/softmax.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/rowstat.cuh"

namespace ng {
namespace cuda {
namespace {
using namespace rowstat;

constexpr int kThreads = 256;


// Forward. VEC: 16-byte vector access (I == 1, aligned rows, C % Pack::N == 0).
template <class T, int G, bool VEC>
__global__ void __launch_bounds__(kThreads) softmax_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t M,
                                                               int64_t C, int64_t I, bool log) {
  using A = typename AccOf<T>::type;
  __shared__ A shm[kThreads / 32], shs[kThreads / 32];
  const int64_t r = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / G;
  const int gl = G == 1 ? 0 : static_cast<int>(threadIdx.x % G);
  const int64_t rows = G == 1 ? M * I : M;
  if (r >= rows) return;  // uniform over a group (G divides the block)
  const int64_t sd = G == 1 ? I : 1;
  const T* xr = x + row_base<G>(r, C, I);
  T* yr = y + row_base<G>(r, C, I);
  A m = ninf<A>(), s = 0;
  if constexpr (VEC && G == 32) {
    // C <= 1024: the row stays in registers between the two passes (P packs per lane),
    // so x is read from memory once.
    constexpr int N = Pack<T>::N, P = 1024 / (32 * N);
    const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
    Pack<T>* yp = reinterpret_cast<Pack<T>*>(yr);
    const int64_t np = C / N;
    Pack<T> buf[P];
#pragma unroll
    for (int k = 0; k < P; ++k)
      if (gl + k * 32 < np) buf[k] = xp[gl + k * 32];
#pragma unroll
    for (int k = 0; k < P; ++k)
      if (gl + k * 32 < np) {
#pragma unroll
        for (int u = 0; u < N; ++u) ms_push(m, s, ld<A>(buf[k].v[u]));
      }
    group_ms<G>(m, s, shm, shs);
    const A ls = log_a(s), inv = A(1) / s;
#pragma unroll
    for (int k = 0; k < P; ++k)
      if (gl + k * 32 < np) {
        Pack<T> q;
#pragma unroll
        for (int u = 0; u < N; ++u) {
          const A v = ld<A>(buf[k].v[u]);
          q.v[u] = st<T>(log ? (v - m) - ls : exp_a(v - m) * inv);
        }
        yp[gl + k * 32] = q;
      }
    return;
  }
  if constexpr (VEC) {
    constexpr int N = Pack<T>::N;
    const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
    for (int64_t c = gl; c < C / N; c += G) {
      Pack<T> p = xp[c];
#pragma unroll
      for (int u = 0; u < N; ++u) ms_push(m, s, ld<A>(p.v[u]));
    }
  } else {
    for (int64_t c = gl; c < C; c += G) ms_push(m, s, ld<A>(xr[c * sd]));
  }
  group_ms<G>(m, s, shm, shs);
  const A ls = log_a(s), inv = A(1) / s;
  // All -inf row: m = -inf, s = 0 -> NaN below (exp(-inf - -inf)), as the CPU and PyTorch.
  auto f = [&](A v) -> A { return log ? (v - m) - ls : exp_a(v - m) * inv; };
  if constexpr (VEC) {
    constexpr int N = Pack<T>::N;
    const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
    Pack<T>* yp = reinterpret_cast<Pack<T>*>(yr);
    for (int64_t c = gl; c < C / N; c += G) {
      Pack<T> p = xp[c], q;
#pragma unroll
      for (int u = 0; u < N; ++u) q.v[u] = st<T>(f(ld<A>(p.v[u])));
      yp[c] = q;
    }
  } else {
    for (int64_t c = gl; c < C; c += G) yr[c * sd] = st<T>(f(ld<A>(xr[c * sd])));
  }
}

// Forward for long rows (I == 1, vector path) whose row fits in shared memory: one block
// of kSmemThreads per row copies the row into shared memory while keeping the online
// (max, sum), then writes y from shared memory, so x is read from memory once (the
// two-pass kernel above re-reads it, and at 8192 x 50304 the second read misses L2).
constexpr int kSmemThreads = 1024;
template <class T>
__global__ void __launch_bounds__(kSmemThreads) softmax_fwd_smem_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                                        int64_t C, bool log) {
  using A = typename AccOf<T>::type;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ A shm[32], shs[32];
  constexpr int N = Pack<T>::N;
  Pack<T>* row = reinterpret_cast<Pack<T>*>(smem_raw);
  const int64_t np = C / N;
  const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(x + static_cast<int64_t>(blockIdx.x) * C);
  Pack<T>* yp = reinterpret_cast<Pack<T>*>(y + static_cast<int64_t>(blockIdx.x) * C);
  A m = ninf<A>(), s = 0;
  int64_t c = threadIdx.x;
  // 4 independent 16-byte loads in flight per thread
  for (; c + 3 * kSmemThreads < np; c += 4 * kSmemThreads) {
    Pack<T> p[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) p[k] = xp[c + k * kSmemThreads];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      row[c + k * kSmemThreads] = p[k];
#pragma unroll
      for (int u = 0; u < N; ++u) ms_push(m, s, ld<A>(p[k].v[u]));
    }
  }
  for (; c < np; c += kSmemThreads) {
    const Pack<T> p = xp[c];
    row[c] = p;
#pragma unroll
    for (int u = 0; u < N; ++u) ms_push(m, s, ld<A>(p.v[u]));
  }
  group_ms<kSmemThreads>(m, s, shm, shs);  // its __syncthreads also publishes row[]
  const A ls = log_a(s), inv = A(1) / s;
  for (int64_t k = threadIdx.x; k < np; k += kSmemThreads) {
    const Pack<T> p = row[k];
    Pack<T> q;
#pragma unroll
    for (int u = 0; u < N; ++u) {
      const A v = ld<A>(p.v[u]);
      q.v[u] = st<T>(log ? (v - m) - ls : exp_a(v - m) * inv);
    }
    yp[k] = q;
  }
}

// Backward: softmax gx = y (g - sum g y); log-softmax gx = g - exp(y) sum g.
template <class T, int G, bool VEC>
__global__ void __launch_bounds__(kThreads) softmax_bwd_kernel(const T* __restrict__ g, const T* __restrict__ y,
                                                               T* __restrict__ gx, int64_t M, int64_t C, int64_t I,
                                                               bool log) {
  using A = typename AccOf<T>::type;
  __shared__ A sh[kThreads / 32];
  const int64_t r = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / G;
  const int gl = G == 1 ? 0 : static_cast<int>(threadIdx.x % G);
  const int64_t rows = G == 1 ? M * I : M;
  if (r >= rows) return;
  const int64_t sd = G == 1 ? I : 1, base = row_base<G>(r, C, I);
  const T *gr = g + base, *yr = y + base;
  T* dr = gx + base;
  A dot = 0;
  if constexpr (VEC && G == 32) {
    // C <= 1024: g and y stay in registers between the two passes (read once).
    constexpr int N = Pack<T>::N, P = 1024 / (32 * N);
    const Pack<T>*gp = reinterpret_cast<const Pack<T>*>(gr), *yp = reinterpret_cast<const Pack<T>*>(yr);
    Pack<T>* dp = reinterpret_cast<Pack<T>*>(dr);
    const int64_t np = C / N;
    Pack<T> gb[P], yb[P];
#pragma unroll
    for (int k = 0; k < P; ++k)
      if (gl + k * 32 < np) {
        gb[k] = gp[gl + k * 32];
        yb[k] = yp[gl + k * 32];
      }
#pragma unroll
    for (int k = 0; k < P; ++k)
      if (gl + k * 32 < np) {
#pragma unroll
        for (int u = 0; u < N; ++u) dot += log ? ld<A>(gb[k].v[u]) : ld<A>(gb[k].v[u]) * ld<A>(yb[k].v[u]);
      }
    dot = group_sum<G>(dot, sh);
#pragma unroll
    for (int k = 0; k < P; ++k)
      if (gl + k * 32 < np) {
        Pack<T> q;
#pragma unroll
        for (int u = 0; u < N; ++u) {
          const A gv = ld<A>(gb[k].v[u]), yv = ld<A>(yb[k].v[u]);
          q.v[u] = st<T>(log ? gv - exp_a(yv) * dot : yv * (gv - dot));
        }
        dp[gl + k * 32] = q;
      }
    return;
  }
  if constexpr (VEC) {
    constexpr int N = Pack<T>::N;
    const Pack<T>*gp = reinterpret_cast<const Pack<T>*>(gr), *yp = reinterpret_cast<const Pack<T>*>(yr);
    for (int64_t c = gl; c < C / N; c += G) {
      Pack<T> a = gp[c], b = yp[c];
#pragma unroll
      for (int u = 0; u < N; ++u) dot += log ? ld<A>(a.v[u]) : ld<A>(a.v[u]) * ld<A>(b.v[u]);
    }
  } else {
    for (int64_t c = gl; c < C; c += G) dot += log ? ld<A>(gr[c * sd]) : ld<A>(gr[c * sd]) * ld<A>(yr[c * sd]);
  }
  dot = group_sum<G>(dot, sh);
  auto f = [&](A gv, A yv) -> A { return log ? gv - exp_a(yv) * dot : yv * (gv - dot); };
  if constexpr (VEC) {
    constexpr int N = Pack<T>::N;
    const Pack<T>*gp = reinterpret_cast<const Pack<T>*>(gr), *yp = reinterpret_cast<const Pack<T>*>(yr);
    Pack<T>* dp = reinterpret_cast<Pack<T>*>(dr);
    for (int64_t c = gl; c < C / N; c += G) {
      Pack<T> a = gp[c], b = yp[c], q;
#pragma unroll
      for (int u = 0; u < N; ++u) q.v[u] = st<T>(f(ld<A>(a.v[u]), ld<A>(b.v[u])));
      dp[c] = q;
    }
  } else {
    for (int64_t c = gl; c < C; c += G) dr[c * sd] = st<T>(f(ld<A>(gr[c * sd]), ld<A>(yr[c * sd])));
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Picks the group size and vector path for a shape and launches K<T, G, VEC>.
template <class T, class Launch>
void pick(int64_t M, int64_t C, int64_t I, bool vec_ok, Launch&& launch) {
  const bool vec = I == 1 && vec_ok && C % Pack<T>::N == 0;
  if (I > 1) return launch(std::integral_constant<int, 1>{}, std::false_type{}, M * I);
  if (C <= 1024) {
    if (vec) return launch(std::integral_constant<int, 32>{}, std::true_type{}, M);
    return launch(std::integral_constant<int, 32>{}, std::false_type{}, M);
  }
  if (vec) return launch(std::integral_constant<int, kThreads>{}, std::true_type{}, M);
  launch(std::integral_constant<int, kThreads>{}, std::false_type{}, M);
}

void check_sizes(int64_t M, int64_t C, int64_t I, const char* op) {
  if (M < 0 || C < 0 || I < 0) throw Error(std::string(op) + ": negative size");
}

}  // namespace

void softmax_forward(const void* x, void* y, DType dt, int64_t M, int64_t C, int64_t I, bool log) {
  const char* op = log ? "logSoftmax" : "softmax";
  check_sizes(M, C, I, op);
  if (M == 0 || C == 0 || I == 0) return;
  dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    const bool vec = aligned16(x) && aligned16(y) && C % Pack<T>::N == 0;
    if (I == 1 && C > 1024 && vec && M <= 0x7fffffffLL) {
      const int dev = current_device();
      int optin = 0;
      NG_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), op);
      const size_t bytes = static_cast<size_t>(C) * sizeof(T);
      // leave room for the kernel's static shared memory (2 x 32 accumulators)
      const size_t static_bytes = 2 * 32 * sizeof(double);
      if (bytes + static_bytes <= static_cast<size_t>(optin)) {
        // static + dynamic shared memory above 48 KiB needs the opt-in (C = 12288 float32
        // is exactly 48 KiB dynamic: with the static accumulators it is over)
        if (bytes + static_bytes > 48 * 1024)
          NG_CUDA_CHECK(cudaFuncSetAttribute(softmax_fwd_smem_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(bytes)),
                        op);
        softmax_fwd_smem_kernel<T><<<static_cast<unsigned>(M), kSmemThreads, bytes, stream()>>>(
            static_cast<const T*>(x), static_cast<T*>(y), C, log);
        check_launch(op);
        return;
      }
    }
    pick<T>(M, C, I, aligned16(x) && aligned16(y), [&](auto g, auto v, int64_t rows) {
      constexpr int G = decltype(g)::value;
      const unsigned blocks = static_cast<unsigned>((rows * G + kThreads - 1) / kThreads);
      softmax_fwd_kernel<T, G, decltype(v)::value><<<blocks, kThreads, 0, stream()>>>(
          static_cast<const T*>(x), static_cast<T*>(y), M, C, I, log);
      check_launch(op);
    });
  });
}

void softmax_backward(const void* g, const void* y, void* gx, DType dt, int64_t M, int64_t C, int64_t I, bool log) {
  const char* op = log ? "logSoftmax backward" : "softmax backward";
  check_sizes(M, C, I, op);
  if (M == 0 || C == 0 || I == 0) return;
  dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    pick<T>(M, C, I, aligned16(g) && aligned16(y) && aligned16(gx), [&](auto gs, auto v, int64_t rows) {
      constexpr int G = decltype(gs)::value;
      const unsigned blocks = static_cast<unsigned>((rows * G + kThreads - 1) / kThreads);
      softmax_bwd_kernel<T, G, decltype(v)::value><<<blocks, kThreads, 0, stream()>>>(
          static_cast<const T*>(g), static_cast<const T*>(y), static_cast<T*>(gx), M, C, I, log);
      check_launch(op);
    });
  });
}

}  // namespace cuda
}  // namespace ng
