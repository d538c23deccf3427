import { expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { dropout } from '../../lib/ops/dropout.js';
import { describeBackends, expectClose, lcg } from '../helpers.js';

function values(t: ng.Tensor): number[] {
  return Array.from(t.dataSync() as ArrayLike<number>);
}

describeBackends('dropout', (device) => {
  it('returns the input itself in eval mode or with p = 0', () => {
    const x = ng.randn([4, 5], { device });
    expect(dropout(x, 0.5, false)).toBe(x);
    expect(dropout(x, 0)).toBe(x);
  });

  it('p = 1 gives zeros and a zero gradient', () => {
    const x = ng.randn([3, 4], { device, requiresGrad: true });
    const y = dropout(x, 1);
    expect(values(y).every((v) => v === 0)).toBe(true);
    y.sum().backward();
    expect(values(x.grad!).every((v) => v === 0)).toBe(true);
  });

  for (const dtype of ['float32', 'float64'] as const) {
    it(`keeps elements with probability 1 - p and scales them by 1 / (1 - p) (${dtype})`, () => {
      const n = 200_000;
      for (const p of [0.1, 0.5, 0.9]) {
        const y = values(dropout(ng.ones([n], { dtype, device }), p));
        const kept = y.filter((v) => v !== 0);
        const worst = kept.reduce((m, v) => Math.max(m, Math.abs(v - 1 / (1 - p))), 0);
        expect(worst).toBeLessThan(dtype === 'float32' ? 1e-6 : 1e-14);
        const frac = kept.length / n;
        const sigma = Math.sqrt(p * (1 - p) / n);
        expect(Math.abs(frac - (1 - p))).toBeLessThan(5 * sigma);
        // the expectation is preserved
        const mean = y.reduce((a, b) => a + b, 0) / n;
        expect(Math.abs(mean - 1)).toBeLessThan(5 * sigma / (1 - p));
      }
    });
  }

  it('the same seed gives the same mask, and the mask is a bernoulli draw', () => {
    const x = ng.randn([64, 33], { device });
    ng.manualSeed(1234);
    const a = values(dropout(x, 0.3));
    const b = values(dropout(x, 0.3));
    ng.manualSeed(1234);
    expect(values(dropout(x, 0.3))).toEqual(a);
    expect(b).not.toEqual(a); // the generator advances between calls
    ng.manualSeed(1234);
    const keep = values(ng.bernoulli([64, 33], 0.7, { device }));
    const xs = values(x);
    expectClose(a, xs.map((v, i) => (keep[i] ? v / 0.7 : 0)), { atol: 1e-6 });
  });

  it('the output is x * mask / (1 - p) for any input layout', () => {
    const r = lcg(3);
    const base = ng.tensor(Float64Array.from({ length: 60 }, () => r() + 2), { shape: [6, 10], dtype: 'float64', device });
    const x = base.transpose(0, 1);
    const y = dropout(x, 0.25);
    expect(y.shape).toEqual([10, 6]);
    expect(y.dtype).toBe('float64');
    const xs = values(x), ys = values(y);
    ys.forEach((v, i) => expect(v === 0 || Math.abs(v - xs[i] / 0.75) < 1e-12).toBe(true));
  });

  it('the gradient is the same mask scaled by 1 / (1 - p)', () => {
    const r = lcg(5);
    const x = ng.tensor(Float64Array.from({ length: 500 }, () => r() + 3), { shape: [20, 25], dtype: 'float64', device, requiresGrad: true });
    const y = dropout(x, 0.4);
    const g = ng.tensor(Float64Array.from({ length: 500 }, () => r()), { shape: [20, 25], dtype: 'float64', device });
    y.backward(g);
    const ys = values(y), gs = values(g), gx = values(x.grad!);
    const kept = ys.filter((v) => v !== 0).length;
    expect(kept).toBeGreaterThan(200);
    expect(kept).toBeLessThan(400);
    expectClose(gx, ys.map((v, i) => (v !== 0 ? gs[i] / 0.6 : 0)), { atol: 1e-12 });
  });

  it('rejects bad arguments with clear errors', () => {
    const x = ng.ones([3], { device });
    expect(() => dropout(x, -0.1)).toThrow(/nodegrad: dropout: probability p must be between 0 and 1 \(got -0.1\)/);
    expect(() => dropout(x, 1.5)).toThrow(/nodegrad: dropout: probability p/);
    expect(() => dropout(x, NaN)).toThrow(/nodegrad: dropout: probability p/);
    expect(() => dropout(ng.ones([3], { dtype: 'int32', device }), 0.5)).toThrow(/nodegrad: dropout: input must be a floating-point tensor/);
    expect(() => dropout('x' as unknown as ng.Tensor)).toThrow(/nodegrad: dropout:/);
  });
});
