# PyTorch peer of bench/gpu/llama.ts: the Llama ops as Hugging Face's modeling_llama runs
# them in eager mode, on the same shapes, timed like timeCuda (L2 flushed before each
# repetition of back-to-back calls, CUDA events, median):
#   rmsnorm: LlamaRMSNorm.forward (float32 variance, rsqrt, cast back, times weight)
#   rope: apply_rotary_pos_emb on q with cos/sin precomputed (the rotary module's cost not counted)
#   swiglu: F.silu(gate) * up;  gqa: F.scaled_dot_product_attention(enable_gqa=True, is_causal)
#   (with a window: an explicit bool mask, as HF's sdpa path builds for Mistral)
# Argument: JSON {"cases": [{"bench", "shape", "dtype", "window"?}], "quick": bool}.
# Prints {"torch", "rows": [{"bench", "shape", "dtype", "ms"}]} as its last line.
import json
import sys

import torch
from peer_timing import cuda_timer
import torch.nn.functional as F

args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
quick = bool(args.get("quick", False))
DT = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def rms(x, w, eps=1e-6):
    dt = x.dtype
    h = x.to(torch.float32)
    var = h.pow(2).mean(-1, keepdim=True)
    return w * (h * torch.rsqrt(var + eps)).to(dt)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def make(case):
    bench, shape, dt = case["bench"], case["shape"], DT[case["dtype"]]
    bwd = bench.endswith("fwdbwd")
    torch.manual_seed(0)
    dev = dict(device="cuda", dtype=dt)
    if "rmsnorm" in bench:
        R, C = shape
        x, r, g = (torch.randn(R, C, **dev) for _ in range(3))
        w = torch.randn(C, **dev)
        if bench == "addrmsnorm.fwd":
            def f():
                with torch.no_grad():
                    rms(x + r, w)
            return f
        if not bwd:
            def f():
                with torch.no_grad():
                    rms(x, w)
            return f
        xg, wg = x.requires_grad_(True), w.requires_grad_(True)

        def f():
            xg.grad = wg.grad = None
            rms(xg, wg).backward(g)
        return f
    if bench.startswith("swiglu"):
        R, I = shape
        a, u, g = (torch.randn(R, I, **dev) for _ in range(3))
        if not bwd:
            def f():
                with torch.no_grad():
                    F.silu(a) * u
            return f
        ag, ug = a.requires_grad_(True), u.requires_grad_(True)

        def f():
            ag.grad = ug.grad = None
            (F.silu(ag) * ug).backward(g)
        return f
    if bench.startswith("rope"):
        B, H, T, D = shape
        base = torch.randn(B, T, H, D, **dev)
        g = torch.randn(B, H, T, D, **dev)
        inv = 1.0 / (500000 ** (torch.arange(0, D, 2, device="cuda", dtype=torch.float32) / D))
        freqs = torch.arange(T, device="cuda", dtype=torch.float32)[:, None] * inv[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(dt)[None, None], emb.sin().to(dt)[None, None]
        if not bwd:
            def f():
                with torch.no_grad():
                    q = base.transpose(1, 2)
                    q * cos + rotate_half(q) * sin
            return f
        bg = base.requires_grad_(True)

        def f():
            bg.grad = None
            q = bg.transpose(1, 2)
            (q * cos + rotate_half(q) * sin).backward(g)
        return f
    B, Hq, Hkv, T, D = shape
    q, g = torch.randn(B, Hq, T, D, **dev), torch.randn(B, Hq, T, D, **dev)
    k, v = torch.randn(B, Hkv, T, D, **dev), torch.randn(B, Hkv, T, D, **dev)
    W = case.get("window")
    mask = None
    if W:
        i = torch.arange(T, device="cuda")
        mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - W)
    kw = dict(enable_gqa=True, attn_mask=mask, is_causal=mask is None)
    if not bwd:
        def f():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, **kw)
        return f
    qg, kg, vg = (t.requires_grad_(True) for t in (q, k, v))

    def f():
        qg.grad = kg.grad = vg.grad = None
        F.scaled_dot_product_attention(qg, kg, vg, **kw).backward(g)
    return f


rows = []
for case in args.get("cases", []):
    heavy = case["bench"].startswith("gqa")
    timed = cuda_timer(*((3, 3) if quick else (10, 7))) if heavy else cuda_timer(*((5, 5) if quick else (20, 9)))
    fn = make(case)
    shape = "[" + ",".join(str(s) for s in case["shape"]) + "]" + (f" window {case['window']}" if case.get("window") else "")
    rows.append({"bench": case["bench"], "shape": shape, "dtype": case["dtype"], "ms": timed(fn)})
    del fn
    torch.cuda.empty_cache()
print(json.dumps({"torch": torch.__version__, "rows": rows}))
