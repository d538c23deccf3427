// CUDA scaled-dot-product attention: the twin of native/cpu/attention.h (same AttnArgs,
// same masks, same Philox dropout mapping, same top-left causal rule), plus an optional
// layout so q, k, v may be strided views (e.g. of a fused [B, T, 3, H, D] projection).
//
// Pointers are device pointers. q [BH, Tq, D], k [BH/group, Tk, D], v [BH/group, Tk, Dv]
// address element (bh, t, d) at base + b * sb + h * sh + t * st + d with bh = b * H + h
// (layout given; k and v have H / group heads) or contiguously (layout null). Query slice
// bh reads kv slice bh / group (grouped-query attention without repeating K/V); dk, dv
// sum over the group's query heads inside one thread block (no atomics). a.window > 0
// is a sliding window (query i sees keys j > i - window), combined with causal and masks. out, dout, dq, dk, dv are contiguous
// [BH, T, D]; lse is [BH, Tq] of float32 for float32/bfloat16/float16 inputs and of
// float64 for float64 inputs; a float mask and dmask use q's dtype; a bool mask is uint8.
// Masked-out rows give out = 0, lse = -inf and zero gradients (no NaN).
//
// Kernels: bfloat16/float16 with D == Dv in {32, 64, 96, 128} on sm_80+ use the tensor-core
// flash kernels (cuda/attention_fwd.cu, cuda/attention_bwd.cu); everything else (float32,
// float64, other head dims, sm_75, a requested dmask) uses the simple SIMT kernels
// (cuda/attention_simple.cu). The backward is deterministic (no float atomics).
#pragma once
#include <cstdint>

#include "cpu/attention.h"

namespace ng {
namespace cuda {

struct AttnLayout {
  int64_t H = 1;  // query heads: bh = b * H + h (BH must be a multiple of H, H of the group)
  // Element strides of (b, h, t) for q, k and v (k, v over their H / group heads); d is contiguous.
  int64_t q[3] = {0, 0, 0}, k[3] = {0, 0, 0}, v[3] = {0, 0, 0};
};

void attention_forward(const AttnArgs& a, const void* q, const void* k, const void* v, void* out, void* lse,
                       const AttnLayout* layout = nullptr);

void attention_backward(const AttnArgs& a, const void* q, const void* k, const void* v, const void* out,
                        const void* lse, const void* dout, void* dq, void* dk, void* dv, void* dmask,
                        const AttnLayout* layout = nullptr);

}  // namespace cuda
}  // namespace ng
