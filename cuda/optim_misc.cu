// Multi-tensor SGD, norm and scale on CUDA (cuda/optim.h): one launch per list of
// tensors through the cached chunk tables of cuda/adamw.cu. The norm is deterministic
// (per-chunk double partials, summed in chunk order by one block) and can stay on the
// device, where it yields the clip coefficient that AdamW and the scale kernel read.
#include <cmath>
#include <cstring>
#include <string>

#include "cuda/common.cuh"
#include "cuda/optim.h"

namespace ng {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxSets = 64;
enum TableKind { kSgdTable = 1, kFlatTable = 2 };

template <class T>
void append(std::vector<uint8_t>& blob, const T& v) {
  const size_t at = blob.size();
  blob.resize(at + sizeof(T));
  std::memcpy(blob.data() + at, &v, sizeof(T));
}

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

void check_f32(DType dt, size_t i, const char* op) {
  if (dt != DType::F32)
    throw Error(std::string(op) + ": tensors on CUDA must be float32 (tensor " + std::to_string(i) + " is " +
                dtype_name(dt) + ")");
}

// Appends tensor idx's (tensor, chunk) pairs.
void add_chunks(std::vector<int2>& chunks, int idx, int64_t numel, const char* op) {
  const int64_t n = (numel + kOptimChunk - 1) / kOptimChunk;
  if (n > INT32_MAX) throw Error(std::string(op) + ": tensor too large");
  for (int64_t c = 0; c < n; ++c) chunks.push_back(make_int2(idx, static_cast<int>(c)));
}

__device__ __forceinline__ void chunk_range(int chunk, long long numel, long long* start, long long* end) {
  *start = static_cast<long long>(chunk) * kOptimChunk;
  *end = *start + kOptimChunk < numel ? *start + kOptimChunk : numel;
}

// ---- SGD ------------------------------------------------------------------------------------

struct SgdHyper {
  float lr, wd, mom, omd;
  int nesterov;
};
struct SgdSets {
  SgdHyper h[kMaxSets];
};
struct alignas(16) SgdDesc {
  float* p;
  const float* g;
  float* buf;  // momentum buffer or null
  long long numel;
  int set;
  int init;  // the buffer is new: it takes d itself
};

// PyTorch's SGD as the CPU twin computes it. Per element: reads p, g (and buf), writes p
// (and buf): 12 bytes, 20 with momentum.
__global__ void __launch_bounds__(kThreads)
    sgd_kernel(const SgdDesc* __restrict__ descs, const int2* __restrict__ chunks, long long nchunks, SgdSets sets,
               int set_lo, int set_hi, float gs) {
  for (long long ci = blockIdx.x; ci < nchunks; ci += gridDim.x) {
    const int2 e = chunks[ci];
    const SgdDesc d = descs[e.x];
    if (d.set < set_lo || d.set >= set_hi) continue;
    const SgdHyper h = sets.h[d.set - set_lo];
    long long start, end;
    chunk_range(e.y, d.numel, &start, &end);
    for (long long i = start + threadIdx.x; i < end; i += kThreads) {
      const float p = d.p[i];
      const float dp = d.g[i] * gs + h.wd * p;
      if (d.buf == nullptr) {
        d.p[i] = p - h.lr * dp;
      } else if (d.init) {
        d.buf[i] = dp;
        d.p[i] = p - h.lr * (h.nesterov ? dp + h.mom * dp : dp);
      } else {
        const float b = h.mom * d.buf[i] + h.omd * dp;
        d.buf[i] = b;
        d.p[i] = p - h.lr * (h.nesterov ? dp + h.mom * b : b);
      }
    }
  }
}

// ---- norm and scale ---------------------------------------------------------------------------

struct alignas(16) FlatDesc {
  float* x;
  long long numel;
  int vec;  // 16-byte aligned: float4 path
  int pad;
};

enum NormMode { kNorm2 = 0, kNorm1 = 1, kNormInf = 2, kNormP = 3 };

// max that propagates NaN (as the CPU twin's `if (!(a <= m)) m = a`)
__device__ __forceinline__ double nan_max(double a, double b) { return (a > b || a != a) ? a : b; }

__device__ __forceinline__ double combine(double a, double b, int mode) {
  return mode == kNormInf ? nan_max(a, b) : a + b;
}

__device__ __forceinline__ double elem_term(float x, int mode, double p) {
  const double a = fabs(static_cast<double>(x));
  switch (mode) {
    case kNorm2: return a * a;
    case kNorm1:
    case kNormInf: return a;
    default: return pow(a, p);
  }
}

// Block-wide combine in a fixed order (warp butterflies, then warp 0 over the warps).
__device__ double block_combine(double v, int mode, double* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, o), mode);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? red[lane] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = combine(v, __shfl_xor_sync(0xffffffffu, v, o), mode);
  }
  return v;  // valid in thread 0
}

