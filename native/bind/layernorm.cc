// LayerNorm exports. Buffers are CPU typed arrays or CUDA device buffers (all on one
// device); on CUDA the saved statistics (mean, rstd) are always float32, on the CPU they
// have the input's dtype.
#include "bind/rows.h"
#include "bind/util.h"
#include "cpu/layernorm.h"
#include "cuda/layernorm.h"

namespace ng {

// layernormForward(x, weight | null, bias | null, y, mean | null, rstd | null, rows, C, eps):
// x and y contiguous [rows, C]; weight and bias [C]; mean and rstd [rows]; one dtype.
static Napi::Value LayernormForward(const Napi::CallbackInfo& info) {
  const char* op = "layerNorm";
  Buf x = to_buf(info[0], op, "input");
  int64_t rows = to_i64(info[6], op, "rows"), C = to_i64(info[7], op, "C");
  double eps = to_f64(info[8], op, "eps");
  int64_t n = checked_numel(rows, C, op);
  check_extent(x, 0, n, op, "input");
  Buf w = optional_buf(info[1], x.dtype, C, op, "weight");
  Buf b = optional_buf(info[2], x.dtype, C, op, "bias");
  Buf y = required_buf(info[3], x.dtype, n, op, "out");
  Buf mean = optional_buf(info[4], stat_dtype(x), rows, op, "mean");
  Buf rstd = optional_buf(info[5], stat_dtype(x), rows, op, "rstd");
  int dev = route(op, {&x, opt(w), opt(b), &y, opt(mean), opt(rstd)});
  if (dev >= 0)
    NG_CUDA(cuda::layernorm_forward(x.data, w.data, b.data, y.data, mean.data, rstd.data, x.dtype, rows, C, eps));
  else
    layernorm_forward(x.data, w.data, b.data, y.data, mean.data, rstd.data, x.dtype, rows, C, eps);
  return info.Env().Undefined();
}

// addLayernormForward(x, residual, sum, weight | null, bias | null, y, mean | null,
// rstd | null, rows, C, eps): sum = x + residual, y = layerNorm(sum), in one pass.
// CUDA only (the CPU path of F.addLayerNorm composes add and layerNorm in TypeScript).
static Napi::Value AddLayernormForward(const Napi::CallbackInfo& info) {
  const char* op = "addLayerNorm";
  Buf x = to_buf(info[0], op, "input");
  int64_t rows = to_i64(info[8], op, "rows"), C = to_i64(info[9], op, "C");
  double eps = to_f64(info[10], op, "eps");
  (void)eps;  // used by the CUDA call only
  int64_t n = checked_numel(rows, C, op);
  check_extent(x, 0, n, op, "input");
  Buf res = required_buf(info[1], x.dtype, n, op, "residual");
  Buf sum = required_buf(info[2], x.dtype, n, op, "sum");
  Buf w = optional_buf(info[3], x.dtype, C, op, "weight");
  Buf b = optional_buf(info[4], x.dtype, C, op, "bias");
  Buf y = required_buf(info[5], x.dtype, n, op, "out");
  Buf mean = optional_buf(info[6], stat_dtype(x), rows, op, "mean");
  Buf rstd = optional_buf(info[7], stat_dtype(x), rows, op, "rstd");
  int dev = route(op, {&x, &res, &sum, opt(w), opt(b), &y, opt(mean), opt(rstd)});
  if (dev < 0) throw Error(std::string(op) + ": the fused kernel is CUDA only (use F.addLayerNorm, which composes it on the CPU)");
  NG_CUDA(cuda::add_layernorm_forward(x.data, res.data, sum.data, w.data, b.data, y.data, mean.data, rstd.data,
                                      x.dtype, rows, C, eps));
  return info.Env().Undefined();
}

// layernormBackward(g, x, weight | null, mean | null, rstd | null, gx | null, gw | null,
// gb | null, rows, C, eps): shapes as in the forward; null outputs are not computed.
static Napi::Value LayernormBackward(const Napi::CallbackInfo& info) {
  const char* op = "layerNorm backward";
  Buf g = to_buf(info[0], op, "grad");
  int64_t rows = to_i64(info[8], op, "rows"), C = to_i64(info[9], op, "C");
  double eps = to_f64(info[10], op, "eps");
  int64_t n = checked_numel(rows, C, op);
  check_extent(g, 0, n, op, "grad");
  Buf x = required_buf(info[1], g.dtype, n, op, "input");
  Buf w = optional_buf(info[2], g.dtype, C, op, "weight");
  Buf mean = optional_buf(info[3], stat_dtype(g), rows, op, "mean");
  Buf rstd = optional_buf(info[4], stat_dtype(g), rows, op, "rstd");
  Buf gx = optional_buf(info[5], g.dtype, n, op, "grad input");
  Buf gw = optional_buf(info[6], g.dtype, C, op, "grad weight");
  Buf gb = optional_buf(info[7], g.dtype, C, op, "grad bias");
  int dev = route(op, {&g, &x, opt(w), opt(mean), opt(rstd), opt(gx), opt(gw), opt(gb)});
  if (dev >= 0)
    NG_CUDA(cuda::layernorm_backward(g.data, x.data, w.data, mean.data, rstd.data, gx.data, gw.data, gb.data, g.dtype,
                                     rows, C, eps));
  else
    layernorm_backward(g.data, x.data, w.data, mean.data, rstd.data, gx.data, gw.data, gb.data, g.dtype, rows, C,
                       eps);
  return info.Env().Undefined();
}

void InitLayernorm(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "layernormForward", LayernormForward);
  NG_EXPORT(exports, env, "addLayernormForward", AddLayernormForward);
  NG_EXPORT(exports, env, "layernormBackward", LayernormBackward);
}

}  // namespace ng
