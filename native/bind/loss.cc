#include "bind/util.h"

namespace ng {

void InitLoss(Napi::Env env, Napi::Object exports) {}

}  // namespace ng