// One block per chunk: part[ci] = sum |x|^p (or max |x|) of the chunk. Traffic: one read.
__global__ void __launch_bounds__(kThreads)
    norm_partials(const FlatDesc* __restrict__ descs, const int2* __restrict__ chunks, long long nchunks, int mode,
                  double p, double* __restrict__ part) {
  __shared__ double red[32];
  for (long long ci = blockIdx.x; ci < nchunks; ci += gridDim.x) {
    const int2 e = chunks[ci];
    const FlatDesc d = descs[e.x];
    long long start, end;
    chunk_range(e.y, d.numel, &start, &end);
    double acc = 0.0;
    long long tail = start;
    if (d.vec) {
      const long long vend = start + ((end - start) & ~3LL);
      for (long long i = start + 4LL * threadIdx.x; i < vend; i += 4LL * kThreads) {
        const float4 x = *reinterpret_cast<const float4*>(d.x + i);
        acc = combine(acc, elem_term(x.x, mode, p), mode);
        acc = combine(acc, elem_term(x.y, mode, p), mode);
        acc = combine(acc, elem_term(x.z, mode, p), mode);
        acc = combine(acc, elem_term(x.w, mode, p), mode);
      }
      tail = vend;
    }
    for (long long i = tail + threadIdx.x; i < end; i += kThreads) acc = combine(acc, elem_term(d.x[i], mode, p), mode);
    acc = block_combine(acc, mode, red);
    if (threadIdx.x == 0) part[ci] = acc;
  }
}

// One block: combines the partials in chunk order, takes the root, writes the results.
__global__ void __launch_bounds__(kThreads)
    norm_finalize(const double* __restrict__ part, long long nparts, int mode, double p, double norm_scale,
                  double max_norm, double* out_d, float* out_f, float* coef) {
  __shared__ double red[32];
  double acc = 0.0;
  for (long long i = threadIdx.x; i < nparts; i += kThreads) acc = combine(acc, part[i], mode);
  acc = block_combine(acc, mode, red);
  if (threadIdx.x != 0) return;
  double norm = mode == kNorm2 ? sqrt(acc) : (mode == kNormP ? pow(acc, 1.0 / p) : acc);
  norm *= norm_scale;
  if (out_d != nullptr) *out_d = norm;
  if (out_f != nullptr) *out_f = static_cast<float>(norm);
  if (coef != nullptr) {
    const double c = max_norm / (norm + 1e-6);
    // clamp(max=1) keeps NaN (PyTorch, and the CPU path's `if (!(coef >= 1))`): a NaN
    // norm must make the gradients NaN, not leave them unclipped
    *coef = static_cast<float>(c < 1.0 || c != c ? c : 1.0);
  }
}

