// Internal to the gemm family (cuda/gemm*.cu, cuda/cublaslt.cu): one canonical matrix
// problem that every backend takes, after cuda/gemm.cu has resolved views, transposes,
// batch dims and scratch copies.
#pragma once
#include <cstdint>
#include <string>

#include "cuda/common.cuh"

namespace ng {
namespace cuda {

// C[b] = alpha * A[b] @ B[b] + beta * C[b] for b < batch, row-major C:
//   C[m, n] = c[b*sc + m*ldc + n]
//   A[m, k] = ta ? a[b*sa + k*lda + m] : a[b*sa + m*lda + k]
//   B[k, n] = tb ? b[b*sb + n*ldb + k] : b[b*sb + k*ldb + n]
// M, N, K >= 1; leading dimensions are >= the extent of the contiguous dim, > 0.
// Batch strides may be 0 (broadcast) for A and B.
struct GemmProblem {
  DType dtype = DType::F32;
  int device = 0;
  int64_t M = 0, N = 0, K = 0, batch = 1;
  const void* a = nullptr;
  bool ta = false;
  int64_t lda = 0, sa = 0;
  const void* b = nullptr;
  bool tb = false;
  int64_t ldb = 0, sb = 0;
  void* c = nullptr;
  int64_t ldc = 0, sc = 0;
  double alpha = 1, beta = 0;
};

// cuBLASLt (cuda/cublaslt.cu). Returns false, having done nothing, when cuBLASLt is not
// loaded or has no algorithm for the problem; the caller then runs the own kernels.
// bias: nullptr, or a contiguous vector of N elements of p.dtype added to every row,
// with epilogue kEpilogueNone / kEpilogueGeluTanh applied after it.
bool cublaslt_gemm(const GemmProblem& p, const void* bias, int epilogue);
std::string cublaslt_status(int device);  // "cublasLt (path)" or "own (why)"

// Own kernels. gemm_mma_supported: bf16/f16 on sm_80+ (cuda/gemm_mma.cu).
bool gemm_mma_supported(const GemmProblem& p);
void launch_gemm_mma(const GemmProblem& p, cudaStream_t s);
void launch_gemm_simt(const GemmProblem& p, cudaStream_t s);  // any float dtype, any arch

}  // namespace cuda
}  // namespace ng
