// Attention kernel lab (llm.c dev/cuda style): runs the project's attention kernels
// (cuda/attention*.cu, compiled beside this file) standalone, without Node, checks
// each variant against a CPU reference (float64 on the bf16-rounded inputs) and times it
// with the L2 flushed. Variants:
//   1: simple SIMT forward          2: flash (mma.sync) forward
//   3: simple SIMT backward         4: flash (mma.sync) backward
// Usage: ./attention_lab [variant] [B H T D] [causal]   (see README.md for the build line)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/attention_kernels.cuh"

// ---- the few runtime entries the kernels' host code uses (cuda/runtime.cu stand-ins) ----
namespace ng {
const char* dtype_name(DType d) { return d == DType::BF16 ? "bfloat16" : "other"; }
namespace cuda {
cudaStream_t stream() { return nullptr; }
void throw_cuda(cudaError_t e, const char* op, const char* what) {
  throw Error(std::string(op) + ": " + what + " failed: " + cudaGetErrorString(e));
}
void* alloc(int, size_t bytes, const char*) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) throw Error("lab: cudaMalloc failed");
  return p;
}
void free(int, void* p) { cudaFree(p); }
void upload(int, void* dst, const void* src, size_t bytes) { cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice); }
int current_device() { return 0; }
int compute_capability(int) {
  cudaDeviceProp pr;
  cudaGetDeviceProperties(&pr, 0);
  return pr.major * 10 + pr.minor;
}
}  // namespace cuda
}  // namespace ng

using ng::DType;
using ng::Error;
namespace attn = ng::cuda::attn;
using bf16 = __nv_bfloat16;

#define CK(x)                                                                         \
  do {                                                                                \
    cudaError_t e_ = (x);                                                             \
    if (e_ != cudaSuccess) {                                                          \
      std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

struct Problem {
  int B, H, T, D;
  bool causal;
  std::vector<bf16> q, k, v, g;  // [B*H, T, D]
};

static float bf(bf16 x) { return __bfloat162float(x); }

// Reference out, lse and (with grads) dq, dk, dv in float64 from the bf16 inputs.
static void reference(const Problem& pb, std::vector<double>& out, std::vector<double>& dq, std::vector<double>& dk,
                      std::vector<double>& dv, bool grads) {
  const int BH = pb.B * pb.H, T = pb.T, D = pb.D;
  const double sc = 1 / std::sqrt(static_cast<double>(D));
  out.assign(static_cast<size_t>(BH) * T * D, 0);
  dq = dk = dv = out;
  std::vector<double> p(T), dp(T);
  for (int b = 0; b < BH; ++b) {
    const size_t o = static_cast<size_t>(b) * T * D;
    for (int i = 0; i < T; ++i) {
      const int n = pb.causal ? i + 1 : T;
      double m = -INFINITY, sum = 0;
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int d = 0; d < D; ++d) s += bf(pb.q[o + i * D + d]) * bf(pb.k[o + j * D + d]);
        p[j] = s * sc;
        m = std::max(m, p[j]);
      }
      for (int j = 0; j < n; ++j) sum += (p[j] = std::exp(p[j] - m));
      for (int j = 0; j < n; ++j) p[j] /= sum;
      for (int d = 0; d < D; ++d) {
        double a = 0;
        for (int j = 0; j < n; ++j) a += p[j] * bf(pb.v[o + j * D + d]);
        out[o + i * D + d] = a;
      }
      if (!grads) continue;
      double di = 0;
      for (int d = 0; d < D; ++d) di += bf(pb.g[o + i * D + d]) * out[o + i * D + d];
      for (int j = 0; j < n; ++j) {
        double x = 0;
        for (int d = 0; d < D; ++d) x += bf(pb.g[o + i * D + d]) * bf(pb.v[o + j * D + d]);
        dp[j] = p[j] * (x - di);
        for (int d = 0; d < D; ++d) {
          dv[o + j * D + d] += p[j] * bf(pb.g[o + i * D + d]);
          dk[o + j * D + d] += sc * dp[j] * bf(pb.q[o + i * D + d]);
          dq[o + i * D + d] += sc * dp[j] * bf(pb.k[o + j * D + d]);
        }
      }
    }
  }
}

struct Dev {
  bf16 *q, *k, *v, *g, *o, *dq, *dk, *dv;
  float *lse, *dsum;
  size_t n, rows;
};

static attn::Params params(const Problem& pb, const Dev& d) {
  attn::Params p{};
  p.q = d.q, p.k = d.k, p.v = d.v, p.o = d.o, p.out = d.o, p.dout = d.g, p.lse = d.lse;
  p.dq = d.dq, p.dk = d.dk, p.dv = d.dv, p.dsum = d.dsum;
  p.BH = pb.B * pb.H, p.Tq = p.Tk = pb.T, p.D = p.Dv = pb.D, p.H = 1;
  p.qs[0] = p.ks[0] = p.vs[0] = static_cast<int64_t>(pb.T) * pb.D;
  p.qs[2] = p.ks[2] = p.vs[2] = pb.D;
  p.scale = 1 / std::sqrt(static_cast<double>(pb.D));
  p.causal = pb.causal;
  p.keep_thr = 1ull << 53;
  p.inv_keep = 1;
  return p;
}

