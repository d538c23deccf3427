#include "bind/util.h"
#include "cuda_api.h"
#include "cuda/runtime.h"

#include <cstring>

namespace ng {

static Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("compiled", cuda::compiled());
  o.Set("archs", cuda::compiled_archs());
  o.Set("runtimeVersion", cuda::runtime_version());
  std::string why;
  int n = cuda::compiled() ? cuda::device_count(&why) : (cuda::device_count(&why), 0);
  o.Set("deviceCount", n);
  o.Set("driverVersion", cuda::compiled() ? cuda::driver_version() : 0);
  if (n == 0) o.Set("unavailableReason", why);
  Napi::Array devs = Napi::Array::New(env);
  for (int i = 0; i < n; ++i) {
    cuda::DeviceInfo d;
    std::string w;
    if (!cuda::device_info(i, &d, &w)) continue;
    Napi::Object od = Napi::Object::New(env);
    od.Set("index", i);
    od.Set("name", d.name);
    od.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    od.Set("totalMemory", static_cast<double>(d.total_memory));
    od.Set("multiprocessors", d.multiprocessors);
    devs.Set(devs.Length(), od);
  }
  o.Set("devices", devs);
  return o;
}


// ---- device buffers -------------------------------------------------------------------
// A CUDA storage is a napi External holding a cuda::DeviceBuffer, tagged so that no other
// External can be mistaken for one (to_buf in bind/util.cc checks the tag).
extern const napi_type_tag kDeviceBufferTag;
const napi_type_tag kDeviceBufferTag = {0x6e6f646567726164ULL, 0x6375646162756631ULL};

static cuda::DeviceBuffer* device_buffer(const Napi::Value& v, const char* op) {
  if (!is_device_buffer(v)) throw Error(std::string(op) + ": expected a CUDA buffer");
  auto* d = v.As<Napi::External<cuda::DeviceBuffer>>().Data();
  if (d->freed) throw Error(std::string(op) + ": CUDA storage used after it was freed");
  return d;
}

#if NG_HAS_CUDA
static void finalize_buffer(Napi::Env, cuda::DeviceBuffer* d) {
  // backstop for a handle that was never freed explicitly
  if (d->owner && !d->freed && d->ptr != nullptr) cuda::free(d->device, d->ptr);
  delete d;
}

static int device_arg(const Napi::Value& v, const char* op) {
  int64_t d = to_i64(v, op, "device");
  if (d < 0 || d > 1024) throw Error(std::string(op) + ": invalid device index " + std::to_string(d));
  return static_cast<int>(d);
}

// cudaAlloc(device, dtype, length, zeroed) -> handle
static Napi::Value CudaAlloc(const Napi::CallbackInfo& info) {
  const char* op = "cuda alloc";
  int dev = device_arg(info[0], op);
  int64_t dt = to_i64(info[1], op, "dtype");
  int64_t n = to_i64(info[2], op, "length");
  if (dt < 0 || dt > 5) throw Error(std::string(op) + ": invalid dtype code");
  if (n < 0) throw Error(std::string(op) + ": negative length");
  auto* d = new cuda::DeviceBuffer();
  d->device = dev;
  d->dtype = static_cast<DType>(dt);
  d->length = static_cast<size_t>(n);
  d->bytes = d->length * dtype_size(d->dtype);
  try {
    cuda::set_device(dev);
    d->ptr = cuda::alloc(dev, d->bytes, op);
    if (info.Length() > 3 && to_bool(info[3])) cuda::memset_zero(dev, d->ptr, d->bytes);
  } catch (...) {
    if (d->ptr) cuda::free(dev, d->ptr);
    delete d;
    throw;
  }
  Napi::External<cuda::DeviceBuffer> ext = Napi::External<cuda::DeviceBuffer>::New(info.Env(), d, finalize_buffer);
  napi_type_tag_object(info.Env(), ext, &kDeviceBufferTag);
  return ext;
}

// cudaFree(handle): returns the block to the caching allocator now.
static Napi::Value CudaFree(const Napi::CallbackInfo& info) {
  if (!is_device_buffer(info[0])) throw Error("cuda free: expected a CUDA buffer");
  auto* d = info[0].As<Napi::External<cuda::DeviceBuffer>>().Data();
  if (d->owner && !d->freed) {
    cuda::free(d->device, d->ptr);
    d->freed = true;
    d->ptr = nullptr;
  }
  return info.Env().Undefined();
}

static void check_range(const cuda::DeviceBuffer* d, int64_t off, int64_t n, const char* op) {
  if (off < 0 || n < 0 || static_cast<uint64_t>(off) + static_cast<uint64_t>(n) > d->length)
    throw Error(std::string(op) + ": range [" + std::to_string(off) + ", " + std::to_string(off + n) +
                ") is outside the CUDA storage of " + std::to_string(d->length) + " elements");
}

