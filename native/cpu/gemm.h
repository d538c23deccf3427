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

// A register-blocked micro-kernel: C[0:rows, 0:cols] = alpha * Ap @ Bp + beta * C over
// k steps, where Ap is an MR-row sliver packed k-major (Ap[p*MR + i]), Bp holds NR
// contiguous columns per k step, ldb apart (a packed sliver: ldb = NR; or rows of a
// row-major B read in place), and C has unit column stride and row stride ldc. Each
// kernel handles a fixed number of rows (1..MR); cols <= NR is handled by masking the
// writes to C (all NR columns of Bp are read). beta == 0 writes C without reading it.
template <class T>
using MicroKernel = void (*)(int64_t k, const T* ap, const T* bp, int64_t ldb, T* c, int64_t ldc, T alpha, T beta,
                             int cols);

constexpr int kMaxMR = 16;

// Micro-kernels for 1..MR rows with the cache blocking that suits them (MC a multiple
// of MR, NC of NR).
template <class T>
struct GemmKernel {
  MicroKernel<T> ukr[kMaxMR + 1] = {};  // ukr[r] computes r rows
  // Optional vectorised packing of one full sliver (null: the portable loops):
  // MR rows of a row-major A (row stride lda), NR columns of a column-major B.
  void (*pack_a_rows)(const T* a, int64_t lda, int64_t kc, T* dst) = nullptr;
  void (*pack_b_cols)(const T* b, int64_t ldb, int64_t kc, T* dst) = nullptr;
  int mr = 0, nr = 0;
  int64_t kc = 0, mc = 0, nc = 0;
  const char* name = "";
};

// Filled by the instruction-set builds (gemm_avx512.cc, gemm_avx2.cc), chosen at run time.
void gemm_kernels_avx512(GemmKernel<float>* f32, GemmKernel<double>* f64);
void gemm_kernels_avx2(GemmKernel<float>* f32, GemmKernel<double>* f64);

}  // namespace detail
}  // namespace ng
