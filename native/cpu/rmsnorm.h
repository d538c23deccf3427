// Root-mean-square normalisation over the last dim of a contiguous [rows, C] array
// (Llama's RMSNorm):
//   rstd = 1 / sqrt(sum_c x^2 / C + eps),  y = (x * rstd) * w     (w null means 1)
// float32 and float64; rstd ([rows], x's dtype) is saved for the backward.
#pragma once
#include "common.h"

namespace ng {

// rstd may be null (not saved). residual and sum: both null, or sum = x + residual is
// written and normalised (the pre-norm residual step in one pass).
void rmsnorm_forward(const void* x, const void* residual, void* sum, const void* w, void* y, void* rstd, DType dt,
                     int64_t rows, int64_t C, double eps);

// With xhat = x * rstd and dxhat = g * w:
//   gx = rstd * (dxhat - xhat * mean_c(dxhat * xhat)),  gw = sum_rows g * xhat
// gx and gw may be null (not wanted); rstd null is recomputed from x. gw is
// deterministic: rows are cut into blocks that depend on `rows` only, each block sums
// into its own partial, and the partials are added in block order (any thread count
// gives the same bits).
void rmsnorm_backward(const void* g, const void* x, const void* w, const void* rstd, void* gx, void* gw, DType dt,
                      int64_t rows, int64_t C, double eps);

}  // namespace ng
