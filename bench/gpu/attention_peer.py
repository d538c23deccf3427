# PyTorch peer of bench/gpu/attention.ts: F.scaled_dot_product_attention (bfloat16,
# [B, H, T, D] with B*T = 16384 and H*D = 2048), forward and forward+backward on the
# same shapes, timed like timeCuda (L2 flushed before each repetition of back-to-back
# calls, CUDA events, median); the backward row is (fwd+bwd) - fwd; peak memory of a
# forward+backward at T = 8192 above the inputs.
# Argument: JSON {"cases": [{"T", "D", "causal"}], "quick": bool}.
# Prints {"torch", "rows": [{"bench", "shape", "dtype", "ms", "peakMiB"?}]} as its last line.
import json
import sys

import torch
from peer_timing import cuda_timer
import torch.nn.functional as F

args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
quick = bool(args.get("quick", False))
iters, reps = (3, 3) if quick else (10, 7)
timed = cuda_timer(iters, reps)




rows = []
for case in args.get("cases", []):
    T, D, causal = case["T"], case["D"], bool(case["causal"])
    H, B = 2048 // D, 16384 // T
    shape = f"[{B},{H},{T},{D}]" + (" causal" if causal else "")
    torch.manual_seed(0)
    q, k, v, g = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))

    def fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    qg, kg, vg = (t.clone().requires_grad_(True) for t in (q, k, v))

    def step():
        qg.grad = kg.grad = vg.grad = None
        F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal).backward(g)

    tf = timed(fwd)
    tb = timed(step)
    rows.append({"bench": "attention.fwd", "shape": shape, "dtype": "bfloat16", "ms": tf})
    rows.append({"bench": "attention.bwd", "shape": shape, "dtype": "bfloat16", "ms": max(tb - tf, 1e-6)})
    both = {"bench": "attention.fwdbwd", "shape": shape, "dtype": "bfloat16", "ms": tb}
    if T == 8192:
        qg.grad = kg.grad = vg.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        both["peakMiB"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    rows.append(both)
    del q, k, v, g, qg, kg, vg
    torch.cuda.empty_cache()
print(json.dumps({"torch": torch.__version__, "rows": rows}))
