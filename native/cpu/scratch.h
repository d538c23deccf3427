// A 64-byte aligned, grow-only scratch buffer, not zeroed (every element is written
// before use). Kernels keep one per thread and role (thread_local), so repeated calls
// allocate nothing; a failed allocation throws OutOfMemory naming the kernel and size.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdlib>

#include "common.h"

namespace ng {

struct Scratch {
  void* p = nullptr;
  size_t cap = 0;
  const char* owner;  // the kernel family, for the out-of-memory message
  explicit Scratch(const char* who) : owner(who) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(p); }
  template <class T> T* get(size_t n) {
    if (n > (SIZE_MAX - 64) / sizeof(T)) throw OutOfMemory(owner, SIZE_MAX);
    const size_t bytes = std::max<size_t>(n * sizeof(T), 64);
    if (bytes > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      // a quarter of headroom, so a slowly growing size does not reallocate each call
      const size_t want = bytes + std::min(bytes / 4, SIZE_MAX - 64 - bytes);
      const size_t rounded = (want + 63) & ~size_t(63);
      p = std::aligned_alloc(64, rounded);
      if (!p) throw OutOfMemory(owner, rounded);
      cap = rounded;
    }
    return static_cast<T*>(p);
  }
  // Releases the buffer when it holds more than keep bytes.
  void trim(size_t keep) {
    if (cap > keep) {
      std::free(p);
      p = nullptr;
      cap = 0;
    }
  }
};

}  // namespace ng
