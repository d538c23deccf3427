// One rank of an NCCL test (spawned by test/gpu/distributed.test.ts with RANK, LOCAL_RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT set): every collective on CUDA tensors of
// cuda:LOCAL_RANK against values computed here for every rank; 'killed': rank VICTIM dies.
import * as ng from '../../lib/index.js';
import type { DType } from '../../lib/dtype.js';

const d = ng.distributed;
const scenario = process.argv[2];

export function values(rank: number, n: number, dtype: DType): number[] {
  const v: number[] = [];
  for (let i = 0; i < n; i++) v.push((((rank + 1) * (i + 3)) % 17) - 5 + (dtype === 'int32' ? 0 : 0.25 * rank));
  return v;
}
function close(what: string, got: number[], want: number[], dtype: DType): void {
  const tol = dtype === 'bfloat16' ? 0.1 : dtype === 'float16' ? 0.02 : 1e-6;
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length}, expected ${want.length}`);
  for (let i = 0; i < got.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol * Math.max(1, Math.abs(want[i])))) throw new Error(`${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
  }
}
const host = (t: ng.Tensor): number[] => t.cpu().to('float64').tolist() as unknown as number[];

export async function collectives(device: ng.Device): Promise<void> {
  const ws = d.getWorldSize(), rank = d.getRank();
  for (const dtype of ['float32', 'float64', 'int32', 'bfloat16', 'float16'] as DType[]) {
    for (const n of [1, 7, 1001]) {
      const all = Array.from({ length: ws }, (_, r) => values(r, n, dtype));
      const mk = (v: number[]): ng.Tensor => ng.tensor(v, { dtype: dtype === 'int32' ? 'int32' : 'float32' }).to(device).to(dtype);
      const ops = dtype === 'int32' ? (['sum', 'max'] as const) : (['sum', 'avg', 'max'] as const);
      const reduce = (op: string, i: number): number => {
        const col = all.map((a) => a[i]);
        if (op === 'max') return Math.max(...col);
        const s = col.reduce((x, y) => x + y, 0);
        return op === 'avg' ? s / ws : s;
      };
      for (const op of ops) {
        const t = mk(all[rank]);
        await d.allReduce(t, { op });
        close(`allReduce ${op} ${dtype} n=${n}`, host(t), all[0].map((_, i) => reduce(op, i)), dtype);
        const big = mk(Array.from({ length: ws }, () => all[rank]).flat());
        const rs = await d.reduceScatter(big.reshape([ws, n]), { op });
        close(`reduceScatter ${op} ${dtype} n=${n}`, host(rs.reshape([n])), all[0].map((_, i) => reduce(op, i)), dtype);
      }
      for (let src = 0; src < ws; src++) {
        const t = mk(all[rank]);
        await d.broadcast(t, { src });
        close(`broadcast src=${src} ${dtype} n=${n}`, host(t), all[src], dtype);
      }
      const parts = await d.allGather(mk(all[rank]));
      for (let r = 0; r < ws; r++) {
        if (parts[r].device !== device) throw new Error(`allGather part on ${parts[r].device}`);
        close(`allGather part ${r} ${dtype} n=${n}`, host(parts[r]), all[r], dtype);
      }
    }
  }
  const c = ng.tensor([rank + 1, 2]);  // a CPU tensor on an nccl group goes through Gloo
  await d.allReduce(c);
  close('allReduce of a CPU tensor', c.tolist() as number[], [ws * (ws + 1) / 2, 2 * ws], 'float32');
  await d.barrier();
}

if (scenario) {
  const timeoutMs = Number(process.env.NG_TEST_TIMEOUT_MS ?? 20000);
  const device = `cuda:${Number(process.env.LOCAL_RANK ?? process.env.RANK ?? 0)}` as const;
  try {
    await d.initProcessGroup({ backend: 'nccl', timeoutMs });
    if (scenario === 'collectives') await collectives(device);
    else if (scenario === 'killed') {
      const t = ng.zeros([4096], { device });
      const t0 = Date.now();
      try {
        for (let i = 0; i < 100000; i++) {
          if (i === 3 && d.getRank() === Number(process.env.VICTIM ?? 1)) process.kill(process.pid, 'SIGKILL');
          await d.allReduce(t);
        }
      } catch (e) {
        console.log(`FAILED after ${Date.now() - t0} ms: ${(e as Error).message}`);
        await d.destroyProcessGroup();
        process.exit(3);
      }
    } else throw new Error(`unknown scenario ${scenario}`);
    await d.destroyProcessGroup();
    console.log(`rank ${process.env.RANK} ok`);
  } catch (e) {
    console.log(`ERROR ${(e as Error).message}`);
    process.exit(1);
  }
}
