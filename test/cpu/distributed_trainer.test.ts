// The Trainer and `nodegrad train` data-parallel over Gloo on 127.0.0.1: real rank processes
// (test/distributed/trainer_worker.ts, the CLI) against one-process runs.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { loadSafetensors } from '../../lib/io/safetensors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const hasGloo = ng.distributed.isGlooAvailable();
if (!hasGloo) console.log('distributed Trainer tests skipped: this addon was built without Gloo (install libgloo-dev and run npm run build:native)');

interface Result { code: number | null; out: string }

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

function run(script: string, args: string[], env: Record<string, string>): Promise<Result> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', './scripts/ts-loader.mjs', script, ...args], {
      cwd: root, env: { ...process.env, MASTER_ADDR: '127.0.0.1', NODEGRAD_NUM_THREADS: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    p.stderr.on('data', (b: Buffer) => { out += b.toString(); });
    p.on('close', (code) => resolve({ code, out }));
  });
}

async function ranks(mode: string, dir: string): Promise<Result[]> {
  const port = String(await freePort());
  return await Promise.all([0, 1].map((r) =>
    run('test/distributed/trainer_worker.ts', [mode, dir], { RANK: String(r), WORLD_SIZE: '2', MASTER_PORT: port })));
}

function expectOk(res: Result[]): void {
  for (const r of res) if (r.code !== 0) throw new Error(`a rank failed (code ${r.code}):\n${r.out}`);
}

async function weights(file: string): Promise<Map<string, Float32Array>> {
  const { tensors } = await loadSafetensors(file);
  return new Map([...tensors].map(([k, t]) => [k, Float32Array.from(t.dataSync() as Float32Array)]));
}

function maxDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let m = 0;
  for (const [k, v] of a) {
    const w = b.get(k)!;
    for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i] - w[i]));
  }
  return m;
}

const evalLosses = (file: string): number[] =>
  readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'eval').map((e) => e.valLoss);

const tmp = mkdtempSync(path.join(os.tmpdir(), 'nodegrad-ddp-trainer-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(!hasGloo)('Trainer under DistributedDataParallel (gloo, 127.0.0.1)', () => {
  it('2 ranks end with identical weights; only rank 0 writes the checkpoint and the log; 2 ranks x batch 4 match one process with batch 8 (max weight difference < 1e-4)', async () => {
    const [ddp, single] = await Promise.all([ranks('ddp', tmp), run('test/distributed/trainer_worker.ts', ['single', tmp], {})]);
    expectOk([...ddp, single]);
    for (const r of ddp) expect(r.out).toMatch(/weights differ across ranks by 0\b/);
    expect(existsSync(path.join(tmp, 'rank0/ckpt/model.safetensors'))).toBe(true);
    expect(existsSync(path.join(tmp, 'rank0/log.jsonl'))).toBe(true);
    expect(existsSync(path.join(tmp, 'rank1'))).toBe(false);
    // the Trainer gives rank r rows [4r, 4r+4) of the batch of 8 the one-process run draws: the
    // same data, so only float32 summation order separates the two runs
    const diff = maxDiff(await weights(path.join(tmp, 'rank0/ckpt/model.safetensors')), await weights(path.join(tmp, 'single/ckpt/model.safetensors')));
    console.log(`2 ranks x batch 4 vs 1 process x batch 8: max weight difference ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-4);
    const dv = evalLosses(path.join(tmp, 'rank0/log.jsonl')), sv = evalLosses(path.join(tmp, 'single/log.jsonl'));
    expect(dv.length).toBe(2);
    for (let i = 0; i < dv.length; i++) expect(Math.abs(dv[i] - sv[i])).toBeLessThan(1e-4);
  }, 120000);

  it('a 2-rank run stopped at step 3 and resumed on 2 ranks ends with the weights of the uninterrupted run', async () => {
    if (!existsSync(path.join(tmp, 'rank0/ckpt/model.safetensors'))) expectOk(await ranks('ddp', tmp));
    expectOk(await ranks('stop', tmp));
    const mid = JSON.parse(readFileSync(path.join(tmp, 'shared/ckpt/trainer.json'), 'utf8'));
    expect(mid.step).toBe(3);
    const res = await ranks('resume', tmp);
    expectOk(res);
    const diff = maxDiff(await weights(path.join(tmp, 'shared/ckpt/model.safetensors')), await weights(path.join(tmp, 'rank0/ckpt/model.safetensors')));
    expect(diff).toBe(0);
    expect(evalLosses(path.join(tmp, 'shared/log.jsonl'))).toEqual(evalLosses(path.join(tmp, 'rank0/log.jsonl')));
  }, 120000);

  it('nodegrad train --nproc-per-node 2 --steps 20 trains on 2 ranks and writes a loadable checkpoint', async () => {
    const out = path.join(tmp, 'cli');
    const r = await run('test/cli_runner.ts', ['train', '--nproc-per-node', '2', '--steps', '20', '--batch', '4', '--eval-interval', '10',
      '--out', out, '--samples', '1'], { MASTER_PORT: String(await freePort()) });
    if (r.code !== 0) throw new Error(`nodegrad train failed (code ${r.code}):\n${r.out}`);
    expect(r.out).toMatch(/on each of 2 ranks \(global batch 8\)/);
    expect(r.out.match(/nodegrad: training a GPT/g)?.length).toBe(1);
    expect(r.out).toMatch(/nodegrad: 20 steps, final train loss/);
    const trainer = JSON.parse(readFileSync(path.join(out, 'trainer.json'), 'utf8'));
    expect(trainer.step).toBe(20);
    const model = await ng.models.GPT.load(out);
    const ids = model.generate([[1, 2, 3]], { maxNewTokens: 2, temperature: 0 })[0];
    expect(ids.length).toBe(5);
  }, 180000);
});
