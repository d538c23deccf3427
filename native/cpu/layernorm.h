// Layer normalisation over the last dim of a contiguous [rows, C] array:
//   mean = sum_c x / C,  var = sum_c (x - mean)^2 / C,  rstd = 1 / sqrt(var + eps)
//   y = (x - mean) * rstd * w + b        (w null means 1, b null means 0)
// float32 and float64; mean and rstd ([rows], x's dtype) are saved for the backward.
#pragma once
#include "common.h"

namespace ng {

// mean and rstd may be null (not saved).
void layernorm_forward(const void* x, const void* w, const void* b, void* y, void* mean, void* rstd, DType dt,
                       int64_t rows, int64_t C, double eps);

// With xhat = (x - mean) * rstd and dxhat = g * w:
//   gx = rstd * (dxhat - mean_c(dxhat) - xhat * mean_c(dxhat * xhat))
//   gw = sum_rows g * xhat,  gb = sum_rows g
// Any of gx, gw, gb may be null (not wanted); mean/rstd null are recomputed from x.
// gw and gb are deterministic: rows are cut into blocks that depend on `rows` only, each
// block sums into its own partial, and the partials are added in block order.
void layernorm_backward(const void* g, const void* x, const void* w, const void* mean, const void* rstd, void* gx,
                        void* gw, void* gb, DType dt, int64_t rows, int64_t C, double eps);

}  // namespace ng
