// Internal to the attention family (cuda/attention*.cu): the kernel parameter block, the
// device helpers every attention kernel shares (strided addressing, masks, Philox
// dropout identical to native/cpu/attention.cc) and the launchers each file defines.
#pragma once
#include <cstring>
#include <type_traits>

#include "cuda/attention.h"
#include "cuda/common.cuh"

namespace ng {
namespace cuda {
namespace attn {

// Everything a kernel needs, passed by value. Sizes are int64 so index products never
// overflow; kernels narrow to int only for tile-local indices.
struct Params {
  const void *q, *k, *v, *o, *dout;
  void *out, *lse, *dq, *dk, *dv, *dmask;
  void* dsum;  // backward scratch: rowsum(dO * O) per query row (float, double for f64)
  int64_t BH, Tq, Tk, D, Dv, H;
  int64_t group, Hk;  // query slices per kv slice (GQA; 1 = plain), kv heads (H / group; 1 without layout)
  int64_t window;     // > 0: sliding window, query i sees keys j > i - window
  int64_t qs[3], ks[3], vs[3];  // strides of (b, h, t); d is contiguous (k, v: over kv heads)
  double scale;
  bool causal;
  int mask_kind;  // 0 none, 1 bool (uint8), 2 float (q's dtype)
  const void* mask;
  const int64_t* mask_off;  // device array [BH]
  int64_t mask_si, mask_sj;
  bool dropout;
  uint64_t seed, seed_offset;
  uint64_t keep_thr;  // keep when the 53-bit draw x < keep_thr (= floor((1 - p) 2^53))
  double inv_keep;
};

__device__ __forceinline__ int64_t slice_base(const int64_t* s, int64_t H, int64_t bh) {
  return (bh / H) * s[0] + (bh % H) * s[1];
}
// Start of kv slice kvh (query slice bh reads kv slice bh / group) in k or v.
__device__ __forceinline__ int64_t kv_base(const int64_t* s, const Params& p, int64_t kvh) {
  return slice_base(s, p.Hk, kvh);
}
// Causal and sliding-window visibility of key j from query i (masks apart).
__device__ __forceinline__ bool visible(const Params& p, int64_t i, int64_t j) {
  return !(p.causal && j > i) && !(p.window > 0 && j <= i - p.window);
}
// First key query i sees (0 without a window).
__device__ __forceinline__ int64_t key_lo(const Params& p, int64_t i) {
  return p.window > 0 && i - p.window + 1 > 0 ? i - p.window + 1 : 0;
}

// Philox4x32-10 exactly as native/cpu/random.h; the 53-bit draw of cpu/attention.cc's
// dropout_keep ((w0 << 21) ^ (w1 >> 11)): keep iff (x + 1) 2^-53 <= 1 - p, i.e. x < keep_thr.
__device__ __forceinline__ bool dropout_keep(const Params& p, int64_t bh, int64_t i, int64_t j) {
  const uint64_t c = p.seed_offset + (static_cast<uint64_t>(bh) * p.Tq + i) * p.Tk + j;
  uint32_t c0 = static_cast<uint32_t>(c), c1 = static_cast<uint32_t>(c >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(p.seed), k1 = static_cast<uint32_t>(p.seed >> 32);
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  const uint64_t x = ((static_cast<uint64_t>(c0) << 21) ^ (c1 >> 11)) & ((1ull << 53) - 1);
  return x < p.keep_thr;
}

// Keep decisions of a thread's mma accumulator fragment (NT tiles of 8 columns, elements
// e = 0..3 at rows +0/+0/+8/+8 and columns +0/+1/+0/+1) as bit n * 4 + e. The loop is not
// unrolled, so Philox is inlined once per kernel instead of once per element (code size,
// compile time) while the fragment itself stays in registers. KEYS_ARE_ROWS: the fragment
// is transposed (rows are keys, columns are queries, as in the dK/dV kernel).
template <int NT, bool KEYS_ARE_ROWS>
__device__ __forceinline__ uint32_t dropout_bits(const Params& p, int64_t bh, int64_t row0, int64_t col0) {
  static_assert(NT * 4 <= 32, "one bit per fragment element");
  uint32_t bits = 0;
#pragma unroll 1
  for (int idx = 0; idx < NT * 4; ++idx) {
    const int n = idx >> 2, e = idx & 3;
    const int64_t r = row0 + (e >> 1) * 8, c = col0 + n * 8 + (e & 1);
    const bool keep = KEYS_ARE_ROWS ? dropout_keep(p, bh, c, r) : dropout_keep(p, bh, r, c);
    bits |= static_cast<uint32_t>(keep) << idx;
  }
  return bits;
}

template <class Acc>
__device__ __forceinline__ Acc neg_inf() {
  return -static_cast<Acc>(INFINITY);
}

// The mask's contribution to score (bh, i, j) of a query row whose mask row starts at
// mask + moff: 0 (no mask), -inf (bool false) or the float value. No causal here.
template <class T, class Acc>
__device__ __forceinline__ Acc mask_term(const Params& p, int64_t moff, int64_t j) {
  if (p.mask_kind == 1) return static_cast<const uint8_t*>(p.mask)[moff + j * p.mask_sj] ? Acc(0) : neg_inf<Acc>();
  if (p.mask_kind == 2) {
    const T v = static_cast<const T*>(p.mask)[moff + j * p.mask_sj];
    if constexpr (sizeof(Acc) == sizeof(double)) return static_cast<Acc>(v);
    else return to_f<T>(v);
  }
  return Acc(0);
}
__device__ __forceinline__ int64_t mask_row(const Params& p, int64_t bh, int64_t i) {
  return p.mask_kind ? p.mask_off[bh] + i * p.mask_si : 0;
}

template <class Acc>
__device__ __forceinline__ Acc warp_max(Acc v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <class Acc>
__device__ __forceinline__ Acc warp_sum(Acc v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ---- tensor-core building blocks (sm_80+; the flash kernels' bodies are compiled only
// for __CUDA_ARCH__ >= 800, and the host never launches them below compute capability 80).

// 16-byte global -> shared copy; pred false zero-fills the 16 bytes (edge rows).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool pred) {
#if __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

// Four 8x8 b16 matrices; lane l supplies the address of row (l & 7) of matrix l >> 3.
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void* smem) {
#if __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
#endif
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void* smem) {
#if __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
#endif
}

// c += a b for a 16x16 (row) by 16x8 (col) tile, fp32 accumulators.
template <class T>
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#if __CUDA_ARCH__ >= 800
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
#endif
}

// Two floats as a packed pair of T (x in the low half: the lower column index).
template <class T>
__device__ __forceinline__ uint32_t pack2(float x, float y) {
  uint32_t r;
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    memcpy(&r, &h, 4);
  } else {
    __half2 h = __floats2half2_rn(x, y);
    memcpy(&r, &h, 4);
  }
  return r;
}

// Copies rows [row0, row0 + ROWS) of a [n, D] tile (row stride st elements, d contiguous)
// into shared memory with row stride LDS, zero-filling rows >= n. THREADS threads.
template <class T, int ROWS, int D, int LDS, int THREADS>
__device__ __forceinline__ void load_tile(T* s, const T* g, int64_t st, int64_t row0, int64_t n, int tid) {
  constexpr int CPR = D / 8;  // 16-byte chunks per row
#pragma unroll
  for (int c = tid; c < ROWS * CPR; c += THREADS) {
    const int r = c / CPR, cc = c % CPR;
    const int64_t gr = row0 + r;
    const bool ok = gr < n;
    cp_async16(s + r * LDS + cc * 8, ok ? g + gr * st + cc * 8 : g, ok);
  }
}

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Launchers (host). The flash ones return false when the shape, dtype, alignment or
// architecture is not covered, and the caller falls back to the simple kernels.
void simple_forward(const Params& p, DType dt, cudaStream_t s);
void simple_backward(const Params& p, DType dt, cudaStream_t s);  // needs p.dsum
void row_dot(const Params& p, DType dt, cudaStream_t s);           // p.dsum = rowsum(dO * O)
bool flash_supported(const Params& p, DType dt, int cc);
void flash_forward(const Params& p, DType dt, cudaStream_t s);
void flash_backward(const Params& p, DType dt, cudaStream_t s);  // needs p.dsum

}  // namespace attn
}  // namespace cuda
}  // namespace ng
