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

const timeoutMs = Number(process.env.NG_TEST_TIMEOUT_MS ?? 20000);
try {
  await d.initProcessGroup({ timeoutMs });
  if (scenario === 'collectives') await collectives();
  else if (scenario === 'killed') await killed();
  else if (scenario === 'init') { /* rendezvous only */ }
  else throw new Error(`unknown scenario ${scenario}`);
  await d.destroyProcessGroup();
  console.log(`rank ${process.env.RANK} ok`);
} catch (e) {
  console.log(`ERROR ${(e as Error).message}`);
  process.exit(1);
}
