// Entries of the CUDA side that the binding calls. Plain C++ (no N-API, no CUDA
// headers), so native/ can include it whether or not CUDA is compiled in; without
// nvcc, native/cuda_absent.cpp provides the same entries reporting "not compiled".
#pragma once
#include <cstddef>
#include <string>

namespace ng {
namespace cuda {

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;
  size_t total_memory = 0;
  int multiprocessors = 0;
};

bool compiled();                      // CUDA kernels are part of this binary
std::string compiled_archs();         // e.g. "75;80;86;89;90"
int runtime_version();                // cudart version linked in (e.g. 13000), 0 when absent
// Number of usable devices; on failure returns 0 and sets `why` (no driver, too old, ...).
int device_count(std::string* why);
int driver_version();                 // 0 when no driver
bool device_info(int device, DeviceInfo* out, std::string* why);

}  // namespace cuda
}  // namespace ng
