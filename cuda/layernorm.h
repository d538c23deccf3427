// CUDA layer normalisation (twin of native/cpu/layernorm.h) over a contiguous [rows, C]
// array whose pointers are device pointers of the current device.
//
// Differences from the CPU twin, on purpose:
//  - dtypes: float32, bfloat16 and float16 (x, w, b, y, g, gx, gw, gb share one dtype);
//    float64 is refused with an Error (no fp64 kernels on the GPU).
//  - mean and rstd are ALWAYS float32 ([rows]), whatever the dtype of x: the statistics
//    of a bf16 activation must not be rounded to bf16 before the backward uses them.
//  - all arithmetic is in float32; outputs are rounded once to the dtype.
//  - C up to 8192 keeps the row in registers (x read once); larger C is supported by a
//    block-per-row kernel that re-reads the row (served from L2).
#pragma once
#include "common.h"

namespace ng {
namespace cuda {

// mean and rstd may be null (not saved); w and b may be null (1 and 0).
void layernorm_forward(const void* x, const void* w, const void* b, void* y, void* mean, void* rstd, DType dt,
                       int64_t rows, int64_t C, double eps);

// sum = x + residual (rounded to dt, written), y = layernorm(sum): the pre-norm
// transformer's "residual add then norm" in one read of x and residual.
void add_layernorm_forward(const void* x, const void* residual, void* sum, const void* w, const void* b, void* y,
                           void* mean, void* rstd, DType dt, int64_t rows, int64_t C, double eps);

// gx, gw, gb may each be null; mean/rstd null are recomputed from x. gw and gb are
// deterministic: per-block fp32 partials in a fixed row partition, then a column-wise
// sum over the blocks in block order (no float atomics).
void layernorm_backward(const void* g, const void* x, const void* w, const void* mean, const void* rstd, void* gx,
                        void* gw, void* gb, DType dt, int64_t rows, int64_t C, double eps);

}  // namespace cuda
}  // namespace ng
