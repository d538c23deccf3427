#include "bind/util.h"
#include "cuda_api.h"

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

void InitCuda(Napi::Env env, Napi::Object exports) { exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo)); }

}  // namespace ng
