// Indexing kernels over strided views: gather / scatter-add along one dim, index-select /
// index-add with a 1-D index, and top-k along one dim. Values are float32, float64 or
// int32; indices are int32. Every entry checks all index values before it writes
// anything and throws ng::Error on the first one out of range (in row-major order).
//
// Each view is addressed as [pre, n, post] around `dim` through two small offset tables
// (pre and post coordinates -> element offset), so any strides work at the cost of one
// table lookup per element. Writes go to the contiguous or strided `out` views given.
#pragma once
#include "common.h"

namespace ng {

// out[p, j, q] = x[p, index[p, j, q], q]; out and index have index's shape, x's extent in
// the non-dim dims must be >= index's. x, out same dtype.
void gather(const View& x, const View& index, int dim, const View& out, const char* op);

// out[p, index[p, j, q], q] += src[p, j, q] over index's shape (src's extent >= index's).
// Deterministic: each output row is accumulated by one thread in increasing j.
void scatter_add(const View& out, const View& index, const View& src, int dim, const char* op);

// out[p, k, q] = x[p, index[k], q]; index is 1-D of length out.shape[dim].
void index_select(const View& x, const View& index, int dim, const View& out, const char* op);

// out[p, index[k], q] += src[p, k, q]; index 1-D of length src.shape[dim]. Deterministic.
void index_add(const View& out, const View& index, const View& src, int dim, const char* op);

// The k largest (or smallest) entries of every line of x along dim, with their positions.
// values (x's dtype) and indices (int32) have x's shape with shape[dim] = k. Ties go to
// the lower index; NaN counts as larger than every number.
void topk(const View& x, int dim, int64_t k, bool largest, bool sorted, const View& values, const View& indices,
          const char* op);

}  // namespace ng
