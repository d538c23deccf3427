// Fused multi-tensor AdamW on CUDA: every parameter of every group updated by ONE launch,
// plus the device-side cache of the chunk tables that all multi-tensor kernels use (see
// cuda/optim.h). Lab with the variants and timings: bench/kernels/adamw/.
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>

#include "cuda/common.cuh"
#include "cuda/optim.h"

namespace ng {
namespace cuda {

// ---- chunk-table cache ----------------------------------------------------------------------

namespace detail {
namespace {
struct TableEntry {
  int device = 0, kind = 0;
  std::vector<uint8_t> blob;
  void* dev = nullptr;
  size_t cap = 0;
  uint64_t used = 0;
};
constexpr size_t kTablesPerKind = 4;  // e.g. several optimizers alternating keep their tables
std::mutex table_mu;
std::vector<TableEntry> tables;
uint64_t table_tick = 0;
}  // namespace

const void* cached_table(int device, int kind, const std::vector<uint8_t>& blob, const char* op) {
  std::lock_guard<std::mutex> lock(table_mu);
  ++table_tick;
  TableEntry* lru = nullptr;
  size_t count = 0;
  for (TableEntry& e : tables) {
    if (e.device != device || e.kind != kind) continue;
    if (e.blob == blob) {
      e.used = table_tick;
      return e.dev;
    }
    ++count;
    if (lru == nullptr || e.used < lru->used) lru = &e;
  }
  TableEntry* slot;
  if (count < kTablesPerKind) {
    tables.emplace_back();
    slot = &tables.back();
    slot->device = device;
    slot->kind = kind;
  } else {
    slot = lru;
  }
  if (slot->cap < blob.size()) {
    // Stream-ordered free: kernels already queued that read the old table finish first.
    if (slot->dev != nullptr) free(device, slot->dev);
    slot->dev = nullptr;
    slot->cap = 0;
    slot->dev = alloc(device, blob.size(), op);
    slot->cap = blob.size();
  }
  // The upload is queued on the device's stream, after every kernel that read the old
  // contents of this buffer.
  upload(device, slot->dev, blob.data(), blob.size());
  slot->blob = blob;
  slot->used = table_tick;
  return slot->dev;
}
}  // namespace detail

namespace {

constexpr int kThreads = 256;
constexpr int kMaxSets = 64;  // distinct hyper-parameter sets per launch (kernel argument)

// Per-step values of one parameter group, precomputed in double on the host exactly as
// the CPU twin does, then rounded to float.
struct AdamWHyper {
  float decay, b1, b2, omb1, omb2, step_size, bc2_sqrt, eps;
};
struct AdamWSets {
  AdamWHyper h[kMaxSets];
};
struct alignas(16) AdamWDesc {
  float* p;
  const float* g;
  float* m;
  float* v;
  void* copy;       // model copy (bf16/f16) or null
  long long numel;
  int set;          // index into the step's hyper-parameter sets
  int vec;          // 1: every array 16-byte aligned (copy 8-byte): float4 path
};

__device__ __forceinline__ void adamw_elem(float& p, float g, float& m, float& v, const AdamWHyper& h, float gs) {
  const float gi = g * gs;
  const float mi = h.b1 * m + h.omb1 * gi;
  const float vi = h.b2 * v + h.omb2 * gi * gi;
  m = mi;
  v = vi;
  const float denom = sqrtf(vi) / h.bc2_sqrt + h.eps;
  p = p * h.decay - h.step_size * mi / denom;
}

__device__ __forceinline__ void store_copy1(void* copy, int bf16, long long i, float p) {
  if (bf16) static_cast<__nv_bfloat16*>(copy)[i] = __float2bfloat16_rn(p);
  else static_cast<__half*>(copy)[i] = __float2half_rn(p);
}

__device__ __forceinline__ void store_copy4(void* copy, int bf16, long long i, float4 p) {
  uint2 u;
  if (bf16) {
    __nv_bfloat162 lo = __floats2bfloat162_rn(p.x, p.y), hi = __floats2bfloat162_rn(p.z, p.w);
    memcpy(&u.x, &lo, 4);
    memcpy(&u.y, &hi, 4);
    *reinterpret_cast<uint2*>(static_cast<__nv_bfloat16*>(copy) + i) = u;
  } else {
    __half2 lo = __floats2half2_rn(p.x, p.y), hi = __floats2half2_rn(p.z, p.w);
    memcpy(&u.x, &lo, 4);
    memcpy(&u.y, &hi, 4);
    *reinterpret_cast<uint2*>(static_cast<__half*>(copy) + i) = u;
  }
}

// One block per (tensor, chunk) pair of the table. Per element: reads p, g, m, v and
// writes p, m, v (28 bytes; +2 with a bf16 copy). float4 loads where aligned. The grad
// scale times the device factor (clip coefficient) is read once per block.
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(const AdamWDesc* __restrict__ descs, const int2* __restrict__ chunks, long long nchunks,
                 AdamWSets sets, int set_lo, int set_hi, float grad_scale, const float* __restrict__ scale_factor,
                 int copy_bf16) {
  for (long long ci = blockIdx.x; ci < nchunks; ci += gridDim.x) {
    const int2 e = chunks[ci];
    const AdamWDesc d = descs[e.x];
    if (d.set < set_lo || d.set >= set_hi) continue;  // another launch's hyper-parameter sets
    const AdamWHyper h = sets.h[d.set - set_lo];
    const float gs = scale_factor != nullptr ? grad_scale * *scale_factor : grad_scale;
    const long long start = static_cast<long long>(e.y) * kOptimChunk;
    const long long end = start + kOptimChunk < d.numel ? start + kOptimChunk : d.numel;
    long long tail = start;
    if (d.vec) {
      const long long vend = start + ((end - start) & ~3LL);
      for (long long i = start + 4LL * threadIdx.x; i < vend; i += 4LL * kThreads) {
        float4 p = *reinterpret_cast<const float4*>(d.p + i);
        const float4 g = *reinterpret_cast<const float4*>(d.g + i);
        float4 m = *reinterpret_cast<const float4*>(d.m + i);
        float4 v = *reinterpret_cast<const float4*>(d.v + i);
        adamw_elem(p.x, g.x, m.x, v.x, h, gs);
        adamw_elem(p.y, g.y, m.y, v.y, h, gs);
        adamw_elem(p.z, g.z, m.z, v.z, h, gs);
        adamw_elem(p.w, g.w, m.w, v.w, h, gs);
        *reinterpret_cast<float4*>(d.p + i) = p;
        *reinterpret_cast<float4*>(d.m + i) = m;
        *reinterpret_cast<float4*>(d.v + i) = v;
        if (d.copy != nullptr) store_copy4(d.copy, copy_bf16, i, p);
      }
      tail = vend;
    }
    for (long long i = tail + threadIdx.x; i < end; i += kThreads) {
      float p = d.p[i], m = d.m[i], v = d.v[i];
      adamw_elem(p, d.g[i], m, v, h, gs);
      d.p[i] = p;
      d.m[i] = m;
      d.v[i] = v;
      if (d.copy != nullptr) store_copy1(d.copy, copy_bf16, i, p);
    }
  }
}

template <class T>
void append(std::vector<uint8_t>& blob, const T& v) {
  const size_t at = blob.size();
  blob.resize(at + sizeof(T));
  std::memcpy(blob.data() + at, &v, sizeof(T));
}

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

}  // namespace

void adamw_step_fused(const std::vector<AdamWTensor>& ts, const AdamWFusedOptions& opt) {
  const char* op = "adamwStep";
  if (!opt.model_copy.empty() && opt.model_copy.size() != ts.size())
    throw Error(std::string(op) + ": model copies has " + std::to_string(opt.model_copy.size()) +
                " entries, expected " + std::to_string(ts.size()));
  if (opt.copy_dtype != DType::BF16 && opt.copy_dtype != DType::F16)
    throw Error(std::string(op) + ": model copy dtype must be bfloat16 or float16 (got " + dtype_name(opt.copy_dtype) + ")");
  std::vector<AdamWHyper> sets;
  std::vector<std::vector<double>> keys;  // (lr, wd, b1, b2, eps, step) of each set
  std::vector<AdamWDesc> descs;
  std::vector<int2> chunks;
  for (size_t i = 0; i < ts.size(); ++i) {
    const AdamWTensor& a = ts[i];
    if (a.dtype != DType::F32)
      throw Error(std::string(op) + ": parameters on CUDA must be float32 (tensor " + std::to_string(i) + " is " +
                  dtype_name(a.dtype) + ")");
    if (a.step < 1) throw Error(std::string(op) + ": steps must be >= 1 (got " + std::to_string(a.step) + ")");
    if (a.numel <= 0) continue;
    if ((a.numel + kOptimChunk - 1) / kOptimChunk > INT32_MAX) throw Error(std::string(op) + ": tensor too large");
    std::vector<double> key = {a.lr, a.weight_decay, a.beta1, a.beta2, a.eps, static_cast<double>(a.step)};
    int set = -1;
    for (size_t s = 0; s < keys.size(); ++s)
      if (keys[s] == key) set = static_cast<int>(s);
    if (set < 0) {
      const double t = static_cast<double>(a.step);
      const double bc1 = 1.0 - std::pow(a.beta1, t), bc2 = 1.0 - std::pow(a.beta2, t);
      const float b1 = static_cast<float>(a.beta1), b2 = static_cast<float>(a.beta2);
      sets.push_back(AdamWHyper{static_cast<float>(1.0 - a.lr * a.weight_decay), b1, b2, 1.f - b1, 1.f - b2,
                                static_cast<float>(a.lr / bc1), static_cast<float>(std::sqrt(bc2)),
                                static_cast<float>(a.eps)});
      keys.push_back(key);
      set = static_cast<int>(sets.size()) - 1;
    }
    AdamWDesc d;
    std::memset(&d, 0, sizeof d);  // padding too: the bytes are the table cache's key
    d.p = static_cast<float*>(a.param);
    d.g = static_cast<const float*>(a.grad);
    d.m = static_cast<float*>(a.exp_avg);
    d.v = static_cast<float*>(a.exp_avg_sq);
    d.copy = opt.model_copy.empty() ? nullptr : opt.model_copy[i];
    d.numel = a.numel;
    d.set = set;
    d.vec = aligned(d.p, 16) && aligned(d.g, 16) && aligned(d.m, 16) && aligned(d.v, 16) &&
            (d.copy == nullptr || aligned(d.copy, 8));
    const int idx = static_cast<int>(descs.size());
    descs.push_back(d);
    const long long n = (a.numel + kOptimChunk - 1) / kOptimChunk;
    for (long long c = 0; c < n; ++c) chunks.push_back(make_int2(idx, static_cast<int>(c)));
  }
  if (chunks.empty()) return;
  std::vector<uint8_t> blob;
  blob.reserve(descs.size() * sizeof(AdamWDesc) + chunks.size() * sizeof(int2));
  for (const AdamWDesc& d : descs) append(blob, d);
  for (const int2& c : chunks) append(blob, c);
  const int dev = current_device();
  const uint8_t* table = static_cast<const uint8_t*>(detail::cached_table(dev, 0, blob, op));
  const AdamWDesc* ddescs = reinterpret_cast<const AdamWDesc*>(table);
  const int2* dchunks = reinterpret_cast<const int2*>(table + descs.size() * sizeof(AdamWDesc));
  const long long nchunks = static_cast<long long>(chunks.size());
  const unsigned grid = static_cast<unsigned>(nchunks < INT32_MAX ? nchunks : INT32_MAX);
  // Usually one launch; more than kMaxSets distinct groups (per-tensor learning rates)
  // take one launch per kMaxSets, each skipping the chunks of the others.
  for (size_t lo = 0; lo < sets.size(); lo += kMaxSets) {
    AdamWSets s{};
    const size_t hi = lo + kMaxSets < sets.size() ? lo + kMaxSets : sets.size();
    for (size_t k = lo; k < hi; ++k) s.h[k - lo] = sets[k];
    adamw_kernel<<<grid, kThreads, 0, stream()>>>(ddescs, dchunks, nchunks, s, static_cast<int>(lo),
                                                  static_cast<int>(hi), static_cast<float>(opt.grad_scale),
                                                  opt.scale_factor, opt.copy_dtype == DType::BF16 ? 1 : 0);
    check_launch(op);
  }
}

void adamw_step(const std::vector<AdamWTensor>& ts, double grad_scale) {
  AdamWFusedOptions opt;
  opt.grad_scale = grad_scale;
  adamw_step_fused(ts, opt);
}

}  // namespace cuda
}  // namespace ng
