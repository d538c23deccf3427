// Implementation of the elementwise family, included once per instruction set
// (elementwise_generic.cc, elementwise_avx2.cc) inside namespace NG_EW_NS.
//
// Algorithm: operands' strides are coalesced (size-1 dims dropped, dims merged where
// every operand is contiguous across them), so a contiguous or simply-broadcast op
// becomes one flat loop the compiler vectorises. The work is cut into (row, chunk)
// units spread over the thread pool. Memory traffic: each input read once, output
// written once (broadcast inputs are read from cache).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu/elementwise.h"
#include "cpu/vmath.h"
#include "threadpool.h"

namespace ng {
namespace detail {
namespace NG_EW_NS {
namespace {

constexpr int64_t kGrain = 16384;  // elements per work unit at least
// Ops of a cycle or two per element (add, mul, compare, relu...): a unit is worth waking a
// worker of the pool (a condition variable: about 5-10 us on this 2-core VM, measured)
// only from about 64K elements (~6 us of work at L2 speed); below 128K elements they run
// on the calling thread. Transcendental ops (exp, tanh, GELU: 20+ cycles) keep kGrain.
constexpr int64_t kCheapGrain = 1 << 16;
constexpr bool cheap_unary(UnaryOp op) {
  return op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Relu || op == UnaryOp::Square ||
         op == UnaryOp::Sign || op == UnaryOp::Affine || op == UnaryOp::Clamp || op == UnaryOp::LeakyRelu ||
         op == UnaryOp::Floor || op == UnaryOp::Ceil || op == UnaryOp::Round;
}
constexpr bool cheap_binary(BinaryOp op) {
  return op != BinaryOp::Pow && op != BinaryOp::Atan2 && op != BinaryOp::Remainder && op != BinaryOp::FloorDiv;
}

template <int N>
struct Plan {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t st[N][kMaxDims];
  char* base[N];
  int64_t esize[N];
};

// views[0] is the output; every view has the output's shape (inputs already broadcast).
template <int N>
Plan<N> make_plan(const View* const (&views)[N]) {
  Plan<N> p;
  const View& o = *views[0];
  for (int k = 0; k < N; ++k) {
    p.base[k] = static_cast<char*>(views[k]->data);
    p.esize[k] = static_cast<int64_t>(dtype_size(views[k]->dtype));
  }
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
  if (p.ndim == 0) {  // scalar or all-ones shape
    p.ndim = 1;
    p.shape[0] = 1;
    for (int k = 0; k < N; ++k) p.st[k][0] = 0;
  }
  return p;
}

// fn(char* ptr[N], const int64_t inner_stride[N] (elements), int64_t n); a unit of work holds
// min_unit elements at least (kGrain, or kCheapGrain for cheap ops)
template <int N, class Fn>
void run(const Plan<N>& p, Fn fn, int64_t min_unit = kGrain) {
  int64_t inner = p.shape[p.ndim - 1];
  int64_t outer = 1;
  for (int d = 0; d < p.ndim - 1; ++d) outer *= p.shape[d];
  if (inner == 0 || outer == 0) return;
  int64_t total = inner * outer;
  int nt = num_threads();
  int64_t chunk = inner;
  if (outer < 2 * nt && total >= 2 * min_unit) chunk = std::max<int64_t>(min_unit / 4, (inner + 2 * nt - 1) / (2 * nt));
  int64_t nchunks = (inner + chunk - 1) / chunk;
  int64_t units = outer * nchunks;
  int64_t elems_per_unit = std::min(chunk, inner);
  int64_t grain = std::max<int64_t>(1, min_unit / std::max<int64_t>(1, elems_per_unit));
  int64_t inner_st[N];
  for (int k = 0; k < N; ++k) inner_st[k] = p.st[k][p.ndim - 1];
  auto body = [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      int64_t row = u / nchunks, c = u % nchunks;
      char* ptr[N];
      for (int k = 0; k < N; ++k) ptr[k] = p.base[k];
      int64_t r = row;
      for (int d = p.ndim - 2; d >= 0; --d) {
        int64_t i = r % p.shape[d];
        r /= p.shape[d];
        for (int k = 0; k < N; ++k) ptr[k] += i * p.st[k][d] * p.esize[k];
      }
      int64_t c0 = c * chunk, c1 = std::min(inner, c0 + chunk);
      for (int k = 0; k < N; ++k) ptr[k] += c0 * inner_st[k] * p.esize[k];
      fn(ptr, inner_st, c1 - c0);
    }
  };
  // one unit of work runs here, without building the pool's std::function
  if (units <= grain) body(0, units);
  else parallel_for(units, grain, body);
}

// ---- scalar helpers -----------------------------------------------------------------
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

template <class T> inline T sigmoid_(T x) { return sigmoid_fast(x); }
constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

template <class T> inline T gelu_(T x) { return T(0.5) * x * (T(1) + erf_fast(x * T(kSqrt1_2))); }
template <class T> inline T gelu_tanh_(T x) {
  T u = T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x);
  return T(0.5) * x * (T(1) + tanh_fast(u));
}

// A double argument (scalar operand, clamp bound, slope) converted to the element type:
// integers saturate (a plain cast of inf or 1e10 to int32 is undefined behaviour).
template <class T> inline T sat_cast(double d) {
  if constexpr (std::is_integral_v<T>) {
    if (d != d) return T(0);
    if (d <= static_cast<double>(std::numeric_limits<T>::min())) return std::numeric_limits<T>::min();
    if (d >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  }
  return static_cast<T>(d);
}
// Bool (uint8) results are stored as 0/1 whatever the arithmetic gave (true + true is true).
template <class O, class V> inline O to_out(V v) {
  if constexpr (std::is_same_v<O, uint8_t>) return static_cast<O>(v != V(0));
  else return static_cast<O>(v);
}

// ---- binary -----------------------------------------------------------------------
template <class T> inline T int_div(T a, T b) { return b == T(0) ? T(0) : a / b; }

template <class T, class O, BinaryOp OP>
inline O bin_raw(T a, T b) {
  if constexpr (OP == BinaryOp::Add) return a + b;
  else if constexpr (OP == BinaryOp::Sub) return a - b;
  else if constexpr (OP == BinaryOp::Mul) return a * b;
  else if constexpr (OP == BinaryOp::Div) {
    if constexpr (std::is_integral_v<T>) return int_div(a, b); else return a / b;
  } else if constexpr (OP == BinaryOp::Pow) return static_cast<O>(std::pow(a, b));
  else if constexpr (OP == BinaryOp::Maximum) return (a > b || a != a) ? a : b;
  else if constexpr (OP == BinaryOp::Minimum) return (a < b || a != a) ? a : b;
  else if constexpr (OP == BinaryOp::Eq) return a == b;
  else if constexpr (OP == BinaryOp::Ne) return a != b;
  else if constexpr (OP == BinaryOp::Lt) return a < b;
  else if constexpr (OP == BinaryOp::Le) return a <= b;
  else if constexpr (OP == BinaryOp::Gt) return a > b;
  else if constexpr (OP == BinaryOp::Ge) return a >= b;
  else if constexpr (OP == BinaryOp::LogicalAnd) return (a != T(0)) && (b != T(0));
  else if constexpr (OP == BinaryOp::LogicalOr) return (a != T(0)) || (b != T(0));
  else if constexpr (OP == BinaryOp::FloorDiv) {
    if constexpr (std::is_integral_v<T>) {
      if (b == T(0)) return O(0);
      T q = a / b;
      if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
      return q;
    } else return std::floor(a / b);
  } else if constexpr (OP == BinaryOp::Remainder) {
    if constexpr (std::is_integral_v<T>) {
      if (b == T(0)) return O(0);
      T r = a % b;
      if (r != 0 && ((r < 0) != (b < 0))) r += b;
      return r;
    } else {
      T r = std::fmod(a, b);
      if (r != T(0) && ((r < T(0)) != (b < T(0)))) r += b;
      return r;
    }
  } else return static_cast<O>(std::atan2(static_cast<double>(a), static_cast<double>(b)));
}

template <class T, class O, BinaryOp OP>
inline O bin(T a, T b) { return to_out<O>(bin_raw<T, O, OP>(a, b)); }

template <class T, class O, BinaryOp OP>
void binary_t(const View& a, const View& b, const View& out) {
  const View* vs[3] = {&out, &a, &b};
  Plan<3> p = make_plan<3>(vs);
  run<3>(p, [](char* const* ptr, const int64_t* st, int64_t n) {
    O* o = reinterpret_cast<O*>(ptr[0]);
    const T* x = reinterpret_cast<const T*>(ptr[1]);
    const T* y = reinterpret_cast<const T*>(ptr[2]);
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = bin<T, O, OP>(x[i], y[i]);
    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
      const T yv = y[0];
      for (int64_t i = 0; i < n; ++i) o[i] = bin<T, O, OP>(x[i], yv);
    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
      const T xv = x[0];
      for (int64_t i = 0; i < n; ++i) o[i] = bin<T, O, OP>(xv, y[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = bin<T, O, OP>(x[i * st[1]], y[i * st[2]]);
    }
  }, cheap_binary(OP) ? kCheapGrain : kGrain);
}

template <class T, class O, BinaryOp OP>
void binary_scalar_t(const View& a, double s, bool reverse, const View& out) {
  const View* vs[2] = {&out, &a};
  Plan<2> p = make_plan<2>(vs);
  const T sv = sat_cast<T>(s);
  run<2>(p, [sv, reverse](char* const* ptr, const int64_t* st, int64_t n) {
    O* o = reinterpret_cast<O*>(ptr[0]);
    const T* x = reinterpret_cast<const T*>(ptr[1]);
    if (st[0] == 1 && st[1] == 1) {
      if (reverse) for (int64_t i = 0; i < n; ++i) o[i] = bin<T, O, OP>(sv, x[i]);
      else for (int64_t i = 0; i < n; ++i) o[i] = bin<T, O, OP>(x[i], sv);
    } else {
      if (reverse) for (int64_t i = 0; i < n; ++i) o[i * st[0]] = bin<T, O, OP>(sv, x[i * st[1]]);
      else for (int64_t i = 0; i < n; ++i) o[i * st[0]] = bin<T, O, OP>(x[i * st[1]], sv);
    }
  }, cheap_binary(OP) ? kCheapGrain : kGrain);
}

template <class T, BinaryOp OP>
void binary_dispatch_out(const View& a, const View& b, const View& out, const double* scalar, bool reverse) {
  constexpr bool kCmp = OP == BinaryOp::Eq || OP == BinaryOp::Ne || OP == BinaryOp::Lt || OP == BinaryOp::Le ||
                        OP == BinaryOp::Gt || OP == BinaryOp::Ge || OP == BinaryOp::LogicalAnd ||
                        OP == BinaryOp::LogicalOr;
  using O = std::conditional_t<kCmp, uint8_t, T>;
  if (kCmp) NG_CHECK(out.dtype == DType::Bool, "binary: comparison output must be bool");
  else NG_CHECK(out.dtype == a.dtype, "binary: output dtype must equal the input dtype");
  if (scalar) binary_scalar_t<T, O, OP>(a, *scalar, reverse, out);
  else binary_t<T, O, OP>(a, b, out);
}

template <class T>
void binary_dispatch(BinaryOp op, const View& a, const View& b, const View& out, const double* scalar, bool reverse) {
  switch (op) {
#define NG_CASE(X) case BinaryOp::X: return binary_dispatch_out<T, BinaryOp::X>(a, b, out, scalar, reverse);
    NG_CASE(Add) NG_CASE(Sub) NG_CASE(Mul) NG_CASE(Div) NG_CASE(Pow) NG_CASE(Maximum) NG_CASE(Minimum)
    NG_CASE(Eq) NG_CASE(Ne) NG_CASE(Lt) NG_CASE(Le) NG_CASE(Gt) NG_CASE(Ge) NG_CASE(LogicalAnd)
    NG_CASE(LogicalOr) NG_CASE(FloorDiv) NG_CASE(Remainder) NG_CASE(Atan2)
#undef NG_CASE
  }
  throw Error("binary: unknown op " + std::to_string(static_cast<int>(op)));
}

void binary_any(BinaryOp op, const View& a, const View& b, const View& out, const double* scalar, bool reverse) {
  if (!scalar) NG_CHECK(a.dtype == b.dtype, "binary: operands must have the same dtype");
  switch (a.dtype) {
    case DType::F32: return binary_dispatch<float>(op, a, b, out, scalar, reverse);
    case DType::F64: return binary_dispatch<double>(op, a, b, out, scalar, reverse);
    case DType::I32: return binary_dispatch<int32_t>(op, a, b, out, scalar, reverse);
    case DType::Bool: return binary_dispatch<uint8_t>(op, a, b, out, scalar, reverse);
    default: throw Error(std::string("binary: unsupported dtype ") + dtype_name(a.dtype));
  }
}

// ---- unary ------------------------------------------------------------------------
template <class T, UnaryOp OP>
inline T un_raw(T x, T alpha, T beta) {
  if constexpr (OP == UnaryOp::Neg) return -x;
  else if constexpr (OP == UnaryOp::Exp) {
    if constexpr (std::is_floating_point_v<T>) return exp_fast(x); else return std::exp(x);
  }
  else if constexpr (OP == UnaryOp::Log) return std::log(x);
  else if constexpr (OP == UnaryOp::Sqrt) return std::sqrt(x);
  else if constexpr (OP == UnaryOp::Rsqrt) return T(1) / std::sqrt(x);
  else if constexpr (OP == UnaryOp::Abs) return x < T(0) ? -x : x;
  else if constexpr (OP == UnaryOp::Tanh) {
    if constexpr (std::is_floating_point_v<T>) return tanh_fast(x); else return std::tanh(x);
  }
  else if constexpr (OP == UnaryOp::Sigmoid) return sigmoid_(x);
  else if constexpr (OP == UnaryOp::Relu) return x > T(0) ? x : (x != x ? x : T(0));
  else if constexpr (OP == UnaryOp::Gelu) return gelu_(x);
  else if constexpr (OP == UnaryOp::GeluTanh) return gelu_tanh_(x);
  else if constexpr (OP == UnaryOp::Silu) return x * sigmoid_(x);
  else if constexpr (OP == UnaryOp::Sin) return std::sin(x);
  else if constexpr (OP == UnaryOp::Cos) return std::cos(x);
  else if constexpr (OP == UnaryOp::Reciprocal) return T(1) / x;
  else if constexpr (OP == UnaryOp::Square) return x * x;
  else if constexpr (OP == UnaryOp::Sign) return static_cast<T>((x > T(0)) - (x < T(0)));
  else if constexpr (OP == UnaryOp::Floor) return std::floor(x);
  else if constexpr (OP == UnaryOp::Ceil) return std::ceil(x);
  else if constexpr (OP == UnaryOp::Round) return std::nearbyint(x);
  else if constexpr (OP == UnaryOp::Log1p) return std::log1p(x);
  else if constexpr (OP == UnaryOp::Expm1) return std::expm1(x);
  else if constexpr (OP == UnaryOp::Erf) return std::erf(x);
  else if constexpr (OP == UnaryOp::Affine) return alpha * x + beta;
  else if constexpr (OP == UnaryOp::Clamp) return x != x ? x : std::min(std::max(x, alpha), beta);
  else if constexpr (OP == UnaryOp::PowScalar) {
    if (alpha == T(2)) return x * x;
    return std::pow(x, alpha);
  } else if constexpr (OP == UnaryOp::LeakyRelu) return x > T(0) ? x : alpha * x;
  else return x;
}

template <class T, UnaryOp OP>
inline T un(T x, T alpha, T beta) { return to_out<T>(un_raw<T, OP>(x, alpha, beta)); }

template <class T, UnaryOp OP>
void unary_t(const View& x, const View& out, double alpha_d, double beta_d) {
  const View* vs[2] = {&out, &x};
  Plan<2> p = make_plan<2>(vs);
  const T alpha = sat_cast<T>(alpha_d), beta = sat_cast<T>(beta_d);
  run<2>(p, [alpha, beta](char* const* ptr, const int64_t* st, int64_t n) {
    T* o = reinterpret_cast<T*>(ptr[0]);
    const T* a = reinterpret_cast<const T*>(ptr[1]);
    if (st[0] == 1 && st[1] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = un<T, OP>(a[i], alpha, beta);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = un<T, OP>(a[i * st[1]], alpha, beta);
    }
  }, cheap_unary(OP) ? kCheapGrain : kGrain);
}

template <class T>
void unary_bool_out(UnaryOp op, const View& x, const View& out) {
  NG_CHECK(out.dtype == DType::Bool, "unary: output must be bool");
  const View* vs[2] = {&out, &x};
  Plan<2> p = make_plan<2>(vs);
  run<2>(p, [op](char* const* ptr, const int64_t* st, int64_t n) {
    uint8_t* o = reinterpret_cast<uint8_t*>(ptr[0]);
    const T* a = reinterpret_cast<const T*>(ptr[1]);
    for (int64_t i = 0; i < n; ++i) {
      T v = a[i * st[1]];
      uint8_t r;
      if (op == UnaryOp::LogicalNot) r = v == T(0);
      else if (op == UnaryOp::IsNan) r = v != v;
      else if constexpr (!std::is_floating_point_v<T>) r = 0;  // integers are never infinite
      else r = (v == std::numeric_limits<T>::infinity() || v == -std::numeric_limits<T>::infinity());
      o[i * st[0]] = r;
    }
  });
}

template <class T>
void unary_dispatch(UnaryOp op, const View& x, const View& out, double alpha, double beta) {
  if (op == UnaryOp::LogicalNot || op == UnaryOp::IsNan || op == UnaryOp::IsInf) return unary_bool_out<T>(op, x, out);
  NG_CHECK(out.dtype == x.dtype, "unary: output dtype must equal the input dtype");
  switch (op) {
#define NG_CASE(X) case UnaryOp::X: return unary_t<T, UnaryOp::X>(x, out, alpha, beta);
    NG_CASE(Neg) NG_CASE(Exp) NG_CASE(Log) NG_CASE(Sqrt) NG_CASE(Rsqrt) NG_CASE(Abs) NG_CASE(Tanh)
    NG_CASE(Sigmoid) NG_CASE(Relu) NG_CASE(Gelu) NG_CASE(GeluTanh) NG_CASE(Silu) NG_CASE(Sin) NG_CASE(Cos)
    NG_CASE(Reciprocal) NG_CASE(Square) NG_CASE(Sign) NG_CASE(Floor) NG_CASE(Ceil) NG_CASE(Round)
    NG_CASE(Log1p) NG_CASE(Expm1) NG_CASE(Erf) NG_CASE(Affine) NG_CASE(Clamp) NG_CASE(PowScalar)
    NG_CASE(LeakyRelu)
#undef NG_CASE
    default: break;
  }
  throw Error("unary: unknown op " + std::to_string(static_cast<int>(op)));
}

// ---- unary backward -----------------------------------------------------------------
template <class T, UnaryGradOp OP>
inline T ungrad(T x, T g, T alpha) {
  if constexpr (OP == UnaryGradOp::Relu) return x > T(0) ? g : T(0);
  else if constexpr (OP == UnaryGradOp::Gelu) {
    T cdf = T(0.5) * (T(1) + erf_fast(x * T(kSqrt1_2)));
    T pdf = T(kInvSqrt2Pi) * exp_fast(T(-0.5) * x * x);
    return g * (cdf + x * pdf);
  } else if constexpr (OP == UnaryGradOp::GeluTanh) {
    T x3 = x * x * x;
    T u = T(kSqrt2OverPi) * (x + T(0.044715) * x3);
    T t = tanh_fast(u);
    T du = T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * x * x);
    return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);
  } else if constexpr (OP == UnaryGradOp::Silu) {
    T s = sigmoid_(x);
    return g * s * (T(1) + x * (T(1) - s));
  } else if constexpr (OP == UnaryGradOp::Tanh) return g * (T(1) - x * x);       // x holds y = tanh
  else if constexpr (OP == UnaryGradOp::Sigmoid) return g * x * (T(1) - x);     // x holds y = sigmoid
  else return x > T(0) ? g : alpha * g;                                          // LeakyRelu
}

template <class T, UnaryGradOp OP>
void unary_backward_t(const View& x, const View& gy, const View& gx, double alpha_d) {
  const View* vs[3] = {&gx, &x, &gy};
  Plan<3> p = make_plan<3>(vs);
  const T alpha = static_cast<T>(alpha_d);
  run<3>(p, [alpha](char* const* ptr, const int64_t* st, int64_t n) {
    T* o = reinterpret_cast<T*>(ptr[0]);
    const T* a = reinterpret_cast<const T*>(ptr[1]);
    const T* g = reinterpret_cast<const T*>(ptr[2]);
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = ungrad<T, OP>(a[i], g[i], alpha);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = ungrad<T, OP>(a[i * st[1]], g[i * st[2]], alpha);
    }
  });
}

template <class T>
void unary_backward_dispatch(UnaryGradOp op, const View& x, const View& gy, const View& gx, double alpha) {
  switch (op) {
#define NG_CASE(X) case UnaryGradOp::X: return unary_backward_t<T, UnaryGradOp::X>(x, gy, gx, alpha);
    NG_CASE(Relu) NG_CASE(Gelu) NG_CASE(GeluTanh) NG_CASE(Silu) NG_CASE(Tanh) NG_CASE(Sigmoid) NG_CASE(LeakyRelu)
#undef NG_CASE
  }
  throw Error("unaryBackward: unknown op");
}

// ---- where / copy / fill --------------------------------------------------------------
template <class T>
void where_t(const View& cond, const View& a, const View& b, const View& out) {
  const View* vs[4] = {&out, &cond, &a, &b};
  Plan<4> p = make_plan<4>(vs);
  run<4>(p, [](char* const* ptr, const int64_t* st, int64_t n) {
    T* o = reinterpret_cast<T*>(ptr[0]);
    const uint8_t* c = reinterpret_cast<const uint8_t*>(ptr[1]);
    const T* x = reinterpret_cast<const T*>(ptr[2]);
    const T* y = reinterpret_cast<const T*>(ptr[3]);
    if (st[0] == 1 && st[1] == 1 && st[2] == 1 && st[3] == 1) {
      for (int64_t i = 0; i < n; ++i) o[i] = c[i] ? x[i] : y[i];
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = c[i * st[1]] ? x[i * st[2]] : y[i * st[3]];
    }
  });
}

template <class S, class D>
inline D convert(S v) {
  if constexpr (std::is_same_v<D, uint8_t>) return v != S(0);
  else return static_cast<D>(v);
}

// ---- strided copy ---------------------------------------------------------------------
// Algorithm: the coalesced plan's rows are walked as runs along the last outer dim (one
// index decomposition per run, not per row); same-dtype copies move bits by element size.
// Inner kernels: contiguous runs (memcpy, or an inline loop for short rows such as a head
// dim), broadcast runs (a fill), and, when the destination's inner dim is contiguous
// but the source's is not while another dim is contiguous in the source (a transpose),
// a cache-blocked tile copy: kTile source lines and destination lines stay in L1 while a
// kTile x kTile block moves. Memory traffic: source read once, destination written once.
// Elements per thread at least: on small machines waking the pool cost more than copying
// 256 KiB (measured: a 64K-float permute took 90 us on 2 threads, 30 us inline).
constexpr int64_t kCopyGrain = 1 << 18;
constexpr int64_t kTile = 16;

template <class S, class D>
inline void copy_run(D* o, int64_t so, const S* a, int64_t sa, int64_t n) {
  if (so == 1 && sa == 1) {
    if constexpr (std::is_same_v<S, D>) {
      if (n * static_cast<int64_t>(sizeof(S)) > 128) std::memcpy(o, a, static_cast<size_t>(n) * sizeof(S));
      else for (int64_t i = 0; i < n; ++i) o[i] = a[i];  // short runs: inline, no call
    } else {
      for (int64_t i = 0; i < n; ++i) o[i] = convert<S, D>(a[i]);
    }
  } else if (so == 1 && sa == 0) {
    const D v = convert<S, D>(a[0]);
    for (int64_t i = 0; i < n; ++i) o[i] = v;
  } else if (so == 1) {
    for (int64_t i = 0; i < n; ++i) o[i] = convert<S, D>(a[i * sa]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * so] = convert<S, D>(a[i * sa]);
  }
}

// Odometer over the outer dims of a copy (strides in elements).
struct Walk {
  int nd = 0;
  int64_t shape[kMaxDims], so[kMaxDims], sa[kMaxDims], idx[kMaxDims];
  int64_t oo = 0, ao = 0;  // current element offsets
  void seek(int64_t r) {
    oo = ao = 0;
    for (int d = nd - 1; d >= 0; --d) {
      idx[d] = r % shape[d];
      r /= shape[d];
      oo += idx[d] * so[d];
      ao += idx[d] * sa[d];
    }
  }
  void next() {
    for (int d = nd - 1; d >= 0; --d) {
      oo += so[d];
      ao += sa[d];
      if (++idx[d] < shape[d]) return;
      oo -= shape[d] * so[d];
      ao -= shape[d] * sa[d];
      idx[d] = 0;
    }
  }
};

template <class S, class D>
void copy_t(const View& src, const View& dst) {
  const View* vs[2] = {&dst, &src};
  Plan<2> p = make_plan<2>(vs);
  D* obase = reinterpret_cast<D*>(p.base[0]);
  const S* abase = reinterpret_cast<const S*>(p.base[1]);
  int last = p.ndim - 1;
  int64_t ni = p.shape[last], soi = p.st[0][last], sai = p.st[1][last];
  int64_t total = 1;
  for (int d = 0; d < p.ndim; ++d) total *= p.shape[d];
  if (total == 0) return;
  // A transpose: the destination is contiguous along the inner dim, the source along dim j.
  int j = -1;
  if (soi == 1 && sai != 1 && sai != 0 && ni >= 4)
    for (int d = 0; d < last; ++d)
      if (p.st[1][d] == 1 && p.shape[d] >= 4) j = d;
  Walk w;
  for (int d = 0; d < last; ++d) {
    if (d == j) continue;
    w.shape[w.nd] = p.shape[d];
    w.so[w.nd] = p.st[0][d];
    w.sa[w.nd] = p.st[1][d];
    ++w.nd;
  }
  int64_t rows = 1;
  for (int d = 0; d < w.nd; ++d) rows *= w.shape[d];
  if (j >= 0) {
    const int64_t nj = p.shape[j], soj = p.st[0][j];
    const int64_t nbj = (nj + kTile - 1) / kTile;
    const int64_t units = rows * nbj;
    const int64_t grain = std::max<int64_t>(1, kCopyGrain / (kTile * ni));
    parallel_for(units, grain, [&](int64_t u0, int64_t u1) {
      Walk wk = w;
      wk.seek(u0 / nbj);
      int64_t jb = u0 % nbj;
      for (int64_t u = u0; u < u1; ++u) {
        D* o = obase + wk.oo;
        const S* a = abase + wk.ao;
        const int64_t j0 = jb * kTile, j1 = std::min(nj, j0 + kTile);
        for (int64_t i0 = 0; i0 < ni; i0 += kTile) {
          const int64_t i1 = std::min(ni, i0 + kTile);
          for (int64_t jj = j0; jj < j1; ++jj) {
            D* od = o + jj * soj;
            const S* as = a + jj;
            for (int64_t i = i0; i < i1; ++i) od[i] = convert<S, D>(as[i * sai]);
          }
        }
        if (++jb == nbj) {
          jb = 0;
          wk.next();
        }
      }
    });
    return;
  }
  // Rows of the inner dim; a long inner dim with few rows is cut into chunks for the pool.
  int nt = num_threads();
  int64_t chunk = ni;
  if (rows < 2 * nt && total >= 2 * kCopyGrain) chunk = std::max<int64_t>(kCopyGrain / 2, (ni + 2 * nt - 1) / (2 * nt));
  const int64_t nch = (ni + chunk - 1) / chunk;
  const int64_t units = rows * nch;
  const int64_t grain = std::max<int64_t>(1, kCopyGrain / std::min(chunk, ni));
  parallel_for(units, grain, [&](int64_t u0, int64_t u1) {
    Walk wk = w;
    if (nch == 1) {  // whole rows: a tight loop along the last outer dim, a seek per run of it
      const int l = wk.nd - 1;
      const int64_t so = l >= 0 ? wk.so[l] : 0, sa = l >= 0 ? wk.sa[l] : 0;
      for (int64_t r = u0; r < u1;) {
        wk.seek(r);
        const int64_t len = std::min(u1 - r, l >= 0 ? wk.shape[l] - wk.idx[l] : int64_t(1));
        D* o = obase + wk.oo;
        const S* a = abase + wk.ao;
        for (int64_t k = 0; k < len; ++k) copy_run<S, D>(o + k * so, soi, a + k * sa, sai, ni);
        r += len;
      }
      return;
    }
    wk.seek(u0 / nch);
    int64_t c = u0 % nch;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t c0 = c * chunk, n = std::min(ni, c0 + chunk) - c0;
      copy_run<S, D>(obase + wk.oo + c0 * soi, soi, abase + wk.ao + c0 * sai, sai, n);
      if (++c == nch) {
        c = 0;
        wk.next();
      }
    }
  });
}

