// N-API boundary helpers: the only place JavaScript values become pointers and sizes.
// Every buffer argument is checked against the extent its view can reach, so a wrong
// shape or offset from JavaScript raises an Error instead of touching foreign memory.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "common.h"

namespace ng {

// A buffer argument: a CPU typed array (the storage of a CPU tensor).
struct Buf {
  void* data = nullptr;
  size_t length = 0;  // in elements
  DType dtype = DType::F32;
};

Buf to_buf(const Napi::Value& v, const char* op, const char* what);
int64_t to_i64(const Napi::Value& v, const char* op, const char* what);
double to_f64(const Napi::Value& v, const char* op, const char* what);
bool to_bool(const Napi::Value& v);
std::vector<int64_t> to_i64_vec(const Napi::Value& v, const char* op, const char* what);

// Builds a view from (buffer, element offset, shape, strides) and checks that every
// element it addresses lies inside the buffer.
View make_view(const Buf& b, int64_t offset, const std::vector<int64_t>& shape,
               const std::vector<int64_t>& strides, const char* op, const char* what);
// A view argument at info[i..i+2]: (typed array, element offset, strides), checked.
View view_at(const Napi::CallbackInfo& info, size_t i, const std::vector<int64_t>& shape, const char* op,
             const char* what);
// Contiguous view of `shape` at offset 0 (checked).
View contiguous_view(const Buf& b, const std::vector<int64_t>& shape, const char* op, const char* what);
// Checks that a buffer holds at least n elements of dtype dt starting at offset.
void check_extent(const Buf& b, int64_t offset, int64_t n, const char* op, const char* what);
void check_dtype(const Buf& b, DType dt, const char* op, const char* what);

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
