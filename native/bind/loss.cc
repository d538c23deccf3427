// Loss exports. Every buffer is a contiguous typed array (or CUDA device buffer) starting
// at its first element (lib/ops/loss.ts passes flat(...) views); sizes are checked against
// the buffers here. Each entry routes to the CPU or the CUDA kernel by the buffers' device.
//
// lse and the optional `total` scalar have the accumulation dtype: float64 for float64
// logits, else float32 (on the CPU, where only float32/float64 exist, that is the logits'
// dtype). When a `total` buffer is passed, the total weight of the non-ignored targets is
// written into it (on the device for CUDA: no host sync) and the call returns undefined;
// without it the total is returned as a number (on CUDA this waits for the device).
#include "bind/util.h"
#include "cpu/loss.h"
#include "cuda/loss.h"
#include "cuda/runtime.h"

namespace ng {

static bool present(const Napi::Value& v) { return !v.IsNull() && !v.IsUndefined(); }

static DType acc_dtype(DType dt) { return dt == DType::F64 ? DType::F64 : DType::F32; }

// The buffers behind a ClassLossArgs, for device routing.
struct ClassBufs {
  Buf x, t, w;
  bool has_w = false;
};

// Reads (x, targets, weight | null, N, C, I, ignoreIndex) at info[0..6] and checks them.
static ClassLossArgs class_args(const Napi::CallbackInfo& info, const char* op, size_t x_at, ClassBufs& bufs) {
  ClassLossArgs a;
  Buf x = to_buf(info[x_at], op, "input");
  Buf t = to_buf(info[1], op, "targets");
  bufs.x = x;
  bufs.t = t;
  a.N = to_i64(info[3], op, "N");
  a.C = to_i64(info[4], op, "C");
  a.I = to_i64(info[5], op, "I");
  a.ignore_index = to_i64(info[6], op, "ignoreIndex");
  if (a.N < 0 || a.C < 1 || a.I < 0) throw Error(std::string(op) + ": bad sizes");
  const bool half = x.dtype == DType::BF16 || x.dtype == DType::F16;
  if (x.dtype != DType::F32 && x.dtype != DType::F64 && !(half && x.device >= 0))
    throw Error(std::string(op) + ": input must be float32 or float64" +
                (x.device >= 0 ? " (or bfloat16, float16 on CUDA)" : "") + " (got " + dtype_name(x.dtype) + ")");
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
    bufs.w = w;
    bufs.has_w = true;
  }
  return a;
}

static int route_class(const char* op, const ClassBufs& b, const Buf* o1, const Buf* o2 = nullptr,
                       const Buf* o3 = nullptr) {
  return route(op, {&b.x, &b.t, b.has_w ? &b.w : nullptr, o1, o2, o3});
}

// Optional total-weight output at info[i]: one element of the accumulation dtype.
static bool total_at(const Napi::CallbackInfo& info, size_t i, DType dt, const char* op, Buf& out) {
  if (info.Length() <= i || !present(info[i])) return false;
  out = to_buf(info[i], op, "total");
  check_dtype(out, acc_dtype(dt), op, "total");
  check_extent(out, 0, 1, op, "total");
  return true;
}

// Delivers a CPU-computed total: into the buffer when given, else as the return value.
static Napi::Value cpu_total(const Napi::CallbackInfo& info, double total, bool has_out, const Buf& out) {
  if (has_out) {
    if (out.dtype == DType::F64) *static_cast<double*>(out.data) = total;
    else *static_cast<float*>(out.data) = static_cast<float>(total);
  }
  return Napi::Number::New(info.Env(), total);
}

#if NG_HAS_CUDA
// Without a total buffer a CUDA call must still return a number: compute it into scratch
// device memory and wait for it (kept for callers that have not moved to the buffer form).
template <class Fn>
static Napi::Value cuda_total(const Napi::CallbackInfo& info, int dev, DType dt, bool has_out, const Buf& out, Fn&& fn,
                              const char* op) {
  if (has_out) {
    fn(out.data);
    return info.Env().Undefined();
  }
  const size_t bytes = dtype_size(acc_dtype(dt));
  void* scratch = cuda::alloc(dev, bytes, op);
  double total = 0;
  try {
    fn(scratch);
    if (acc_dtype(dt) == DType::F64) {
      cuda::download_sync(dev, &total, scratch, bytes);
    } else {
      float f = 0;
      cuda::download_sync(dev, &f, scratch, bytes);
      total = f;
    }
  } catch (...) {
    cuda::free(dev, scratch);
    throw;
  }
  cuda::free(dev, scratch);
  return Napi::Number::New(info.Env(), total);
}
#endif

static void* out_buf(const Napi::Value& v, DType dt, int64_t n, const char* op, const char* what) {
  Buf b = to_buf(v, op, what);
  check_dtype(b, dt, op, what);
  check_extent(b, 0, n, op, what);
  return b.data;
}

