// CUDA twin of native/cpu/embedding.h over device pointers. An id outside [0, V) is
// recorded in the device error slot (reported at the next synchronize): the forward
// writes a zero row for it and the backward skips it.
#pragma once
#include "common.h"

namespace ng {
namespace cuda {

// out[k, :] = weight[ids[k], :]; rows copied as bytes (any dtype).
void embedding_forward(const int32_t* ids, int64_t n, const void* weight, DType dt, int64_t V, int64_t C, void* out);
// gw[ids[k], :] += g[k, :] for ids[k] != padding_idx. float32, float64, bfloat16, float16.
// Deterministic: ids are stably sorted and every row of gw sums its contributions in k
// order (fp32 accumulation, fp64 for float64), no atomics.
void embedding_backward(const int32_t* ids, int64_t n, const void* g, DType dt, int64_t V, int64_t C, void* gw,
                        int64_t padding_idx);

}  // namespace cuda
}  // namespace ng
