// Matrix multiply exports. gemm(M, N, K, batchShape, a,aOff,aStrides, b,bOff,bStrides,
// c,cOff,cStrides, alpha, beta): C = alpha * A @ B + beta * C over views A
// [...batch, M, K], B [...batch, K, N], C [...batch, M, N] (strides in elements, one
// per dimension; 0 broadcasts a batch dimension of A or B). CPU buffers run the CPU
// kernel, CUDA buffers cuBLASLt or the own CUDA kernels (cuda/gemm.h).
// gemmOwn: the same arguments, CUDA only, always the own kernels (tests and benchmarks).
// gemmBias(M, N, K, batchShape, a,aOff,aStrides, b,bOff,bStrides, bias,biasOff,
// c,cOff,cStrides, epilogue): CUDA only, C = act(A @ B + bias[N]) with epilogue 0 (none)
// or 1 (GELU, tanh approximation), fused into cuBLASLt's epilogue where it can be.
// cudaGemmBackend(device): which CUDA backend gemm uses and why.
// setFloat32MatmulPrecision(mode): 0 'highest', 1 'high' (TF32), 2 'medium' (bf16).
#include "bind/util.h"
#include "cpu/gemm.h"
#include "cuda/gemm.h"
#include "cuda/runtime.h"

namespace ng {

namespace {

struct GemmArgs {
  View a, b, c;
  double alpha = 1, beta = 0;
};

GemmArgs read_gemm_args(const Napi::CallbackInfo& info, const char* op) {
  if (info.Length() < 15) throw Error(std::string(op) + ": gemm expects 15 arguments");
  const int64_t M = to_i64(info[0], op, "M"), N = to_i64(info[1], op, "N"), K = to_i64(info[2], op, "K");
  if (M < 0 || N < 0 || K < 0) throw Error(std::string(op) + ": negative matrix size");
  std::vector<int64_t> batch = to_i64_vec(info[3], op, "batchShape");
  if (batch.size() + 2 > static_cast<size_t>(kMaxDims))
    throw Error(std::string(op) + ": at most " + std::to_string(kMaxDims - 2) + " batch dimensions are supported");
  auto with = [&](int64_t r, int64_t c) {
    std::vector<int64_t> s = batch;
    s.push_back(r);
    s.push_back(c);
    return s;
  };
  GemmArgs g;
  g.a = view_at(info, 4, with(M, K), op, "a");
  g.b = view_at(info, 7, with(K, N), op, "b");
  g.c = view_at(info, 10, with(M, N), op, "out");
  // Every output element must be its own: a zero stride would make threads race on it.
  for (int d = 0; d < g.c.ndim && g.c.numel() > 0; ++d)
    if (g.c.shape[d] > 1 && g.c.strides[d] == 0)
      throw Error(std::string(op) + ": the output view must not broadcast (stride 0)");
  g.alpha = to_f64(info[13], op, "alpha");
  g.beta = to_f64(info[14], op, "beta");
  return g;
}

}  // namespace

static Napi::Value Gemm(const Napi::CallbackInfo& info) {
  const char* op = "matmul";
  GemmArgs g = read_gemm_args(info, op);
  const int dev = route(op, {&g.a, &g.b, &g.c});
  if (dev >= 0) NG_CUDA(cuda::gemm(g.a, g.b, g.c, g.alpha, g.beta));
  else gemm(g.a, g.b, g.c, g.alpha, g.beta);
  return info.Env().Undefined();
}

static Napi::Value GemmOwn(const Napi::CallbackInfo& info) {
  const char* op = "gemmOwn";
  GemmArgs g = read_gemm_args(info, op);
  const int dev = route(op, {&g.a, &g.b, &g.c});
  if (dev < 0) throw Error("gemmOwn: expected CUDA buffers (the own kernels are the CUDA ones; use gemm on the CPU)");
  NG_CUDA(cuda::gemm_own(g.a, g.b, g.c, g.alpha, g.beta));
  return info.Env().Undefined();
}

static Napi::Value GemmBias(const Napi::CallbackInfo& info) {
  const char* op = "gemmBias";
  if (info.Length() < 16) throw Error("gemmBias: expects 16 arguments");
  const int64_t M = to_i64(info[0], op, "M"), N = to_i64(info[1], op, "N"), K = to_i64(info[2], op, "K");
  if (M < 0 || N < 0 || K < 0) throw Error("gemmBias: negative matrix size");
  std::vector<int64_t> batch = to_i64_vec(info[3], op, "batchShape");
  if (batch.size() + 2 > static_cast<size_t>(kMaxDims))
    throw Error("gemmBias: at most " + std::to_string(kMaxDims - 2) + " batch dimensions are supported");
  auto with = [&](int64_t r, int64_t c) {
    std::vector<int64_t> s = batch;
    s.push_back(r);
    s.push_back(c);
    return s;
  };
  View a = view_at(info, 4, with(M, K), op, "a");
  View b = view_at(info, 7, with(K, N), op, "b");
  Buf bb = to_buf(info[10], op, "bias");
  View bias = make_view(bb, to_i64(info[11], op, "bias"), {N}, {1}, op, "bias");
  View c = view_at(info, 12, with(M, N), op, "out");
  for (int d = 0; d < c.ndim && c.numel() > 0; ++d)
    if (c.shape[d] > 1 && c.strides[d] == 0) throw Error("gemmBias: the output view must not broadcast (stride 0)");
  const int64_t epilogue = to_i64(info[15], op, "epilogue");
  (void)epilogue;  // unused in a CPU-only build
  const int dev = route(op, {&a, &b, &bias, &c});
  if (dev < 0) throw Error("gemmBias: expected CUDA buffers (on the CPU use matmul and add)");
  NG_CUDA(cuda::gemm_bias(a, b, bias, c, static_cast<int>(epilogue)));
  return info.Env().Undefined();
}

static Napi::Value CudaGemmBackend(const Napi::CallbackInfo& info) {
  const char* op = "cudaGemmBackend";
  const int64_t dev = info.Length() > 0 ? to_i64(info[0], op, "device") : 0;
#if NG_HAS_CUDA
  cuda::set_device(static_cast<int>(dev));
  return Napi::String::New(info.Env(), cuda::gemm_backend(static_cast<int>(dev)));
#else
  (void)dev;
  return Napi::String::New(info.Env(), "none (this build of nodegrad has no CUDA kernels)");
#endif
}

static Napi::Value SetFloat32MatmulPrecision(const Napi::CallbackInfo& info) {
  const char* op = "setFloat32MatmulPrecision";
  const int64_t mode = info.Length() > 0 ? to_i64(info[0], op, "mode") : -1;
  if (mode < 0 || mode > 2)
    throw Error("setFloat32MatmulPrecision: expected 0 'highest', 1 'high' or 2 'medium' (got " +
                std::to_string(mode) + ")");
#if NG_HAS_CUDA
  cuda::set_float32_matmul_precision(static_cast<int>(mode));
#endif
  return info.Env().Undefined();
}

void InitGemm(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "gemm", Gemm);
  NG_EXPORT(exports, env, "gemmOwn", GemmOwn);
  NG_EXPORT(exports, env, "gemmBias", GemmBias);
  NG_EXPORT(exports, env, "cudaGemmBackend", CudaGemmBackend);
  NG_EXPORT(exports, env, "setFloat32MatmulPrecision", SetFloat32MatmulPrecision);
}

}  // namespace ng
