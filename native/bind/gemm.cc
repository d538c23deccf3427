// Matrix multiply export. gemm(M, N, K, batchShape, a,aOff,aStrides, b,bOff,bStrides,
// c,cOff,cStrides, alpha, beta): C = alpha * A @ B + beta * C over views A
// [...batch, M, K], B [...batch, K, N], C [...batch, M, N] (strides in elements, one
// per dimension; 0 broadcasts a batch dimension of A or B).
#include "bind/util.h"
#include "cpu/gemm.h"

namespace ng {

static Napi::Value Gemm(const Napi::CallbackInfo& info) {
  const char* op = "matmul";
  if (info.Length() < 15) throw Error("matmul: gemm expects 15 arguments");
  const int64_t M = to_i64(info[0], op, "M"), N = to_i64(info[1], op, "N"), K = to_i64(info[2], op, "K");
  if (M < 0 || N < 0 || K < 0) throw Error("matmul: negative matrix size");
  std::vector<int64_t> batch = to_i64_vec(info[3], op, "batchShape");
  if (batch.size() + 2 > static_cast<size_t>(kMaxDims))
    throw Error("matmul: at most " + std::to_string(kMaxDims - 2) + " batch dimensions are supported");
  auto with = [&](int64_t r, int64_t c) {
    std::vector<int64_t> s = batch;
    s.push_back(r);
    s.push_back(c);
    return s;
  };
  View a = view_at(info, 4, with(M, K), op, "a");
  View b = view_at(info, 7, with(K, N), op, "b");
  View c = view_at(info, 10, with(M, N), op, "out");
  // Every output element must be its own: a zero stride would make threads race on it.
  for (int d = 0; d < c.ndim && c.numel() > 0; ++d)
    if (c.shape[d] > 1 && c.strides[d] == 0) throw Error("matmul: the output view must not broadcast (stride 0)");
  gemm(a, b, c, to_f64(info[13], op, "alpha"), to_f64(info[14], op, "beta"));
  return info.Env().Undefined();
}

void InitGemm(Napi::Env env, Napi::Object exports) { exports.Set("gemm", Napi::Function::New(env, Gemm)); }

}  // namespace ng