// x *= s (times *sdev when given). Traffic: one read, one write.
__global__ void __launch_bounds__(kThreads)
    scale_kernel(const FlatDesc* __restrict__ descs, const int2* __restrict__ chunks, long long nchunks, float s,
                 const float* __restrict__ sdev) {
  for (long long ci = blockIdx.x; ci < nchunks; ci += gridDim.x) {
    const int2 e = chunks[ci];
    const FlatDesc d = descs[e.x];
    const float f = sdev != nullptr ? s * *sdev : s;
    long long start, end;
    chunk_range(e.y, d.numel, &start, &end);
    long long tail = start;
    if (d.vec) {
      const long long vend = start + ((end - start) & ~3LL);
      for (long long i = start + 4LL * threadIdx.x; i < vend; i += 4LL * kThreads) {
        float4 x = *reinterpret_cast<const float4*>(d.x + i);
        x.x *= f;
        x.y *= f;
        x.z *= f;
        x.w *= f;
        *reinterpret_cast<float4*>(d.x + i) = x;
      }
      tail = vend;
    }
    for (long long i = tail + threadIdx.x; i < end; i += kThreads) d.x[i] *= f;
  }
}

// The cached table of a flat tensor list; returns the chunk count (0: nothing to do).
long long flat_table(const std::vector<FlatTensor>& ts, const char* op, const FlatDesc** descs, const int2** chunks) {
  std::vector<FlatDesc> ds;
  std::vector<int2> cs;
  for (size_t i = 0; i < ts.size(); ++i) {
    check_f32(ts[i].dtype, i, op);
    if (ts[i].numel <= 0) continue;
    FlatDesc d;
    std::memset(&d, 0, sizeof d);  // padding too: the bytes are the table cache's key
    d.x = static_cast<float*>(ts[i].data);
    d.numel = ts[i].numel;
    d.vec = aligned(d.x, 16);
    add_chunks(cs, static_cast<int>(ds.size()), d.numel, op);
    ds.push_back(d);
  }
  if (cs.empty()) return 0;
  std::vector<uint8_t> blob;
  for (const FlatDesc& d : ds) append(blob, d);
  for (const int2& c : cs) append(blob, c);
  const uint8_t* t = static_cast<const uint8_t*>(detail::cached_table(current_device(), kFlatTable, blob, op));
  *descs = reinterpret_cast<const FlatDesc*>(t);
  *chunks = reinterpret_cast<const int2*>(t + ds.size() * sizeof(FlatDesc));
  return static_cast<long long>(cs.size());
}

unsigned grid_for(long long nchunks) { return static_cast<unsigned>(nchunks < INT32_MAX ? nchunks : INT32_MAX); }

int norm_mode(double p) {
  if (std::isinf(p)) return kNormInf;
  if (p == 2) return kNorm2;
  if (p == 1) return kNorm1;
  return kNormP;
}

// Shared by both norm entries: queues the partials and the finalize kernel.
void queue_norm(const std::vector<FlatTensor>& ts, double p, double norm_scale, double* out_d, float* out_f,
                float* coef, double max_norm, const char* op) {
  if (!(p > 0)) throw Error(std::string(op) + ": p must be positive (got " + std::to_string(p) + ")");
  const FlatDesc* descs = nullptr;
  const int2* chunks = nullptr;
  const long long n = flat_table(ts, op, &descs, &chunks);
  const int dev = current_device();
  const int mode = norm_mode(p);
  double* part = static_cast<double*>(alloc(dev, static_cast<size_t>(n > 0 ? n : 1) * sizeof(double), op));
  try {
    if (n > 0) {
      norm_partials<<<grid_for(n), kThreads, 0, stream()>>>(descs, chunks, n, mode, p, part);
      check_launch(op);
    }
    norm_finalize<<<1, kThreads, 0, stream()>>>(part, n, mode, p, norm_scale, max_norm, out_d, out_f, coef);
    check_launch(op);
  } catch (...) {
    free(dev, part);
    throw;
  }
  free(dev, part);
}

void queue_scale(const std::vector<FlatTensor>& ts, double s, const float* sdev, const char* op) {
  const FlatDesc* descs = nullptr;
  const int2* chunks = nullptr;
  const long long n = flat_table(ts, op, &descs, &chunks);
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, stream()>>>(descs, chunks, n, static_cast<float>(s), sdev);
  check_launch(op);
}

}  // namespace

