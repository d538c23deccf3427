// Every CPU GEMM path (empty, K = 1, primes, 1 x N, N x 1, GEMV both layouts, few-row and
// few-column kernels, small unpacked, packed, threaded, edge tiles, transposed and strided
// operands, broadcast batches, alpha/beta; float32 and float64; 1 and 2 threads) against a
// float64 reference, in one child process per micro-kernel family this CPU can run
// (test/stress/gemm_paths.ts): a family the CPU lacks is not listed, so not run.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { gemmKernels, kernelEnv } from '../stress/kernels.js';

describe('CPU matmul paths against a float64 reference', () => {
  for (const k of gemmKernels()) {
    it(`${k} kernel`, () => {
      const r = spawnSync(process.execPath, ['--import', './scripts/ts-loader.mjs', 'test/stress/gemm_paths.ts'],
        { cwd: process.cwd(), encoding: 'utf8', env: kernelEnv(k) });
      expect(r.signal, r.stderr).toBeNull();
      const line = r.stdout.trim().split('\n').pop() ?? '';
      expect(line.startsWith('{'), `no report: ${r.stderr}`).toBe(true);
      const rep = JSON.parse(line) as { kernel: string; checked: number; failed: number; failures: string[] };
      expect(rep.kernel.split(' ')[0]).toBe(k);
      expect(rep.failures).toEqual([]);
      expect(rep.checked).toBeGreaterThan(500);
      expect(r.status).toBe(0);
    }, 240_000);
  }

  it('names the kernel in use', () => {
    const c = ng.info().cpu;
    expect(c.gemmKernel).toMatch(/^(avx512|avx2|portable) \d+x\d+$/);
    expect(c.gemmKernel.startsWith(c.kernel)).toBe(true);
  });
});
