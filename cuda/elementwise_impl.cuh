// Machinery shared by cuda/elementwise_*.cu: element types and their compute types, the
// host-side plan (the CPU's stride coalescing), and the two launch shapes every op uses.
//
//  * flat: the plan collapsed to one dim with the output contiguous and every input
//    either contiguous (stride 1) or broadcast (stride 0). A grid-stride loop over
//    vectors of V elements (16-byte loads and stores when every contiguous pointer is
//    aligned), then a scalar tail. Traffic: each input read once, the output written once.
//  * strided: anything else (transposed, sliced, broadcast rows, up to 8 dims). One
//    element per thread and iteration; the coordinates are decomposed once per element
//    (32-bit magic-number division; plans of 2^31 elements or more are cut into several
//    launches) and applied to every operand's strides.
//
// An op is a functor F with
//   static constexpr int kVec;          elements per vector in the flat path
//   bool vec_ok;                        every contiguous pointer aligned for kVec
//   __device__ void vec(int64_t i);     flat elements [i, i + kVec)
//   __device__ void one(int64_t i);     flat element i
//   __device__ void at(const int64_t* off);  strided: element offsets of every operand
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cuda/common.cuh"

namespace ng {
namespace cuda {
namespace ew {

constexpr int kThreads = 256;

// ---- element types -------------------------------------------------------------------
// Storage type -> compute type: float for f32/bf16/f16, double for f64, int for i32 and
// bool (bool arithmetic follows the CPU: computed as integers, stored as nonzero).
template <class T> struct ComputeOf { using type = T; };
template <> struct ComputeOf<int32_t> { using type = int; };
template <> struct ComputeOf<uint8_t> { using type = int; };
template <> struct ComputeOf<__nv_bfloat16> { using type = float; };
template <> struct ComputeOf<__half> { using type = float; };
template <class T> using C_t = typename ComputeOf<T>::type;

template <class T> constexpr bool is_half_v = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

template <class T> __device__ __forceinline__ C_t<T> to_c(T v) {
  if constexpr (is_half_v<T>) return to_f<T>(v);
  else return static_cast<C_t<T>>(v);
}
// Compute value -> storage. Bool: the CPU stores uint8(v) != 0.
template <class T> __device__ __forceinline__ T from_c(C_t<T> v) {
  if constexpr (is_half_v<T>) return from_f<T>(v);
  else if constexpr (std::is_same_v<T, uint8_t>) return static_cast<uint8_t>(static_cast<uint8_t>(v) != 0);
  else return static_cast<T>(v);
}

// Integer power as the CPU computes it, int(pow(double(a), double(b))), but exact: the
// CPU's libm pow is exact on integers, CUDA's may be 1 ulp low (and truncate 125 to 124).
// Squaring in double is exact for every result that fits in int32 (beyond, the CPU's
// cast is undefined).
__device__ __forceinline__ int ipow(int a, int b) {
  if (b < 0) {
    if (a == 1) return 1;
    if (a == -1) return (b & 1) ? -1 : 1;
    return static_cast<int>(pow(static_cast<double>(a), static_cast<double>(b)));  // |r| < 1 -> 0
  }
  double r = 1.0, base = static_cast<double>(a);
  for (unsigned e = static_cast<unsigned>(b); e != 0; e >>= 1) {
    if (e & 1u) r *= base;
    base *= base;
  }
  return static_cast<int>(r);
}

// V elements of T as one aligned load/store (V * sizeof(T) <= 16).
template <class T, int V> struct alignas(sizeof(T) * V) Vec { T v[V]; };

template <class T, int V> inline bool aligned_for(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % (sizeof(T) * V) == 0;
}

// Calls fn(T{}) with T the storage type of dt (all six dtypes).
template <class Fn> void dispatch_all(DType dt, const char* op, Fn&& fn) {
  switch (dt) {
    case DType::F32: fn(float{}); return;
    case DType::F64: fn(double{}); return;
    case DType::I32: fn(int32_t{}); return;
    case DType::Bool: fn(uint8_t{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
  }
  throw Error(std::string(op) + ": unsupported dtype " + std::to_string(static_cast<int>(dt)));
}
// Calls fn(U{}) with U an unsigned integer of the element size (bit copies: where, fill).
template <class Fn> void dispatch_bits(DType dt, Fn&& fn) {
  switch (dtype_size(dt)) {
    case 1: fn(uint8_t{}); return;
    case 2: fn(uint16_t{}); return;
    case 4: fn(uint32_t{}); return;
    default: fn(uint64_t{}); return;
  }
}

// ---- plan (host) -----------------------------------------------------------------------
// views[0] is the output; every view has the output's shape (inputs already broadcast).
// Size-1 dims are dropped and neighbours merged where every operand is contiguous across
// them, exactly as the CPU twin does.
template <int N> struct Plan {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t st[N][kMaxDims];
  int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= shape[d];
    return n;
  }
  // one dim, output contiguous, each input contiguous or broadcast
  bool flat() const {
    if (ndim != 1 || st[0][0] != 1) return false;
    for (int k = 1; k < N; ++k)
      if (st[k][0] != 0 && st[k][0] != 1) return false;
    return true;
  }
};

template <int N> Plan<N> make_plan(const View* const (&views)[N]) {
  Plan<N> p;
  const View& o = *views[0];
  for (int d = 0; d < o.ndim; ++d) {
    if (o.shape[d] == 1) continue;
    int nd = p.ndim;
    bool merge = nd > 0;
    for (int k = 0; k < N && merge; ++k) merge = p.st[k][nd - 1] == views[k]->strides[d] * o.shape[d];
    if (merge) {
      p.shape[nd - 1] *= o.shape[d];
      for (int k = 0; k < N; ++k) p.st[k][nd - 1] = views[k]->strides[d];
    } else {
      p.shape[nd] = o.shape[d];
      for (int k = 0; k < N; ++k) p.st[k][nd] = views[k]->strides[d];
      p.ndim = nd + 1;
    }
  }
  if (p.ndim == 0) {  // scalar or all-ones shape: one element
    p.ndim = 1;
    p.shape[0] = 1;
    for (int k = 0; k < N; ++k) p.st[k][0] = 1;
  }
  return p;
}

// ---- strided offsets (device) ---------------------------------------------------------
// n / d for n < 2^31 with a multiply-high and a shift (Granlund-Montgomery, as PyTorch's
// IntDivider): 64-bit division costs dozens of instructions per element on the GPU.
struct Div32 {
  uint32_t d = 1, m = 1, s = 0;
  void init(uint32_t div) {
    d = div;
    for (s = 0; s < 32; ++s)
      if ((1u << s) >= div) break;
    const uint64_t one = 1;
    m = static_cast<uint32_t>(((one << 32) * ((one << s) - div)) / div + 1);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const { return (__umulhi(n, m) + n) >> s; }
};

// Element offsets of every operand for a flat index i < 2^31 of a plan; dims are stored
// innermost first so the unrolled loop indexes them statically. base: the offsets of the
// sub-plan's first element (see launch_strided).
template <int N> struct Offsets {
  int ndim;
  Div32 dim[kMaxDims];
  int64_t st[kMaxDims][N];
  int64_t base[N];
  __device__ __forceinline__ void get(uint32_t i, int64_t* off) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = base[k];
#pragma unroll
    for (int j = 0; j < kMaxDims; ++j) {
      if (j == ndim) break;
      const uint32_t q = dim[j].div(i), r = i - q * dim[j].d;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += static_cast<int64_t>(r) * st[j][k];
      i = q;
    }
  }
};

// ---- kernels ---------------------------------------------------------------------------
template <class F>
__global__ void __launch_bounds__(kThreads) flat_kernel(F f, int64_t n) {
  constexpr int V = F::kVec;
  const int64_t nvec = f.vec_ok ? n / V : 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t v = tid; v < nvec; v += stride) f.vec(v * V);
  for (int64_t i = nvec * V + tid; i < n; i += stride) f.one(i);
}

template <int N, class F>
__global__ void __launch_bounds__(kThreads) strided_kernel(F f, Offsets<N> oc, uint32_t n) {
  const uint32_t stride = gridDim.x * blockDim.x;  // n < 2^31, so i + stride never wraps
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[N];
    oc.get(i, off);
    f.at(off);
  }
}

// ---- launchers (host) -------------------------------------------------------------------
template <class F> void launch_flat(const F& f, int64_t n, const char* op) {
  if (n <= 0) return;
  const int64_t items = f.vec_ok ? (n + F::kVec - 1) / F::kVec : n;
  flat_kernel<F><<<blocks_for(items, kThreads), kThreads, 0, stream()>>>(f, n);
  check_launch(op);
}

// Launches the strided kernel over dims [d0, ndim) of p, dim d0 cut to [c0, c0 + len),
// with every operand's offsets starting at base.
template <int N, class F>
void launch_sub(const F& f, const Plan<N>& p, int d0, int64_t c0, int64_t len, const int64_t* base) {
  Offsets<N> o{};
  o.ndim = p.ndim - d0;
  for (int j = 0; j < o.ndim; ++j) {
    const int d = p.ndim - 1 - j;
    o.dim[j].init(static_cast<uint32_t>(d == d0 ? len : p.shape[d]));
    for (int k = 0; k < N; ++k) o.st[j][k] = p.st[k][d];
  }
  int64_t n = len;
  for (int d = d0 + 1; d < p.ndim; ++d) n *= p.shape[d];
  for (int k = 0; k < N; ++k) o.base[k] = base[k] + c0 * p.st[k][d0];
  strided_kernel<N, F><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(f, o, static_cast<uint32_t>(n));
}

// Plans of 2^31 elements or more (8 GiB of float32) run as several launches of fewer
// elements each, so the kernel can keep 32-bit index arithmetic: the dims inside d hold
// fewer than 2^31 elements, dim d is cut into chunks, the dims outside d are looped here.
template <int N, class F> void launch_strided(const F& f, const Plan<N>& p, const char* op) {
  const int64_t n = p.numel();
  if (n <= 0) return;
  constexpr int64_t kMax = int64_t(1) << 31;
  int64_t base[N] = {0};
  if (n < kMax) {
    launch_sub<N>(f, p, 0, 0, p.shape[0], base);
    check_launch(op);
    return;
  }
  int64_t inner = 1;
  int d = p.ndim - 1;
  while (d > 0 && p.shape[d] <= (kMax - 1) / inner) inner *= p.shape[d--];  // inner * shape < 2^31
  const int64_t chunk = (kMax - 1) / inner;  // >= 1 because inner < 2^31
  int64_t outer = 1;
  for (int e = 0; e < d; ++e) outer *= p.shape[e];
  for (int64_t o = 0; o < outer; ++o) {
    int64_t r = o;
    for (int k = 0; k < N; ++k) base[k] = 0;
    for (int e = d - 1; e >= 0; --e) {
      const int64_t i = r % p.shape[e];
      r /= p.shape[e];
      for (int k = 0; k < N; ++k) base[k] += i * p.st[k][e];
    }
    for (int64_t c0 = 0; c0 < p.shape[d]; c0 += chunk)
      launch_sub<N>(f, p, d, c0, std::min(chunk, p.shape[d] - c0), base);
  }
  check_launch(op);
}

// Operand of a flat functor: 0 = contiguous tensor, 1 = constant value, 2 = broadcast
// tensor (element 0 read by every thread; served from cache).
enum Mode : int { kTensor = 0, kValue = 1, kBroadcast = 2 };

template <class T, int V>
__device__ __forceinline__ void load_vec(const T* p, int mode, C_t<T> value, int64_t i, C_t<T> (&x)[V]) {
  if (mode == kTensor) {
    Vec<T, V> t = *reinterpret_cast<const Vec<T, V>*>(p + i);
#pragma unroll
    for (int k = 0; k < V; ++k) x[k] = to_c<T>(t.v[k]);
  } else {
    const C_t<T> s = mode == kValue ? value : to_c<T>(p[0]);
#pragma unroll
    for (int k = 0; k < V; ++k) x[k] = s;
  }
}
template <class T>
__device__ __forceinline__ C_t<T> load_one(const T* p, int mode, C_t<T> value, int64_t i) {
  return mode == kValue ? value : to_c<T>(p[mode == kTensor ? i : 0]);
}

}  // namespace ew
}  // namespace cuda
}  // namespace ng
