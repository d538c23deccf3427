// Indexing kernels over strided views.
//  gather / index_select: one thread per output element; the element's coordinates give
//    the offsets in every view at once (Geo). Traffic: index + out once, x where indexed.
//  scatter_add / index_add: one thread per output line (all coordinates but dim); it walks
//    the index along dim in order and adds into its own line, so no two threads write the
//    same element and the sum order is fixed (deterministic, no atomics). Traffic: index +
//    src once, out read-modify-written where indexed. Parallelism is the number of lines.
//  topk: one block per line (1024 threads, fewer for short lines), a 2048-entry (value,
//    index) buffer in shared memory kept bitonic-sorted: the line is streamed in chunks of
//    2048 - K (K = k rounded up to a power of two) into the buffer's tail and the buffer
//    re-sorted, so the head always holds the best K seen so far. Ties go to the lower
//    index, NaN ranks above every number (as the CPU). Traffic: x read once, k values and
//    indices written per line.
#include "cuda/index.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/common.cuh"
#include "index_checks.h"

namespace ng {
namespace cuda {
namespace {

// Offsets of element e (row-major over shape) in up to three strided views.
struct Geo {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t s[3][kMaxDims];
  __device__ __forceinline__ void offsets(int64_t e, int64_t o[3]) const {
    o[0] = o[1] = o[2] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t n = shape[d], q = e / n, c = e - q * n;
      o[0] += c * s[0][d];
      o[1] += c * s[1][d];
      o[2] += c * s[2][d];
      e = q;
    }
  }
};

Geo geo(const View& shape_of, int dim, int64_t dim_extent, const View* a, const View* b, const View* c,
        int zero_dim_of) {
  Geo g{};
  g.ndim = shape_of.ndim;
  const View* vs[3] = {a, b, c};
  for (int d = 0; d < g.ndim; ++d) {
    g.shape[d] = d == dim ? dim_extent : shape_of.shape[d];
    for (int k = 0; k < 3; ++k) g.s[k][d] = vs[k] && !(d == dim && (zero_dim_of >> k & 1)) ? vs[k]->strides[d] : 0;
  }
  return g;
}

template <class T> struct KeyOf { using type = float; };
template <> struct KeyOf<double> { using type = double; };
template <> struct KeyOf<int32_t> { using type = double; };
template <class A, class T> __device__ __forceinline__ A ld(T v) {
  if constexpr (std::is_same<T, double>::value || std::is_same<T, int32_t>::value) return static_cast<A>(v);
  else return static_cast<A>(to_f<T>(v));
}
template <class T, class A> __device__ __forceinline__ T st(A v) {
  if constexpr (std::is_same<T, double>::value || std::is_same<T, int32_t>::value) return static_cast<T>(v);
  else return from_f<T>(static_cast<float>(v));
}
// out += v in T's arithmetic (int32 wraps; floats add in fp32/fp64 and round once).
template <class T> __device__ __forceinline__ void add_to(T* p, T v) {
  if constexpr (std::is_same<T, int32_t>::value)
    *p = static_cast<int32_t>(static_cast<uint32_t>(*p) + static_cast<uint32_t>(v));
  else if constexpr (std::is_same<T, double>::value || std::is_same<T, float>::value)
    *p += v;
  else
    *p = from_f<T>(to_f<T>(*p) + to_f<T>(v));
}

struct Err {
  DeviceErrorSlot* slot;
  int site;
};

// g: [0] index, [1] out, [2] x (dim stride zeroed); xs_dim: x's stride along dim.
template <class T>
__global__ void gather_kernel(Geo g, int64_t total, const int32_t* __restrict__ index, const T* __restrict__ x,
                              int64_t xs_dim, int64_t size, T* __restrict__ out, Err err) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t o[3];
    g.offsets(e, o);
    const int64_t j = index[o[0]];
    if (j < 0 || j >= size) {
      report_device_error(err.slot, err.site, j, size);
      out[o[1]] = T{};
    } else {
      out[o[1]] = x[o[2] + j * xs_dim];
    }
  }
}

// g over index's shape with shape[dim] = 1: [0] index, [1] src, [2] out (dim stride zeroed).
template <class T>
__global__ void scatter_add_kernel(Geo g, int64_t lines, int64_t D, const int32_t* __restrict__ index, int64_t is_dim,
                                   const T* __restrict__ src, int64_t ss_dim, T* out, int64_t os_dim, int64_t size,
                                   Err err) {
  for (int64_t l = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; l < lines;
       l += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t o[3];
    g.offsets(l, o);
    for (int64_t j = 0; j < D; ++j) {
      const int64_t t = index[o[0] + j * is_dim];
      if (t < 0 || t >= size) {
        report_device_error(err.slot, err.site, t, size);
        continue;
      }
      add_to(out + o[2] + t * os_dim, src[o[1] + j * ss_dim]);
    }
  }
}

