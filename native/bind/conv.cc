// Convolution and pooling exports. Every tensor argument is a contiguous typed array read
// from element 0; its length is checked against the geometry before any kernel runs.
//   conv2dForward(x, w, b | null, y, geom)
//   conv2dBackward(dy, x, w, dx | null, dw | null, db | null, geom)
//     geom = [N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups, OH, OW]
//   maxPool2dForward(x, y, indices(int32), geom)   maxPool2dBackward(dy, indices, dx, geom)
//   avgPool2dForward(x, y, geom, countIncludePad, divisorOverride (0: none))
//   avgPool2dBackward(dy, dx, geom, countIncludePad, divisorOverride)
//     geom = [planes, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw]
//   adaptiveAvgPool2dForward(x, y, [planes, H, W, OH, OW])
//   adaptiveAvgPool2dBackward(dy, dx, [planes, H, W, OH, OW])
#include "bind/util.h"
#include "cpu/conv.h"
#include "cpu/pool.h"

namespace ng {

static std::vector<int64_t> geom_at(const Napi::CallbackInfo& info, size_t i, size_t n, const char* op) {
  std::vector<int64_t> v = to_i64_vec(info[i], op, "geometry");
  if (v.size() != n) throw Error(std::string(op) + ": geometry must have " + std::to_string(n) + " entries");
  return v;
}

static int64_t mul_checked(std::initializer_list<int64_t> xs, const char* op) {
  int64_t r = 1;
  for (int64_t x : xs)
    if (x < 0 || __builtin_mul_overflow(r, x, &r)) throw Error(std::string(op) + ": invalid sizes");
  return r;
}

// A buffer of dtype dt holding at least n elements, or nullptr for null/undefined when optional.
static void* buf_arg(const Napi::Value& v, DType dt, int64_t n, const char* op, const char* what, bool optional) {
  if (optional && (v.IsNull() || v.IsUndefined())) return nullptr;
  Buf b = to_cpu_buf(v, op, what);
  check_dtype(b, dt, op, what);
  check_extent(b, 0, n, op, what);
  return b.data;
}

static Conv2dGeom conv_geom(const Napi::CallbackInfo& info, size_t i, const char* op) {
  std::vector<int64_t> v = geom_at(info, i, 16, op);
  Conv2dGeom g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]};
  conv2d_check(g);
  return g;
}

static Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  const char* op = "conv2d";
  Conv2dGeom g = conv_geom(info, 4, op);
  Buf x = to_cpu_buf(info[0], op, "input");
  check_extent(x, 0, mul_checked({g.N, g.C, g.H, g.W}, op), op, "input");
  const void* w = buf_arg(info[1], x.dtype, mul_checked({g.O, g.C / g.G, g.kh, g.kw}, op), op, "weight", false);
  const void* b = buf_arg(info[2], x.dtype, g.O, op, "bias", true);
  void* y = buf_arg(info[3], x.dtype, mul_checked({g.N, g.O, g.OH, g.OW}, op), op, "out", false);
  conv2d_forward(x.data, w, b, y, x.dtype, g);
  return info.Env().Undefined();
}

static Napi::Value Conv2dBackward(const Napi::CallbackInfo& info) {
  const char* op = "conv2d backward";
  Conv2dGeom g = conv_geom(info, 6, op);
  Buf dy = to_cpu_buf(info[0], op, "grad");
  check_extent(dy, 0, mul_checked({g.N, g.O, g.OH, g.OW}, op), op, "grad");
  const int64_t nx = mul_checked({g.N, g.C, g.H, g.W}, op), nw = mul_checked({g.O, g.C / g.G, g.kh, g.kw}, op);
  const void* x = buf_arg(info[1], dy.dtype, nx, op, "input", false);
  const void* w = buf_arg(info[2], dy.dtype, nw, op, "weight", false);
  void* dx = buf_arg(info[3], dy.dtype, nx, op, "grad input", true);
  void* dw = buf_arg(info[4], dy.dtype, nw, op, "grad weight", true);
  void* db = buf_arg(info[5], dy.dtype, g.O, op, "grad bias", true);
  conv2d_backward(dy.data, x, w, dx, dw, db, dy.dtype, g);
  return info.Env().Undefined();
}

static Pool2dGeom pool_geom(const Napi::CallbackInfo& info, size_t i, const char* op) {
  std::vector<int64_t> v = geom_at(info, i, 13, op);
  Pool2dGeom g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]};
  pool2d_check(g, op);
  return g;
}

