// The own tensor-core GEMM for bf16/f16 on sm_80+ (the fallback when cuBLASLt is absent,
// and the reference cuBLASLt is tested against). Canonical problem: see gemm_internal.cuh.
//
// Algorithm (the Ampere recipe of CUTLASS's sm80 multistage kernels and llm.c's dev
// matmuls; written from scratch here):
// - A block of 8 warps computes a 128x256 tile of C; warp (wm, wn) in a 2x4 grid owns a
//   64x64 sub-tile = 4x8 mma.sync.m16n8k16 tiles, accumulated in fp32 registers (128 per
//   thread). Per k16 step a warp issues 8 ldmatrix.x4 for 32 mma's.
// - K advances 32 at a time through a 4-stage ring in shared memory (24 KiB per stage: a
//   128x32 tile of A and a 256x32 tile of B). Stages are filled with cp.async 16-byte
//   copies, STAGES-1 tiles ahead of the tile being multiplied, so global latency hides
//   behind the mma's; one __syncthreads per k tile.
// - Fragments come out of shared memory with ldmatrix (.trans when the operand is stored
//   M- or N-contiguous), so both operands may be in either layout without any copy:
//   "K-major" tiles are [rows][32 k] (4 chunks of 16 B per row), "MN-major" tiles are
//   [32 k][rows] (rows/8 chunks per row). The 16-byte chunk index is XOR-swizzled with the
//   row so that the 8 row addresses of every ldmatrix phase hit 8 distinct bank groups:
//   K-major: chunk ^ ((row >> 1) & 3); MN-major: chunk ^ (row & 7).
//   (The fragment mapping and the swizzle were checked against a NumPy model of ldmatrix
//   and mma for all four layouts, with edge tiles in M, N and K.)
// - Edges: a chunk that is out of range is zero-filled; a partial or misaligned chunk
//   (the contiguous dim not a multiple of 8, or an unaligned base) is loaded element by
//   element, so any M, N, K and any leading dimension work.
// - Block order is grouped along M (8 tiles) so that blocks running together share A and
//   B tiles in L2.
// Memory traffic per block: (128 + 256) * K * 2 bytes read, 128x256 outputs written once
// (read once more when beta != 0).
#include <algorithm>
#include <type_traits>

#include "cuda/gemm_internal.cuh"

