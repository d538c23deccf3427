// Distributed collectives over Gloo on 127.0.0.1: every test spawns real rank processes
// (test/distributed/worker.ts) that check their results against values computed in one process.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const hasGloo = ng.distributed.isGlooAvailable();
if (!hasGloo) console.log('distributed tests skipped: this addon was built without Gloo (install libgloo-dev and run npm run build:native)');

interface RankResult { code: number | null; out: string; ms: number }

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function runRank(script: string, args: string[], env: Record<string, string>): Promise<RankResult> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', './scripts/ts-loader.mjs', script, ...args], {
      cwd: root, env: { ...process.env, MASTER_ADDR: '127.0.0.1', NODEGRAD_NUM_THREADS: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    p.stderr.on('data', (b: Buffer) => { out += b.toString(); });
    p.on('close', (code) => resolve({ code, out, ms: Date.now() - t0 }));
  });
}

export async function runRanks(n: number, scenario: string, env: Record<string, string> = {}, script = 'test/distributed/worker.ts'): Promise<RankResult[]> {
  const port = env.MASTER_PORT ?? String(await freePort());
  return await Promise.all(Array.from({ length: n }, (_, r) =>
    runRank(script, [scenario], { RANK: String(r), WORLD_SIZE: String(n), MASTER_PORT: port, ...env })));
}

describe.skipIf(!hasGloo)('distributed (gloo, 127.0.0.1)', () => {
  it('every collective on 2 ranks matches one-process values (float32/float64/int32, sizes 0, 1, 7, 1001)', async () => {
    const res = await runRanks(2, 'collectives');
    for (const r of res) expect(r.out).toMatch(/ok/);
    expect(res.map((r) => r.code)).toEqual([0, 0]);
  });

  it('every collective on 3 ranks matches one-process values', async () => {
    const res = await runRanks(3, 'collectives');
    for (const r of res) expect(r.out).toMatch(/ok/);
    expect(res.map((r) => r.code)).toEqual([0, 0, 0]);
  });

  it('a killed rank makes the others fail within the timeout naming it, and a fresh run on the same port works', async () => {
    const port = String(await freePort());
    const res = await runRanks(3, 'killed', { MASTER_PORT: port, VICTIM: '2', NG_TEST_TIMEOUT_MS: '10000' });
    expect(res[2].code).not.toBe(0);
    for (const r of [res[0], res[1]]) {
      expect(r.code).toBe(3);
      expect(r.out).toMatch(/allReduce failed on rank [01]: rank 2 exited/);
      expect(r.ms).toBeLessThan(10000);
    }
    const again = await runRanks(2, 'collectives', { MASTER_PORT: port });
    expect(again.map((r) => r.code)).toEqual([0, 0]);
  });

  it('a killed rank 0 (the store host) is named by the survivors', async () => {
    const res = await runRanks(2, 'killed', { VICTIM: '0', NG_TEST_TIMEOUT_MS: '10000' });
    expect(res[1].code).toBe(3);
    expect(res[1].out).toMatch(/rank 0 exited/);
  });

  it('a wrong world size is a clear Error', async () => {
    const port = String(await freePort());
    const [r0, r1] = await Promise.all([
      runRank('test/distributed/worker.ts', ['init'], { RANK: '0', WORLD_SIZE: '2', MASTER_PORT: port, NG_TEST_TIMEOUT_MS: '3000' }),
      runRank('test/distributed/worker.ts', ['init'], { RANK: '1', WORLD_SIZE: '3', MASTER_PORT: port, NG_TEST_TIMEOUT_MS: '3000' }),
    ]);
    expect(r1.out).toMatch(/world size mismatch \(got worldSize 3 on rank 1; expected 2 as on rank 0\)/);
    expect(r0.out).toMatch(/timed out after 3000 ms waiting for every rank to join \(got ranks \[0\]; expected worldSize 2\)/);
  });

  it('a port in use is a clear Error', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '0.0.0.0', () => resolve()));
    const port = String((blocker.address() as net.AddressInfo).port);
    try {
      const [r0] = await runRanks(1, 'init', { MASTER_PORT: port });
      expect(r0.code).toBe(1);
      expect(r0.out).toMatch(new RegExp(`port ${port} is in use`));
    } finally {
      blocker.close();
    }
  });

  it('collectives without a process group, and bad arguments, are clear Errors', async () => {
    const d = ng.distributed;
    expect(() => d.getRank()).toThrow(/no process group/);
    await expect(d.initProcessGroup({ backend: 'mpi' as never })).rejects.toThrow(/unknown backend/);
    await expect(d.initProcessGroup({ rank: 2, worldSize: 2 })).rejects.toThrow(/rank out of range/);
    await d.initProcessGroup({ rank: 0, worldSize: 1, masterPort: await freePort(), timeoutMs: 5000 });
    try {
      expect(d.getWorldSize()).toBe(1);
      expect(() => d.allReduce(ng.tensor([1, 2], { dtype: 'int32' }), { op: 'avg' })).toThrow(/avg needs a floating dtype/);
      expect(() => d.allReduce(ng.ones([2, 3]).transpose(0, 1))).toThrow(/must be contiguous/);
      await expect(d.reduceScatter(ng.ones([3]))).resolves.toBeDefined();
      const t = ng.tensor([1, 2, 3]);
      await d.allReduce(t, { op: 'avg' });
      expect(t.tolist()).toEqual([1, 2, 3]);
    } finally {
      await d.destroyProcessGroup();
    }
  });
});

