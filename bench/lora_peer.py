#!/usr/bin/python3
"""PyTorch peer of bench/lora.ts: the same small GPT (pre-LN, tanh GELU, tied embeddings)
or BERT classifier, trained either in full or with LoRA written plainly: the base frozen
(requires_grad=False), each targeted Linear gains y += (x @ A.T @ B.T) * scale with A
kaiming-uniform [r, in] and B zeros [out, r] (trained B filled at random so the path is not
trivially zero), AdamW over the trainable tensors only, global-norm clipping at 1.0.

Reads {model: 'gpt'|'bert', config, batch, mode: 'full'|'lora', r, alpha, targets, steps,
warmup, threads} on stdin; prints {"msPerStep": [...], "torch", "blas", "threads",
"trainable", "stateBytes", "maxrssDeltaBytes"}. stateBytes is torch's own count of
parameter + gradient + AdamW-moment bytes after the last step; maxrssDeltaBytes is
peak-RSS growth (VmHWM, reset through /proc/self/clear_refs) from just before the model is built (process-wide:
includes activations and allocator slack)."""
import json
import math
import resource
import sys
import time


def _status(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss():
    """Resets the peak RSS (VmHWM) to the current RSS, so the peak after torch's import is what is measured; returns that RSS."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass
    return _status('VmRSS')


def peak_rss():
    return _status('VmHWM') or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    req = json.loads(sys.stdin.read())
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(req['threads'])
    torch.manual_seed(0)
    c = req['config']
    r, scale = req['r'], req['alpha'] / req['r']

    class LoraLinear(nn.Module):
        """base Linear (frozen) + low-rank path on the given output rows."""

        def __init__(self, base, parts):
            super().__init__()
            self.base = base
            self.parts = parts          # [(start, length)]
            self.A = nn.ParameterList()
            self.B = nn.ParameterList()
            for (_, n) in parts:
                a = torch.empty(r, base.in_features)
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
                self.A.append(nn.Parameter(a))
                self.B.append(nn.Parameter(torch.randn(n, r) * 0.01))

        def forward(self, x):
            y = self.base(x)
            if len(self.parts) == 1 and self.parts[0] == (0, self.base.out_features):
                return y + (x @ self.A[0].t() @ self.B[0].t()) * scale
            outs = []
            row = 0
            for (s, n), a, b in zip(self.parts, self.A, self.B):
                if s > row:
                    outs.append(y[..., row:s])
                outs.append(y[..., s:s + n] + (x @ a.t() @ b.t()) * scale)
                row = s + n
            if row < self.base.out_features:
                outs.append(y[..., row:])
            return torch.cat(outs, -1)

    if req['model'] == 'gpt':
        V, T, L, H, C = c['vocabSize'], c['blockSize'], c['nLayer'], c['nHead'], c['nEmbd']

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.ln_1 = nn.LayerNorm(C)
                self.c_attn = nn.Linear(C, 3 * C)
                self.c_proj = nn.Linear(C, C)
                self.ln_2 = nn.LayerNorm(C)
                self.c_fc = nn.Linear(C, 4 * C)
                self.mlp_c_proj = nn.Linear(4 * C, C)

            def forward(self, x):
                B, Tn, _ = x.shape
                q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
                q = q.view(B, Tn, H, C // H).transpose(1, 2)
                k = k.view(B, Tn, H, C // H).transpose(1, 2)
                v = v.view(B, Tn, H, C // H).transpose(1, 2)
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
                mask = torch.ones(Tn, Tn, dtype=torch.bool).tril()
                att = att.masked_fill(~mask, float('-inf')).softmax(-1)
                y = att @ v
                x = x + self.c_proj(y.transpose(1, 2).reshape(B, Tn, C))
                return x + self.mlp_c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate='tanh'))

        class GPT(nn.Module):
            def __init__(self):
                super().__init__()
                self.wte = nn.Embedding(V, C)
                self.wpe = nn.Embedding(T, C)
                self.h = nn.ModuleList([Block() for _ in range(L)])
                self.ln_f = nn.LayerNorm(C)

            def forward(self, idx, targets):
                x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
                for b in self.h:
                    x = b(x)
                logits = self.ln_f(x) @ self.wte.weight.t()
                return F.cross_entropy(logits.view(-1, V), targets.view(-1))

        rss0 = reset_peak_rss()
        model = GPT()
        Bn = req['batch']
        x = torch.randint(0, V, (Bn, T))
        y = torch.randint(0, V, (Bn, T))
        run = lambda: model(x, y)
        if req['mode'] == 'lora':
            for p in model.parameters():
                p.requires_grad = False
            names = {'c_attn': 'c_attn', 'c_proj': 'c_proj', 'c_fc': 'c_fc', 'mlp.c_proj': 'mlp_c_proj'}
            for blk in model.h:
                for t in req['targets']:
                    attr = names[t]
                    base = getattr(blk, attr)
                    setattr(blk, attr, LoraLinear(base, [(0, base.out_features)]))
    else:
        Hd, L, NH, I, V, P = c['hiddenSize'], c['numHiddenLayers'], c['numAttentionHeads'], c['intermediateSize'], c['vocabSize'], c['maxPositionEmbeddings']
        T = req['seqLen']

        class Layer(nn.Module):
            def __init__(self):
                super().__init__()
                # query|key|value as one Linear, as nodegrad holds them (LoRA on row slices)
                self.qkv = nn.Linear(Hd, 3 * Hd)
                self.out = nn.Linear(Hd, Hd)
                self.ln1 = nn.LayerNorm(Hd, eps=1e-12)
                self.inter = nn.Linear(Hd, I)
                self.output = nn.Linear(I, Hd)
                self.ln2 = nn.LayerNorm(Hd, eps=1e-12)

            def forward(self, x, bias):
                B, Tn, _ = x.shape
                q, k, v = self.qkv(x).split(Hd, dim=2)
                q = q.view(B, Tn, NH, Hd // NH).transpose(1, 2)
                k = k.view(B, Tn, NH, Hd // NH).transpose(1, 2)
                v = v.view(B, Tn, NH, Hd // NH).transpose(1, 2)
                att = ((q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1))) + bias).softmax(-1)
                y = (att @ v).transpose(1, 2).reshape(B, Tn, Hd)
                x = self.ln1(x + self.out(y))
                return self.ln2(x + self.output(F.gelu(self.inter(x))))

        class Bert(nn.Module):
            def __init__(self):
                super().__init__()
                self.word = nn.Embedding(V, Hd)
                self.pos = nn.Embedding(P, Hd)
                self.typ = nn.Embedding(2, Hd)
                self.ln = nn.LayerNorm(Hd, eps=1e-12)
                self.layers = nn.ModuleList([Layer() for _ in range(L)])
                self.pooler = nn.Linear(Hd, Hd)
                self.classifier = nn.Linear(Hd, c['numLabels'])

            def forward(self, ids, mask, labels):
                Tn = ids.shape[1]
                x = self.ln(self.word(ids) + self.pos(torch.arange(Tn)) + self.typ(torch.zeros_like(ids)))
                bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
                for l in self.layers:
                    x = l(x, bias)
                pooled = torch.tanh(self.pooler(x[:, 0]))
                return F.cross_entropy(self.classifier(pooled), labels)

        rss0 = reset_peak_rss()
        model = Bert()
        Bn = req['batch']
        ids = torch.randint(0, V, (Bn, T))
        mask = torch.ones(Bn, T, dtype=torch.int64)
        labels = torch.randint(0, c['numLabels'], (Bn,))
        run = lambda: model(ids, mask, labels)
        if req['mode'] == 'lora':
            for p in model.parameters():
                p.requires_grad = False
            for p in model.classifier.parameters():   # SEQ_CLS: the head trains in full
                p.requires_grad = True
            rows = {'query': 0, 'key': 1, 'value': 2}
            parts = [(rows[t] * Hd, Hd) for t in req['targets']]
            for l in model.layers:
                l.qkv = LoraLinear(l.qkv, sorted(parts))

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)

    def step():
        loss = run()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(req['warmup']):
        step()
    times = []
    for _ in range(req['steps']):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1000)
    # parameters + gradients + AdamW moments, counted by torch (grads set to none by zero_grad: count as one per trainable)
    nbytes = lambda t: t.numel() * t.element_size()
    state = sum(nbytes(v) for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0)
    state_bytes = sum(nbytes(p) for p in model.parameters()) + sum(nbytes(p) for p in params) + state
    rss = peak_rss() - rss0
    print(json.dumps({'msPerStep': times, 'torch': torch.__version__, 'threads': torch.get_num_threads(),
                      'trainable': sum(p.numel() for p in params), 'stateBytes': state_bytes, 'maxrssDeltaBytes': rss}))


if __name__ == '__main__':
    main()
