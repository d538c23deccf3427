// Softmax and log-softmax over the middle axis of a contiguous [M, C, I] array:
//   softmax:     y[m, c, i] = exp(x[m, c, i] - max_c x) / sum_c exp(x[m, c, i] - max_c x)
//   log-softmax: y[m, c, i] = x[m, c, i] - max_c x - log(sum_c exp(x[m, c, i] - max_c x))
// I == 1 is the usual softmax over the last dim (contiguous rows); any dim of a
// contiguous tensor maps to this shape, so no transpose is ever needed. float32 and
// float64. A row of all -inf (or with +inf or NaN) gives NaN, as PyTorch does.
#pragma once
#include "common.h"

namespace ng {

void softmax_forward(const void* x, void* y, DType dt, int64_t M, int64_t C, int64_t I, bool log);

// Backward from the forward output y and the output gradient g:
//   softmax:     gx = y * (g - sum_c g * y)
//   log-softmax: gx = g - exp(y) * sum_c g
void softmax_backward(const void* g, const void* y, void* gx, DType dt, int64_t M, int64_t C, int64_t I, bool log);

}  // namespace ng
