// The CUDA device runtime as the binding sees it: plain C++ (no CUDA or N-API headers), so
// native/ includes it whether or not CUDA is compiled in. Implemented in cuda/runtime.cu
// and cuda/allocator.cu; without nvcc these entries are never called (the binding checks
// NG_HAS_CUDA first, see native/bind/util.h) and native/cuda_absent.cpp defines them.
//
// Model: one stream per device, created on first use; every kernel of a device is queued
// on that stream, so kernels, copies and frees are ordered without events. A freed block
// goes back to the caching allocator at once and may be reused by the next kernel on the
// same stream. Errors throw ng::Error naming the op and the CUDA error.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "common.h"

namespace ng {
namespace cuda {

// A device allocation as JavaScript holds it (inside a tagged napi External).
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;     // requested size
  size_t length = 0;    // elements of dtype
  int device = 0;
  DType dtype = DType::F32;
  bool freed = false;
  bool owner = true;    // false for a sub-range view (cudaView): never frees the block
};

// Makes `device` current on the calling thread (cheap when it already is).
void set_device(int device);
int current_device();

// Caching allocator (cuda/allocator.cu). alloc rounds the size up to a bucket, reuses a
// cached block when one fits, else calls cudaMalloc; on out-of-memory it frees every
// cached block of the device and retries once, then throws an Error naming `op`, the size
// and the allocator's state. free returns the block to the cache (stream-ordered).
void* alloc(int device, size_t bytes, const char* op);
void free(int device, void* ptr);
struct MemoryStats {
  size_t allocated = 0, reserved = 0, peak_allocated = 0, peak_reserved = 0;
  size_t num_allocs = 0, num_frees = 0, num_cuda_mallocs = 0, num_ooms = 0, num_cache_flushes = 0;
};
MemoryStats memory_stats(int device);
void reset_peak_stats(int device);
void empty_cache(int device);  // returns every cached (unused) block to the driver
// Test hook: makes alloc behave as if the device had only `limit` bytes (0: no limit).
void set_memory_limit(int device, size_t limit);

// Copies (cuda/runtime.cu). Host memory is ordinary (pageable) memory; downloads stage
// through pinned buffers. upload/download_sync return when the host side may be reused.
void upload(int device, void* dst, const void* src, size_t bytes);
void download_sync(int device, void* dst, const void* src, size_t bytes);
// For worker threads: queues the copy after every kernel already issued and waits for it
// without holding the JavaScript thread.
void download_blocking(int device, void* dst, const void* src, size_t bytes);
// Asynchronous download in two halves: start_download (JavaScript thread) queues the copy
// into a pinned buffer now, so it sees exactly the kernels issued so far; finish_download
// (a worker thread) waits for it, copies into dst and releases the pinned buffer.
using PendingEvent = void*;
void start_download(int device, const void* src, size_t bytes, void** pinned, PendingEvent* ev);
void finish_download(int device, void* dst, void* pinned, PendingEvent ev, size_t bytes);
void copy_d2d(int device, void* dst, const void* src, size_t bytes);
void memset_zero(int device, void* dst, size_t bytes);
void synchronize(int device);  // waits for the device's stream; throws on a pending error

// Data-dependent checks on the device (an id >= vocabulary size, a target outside
// [0, C)): the kernel records the first failure in the device's error slot without a
// host sync (see report_device_error in cuda/common.cuh); the next synchronize() or
// download throws it as "nodegrad: <site>: index <value> is out of range [0, <limit>)".
struct DeviceErrorSlot {
  int code;  // 0: none; 1: index out of range
  int site;  // registered by error_site()
  long long value, limit;
};
DeviceErrorSlot* error_slot(int device);   // device pointer, zero-initialised
int error_site(const char* what);          // "crossEntropy: target" -> stable id
void check_device_errors(int device);      // throws and clears when the slot holds a failure

// Properties used to pick kernels at run time.
int compute_capability(int device);  // major*10 + minor
int multiprocessors(int device);

}  // namespace cuda
}  // namespace ng
