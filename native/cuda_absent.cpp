// Linked instead of cuda/*.cu when the addon is built without nvcc.
#include "cuda_api.h"

namespace ng {
namespace cuda {

bool compiled() { return false; }
std::string compiled_archs() { return ""; }
int runtime_version() { return 0; }
int driver_version() { return 0; }
int device_count(std::string* why) {
  if (why) *why = "nodegrad was built without CUDA (no nvcc at build time)";
  return 0;
}
bool device_info(int, DeviceInfo*, std::string* why) {
  if (why) *why = "nodegrad was built without CUDA";
  return false;
}

}  // namespace cuda
}  // namespace ng
