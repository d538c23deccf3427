#include "bind/util.h"

namespace ng {

void InitAttention(Napi::Env env, Napi::Object exports) {}

}  // namespace ng
