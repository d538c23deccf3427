// Optimizer exports: one call updates a whole list of tensors. Each tensor's arrays are
// CPU typed arrays or CUDA device buffers (float32 or float64, all of one tensor's dtype;
// float32 only on CUDA) plus element offsets; every (offset, numel) pair is checked
// against its buffer before any work starts. All buffers of one call must be on one
// device: the call then runs the CPU kernels or the CUDA ones (cuda/optim.h).
#include "bind/util.h"
#include "cpu/adamw.h"
#include "cuda/optim.h"

namespace ng {
namespace {

Napi::Array to_array(const Napi::Value& v, size_t n, const char* op, const char* what) {
  if (!v.IsArray()) throw Error(std::string(op) + ": " + what + " must be an array");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() != n)
    throw Error(std::string(op) + ": " + what + " has " + std::to_string(a.Length()) + " entries, expected " +
                std::to_string(n));
  return a;
}

// A list of numbers of length n; a single number is repeated n times.
std::vector<double> to_f64_list(const Napi::Value& v, size_t n, const char* op, const char* what) {
  if (v.IsNumber()) return std::vector<double>(n, to_f64(v, op, what));
  Napi::Array a = to_array(v, n, op, what);
  std::vector<double> out(n);
  for (uint32_t i = 0; i < n; ++i) out[i] = to_f64(a.Get(i), op, what);
  return out;
}

std::vector<int64_t> to_i64_list(const Napi::Value& v, size_t n, const char* op, const char* what) {
  std::vector<int64_t> out = to_i64_vec(v, op, what);
  if (out.size() != n)
    throw Error(std::string(op) + ": " + what + " has " + std::to_string(out.size()) + " entries, expected " +
                std::to_string(n));
  return out;
}

// Element offsets: n entries (the first array's offsets; the others start at 0) or
// k*n entries (k offsets per tensor, one per array, in argument order).
std::vector<int64_t> to_offsets(const Napi::Value& v, size_t n, size_t k, const char* op) {
  std::vector<int64_t> raw = to_i64_vec(v, op, "offsets");
  if (raw.size() == k * n) return raw;
  if (raw.size() != n)
    throw Error(std::string(op) + ": offsets has " + std::to_string(raw.size()) + " entries, expected " +
                std::to_string(n) + " or " + std::to_string(k * n));
  std::vector<int64_t> out(k * n, 0);
  for (size_t i = 0; i < n; ++i) out[i * k] = raw[i];
  return out;
}

// The i-th typed array of list `a`, checked: float dtype (equal to `dt` when given),
// and offset..offset+numel inside it. Returns a pointer to the element at `offset`.
// The device of every buffer of one call: the first buffer's, and route() checks that
// each later one is on the same device (and makes it current).
struct DeviceOf {
  Buf first;
  bool any = false;
  int device = -1;
  void add(const Buf& b, const char* op) {
    if (!any) {
      first = b;
      any = true;
      device = route(op, {&first});
    } else {
      device = route(op, {&first, &b});
    }
  }
};

void* checked_ptr(const Napi::Array& a, uint32_t i, int64_t offset, int64_t numel, DType* dt, const char* op,
                  const char* what, DeviceOf* devs) {
  std::string w = std::string(what) + "[" + std::to_string(i) + "]";
  Buf b = to_buf(a.Get(i), op, w.c_str());
  devs->add(b, op);
  if (b.dtype != DType::F32 && b.dtype != DType::F64)
    throw Error(std::string(op) + ": " + w + " has dtype " + dtype_name(b.dtype) + ", expected float32 or float64");
  if (dt != nullptr) check_dtype(b, *dt, op, w.c_str());
  check_extent(b, offset, numel, op, w.c_str());
  return static_cast<uint8_t*>(b.data) + offset * static_cast<int64_t>(dtype_size(b.dtype));
}

DType dtype_at(const Napi::Array& a, uint32_t i, const char* op, const char* what) {
  std::string w = std::string(what) + "[" + std::to_string(i) + "]";
  return to_buf(a.Get(i), op, w.c_str()).dtype;
}

size_t list_length(const Napi::Value& v, const char* op, const char* what) {
  if (!v.IsArray()) throw Error(std::string(op) + ": " + what + " must be an array");
  return v.As<Napi::Array>().Length();
}

std::vector<int64_t> checked_numels(const Napi::Value& v, size_t n, const char* op) {
  std::vector<int64_t> numels = to_i64_list(v, n, op, "numels");
  for (int64_t x : numels)
    if (x < 0) throw Error(std::string(op) + ": numels must be non-negative");
  return numels;
}

}  // namespace

