// Multi-tensor optimizer kernels (see adamw.h for the math and traffic).
// Algorithm: every tensor is cut into kChunk-element work items; threads take items from
// an atomic counter (dynamic scheduling: a 100k-element tensor and a 7-element bias cost
// one item each). Per-tensor scalars (bias corrections, step size, decay factor) are
// computed once in double; the inner loops run in the tensor's dtype over __restrict
// pointers with no branches, so the compiler vectorises them (sqrt and division
// included: the build uses -fno-math-errno).
#include "cpu/adamw.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "threadpool.h"

namespace ng {
namespace {

constexpr int64_t kChunk = 32768;   // elements per work item
constexpr int64_t kSerial = 32768;  // total elements below which one thread does all

struct Chunk {
  int32_t t;
  int64_t begin, end;
};

std::vector<Chunk> make_chunks(const std::vector<int64_t>& numels, int64_t* total) {
  std::vector<Chunk> chunks;
  *total = 0;
  for (size_t t = 0; t < numels.size(); ++t) {
    for (int64_t b = 0; b < numels[t]; b += kChunk)
      chunks.push_back({static_cast<int32_t>(t), b, std::min(numels[t], b + kChunk)});
    *total += numels[t];
  }
  return chunks;
}

// Runs fn(chunk_index, chunk) for every chunk over the pool.
template <class F>
void run_chunks(const std::vector<Chunk>& chunks, int64_t total, const F& fn) {
  if (chunks.empty()) return;
  int nt = total < kSerial ? 1 : static_cast<int>(std::min<size_t>(num_threads(), chunks.size()));
  std::atomic<size_t> next{0};
  parallel_run(nt, [&](int, int) {
    for (;;) {
      size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= chunks.size()) break;
      fn(i, chunks[i]);
    }
  });
}

template <class T>
void adamw_range(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, int64_t n, T decay,
                 T b1, T b2, T gs, T step_size, T bc2_sqrt, T eps) {
  const T omb1 = T(1) - b1, omb2 = T(1) - b2;
  for (int64_t i = 0; i < n; ++i) {
    T gi = g[i] * gs;
    T mi = b1 * m[i] + omb1 * gi;
    T vi = b2 * v[i] + omb2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    T denom = std::sqrt(vi) / bc2_sqrt + eps;
    p[i] = p[i] * decay - step_size * mi / denom;
  }
}

template <class T>
void adamw_chunk(const AdamWTensor& a, int64_t b, int64_t e, double grad_scale) {
  double t = static_cast<double>(a.step);
  double bc1 = 1.0 - std::pow(a.beta1, t);
  double bc2 = 1.0 - std::pow(a.beta2, t);
  adamw_range<T>(static_cast<T*>(a.param) + b, static_cast<const T*>(a.grad) + b, static_cast<T*>(a.exp_avg) + b,
                 static_cast<T*>(a.exp_avg_sq) + b, e - b, static_cast<T>(1.0 - a.lr * a.weight_decay),
                 static_cast<T>(a.beta1), static_cast<T>(a.beta2), static_cast<T>(grad_scale),
                 static_cast<T>(a.lr / bc1), static_cast<T>(std::sqrt(bc2)), static_cast<T>(a.eps));
}

template <class T>
void sgd_range(T* __restrict p, const T* __restrict g, T* __restrict buf, int64_t n, T lr, T wd, T mom, T damp,
               bool nesterov, bool init, T gs) {
  if (buf == nullptr) {
    for (int64_t i = 0; i < n; ++i) p[i] -= lr * (g[i] * gs + wd * p[i]);
    return;
  }
  const T omd = T(1) - damp;
  if (init) {
    for (int64_t i = 0; i < n; ++i) {
      T d = g[i] * gs + wd * p[i];
      buf[i] = d;
      p[i] -= lr * (nesterov ? d + mom * d : d);
    }
    return;
  }
  if (nesterov) {
    for (int64_t i = 0; i < n; ++i) {
      T d = g[i] * gs + wd * p[i];
      T bi = mom * buf[i] + omd * d;
      buf[i] = bi;
      p[i] -= lr * (d + mom * bi);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      T d = g[i] * gs + wd * p[i];
      T bi = mom * buf[i] + omd * d;
      buf[i] = bi;
      p[i] -= lr * bi;
    }
  }
}

template <class T>
void sgd_chunk(const SgdTensor& s, int64_t b, int64_t e, double grad_scale) {
  T* buf = s.momentum_buf ? static_cast<T*>(s.momentum_buf) + b : nullptr;
  sgd_range<T>(static_cast<T*>(s.param) + b, static_cast<const T*>(s.grad) + b, buf, e - b, static_cast<T>(s.lr),
               static_cast<T>(s.weight_decay), static_cast<T>(s.momentum), static_cast<T>(s.dampening), s.nesterov,
               s.init_buf, static_cast<T>(grad_scale));
}

// Partial reduction of one chunk: sum |x|^p (p = 1, 2 or general) or max |x| (p = inf).
template <class T>
double norm_range(const T* __restrict x, int64_t n, double p) {
  if (std::isinf(p)) {
    double m = 0;
    for (int64_t i = 0; i < n; ++i) {
      double a = std::fabs(static_cast<double>(x[i]));
      if (!(a <= m)) m = a;  // NaN propagates
    }
    return m;
  }
  // Eight independent lanes: vectorisable without reassociating, and a fixed order.
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  if (p == 2) {
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) {
        double a = static_cast<double>(x[i + j]);
        acc[j] += a * a;
      }
    for (; i < n; ++i) acc[0] += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  } else if (p == 1) {
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) acc[j] += std::fabs(static_cast<double>(x[i + j]));
    for (; i < n; ++i) acc[0] += std::fabs(static_cast<double>(x[i]));
  } else {
    for (; i < n; ++i) acc[0] += std::pow(std::fabs(static_cast<double>(x[i])), p);
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <class T>
void scale_range(T* __restrict x, int64_t n, T s) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

template <class Item>
std::vector<int64_t> numels_of(const std::vector<Item>& ts) {
  std::vector<int64_t> n(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) n[i] = ts[i].numel;
  return n;
}

}  // namespace

