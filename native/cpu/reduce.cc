// Algorithm: for I == 1 each output reduces one contiguous row (vectorisable double
// accumulation); for I > 1 each (m) block accumulates R rows of I columns into a double
// buffer. Parallel over outputs; a single large row (M == I == 1) is split over threads
// with partial results combined at the end. Traffic: x read once, out written once.
#include "cpu/reduce.h"

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "threadpool.h"

namespace ng {
namespace {

template <class T>
struct Acc {
  double v;
  int64_t i;
};

inline bool better_max(double a, double b) { return a > b || (a != a && b == b); }
inline bool better_min(double a, double b) { return a < b || (a != a && b == b); }

template <class T>
void row_reduce(ReduceOp op, const T* x, int64_t R, double correction, double* val, int64_t* arg) {
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Mean: {
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t r = 0;
      for (; r + 4 <= R; r += 4) {
        s0 += x[r];
        s1 += x[r + 1];
        s2 += x[r + 2];
        s3 += x[r + 3];
      }
      for (; r < R; ++r) s0 += x[r];
      double s = (s0 + s1) + (s2 + s3);
      *val = op == ReduceOp::Mean ? (R > 0 ? s / R : std::numeric_limits<double>::quiet_NaN()) : s;
      return;
    }
    case ReduceOp::Prod: {
      double p = 1;
      for (int64_t r = 0; r < R; ++r) p *= x[r];
      *val = p;
      return;
    }
    case ReduceOp::Max:
    case ReduceOp::Argmax:
    case ReduceOp::Min:
    case ReduceOp::Argmin: {
      bool mx = op == ReduceOp::Max || op == ReduceOp::Argmax;
      double best = static_cast<double>(x[0]);
      int64_t bi = 0;
      for (int64_t r = 1; r < R; ++r) {
        double v = static_cast<double>(x[r]);
        if (best != best) break;  // NaN wins and stays
        if (mx ? better_max(v, best) : better_min(v, best)) {
          best = v;
          bi = r;
        }
      }
      *val = best;
      *arg = bi;
      return;
    }
    case ReduceOp::Var: {
      double s = 0;
      for (int64_t r = 0; r < R; ++r) s += x[r];
      double mean = s / R, ss = 0;
      for (int64_t r = 0; r < R; ++r) {
        double d = x[r] - mean;
        ss += d * d;
      }
      double denom = R - correction;
      *val = denom > 0 ? ss / denom : std::numeric_limits<double>::quiet_NaN();
      return;
    }
  }
}

template <class T>
void store(ReduceOp op, T* out, int32_t* idx, int64_t k, double v, int64_t a) {
  if (op == ReduceOp::Argmax || op == ReduceOp::Argmin) {
    reinterpret_cast<int32_t*>(out)[k] = static_cast<int32_t>(a);
    return;
  }
  if constexpr (std::is_integral_v<T>) {
    // int32 sums are exact in double up to 2^53; beyond int32 they wrap like int32
    // arithmetic (fmod is exact, so the casts below never see an out-of-range value)
    out[k] = static_cast<T>(static_cast<uint32_t>(static_cast<int64_t>(std::fmod(v, 4294967296.0))));
  } else {
    out[k] = static_cast<T>(v);
  }
  if (idx) idx[k] = static_cast<int32_t>(a);
}

template <class T>
void reduce_t(ReduceOp op, const T* x, int64_t M, int64_t R, int64_t I, T* out, int32_t* idx, double correction) {
  bool is_arg = op == ReduceOp::Max || op == ReduceOp::Min || op == ReduceOp::Argmax || op == ReduceOp::Argmin;
  if (R == 0) {
    if (is_arg) throw Error("max/min/argmax: cannot reduce over a dimension of size 0");
    double v = op == ReduceOp::Prod ? 1.0 : op == ReduceOp::Sum ? 0.0 : std::numeric_limits<double>::quiet_NaN();
    for (int64_t k = 0; k < M * I; ++k) store(op, out, idx, k, v, 0);
    return;
  }
  if (I == 1) {
    int nt = num_threads();
    if (M < nt && R >= (1 << 16) && (op == ReduceOp::Sum || op == ReduceOp::Mean)) {
      // one long row: split it
      for (int64_t m = 0; m < M; ++m) {
        std::vector<double> part(nt, 0.0);
        const T* row = x + m * R;
        parallel_run(nt, [&](int tid, int t) {
          int64_t chunk = (R + t - 1) / t, b = tid * chunk, e = std::min(R, b + chunk);
          double v = 0;
          int64_t a;
          if (b < e) row_reduce(ReduceOp::Sum, row + b, e - b, 0, &v, &a);
          part[tid] = v;
        });
        double s = 0;
        for (double p : part) s += p;
        store(op, out, idx, m, op == ReduceOp::Mean ? s / R : s, 0);
      }
      return;
    }
    parallel_for(M, std::max<int64_t>(1, 16384 / R), [&](int64_t b, int64_t e) {
      for (int64_t m = b; m < e; ++m) {
        double v = 0;
        int64_t a = 0;
        row_reduce(op, x + m * R, R, correction, &v, &a);
        store(op, out, idx, m, v, a);
      }
    });
    return;
  }
  // Column-style: for each m, reduce R rows of I contiguous values.
  int64_t iblk = std::min<int64_t>(I, 1024);
  int64_t nblk = (I + iblk - 1) / iblk;
  parallel_for(M * nblk, std::max<int64_t>(1, 16384 / (R * iblk)), [&](int64_t b, int64_t e) {
    std::vector<double> acc(iblk), acc2(iblk);
    std::vector<int64_t> arg(iblk);
    for (int64_t u = b; u < e; ++u) {
      int64_t m = u / nblk, i0 = (u % nblk) * iblk, n = std::min(iblk, I - i0);
      const T* base = x + m * R * I + i0;
      switch (op) {
        case ReduceOp::Sum:
        case ReduceOp::Mean:
        case ReduceOp::Var: {
          for (int64_t i = 0; i < n; ++i) acc[i] = 0;
          for (int64_t r = 0; r < R; ++r) {
            const T* row = base + r * I;
            for (int64_t i = 0; i < n; ++i) acc[i] += row[i];
          }
          if (op == ReduceOp::Var) {
            for (int64_t i = 0; i < n; ++i) {
              acc[i] /= R;
              acc2[i] = 0;
            }
            for (int64_t r = 0; r < R; ++r) {
              const T* row = base + r * I;
              for (int64_t i = 0; i < n; ++i) {
                double d = row[i] - acc[i];
                acc2[i] += d * d;
              }
            }
            double denom = R - correction;
            for (int64_t i = 0; i < n; ++i)
              store(op, out, idx, m * I + i0 + i, denom > 0 ? acc2[i] / denom : std::numeric_limits<double>::quiet_NaN(), 0);
          } else {
            for (int64_t i = 0; i < n; ++i) store(op, out, idx, m * I + i0 + i, op == ReduceOp::Mean ? acc[i] / R : acc[i], 0);
          }
          break;
        }
        case ReduceOp::Prod: {
          for (int64_t i = 0; i < n; ++i) acc[i] = 1;
          for (int64_t r = 0; r < R; ++r)
            for (int64_t i = 0; i < n; ++i) acc[i] *= base[r * I + i];
          for (int64_t i = 0; i < n; ++i) store(op, out, idx, m * I + i0 + i, acc[i], 0);
          break;
        }
        default: {
          bool mx = op == ReduceOp::Max || op == ReduceOp::Argmax;
          for (int64_t i = 0; i < n; ++i) {
            acc[i] = base[i];
            arg[i] = 0;
          }
          for (int64_t r = 1; r < R; ++r) {
            const T* row = base + r * I;
            for (int64_t i = 0; i < n; ++i) {
              double v = row[i];
              if (acc[i] == acc[i] && (mx ? better_max(v, acc[i]) : better_min(v, acc[i]))) {
                acc[i] = v;
                arg[i] = r;
              }
            }
          }
          for (int64_t i = 0; i < n; ++i) store(op, out, idx, m * I + i0 + i, acc[i], arg[i]);
        }
      }
    }
  });
}

}  // namespace

void reduce(ReduceOp op, const void* x, DType dt, int64_t M, int64_t R, int64_t I, void* out, int32_t* idx,
            double correction) {
  if (M == 0 || I == 0) return;  // an empty result: nothing to compute or write (as the CUDA twin)
  switch (dt) {
    case DType::F32:
      return reduce_t<float>(op, static_cast<const float*>(x), M, R, I, static_cast<float*>(out), idx, correction);
    case DType::F64:
      return reduce_t<double>(op, static_cast<const double*>(x), M, R, I, static_cast<double*>(out), idx, correction);
    case DType::I32:
      return reduce_t<int32_t>(op, static_cast<const int32_t*>(x), M, R, I, static_cast<int32_t*>(out), idx, correction);
    default: throw Error(std::string("reduce: unsupported dtype ") + dtype_name(dt));
  }
}

}  // namespace ng