describe.skipIf(!hasGloo || ng.distributed.isNcclAvailable())('distributed: backend nccl without a CUDA device or libnccl', () => {
  it('initProcessGroup({ backend: nccl }) is a clear Error saying what was searched', async () => {
    const d = ng.distributed;
    {  // the library lookup happened once already, at collection time (isNcclAvailable above)
      const err = await d.initProcessGroup({ backend: 'nccl', rank: 0, worldSize: 1, masterPort: await freePort() }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/^nodegrad: distributed: backend 'nccl' needs CUDA tensors and libnccl\.so\.2 \(.+\); use backend 'gloo' for CPU tensors$/);
      if (ng.info().cuda.compiled) expect((err as Error).message).toMatch(/not found: searched NODEGRAD_NCCL( \(unset\)|=.+), libnccl\.so\.2 \(LD_LIBRARY_PATH, ldconfig\), site-packages\/nvidia\/\{nccl,cu13,cu12\}\/lib/);
      expect(d.isInitialized()).toBe(false);
      await d.initProcessGroup({ rank: 0, worldSize: 1, masterPort: await freePort(), timeoutMs: 5000 });  // gloo still works
      await d.destroyProcessGroup();
    }
  });
});

describe.skipIf(hasGloo)('distributed without Gloo', () => {
  it('initProcessGroup says what to install', async () => {
    await expect(ng.distributed.initProcessGroup()).rejects.toThrow(/this build has no Gloo; install libgloo-dev/);
  });
});

describe.skipIf(!hasGloo)('DistributedDataParallel (gloo, 127.0.0.1)', () => {
  it('4 AdamW steps of a small GPT on 2 ranks x batch 4 match one process with batch 8 (max weight difference < 1e-4), noSync accumulation included', async () => {
    const res = await runRanks(2, 'ddp');
    for (const r of res) expect(r.out).toMatch(/DDP max weight difference/);
    expect(res.map((r) => r.code)).toEqual([0, 0]);
  });
});

describe('DistributedSampler', () => {
  it('gives every rank a disjoint shard of equal size covering the dataset, padded like PyTorch, reshuffled by setEpoch', () => {
    const ds = new ng.data.TensorDataset(ng.arange(10));
    const shards = [0, 1, 2].map((rank) => new ng.distributed.DistributedSampler(ds, { numReplicas: 3, rank, seed: 5 }));
    for (const s of shards) expect(s.length).toBe(4);
    const all = shards.flatMap((s) => Array.from(s.indices()));
    expect(new Set(all).size).toBe(10);
    expect(all.length).toBe(12);
    const before = Array.from(shards[0].indices());
    shards[0].setEpoch(1);
    expect(Array.from(shards[0].indices())).not.toEqual(before);
    const item = shards[1].get(0)[0] as ng.Tensor;
    expect(item.item()).toBe(shards[1].indices()[0]);
    const dropped = new ng.distributed.DistributedSampler(ds, { numReplicas: 3, rank: 0, dropLast: true, shuffle: false });
    expect(Array.from(dropped.indices())).toEqual([0, 3, 6]);
    const loader = new ng.data.DataLoader(shards[2], { batchSize: 2 });
    expect([...loader].length).toBe(2);
    expect(() => new ng.distributed.DistributedSampler(ds, { numReplicas: 2, rank: 2 })).toThrow(/rank out of range/);
  });
});

function runCli(args: string[]): Promise<RankResult> {
  return runRank('test/cli_runner.ts', args, {});
}

describe.skipIf(!hasGloo)('nodegrad launch', () => {
  it('starts --nproc-per-node workers with the torchrun environment', async () => {
    const port = String(await freePort());
    const r = await runCli(['launch', '--nproc-per-node', '2', '--master-port', port, 'test/distributed/worker.ts', 'collectives']);
    expect(r.out).toMatch(/rank 0 ok/);
    expect(r.out).toMatch(/rank 1 ok/);
    expect(r.code).toBe(0);
  });

  it('ends every worker with a clear message when one dies, and exits with its code', async () => {
    const port = String(await freePort());
    const r = await runCli(['launch', '--nproc-per-node', '3', '--master-port', port, 'test/distributed/worker.ts', 'die']);
    expect(r.out).toMatch(/nodegrad launch: rank 1 \(pid \d+\) exited with code 7; stopping the other 2 worker\(s\)/);
    expect(r.code).toBe(7);
    expect(r.ms).toBeLessThan(30000);
  });

  it('examples/ddp.ts on 2 ranks prints the losses of the single-process run (global batch 16, within 1e-4)', async () => {
    const port = String(await freePort());
    const [two, one] = await Promise.all([
      runCli(['launch', '--nproc-per-node', '2', '--master-port', port, 'examples/ddp.ts']),
      runRank('examples/ddp.ts', [], { MASTER_PORT: String(await freePort()) }),
    ]);
    const losses = (out: string): number[] => [...out.matchAll(/epoch \d+: loss ([\d.]+)/g)].map((m) => Number(m[1]));
    expect(two.code).toBe(0);
    expect(one.code).toBe(0);
    const a = losses(two.out), b = losses(one.out);
    expect(a.length).toBe(3);
    expect(b.length).toBe(3);
    expect(a[2]).toBeLessThan(a[0]);  // it trains
    // the same 16 rows per step on both sides; only the summation order differs
    for (let i = 0; i < 3; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-4);
  });

  it('rejects bad options', async () => {
    const r = await runCli(['launch', '--nproc-per-node', '0', 'x.js']);
    expect(r.out).toMatch(/--nproc-per-node must be an integer >= 1 \(got "0"\)/);
    expect(r.code).toBe(1);
  });
});
