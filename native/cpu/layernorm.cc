// Algorithm. Forward: per row, a two-pass mean and variance (two vector accumulators
// each), then one fused normalise-scale-shift pass.
// Backward: per row, one pass sums dxhat and dxhat * xhat (and adds g * xhat, g into the
// block's weight/bias partials), a second writes gx. Rows are split into at most
// kMaxBlocks blocks fixed by `rows` alone; the block partials of gw/gb are added in block
// order, so results do not depend on the thread count or timing. Parallel over rows
// (forward) or blocks (backward).
// Memory traffic: forward reads x twice (the second time from cache) and writes y;
// backward reads x and g (twice, the second from cache) and writes gx, plus 2 * blocks * C
// partials when gw/gb are wanted.
//
// The kernel bodies (the #else branch at the end) are compiled twice by including this
// file into itself: portable with 16-byte vectors, and for AVX2/FMA with 32-byte vectors;
// the AVX2 build is picked at run time.
#ifndef NG_LAYERNORM_KERNELS
#include "cpu/layernorm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/isa.h"
#include "threadpool.h"

namespace ng {
namespace {
struct Args {
  const void *g, *x, *w, *b, *mean, *rstd;
  void *y, *mean_out, *rstd_out, *gx, *gw, *gb;
  int64_t rows, C;
  double eps;
};
}  // namespace
}  // namespace ng

#define NG_LAYERNORM_KERNELS
namespace ng {
namespace {
namespace generic {
constexpr int kVecBytes = 16;
#include "cpu/layernorm.cc"
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
#include "cpu/layernorm.cc"
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
void backward_t(const Args& a) {
  auto fn = NG_PICK(backward_rows);
  const int64_t C = a.C;
  const bool partials = a.gw || a.gb;
  const int64_t blocks = std::min(kMaxBlocks, (a.rows + kMinRowsPerBlock - 1) / kMinRowsPerBlock);
  std::vector<T> pw(a.gw ? blocks * C : 0), pb(a.gb ? blocks * C : 0);
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t k = b0; k < b1; ++k) {
      int64_t r0 = a.rows * k / blocks, r1 = a.rows * (k + 1) / blocks;
      fn(a, r0, r1, a.gw ? pw.data() + k * C : nullptr, a.gb ? pb.data() + k * C : nullptr);
    }
  });
  if (!partials) return;
  // Add the partials column-wise in block order (double accumulation).
  parallel_for(C, 1024, [&](int64_t c0, int64_t c1) {
    std::vector<double> acc(c1 - c0);
    for (int which = 0; which < 2; ++which) {
      const std::vector<T>& part = which == 0 ? pw : pb;
      T* out = static_cast<T*>(which == 0 ? a.gw : a.gb);
      if (!out) continue;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t k = 0; k < blocks; ++k) {
        const T* p = part.data() + k * C + c0;
        for (int64_t c = 0; c < c1 - c0; ++c) acc[c] += p[c];
      }
      for (int64_t c = 0; c < c1 - c0; ++c) out[c0 + c] = static_cast<T>(acc[c]);
    }
  });
}

#undef NG_PICK

void check_sizes(int64_t rows, int64_t C) { NG_CHECK(rows >= 0 && C >= 0, "layerNorm: negative size"); }

}  // namespace

void layernorm_forward(const void* x, const void* w, const void* b, void* y, void* mean, void* rstd, DType dt,
                       int64_t rows, int64_t C, double eps) {
  check_sizes(rows, C);
  if (rows == 0 || C == 0) return;
  Args a{nullptr, x, w, b, nullptr, nullptr, y, mean, rstd, nullptr, nullptr, nullptr, rows, C, eps};
  switch (dt) {
    case DType::F32: return forward_t<float>(a);
    case DType::F64: return forward_t<double>(a);
    default: throw Error(std::string("layerNorm: unsupported dtype ") + dtype_name(dt));
  }
}

void layernorm_backward(const void* g, const void* x, const void* w, const void* mean, const void* rstd, void* gx,
                        void* gw, void* gb, DType dt, int64_t rows, int64_t C, double eps) {
  check_sizes(rows, C);
  if (C == 0) return;
  Args a{g, x, w, nullptr, mean, rstd, nullptr, nullptr, nullptr, gx, gw, gb, rows, C, eps};
  switch (dt) {
    case DType::F32: return backward_t<float>(a);
    case DType::F64: return backward_t<double>(a);
    default: throw Error(std::string("layerNorm backward: unsupported dtype ") + dtype_name(dt));
  }
}

}  // namespace ng

#else  // NG_LAYERNORM_KERNELS: the kernels, compiled once per instruction set (kVecBytes)

#include "cpu/simd_kernels.h"

