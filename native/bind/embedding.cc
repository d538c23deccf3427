#include "bind/util.h"
#include "cpu/embedding.h"
#include "cuda/embedding.h"

namespace ng {

static int64_t checked_numel(int64_t rows, int64_t C, const char* op) {
  int64_t n;
  if (rows < 0 || C < 0 || __builtin_mul_overflow(rows, C, &n)) throw Error(std::string(op) + ": invalid sizes");
  return n;
}

static Buf ids_at(const Napi::Value& v, int64_t n, const char* op) {
  Buf ids = to_buf(v, op, "indices");
  if (ids.dtype != DType::I32)
    throw Error(std::string(op) + ": indices must be int32 (got " + dtype_name(ids.dtype) + ")");
  check_extent(ids, 0, n, op, "indices");
  return ids;
}

// embeddingForward(ids, n, weight, V, C, out): ids Int32Array [n], weight contiguous
// [V, C], out contiguous [n, C] of weight's dtype.
static Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  const char* op = "embedding";
  int64_t n = to_i64(info[1], op, "n"), V = to_i64(info[3], op, "V"), C = to_i64(info[4], op, "C");
  Buf ib = ids_at(info[0], n, op);
  const int32_t* ids = static_cast<const int32_t*>(ib.data);
  Buf w = to_buf(info[2], op, "weight"), out = to_buf(info[5], op, "out");
  check_extent(w, 0, checked_numel(V, C, op), op, "weight");
  check_extent(out, 0, checked_numel(n, C, op), op, "out");
  check_dtype(out, w.dtype, op, "out");
  int dev = route(op, {&ib, &w, &out});
  if (dev >= 0) NG_CUDA(cuda::embedding_forward(ids, n, w.data, w.dtype, V, C, out.data));
  else embedding_forward(ids, n, w.data, w.dtype, V, C, out.data);
  return info.Env().Undefined();
}

// embeddingBackward(ids, n, g, V, C, gw, paddingIdx): gw [V, C] += scatter of g [n, C];
// paddingIdx < 0 means none.
static Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  const char* op = "embedding backward";
  int64_t n = to_i64(info[1], op, "n"), V = to_i64(info[3], op, "V"), C = to_i64(info[4], op, "C");
  int64_t pad = to_i64(info[6], op, "paddingIdx");
  Buf ib = ids_at(info[0], n, op);
  const int32_t* ids = static_cast<const int32_t*>(ib.data);
  Buf g = to_buf(info[2], op, "grad"), gw = to_buf(info[5], op, "grad weight");
  check_extent(g, 0, checked_numel(n, C, op), op, "grad");
  check_extent(gw, 0, checked_numel(V, C, op), op, "grad weight");
  check_dtype(gw, g.dtype, op, "grad weight");
  int dev = route(op, {&ib, &g, &gw});
  if (dev >= 0) NG_CUDA(cuda::embedding_backward(ids, n, g.data, g.dtype, V, C, gw.data, pad));
  else embedding_backward(ids, n, g.data, g.dtype, V, C, gw.data, pad);
  return info.Env().Undefined();
}

void InitEmbedding(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "embeddingForward", EmbeddingForward);
  NG_EXPORT(exports, env, "embeddingBackward", EmbeddingBackward);
}

}  // namespace ng
