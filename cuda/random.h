// CUDA twin of native/cpu/random.h: the same counter-based Philox4x32-10 stream, so a
// seed and offset give bit-identical uniform / randint / bernoulli values on the CPU and
// on CUDA (normal values agree to the last bit of double math, i.e. exactly after the
// usual cast to float, except for rare 1-ulp differences of log/cos). Plain C++.
#pragma once
#include <cstdint>

#include "common.h"
#include "cpu/random.h"  // RandomKind

namespace ng {
namespace cuda {

// Fills the n contiguous elements of `out` (device memory): element i uses Philox counter
// offset + i under key seed. Dtypes: float32, float64, int32, bool, and (CUDA only)
// bfloat16 / float16, which round the float32 value to nearest even.
void random_fill(RandomKind kind, const View& out, uint64_t seed, uint64_t offset, double a, double b);

}  // namespace cuda
}  // namespace ng
