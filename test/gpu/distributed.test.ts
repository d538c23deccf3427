// The nccl backend on CUDA tensors: world size 1 in this process (every collective and
// dtype against the expected values), and 2 ranks in 2 processes where 2+ GPUs exist.
// Skipped, with the reason, without a usable GPU or without libnccl.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { collectives } from '../distributed/nccl_worker.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const d = ng.distributed;
const gpus = ng.info().cuda.available ? ng.cuda.deviceCount() : 0;
const hasNccl = gpus > 0 && d.isNcclAvailable();
if (!hasNccl) console.log(`test/gpu/distributed: skipped (${gpus === 0 ? 'no usable CUDA device' : 'libnccl.so.2 not found'})`);

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

function runRanks(n: number, scenario: string, env: Record<string, string> = {}): Promise<{ code: number | null; out: string; ms: number }[]> {
  return freePort().then((port) => Promise.all(Array.from({ length: n }, (_, r) => new Promise<{ code: number | null; out: string; ms: number }>((resolve) => {
    const t0 = Date.now();
    const p = spawn(process.execPath, ['--import', './scripts/ts-loader.mjs', 'test/distributed/nccl_worker.ts', scenario], {
      cwd: root, stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), RANK: String(r), LOCAL_RANK: String(r), WORLD_SIZE: String(n), ...env },
    });
    let out = '';
    p.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    p.stderr.on('data', (b: Buffer) => { out += b.toString(); });
    p.on('close', (code) => resolve({ code, out, ms: Date.now() - t0 }));
  }))));
}

describe.skipIf(!hasNccl)('distributed (nccl, 1 GPU)', () => {
  it('every collective on CUDA tensors with world size 1 gives the expected values (float32/float64/int32/bfloat16/float16)', async () => {
    await d.initProcessGroup({ backend: 'nccl', rank: 0, worldSize: 1, masterPort: await freePort(), timeoutMs: 60000 });
    try {
      expect(d.getBackend()).toBe('nccl');
      await collectives('cuda:0');
      expect(() => d.allReduce(ng.ones([2], { device: 'cuda:0', dtype: 'int32' }), { op: 'avg' })).toThrow(/avg needs a floating dtype/);
    } finally {
      await d.destroyProcessGroup();
    }
  });

  it('the gloo backend refuses CUDA tensors with a clear Error', async () => {
    await d.initProcessGroup({ backend: 'gloo', rank: 0, worldSize: 1, masterPort: await freePort(), timeoutMs: 10000 });
    try {
      expect(() => d.allReduce(ng.ones([2], { device: 'cuda:0' }))).toThrow(/the gloo backend takes CPU tensors \(got tensor on cuda:0; expected cpu: use \.cpu\(\), or initProcessGroup\(\{ backend: 'nccl' \}\) for CUDA tensors\)/);
    } finally {
      await d.destroyProcessGroup();
    }
  });
});

describe.skipIf(!hasNccl || gpus < 2)('distributed (nccl, 2 GPUs)', () => {
  it('every collective on 2 ranks (cuda:0, cuda:1) matches one-process values', async () => {
    const res = await runRanks(2, 'collectives');
    for (const r of res) expect(r.out).toMatch(/ok/);
    expect(res.map((r) => r.code)).toEqual([0, 0]);
  }, 120000);

  it('a killed rank makes the other fail within the timeout naming it', async () => {
    const res = await runRanks(2, 'killed', { NG_TEST_TIMEOUT_MS: '10000' });
    expect(res[0].code).toBe(3);
    expect(res[0].out).toMatch(/allReduce failed on rank 0: rank 1 exited/);
    expect(res[0].ms).toBeLessThan(30000);
  }, 60000);
});
