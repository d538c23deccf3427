// Llama-family exports: RMSNorm (with its fused residual add), rotary embedding, SwiGLU.
// Buffers are CPU typed arrays or CUDA device buffers (all on one device). rstd is
// float32 on CUDA, the input's dtype on the CPU. The rotary embedding takes x and out as
// strided [B, H, T, D] views (d contiguous; out may be x itself) and its inverse
// frequencies as a host Float64Array on every device.
#include <vector>

#include "bind/rows.h"
#include "bind/util.h"
#include "cpu/rmsnorm.h"
#include "cpu/rope.h"
#include "cpu/swiglu.h"
#include "cuda/rmsnorm.h"
#include "cuda/rope.h"
#include "cuda/swiglu.h"

namespace ng {

// rmsnormForward(x, residual | null, sum | null, weight | null, y, rstd | null, rows, C, eps):
// x, residual, sum, y contiguous [rows, C]; weight [C]; rstd [rows]. With a residual,
// sum = x + residual is written and normalised.
static Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  const char* op = "rmsNorm";
  Buf x = to_buf(info[0], op, "input");
  int64_t rows = to_i64(info[6], op, "rows"), C = to_i64(info[7], op, "C");
  double eps = to_f64(info[8], op, "eps");
  int64_t n = checked_numel(rows, C, op);
  check_extent(x, 0, n, op, "input");
  Buf res = optional_buf(info[1], x.dtype, n, op, "residual");
  Buf sum = optional_buf(info[2], x.dtype, n, op, "sum");
  if ((res.data == nullptr) != (sum.data == nullptr)) throw Error(std::string(op) + ": residual and sum go together");
  Buf w = optional_buf(info[3], x.dtype, C, op, "weight");
  Buf y = required_buf(info[4], x.dtype, n, op, "out");
  Buf rstd = optional_buf(info[5], stat_dtype(x), rows, op, "rstd");
  int dev = route(op, {&x, opt(res), opt(sum), opt(w), &y, opt(rstd)});
  if (dev >= 0)
    NG_CUDA(cuda::rmsnorm_forward(x.data, res.data, sum.data, w.data, y.data, rstd.data, x.dtype, rows, C, eps));
  else
    rmsnorm_forward(x.data, res.data, sum.data, w.data, y.data, rstd.data, x.dtype, rows, C, eps);
  return info.Env().Undefined();
}

// rmsnormBackward(g, x, weight | null, rstd | null, gx | null, gw | null, rows, C, eps).
static Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  const char* op = "rmsNorm backward";
  Buf g = to_buf(info[0], op, "grad");
  int64_t rows = to_i64(info[6], op, "rows"), C = to_i64(info[7], op, "C");
  double eps = to_f64(info[8], op, "eps");
  int64_t n = checked_numel(rows, C, op);
  check_extent(g, 0, n, op, "grad");
  Buf x = required_buf(info[1], g.dtype, n, op, "input");
  Buf w = optional_buf(info[2], g.dtype, C, op, "weight");
  Buf rstd = optional_buf(info[3], stat_dtype(g), rows, op, "rstd");
  Buf gx = optional_buf(info[4], g.dtype, n, op, "grad input");
  Buf gw = optional_buf(info[5], g.dtype, C, op, "grad weight");
  int dev = route(op, {&g, &x, opt(w), opt(rstd), opt(gx), opt(gw)});
  if (dev >= 0)
    NG_CUDA(cuda::rmsnorm_backward(g.data, x.data, w.data, rstd.data, gx.data, gw.data, g.dtype, rows, C, eps));
  else
    rmsnorm_backward(g.data, x.data, w.data, rstd.data, gx.data, gw.data, g.dtype, rows, C, eps);
  return info.Env().Undefined();
}

