# PyTorch peer of bench/gpu/gemm.ts: torch.matmul(a, b, out=c) on the same shapes and
# dtypes (b = w.t() for the nn.Linear-style GPT-2 shapes), float32 strict
# (allow_tf32 = False) and TF32 (set_float32_matmul_precision('high')), timed like
# timeCuda: L2 flushed before each repetition of back-to-back calls, CUDA events, median.
# Argument: JSON {"cases": [{"M", "K", "N", "dtype", "mode", "weightT", "shape", "label"}], "quick": bool}.
# Prints {"torch", "rows": [{"shape", "dtype", "ms"}]} as its last line.
import json
import sys

import torch
from peer_timing import cuda_timer

args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
quick = bool(args.get("quick", False))
iters, reps = (3, 3) if quick else (10, 7)
timed = cuda_timer(iters, reps)
DT = {"float32": torch.float32, "bfloat16": torch.bfloat16}




rows = []
for case in args.get("cases", []):
    M, K, N, dt = case["M"], case["K"], case["N"], DT[case["dtype"]]
    tf32 = case["mode"] == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.manual_seed(0)
    a = torch.randn(M, K, device="cuda", dtype=dt)
    w = torch.randn(N, K, device="cuda", dtype=dt) if case["weightT"] else torch.randn(K, N, device="cuda", dtype=dt)
    b = w.t() if case["weightT"] else w
    c = torch.empty(M, N, device="cuda", dtype=dt)
    ms = timed(lambda: torch.matmul(a, b, out=c))
    rows.append({"shape": case["shape"], "dtype": case["label"], "ms": ms,
                 "tflops": 2 * M * N * K / (ms * 1e9)})
    del a, w, b, c
    torch.cuda.empty_cache()

torch.backends.cuda.matmul.allow_tf32 = False
torch.set_float32_matmul_precision("highest")
print(json.dumps({"torch": torch.__version__, "rows": rows}))
