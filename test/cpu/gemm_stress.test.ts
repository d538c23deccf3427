// Threaded GEMM: every path, many calls, against a float64 reference and bitwise against
// its own first result, with busy threads beside the pool (the ordering bugs between the
// threads of one matmul hide on a quiet machine). One child process per micro-kernel
// family present on this CPU. `npm run stress` runs the long version.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { gemmKernels, kernelEnv } from '../stress/kernels.js';

const kernels = gemmKernels();

function stress(kernel: string, args: string[]) {
  const r = spawnSync(process.execPath, ['--import', './scripts/ts-loader.mjs', 'test/stress/gemm_stress.ts', ...args],
    { cwd: process.cwd(), encoding: 'utf8', env: kernelEnv(kernel) });
  expect(r.signal, r.stderr).toBeNull();
  const line = r.stdout.trim().split('\n').pop() ?? '';
  expect(line.startsWith('{'), `no report from the stress process: ${r.stderr}`).toBe(true);
  return { status: r.status, report: JSON.parse(line) as { kernel: string; cases: { name: string; dtype: string; wrong: number; unstable: number; maxErr: number }[] } };
}

describe('threaded matmul under load', () => {
  for (const k of kernels) {
    it(`${k} kernel: every path right and bitwise repeatable with 2 threads and busy neighbours`, () => {
      const { status, report } = stress(k, ['--iters', k === 'portable' ? '8' : '30', '--threads', '2', '--load']);
      expect(report.kernel).toBe(k);
      const bad = report.cases.filter((c) => c.wrong > 0 || c.unstable > 0);
      expect(bad, JSON.stringify(bad)).toEqual([]);
      expect(report.cases.length).toBe(20);
      expect(status).toBe(0);
    });
  }
});
