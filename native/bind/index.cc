#include "bind/util.h"
#include "cpu/index.h"
#include "cuda/index.h"

namespace ng {

namespace {

int dim_at(const Napi::Value& v, size_t ndim, const char* op) {
  int64_t d = to_i64(v, op, "dim");
  if (d < 0 || d >= static_cast<int64_t>(ndim))
    throw Error(std::string(op) + ": dim " + std::to_string(d) + " is out of range for " + std::to_string(ndim) +
                " dims");
  return static_cast<int>(d);
}

std::vector<int64_t> with_dim(std::vector<int64_t> shape, int dim, int64_t n) {
  shape[dim] = n;
  return shape;
}

}  // namespace

// gather(dim, xShape, x, xOff, xSt, indexShape, index, iOff, iSt, out): out contiguous, index's shape.
static Napi::Value Gather(const Napi::CallbackInfo& info) {
  const char* op = "gather";
  auto xs = to_i64_vec(info[1], op, "input shape");
  int dim = dim_at(info[0], xs.size(), op);
  View x = view_at(info, 2, xs, op, "input");
  auto is = to_i64_vec(info[5], op, "index shape");
  View index = view_at(info, 6, is, op, "index");
  View out = contiguous_view(to_buf(info[9], op, "out"), is, op, "out");
  int dev = route(op, {&x, &index, &out});
  if (dev >= 0) NG_CUDA(cuda::gather(x, index, dim, out, op));
  else gather(x, index, dim, out, op);
  return info.Env().Undefined();
}

// scatterAdd(dim, outShape, out, indexShape, index, iOff, iSt, src, sOff, sSt): out contiguous,
// updated in place; src is read over index's shape.
static Napi::Value ScatterAdd(const Napi::CallbackInfo& info) {
  const char* op = "scatterAdd";
  auto os = to_i64_vec(info[1], op, "input shape");
  int dim = dim_at(info[0], os.size(), op);
  View out = contiguous_view(to_buf(info[2], op, "out"), os, op, "out");
  auto is = to_i64_vec(info[3], op, "index shape");
  View index = view_at(info, 4, is, op, "index");
  View src = view_at(info, 7, is, op, "src");
  int dev = route(op, {&out, &index, &src});
  if (dev >= 0) NG_CUDA(cuda::scatter_add(out, index, src, dim, op));
  else scatter_add(out, index, src, dim, op);
  return info.Env().Undefined();
}

// indexSelect(dim, xShape, x, xOff, xSt, k, index, iOff, iSt, out): index 1-D of length k.
static Napi::Value IndexSelect(const Napi::CallbackInfo& info) {
  const char* op = "indexSelect";
  auto xs = to_i64_vec(info[1], op, "input shape");
  int dim = dim_at(info[0], xs.size(), op);
  View x = view_at(info, 2, xs, op, "input");
  int64_t k = to_i64(info[5], op, "index length");
  View index = view_at(info, 6, {k}, op, "index");
  View out = contiguous_view(to_buf(info[9], op, "out"), with_dim(xs, dim, k), op, "out");
  int dev = route(op, {&x, &index, &out});
  if (dev >= 0) NG_CUDA(cuda::index_select(x, index, dim, out, op));
  else index_select(x, index, dim, out, op);
  return info.Env().Undefined();
}

// indexAdd(dim, outShape, out, k, index, iOff, iSt, src, sOff, sSt): out contiguous, updated in
// place; src has out's shape with shape[dim] = k.
static Napi::Value IndexAdd(const Napi::CallbackInfo& info) {
  const char* op = "indexAdd";
  auto os = to_i64_vec(info[1], op, "input shape");
  int dim = dim_at(info[0], os.size(), op);
  View out = contiguous_view(to_buf(info[2], op, "out"), os, op, "out");
  int64_t k = to_i64(info[3], op, "index length");
  View index = view_at(info, 4, {k}, op, "index");
  View src = view_at(info, 7, with_dim(os, dim, k), op, "src");
  int dev = route(op, {&out, &index, &src});
  if (dev >= 0) NG_CUDA(cuda::index_add(out, index, src, dim, op));
  else index_add(out, index, src, dim, op);
  return info.Env().Undefined();
}

// topk(dim, xShape, x, xOff, xSt, k, largest, sorted, values, indices): outputs contiguous.
static Napi::Value Topk(const Napi::CallbackInfo& info) {
  const char* op = "topk";
  auto xs = to_i64_vec(info[1], op, "input shape");
  int dim = dim_at(info[0], xs.size(), op);
  View x = view_at(info, 2, xs, op, "input");
  int64_t k = to_i64(info[5], op, "k");
  if (k < 0 || k > xs[dim])
    throw Error(std::string(op) + ": k " + std::to_string(k) + " is out of range for dimension " +
                std::to_string(dim) + " of size " + std::to_string(xs[dim]));
  auto os = with_dim(xs, dim, k);
  View values = contiguous_view(to_buf(info[8], op, "values"), os, op, "values");
  View indices = contiguous_view(to_buf(info[9], op, "indices"), os, op, "indices");
  int dev = route(op, {&x, &values, &indices});
  if (dev >= 0) NG_CUDA(cuda::topk(x, dim, k, to_bool(info[6]), to_bool(info[7]), values, indices, op));
  else topk(x, dim, k, to_bool(info[6]), to_bool(info[7]), values, indices, op);
  return info.Env().Undefined();
}

void InitIndex(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "gather", Gather);
  NG_EXPORT(exports, env, "scatterAdd", ScatterAdd);
  NG_EXPORT(exports, env, "indexSelect", IndexSelect);
  NG_EXPORT(exports, env, "indexAdd", IndexAdd);
  NG_EXPORT(exports, env, "topk", Topk);
}

}  // namespace ng
