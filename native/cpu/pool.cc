// 2-D pooling kernels (see pool.h): one plane per work item, windows computed per output.
#include "cpu/pool.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "threadpool.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ng {
namespace {

template <class F>
void dispatch(DType dt, const char* op, F&& f) {
  if (dt == DType::F32) f(float{});
  else if (dt == DType::F64) f(double{});
  else throw Error(std::string(op) + ": expected float32 or float64 (got " + dtype_name(dt) + ")");
}

int64_t plane_grain(int64_t work_per_plane) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(work_per_plane, 1)); }

// PyTorch's average-pooling window: the divisor is taken before clipping to the input.
struct AvgWindow {
  int64_t h0, h1, w0, w1, div;
};
inline AvgWindow avg_window(const Pool2dGeom& g, int64_t oh, int64_t ow, bool include_pad, int64_t override_div) {
  AvgWindow a;
  a.h0 = oh * g.sh - g.ph;
  a.w0 = ow * g.sw - g.pw;
  a.h1 = std::min(a.h0 + g.kh, g.H + g.ph);
  a.w1 = std::min(a.w0 + g.kw, g.W + g.pw);
  const int64_t pool_size = (a.h1 - a.h0) * (a.w1 - a.w0);
  a.h0 = std::max<int64_t>(a.h0, 0);
  a.w0 = std::max<int64_t>(a.w0, 0);
  a.h1 = std::min(a.h1, g.H);
  a.w1 = std::min(a.w1, g.W);
  a.div = override_div > 0 ? override_div : include_pad ? pool_size : (a.h1 - a.h0) * (a.w1 - a.w0);
  return a;
}

inline int64_t adaptive_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
inline int64_t adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

}  // namespace

void pool2d_check(const Pool2dGeom& g, const char* op) {
  const int64_t all[] = {g.planes, g.H, g.W, g.OH, g.OW, g.ph, g.pw};
  const int64_t lim = int64_t(1) << 40;
  for (int64_t v : all) NG_CHECK(v >= 0 && v < lim, std::string(op) + ": invalid size or padding");
  NG_CHECK(g.kh > 0 && g.kw > 0 && g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0 && g.kh < lim && g.kw < lim &&
               g.sh < lim && g.sw < lim && g.dh < lim && g.dw < lim,
           std::string(op) + ": kernel size, stride and dilation must be positive");
  NG_CHECK(g.H * g.W <= std::numeric_limits<int32_t>::max(), std::string(op) + ": plane too large for int32 indices");
}

// best = v when v > best or v is NaN (NaN wins, the first maximum wins ties); returns
// whether it did. Branch-free: on real data the outcome is unpredictable.
inline bool take_max(float v, float& best) {
#if defined(__SSE2__)
  const __m128 a = _mm_set_ss(v), b = _mm_set_ss(best);
  const __m128 m = _mm_or_ps(_mm_cmpgt_ss(a, b), _mm_cmpunord_ss(a, a));
  best = _mm_cvtss_f32(_mm_or_ps(_mm_and_ps(m, a), _mm_andnot_ps(m, b)));
  return _mm_movemask_ps(m) & 1;
#else
  const bool t = (v > best) | (v != v);
  best = t ? v : best;
  return t;
#endif
}
inline bool take_max(double v, double& best) {
#if defined(__SSE2__)
  const __m128d a = _mm_set_sd(v), b = _mm_set_sd(best);
  const __m128d m = _mm_or_pd(_mm_cmpgt_sd(a, b), _mm_cmpunord_sd(a, a));
  best = _mm_cvtsd_f64(_mm_or_pd(_mm_and_pd(m, a), _mm_andnot_pd(m, b)));
  return _mm_movemask_pd(m) & 1;
#else
  const bool t = (v > best) | (v != v);
  best = t ? v : best;
  return t;
#endif
}

