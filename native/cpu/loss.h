// Fused loss kernels over contiguous inputs, float32 and float64.
//
// Class-index losses see the input as [N, C, I]: C classes in the middle, I positions
// after them (I == 1 for plain [N, C] logits), so "row" r = n * I + i has its C values
// at stride I and its target at targets[r]. Targets equal to `ignore_index` give zero
// loss and zero gradient and are not counted in the returned total weight.
#pragma once
#include "common.h"

namespace ng {

struct ClassLossArgs {
  const void* x = nullptr;         // logits (cross-entropy) or log-probabilities (nll)
  const int32_t* targets = nullptr;
  const void* weight = nullptr;    // optional [C] class weights, x's dtype
  DType dtype = DType::F32;
  int64_t N = 0, C = 0, I = 1;
  int64_t ignore_index = -100;
  double label_smoothing = 0;      // cross-entropy only
};

// Throws ng::Error naming `op` when a target is neither ignore_index nor in [0, C).
void check_class_targets(const char* op, const int32_t* targets, int64_t rows, int64_t C, int64_t ignore_index);

// loss[r] = (1-eps) w[t] (lse - x_t) + (eps/C) sum_c w[c] (lse - x_c), lse[r] saved for
// the backward. Returns the sum of w[t] over non-ignored rows (the 'mean' divisor).
double cross_entropy_forward(const ClassLossArgs& a, void* loss, void* lse);
// dx[r, c] = g[r] * (p_c ((1-eps) w_t + (eps/C) W) - (1-eps) w_t [c == t] - (eps/C) w_c),
// p_c = exp(x_c - lse[r]), W = sum_c w_c. Never materialises p.
void cross_entropy_backward(const ClassLossArgs& a, const void* lse, const void* g, void* dx);

// loss[r] = -w[t] x[r, t]. Returns the total weight of non-ignored rows.
double nll_loss_forward(const ClassLossArgs& a, void* loss);
// dx = 0 except dx[r, t] = -w[t] g[r].
void nll_loss_backward(const ClassLossArgs& a, const void* g, void* dx);

// Elementwise binary cross-entropy on logits, n contiguous elements, optional pos_weight
// (already expanded to n elements):
//   loss = (1 - y) x + (1 + (pw - 1) y) softplus(-x),  softplus(-x) = max(-x,0) + log1p(exp(-|x|))
void bce_logits_forward(DType dt, const void* x, const void* y, const void* pw, int64_t n, void* loss);
// Any of dx, dy, dpw may be null. dx = g ((1 - y) + L (sigmoid(x) - 1)), L = 1 + (pw-1) y;
// dy = g (-x + (pw - 1) softplus(-x)); dpw = g y softplus(-x).
void bce_logits_backward(DType dt, const void* x, const void* y, const void* pw, const void* g, int64_t n,
                         void* dx, void* dy, void* dpw);

}  // namespace ng
