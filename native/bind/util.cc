#include "bind/util.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>
#include <limits>

#include "cuda/runtime.h"

namespace ng {

static std::string where(const char* op, const char* what) { return std::string(op) + ": " + what; }

void throw_native_error(napi_env env, const char* name, const std::exception* e) noexcept {
  // A fixed buffer: nothing here allocates, so this works when the heap does not.
  char msg[1024];
  const char* fn = name ? name : "native call";
  if (e && dynamic_cast<const std::bad_alloc*>(e))
    std::snprintf(msg, sizeof msg, "nodegrad: %s: out of memory (a native allocation failed)", fn);
  else if (e && std::strncmp(e->what(), "nodegrad: ", 10) == 0)
    std::snprintf(msg, sizeof msg, "%s", e->what());
  else
    std::snprintf(msg, sizeof msg, "nodegrad: %s: %s", fn, e ? e->what() : "an unknown native exception was thrown");
  const char* code = e && (dynamic_cast<const std::bad_alloc*>(e) || dynamic_cast<const OutOfMemory*>(e))
                         ? "ERR_NODEGRAD_OOM" : nullptr;
  napi_throw_error(env, code, msg);
}

// Type tag of the Externals that hold a cuda::DeviceBuffer (see bind/cuda.cc).
extern const napi_type_tag kDeviceBufferTag;

bool is_device_buffer(const Napi::Value& v) {
  if (!v.IsExternal()) return false;
  bool ok = false;
  return napi_check_object_type_tag(v.Env(), v, &kDeviceBufferTag, &ok) == napi_ok && ok;
}

Buf to_buf(const Napi::Value& v, const char* op, const char* what) {
  // Hot path: one napi_get_typedarray_info call gives type, length and the data pointer
  // (byte offset included); it fails without side effects on anything else.
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(v.Env(), v, &type, &length, &data, nullptr, nullptr) == napi_ok) {
    Buf b;
    switch (type) {
      case napi_float32_array: b.dtype = DType::F32; break;
      case napi_float64_array: b.dtype = DType::F64; break;
      case napi_int32_array: b.dtype = DType::I32; break;
      case napi_uint8_array: b.dtype = DType::Bool; break;
      case napi_uint16_array: b.dtype = DType::BF16; break;
      default: throw Error(where(op, what) + " has an unsupported typed array type");
    }
    b.data = data;
    b.length = length;
    return b;
  }
  if (is_device_buffer(v)) {
    auto* d = v.As<Napi::External<cuda::DeviceBuffer>>().Data();
    if (d == nullptr || d->freed) throw Error(where(op, what) + ": CUDA storage used after it was freed");
    Buf b;
    b.data = d->ptr;
    b.length = d->length;
    b.dtype = d->dtype;
    b.device = d->device;
    return b;
  }
  throw Error(where(op, what) + " must be a typed array or a CUDA buffer");
}

Buf to_cpu_buf(const Napi::Value& v, const char* op, const char* what) {
  Buf b = to_buf(v, op, what);
  if (b.device >= 0)
    throw Error(where(op, what) + " is on cuda:" + std::to_string(b.device) +
                ", but this op has no CUDA kernel yet; move the tensors with .cpu()");
  return b;
}

static void check_integer(double d, const char* op, const char* what) {
  // |d| <= 2^53 is false for NaN and infinities; then the cast is defined and exact for integers
  if (!(std::fabs(d) <= 9.007199254740992e15) || static_cast<double>(static_cast<int64_t>(d)) != d)
    throw Error(where(op, what) + " must be an integer");
}

// napi_get_value_double fails (without a pending exception) on anything but a number:
// one crossing instead of a type check plus a read.
static int64_t raw_to_i64(napi_env env, napi_value v, const char* op, const char* what) {
  double d = 0;
  if (v == nullptr || napi_get_value_double(env, v, &d) != napi_ok) throw Error(where(op, what) + " must be a number");
  check_integer(d, op, what);
  return static_cast<int64_t>(d);
}

int64_t to_i64(const Napi::Value& v, const char* op, const char* what) {
  return raw_to_i64(v.Env(), v, op, what);
}

double to_f64(const Napi::Value& v, const char* op, const char* what) {
  double d = 0;
  napi_value raw = v;
  if (raw == nullptr || napi_get_value_double(v.Env(), raw, &d) != napi_ok) throw Error(where(op, what) + " must be a number");
  return d;
}

bool to_bool(const Napi::Value& v) { return v.ToBoolean().Value(); }

