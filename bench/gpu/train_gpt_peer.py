# PyTorch peer of bench/gpu/train-gpt.ts: the identical GPT-2 (pre-LN blocks, fused QKV,
# tanh GELU, tied head, no dropout), bf16 autocast, SDPA (flash) attention, fused AdamW,
# global-norm clipping, timed after warm-up, eager and torch.compile. Prints one JSON line.
import json, math, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "gpt2": dict(vocab=50257, block=1024, layers=12, heads=12, embd=768),
    "gpt2-medium": dict(vocab=50257, block=1024, layers=24, heads=16, embd=1024),
}

class Block(nn.Module):
    def __init__(s, C, H):
        super().__init__()
        s.ln1, s.ln2, s.H = nn.LayerNorm(C), nn.LayerNorm(C), H
        s.qkv, s.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        s.fc, s.fc2 = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
    def forward(s, x):
        B, T, C = x.shape
        q, k, v = s.qkv(s.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, s.H, C // s.H).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + s.proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + s.fc2(F.gelu(s.fc(s.ln2(x)), approximate="tanh"))

class GPT(nn.Module):
    def __init__(s, p, T):
        super().__init__()
        s.wte, s.wpe = nn.Embedding(p["vocab"], p["embd"]), nn.Embedding(max(T, 1), p["embd"])
        s.h = nn.ModuleList([Block(p["embd"], p["heads"]) for _ in range(p["layers"])])
        s.lnf = nn.LayerNorm(p["embd"])
    def forward(s, idx, targets):
        T = idx.shape[1]
        x = s.wte(idx) + s.wpe(torch.arange(T, device=idx.device))
        for b in s.h: x = b(x)
        logits = F.linear(s.lnf(x), s.wte.weight)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))

def run_case(c, steps, warmup, mode):
    torch.manual_seed(0)
    p = PRESETS[c["preset"]]
    model = GPT(p, c["seq"]).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if mode == "compile" else model
    x = torch.randint(0, p["vocab"], (c["batch"], c["seq"]), device="cuda")
    y = torch.randint(0, p["vocab"], (c["batch"], c["seq"]), device="cuda")
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=c.get("dtype", "bfloat16") == "bfloat16"):
            loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss
    for _ in range(warmup): step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps): step()
    torch.cuda.synchronize()
    ms = (time.perf_counter() - t0) * 1e3 / steps
    peak = torch.cuda.max_memory_allocated()
    del model, opt, fwd
    torch.cuda.empty_cache()
    return ms, peak

def main():
    args = json.loads(sys.argv[1])
    rows = []
    for c in args["cases"]:
        shape = f'{c["preset"]} B{c["batch"]}xT{c["seq"]}{" ckpt" if c.get("checkpoint") else ""}'
        for mode in args.get("modes", ["eager"]):
            try:
                ms, peak = run_case(c, args["steps"], args["warmup"], mode)
                rows.append({"shape": shape, "dtype": c.get("dtype", "bfloat16"), "mode": mode, "ms": ms, "peakBytes": peak})
            except Exception as e:  # report and go on (e.g. torch.compile unavailable)
                print(f"peer {mode} {shape} failed: {e}", file=sys.stderr)
    print(json.dumps({"torch": torch.__version__, "rows": rows}))

if __name__ == "__main__":
    main()
