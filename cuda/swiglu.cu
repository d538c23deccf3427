// SwiGLU on CUDA: grid-stride elementwise kernels, VEC elements per thread step (128-bit
// loads and stores when every pointer is 16-byte aligned, scalar otherwise). silu(g) =
// g / (1 + exp(-g)) with expf (PyTorch's formula). Memory traffic: forward reads gate,
// up and writes y (3 n elements); backward reads dy, gate, up and writes dgate, dup.
#include "cuda/common.cuh"
#include "cuda/swiglu.h"

namespace ng {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <class T, int VEC>
struct alignas(16) Pack {
  T v[VEC];
};

template <class T, int VEC>
__device__ __forceinline__ Pack<T, VEC> ld(const T* p) {
  Pack<T, VEC> r;
  if constexpr (VEC * sizeof(T) == 16) {
    *reinterpret_cast<uint4*>(&r) = *reinterpret_cast<const uint4*>(p);
  } else {
    for (int j = 0; j < VEC; ++j) r.v[j] = p[j];
  }
  return r;
}
template <class T, int VEC>
__device__ __forceinline__ void st(T* p, const Pack<T, VEC>& r) {
  if constexpr (VEC * sizeof(T) == 16) {
    *reinterpret_cast<uint4*>(p) = *reinterpret_cast<const uint4*>(&r);
  } else {
    for (int j = 0; j < VEC; ++j) p[j] = r.v[j];
  }
}

template <class T>
__device__ __forceinline__ float silu_rounded(float g) {
  return to_f<T>(from_f<T>(g / (1.f + expf(-g))));  // identity rounding for float
}

// Elements [0, nv * VEC) by vectors, the tail [nv * VEC, n) by the first threads.
template <class T, int VEC>
__global__ void __launch_bounds__(kThreads) swiglu_fwd(const T* __restrict__ g, const T* __restrict__ u,
                                                       T* __restrict__ y, int64_t n) {
  const int64_t nv = n / VEC, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t k = tid; k < nv; k += stride) {
    const Pack<T, VEC> a = ld<T, VEC>(g + k * VEC), b = ld<T, VEC>(u + k * VEC);
    Pack<T, VEC> o;
#pragma unroll
    for (int j = 0; j < VEC; ++j) o.v[j] = from_f<T>(silu_rounded<T>(to_f<T>(a.v[j])) * to_f<T>(b.v[j]));
    st<T, VEC>(y + k * VEC, o);
  }
  for (int64_t i = nv * VEC + tid; i < n; i += stride) y[i] = from_f<T>(silu_rounded<T>(to_f<T>(g[i])) * to_f<T>(u[i]));
}

template <class T>
__device__ __forceinline__ void swiglu_grad(float dy, float g, float u, float* dg, float* du) {
  const float s = 1.f / (1.f + expf(-g));
  *dg = dy * u * (s * (1.f + g * (1.f - s)));
  *du = dy * (g * s);
}

template <class T, int VEC>
__global__ void __launch_bounds__(kThreads) swiglu_bwd(const T* __restrict__ dy, const T* __restrict__ g,
                                                       const T* __restrict__ u, T* __restrict__ dg,
                                                       T* __restrict__ du, int64_t n) {
  const int64_t nv = n / VEC, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t k = tid; k < nv; k += stride) {
    const Pack<T, VEC> d = ld<T, VEC>(dy + k * VEC), a = ld<T, VEC>(g + k * VEC), b = ld<T, VEC>(u + k * VEC);
    Pack<T, VEC> og, ou;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      float x, z;
      swiglu_grad<T>(to_f<T>(d.v[j]), to_f<T>(a.v[j]), to_f<T>(b.v[j]), &x, &z);
      og.v[j] = from_f<T>(x);
      ou.v[j] = from_f<T>(z);
    }
    if (dg != nullptr) st<T, VEC>(dg + k * VEC, og);
    if (du != nullptr) st<T, VEC>(du + k * VEC, ou);
  }
  for (int64_t i = nv * VEC + tid; i < n; i += stride) {
    float x, z;
    swiglu_grad<T>(to_f<T>(dy[i]), to_f<T>(g[i]), to_f<T>(u[i]), &x, &z);
    if (dg != nullptr) dg[i] = from_f<T>(x);
    if (du != nullptr) du[i] = from_f<T>(z);
  }
}

inline bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

unsigned grid_for(int64_t work) {
  const int64_t cap = static_cast<int64_t>(multiprocessors(current_device())) * 16;
  return blocks_for(work, kThreads, cap < 1 ? 1 : cap);
}

}  // namespace

void swiglu_forward(const void* gate, const void* up, void* y, DType dt, int64_t n) {
  const char* op = "swiglu";
  if (n < 0) throw Error(std::string(op) + ": negative size");
  if (n == 0) return;
  dispatch_half_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    constexpr int VEC = 16 / sizeof(T);
    const T *g = static_cast<const T*>(gate), *u = static_cast<const T*>(up);
    T* o = static_cast<T*>(y);
    if (aligned16(g) && aligned16(u) && aligned16(o))
      swiglu_fwd<T, VEC><<<grid_for(n / VEC + 1), kThreads, 0, stream()>>>(g, u, o, n);
    else
      swiglu_fwd<T, 1><<<grid_for(n), kThreads, 0, stream()>>>(g, u, o, n);
  });
  check_launch(op);
}

void swiglu_backward(const void* dy, const void* gate, const void* up, void* dgate, void* dup, DType dt, int64_t n) {
  const char* op = "swiglu backward";
  if (n < 0) throw Error(std::string(op) + ": negative size");
  if (n == 0 || (dgate == nullptr && dup == nullptr)) return;
  dispatch_half_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    constexpr int VEC = 16 / sizeof(T);
    const T *d = static_cast<const T*>(dy), *g = static_cast<const T*>(gate), *u = static_cast<const T*>(up);
    T *dg = static_cast<T*>(dgate), *du = static_cast<T*>(dup);
    if (aligned16(d) && aligned16(g) && aligned16(u) && aligned16(dg) && aligned16(du))
      swiglu_bwd<T, VEC><<<grid_for(n / VEC + 1), kThreads, 0, stream()>>>(d, g, u, dg, du, n);
    else
      swiglu_bwd<T, 1><<<grid_for(n), kThreads, 0, stream()>>>(d, g, u, dg, du, n);
  });
  check_launch(op);
}

}  // namespace cuda
}  // namespace ng
