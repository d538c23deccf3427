// 2-D convolution by im2col + the packed GEMM (see conv.h for the algorithm).
#include "cpu/conv.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "cpu/gemm.h"
#include "cpu/scratch.h"
#include "threadpool.h"

namespace ng {
namespace {

// Column bytes per thread in one chunk (at least one image each): about a core's L2.
constexpr size_t kThreadColsBytes = size_t(2) << 20;
// Scratch buffers larger than this are released after each call.
constexpr size_t kKeepBytes = size_t(64) << 20;
// The weight gradient's partial sums may take at most this much memory.
constexpr size_t kPartialBytes = size_t(16) << 20;
// Pieces of the weight gradient's inner dimension have at least this many columns.
constexpr int64_t kWeightGradMinCols = 256;

// Kernels are launched from the JavaScript thread only; one buffer per role.
thread_local Scratch tl_cols("conv2d"), tl_dcols("conv2d"), tl_dyt("conv2d"), tl_part("conv2d");

struct TrimOnExit {
  ~TrimOnExit() {
    tl_cols.trim(kKeepBytes);
    tl_dcols.trim(kKeepBytes);
    tl_dyt.trim(kKeepBytes);
    tl_part.trim(kKeepBytes);
  }
};

View make(const void* p, DType dt, std::initializer_list<int64_t> shape, std::initializer_list<int64_t> strides) {
  View v;
  v.data = const_cast<void*>(p);
  v.dtype = dt;
  v.ndim = static_cast<int>(shape.size());
  int i = 0;
  for (int64_t s : shape) v.shape[i++] = s;
  i = 0;
  for (int64_t s : strides) v.strides[i++] = s;
  return v;
}

// The output columns [ow0, ow1) whose input column ow*sw + off lies inside [0, W).
inline void valid_cols(int64_t off, int64_t sw, int64_t W, int64_t OW, int64_t& ow0, int64_t& ow1) {
  ow0 = off >= 0 ? 0 : (-off + sw - 1) / sw;
  ow1 = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
  ow0 = std::min(ow0, OW);
  ow1 = std::max(ow0, std::min(ow1, OW));
}

bool is_pointwise(const Conv2dGeom& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 && g.OH == g.H && g.OW == g.W;
}

// cols [C*kh*kw, nc, P] from images n0 .. n0+nc of x; zero where a patch reaches padding.
template <class T>
void im2col(const T* x, const Conv2dGeom& g, int64_t n0, int64_t nc, T* cols) {
  const int64_t P = g.OH * g.OW, KK = g.kh * g.kw, HW = g.H * g.W;
  parallel_for(g.C * KK * nc, std::max<int64_t>(1, 4096 / std::max<int64_t>(P, 1)), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      // image-major order: a thread's share of the chunk covers whole images where it can
      const int64_t n = u / (g.C * KK), r = u % (g.C * KK);
      const int64_t c = r / KK, ki = (r % KK) / g.kw, kj = r % g.kw;
      const T* plane = x + ((n0 + n) * g.C + c) * HW;
      T* dst = cols + (r * nc + n) * P;
      const int64_t off = kj * g.dw - g.pw;
      int64_t ow0, ow1;
      valid_cols(off, g.sw, g.W, g.OW, ow0, ow1);
      for (int64_t oh = 0; oh < g.OH; ++oh, dst += g.OW) {
        const int64_t ih = oh * g.sh - g.ph + ki * g.dh;
        if (ih < 0 || ih >= g.H) {
          std::fill(dst, dst + g.OW, T(0));
          continue;
        }
        const T* row = plane + ih * g.W;
        std::fill(dst, dst + ow0, T(0));
        if (g.sw == 1) std::memcpy(dst + ow0, row + ow0 + off, (ow1 - ow0) * sizeof(T));
        else
          for (int64_t ow = ow0; ow < ow1; ++ow) dst[ow] = row[ow * g.sw + off];
        std::fill(dst + ow1, dst + g.OW, T(0));
      }
    }
  });
}

