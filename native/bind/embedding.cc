#include "bind/util.h"

namespace ng {

void InitEmbedding(Napi::Env env, Napi::Object exports) {}

}  // namespace ng
