#include "bind/util.h"
#include "cpu/layernorm.h"

namespace ng {

static int64_t checked_numel(int64_t rows, int64_t C, const char* op) {
  int64_t n;
  if (rows < 0 || C < 0 || __builtin_mul_overflow(rows, C, &n)) throw Error(std::string(op) + ": invalid sizes");
  return n;
}

// A buffer of n elements of dtype dt, or nullptr for null/undefined.
static void* optional_buf(const Napi::Value& v, DType dt, int64_t n, const char* op, const char* what) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  Buf b = to_buf(v, op, what);
  check_dtype(b, dt, op, what);
  check_extent(b, 0, n, op, what);
  return b.data;
}

static void* required_buf(const Napi::Value& v, DType dt, int64_t n, const char* op, const char* what) {
  Buf b = to_buf(v, op, what);
  check_dtype(b, dt, op, what);
  check_extent(b, 0, n, op, what);
  return b.data;
}

// layernormForward(x, weight | null, bias | null, y, mean | null, rstd | null, rows, C, eps):
// x and y contiguous [rows, C]; weight and bias [C]; mean and rstd [rows]; one dtype.
static Napi::Value LayernormForward(const Napi::CallbackInfo& info) {
  const char* op = "layerNorm";
  Buf x = to_buf(info[0], op, "input");
  int64_t rows = to_i64(info[6], op, "rows"), C = to_i64(info[7], op, "C");
  double eps = to_f64(info[8], op, "eps");
  int64_t n = checked_numel(rows, C, op);
  check_extent(x, 0, n, op, "input");
  const void* w = optional_buf(info[1], x.dtype, C, op, "weight");
  const void* b = optional_buf(info[2], x.dtype, C, op, "bias");
  void* y = required_buf(info[3], x.dtype, n, op, "out");
  void* mean = optional_buf(info[4], x.dtype, rows, op, "mean");
  void* rstd = optional_buf(info[5], x.dtype, rows, op, "rstd");
  layernorm_forward(x.data, w, b, y, mean, rstd, x.dtype, rows, C, eps);
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
  const void* x = required_buf(info[1], g.dtype, n, op, "input");
  const void* w = optional_buf(info[2], g.dtype, C, op, "weight");
  const void* mean = optional_buf(info[3], g.dtype, rows, op, "mean");
  const void* rstd = optional_buf(info[4], g.dtype, rows, op, "rstd");
  void* gx = optional_buf(info[5], g.dtype, n, op, "grad input");
  void* gw = optional_buf(info[6], g.dtype, C, op, "grad weight");
  void* gb = optional_buf(info[7], g.dtype, C, op, "grad bias");
  layernorm_backward(g.data, x, w, mean, rstd, gx, gw, gb, g.dtype, rows, C, eps);
  return info.Env().Undefined();
}

void InitLayernorm(Napi::Env env, Napi::Object exports) {
  exports.Set("layernormForward", Napi::Function::New(env, LayernormForward));
  exports.Set("layernormBackward", Napi::Function::New(env, LayernormBackward));
}

}  // namespace ng
