// One rank of a distributed test (spawned by test/cpu/distributed.test.ts with RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT set). Each scenario checks its results against
// values computed here for every rank, in one process, and exits non-zero on a mismatch.
import * as ng from '../../lib/index.js';
import type { DType } from '../../lib/dtype.js';

const d = ng.distributed;
const scenario = process.argv[2];

function values(rank: number, n: number, dtype: DType): number[] {
  const v: number[] = [];
  for (let i = 0; i < n; i++) v.push((((rank + 1) * (i + 3)) % 17) - 5 + (dtype === 'int32' ? 0 : 0.25 * rank));
  return v;
}
function round(x: number, dtype: DType): number {
  return dtype === 'float32' ? Math.fround(x) : dtype === 'int32' ? Math.trunc(x) : x;
}
function same(what: string, got: number[], want: number[]): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length}, expected ${want.length}`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i]) throw new Error(`${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
  }
}
const flat = (t: ng.Tensor): number[] => Array.from(t.contiguous().storage.host as ArrayLike<number>).slice(t.offset, t.offset + t.numel);

async function collectives(): Promise<void> {
  const ws = d.getWorldSize(), rank = d.getRank();
  for (const dtype of ['float32', 'float64', 'int32'] as DType[]) {
    for (const n of [0, 1, 7, 1001]) {
      const all = Array.from({ length: ws }, (_, r) => values(r, n, dtype));
      const mk = (v: number[]): ng.Tensor => ng.tensor(v, { dtype }).reshape([n]);
      const ops = dtype === 'int32' ? (['sum', 'max'] as const) : (['sum', 'avg', 'max'] as const);
      for (const op of ops) {
        const t = mk(all[rank]);
        const back = await d.allReduce(t, { op });
        if (back !== t) throw new Error('allReduce must resolve to its tensor');
        const want = all[0].map((_, i) => {
          const col = all.map((a) => a[i]);
          if (op === 'max') return Math.max(...col);
          let s = 0;
          for (const c of col) s = round(s + c, dtype);
          return op === 'avg' ? round(s / ws, dtype) : s;
        });
        same(`allReduce ${op} ${dtype} n=${n}`, flat(t), want);
      }
      const src = ws - 1;
      const b = mk(all[rank]);
      await d.broadcast(b, { src });
      same(`broadcast ${dtype} n=${n}`, flat(b), all[src]);
      const parts = await d.allGather(mk(all[rank]));
      if (parts.length !== ws) throw new Error(`allGather gave ${parts.length} tensors`);
      parts.forEach((p, r) => same(`allGather ${dtype} n=${n} part ${r}`, flat(p), all[r]));
      const big = Array.from({ length: ws }, (_, r) => values(r, n * ws, dtype));
      const rs = await d.reduceScatter(ng.tensor(big[rank], { dtype }).reshape([n * ws]), { op: 'sum' });
      const wantRs = big[0].slice(rank * n, rank * n + n).map((_, j) => {
        let s = 0;
        for (const a of big) s = round(s + a[rank * n + j], dtype);
        return s;
      });
      same(`reduceScatter ${dtype} n=${n}`, flat(rs), wantRs);
    }
  }
  // a 2-d tensor scattered along dim 0
  const m = ng.ones([ws * 2, 3]);
  const part = await d.reduceScatter(m);
  if (part.shape.join(',') !== '2,3') throw new Error(`reduceScatter shape [${part.shape.join(',')}]`);
  same('reduceScatter 2-d', flat(part), new Array(6).fill(ws));
  await d.barrier();
}

// Keeps all-reducing until a rank dies (VICTIM kills itself at step 3); prints the error.
async function killed(): Promise<void> {
  const victim = Number(process.env.VICTIM ?? 1);
  const t = ng.zeros([4096]);
  const t0 = Date.now();
  try {
    for (let i = 0; i < 100000; i++) {
      if (i === 3 && d.getRank() === victim) process.kill(process.pid, 'SIGKILL');
      await d.allReduce(t);
    }
  } catch (e) {
    console.log(`FAILED after ${Date.now() - t0} ms: ${(e as Error).message}`);
    await d.destroyProcessGroup();
    process.exit(3);
  }
}