// One plane of max pooling. Every value it needs arrives by value or through restrict
// pointers, so the compiler keeps them in registers across the stores.
template <class T>
void maxpool_plane(const T* __restrict xp, T* __restrict yp, int32_t* __restrict ip, int64_t W, int64_t OH,
                   int64_t OW, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                   const int64_t* __restrict r0, const int64_t* __restrict r1, const int64_t* __restrict c0,
                   const int64_t* __restrict c1) {
  for (int64_t oh = 0; oh < OH; ++oh) {
    const int64_t ih0 = oh * sh - ph, k0 = r0[oh], k1 = r1[oh];
    for (int64_t ow = 0; ow < OW; ++ow) {
      const int64_t iw0 = ow * sw - pw, j0 = c0[ow], j1 = c1[ow];
      T best = -std::numeric_limits<T>::infinity();
      int64_t at = -1;
      if (k0 < k1 && j0 < j1) {
        at = (ih0 + k0 * dh) * W + iw0 + j0 * dw;
        best = xp[at];
      }
      for (int64_t ki = k0; ki < k1; ++ki) {
        const int64_t row = (ih0 + ki * dh) * W + iw0;
        for (int64_t kj = j0; kj < j1; ++kj) {
          const int64_t i = row + kj * dw;
          const T v = xp[i];
          at = take_max(v, best) ? i : at;
        }
      }
      yp[oh * OW + ow] = best;
      ip[oh * OW + ow] = static_cast<int32_t>(at);
    }
  }
}

void maxpool2d_forward(const void* xv, void* yv, int32_t* idx, DType dt, const Pool2dGeom& g) {
  pool2d_check(g, "maxPool2d");
  // The kernel taps [t0, t1) that fall inside the input, per output row and column.
  std::vector<int64_t> r0(g.OH), r1(g.OH), c0(g.OW), c1(g.OW);
  auto taps = [](int64_t start, int64_t k, int64_t d, int64_t n, int64_t& t0, int64_t& t1) {
    t0 = start >= 0 ? 0 : (-start + d - 1) / d;
    t1 = n - start <= 0 ? 0 : std::min(k, (n - start + d - 1) / d);
    t0 = std::min(t0, t1);
  };
  for (int64_t o = 0; o < g.OH; ++o) taps(o * g.sh - g.ph, g.kh, g.dh, g.H, r0[o], r1[o]);
  for (int64_t o = 0; o < g.OW; ++o) taps(o * g.sw - g.pw, g.kw, g.dw, g.W, c0[o], c1[o]);
  dispatch(dt, "maxPool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(xv);
    T* y = static_cast<T*>(yv);
    const int64_t HW = g.H * g.W, P = g.OH * g.OW;
    parallel_for(g.planes, plane_grain(P * g.kh * g.kw), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p)
        maxpool_plane(x + p * HW, y + p * P, idx + p * P, g.W, g.OH, g.OW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,
                      r0.data(), r1.data(), c0.data(), c1.data());
    });
  });
}

void maxpool2d_backward(const void* dyv, const int32_t* idx, void* dxv, DType dt, const Pool2dGeom& g) {
  pool2d_check(g, "maxPool2d backward");
  std::atomic<bool> bad{false};
  dispatch(dt, "maxPool2d backward", [&](auto tag) {
    using T = decltype(tag);
    const T* dy = static_cast<const T*>(dyv);
    T* dx = static_cast<T*>(dxv);
    const int64_t HW = g.H * g.W, P = g.OH * g.OW;
    parallel_for(g.planes, plane_grain(P + HW), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        T* dxp = dx + p * HW;
        const T* dyp = dy + p * P;
        const int32_t* ip = idx + p * P;
        std::fill(dxp, dxp + HW, T(0));
        for (int64_t i = 0; i < P; ++i) {
          const int64_t at = ip[i];
          if (at < -1 || at >= HW) bad.store(true, std::memory_order_relaxed);
          else if (at >= 0) dxp[at] += dyp[i];
        }
      }
    });
  });
  if (bad.load()) throw Error("maxPool2d backward: a saved index lies outside its plane");
}

void avgpool2d_forward(const void* xv, void* yv, DType dt, const Pool2dGeom& g, bool include_pad, int64_t div) {
  pool2d_check(g, "avgPool2d");
  dispatch(dt, "avgPool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(xv);
    T* y = static_cast<T*>(yv);
    const int64_t HW = g.H * g.W, P = g.OH * g.OW;
    parallel_for(g.planes, plane_grain(P * g.kh * g.kw), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const T* xp = x + p * HW;
        T* yp = y + p * P;
        for (int64_t oh = 0; oh < g.OH; ++oh)
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const AvgWindow a = avg_window(g, oh, ow, include_pad, div);
            T s = 0;
            for (int64_t ih = a.h0; ih < a.h1; ++ih)
              for (int64_t iw = a.w0; iw < a.w1; ++iw) s += xp[ih * g.W + iw];
            yp[oh * g.OW + ow] = a.h0 >= a.h1 || a.w0 >= a.w1 ? T(0) : s / static_cast<T>(a.div);
          }
      }
    });
  });
}

