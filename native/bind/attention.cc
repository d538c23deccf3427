// Attention exports. q, k, v, out, lse, dout and the gradients are contiguous typed
// arrays starting at their first element; the mask is a strided view (buffer, element
// offset, strides over [...lead, Tq, Tk], 0 on broadcast dims), checked to stay inside
// its buffer.
#include "bind/util.h"
#include "cpu/attention.h"

namespace ng {

static const char* kOp = "scaledDotProductAttention";

static bool present(const Napi::Value& v) { return !v.IsNull() && !v.IsUndefined(); }

static void* buf_of(const Napi::Value& v, DType dt, int64_t n, const char* what) {
  Buf b = to_buf(v, kOp, what);
  check_dtype(b, dt, kOp, what);
  check_extent(b, 0, n, kOp, what);
  return b.data;
}

// Reads (dims, scale, causal, mask | null, maskKind, maskOffset, maskLead, maskStrides,
// dropoutP, seed, offset) starting at info[i].
static AttnArgs attn_args(const Napi::CallbackInfo& info, size_t i, DType dt) {
  AttnArgs a;
  a.dtype = dt;
  auto dims = to_i64_vec(info[i], kOp, "dims");
  if (dims.size() != 5) throw Error(std::string(kOp) + ": dims must be [BH, Tq, Tk, D, Dv]");
  for (int64_t d : dims)
    if (d < 0) throw Error(std::string(kOp) + ": negative size");
  a.BH = dims[0], a.Tq = dims[1], a.Tk = dims[2], a.D = dims[3], a.Dv = dims[4];
  a.scale = to_f64(info[i + 1], kOp, "scale");
  a.causal = to_bool(info[i + 2]);
  if (present(info[i + 3])) {
    int64_t kind = to_i64(info[i + 4], kOp, "maskKind");
    if (kind != 1 && kind != 2) throw Error(std::string(kOp) + ": unknown mask kind");
    a.mask_kind = static_cast<AttnMask>(kind);
    Buf mb = to_buf(info[i + 3], kOp, "attnMask");
    check_dtype(mb, kind == 1 ? DType::Bool : dt, kOp, "attnMask");
    int64_t off = to_i64(info[i + 5], kOp, "attnMask offset");
    auto lead = to_i64_vec(info[i + 6], kOp, "attnMask lead shape");
    auto st = to_i64_vec(info[i + 7], kOp, "attnMask strides");
    int64_t n = 1;
    for (int64_t s : lead) n *= s;
    if (n != a.BH) throw Error(std::string(kOp) + ": attnMask lead shape does not match the batch");
    std::vector<int64_t> shape(lead);
    shape.push_back(a.Tq);
    shape.push_back(a.Tk);
    View mv = make_view(mb, off, shape, st, kOp, "attnMask");
    a.mask = mv.data;
    const size_t L = lead.size();
    a.mask_si = st[L];
    a.mask_sj = st[L + 1];
    a.mask_off.assign(static_cast<size_t>(a.BH), 0);
    for (int64_t bh = 0; bh < a.BH; ++bh) {
      int64_t rem = bh, o = 0;
      for (size_t d = L; d-- > 0;) {
        o += (rem % lead[d]) * st[d];
        rem /= lead[d];
      }
      a.mask_off[static_cast<size_t>(bh)] = o;
    }
  }
  a.dropout_p = to_f64(info[i + 8], kOp, "dropoutP");
  if (!(a.dropout_p >= 0 && a.dropout_p <= 1)) throw Error(std::string(kOp) + ": dropoutP must be in [0, 1]");
  a.seed = static_cast<uint64_t>(to_i64(info[i + 9], kOp, "seed"));
  a.seed_offset = static_cast<uint64_t>(to_i64(info[i + 10], kOp, "offset"));
  return a;
}

// attentionForward(q, k, v, out, lse, dims, scale, causal, mask|null, maskKind, maskOffset,
//                  maskLead, maskStrides, dropoutP, seed, offset)
static Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Buf q = to_buf(info[0], kOp, "q");
  AttnArgs a = attn_args(info, 5, q.dtype);
  check_extent(q, 0, a.BH * a.Tq * a.D, kOp, "q");
  const void* k = buf_of(info[1], q.dtype, a.BH * a.Tk * a.D, "k");
  const void* v = buf_of(info[2], q.dtype, a.BH * a.Tk * a.Dv, "v");
  void* out = buf_of(info[3], q.dtype, a.BH * a.Tq * a.Dv, "out");
  void* lse = buf_of(info[4], q.dtype, a.BH * a.Tq, "lse");
  attention_forward(a, q.data, k, v, out, lse);
  return info.Env().Undefined();
}

// attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, dmask|null, dims, scale, causal,
//                   mask|null, maskKind, maskOffset, maskLead, maskStrides, dropoutP, seed, offset)
static Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Buf q = to_buf(info[0], kOp, "q");
  AttnArgs a = attn_args(info, 10, q.dtype);
  const DType dt = q.dtype;
  check_extent(q, 0, a.BH * a.Tq * a.D, kOp, "q");
  const void* k = buf_of(info[1], dt, a.BH * a.Tk * a.D, "k");
  const void* v = buf_of(info[2], dt, a.BH * a.Tk * a.Dv, "v");
  const void* out = buf_of(info[3], dt, a.BH * a.Tq * a.Dv, "out");
  const void* lse = buf_of(info[4], dt, a.BH * a.Tq, "lse");
  const void* dout = buf_of(info[5], dt, a.BH * a.Tq * a.Dv, "grad");
  void* dq = buf_of(info[6], dt, a.BH * a.Tq * a.D, "dq");
  void* dk = buf_of(info[7], dt, a.BH * a.Tk * a.D, "dk");
  void* dv = buf_of(info[8], dt, a.BH * a.Tk * a.Dv, "dv");
  void* dmask = present(info[9]) ? buf_of(info[9], dt, a.BH * a.Tq * a.Tk, "dmask") : nullptr;
  attention_backward(a, q.data, k, v, out, lse, dout, dq, dk, dv, dmask);
  return info.Env().Undefined();
}

void InitAttention(Napi::Env env, Napi::Object exports) {
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForward));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward));
}

}  // namespace ng
