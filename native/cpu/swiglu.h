// SwiGLU gating of the Llama MLP over n contiguous elements, float32 and float64:
//   y = silu(gate) * up = gate * sigmoid(gate) * up
// backward, with s = sigmoid(gate):
//   dgate = dy * up * s * (1 + gate * (1 - s)),  dup = dy * gate * s
#pragma once
#include "common.h"

namespace ng {

void swiglu_forward(const void* gate, const void* up, void* y, DType dt, int64_t n);
// dgate and dup may each be null (not wanted).
void swiglu_backward(const void* dy, const void* gate, const void* up, void* dgate, void* dup, DType dt, int64_t n);

}  // namespace ng
