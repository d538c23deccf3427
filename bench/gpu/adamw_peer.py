# PyTorch peer of bench/gpu/adamw.ts: torch.optim.AdamW(fused=True) over the GPT-2
# parameter shapes, timed like timeCuda (L2 flushed before each repetition, CUDA events,
# median). bench names: adamw.fused (plain step), adamw.fused.bf16copy (step, then the
# bf16 model copy with torch._foreach_copy_), adamw.fused.clip (clip_grad_norm_ with
# foreach, then the step), adamw.unfused (fused=False, foreach=False: one update per tensor).
# Argument: JSON {"cases": [{"bench", "model", "nLayer", "d"}], "quick": bool}.
# Prints {"torch", "rows": [{"bench", "shape", "dtype", "ms"}]} as its last line.
import json
import sys

import torch
from peer_timing import cuda_timer

args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
quick = bool(args.get("quick", False))
iters, reps = (3, 3) if quick else (10, 7)
timed = cuda_timer(iters, reps)


def gpt2_shapes(n_layer, d, vocab=50257, ctx=1024):
    s = [(vocab, d), (ctx, d)]
    for _ in range(n_layer):
        s += [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    s += [(d,), (d,)]
    return s




rows = []
for case in args.get("cases", []):
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(s, device="cuda") * 0.02) for s in gpt2_shapes(case["nLayer"], case["d"])]
    for p in ps:
        p.grad = torch.randn_like(p) * 1e-3
    bench = case["bench"]
    if bench == "adamw.unfused":
        opt = torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.1, fused=False, foreach=False)
    else:
        opt = torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.1, fused=True)
    if bench == "adamw.fused.bf16copy":
        copies = [torch.zeros_like(p, dtype=torch.bfloat16) for p in ps]

        def fn():
            opt.step()
            torch._foreach_copy_(copies, [p.detach() for p in ps])
    elif bench == "adamw.fused.clip":
        def fn():
            torch.nn.utils.clip_grad_norm_(ps, 1.0, foreach=True)
            opt.step()
    else:
        fn = opt.step
    rows.append({"bench": bench, "shape": case["model"], "dtype": "float32", "ms": timed(fn)})
    del opt, ps
    torch.cuda.empty_cache()
print(json.dumps({"torch": torch.__version__, "rows": rows}))
