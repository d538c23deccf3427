// CUDA optimizer kernels (twin of native/cpu/adamw.h): multi-tensor AdamW and SGD steps
// and the multi-tensor norm and scale of gradient clipping, each ONE kernel launch for a
// whole list of tensors. Pointers are device pointers of the current device; on CUDA every
// array is float32 (float64 is refused with an Error).
//
// How one launch covers many tensors: the tensors are cut into chunks of kOptimChunk
// elements; a table of tensor descriptors and (tensor, chunk) pairs lives in device
// memory, one block per chunk. The table is cached on the device keyed by its exact bytes
// (pointers, sizes, parameter-group index), so the steady state of a training loop
// uploads nothing: per-step values (lr, bias corrections) go in the kernel's arguments.
// The cache is per device, holds a few tables per kind and is the only mutable global
// state here besides the allocator.
#pragma once
#include <cstdint>
#include <vector>

#include "common.h"
#include "cpu/adamw.h"  // AdamWTensor, SgdTensor, FlatTensor

namespace ng {
namespace cuda {

constexpr int64_t kOptimChunk = 32768;

// Same contract as ng::adamw_step (PyTorch's AdamW, decoupled weight decay).
void adamw_step(const std::vector<AdamWTensor>& ts, double grad_scale);

struct AdamWFusedOptions {
  double grad_scale = 1.0;
  // Device float multiplied into grad_scale when not null, read by the kernel (no host
  // sync): the clip coefficient written by multi_tensor_norm_device.
  const float* scale_factor = nullptr;
  // Empty, or one entry per tensor: a device array of numel elements of copy_dtype that
  // receives the updated parameter in the same pass (a bf16 model copy of fp32 master
  // weights), or null for tensors without a copy.
  std::vector<void*> model_copy;
  DType copy_dtype = DType::BF16;  // BF16 or F16
};
void adamw_step_fused(const std::vector<AdamWTensor>& ts, const AdamWFusedOptions& opt);

// Same contract as ng::sgd_step.
void sgd_step(const std::vector<SgdTensor>& ts, double grad_scale);

// Same contract as ng::multi_tensor_norm; waits for the device (the result is a host value).
double multi_tensor_norm(const std::vector<FlatTensor>& ts, double p);

// The p-norm of all elements, left on the device (no host sync). Deterministic: per-chunk
// partials in double, combined in chunk order. Writes, where not null:
//   out_norm[0] = norm * norm_scale
//   clip_coef[0] = min(1, max_norm / (norm * norm_scale + 1e-6))   (PyTorch's clip_grad_norm_)
void multi_tensor_norm_device(const std::vector<FlatTensor>& ts, double p, double norm_scale, float* out_norm,
                              float* clip_coef, double max_norm);

// Same contract as ng::multi_tensor_scale.
void multi_tensor_scale(const std::vector<FlatTensor>& ts, double scale);
// x *= scale[0] for every element, scale a device float (e.g. a clip coefficient).
void multi_tensor_scale_device(const std::vector<FlatTensor>& ts, const float* scale);

namespace detail {
// The device copy of a table blob (16-byte aligned), uploaded only when no cached table
// of this kind on this device has the same bytes. kind: a small integer per entry point.
const void* cached_table(int device, int kind, const std::vector<uint8_t>& blob, const char* op);
}  // namespace detail

}  // namespace cuda
}  // namespace ng