namespace ng {
namespace cuda {
namespace {

constexpr int kBM = 128, kBN = 256, kBK = 32, kStages = 4, kThreads = 256;
constexpr int kWM = 64, kWN = 64;  // warp tile; the 8 warps form a 2 (M) x 4 (N) grid
constexpr int kATileElems = kBM * kBK, kBTileElems = kBN * kBK;
constexpr int kStageElems = kATileElems + kBTileElems;
constexpr int kSmemBytes = kStages * kStageElems * 2;  // 96 KiB: needs the opt-in attribute
static_assert(2 * kWM == kBM && 4 * kWN == kBN && kThreads == 8 * 32, "8 warps in a 2x4 grid cover the block tile");
static_assert(kATileElems / 8 % kThreads == 0 && kBTileElems / 8 % kThreads == 0, "chunks per thread");

struct MmaArgs {
  const uint16_t* a;
  const uint16_t* b;
  void* c;
  int64_t M, N, K, lda, ldb, ldc, sa, sb, sc;
  int64_t batch0;  // first batch index of this launch (batches beyond 65535 take several)
  float alpha, beta;
  int a_vec, b_vec, c_pair;  // 16-byte cp.async allowed for A / B; 4-byte pair stores for C
  int tiles_m, tiles_n;
};

// Element offset of 16-byte chunk `ch` of smem row `row` in a swizzled tile (see above)
// whose extent along M or N is ROWS (an MN-major row holds ROWS / 8 chunks).
template <bool KMAJOR, int ROWS>
__device__ __forceinline__ int tile_off(int row, int ch) {
  return KMAJOR ? (row * 4 + (ch ^ ((row >> 1) & 3))) * 8 : (row * (ROWS / 8) + (ch ^ (row & 7))) * 8;
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void ldsm_x4(unsigned addr, unsigned (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_trans(unsigned addr, unsigned (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
template <class T>
__device__ __forceinline__ void mma16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// Fills one operand tile of a stage: rows o0.. (M or N) by k0.. (K). g addresses element
// (o, k) at g[o*ld + k] (KMAJOR) or g[k*ld + o]. ROWS*32/8 chunks of 8 elements.
template <bool KMAJOR, int ROWS>
__device__ __forceinline__ void load_tile(uint16_t* sm, const uint16_t* g, int64_t ld, int64_t o0, int64_t k0,
                                          int64_t O, int64_t K, bool vec, int tid) {
#pragma unroll
  for (int i = 0; i < ROWS * kBK / 8 / kThreads; ++i) {
    const int q = tid + i * kThreads;
    int row, ch;
    int64_t o, k;
    if (KMAJOR) {
      row = q >> 2, ch = q & 3, o = o0 + row, k = k0 + ch * 8;
    } else {
      row = q / (ROWS / 8), ch = q % (ROWS / 8), k = k0 + row, o = o0 + ch * 8;
    }
    uint16_t* dst = sm + tile_off<KMAJOR, ROWS>(row, ch);
    const bool row_ok = KMAJOR ? (o < O) : (k < K);
    const int64_t pos = KMAJOR ? k : o, ext = KMAJOR ? K : O;  // along the contiguous dim
    if (row_ok && pos < ext) {
      const uint16_t* src = KMAJOR ? g + o * ld + k : g + k * ld + o;
      if (vec && pos + 8 <= ext) {
        cp_async16(smem_u32(dst), src);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) dst[j] = (pos + j < ext) ? src[j] : uint16_t(0);
      }
    } else {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);  // zero bits == 0.0 in bf16/f16
    }
  }
}

template <class T>
__device__ __forceinline__ void store_pair(T* p, float x, float y) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(x, y);
  } else {
    *reinterpret_cast<__half2*>(p) = __floats2half2_rn(x, y);
  }
}
#endif  // __CUDA_ARCH__ >= 800

template <class T, bool A_KMAJOR, bool B_KMAJOR>
__global__ void __launch_bounds__(kThreads, 1) gemm_mma_kernel(const MmaArgs p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int kMT = kWM / 16;  // m16 tiles per warp
  constexpr int kNT = kWN / 8;   // n8 tiles per warp
  constexpr int kGroupM = 8;     // M tiles per block-order group
  extern __shared__ __align__(128) unsigned char smem_raw[];
  uint16_t* smem = reinterpret_cast<uint16_t*>(smem_raw);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wm0 = (warp & 1) * kWM, wn0 = (warp >> 1) * kWN;

  // grouped block order: kGroupM M-tiles share each sweep over N
  const int pid = blockIdx.x;
  const int per_group = kGroupM * p.tiles_n;
  const int first_m = (pid / per_group) * kGroupM;
  const int gm = min(p.tiles_m - first_m, kGroupM);
  const int local = pid % per_group;
  const int64_t m0 = int64_t(first_m + local % gm) * kBM;
  const int64_t n0 = int64_t(local / gm) * kBN;

  const int64_t bi = p.batch0 + blockIdx.y;
  const uint16_t* A = p.a + bi * p.sa;
  const uint16_t* B = p.b + bi * p.sb;
  T* C = static_cast<T*>(p.c) + bi * p.sc;

  float acc[kMT][kNT][4];
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

  const int nk = static_cast<int>((p.K + kBK - 1) / kBK);
  auto load_stage = [&](int stage, int kt) {
    uint16_t* sA = smem + stage * kStageElems;
    load_tile<A_KMAJOR, kBM>(sA, A, p.lda, m0, int64_t(kt) * kBK, p.M, p.K, p.a_vec, tid);
    load_tile<B_KMAJOR, kBN>(sA + kATileElems, B, p.ldb, n0, int64_t(kt) * kBK, p.N, p.K, p.b_vec, tid);
  };

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < nk) load_stage(s, s);
    cp_async_commit();  // empty groups keep the group count uniform
  }

  for (int kt = 0; kt < nk; ++kt) {
    cp_async_wait<kStages - 2>();  // tile kt has landed (this thread's copies) ...
    __syncthreads();               // ... for every thread; and stage (kt-1) % S is free
    const int next = kt + kStages - 1;
    if (next < nk) load_stage(next % kStages, next);
    cp_async_commit();

    const uint16_t* sA = smem + (kt % kStages) * kStageElems;
    const uint16_t* sB = sA + kATileElems;
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk) {
      unsigned af[kMT][4], bfr[kNT][2];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        if (A_KMAJOR) {  // smem [m][k]: lanes 0-15 rows m..m+15 at k, lanes 16-31 at k+8
          const int row = wm0 + mt * 16 + (lane & 15), ch = kk * 2 + (lane >> 4);
          ldsm_x4(smem_u32(sA + tile_off<true, kBM>(row, ch)), af[mt]);
        } else {  // smem [k][m]: matrices (k0-7,m0-7) (k0-7,m8-15) (k8-15,m0-7) (k8-15,m8-15)
          const int row = kk * 16 + (lane & 7) + ((lane >> 4) << 3);
          const int ch = (wm0 + mt * 16) / 8 + ((lane >> 3) & 1);
          ldsm_x4_trans(smem_u32(sA + tile_off<false, kBM>(row, ch)), af[mt]);
        }
      }
#pragma unroll
      for (int np = 0; np < kNT / 2; ++np) {
        unsigned r[4];
        if (B_KMAJOR) {  // smem [n][k]: matrices (n0-7,k0-7) (n0-7,k8-15) (n8-15,k0-7) (n8-15,k8-15)
          const int row = wn0 + np * 16 + (lane & 7) + ((lane >> 4) << 3);
          const int ch = kk * 2 + ((lane >> 3) & 1);
          ldsm_x4(smem_u32(sB + tile_off<true, kBN>(row, ch)), r);
        } else {  // smem [k][n]: same four matrices, transposed on load
          const int row = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
          const int ch = (wn0 + np * 16) / 8 + (lane >> 4);
          ldsm_x4_trans(smem_u32(sB + tile_off<false, kBN>(row, ch)), r);
        }
        bfr[2 * np][0] = r[0];
        bfr[2 * np][1] = r[1];
        bfr[2 * np + 1][0] = r[2];
        bfr[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) mma16816<T>(acc[mt][nt], af[mt], bfr[nt]);
    }
  }

