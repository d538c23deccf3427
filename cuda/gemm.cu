// Matrix multiply entries (cuda/gemm.h): resolve the views into canonical problems
// (gemm_internal.cuh) and hand each to cuBLASLt or to the own kernels.
//
// View handling, done once per call on the host:
// - C must be row- or column-major; a column-major C is computed as C^T = B^T A^T (swap
//   the operands and their last two dims), anything else goes through a contiguous
//   scratch C that is copied back.
// - A and B are read in place when one of their two innermost strides is 1 (a transposed
//   view is a column-major matrix); otherwise they are copied to contiguous scratch.
// - Batch dims of size 1 are dropped, then adjacent batch dims merge when every operand's
//   strides allow it; the innermost remaining dim is a strided batch (stride 0 broadcasts
//   a weight), outer ones are looped over on the host.
// The small kernels below (gather/scatter copies, beta scaling for K == 0, bias and GELU
// after the own GEMM) are memory-bound, one element per thread in a grid-stride loop.
#include <algorithm>
#include <atomic>
#include <vector>

#include "cuda/gemm.h"
#include "cuda/gemm_internal.cuh"

namespace ng {
namespace cuda {
namespace {

std::atomic<int> g_fp32_precision{0};

template <class E>
__global__ void gather_kernel(E* dst, const E* src, StridedIndex si, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = src[si.offset(i)];
}
template <class E>
__global__ void scatter_kernel(E* dst, StridedIndex di, const E* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[di.offset(i)] = src[i];
}
template <class T>
__global__ void scale_kernel(T* c, StridedIndex ci, int64_t n, double beta) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    T* p = c + ci.offset(i);
    if (beta == 0) *p = from_f<T>(0.f);
    else if constexpr (std::is_same<T, double>::value) *p = beta * *p;
    else *p = from_f<T>(static_cast<float>(beta) * to_f<T>(*p));
  }
}
// C[..., n] = act(C[..., n] + bias[n]) over a strided C whose last dim has N elements.
template <class T>
__global__ void bias_act_kernel(T* c, StridedIndex ci, const T* bias, int64_t N, int64_t total, int gelu) {
  using Acc = typename std::conditional<std::is_same<T, double>::value, double, float>::type;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    T* p = c + ci.offset(i);
    Acc v, bv;
    if constexpr (std::is_same<T, double>::value) v = *p, bv = bias[i % N];
    else v = to_f<T>(*p), bv = to_f<T>(bias[i % N]);
    v += bv;
    if (gelu) {  // tanh approximation, as GPT-2 and cuBLASLt's GELU epilogue
      const Acc k0 = Acc(0.7978845608028654), k1 = Acc(0.044715);
      v = Acc(0.5) * v * (Acc(1) + tanh(k0 * (v + k1 * v * v * v)));
    }
    if constexpr (std::is_same<T, double>::value) *p = v;
    else *p = from_f<T>(v);
  }
}

void bias_act(const View& c, const void* bias, int epilogue, cudaStream_t s) {
  const int64_t total = c.numel();
  if (total == 0) return;
  dispatch_float(c.dtype, "matmul", [&](auto tag) {
    using T = decltype(tag);
    bias_act_kernel<T><<<blocks_for(total, 256), 256, 0, s>>>(static_cast<T*>(c.data), strided_index(c),
                                                               static_cast<const T*>(bias), c.shape[c.ndim - 1], total,
                                                               epilogue == kEpilogueGeluTanh);
  });
  check_launch("matmul");
}

