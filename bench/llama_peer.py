#!/usr/bin/python3
"""PyTorch peer of bench/llama.ts: the same Llama block written plainly (RMSNorm, rotary
with rotate_half, grouped-query attention by repeat_interleave, SwiGLU, tied embeddings),
random weights. Times greedy generation with a KV cache grown by torch.cat (time to first
token over the prompt, then decode tokens/s) and a training step (forward, backward,
clip 1.0, AdamW). Reads the request as JSON on stdin, prints one JSON line."""
import json
import math
import sys
import time

from peer import time_steps


def main():
    req = json.loads(sys.stdin.read())
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(req['threads'])
    torch.manual_seed(0)
    c = req['config']
    V, H, I, L = c['vocabSize'], c['hiddenSize'], c['intermediateSize'], c['numHiddenLayers']
    nh, nkv = c['numAttentionHeads'], c['numKeyValueHeads']
    D = H // nh
    eps, theta = c['rmsNormEps'], c['ropeTheta']
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2).float() / D))

    class RMSNorm(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))

        def forward(self, x):
            return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def rotate_half(x):
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return torch.cat((-x2, x1), dim=-1)

    def rope(x, pos):
        f = pos[:, None].float() * inv_freq[None, :]
        emb = torch.cat((f, f), dim=-1)
        return x * emb.cos() + rotate_half(x) * emb.sin()

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(H, nh * D, bias=False)
            self.k = nn.Linear(H, nkv * D, bias=False)
            self.v = nn.Linear(H, nkv * D, bias=False)
            self.o = nn.Linear(nh * D, H, bias=False)
            self.gate = nn.Linear(H, I, bias=False)
            self.up = nn.Linear(H, I, bias=False)
            self.down = nn.Linear(I, H, bias=False)
            self.n1 = RMSNorm(H)
            self.n2 = RMSNorm(H)

        def forward(self, x, pos, cache):
            B, T, _ = x.shape
            h = self.n1(x)
            q = rope(self.q(h).view(B, T, nh, D).transpose(1, 2), pos)
            k = rope(self.k(h).view(B, T, nkv, D).transpose(1, 2), pos)
            v = self.v(h).view(B, T, nkv, D).transpose(1, 2)
            if cache is not None:
                if 'k' in cache:
                    k = torch.cat([cache['k'], k], 2)
                    v = torch.cat([cache['v'], v], 2)
                cache['k'], cache['v'] = k, v
            S = k.shape[2]
            k = k.repeat_interleave(nh // nkv, dim=1)
            v = v.repeat_interleave(nh // nkv, dim=1)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(D)
            if T > 1:
                mask = torch.ones(T, S, dtype=torch.bool).tril(S - T)
                att = att.masked_fill(~mask, float('-inf'))
            y = att.softmax(-1) @ v
            x = x + self.o(y.transpose(1, 2).reshape(B, T, nh * D))
            h = self.n2(x)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, H)
            self.layers = nn.ModuleList([Layer() for _ in range(L)])
            self.norm = RMSNorm(H)
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)

        def forward(self, ids, past, caches=None):
            pos = torch.arange(past, past + ids.shape[1])
            x = self.embed(ids)
            for i, layer in enumerate(self.layers):
                x = layer(x, pos, caches[i] if caches is not None else None)
            return self.norm(x) @ self.embed.weight.t()

    model = Llama()
    out = {'torch': torch.__version__}

    prompt = torch.tensor([[(i * 7919) % V for i in range(req['prompt'])]])
    ttft, rate = [], []
    model.eval()
    with torch.no_grad():
        for _ in range(req['reps']):
            caches = [dict() for _ in range(L)]
            t0 = time.perf_counter()
            logits = model(prompt, 0, caches)[:, -1]
            nxt = int(logits.argmax(-1))
            t1 = time.perf_counter()
            past = prompt.shape[1]
            for _ in range(1, req['newTokens']):
                logits = model(torch.tensor([[nxt]]), past, caches)[:, -1]
                nxt = int(logits.argmax(-1))
                past += 1
            t2 = time.perf_counter()
            ttft.append((t1 - t0) * 1000)
            rate.append((req['newTokens'] - 1) / (t2 - t1))
    out['ttftMs'] = sorted(ttft)[len(ttft) // 2]
    out['decodeTokPerSec'] = sorted(rate)[len(rate) // 2]

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    x = torch.randint(0, V, (req['batch'], req['seqLen']))

    def step():
        logits = model(x, 0)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    times = time_steps(step, req['warmup'], req['steps'])
    out['trainMs'] = sorted(times)[len(times) // 2]
    print(json.dumps(out))


if __name__ == '__main__':
    try:
        main()
    except Exception as e:  # reported to the bench, which then shows no peer
        print(json.dumps({'error': str(e)}))
