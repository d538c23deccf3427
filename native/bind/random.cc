#include "bind/util.h"

#include <cmath>

#include "cpu/random.h"
#include "cuda/random.h"

namespace ng {

// randomFill(kind, out, n, seed, offset, a, b): out is a contiguous buffer (typed array or
// CUDA buffer) of >= n elements; both backends draw the same Philox stream.
static Napi::Value RandomFill(const Napi::CallbackInfo& info) {
  const char* op = "random";
  int64_t kind = to_i64(info[0], op, "kind");
  if (kind < 0 || kind > 3) throw Error("random: unknown kind");
  Buf out = to_buf(info[1], op, "out");
  int64_t n = to_i64(info[2], op, "n");
  check_extent(out, 0, n, op, "out");
  int64_t seed = to_i64(info[3], op, "seed");
  int64_t offset = to_i64(info[4], op, "offset");
  double a = to_f64(info[5], op, "a"), b = to_f64(info[6], op, "b");
  // randint draws a 64-bit integer modulo the range: whole bounds, less than 2^53 apart
  if (kind == 2 && !(std::isfinite(a) && std::isfinite(b) && b > a && b - a <= 9007199254740991.0 &&
                     a == std::floor(a) && b == std::floor(b)))
    throw Error("randint: low and high must be integers with low < high, less than 2^53 apart");
  View v = contiguous_view(out, {n}, op, "out");
  const RandomKind k = static_cast<RandomKind>(kind);
  const uint64_t sd = static_cast<uint64_t>(seed), off = static_cast<uint64_t>(offset);
  int dev = route(op, {&out});
  if (dev >= 0) NG_CUDA(cuda::random_fill(k, v, sd, off, a, b));
  else random_fill(k, v, sd, off, a, b);
  return info.Env().Undefined();
}

void InitRandom(Napi::Env env, Napi::Object exports) { NG_EXPORT(exports, env, "randomFill", RandomFill); }

}  // namespace ng
