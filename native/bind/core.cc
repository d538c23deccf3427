#include "bind/util.h"
#include "cpu/gemm.h"
#include "cpu/peak.h"
#include "threadpool.h"

namespace ng {

static Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuFeatures& f = cpu_features();
  Napi::Object o = Napi::Object::New(env);
  o.Set("avx2", f.avx2);
  o.Set("fma", f.fma);
  o.Set("avx512f", f.avx512f);
  o.Set("threads", num_threads());
  o.Set("gemmKernel", gemm_kernel_name());
  return o;
}

// { ghz, fmaYmmPerCycle, fmaZmmPerCycle } measured now on this thread (~0.1 s).
static Napi::Value CpuPeakInfo(const Napi::CallbackInfo& info) {
  const CpuPeak p = measure_cpu_peak();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("ghz", p.ghz);
  o.Set("fmaYmmPerCycle", p.fma_ymm_per_cycle);
  o.Set("fmaZmmPerCycle", p.fma_zmm_per_cycle);
  return o;
}

static Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  int64_t n = to_i64(info[0], "setNumThreads", "n");
  if (n < 1 || n > 256) throw Error("setNumThreads: n must be in 1..256 (got " + std::to_string(n) + ")");
  set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

static Napi::Value NumThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), num_threads()); }

// Cheapest possible crossing, for measuring N-API overhead per call.
static Napi::Value Noop(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }

void InitCore(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "cpuInfo", CpuInfo);
  NG_EXPORT(exports, env, "cpuPeak", CpuPeakInfo);
  NG_EXPORT(exports, env, "setNumThreads", SetNumThreads);
  NG_EXPORT(exports, env, "numThreads", NumThreads);
  NG_EXPORT(exports, env, "noop", Noop);
}

}  // namespace ng
