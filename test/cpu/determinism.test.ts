// Determinism at a fixed thread count: the same `nodegrad train` twice gives the same
// weights bit for bit, and a run stopped halfway and resumed ends bit-identical to the
// run that went straight through, with the default (multi-threaded) pool, with and
// without dropout. The default model's backward matmuls have K = batch x block = 1024,
// several KC steps shared by the pool's threads: the path where a lost partial sum once
// made two runs differ.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { resolveCheckpointDir } from '../../lib/io/atomic.js';

const dirs: string[] = [];
afterAll(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }); });

async function train(args: string[], out?: string): Promise<string> {
  const dir = out ?? await mkdtemp(path.join(os.tmpdir(), 'ng-determinism-'));
  if (!out) dirs.push(dir);
  const r = spawnSync(process.execPath, ['--import', './scripts/ts-loader.mjs', 'test/cli_runner.ts', 'train',
    '--steps', '40', '--eval-interval', '10', '--samples', '0', '--out', dir, ...args],
  { cwd: process.cwd(), encoding: 'utf8', env: process.env });
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr + r.stdout).toBe(0);
  return dir;
}

/** name -> hex of the weight bytes, from the checkpoint the CLI wrote. */
async function weights(dir: string): Promise<Map<string, string>> {
  const d = await resolveCheckpointDir(dir);
  const { tensors } = await ng.io.loadSafetensors(path.join(d, 'model.safetensors'));
  const out = new Map<string, string>();
  for (const [k, t] of tensors) {
    const v = t.dataSync() as Float32Array;
    out.set(k, Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex'));
    t.dispose();
  }
  return out;
}

describe('training is bitwise reproducible with the default threads', () => {
  it('uses more than one thread here', () => {
    expect(ng.info().cpu.threads).toBeGreaterThan(1);
  });
  for (const dropout of ['0', '0.1']) {
    it(`two identical runs give identical weights (dropout ${dropout})`, async () => {
      const a = await weights(await train(['--dropout', dropout]));
      const b = await weights(await train(['--dropout', dropout]));
      expect(a.size).toBeGreaterThan(5);
      expect([...b.entries()]).toEqual([...a.entries()]);
    });
    it(`train 40 equals train to 20, then resume to 40 (dropout ${dropout})`, async () => {
      const full = await weights(await train(['--dropout', dropout]));
      const half = await train(['--dropout', dropout, '--stop-at', '20']);
      const halfW = await weights(half);
      expect([...halfW.entries()]).not.toEqual([...full.entries()]);
      await train(['--dropout', dropout, '--resume'], half);
      expect([...(await weights(half)).entries()]).toEqual([...full.entries()]);
    });
  }
});
