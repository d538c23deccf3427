// The same kernels compiled for AVX2/FMA; chosen at run time when the CPU has them.
#if defined(__x86_64__)
#pragma GCC target("avx2,fma")
#endif
#define NG_EW_NS avx2
#include "cpu/elementwise_impl.h"
