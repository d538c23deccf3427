// Run-time choice between a kernel family's two builds (see native/cpu/simd_kernels.h):
// the AVX2/FMA one where the CPU has both, the portable one otherwise.
#pragma once

#include "common.h"

namespace ng {

inline bool use_avx2() {
#if defined(__x86_64__)
  static const bool v = cpu_features().avx2 && cpu_features().fma;
  return v;
#else
  return false;
#endif
}

}  // namespace ng

// NG_PICK(fn): the instantiation fn<T> of the build this CPU runs (T from the caller).
#if defined(__x86_64__)
#define NG_PICK(fn) (use_avx2() ? avx2::fn<T> : generic::fn<T>)
#else
#define NG_PICK(fn) generic::fn<T>
#endif
