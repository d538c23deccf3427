// Rotary position embedding (RoFormer; HF's rotate_half convention, pairs (i, i + D/2))
// of x [B, H, T, D] on the CPU, float32 and float64:
//   a_i = pos(b, t) * inv_freq[i],  c = cos(a_i) * scaling,  s = sin(a_i) * scaling
//   out[i] = x[i] c - x[i + D/2] s,  out[i + D/2] = x[i + D/2] c + x[i] s   (i < D/2)
// inverse = true applies the transposed rotation (s -> -s): the backward.
// The angle is formed in the compute dtype (float32 for float32: pos and inv_freq are
// rounded to float32 and multiplied in float32, as HF's float32 matmul of the two does);
// cos and sin are evaluated in double and rounded once.
#pragma once
#include "common.h"

namespace ng {

struct RopeArgs {
  DType dtype = DType::F32;
  int64_t B = 0, H = 0, T = 0, D = 0;
  int64_t xs[3] = {0, 0, 0};  // element strides of x over (b, h, t); d is contiguous
  int64_t os[3] = {0, 0, 0};  // the same for out (out == x with xs == os: in place)
  const double* inv_freq = nullptr;  // [D/2]
  const int32_t* positions = nullptr;  // null: pos = offset + t
  int64_t pos_bstride = 0;             // 0 for positions [T], T for [B, T]
  int64_t offset = 0;
  double scaling = 1;
  bool inverse = false;
};

void rope_forward(const RopeArgs& a, const void* x, void* out);

}  // namespace ng
