// Argument checks of the indexing ops (gather, scatterAdd, indexSelect, indexAdd, topk),
// shared by the CPU kernels (native/cpu/index.cc) and their CUDA twins (cuda/index.cu):
// dims, dtypes of index and outputs, and every shape relation. Which value dtypes a
// backend supports, and whether indices are range-checked on the host or the device,
// stay with each backend.
#pragma once
#include <cstdint>
#include <string>

#include "common.h"

namespace ng {
namespace index_checks {

inline void dim_in_range(const View& v, int dim, const char* op) {
  if (dim < 0 || dim >= v.ndim)
    throw Error(std::string(op) + ": dim " + std::to_string(dim) + " is out of range for " + std::to_string(v.ndim) +
                " dims");
}
inline void same_dtype(const View& a, const View& b, const char* op) {
  if (a.dtype != b.dtype)
    throw Error(std::string(op) + ": dtypes differ (" + dtype_name(a.dtype) + " and " + dtype_name(b.dtype) + ")");
}
inline void int32_index(const View& index, const char* op) {
  if (index.dtype != DType::I32)
    throw Error(std::string(op) + ": index must be int32 (got " + dtype_name(index.dtype) + ")");
}

// gather: out[...] = x[... index ...], index and out of one shape, no larger than x off dim.
inline void gather(const View& x, const View& index, int dim, const View& out, const char* op) {
  dim_in_range(x, dim, op);
  same_dtype(x, out, op);
  int32_index(index, op);
  NG_CHECK(index.ndim == x.ndim && out.ndim == x.ndim, std::string(op) + ": index and input differ in rank");
  for (int d = 0; d < x.ndim; ++d) {
    NG_CHECK(out.shape[d] == index.shape[d], std::string(op) + ": out and index differ in shape");
    NG_CHECK(d == dim || index.shape[d] <= x.shape[d], std::string(op) + ": index is larger than the input");
  }
}

// scatterAdd: out[... index ...] += src[...], index and src of one shape.
inline void scatter_add(const View& out, const View& index, const View& src, int dim, const char* op) {
  dim_in_range(out, dim, op);
  same_dtype(out, src, op);
  int32_index(index, op);
  NG_CHECK(index.ndim == out.ndim && src.ndim == out.ndim, std::string(op) + ": index, input and src differ in rank");
  for (int d = 0; d < out.ndim; ++d) {
    NG_CHECK(src.shape[d] == index.shape[d], std::string(op) + ": src view and index differ in shape");
    NG_CHECK(d == dim || index.shape[d] <= out.shape[d], std::string(op) + ": index is larger than the input");
  }
}

// indexSelect: a 1-D index picks slices of x along dim.
inline void index_select(const View& x, const View& index, int dim, const View& out, const char* op) {
  dim_in_range(x, dim, op);
  same_dtype(x, out, op);
  int32_index(index, op);
  NG_CHECK(index.ndim == 1 && out.ndim == x.ndim, std::string(op) + ": index must be 1-D");
  for (int d = 0; d < x.ndim; ++d)
    NG_CHECK(out.shape[d] == (d == dim ? index.shape[0] : x.shape[d]), std::string(op) + ": out has the wrong shape");
}

// indexAdd: slices of src are added into out along dim at a 1-D index.
inline void index_add(const View& out, const View& index, const View& src, int dim, const char* op) {
  dim_in_range(out, dim, op);
  same_dtype(out, src, op);
  int32_index(index, op);
  NG_CHECK(index.ndim == 1 && src.ndim == out.ndim, std::string(op) + ": index must be 1-D");
  for (int d = 0; d < out.ndim; ++d)
    NG_CHECK(src.shape[d] == (d == dim ? index.shape[0] : out.shape[d]), std::string(op) + ": src has the wrong shape");
}

// topk: k of x's dim into values (x's dtype) and int32 indices.
inline void topk(const View& x, int dim, int64_t k, const View& values, const View& indices, const char* op) {
  dim_in_range(x, dim, op);
  same_dtype(x, values, op);
  NG_CHECK(indices.dtype == DType::I32, std::string(op) + ": indices must be int32");
  NG_CHECK(k >= 0 && k <= x.shape[dim],
           std::string(op) + ": k " + std::to_string(k) + " is out of range for dimension " + std::to_string(dim) +
               " of size " + std::to_string(x.shape[dim]));
  NG_CHECK(x.shape[dim] <= INT32_MAX, std::string(op) + ": dimension too large for int32 indices");
  NG_CHECK(values.ndim == x.ndim && indices.ndim == x.ndim, std::string(op) + ": outputs differ in rank");
  for (int d = 0; d < x.ndim; ++d) {
    const int64_t want = d == dim ? k : x.shape[d];
    NG_CHECK(values.shape[d] == want && indices.shape[d] == want, std::string(op) + ": outputs have the wrong shape");
  }
}

}  // namespace index_checks
}  // namespace ng
