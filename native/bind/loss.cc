// Loss exports. Every buffer is a contiguous typed array starting at its first element
// (lib/ops/loss.ts passes flat(...) views); sizes are checked against the buffers here.
#include "bind/util.h"
#include "cpu/loss.h"

namespace ng {

static bool present(const Napi::Value& v) { return !v.IsNull() && !v.IsUndefined(); }

// Reads (x, targets, weight | null, N, C, I, ignoreIndex) at info[0..6] and checks them.
static ClassLossArgs class_args(const Napi::CallbackInfo& info, const char* op, size_t x_at) {
  ClassLossArgs a;
  Buf x = to_buf(info[x_at], op, "input");
  Buf t = to_buf(info[1], op, "targets");
  a.N = to_i64(info[3], op, "N");
  a.C = to_i64(info[4], op, "C");
  a.I = to_i64(info[5], op, "I");
  a.ignore_index = to_i64(info[6], op, "ignoreIndex");
  if (a.N < 0 || a.C < 1 || a.I < 0) throw Error(std::string(op) + ": bad sizes");
  if (x.dtype != DType::F32 && x.dtype != DType::F64)
    throw Error(std::string(op) + ": input must be float32 or float64 (got " + dtype_name(x.dtype) + ")");
  check_extent(x, 0, a.N * a.C * a.I, op, "input");
  check_dtype(t, DType::I32, op, "targets");
  check_extent(t, 0, a.N * a.I, op, "targets");
  a.x = x.data;
  a.dtype = x.dtype;
  a.targets = static_cast<const int32_t*>(t.data);
  if (present(info[2])) {
    Buf w = to_buf(info[2], op, "weight");
    check_dtype(w, x.dtype, op, "weight");
    check_extent(w, 0, a.C, op, "weight");
    a.weight = w.data;
  }
  return a;
}

static void* out_buf(const Napi::Value& v, DType dt, int64_t n, const char* op, const char* what) {
  Buf b = to_buf(v, op, what);
  check_dtype(b, dt, op, what);
  check_extent(b, 0, n, op, what);
  return b.data;
}

// crossEntropyForward(logits, targets, weight|null, N, C, I, ignoreIndex, labelSmoothing, loss, lse) -> total weight
static Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropy";
  ClassLossArgs a = class_args(info, op, 0);
  a.label_smoothing = to_f64(info[7], op, "labelSmoothing");
  const int64_t rows = a.N * a.I;
  void* loss = out_buf(info[8], a.dtype, rows, op, "loss");
  void* lse = out_buf(info[9], a.dtype, rows, op, "lse");
  return Napi::Number::New(info.Env(), cross_entropy_forward(a, loss, lse));
}

// crossEntropyBackward(logits, targets, weight|null, N, C, I, ignoreIndex, labelSmoothing, lse, g, dlogits)
static Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropy";
  ClassLossArgs a = class_args(info, op, 0);
  a.label_smoothing = to_f64(info[7], op, "labelSmoothing");
  const int64_t rows = a.N * a.I;
  void* lse = out_buf(info[8], a.dtype, rows, op, "lse");
  void* g = out_buf(info[9], a.dtype, rows, op, "grad");
  void* dx = out_buf(info[10], a.dtype, a.N * a.C * a.I, op, "dlogits");
  cross_entropy_backward(a, lse, g, dx);
  return info.Env().Undefined();
}

// nllLossForward(logProbs, targets, weight|null, N, C, I, ignoreIndex, loss) -> total weight
static Napi::Value NllLossForward(const Napi::CallbackInfo& info) {
  const char* op = "nllLoss";
  ClassLossArgs a = class_args(info, op, 0);
  void* loss = out_buf(info[7], a.dtype, a.N * a.I, op, "loss");
  return Napi::Number::New(info.Env(), nll_loss_forward(a, loss));
}

// nllLossBackward(dlogProbs, targets, weight|null, N, C, I, ignoreIndex, g): dlogProbs is
// written (it stands in the input's place so that its dtype and size are checked).
static Napi::Value NllLossBackward(const Napi::CallbackInfo& info) {
  const char* op = "nllLoss";
  ClassLossArgs a = class_args(info, op, 0);
  void* g = out_buf(info[7], a.dtype, a.N * a.I, op, "grad");
  nll_loss_backward(a, g, const_cast<void*>(a.x));
  return info.Env().Undefined();
}

// bceWithLogitsForward(x, y, posWeight|null, n, loss)
static Napi::Value BceForward(const Napi::CallbackInfo& info) {
  const char* op = "binaryCrossEntropyWithLogits";
  Buf x = to_buf(info[0], op, "input");
  int64_t n = to_i64(info[3], op, "n");
  check_extent(x, 0, n, op, "input");
  void* y = out_buf(info[1], x.dtype, n, op, "target");
  void* pw = present(info[2]) ? out_buf(info[2], x.dtype, n, op, "posWeight") : nullptr;
  void* loss = out_buf(info[4], x.dtype, n, op, "loss");
  bce_logits_forward(x.dtype, x.data, y, pw, n, loss);
  return info.Env().Undefined();
}

// bceWithLogitsBackward(x, y, posWeight|null, g, n, dx|null, dy|null, dpw|null)
static Napi::Value BceBackward(const Napi::CallbackInfo& info) {
  const char* op = "binaryCrossEntropyWithLogits";
  Buf x = to_buf(info[0], op, "input");
  int64_t n = to_i64(info[4], op, "n");
  check_extent(x, 0, n, op, "input");
  void* y = out_buf(info[1], x.dtype, n, op, "target");
  void* pw = present(info[2]) ? out_buf(info[2], x.dtype, n, op, "posWeight") : nullptr;
  void* g = out_buf(info[3], x.dtype, n, op, "grad");
  void* dx = present(info[5]) ? out_buf(info[5], x.dtype, n, op, "dx") : nullptr;
  void* dy = present(info[6]) ? out_buf(info[6], x.dtype, n, op, "dy") : nullptr;
  void* dpw = present(info[7]) ? out_buf(info[7], x.dtype, n, op, "dposWeight") : nullptr;
  bce_logits_backward(x.dtype, x.data, y, pw, g, n, dx, dy, dpw);
  return info.Env().Undefined();
}

void InitLoss(Napi::Env env, Napi::Object exports) {
  exports.Set("crossEntropyForward", Napi::Function::New(env, CrossEntropyForward));
  exports.Set("crossEntropyBackward", Napi::Function::New(env, CrossEntropyBackward));
  exports.Set("nllLossForward", Napi::Function::New(env, NllLossForward));
  exports.Set("nllLossBackward", Napi::Function::New(env, NllLossBackward));
  exports.Set("bceWithLogitsForward", Napi::Function::New(env, BceForward));
  exports.Set("bceWithLogitsBackward", Napi::Function::New(env, BceBackward));
}

}  // namespace ng
