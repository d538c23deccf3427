// Matrix multiply on CUDA: the twin of native/cpu/gemm.h. Plain C++ (no CUDA headers), so
// the bindings include it in every build.
//
// Views: A [...batch, M, K], B [...batch, K, N], C [...batch, M, N] on one CUDA device, one
// dtype (float32, float64, bfloat16 or float16; bf16/f16 accumulate in fp32), any strides
// (0 broadcasts a batch dim of A or B). C = alpha * A @ B + beta * C; beta == 0 writes C
// without reading it. A matrix whose innermost two strides include a 1 (row- or
// column-major, i.e. a transposed view) is read in place; any other layout is first copied
// to a contiguous scratch buffer on the device.
//
// Backends: cuBLASLt, opened at run time with dlopen (cuda/cublaslt.cu; never linked), and
// the project's own kernels (cuda/gemm_mma.cu: bf16/f16 tensor cores on sm_80+;
// cuda/gemm_simt.cu: register-tiled SIMT for fp32/fp64 and for sm_75). gemm() uses
// cuBLASLt when it loaded and has an algorithm for the problem, else the own kernels.
#pragma once
#include <string>

#include "common.h"

namespace ng {
namespace cuda {

void gemm(const View& a, const View& b, const View& c, double alpha, double beta);
// Same contract, always the project's own kernels (tests compare the two; benchmarks time both).
void gemm_own(const View& a, const View& b, const View& c, double alpha, double beta);

// C = act(A @ B + bias) with bias [N] (contiguous, C's dtype) broadcast over rows and batches.
// epilogue: kEpilogueNone or kEpilogueGeluTanh. Fused into cuBLASLt's epilogue when it
// supports the problem, else the own GEMM followed by a bias/activation pass.
constexpr int kEpilogueNone = 0;
constexpr int kEpilogueGeluTanh = 1;
void gemm_bias(const View& a, const View& b, const View& bias, const View& c, int epilogue);

// "cublasLt (<path>)" or "own (<why cuBLASLt is absent>)". Loads cuBLASLt on first use.
std::string gemm_backend(int device);

// PyTorch's torch.set_float32_matmul_precision: 0 'highest' (strict fp32, the default),
// 1 'high' (TF32 tensor cores allowed), 2 'medium' (bf16 tensor cores allowed). Affects
// float32 matmuls through cuBLASLt only; the own fp32 kernel is always strict.
void set_float32_matmul_precision(int mode);
int float32_matmul_precision();

}  // namespace cuda
}  // namespace ng
