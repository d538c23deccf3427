#include "bind/util.h"

namespace ng {

void InitLayernorm(Napi::Env env, Napi::Object exports) {}

}  // namespace ng