// adamwStep(params, grads, expAvg, expAvgSq, offsets, numels, lrs, weightDecays,
//           beta1, beta2, eps, steps, gradScale, options?)
// beta1/beta2/eps: a number or one per tensor; offsets: n or 4n entries.
// options (CUDA only): { modelCopies?: (buffer | null)[] (numel elements each, bfloat16
// or float16, offset 0), scaleFactor?: buffer (a float32 device scalar multiplied into
// gradScale by the kernel: the clip coefficient of multiTensorNormDevice) }.
static Napi::Value AdamWStep(const Napi::CallbackInfo& info) {
  const char* op = "adamwStep";
  size_t n = list_length(info[0], op, "params");
  Napi::Array params = to_array(info[0], n, op, "params"), grads = to_array(info[1], n, op, "grads"),
              m = to_array(info[2], n, op, "expAvg"), v = to_array(info[3], n, op, "expAvgSq");
  std::vector<int64_t> off = to_offsets(info[4], n, 4, op);
  std::vector<int64_t> numels = checked_numels(info[5], n, op);
  std::vector<double> lrs = to_f64_list(info[6], n, op, "lrs"), wds = to_f64_list(info[7], n, op, "weightDecays"),
                      b1 = to_f64_list(info[8], n, op, "beta1"), b2 = to_f64_list(info[9], n, op, "beta2"),
                      eps = to_f64_list(info[10], n, op, "eps");
  std::vector<int64_t> steps = to_i64_list(info[11], n, op, "steps");
  double grad_scale = to_f64(info[12], op, "gradScale");
  std::vector<AdamWTensor> ts(n);
  DeviceOf devs;
  for (uint32_t i = 0; i < n; ++i) {
    AdamWTensor& t = ts[i];
    t.dtype = dtype_at(params, i, op, "params");
    t.numel = numels[i];
    t.param = checked_ptr(params, i, off[4 * i], t.numel, &t.dtype, op, "params", &devs);
    t.grad = checked_ptr(grads, i, off[4 * i + 1], t.numel, &t.dtype, op, "grads", &devs);
    t.exp_avg = checked_ptr(m, i, off[4 * i + 2], t.numel, &t.dtype, op, "expAvg", &devs);
    t.exp_avg_sq = checked_ptr(v, i, off[4 * i + 3], t.numel, &t.dtype, op, "expAvgSq", &devs);
    if (steps[i] < 1) throw Error(std::string(op) + ": steps must be >= 1 (got " + std::to_string(steps[i]) + ")");
    t.step = steps[i];
    t.lr = lrs[i];
    t.weight_decay = wds[i];
    t.beta1 = b1[i];
    t.beta2 = b2[i];
    t.eps = eps[i];
  }
  cuda::AdamWFusedOptions fo;
  fo.grad_scale = grad_scale;
  bool extras = false;
  if (info.Length() > 13 && info[13].IsObject()) {
    Napi::Object o = info[13].As<Napi::Object>();
    Napi::Value copies = o.Get("modelCopies"), factor = o.Get("scaleFactor");
    if (!copies.IsNull() && !copies.IsUndefined()) {
      Napi::Array ca = to_array(copies, n, op, "modelCopies");
      fo.model_copy.assign(n, nullptr);
      bool have_dt = false;
      for (uint32_t i = 0; i < n; ++i) {
        Napi::Value c = ca.Get(i);
        if (c.IsNull() || c.IsUndefined()) continue;
        std::string w = "modelCopies[" + std::to_string(i) + "]";
        Buf b = to_buf(c, op, w.c_str());
        if (have_dt) check_dtype(b, fo.copy_dtype, op, w.c_str());
        fo.copy_dtype = b.dtype;
        have_dt = true;
        check_extent(b, 0, ts[i].numel, op, w.c_str());
        devs.add(b, op);
        fo.model_copy[i] = b.data;
      }
      extras = extras || have_dt;
    }
    if (!factor.IsNull() && !factor.IsUndefined()) {
      Buf b = to_buf(factor, op, "scaleFactor");
      check_dtype(b, DType::F32, op, "scaleFactor");
      check_extent(b, 0, 1, op, "scaleFactor");
      devs.add(b, op);
      fo.scale_factor = static_cast<const float*>(b.data);
      extras = true;
    }
  }
  if (devs.device >= 0) {
    NG_CUDA(cuda::adamw_step_fused(ts, fo));
  } else {
    if (extras) throw Error(std::string(op) + ": modelCopies and scaleFactor are for CUDA tensors only");
    adamw_step(ts, grad_scale);
  }
  return info.Env().Undefined();
}

