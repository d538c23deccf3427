// Algorithm. Forward: per row, one pass sums x^2 (two vector accumulators; with a
// residual it also writes sum = x + residual), then one pass writes y = (x * rstd) * w.
// Backward: per row, one pass sums dxhat * x (and adds g * xhat to the block's weight
// partial), a second writes gx. Rows are split into at most kMaxBlocks blocks fixed by
// `rows` alone; the weight partials are added in block order, so results do not depend
// on the thread count or timing. Parallel over rows (forward) or blocks (backward).
// Memory traffic: forward reads x (and residual) once, the second pass from cache, writes
// y (and sum); backward reads x and g (twice, the second from cache) and writes gx, plus
// blocks * C partials when gw is wanted.
//
// The kernel bodies (the #else branch at the end) are compiled twice by including this
// file into itself, as cpu/layernorm.cc does: portable with 16-byte vectors, and for
// AVX2/FMA with 32-byte vectors; the AVX2 build is picked at run time.
#ifndef NG_RMSNORM_KERNELS
#include "cpu/rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/isa.h"
#include "threadpool.h"

namespace ng {
namespace {
struct Args {
  const void *g, *x, *res, *w, *rstd;
  void *sum, *y, *rstd_out, *gx;
  int64_t rows, C;
  double eps;
};
}  // namespace
}  // namespace ng

#define NG_RMSNORM_KERNELS
namespace ng {
namespace {
namespace generic {
constexpr int kVecBytes = 16;
#include "cpu/rmsnorm.cc"
}  // namespace generic
}  // namespace
}  // namespace ng
#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace ng {
namespace {
namespace avx2 {
constexpr int kVecBytes = 32;
#include "cpu/rmsnorm.cc"
}  // namespace avx2
}  // namespace
}  // namespace ng
#pragma GCC pop_options
#endif

namespace ng {
namespace {

constexpr int64_t kMaxBlocks = 64;
constexpr int64_t kMinRowsPerBlock = 16;

template <class T>
void forward_t(const Args& a) {
  auto fn = NG_PICK(forward_rows);
  parallel_for(a.rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, a.C)),
               [&](int64_t r0, int64_t r1) { fn(a, r0, r1); });
}

template <class T>
void backward_t(const Args& a, T* gw) {
  auto fn = NG_PICK(backward_rows);
  const int64_t C = a.C;
  const int64_t blocks = std::max<int64_t>(1, std::min(kMaxBlocks, (a.rows + kMinRowsPerBlock - 1) / kMinRowsPerBlock));
  std::vector<T> pw(gw ? blocks * C : 0);
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t k = b0; k < b1; ++k) {
      int64_t r0 = a.rows * k / blocks, r1 = a.rows * (k + 1) / blocks;
      fn(a, r0, r1, gw ? pw.data() + k * C : nullptr);
    }
  });
  if (!gw) return;
  // Add the partials column-wise in block order (double accumulation).
  parallel_for(C, 1024, [&](int64_t c0, int64_t c1) {
    std::vector<double> acc(c1 - c0, 0.0);
    for (int64_t k = 0; k < blocks; ++k) {
      const T* p = pw.data() + k * C + c0;
      for (int64_t c = 0; c < c1 - c0; ++c) acc[c] += p[c];
    }
    for (int64_t c = 0; c < c1 - c0; ++c) gw[c0 + c] = static_cast<T>(acc[c]);
  });
}

#undef NG_PICK

void check_sizes(int64_t rows, int64_t C) { NG_CHECK(rows >= 0 && C >= 0, "rmsNorm: negative size"); }

}  // namespace

void rmsnorm_forward(const void* x, const void* residual, void* sum, const void* w, void* y, void* rstd, DType dt,
                     int64_t rows, int64_t C, double eps) {
  check_sizes(rows, C);
  NG_CHECK((residual == nullptr) == (sum == nullptr), "addRmsNorm: residual and sum go together");
  if (rows == 0 || C == 0) return;
  Args a{nullptr, x, residual, w, nullptr, sum, y, rstd, nullptr, rows, C, eps};
  switch (dt) {
    case DType::F32: return forward_t<float>(a);
    case DType::F64: return forward_t<double>(a);
    default: throw Error(std::string("rmsNorm: unsupported dtype ") + dtype_name(dt));
  }
}

void rmsnorm_backward(const void* g, const void* x, const void* w, const void* rstd, void* gx, void* gw, DType dt,
                      int64_t rows, int64_t C, double eps) {
  check_sizes(rows, C);
  if (C == 0) return;
  Args a{g, x, nullptr, w, rstd, nullptr, nullptr, nullptr, gx, rows, C, eps};
  switch (dt) {
    case DType::F32: return backward_t<float>(a, static_cast<float*>(gw));
    case DType::F64: return backward_t<double>(a, static_cast<double*>(gw));
    default: throw Error(std::string("rmsNorm backward: unsupported dtype ") + dtype_name(dt));
  }
}

}  // namespace ng

