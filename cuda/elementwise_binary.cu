// Binary elementwise ops on CUDA (twin of native/cpu/elementwise_impl.h: binary,
// binary_scalar). Broadcast inputs arrive as stride-0 views; comparisons write bool.
//
// Kernels are instantiated per storage type and per output kind (arithmetic: same dtype;
// comparison/logical: bool), not per op: the op is a run-time switch taken once per
// vector of kVec elements (uniform across the grid, so it costs a few instructions per
// 16-byte vector). Memory traffic: read a and b once, write out once.
#include <cmath>
#include <string>

#include "cuda/common.cuh"
#include "cuda/elementwise.h"
#include "cuda/elementwise_impl.cuh"

namespace ng {
namespace cuda {
namespace {

using namespace ew;

// ---- per-element formulas (same expressions as the CPU's bin_raw) ----------------------
template <BinaryOp OP, class C>
__device__ __forceinline__ C arith(C a, C b) {
  constexpr bool kInt = std::is_integral_v<C>;
  if constexpr (OP == BinaryOp::Add) return a + b;
  else if constexpr (OP == BinaryOp::Sub) return a - b;
  else if constexpr (OP == BinaryOp::Mul) return a * b;
  else if constexpr (OP == BinaryOp::Div) {
    if constexpr (kInt) return b == 0 ? C(0) : a / b;
    else return a / b;
  } else if constexpr (OP == BinaryOp::Pow) {
    if constexpr (kInt) return ipow(a, b);
    else return pow(a, b);
  } else if constexpr (OP == BinaryOp::Maximum) return (a > b || a != a) ? a : b;  // NaN wins
  else if constexpr (OP == BinaryOp::Minimum) return (a < b || a != a) ? a : b;
  else if constexpr (OP == BinaryOp::FloorDiv) {
    if constexpr (kInt) {
      if (b == 0) return C(0);
      C q = a / b;
      if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
      return q;
    } else return floor(a / b);
  } else if constexpr (OP == BinaryOp::Remainder) {
    if constexpr (kInt) {
      if (b == 0) return C(0);
      C r = a % b;
      if (r != 0 && ((r < 0) != (b < 0))) r += b;
      return r;
    } else {
      C r = fmod(a, b);
      if (r != C(0) && ((r < C(0)) != (b < C(0)))) r += b;
      return r;
    }
  } else {  // Atan2: in double, as the CPU
    return static_cast<C>(atan2(static_cast<double>(a), static_cast<double>(b)));
  }
}

template <BinaryOp OP, class C>
__device__ __forceinline__ bool compare(C a, C b) {
  if constexpr (OP == BinaryOp::Eq) return a == b;
  else if constexpr (OP == BinaryOp::Ne) return a != b;
  else if constexpr (OP == BinaryOp::Lt) return a < b;
  else if constexpr (OP == BinaryOp::Le) return a <= b;
  else if constexpr (OP == BinaryOp::Gt) return a > b;
  else if constexpr (OP == BinaryOp::Ge) return a >= b;
  else if constexpr (OP == BinaryOp::LogicalAnd) return (a != C(0)) && (b != C(0));
  else return (a != C(0)) || (b != C(0));  // LogicalOr
}

// Pow, FloorDiv, Remainder and Atan2 (libm-heavy, rarely hot): one out-of-line copy per
// compute type instead of 4-16 inlined copies in every kernel.
template <class C>
__device__ __noinline__ C arith_cold(BinaryOp op, C a, C b) {
  switch (op) {
    case BinaryOp::Pow: return arith<BinaryOp::Pow, C>(a, b);
    case BinaryOp::FloorDiv: return arith<BinaryOp::FloorDiv, C>(a, b);
    case BinaryOp::Remainder: return arith<BinaryOp::Remainder, C>(a, b);
    default: return arith<BinaryOp::Atan2, C>(a, b);
  }
}

// r[k] = x[k] (op) y[k] for k < V, with the switch outside the loop.
template <class C, class R, bool kCmp, int V>
__device__ __forceinline__ void apply(BinaryOp op, const C (&x)[V], const C (&y)[V], R (&r)[V]) {
#define NG_B(OPC, FN)                                         \
  case BinaryOp::OPC:                                         \
    _Pragma("unroll") for (int k = 0; k < V; ++k) r[k] = FN<BinaryOp::OPC, C>(x[k], y[k]); \
    return;
  if constexpr (kCmp) {
    switch (op) {
      NG_B(Eq, compare) NG_B(Ne, compare) NG_B(Lt, compare) NG_B(Le, compare) NG_B(Gt, compare)
      NG_B(Ge, compare) NG_B(LogicalAnd, compare) NG_B(LogicalOr, compare)
      default: return;
    }
  } else {
    switch (op) {
      NG_B(Add, arith) NG_B(Sub, arith) NG_B(Mul, arith) NG_B(Div, arith) NG_B(Maximum, arith) NG_B(Minimum, arith)
      default:
#pragma unroll
        for (int k = 0; k < V; ++k) r[k] = arith_cold<C>(op, x[k], y[k]);
        return;
    }
  }
#undef NG_B
}

template <class T, bool kCmp> struct BinaryF {
  using C = C_t<T>;
  using O = std::conditional_t<kCmp, uint8_t, T>;
  using R = std::conditional_t<kCmp, bool, C>;
  static constexpr int kVec = 16 / sizeof(T);
  const T* a;
  const T* b;
  O* o;
  C va, vb;        // values of scalar operands (Mode kValue)
  int ma, mb;      // Mode of a and b
  BinaryOp op;
  bool vec_ok;

  __device__ __forceinline__ static O store(R r) {
    if constexpr (kCmp) return static_cast<uint8_t>(r);
    else return from_c<T>(r);
  }
  __device__ __forceinline__ void vec(int64_t i) const {
    C x[kVec], y[kVec];
    R r[kVec];
    load_vec<T, kVec>(a, ma, va, i, x);
    load_vec<T, kVec>(b, mb, vb, i, y);
    apply<C, R, kCmp, kVec>(op, x, y, r);
    Vec<O, kVec> out;
#pragma unroll
    for (int k = 0; k < kVec; ++k) out.v[k] = store(r[k]);
    *reinterpret_cast<Vec<O, kVec>*>(o + i) = out;
  }
  __device__ __forceinline__ void one(int64_t i) const {
    C x[1] = {load_one<T>(a, ma, va, i)}, y[1] = {load_one<T>(b, mb, vb, i)};
    R r[1];
    apply<C, R, kCmp, 1>(op, x, y, r);
    o[i] = store(r[0]);
  }
  // strided: off = {out, a, b}; a scalar operand keeps Mode kValue
  __device__ __forceinline__ void at(const int64_t* off) const {
    C x[1] = {ma == kValue ? va : to_c<T>(a[off[1]])}, y[1] = {mb == kValue ? vb : to_c<T>(b[off[2]])};
    R r[1];
    apply<C, R, kCmp, 1>(op, x, y, r);
    o[off[0]] = store(r[0]);
  }
};

bool is_compare(BinaryOp op) {
  switch (op) {
    case BinaryOp::Eq: case BinaryOp::Ne: case BinaryOp::Lt: case BinaryOp::Le: case BinaryOp::Gt:
    case BinaryOp::Ge: case BinaryOp::LogicalAnd: case BinaryOp::LogicalOr:
      return true;
    default:
      return false;
  }
}

// The CPU's sat_cast: a double scalar converted to the element type, integers saturate.
template <class T> C_t<T> scalar_as(double d) {
  if constexpr (std::is_same_v<T, int32_t> || std::is_same_v<T, uint8_t>) {
    const double lo = std::is_same_v<T, uint8_t> ? 0.0 : -2147483648.0;
    const double hi = std::is_same_v<T, uint8_t> ? 255.0 : 2147483647.0;
    if (d != d) return 0;
    if (d <= lo) return static_cast<int>(lo);
    if (d >= hi) return static_cast<int>(hi);
    return static_cast<int>(static_cast<T>(d));
  } else {
    return static_cast<C_t<T>>(d);  // float compute for f32/bf16/f16 (PyTorch's opmath)
  }
}

// b == nullptr: scalar operand s (left of a when reverse).
template <class T, bool kCmp>
void run_binary(BinaryOp op, const View& a, const View* b, double s, bool reverse, const View& out) {
  using F = BinaryF<T, kCmp>;
  using O = typename F::O;
  F f{};
  f.op = op;
  f.o = out.ptr<O>();
  const char* name = b ? "binary" : "binaryScalar";
  if (b) {
    const View* vs[3] = {&out, &a, b};
    Plan<3> p = make_plan<3>(vs);
    f.a = a.ptr<T>();
    f.b = b->ptr<T>();
    f.ma = f.mb = kTensor;
    if (p.flat()) {
      f.ma = p.st[1][0] == 0 ? kBroadcast : kTensor;
      f.mb = p.st[2][0] == 0 ? kBroadcast : kTensor;
      f.vec_ok = aligned_for<O, F::kVec>(f.o) && (f.ma != kTensor || aligned_for<T, F::kVec>(f.a)) &&
                 (f.mb != kTensor || aligned_for<T, F::kVec>(f.b));
      return launch_flat(f, p.numel(), name);
    }
    return launch_strided<3>(f, p, name);
  }
  const View* vs[2] = {&out, &a};
  Plan<2> p2 = make_plan<2>(vs);
  // the tensor goes to its side; the other side is a value. Strided offsets are {out, t, t}.
  Plan<3> p;
  p.ndim = p2.ndim;
  for (int d = 0; d < p2.ndim; ++d) {
    p.shape[d] = p2.shape[d];
    p.st[0][d] = p2.st[0][d];
    p.st[1][d] = p.st[2][d] = p2.st[1][d];
  }
  const C_t<T> v = scalar_as<T>(s);
  f.a = f.b = a.ptr<T>();
  f.va = f.vb = v;
  f.ma = reverse ? kValue : kTensor;
  f.mb = reverse ? kTensor : kValue;
  if (p.flat()) {
    const int mt = p.st[1][0] == 0 ? kBroadcast : kTensor;
    (reverse ? f.mb : f.ma) = mt;
    f.vec_ok = aligned_for<O, F::kVec>(f.o) && (mt != kTensor || aligned_for<T, F::kVec>(f.a));
    return launch_flat(f, p.numel(), name);
  }
  return launch_strided<3>(f, p, name);
}

void binary_any(BinaryOp op, const View& a, const View* b, double s, bool reverse, const View& out) {
  if (static_cast<int>(op) < 0 || static_cast<int>(op) > static_cast<int>(BinaryOp::Atan2))
    throw Error("binary: unknown op " + std::to_string(static_cast<int>(op)));
  if (b) NG_CHECK(a.dtype == b->dtype, "binary: operands must have the same dtype");
  const bool cmp = is_compare(op);
  if (cmp) NG_CHECK(out.dtype == DType::Bool, "binary: comparison output must be bool");
  else NG_CHECK(out.dtype == a.dtype, "binary: output dtype must equal the input dtype");
  dispatch_all(a.dtype, "binary", [&](auto tag) {
    using T = decltype(tag);
    if (cmp) run_binary<T, true>(op, a, b, s, reverse, out);
    else run_binary<T, false>(op, a, b, s, reverse, out);
  });
}

}  // namespace

void binary(BinaryOp op, const View& a, const View& b, const View& out) { binary_any(op, a, &b, 0.0, false, out); }

void binary_scalar(BinaryOp op, const View& a, double s, bool reverse, const View& out) {
  binary_any(op, a, nullptr, s, reverse, out);
}

}  // namespace cuda
}  // namespace ng
