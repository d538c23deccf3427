// The thread pool's wait policies (spin, then sleep; sleep only; spin for long): a job
// never starts on a stale generation, never loses a wake-up (that would hang the child
// until the timeout) and gives the one-thread result after resizes and idle gaps.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function runChild(spinUs: string | undefined) {
  const env = { ...process.env };
  if (spinUs === undefined) delete env.NODEGRAD_SPIN_US;
  else env.NODEGRAD_SPIN_US = spinUs;
  const r = spawnSync(process.execPath, ['--import', './scripts/ts-loader.mjs', 'test/stress/pool_jobs.ts'],
    { cwd: process.cwd(), encoding: 'utf8', env, timeout: 120_000 });
  expect(r.signal, r.stderr).toBeNull();
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { checked: number; mismatches: number; threads: number };
}

describe('thread pool', () => {
  for (const [name, spin] of [['default spin window', undefined], ['no spinning (NODEGRAD_SPIN_US=0)', '0'],
    ['a long spin window (NODEGRAD_SPIN_US=20000)', '20000']] as const) {
    it(`${name}: parallel kernels match one thread across resizes and idle gaps`, () => {
      const r = runChild(spin);
      expect(r.checked).toBe(180);
      expect(r.mismatches).toBe(0);
      expect(r.threads).toBe(2);
    }, 150_000);
  }
});