static void run_variant(int variant, const attn::Params& p) {
  switch (variant) {
    case 1: attn::simple_forward(p, DType::BF16, nullptr); break;
    case 2: attn::flash_forward(p, DType::BF16, nullptr); break;
    case 3: attn::row_dot(p, DType::BF16, nullptr), attn::simple_backward(p, DType::BF16, nullptr); break;
    case 4: attn::row_dot(p, DType::BF16, nullptr), attn::flash_backward(p, DType::BF16, nullptr); break;
  }
}

static double max_err(const std::vector<bf16>& got, const std::vector<double>& ref) {
  double e = 0;
  for (size_t i = 0; i < ref.size(); ++i) e = std::max(e, std::fabs(bf(got[i]) - ref[i]) / (1e-2 + std::fabs(ref[i])));
  return e;
}

static Problem make(int B, int H, int T, int D, bool causal) {
  Problem pb{B, H, T, D, causal, {}, {}, {}, {}};
  std::mt19937 rng(42);
  std::normal_distribution<float> nd;
  const size_t n = static_cast<size_t>(B) * H * T * D;
  for (auto* vec : {&pb.q, &pb.k, &pb.v, &pb.g}) {
    vec->resize(n);
    for (auto& x : *vec) x = __float2bfloat16(nd(rng));
  }
  return pb;
}

static Dev upload_problem(const Problem& pb) {
  Dev d{};
  d.n = pb.q.size(), d.rows = static_cast<size_t>(pb.B) * pb.H * pb.T;
  for (bf16** p : {&d.q, &d.k, &d.v, &d.g, &d.o, &d.dq, &d.dk, &d.dv}) CK(cudaMalloc(p, d.n * sizeof(bf16)));
  CK(cudaMalloc(&d.lse, d.rows * sizeof(float)));
  CK(cudaMalloc(&d.dsum, d.rows * sizeof(float)));
  CK(cudaMemcpy(d.q, pb.q.data(), d.n * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d.k, pb.k.data(), d.n * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d.v, pb.v.data(), d.n * 2, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(d.g, pb.g.data(), d.n * 2, cudaMemcpyHostToDevice));
  return d;
}

static void release(Dev& d) {
  for (bf16* p : {d.q, d.k, d.v, d.g, d.o, d.dq, d.dk, d.dv}) cudaFree(p);
  cudaFree(d.lse);
  cudaFree(d.dsum);
}

static std::vector<bf16> down(const bf16* p, size_t n) {
  std::vector<bf16> h(n);
  CK(cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost));
  return h;
}

int main(int argc, char** argv) {
  const int only = argc > 1 ? std::atoi(argv[1]) : 0;
  const int B = argc > 5 ? std::atoi(argv[2]) : 4, H = argc > 5 ? std::atoi(argv[3]) : 16;
  const int T = argc > 5 ? std::atoi(argv[4]) : 4096, D = argc > 5 ? std::atoi(argv[5]) : 128;
  const bool causal = argc > 6 ? std::atoi(argv[6]) != 0 : false;
  try {
    // Correctness at small odd shapes, every variant, both masks.
    for (int Dc : {32, 64, 96, 128}) {
      for (bool c : {false, true}) {
        Problem pb = make(1, 2, 77, Dc, c);
        std::vector<double> ro, rq, rk, rv;
        reference(pb, ro, rq, rk, rv, true);
        Dev d = upload_problem(pb);
        for (int variant = 1; variant <= 4; ++variant) {
          if (only && variant != only) continue;
          attn::Params p = params(pb, d);
          if (variant >= 3) attn::simple_forward(p, DType::BF16, nullptr);  // lse and out for the backward
          run_variant(variant, p);
          CK(cudaDeviceSynchronize());
          if (variant <= 2) {
            std::printf("check D=%3d causal=%d variant %d: out rel err %.3g\n", Dc, c, variant,
                        max_err(down(d.o, d.n), ro));
          } else {
            std::printf("check D=%3d causal=%d variant %d: dq %.3g dk %.3g dv %.3g\n", Dc, c, variant,
                        max_err(down(d.dq, d.n), rq), max_err(down(d.dk, d.n), rk), max_err(down(d.dv, d.n), rv));
          }
        }
        release(d);
      }
    }
    // Timing at the requested shape.
    Problem pb = make(B, H, T, D, causal);
    Dev d = upload_problem(pb);
    void* flush;
    CK(cudaMalloc(&flush, 256 << 20));
    const double fwd_flops = 4.0 * B * H * static_cast<double>(T) * T * D / (causal ? 2 : 1);
    for (int variant = 1; variant <= 4; ++variant) {
      if (only && variant != only) continue;
      if (!only && (variant == 1 || variant == 3) && T > 2048) continue;  // the simple kernels are slow
      attn::Params p = params(pb, d);
      attn::flash_forward(p, DType::BF16, nullptr);
      run_variant(variant, p);
      cudaEvent_t a, b;
      CK(cudaEventCreate(&a));
      CK(cudaEventCreate(&b));
      float best = 1e30f;
      for (int rep = 0; rep < 5; ++rep) {
        CK(cudaMemset(flush, rep, 256 << 20));
        CK(cudaEventRecord(a));
        run_variant(variant, p);
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        best = std::min(best, ms);
      }
      const double flops = variant <= 2 ? fwd_flops : 2.5 * fwd_flops;
      std::printf("variant %d  B=%d H=%d T=%d D=%d causal=%d: %.3f ms  %.1f TFLOP/s\n", variant, B, H, T, D, causal,
                  best, flops / (best * 1e9));
    }
    release(d);
    cudaFree(flush);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