// N steps of a small GPT: 2 ranks x batch B under DDP against one model trained here on
// the whole batch 2B. Step 2 accumulates two micro-batches (the first under noSync).
async function ddp(): Promise<void> {
  const ws = d.getWorldSize(), rank = d.getRank();
  const cfg = { vocabSize: 37, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16, dropout: 0 };
  const B = 4, T = 8, steps = 4;
  ng.manualSeed(1);
  const ref = new ng.models.GPT(cfg);
  ng.manualSeed(1 + 100 * rank);  // different on every rank: the wrap-time broadcast must fix it
  const model = new ng.models.GPT(cfg);
  const ddpModel = new ng.nn.DistributedDataParallel(model, { bucketCapMb: 0.01 });
  await ddpModel.ready;
  const optRef = new ng.optim.AdamW(ref.parameters(), { lr: 1e-2, weightDecay: 0.01 });
  const opt = new ng.optim.AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0.01 });
  const batch = (step: number, rows: number[]): [ng.Tensor, ng.Tensor] => {
    const ids: number[][] = [], tg: number[][] = [];
    for (const b of rows) {
      ids.push(Array.from({ length: T }, (_, t) => (b * 7 + t * 3 + step * 5 + ((b * t) % 5)) % cfg.vocabSize));
      tg.push(Array.from({ length: T }, (_, t) => (b * 11 + t * 2 + step) % cfg.vocabSize));
    }
    return [ng.tensor(ids, { dtype: 'int32' }), ng.tensor(tg, { dtype: 'int32' })];
  };
  const range = (a: number, n: number): number[] => Array.from({ length: n }, (_, i) => a + i);
  for (let step = 0; step < steps; step++) {
    const [gi, gt] = batch(step, range(0, B * ws));
    ref.forward(gi, { targets: gt }).loss!.backward();
    optRef.step();
    optRef.zeroGrad();
    if (step === 2) {
      const [a, at] = batch(step, range(rank * B, B / 2));
      const [b, bt] = batch(step, range(rank * B + B / 2, B / 2));
      ddpModel.noSync(() => (ddpModel.forward(a as never, { targets: at } as never) as { loss: ng.Tensor }).loss.mul(0.5).backward());
      (ddpModel.forward(b as never, { targets: bt } as never) as { loss: ng.Tensor }).loss.mul(0.5).backward();
    } else {
      const [li, lt] = batch(step, range(rank * B, B));
      (ddpModel.forward(li as never, { targets: lt } as never) as { loss: ng.Tensor }).loss.backward();
    }
    await ddpModel.finishGradientSync();
    opt.step();
    opt.zeroGrad();
  }
  let maxDiff = 0;
  const mine = model.stateDict(), want = ref.stateDict();
  for (const [k, v] of Object.entries(want)) {
    const a = flat(mine[k]), b = flat(v);
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  }
  console.log(`DDP max weight difference ${maxDiff.toExponential(2)}`);
  if (!(maxDiff < 1e-4)) throw new Error(`DDP weights differ from the one-process run by ${maxDiff}`);
}

const timeoutMs = Number(process.env.NG_TEST_TIMEOUT_MS ?? 20000);
try {
  await d.initProcessGroup({ timeoutMs });
  if (scenario === 'collectives') await collectives();
  else if (scenario === 'killed') await killed();
  else if (scenario === 'ddp') await ddp();
  else if (scenario === 'die') {
    if (d.getRank() === 1) process.exit(7);
    await new Promise((r) => setTimeout(r, 60000));
  }
  else if (scenario === 'init') { /* rendezvous only */ }
  else throw new Error(`unknown scenario ${scenario}`);
  await d.destroyProcessGroup();
  console.log(`rank ${process.env.RANK} ok`);
} catch (e) {
  console.log(`ERROR ${(e as Error).message}`);
  process.exit(1);
}
