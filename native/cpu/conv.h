// 2-D convolution (PyTorch's conv2d: cross-correlation, NCHW, groups) by im2col + GEMM.
//
// For a chunk of Nc images the input patches are unfolded into a column matrix
//   cols [C*kh*kw, Nc, OH*OW]   row (c, ki, kj), column (n, oh, ow)
// whose rows of group g form the [K = C/G*kh*kw, Nc*P] operand of that group. Then
//   forward:  y[n, g]  = W[g] [O/G, K] @ cols[g, :, n]          (batched GEMM over (g, n),
//                                                                written straight into y)
//   dx:       dcols[g, :, n] = W[g]^T @ dy[n, g], then col2im    (scatter-add of patches)
//   dW:       dW[g] += dyT[g] [O/G, Nc*P] @ cols[g]^T            (the chunk is the inner
//                                                                dim, split into pieces
//                                                                whose partial sums are added)
//   db:       sum of dy over (n, oh, ow)
// A 1x1, stride-1, unpadded convolution skips im2col (x is its own column matrix).
// Memory traffic per chunk: im2col writes K*G*Nc*P elements (reading x about kh*kw/stride^2
// times over through cache); the GEMMs read W, cols and y/dy. Each thread gets whole
// images whose columns fill about 2 MiB, so the columns stay in its L2 cache between
// im2col and the GEMM. Parallelism: im2col over (image, row), col2im over (image, channel)
// planes (no two threads touch one output element), the GEMMs over (group, image) matrices
// or, for dW, over pieces of the inner dim. float32 and float64.
#pragma once
#include <cstdint>

#include "common.h"

namespace ng {

struct Conv2dGeom {
  int64_t N, C, H, W;     // input
  int64_t O, kh, kw;      // weight [O, C/G, kh, kw]
  int64_t sh, sw;         // stride
  int64_t ph, pw;         // padding before the first row / column (after is implied by OH, OW)
  int64_t dh, dw;         // dilation
  int64_t G;              // groups
  int64_t OH, OW;         // output
};

// Throws unless the geometry is consistent (positive strides and dilations, groups
// dividing C and O, non-negative sizes and paddings, no size overflow).
void conv2d_check(const Conv2dGeom& g);

// y [N, O, OH, OW] = conv(x [N, C, H, W], w [O, C/G, kh, kw]) + b [O] (b may be null).
void conv2d_forward(const void* x, const void* w, const void* b, void* y, DType dt, const Conv2dGeom& g);

// Gradients of the forward for dy [N, O, OH, OW]; any of dx, dw, db may be null (not
// wanted). dw and db are overwritten, not accumulated into.
void conv2d_backward(const void* dy, const void* x, const void* w, void* dx, void* dw, void* db, DType dt,
                     const Conv2dGeom& g);

}  // namespace ng