void avgpool2d_backward(const void* dyv, void* dxv, DType dt, const Pool2dGeom& g, bool include_pad, int64_t div) {
  pool2d_check(g, "avgPool2d backward");
  dispatch(dt, "avgPool2d backward", [&](auto tag) {
    using T = decltype(tag);
    const T* dy = static_cast<const T*>(dyv);
    T* dx = static_cast<T*>(dxv);
    const int64_t HW = g.H * g.W, P = g.OH * g.OW;
    parallel_for(g.planes, plane_grain(P * g.kh * g.kw + HW), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        T* dxp = dx + p * HW;
        const T* dyp = dy + p * P;
        std::fill(dxp, dxp + HW, T(0));
        for (int64_t oh = 0; oh < g.OH; ++oh)
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const AvgWindow a = avg_window(g, oh, ow, include_pad, div);
            if (a.h0 >= a.h1 || a.w0 >= a.w1) continue;
            const T v = dyp[oh * g.OW + ow] / static_cast<T>(a.div);
            for (int64_t ih = a.h0; ih < a.h1; ++ih)
              for (int64_t iw = a.w0; iw < a.w1; ++iw) dxp[ih * g.W + iw] += v;
          }
      }
    });
  });
}

static void adaptive_check(int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW) {
  const int64_t lim = int64_t(1) << 31;
  const int64_t all[] = {planes, H, W, OH, OW};
  for (int64_t v : all) NG_CHECK(v >= 0 && v < lim, "adaptiveAvgPool2d: invalid size");
  NG_CHECK((OH > 0 && OW > 0) || planes == 0, "adaptiveAvgPool2d: output size must be positive");
}

void adaptive_avgpool2d_forward(const void* xv, void* yv, DType dt, int64_t planes, int64_t H, int64_t W, int64_t OH,
                                int64_t OW) {
  adaptive_check(planes, H, W, OH, OW);
  dispatch(dt, "adaptiveAvgPool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* x = static_cast<const T*>(xv);
    T* y = static_cast<T*>(yv);
    parallel_for(planes, plane_grain(H * W + OH * OW), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const T* xp = x + p * H * W;
        T* yp = y + p * OH * OW;
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t h0 = adaptive_start(oh, H, OH), h1 = adaptive_end(oh, H, OH);
          for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t w0 = adaptive_start(ow, W, OW), w1 = adaptive_end(ow, W, OW);
            T s = 0;
            for (int64_t ih = h0; ih < h1; ++ih)
              for (int64_t iw = w0; iw < w1; ++iw) s += xp[ih * W + iw];
            const int64_t n = (h1 - h0) * (w1 - w0);
            yp[oh * OW + ow] = n > 0 ? s / static_cast<T>(n) : T(0);
          }
        }
      }
    });
  });
}

void adaptive_avgpool2d_backward(const void* dyv, void* dxv, DType dt, int64_t planes, int64_t H, int64_t W,
                                 int64_t OH, int64_t OW) {
  adaptive_check(planes, H, W, OH, OW);
  dispatch(dt, "adaptiveAvgPool2d backward", [&](auto tag) {
    using T = decltype(tag);
    const T* dy = static_cast<const T*>(dyv);
    T* dx = static_cast<T*>(dxv);
    parallel_for(planes, plane_grain(H * W + OH * OW), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        T* dxp = dx + p * H * W;
        const T* dyp = dy + p * OH * OW;
        std::fill(dxp, dxp + H * W, T(0));
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t h0 = adaptive_start(oh, H, OH), h1 = adaptive_end(oh, H, OH);
          for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t w0 = adaptive_start(ow, W, OW), w1 = adaptive_end(ow, W, OW);
            const int64_t n = (h1 - h0) * (w1 - w0);
            if (n == 0) continue;
            const T v = dyp[oh * OW + ow] / static_cast<T>(n);
            for (int64_t ih = h0; ih < h1; ++ih)
              for (int64_t iw = w0; iw < w1; ++iw) dxp[ih * W + iw] += v;
          }
        }
      }
    });
  });
}

}  // namespace ng
