// Algorithm. Forward: one memcpy of C elements per id, parallel over ids. Backward: the
// columns are cut into ranges (multiples of 16 elements, so threads do not share cache
// lines); each thread walks all ids in order and adds g's row slice into gw's row slice,
// a vectorised loop. Ids are validated by a sequential scan first, so a bad id raises
// before any write and no thread ever throws.
// Memory traffic: forward reads n rows of the table and writes n * C; backward reads g
// once and reads-modifies-writes one gw row slice per id (plus n ids per column range).
#include "cpu/embedding.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "threadpool.h"

namespace ng {
namespace {

template <class T>
void backward_t(const int32_t* ids, int64_t n, const T* g, int64_t C, T* gw, int64_t padding_idx) {
  constexpr int64_t kAlign = 16;
  const int64_t chunks = (C + kAlign - 1) / kAlign;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, n * kAlign));
  parallel_for(chunks, grain, [&](int64_t b, int64_t e) {
    const int64_t c0 = b * kAlign, c1 = std::min(C, e * kAlign), w = c1 - c0;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t id = ids[k];
      if (id == padding_idx) continue;
      const T* src = g + k * C + c0;
      T* dst = gw + id * C + c0;
      for (int64_t c = 0; c < w; ++c) dst[c] += src[c];
    }
  });
}

}  // namespace

void embedding_check_ids(const int32_t* ids, int64_t n, int64_t V) {
  for (int64_t k = 0; k < n; ++k) {
    if (ids[k] < 0 || ids[k] >= V)
      throw Error("embedding: index " + std::to_string(ids[k]) + " is out of range for " + std::to_string(V) +
                  " embeddings (at position " + std::to_string(k) + ")");
  }
}

void embedding_forward(const int32_t* ids, int64_t n, const void* weight, DType dt, int64_t V, int64_t C, void* out) {
  NG_CHECK(n >= 0 && V >= 0 && C >= 0, "embedding: negative size");
  embedding_check_ids(ids, n, V);
  const size_t row = static_cast<size_t>(C) * dtype_size(dt);
  const char* src = static_cast<const char*>(weight);
  char* dst = static_cast<char*>(out);
  if (row == 0) return;
  parallel_for(n, std::max<int64_t>(1, 65536 / static_cast<int64_t>(row)), [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) std::memcpy(dst + k * row, src + ids[k] * row, row);
  });
}

void embedding_backward(const int32_t* ids, int64_t n, const void* g, DType dt, int64_t V, int64_t C, void* gw,
                        int64_t padding_idx) {
  NG_CHECK(n >= 0 && V >= 0 && C >= 0, "embedding backward: negative size");
  embedding_check_ids(ids, n, V);
  if (C == 0 || n == 0) return;
  switch (dt) {
    case DType::F32:
      return backward_t(ids, n, static_cast<const float*>(g), C, static_cast<float*>(gw), padding_idx);
    case DType::F64:
      return backward_t(ids, n, static_cast<const double*>(g), C, static_cast<double*>(gw), padding_idx);
    default: throw Error(std::string("embedding backward: unsupported dtype ") + dtype_name(dt));
  }
}

}  // namespace ng