// ropeForward(x, xOffset, xStrides, out, outOffset, outStrides, dims, invFreq, positions | null,
//             positionsBatchStride, positionOffset, attentionScaling, inverse):
// dims [B, H, T, D]; strides over (b, h, t) (d contiguous); invFreq a Float64Array of D/2;
// positions int32 [T] (batch stride 0) or [B, T] (batch stride T).
static Napi::Value RopeForward(const Napi::CallbackInfo& info) {
  const char* op = "rotaryEmbedding";
  auto dims = to_i64_vec(info[6], op, "dims");
  if (dims.size() != 4) throw Error(std::string(op) + ": dims must be [B, H, T, D]");
  for (int64_t d : dims)
    if (d < 0) throw Error(std::string(op) + ": negative size");
  RopeArgs a;
  a.B = dims[0], a.H = dims[1], a.T = dims[2], a.D = dims[3];
  if (a.D % 2 != 0) throw Error(std::string(op) + ": the head dim must be even (got " + std::to_string(a.D) + ")");
  auto strides3 = [&](size_t i, const char* what) {
    auto st = to_i64_vec(info[i], op, what);
    if (st.size() != 3) throw Error(std::string(op) + ": " + what + " must be 3 strides (b, h, t)");
    return std::vector<int64_t>{st[0], st[1], st[2], 1};
  };
  const std::vector<int64_t> shape{a.B, a.H, a.T, a.D};
  Buf xb = to_buf(info[0], op, "input");
  View x = make_view(xb, to_i64(info[1], op, "input offset"), shape, strides3(2, "input strides"), op, "input");
  Buf ob = to_buf(info[3], op, "out");
  check_dtype(ob, xb.dtype, op, "out");
  View out = make_view(ob, to_i64(info[4], op, "out offset"), shape, strides3(5, "out strides"), op, "out");
  for (int i = 0; i < 3; ++i) a.xs[i] = x.strides[i], a.os[i] = out.strides[i];
  if (!info[7].IsTypedArray() || info[7].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw Error(std::string(op) + ": invFreq must be a Float64Array");
  Napi::Float64Array inv = info[7].As<Napi::Float64Array>();
  if (static_cast<int64_t>(inv.ElementLength()) != a.D / 2)
    throw Error(std::string(op) + ": invFreq has " + std::to_string(inv.ElementLength()) + " entries, expected " +
                std::to_string(a.D / 2));
  a.inv_freq = inv.Data();
  Buf pos;
  if (present(info[8])) {
    a.pos_bstride = to_i64(info[9], op, "positions batch stride");
    if (a.pos_bstride != 0 && a.pos_bstride != a.T)
      throw Error(std::string(op) + ": positions batch stride must be 0 or T");
    pos = required_buf(info[8], DType::I32, a.pos_bstride ? a.B * a.T : a.T, op, "positions");
  }
  a.offset = to_i64(info[10], op, "positionOffset");
  a.scaling = to_f64(info[11], op, "attentionScaling");
  a.inverse = to_bool(info[12]);
  a.dtype = xb.dtype;
  int dev = route(op, {&xb, &ob, opt(pos)});
  a.positions = static_cast<const int32_t*>(pos.data);
  if (dev >= 0)
    NG_CUDA(cuda::rope_forward(a, x.data, out.data));
  else
    rope_forward(a, x.data, out.data);
  return info.Env().Undefined();
}

// swigluForward(gate, up, y, n): contiguous buffers of n elements, one dtype.
static Napi::Value SwigluForward(const Napi::CallbackInfo& info) {
  const char* op = "swiglu";
  Buf g = to_buf(info[0], op, "gate");
  int64_t n = to_i64(info[3], op, "n");
  if (n < 0) throw Error(std::string(op) + ": negative size");
  check_extent(g, 0, n, op, "gate");
  Buf u = required_buf(info[1], g.dtype, n, op, "up");
  Buf y = required_buf(info[2], g.dtype, n, op, "out");
  int dev = route(op, {&g, &u, &y});
  if (dev >= 0)
    NG_CUDA(cuda::swiglu_forward(g.data, u.data, y.data, g.dtype, n));
  else
    swiglu_forward(g.data, u.data, y.data, g.dtype, n);
  return info.Env().Undefined();
}

// swigluBackward(dy, gate, up, dgate | null, dup | null, n).
static Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  const char* op = "swiglu backward";
  Buf dy = to_buf(info[0], op, "grad");
  int64_t n = to_i64(info[5], op, "n");
  if (n < 0) throw Error(std::string(op) + ": negative size");
  check_extent(dy, 0, n, op, "grad");
  Buf g = required_buf(info[1], dy.dtype, n, op, "gate");
  Buf u = required_buf(info[2], dy.dtype, n, op, "up");
  Buf dg = optional_buf(info[3], dy.dtype, n, op, "grad gate");
  Buf du = optional_buf(info[4], dy.dtype, n, op, "grad up");
  int dev = route(op, {&dy, &g, &u, opt(dg), opt(du)});
  if (dev >= 0)
    NG_CUDA(cuda::swiglu_backward(dy.data, g.data, u.data, dg.data, du.data, dy.dtype, n));
  else
    swiglu_backward(dy.data, g.data, u.data, dg.data, du.data, dy.dtype, n);
  return info.Env().Undefined();
}

void InitLlama(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "rmsnormForward", RmsnormForward);
  NG_EXPORT(exports, env, "rmsnormBackward", RmsnormBackward);
  NG_EXPORT(exports, env, "ropeForward", RopeForward);
  NG_EXPORT(exports, env, "swigluForward", SwigluForward);
  NG_EXPORT(exports, env, "swigluBackward", SwigluBackward);
}

}  // namespace ng
