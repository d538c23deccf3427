// cuBLASLt, opened at run time (dlopen + dlsym): nodegrad never links cuBLAS, so the addon
// loads on machines without it and then runs its own GEMM (cuda/gemm_mma.cu, gemm_simt.cu).
//
// Search order: $NODEGRAD_CUBLASLT (a path; "off" disables cuBLASLt), the sonames
// libcublasLt.so.13 / .so.12 / .so (LD_LIBRARY_PATH, ldconfig), /usr/local/cuda/lib64,
// /usr/local/cuda/targets/x86_64-linux/lib, then the pip wheels' directories (nvidia-cublas:
// site-packages/nvidia/{cublas,cu13,cu12}/lib under the Pythons of dynlib::python_roots()).
//
// Per device: one handle and a 32 MiB workspace. Per problem shape (dtype, layouts, sizes,
// leading dims, batch strides, pointer alignments, epilogue): a matmul descriptor, three
// layouts and the algorithm cuBLASLt's heuristic picked, queried once and cached.
//
// cuBLASLt is column-major; our C is row-major, so we ask for C^T = B^T A^T: D is N x M
// (ld = ldc), cuBLASLt's "A" is our B and its "B" is our A, each with a transpose flag
// instead of a copy. The bias of the epilogue then runs along D's rows = C's columns.
//
// Types come from our own declarations below (the values of cublasLt.h, ABI-stable since
// CUDA 11); when the header is present at build time they are checked against it.
#include <library_types.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "cuda/dynlib.h"
#include "cuda/gemm.h"
#include "cuda/gemm_internal.cuh"

#if defined(__has_include)
#if __has_include(<cublasLt.h>)
#include <cublasLt.h>
#define NG_HAVE_CUBLASLT_H 1
#endif
#endif

