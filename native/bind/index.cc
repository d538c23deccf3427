#include "bind/util.h"

namespace ng {

void InitIndex(Napi::Env env, Napi::Object exports) {}

}  // namespace ng
