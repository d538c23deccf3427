// Fused class-index losses (cross-entropy with its log-softmax, nll) and BCE on logits.
//
// Cross-entropy forward: each row r = (n, i) is owned by a group of G threads (G = 32 for
// I == 1 and C <= 1024, the whole 256-thread block for I == 1 and larger C, one thread per
// row for I > 1 so loads at stride I are coalesced over i). One pass keeps an online
// (max, sum exp) per thread, plus sum w_c x_c and sum w_c with label smoothing; the group
// combines with an xor butterfly (deterministic). It writes loss[r] and lse[r] only: no
// [N, C] probability tensor ever exists. The backward recomputes p_c = exp(x_c - lse) and
// writes dx in one pass. The 'mean' divisor (total weight of non-ignored targets) is a
// separate one-block kernel writing a device scalar, so nothing waits for the host.
// Memory traffic: forward reads the logits once (16-byte loads when rows are aligned);
// backward reads them once and writes dx once.
#include "cuda/loss.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/rowstat.cuh"

namespace ng {
namespace cuda {
namespace {
using namespace rowstat;

__device__ __forceinline__ float log1p_a(float v) { return log1pf(v); }
__device__ __forceinline__ double log1p_a(double v) { return log1p(v); }
constexpr int kThreads = 256;


struct CeParams {
  const int32_t* targets;
  int64_t C, I, rows, ignore;
  double eps;
  DeviceErrorSlot* slot;
  int site;
};

template <class T, int G, bool VEC>
__global__ void __launch_bounds__(kThreads) ce_fwd_kernel(const T* __restrict__ x, const T* __restrict__ w, CeParams p,
                                                          T* __restrict__ loss, typename AccOf<T>::type* lse) {
  using A = typename AccOf<T>::type;
  __shared__ A sh1[kThreads / 32], sh2[kThreads / 32];
  const int64_t r = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / G;
  const int gl = G == 1 ? 0 : static_cast<int>(threadIdx.x % G);
  if (r >= p.rows) return;  // uniform over the group
  const int64_t t = p.targets[r], C = p.C;
  if (t == p.ignore || t < 0 || t >= C) {  // uniform over the group (one target per row)
    if (gl == 0) {
      if (t != p.ignore) report_device_error(p.slot, p.site, t, C);
      loss[r] = st<T>(A(0));
      lse[r] = 0;
    }
    return;
  }
  const int64_t sd = G == 1 ? p.I : 1;
  const T* xr = x + row_base<G>(r, C, p.I);
  const bool smooth = p.eps > 0;
  A m = ninf<A>(), s = 0, wx = 0, wsum = 0;
  auto push = [&](A v, int64_t c) {
    ms_push(m, s, v);
    if (smooth) {
      const A wc = w ? ld<A>(w[c]) : A(1);
      wx += wc * v;
      wsum += wc;
    }
  };
  if constexpr (VEC) {
    constexpr int N = Pack<T>::N;
    const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
    for (int64_t c = gl; c < C / N; c += G) {
      Pack<T> q = xp[c];
#pragma unroll
      for (int u = 0; u < N; ++u) push(ld<A>(q.v[u]), c * N + u);
    }
  } else {
    for (int64_t c = gl; c < C; c += G) push(ld<A>(xr[c * sd]), c);
  }
  group_ms<G>(m, s, sh1, sh2);
  if (smooth) {
    wx = group_sum<G>(wx, sh1);
    wsum = group_sum<G>(wsum, sh2);
  }
  if (gl != 0) return;
  const A l = m + log_a(s);
  const A wt = w ? ld<A>(w[t]) : A(1);
  const A e = static_cast<A>(p.eps);
  A v = (A(1) - e) * wt * (l - ld<A>(xr[t * sd]));
  if (smooth) v += e / static_cast<A>(C) * (l * wsum - wx);
  loss[r] = st<T>(v);
  lse[r] = l;
}

template <class T, int G, bool VEC>
__global__ void __launch_bounds__(kThreads) ce_bwd_kernel(const T* __restrict__ x, const T* __restrict__ w, CeParams p,
                                                          const typename AccOf<T>::type* __restrict__ lse,
                                                          const T* __restrict__ g, T* __restrict__ dx) {
  using A = typename AccOf<T>::type;
  __shared__ A sh[kThreads / 32];
  const int64_t r = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) / G;
  const int gl = G == 1 ? 0 : static_cast<int>(threadIdx.x % G);
  if (r >= p.rows) return;
  const int64_t t = p.targets[r], C = p.C, sd = G == 1 ? p.I : 1, base = row_base<G>(r, C, p.I);
  const T* xr = x + base;
  T* dr = dx + base;
  if (t == p.ignore || t < 0 || t >= C) {
    if (gl == 0 && t != p.ignore) report_device_error(p.slot, p.site, t, C);
    for (int64_t c = gl; c < C; c += G) dr[c * sd] = st<T>(A(0));
    return;
  }
  const A e = static_cast<A>(p.eps), sc = e / static_cast<A>(C);
  const A gr = ld<A>(g[r]), l = lse[r], wt = (A(1) - e) * (w ? ld<A>(w[t]) : A(1));
  A W = static_cast<A>(C);
  if (w && p.eps > 0) {
    A ws = 0;
    for (int64_t c = gl; c < C; c += G) ws += ld<A>(w[c]);
    W = group_sum<G>(ws, sh);
  }
  const A scale_p = wt + sc * W;
  auto f = [&](A v, int64_t c) -> A {
    A d = gr * (exp_a(v - l) * scale_p - sc * (w ? ld<A>(w[c]) : A(1)));
    return c == t ? d - gr * wt : d;
  };
  if constexpr (VEC) {
    constexpr int N = Pack<T>::N;
    const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(xr);
    Pack<T>* dp = reinterpret_cast<Pack<T>*>(dr);
    for (int64_t c = gl; c < C / N; c += G) {
      Pack<T> q = xp[c], o;
#pragma unroll
      for (int u = 0; u < N; ++u) o.v[u] = st<T>(f(ld<A>(q.v[u]), c * N + u));
      dp[c] = o;
    }
  } else {
    for (int64_t c = gl; c < C; c += G) dr[c * sd] = st<T>(f(ld<A>(xr[c * sd]), c));
  }
}

// total = sum over rows of w[t] (1 without weights) for targets in [0, C), not ignored.
// One block; fixed-order tree in double, so the result is reproducible.
constexpr int kTotalThreads = 1024;
template <class T>
__global__ void __launch_bounds__(kTotalThreads) total_weight_kernel(const int32_t* __restrict__ targets,
                                                                     const T* __restrict__ w, int64_t rows, int64_t C,
                                                                     int64_t ignore, typename AccOf<T>::type* total) {
  __shared__ double sh[kTotalThreads];
  double acc = 0;
  for (int64_t r = threadIdx.x; r < rows; r += kTotalThreads) {
    const int64_t t = targets[r];
    if (t != ignore && t >= 0 && t < C) acc += w ? ld<double>(w[t]) : 1.0;
  }
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int o = kTotalThreads / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) *total = static_cast<typename AccOf<T>::type>(sh[0]);
}

template <class T>
__global__ void nll_fwd_kernel(const T* __restrict__ x, const T* __restrict__ w, CeParams p, T* __restrict__ loss) {
  using A = typename AccOf<T>::type;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < p.rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = p.targets[r];
    A v = 0;
    if (t != p.ignore) {
      if (t < 0 || t >= p.C) report_device_error(p.slot, p.site, t, p.C);
      else v = -(w ? ld<A>(w[t]) : A(1)) * ld<A>(x[(r / p.I) * p.C * p.I + t * p.I + r % p.I]);
    }
    loss[r] = st<T>(v);
  }
}

