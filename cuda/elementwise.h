// CUDA twin of native/cpu/elementwise.h: the same entries over Views whose data are
// device pointers (View::device >= 0, all on the current device). Plain C++: the binding
// includes it whether or not CUDA is compiled in. Implemented in cuda/elementwise_*.cu.
//
// Differences from the CPU twin (supersets only): bfloat16 and float16 are computed in
// float for every op (the CPU kernels take no 16-bit arithmetic), and copy/fill convert
// to and from float16 (a CUDA buffer carries its real 16-bit dtype).
#pragma once
#include "common.h"
#include "cpu/elementwise.h"  // BinaryOp, UnaryOp, UnaryGradOp

namespace ng {
namespace cuda {

void binary(BinaryOp op, const View& a, const View& b, const View& out);
// a (op) s, or s (op) a when reverse.
void binary_scalar(BinaryOp op, const View& a, double s, bool reverse, const View& out);
void unary(UnaryOp op, const View& x, const View& out, double alpha, double beta);
void unary_backward(UnaryGradOp op, const View& x, const View& gy, const View& gx, double alpha);
// out = cond ? a : b (cond bool), all broadcast to out.
void where(const View& cond, const View& a, const View& b, const View& out);
// dst = src with dtype conversion (every pair of F32/F64/I32/Bool/BF16/F16); shapes
// equal, any strides.
void copy(const View& src, const View& dst);
void fill(const View& out, double value);

}  // namespace cuda
}  // namespace ng
