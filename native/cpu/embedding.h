// Embedding lookup over a contiguous [V, C] table and n int32 ids.
#pragma once
#include "common.h"

namespace ng {

// Throws "embedding: index i is out of range for V embeddings" for the first id outside
// [0, V). Both entries below call it before writing anything.
void embedding_check_ids(const int32_t* ids, int64_t n, int64_t V);

// out[k, :] = weight[ids[k], :] for k < n. Rows are copied as bytes, so any dtype works.
void embedding_forward(const int32_t* ids, int64_t n, const void* weight, DType dt, int64_t V, int64_t C, void* out);

// gw[ids[k], :] += g[k, :] for every k with ids[k] != padding_idx (padding_idx < 0: none);
// gw is accumulated into, not cleared. float32 and float64. Deterministic: parallel over
// column ranges, and every element adds its contributions in k order.
void embedding_backward(const int32_t* ids, int64_t n, const void* g, DType dt, int64_t V, int64_t C, void* gw,
                        int64_t padding_idx);

}  // namespace ng
