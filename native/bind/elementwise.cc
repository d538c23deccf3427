// Elementwise exports. A view argument is three JS values: (typed array or CUDA buffer,
// element offset, strides); every call also passes the common (output) shape. Each
// entry routes to the CPU kernels or to their CUDA twins by the arguments' device.
#include "bind/util.h"
#include "cpu/elementwise.h"
#include "cuda/elementwise.h"

namespace ng {

// binary(op, shape, out,o,os, a,ao,as, b,bo,bs)
static Napi::Value Binary(const Napi::CallbackInfo& info) {
  const char* op = "binary";
  int64_t code = to_i64(info[0], op, "op");
  auto shape = to_i64_vec(info[1], op, "shape");
  View out = view_at(info, 2, shape, op, "out");
  View a = view_at(info, 5, shape, op, "a");
  View b = view_at(info, 8, shape, op, "b");
  int dev = route(op, {&out, &a, &b});
  if (dev >= 0) NG_CUDA(cuda::binary(static_cast<BinaryOp>(code), a, b, out));
  else binary(static_cast<BinaryOp>(code), a, b, out);
  return info.Env().Undefined();
}

// binaryScalar(op, shape, out,o,os, a,ao,as, scalar, reverse)
static Napi::Value BinaryScalar(const Napi::CallbackInfo& info) {
  const char* op = "binaryScalar";
  int64_t code = to_i64(info[0], op, "op");
  auto shape = to_i64_vec(info[1], op, "shape");
  View out = view_at(info, 2, shape, op, "out");
  View a = view_at(info, 5, shape, op, "a");
  double s = to_f64(info[8], op, "scalar");
  bool reverse = to_bool(info[9]);
  int dev = route(op, {&out, &a});
  if (dev >= 0) NG_CUDA(cuda::binary_scalar(static_cast<BinaryOp>(code), a, s, reverse, out));
  else binary_scalar(static_cast<BinaryOp>(code), a, s, reverse, out);
  return info.Env().Undefined();
}

// unary(op, shape, out,o,os, x,xo,xs, alpha, beta)
static Napi::Value Unary(const Napi::CallbackInfo& info) {
  const char* op = "unary";
  int64_t code = to_i64(info[0], op, "op");
  auto shape = to_i64_vec(info[1], op, "shape");
  View out = view_at(info, 2, shape, op, "out");
  View x = view_at(info, 5, shape, op, "x");
  double alpha = to_f64(info[8], op, "alpha"), beta = to_f64(info[9], op, "beta");
  int dev = route(op, {&out, &x});
  if (dev >= 0) NG_CUDA(cuda::unary(static_cast<UnaryOp>(code), x, out, alpha, beta));
  else unary(static_cast<UnaryOp>(code), x, out, alpha, beta);
  return info.Env().Undefined();
}

// unaryBackward(op, shape, gx,o,s, x,o,s, gy,o,s, alpha)
static Napi::Value UnaryBackward(const Napi::CallbackInfo& info) {
  const char* op = "unaryBackward";
  int64_t code = to_i64(info[0], op, "op");
  auto shape = to_i64_vec(info[1], op, "shape");
  View gx = view_at(info, 2, shape, op, "gx");
  View x = view_at(info, 5, shape, op, "x");
  View gy = view_at(info, 8, shape, op, "gy");
  double alpha = to_f64(info[11], op, "alpha");
  int dev = route(op, {&gx, &x, &gy});
  if (dev >= 0) NG_CUDA(cuda::unary_backward(static_cast<UnaryGradOp>(code), x, gy, gx, alpha));
  else unary_backward(static_cast<UnaryGradOp>(code), x, gy, gx, alpha);
  return info.Env().Undefined();
}

// where(shape, out,o,s, cond,o,s, a,o,s, b,o,s)
static Napi::Value Where(const Napi::CallbackInfo& info) {
  const char* op = "where";
  auto shape = to_i64_vec(info[0], op, "shape");
  View out = view_at(info, 1, shape, op, "out");
  View c = view_at(info, 4, shape, op, "condition");
  View a = view_at(info, 7, shape, op, "input");
  View b = view_at(info, 10, shape, op, "other");
  int dev = route(op, {&out, &c, &a, &b});
  if (dev >= 0) NG_CUDA(cuda::where(c, a, b, out));
  else where(c, a, b, out);
  return info.Env().Undefined();
}

// copy(shape, dst,o,s, src,o,s)
static Napi::Value Copy(const Napi::CallbackInfo& info) {
  const char* op = "copy";
  auto shape = to_i64_vec(info[0], op, "shape");
  View dst = view_at(info, 1, shape, op, "dst");
  View src = view_at(info, 4, shape, op, "src");
  int dev = route(op, {&dst, &src});
  if (dev >= 0) NG_CUDA(cuda::copy(src, dst));
  else copy(src, dst);
  return info.Env().Undefined();
}

// fill(shape, out,o,s, value)
static Napi::Value Fill(const Napi::CallbackInfo& info) {
  const char* op = "fill";
  auto shape = to_i64_vec(info[0], op, "shape");
  View out = view_at(info, 1, shape, op, "out");
  double value = to_f64(info[4], op, "value");
  int dev = route(op, {&out});
  if (dev >= 0) NG_CUDA(cuda::fill(out, value));
  else fill(out, value);
  return info.Env().Undefined();
}

void InitElementwise(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "binary", Binary);
  NG_EXPORT(exports, env, "binaryScalar", BinaryScalar);
  NG_EXPORT(exports, env, "unary", Unary);
  NG_EXPORT(exports, env, "unaryBackward", UnaryBackward);
  NG_EXPORT(exports, env, "where", Where);
  NG_EXPORT(exports, env, "copy", Copy);
  NG_EXPORT(exports, env, "fill", Fill);
}

}  // namespace ng