// sgdStep(params, grads, momentumBufs (typed array | null each), offsets, numels, lrs,
//         weightDecays, momentums, dampenings, nesterov (0/1 each), initBuf (0/1 each),
//         gradScale); offsets: n or 3n entries.
static Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  const char* op = "sgdStep";
  size_t n = list_length(info[0], op, "params");
  Napi::Array params = to_array(info[0], n, op, "params"), grads = to_array(info[1], n, op, "grads"),
              bufs = to_array(info[2], n, op, "momentumBufs");
  std::vector<int64_t> off = to_offsets(info[3], n, 3, op);
  std::vector<int64_t> numels = checked_numels(info[4], n, op);
  std::vector<double> lrs = to_f64_list(info[5], n, op, "lrs"), wds = to_f64_list(info[6], n, op, "weightDecays"),
                      mom = to_f64_list(info[7], n, op, "momentums"), damp = to_f64_list(info[8], n, op, "dampenings"),
                      nest = to_f64_list(info[9], n, op, "nesterov"), init = to_f64_list(info[10], n, op, "initBuf");
  double grad_scale = to_f64(info[11], op, "gradScale");
  std::vector<SgdTensor> ts(n);
  DeviceOf devs;
  for (uint32_t i = 0; i < n; ++i) {
    SgdTensor& t = ts[i];
    t.dtype = dtype_at(params, i, op, "params");
    t.numel = numels[i];
    t.param = checked_ptr(params, i, off[3 * i], t.numel, &t.dtype, op, "params", &devs);
    t.grad = checked_ptr(grads, i, off[3 * i + 1], t.numel, &t.dtype, op, "grads", &devs);
    Napi::Value b = bufs.Get(i);
    if (!b.IsNull() && !b.IsUndefined())
      t.momentum_buf = checked_ptr(bufs, i, off[3 * i + 2], t.numel, &t.dtype, op, "momentumBufs", &devs);
    t.lr = lrs[i];
    t.weight_decay = wds[i];
    t.momentum = mom[i];
    t.dampening = damp[i];
    t.nesterov = nest[i] != 0;
    t.init_buf = init[i] != 0;
  }
  if (devs.device >= 0) NG_CUDA(cuda::sgd_step(ts, grad_scale));
  else sgd_step(ts, grad_scale);
  return info.Env().Undefined();
}

static std::vector<FlatTensor> flat_list(const Napi::CallbackInfo& info, const char* op, DeviceOf& devs) {
  size_t n = list_length(info[0], op, "tensors");
  Napi::Array arrs = to_array(info[0], n, op, "tensors");
  std::vector<int64_t> off = to_offsets(info[1], n, 1, op);
  std::vector<int64_t> numels = checked_numels(info[2], n, op);
  std::vector<FlatTensor> ts(n);
  for (uint32_t i = 0; i < n; ++i) {
    ts[i].numel = numels[i];
    ts[i].data = checked_ptr(arrs, i, off[i], numels[i], nullptr, op, "tensors", &devs);
    ts[i].dtype = dtype_at(arrs, i, op, "tensors");
  }
  return ts;
}

