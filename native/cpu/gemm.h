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
// The float32 micro-kernel chosen for this process ("avx512 14x32", "avx2 6x16",
// "portable 4x8"): by CPU feature, or by NODEGRAD_GEMM_KERNEL=avx2|portable.
const char* gemm_kernel_name();

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
  // MR rows of a column-major A (column stride lda), of `avail` >= MR rows that may be
  // read from a on (the kernel must not read past them).
  void (*pack_a_cols)(const T* a, int64_t lda, int64_t kc, int64_t avail, T* dst) = nullptr;
  // Optional unpacked kernels for skinny products (null: the portable direct loops).
  // gemm_short: C[m <= 4, n] with B row-major (row stride ldb) and C row-major (rsc).
  void (*gemm_short)(int64_t m, int64_t n, int64_t k, const T* a, int64_t rsa, int64_t csa, const T* b, int64_t ldb,
                     T* c, int64_t rsc, T alpha, T beta) = nullptr;
  // gemm_narrow: C[m, n <= 8], any strides.
  void (*gemm_narrow)(int64_t m, int n, int64_t k, const T* a, int64_t rsa, int64_t csa, const T* b, int64_t rsb,
                      int64_t csb, T* c, int64_t rsc, int64_t csc, T alpha, T beta) = nullptr;
  // gemm_dot: C[m <= 4, n] with rows of A (row stride rsa) and columns of B (column
  // stride csb) contiguous.
  void (*gemm_dot)(int64_t m, int64_t n, int64_t k, const T* a, int64_t rsa, const T* b, int64_t csb, T* c,
                   int64_t rsc, int64_t csc, T alpha, T beta) = nullptr;
  int mr = 0, nr = 0;
  int64_t kc = 0, mc = 0, nc = 0;
  const char* name = "";
};

// Filled by the instruction-set builds (gemm_avx512.cc, gemm_avx2.cc), chosen at run time.
void gemm_kernels_avx512(GemmKernel<float>* f32, GemmKernel<double>* f64);
void gemm_kernels_avx2(GemmKernel<float>* f32, GemmKernel<double>* f64);
// The AVX2 skinny kernels alone (the AVX-512 table uses them too).
void gemm_skinny_avx2(GemmKernel<float>* f32);

}  // namespace detail
}  // namespace ng