// bf16 is stored as uint16; converted through float.
void copy_bf16(const View& src, const View& dst) {
  const View* vs[2] = {&dst, &src};
  Plan<2> p = make_plan<2>(vs);
  DType sd = src.dtype, dd = dst.dtype;
  run<2>(p, [sd, dd](char* const* ptr, const int64_t* st, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const char* s = ptr[1] + i * st[1] * static_cast<int64_t>(dtype_size(sd));
      char* d = ptr[0] + i * st[0] * static_cast<int64_t>(dtype_size(dd));
      float v;
      switch (sd) {
        case DType::BF16: v = bf16_to_f32(*reinterpret_cast<const uint16_t*>(s)); break;
        case DType::F32: v = *reinterpret_cast<const float*>(s); break;
        case DType::F64: v = static_cast<float>(*reinterpret_cast<const double*>(s)); break;
        case DType::I32: v = static_cast<float>(*reinterpret_cast<const int32_t*>(s)); break;
        default: v = *reinterpret_cast<const uint8_t*>(s) ? 1.f : 0.f; break;
      }
      switch (dd) {
        case DType::BF16: *reinterpret_cast<uint16_t*>(d) = f32_to_bf16(v); break;
        case DType::F32: *reinterpret_cast<float*>(d) = v; break;
        case DType::F64: *reinterpret_cast<double*>(d) = v; break;
        case DType::I32: *reinterpret_cast<int32_t*>(d) = static_cast<int32_t>(v); break;
        default: *reinterpret_cast<uint8_t*>(d) = v != 0.f; break;
      }
    }
  });
}

