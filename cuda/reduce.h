// CUDA twin of native/cpu/reduce.h: reductions over the middle axis of a contiguous
// [M, R, I] device array. Dtypes: float32, float64, int32, bfloat16, float16; sums,
// products and variances accumulate in double; results are reproducible run to run
// (fixed-order trees, no atomics).
#pragma once
#include "common.h"
#include "cpu/reduce.h"  // ReduceOp

namespace ng {
namespace cuda {

void reduce(ReduceOp op, const void* x, DType dt, int64_t M, int64_t R, int64_t I, void* out, int32_t* idx,
            double correction);

}  // namespace cuda
}  // namespace ng