void sgd_step(const std::vector<SgdTensor>& ts, double grad_scale) {
  const char* op = "sgdStep";
  std::vector<SgdHyper> sets;
  std::vector<std::vector<double>> keys;
  std::vector<SgdDesc> ds;
  std::vector<int2> cs;
  for (size_t i = 0; i < ts.size(); ++i) {
    const SgdTensor& s = ts[i];
    check_f32(s.dtype, i, op);
    if (s.numel <= 0) continue;
    std::vector<double> key = {s.lr, s.weight_decay, s.momentum, s.dampening, s.nesterov ? 1.0 : 0.0};
    int set = -1;
    for (size_t k = 0; k < keys.size(); ++k)
      if (keys[k] == key) set = static_cast<int>(k);
    if (set < 0) {
      sets.push_back(SgdHyper{static_cast<float>(s.lr), static_cast<float>(s.weight_decay),
                              static_cast<float>(s.momentum), 1.f - static_cast<float>(s.dampening),
                              s.nesterov ? 1 : 0});
      keys.push_back(key);
      set = static_cast<int>(sets.size()) - 1;
    }
    SgdDesc d;
    std::memset(&d, 0, sizeof d);  // padding too: the bytes are the table cache's key
    d.p = static_cast<float*>(s.param);
    d.g = static_cast<const float*>(s.grad);
    d.buf = static_cast<float*>(s.momentum_buf);
    d.numel = s.numel;
    d.set = set;
    d.init = s.init_buf ? 1 : 0;
    add_chunks(cs, static_cast<int>(ds.size()), d.numel, op);
    ds.push_back(d);
  }
  if (cs.empty()) return;
  std::vector<uint8_t> blob;
  for (const SgdDesc& d : ds) append(blob, d);
  for (const int2& c : cs) append(blob, c);
  const uint8_t* t = static_cast<const uint8_t*>(detail::cached_table(current_device(), kSgdTable, blob, op));
  const SgdDesc* descs = reinterpret_cast<const SgdDesc*>(t);
  const int2* chunks = reinterpret_cast<const int2*>(t + ds.size() * sizeof(SgdDesc));
  const long long n = static_cast<long long>(cs.size());
  for (size_t lo = 0; lo < sets.size(); lo += kMaxSets) {
    SgdSets s{};
    const size_t hi = lo + kMaxSets < sets.size() ? lo + kMaxSets : sets.size();
    for (size_t k = lo; k < hi; ++k) s.h[k - lo] = sets[k];
    sgd_kernel<<<grid_for(n), kThreads, 0, stream()>>>(descs, chunks, n, s, static_cast<int>(lo),
                                                      static_cast<int>(hi), static_cast<float>(grad_scale));
    check_launch(op);
  }
}

double multi_tensor_norm(const std::vector<FlatTensor>& ts, double p) {
  const char* op = "multiTensorNorm";
  const int dev = current_device();
  double* out = static_cast<double*>(alloc(dev, sizeof(double), op));
  double host = 0;
  try {
    queue_norm(ts, p, 1.0, out, nullptr, nullptr, 0.0, op);
    download_sync(dev, &host, out, sizeof(double));  // the caller asked for a host value
  } catch (...) {
    free(dev, out);
    throw;
  }
  free(dev, out);
  return host;
}

void multi_tensor_norm_device(const std::vector<FlatTensor>& ts, double p, double norm_scale, float* out_norm,
                              float* clip_coef, double max_norm) {
  queue_norm(ts, p, norm_scale, nullptr, out_norm, clip_coef, max_norm, "multiTensorNorm");
}

void multi_tensor_scale(const std::vector<FlatTensor>& ts, double scale) {
  queue_scale(ts, scale, nullptr, "multiTensorScale");
}

void multi_tensor_scale_device(const std::vector<FlatTensor>& ts, const float* scale) {
  if (scale == nullptr) throw Error("multiTensorScale: the device scale is null");
  queue_scale(ts, 1.0, scale, "multiTensorScale");
}

}  // namespace cuda
}  // namespace ng