// cudaView(handle, elemOffset, length) -> a non-owning handle to elements [off, off+length)
// of the block, for kernels that take a buffer starting at a tensor's first element.
static Napi::Value CudaView(const Napi::CallbackInfo& info) {
  const char* op = "cuda view";
  cuda::DeviceBuffer* d = device_buffer(info[0], op);
  int64_t off = to_i64(info[1], op, "offset"), n = to_i64(info[2], op, "length");
  check_range(d, off, n, op);
  auto* v = new cuda::DeviceBuffer(*d);
  v->owner = false;
  v->ptr = static_cast<char*>(d->ptr) + off * dtype_size(d->dtype);
  v->length = static_cast<size_t>(n);
  v->bytes = v->length * dtype_size(d->dtype);
  Napi::External<cuda::DeviceBuffer> ext = Napi::External<cuda::DeviceBuffer>::New(info.Env(), v, finalize_buffer);
  napi_type_tag_object(info.Env(), ext, &kDeviceBufferTag);
  return ext;
}

// cudaUpload(handle, elemOffset, typedArray): host -> device, n = typedArray length.
static Napi::Value CudaUpload(const Napi::CallbackInfo& info) {
  const char* op = "to('cuda')";
  cuda::DeviceBuffer* d = device_buffer(info[0], op);
  int64_t off = to_i64(info[1], op, "offset");
  Buf h = to_buf(info[2], op, "source");
  if (h.device >= 0) throw Error(std::string(op) + ": source must be a typed array");
  if (dtype_size(h.dtype) != dtype_size(d->dtype))
    throw Error(std::string(op) + ": source element size does not match the CUDA storage");
  check_range(d, off, static_cast<int64_t>(h.length), op);
  cuda::upload(d->device, static_cast<char*>(d->ptr) + off * dtype_size(d->dtype), h.data,
               h.length * dtype_size(d->dtype));
  return info.Env().Undefined();
}

// cudaDownload(handle, elemOffset, typedArray): device -> host, synchronous.
static Napi::Value CudaDownload(const Napi::CallbackInfo& info) {
  const char* op = "to('cpu')";
  cuda::DeviceBuffer* d = device_buffer(info[0], op);
  int64_t off = to_i64(info[1], op, "offset");
  Buf h = to_buf(info[2], op, "destination");
  if (h.device >= 0) throw Error(std::string(op) + ": destination must be a typed array");
  if (dtype_size(h.dtype) != dtype_size(d->dtype))
    throw Error(std::string(op) + ": destination element size does not match the CUDA storage");
  check_range(d, off, static_cast<int64_t>(h.length), op);
  cuda::download_sync(d->device, h.data, static_cast<char*>(d->ptr) + off * dtype_size(d->dtype),
                      h.length * dtype_size(d->dtype));
  return info.Env().Undefined();
}

