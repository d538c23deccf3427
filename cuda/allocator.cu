// Caching device allocator (the idea of PyTorch's CUDACachingAllocator, much smaller).
//
// Sizes are rounded up to a bucket: multiples of 512 B below 1 MiB, of 2 MiB above.
// A freed block goes to a per-device free list keyed by its rounded size and is handed
// to the next request of the same bucket (a large request may also take a cached block
// up to 1/8 larger). Every kernel of a device runs on that device's one stream, so a
// block freed after a kernel was queued can be reused by any later kernel at once: the
// stream orders them. cudaMalloc failing with out-of-memory returns every cached block
// of the device to the driver and retries once; a second failure throws an Error that
// names the op, the request and the allocator's state.
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/common.cuh"

namespace ng {
namespace cuda {
namespace {

constexpr size_t kSmall = 1 << 20;
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = 2 << 20;

size_t round_size(size_t n) {
  if (n == 0) n = 1;
  if (n < kSmall) return (n + kSmallRound - 1) / kSmallRound * kSmallRound;
  return (n + kLargeRound - 1) / kLargeRound * kLargeRound;
}

struct DeviceCache {
  std::multimap<size_t, void*> free_blocks;        // rounded size -> pointer (unused)
  std::unordered_map<void*, size_t> live;          // pointer -> rounded size (in use)
  MemoryStats stats;
  size_t limit = 0;                                // test hook: pretend capacity
};

std::mutex mu;
std::vector<DeviceCache>& caches() {
  static std::vector<DeviceCache> c;
  return c;
}
DeviceCache& cache(int device) {
  auto& c = caches();
  if (device < 0) throw Error("CUDA allocator: invalid device index " + std::to_string(device));
  if (static_cast<size_t>(device) >= c.size()) c.resize(device + 1);
  return c[device];
}

std::string mib(size_t b) { return std::to_string((b + (1 << 19)) >> 20) + " MiB"; }

// Returns every cached block of the device to the driver (caller holds mu).
void flush(int device, DeviceCache& dc) {
  if (dc.free_blocks.empty()) return;
  set_device(device);
  // frees must not overtake kernels still using the memory through the stream
  cudaStreamSynchronize(stream_of(device));
  for (auto& kv : dc.free_blocks) {
    cudaFree(kv.second);
    dc.stats.reserved -= kv.first;
  }
  dc.free_blocks.clear();
  dc.stats.num_cache_flushes++;
}

cudaError_t raw_malloc(int device, DeviceCache& dc, void** p, size_t size) {
  if (dc.limit != 0 && dc.stats.reserved + size > dc.limit) return cudaErrorMemoryAllocation;
  return cudaMalloc(p, size);
}

}  // namespace

void* alloc(int device, size_t bytes, const char* op) {
  std::lock_guard<std::mutex> lock(mu);
  DeviceCache& dc = cache(device);
  size_t size = round_size(bytes);
  void* p = nullptr;
  auto it = dc.free_blocks.lower_bound(size);
  if (it != dc.free_blocks.end() && (it->first == size || (size >= kSmall && it->first <= size + size / 8))) {
    p = it->second;
    size = it->first;
    dc.free_blocks.erase(it);
  } else {
    set_device(device);
    cudaError_t e = raw_malloc(device, dc, &p, size);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // out-of-memory is not sticky: clear it and retry once
      dc.stats.num_ooms++;
      flush(device, dc);
      e = raw_malloc(device, dc, &p, size);
    }
    // anything but out-of-memory (a poisoned context, no device) is reported as itself
    if (e != cudaSuccess && e != cudaErrorMemoryAllocation) throw_cuda(e, op, "cudaMalloc");
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw Error(std::string(op) + ": CUDA out of memory allocating " + mib(bytes) + " on cuda:" +
                  std::to_string(device) + " (" + cudaGetErrorName(e) + "; allocated by nodegrad " +
                  mib(dc.stats.allocated) + ", reserved " + mib(dc.stats.reserved) + ", free on device " +
                  mib(free_b) + " of " + mib(total_b) + "). Free tensors (dispose/scope) or use smaller batches.");
    }
    dc.stats.reserved += size;
    dc.stats.num_cuda_mallocs++;
    if (dc.stats.reserved > dc.stats.peak_reserved) dc.stats.peak_reserved = dc.stats.reserved;
  }
  dc.live[p] = size;
  dc.stats.allocated += size;
  dc.stats.num_allocs++;
  if (dc.stats.allocated > dc.stats.peak_allocated) dc.stats.peak_allocated = dc.stats.allocated;
  return p;
}

void free(int device, void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu);
  DeviceCache& dc = cache(device);
  auto it = dc.live.find(ptr);
  if (it == dc.live.end()) return;  // not ours (or already freed): never double-free
  dc.stats.allocated -= it->second;
  dc.stats.num_frees++;
  dc.free_blocks.emplace(it->second, ptr);
  dc.live.erase(it);
}

MemoryStats memory_stats(int device) {
  std::lock_guard<std::mutex> lock(mu);
  return cache(device).stats;
}

void reset_peak_stats(int device) {
  std::lock_guard<std::mutex> lock(mu);
  DeviceCache& dc = cache(device);
  dc.stats.peak_allocated = dc.stats.allocated;
  dc.stats.peak_reserved = dc.stats.reserved;
}

void empty_cache(int device) {
  std::lock_guard<std::mutex> lock(mu);
  flush(device, cache(device));
}

void set_memory_limit(int device, size_t limit) {
  std::lock_guard<std::mutex> lock(mu);
  cache(device).limit = limit;
}

}  // namespace cuda
}  // namespace ng
