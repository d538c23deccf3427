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

// ---- packed entries: shapes, strides, offsets and scalars come in the argument block
// (bind/util.h), the buffers as arguments; the per-op host path of lib/ops/elementwise.ts.

// setArgBlock(Float64Array): the block of this environment; a reference keeps it alive.
static thread_local napi_ref g_block_ref = nullptr;
static void drop_block(void*) {
  set_arg_block(nullptr);
  g_block_ref = nullptr;  // (the environment that owned the reference is going away)
}
static Napi::Value SetArgBlock(const Napi::CallbackInfo& info) {
  const char* op = "setArgBlock";
  napi_env env = info.Env();
  napi_typedarray_type type;
  size_t len = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, info[0], &type, &len, &data, nullptr, nullptr) != napi_ok ||
      type != napi_float64_array || len < kArgBlockLen)
    throw Error(std::string(op) + ": expects a Float64Array of at least " + std::to_string(kArgBlockLen) + " elements");
  napi_ref ref;
  if (napi_create_reference(env, info[0], 1, &ref) != napi_ok) throw Error(std::string(op) + ": cannot keep the block");
  if (g_block_ref != nullptr) napi_delete_reference(env, g_block_ref);
  else napi_add_env_cleanup_hook(env, drop_block, nullptr);
  g_block_ref = ref;
  set_arg_block(static_cast<const double*>(data));
  return Napi::Value();
}

// binaryP(out, a, b): block [op, ndim, oOff, aOff, bOff, -, -, -, shape, oSt, aSt, bSt]
static Napi::Value BinaryP(const Napi::CallbackInfo& info) {
  const char* op = "binary";
  BlockArgs g;
  read_block(g, 3, op);
  View out = block_view(info, 0, g, 0, op, "out");
  View a = block_view(info, 1, g, 1, op, "a");
  View b = block_view(info, 2, g, 2, op, "b");
  int dev = route(op, {&out, &a, &b});
  if (dev >= 0) NG_CUDA(cuda::binary(static_cast<BinaryOp>(g.code), a, b, out));
  else binary(static_cast<BinaryOp>(g.code), a, b, out);
  return Napi::Value();
}

// binaryScalarP(out, a): block [op, ndim, oOff, aOff, -, -, scalar, reverse, shape, oSt, aSt]
static Napi::Value BinaryScalarP(const Napi::CallbackInfo& info) {
  const char* op = "binaryScalar";
  BlockArgs g;
  read_block(g, 2, op);
  View out = block_view(info, 0, g, 0, op, "out");
  View a = block_view(info, 1, g, 1, op, "a");
  bool reverse = g.s1 != 0;
  int dev = route(op, {&out, &a});
  if (dev >= 0) NG_CUDA(cuda::binary_scalar(static_cast<BinaryOp>(g.code), a, g.s0, reverse, out));
  else binary_scalar(static_cast<BinaryOp>(g.code), a, g.s0, reverse, out);
  return Napi::Value();
}

// unaryP(out, x): block [op, ndim, oOff, xOff, -, -, alpha, beta, shape, oSt, xSt]
static Napi::Value UnaryP(const Napi::CallbackInfo& info) {
  const char* op = "unary";
  BlockArgs g;
  read_block(g, 2, op);
  View out = block_view(info, 0, g, 0, op, "out");
  View x = block_view(info, 1, g, 1, op, "x");
  int dev = route(op, {&out, &x});
  if (dev >= 0) NG_CUDA(cuda::unary(static_cast<UnaryOp>(g.code), x, out, g.s0, g.s1));
  else unary(static_cast<UnaryOp>(g.code), x, out, g.s0, g.s1);
  return Napi::Value();
}

void InitElementwise(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "setArgBlock", SetArgBlock);
  NG_EXPORT(exports, env, "binaryP", BinaryP);
  NG_EXPORT(exports, env, "binaryScalarP", BinaryScalarP);
  NG_EXPORT(exports, env, "unaryP", UnaryP);
  NG_EXPORT(exports, env, "binary", Binary);
  NG_EXPORT(exports, env, "binaryScalar", BinaryScalar);
  NG_EXPORT(exports, env, "unary", Unary);
  NG_EXPORT(exports, env, "unaryBackward", UnaryBackward);
  NG_EXPORT(exports, env, "where", Where);
  NG_EXPORT(exports, env, "copy", Copy);
  NG_EXPORT(exports, env, "fill", Fill);
}

}  // namespace ng
