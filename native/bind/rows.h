// Argument helpers of the row-wise normalization exports (bind/layernorm.cc,
// bind/llama.cc): [rows, C] sizes, optional and required buffers checked for dtype and
// extent, and the dtype of the saved statistics.
#pragma once

#include <string>

#include "bind/util.h"

namespace ng {

inline int64_t checked_numel(int64_t rows, int64_t C, const char* op) {
  int64_t n;
  if (rows < 0 || C < 0 || __builtin_mul_overflow(rows, C, &n)) throw Error(std::string(op) + ": invalid sizes");
  return n;
}

inline bool present(const Napi::Value& v) { return !v.IsNull() && !v.IsUndefined(); }

// A buffer of n elements of dtype dt, or a Buf with data == nullptr for null/undefined.
inline Buf optional_buf(const Napi::Value& v, DType dt, int64_t n, const char* op, const char* what) {
  if (!present(v)) return Buf{};
  Buf b = to_buf(v, op, what);
  check_dtype(b, dt, op, what);
  check_extent(b, 0, n, op, what);
  return b;
}

inline Buf required_buf(const Napi::Value& v, DType dt, int64_t n, const char* op, const char* what) {
  Buf b = to_buf(v, op, what);
  check_dtype(b, dt, op, what);
  check_extent(b, 0, n, op, what);
  return b;
}

inline const Buf* opt(const Buf& b) { return b.data != nullptr ? &b : nullptr; }

// The dtype of mean/rstd: float32 on CUDA, the input's dtype on the CPU.
inline DType stat_dtype(const Buf& x) { return x.device >= 0 ? DType::F32 : x.dtype; }

}  // namespace ng
