// CUDA SwiGLU (twin of native/cpu/swiglu.h) over n contiguous device elements, float32,
// bfloat16 and float16 (float64 is refused with an Error). Arithmetic in float32. For
// bfloat16/float16 the forward rounds silu(gate) to the dtype before multiplying by up,
// as HF's act_fn(gate_proj(x)) * up_proj(x) does (two ops, two roundings).
#pragma once
#include "common.h"

namespace ng {
namespace cuda {

void swiglu_forward(const void* gate, const void* up, void* y, DType dt, int64_t n);
// dgate and dup may each be null.
void swiglu_backward(const void* dy, const void* gate, const void* up, void* dgate, void* dup, DType dt, int64_t n);

}  // namespace cuda
}  // namespace ng