#else  // NG_RMSNORM_KERNELS: the kernels, compiled once per instruction set (kVecBytes)

#include "cpu/simd_kernels.h"

// sum_c a[c] * b[c] with two vector accumulators.
template <class T>
NG_INLINE T dot(const T* a, const T* b, int64_t C) {
  constexpr int64_t N = kN<T>;
  vec<T> s0{}, s1{};
  int64_t c = 0;
  for (; c + 2 * N <= C; c += 2 * N) {
    s0 += load(a + c) * load(b + c);
    s1 += load(a + c + N) * load(b + c + N);
  }
  T s = hsum<T>(s0 + s1);
  for (; c < C; ++c) s += a[c] * b[c];
  return s;
}

template <class T>
NG_INLINE T rstd_of(T sumsq, int64_t C, double eps) {
  return T(1) / std::sqrt(sumsq / T(C) + T(eps));
}

template <class T>
void forward_rows(const Args& a, int64_t r0, int64_t r1) {
  constexpr int64_t N = kN<T>;
  const int64_t C = a.C;
  const T* w = static_cast<const T*>(a.w);
  for (int64_t r = r0; r < r1; ++r) {
    const T* x = static_cast<const T*>(a.x) + r * C;
    if (a.res) {  // sum = x + residual, then normalise sum
      const T* res = static_cast<const T*>(a.res) + r * C;
      T* s = static_cast<T*>(a.sum) + r * C;
      int64_t c = 0;
      for (; c + N <= C; c += N) store(s + c, load(x + c) + load(res + c));
      for (; c < C; ++c) s[c] = x[c] + res[c];
      x = s;
    }
    T* y = static_cast<T*>(a.y) + r * C;
    const T rs = rstd_of<T>(dot(x, x, C), C, a.eps);
    if (a.rstd_out) static_cast<T*>(a.rstd_out)[r] = rs;
    const vec<T> vr = vec<T>{} + rs;
    int64_t c = 0;
    if (w) {
      for (; c + N <= C; c += N) store(y + c, (load(x + c) * vr) * load(w + c));
      for (; c < C; ++c) y[c] = (x[c] * rs) * w[c];
    } else {
      for (; c + N <= C; c += N) store(y + c, load(x + c) * vr);
      for (; c < C; ++c) y[c] = x[c] * rs;
    }
  }
}

// Rows [r0, r1); pw is this block's weight partial (or null).
template <class T>
void backward_rows(const Args& a, int64_t r0, int64_t r1, T* pw) {
  constexpr int64_t N = kN<T>;
  const int64_t C = a.C;
  const T* w = static_cast<const T*>(a.w);
  for (int64_t r = r0; r < r1; ++r) {
    const T* x = static_cast<const T*>(a.x) + r * C;
    const T* g = static_cast<const T*>(a.g) + r * C;
    const T rs = a.rstd ? static_cast<const T*>(a.rstd)[r] : rstd_of<T>(dot(x, x, C), C, a.eps);
    const vec<T> vr = vec<T>{} + rs;
    if (pw) {
      int64_t c = 0;
      for (; c + N <= C; c += N) store(pw + c, load(pw + c) + load(g + c) * (load(x + c) * vr));
      for (; c < C; ++c) pw[c] += g[c] * (x[c] * rs);
    }
    if (!a.gx) continue;
    // m = mean_c(dxhat * xhat) = rs * sum_c(g * w * x) / C
    T s;
    if (w) {
      vec<T> s0{}, s1{};
      int64_t c = 0;
      for (; c + 2 * N <= C; c += 2 * N) {
        s0 += load(g + c) * load(w + c) * load(x + c);
        s1 += load(g + c + N) * load(w + c + N) * load(x + c + N);
      }
      s = hsum<T>(s0 + s1);
      for (; c < C; ++c) s += g[c] * w[c] * x[c];
    } else {
      s = dot(g, x, C);
    }
    const T m = s * rs / T(C);
    const vec<T> vm = vec<T>{} + m;
    T* gx = static_cast<T*>(a.gx) + r * C;
    int64_t c = 0;
    if (w) {
      for (; c + N <= C; c += N) store(gx + c, vr * (load(g + c) * load(w + c) - (load(x + c) * vr) * vm));
      for (; c < C; ++c) gx[c] = rs * (g[c] * w[c] - (x[c] * rs) * m);
    } else {
      for (; c + N <= C; c += N) store(gx + c, vr * (load(g + c) - (load(x + c) * vr) * vm));
      for (; c < C; ++c) gx[c] = rs * (g[c] - (x[c] * rs) * m);
    }
  }
}

#undef NG_INLINE
#endif  // NG_RMSNORM_KERNELS