// dx is zero except dx[r, t] = -w[t] g[r]; one thread per element of dx.
template <class T>
__global__ void nll_bwd_kernel(const T* __restrict__ w, CeParams p, const T* __restrict__ g, T* __restrict__ dx) {
  using A = typename AccOf<T>::type;
  const int64_t CI = p.C * p.I, total = p.rows / p.I * CI;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = e / CI, c = (e % CI) / p.I, i = e % p.I, r = n * p.I + i;
    const int64_t t = p.targets[r];
    A v = 0;
    if (t != p.ignore) {
      if (t < 0 || t >= p.C) {
        if (c == 0) report_device_error(p.slot, p.site, t, p.C);
      } else if (c == t) {
        v = -(w ? ld<A>(w[t]) : A(1)) * ld<A>(g[r]);
      }
    }
    dx[e] = st<T>(v);
  }
}

template <class A> __device__ __forceinline__ A softplus_neg(A x) {
  return (x < A(0) ? -x : A(0)) + log1p_a(exp_a(-fabs(x)));
}

template <class T>
__global__ void bce_fwd_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ pw, int64_t n,
                               T* __restrict__ loss) {
  using A = typename AccOf<T>::type;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const A xi = ld<A>(x[i]), yi = ld<A>(y[i]);
    const A L = pw ? A(1) + (ld<A>(pw[i]) - A(1)) * yi : A(1);
    loss[i] = st<T>((A(1) - yi) * xi + L * softplus_neg(xi));
  }
}

