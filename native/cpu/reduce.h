// Reductions over the middle axis of a contiguous [M, R, I] array:
//   out[m, i] = reduce_{r} x[m, r, i]
// I == 1 is a row reduction, M == 1 a column reduction; any block of adjacent dims of a
// contiguous tensor maps to this shape. Accumulation is in double for float inputs.
#pragma once
#include "common.h"

namespace ng {

enum class ReduceOp : int32_t { Sum = 0, Mean, Max, Min, Argmax, Argmin, Var, Prod };

// out: [M, I] of x's dtype (int32 for Argmax/Argmin). idx: optional int32 [M, I] that
// receives the arg index for Max/Min. correction: Bessel's correction for Var.
void reduce(ReduceOp op, const void* x, DType dt, int64_t M, int64_t R, int64_t I, void* out, int32_t* idx,
            double correction);

}  // namespace ng
