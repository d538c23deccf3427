// Unary elementwise ops and their backward on CUDA (twin of native/cpu/elementwise_impl.h:
// unary, unary_backward). Same formulas as the CPU; where the CPU uses its vectorisable
// approximations (exp/tanh/sigmoid within ~2 ulp, erf within 1.5e-7) the GPU uses the
// CUDA math library (expf, tanhf, erff: exact GELU), so results agree to float rounding.
//
// Instantiated per storage type and output kind (same dtype, or bool for logicalNot /
// isnan / isinf); the op is a run-time switch taken once per vector. Integer tensors
// compute float-only ops (exp, log, ...) in double and truncate, as the CPU's integer
// instantiations do through libm. Memory traffic: read x once (x and gy for backward),
// write the output once.
#include <cmath>
#include <string>

#include "cuda/common.cuh"
#include "cuda/elementwise.h"
#include "cuda/elementwise_impl.cuh"

namespace ng {
namespace cuda {
namespace {

using namespace ew;

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

// float/double math (the overloads resolve to expf/exp etc.)
template <class C> __device__ __forceinline__ C sigmoid_(C x) {
  if constexpr (std::is_same_v<C, float>) {
    const float e = expf(-fabsf(x));
    const float s = 1.0f / (1.0f + e);  // sigmoid(|x|): never overflows
    return x >= 0.0f ? s : 1.0f - s;
  } else {
    return x >= 0.0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
  }
}

// Float-only formulas, C floating.
template <UnaryOp OP, class C>
__device__ __forceinline__ C un_float(C x, C alpha, C beta) {
  if constexpr (OP == UnaryOp::Neg) return -x;
  else if constexpr (OP == UnaryOp::Exp) return exp(x);
  else if constexpr (OP == UnaryOp::Log) return log(x);
  else if constexpr (OP == UnaryOp::Sqrt) return sqrt(x);
  else if constexpr (OP == UnaryOp::Rsqrt) return C(1) / sqrt(x);
  else if constexpr (OP == UnaryOp::Abs) return x < C(0) ? -x : x;
  else if constexpr (OP == UnaryOp::Tanh) return tanh(x);
  else if constexpr (OP == UnaryOp::Sigmoid) return sigmoid_(x);
  else if constexpr (OP == UnaryOp::Relu) return x > C(0) ? x : (x != x ? x : C(0));
  else if constexpr (OP == UnaryOp::Gelu) return C(0.5) * x * (C(1) + erf(x * C(kSqrt1_2)));
  else if constexpr (OP == UnaryOp::GeluTanh) {
    const C u = C(kSqrt2OverPi) * (x + C(0.044715) * x * x * x);
    return C(0.5) * x * (C(1) + tanh(u));
  } else if constexpr (OP == UnaryOp::Silu) return x * sigmoid_(x);
  else if constexpr (OP == UnaryOp::Sin) return sin(x);
  else if constexpr (OP == UnaryOp::Cos) return cos(x);
  else if constexpr (OP == UnaryOp::Reciprocal) return C(1) / x;
  else if constexpr (OP == UnaryOp::Square) return x * x;
  else if constexpr (OP == UnaryOp::Sign) return static_cast<C>((x > C(0)) - (x < C(0)));
  else if constexpr (OP == UnaryOp::Floor) return floor(x);
  else if constexpr (OP == UnaryOp::Ceil) return ceil(x);
  else if constexpr (OP == UnaryOp::Round) return rint(x);  // half to even, as nearbyint
  else if constexpr (OP == UnaryOp::Log1p) return log1p(x);
  else if constexpr (OP == UnaryOp::Expm1) return expm1(x);
  else if constexpr (OP == UnaryOp::Erf) return erf(x);
  else if constexpr (OP == UnaryOp::Affine) return alpha * x + beta;
  else if constexpr (OP == UnaryOp::Clamp) {
    if (x != x) return x;
    const C m = x < alpha ? alpha : x;  // std::max(x, alpha)
    return beta < m ? beta : m;         // std::min(m, beta)
  } else if constexpr (OP == UnaryOp::PowScalar) return alpha == C(2) ? x * x : pow(x, alpha);
  else return x > C(0) ? x : alpha * x;  // LeakyRelu
}

// Integer (int32 / bool) formulas, C = int: exact ops in int, the rest through double.
template <UnaryOp OP>
__device__ __forceinline__ int un_int(int x, int alpha, int beta) {
  if constexpr (OP == UnaryOp::Neg) return -x;
  else if constexpr (OP == UnaryOp::Abs) return x < 0 ? -x : x;
  else if constexpr (OP == UnaryOp::Relu) return x > 0 ? x : 0;
  else if constexpr (OP == UnaryOp::Square) return x * x;
  else if constexpr (OP == UnaryOp::Sign) return (x > 0) - (x < 0);
  else if constexpr (OP == UnaryOp::Floor || OP == UnaryOp::Ceil || OP == UnaryOp::Round) return x;
  else if constexpr (OP == UnaryOp::Affine) return alpha * x + beta;
  else if constexpr (OP == UnaryOp::Clamp) {
    const int m = x < alpha ? alpha : x;
    return beta < m ? beta : m;
  } else if constexpr (OP == UnaryOp::PowScalar) {
    return alpha == 2 ? x * x : ipow(x, alpha);
  } else if constexpr (OP == UnaryOp::LeakyRelu) return x > 0 ? x : alpha * x;
  else return static_cast<int>(un_float<OP, double>(static_cast<double>(x), alpha, beta));
}

template <UnaryOp OP, class C>
__device__ __forceinline__ C un(C x, C alpha, C beta) {
  if constexpr (std::is_integral_v<C>) return un_int<OP>(x, alpha, beta);
  else return un_float<OP, C>(x, alpha, beta);
}

template <UnaryOp OP, class C>
__device__ __forceinline__ bool un_bool(C x) {
  if constexpr (OP == UnaryOp::LogicalNot) return x == C(0);
  else if constexpr (std::is_integral_v<C>) return false;  // isnan / isinf of an integer
  else if constexpr (OP == UnaryOp::IsNan) return x != x;
  else return isinf(x);
}

// Rarely used ops (and, for integer tensors, every op that goes through double): one
// out-of-line copy per compute type, called from the vector loops. Inlining them 4-16
// times into every kernel would multiply the build time for no gain where they are used.
template <class C>
__device__ __noinline__ C un_cold(UnaryOp op, C x, C alpha, C beta) {
#define NG_C(OPC) case UnaryOp::OPC: return un<UnaryOp::OPC, C>(x, alpha, beta);
  switch (op) {
    NG_C(Neg) NG_C(Exp) NG_C(Log) NG_C(Sqrt) NG_C(Rsqrt) NG_C(Abs) NG_C(Tanh) NG_C(Sigmoid) NG_C(Relu)
    NG_C(Gelu) NG_C(GeluTanh) NG_C(Silu) NG_C(Sin) NG_C(Cos) NG_C(Reciprocal) NG_C(Square) NG_C(Sign)
    NG_C(Floor) NG_C(Ceil) NG_C(Round) NG_C(Log1p) NG_C(Expm1) NG_C(Erf) NG_C(Affine) NG_C(Clamp)
    NG_C(PowScalar) NG_C(LeakyRelu)
    default: return x;
  }
#undef NG_C
}

// r[k] = op(x[k]) for k < V with the switch outside the loop. The ops of the hot list
// are inlined (unrolled over the vector); the rest call un_cold.
template <class C, bool kBool, int V, class R>
__device__ __forceinline__ void apply(UnaryOp op, const C (&x)[V], R (&r)[V], C alpha, C beta) {
#define NG_U(OPC) \
  case UnaryOp::OPC: _Pragma("unroll") for (int k = 0; k < V; ++k) r[k] = un<UnaryOp::OPC, C>(x[k], alpha, beta); return;
#define NG_UB(OPC) \
  case UnaryOp::OPC: _Pragma("unroll") for (int k = 0; k < V; ++k) r[k] = un_bool<UnaryOp::OPC, C>(x[k]); return;
  if constexpr (kBool) {
    switch (op) {
      NG_UB(LogicalNot) NG_UB(IsNan) NG_UB(IsInf)
      default: return;
    }
  } else {
    switch (op) {
      NG_U(Neg) NG_U(Abs) NG_U(Relu) NG_U(Square) NG_U(Sign) NG_U(Floor) NG_U(Ceil) NG_U(Round) NG_U(Affine)
      NG_U(Clamp) NG_U(LeakyRelu)
      case UnaryOp::PowScalar:  // x ** 2 inline, other exponents out of line
#pragma unroll
        for (int k = 0; k < V; ++k) r[k] = alpha == C(2) ? x[k] * x[k] : un_cold<C>(op, x[k], alpha, beta);
        return;
      default:
        break;
    }
    if constexpr (!std::is_integral_v<C>) {
      switch (op) {
        NG_U(Exp) NG_U(Log) NG_U(Sqrt) NG_U(Rsqrt) NG_U(Tanh) NG_U(Sigmoid) NG_U(Gelu) NG_U(GeluTanh) NG_U(Silu)
        NG_U(Reciprocal)
        default: break;
      }
    }
#pragma unroll
    for (int k = 0; k < V; ++k) r[k] = un_cold<C>(op, x[k], alpha, beta);
  }
#undef NG_U
#undef NG_UB
}

template <class T, bool kBool> struct UnaryF {
  using C = C_t<T>;
  using O = std::conditional_t<kBool, uint8_t, T>;
  using R = std::conditional_t<kBool, bool, C>;
  static constexpr int kVec = 16 / sizeof(T);
  const T* x;
  O* o;
  C alpha, beta;
  int mx;  // Mode of x (kTensor or kBroadcast)
  UnaryOp op;
  bool vec_ok;

  __device__ __forceinline__ static O store(R r) {
    if constexpr (kBool) return static_cast<uint8_t>(r);
    else return from_c<T>(r);
  }
  __device__ __forceinline__ void vec(int64_t i) const {
    C a[kVec];
    R r[kVec];
    load_vec<T, kVec>(x, mx, C(0), i, a);
    apply<C, kBool, kVec, R>(op, a, r, alpha, beta);
    Vec<O, kVec> out;
#pragma unroll
    for (int k = 0; k < kVec; ++k) out.v[k] = store(r[k]);
    *reinterpret_cast<Vec<O, kVec>*>(o + i) = out;
  }
  __device__ __forceinline__ void one(int64_t i) const {
    C a[1] = {load_one<T>(x, mx, C(0), i)};
    R r[1];
    apply<C, kBool, 1, R>(op, a, r, alpha, beta);
    o[i] = store(r[0]);
  }
  __device__ __forceinline__ void at(const int64_t* off) const {
    C a[1] = {to_c<T>(x[off[1]])};
    R r[1];
    apply<C, kBool, 1, R>(op, a, r, alpha, beta);
    o[off[0]] = store(r[0]);
  }
};

// The CPU's sat_cast<T>: integer parameters saturate (bool: to [0, 255]).
template <class T> C_t<T> param_as(double d) {
  if constexpr (std::is_same_v<T, int32_t> || std::is_same_v<T, uint8_t>) {
    const double lo = std::is_same_v<T, uint8_t> ? 0.0 : -2147483648.0;
    const double hi = std::is_same_v<T, uint8_t> ? 255.0 : 2147483647.0;
    if (d != d) return 0;
    if (d <= lo) return static_cast<int>(lo);
    if (d >= hi) return static_cast<int>(hi);
    return static_cast<int>(static_cast<T>(d));
  } else {
    return static_cast<C_t<T>>(d);
  }
}

template <class T, bool kBool>
void run_unary(UnaryOp op, const View& x, const View& out, double alpha, double beta) {
  using F = UnaryF<T, kBool>;
  F f{};
  f.x = x.ptr<T>();
  f.o = out.ptr<typename F::O>();
  f.alpha = param_as<T>(alpha);
  f.beta = param_as<T>(beta);
  f.op = op;
  const View* vs[2] = {&out, &x};
  Plan<2> p = make_plan<2>(vs);
  if (p.flat()) {
    f.mx = p.st[1][0] == 0 ? kBroadcast : kTensor;
    f.vec_ok = aligned_for<typename F::O, F::kVec>(f.o) && (f.mx != kTensor || aligned_for<T, F::kVec>(f.x));
    return launch_flat(f, p.numel(), "unary");
  }
  launch_strided<2>(f, p, "unary");
}

// ---- backward: gx = gy * f'(x) (for tanh and sigmoid, x holds the forward output y) -----
template <UnaryGradOp OP, class C>
__device__ __forceinline__ C ungrad(C x, C g, C alpha) {
  if constexpr (OP == UnaryGradOp::Relu) return x > C(0) ? g : C(0);
  else if constexpr (OP == UnaryGradOp::Gelu) {
    const C cdf = C(0.5) * (C(1) + erf(x * C(kSqrt1_2)));
    const C pdf = C(kInvSqrt2Pi) * exp(C(-0.5) * x * x);
    return g * (cdf + x * pdf);
  } else if constexpr (OP == UnaryGradOp::GeluTanh) {
    const C x3 = x * x * x;
    const C u = C(kSqrt2OverPi) * (x + C(0.044715) * x3);
    const C t = tanh(u);
    const C du = C(kSqrt2OverPi) * (C(1) + C(3 * 0.044715) * x * x);
    return g * (C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * du);
  } else if constexpr (OP == UnaryGradOp::Silu) {
    const C s = sigmoid_(x);
    return g * s * (C(1) + x * (C(1) - s));
  } else if constexpr (OP == UnaryGradOp::Tanh) return g * (C(1) - x * x);
  else if constexpr (OP == UnaryGradOp::Sigmoid) return g * x * (C(1) - x);
  else return x > C(0) ? g : alpha * g;  // LeakyRelu
}

template <class C, int V>
__device__ __forceinline__ void apply_grad(UnaryGradOp op, const C (&x)[V], const C (&g)[V], C (&r)[V], C alpha) {
#define NG_G(OPC) \
  case UnaryGradOp::OPC: _Pragma("unroll") for (int k = 0; k < V; ++k) r[k] = ungrad<UnaryGradOp::OPC, C>(x[k], g[k], alpha); return;
  switch (op) {
    NG_G(Relu) NG_G(Gelu) NG_G(GeluTanh) NG_G(Silu) NG_G(Tanh) NG_G(Sigmoid) NG_G(LeakyRelu)
    default: return;
  }
#undef NG_G
}

template <class T> struct UnaryGradF {
  using C = C_t<T>;
  static constexpr int kVec = 16 / sizeof(T);
  const T* x;
  const T* g;
  T* o;
  C alpha;
  int mx, mg;
  UnaryGradOp op;
  bool vec_ok;

  __device__ __forceinline__ void vec(int64_t i) const {
    C a[kVec], b[kVec], r[kVec];
    load_vec<T, kVec>(x, mx, C(0), i, a);
    load_vec<T, kVec>(g, mg, C(0), i, b);
    apply_grad<C, kVec>(op, a, b, r, alpha);
    Vec<T, kVec> out;
#pragma unroll
    for (int k = 0; k < kVec; ++k) out.v[k] = from_c<T>(r[k]);
    *reinterpret_cast<Vec<T, kVec>*>(o + i) = out;
  }
  __device__ __forceinline__ void one(int64_t i) const {
    C a[1] = {load_one<T>(x, mx, C(0), i)}, b[1] = {load_one<T>(g, mg, C(0), i)}, r[1];
    apply_grad<C, 1>(op, a, b, r, alpha);
    o[i] = from_c<T>(r[0]);
  }
  __device__ __forceinline__ void at(const int64_t* off) const {
    C a[1] = {to_c<T>(x[off[1]])}, b[1] = {to_c<T>(g[off[2]])}, r[1];
    apply_grad<C, 1>(op, a, b, r, alpha);
    o[off[0]] = from_c<T>(r[0]);
  }
};

}  // namespace

void unary(UnaryOp op, const View& x, const View& out, double alpha, double beta) {
  const int code = static_cast<int>(op);
  if (code < 0 || code > static_cast<int>(UnaryOp::LeakyRelu))
    throw Error("unary: unknown op " + std::to_string(code));
  const bool bool_out = op == UnaryOp::LogicalNot || op == UnaryOp::IsNan || op == UnaryOp::IsInf;
  if (bool_out) NG_CHECK(out.dtype == DType::Bool, "unary: output must be bool");
  else NG_CHECK(out.dtype == x.dtype, "unary: output dtype must equal the input dtype");
  dispatch_all(x.dtype, "unary", [&](auto tag) {
    using T = decltype(tag);
    if (bool_out) run_unary<T, true>(op, x, out, alpha, beta);
    else run_unary<T, false>(op, x, out, alpha, beta);
  });
}

void unary_backward(UnaryGradOp op, const View& x, const View& gy, const View& gx, double alpha) {
  const int code = static_cast<int>(op);
  if (code < 0 || code > static_cast<int>(UnaryGradOp::LeakyRelu)) throw Error("unaryBackward: unknown op");
  NG_CHECK(x.dtype == gy.dtype && x.dtype == gx.dtype, "unaryBackward: dtypes differ");
  dispatch_float(x.dtype, "unaryBackward", [&](auto tag) {
    using T = decltype(tag);
    using F = UnaryGradF<T>;
    F f{};
    f.x = x.ptr<T>();
    f.g = gy.ptr<T>();
    f.o = gx.ptr<T>();
    f.alpha = static_cast<C_t<T>>(alpha);
    f.op = op;
    const View* vs[3] = {&gx, &x, &gy};
    Plan<3> p = make_plan<3>(vs);
    if (p.flat()) {
      f.mx = p.st[1][0] == 0 ? kBroadcast : kTensor;
      f.mg = p.st[2][0] == 0 ? kBroadcast : kTensor;
      f.vec_ok = aligned_for<T, F::kVec>(f.o) && (f.mx != kTensor || aligned_for<T, F::kVec>(f.x)) &&
                 (f.mg != kTensor || aligned_for<T, F::kVec>(f.g));
      return launch_flat(f, p.numel(), "unaryBackward");
    }
    launch_strided<3>(f, p, "unaryBackward");
  });
}

}  // namespace cuda
}  // namespace ng