template <class S>
void copy_from(const View& src, const View& dst) {
  switch (dst.dtype) {
    case DType::F32: return copy_t<S, float>(src, dst);
    case DType::F64: return copy_t<S, double>(src, dst);
    case DType::I32: return copy_t<S, int32_t>(src, dst);
    case DType::Bool: return copy_t<S, uint8_t>(src, dst);
    default: throw Error(std::string("copy: unsupported destination dtype ") + dtype_name(dst.dtype));
  }
}

template <class T>
void fill_t(const View& out, double value) {
  const View* vs[1] = {&out};
  Plan<1> p = make_plan<1>(vs);
  const T v = std::is_same_v<T, uint8_t> ? static_cast<T>(value != 0) : sat_cast<T>(value);
  run<1>(p, [v](char* const* ptr, const int64_t* st, int64_t n) {
    T* o = reinterpret_cast<T*>(ptr[0]);
    if (st[0] == 1) for (int64_t i = 0; i < n; ++i) o[i] = v;
    else for (int64_t i = 0; i < n; ++i) o[i * st[0]] = v;
  });
}

}  // namespace

void binary(BinaryOp op, const View& a, const View& b, const View& out) { binary_any(op, a, b, out, nullptr, false); }

void binary_scalar(BinaryOp op, const View& a, double s, bool reverse, const View& out) {
  binary_any(op, a, a, out, &s, reverse);
}

