// CUDA twins of native/cpu/index.h over strided device views. Values: float32, float64,
// int32, bfloat16, float16; indices int32. An index out of range is recorded in the device
// error slot (reported at the next synchronize) and its element is skipped (gather and
// index_select write 0 there). scatter_add / index_add are deterministic (one thread per
// output line, in index order; no atomics). topk supports k <= 1024 and always returns
// its k entries sorted (a valid result for sorted = false too).
#pragma once
#include "common.h"

namespace ng {
namespace cuda {

void gather(const View& x, const View& index, int dim, const View& out, const char* op);
void scatter_add(const View& out, const View& index, const View& src, int dim, const char* op);
void index_select(const View& x, const View& index, int dim, const View& out, const char* op);
void index_add(const View& out, const View& index, const View& src, int dim, const char* op);
void topk(const View& x, int dim, int64_t k, bool largest, bool sorted, const View& values, const View& indices,
          const char* op);

}  // namespace cuda
}  // namespace ng
