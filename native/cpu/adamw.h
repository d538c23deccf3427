// Optimizer kernels: multi-tensor AdamW and SGD steps, and the multi-tensor norm and
// scale used by gradient clipping. Each entry updates a whole list of tensors in one
// call: the tensors are cut into fixed-size (tensor, chunk) work items that the thread
// pool's threads take from a shared counter, so one large and many small tensors keep
// every thread busy. Pointers point at a tensor's first element; all arrays of one
// tensor have its dtype (float32 or float64) and numel elements, contiguous.
#pragma once
#include <cstdint>
#include <vector>

#include "common.h"

namespace ng {

// One parameter of an AdamW step. step >= 1 is the update's count, for bias correction.
struct AdamWTensor {
  void* param = nullptr;
  const void* grad = nullptr;
  void* exp_avg = nullptr;
  void* exp_avg_sq = nullptr;
  int64_t numel = 0;
  DType dtype = DType::F32;
  double lr = 0, weight_decay = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t step = 1;
};

// PyTorch's AdamW (decoupled weight decay), with g = grad * grad_scale:
//   p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Traffic: reads p, g, m, v and writes p, m, v once (28 bytes per float32 element).
void adamw_step(const std::vector<AdamWTensor>& ts, double grad_scale);

// One parameter of an SGD step. momentum_buf is null when momentum == 0; init_buf says
// the buffer is new and takes d_p itself (PyTorch's first-step rule).
struct SgdTensor {
  void* param = nullptr;
  const void* grad = nullptr;
  void* momentum_buf = nullptr;
  int64_t numel = 0;
  DType dtype = DType::F32;
  double lr = 0, weight_decay = 0, momentum = 0, dampening = 0;
  bool nesterov = false, init_buf = false;
};

// PyTorch's SGD, with g = grad * grad_scale:
//   d = g + wd*p;  if momentum: buf = init ? d : momentum*buf + (1-dampening)*d,
//   d = nesterov ? d + momentum*buf : buf;  p -= lr*d
// Traffic: reads p, g (and buf), writes p (and buf) once.
void sgd_step(const std::vector<SgdTensor>& ts, double grad_scale);

struct FlatTensor {
  void* data = nullptr;
  int64_t numel = 0;
  DType dtype = DType::F32;
};

// The p-norm of all elements of all tensors together (p > 0, or infinity for max |x|),
// accumulated in double; per-chunk partial results are combined in a fixed order, so
// the result does not depend on the number of threads. Traffic: one read.
double multi_tensor_norm(const std::vector<FlatTensor>& ts, double p);

// x *= scale for every element of every tensor. Traffic: one read, one write.
void multi_tensor_scale(const std::vector<FlatTensor>& ts, double scale);

}  // namespace ng