namespace ng {
namespace cuda {
namespace {

namespace lt {
using Status = int;
using Handle = void*;
using Desc = void*;
using Layout = void*;
using Pref = void*;
struct Algo {
  uint64_t data[8];
};
struct Heuristic {
  Algo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};
enum : int {
  kOpN = 0,
  kOpT = 1,
  kCompute32F = 68,
  kCompute32FFast16BF = 75,
  kCompute32FFastTF32 = 77,
  kCompute64F = 70,
  kDescTransA = 3,
  kDescTransB = 4,
  kDescEpilogue = 7,
  kDescBiasPointer = 8,
  kLayoutBatchCount = 5,
  kLayoutStridedBatchOffset = 6,
  kPrefMaxWorkspaceBytes = 1,
  kPrefMinAlignA = 5,
  kPrefMinAlignB = 6,
  kPrefMinAlignC = 7,
  kPrefMinAlignD = 8,
  kEpilogueDefault = 1,
  kEpilogueBias = 4,
  kEpilogueGeluBias = 36,
};
}  // namespace lt

#ifdef NG_HAVE_CUBLASLT_H
static_assert(lt::kOpT == CUBLAS_OP_T && lt::kCompute32F == CUBLAS_COMPUTE_32F &&
                  lt::kCompute32FFastTF32 == CUBLAS_COMPUTE_32F_FAST_TF32 &&
                  lt::kCompute32FFast16BF == CUBLAS_COMPUTE_32F_FAST_16BF && lt::kCompute64F == CUBLAS_COMPUTE_64F,
              "cublasLt enums");
static_assert(lt::kDescTransA == CUBLASLT_MATMUL_DESC_TRANSA && lt::kDescTransB == CUBLASLT_MATMUL_DESC_TRANSB &&
                  lt::kDescEpilogue == CUBLASLT_MATMUL_DESC_EPILOGUE &&
                  lt::kDescBiasPointer == CUBLASLT_MATMUL_DESC_BIAS_POINTER,
              "cublasLt matmul desc attributes");
static_assert(lt::kLayoutBatchCount == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT &&
                  lt::kLayoutStridedBatchOffset == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
              "cublasLt layout attributes");
static_assert(lt::kPrefMaxWorkspaceBytes == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES &&
                  lt::kPrefMinAlignA == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES &&
                  lt::kPrefMinAlignD == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
              "cublasLt preference attributes");
static_assert(lt::kEpilogueDefault == CUBLASLT_EPILOGUE_DEFAULT && lt::kEpilogueBias == CUBLASLT_EPILOGUE_BIAS &&
                  lt::kEpilogueGeluBias == CUBLASLT_EPILOGUE_GELU_BIAS,
              "cublasLt epilogues");
static_assert(sizeof(lt::Heuristic) == sizeof(cublasLtMatmulHeuristicResult_t), "heuristic result layout");
#endif

struct Api {
  void* lib = nullptr;
  std::string path, why;
  size_t version = 0;
  lt::Status (*create)(lt::Handle*) = nullptr;
  size_t (*get_version)() = nullptr;
  lt::Status (*desc_create)(lt::Desc*, int compute, int scale) = nullptr;
  lt::Status (*desc_destroy)(lt::Desc) = nullptr;
  lt::Status (*desc_set)(lt::Desc, int, const void*, size_t) = nullptr;
  lt::Status (*layout_create)(lt::Layout*, int type, uint64_t rows, uint64_t cols, int64_t ld) = nullptr;
  lt::Status (*layout_destroy)(lt::Layout) = nullptr;
  lt::Status (*layout_set)(lt::Layout, int, const void*, size_t) = nullptr;
  lt::Status (*pref_create)(lt::Pref*) = nullptr;
  lt::Status (*pref_destroy)(lt::Pref) = nullptr;
  lt::Status (*pref_set)(lt::Pref, int, const void*, size_t) = nullptr;
  lt::Status (*heuristic)(lt::Handle, lt::Desc, lt::Layout, lt::Layout, lt::Layout, lt::Layout, lt::Pref, int,
                          lt::Heuristic*, int*) = nullptr;
  lt::Status (*matmul)(lt::Handle, lt::Desc, const void*, const void*, lt::Layout, const void*, lt::Layout,
                       const void*, const void*, lt::Layout, void*, lt::Layout, const lt::Algo*, void*, size_t,
                       cudaStream_t) = nullptr;
};

constexpr size_t kWorkspaceBytes = 32u << 20;
constexpr int kMaxDevices = 64;
constexpr size_t kMaxPlans = 4096;

struct Plan {
  bool ok = false;
  lt::Desc desc = nullptr;
  lt::Layout la = nullptr, lb = nullptr, lc = nullptr;
  lt::Algo algo{};
  size_t workspace = 0;
};
using PlanKey = std::array<int64_t, 22>;

struct DeviceState {
  bool init = false;
  lt::Handle handle = nullptr;
  void* workspace = nullptr;
  std::string why;  // set when this device cannot use cuBLASLt
  std::map<PlanKey, Plan> plans;
};

std::mutex g_mu;
Api g_api;
bool g_tried = false;
DeviceState g_dev[kMaxDevices];

using dynlib::sym;

bool try_open(const std::string& path, std::string* err) {
  void* lib = dynlib::open(path, err);
  if (!lib) return false;
  Api a;
  a.lib = lib;
  bool ok = sym(lib, "cublasLtCreate", &a.create) && sym(lib, "cublasLtGetVersion", &a.get_version) &&
            sym(lib, "cublasLtMatmulDescCreate", &a.desc_create) &&
            sym(lib, "cublasLtMatmulDescDestroy", &a.desc_destroy) &&
            sym(lib, "cublasLtMatmulDescSetAttribute", &a.desc_set) &&
            sym(lib, "cublasLtMatrixLayoutCreate", &a.layout_create) &&
            sym(lib, "cublasLtMatrixLayoutDestroy", &a.layout_destroy) &&
            sym(lib, "cublasLtMatrixLayoutSetAttribute", &a.layout_set) &&
            sym(lib, "cublasLtMatmulPreferenceCreate", &a.pref_create) &&
            sym(lib, "cublasLtMatmulPreferenceDestroy", &a.pref_destroy) &&
            sym(lib, "cublasLtMatmulPreferenceSetAttribute", &a.pref_set) &&
            sym(lib, "cublasLtMatmulAlgoGetHeuristic", &a.heuristic) && sym(lib, "cublasLtMatmul", &a.matmul);
  if (!ok) {
    *err = path + " lacks a cuBLASLt entry point";
    dlclose(lib);
    return false;
  }
  a.version = a.get_version();
  // CUBLASLT_VERSION is major * 10000 + minor * 100 + patch (12.4.5 -> 120405).
  if (a.version < 110000) {  // cublasComputeType_t and these attributes arrived in CUDA 11
    *err = path + " is too old (version " + std::to_string(a.version) + ")";
    dlclose(lib);
    return false;
  }
  a.path = path;
  g_api = a;
  return true;
}

// Loads the library once per process (under g_mu).
void load_locked() {
  if (g_tried) return;
  g_tried = true;
  std::string err;
  const char* env = std::getenv("NODEGRAD_CUBLASLT");
  if (env && *env) {
    const std::string e = env;
    if (e == "0" || e == "off" || e == "none") {
      g_api.why = "disabled by NODEGRAD_CUBLASLT=" + e;
      return;
    }
    if (try_open(e, &err)) return;
    err = "NODEGRAD_CUBLASLT=" + e + ": " + err;
  }
  const char* names[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"};
  for (const char* n : names)
    if (try_open(n, &err)) return;
  for (const char* dir : {"/usr/local/cuda/lib64/", "/usr/local/cuda/targets/x86_64-linux/lib/"})
    for (const char* n : names)
      if (try_open(std::string(dir) + n, &err)) return;
  for (const std::string& r : dynlib::python_roots())
    for (const char* sub : {"/nvidia/cublas/lib/libcublasLt.so*", "/nvidia/cu13/lib/libcublasLt.so*",
                            "/nvidia/cu12/lib/libcublasLt.so*"})
      for (const std::string& p : dynlib::glob_paths(r + sub))
        if (try_open(p, &err)) return;
  g_api.why = "cuBLASLt not found (" + (err.empty() ? std::string("no candidate library") : err) + ")";
}

// The device's handle and workspace, created on first use (under g_mu). Null when unusable.
DeviceState* device_locked(int device) {
  load_locked();
  if (!g_api.lib || device < 0 || device >= kMaxDevices) return nullptr;
  DeviceState& d = g_dev[device];
  if (!d.init) {
    d.init = true;  // one attempt per device: a failed create leaves the own kernels in charge
    lt::Status st = g_api.create(&d.handle);
    if (st != 0) {
      d.handle = nullptr;
      d.why = "cublasLtCreate failed (status " + std::to_string(st) + ")";
      return nullptr;
    }
  }
  if (!d.handle) return nullptr;
  // Kept for the life of the process (the caching allocator's accounting shows it).
  if (!d.workspace) d.workspace = alloc(device, kWorkspaceBytes, "matmul (cuBLASLt workspace)");
  return &d;
}

int data_type(DType dt) {
  switch (dt) {
    case DType::F32: return CUDA_R_32F;
    case DType::F64: return CUDA_R_64F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default: return -1;
  }
}

// Largest power of two <= 256 dividing the address and the byte strides.
int64_t alignment(const void* p, int64_t ld, int64_t stride, int64_t es) {
  int64_t al = 256;
  const uint64_t addr = reinterpret_cast<uintptr_t>(p);
  while (al > 1 && (addr % al != 0 || (ld * es) % al != 0 || (stride * es) % al != 0)) al /= 2;
  return al;
}

void destroy_plan(Plan& pl) {
  if (pl.la) g_api.layout_destroy(pl.la);
  if (pl.lb) g_api.layout_destroy(pl.lb);
  if (pl.lc) g_api.layout_destroy(pl.lc);
  if (pl.desc) g_api.desc_destroy(pl.desc);
  pl = Plan{};
}

// Builds descriptors and queries the heuristic; pl.ok tells whether cuBLASLt can run it.
void make_plan(DeviceState& d, const GemmProblem& p, int compute, int scale, int epi, const void* bias,
               const int64_t (&al)[4], Plan& pl) {
  const int ty = data_type(p.dtype);
  const int32_t opa = p.tb ? lt::kOpT : lt::kOpN;  // cuBLASLt's A is our B
  const int32_t opb = p.ta ? lt::kOpT : lt::kOpN;  // cuBLASLt's B is our A
  const int32_t batch = static_cast<int32_t>(p.batch);
  bool ok = g_api.desc_create(&pl.desc, compute, scale) == 0;
  ok = ok && g_api.desc_set(pl.desc, lt::kDescTransA, &opa, sizeof(opa)) == 0;
  ok = ok && g_api.desc_set(pl.desc, lt::kDescTransB, &opb, sizeof(opb)) == 0;
  if (ok && epi != lt::kEpilogueDefault) {
    const uint32_t e = static_cast<uint32_t>(epi);
    ok = g_api.desc_set(pl.desc, lt::kDescEpilogue, &e, sizeof(e)) == 0 &&
         g_api.desc_set(pl.desc, lt::kDescBiasPointer, &bias, sizeof(bias)) == 0;
  }
  auto layout = [&](lt::Layout* l, uint64_t rows, uint64_t cols, int64_t ld, int64_t stride) {
    if (!ok) return;
    ok = g_api.layout_create(l, ty, rows, cols, ld) == 0;
    if (ok && batch > 1) {
      ok = g_api.layout_set(*l, lt::kLayoutBatchCount, &batch, sizeof(batch)) == 0 &&
           g_api.layout_set(*l, lt::kLayoutStridedBatchOffset, &stride, sizeof(stride)) == 0;
    }
  };
  layout(&pl.la, p.tb ? p.K : p.N, p.tb ? p.N : p.K, p.ldb, p.sb);
  layout(&pl.lb, p.ta ? p.M : p.K, p.ta ? p.K : p.M, p.lda, p.sa);
  layout(&pl.lc, p.N, p.M, p.ldc, p.sc);
  lt::Pref pref = nullptr;
  ok = ok && g_api.pref_create(&pref) == 0;
  if (ok) {
    const uint64_t ws = kWorkspaceBytes;
    const uint32_t a_al = static_cast<uint32_t>(al[1]), b_al = static_cast<uint32_t>(al[0]);
    const uint32_t c_al = static_cast<uint32_t>(al[2]);
    ok = g_api.pref_set(pref, lt::kPrefMaxWorkspaceBytes, &ws, sizeof(ws)) == 0 &&
         g_api.pref_set(pref, lt::kPrefMinAlignA, &a_al, sizeof(a_al)) == 0 &&
         g_api.pref_set(pref, lt::kPrefMinAlignB, &b_al, sizeof(b_al)) == 0 &&
         g_api.pref_set(pref, lt::kPrefMinAlignC, &c_al, sizeof(c_al)) == 0 &&
         g_api.pref_set(pref, lt::kPrefMinAlignD, &c_al, sizeof(c_al)) == 0;
  }
  lt::Heuristic h{};
  int found = 0;
  ok = ok && g_api.heuristic(d.handle, pl.desc, pl.la, pl.lb, pl.lc, pl.lc, pref, 1, &h, &found) == 0 && found > 0 &&
       h.state == 0 && h.workspaceSize <= kWorkspaceBytes;
  if (pref) g_api.pref_destroy(pref);
  if (!ok) {
    destroy_plan(pl);
    return;
  }
  pl.ok = true;
  pl.algo = h.algo;
  pl.workspace = h.workspaceSize;
}

}  // namespace

bool cublaslt_gemm(const GemmProblem& p, const void* bias, int epilogue) {
  const int ty = data_type(p.dtype);
  if (ty < 0) return false;
  // cuBLASLt takes int32 batch counts and positive leading dims; leave the odd cases to our kernels.
  if (p.batch > 0x7fffffff || p.lda <= 0 || p.ldb <= 0 || p.ldc <= 0 || p.sa < 0 || p.sb < 0 || p.sc < 0)
    return false;
  int compute = lt::kCompute32F, scale = CUDA_R_32F;
  if (p.dtype == DType::F64) {
    compute = lt::kCompute64F, scale = CUDA_R_64F;
  } else if (p.dtype == DType::F32) {
    const int mode = float32_matmul_precision();
    compute = mode == 1 ? lt::kCompute32FFastTF32 : mode == 2 ? lt::kCompute32FFast16BF : lt::kCompute32F;
  }
  const int epi = !bias ? lt::kEpilogueDefault
                        : epilogue == kEpilogueGeluTanh ? lt::kEpilogueGeluBias : lt::kEpilogueBias;
  const int64_t es = static_cast<int64_t>(dtype_size(p.dtype));
  const bool batched = p.batch > 1;
  const int64_t al[4] = {alignment(p.a, p.lda, batched ? p.sa : 0, es), alignment(p.b, p.ldb, batched ? p.sb : 0, es),
                         alignment(p.c, p.ldc, batched ? p.sc : 0, es), bias ? alignment(bias, 0, 0, es) : 0};
  const PlanKey key = {static_cast<int64_t>(p.dtype), compute, p.ta, p.tb, p.M, p.N, p.K, p.lda, p.ldb, p.ldc,
                       p.batch, p.sa, p.sb, p.sc, al[0], al[1], al[2], al[3], epi, 0, 0, 0};

  std::lock_guard<std::mutex> lock(g_mu);
  DeviceState* d = device_locked(p.device);
  if (!d) return false;
  auto it = d->plans.find(key);
  if (it == d->plans.end()) {
    if (d->plans.size() >= kMaxPlans) {  // shapes that keep changing: start over rather than grow
      for (auto& kv : d->plans) destroy_plan(kv.second);
      d->plans.clear();
    }
    it = d->plans.emplace(key, Plan{}).first;
    make_plan(*d, p, compute, scale, epi, bias, al, it->second);
  }
  Plan& pl = it->second;
  if (!pl.ok) return false;
  if (bias) {  // the descriptor is cached; the bias pointer is this call's
    lt::Status st = g_api.desc_set(pl.desc, lt::kDescBiasPointer, &bias, sizeof(bias));
    if (st != 0) throw Error("matmul: cublasLtMatmulDescSetAttribute(bias) failed (status " + std::to_string(st) + ")");
  }
  const float af = static_cast<float>(p.alpha), bf = static_cast<float>(p.beta);
  const double ad = p.alpha, bd = p.beta;
  const void* alpha = p.dtype == DType::F64 ? static_cast<const void*>(&ad) : static_cast<const void*>(&af);
  const void* beta = p.dtype == DType::F64 ? static_cast<const void*>(&bd) : static_cast<const void*>(&bf);
  // A beta of 0 never reads C, so C = D is safe even when C holds garbage.
  lt::Status st = g_api.matmul(d->handle, pl.desc, alpha, p.b, pl.la, p.a, pl.lb, beta, p.c, pl.lc, p.c, pl.lc,
                               &pl.algo, d->workspace, pl.workspace, stream());
  if (st != 0) {
    // The heuristic accepted the problem but the call did not (an alignment it could not
    // see, say): remember, and let the own kernels run it. A sticky CUDA error surfaces
    // at their launch check.
    destroy_plan(pl);
    return false;
  }
  return true;
}

std::string cublaslt_status(int device) {
  std::lock_guard<std::mutex> lock(g_mu);
  DeviceState* d = device_locked(device);
  if (d) return "cublasLt (" + g_api.path + ")";
  if (!g_api.lib) return "own (" + g_api.why + ")";
  if (device >= 0 && device < kMaxDevices && !g_dev[device].why.empty()) return "own (" + g_dev[device].why + ")";
  return "own (device " + std::to_string(device) + " cannot use cuBLASLt)";
}

}  // namespace cuda
}  // namespace ng