// Copies between a strided view and a contiguous buffer of its elements (raw bits).
void copy_view(const View& v, void* contiguous, bool to_contiguous, cudaStream_t s) {
  const int64_t n = v.numel();
  if (n == 0) return;
  const StridedIndex si = strided_index(v);
  const unsigned blocks = blocks_for(n, 256);
  auto go = [&](auto tag) {
    using E = decltype(tag);
    if (to_contiguous)
      gather_kernel<E><<<blocks, 256, 0, s>>>(static_cast<E*>(contiguous), static_cast<const E*>(v.data), si, n);
    else
      scatter_kernel<E><<<blocks, 256, 0, s>>>(static_cast<E*>(v.data), si, static_cast<const E*>(contiguous), n);
  };
  switch (dtype_size(v.dtype)) {
    case 2: go(uint16_t{}); break;
    case 4: go(uint32_t{}); break;
    case 8: go(uint64_t{}); break;
    default: throw Error("matmul: unsupported element size");
  }
  check_launch("matmul");
}

View contiguous_like(const View& v, void* data) {
  View r = v;
  r.data = data;
  int64_t st = 1;
  for (int d = v.ndim - 1; d >= 0; --d) {
    r.strides[d] = st;
    st *= v.shape[d];
  }
  return r;
}

View transposed(const View& v) {
  View r = v;
  const int d = v.ndim;
  std::swap(r.shape[d - 2], r.shape[d - 1]);
  std::swap(r.strides[d - 2], r.strides[d - 1]);
  return r;
}

// Row-major R x Cc matrix with strides (rs, cs)? Sets the leading dim. A size-1 dim's
// stride is irrelevant; the leading dim is then chosen to keep alignment high.
bool as_rowmajor(int64_t R, int64_t Cc, int64_t rs, int64_t cs, int64_t* ld) {
  if (Cc != 1 && cs != 1) return false;
  if (R == 1) {
    *ld = (Cc + 15) / 16 * 16;
    return true;
  }
  if (rs < std::max<int64_t>(Cc, 1)) return false;
  *ld = rs;
  return true;
}
bool as_colmajor(int64_t R, int64_t Cc, int64_t rs, int64_t cs, int64_t* ld) {
  if (R != 1 && rs != 1) return false;
  if (Cc == 1) {
    *ld = (R + 15) / 16 * 16;
    return true;
  }
  if (cs < std::max<int64_t>(R, 1)) return false;
  *ld = cs;
  return true;
}

// Scratch blocks of one call, returned to the caching allocator when the call is queued
// (stream-ordered: the kernels using them run before any later reuse).
struct Scratch {
  int device;
  std::vector<void*> blocks;
  explicit Scratch(int d) : device(d) {}
  void* get(size_t bytes) {
    void* p = alloc(device, bytes, "matmul");
    blocks.push_back(p);
    return p;
  }
  ~Scratch() {
    for (void* p : blocks) free(device, p);
  }
};

void run_problem(const GemmProblem& p, bool own_only, const void* bias, int epilogue, cudaStream_t s) {
  if (!own_only && cublaslt_gemm(p, bias, epilogue)) return;
  if (gemm_mma_supported(p)) launch_gemm_mma(p, s);
  else launch_gemm_simt(p, s);
  if (bias) {
    View cv;
    cv.data = p.c, cv.dtype = p.dtype, cv.device = p.device, cv.ndim = 3;
    cv.shape[0] = p.batch, cv.shape[1] = p.M, cv.shape[2] = p.N;
    cv.strides[0] = p.sc, cv.strides[1] = p.ldc, cv.strides[2] = 1;
    bias_act(cv, bias, epilogue, s);
  }
}

