// Device runtime: the current device, one stream per device, host<->device copies through
// pinned staging buffers, synchronisation, and the device error slot.
//
// Downloads: D2H into a pinned staging buffer (8 MiB chunks, two buffers so the copy
// of one chunk overlaps the host memcpy of the previous), queued on the device's
// stream so they see every kernel issued before them. Uploads from pageable memory are
// issued with cudaMemcpyAsync, which returns once the source has been staged by the
// driver, so the JavaScript buffer may be reused immediately.
#include <cuda_runtime.h>

#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include "cuda/common.cuh"

namespace ng {
namespace cuda {
namespace {

struct DeviceState {
  cudaStream_t stream = nullptr;
  DeviceErrorSlot* errors = nullptr;
  int cc = 0, sms = 0;
};

std::mutex mu;
// A deque: growing it for a new device keeps the references other threads hold valid.
std::deque<DeviceState>& states() {
  static std::deque<DeviceState> s;
  return s;
}
thread_local int tl_device = -1;

DeviceState& state(int device) {
  std::lock_guard<std::mutex> lock(mu);
  auto& s = states();
  if (device < 0) throw Error("CUDA: invalid device index " + std::to_string(device));
  if (static_cast<size_t>(device) >= s.size()) s.resize(device + 1);
  DeviceState& d = s[device];
  if (d.stream == nullptr) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || device >= count) {
      cudaGetLastError();
      throw Error("CUDA: device cuda:" + std::to_string(device) + " does not exist (" + std::to_string(count) +
                  " device(s) usable)");
    }
    // The stream and the slot belong to the device current while they are created; the
    // caller's current device (e.g. compute_capability(1) asked from cuda:0) is restored.
    int prev = -1;
    if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
    NG_CUDA_CHECK(cudaSetDevice(device), "CUDA init");
    cudaStream_t st = nullptr;
    DeviceErrorSlot* slot = nullptr;
    NG_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "CUDA init");
    NG_CUDA_CHECK(cudaMalloc(&slot, sizeof(DeviceErrorSlot)), "CUDA init");
    // on the non-blocking stream itself (it does not order with the legacy default stream)
    NG_CUDA_CHECK(cudaMemsetAsync(slot, 0, sizeof(DeviceErrorSlot), st), "CUDA init");
    NG_CUDA_CHECK(cudaStreamSynchronize(st), "CUDA init");
    cudaDeviceProp p;
    NG_CUDA_CHECK(cudaGetDeviceProperties(&p, device), "CUDA init");
    d.cc = p.major * 10 + p.minor;
    d.sms = p.multiProcessorCount;
    d.errors = slot;
    d.stream = st;  // last: a non-null stream means the state is complete
    if (prev >= 0 && prev != device) cudaSetDevice(prev);
  }
  return d;
}

std::mutex site_mu;
std::vector<std::string>& sites() {
  static std::vector<std::string> s{"(unknown)"};
  return s;
}

// Pinned staging for downloads: two chunks per thread that asks (the JS thread and the
// async workers each get their own), allocated on first use and kept.
constexpr size_t kChunk = 8 << 20;
struct Staging {
  void* buf[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
  int device = -1;
  ~Staging() {
    for (int i = 0; i < 2; ++i) {
      if (buf[i]) cudaFreeHost(buf[i]);
      if (done[i]) cudaEventDestroy(done[i]);
    }
  }
};
thread_local Staging tl_staging;

Staging& staging(int device) {
  Staging& s = tl_staging;
  if (s.device != device) {
    for (int i = 0; i < 2; ++i) {
      if (s.buf[i]) cudaFreeHost(s.buf[i]);
      if (s.done[i]) cudaEventDestroy(s.done[i]);
      s.buf[i] = nullptr;
      s.done[i] = nullptr;
    }
    for (int i = 0; i < 2; ++i) {
      NG_CUDA_CHECK(cudaHostAlloc(&s.buf[i], kChunk, cudaHostAllocDefault), "download");
      NG_CUDA_CHECK(cudaEventCreateWithFlags(&s.done[i], cudaEventDisableTiming), "download");
    }
    s.device = device;
  }
  return s;
}

void download_impl(int device, void* dst, const void* src, size_t bytes) {
  set_device(device);
  cudaStream_t st = stream_of(device);
  if (bytes == 0) {
    NG_CUDA_CHECK(cudaStreamSynchronize(st), "download");
    check_device_errors(device);
    return;
  }
  Staging& s = staging(device);
  size_t nchunks = (bytes + kChunk - 1) / kChunk;
  // chunk i goes to buffer i % 2; before reusing a buffer, its previous chunk is copied out
  for (size_t i = 0; i < nchunks + 1; ++i) {
    if (i < nchunks) {
      size_t off = i * kChunk, n = bytes - off < kChunk ? bytes - off : kChunk;
      NG_CUDA_CHECK(cudaMemcpyAsync(s.buf[i % 2], static_cast<const char*>(src) + off, n, cudaMemcpyDeviceToHost, st),
                    "download");
      NG_CUDA_CHECK(cudaEventRecord(s.done[i % 2], st), "download");
    }
    if (i >= 1) {
      size_t j = i - 1, off = j * kChunk, n = bytes - off < kChunk ? bytes - off : kChunk;
      NG_CUDA_CHECK(cudaEventSynchronize(s.done[j % 2]), "download");
      std::memcpy(static_cast<char*>(dst) + off, s.buf[j % 2], n);
    }
  }
  check_device_errors(device);
}

}  // namespace

