// Algorithms and traffic:
//  gather / index_select: parallel over (pre, j) rows; each output element costs one index
//    read and one random read of x along dim. Traffic: index + out once, x where indexed.
//  scatter_add / index_add: parallel over (pre, block of post) columns, never over j, so
//    every output element is summed by one thread in a fixed order (deterministic, no
//    atomics). Traffic: index + src once, out read-modify-written where indexed.
//  topk: parallel over lines; each line is copied into a (value, index) buffer and
//    partially ordered: a heap (std::partial_sort, O(n log k)) for small sorted k,
//    otherwise std::nth_element (O(n)) then a sort of the first k. Traffic: x once.
//  Index ranges are checked in a parallel pre-pass that reads the index once.
#include "cpu/index.h"
#include "index_checks.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "threadpool.h"

namespace ng {
namespace {

// Element offsets of a strided view split around dim: elem(p, j, q) = pre[p] + j*stride + post[q].
struct Around {
  std::vector<int64_t> pre, post;
  int64_t n = 1, stride = 0;
  bool unit = false;  // post[q] == q: the trailing dims are contiguous
};

std::vector<int64_t> offsets(const View& v, int from, int to) {
  std::vector<int64_t> o{0};
  for (int d = from; d < to; ++d) {
    std::vector<int64_t> next;
    next.reserve(o.size() * static_cast<size_t>(v.shape[d]));
    for (int64_t base : o)
      for (int64_t i = 0; i < v.shape[d]; ++i) next.push_back(base + i * v.strides[d]);
    o.swap(next);
  }
  return o;
}

Around around(const View& v, int dim) {
  Around a;
  a.pre = offsets(v, 0, dim);
  a.post = offsets(v, dim + 1, v.ndim);
  a.n = v.shape[dim];
  a.stride = v.strides[dim];
  a.unit = true;
  for (size_t q = 0; q < a.post.size() && a.unit; ++q) a.unit = a.post[q] == static_cast<int64_t>(q);
  return a;
}

// v's shape with the non-dim extents taken from `like` (an index's shape).
View reshaped_like(const View& v, const View& like, int dim) {
  View r = v;
  for (int d = 0; d < v.ndim; ++d)
    if (d != dim) r.shape[d] = like.shape[d];
  return r;
}

int64_t grain_for(int64_t inner) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)); }

// Throws on the first index value (row-major over the index view) outside [0, size).
void check_range(const View& index, int64_t size, int dim, const char* op) {
  if (index.numel() == 0) return;
  const int split = index.ndim > 0 ? index.ndim - 1 : 0;
  View iv = index;
  if (iv.ndim == 0) {
    iv.ndim = 1;
    iv.shape[0] = 1;
    iv.strides[0] = 0;
  }
  Around a = around(iv, split);
  const int64_t P = static_cast<int64_t>(a.pre.size()), N = a.n;
  const int32_t* ip = iv.ptr<int32_t>();
  std::atomic<int64_t> first{INT64_MAX};
  parallel_for(P, grain_for(N), [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const int32_t* row = ip + a.pre[p];
      for (int64_t j = 0; j < N; ++j) {
        int32_t v = row[j * a.stride];
        if (v < 0 || v >= size) {
          int64_t pos = p * N + j, cur = first.load();
          while (pos < cur && !first.compare_exchange_weak(cur, pos)) {
          }
          return;
        }
      }
    }
  });
  int64_t pos = first.load();
  if (pos == INT64_MAX) return;
  int32_t bad = ip[a.pre[pos / N] + (pos % N) * a.stride];
  throw Error(std::string(op) + ": index " + std::to_string(bad) + " is out of range for dimension " +
              std::to_string(dim) + " of size " + std::to_string(size));
}

template <class T>
void gather_t(const View& x, const View& index, int dim, const View& out) {
  Around xa = around(reshaped_like(x, index, dim), dim), ia = around(index, dim), oa = around(out, dim);
  const int64_t P = static_cast<int64_t>(ia.pre.size()), D = ia.n, Q = static_cast<int64_t>(ia.post.size());
  const T* xp = x.ptr<T>();
  const int32_t* ip = index.ptr<int32_t>();
  T* op = out.ptr<T>();
  parallel_for(P * D, grain_for(Q), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t p = r / D, j = r % D;
      const int32_t* irow = ip + ia.pre[p] + j * ia.stride;
      const T* xrow = xp + xa.pre[p];
      T* orow = op + oa.pre[p] + j * oa.stride;
      if (xa.unit && ia.unit && oa.unit) {
        for (int64_t q = 0; q < Q; ++q) orow[q] = xrow[irow[q] * xa.stride + q];
      } else {
        for (int64_t q = 0; q < Q; ++q) orow[oa.post[q]] = xrow[irow[ia.post[q]] * xa.stride + xa.post[q]];
      }
    }
  });
}

