# torch.distributed Gloo peer of bench/distributed.ts: float32 all_reduce at each size on
# 2 local ranks; rank 0 prints one JSON line per size: {"bytes", "ms"} (median).
import json, os, sys, time
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

def worker(rank, world, sizes, port):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    for nbytes in sizes:
        t = torch.zeros(nbytes // 4)
        iters = max(3, min(50, (64 << 20) // nbytes))
        dist.all_reduce(t)
        times = []
        for _ in range(iters):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        if rank == 0:
            print(json.dumps({"bytes": nbytes, "ms": times[len(times) // 2], "torch": torch.__version__}), flush=True)
    dist.destroy_process_group()

if __name__ == "__main__":
    sizes = [int(s) for s in sys.argv[1].split(",")]
    port = int(sys.argv[2])
    mp.spawn(worker, args=(2, sizes, port), nprocs=2, join=True)
