// Shared, N-API-free definitions for every kernel: dtypes, strided views, errors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace ng {

// Numbering shared with lib/dtype.ts.
enum class DType : int32_t { F32 = 0, F64 = 1, I32 = 2, Bool = 3, BF16 = 4, F16 = 5 };

inline size_t dtype_size(DType d) {
  switch (d) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::I32: return 4;
    case DType::Bool: return 1;
    case DType::BF16: return 2;
    case DType::F16: return 2;
  }
  return 0;
}
const char* dtype_name(DType d);

constexpr int kMaxDims = 8;

// A strided view over raw memory: data already points at element (0,...,0).
// Strides are in elements and may be 0 (broadcast) or negative.
struct View {
  void* data = nullptr;
  DType dtype = DType::F32;
  int device = -1;  // -1: CPU memory; N >= 0: memory of CUDA device N
  int ndim = 0;
  int64_t shape[kMaxDims] = {0};
  int64_t strides[kMaxDims] = {0};
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  template <class T> T* ptr() const { return static_cast<T*>(data); }
};

// Kernels report bad arguments by throwing; the binding turns this into a JS Error.
struct Error : std::runtime_error {
  explicit Error(const std::string& m) : std::runtime_error("nodegrad: " + m) {}
};
// A native allocation that failed: the binding reports it as a JS Error
// ("nodegrad: out of memory allocating N bytes for <op>"), never an abort.
struct OutOfMemory : Error {
  OutOfMemory(const char* op, size_t bytes)
      : Error("out of memory allocating " + std::to_string(bytes) + " bytes for " + op) {}
};

#define NG_CHECK(cond, msg)                          \
  do {                                               \
    if (!(cond)) throw ::ng::Error(std::string(msg)); \
  } while (0)

// CPU features detected once at load time.
struct CpuFeatures {
  bool avx2 = false, fma = false, avx512f = false;
};
const CpuFeatures& cpu_features();

}  // namespace ng