// The copy is queued on the stream at call time (so it sees exactly the kernels issued
// before it, whatever runs later); a worker thread waits for it and fills the array.
class DownloadWorker : public Napi::AsyncWorker {
 public:
  DownloadWorker(Napi::Env env, Napi::TypedArray dst, int device, void* pinned, cuda::PendingEvent ev, size_t bytes)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), device_(device), pinned_(pinned),
        ev_(ev), bytes_(bytes) {
    ref_ = Napi::Persistent(dst.As<Napi::Object>());
    Napi::ArrayBuffer ab = dst.ArrayBuffer();
    host_ = static_cast<char*>(ab.Data()) + dst.ByteOffset();
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      cuda::finish_download(device_, host_, pinned_, ev_, bytes_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(ref_.Value()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference ref_;
  int device_;
  void* pinned_;
  cuda::PendingEvent ev_;
  size_t bytes_;
  char* host_ = nullptr;
};

// cudaDownloadAsync(handle, elemOffset, typedArray) -> Promise<typedArray>
static Napi::Value CudaDownloadAsync(const Napi::CallbackInfo& info) {
  const char* op = "data()";
  cuda::DeviceBuffer* d = device_buffer(info[0], op);
  int64_t off = to_i64(info[1], op, "offset");
  if (!info[2].IsTypedArray()) throw Error(std::string(op) + ": destination must be a typed array");
  Napi::TypedArray ta = info[2].As<Napi::TypedArray>();
  Buf h = to_buf(info[2], op, "destination");
  if (dtype_size(h.dtype) != dtype_size(d->dtype))
    throw Error(std::string(op) + ": destination element size does not match the CUDA storage");
  check_range(d, off, static_cast<int64_t>(h.length), op);
  size_t bytes = h.length * dtype_size(d->dtype);
  void* pinned = nullptr;
  cuda::PendingEvent ev = nullptr;
  cuda::start_download(d->device, static_cast<char*>(d->ptr) + off * dtype_size(d->dtype), bytes, &pinned, &ev);
  auto* w = new DownloadWorker(info.Env(), ta, d->device, pinned, ev, bytes);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// cudaCopy(dst, dstOff, src, srcOff, n): contiguous device -> device copy (same device).
static Napi::Value CudaCopy(const Napi::CallbackInfo& info) {
  const char* op = "copy";
  cuda::DeviceBuffer* dst = device_buffer(info[0], op);
  cuda::DeviceBuffer* src = device_buffer(info[2], op);
  int64_t doff = to_i64(info[1], op, "offset"), soff = to_i64(info[3], op, "offset"), n = to_i64(info[4], op, "n");
  if (dst->device != src->device) throw Error(std::string(op) + ": buffers are on different CUDA devices");
  if (dtype_size(dst->dtype) != dtype_size(src->dtype)) throw Error(std::string(op) + ": element sizes differ");
  check_range(dst, doff, n, op);
  check_range(src, soff, n, op);
  size_t es = dtype_size(dst->dtype);
  cuda::copy_d2d(dst->device, static_cast<char*>(dst->ptr) + doff * es, static_cast<char*>(src->ptr) + soff * es,
                 static_cast<size_t>(n) * es);
  return info.Env().Undefined();
}

static Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  cuda::synchronize(device_arg(info[0], "synchronize"));
  return info.Env().Undefined();
}

static Napi::Value CudaMemoryStats(const Napi::CallbackInfo& info) {
  cuda::MemoryStats s = cuda::memory_stats(device_arg(info[0], "memoryStats"));
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("allocated", static_cast<double>(s.allocated));
  o.Set("reserved", static_cast<double>(s.reserved));
  o.Set("peakAllocated", static_cast<double>(s.peak_allocated));
  o.Set("peakReserved", static_cast<double>(s.peak_reserved));
  o.Set("numAllocs", static_cast<double>(s.num_allocs));
  o.Set("numFrees", static_cast<double>(s.num_frees));
  o.Set("numCudaMallocs", static_cast<double>(s.num_cuda_mallocs));
  o.Set("numOoms", static_cast<double>(s.num_ooms));
  o.Set("numCacheFlushes", static_cast<double>(s.num_cache_flushes));
  return o;
}

static Napi::Value CudaEmptyCache(const Napi::CallbackInfo& info) {
  cuda::empty_cache(device_arg(info[0], "emptyCache"));
  return info.Env().Undefined();
}
static Napi::Value CudaResetPeakStats(const Napi::CallbackInfo& info) {
  cuda::reset_peak_stats(device_arg(info[0], "resetPeakMemoryStats"));
  return info.Env().Undefined();
}
static Napi::Value CudaSetMemoryLimit(const Napi::CallbackInfo& info) {
  int64_t lim = to_i64(info[1], "setMemoryLimit", "bytes");
  if (lim < 0) throw Error("setMemoryLimit: bytes must be >= 0");
  cuda::set_memory_limit(device_arg(info[0], "setMemoryLimit"), static_cast<size_t>(lim));
  return info.Env().Undefined();
}
#endif  // NG_HAS_CUDA

void InitCuda(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "cudaInfo", CudaInfo);
#if NG_HAS_CUDA
  NG_EXPORT(exports, env, "cudaAlloc", CudaAlloc);
  NG_EXPORT(exports, env, "cudaFree", CudaFree);
  NG_EXPORT(exports, env, "cudaView", CudaView);
  NG_EXPORT(exports, env, "cudaUpload", CudaUpload);
  NG_EXPORT(exports, env, "cudaDownload", CudaDownload);
  NG_EXPORT(exports, env, "cudaDownloadAsync", CudaDownloadAsync);
  NG_EXPORT(exports, env, "cudaCopy", CudaCopy);
  NG_EXPORT(exports, env, "cudaSynchronize", CudaSynchronize);
  NG_EXPORT(exports, env, "cudaMemoryStats", CudaMemoryStats);
  NG_EXPORT(exports, env, "cudaEmptyCache", CudaEmptyCache);
  NG_EXPORT(exports, env, "cudaResetPeakStats", CudaResetPeakStats);
  NG_EXPORT(exports, env, "cudaSetMemoryLimit", CudaSetMemoryLimit);
#endif
}

}  // namespace ng
