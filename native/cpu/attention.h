// Fused scaled-dot-product attention on the CPU, float32 and float64.
//
// q [BH, Tq, D], k [BH/group, Tk, D], v [BH/group, Tk, Dv], out [BH, Tq, Dv] contiguous
// (grouped-query attention: query slice bh reads kv slice bh / group; group = 1 is plain
// multi-head attention, and with bh = b * Hq + h that is kv head h / (Hq / Hkv)); lse [BH, Tq]
// in q's dtype holds each query row's log-sum-exp of its (scaled, masked) scores, the
// only thing the backward needs besides the inputs and the output. A row whose keys are
// all masked has out = 0 and lse = -inf, and receives zero gradient.
#pragma once
#include "cpu/vmath.h"
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
  int64_t group = 1;    // query slices per kv slice (BH is a multiple of it)
  int64_t window = 0;   // > 0: sliding window, query i sees only keys j > i - window
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

void attention_forward(const AttnArgs& a, const void* q, const void* k, const void* v, void* out, void* lse);

// dq, dk, dv are fully written; dk and dv ([BH/group, Tk, D]) sum the group's query
// slices in a fixed order. dmask (optional, [BH, Tq, Tk] of q's dtype) receives
// dL/dscore, the gradient of an additive float mask before any broadcast reduction.
void attention_backward(const AttnArgs& a, const void* q, const void* k, const void* v, const void* out,
                        const void* lse, const void* dout, void* dq, void* dk, void* dv, void* dmask);

}  // namespace ng