// Reads an integer array (a JS array, an Int32Array, or a Float64Array of integers: the
// op layer packs shapes and strides into reused Float64Arrays, which cost one crossing
// instead of one per element) into out[0..cap). Returns the element count; a count above
// cap means nothing was read (the caller falls back).
static size_t read_i64s(napi_env env, napi_value v, int64_t* out, size_t cap, const char* op, const char* what) {
  if (v == nullptr) throw Error(where(op, what) + " must be an array of integers");
  napi_typedarray_type type;
  size_t len = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, v, &type, &len, &data, nullptr, nullptr) == napi_ok) {
    if (type == napi_int32_array) {
      if (len > cap) return len;
      const int32_t* p = static_cast<const int32_t*>(data);
      for (size_t i = 0; i < len; ++i) out[i] = p[i];
      return len;
    }
    if (type == napi_float64_array) {
      if (len > cap) return len;
      const double* p = static_cast<const double*>(data);
      for (size_t i = 0; i < len; ++i) {
        check_integer(p[i], op, what);
        out[i] = static_cast<int64_t>(p[i]);
      }
      return len;
    }
    throw Error(where(op, what) + " must be an array of integers");
  }
  bool is_array = false;
  if (napi_is_array(env, v, &is_array) != napi_ok || !is_array) throw Error(where(op, what) + " must be an array of integers");
  uint32_t n = 0;
  if (napi_get_array_length(env, v, &n) != napi_ok) throw Error(where(op, what) + " must be an array of integers");
  if (n > cap) return n;
  for (uint32_t i = 0; i < n; ++i) {
    napi_value e;
    if (napi_get_element(env, v, i, &e) != napi_ok) throw Error(where(op, what) + " must be an array of integers");
    out[i] = raw_to_i64(env, e, op, what);
  }
  return n;
}

std::vector<int64_t> to_i64_vec(const Napi::Value& v, const char* op, const char* what) {
  int64_t small[kMaxDims];
  size_t n = read_i64s(v.Env(), v, small, kMaxDims, op, what);
  if (n <= static_cast<size_t>(kMaxDims)) return std::vector<int64_t>(small, small + n);
  std::vector<int64_t> out(n);
  read_i64s(v.Env(), v, out.data(), n, op, what);
  return out;
}

void check_extent(const Buf& b, int64_t offset, int64_t n, const char* op, const char* what) {
  if (offset < 0 || n < 0 || static_cast<uint64_t>(offset + n) > b.length)
    throw Error(where(op, what) + ": view reaches outside its storage (offset " + std::to_string(offset) +
                ", " + std::to_string(n) + " elements, storage holds " + std::to_string(b.length) + ")");
}

void check_dtype(const Buf& b, DType dt, const char* op, const char* what) {
  if (b.dtype != dt)
    throw Error(where(op, what) + " has dtype " + dtype_name(b.dtype) + ", expected " + dtype_name(dt));
}

static View make_view_p(const Buf& b, int64_t offset, const int64_t* shape, size_t nshape, const int64_t* strides,
                        size_t nstrides, const char* op, const char* what) {
  if (nshape != nstrides) throw Error(where(op, what) + ": shape and strides differ in length");
  if (nshape > static_cast<size_t>(kMaxDims))
    throw Error(where(op, what) + ": at most " + std::to_string(kMaxDims) + " dimensions are supported");
  View v;
  v.dtype = b.dtype;
  v.device = b.device;
  v.ndim = static_cast<int>(nshape);
  int64_t lo = offset, hi = offset;
  bool empty = false;
  for (int i = 0; i < v.ndim; ++i) {
    if (shape[i] < 0) throw Error(where(op, what) + ": negative dimension");
    v.shape[i] = shape[i];
    v.strides[i] = strides[i];
    if (shape[i] == 0) empty = true;
  }
  int64_t numel = 1;
  for (int i = 0; i < v.ndim; ++i)
    if (__builtin_mul_overflow(numel, shape[i], &numel) || numel > (int64_t(1) << 53))
      throw Error(where(op, what) + ": too many elements");
  if (!empty) {
    // lo/hi: the lowest and highest element the view reaches (overflow-checked: strides
    // and offsets come from JavaScript).
    for (int i = 0; i < v.ndim; ++i) {
      int64_t span = 0;
      bool bad = __builtin_mul_overflow(shape[i] - 1, strides[i], &span);
      bad = bad || (span < 0 ? __builtin_add_overflow(lo, span, &lo) : __builtin_add_overflow(hi, span, &hi));
      if (bad) throw Error(where(op, what) + ": strides reach outside any storage");
    }
    if (lo < 0 || static_cast<uint64_t>(hi) >= b.length)
      throw Error(where(op, what) + ": view reaches outside its storage (elements " + std::to_string(lo) + ".." +
                  std::to_string(hi) + ", storage holds " + std::to_string(b.length) + ")");
  }
  // an empty view addresses nothing: keep its pointer inside the buffer whatever the offset
  v.data = empty ? b.data : static_cast<uint8_t*>(b.data) + offset * static_cast<int64_t>(dtype_size(b.dtype));
  return v;
}

