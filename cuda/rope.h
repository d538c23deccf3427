// CUDA rotary position embedding: the twin of native/cpu/rope.h (same RopeArgs, same
// pairs (i, i + D/2), same angle rule: pos and inv_freq rounded to float32 and multiplied
// in float32), on float32, bfloat16 and float16 (float64 is refused with an Error).
// Arithmetic is float32; each output is rounded once to the dtype. x and out are device
// pointers of the current device (out may be x: in place), positions a device int32
// buffer; inv_freq stays a host array (copied into the kernel's parameters, D <= 512).
#pragma once
#include "cpu/rope.h"

namespace ng {
namespace cuda {

void rope_forward(const RopeArgs& a, const void* x, void* out);

}  // namespace cuda
}  // namespace ng
