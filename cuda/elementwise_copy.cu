// Data movement on CUDA (twin of native/cpu/elementwise_impl.h: where, copy, fill).
//
//  * copy, same dtype: a bit copy by element size. Contiguous -> cudaMemcpyAsync; a
//    transposed source (the two innermost dims swapped, the usual `.contiguous()` of a
//    `.transpose()`) -> 32x32 tiles through shared memory so reads and writes are both
//    coalesced (read n + write n bytes); anything else -> the strided kernel.
//  * copy, dtype change (the cast): a templated flat kernel per common (source,
//    destination) pair, 16-byte vectors on the wider side; strided views and the rare
//    pairs use one kernel that switches on both dtypes per element. Conversions follow
//    the CPU: nonzero -> bool, round-to-nearest-even into bfloat16/float16, float64 and
//    int32 -> 16-bit through float; float -> int32 truncates and saturates (NaN -> 0),
//    where the CPU's out-of-range result is undefined (x86 gives INT_MIN).
//  * where: a bit select by element size (the condition is one byte).
//  * fill: the value's bit pattern computed on the host, then a bit store by element size.
#include <cstring>
#include <string>

#include "cuda/common.cuh"
#include "cuda/elementwise.h"
#include "cuda/elementwise_impl.cuh"

namespace ng {
namespace cuda {
namespace {

using namespace ew;

// ---- raw (bit) operands ----------------------------------------------------------------
template <class U, int V>
__device__ __forceinline__ void load_raw(const U* p, int mode, int64_t i, U (&x)[V]) {
  if (mode == kTensor) {
    Vec<U, V> t = *reinterpret_cast<const Vec<U, V>*>(p + i);
#pragma unroll
    for (int k = 0; k < V; ++k) x[k] = t.v[k];
  } else {
    const U s = p[0];
#pragma unroll
    for (int k = 0; k < V; ++k) x[k] = s;
  }
}

template <class S, class D>
__device__ __forceinline__ D convert(S v) {
  if constexpr (std::is_same_v<S, D>) return v;
  else if constexpr (std::is_same_v<D, uint8_t>) {  // bool: nonzero (NaN is nonzero)
    if constexpr (is_half_v<S>) return static_cast<uint8_t>(to_f<S>(v) != 0.0f);
    else return static_cast<uint8_t>(v != S(0));
  } else if constexpr (is_half_v<S>) {
    const float f = to_f<S>(v);
    if constexpr (is_half_v<D>) return from_f<D>(f);
    else return static_cast<D>(f);  // float -> int32 saturates on the GPU (NaN -> 0)
  } else if constexpr (is_half_v<D>) {
    const float f = std::is_same_v<S, uint8_t> ? (v != 0 ? 1.0f : 0.0f) : static_cast<float>(v);
    return from_f<D>(f);
  } else {
    return static_cast<D>(v);  // float/double -> int32 saturates, bool reads its byte
  }
}

// dst = convert(src); S == D for bit copies (U unsigned).
template <class S, class D> struct CopyF {
  static constexpr int kVec = 16 / (sizeof(S) > sizeof(D) ? sizeof(S) : sizeof(D));
  const S* s;
  D* o;
  int ms;  // Mode of s: kTensor or kBroadcast
  bool vec_ok;
  __device__ __forceinline__ void vec(int64_t i) const {
    S x[kVec];
    load_raw<S, kVec>(s, ms, i, x);
    Vec<D, kVec> out;
#pragma unroll
    for (int k = 0; k < kVec; ++k) out.v[k] = convert<S, D>(x[k]);
    *reinterpret_cast<Vec<D, kVec>*>(o + i) = out;
  }
  __device__ __forceinline__ void one(int64_t i) const { o[i] = convert<S, D>(s[ms == kTensor ? i : 0]); }
  __device__ __forceinline__ void at(const int64_t* off) const { o[off[0]] = convert<S, D>(s[off[1]]); }
};

// Strided cast: both dtypes switched per element (uniform branches).
template <class S>
__device__ __forceinline__ void store_as(S v, char* d, DType dd) {
  switch (dd) {
    case DType::F32: *reinterpret_cast<float*>(d) = convert<S, float>(v); return;
    case DType::F64: *reinterpret_cast<double*>(d) = convert<S, double>(v); return;
    case DType::I32: *reinterpret_cast<int32_t*>(d) = convert<S, int32_t>(v); return;
    case DType::Bool: *reinterpret_cast<uint8_t*>(d) = convert<S, uint8_t>(v); return;
    case DType::BF16: *reinterpret_cast<__nv_bfloat16*>(d) = convert<S, __nv_bfloat16>(v); return;
    case DType::F16: *reinterpret_cast<__half*>(d) = convert<S, __half>(v); return;
  }
}
struct CastAnyF {  // strided launches only (at)
  const char* s;
  char* o;
  DType sd, dd;
  int ss, ds;  // element sizes
  __device__ __forceinline__ void at(const int64_t* off) const {
    const char* p = s + off[1] * ss;
    char* d = o + off[0] * ds;
    switch (sd) {
      case DType::F32: return store_as(*reinterpret_cast<const float*>(p), d, dd);
      case DType::F64: return store_as(*reinterpret_cast<const double*>(p), d, dd);
      case DType::I32: return store_as(*reinterpret_cast<const int32_t*>(p), d, dd);
      case DType::Bool: return store_as(*reinterpret_cast<const uint8_t*>(p), d, dd);
      case DType::BF16: return store_as(*reinterpret_cast<const __nv_bfloat16*>(p), d, dd);
      case DType::F16: return store_as(*reinterpret_cast<const __half*>(p), d, dd);
    }
  }
};

// ---- transposed copy --------------------------------------------------------------------
// dst[b][r][c] (c contiguous) = src[b][r][c] where src is contiguous along r: one 32x32
// tile per block, read along r into shared memory, written along c. The +1 column avoids
// bank conflicts on the transposed read. Traffic: each element read once, written once.
constexpr int kTile = 32, kTileRows = 8;
template <class U>
__global__ void __launch_bounds__(kTile* kTileRows) transpose_kernel(const U* __restrict__ src, U* __restrict__ dst,
                                                                     int64_t rows, int64_t cols, int64_t s_c,
                                                                     int64_t s_b, int64_t d_r, int64_t d_b) {
  __shared__ U tile[kTile][kTile + 1];
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kTile, c0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const U* sb = src + static_cast<int64_t>(blockIdx.z) * s_b;
  U* db = dst + static_cast<int64_t>(blockIdx.z) * d_b;
  const int tx = threadIdx.x, ty = threadIdx.y;
  // read: consecutive threads take consecutive r (src stride 1 along r)
#pragma unroll
  for (int j = 0; j < kTile; j += kTileRows) {
    const int64_t r = r0 + tx, c = c0 + ty + j;
    if (r < rows && c < cols) tile[ty + j][tx] = sb[r + c * s_c];
  }
  __syncthreads();
  // write: consecutive threads take consecutive c (dst stride 1 along c)
#pragma unroll
  for (int j = 0; j < kTile; j += kTileRows) {
    const int64_t r = r0 + ty + j, c = c0 + tx;
    if (r < rows && c < cols) db[r * d_r + c] = tile[tx][ty + j];
  }
}

// Plan of a same-dtype copy whose two innermost dims are swapped in the source; up to one
// batch dim in front. Returns false when the shape does not fit this kernel.
template <class U> bool try_transpose(const Plan<2>& p, const View& src, const View& dst) {
  const int nd = p.ndim;
  if (nd != 2 && nd != 3) return false;
  if (p.st[0][nd - 1] != 1 || p.st[1][nd - 2] != 1 || p.st[1][nd - 1] == 1) return false;
  const int64_t rows = p.shape[nd - 2], cols = p.shape[nd - 1], batch = nd == 3 ? p.shape[0] : 1;
  if (rows < kTile || cols < kTile || batch > 65535 || (rows + kTile - 1) / kTile > 65535) return false;
  const dim3 grid(static_cast<unsigned>((cols + kTile - 1) / kTile), static_cast<unsigned>((rows + kTile - 1) / kTile),
                  static_cast<unsigned>(batch));
  transpose_kernel<U><<<grid, dim3(kTile, kTileRows), 0, stream()>>>(
      src.ptr<U>(), dst.ptr<U>(), rows, cols, p.st[1][nd - 1], nd == 3 ? p.st[1][0] : 0, p.st[0][nd - 2],
      nd == 3 ? p.st[0][0] : 0);
  check_launch("copy");
  return true;
}

// Casts with a vectorised flat kernel of their own (mixed precision and the usual
// float32 <-> float64 / int32 / bool ones); the rare pairs share the strided kernel.
template <class T> constexpr bool kFloatLike = std::is_same_v<T, float> || is_half_v<T>;
template <class S, class D>
constexpr bool kHotCast =
    !std::is_same_v<S, D> &&
    ((kFloatLike<S> && kFloatLike<D>) || (std::is_same_v<S, uint8_t> && kFloatLike<D>) ||
     (std::is_same_v<S, float> && (std::is_same_v<D, double> || std::is_same_v<D, int32_t>)) ||
     (std::is_same_v<D, float> && (std::is_same_v<S, double> || std::is_same_v<S, int32_t>)));

template <class S, class D> void run_copy(const Plan<2>& p, const View& src, const View& dst) {
  using F = CopyF<S, D>;
  F f{};
  f.s = src.ptr<S>();
  f.o = dst.ptr<D>();
  f.ms = kTensor;
  if (p.flat()) {
    f.ms = p.st[1][0] == 0 ? kBroadcast : kTensor;
    f.vec_ok = aligned_for<D, F::kVec>(f.o) && (f.ms != kTensor || aligned_for<S, F::kVec>(f.s));
    return launch_flat(f, p.numel(), "copy");
  }
  launch_strided<2>(f, p, "copy");
}

// ---- where -----------------------------------------------------------------------------
template <class U> struct WhereF {
  static constexpr int kVec = 16 / sizeof(U);
  const uint8_t* c;
  const U* a;
  const U* b;
  U* o;
  int mc, ma, mb;
  bool vec_ok;
  __device__ __forceinline__ void vec(int64_t i) const {
    uint8_t m[kVec];
    U x[kVec], y[kVec];
    load_raw<uint8_t, kVec>(c, mc, i, m);
    load_raw<U, kVec>(a, ma, i, x);
    load_raw<U, kVec>(b, mb, i, y);
    Vec<U, kVec> out;
#pragma unroll
    for (int k = 0; k < kVec; ++k) out.v[k] = m[k] ? x[k] : y[k];
    *reinterpret_cast<Vec<U, kVec>*>(o + i) = out;
  }
  __device__ __forceinline__ void one(int64_t i) const {
    o[i] = c[mc == kTensor ? i : 0] ? a[ma == kTensor ? i : 0] : b[mb == kTensor ? i : 0];
  }
  __device__ __forceinline__ void at(const int64_t* off) const { o[off[0]] = c[off[1]] ? a[off[2]] : b[off[3]]; }
};

// ---- fill ------------------------------------------------------------------------------
template <class U> struct FillF {
  static constexpr int kVec = 16 / sizeof(U);
  U* o;
  U v;
  bool vec_ok;
  __device__ __forceinline__ void vec(int64_t i) const {
    Vec<U, kVec> out;
#pragma unroll
    for (int k = 0; k < kVec; ++k) out.v[k] = v;
    *reinterpret_cast<Vec<U, kVec>*>(o + i) = out;
  }
  __device__ __forceinline__ void one(int64_t i) const { o[i] = v; }
  __device__ __forceinline__ void at(const int64_t* off) const { o[off[0]] = v; }
};

uint16_t f32_to_bf16_bits(float f) {  // the CPU's rounding (NaN stays a quiet NaN)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

template <class T> T sat(double d) {  // the CPU's sat_cast for int32
  if (d != d) return T(0);
  if (d <= -2147483648.0) return T(-2147483647 - 1);
  if (d >= 2147483647.0) return T(2147483647);
  return static_cast<T>(d);
}

uint64_t fill_bits(DType dt, double value) {
  switch (dt) {
    case DType::F32: { float f = static_cast<float>(value); uint32_t u; std::memcpy(&u, &f, 4); return u; }
    case DType::F64: { uint64_t u; std::memcpy(&u, &value, 8); return u; }
    case DType::I32: return static_cast<uint32_t>(sat<int32_t>(value));
    case DType::Bool: return value != 0 ? 1 : 0;
    case DType::BF16: return f32_to_bf16_bits(static_cast<float>(value));
    case DType::F16: { __half h = __float2half_rn(static_cast<float>(value)); uint16_t u; std::memcpy(&u, &h, 2); return u; }
  }
  throw Error("fill: unsupported dtype");
}

}  // namespace

void where(const View& cond, const View& a, const View& b, const View& out) {
  NG_CHECK(cond.dtype == DType::Bool, "where: condition must be bool");
  NG_CHECK(a.dtype == b.dtype && a.dtype == out.dtype, "where: value dtypes differ");
  const View* vs[4] = {&out, &cond, &a, &b};
  Plan<4> p = make_plan<4>(vs);
  dispatch_bits(out.dtype, [&](auto tag) {
    using U = decltype(tag);
    using F = WhereF<U>;
    F f{};
    f.c = cond.ptr<uint8_t>();
    f.a = a.ptr<U>();
    f.b = b.ptr<U>();
    f.o = out.ptr<U>();
    f.mc = f.ma = f.mb = kTensor;
    if (p.flat()) {
      f.mc = p.st[1][0] == 0 ? kBroadcast : kTensor;
      f.ma = p.st[2][0] == 0 ? kBroadcast : kTensor;
      f.mb = p.st[3][0] == 0 ? kBroadcast : kTensor;
      f.vec_ok = aligned_for<U, F::kVec>(f.o) && (f.mc != kTensor || aligned_for<uint8_t, F::kVec>(f.c)) &&
                 (f.ma != kTensor || aligned_for<U, F::kVec>(f.a)) && (f.mb != kTensor || aligned_for<U, F::kVec>(f.b));
      return launch_flat(f, p.numel(), "where");
    }
    launch_strided<4>(f, p, "where");
  });
}

void copy(const View& src, const View& dst) {
  const View* vs[2] = {&dst, &src};
  Plan<2> p = make_plan<2>(vs);
  const int64_t n = p.numel();
  if (n == 0) return;
  if (src.dtype == dst.dtype) {
    const size_t es = dtype_size(src.dtype);
    if (p.flat() && p.st[1][0] == 1) {
      if (src.data != dst.data)
        NG_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, static_cast<size_t>(n) * es, cudaMemcpyDeviceToDevice, stream()),
                      "copy");
      return;
    }
    dispatch_bits(src.dtype, [&](auto tag) {
      using U = decltype(tag);
      if (!try_transpose<U>(p, src, dst)) run_copy<U, U>(p, src, dst);
    });
    return;
  }
  if (p.flat()) {
    bool done = false;
    dispatch_all(src.dtype, "copy", [&](auto stag) {
      using S = decltype(stag);
      dispatch_all(dst.dtype, "copy", [&](auto dtag) {
        using D = decltype(dtag);
        if constexpr (kHotCast<S, D>) {
          run_copy<S, D>(p, src, dst);
          done = true;
        }
      });
    });
    if (done) return;
  }
  CastAnyF f{};
  f.s = static_cast<const char*>(src.data);
  f.o = static_cast<char*>(dst.data);
  f.sd = src.dtype;
  f.dd = dst.dtype;
  f.ss = static_cast<int>(dtype_size(src.dtype));
  f.ds = static_cast<int>(dtype_size(dst.dtype));
  launch_strided<2>(f, p, "copy");
}

void fill(const View& out, double value) {
  const uint64_t bits = fill_bits(out.dtype, value);
  const View* vs[1] = {&out};
  Plan<1> p = make_plan<1>(vs);
  dispatch_bits(out.dtype, [&](auto tag) {
    using U = decltype(tag);
    using F = FillF<U>;
    F f{};
    f.o = out.ptr<U>();
    f.v = static_cast<U>(bits);
    if (p.flat()) {
      f.vec_ok = aligned_for<U, F::kVec>(f.o);
      return launch_flat(f, p.numel(), "fill");
    }
    launch_strided<1>(f, p, "fill");
  });
}

}  // namespace cuda
}  // namespace ng
