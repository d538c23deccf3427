# PyTorch side of bench/converge.ts: the same GPT (parameter names as nodegrad's), the
# initial weights and token windows nodegrad wrote, AdamW (betas 0.9/0.95, decoupled
# decay on every parameter), global-norm clipping; prints {torch, losses, ms}.
import json, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

spec = json.load(open(sys.argv[1]))
c, B, T, steps = spec["config"], spec["B"], spec["T"], spec["steps"]
dev = "cuda" if spec["device"] == "cuda" else "cpu"
C, H = c["nEmbd"], c["nHead"]

class Attn(nn.Module):
    def __init__(s):
        super().__init__(); s.cAttn = nn.Linear(C, 3 * C); s.cProj = nn.Linear(C, C)
    def forward(s, x):
        q, k, v = s.cAttn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch < 2.0
            att = (q @ k.transpose(-2, -1)) / (q.shape[-1] ** 0.5)
            att = att.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
            y = att.softmax(-1) @ v
        return s.cProj(y.transpose(1, 2).contiguous().view(B, T, C))

class MLP(nn.Module):
    def __init__(s):
        super().__init__(); s.cFc = nn.Linear(C, 4 * C); s.cProj = nn.Linear(4 * C, C)
    def forward(s, x):
        return s.cProj(F.gelu(s.cFc(x), approximate="tanh"))

class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.ln1 = nn.LayerNorm(C, eps=c.get("layerNormEps", 1e-5)); s.attn = Attn()
        s.ln2 = nn.LayerNorm(C, eps=c.get("layerNormEps", 1e-5)); s.mlp = MLP()
    def forward(s, x):
        x = x + s.attn(s.ln1(x))
        return x + s.mlp(s.ln2(x))

class GPT(nn.Module):
    def __init__(s):
        super().__init__()
        s.wte = nn.Embedding(c["vocabSize"], C); s.wpe = nn.Embedding(c["blockSize"], C)
        s.h = nn.ModuleList([Block() for _ in range(c["nLayer"])]); s.lnF = nn.LayerNorm(C, eps=c.get("layerNormEps", 1e-5))
    def forward(s, idx, tgt):
        x = s.wte(idx) + s.wpe(torch.arange(T, device=idx.device))
        for b in s.h: x = b(x)
        logits = F.linear(s.lnF(x), s.wte.weight)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), tgt.reshape(-1))

model = GPT()
raw = open(spec["work"] + "/init.bin", "rb").read()
sd = {}
for p in spec["params"]:
    n = 1
    for d in p["shape"]: n *= d
    sd[p["name"]] = torch.frombuffer(bytearray(raw[p["offset"]:p["offset"] + 4 * n]), dtype=torch.float32).view(p["shape"])
model.load_state_dict(sd, strict=True)
model = model.to(dev)
opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], betas=(0.9, 0.95), weight_decay=spec["weightDecay"], eps=1e-8)
batches = torch.frombuffer(bytearray(open(spec["work"] + "/batches.bin", "rb").read()), dtype=torch.int32).view(steps, B, T + 1).long()
losses = []
t0 = time.perf_counter()
for s in range(steps):
    w = batches[s].to(dev)
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=spec["bf16"]):
        loss = model(w[:, :T], w[:, 1:])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), spec["clip"])
    opt.step(); opt.zero_grad(set_to_none=True)
    losses.append(loss.detach())
losses = [float(l) for l in losses]
print(json.dumps({"torch": torch.__version__, "losses": losses, "ms": (time.perf_counter() - t0) * 1e3}))
