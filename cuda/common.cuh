// Shared by every .cu file (never included from native/): the device's stream, error
// checks that throw ng::Error, dtype conversions and a strided-index helper.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common.h"
#include "cuda/runtime.h"

namespace ng {
namespace cuda {

// The stream every kernel of the current device is launched on.
cudaStream_t stream();
cudaStream_t stream_of(int device);

[[noreturn]] void throw_cuda(cudaError_t e, const char* op, const char* what);

// NG_CUDA_CHECK(cudaMemcpyAsync(...), op): throws "nodegrad: <op>: <what> failed: cudaErrorX: text".
#define NG_CUDA_CHECK(expr, op)                                        \
  do {                                                                 \
    cudaError_t ng_e_ = (expr);                                        \
    if (ng_e_ != cudaSuccess) ::ng::cuda::throw_cuda(ng_e_, op, #expr); \
  } while (0)

// Call right after a <<<...>>> launch: reports a bad configuration (and any earlier
// asynchronous error) as an Error naming the op.
inline void check_launch(const char* op) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw_cuda(e, op, "kernel launch");
}

inline unsigned blocks_for(int64_t n, int threads, int64_t cap = 65535LL * 32) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b < cap ? b : cap);
}

// ---- element conversions (compute in float, store in the tensor's dtype) ----------------
template <class T> __device__ __forceinline__ float to_f(T v) { return static_cast<float>(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <class T> __device__ __forceinline__ T from_f(float v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }

// Calls fn(T{}) with T the C++ type of a floating dtype (float, double, __nv_bfloat16,
// __half); throws for other dtypes. Use: dispatch_float(dt, op, [&](auto tag) {
//   using T = decltype(tag); kernel<T><<<...>>>(...); });
template <class Fn>
void dispatch_float(DType dt, const char* op, Fn&& fn) {
  switch (dt) {
    case DType::F32: fn(float{}); return;
    case DType::F64: fn(double{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
    default: throw Error(std::string(op) + ": expected a floating-point dtype on CUDA (got " + dtype_name(dt) + ")");
  }
}
// Like dispatch_float without float64 (kernels that keep fp32 accumulators and shared tiles).
template <class Fn>
void dispatch_half_float(DType dt, const char* op, Fn&& fn) {
  switch (dt) {
    case DType::F32: fn(float{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
    default:
      throw Error(std::string(op) + ": expected float32, bfloat16 or float16 on CUDA (got " + dtype_name(dt) + ")");
  }
}

// Records an out-of-range index in the device's error slot (first failure wins); the
// host reports it at the next synchronize/download. The kernel must still not touch
// memory out of range (skip or clamp the element).
__device__ __forceinline__ void report_device_error(DeviceErrorSlot* slot, int site, long long value,
                                                    long long limit) {
  if (atomicCAS(&slot->code, 0, 1) == 0) {
    slot->site = site;
    slot->value = value;
    slot->limit = limit;
  }
}

// Strided addressing of up to kMaxDims dims, passed to kernels by value.
struct StridedIndex {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t strides[kMaxDims];
  // element offset of the i-th element in row-major order of shape
  __device__ __forceinline__ int64_t offset(int64_t i) const {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t s = shape[d];
      int64_t q = i / s;
      off += (i - q * s) * strides[d];
      i = q;
    }
    return off;
  }
};
inline StridedIndex strided_index(const View& v) {
  StridedIndex s{};
  s.ndim = v.ndim;
  for (int d = 0; d < v.ndim; ++d) {
    s.shape[d] = v.shape[d];
    s.strides[d] = v.strides[d];
  }
  return s;
}
inline bool is_contiguous(const View& v) {
  int64_t expect = 1;
  for (int d = v.ndim - 1; d >= 0; --d) {
    if (v.shape[d] != 1 && v.strides[d] != expect) return false;
    expect *= v.shape[d];
  }
  return true;
}

}  // namespace cuda
}  // namespace ng
