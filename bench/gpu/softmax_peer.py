# PyTorch peer of bench/gpu/softmax.ts: torch.softmax over the last dim, and
# F.cross_entropy forward + backward (x.grad cleared before each call, as the nodegrad
# side does), on the same shapes, timed like timeCuda (L2 flushed before each repetition
# of back-to-back calls, CUDA events, median).
# Argument: JSON {"cases": [{"bench", "shape", "dtype"}], "quick": bool}.
# Prints {"torch", "rows": [{"bench", "shape", "dtype", "ms"}]} as its last line.
import json
import sys

import torch
from peer_timing import cuda_timer
import torch.nn.functional as F

args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
quick = bool(args.get("quick", False))
iters, reps = (3, 3) if quick else (10, 7)
timed = cuda_timer(iters, reps)
DT = {"float32": torch.float32, "bfloat16": torch.bfloat16}




def make(case):
    bench, (n, c), dt = case["bench"], case["shape"], DT[case["dtype"]]
    torch.manual_seed(0)
    if bench == "softmax.fwd":
        x = torch.randn(n, c, device="cuda", dtype=dt)
        return lambda: torch.softmax(x, dim=-1)
    if bench == "crossEntropy.fwdbwd":
        x = torch.randn(n, c, device="cuda", dtype=dt, requires_grad=True)
        t = torch.randint(0, c, (n,), device="cuda")

        def step():
            x.grad = None
            F.cross_entropy(x, t).backward()

        return step
    raise ValueError(f"unknown bench {bench}")


rows = []
for case in args.get("cases", []):
    fn = make(case)
    rows.append({"bench": case["bench"], "shape": "[" + ",".join(str(s) for s in case["shape"]) + "]",
                 "dtype": case["dtype"], "ms": timed(fn)})
    del fn
    torch.cuda.empty_cache()
print(json.dumps({"torch": torch.__version__, "rows": rows}))
