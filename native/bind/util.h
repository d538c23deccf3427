// N-API boundary helpers: the only place JavaScript values become pointers and sizes.
// Every buffer argument is checked against the extent its view can reach, so a wrong
// shape or offset from JavaScript raises an Error instead of touching foreign memory.
#pragma once
#include <napi.h>

#include <initializer_list>
#include <exception>
#include <type_traits>
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

// The argument block: a Float64Array JavaScript fills before calling a packed entry
// (binaryP, unaryP, ...), registered once per environment (thread) with setArgBlock. Each
// JavaScript argument costs a crossing and a typed-array query; numbers read from the
// block cost nothing, so a packed call passes only its buffers. Layout (doubles):
//   [0] op code, [1] ndim, [2 + k] element offset of view k (k < 4), [6], [7] scalars,
//   [8 .. 8+ndim) shape, [8 + ndim*(k+1) ..) strides of view k.
constexpr size_t kArgBlockLen = 8 + kMaxDims * 5;
struct BlockArgs {
  int64_t code = 0;
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t offset[4];
  int64_t strides[4][kMaxDims];
  double s0 = 0, s1 = 0;
};
// Reads the block for nviews views (integers checked); throws without a registered block.
void read_block(BlockArgs& g, int nviews, const char* op);
void set_arg_block(const double* p);
// View k of the block over the buffer argument info[i], checked as view_at checks.
View block_view(const Napi::CallbackInfo& info, size_t i, const BlockArgs& g, int k, const char* op, const char* what);

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

// Every exported function goes through guarded<F>: a C++ exception becomes a JS Error
// thrown with napi_throw_error, which needs no C++ allocation of its own, so an
// out-of-memory condition is reported ("nodegrad: out of memory allocating N bytes for
// matmul") instead of ending the process while the error itself is being built.
// Napi::Error (an exception already holding a JS value) passes through unchanged.
void throw_native_error(napi_env env, const char* name, const std::exception* e) noexcept;

template <auto F>
napi_value guarded_cb(napi_env env, napi_callback_info cbinfo) {
  const char* name = nullptr;
  try {
    Napi::CallbackInfo info(env, cbinfo);
    name = static_cast<const char*>(info.Data());
    if constexpr (std::is_void_v<decltype(F(info))>) {
      F(info);
      return nullptr;
    } else {
      return F(info);
    }
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    throw_native_error(env, name, &e);
  } catch (...) {
    throw_native_error(env, name, nullptr);
  }
  return nullptr;
}

// exports.Set(name, fn(...)) with the guard around F.
template <auto F>
Napi::Function guarded(Napi::Env env, const char* name) {
  napi_value fn;
  napi_status st = napi_create_function(env, name, NAPI_AUTO_LENGTH, guarded_cb<F>, const_cast<char*>(name), &fn);
  NAPI_THROW_IF_FAILED(env, st, Napi::Function());
  return Napi::Function(env, fn);
}
#define NG_EXPORT(exports, env, name, F) (exports).Set(name, ::ng::guarded<F>(env, name))

// Module registration: one Init function per kernel family (see binding.cc).
void InitCore(Napi::Env env, Napi::Object exports);
void InitElementwise(Napi::Env env, Napi::Object exports);
void InitRandom(Napi::Env env, Napi::Object exports);
void InitReduce(Napi::Env env, Napi::Object exports);
void InitGemm(Napi::Env env, Napi::Object exports);
void InitSoftmax(Napi::Env env, Napi::Object exports);
void InitLayernorm(Napi::Env env, Napi::Object exports);
void InitLlama(Napi::Env env, Napi::Object exports);
void InitEmbedding(Napi::Env env, Napi::Object exports);
void InitLoss(Napi::Env env, Napi::Object exports);
void InitAttention(Napi::Env env, Napi::Object exports);
void InitIndex(Napi::Env env, Napi::Object exports);
void InitConv(Napi::Env env, Napi::Object exports);
void InitOptim(Napi::Env env, Napi::Object exports);
void InitCuda(Napi::Env env, Napi::Object exports);

}  // namespace ng