void check_views(const View& a, const View& b, const View& c, const char* op) {
  const int nd = c.ndim;
  NG_CHECK(nd >= 2 && a.ndim == nd && b.ndim == nd && nd <= kMaxDims,
           std::string(op) + ": expected A, B, C views of equal rank >= 2 (got ranks " + std::to_string(a.ndim) +
               ", " + std::to_string(b.ndim) + ", " + std::to_string(c.ndim) + ")");
  NG_CHECK(a.dtype == c.dtype && b.dtype == c.dtype,
           std::string(op) + ": dtypes differ (got " + dtype_name(a.dtype) + ", " + dtype_name(b.dtype) + ", " +
               dtype_name(c.dtype) + ")");
  NG_CHECK(c.dtype == DType::F32 || c.dtype == DType::F64 || c.dtype == DType::BF16 || c.dtype == DType::F16,
           std::string(op) + ": expected float32, float64, bfloat16 or float16 on CUDA (got " + dtype_name(c.dtype) +
               ")");
  NG_CHECK(a.device >= 0 && a.device == b.device && b.device == c.device,
           std::string(op) + ": operands must be on one CUDA device (got devices " + std::to_string(a.device) + ", " +
               std::to_string(b.device) + ", " + std::to_string(c.device) + ")");
  const int64_t M = c.shape[nd - 2], N = c.shape[nd - 1], K = a.shape[nd - 1];
  bool ok = a.shape[nd - 2] == M && b.shape[nd - 2] == K && b.shape[nd - 1] == N;
  for (int d = 0; d < nd - 2; ++d) ok = ok && a.shape[d] == c.shape[d] && b.shape[d] == c.shape[d];
  NG_CHECK(ok, std::string(op) + ": shapes do not match (expected A [..., M, K], B [..., K, N], C [..., M, N])");
}

void run_gemm(const View& a0, const View& b0, const View& c0, double alpha, double beta, bool own_only,
              const void* bias, int epilogue) {
  const char* op = "matmul";
  check_views(a0, b0, c0, op);
  const int nd = c0.ndim;
  const int64_t M = c0.shape[nd - 2], N = c0.shape[nd - 1], K = a0.shape[nd - 1];
  if (c0.numel() == 0) return;
  const int dev = c0.device;
  cudaStream_t s = stream();
  const size_t es = dtype_size(c0.dtype);
  Scratch scratch(dev);

  if (K == 0) {  // C = beta * C (+ bias)
    dispatch_float(c0.dtype, op, [&](auto tag) {
      using T = decltype(tag);
      const int64_t n = c0.numel();
      scale_kernel<T><<<blocks_for(n, 256), 256, 0, s>>>(static_cast<T*>(c0.data), strided_index(c0), n, beta);
    });
    check_launch(op);
    if (bias) bias_act(c0, bias, epilogue, s);
    return;
  }

  int64_t ldc = 0, ld_unused = 0;
  if (!as_rowmajor(M, N, c0.strides[nd - 2], c0.strides[nd - 1], &ldc)) {
    if (!bias && as_colmajor(M, N, c0.strides[nd - 2], c0.strides[nd - 1], &ld_unused)) {
      run_gemm(transposed(b0), transposed(a0), transposed(c0), alpha, beta, own_only, nullptr, epilogue);
      return;
    }
    View ct = contiguous_like(c0, scratch.get(c0.numel() * es));
    if (beta != 0) copy_view(c0, ct.data, true, s);
    run_gemm(a0, b0, ct, alpha, beta, own_only, bias, epilogue);
    copy_view(c0, ct.data, false, s);
    return;
  }

  // Operands: row-major, column-major (a transposed view), or a contiguous copy.
  auto operand = [&](const View& x, int64_t R, int64_t Cc, bool* trans, int64_t* ld) -> View {
    if (as_rowmajor(R, Cc, x.strides[nd - 2], x.strides[nd - 1], ld)) {
      *trans = false;
      return x;
    }
    if (as_colmajor(R, Cc, x.strides[nd - 2], x.strides[nd - 1], ld)) {
      *trans = true;
      return x;
    }
    View xc = contiguous_like(x, scratch.get(x.numel() * es));
    copy_view(x, xc.data, true, s);
    *trans = false;
    *ld = Cc;
    return xc;
  };
  GemmProblem p;
  p.dtype = c0.dtype, p.device = dev, p.M = M, p.N = N, p.K = K, p.alpha = alpha, p.beta = beta, p.ldc = ldc;
  const View A = operand(a0, M, K, &p.ta, &p.lda);
  const View B = operand(b0, K, N, &p.tb, &p.ldb);

  // Batch dims: drop size 1, merge neighbours whose strides chain in all three operands.
  struct BDim {
    int64_t n, sa, sb, sc;
  };
  std::vector<BDim> dims;  // innermost first
  for (int d = nd - 3; d >= 0; --d) {
    if (c0.shape[d] == 1) continue;
    const BDim x{c0.shape[d], A.strides[d], B.strides[d], c0.strides[d]};
    if (!dims.empty()) {
      BDim& in = dims.back();
      if (x.sa == in.sa * in.n && x.sb == in.sb * in.n && x.sc == in.sc * in.n) {
        in.n *= x.n;
        continue;
      }
    }
    dims.push_back(x);
  }
  if (!dims.empty()) p.batch = dims[0].n, p.sa = dims[0].sa, p.sb = dims[0].sb, p.sc = dims[0].sc;
  int64_t outer = 1;
  for (size_t i = 1; i < dims.size(); ++i) outer *= dims[i].n;
  for (int64_t o = 0; o < outer; ++o) {
    int64_t offa = 0, offb = 0, offc = 0, r = o;
    for (size_t i = 1; i < dims.size(); ++i) {
      const int64_t idx = r % dims[i].n;
      r /= dims[i].n;
      offa += idx * dims[i].sa, offb += idx * dims[i].sb, offc += idx * dims[i].sc;
    }
    GemmProblem q = p;
    q.a = static_cast<const char*>(A.data) + offa * int64_t(es);
    q.b = static_cast<const char*>(B.data) + offb * int64_t(es);
    q.c = static_cast<char*>(c0.data) + offc * int64_t(es);
    run_problem(q, own_only, bias, epilogue, s);
  }
}

}  // namespace