// dx images n0 .. n0+nc = sum of the patches in dcols [C*kh*kw, nc, P] (overwrites dx).
template <class T>
void col2im(const T* dcols, const Conv2dGeom& g, int64_t n0, int64_t nc, T* dx) {
  const int64_t P = g.OH * g.OW, KK = g.kh * g.kw, HW = g.H * g.W;
  parallel_for(nc * g.C, std::max<int64_t>(1, 4096 / std::max<int64_t>(KK * P, 1)), [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t n = u / g.C, c = u % g.C;
      T* plane = dx + ((n0 + n) * g.C + c) * HW;
      std::fill(plane, plane + HW, T(0));
      for (int64_t ki = 0; ki < g.kh; ++ki)
        for (int64_t kj = 0; kj < g.kw; ++kj) {
          const T* src = dcols + ((c * KK + ki * g.kw + kj) * nc + n) * P;
          const int64_t off = kj * g.dw - g.pw;
          int64_t ow0, ow1;
          valid_cols(off, g.sw, g.W, g.OW, ow0, ow1);
          for (int64_t oh = 0; oh < g.OH; ++oh, src += g.OW) {
            const int64_t ih = oh * g.sh - g.ph + ki * g.dh;
            if (ih < 0 || ih >= g.H) continue;
            T* row = plane + ih * g.W + off;
            if (g.sw == 1)
              for (int64_t ow = ow0; ow < ow1; ++ow) row[ow] += src[ow];
            else
              for (int64_t ow = ow0; ow < ow1; ++ow) row[ow * g.sw] += src[ow];
          }
        }
    }
  });
}

// Images per chunk: each thread gets whole images whose columns stay near kThreadColsBytes
// (in its L2 cache, between im2col and the GEMM that reads them).
template <class T>
int64_t chunk_images(const Conv2dGeom& g) {
  const int64_t per = std::max<int64_t>(1, g.C * g.kh * g.kw * g.OH * g.OW) * static_cast<int64_t>(sizeof(T));
  const int64_t each = std::max<int64_t>(1, static_cast<int64_t>(kThreadColsBytes) / per);
  return std::max<int64_t>(1, std::min<int64_t>(g.N, each * num_threads()));
}

template <class T>
void forward_typed(const T* x, const T* w, const T* b, T* y, const Conv2dGeom& g) {
  TrimOnExit trim;
  const DType dt = sizeof(T) == 4 ? DType::F32 : DType::F64;
  const int64_t P = g.OH * g.OW, Cg = g.C / g.G, Og = g.O / g.G, K = Cg * g.kh * g.kw;
  const bool pointwise = is_pointwise(g);
  const int64_t chunk = pointwise ? g.N : chunk_images<T>(g);
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t nc = std::min(chunk, g.N - n0);
    View B;
    if (pointwise) {  // x itself is the column matrix
      B = make(x + n0 * g.C * P, dt, {g.G, nc, K, P}, {Cg * P, g.C * P, P, 1});
    } else {
      T* cols = tl_cols.get<T>(static_cast<size_t>(g.C * g.kh * g.kw * nc * P));
      im2col(x, g, n0, nc, cols);
      B = make(cols, dt, {g.G, nc, K, P}, {K * nc * P, P, nc * P, 1});
    }
    gemm(make(w, dt, {g.G, nc, Og, K}, {Og * K, 0, K, 1}), B,
         make(y + n0 * g.O * P, dt, {g.G, nc, Og, P}, {Og * P, g.O * P, P, 1}), 1.0, 0.0);
  }
  if (b) {
    parallel_for(g.N * g.O, std::max<int64_t>(1, 16384 / std::max<int64_t>(P, 1)), [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) {
        const T bv = b[u % g.O];
        T* p = y + u * P;
        for (int64_t i = 0; i < P; ++i) p[i] += bv;
      }
    });
  }
}