template <class T>
NG_INLINE void row_stats(const T* x, int64_t C, T eps, T* mean_out, T* rstd_out) {
  constexpr int64_t N = kN<T>;
  vec<T> s0{}, s1{};
  int64_t c = 0;
  for (; c + 2 * N <= C; c += 2 * N) {
    s0 += load(x + c);
    s1 += load(x + c + N);
  }
  T s = hsum<T>(s0 + s1);
  for (; c < C; ++c) s += x[c];
  const T mean = s / T(C);
  vec<T> q0{}, q1{};
  const vec<T> vm = vec<T>{} + mean;
  for (c = 0; c + 2 * N <= C; c += 2 * N) {
    vec<T> d0 = load(x + c) - vm, d1 = load(x + c + N) - vm;
    q0 += d0 * d0;
    q1 += d1 * d1;
  }
  T q = hsum<T>(q0 + q1);
  for (; c < C; ++c) q += (x[c] - mean) * (x[c] - mean);
  *mean_out = mean;
  *rstd_out = T(1) / std::sqrt(q / T(C) + eps);
}

// sum_c dxhat and sum_c dxhat * xhat for one row, with dxhat = g * w (w null: g) and
// xhat = (x - mu) * rs.
template <class T>
NG_INLINE void grad_sums(const T* g, const T* x, const T* w, int64_t C, T mu, T rs, T* sum1, T* sum2) {
  constexpr int64_t N = kN<T>;
  const vec<T> vmu = vec<T>{} + mu, vrs = vec<T>{} + rs;
  vec<T> a0{}, a1{}, b0{}, b1{};
  int64_t c = 0;
  for (; c + 2 * N <= C; c += 2 * N) {
    vec<T> d0 = load(g + c), d1 = load(g + c + N);
    if (w) {
      d0 *= load(w + c);
      d1 *= load(w + c + N);
    }
    a0 += d0;
    a1 += d1;
    b0 += d0 * ((load(x + c) - vmu) * vrs);
    b1 += d1 * ((load(x + c + N) - vmu) * vrs);
  }
  T s1 = hsum<T>(a0 + a1), s2 = hsum<T>(b0 + b1);
  for (; c < C; ++c) {
    T d = w ? g[c] * w[c] : g[c];
    s1 += d;
    s2 += d * ((x[c] - mu) * rs);
  }
  *sum1 = s1;
  *sum2 = s2;
}

template <class T>
void forward_rows(const Args& a, int64_t r0, int64_t r1) {
  const int64_t C = a.C;
  const T* w = static_cast<const T*>(a.w);
  const T* b = static_cast<const T*>(a.b);
  for (int64_t r = r0; r < r1; ++r) {
    const T* x = static_cast<const T*>(a.x) + r * C;
    T* y = static_cast<T*>(a.y) + r * C;
    T mu, rs;
    row_stats(x, C, T(a.eps), &mu, &rs);
    if (a.mean_out) static_cast<T*>(a.mean_out)[r] = mu;
    if (a.rstd_out) static_cast<T*>(a.rstd_out)[r] = rs;
    if (w && b) {
      for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - mu) * rs * w[c] + b[c];
    } else if (w) {
      for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - mu) * rs * w[c];
    } else if (b) {
      for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - mu) * rs + b[c];
    } else {
      for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - mu) * rs;
    }
  }
}

// Rows [r0, r1); pw/pb are this block's partials (or null).
template <class T>
void backward_rows(const Args& a, int64_t r0, int64_t r1, T* pw, T* pb) {
  const int64_t C = a.C;
  const T* w = static_cast<const T*>(a.w);
  for (int64_t r = r0; r < r1; ++r) {
    const T* x = static_cast<const T*>(a.x) + r * C;
    const T* g = static_cast<const T*>(a.g) + r * C;
    T mu, rs;
    if (a.mean && a.rstd) {
      mu = static_cast<const T*>(a.mean)[r];
      rs = static_cast<const T*>(a.rstd)[r];
    } else {
      row_stats(x, C, T(a.eps), &mu, &rs);
    }
    if (pw && pb) {
      for (int64_t c = 0; c < C; ++c) {
        pw[c] += g[c] * ((x[c] - mu) * rs);
        pb[c] += g[c];
      }
    } else if (pw) {
      for (int64_t c = 0; c < C; ++c) pw[c] += g[c] * ((x[c] - mu) * rs);
    } else if (pb) {
      for (int64_t c = 0; c < C; ++c) pb[c] += g[c];
    }
    if (!a.gx) continue;
    T s1, s2;
    grad_sums(g, x, w, C, mu, rs, &s1, &s2);
    const T m1 = s1 / T(C), m2 = s2 / T(C);
    T* gx = static_cast<T*>(a.gx) + r * C;
    if (w) {
      for (int64_t c = 0; c < C; ++c) gx[c] = rs * (g[c] * w[c] - m1 - ((x[c] - mu) * rs) * m2);
    } else {
      for (int64_t c = 0; c < C; ++c) gx[c] = rs * (g[c] - m1 - ((x[c] - mu) * rs) * m2);
    }
  }
}

#undef NG_INLINE
#endif  // NG_LAYERNORM_KERNELS