constexpr int64_t kColBlock = 256;

template <class T>
void scatter_add_t(const View& out, const View& index, const View& src, int dim) {
  Around oa = around(reshaped_like(out, index, dim), dim), ia = around(index, dim), sa = around(src, dim);
  const int64_t P = static_cast<int64_t>(ia.pre.size()), D = ia.n, Q = static_cast<int64_t>(ia.post.size());
  const int64_t NB = (Q + kColBlock - 1) / kColBlock;
  const int32_t* ip = index.ptr<int32_t>();
  const T* sp = src.ptr<T>();
  T* op = out.ptr<T>();
  parallel_for(P * NB, grain_for(D * kColBlock), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t p = t / NB, q0 = (t % NB) * kColBlock, q1 = std::min(Q, q0 + kColBlock);
      T* orow = op + oa.pre[p];
      for (int64_t j = 0; j < D; ++j) {
        const int32_t* irow = ip + ia.pre[p] + j * ia.stride;
        const T* srow = sp + sa.pre[p] + j * sa.stride;
        for (int64_t q = q0; q < q1; ++q) orow[irow[ia.post[q]] * oa.stride + oa.post[q]] += srow[sa.post[q]];
      }
    }
  });
}

template <class T>
void index_select_t(const View& x, const View& index, int dim, const View& out) {
  Around xa = around(x, dim), oa = around(out, dim);
  const int64_t P = static_cast<int64_t>(xa.pre.size()), K = oa.n, Q = static_cast<int64_t>(xa.post.size());
  const int32_t* ip = index.ptr<int32_t>();
  const int64_t is = index.strides[0];
  const T* xp = x.ptr<T>();
  T* op = out.ptr<T>();
  parallel_for(P * K, grain_for(Q), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t p = r / K, k = r % K;
      const T* xrow = xp + xa.pre[p] + ip[k * is] * xa.stride;
      T* orow = op + oa.pre[p] + k * oa.stride;
      if (xa.unit && oa.unit) std::copy(xrow, xrow + Q, orow);
      else for (int64_t q = 0; q < Q; ++q) orow[oa.post[q]] = xrow[xa.post[q]];
    }
  });
}

template <class T>
void index_add_t(const View& out, const View& index, const View& src, int dim) {
  Around oa = around(out, dim), sa = around(src, dim);
  const int64_t P = static_cast<int64_t>(oa.pre.size()), K = sa.n, Q = static_cast<int64_t>(oa.post.size());
  const int64_t NB = (Q + kColBlock - 1) / kColBlock;
  const int32_t* ip = index.ptr<int32_t>();
  const int64_t is = index.strides[0];
  const T* sp = src.ptr<T>();
  T* op = out.ptr<T>();
  parallel_for(P * NB, grain_for(K * kColBlock), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t p = t / NB, q0 = (t % NB) * kColBlock, q1 = std::min(Q, q0 + kColBlock);
      for (int64_t k = 0; k < K; ++k) {
        T* orow = op + oa.pre[p] + ip[k * is] * oa.stride;
        const T* srow = sp + sa.pre[p] + k * sa.stride;
        if (oa.unit && sa.unit) {
          for (int64_t q = q0; q < q1; ++q) orow[q] += srow[q];
        } else {
          for (int64_t q = q0; q < q1; ++q) orow[oa.post[q]] += srow[sa.post[q]];
        }
      }
    }
  });
}

template <class T>
struct Item {
  T v;
  int32_t i;
};

// a ranks above b for largest=true: NaN first, then larger values.
template <class T>
inline bool above(T a, T b) {
  if (a != a) return b == b;
  if (b != b) return false;
  return a > b;
}

