#include "cpu/random.h"

#include <cmath>
#include <type_traits>

#include "threadpool.h"

namespace ng {

static inline double u01_open(uint32_t w0, uint32_t w1) {
  // 53-bit uniform in (0, 1]
  uint64_t x = (static_cast<uint64_t>(w0) << 21) ^ (w1 >> 11);
  x &= (1ull << 53) - 1;
  return (static_cast<double>(x) + 1.0) * (1.0 / 9007199254740992.0);
}

template <class T>
static void fill_t(RandomKind kind, T* o, int64_t n, uint64_t seed, uint64_t offset, double a, double b) {
  parallel_for(n, 8192, [&](int64_t i0, int64_t i1) {
    uint32_t w[4];
    for (int64_t i = i0; i < i1; ++i) {
      Philox::generate(seed, offset + static_cast<uint64_t>(i), w);
      double v;
      switch (kind) {
        case RandomKind::Uniform: {
          double u = u01_open(w[0], w[1]) - (1.0 / 9007199254740992.0);  // [0, 1)
          v = a + (b - a) * u;
          if (v >= b) v = a;  // guard rounding at the top end in float32
          break;
        }
        case RandomKind::Normal: {
          double u1 = u01_open(w[0], w[1]);
          double u2 = u01_open(w[2], w[3]);
          v = a + b * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
          break;
        }
        case RandomKind::Randint: {
          uint64_t range = static_cast<uint64_t>(b - a);
          uint64_t r = ((static_cast<uint64_t>(w[0]) << 32) | w[1]) % range;
          v = a + static_cast<double>(r);
          break;
        }
        default: {
          v = u01_open(w[0], w[1]) <= a ? 1.0 : 0.0;  // P(u <= p) = p for u in (0, 1]
          break;
        }
      }
      T t = static_cast<T>(v);
      if constexpr (std::is_floating_point_v<T>) {
        // v < b in double can still round up to b in float32: step down to the float below
        if (kind == RandomKind::Uniform && static_cast<double>(t) >= b) t = std::nextafter(t, static_cast<T>(a));
      }
      o[i] = t;
    }
  });
}

void random_fill(RandomKind kind, const View& out, uint64_t seed, uint64_t offset, double a, double b) {
  int64_t n = out.numel();
  if (kind == RandomKind::Randint) NG_CHECK(b > a, "randint: high must be greater than low");
  switch (out.dtype) {
    case DType::F32: return fill_t<float>(kind, out.ptr<float>(), n, seed, offset, a, b);
    case DType::F64: return fill_t<double>(kind, out.ptr<double>(), n, seed, offset, a, b);
    case DType::I32: return fill_t<int32_t>(kind, out.ptr<int32_t>(), n, seed, offset, a, b);
    case DType::Bool: return fill_t<uint8_t>(kind, out.ptr<uint8_t>(), n, seed, offset, a, b);
    default: throw Error("random: unsupported dtype");
  }
}

}  // namespace ng
