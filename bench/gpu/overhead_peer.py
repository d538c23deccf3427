# PyTorch peer of bench/gpu/overhead.ts: eager dispatch + launch cost per op on 1-element CUDA tensors.
import json, sys, time
import torch

args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
iters = int(args.get("iters", 20000))
a = torch.ones(1, device="cuda"); b = torch.ones(1, device="cuda")

def timed(fn, n):
    for _ in range(100): fn()
    torch.cuda.synchronize()
    best = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n): fn()
        torch.cuda.synchronize()
        best.append((time.perf_counter() - t0) * 1e3 / n)
    best.sort()
    return best[len(best) // 2]

rows = [
    {"shape": "add [1]", "dtype": "float32", "ms": timed(lambda: a + b, iters)},
    {"shape": "add-mul-relu-sum [1]", "dtype": "float32", "ms": timed(lambda: ((a + b) * b).relu().sum(), iters // 4)},
]
print(json.dumps({"torch": torch.__version__, "rows": rows}))
