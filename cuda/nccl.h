// NCCL collectives on CUDA buffers, for the process group (native/distributed/group.cc).
// Plain C++ (no CUDA, NCCL or N-API headers); compiled only in CUDA builds (NG_HAS_CUDA).
// libnccl is opened at run time (cuda/nccl.cu): nothing links it at build time.
//
// Every collective is queued on the device's stream (cuda/runtime.h), so it runs after
// every kernel already issued there, then waited for on the calling thread (the group's
// worker thread) while the communicator's asynchronous error is polled: a dead peer or
// a timeout aborts the communicator and throws NcclFailure (the group names the rank).
#pragma once
#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "common.h"

namespace ng {
namespace cuda {
namespace nccl {

constexpr size_t kUniqueIdBytes = 128;  // sizeof(ncclUniqueId)

// A failure of the transport or of a peer (not of the arguments): the communicator has
// been aborted and the group is unusable.
struct NcclFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Loads libnccl once per process. False when it cannot be used; `why` then says what was
// searched ("not found: searched NODEGRAD_NCCL (unset), libnccl.so.2, ...").
bool load(std::string* why);
int version();             // ncclGetVersion's code (2.19.3 -> 21903); 0 when not loaded
std::string library_path();
std::string version_string();  // "2.19.3"

void unique_id(char out[kUniqueIdBytes]);

struct Communicator;
// One communicator of `world_size` ranks on `device` (blocks until every rank has called it).
Communicator* comm_init(int device, int world_size, int rank, const char id[kUniqueIdBytes]);
void comm_destroy(Communicator* c);  // also after a failure (the communicator is then already aborted)

// op: 0 sum, 1 avg, 2 max. Counts are elements of dt (float32, float64, int32, bfloat16, float16).
void all_reduce(Communicator* c, void* buf, size_t n, DType dt, int op, std::chrono::milliseconds timeout);
void broadcast(Communicator* c, void* buf, size_t n, DType dt, int root, std::chrono::milliseconds timeout);
// out holds world_size * n elements (rank order).
void all_gather(Communicator* c, const void* in, void* out, size_t n, DType dt, std::chrono::milliseconds timeout);
// in holds world_size * per elements; out receives this rank's `per` reduced elements.
void reduce_scatter(Communicator* c, const void* in, void* out, size_t per, DType dt, int op,
                    std::chrono::milliseconds timeout);
void barrier(Communicator* c, std::chrono::milliseconds timeout);

}  // namespace nccl
}  // namespace cuda
}  // namespace ng
