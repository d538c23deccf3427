// addLayerNorm (the fused residual add + layerNorm of a pre-norm block) on the CPU, where
// it is composed from add() and layerNorm(): same values and gradients as writing the two
// ops by hand, gradients against finite differences in float64, and its argument checks.
import { describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { addLayerNorm, layerNorm } from '../../lib/ops/layernorm.js';
import { expectClose } from '../helpers.js';

describe('addLayerNorm on the CPU', () => {
  test('returns sum = x + residual and out = layerNorm(sum)', () => {
    ng.manualSeed(1);
    const x = ng.randn([3, 4, 10]), r = ng.randn([3, 4, 10]), w = ng.randn([10]), b = ng.randn([10]);
    const { sum, out } = addLayerNorm(x, r, [10], w, b, 1e-5);
    expectClose(sum, x.add(r), { atol: 0, rtol: 0 });
    expectClose(out, layerNorm(x.add(r), [10], w, b, 1e-5), { atol: 0, rtol: 0 });
  });

  test('gradients equal those of add() then layerNorm(), with both outputs used', () => {
    ng.manualSeed(2);
    const base = [ng.randn([6, 12]), ng.randn([6, 12]), ng.randn([12]), ng.randn([12])];
    const g1 = ng.randn([6, 12]), g2 = ng.randn([6, 12]);
    const run = (fused: boolean): Tensor[] => {
      const [x, r, w, b] = base.map((t) => t.clone().requiresGrad_(true));
      const { sum, out } = fused ? addLayerNorm(x, r, [12], w, b)
        : (() => { const s = x.add(r); return { sum: s, out: layerNorm(s, [12], w, b) }; })();
      sum.mul(g1).sum().add(out.mul(g2).sum()).backward();
      return [x.grad!, r.grad!, w.grad!, b.grad!];
    };
    const a = run(true), c = run(false);
    for (let i = 0; i < a.length; i++) expectClose(a[i], c[i], { atol: 1e-6, rtol: 1e-5 });
    // the residual stream's gradient reaches x and residual unchanged
    expectClose(a[0], a[1], { atol: 0, rtol: 0 });
  });

  test('gradients match finite differences (float64)', () => {
    ng.manualSeed(3);
    const opts = { dtype: 'float64' as const, requiresGrad: true };
    const x = ng.randn([4, 7], opts), r = ng.randn([4, 7], opts), w = ng.randn([7], opts), b = ng.randn([7], opts);
    const g = ng.randn([4, 7], { dtype: 'float64' });
    // one output combining both results, so every path is checked
    ng.gradcheck((a, q, c, d) => {
      const { sum, out } = addLayerNorm(a, q, [7], c, d);
      return out.add(sum.mul(g));
    }, [x, r, w, b]);
    ng.gradcheck((a, q) => addLayerNorm(a, q, [7]).out, [x, r]);
  });

  test('only the weight requiring grad', () => {
    ng.manualSeed(4);
    const x = ng.randn([5, 8]), r = ng.randn([5, 8]), w = ng.randn([8]).requiresGrad_(true);
    const { sum, out } = addLayerNorm(x, r, [8], w);
    expect(sum.requiresGrad).toBe(false);
    out.sum().backward();
    expect(w.grad).toBeTruthy();
  });

  test('bad arguments are refused with clear errors', () => {
    const x = ng.randn([2, 8]);
    expect(() => addLayerNorm(x, ng.randn([1, 8]), [8])).toThrow(/nodegrad: addLayerNorm: residual has shape \[1,8\]/);
    expect(() => addLayerNorm(x, ng.randn([2, 8], { dtype: 'float64' }), [8])).toThrow(/residual has dtype float64/);
    expect(() => addLayerNorm(x, ng.randn([2, 8]), [7])).toThrow(/does not match the trailing dims/);
    expect(() => addLayerNorm(x, ng.randn([2, 8]), [8], ng.ones([7]))).toThrow(/weight has shape/);
  });
});
