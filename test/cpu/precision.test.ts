// Transcendental kernels keep full relative precision in their tails (float32): a value
// of 1e-20 must not come out as 0 or with a few correct bits.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';

const F = ng.nn.functional;
const xs = [-87, -50, -30, -20, -10, -5.5, -1, -1e-3, 0, 1e-3, 1, 5.5, 10, 20];
const sig = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));

function relErr(got: ArrayLike<number>, want: number[]): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const w = Math.fround(want[i]);
    const e = w === 0 ? Math.abs(got[i]) : Math.abs(got[i] - w) / Math.abs(w);
    worst = Math.max(worst, e);
  }
  return worst;
}

describe('float32 tails', () => {
  // long enough to take the vectorised loops, with the interesting values spread over it
  const n = 4096;
  const data = Float32Array.from({ length: n }, (_, i) => xs[i % xs.length]);
  const want = (f: (x: number) => number) => Array.from(data, (x) => f(x));
  it('sigmoid keeps its relative precision for large negative inputs', () => {
    const x = ng.tensor(data);
    expect(relErr(x.sigmoid().dataSync() as Float32Array, want(sig))).toBeLessThan(2e-6);
  });
  it('silu and swiglu keep their relative precision for large negative inputs', () => {
    const x = ng.tensor(data);
    expect(relErr(F.silu(x).dataSync() as Float32Array, want((v) => v * sig(v)))).toBeLessThan(2e-6);
    const up = ng.ones([n]);
    expect(relErr(F.swiglu(x, up).dataSync() as Float32Array, want((v) => v * sig(v)))).toBeLessThan(2e-6);
  });
});
