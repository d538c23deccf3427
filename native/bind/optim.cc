#include "bind/util.h"

namespace ng {

void InitOptim(Napi::Env env, Napi::Object exports) {}

}  // namespace ng
