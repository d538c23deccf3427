// Module init: every kernel family registers its exports here, one line each.
#include <napi.h>

#include "bind/util.h"

#if NG_HAS_GLOO
namespace ng {
void InitDist(Napi::Env env, Napi::Object exports);  // native/distributed/group.cc
}
#endif

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  ng::InitCore(env, exports);
  ng::InitElementwise(env, exports);
  ng::InitRandom(env, exports);
  ng::InitReduce(env, exports);
  ng::InitGemm(env, exports);
  ng::InitSoftmax(env, exports);
  ng::InitLayernorm(env, exports);
  ng::InitLlama(env, exports);
  ng::InitEmbedding(env, exports);
  ng::InitLoss(env, exports);
  ng::InitAttention(env, exports);
  ng::InitIndex(env, exports);
  ng::InitConv(env, exports);
  ng::InitOptim(env, exports);
  ng::InitCuda(env, exports);
#if NG_HAS_GLOO
  ng::InitDist(env, exports);
#endif
  return exports;
}

NODE_API_MODULE(nodegrad, Init)
