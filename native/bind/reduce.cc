#include "bind/util.h"

namespace ng {

void InitReduce(Napi::Env env, Napi::Object exports) {}

}  // namespace ng