void unary(UnaryOp op, const View& x, const View& out, double alpha, double beta) {
  switch (x.dtype) {
    case DType::F32: return unary_dispatch<float>(op, x, out, alpha, beta);
    case DType::F64: return unary_dispatch<double>(op, x, out, alpha, beta);
    case DType::I32: return unary_dispatch<int32_t>(op, x, out, alpha, beta);
    case DType::Bool: return unary_dispatch<uint8_t>(op, x, out, alpha, beta);
    default: throw Error(std::string("unary: unsupported dtype ") + dtype_name(x.dtype));
  }
}

void unary_backward(UnaryGradOp op, const View& x, const View& gy, const View& gx, double alpha) {
  NG_CHECK(x.dtype == gy.dtype && x.dtype == gx.dtype, "unaryBackward: dtypes differ");
  switch (x.dtype) {
    case DType::F32: return unary_backward_dispatch<float>(op, x, gy, gx, alpha);
    case DType::F64: return unary_backward_dispatch<double>(op, x, gy, gx, alpha);
    default: throw Error(std::string("unaryBackward: unsupported dtype ") + dtype_name(x.dtype));
  }
}

void where(const View& cond, const View& a, const View& b, const View& out) {
  NG_CHECK(cond.dtype == DType::Bool, "where: condition must be bool");
  NG_CHECK(a.dtype == b.dtype && a.dtype == out.dtype, "where: value dtypes differ");
  switch (out.dtype) {
    case DType::F32: return where_t<float>(cond, a, b, out);
    case DType::F64: return where_t<double>(cond, a, b, out);
    case DType::I32: return where_t<int32_t>(cond, a, b, out);
    case DType::Bool: return where_t<uint8_t>(cond, a, b, out);
    case DType::BF16:
    case DType::F16: return where_t<uint16_t>(cond, a, b, out);  // a selection: the bits move unchanged
    default: throw Error("where: unsupported dtype");
  }
}

