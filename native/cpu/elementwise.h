// Elementwise kernels over strided views. Every input may be strided (stride 0 for
// broadcast dims); the output is any view (contiguous for fresh outputs, strided for
// in-place updates and copies into slices). Numbering shared with lib/ops/elementwise.ts.
#pragma once
#include "common.h"

namespace ng {

enum class BinaryOp : int32_t {
  Add = 0, Sub, Mul, Div, Pow, Maximum, Minimum,
  Eq, Ne, Lt, Le, Gt, Ge,   // comparisons: output dtype bool
  LogicalAnd, LogicalOr,    // on bool
  FloorDiv, Remainder, Atan2
};

enum class UnaryOp : int32_t {
  Neg = 0, Exp, Log, Sqrt, Rsqrt, Abs, Tanh, Sigmoid, Relu, Gelu, GeluTanh, Silu,
  Sin, Cos, Reciprocal, Square, Sign, Floor, Ceil, Round, Log1p, Expm1, Erf,
  Affine,      // alpha * x + beta
  Clamp,       // min(max(x, alpha), beta)
  PowScalar,   // x ** alpha
  LogicalNot,  // bool
  IsNan, IsInf, LeakyRelu // leaky: alpha = negative slope
};

// Backward of a unary op: gx = gy * f'(x) (or of y where cheaper), contiguous arrays.
enum class UnaryGradOp : int32_t { Relu = 0, Gelu, GeluTanh, Silu, Tanh, Sigmoid, LeakyRelu };

void binary(BinaryOp op, const View& a, const View& b, const View& out);
// a (op) s, or s (op) a when reverse.
void binary_scalar(BinaryOp op, const View& a, double s, bool reverse, const View& out);
void unary(UnaryOp op, const View& x, const View& out, double alpha, double beta);
void unary_backward(UnaryGradOp op, const View& x, const View& gy, const View& gx, double alpha);
// out = cond ? a : b (cond bool), all broadcast to out.
void where(const View& cond, const View& a, const View& b, const View& out);
// dst = src with dtype conversion; shapes equal, any strides.
void copy(const View& src, const View& dst);
void fill(const View& out, double value);

namespace detail {
// Implementations compiled twice (portable and AVX2/FMA) from elementwise_impl.h.
#define NG_EW_DECLS                                                                          \
  void binary(BinaryOp op, const View& a, const View& b, const View& out);                 \
  void binary_scalar(BinaryOp op, const View& a, double s, bool reverse, const View& out); \
  void unary(UnaryOp op, const View& x, const View& out, double alpha, double beta);        \
  void unary_backward(UnaryGradOp op, const View& x, const View& gy, const View& gx, double alpha); \
  void where(const View& cond, const View& a, const View& b, const View& out);              \
  void copy(const View& src, const View& dst);                                              \
  void fill(const View& out, double value);
namespace generic { NG_EW_DECLS }
namespace avx2 { NG_EW_DECLS }
}  // namespace detail

}  // namespace ng
