// Rotary embedding on CUDA. One block per (batch row, time step); its threads are laid
// out as (head group, frequency) with the block size a multiple of D/2, so every thread
// keeps one frequency: it evaluates sincosf of its angle once and applies it to the
// pair (i, i + D/2) of every head it visits (H / (blockDim / (D/2)) of them). No cos/sin
// table exists in memory. Loads of a warp are consecutive elements of one row
// (coalesced); in place is safe because each pair is read and written by one thread.
// Memory traffic: x read once, out written once, one int32 position per block.
#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/rope.h"

namespace ng {
namespace cuda {
namespace {

constexpr int kMaxHalf = 256;
constexpr int kTargetThreads = 256;

struct Params {
  int64_t B, H, T, half;
  int64_t xs[3], os[3];
  const int32_t* positions;
  int64_t pos_bstride, offset;
  float scaling;
  bool inverse;
  float inv_freq[kMaxHalf];
};

template <class T>
__global__ void __launch_bounds__(1024) rope_kernel(const T* x, T* out, Params p) {
  const int64_t u = blockIdx.x;  // b * T + t
  const int64_t b = u / p.T, t = u % p.T;
  const int i = static_cast<int>(threadIdx.x % p.half);
  const int h0 = static_cast<int>(threadIdx.x / p.half), hstep = static_cast<int>(blockDim.x / p.half);
  const int64_t pos = p.positions ? p.positions[b * p.pos_bstride + t] : p.offset + t;
  const float ang = __fmul_rn(static_cast<float>(pos), p.inv_freq[i]);
  float s, c;
  sincosf(ang, &s, &c);
  c *= p.scaling;
  s *= p.scaling;
  if (p.inverse) s = -s;
  for (int64_t h = h0; h < p.H; h += hstep) {
    const T* xr = x + b * p.xs[0] + h * p.xs[1] + t * p.xs[2];
    T* o = out + b * p.os[0] + h * p.os[1] + t * p.os[2];
    const float x1 = to_f<T>(xr[i]), x2 = to_f<T>(xr[i + p.half]);
    o[i] = from_f<T>(x1 * c - x2 * s);
    o[i + p.half] = from_f<T>(x2 * c + x1 * s);
  }
}

}  // namespace

void rope_forward(const RopeArgs& a, const void* x, void* out) {
  const char* op = "rotaryEmbedding";
  if (a.B < 0 || a.H < 0 || a.T < 0 || a.D < 0 || a.D % 2 != 0) throw Error(std::string(op) + ": invalid sizes");
  const int64_t half = a.D / 2;
  if (half > kMaxHalf)
    throw Error(std::string(op) + ": head dim " + std::to_string(a.D) + " is too large for CUDA (max " +
                std::to_string(2 * kMaxHalf) + ")");
  if (a.B * a.H * a.T * a.D == 0) return;
  if (a.B * a.T > INT32_MAX) throw Error(std::string(op) + ": too many positions for one launch");
  Params p{};
  p.B = a.B, p.H = a.H, p.T = a.T, p.half = half;
  for (int k = 0; k < 3; ++k) p.xs[k] = a.xs[k], p.os[k] = a.os[k];
  p.positions = a.positions;
  p.pos_bstride = a.pos_bstride;
  p.offset = a.offset;
  p.scaling = static_cast<float>(a.scaling);
  p.inverse = a.inverse;
  for (int64_t k = 0; k < half; ++k) p.inv_freq[k] = static_cast<float>(a.inv_freq[k]);
  // a multiple of D/2 threads, about kTargetThreads, no more heads than exist
  int64_t heads_per_block = std::max<int64_t>(1, kTargetThreads / half);
  if (heads_per_block > a.H) heads_per_block = a.H;
  const unsigned threads = static_cast<unsigned>(heads_per_block * half);
  dispatch_half_float(a.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    rope_kernel<T><<<static_cast<unsigned>(a.B * a.T), threads, 0, stream()>>>(static_cast<const T*>(x),
                                                                              static_cast<T*>(out), p);
  });
  check_launch(op);
}

}  // namespace cuda
}  // namespace ng
