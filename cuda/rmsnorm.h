// CUDA RMS normalisation (twin of native/cpu/rmsnorm.h) over a contiguous [rows, C]
// array whose pointers are device pointers of the current device.
//
// Differences from the CPU twin, on purpose (as cuda/layernorm.h):
//  - dtypes: float32, bfloat16 and float16 (x, residual, sum, w, y, g, gx, gw share one
//    dtype); float64 is refused with an Error.
//  - rstd is ALWAYS float32 ([rows]).
//  - arithmetic in float32. For bfloat16/float16 the normalised value is rounded to the
//    dtype before the weight multiplies it, then the product is rounded again: HF's
//    LlamaRMSNorm, weight * (x.float() * rsqrt(var + eps)).to(dtype), to the bit.
//    The weight gradient uses that rounded value too (it is what multiplied the weight).
//  - C up to 8192 keeps the row in registers; larger C (or unaligned / odd C) runs a
//    block-per-row kernel that re-reads the row (served from L2).
#pragma once
#include "common.h"

namespace ng {
namespace cuda {

// residual and sum: both null, or sum = x + residual (rounded to dt, written) is normalised.
void rmsnorm_forward(const void* x, const void* residual, void* sum, const void* w, void* y, void* rstd, DType dt,
                     int64_t rows, int64_t C, double eps);

// gx, gw may each be null; rstd null is recomputed from x. gw is deterministic: per-block
// fp32 partials in a fixed row partition summed column-wise in block order (no atomics).
void rmsnorm_backward(const void* g, const void* x, const void* w, const void* rstd, void* gx, void* gw, DType dt,
                      int64_t rows, int64_t C, double eps);

}  // namespace cuda
}  // namespace ng
