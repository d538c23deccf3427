// CUDA twins of native/cpu/loss.h over device pointers. Dtypes: float32, float64,
// bfloat16, float16 (fp32 math for the half types, fp64 for float64).
//
// Differences from the CPU entries, so that a training step never waits for the host:
//  - the total weight of the non-ignored targets (the 'mean' divisor) is written into a
//    device scalar `total` instead of being returned;
//  - lse and total are float32 (float64 when the logits are float64), whatever the logits'
//    dtype: a bfloat16 log-sum-exp would put a ~0.4% error on every recomputed probability;
//  - a target that is neither ignore_index nor in [0, C) is recorded in the device error
//    slot (reported at the next synchronize); its row gets zero loss and zero gradient.
#pragma once
#include "common.h"
#include "cpu/loss.h"  // ClassLossArgs

namespace ng {
namespace cuda {

void cross_entropy_forward(const ClassLossArgs& a, void* loss, void* lse, void* total);
void cross_entropy_backward(const ClassLossArgs& a, const void* lse, const void* g, void* dx);
void nll_loss_forward(const ClassLossArgs& a, void* loss, void* total);
void nll_loss_backward(const ClassLossArgs& a, const void* g, void* dx);
void bce_logits_forward(DType dt, const void* x, const void* y, const void* pw, int64_t n, void* loss);
void bce_logits_backward(DType dt, const void* x, const void* y, const void* pw, const void* g, int64_t n,
                         void* dx, void* dy, void* dpw);

}  // namespace cuda
}  // namespace ng