[[noreturn]] void throw_cuda(cudaError_t e, const char* op, const char* what) {
  std::string msg = std::string(op) + ": " + what + " failed: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  // errors such as an illegal address poison the context: say so instead of failing later
  if (e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure || e == cudaErrorIllegalInstruction ||
      e == cudaErrorMisalignedAddress || e == cudaErrorHardwareStackError)
    msg += " (the CUDA context is no longer usable; restart the process)";
  else
    cudaGetLastError();  // clear a non-sticky error so later calls do not report it again
  throw Error(msg);
}

void set_device(int device) {
  if (tl_device == device) return;
  state(device);  // creates the stream on first use
  NG_CUDA_CHECK(cudaSetDevice(device), "CUDA set device");
  tl_device = device;
}

int current_device() { return tl_device < 0 ? 0 : tl_device; }

cudaStream_t stream_of(int device) { return state(device).stream; }
cudaStream_t stream() { return stream_of(current_device()); }

int compute_capability(int device) { return state(device).cc; }
int multiprocessors(int device) { return state(device).sms; }

// Uploads of 64 KiB and more go through the pinned staging pair: chunk i is copied into
// buffer i % 2 (after the DMA that last read that buffer finished), then DMA'd from there,
// so the host copy of one chunk overlaps the transfer of the previous one. Returns once
// the source has been read; the last transfers complete in stream order.
void upload(int device, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  set_device(device);
  cudaStream_t st = stream_of(device);
  if (bytes < (64u << 10)) {
    NG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st), "upload");
    return;
  }
  Staging& s = staging(device);
  for (size_t off = 0, i = 0; off < bytes; off += kChunk, ++i) {
    size_t n = bytes - off < kChunk ? bytes - off : kChunk;
    NG_CUDA_CHECK(cudaEventSynchronize(s.done[i % 2]), "upload");
    std::memcpy(s.buf[i % 2], static_cast<const char*>(src) + off, n);
    NG_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, s.buf[i % 2], n, cudaMemcpyHostToDevice, st), "upload");
    NG_CUDA_CHECK(cudaEventRecord(s.done[i % 2], st), "upload");
  }
}

void download_sync(int device, void* dst, const void* src, size_t bytes) { download_impl(device, dst, src, bytes); }
void download_blocking(int device, void* dst, const void* src, size_t bytes) {
  download_impl(device, dst, src, bytes);
}

// Pinned buffers for asynchronous reads, reused by size (cudaHostAlloc/cudaFreeHost are
// slow, and cudaFreeHost may wait for the device). At most kPinnedCacheBytes are kept.
namespace {
constexpr size_t kPinnedCacheBytes = size_t(256) << 20;
std::mutex pinned_mu;
std::multimap<size_t, void*>& pinned_cache() {
  static std::multimap<size_t, void*> c;
  return c;
}
size_t pinned_cached = 0;

void* take_pinned(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(pinned_mu);
    auto& c = pinned_cache();
    auto it = c.lower_bound(bytes);
    if (it != c.end() && it->first <= 2 * bytes + 4096) {
      void* p = it->second;
      pinned_cached -= it->first;
      c.erase(it);
      return p;
    }
  }
  void* p = nullptr;
  NG_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocDefault), "data()");
  return p;
}
void give_pinned(void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(pinned_mu);
  if (pinned_cached + bytes > kPinnedCacheBytes) {
    cudaFreeHost(p);
    return;
  }
  pinned_cache().emplace(bytes, p);
  pinned_cached += bytes;
}
// A read's pinned buffer: the values, then a copy of the device's error slot taken
// right after them on the stream (so the read reports errors of the kernels before it
// without waiting for the ones queued after it).
size_t slot_offset(size_t bytes) { return (bytes + 15) / 16 * 16; }
size_t pinned_size(size_t bytes) { return slot_offset(bytes) + sizeof(DeviceErrorSlot); }
}  // namespace