// dW (+)= dyT[g] [O/G, L] @ cols[g]^T [L, K] over the chunk's L = nc*P columns. The
// columns are cut into one piece per thread, whose products are independent GEMMs
// writing partial sums, then added in piece order: one shared GEMM would cut this
// small-M, small-N, long-K product into barrier-bound slivers. (So the rounding of dW
// depends on the thread count, as with any split-K reduction.)
template <class T>
void weight_grad_chunk(const T* dyt, const T* cols, T* dw, const Conv2dGeom& g, int64_t nc, bool accumulate) {
  const DType dt = sizeof(T) == 4 ? DType::F32 : DType::F64;
  const int64_t P = g.OH * g.OW, Og = g.O / g.G, K = (g.C / g.G) * g.kh * g.kw, L = nc * P, nw = g.O * K;
  const int64_t by_mem = static_cast<int64_t>(kPartialBytes / sizeof(T)) / std::max<int64_t>(nw, 1);
  const int64_t S = std::max<int64_t>(1, std::min<int64_t>({num_threads(), L / kWeightGradMinCols, by_mem}));
  const double beta = accumulate ? 1.0 : 0.0;
  if (S == 1) {
    gemm(make(dyt, dt, {g.G, Og, L}, {Og * L, L, 1}), make(cols, dt, {g.G, L, K}, {K * L, 1, L}),
         make(dw, dt, {g.G, Og, K}, {Og * K, K, 1}), 1.0, beta);
    return;
  }
  const int64_t piece = L / S, rest = L - S * piece;
  T* part = tl_part.get<T>(static_cast<size_t>(S * nw));
  gemm(make(dyt, dt, {g.G, S, Og, piece}, {Og * L, piece, L, 1}),
       make(cols, dt, {g.G, S, piece, K}, {K * L, piece, 1, L}),
       make(part, dt, {g.G, S, Og, K}, {Og * K, nw, K, 1}), 1.0, 0.0);
  parallel_for(nw, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T s = accumulate ? dw[i] : T(0);
      for (int64_t p = 0; p < S; ++p) s += part[p * nw + i];
      dw[i] = s;
    }
  });
  if (rest > 0) {  // the last few columns
    const int64_t c0 = S * piece;
    gemm(make(dyt + c0, dt, {g.G, Og, rest}, {Og * L, L, 1}), make(cols + c0, dt, {g.G, rest, K}, {K * L, 1, L}),
         make(dw, dt, {g.G, Og, K}, {Og * K, K, 1}), 1.0, 1.0);
  }
}

template <class T>
void backward_typed(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, const Conv2dGeom& g) {
  TrimOnExit trim;
  const DType dt = sizeof(T) == 4 ? DType::F32 : DType::F64;
  const int64_t P = g.OH * g.OW, Cg = g.C / g.G, Og = g.O / g.G, K = Cg * g.kh * g.kw;
  if (db) {  // per output channel, summed in a fixed order
    parallel_for(g.O, 1, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        double s = 0;
        for (int64_t n = 0; n < g.N; ++n) {
          const T* p = dy + (n * g.O + o) * P;
          T part = 0;
          for (int64_t i = 0; i < P; ++i) part += p[i];
          s += part;
        }
        db[o] = static_cast<T>(s);
      }
    });
  }
  if (dw && (g.N == 0 || P == 0)) std::fill(dw, dw + g.O * K, T(0));
  if (!dx && !dw) return;
  const bool pointwise = is_pointwise(g);
  const int64_t chunk = chunk_images<T>(g);
  for (int64_t n0 = 0; n0 < g.N; n0 += chunk) {
    const int64_t nc = std::min(chunk, g.N - n0);
    const T* dyc = dy + n0 * g.O * P;
    if (dw) {
      T* cols = tl_cols.get<T>(static_cast<size_t>(g.C * g.kh * g.kw * nc * P));
      im2col(x, g, n0, nc, cols);
      // dyT [O, nc, P]: the chunk's gradients with the images side by side per channel
      // (a single image already is).
      const T* dyt = dyc;
      if (nc > 1) {
        T* t = tl_dyt.get<T>(static_cast<size_t>(g.O * nc * P));
        parallel_for(g.O * nc, std::max<int64_t>(1, 16384 / std::max<int64_t>(P, 1)), [&](int64_t u0, int64_t u1) {
          for (int64_t u = u0; u < u1; ++u) {
            const int64_t o = u / nc, n = u % nc;
            std::memcpy(t + u * P, dyc + (n * g.O + o) * P, P * sizeof(T));
          }
        });
        dyt = t;
      }
      weight_grad_chunk(dyt, cols, dw, g, nc, n0 > 0);
    }
    if (dx) {
      const View A = make(w, dt, {g.G, nc, K, Og}, {Og * K, 0, 1, K});
      const View B = make(dyc, dt, {g.G, nc, Og, P}, {Og * P, g.O * P, P, 1});
      if (pointwise) {  // the column gradient is the input gradient
        gemm(A, B, make(dx + n0 * g.C * P, dt, {g.G, nc, K, P}, {Cg * P, g.C * P, P, 1}), 1.0, 0.0);
      } else {
        T* dcols = tl_dcols.get<T>(static_cast<size_t>(g.C * g.kh * g.kw * nc * P));
        gemm(A, B, make(dcols, dt, {g.G, nc, K, P}, {K * nc * P, P, nc * P, 1}), 1.0, 0.0);
        col2im(dcols, g, n0, nc, dx);
      }
    }
  }
}

}  // namespace

