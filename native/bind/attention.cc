// Attention exports. dims [BH, Tq, Tk, D, Dv] (optionally + [group, window]: BH / group kv
// slices for grouped-query attention, and a sliding window, 0 for none). out, lse, dout
// and the gradients are contiguous buffers starting at
// their first element; q, k, v are contiguous too unless a layout argument (last) gives
// them as strided [B, H, T, D] views (d contiguous), which only the CUDA kernels take:
// a view of a fused QKV projection then needs no copy. The mask is a strided view
// (buffer, element offset, strides over [...lead, Tq, Tk], 0 on broadcast dims). Every
// view is checked to stay inside its buffer. lse holds float32 on CUDA for
// float32/bfloat16/float16 inputs (float64 for float64), q's dtype on the CPU.
#include "bind/util.h"
#include "cpu/attention.h"
#include "cuda/attention.h"

namespace ng {

static const char* kOp = "scaledDotProductAttention";

static bool present(const Napi::Value& v) { return !v.IsNull() && !v.IsUndefined(); }

static Buf buf_of(const Napi::Value& v, DType dt, int64_t n, const char* what) {
  Buf b = to_buf(v, kOp, what);
  check_dtype(b, dt, kOp, what);
  check_extent(b, 0, n, kOp, what);
  return b;
}

// Reads (dims, scale, causal, mask | null, maskKind, maskOffset, maskLead, maskStrides,
// dropoutP, seed, offset) starting at info[i]; the mask buffer (if any) goes to *mask_buf.
static AttnArgs attn_args(const Napi::CallbackInfo& info, size_t i, DType dt, Buf* mask_buf) {
  AttnArgs a;
  a.dtype = dt;
  auto dims = to_i64_vec(info[i], kOp, "dims");
  if (dims.size() != 5 && dims.size() != 7)
    throw Error(std::string(kOp) + ": dims must be [BH, Tq, Tk, D, Dv] or [BH, Tq, Tk, D, Dv, group, window]");
  for (int64_t d : dims)
    if (d < 0) throw Error(std::string(kOp) + ": negative size");
  a.BH = dims[0], a.Tq = dims[1], a.Tk = dims[2], a.D = dims[3], a.Dv = dims[4];
  if (dims.size() == 7) {
    a.group = dims[5], a.window = dims[6];
    if (a.group < 1 || a.BH % a.group != 0)
      throw Error(std::string(kOp) + ": the kv-head group (got " + std::to_string(a.group) +
                  ") must divide the query slices (got " + std::to_string(a.BH) + ")");
  }
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
    *mask_buf = mb;
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

// q, k, v at info[0..2], with the optional layout
// [H, qOffset, qsb, qsh, qst, kOffset, ksb, ksh, kst, vOffset, vsb, vsh, vst].
struct Operands {
  Buf qb, kb, vb;
  const void *q = nullptr, *k = nullptr, *v = nullptr;
  bool dense = true;  // contiguous [BH, T, D] each
  bool strided = false;  // a layout argument was given
  cuda::AttnLayout layout;
  const cuda::AttnLayout* layout_ptr() const { return strided ? &layout : nullptr; }
};

static Operands operands(const Napi::CallbackInfo& info, const Napi::Value& layout, const AttnArgs& a) {
  Operands o;
  o.qb = to_buf(info[0], kOp, "q");
  o.kb = to_buf(info[1], kOp, "k");
  o.vb = to_buf(info[2], kOp, "v");
  check_dtype(o.kb, a.dtype, kOp, "k");
  check_dtype(o.vb, a.dtype, kOp, "v");
  if (!present(layout)) {
    check_extent(o.qb, 0, a.BH * a.Tq * a.D, kOp, "q");
    check_extent(o.kb, 0, a.BH / a.group * a.Tk * a.D, kOp, "k");
    check_extent(o.vb, 0, a.BH / a.group * a.Tk * a.Dv, kOp, "v");
    o.q = o.qb.data, o.k = o.kb.data, o.v = o.vb.data;
    return o;
  }
  auto L = to_i64_vec(layout, kOp, "q/k/v layout");
  if (L.size() != 13) throw Error(std::string(kOp) + ": layout must be [H, then offset, sb, sh, st for q, k and v]");
  const int64_t H = L[0];
  if (H <= 0 || a.BH % H != 0 || H % a.group != 0)
    throw Error(std::string(kOp) + ": heads must divide the batch and be a multiple of the kv-head group (got H = " +
                std::to_string(H) + ", BH = " + std::to_string(a.BH) + ", group = " + std::to_string(a.group) + ")");
  o.layout.H = H;
  o.strided = true;
  const int64_t B = a.BH / H;
  const Buf* bufs[3] = {&o.qb, &o.kb, &o.vb};
  const char* names[3] = {"q", "k", "v"};
  int64_t* strides[3] = {o.layout.q, o.layout.k, o.layout.v};
  const void** ptrs[3] = {&o.q, &o.k, &o.v};
  for (int x = 0; x < 3; ++x) {
    const int64_t T = x == 0 ? a.Tq : a.Tk, Dx = x == 2 ? a.Dv : a.D, Hx = x == 0 ? H : H / a.group;
    const int64_t* s = &L[static_cast<size_t>(2 + 4 * x)];
    View vw = make_view(*bufs[x], L[static_cast<size_t>(1 + 4 * x)], {B, Hx, T, Dx}, {s[0], s[1], s[2], 1}, kOp,
                        names[x]);
    *ptrs[x] = vw.data;
    for (int i = 0; i < 3; ++i) strides[x][i] = s[i];
    o.dense = o.dense && (T <= 1 || s[2] == Dx) && (Hx <= 1 || s[1] == T * Dx) && (B <= 1 || s[0] == Hx * T * Dx);
  }
  return o;
}

static void cpu_needs_dense(const Operands& o) {
  if (!o.dense) throw Error(std::string(kOp) + ": strided q/k/v views are taken by the CUDA kernels only (got a "
                                               "non-contiguous layout for CPU tensors)");
}

// attentionForward(q, k, v, out, lse, dims, scale, causal, mask|null, maskKind, maskOffset,
//                  maskLead, maskStrides, dropoutP, seed, offset[, layout])
static Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Buf qb = to_buf(info[0], kOp, "q");
  Buf mb;
  AttnArgs a = attn_args(info, 5, qb.dtype, &mb);
  Operands o = operands(info, info[16], a);
  const DType lse_dt = qb.device >= 0 && qb.dtype != DType::F64 ? DType::F32 : qb.dtype;
  Buf out = buf_of(info[3], qb.dtype, a.BH * a.Tq * a.Dv, "out");
  Buf lse = buf_of(info[4], lse_dt, a.BH * a.Tq, "lse");
  int dev = route(kOp, {&o.qb, &o.kb, &o.vb, &out, &lse, a.mask ? &mb : nullptr});
  if (dev >= 0) {
    NG_CUDA(cuda::attention_forward(a, o.q, o.k, o.v, out.data, lse.data, o.layout_ptr()));
  } else {
    cpu_needs_dense(o);
    attention_forward(a, o.q, o.k, o.v, out.data, lse.data);
  }
  return info.Env().Undefined();
}

// attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, dmask|null, dims, scale, causal,
//                   mask|null, maskKind, maskOffset, maskLead, maskStrides, dropoutP, seed, offset[, layout])
static Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Buf qb = to_buf(info[0], kOp, "q");
  Buf mb;
  AttnArgs a = attn_args(info, 10, qb.dtype, &mb);
  Operands o = operands(info, info[21], a);
  const DType dt = qb.dtype;
  const DType lse_dt = qb.device >= 0 && dt != DType::F64 ? DType::F32 : dt;
  Buf out = buf_of(info[3], dt, a.BH * a.Tq * a.Dv, "out");
  Buf lse = buf_of(info[4], lse_dt, a.BH * a.Tq, "lse");
  Buf dout = buf_of(info[5], dt, a.BH * a.Tq * a.Dv, "grad");
  Buf dq = buf_of(info[6], dt, a.BH * a.Tq * a.D, "dq");
  Buf dk = buf_of(info[7], dt, a.BH / a.group * a.Tk * a.D, "dk");
  Buf dv = buf_of(info[8], dt, a.BH / a.group * a.Tk * a.Dv, "dv");
  Buf dmask;
  const bool has_dmask = present(info[9]);
  if (has_dmask) dmask = buf_of(info[9], dt, a.BH * a.Tq * a.Tk, "dmask");
  int dev = route(kOp, {&o.qb, &o.kb, &o.vb, &out, &lse, &dout, &dq, &dk, &dv, has_dmask ? &dmask : nullptr,
                        a.mask ? &mb : nullptr});
  void* dm = has_dmask ? dmask.data : nullptr;
  if (dev >= 0) {
    NG_CUDA(cuda::attention_backward(a, o.q, o.k, o.v, out.data, lse.data, dout.data, dq.data, dk.data, dv.data, dm,
                                     o.layout_ptr()));
  } else {
    cpu_needs_dense(o);
    attention_backward(a, o.q, o.k, o.v, out.data, lse.data, dout.data, dq.data, dk.data, dv.data, dm);
  }
  return info.Env().Undefined();
}

void InitAttention(Napi::Env env, Napi::Object exports) {
  NG_EXPORT(exports, env, "attentionForward", AttentionForward);
  NG_EXPORT(exports, env, "attentionBackward", AttentionBackward);
}

}  // namespace ng
