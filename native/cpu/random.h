// Counter-based random numbers (Philox4x32-10). Element i of a draw uses counter
// (offset + i) under key `seed`, so a draw is reproducible, splittable across threads
// and identical on every backend that implements the same function.
#pragma once
#include <cstdint>

#include "common.h"

namespace ng {

enum class RandomKind : int32_t { Uniform = 0, Normal = 1, Randint = 2, Bernoulli = 3 };

struct Philox {
  static inline void round(uint32_t ctr[4], const uint32_t key[2]) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * ctr[0];
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * ctr[2];
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0];
    uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1];
    ctr[0] = n0;
    ctr[1] = static_cast<uint32_t>(p1);
    ctr[2] = n2;
    ctr[3] = static_cast<uint32_t>(p0);
  }
  // Four 32-bit words for counter `c` under key `seed`.
  static inline void generate(uint64_t seed, uint64_t c, uint32_t out[4]) {
    uint32_t ctr[4] = {static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 0u, 0u};
    uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
    for (int r = 0; r < 10; ++r) {
      round(ctr, key);
      key[0] += 0x9E3779B9u;
      key[1] += 0xBB67AE85u;
    }
    for (int i = 0; i < 4; ++i) out[i] = ctr[i];
  }
};

// Fills n contiguous elements of `out` (dtype from the view). Uniform in [a, b);
// Normal with mean a and standard deviation b; Randint in [a, b) (int32);
// Bernoulli: 1 with probability a (bool output).
void random_fill(RandomKind kind, const View& out, uint64_t seed, uint64_t offset, double a, double b);

}  // namespace ng
