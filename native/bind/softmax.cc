#include "bind/util.h"
#include "cpu/softmax.h"
#include "cuda/softmax.h"

namespace ng {

static int64_t checked_numel(int64_t M, int64_t C, int64_t I, const char* op) {
  int64_t mc, n;
  if (M < 0 || C < 0 || I < 0 || __builtin_mul_overflow(M, C, &mc) || __builtin_mul_overflow(mc, I, &n))
    throw Error(std::string(op) + ": invalid sizes");
  return n;
}

// softmaxForward(x, y, M, C, I, log): x and y contiguous [M, C, I] buffers of one dtype.
static Napi::Value SoftmaxForward(const Napi::CallbackInfo& info) {
  bool log = to_bool(info[5]);
  const char* op = log ? "logSoftmax" : "softmax";
  Buf x = to_buf(info[0], op, "input"), y = to_buf(info[1], op, "out");
  int64_t M = to_i64(info[2], op, "M"), C = to_i64(info[3], op, "C"), I = to_i64(info[4], op, "I");
  int64_t n = checked_numel(M, C, I, op);
  check_extent(x, 0, n, op, "input");
  check_extent(y, 0, n, op, "out");
  check_dtype(y, x.dtype, op, "out");
  int dev = route(op, {&x, &y});
  if (dev >= 0) NG_CUDA(cuda::softmax_forward(x.data, y.data, x.dtype, M, C, I, log));
  else softmax_forward(x.data, y.data, x.dtype, M, C, I, log);
  return info.Env().Undefined();
}

// softmaxBackward(g, y, gx, M, C, I, log): y is the forward output; all contiguous.
static Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) {
  bool log = to_bool(info[6]);
  const char* op = log ? "logSoftmax backward" : "softmax backward";
  Buf g = to_buf(info[0], op, "grad"), y = to_buf(info[1], op, "output"), gx = to_buf(info[2], op, "grad input");
  int64_t M = to_i64(info[3], op, "M"), C = to_i64(info[4], op, "C"), I = to_i64(info[5], op, "I");
  int64_t n = checked_numel(M, C, I, op);
  check_extent(g, 0, n, op, "grad");
  check_extent(y, 0, n, op, "output");
  check_extent(gx, 0, n, op, "grad input");
  check_dtype(y, g.dtype, op, "output");
  check_dtype(gx, g.dtype, op, "grad input");
  int dev = route(op, {&g, &y, &gx});
  if (dev >= 0) NG_CUDA(cuda::softmax_backward(g.data, y.data, gx.data, g.dtype, M, C, I, log));
  else softmax_backward(g.data, y.data, gx.data, g.dtype, M, C, I, log);
  return info.Env().Undefined();
}

void InitSoftmax(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "softmaxForward", SoftmaxForward);
  NG_EXPORT(exports, env, "softmaxBackward", SoftmaxBackward);
}

}  // namespace ng