template <class T>
void topk_t(const View& x, int dim, int64_t k, bool largest, bool sorted, const View& values, const View& indices) {
  Around xa = around(x, dim), va = around(values, dim), ia = around(indices, dim);
  const int64_t P = static_cast<int64_t>(xa.pre.size()), Q = static_cast<int64_t>(xa.post.size()), n = xa.n;
  const T* xp = x.ptr<T>();
  T* vp = values.ptr<T>();
  int32_t* ixp = indices.ptr<int32_t>();
  auto first_largest = [](const Item<T>& a, const Item<T>& b) {
    return above(a.v, b.v) || (!above(b.v, a.v) && a.i < b.i);
  };
  auto first_smallest = [](const Item<T>& a, const Item<T>& b) {
    return above(b.v, a.v) || (!above(a.v, b.v) && a.i < b.i);
  };
  parallel_for(P * Q, grain_for(n), [&](int64_t b, int64_t e) {
    std::vector<Item<T>> buf(static_cast<size_t>(n));
    for (int64_t r = b; r < e; ++r) {
      const int64_t p = r / Q, q = r % Q;
      const T* line = xp + xa.pre[p] + xa.post[q];
      for (int64_t j = 0; j < n; ++j) buf[j] = {line[j * xa.stride], static_cast<int32_t>(j)};
      auto order = [&](auto cmp) {
        auto kb = buf.begin() + k;
        if (k == n) {
          if (sorted) std::sort(buf.begin(), buf.end(), cmp);
        } else if (sorted && k <= 32) {
          std::partial_sort(buf.begin(), kb, buf.end(), cmp);
        } else {
          std::nth_element(buf.begin(), kb, buf.end(), cmp);
          if (sorted) std::sort(buf.begin(), kb, cmp);
        }
      };
      if (k > 0) {
        if (largest) order(first_largest);
        else order(first_smallest);
      }
      T* vrow = vp + va.pre[p] + va.post[q];
      int32_t* irow = ixp + ia.pre[p] + ia.post[q];
      for (int64_t t = 0; t < k; ++t) {
        vrow[t * va.stride] = buf[t].v;
        irow[t * ia.stride] = buf[t].i;
      }
    }
  });
}

void check_values(const View& v, const char* op, const char* what) {
  if (v.dtype != DType::F32 && v.dtype != DType::F64 && v.dtype != DType::I32)
    throw Error(std::string(op) + ": " + what + " has dtype " + dtype_name(v.dtype) +
                "; supported: float32, float64, int32");
}




#define NG_INDEX_DISPATCH(dt, CALL)                        \
  switch (dt) {                                            \
    case DType::F32: { using T = float; CALL; break; }    \
    case DType::F64: { using T = double; CALL; break; }   \
    case DType::I32: { using T = int32_t; CALL; break; }  \
    default: break;                                        \
  }

}  // namespace

void gather(const View& x, const View& index, int dim, const View& out, const char* op) {
  check_values(x, op, "input");
  index_checks::gather(x, index, dim, out, op);
  check_range(index, x.shape[dim], dim, op);
  NG_INDEX_DISPATCH(x.dtype, gather_t<T>(x, index, dim, out));
}

void scatter_add(const View& out, const View& index, const View& src, int dim, const char* op) {
  check_values(out, op, "input");
  index_checks::scatter_add(out, index, src, dim, op);
  check_range(index, out.shape[dim], dim, op);
  NG_INDEX_DISPATCH(out.dtype, scatter_add_t<T>(out, index, src, dim));
}

void index_select(const View& x, const View& index, int dim, const View& out, const char* op) {
  check_values(x, op, "input");
  index_checks::index_select(x, index, dim, out, op);
  check_range(index, x.shape[dim], dim, op);
  NG_INDEX_DISPATCH(x.dtype, index_select_t<T>(x, index, dim, out));
}

void index_add(const View& out, const View& index, const View& src, int dim, const char* op) {
  check_values(out, op, "input");
  index_checks::index_add(out, index, src, dim, op);
  check_range(index, out.shape[dim], dim, op);
  NG_INDEX_DISPATCH(out.dtype, index_add_t<T>(out, index, src, dim));
}

void topk(const View& x, int dim, int64_t k, bool largest, bool sorted, const View& values, const View& indices,
          const char* op) {
  check_values(x, op, "input");
  index_checks::topk(x, dim, k, values, indices, op);
  NG_INDEX_DISPATCH(x.dtype, topk_t<T>(x, dim, k, largest, sorted, values, indices));
}

}  // namespace ng
