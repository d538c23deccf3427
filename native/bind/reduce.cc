#include "bind/util.h"
#include "cpu/reduce.h"
#include "cuda/reduce.h"

namespace ng {

// reduce(op, x, M, R, I, out, idx | null, correction): x contiguous [M, R, I], out [M, I].
static Napi::Value Reduce(const Napi::CallbackInfo& info) {
  const char* op = "reduce";
  int64_t code = to_i64(info[0], op, "op");
  if (code < 0 || code > 7) throw Error("reduce: unknown op");
  Buf x = to_buf(info[1], op, "input");
  int64_t M = to_i64(info[2], op, "M"), R = to_i64(info[3], op, "R"), I = to_i64(info[4], op, "I");
  if (M < 0 || R < 0 || I < 0) throw Error("reduce: negative size");
  int64_t MI = 0, MRI = 0;  // products checked for overflow before any extent check
  if (__builtin_mul_overflow(M, I, &MI) || __builtin_mul_overflow(MI, R, &MRI))
    throw Error("reduce: sizes M*R*I overflow");
  check_extent(x, 0, MRI, op, "input");
  Buf out = to_buf(info[5], op, "out");
  check_extent(out, 0, M * I, op, "out");
  auto rop = static_cast<ReduceOp>(code);
  if (rop == ReduceOp::Argmax || rop == ReduceOp::Argmin) check_dtype(out, DType::I32, op, "out");
  else check_dtype(out, x.dtype, op, "out");
  int32_t* idx = nullptr;
  Buf ib;
  const bool has_idx = !info[6].IsNull() && !info[6].IsUndefined();
  if (has_idx) {
    ib = to_buf(info[6], op, "indices");
    check_dtype(ib, DType::I32, op, "indices");
    check_extent(ib, 0, M * I, op, "indices");
    idx = static_cast<int32_t*>(ib.data);
  }
  const double correction = to_f64(info[7], op, "correction");
  int dev = route(op, {&x, &out, has_idx ? &ib : nullptr});
  if (dev >= 0) NG_CUDA(cuda::reduce(rop, x.data, x.dtype, M, R, I, out.data, idx, correction));
  else reduce(rop, x.data, x.dtype, M, R, I, out.data, idx, correction);
  return info.Env().Undefined();
}

void InitReduce(Napi::Env env, Napi::Object exports) { NG_EXPORT(exports, env, "reduce", Reduce); }

}  // namespace ng
