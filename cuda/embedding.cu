// Embedding lookup and its deterministic backward.
//
// Forward: one block row per id (grid-stride over ids), threads copy the row in the
// widest unit (16, 8, 4, 2 or 1 bytes) that divides the row size and both pointers'
// alignment. Traffic: n rows read from the table, n rows written.
// Backward: cub::DeviceRadixSort::SortPairs sorts (id, position k) pairs; the sort is
// stable, so equal ids keep increasing k. One block per sorted position that starts a
// run of equal ids (the others exit at once) adds its run's g rows into gw[id] column by
// column, in k order, accumulating in fp32 (fp64 for float64): no atomics, bit-identical
// results run to run, and rows are never shared between blocks. Traffic: ids sorted
// (a few passes over 8n bytes), g read once, gw read and written once per distinct id.
#include "cuda/embedding.h"

#include <cub/device/device_radix_sort.cuh>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/common.cuh"

namespace ng {
namespace cuda {
namespace {

template <class U>
__global__ void embedding_fwd_kernel(const int32_t* __restrict__ ids, int64_t n, const U* __restrict__ w, int64_t V,
                                     int64_t units, U* __restrict__ out, DeviceErrorSlot* slot, int site) {
  for (int64_t k = blockIdx.x; k < n; k += gridDim.x) {
    const int64_t id = ids[k];
    U* o = out + k * units;
    if (id < 0 || id >= V) {
      if (threadIdx.x == 0) report_device_error(slot, site, id, V);
      for (int64_t c = threadIdx.x; c < units; c += blockDim.x) o[c] = U{};
      continue;
    }
    const U* src = w + id * units;
    for (int64_t c = threadIdx.x; c < units; c += blockDim.x) o[c] = src[c];
  }
}

template <class T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <class A, class T> __device__ __forceinline__ A ld(T v) {
  if constexpr (std::is_same<T, double>::value) return v;
  else return static_cast<A>(to_f<T>(v));
}
template <class T, class A> __device__ __forceinline__ T st(A v) {
  if constexpr (std::is_same<T, double>::value) return v;
  else return from_f<T>(static_cast<float>(v));
}

template <class T>
__global__ void embedding_bwd_kernel(const int32_t* __restrict__ keys, const int32_t* __restrict__ pos, int64_t n,
                                     const T* __restrict__ g, int64_t V, int64_t C, T* __restrict__ gw,
                                     int64_t padding_idx, DeviceErrorSlot* slot, int site) {
  using A = typename AccOf<T>::type;
  for (int64_t p = blockIdx.x; p < n; p += gridDim.x) {
    const int32_t id = keys[p];
    if (p > 0 && keys[p - 1] == id) continue;  // not the start of a run
    if (padding_idx >= 0 && id == padding_idx) continue;  // padding_idx < 0: none (a -1 id is an error)
    if (id < 0 || id >= V) {
      if (threadIdx.x == 0) report_device_error(slot, site, id, V);
      continue;
    }
    T* dst = gw + static_cast<int64_t>(id) * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      A acc = ld<A>(dst[c]);
      for (int64_t q = p; q < n && keys[q] == id; ++q) acc += ld<A>(g[static_cast<int64_t>(pos[q]) * C + c]);
      dst[c] = st<T>(acc);
    }
  }
}

__global__ void iota_kernel(int32_t* out, int64_t n) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[k] = static_cast<int32_t>(k);
}

int row_unit(uintptr_t a, uintptr_t b, size_t row) {
  for (int u = 16; u > 1; u /= 2)
    if (row % u == 0 && a % u == 0 && b % u == 0) return u;
  return 1;
}

}  // namespace

void embedding_forward(const int32_t* ids, int64_t n, const void* weight, DType dt, int64_t V, int64_t C, void* out) {
  const char* op = "embedding";
  if (n < 0 || V < 0 || C < 0) throw Error("embedding: negative size");
  const size_t row = static_cast<size_t>(C) * dtype_size(dt);
  if (n == 0 || row == 0) return;
  const int dev = current_device();
  DeviceErrorSlot* slot = error_slot(dev);
  const int site = error_site("embedding");
  const int unit = row_unit(reinterpret_cast<uintptr_t>(weight), reinterpret_cast<uintptr_t>(out), row);
  const int64_t units = static_cast<int64_t>(row / unit);
  const int threads = units >= 256 ? 256 : units >= 128 ? 128 : units >= 64 ? 64 : 32;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(n, 1 << 20));
  auto go = [&](auto tag) {
    using U = decltype(tag);
    embedding_fwd_kernel<U><<<blocks, threads, 0, stream()>>>(ids, n, static_cast<const U*>(weight), V, units,
                                                               static_cast<U*>(out), slot, site);
  };
  switch (unit) {
    case 16: go(uint4{}); break;
    case 8: go(uint2{}); break;
    case 4: go(uint32_t{}); break;
    case 2: go(uint16_t{}); break;
    default: go(uint8_t{}); break;
  }
  check_launch(op);
}

void embedding_backward(const int32_t* ids, int64_t n, const void* g, DType dt, int64_t V, int64_t C, void* gw,
                        int64_t padding_idx) {
  const char* op = "embedding backward";
  if (n < 0 || V < 0 || C < 0) throw Error("embedding backward: negative size");
  if (n > 0x7fffffffLL) throw Error("embedding backward: too many ids for one call (got " + std::to_string(n) + ")");
  if (n == 0 || C == 0) return;
  const int dev = current_device();
  DeviceErrorSlot* slot = error_slot(dev);
  const int site = error_site("embedding backward");
  dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    const int num = static_cast<int>(n);
    // scratch: sorted keys, positions in and out, then cub's temporary storage
    size_t temp = 0;
    NG_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp, static_cast<const int32_t*>(nullptr),
                                                  static_cast<int32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                  static_cast<int32_t*>(nullptr), num, 0, 32, stream()),
                  op);
    const size_t ib = (sizeof(int32_t) * n + 255) / 256 * 256;
    char* scratch = static_cast<char*>(alloc(dev, 3 * ib + temp, op));
    int32_t* keys = reinterpret_cast<int32_t*>(scratch);
    int32_t* pos_in = reinterpret_cast<int32_t*>(scratch + ib);
    int32_t* pos = reinterpret_cast<int32_t*>(scratch + 2 * ib);
    iota_kernel<<<blocks_for(n, 256), 256, 0, stream()>>>(pos_in, n);
    check_launch(op);
    NG_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch + 3 * ib, temp, ids, keys, pos_in, pos, num, 0, 32, stream()),
                  op);
    const int threads = C >= 256 ? 256 : C >= 128 ? 128 : C >= 64 ? 64 : 32;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(n, 1 << 20));
    embedding_bwd_kernel<T><<<blocks, threads, 0, stream()>>>(keys, pos, n, static_cast<const T*>(g), V, C,
                                                              static_cast<T*>(gw), padding_idx, slot, site);
    check_launch(op);
    free(dev, scratch);
  });
}

}  // namespace cuda
}  // namespace ng