void gemm(const View& a, const View& b, const View& c, double alpha, double beta) {
  run_gemm(a, b, c, alpha, beta, false, nullptr, kEpilogueNone);
}

void gemm_own(const View& a, const View& b, const View& c, double alpha, double beta) {
  run_gemm(a, b, c, alpha, beta, true, nullptr, kEpilogueNone);
}

void gemm_bias(const View& a, const View& b, const View& bias, const View& c, int epilogue) {
  const int nd = c.ndim;
  NG_CHECK(nd >= 2, "matmul: gemm_bias expects C of rank >= 2");
  const int64_t N = c.shape[nd - 1];
  NG_CHECK(bias.ndim == 1 && bias.shape[0] == N && (bias.strides[0] == 1 || N == 1),
           "matmul: bias must be a contiguous vector of C's last dim (got rank " + std::to_string(bias.ndim) +
               (bias.ndim == 1 ? ", length " + std::to_string(bias.shape[0]) : std::string()) + "; expected [" +
               std::to_string(N) + "])");
  NG_CHECK(bias.dtype == c.dtype, std::string("matmul: bias dtype differs from the output's (got ") +
                                      dtype_name(bias.dtype) + ", expected " + dtype_name(c.dtype) + ")");
  NG_CHECK(bias.device == c.device, "matmul: bias must be on the output's CUDA device");
  NG_CHECK(epilogue == kEpilogueNone || epilogue == kEpilogueGeluTanh,
           "matmul: unknown epilogue " + std::to_string(epilogue) + " (expected 0 none or 1 gelu-tanh)");
  run_gemm(a, b, c, 1.0, 0.0, false, bias.data, epilogue);
}

std::string gemm_backend(int device) { return cublaslt_status(device); }

void set_float32_matmul_precision(int mode) {
  NG_CHECK(mode >= 0 && mode <= 2, "setFloat32MatmulPrecision: expected 0 'highest', 1 'high' or 2 'medium' (got " +
                                       std::to_string(mode) + ")");
  g_fp32_precision.store(mode);
}
int float32_matmul_precision() { return g_fp32_precision.load(); }

}  // namespace cuda
}  // namespace ng
