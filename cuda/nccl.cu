// NCCL, opened at run time (dlopen + dlsym): nodegrad never links NCCL, so the addon
// loads on machines without it and initProcessGroup({ backend: 'nccl' }) explains what to
// install.
//
// Search order: $NODEGRAD_NCCL (a path), the soname libnccl.so.2 (LD_LIBRARY_PATH,
// ldconfig: the distro's libnccl2), then the pip wheels' directories (nvidia-nccl-cu12 /
// -cu13: site-packages/nvidia/{nccl,cu13,cu12}/lib) under the Pythons found on PATH, the
// active venv / conda env, ~/.local and the system prefixes.
//
// Types are our own declarations with the values of NCCL's documented nccl.h (stable
// since 2.0; bfloat16 and ncclAvg since 2.10, checked against ncclGetVersion).
//
// A collective is queued on the device's stream and then waited for by polling an event
// and ncclCommGetAsyncError until the timeout: on an error or the timeout the
// communicator is aborted (which also frees the kernels spinning on a dead peer).

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/dynlib.h"
#include "cuda/nccl.h"

namespace ng {
namespace cuda {
namespace nccl {
namespace {

// ---- NCCL's ABI, from nccl.h -------------------------------------------------------------
using Result = int;  // ncclResult_t
enum : int { kSuccess = 0, kInProgress = 7 };
enum : int { kInt32 = 2, kFloat16 = 6, kFloat32 = 7, kFloat64 = 8, kBfloat16 = 9 };  // ncclDataType_t
enum : int { kSum = 0, kMax = 2, kAvg = 4 };                                          // ncclRedOp_t
struct UniqueId {
  char internal[kUniqueIdBytes];
};
using RawComm = void*;  // ncclComm_t

struct Api {
  void* lib = nullptr;
  std::string path, why;
  int version = 0;
  Result (*get_version)(int*) = nullptr;
  Result (*get_unique_id)(UniqueId*) = nullptr;
  Result (*comm_init_rank)(RawComm*, int, UniqueId, int) = nullptr;
  Result (*comm_destroy)(RawComm) = nullptr;
  Result (*comm_abort)(RawComm) = nullptr;
  Result (*all_reduce)(const void*, void*, size_t, int, int, RawComm, cudaStream_t) = nullptr;
  Result (*broadcast)(const void*, void*, size_t, int, int, RawComm, cudaStream_t) = nullptr;
  Result (*all_gather)(const void*, void*, size_t, int, RawComm, cudaStream_t) = nullptr;
  Result (*reduce_scatter)(const void*, void*, size_t, int, int, RawComm, cudaStream_t) = nullptr;
  Result (*group_start)() = nullptr;
  Result (*group_end)() = nullptr;
  const char* (*error_string)(Result) = nullptr;
  Result (*async_error)(RawComm, Result*) = nullptr;
  const char* (*last_error)(RawComm) = nullptr;  // optional (2.13+)
};

std::mutex g_mu;
Api g_api;
bool g_tried = false;

using dynlib::sym;

bool try_open(const std::string& path, std::string* err) {
  void* lib = dynlib::open(path, err);
  if (!lib) return false;
  Api a;
  a.lib = lib;
  bool ok = sym(lib, "ncclGetVersion", &a.get_version) && sym(lib, "ncclGetUniqueId", &a.get_unique_id) &&
            sym(lib, "ncclCommInitRank", &a.comm_init_rank) && sym(lib, "ncclCommDestroy", &a.comm_destroy) &&
            sym(lib, "ncclCommAbort", &a.comm_abort) && sym(lib, "ncclAllReduce", &a.all_reduce) &&
            sym(lib, "ncclBroadcast", &a.broadcast) && sym(lib, "ncclAllGather", &a.all_gather) &&
            sym(lib, "ncclReduceScatter", &a.reduce_scatter) && sym(lib, "ncclGroupStart", &a.group_start) &&
            sym(lib, "ncclGroupEnd", &a.group_end) && sym(lib, "ncclGetErrorString", &a.error_string) &&
            sym(lib, "ncclCommGetAsyncError", &a.async_error);
  if (!ok) {
    *err = path + " lacks an NCCL entry point";
    dlclose(lib);
    return false;
  }
  sym(lib, "ncclGetLastError", &a.last_error);
  if (a.get_version(&a.version) != kSuccess || a.version < 2700) {  // 2.7.0 (old encoding: 2708 = 2.7.8)
    *err = path + " is too old (version code " + std::to_string(a.version) + "; expected NCCL >= 2.7)";
    dlclose(lib);
    return false;
  }
  a.path = path;
  g_api = a;
  return true;
}

void load_locked() {
  if (g_tried) return;
  g_tried = true;
  std::string err;
  std::string searched;
  const char* env = std::getenv("NODEGRAD_NCCL");
  if (env && *env) {
    if (try_open(env, &err)) return;
    searched = std::string("NODEGRAD_NCCL=") + env + " (" + err + "), ";
    err.clear();
  } else {
    searched = "NODEGRAD_NCCL (unset), ";
  }
  if (try_open("libnccl.so.2", &err)) return;
  searched += "libnccl.so.2 (LD_LIBRARY_PATH, ldconfig), ";
  std::vector<std::string> roots = dynlib::python_roots();
  for (const std::string& r : roots)
    for (const char* sub : {"/nvidia/nccl/lib/libnccl.so*", "/nvidia/cu13/lib/libnccl.so*", "/nvidia/cu12/lib/libnccl.so*"})
      for (const std::string& p : dynlib::glob_paths(r + sub))
        if (try_open(p, &err)) return;
  searched += "site-packages/nvidia/{nccl,cu13,cu12}/lib/libnccl.so* under ";
  for (size_t i = 0; i < roots.size(); ++i) searched += (i ? ", " : "") + roots[i];
  g_api.why = "not found: searched " + searched;
}

const char* result_text(Result r, RawComm comm) {
  if (comm && g_api.last_error) {
    const char* s = g_api.last_error(comm);
    if (s && *s) return s;
  }
  return g_api.error_string ? g_api.error_string(r) : "unknown NCCL error";
}

int nccl_type(DType dt, const char* op) {
  switch (dt) {
    case DType::F32: return kFloat32;
    case DType::F64: return kFloat64;
    case DType::I32: return kInt32;
    case DType::F16: return kFloat16;
    case DType::BF16:
      if (g_api.version < 21000)
        throw Error(std::string("distributed: ") + op + ": bfloat16 needs NCCL >= 2.10 (got " + version_string() + ")");
      return kBfloat16;
    default:
      throw Error(std::string("distributed: ") + op + ": unsupported dtype on the nccl backend (got " + dtype_name(dt) +
                  "; expected float32, float64, int32, bfloat16 or float16)");
  }
}

// ---- avg without ncclAvg (NCCL < 2.10): sum, then scale in place ---------------------------
template <class T>
static __global__ void scale_kernel(T* p, int64_t n, float f) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p[i] = from_f<T>(to_f(p[i]) * f);
}
static __global__ void scale_kernel_f64(double* p, int64_t n, double f) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p[i] *= f;
}

void launch_scale(void* p, size_t n, DType dt, double f, cudaStream_t st) {
  const int threads = 256;
  const unsigned blocks = blocks_for(static_cast<int64_t>(n), threads);
  dispatch_float(dt, "allReduce (avg)", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, double>)
      scale_kernel_f64<<<blocks, threads, 0, st>>>(static_cast<double*>(p), static_cast<int64_t>(n), f);
    else
      scale_kernel<T><<<blocks, threads, 0, st>>>(static_cast<T*>(p), static_cast<int64_t>(n), static_cast<float>(f));
  });
  check_launch("allReduce (avg)");
}

}  // namespace

