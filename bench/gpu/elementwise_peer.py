# PyTorch peer of bench/gpu/elementwise.ts: the same eager ops on the same shapes, timed
# like timeCuda (L2 flushed before each repetition of back-to-back calls, CUDA events,
# median). Argument: JSON {"cases": [{"bench", "shape", "dtype"}], "quick": bool}.
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
    bench, shape, dtype = case["bench"], case["shape"], case["dtype"]
    torch.manual_seed(0)
    if bench == "elementwise.cast":
        a = torch.randn(shape, device="cuda", dtype=torch.float32)
        return lambda: a.to(torch.bfloat16)
    if bench == "elementwise.copyT":
        m = torch.randn(shape, device="cuda", dtype=DT[dtype])
        return lambda: m.t().contiguous()
    a = torch.randn(shape, device="cuda", dtype=DT[dtype])
    b = torch.randn(shape, device="cuda", dtype=DT[dtype])
    if bench == "elementwise.add":
        return lambda: a + b
    if bench == "elementwise.mul":
        return lambda: a * b
    if bench == "elementwise.gelu":
        return lambda: F.gelu(a, approximate="tanh")
    raise ValueError(f"unknown bench {bench}")


rows = []
for case in args.get("cases", []):
    fn = make(case)
    rows.append({"bench": case["bench"], "shape": "[" + ",".join(str(s) for s in case["shape"]) + "]",
                 "dtype": case["dtype"], "ms": timed(fn)})
    del fn
    torch.cuda.empty_cache()
print(json.dumps({"torch": torch.__version__, "rows": rows}))
