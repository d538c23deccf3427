#!/usr/bin/python3
"""PyTorch peer of bench/train-gpt.ts: the identical GPT (pre-LN, tanh GELU, tied
embeddings, SDPA-equivalent causal attention), AdamW, global-norm clipping at 1.0, one
optimizer step per iteration on random int tokens. Reads {config, batch, steps, warmup,
threads} as JSON on stdin, prints {"msPerStep": [...], "torch": ..., "blas": ...}."""
import json
import math
import sys

from peer import time_steps


def gpt_model(c):
    """The GPT of bench/train-gpt.ts for config c (also the model of bench/distributed_peer.py's DDP rows)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    V, T, L, H, C = c['vocabSize'], c['blockSize'], c['nLayer'], c['nHead'], c['nEmbd']

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(C)
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)
            self.ln2 = nn.LayerNorm(C)
            self.fc = nn.Linear(C, 4 * C)
            self.proj = nn.Linear(4 * C, C)

        def forward(self, x):
            B, Tn, _ = x.shape
            q, k, v = self.c_attn(self.ln1(x)).split(C, dim=2)
            q = q.view(B, Tn, H, C // H).transpose(1, 2)
            k = k.view(B, Tn, H, C // H).transpose(1, 2)
            v = v.view(B, Tn, H, C // H).transpose(1, 2)
            if hasattr(F, 'scaled_dot_product_attention'):
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
                mask = torch.ones(Tn, Tn, dtype=torch.bool).tril()
                att = att.masked_fill(~mask, float('-inf')).softmax(-1)
                y = att @ v
            x = x + self.c_proj(y.transpose(1, 2).reshape(B, Tn, C))
            return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate='tanh'))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(T, C)
            self.h = nn.ModuleList([Block() for _ in range(L)])
            self.ln_f = nn.LayerNorm(C)

        def forward(self, idx, targets):
            pos = torch.arange(idx.shape[1])
            x = self.wte(idx) + self.wpe(pos)
            for b in self.h:
                x = b(x)
            logits = self.ln_f(x) @ self.wte.weight.t()
            return F.cross_entropy(logits.view(-1, V), targets.view(-1))

    return GPT()


def main():
    req = json.loads(sys.stdin.read())
    import torch
    torch.set_num_threads(req['threads'])
    torch.manual_seed(0)
    c = req['config']
    V, T = c['vocabSize'], c['blockSize']
    model = gpt_model(c)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    B = req['batch']
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))

    def step():
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    times = time_steps(step, req['warmup'], req['steps'])
    print(json.dumps({'msPerStep': times, 'torch': torch.__version__,
                      'params': sum(p.numel() for p in model.parameters())}))


if __name__ == '__main__':
    main()