// multiTensorNorm(tensors, offsets, numels, p) -> the p-norm of all elements together.
static Napi::Value MultiTensorNorm(const Napi::CallbackInfo& info) {
  const char* op = "multiTensorNorm";
  DeviceOf devs;
  std::vector<FlatTensor> ts = flat_list(info, op, devs);
  double p = to_f64(info[3], op, "p");
  if (!(p > 0)) throw Error(std::string(op) + ": p must be positive");
  double r = 0;
  if (devs.device >= 0) NG_CUDA(r = cuda::multi_tensor_norm(ts, p));  // waits for the device
  else r = multi_tensor_norm(ts, p);
  return Napi::Number::New(info.Env(), r);
}

// multiTensorScale(tensors, offsets, numels, scale): x *= scale in place.
static Napi::Value MultiTensorScale(const Napi::CallbackInfo& info) {
  const char* op = "multiTensorScale";
  DeviceOf devs;
  std::vector<FlatTensor> ts = flat_list(info, op, devs);
  double scale = to_f64(info[3], op, "scale");
  if (devs.device >= 0) NG_CUDA(cuda::multi_tensor_scale(ts, scale));
  else multi_tensor_scale(ts, scale);
  return info.Env().Undefined();
}

// A float32 device scalar argument (or null), on the call's device.
static float* device_scalar(const Napi::Value& v, DeviceOf& devs, const char* op, const char* what) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  Buf b = to_buf(v, op, what);
  check_dtype(b, DType::F32, op, what);
  check_extent(b, 0, 1, op, what);
  devs.add(b, op);
  if (devs.device < 0) throw Error(std::string(op) + ": " + what + " must be a CUDA buffer");
  return static_cast<float*>(b.data);
}

// multiTensorNormDevice(tensors, offsets, numels, p, normScale, outNorm | null,
// clipCoef | null, maxNorm): CUDA only, no host sync. outNorm[0] = norm * normScale;
// clipCoef[0] = min(1, maxNorm / (norm * normScale + 1e-6)). Both float32 device scalars.
static Napi::Value MultiTensorNormDevice(const Napi::CallbackInfo& info) {
  const char* op = "multiTensorNorm";
  DeviceOf devs;
  std::vector<FlatTensor> ts = flat_list(info, op, devs);
  double p = to_f64(info[3], op, "p"), norm_scale = to_f64(info[4], op, "normScale");
  if (!(p > 0)) throw Error(std::string(op) + ": p must be positive");
  float* out = device_scalar(info[5], devs, op, "outNorm");
  float* coef = device_scalar(info[6], devs, op, "clipCoef");
  double max_norm = to_f64(info[7], op, "maxNorm");
  if (devs.device < 0) throw Error(std::string(op) + ": the device-result norm needs CUDA tensors");
  (void)norm_scale, (void)out, (void)coef, (void)max_norm;  // used by the CUDA call only
  NG_CUDA(cuda::multi_tensor_norm_device(ts, p, norm_scale, out, coef, max_norm));
  return info.Env().Undefined();
}

// multiTensorScaleDevice(tensors, offsets, numels, scale): x *= scale[0], scale a float32
// device scalar (CUDA only, no host sync).
static Napi::Value MultiTensorScaleDevice(const Napi::CallbackInfo& info) {
  const char* op = "multiTensorScale";
  DeviceOf devs;
  std::vector<FlatTensor> ts = flat_list(info, op, devs);
  float* s = device_scalar(info[3], devs, op, "scale");
  if (s == nullptr) throw Error(std::string(op) + ": scale is required");
  NG_CUDA(cuda::multi_tensor_scale_device(ts, s));
  return info.Env().Undefined();
}

void InitOptim(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "adamwStep", AdamWStep);
  NG_EXPORT(exports, env, "sgdStep", SgdStep);
  NG_EXPORT(exports, env, "multiTensorNorm", MultiTensorNorm);
  NG_EXPORT(exports, env, "multiTensorScale", MultiTensorScale);
  NG_EXPORT(exports, env, "multiTensorNormDevice", MultiTensorNormDevice);
  NG_EXPORT(exports, env, "multiTensorScaleDevice", MultiTensorScaleDevice);
}

}  // namespace ng