// crossEntropyForward(logits, targets, weight|null, N, C, I, ignoreIndex, labelSmoothing, loss, lse, total?)
//   -> total weight (a number), or undefined when `total` is given
static Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropy";
  ClassBufs b;
  ClassLossArgs a = class_args(info, op, 0, b);
  a.label_smoothing = to_f64(info[7], op, "labelSmoothing");
  const int64_t rows = a.N * a.I;
  Buf lb = to_buf(info[8], op, "loss"), sb = to_buf(info[9], op, "lse"), tb;
  void* loss = out_buf(info[8], a.dtype, rows, op, "loss");
  void* lse = out_buf(info[9], acc_dtype(a.dtype), rows, op, "lse");
  const bool has_total = total_at(info, 10, a.dtype, op, tb);
  int dev = route_class(op, b, &lb, &sb, has_total ? &tb : nullptr);
  if (dev >= 0) {
#if NG_HAS_CUDA
    return cuda_total(info, dev, a.dtype, has_total, tb,
                      [&](void* total) { cuda::cross_entropy_forward(a, loss, lse, total); }, op);
#else
    NG_CUDA((void)0);
#endif
  }
  return cpu_total(info, cross_entropy_forward(a, loss, lse), has_total, tb);
}

// crossEntropyBackward(logits, targets, weight|null, N, C, I, ignoreIndex, labelSmoothing, lse, g, dlogits)
static Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropy";
  ClassBufs b;
  ClassLossArgs a = class_args(info, op, 0, b);
  a.label_smoothing = to_f64(info[7], op, "labelSmoothing");
  const int64_t rows = a.N * a.I;
  Buf sb = to_buf(info[8], op, "lse"), gb = to_buf(info[9], op, "grad"), db = to_buf(info[10], op, "dlogits");
  void* lse = out_buf(info[8], acc_dtype(a.dtype), rows, op, "lse");
  void* g = out_buf(info[9], a.dtype, rows, op, "grad");
  void* dx = out_buf(info[10], a.dtype, a.N * a.C * a.I, op, "dlogits");
  int dev = route_class(op, b, &sb, &gb, &db);
  if (dev >= 0) NG_CUDA(cuda::cross_entropy_backward(a, lse, g, dx));
  else cross_entropy_backward(a, lse, g, dx);
  return info.Env().Undefined();
}

// nllLossForward(logProbs, targets, weight|null, N, C, I, ignoreIndex, loss, total?) -> total weight
// (a number), or undefined when `total` is given
static Napi::Value NllLossForward(const Napi::CallbackInfo& info) {
  const char* op = "nllLoss";
  ClassBufs b;
  ClassLossArgs a = class_args(info, op, 0, b);
  Buf lb = to_buf(info[7], op, "loss"), tb;
  void* loss = out_buf(info[7], a.dtype, a.N * a.I, op, "loss");
  const bool has_total = total_at(info, 8, a.dtype, op, tb);
  int dev = route_class(op, b, &lb, has_total ? &tb : nullptr);
  if (dev >= 0) {
#if NG_HAS_CUDA
    return cuda_total(info, dev, a.dtype, has_total, tb, [&](void* total) { cuda::nll_loss_forward(a, loss, total); },
                      op);
#else
    NG_CUDA((void)0);
#endif
  }
  return cpu_total(info, nll_loss_forward(a, loss), has_total, tb);
}

// nllLossBackward(dlogProbs, targets, weight|null, N, C, I, ignoreIndex, g): dlogProbs is
// written (it stands in the input's place so that its dtype and size are checked).
static Napi::Value NllLossBackward(const Napi::CallbackInfo& info) {
  const char* op = "nllLoss";
  ClassBufs b;
  ClassLossArgs a = class_args(info, op, 0, b);
  Buf gb = to_buf(info[7], op, "grad");
  void* g = out_buf(info[7], a.dtype, a.N * a.I, op, "grad");
  int dev = route_class(op, b, &gb);
  if (dev >= 0) NG_CUDA(cuda::nll_loss_backward(a, g, const_cast<void*>(a.x)));
  else nll_loss_backward(a, g, const_cast<void*>(a.x));
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
  Buf yb = to_buf(info[1], op, "target"), lb = to_buf(info[4], op, "loss"), pb;
  if (present(info[2])) pb = to_buf(info[2], op, "posWeight");
  int dev = route(op, {&x, &yb, &lb, present(info[2]) ? &pb : nullptr});
  if (dev >= 0) NG_CUDA(cuda::bce_logits_forward(x.dtype, x.data, y, pw, n, loss));
  else bce_logits_forward(x.dtype, x.data, y, pw, n, loss);
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
  Buf bs[6];
  const char* names[6] = {"target", "posWeight", "grad", "dx", "dy", "dposWeight"};
  const int at[6] = {1, 2, 3, 5, 6, 7};
  const Buf* ps[6];
  for (int k = 0; k < 6; ++k) {
    ps[k] = nullptr;
    if (present(info[at[k]])) {
      bs[k] = to_buf(info[at[k]], op, names[k]);
      ps[k] = &bs[k];
    }
  }
  int dev = route(op, {&x, ps[0], ps[1], ps[2], ps[3], ps[4], ps[5]});
  if (dev >= 0) NG_CUDA(cuda::bce_logits_backward(x.dtype, x.data, y, pw, g, n, dx, dy, dpw));
  else bce_logits_backward(x.dtype, x.data, y, pw, g, n, dx, dy, dpw);
  return info.Env().Undefined();
}

void InitLoss(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "crossEntropyForward", CrossEntropyForward);
  NG_EXPORT(exports, env, "crossEntropyBackward", CrossEntropyBackward);
  NG_EXPORT(exports, env, "nllLossForward", NllLossForward);
  NG_EXPORT(exports, env, "nllLossBackward", NllLossBackward);
  NG_EXPORT(exports, env, "bceWithLogitsForward", BceForward);
  NG_EXPORT(exports, env, "bceWithLogitsBackward", BceBackward);
}

}  // namespace ng