// g over out's shape: [0] out, [1] x (dim stride zeroed); the dim coordinate picks index[k].
template <class T>
__global__ void index_select_kernel(Geo g, int64_t total, int dim, const int32_t* __restrict__ index, int64_t istr,
                                    const T* __restrict__ x, int64_t xs_dim, int64_t size, T* __restrict__ out,
                                    Err err) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t o[3];
    g.offsets(e, o);
    int64_t k = e;  // coordinate along dim
    for (int d = g.ndim - 1; d > dim; --d) k /= g.shape[d];
    k %= g.shape[dim];
    const int64_t j = index[k * istr];
    if (j < 0 || j >= size) {
      report_device_error(err.slot, err.site, j, size);
      out[o[0]] = T{};
    } else {
      out[o[0]] = x[o[1] + j * xs_dim];
    }
  }
}

// g over out's shape with shape[dim] = 1: [0] out, [1] src.
template <class T>
__global__ void index_add_kernel(Geo g, int64_t lines, int64_t K, const int32_t* __restrict__ index, int64_t istr,
                                 const T* __restrict__ src, int64_t ss_dim, T* out, int64_t os_dim, int64_t size,
                                 Err err) {
  for (int64_t l = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; l < lines;
       l += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t o[3];
    g.offsets(l, o);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t t = index[k * istr];
      if (t < 0 || t >= size) {
        report_device_error(err.slot, err.site, t, size);
        continue;
      }
      add_to(out + o[0] + t * os_dim, src[o[1] + k * ss_dim]);
    }
  }
}

constexpr int kTopkThreads = 1024, kTopkBuf = 2048;

template <class A> __device__ __forceinline__ bool above(A a, A b) {
  if (a != a) return b == b;
  if (b != b) return false;
  return a > b;
}
// Entry (va, ia) goes before (vb, ib); index -1 marks an empty slot (always last).
template <class A> __device__ __forceinline__ bool before(A va, int ia, A vb, int ib, bool largest) {
  if (ia < 0) return false;
  if (ib < 0) return true;
  if (largest) return above(va, vb) || (!above(vb, va) && ia < ib);
  return above(vb, va) || (!above(va, vb) && ia < ib);
}

template <class A> __device__ void bitonic_sort(A* v, int* ix, int P, bool largest) {
  for (int size = 2; size <= P; size <<= 1) {
    for (int stride = size / 2; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < P / 2; t += blockDim.x) {
        const int i = 2 * t - (t & (stride - 1)), j = i + stride;
        const bool up = (i & size) == 0;
        const bool swap = up ? before(v[j], ix[j], v[i], ix[i], largest) : before(v[i], ix[i], v[j], ix[j], largest);
        if (swap) {
          const A tv = v[i];
          v[i] = v[j];
          v[j] = tv;
          const int ti = ix[i];
          ix[i] = ix[j];
          ix[j] = ti;
        }
      }
      __syncthreads();
    }
  }
}

// g over x's shape with shape[dim] = 1: [0] x, [1] values, [2] indices.
template <class T>
__global__ void __launch_bounds__(kTopkThreads) topk_kernel(Geo g, const T* __restrict__ x, int64_t xs_dim, int n,
                                                            int k, int K, bool largest, T* values, int64_t vs_dim,
                                                            int32_t* indices, int64_t is_dim) {
  using A = typename KeyOf<T>::type;
  __shared__ A v[kTopkBuf];
  __shared__ int ix[kTopkBuf];
  int64_t o[3];
  g.offsets(blockIdx.x, o);
  const T* line = x + o[0];
  if (n <= kTopkBuf) {
    int P = 1;
    while (P < n) P <<= 1;
    for (int p = threadIdx.x; p < P; p += blockDim.x) {
      v[p] = p < n ? ld<A>(line[p * xs_dim]) : A(0);
      ix[p] = p < n ? p : -1;
    }
    __syncthreads();
    bitonic_sort(v, ix, P, largest);
  } else {
    for (int p = threadIdx.x; p < kTopkBuf; p += blockDim.x) {
      v[p] = ld<A>(line[p * xs_dim]);
      ix[p] = p;
    }
    __syncthreads();
    bitonic_sort(v, ix, kTopkBuf, largest);
    for (int start = kTopkBuf; start < n; start += kTopkBuf - K) {
      for (int p = K + threadIdx.x; p < kTopkBuf; p += blockDim.x) {
        const int j = start + p - K;
        v[p] = j < n ? ld<A>(line[static_cast<int64_t>(j) * xs_dim]) : A(0);
        ix[p] = j < n ? j : -1;
      }
      __syncthreads();
      bitonic_sort(v, ix, kTopkBuf, largest);
    }
  }
  for (int t = threadIdx.x; t < k; t += blockDim.x) {
    values[o[1] + t * vs_dim] = st<T>(v[t]);
    indices[o[2] + t * is_dim] = ix[t];
  }
}

// ---- host side ----

void check_values(const View& v, const char* op, const char* what) {
  if (v.dtype != DType::F32 && v.dtype != DType::F64 && v.dtype != DType::I32 && v.dtype != DType::BF16 &&
      v.dtype != DType::F16)
    throw Error(std::string(op) + ": " + what + " has dtype " + dtype_name(v.dtype) +
                "; supported on CUDA: float32, float64, int32, bfloat16, float16");
}

