// Process groups over Gloo (CPU tensors) and, in CUDA builds, NCCL (CUDA tensors: a
// backend 'nccl' group holds a Gloo context for CPU tensors too, and one NCCL
// communicator on its device, cuda/nccl.cu). Every collective of a group runs on the
// group's own worker thread, in the order JavaScript issued them (every rank must issue
// the same sequence, as with torch.distributed), and settles a Promise on the JS thread
// through a thread-safe function: the event loop never waits on the network.
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>

#include "bind/util.h"
#include "distributed/store.h"
#if NG_HAS_CUDA
#include "cuda/nccl.h"
#endif

namespace ng {
namespace {

using Clock = std::chrono::steady_clock;

struct Group;
struct Job {
  Group* g = nullptr;
  std::function<void()> work;
  Napi::Promise::Deferred deferred;
  std::vector<Napi::ObjectReference> keep;  // typed arrays the work reads or writes
  std::string error;
  bool last = false;
  explicit Job(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

struct Group {
  int rank = 0, world_size = 1;
  std::string master_addr;
  int master_port = 0;
  std::chrono::milliseconds timeout{300000};
  std::unique_ptr<dist::StoreServer> server;
  std::unique_ptr<dist::StoreClient> store;
  std::shared_ptr<gloo::rendezvous::Context> ctx;
  bool nccl = false;  // backend 'nccl': CUDA tensors of `device` go through `comm`
  int device = -1;
#if NG_HAS_CUDA
  cuda::nccl::Communicator* comm = nullptr;
#endif
  uint32_t tag = 0;
  std::string failed;  // the first collective error: the group is unusable afterwards
  bool destroyed = false;
  int pending = 0;
  Napi::ThreadSafeFunction tsfn;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Job*> queue;
};

// The address other ranks reach this one at: loopback for a local master, else the
// interface the route to MASTER_ADDR leaves by (NODEGRAD_GLOO_IFACE overrides).
gloo::transport::tcp::attr device_attr(const std::string& master, int port) {
  gloo::transport::tcp::attr a;
  if (const char* iface = std::getenv("NODEGRAD_GLOO_IFACE")) {
    a.iface = iface;
    return a;
  }
  if (master == "localhost" || master.rfind("127.", 0) == 0) {
    a.hostname = "127.0.0.1";
    return a;
  }
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (fd >= 0 && ::inet_pton(AF_INET, master.c_str(), &sa.sin_addr) == 1 &&
      ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) {
    sockaddr_in local{};
    socklen_t len = sizeof(local);
    char buf[INET_ADDRSTRLEN];
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
        ::inet_ntop(AF_INET, &local.sin_addr, buf, sizeof(buf)))
      a.hostname = buf;
  }
  if (fd >= 0) ::close(fd);
  if (a.hostname.empty()) {
    char host[256] = {0};
    ::gethostname(host, sizeof(host) - 1);
    a.hostname = host;
  }
  return a;
}

// Turns a transport failure into an Error naming the rank that went away.
std::string explain_failure(Group* g, const char* op, const std::string& what) {
  std::string base = std::string("distributed: ") + op + " failed on rank " + std::to_string(g->rank) + ": ";
  std::vector<int> dead;
  bool store_gone = false;
  for (int i = 0; i < 25; i++) {  // the store notices a closed connection within moments
    try {
      dead.clear();
      for (int r : g->store->dead())
        if (r != g->rank) dead.push_back(r);
    } catch (...) {
      store_gone = true;
      break;
    }
    if (!dead.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (store_gone && g->rank != 0)
    return base + "rank 0 exited (got no answer from its rendezvous store at " + g->store->where() +
           "; expected every rank alive until destroyProcessGroup) [" + what + "]";
  if (!dead.empty()) {
    std::string list;
    for (int r : dead) list += (list.empty() ? "" : ", ") + std::to_string(r);
    return base + (dead.size() == 1 ? "rank " : "ranks ") + list + " exited (got " + what +
           "; expected every rank alive until destroyProcessGroup)";
  }
  return base + what + " (no rank has exited: a rank may be stuck, or the ranks issued different collectives)";
}

void worker(Group* g) {
  Napi::ThreadSafeFunction tsfn = g->tsfn;
  while (true) {
    Job* job;
    {
      std::unique_lock<std::mutex> lock(g->mu);
      g->cv.wait(lock, [&] { return !g->queue.empty(); });
      job = g->queue.front();
      g->queue.pop_front();
    }
    bool last = job->last;
    try {
      job->work();
    } catch (const std::exception& e) {
      job->error = e.what();
    }
    tsfn.BlockingCall(job, [](Napi::Env env, Napi::Function, Job* j) {
      if (!j->last && --j->g->pending == 0) j->g->tsfn.Unref(env);
      if (j->error.empty()) j->deferred.Resolve(env.Undefined());
      else j->deferred.Reject(Napi::Error::New(env, j->error).Value());
      delete j;
    });
    if (last) {
      tsfn.Release();
      return;
    }
  }
}

Group* group_arg(const Napi::Value& v) {
  if (!v.IsExternal()) throw Error("distributed: expected a process group handle");
  Group* g = v.As<Napi::External<Group>>().Data();
  if (g->destroyed) throw Error("distributed: the process group was destroyed (call initProcessGroup again)");
  return g;
}

// Queues work on the group's thread and returns the Promise it settles. `op` names the
// collective in a failure's message; collectives are refused once one has failed.
Napi::Value submit(const Napi::Env& env, Group* g, const char* op, std::function<void()> work,
                   std::vector<Napi::Value> keep = {}, bool last = false) {
  Job* job = new Job(env);
  for (auto& v : keep) job->keep.push_back(Napi::Persistent(v.As<Napi::Object>()));
  job->last = last;
  job->g = g;
  std::string opname = op;
  job->work = [g, opname, last, work = std::move(work)] {
    if (!g->failed.empty() && !last) throw Error(g->failed.substr(std::strlen("nodegrad: ")));
    try {
      work();
    } catch (const Error& e) {
      throw;
    } catch (const std::exception& e) {
      g->failed = "nodegrad: " + explain_failure(g, opname.c_str(), e.what());
      throw std::runtime_error(g->failed);
    }
  };
  Napi::Value promise = job->deferred.Promise();
  if (g->pending++ == 0) g->tsfn.Ref(env);
  // the completion unrefs once nothing is pending, so an idle group does not keep Node alive
  {
    std::lock_guard<std::mutex> lock(g->mu);
    g->queue.push_back(job);
  }
  g->cv.notify_one();
  return promise;
}

template <typename T>
void reduce_fn(gloo::AllreduceOptions& o, int op) {
  if (op == 2) o.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::max<T>));
  else o.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
}

template <typename T>
void allreduce_typed(Group* g, T* p, size_t n, int op) {
  gloo::AllreduceOptions o(g->ctx);
  o.setOutput(p, n);
  reduce_fn<T>(o, op);
  o.setTag(g->tag++);
  o.setTimeout(g->timeout);
  gloo::allreduce(o);
  if (op == 1)  // avg
    for (size_t i = 0; i < n; i++) p[i] = static_cast<T>(p[i] / static_cast<T>(g->world_size));
}

void allreduce_raw(Group* g, DType dt, void* p, size_t n, int op) {
  switch (dt) {
    case DType::F32: allreduce_typed(g, static_cast<float*>(p), n, op); break;
    case DType::F64: allreduce_typed(g, static_cast<double*>(p), n, op); break;
    case DType::I32: allreduce_typed(g, static_cast<int32_t*>(p), n, op); break;
    default: throw Error("distributed: allReduce: unsupported dtype (expected float32, float64 or int32)");
  }
}

// (buffer, element offset, element count) at info[i..i+2], checked against the buffer.
struct Span {
  Buf b;
  char* ptr;
  size_t n;
};
// A CUDA buffer is accepted only by a backend 'nccl' group, on the group's device.
Buf collective_buf(const Group* g, const Napi::Value& v, const char* op, const char* what) {
  Buf b = to_buf(v, op, what);
  if (b.device < 0) return b;
  if (!g->nccl)
    throw Error(std::string("distributed: ") + op + ": the gloo backend takes CPU tensors (got " + what + " on cuda:" +
                std::to_string(b.device) + "; expected cpu: use .cpu(), or initProcessGroup({ backend: 'nccl' }))");
  if (b.device != g->device)
    throw Error(std::string("distributed: ") + op + ": " + what + " is on cuda:" + std::to_string(b.device) +
                " but this rank's NCCL communicator is on cuda:" + std::to_string(g->device) + " (LOCAL_RANK selects it)");
  return b;
}

Span span_at(const Group* g, const Napi::CallbackInfo& info, size_t i, const char* op) {
  Span s;
  s.b = collective_buf(g, info[i], op, "tensor");
  int64_t off = to_i64(info[i + 1], op, "offset");
  int64_t n = to_i64(info[i + 2], op, "count");
  check_extent(s.b, off, n, op, "tensor");
  s.ptr = static_cast<char*>(s.b.data) + off * dtype_size(s.b.dtype);
  s.n = static_cast<size_t>(n);
  return s;
}

// distInit({rank, worldSize, masterAddr, masterPort, timeoutMs}) -> [handle, Promise]
Napi::Value DistInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = info[0].As<Napi::Object>();
  auto* g = new Group();
  g->rank = static_cast<int>(to_i64(o.Get("rank"), "distInit", "rank"));
  g->world_size = static_cast<int>(to_i64(o.Get("worldSize"), "distInit", "worldSize"));
  g->master_addr = o.Get("masterAddr").As<Napi::String>().Utf8Value();
  g->master_port = static_cast<int>(to_i64(o.Get("masterPort"), "distInit", "masterPort"));
  g->timeout = std::chrono::milliseconds(to_i64(o.Get("timeoutMs"), "distInit", "timeoutMs"));
  if (o.Has("backend") && o.Get("backend").As<Napi::String>().Utf8Value() == "nccl") {
#if NG_HAS_CUDA
    g->nccl = true;
    g->device = static_cast<int>(to_i64(o.Get("device"), "distInit", "device"));
    std::string why;
    if (!cuda::nccl::load(&why)) {
      delete g;
      throw Error("distributed: backend 'nccl' needs CUDA tensors and libnccl.so.2 (" + why +
                  "); use backend 'gloo' for CPU tensors");
    }
#else
    delete g;
    throw Error("distributed: backend 'nccl' needs CUDA tensors and libnccl.so.2 (this build has no CUDA); use backend 'gloo' for CPU tensors");
#endif
  }
  // rank 0 binds the store here, on the JS thread, so "port in use" throws at once
  if (g->rank == 0) g->server = std::make_unique<dist::StoreServer>(g->master_addr, g->master_port, g->world_size);
  g->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function(), "nodegrad.distributed", 0, 1);
  g->tsfn.Unref(env);
  std::thread(worker, g).detach();
  Napi::Value promise = submit(env, g, "initProcessGroup", [g] {
    auto deadline = Clock::now() + g->timeout;
    g->store = std::make_unique<dist::StoreClient>(g->master_addr, g->master_port, g->timeout);
    g->store->hello(g->rank, g->world_size);
    while (true) {
      std::vector<int> joined = g->store->joined();
      if (static_cast<int>(joined.size()) >= g->world_size) break;
      if (Clock::now() >= deadline) {
        std::string list;
        for (int r : joined) list += (list.empty() ? "" : ",") + std::to_string(r);
        throw Error("distributed: initProcessGroup: timed out after " + std::to_string(g->timeout.count()) +
                    " ms waiting for every rank to join (got ranks [" + list + "]; expected worldSize " +
                    std::to_string(g->world_size) + ")");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    auto dev = gloo::transport::tcp::CreateDevice(device_attr(g->master_addr, g->master_port));
    auto ctx = std::make_shared<gloo::rendezvous::Context>(g->rank, g->world_size);
    ctx->setTimeout(g->timeout);
    try {
      ctx->connectFullMesh(*g->store, dev);
    } catch (const std::exception& e) {
      throw Error(explain_failure(g, "initProcessGroup", e.what()));
    }
    g->ctx = ctx;
#if NG_HAS_CUDA
    if (g->nccl) {
      // rank 0 makes the communicator's id and hands it out through the rendezvous store
      std::vector<char> id(cuda::nccl::kUniqueIdBytes);
      if (g->rank == 0) {
        cuda::nccl::unique_id(id.data());
        g->store->set("nodegrad/nccl/id", id);
      } else {
        id = g->store->get("nodegrad/nccl/id");
        if (id.size() != cuda::nccl::kUniqueIdBytes)
          throw Error("distributed: initProcessGroup: bad NCCL id from the store (got " + std::to_string(id.size()) +
                      " bytes; expected 128)");
      }
      g->comm = cuda::nccl::comm_init(g->device, g->world_size, g->rank, id.data());
    }
#endif
  });
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::External<Group>::New(env, g));
  out.Set(1u, promise);
  return out;
}

// distAllReduce(handle, buf, offset, count, op: 0 sum | 1 avg | 2 max)
Napi::Value DistAllReduce(const Napi::CallbackInfo& info) {
  Group* g = group_arg(info[0]);
  Span s = span_at(g, info, 1, "allReduce");
  int op = static_cast<int>(to_i64(info[4], "allReduce", "op"));
  return submit(info.Env(), g, "allReduce", [g, s, op] {
    if (s.n == 0) return;
#if NG_HAS_CUDA
    if (s.b.device >= 0) return cuda::nccl::all_reduce(g->comm, s.ptr, s.n, s.b.dtype, op, g->timeout);
#endif
    allreduce_raw(g, s.b.dtype, s.ptr, s.n, op);
  }, {info[1]});
}

// distBroadcast(handle, buf, offset, count, root)
Napi::Value DistBroadcast(const Napi::CallbackInfo& info) {
  Group* g = group_arg(info[0]);
  Span s = span_at(g, info, 1, "broadcast");
  int root = static_cast<int>(to_i64(info[4], "broadcast", "src"));
  return submit(info.Env(), g, "broadcast", [g, s, root] {
    if (s.n == 0) return;
#if NG_HAS_CUDA
    if (s.b.device >= 0) return cuda::nccl::broadcast(g->comm, s.ptr, s.n, s.b.dtype, root, g->timeout);
#endif
    gloo::BroadcastOptions o(g->ctx);
    o.setOutput(s.ptr, s.n * dtype_size(s.b.dtype));
    o.setRoot(root);
    o.setTag(g->tag++);
    o.setTimeout(g->timeout);
    gloo::broadcast(o);
  }, {info[1]});
}

// distAllGather(handle, in, inOffset, count, out, outOffset): out holds worldSize*count
Napi::Value DistAllGather(const Napi::CallbackInfo& info) {
  Group* g = group_arg(info[0]);
  Span in = span_at(g, info, 1, "allGather");
  Buf ob = collective_buf(g, info[4], "allGather", "output");
  if (ob.device != in.b.device || ob.dtype != in.b.dtype)
    throw Error("distributed: allGather: the output must be on the input's device with its dtype");
  int64_t ooff = to_i64(info[5], "allGather", "output offset");
  check_extent(ob, ooff, static_cast<int64_t>(in.n) * g->world_size, "allGather", "output");
  char* out = static_cast<char*>(ob.data) + ooff * dtype_size(ob.dtype);
  return submit(info.Env(), g, "allGather", [g, in, out] {
    if (in.n == 0) return;
#if NG_HAS_CUDA
    if (in.b.device >= 0) return cuda::nccl::all_gather(g->comm, in.ptr, out, in.n, in.b.dtype, g->timeout);
#endif
    size_t bytes = in.n * dtype_size(in.b.dtype);
    gloo::AllgatherOptions o(g->ctx);
    o.setInput(in.ptr, bytes);
    o.setOutput(out, bytes * g->world_size);
    o.setTag(g->tag++);
    o.setTimeout(g->timeout);
    gloo::allgather(o);
  }, {info[1], info[4]});
}

// distReduceScatter(handle, in, inOffset, count, out, outOffset, op): in holds
// worldSize*count elements; out receives this rank's reduced count elements. Runs as an
// all-reduce of a scratch copy (as torch's Gloo backend does for uneven layouts).
Napi::Value DistReduceScatter(const Napi::CallbackInfo& info) {
  Group* g = group_arg(info[0]);
  Span in = span_at(g, info, 1, "reduceScatter");
  Buf ob = collective_buf(g, info[4], "reduceScatter", "output");
  if (ob.device != in.b.device || ob.dtype != in.b.dtype)
    throw Error("distributed: reduceScatter: the output must be on the input's device with its dtype");
  int64_t ooff = to_i64(info[5], "reduceScatter", "output offset");
  int op = static_cast<int>(to_i64(info[6], "reduceScatter", "op"));
  size_t per = in.n / g->world_size;
  check_extent(ob, ooff, static_cast<int64_t>(per), "reduceScatter", "output");
  char* out = static_cast<char*>(ob.data) + ooff * dtype_size(ob.dtype);
  return submit(info.Env(), g, "reduceScatter", [g, in, out, per, op] {
    if (per == 0) return;
#if NG_HAS_CUDA
    if (in.b.device >= 0) return cuda::nccl::reduce_scatter(g->comm, in.ptr, out, per, in.b.dtype, op, g->timeout);
#endif
    size_t es = dtype_size(in.b.dtype);
    std::vector<char> scratch(in.ptr, in.ptr + in.n * es);
    allreduce_raw(g, in.b.dtype, scratch.data(), in.n, op);
    std::memcpy(out, scratch.data() + per * es * g->rank, per * es);
  }, {info[1], info[4]});
}

Napi::Value DistBarrier(const Napi::CallbackInfo& info) {
  Group* g = group_arg(info[0]);
  return submit(info.Env(), g, "barrier", [g] {
#if NG_HAS_CUDA
    if (g->comm) return cuda::nccl::barrier(g->comm, g->timeout);  // also waits for the device's queued work
#endif
    gloo::BarrierOptions o(g->ctx);
    o.setTag(g->tag++);
    o.setTimeout(g->timeout);
    gloo::barrier(o);
  });
}

// Closes the group: the queued collectives finish first; rank 0 keeps its store up until
// every other rank has said goodbye (or the timeout), so no rank loses it mid-shutdown.
Napi::Value DistDestroy(const Napi::CallbackInfo& info) {
  Group* g = group_arg(info[0]);
  g->destroyed = true;
  Napi::Value p = submit(info.Env(), g, "destroyProcessGroup", [g] {
#if NG_HAS_CUDA
    cuda::nccl::comm_destroy(g->comm);
    g->comm = nullptr;
#endif
    g->ctx.reset();
    if (g->store) g->store->bye();
    if (g->server) g->server->shutdown(g->timeout);
    g->store.reset();
    g->server.reset();
  }, {}, true);
  return p;
}

// distNcclInfo() -> { available, version, path, why }: whether backend 'nccl' can run here.
Napi::Value DistNcclInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
#if NG_HAS_CUDA
  std::string why;
  bool ok = cuda::nccl::load(&why);
  o.Set("available", ok);
  o.Set("version", cuda::nccl::version_string());
  o.Set("path", cuda::nccl::library_path());
  o.Set("why", why);
#else
  o.Set("available", false);
  o.Set("version", "");
  o.Set("path", "");
  o.Set("why", "this build has no CUDA");
#endif
  return o;
}

}  // namespace

void InitDist(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "distInit", DistInit);
  NG_EXPORT(exports, env, "distAllReduce", DistAllReduce);
  NG_EXPORT(exports, env, "distBroadcast", DistBroadcast);
  NG_EXPORT(exports, env, "distAllGather", DistAllGather);
  NG_EXPORT(exports, env, "distReduceScatter", DistReduceScatter);
  NG_EXPORT(exports, env, "distBarrier", DistBarrier);
  NG_EXPORT(exports, env, "distDestroy", DistDestroy);
  NG_EXPORT(exports, env, "distNcclInfo", DistNcclInfo);
}

}  // namespace ng