View make_view(const Buf& b, int64_t offset, const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
               const char* op, const char* what) {
  return make_view_p(b, offset, shape.data(), shape.size(), strides.data(), strides.size(), op, what);
}

View view_at(const Napi::CallbackInfo& info, size_t i, const std::vector<int64_t>& shape, const char* op,
             const char* what) {
  Buf b = to_buf(info[i], op, what);
  int64_t off = to_i64(info[i + 1], op, what);
  // strides of up to kMaxDims dims are read onto the stack (no allocation per view)
  int64_t st[kMaxDims];
  size_t n = read_i64s(info.Env(), info[i + 2], st, kMaxDims, op, what);
  if (n > static_cast<size_t>(kMaxDims)) {
    std::vector<int64_t> big = to_i64_vec(info[i + 2], op, what);
    return make_view(b, off, shape, big, op, what);
  }
  return make_view_p(b, off, shape.data(), shape.size(), st, n, op, what);
}

// Per thread: each worker thread runs its own environment, which registers its own block.
static thread_local const double* g_block = nullptr;

void set_arg_block(const double* p) { g_block = p; }

void read_block(BlockArgs& g, int nviews, const char* op) {
  const double* b = g_block;
  if (b == nullptr) throw Error(std::string(op) + ": no argument block was registered (setArgBlock)");
  check_integer(b[0], op, "op");
  check_integer(b[1], op, "ndim");
  if (b[1] < 0 || b[1] > kMaxDims)
    throw Error(std::string(op) + ": at most " + std::to_string(kMaxDims) + " dimensions are supported");
  g.code = static_cast<int64_t>(b[0]);
  g.ndim = static_cast<int>(b[1]);
  for (int k = 0; k < nviews; ++k) {
    check_integer(b[2 + k], op, "offset");
    g.offset[k] = static_cast<int64_t>(b[2 + k]);
  }
  g.s0 = b[6];
  g.s1 = b[7];
  const double* sh = b + 8;
  for (int d = 0; d < g.ndim; ++d) {
    check_integer(sh[d], op, "shape");
    g.shape[d] = static_cast<int64_t>(sh[d]);
  }
  for (int k = 0; k < nviews; ++k) {
    const double* st = sh + g.ndim * (k + 1);
    for (int d = 0; d < g.ndim; ++d) {
      check_integer(st[d], op, "strides");
      g.strides[k][d] = static_cast<int64_t>(st[d]);
    }
  }
}

View block_view(const Napi::CallbackInfo& info, size_t i, const BlockArgs& g, int k, const char* op, const char* what) {
  Buf b = to_buf(info[i], op, what);
  return make_view_p(b, g.offset[k], g.shape, g.ndim, g.strides[k], g.ndim, op, what);
}

View contiguous_view(const Buf& b, const std::vector<int64_t>& shape, const char* op, const char* what) {
  std::vector<int64_t> strides(shape.size());
  int64_t s = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    s *= shape[i];
  }
  return make_view(b, 0, shape, strides, op, what);
}

static std::string device_name(int d) { return d < 0 ? std::string("cpu") : "cuda:" + std::to_string(d); }

template <class T>
static int route_impl(const char* op, std::initializer_list<const T*> xs) {
  int dev = -2;
  for (const T* x : xs) {
    if (x == nullptr) continue;
    if (dev == -2) dev = x->device;
    else if (x->device != dev)
      throw Error(std::string(op) + ": arguments are on different devices (" + device_name(dev) + " and " +
                  device_name(x->device) + "); move them with .to()");
  }
  if (dev < -1) dev = -1;
#if NG_HAS_CUDA
  if (dev >= 0) cuda::set_device(dev);
#endif
  return dev;
}
int route(const char* op, std::initializer_list<const Buf*> bufs) { return route_impl(op, bufs); }
int route(const char* op, std::initializer_list<const View*> views) { return route_impl(op, views); }

}  // namespace ng