template <class Fn>
void dispatch_values(DType dt, Fn&& fn) {
  switch (dt) {
    case DType::F32: fn(float{}); return;
    case DType::F64: fn(double{}); return;
    case DType::I32: fn(int32_t{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
    default: throw Error(std::string("index: unsupported dtype ") + dtype_name(dt));
  }
}

Err err_of(const char* op) { return Err{error_slot(current_device()), error_site(op)}; }

}  // namespace

void gather(const View& x, const View& index, int dim, const View& out, const char* op) {
  check_values(x, op, "input");
  index_checks::gather(x, index, dim, out, op);
  const int64_t total = index.numel();
  if (total == 0) return;
  const Geo g = geo(index, dim, index.shape[dim], &index, &out, &x, 4);
  const Err err = err_of(op);
  dispatch_values(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    gather_kernel<T><<<blocks_for(total, 256), 256, 0, stream()>>>(g, total, index.ptr<int32_t>(), x.ptr<T>(),
                                                                    x.strides[dim], x.shape[dim], out.ptr<T>(), err);
    check_launch(op);
  });
}

void scatter_add(const View& out, const View& index, const View& src, int dim, const char* op) {
  check_values(out, op, "input");
  index_checks::scatter_add(out, index, src, dim, op);
  const int64_t D = index.shape[dim];
  if (index.numel() == 0) return;
  const int64_t lines = index.numel() / D;
  const Geo g = geo(index, dim, 1, &index, &src, &out, 7);
  const Err err = err_of(op);
  dispatch_values(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    scatter_add_kernel<T><<<blocks_for(lines, 128), 128, 0, stream()>>>(
        g, lines, D, index.ptr<int32_t>(), index.strides[dim], src.ptr<T>(), src.strides[dim], out.ptr<T>(),
        out.strides[dim], out.shape[dim], err);
    check_launch(op);
  });
}

void index_select(const View& x, const View& index, int dim, const View& out, const char* op) {
  check_values(x, op, "input");
  index_checks::index_select(x, index, dim, out, op);
  const int64_t total = out.numel();
  if (total == 0) return;
  const Geo g = geo(out, dim, out.shape[dim], &out, &x, nullptr, 2);
  const Err err = err_of(op);
  dispatch_values(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    index_select_kernel<T><<<blocks_for(total, 256), 256, 0, stream()>>>(
        g, total, dim, index.ptr<int32_t>(), index.strides[0], x.ptr<T>(), x.strides[dim], x.shape[dim], out.ptr<T>(),
        err);
    check_launch(op);
  });
}

void index_add(const View& out, const View& index, const View& src, int dim, const char* op) {
  check_values(out, op, "input");
  index_checks::index_add(out, index, src, dim, op);
  const int64_t K = index.shape[0];
  if (K == 0 || out.numel() == 0) return;
  const int64_t lines = out.numel() / out.shape[dim];
  const Geo g = geo(out, dim, 1, &out, &src, nullptr, 3);
  const Err err = err_of(op);
  dispatch_values(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    index_add_kernel<T><<<blocks_for(lines, 128), 128, 0, stream()>>>(g, lines, K, index.ptr<int32_t>(),
                                                                       index.strides[0], src.ptr<T>(),
                                                                       src.strides[dim], out.ptr<T>(),
                                                                       out.strides[dim], out.shape[dim], err);
    check_launch(op);
  });
}

void topk(const View& x, int dim, int64_t k, bool largest, bool sorted, const View& values, const View& indices,
          const char* op) {
  (void)sorted;  // always sorted: a valid order for sorted = false as well
  check_values(x, op, "input");
  index_checks::topk(x, dim, k, values, indices, op);
  if (k > kTopkBuf / 2)
    throw Error(std::string(op) + ": k " + std::to_string(k) + " is too large for the CUDA kernel (expected k <= " +
                std::to_string(kTopkBuf / 2) + ")");
  if (k == 0 || x.numel() == 0) return;
  const int64_t lines = x.numel() / x.shape[dim];
  if (lines > 0x7fffffffLL) throw Error(std::string(op) + ": too many lines for one launch");
  int K = 1;
  while (K < k) K <<= 1;
  const Geo g = geo(x, dim, 1, &x, &values, &indices, 0);
  // one compare-swap per thread per stage: short lines get small blocks
  int P = 1;
  while (P < x.shape[dim] && P < kTopkBuf) P <<= 1;
  const int threads = std::max(32, std::min(kTopkThreads, P / 2));
  dispatch_values(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    topk_kernel<T><<<static_cast<unsigned>(lines), threads, 0, stream()>>>(
        g, x.ptr<T>(), x.strides[dim], static_cast<int>(x.shape[dim]), static_cast<int>(k), K, largest,
        values.ptr<T>(), values.strides[dim], indices.ptr<int32_t>(), indices.strides[dim]);
    check_launch(op);
  });
}

}  // namespace cuda
}  // namespace ng