static Napi::Value MaxPool2dForward(const Napi::CallbackInfo& info) {
  const char* op = "maxPool2d";
  Pool2dGeom g = pool_geom(info, 3, op);
  Buf x = to_cpu_buf(info[0], op, "input");
  check_extent(x, 0, mul_checked({g.planes, g.H, g.W}, op), op, "input");
  const int64_t ny = mul_checked({g.planes, g.OH, g.OW}, op);
  void* y = buf_arg(info[1], x.dtype, ny, op, "out", false);
  void* idx = buf_arg(info[2], DType::I32, ny, op, "indices", false);
  maxpool2d_forward(x.data, y, static_cast<int32_t*>(idx), x.dtype, g);
  return info.Env().Undefined();
}

static Napi::Value MaxPool2dBackward(const Napi::CallbackInfo& info) {
  const char* op = "maxPool2d backward";
  Pool2dGeom g = pool_geom(info, 3, op);
  Buf dy = to_cpu_buf(info[0], op, "grad");
  const int64_t ny = mul_checked({g.planes, g.OH, g.OW}, op);
  check_extent(dy, 0, ny, op, "grad");
  const void* idx = buf_arg(info[1], DType::I32, ny, op, "indices", false);
  void* dx = buf_arg(info[2], dy.dtype, mul_checked({g.planes, g.H, g.W}, op), op, "grad input", false);
  maxpool2d_backward(dy.data, static_cast<const int32_t*>(idx), dx, dy.dtype, g);
  return info.Env().Undefined();
}

static Napi::Value AvgPool2d(const Napi::CallbackInfo& info, bool backward) {
  const char* op = backward ? "avgPool2d backward" : "avgPool2d";
  Pool2dGeom g = pool_geom(info, 2, op);
  const bool include_pad = to_bool(info[3]);
  const int64_t div = to_i64(info[4], op, "divisorOverride");
  if (div < 0) throw Error(std::string(op) + ": divisorOverride must not be negative");
  const int64_t nx = mul_checked({g.planes, g.H, g.W}, op), ny = mul_checked({g.planes, g.OH, g.OW}, op);
  Buf src = to_cpu_buf(info[0], op, backward ? "grad" : "input");
  check_extent(src, 0, backward ? ny : nx, op, backward ? "grad" : "input");
  void* dst = buf_arg(info[1], src.dtype, backward ? nx : ny, op, backward ? "grad input" : "out", false);
  if (backward) avgpool2d_backward(src.data, dst, src.dtype, g, include_pad, div);
  else avgpool2d_forward(src.data, dst, src.dtype, g, include_pad, div);
  return info.Env().Undefined();
}

static Napi::Value AdaptiveAvgPool2d(const Napi::CallbackInfo& info, bool backward) {
  const char* op = backward ? "adaptiveAvgPool2d backward" : "adaptiveAvgPool2d";
  std::vector<int64_t> v = geom_at(info, 2, 5, op);
  const int64_t nx = mul_checked({v[0], v[1], v[2]}, op), ny = mul_checked({v[0], v[3], v[4]}, op);
  Buf src = to_cpu_buf(info[0], op, backward ? "grad" : "input");
  check_extent(src, 0, backward ? ny : nx, op, backward ? "grad" : "input");
  void* dst = buf_arg(info[1], src.dtype, backward ? nx : ny, op, backward ? "grad input" : "out", false);
  if (backward) adaptive_avgpool2d_backward(src.data, dst, src.dtype, v[0], v[1], v[2], v[3], v[4]);
  else adaptive_avgpool2d_forward(src.data, dst, src.dtype, v[0], v[1], v[2], v[3], v[4]);
  return info.Env().Undefined();
}

static Napi::Value AvgPool2dFwd(const Napi::CallbackInfo& i) { return AvgPool2d(i, false); }
static Napi::Value AvgPool2dBwd(const Napi::CallbackInfo& i) { return AvgPool2d(i, true); }
static Napi::Value AdaptiveAvgPool2dFwd(const Napi::CallbackInfo& i) { return AdaptiveAvgPool2d(i, false); }
static Napi::Value AdaptiveAvgPool2dBwd(const Napi::CallbackInfo& i) { return AdaptiveAvgPool2d(i, true); }

void InitConv(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "conv2dForward", Conv2dForward);
  NG_EXPORT(exports, env, "conv2dBackward", Conv2dBackward);
  NG_EXPORT(exports, env, "maxPool2dForward", MaxPool2dForward);
  NG_EXPORT(exports, env, "maxPool2dBackward", MaxPool2dBackward);
  NG_EXPORT(exports, env, "avgPool2dForward", AvgPool2dFwd);
  NG_EXPORT(exports, env, "avgPool2dBackward", AvgPool2dBwd);
  NG_EXPORT(exports, env, "adaptiveAvgPool2dForward", AdaptiveAvgPool2dFwd);
  NG_EXPORT(exports, env, "adaptiveAvgPool2dBackward", AdaptiveAvgPool2dBwd);
}

}  // namespace ng
