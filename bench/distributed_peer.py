# torch.distributed Gloo peer of bench/distributed.ts, 2 local ranks, 1 thread each.
#   distributed_peer.py allreduce SIZES PORT: float32 all_reduce at each size; rank 0 prints
#     one JSON line per size: {"bytes", "ms"} (median, a barrier before each call).
#   distributed_peer.py ddp CONFIG_JSON PORT: the GPT of bench/train-gpt.ts, one step =
#     forward, backward, clipping, AdamW on the rank's batch; steps alternate between the
#     bare module (the single-process step) and torch.nn.parallel.DistributedDataParallel,
#     a barrier before each so both ranks run the same kind of step at the same time;
#     rank 0 prints {"single": [...], "ddp": [...]} (each round's median ms).
import json, os, sys, time
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def median(xs):
    return sorted(xs)[len(xs) // 2]


def allreduce(rank, sizes):
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
        if rank == 0:
            print(json.dumps({"bytes": nbytes, "ms": median(times), "torch": torch.__version__}), flush=True)


def ddp(rank, req):
    from train_gpt_peer import gpt_model
    c, B = req["config"], req["batch"]
    torch.manual_seed(0)
    model = gpt_model(c)
    wrapped = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=req.get("bucketCapMb", 25))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    g = torch.Generator().manual_seed(1 + rank)
    x = torch.randint(0, c["vocabSize"], (B, c["blockSize"]), generator=g)
    y = torch.randint(0, c["vocabSize"], (B, c["blockSize"]), generator=g)

    def step(m):
        loss = m(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    out = {"single": [], "ddp": [], "torch": torch.__version__}
    for _ in range(req["warmup"]):
        step(model)
        step(wrapped)
    for _ in range(req["rounds"]):
        times = {"single": [], "ddp": []}
        for _ in range(req["steps"]):
            for name, m in (("single", model), ("ddp", wrapped)):
                dist.barrier()
                t0 = time.perf_counter()
                step(m)
                times[name].append((time.perf_counter() - t0) * 1e3)
        for name in times:
            out[name].append(median(times[name]))
    if rank == 0:
        print(json.dumps(out), flush=True)


def worker(rank, world, mode, arg, port):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    if mode == "allreduce":
        allreduce(rank, [int(s) for s in arg.split(",")])
    else:
        ddp(rank, json.loads(arg))
    dist.destroy_process_group()


if __name__ == "__main__":
    mode, arg, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    mp.spawn(worker, args=(2, mode, arg, port), nprocs=2, join=True)