struct Communicator {
  RawComm comm = nullptr;
  int device = 0, world_size = 1, rank = 0;
  bool aborted = false;
  cudaEvent_t done = nullptr;
  void* scratch = nullptr;  // 4 bytes for barrier()
  std::string failure;
};

namespace {

[[noreturn]] void fail(Communicator* c, const std::string& what) {
  if (!c->aborted && c->comm) g_api.comm_abort(c->comm);
  c->aborted = true;
  c->failure = what;
  throw NcclFailure(what);
}

void check_call(Communicator* c, Result r, const char* op) {
  if (r == kSuccess || r == kInProgress) return;
  fail(c, std::string("NCCL ") + op + " failed: " + result_text(r, c->comm));
}

// Waits for the collective just queued: polls its event and the communicator's
// asynchronous error (a dead peer surfaces there) until the timeout.
void wait(Communicator* c, const char* op, std::chrono::milliseconds timeout) {
  cudaStream_t st = stream_of(c->device);
  NG_CUDA_CHECK(cudaEventRecord(c->done, st), op);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto nap = std::chrono::microseconds(20);
  while (true) {
    cudaError_t e = cudaEventQuery(c->done);
    if (e == cudaSuccess) break;
    if (e != cudaErrorNotReady) throw_cuda(e, op, "waiting for the NCCL collective");
    Result ar = kSuccess;
    if (g_api.async_error(c->comm, &ar) != kSuccess || (ar != kSuccess && ar != kInProgress))
      fail(c, std::string("NCCL ") + op + " failed: " + result_text(ar, c->comm));
    if (std::chrono::steady_clock::now() >= deadline)
      fail(c, std::string("NCCL ") + op + " timed out after " + std::to_string(timeout.count()) + " ms");
    std::this_thread::sleep_for(nap);
    if (nap < std::chrono::microseconds(2000)) nap *= 2;
  }
}

void begin(Communicator* c, const char* op) {
  if (c->aborted) throw NcclFailure(c->failure.empty() ? std::string("the NCCL communicator was aborted") : c->failure);
  set_device(c->device);
  (void)op;
}

}  // namespace

