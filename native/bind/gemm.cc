#include "bind/util.h"

namespace ng {

void InitGemm(Napi::Env env, Napi::Object exports) {}

}  // namespace ng
