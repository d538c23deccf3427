#define NG_EW_NS generic
#include "cpu/elementwise_impl.h"
