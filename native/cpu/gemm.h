// Batched, strided matrix multiply on the CPU: C = alpha * A @ B + beta * C.
// Views: A is [...batch, M, K], B is [...batch, K, N], C is [...batch, M, N], all of one
// dtype (float32 or float64), any strides (0 for a broadcast batch dim, transposed
// matrices with a row stride of 1). beta == 0 means C is written without being read.
// The algorithm and the blocking are described in gemm.cc.
#pragma once
#include <cstdint>

#include "common.h"

namespace ng {

void gemm(const View& a, const View& b, const View& c, double alpha, double beta);

namespace detail {

// A register-blocked micro-kernel: C[0:MR, 0:NR] = alpha * Ap @ Bp + beta * C over k
// steps, where Ap is an MR-row sliver packed k-major (Ap[p*MR + i]), Bp an NR-column
// sliver packed k-major (Bp[p*NR + j], 64-byte aligned), and C has unit column stride
// and row stride ldc. beta == 0 writes C without reading it.
template <class T>
using MicroKernel = void (*)(int64_t k, const T* ap, const T* bp, T* c, int64_t ldc, T alpha, T beta);

// A micro-kernel with the cache blocking that suits it (KC, MC multiples of MR, NC of NR).
template <class T>
struct GemmKernel {
  MicroKernel<T> ukr = nullptr;
  int mr = 0, nr = 0;
  int64_t kc = 0, mc = 0, nc = 0;
  const char* name = "";
};

// Filled by the instruction-set builds (gemm_avx512.cc, gemm_avx2.cc), chosen at run time.
void gemm_kernels_avx512(GemmKernel<float>* f32, GemmKernel<double>* f64);
void gemm_kernels_avx2(GemmKernel<float>* f32, GemmKernel<double>* f64);

}  // namespace detail
}  // namespace ng
