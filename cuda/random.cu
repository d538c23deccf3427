// Random fills on CUDA, the twin of native/cpu/random.cc.
//
// Algorithm: element i draws Philox4x32-10 at counter (offset + i) under key seed (the
// same rounds and key schedule as ng::Philox) and maps the words to a value with the
// CPU's formulas, in double. The double arithmetic uses __dmul_rn / __dadd_rn: nvcc would
// otherwise contract a + (b - a) * u into an FMA, which the CPU (built without -mfma)
// does not, and the values would differ in the last bit. One thread per element, grid
// stride; traffic: one write per element (the kernel is bound by the Philox rounds).
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/random.h"

namespace ng {
namespace cuda {
namespace {

__device__ __forceinline__ void philox(uint64_t seed, uint64_t c, uint32_t (&w)[4]) {
  uint32_t c0 = static_cast<uint32_t>(c), c1 = static_cast<uint32_t>(c >> 32), c2 = 0u, c3 = 0u;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  w[0] = c0;
  w[1] = c1;
  w[2] = c2;
  w[3] = c3;
}

// 53-bit uniform in (0, 1] (exact in double: no rounding involved)
__device__ __forceinline__ double u01_open(uint32_t w0, uint32_t w1) {
  uint64_t x = (static_cast<uint64_t>(w0) << 21) ^ (w1 >> 11);
  x &= (1ull << 53) - 1;
  return (static_cast<double>(x) + 1.0) * (1.0 / 9007199254740992.0);
}

// One step toward -infinity of a 16-bit float pattern (bfloat16 and float16 alike).
__device__ __forceinline__ unsigned short step_down16(unsigned short bits) {
  if ((bits & 0x7fffu) == 0) return 0x8001u;  // +-0 -> the smallest negative subnormal
  return (bits & 0x8000u) ? static_cast<unsigned short>(bits + 1) : static_cast<unsigned short>(bits - 1);
}

template <class T>
__global__ void random_kernel(T* __restrict__ out, int64_t n, int kind, uint64_t seed, uint64_t offset, double a,
                              double b) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    uint32_t w[4];
    philox(seed, offset + static_cast<uint64_t>(i), w);
    double v;
    if (kind == static_cast<int>(RandomKind::Uniform)) {
      const double u = u01_open(w[0], w[1]) - (1.0 / 9007199254740992.0);  // [0, 1), exact
      v = __dadd_rn(a, __dmul_rn(__dsub_rn(b, a), u));
      if (v >= b) v = a;
    } else if (kind == static_cast<int>(RandomKind::Normal)) {
      const double u1 = u01_open(w[0], w[1]), u2 = u01_open(w[2], w[3]);
      const double r = sqrt(__dmul_rn(-2.0, log(u1)));
      const double c = cos(__dmul_rn(6.283185307179586, u2));
      v = __dadd_rn(a, __dmul_rn(__dmul_rn(b, r), c));
    } else if (kind == static_cast<int>(RandomKind::Randint)) {
      const uint64_t range = static_cast<uint64_t>(__dsub_rn(b, a));
      const uint64_t r = ((static_cast<uint64_t>(w[0]) << 32) | w[1]) % range;
      v = __dadd_rn(a, static_cast<double>(r));
    } else {
      v = u01_open(w[0], w[1]) <= a ? 1.0 : 0.0;  // P(u <= p) = p for u in (0, 1]
    }
    if constexpr (std::is_same_v<T, float>) {
      float t = static_cast<float>(v);
      // v < b in double can still round up to b in float: step down to the float below
      if (kind == static_cast<int>(RandomKind::Uniform) && static_cast<double>(t) >= b)
        t = nextafterf(t, static_cast<float>(a));
      out[i] = t;
    } else if constexpr (std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>) {
      float f = static_cast<float>(v);
      if (kind == static_cast<int>(RandomKind::Uniform) && static_cast<double>(f) >= b) f = nextafterf(f, static_cast<float>(a));
      T t = from_f<T>(f);
      if (kind == static_cast<int>(RandomKind::Uniform) && static_cast<double>(to_f<T>(t)) >= b) {
        unsigned short bits;
        memcpy(&bits, &t, 2);
        bits = step_down16(bits);
        memcpy(&t, &bits, 2);
      }
      out[i] = t;
    } else {
      out[i] = static_cast<T>(v);
    }
  }
}

template <class T>
void launch(RandomKind kind, const View& out, uint64_t seed, uint64_t offset, double a, double b) {
  const int64_t n = out.numel();
  if (n <= 0) return;
  constexpr int kThreads = 256;
  random_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream()>>>(out.ptr<T>(), n, static_cast<int>(kind), seed,
                                                                       offset, a, b);
  check_launch("random");
}

}  // namespace

void random_fill(RandomKind kind, const View& out, uint64_t seed, uint64_t offset, double a, double b) {
  if (kind == RandomKind::Randint) NG_CHECK(b > a, "randint: high must be greater than low");
  switch (out.dtype) {
    case DType::F32: return launch<float>(kind, out, seed, offset, a, b);
    case DType::F64: return launch<double>(kind, out, seed, offset, a, b);
    case DType::I32: return launch<int32_t>(kind, out, seed, offset, a, b);
    case DType::Bool: return launch<uint8_t>(kind, out, seed, offset, a, b);
    case DType::BF16: return launch<__nv_bfloat16>(kind, out, seed, offset, a, b);
    case DType::F16: return launch<__half>(kind, out, seed, offset, a, b);
  }
  throw Error("random: unsupported dtype");
}

}  // namespace cuda
}  // namespace ng
