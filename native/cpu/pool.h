// 2-D pooling over NCHW planes (PyTorch's max_pool2d, avg_pool2d, adaptive_avg_pool2d).
// Every kernel works plane by plane (the N*C planes are independent and spread over the
// pool), so backward passes scatter into their own plane without races.
// Memory traffic: forward reads each input element about kh*kw/(sh*sw) times through
// cache and writes the output once; backward writes the input gradient once (zeroed,
// then accumulated window by window) and reads the output gradient once.
#pragma once
#include <cstdint>

#include "common.h"

namespace ng {

struct Pool2dGeom {
  int64_t planes, H, W;  // N*C planes of H x W
  int64_t OH, OW;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;  // dilation is used by max pooling only
};

// Throws unless sizes are non-negative, kernel/stride/dilation positive.
void pool2d_check(const Pool2dGeom& g, const char* op);

// Max over each window (padding never wins; the first maximum wins ties; a NaN wins
// over numbers, the last NaN over earlier ones, as in PyTorch).
// idx gets the flat index ih*W + iw of the winner inside its plane (-1 for a window
// that covers padding only).
void maxpool2d_forward(const void* x, void* y, int32_t* idx, DType dt, const Pool2dGeom& g);
// dx (overwritten) = scatter-add of dy at the saved indices; throws on an index outside
// its plane.
void maxpool2d_backward(const void* dy, const int32_t* idx, void* dx, DType dt, const Pool2dGeom& g);

// Mean over each window; the divisor is divisor_override when > 0, else the window size
// including padding (count_include_pad) or counting only input elements.
void avgpool2d_forward(const void* x, void* y, DType dt, const Pool2dGeom& g, bool count_include_pad,
                       int64_t divisor_override);
void avgpool2d_backward(const void* dy, void* dx, DType dt, const Pool2dGeom& g, bool count_include_pad,
                        int64_t divisor_override);

// Output cell i covers input rows floor(i*H/OH) .. ceil((i+1)*H/OH) (same for columns).
void adaptive_avgpool2d_forward(const void* x, void* y, DType dt, int64_t planes, int64_t H, int64_t W, int64_t OH,
                                int64_t OW);
void adaptive_avgpool2d_backward(const void* dy, void* dx, DType dt, int64_t planes, int64_t H, int64_t W, int64_t OH,
                                 int64_t OW);

}  // namespace ng
