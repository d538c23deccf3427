// Fused scaled-dot-product attention on the CPU, float32 and float64.
//
// q [BH, Tq, D], k [BH, Tk, D], v [BH, Tk, Dv], out [BH, Tq, Dv] contiguous; lse [BH, Tq]
// in q's dtype holds each query row's log-sum-exp of its (scaled, masked) scores, the
// only thing the backward needs besides the inputs and the output. A row whose keys are
// all masked has out = 0 and lse = -inf, and receives zero gradient.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"

namespace ng {

enum class AttnMask : int32_t { None = 0, Bool = 1, Float = 2 };

struct AttnArgs {
  DType dtype = DType::F32;
  int64_t BH = 0, Tq = 0, Tk = 0, D = 0, Dv = 0;
  double scale = 1;
  bool causal = false;  // top-left aligned: query i sees keys j <= i
  // Optional mask: element (bh, i, j) at mask + mask_off[bh] + i * mask_si + j * mask_sj.
  // Bool: nonzero = attend. Float (q's dtype): added to the scaled score.
  AttnMask mask_kind = AttnMask::None;
  const void* mask = nullptr;
  std::vector<int64_t> mask_off;
  int64_t mask_si = 0, mask_sj = 0;
  // Dropout on the probabilities: element (bh, i, j) is kept when the Philox draw at
  // counter seed_offset + (bh * Tq + i) * Tk + j is <= 1 - p (the `bernoulli` rule), and
  // kept values are scaled by 1 / (1 - p).
  double dropout_p = 0;
  uint64_t seed = 0, seed_offset = 0;
};

// exp(x) for float by range reduction and a degree-6 polynomial (the Cephes expf
// scheme), relative error below 2e-7; exactly 0 below -87.3 and NaN-preserving. Unlike
// std::exp it has no call and no branch, so loops over it vectorise. double uses std::exp.
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline float exp_fast(float x) {
  const float xc = std::min(std::max(x, -87.3f), 88.0f);
  const float n = std::floor(xc * 1.44269504088896341f + 0.5f);
  const float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  const float y = p * two_n;
  return x < -87.3f ? 0.0f : (x != x ? x : y);
}
inline double exp_fast(double x) { return std::exp(x); }

void attention_forward(const AttnArgs& a, const void* q, const void* k, const void* v, void* out, void* lse);

// dq, dk, dv are fully written. dmask (optional, [BH, Tq, Tk] of q's dtype) receives
// dL/dscore, the gradient of an additive float mask before any broadcast reduction.
void attention_backward(const AttnArgs& a, const void* q, const void* k, const void* v, const void* out,
                        const void* lse, const void* dout, void* dq, void* dk, void* dv, void* dmask);

}  // namespace ng