void copy(const View& src, const View& dst) {
  if (src.dtype == dst.dtype) {  // the bits move unchanged: one kernel per element size
    switch (dtype_size(src.dtype)) {
      case 1: return copy_t<uint8_t, uint8_t>(src, dst);
      case 2: return copy_t<uint16_t, uint16_t>(src, dst);
      case 4: return copy_t<uint32_t, uint32_t>(src, dst);
      case 8: return copy_t<uint64_t, uint64_t>(src, dst);
      default: break;
    }
  }
  if (src.dtype == DType::BF16 || dst.dtype == DType::BF16) return copy_bf16(src, dst);
  switch (src.dtype) {
    case DType::F32: return copy_from<float>(src, dst);
    case DType::F64: return copy_from<double>(src, dst);
    case DType::I32: return copy_from<int32_t>(src, dst);
    case DType::Bool: return copy_from<uint8_t>(src, dst);
    default: throw Error(std::string("copy: unsupported source dtype ") + dtype_name(src.dtype));
  }
}

void fill(const View& out, double value) {
  switch (out.dtype) {
    case DType::F32: return fill_t<float>(out, value);
    case DType::F64: return fill_t<double>(out, value);
    case DType::I32: return fill_t<int32_t>(out, value);
    case DType::Bool: return fill_t<uint8_t>(out, value);
    case DType::BF16: {
      View o = out;
      return fill_t<uint16_t>(o, static_cast<double>(f32_to_bf16(static_cast<float>(value))));
    }
    default: throw Error("fill: unsupported dtype");
  }
}

}  // namespace NG_EW_NS
}  // namespace detail
}  // namespace ng
