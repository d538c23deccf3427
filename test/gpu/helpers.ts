// GPU suite helpers: every CUDA test runs the same computation on the CPU (the reference)
// and on CUDA from identical inputs and compares, forward and backward, with tolerances
// by dtype. Suites are skipped, with the reason printed once, where no device is usable.
import { describe, expect } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { expectClose } from '../helpers.js';

const info = ng.info().cuda;
export const cudaAvailable = info.available;
export const skipReason = cudaAvailable ? '' : `no usable CUDA device: ${info.unavailableReason ?? 'CUDA backend not available'}`;
let told = false;

/** describe() that runs only where a CUDA device is usable. */
export function describeCuda(name: string, body: () => void): void {
  if (!cudaAvailable && !told) {
    told = true;
    console.log(`test/gpu: skipped (${skipReason})`);
  }
  describe.skipIf(!cudaAvailable)(name, body);
}

export type FloatDType = 'float32' | 'bfloat16' | 'float16' | 'float64';

/** Default tolerances of a CUDA result against the float32 CPU reference. */
export function tolFor(dtype: FloatDType): { atol: number; rtol: number } {
  switch (dtype) {
    case 'float64': return { atol: 1e-10, rtol: 1e-9 };
    case 'float32': return { atol: 1e-5, rtol: 1e-4 };
    case 'float16': return { atol: 2e-3, rtol: 2e-3 };
    case 'bfloat16': return { atol: 1.6e-2, rtol: 1.6e-2 };
  }
}

function outputs(r: Tensor | Tensor[] | Record<string, Tensor>): Tensor[] {
  if (r instanceof ng.Tensor) return [r];
  if (Array.isArray(r)) return r;
  return Object.values(r).filter((t): t is Tensor => t instanceof ng.Tensor);
}

export interface CompareOptions {
  atol?: number;
  rtol?: number;
  /** Compare gradients of every input that requires grad (loss = sum(out * fixed random weights)). */
  grad?: boolean;
  /** dtype the CUDA inputs are cast to (floating inputs only); the CPU runs in float32/float64. */
  dtype?: FloatDType;
  gradAtol?: number;
  gradRtol?: number;
}

/**
 * Runs fn on CPU inputs and on CUDA copies of them and compares every output (and, with
 * grad, every input gradient). Inputs are CPU tensors; those with requiresGrad keep it.
 */
export function compareCpuCuda(fn: (...xs: Tensor[]) => Tensor | Tensor[] | Record<string, Tensor>, inputs: Tensor[],
  opts: CompareOptions = {}): void {
  const dtype = opts.dtype ?? 'float32';
  const tol = tolFor(dtype);
  const atol = opts.atol ?? tol.atol, rtol = opts.rtol ?? tol.rtol;
  ng.scope(() => {
    const cpuIn = inputs.map((t) => {
      const c = t.detach().clone();
      if (t.requiresGrad) c.requiresGrad_(true);
      return c;
    });
    const gpuIn = inputs.map((t) => {
      let g = t.detach().to('cuda');
      const floating = t.dtype === 'float32' || t.dtype === 'float64';
      if (floating && dtype !== 'float32' && dtype !== 'float64') g = g.to(dtype);
      if (t.requiresGrad) g = g.detach().requiresGrad_(true);
      return g;
    });
    const outC = outputs(fn(...cpuIn));
    const outG = outputs(fn(...gpuIn));
    expect(outG.length).toBe(outC.length);
    for (let i = 0; i < outC.length; i++) {
      expect(outG[i].device.startsWith('cuda'), `output ${i} device`).toBe(true);
      expect([...outG[i].shape], `output ${i} shape`).toEqual([...outC[i].shape]);
      const g = outG[i].cpu();
      const a = g.dtype === 'bfloat16' || g.dtype === 'float16' ? g.to('float32') : g;
      expectClose(a, outC[i], { atol, rtol });
    }
    if (!opts.grad) return;
    let lossC: Tensor | null = null, lossG: Tensor | null = null;
    for (let i = 0; i < outC.length; i++) {
      if (!outC[i].requiresGrad) continue;
      const w = ng.randn([...outC[i].shape], { dtype: outC[i].dtype });
      const lc = outC[i].mul(w).sum();
      const og = outG[i].dtype === 'float64' ? outG[i] : outG[i].float();
      const lg = og.mul(w.to('cuda').to(og.dtype)).sum();
      lossC = lossC ? lossC.add(lc) : lc;
      lossG = lossG ? lossG.add(lg) : lg;
    }
    if (!lossC || !lossG) throw new Error('compareCpuCuda: grad requested but no output requires grad');
    lossC.backward();
    lossG.backward();
    const gTol = { atol: opts.gradAtol ?? atol * 10, rtol: opts.gradRtol ?? rtol * 10 };
    for (let i = 0; i < inputs.length; i++) {
      if (!inputs[i].requiresGrad) continue;
      const gc = cpuIn[i].grad, gg = gpuIn[i].grad;
      expect(gc, `grad of input ${i} (cpu)`).toBeTruthy();
      expect(gg, `grad of input ${i} (cuda)`).toBeTruthy();
      const g = gg!.cpu();
      expectClose(g.dtype === 'bfloat16' || g.dtype === 'float16' ? g.to('float32') : g, gc!, gTol);
    }
  });
}