template <class T>
__global__ void bce_bwd_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ pw,
                               const T* __restrict__ g, int64_t n, T* dx, T* dy, T* dpw) {
  using A = typename AccOf<T>::type;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const A xi = ld<A>(x[i]), yi = ld<A>(y[i]), gi = ld<A>(g[i]);
    const A pv = pw ? ld<A>(pw[i]) : A(1);
    const A L = A(1) + (pv - A(1)) * yi;
    const A sig = xi >= A(0) ? A(1) / (A(1) + exp_a(-xi)) : exp_a(xi) / (A(1) + exp_a(xi));
    if (dx) dx[i] = st<T>(gi * ((A(1) - yi) + L * (sig - A(1))));
    if (dy || dpw) {
      const A sp = softplus_neg(xi);
      if (dy) dy[i] = st<T>(gi * (-xi + (pv - A(1)) * sp));
      if (dpw) dpw[i] = st<T>(gi * yi * sp);
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

CeParams params_of(const ClassLossArgs& a, const char* site) {
  if (a.N < 0 || a.C < 1 || a.I < 0) throw Error(std::string(site) + ": bad sizes");
  const int dev = current_device();
  return CeParams{a.targets, a.C, a.I, a.N * a.I, a.ignore_index, a.label_smoothing, error_slot(dev),
                  error_site(site)};
}

template <class T, class Launch>
void pick(const ClassLossArgs& a, bool vec_ok, Launch&& launch) {
  const bool vec = a.I == 1 && vec_ok && a.C % Pack<T>::N == 0;
  if (a.I > 1) return launch(std::integral_constant<int, 1>{}, std::false_type{});
  if (a.C <= 1024) {
    if (vec) return launch(std::integral_constant<int, 32>{}, std::true_type{});
    return launch(std::integral_constant<int, 32>{}, std::false_type{});
  }
  if (vec) return launch(std::integral_constant<int, kThreads>{}, std::true_type{});
  launch(std::integral_constant<int, kThreads>{}, std::false_type{});
}

template <class T>
void launch_total(const ClassLossArgs& a, void* total, const char* op) {
  using A = typename AccOf<T>::type;
  total_weight_kernel<T><<<1, kTotalThreads, 0, stream()>>>(a.targets, static_cast<const T*>(a.weight), a.N * a.I,
                                                              a.C, a.ignore_index, static_cast<A*>(total));
  check_launch(op);
}

}  // namespace

void cross_entropy_forward(const ClassLossArgs& a, void* loss, void* lse, void* total) {
  const char* op = "crossEntropy";
  CeParams p = params_of(a, "crossEntropy: target");
  dispatch_float(a.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    using A = typename AccOf<T>::type;
    if (p.rows > 0) {
      pick<T>(a, aligned16(a.x), [&](auto gs, auto v) {
        constexpr int G = decltype(gs)::value;
        const unsigned blocks = static_cast<unsigned>((p.rows * G + kThreads - 1) / kThreads);
        ce_fwd_kernel<T, G, decltype(v)::value><<<blocks, kThreads, 0, stream()>>>(
            static_cast<const T*>(a.x), static_cast<const T*>(a.weight), p, static_cast<T*>(loss),
            static_cast<A*>(lse));
        check_launch(op);
      });
    }
    if (total) launch_total<T>(a, total, op);
  });
}

