// CUDA twins of native/cpu/softmax.h: the same entries over device pointers. float32,
// float64, bfloat16 and float16 (fp32 math for the half types, fp64 for float64).
#pragma once
#include "common.h"

namespace ng {
namespace cuda {

void softmax_forward(const void* x, void* y, DType dt, int64_t M, int64_t C, int64_t I, bool log);
void softmax_backward(const void* g, const void* y, void* gx, DType dt, int64_t M, int64_t C, int64_t I, bool log);

}  // namespace cuda
}  // namespace ng
