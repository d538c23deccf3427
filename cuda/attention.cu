// Checked entries of the CUDA attention family (see cuda/attention.h): argument checks,
// the kernel parameter block, per-slice mask offsets copied to the device, and the choice
// between the tensor-core flash kernels and the simple SIMT kernels.
#include <cmath>

#include "cuda/attention_kernels.cuh"

namespace ng {
namespace cuda {

namespace {

const char* kOp = "scaledDotProductAttention";

attn::Params make_params(const AttnArgs& a, const AttnLayout* lay) {
  NG_CHECK(a.dtype == DType::F32 || a.dtype == DType::F64 || a.dtype == DType::BF16 || a.dtype == DType::F16,
           std::string(kOp) + ": expected float32, float64, bfloat16 or float16 on CUDA (got " +
               dtype_name(a.dtype) + ")");
  NG_CHECK(a.BH >= 0 && a.Tq >= 0 && a.Tk >= 0 && a.D >= 0 && a.Dv >= 0, std::string(kOp) + ": negative size");
  NG_CHECK(a.mask_kind == AttnMask::None || static_cast<int64_t>(a.mask_off.size()) == a.BH,
           std::string(kOp) + ": mask offsets do not cover every slice");
  NG_CHECK(a.dropout_p >= 0 && a.dropout_p <= 1, std::string(kOp) + ": dropoutP must be in [0, 1]");
  NG_CHECK(a.group >= 1 && a.BH % a.group == 0, std::string(kOp) + ": the kv-head group (got " +
                                                    std::to_string(a.group) + ") must divide BH = " + std::to_string(a.BH));
  NG_CHECK(a.window >= 0, std::string(kOp) + ": negative sliding window");
  attn::Params p{};
  p.BH = a.BH, p.Tq = a.Tq, p.Tk = a.Tk, p.D = a.D, p.Dv = a.Dv;
  p.group = a.group, p.window = a.window, p.Hk = 1;
  if (lay) {
    NG_CHECK(lay->H > 0 && a.BH % lay->H == 0, std::string(kOp) + ": heads (got H = " + std::to_string(lay->H) +
                                                   ") must divide BH = " + std::to_string(a.BH));
    NG_CHECK(lay->H % a.group == 0, std::string(kOp) + ": the kv-head group (got " + std::to_string(a.group) +
                                        ") must divide the heads (got H = " + std::to_string(lay->H) + ")");
    p.H = lay->H;
    p.Hk = lay->H / a.group;
    for (int i = 0; i < 3; ++i) p.qs[i] = lay->q[i], p.ks[i] = lay->k[i], p.vs[i] = lay->v[i];
  } else {
    p.H = 1;
    p.qs[0] = a.Tq * a.D, p.qs[1] = 0, p.qs[2] = a.D;
    p.ks[0] = a.Tk * a.D, p.ks[1] = 0, p.ks[2] = a.D;
    p.vs[0] = a.Tk * a.Dv, p.vs[1] = 0, p.vs[2] = a.Dv;
  }
  p.scale = a.scale;
  p.causal = a.causal;
  p.mask_kind = static_cast<int>(a.mask_kind);
  p.mask = a.mask;
  p.mask_si = a.mask_si, p.mask_sj = a.mask_sj;
  p.dropout = a.dropout_p > 0;
  const double keep = 1 - a.dropout_p;
  p.seed = a.seed, p.seed_offset = a.seed_offset;
  // keep iff (x + 1) 2^-53 <= keep  <=>  x + 1 <= floor(keep 2^53)  (x + 1 is an integer)
  p.keep_thr = static_cast<uint64_t>(std::floor(keep * 9007199254740992.0));
  p.inv_keep = keep > 0 ? 1 / keep : 0;
  return p;
}

// Device scratch that lives until the entry returns (the kernels using it are queued by
// then; the allocator's stream-ordered reuse makes the early free safe).
struct Scratch {
  int dev;
  void* ptr = nullptr;
  Scratch(int d, size_t bytes) : dev(d) {
    if (bytes) ptr = alloc(dev, bytes, kOp);
  }
  ~Scratch() {
    if (ptr) free(dev, ptr);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// The per-slice mask offsets (the binding flattens the mask's broadcast lead dims into
// them) copied to the device.
void upload_mask_offsets(const AttnArgs& a, int dev, Scratch& s, attn::Params& p) {
  if (a.mask_kind == AttnMask::None || a.BH == 0) return;
  upload(dev, s.ptr, a.mask_off.data(), sizeof(int64_t) * a.mask_off.size());
  p.mask_off = static_cast<const int64_t*>(s.ptr);
}

size_t mask_bytes(const AttnArgs& a) {
  return a.mask_kind == AttnMask::None ? 0 : sizeof(int64_t) * static_cast<size_t>(a.BH);
}

}  // namespace

void attention_forward(const AttnArgs& a, const void* q, const void* k, const void* v, void* out, void* lse,
                       const AttnLayout* layout) {
  attn::Params p = make_params(a, layout);
  p.q = q, p.k = k, p.v = v, p.out = out, p.lse = lse;
  const int dev = current_device();
  Scratch offs(dev, mask_bytes(a));
  upload_mask_offsets(a, dev, offs, p);
  cudaStream_t s = stream();
  if (attn::flash_supported(p, a.dtype, compute_capability(dev)))
    attn::flash_forward(p, a.dtype, s);
  else
    attn::simple_forward(p, a.dtype, s);
}

void attention_backward(const AttnArgs& a, const void* q, const void* k, const void* v, const void* out,
                        const void* lse, const void* dout, void* dq, void* dk, void* dv, void* dmask,
                        const AttnLayout* layout) {
  attn::Params p = make_params(a, layout);
  p.q = q, p.k = k, p.v = v, p.o = out, p.lse = const_cast<void*>(lse), p.dout = dout;
  p.dq = dq, p.dk = dk, p.dv = dv, p.dmask = dmask;
  const int dev = current_device();
  Scratch offs(dev, mask_bytes(a));
  upload_mask_offsets(a, dev, offs, p);
  const size_t acc = a.dtype == DType::F64 ? sizeof(double) : sizeof(float);
  Scratch dsum(dev, acc * static_cast<size_t>(a.BH * a.Tq));
  p.dsum = dsum.ptr;
  cudaStream_t s = stream();
  attn::row_dot(p, a.dtype, s);
  // dmask (the gradient of a float mask, [BH, Tq, Tk]) is rare: the simple kernels write it.
  if (!dmask && attn::flash_supported(p, a.dtype, compute_capability(dev)))
    attn::flash_backward(p, a.dtype, s);
  else
    attn::simple_backward(p, a.dtype, s);
}

}  // namespace cuda
}  // namespace ng
