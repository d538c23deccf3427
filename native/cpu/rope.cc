// Algorithm: the work is cut by time step (and by batch row when positions are per
// batch). A unit evaluates the D/2 cosines and sines of its position once into a small
// per-thread table and applies them to every head (and batch row) that shares that
// position, so the trigonometry costs T * D/2 per call (B * T * D/2 with [B, T]
// positions), not one evaluation per element. Each unit writes disjoint outputs: the
// result does not depend on the thread count. In place is safe: each pair (i, i + D/2)
// is read before it is written, by one thread.
// Memory traffic: reads x once and writes out once; positions once per unit.
#include "cpu/rope.h"

#include <cmath>
#include <vector>

#include "threadpool.h"

namespace ng {
namespace {

template <class T>
void rope_t(const RopeArgs& a, const T* x, T* out) {
  const int64_t half = a.D / 2;
  const bool per_batch = a.positions != nullptr && a.pos_bstride != 0;
  const int64_t units = (per_batch ? a.B : 1) * a.T;
  const int64_t per_unit = (per_batch ? 1 : a.B) * a.H * a.D;
  const T sc = static_cast<T>(a.scaling);
  parallel_for(units, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, per_unit)), [&](int64_t u0, int64_t u1) {
    std::vector<T> cs(static_cast<size_t>(2 * half));
    T* cos_t = cs.data();
    T* sin_t = cs.data() + half;
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t t = u % a.T, b0 = per_batch ? u / a.T : 0, b1 = per_batch ? b0 + 1 : a.B;
      const int64_t pos = a.positions ? a.positions[b0 * a.pos_bstride + t] : a.offset + t;
      const T p = static_cast<T>(pos);
      for (int64_t i = 0; i < half; ++i) {
        const T ang = p * static_cast<T>(a.inv_freq[i]);
        cos_t[i] = static_cast<T>(std::cos(static_cast<double>(ang))) * sc;
        const T s = static_cast<T>(std::sin(static_cast<double>(ang))) * sc;
        sin_t[i] = a.inverse ? -s : s;
      }
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t h = 0; h < a.H; ++h) {
          const T* xr = x + b * a.xs[0] + h * a.xs[1] + t * a.xs[2];
          T* o = out + b * a.os[0] + h * a.os[1] + t * a.os[2];
          for (int64_t i = 0; i < half; ++i) {
            const T x1 = xr[i], x2 = xr[i + half];
            o[i] = x1 * cos_t[i] - x2 * sin_t[i];
            o[i + half] = x2 * cos_t[i] + x1 * sin_t[i];
          }
        }
      }
    }
  });
}

}  // namespace

void rope_forward(const RopeArgs& a, const void* x, void* out) {
  NG_CHECK(a.B >= 0 && a.H >= 0 && a.T >= 0 && a.D >= 0 && a.D % 2 == 0, "rotaryEmbedding: invalid sizes");
  if (a.B * a.H * a.T * a.D == 0) return;
  switch (a.dtype) {
    case DType::F32: return rope_t<float>(a, static_cast<const float*>(x), static_cast<float*>(out));
    case DType::F64: return rope_t<double>(a, static_cast<const double*>(x), static_cast<double*>(out));
    default: throw Error(std::string("rotaryEmbedding: unsupported dtype ") + dtype_name(a.dtype));
  }
}

}  // namespace ng