void adamw_step(const std::vector<AdamWTensor>& ts, double grad_scale) {
  int64_t total = 0;
  auto chunks = make_chunks(numels_of(ts), &total);
  run_chunks(chunks, total, [&](size_t, const Chunk& c) {
    const AdamWTensor& a = ts[c.t];
    if (a.dtype == DType::F64) adamw_chunk<double>(a, c.begin, c.end, grad_scale);
    else adamw_chunk<float>(a, c.begin, c.end, grad_scale);
  });
}

void sgd_step(const std::vector<SgdTensor>& ts, double grad_scale) {
  int64_t total = 0;
  auto chunks = make_chunks(numels_of(ts), &total);
  run_chunks(chunks, total, [&](size_t, const Chunk& c) {
    const SgdTensor& s = ts[c.t];
    if (s.dtype == DType::F64) sgd_chunk<double>(s, c.begin, c.end, grad_scale);
    else sgd_chunk<float>(s, c.begin, c.end, grad_scale);
  });
}

double multi_tensor_norm(const std::vector<FlatTensor>& ts, double p) {
  int64_t total = 0;
  auto chunks = make_chunks(numels_of(ts), &total);
  std::vector<double> part(chunks.size(), 0.0);
  run_chunks(chunks, total, [&](size_t i, const Chunk& c) {
    const FlatTensor& f = ts[c.t];
    int64_t n = c.end - c.begin;
    part[i] = f.dtype == DType::F64 ? norm_range(static_cast<const double*>(f.data) + c.begin, n, p)
                                    : norm_range(static_cast<const float*>(f.data) + c.begin, n, p);
  });
  if (std::isinf(p)) {
    double m = 0;
    for (double x : part)
      if (!(x <= m)) m = x;
    return m;
  }
  double s = 0;
  for (double x : part) s += x;
  if (p == 2) return std::sqrt(s);
  if (p == 1) return s;
  return std::pow(s, 1.0 / p);
}

void multi_tensor_scale(const std::vector<FlatTensor>& ts, double scale) {
  int64_t total = 0;
  auto chunks = make_chunks(numels_of(ts), &total);
  run_chunks(chunks, total, [&](size_t, const Chunk& c) {
    const FlatTensor& f = ts[c.t];
    int64_t n = c.end - c.begin;
    if (f.dtype == DType::F64) scale_range(static_cast<double*>(f.data) + c.begin, n, scale);
    else scale_range(static_cast<float*>(f.data) + c.begin, n, static_cast<float>(scale));
  });
}

}  // namespace ng
