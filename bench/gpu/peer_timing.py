# Shared by the PyTorch peers in bench/gpu/: time a callable the way bench/gpu/row.ts's
# timeCuda does (warm-up, L2 flushed before each repetition of back-to-back calls, CUDA
# events, median milliseconds per call).
import torch

_flush = None


def cuda_timer(iters, reps, warmup=3):
    def timed(fn):
        global _flush
        if _flush is None:
            _flush = torch.empty(64 << 20, dtype=torch.float32, device="cuda")
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            _flush.fill_(1)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / iters)
        times.sort()
        return times[len(times) // 2]
    return timed