  // Epilogue: accumulator (mt, nt) holds rows group, group+8 and columns 2*tig, 2*tig+1.
  const int group = lane >> 2, tig = lane & 3;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
      const int64_t col = n0 + wn0 + nt * 8 + tig * 2;
      if (col >= p.N) continue;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = m0 + wm0 + mt * 16 + group + h * 8;
        if (row >= p.M) continue;
        T* out = C + row * p.ldc + col;
        float v0 = p.alpha * acc[mt][nt][2 * h], v1 = p.alpha * acc[mt][nt][2 * h + 1];
        if (col + 1 < p.N) {
          if (p.beta != 0.f) {
            v0 += p.beta * to_f<T>(out[0]);
            v1 += p.beta * to_f<T>(out[1]);
          }
          if (p.c_pair) {
            store_pair<T>(out, v0, v1);
          } else {
            out[0] = from_f<T>(v0);
            out[1] = from_f<T>(v1);
          }
        } else {
          if (p.beta != 0.f) v0 += p.beta * to_f<T>(out[0]);
          out[0] = from_f<T>(v0);
        }
      }
    }
  }
#endif  // __CUDA_ARCH__ >= 800
}

bool aligned(const void* ptr, int64_t ld, int64_t stride, int bytes) {
  const int64_t elems = bytes / 2;
  return reinterpret_cast<uintptr_t>(ptr) % bytes == 0 && ld % elems == 0 && stride % elems == 0;
}

template <class T, bool AK, bool BK>
void launch_typed(const GemmProblem& p, cudaStream_t s) {
  auto kern = gemm_mma_kernel<T, AK, BK>;
  // The 96 KiB of dynamic shared memory needs the opt-in attribute, once per device.
  static bool opted[64] = {};
  if (p.device >= 64 || !opted[p.device]) {
    NG_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes), "matmul");
    if (p.device < 64) opted[p.device] = true;
  }
  MmaArgs a{};
  a.a = static_cast<const uint16_t*>(p.a);
  a.b = static_cast<const uint16_t*>(p.b);
  a.c = p.c;
  a.M = p.M, a.N = p.N, a.K = p.K;
  a.lda = p.lda, a.ldb = p.ldb, a.ldc = p.ldc;
  a.sa = p.sa, a.sb = p.sb, a.sc = p.sc;
  a.alpha = static_cast<float>(p.alpha);
  a.beta = static_cast<float>(p.beta);
  a.a_vec = aligned(p.a, p.lda, p.batch > 1 ? p.sa : 0, 16);
  a.b_vec = aligned(p.b, p.ldb, p.batch > 1 ? p.sb : 0, 16);
  a.c_pair = aligned(p.c, p.ldc, p.batch > 1 ? p.sc : 0, 4);
  const int64_t tm = (p.M + kBM - 1) / kBM, tn = (p.N + kBN - 1) / kBN;
  if (tm * tn > 0x7fffffffLL) throw Error("matmul: matrix too large for the own CUDA kernel");
  a.tiles_m = static_cast<int>(tm);
  a.tiles_n = static_cast<int>(tn);
  for (int64_t b0 = 0; b0 < p.batch; b0 += 65535) {
    a.batch0 = b0;
    const unsigned nb = static_cast<unsigned>(std::min<int64_t>(p.batch - b0, 65535));
    kern<<<dim3(static_cast<unsigned>(tm * tn), nb), kThreads, kSmemBytes, s>>>(a);
    check_launch("matmul");
  }
}

template <class T>
void launch_layout(const GemmProblem& p, cudaStream_t s) {
  const bool ak = !p.ta, bk = p.tb;  // A stored [m][k] / B stored [n][k]
  if (ak && bk) launch_typed<T, true, true>(p, s);
  else if (ak) launch_typed<T, true, false>(p, s);
  else if (bk) launch_typed<T, false, true>(p, s);
  else launch_typed<T, false, false>(p, s);
}

}  // namespace

bool gemm_mma_supported(const GemmProblem& p) {
  return (p.dtype == DType::BF16 || p.dtype == DType::F16) && compute_capability(p.device) >= 80;
}

void launch_gemm_mma(const GemmProblem& p, cudaStream_t s) {
  if (p.dtype == DType::BF16) launch_layout<__nv_bfloat16>(p, s);
  else if (p.dtype == DType::F16) launch_layout<__half>(p, s);
  else throw Error("matmul: the tensor-core kernel takes bfloat16 or float16");
}

}  // namespace cuda
}  // namespace ng
