# PyTorch peer of bench/gpu/layernorm.ts: F.layer_norm forward, forward+backward, and
# x + residual then F.layer_norm, on the same shapes, timed like timeCuda (L2 flushed
# before each repetition of back-to-back calls, CUDA events, median).
# Argument: JSON {"cases": [{"bench", "rows", "C", "dtype"}], "quick": bool}.
# Prints {"torch", "rows": [{"bench", "shape", "dtype", "ms"}]} as its last line.
import json
import sys

import torch
from peer_timing import cuda_timer
import torch.nn.functional as F

args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
quick = bool(args.get("quick", False))
iters, reps = (5, 5) if quick else (20, 9)
timed = cuda_timer(iters, reps)
DT = {"float32": torch.float32, "bfloat16": torch.bfloat16}




def make(case):
    rows, C, dt = case["rows"], case["C"], DT[case["dtype"]]
    torch.manual_seed(0)
    x = torch.randn(rows, C, device="cuda", dtype=dt)
    r = torch.randn(rows, C, device="cuda", dtype=dt)
    g = torch.randn(rows, C, device="cuda", dtype=dt)
    w = torch.ones(C, device="cuda", dtype=dt)
    b = torch.zeros(C, device="cuda", dtype=dt)
    bench = case["bench"]
    if bench == "layernorm.fwd":
        def fwd():
            with torch.no_grad():
                F.layer_norm(x, (C,), w, b)
        return fwd
    if bench == "addlayernorm.fwd":
        def add_fwd():
            with torch.no_grad():
                s = x + r
                F.layer_norm(s, (C,), w, b)
        return add_fwd
    if bench == "layernorm.fwdbwd":
        xg, wg, bg = x.requires_grad_(True), w.requires_grad_(True), b.requires_grad_(True)

        def fwdbwd():
            xg.grad = wg.grad = bg.grad = None
            F.layer_norm(xg, (C,), wg, bg).backward(g)
        return fwdbwd
    raise ValueError(f"unknown bench {bench}")


rows = []
for case in args.get("cases", []):
    fn = make(case)
    rows.append({"bench": case["bench"], "shape": f"[{case['rows']},{case['C']}]", "dtype": case["dtype"], "ms": timed(fn)})
    del fn
    torch.cuda.empty_cache()
print(json.dumps({"torch": torch.__version__, "rows": rows}))
