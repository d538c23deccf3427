// Run-time choice between the portable and the AVX2/FMA build of the elementwise family.
#include "cpu/elementwise.h"

namespace ng {

static bool use_avx2() {
  static const bool v = cpu_features().avx2 && cpu_features().fma;
  return v;
}

#define NG_PICK(fn, ...) (use_avx2() ? detail::avx2::fn(__VA_ARGS__) : detail::generic::fn(__VA_ARGS__))
void binary(BinaryOp op, const View& a, const View& b, const View& out) { NG_PICK(binary, op, a, b, out); }
void binary_scalar(BinaryOp op, const View& a, double s, bool reverse, const View& out) {
  NG_PICK(binary_scalar, op, a, s, reverse, out);
}
void unary(UnaryOp op, const View& x, const View& out, double alpha, double beta) { NG_PICK(unary, op, x, out, alpha, beta); }
void unary_backward(UnaryGradOp op, const View& x, const View& gy, const View& gx, double alpha) {
  NG_PICK(unary_backward, op, x, gy, gx, alpha);
}
void where(const View& cond, const View& a, const View& b, const View& out) { NG_PICK(where, cond, a, b, out); }
void copy(const View& src, const View& dst) { NG_PICK(copy, src, dst); }
void fill(const View& out, double value) { NG_PICK(fill, out, value); }
#undef NG_PICK

}  // namespace ng
