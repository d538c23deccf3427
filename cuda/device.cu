// Device discovery. cudart is linked statically; libcuda is opened by cudart at the
// first call, so a machine without a driver gets cudaErrorInsufficientDriver (or
// cudaErrorNoDevice) here, reported as a reason string, never an abort.
#include <cuda_runtime.h>

#include "cuda_api.h"

namespace ng {
namespace cuda {

bool compiled() { return true; }

std::string compiled_archs() {
#ifdef NG_CUDA_ARCHS
  return NG_CUDA_ARCHS;
#else
  return "";
#endif
}

int runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) return 0;
  return v;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) return 0;
  return v;
}

int device_count(std::string* why) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky-free error state
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device found";
  return n;
}

bool device_info(int device, DeviceInfo* out, std::string* why) {
  cudaDeviceProp p;
  cudaError_t e = cudaGetDeviceProperties(&p, device);
  if (e != cudaSuccess) {
    if (why) *why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    cudaGetLastError();
    return false;
  }
  out->name = p.name;
  out->major = p.major;
  out->minor = p.minor;
  out->total_memory = p.totalGlobalMem;
  out->multiprocessors = p.multiProcessorCount;
  return true;
}

}  // namespace cuda
}  // namespace ng