void conv2d_check(const Conv2dGeom& g) {
  const int64_t all[] = {g.N, g.C, g.H, g.W, g.O, g.kh, g.kw, g.ph, g.pw, g.OH, g.OW};
  for (int64_t v : all) NG_CHECK(v >= 0, "conv2d: negative size or padding");
  NG_CHECK(g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0, "conv2d: stride and dilation must be positive");
  NG_CHECK(g.G > 0 && g.C % g.G == 0 && g.O % g.G == 0, "conv2d: groups must divide the input and output channels");
  NG_CHECK(g.kh > 0 && g.kw > 0, "conv2d: the kernel must not be empty");
  // Every product the kernels form must fit comfortably in int64.
  const int64_t lim = int64_t(1) << 40;
  for (int64_t v : all) NG_CHECK(v < lim, "conv2d: size too large");
  int64_t ckk, hw, p, t;
  NG_CHECK(!__builtin_mul_overflow(g.C, g.kh, &t) && !__builtin_mul_overflow(t, g.kw, &ckk) && ckk < lim &&
               !__builtin_mul_overflow(g.H, g.W, &hw) && hw < lim && !__builtin_mul_overflow(g.OH, g.OW, &p) &&
               p < lim && !__builtin_mul_overflow(ckk, p, &t) && t < lim,
           "conv2d: size too large");
}

void conv2d_forward(const void* x, const void* w, const void* b, void* y, DType dt, const Conv2dGeom& g) {
  conv2d_check(g);
  if (dt == DType::F32)
    forward_typed(static_cast<const float*>(x), static_cast<const float*>(w), static_cast<const float*>(b),
                  static_cast<float*>(y), g);
  else if (dt == DType::F64)
    forward_typed(static_cast<const double*>(x), static_cast<const double*>(w), static_cast<const double*>(b),
                  static_cast<double*>(y), g);
  else
    throw Error(std::string("conv2d: expected float32 or float64 (got ") + dtype_name(dt) + ")");
}

void conv2d_backward(const void* dy, const void* x, const void* w, void* dx, void* dw, void* db, DType dt,
                     const Conv2dGeom& g) {
  conv2d_check(g);
  if (dt == DType::F32)
    backward_typed(static_cast<const float*>(dy), static_cast<const float*>(x), static_cast<const float*>(w),
                   static_cast<float*>(dx), static_cast<float*>(dw), static_cast<float*>(db), g);
  else if (dt == DType::F64)
    backward_typed(static_cast<const double*>(dy), static_cast<const double*>(x), static_cast<const double*>(w),
                   static_cast<double*>(dx), static_cast<double*>(dw), static_cast<double*>(db), g);
  else
    throw Error(std::string("conv2d backward: expected float32 or float64 (got ") + dtype_name(dt) + ")");
}

}  // namespace ng
