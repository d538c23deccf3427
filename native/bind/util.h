// N-API boundary helpers: the only place JavaScript values become pointers and sizes.
// Every buffer argument is checked against the extent its view can reach, so a wrong
// shape or offset from JavaScript raises an Error instead of touching foreign memory.
#pragma once
#include <napi.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "common.h"

namespace ng {

// A buffer argument: a CPU typed array (the storage of a CPU tensor) or a CUDA device
// buffer handle (a tagged External made by cudaAlloc, see bind/cuda.cc).
struct Buf {
  void* data = nullptr;
  size_t length = 0;  // in elements
  DType dtype = DType::F32;
  int device = -1;    // -1: CPU; N: CUDA device N
};

Buf to_buf(const Napi::Value& v, const char* op, const char* what);
// For ops with only a CPU kernel: a CUDA buffer is an Error naming the op.
Buf to_cpu_buf(const Napi::Value& v, const char* op, const char* what);
int64_t to_i64(const Napi::Value& v, const char* op, const char* what);
double to_f64(const Napi::Value& v, const char* op, const char* what);
bool to_bool(const Napi::Value& v);
// An integer list: a JS array, an Int32Array, or a Float64Array of integers.
std::vector<int64_t> to_i64_vec(const Napi::Value& v, const char* op, const char* what);

// Builds a view from (buffer, element offset, shape, strides) and checks that every
// element it addresses lies inside the buffer.
View make_view(const Buf& b, int64_t offset, const std::vector<int64_t>& shape,
               const std::vector<int64_t>& strides, const char* op, const char* what);
// A view argument at info[i..i+2]: (typed array, element offset, strides), checked. The
// strides are an integer list as to_i64_vec takes it.
View view_at(const Napi::CallbackInfo& info, size_t i, const std::vector<int64_t>& shape, const char* op,
             const char* what);
// Contiguous view of `shape` at offset 0 (checked).
View contiguous_view(const Buf& b, const std::vector<int64_t>& shape, const char* op, const char* what);
// Checks that a buffer holds at least n elements of dtype dt starting at offset.
void check_extent(const Buf& b, int64_t offset, int64_t n, const char* op, const char* what);
void check_dtype(const Buf& b, DType dt, const char* op, const char* what);

// Device routing (DESIGN.md: native/dispatch). Returns -1 when every argument is in CPU
// memory, the device index when every argument is on the same CUDA device (and makes
// that device current), and throws an Error naming the op otherwise. Null entries are
// skipped (optional arguments).
int route(const char* op, std::initializer_list<const Buf*> bufs);
int route(const char* op, std::initializer_list<const View*> views);
bool is_device_buffer(const Napi::Value& v);

// NG_CUDA(call): runs call when the addon was built with CUDA; otherwise throws (a
// device buffer cannot exist in such a build, so this is never reached in practice).
#if NG_HAS_CUDA
#define NG_CUDA(call) \
  do {                \
    call;             \
  } while (0)
#else
#define NG_CUDA(call) throw ::ng::Error("this build of nodegrad has no CUDA kernels")
#endif

// Module registration: one Init function per kernel family (see binding.cc).
void InitCore(Napi::Env env, Napi::Object exports);
void InitElementwise(Napi::Env env, Napi::Object exports);
void InitRandom(Napi::Env env, Napi::Object exports);
void InitReduce(Napi::Env env, Napi::Object exports);
void InitGemm(Napi::Env env, Napi::Object exports);
void InitSoftmax(Napi::Env env, Napi::Object exports);
void InitLayernorm(Napi::Env env, Napi::Object exports);
void InitEmbedding(Napi::Env env, Napi::Object exports);
void InitLoss(Napi::Env env, Napi::Object exports);
void InitAttention(Napi::Env env, Napi::Object exports);
void InitIndex(Napi::Env env, Napi::Object exports);
void InitConv(Napi::Env env, Napi::Object exports);
void InitOptim(Napi::Env env, Napi::Object exports);
void InitCuda(Napi::Env env, Napi::Object exports);

}  // namespace ng