bool load(std::string* why) {
  std::lock_guard<std::mutex> lock(g_mu);
  load_locked();
  if (!g_api.lib && why) *why = g_api.why;
  return g_api.lib != nullptr;
}
int version() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_api.version;
}
std::string library_path() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_api.path;
}
std::string version_string() {
  const int v = g_api.version;
  if (v == 0) return "";
  // 2.9+: major*10000 + minor*100 + patch; before: major*1000 + minor*100 + patch
  if (v >= 10000) return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  return std::to_string(v / 1000) + "." + std::to_string(v / 100 % 10) + "." + std::to_string(v % 100);
}

void unique_id(char out[kUniqueIdBytes]) {
  std::string why;
  if (!load(&why)) throw Error("distributed: libnccl.so.2 " + why);
  UniqueId id{};
  Result r = g_api.get_unique_id(&id);
  if (r != kSuccess) throw Error(std::string("distributed: ncclGetUniqueId failed: ") + result_text(r, nullptr));
  std::memcpy(out, id.internal, kUniqueIdBytes);
}

Communicator* comm_init(int device, int world_size, int rank, const char id[kUniqueIdBytes]) {
  std::string why;
  if (!load(&why)) throw Error("distributed: libnccl.so.2 " + why);
  set_device(device);
  stream_of(device);  // the device's context and stream exist before NCCL binds to it
  auto* c = new Communicator();
  c->device = device;
  c->world_size = world_size;
  c->rank = rank;
  UniqueId uid;
  std::memcpy(uid.internal, id, kUniqueIdBytes);
  Result r = g_api.comm_init_rank(&c->comm, world_size, uid, rank);
  if (r != kSuccess) {
    std::string msg = std::string("ncclCommInitRank failed on cuda:") + std::to_string(device) + ": " + result_text(r, nullptr);
    if (c->comm) g_api.comm_abort(c->comm);
    delete c;
    throw NcclFailure(msg);
  }
  try {
    NG_CUDA_CHECK(cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming), "initProcessGroup");
    c->scratch = alloc(device, 4, "initProcessGroup (NCCL barrier)");
  } catch (...) {
    g_api.comm_destroy(c->comm);
    if (c->done) cudaEventDestroy(c->done);
    delete c;
    throw;
  }
  return c;
}

void comm_destroy(Communicator* c) {
  if (!c) return;
  set_device(c->device);
  if (!c->aborted && c->comm) {
    // pending work finishes first; a failure here leaves an abort as the way out
    if (cudaStreamSynchronize(stream_of(c->device)) != cudaSuccess) cudaGetLastError();
    if (g_api.comm_destroy(c->comm) != kSuccess) g_api.comm_abort(c->comm);
  }
  if (c->scratch) ::ng::cuda::free(c->device, c->scratch);
  if (c->done) cudaEventDestroy(c->done);
  delete c;
}

void all_reduce(Communicator* c, void* buf, size_t n, DType dt, int op, std::chrono::milliseconds timeout) {
  begin(c, "allReduce");
  const int ty = nccl_type(dt, "allReduce");
  const bool native_avg = op == 1 && g_api.version >= 21000;
  const int red = op == 2 ? kMax : native_avg ? kAvg : kSum;
  cudaStream_t st = stream_of(c->device);
  check_call(c, g_api.all_reduce(buf, buf, n, ty, red, c->comm, st), "allReduce");
  if (op == 1 && !native_avg) launch_scale(buf, n, dt, 1.0 / c->world_size, st);
  wait(c, "allReduce", timeout);
}

void broadcast(Communicator* c, void* buf, size_t n, DType dt, int root, std::chrono::milliseconds timeout) {
  begin(c, "broadcast");
  const int ty = nccl_type(dt, "broadcast");
  check_call(c, g_api.broadcast(buf, buf, n, ty, root, c->comm, stream_of(c->device)), "broadcast");
  wait(c, "broadcast", timeout);
}

void all_gather(Communicator* c, const void* in, void* out, size_t n, DType dt, std::chrono::milliseconds timeout) {
  begin(c, "allGather");
  const int ty = nccl_type(dt, "allGather");
  check_call(c, g_api.all_gather(in, out, n, ty, c->comm, stream_of(c->device)), "allGather");
  wait(c, "allGather", timeout);
}

void reduce_scatter(Communicator* c, const void* in, void* out, size_t per, DType dt, int op,
                    std::chrono::milliseconds timeout) {
  begin(c, "reduceScatter");
  const int ty = nccl_type(dt, "reduceScatter");
  const bool native_avg = op == 1 && g_api.version >= 21000;
  const int red = op == 2 ? kMax : native_avg ? kAvg : kSum;
  cudaStream_t st = stream_of(c->device);
  check_call(c, g_api.reduce_scatter(in, out, per, ty, red, c->comm, st), "reduceScatter");
  if (op == 1 && !native_avg) launch_scale(out, per, dt, 1.0 / c->world_size, st);
  wait(c, "reduceScatter", timeout);
}

void barrier(Communicator* c, std::chrono::milliseconds timeout) {
  begin(c, "barrier");
  cudaStream_t st = stream_of(c->device);
  check_call(c, g_api.all_reduce(c->scratch, c->scratch, 1, kInt32, kSum, c->comm, st), "barrier");
  wait(c, "barrier", timeout);
}

}  // namespace nccl
}  // namespace cuda
}  // namespace ng
