// The own SIMT GEMM: float32 and float64 on every architecture, and bf16/f16 where the
// tensor-core kernel cannot run (sm_75). Canonical problem: see gemm_internal.cuh.
//
// Algorithm (the classic register-tiled SGEMM): a block of 256 threads computes a 128x128
// tile of C; thread (tx, ty) of a 16x16 grid owns an 8x8 sub-tile split into rows
// {4ty..4ty+3, 64+4ty..} and columns {4tx.., 64+4tx..}, so that the shared-memory reads of a
// warp are broadcasts. K advances 8 at a time: the next 128x8 slices of A and B are loaded
// into registers (coalesced along whichever dim is contiguous: A/B may be stored either
// way) while the current slices, converted to the accumulator type, are multiplied out of
// shared memory. Accumulation is in fp32 (fp64 for float64). Edges are bounds-checked.
// Memory traffic per block: (128*K + K*128) elements read, 128*128 written (read too when
// beta != 0).
#include <algorithm>

#include "cuda/gemm_internal.cuh"

namespace ng {
namespace cuda {
namespace {

constexpr int kSB = 128, kSK = 8, kSThreads = 256, kPad = 4;

struct SimtArgs {
  const void* a;
  const void* b;
  void* c;
  int64_t M, N, K, lda, ldb, ldc, sa, sb, sc;
  int64_t batch0;
  double alpha, beta;
  int ta, tb;
  int tiles_n;
};

template <class Acc, class T>
__device__ __forceinline__ Acc load_as(T v) {
  return static_cast<Acc>(v);
}
template <>
__device__ __forceinline__ float load_as<float, __nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <>
__device__ __forceinline__ float load_as<float, __half>(__half v) {
  return __half2float(v);
}
template <class T, class Acc>
__device__ __forceinline__ T store_as(Acc v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 store_as<__nv_bfloat16, float>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half store_as<__half, float>(float v) {
  return __float2half_rn(v);
}

template <class T, class Acc>
__global__ void __launch_bounds__(kSThreads) gemm_simt_kernel(const SimtArgs p) {
  __shared__ Acc As[kSK][kSB + kPad];  // As[k][m]
  __shared__ Acc Bs[kSK][kSB + kPad];  // Bs[k][n]
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int64_t m0 = int64_t(blockIdx.x / p.tiles_n) * kSB;
  const int64_t n0 = int64_t(blockIdx.x % p.tiles_n) * kSB;
  const int64_t bi = p.batch0 + blockIdx.y;
  const T* A = static_cast<const T*>(p.a) + bi * p.sa;
  const T* B = static_cast<const T*>(p.b) + bi * p.sb;
  T* C = static_cast<T*>(p.c) + bi * p.sc;

  // Element e of a 128x8 slice: consecutive threads walk the operand's contiguous dim.
  auto a_idx = [&](int e, int& mm, int& kk) {
    if (p.ta) mm = e & 127, kk = e >> 7;
    else mm = e >> 3, kk = e & 7;
  };
  auto b_idx = [&](int e, int& nn, int& kk) {
    if (p.tb) nn = e >> 3, kk = e & 7;
    else nn = e & 127, kk = e >> 7;
  };
  Acc ra[4], rb[4];
  auto load = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int e = tid + i * kSThreads;
      int mm, kk;
      a_idx(e, mm, kk);
      int64_t m = m0 + mm, k = k0 + kk;
      ra[i] = (m < p.M && k < p.K) ? load_as<Acc>(A[p.ta ? k * p.lda + m : m * p.lda + k]) : Acc(0);
      int nn;
      b_idx(e, nn, kk);
      const int64_t n = n0 + nn;
      k = k0 + kk;
      rb[i] = (n < p.N && k < p.K) ? load_as<Acc>(B[p.tb ? n * p.ldb + k : k * p.ldb + n]) : Acc(0);
    }
  };

  Acc acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = Acc(0);

  const int64_t nk = (p.K + kSK - 1) / kSK;
  load(0);
  for (int64_t kt = 0; kt < nk; ++kt) {
    __syncthreads();  // the previous slice has been consumed by every thread
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int e = tid + i * kSThreads;
      int mm, nn, kk;
      a_idx(e, mm, kk);
      As[kk][mm] = ra[i];
      b_idx(e, nn, kk);
      Bs[kk][nn] = rb[i];
    }
    __syncthreads();
    if (kt + 1 < nk) load((kt + 1) * kSK);  // in flight while this slice is multiplied
#pragma unroll
    for (int k = 0; k < kSK; ++k) {
      Acc av[8], bv[8];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        av[i] = As[k][ty * 4 + i];
        av[4 + i] = As[k][64 + ty * 4 + i];
        bv[i] = Bs[k][tx * 4 + i];
        bv[4 + i] = Bs[k][64 + tx * 4 + i];
      }
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] += av[i] * bv[j];
    }
  }

  const Acc alpha = static_cast<Acc>(p.alpha), beta = static_cast<Acc>(p.beta);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t m = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
    if (m >= p.M) continue;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t n = n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4);
      if (n >= p.N) continue;
      T* out = C + m * p.ldc + n;
      Acc v = alpha * acc[i][j];
      if (p.beta != 0) v += beta * load_as<Acc>(*out);
      *out = store_as<T>(v);
    }
  }
}

template <class T, class Acc>
void launch_simt_typed(const GemmProblem& p, cudaStream_t s) {
  SimtArgs a{};
  a.a = p.a, a.b = p.b, a.c = p.c;
  a.M = p.M, a.N = p.N, a.K = p.K;
  a.lda = p.lda, a.ldb = p.ldb, a.ldc = p.ldc;
  a.sa = p.sa, a.sb = p.sb, a.sc = p.sc;
  a.alpha = p.alpha, a.beta = p.beta;
  a.ta = p.ta, a.tb = p.tb;
  const int64_t tm = (p.M + kSB - 1) / kSB, tn = (p.N + kSB - 1) / kSB;
  if (tm * tn > 0x7fffffffLL) throw Error("matmul: matrix too large for the own CUDA kernel");
  a.tiles_n = static_cast<int>(tn);
  for (int64_t b0 = 0; b0 < p.batch; b0 += 65535) {
    a.batch0 = b0;
    const unsigned nb = static_cast<unsigned>(std::min<int64_t>(p.batch - b0, 65535));
    gemm_simt_kernel<T, Acc><<<dim3(static_cast<unsigned>(tm * tn), nb), kSThreads, 0, s>>>(a);
    check_launch("matmul");
  }
}

}  // namespace

void launch_gemm_simt(const GemmProblem& p, cudaStream_t s) {
  switch (p.dtype) {
    case DType::F32: launch_simt_typed<float, float>(p, s); return;
    case DType::F64: launch_simt_typed<double, double>(p, s); return;
    case DType::BF16: launch_simt_typed<__nv_bfloat16, float>(p, s); return;
    case DType::F16: launch_simt_typed<__half, float>(p, s); return;
    default: throw Error(std::string("matmul: expected a floating-point dtype on CUDA (got ") + dtype_name(p.dtype) + ")");
  }
}

}  // namespace cuda
}  // namespace ng
