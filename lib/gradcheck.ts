// gradcheck: compares autograd gradients with central finite differences in float64.
import { backward } from './autograd.js';
import { noGrad } from './autograd.js';
import { scope } from './memory.js';
import { Tensor } from './tensor.js';
import { cast } from './ops/elementwise.js';
import { sum } from './ops/reduce.js';
import { mul } from './ops/elementwise.js';
import { randn } from './ops/creation.js';
import { getRngState, manualSeed, setRngState } from './random.js';

/** seed: the seed of the random output weighting (the global generator is left as it was). */
export interface GradcheckOptions { eps?: number; atol?: number; rtol?: number; seed?: number }
export interface GradcheckResult { ok: boolean; maxError: number; worst: string }

/**
 * Checks d(sum(fn(inputs) * w))/d(input) for every input that requires grad, where w is
 * a fixed random weighting (so every output element matters). Inputs are converted to
 * float64. Throws with the worst mismatch if the check fails, returns the error otherwise.
 */
export function gradcheck(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: GradcheckOptions = {}): GradcheckResult {
  const eps = opts.eps ?? 1e-6, atol = opts.atol ?? 1e-5, rtol = opts.rtol ?? 1e-4;
  return scope(() => {
    const xs = inputs.map((t) => {
      const d = noGrad(() => (t.dtype === 'float32' ? cast(t, 'float64') : t.dtype === 'float64' ? t.clone() : t));
      if (t.requiresGrad) d.requiresGrad = true;
      return d;
    });
    const out0 = fn(...xs);
    const rng = getRngState();
    manualSeed(opts.seed ?? 0);
    const w = randn(out0.shape as number[], { dtype: 'float64' });
    setRngState(rng);
    const f = (): number => noGrad(() => {
      const o = fn(...xs);
      return sum(mul(cast(o, 'float64'), w)).item();
    });
    const loss = sum(mul(cast(out0, 'float64'), w));
    backward(loss);
    let maxError = 0;
    let worst = '';
    xs.forEach((x, k) => {
      if (!x.requiresGrad) return;
      const analytic = x.grad ? (x.grad.dataSync() as Float64Array) : new Float64Array(x.numel);
      const data = x.storage.data as Float64Array;
      for (let i = 0; i < x.numel; i++) {
        // inputs are fresh contiguous float64 copies, so element i lives at data[i]
        const orig = data[i];
        data[i] = orig + eps;
        const fp = f();
        data[i] = orig - eps;
        const fm = f();
        data[i] = orig;
        const numeric = (fp - fm) / (2 * eps);
        const err = Math.abs(numeric - analytic[i]);
        const tol = atol + rtol * Math.abs(numeric);
        if (err - tol > maxError) {
          maxError = err - tol;
          worst = `input ${k} element ${i}: analytic ${analytic[i]}, numeric ${numeric}`;
        }
      }
    });
    if (maxError > 0) throw new Error(`nodegrad: gradcheck failed: ${worst}`);
    return { ok: true, maxError, worst };
  });
}
