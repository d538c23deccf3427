// One rank of bench/distributed.ts (the twin of bench/distributed_peer.py).
//   distributed_worker.ts allreduce SIZES: times float32 all-reduce (sum) at each size;
//     rank 0 prints one JSON line per size: { bytes, ms } (median, a barrier before each).
//   distributed_worker.ts ddp CONFIG_JSON: the GPT of bench/train-gpt.ts, one step =
//     forward, backward, clipping, AdamW on the rank's batch; steps alternate between
//     no gradient sync (noSync: the single-process step) and nn.DistributedDataParallel,
//     a barrier before each so both ranks run the same kind of step at the same time;
//     rank 0 prints { single: [...], ddp: [...] } (each round's median ms).
import * as ng from '../lib/index.js';
import { median } from './common.js';

const d = ng.distributed;
const [mode, arg] = [process.argv[2] ?? 'allreduce', process.argv[3] ?? '1024'];
ng.setNumThreads(1);
await d.initProcessGroup({ timeoutMs: 120000 });

if (mode === 'allreduce') {
  for (const bytes of arg.split(',').map(Number)) {
    const t = ng.zeros([bytes / 4]);
    const iters = Math.max(3, Math.min(50, Math.floor((64 << 20) / bytes)));
    await d.allReduce(t);
    const times: number[] = [];
    for (let i = 0; i < iters; i++) {
      await d.barrier();
      const t0 = performance.now();
      await d.allReduce(t);
      times.push(performance.now() - t0);
    }
    if (d.getRank() === 0) console.log(JSON.stringify({ bytes, ms: median(times) }));
    t.dispose();
  }
} else {
  const req = JSON.parse(arg) as { config: ng.models.GPTConfig; batch: number; steps: number; warmup: number; rounds: number; bucketCapMb?: number };
  const c = req.config;
  ng.manualSeed(0);
  const model = new ng.models.GPT(c);
  const ddp = new ng.nn.DistributedDataParallel(model, { bucketCapMb: req.bucketCapMb ?? 25 });
  await ddp.ready;
  const opt = new ng.optim.AdamW(model.parameters(), { lr: 3e-4, weightDecay: 0.1 });
  ng.manualSeed(1 + d.getRank());
  const x = ng.randint(0, c.vocabSize, [req.batch, c.blockSize]).keep();
  const y = ng.randint(0, c.vocabSize, [req.batch, c.blockSize]).keep();
  const backward = (): void => {
    ng.scope(() => {
      const { loss } = model.forward(x, { targets: y });
      loss!.backward();
      return loss!.item();
    });
  };
  const update = (): void => {
    ng.optim.clipGradNorm(model.parameters(), 1.0);
    opt.step();
    opt.zeroGrad();
  };
  const single = (): void => { ddp.noSync(backward); update(); };
  const synced = async (): Promise<void> => { backward(); await ddp.finishGradientSync(); update(); };
  const out = { single: [] as number[], ddp: [] as number[] };
  for (let i = 0; i < req.warmup; i++) { single(); await synced(); }
  for (let r = 0; r < req.rounds; r++) {
    const times = { single: [] as number[], ddp: [] as number[] };
    for (let i = 0; i < req.steps; i++) {
      for (const name of ['single', 'ddp'] as const) {
        await d.barrier();
        const t0 = performance.now();
        if (name === 'single') single();
        else await synced();
        times[name].push(performance.now() - t0);
      }
    }
    out.single.push(median(times.single));
    out.ddp.push(median(times.ddp));
  }
  if (d.getRank() === 0) console.log(JSON.stringify(out));
}
await d.destroyProcessGroup();