void cross_entropy_backward(const ClassLossArgs& a, const void* lse, const void* g, void* dx) {
  const char* op = "crossEntropy backward";
  CeParams p = params_of(a, "crossEntropy: target");
  if (p.rows == 0) return;
  dispatch_float(a.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    using A = typename AccOf<T>::type;
    pick<T>(a, aligned16(a.x) && aligned16(dx), [&](auto gs, auto v) {
      constexpr int G = decltype(gs)::value;
      const unsigned blocks = static_cast<unsigned>((p.rows * G + kThreads - 1) / kThreads);
      ce_bwd_kernel<T, G, decltype(v)::value><<<blocks, kThreads, 0, stream()>>>(
          static_cast<const T*>(a.x), static_cast<const T*>(a.weight), p, static_cast<const A*>(lse),
          static_cast<const T*>(g), static_cast<T*>(dx));
      check_launch(op);
    });
  });
}

void nll_loss_forward(const ClassLossArgs& a, void* loss, void* total) {
  const char* op = "nllLoss";
  CeParams p = params_of(a, "nllLoss: target");
  dispatch_float(a.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    if (p.rows > 0) {
      nll_fwd_kernel<T><<<blocks_for(p.rows, 256), 256, 0, stream()>>>(
          static_cast<const T*>(a.x), static_cast<const T*>(a.weight), p, static_cast<T*>(loss));
      check_launch(op);
    }
    if (total) launch_total<T>(a, total, op);
  });
}

void nll_loss_backward(const ClassLossArgs& a, const void* g, void* dx) {
  const char* op = "nllLoss backward";
  CeParams p = params_of(a, "nllLoss: target");
  if (p.rows == 0) return;
  dispatch_float(a.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    nll_bwd_kernel<T><<<blocks_for(p.rows * a.C, 256), 256, 0, stream()>>>(
        static_cast<const T*>(a.weight), p, static_cast<const T*>(g), static_cast<T*>(dx));
    check_launch(op);
  });
}

void bce_logits_forward(DType dt, const void* x, const void* y, const void* pw, int64_t n, void* loss) {
  const char* op = "binaryCrossEntropyWithLogits";
  if (n <= 0) return;
  dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    bce_fwd_kernel<T><<<blocks_for(n, 256), 256, 0, stream()>>>(static_cast<const T*>(x), static_cast<const T*>(y),
                                                                 static_cast<const T*>(pw), n, static_cast<T*>(loss));
    check_launch(op);
  });
}

void bce_logits_backward(DType dt, const void* x, const void* y, const void* pw, const void* g, int64_t n, void* dx,
                         void* dy, void* dpw) {
  const char* op = "binaryCrossEntropyWithLogits backward";
  if (n <= 0 || (!dx && !dy && !dpw)) return;
  dispatch_float(dt, op, [&](auto tag) {
    using T = decltype(tag);
    bce_bwd_kernel<T><<<blocks_for(n, 256), 256, 0, stream()>>>(
        static_cast<const T*>(x), static_cast<const T*>(y), static_cast<const T*>(pw), static_cast<const T*>(g), n,
        static_cast<T*>(dx), static_cast<T*>(dy), static_cast<T*>(dpw));
    check_launch(op);
  });
}

}  // namespace cuda
}  // namespace ng