void start_download(int device, const void* src, size_t bytes, void** pinned, PendingEvent* ev) {
  set_device(device);
  cudaStream_t st = stream_of(device);
  void* buf = take_pinned(pinned_size(bytes));
  cudaEvent_t e = nullptr;
  cudaError_t r = cudaEventCreateWithFlags(&e, cudaEventDisableTiming);
  if (r == cudaSuccess && bytes) r = cudaMemcpyAsync(buf, src, bytes, cudaMemcpyDeviceToHost, st);
  if (r == cudaSuccess)
    r = cudaMemcpyAsync(static_cast<char*>(buf) + slot_offset(bytes), error_slot(device), sizeof(DeviceErrorSlot),
                        cudaMemcpyDeviceToHost, st);
  if (r == cudaSuccess) r = cudaEventRecord(e, st);
  if (r != cudaSuccess) {
    if (e) cudaEventDestroy(e);
    give_pinned(buf, pinned_size(bytes));
    throw_cuda(r, "data()", "queueing the device-to-host copy");
  }
  *pinned = buf;
  *ev = e;
}

void finish_download(int device, void* dst, void* pinned, PendingEvent ev, size_t bytes) {
  cudaEvent_t e = static_cast<cudaEvent_t>(ev);
  cudaError_t r = cudaSetDevice(device);
  if (r == cudaSuccess) {
    tl_device = device;  // keep set_device's cache of this worker thread truthful
    r = cudaEventSynchronize(e);
  }
  DeviceErrorSlot slot{};
  if (r == cudaSuccess) {
    if (bytes) std::memcpy(dst, pinned, bytes);
    std::memcpy(&slot, static_cast<char*>(pinned) + slot_offset(bytes), sizeof slot);
  }
  cudaEventDestroy(e);
  give_pinned(pinned, pinned_size(bytes));
  if (r != cudaSuccess) throw_cuda(r, "data()", "waiting for the device-to-host copy");
  if (slot.code != 0) check_device_errors(device);  // clears the slot and throws with the op's name
}

void copy_d2d(int device, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  set_device(device);
  NG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_of(device)), "copy");
}

void memset_zero(int device, void* dst, size_t bytes) {
  if (bytes == 0) return;
  set_device(device);
  NG_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_of(device)), "zeros");
}

void synchronize(int device) {
  set_device(device);
  NG_CUDA_CHECK(cudaStreamSynchronize(stream_of(device)), "synchronize");
  check_device_errors(device);
}

DeviceErrorSlot* error_slot(int device) { return state(device).errors; }

int error_site(const char* what) {
  std::lock_guard<std::mutex> lock(site_mu);
  auto& s = sites();
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] == what) return static_cast<int>(i);
  s.emplace_back(what);
  return static_cast<int>(s.size() - 1);
}

void check_device_errors(int device) {
  DeviceState& d = state(device);
  DeviceErrorSlot slot;
  // the caller has synchronised the stream; this small copy is ordered after it
  NG_CUDA_CHECK(cudaMemcpyAsync(&slot, d.errors, sizeof slot, cudaMemcpyDeviceToHost, d.stream), "check errors");
  NG_CUDA_CHECK(cudaStreamSynchronize(d.stream), "check errors");
  if (slot.code == 0) return;
  NG_CUDA_CHECK(cudaMemsetAsync(d.errors, 0, sizeof slot, d.stream), "check errors");
  std::string site;
  {
    std::lock_guard<std::mutex> lock(site_mu);
    site = slot.site >= 0 && static_cast<size_t>(slot.site) < sites().size() ? sites()[slot.site] : "(unknown)";
  }
  throw Error(site + ": index " + std::to_string(slot.value) + " is out of range [0, " + std::to_string(slot.limit) +
              ") (found on cuda:" + std::to_string(device) + " by a kernel queued earlier; the results of that op are "
              "incomplete)");
}

}  // namespace cuda
}  // namespace ng
