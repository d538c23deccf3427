// Backward frees each intermediate gradient once every input has taken it, so its peak
// memory holds a few gradients, not one per op of the graph.
import { describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { record } from '../../lib/autograd.js';
import { expectClose } from '../helpers.js';

describe('backward memory', () => {
  test('intermediate gradients are freed as backward goes, and results are unchanged', () => {
    const n = 1 << 20; // 4 MiB per float32 tensor
    const x = ng.ones([n], { requiresGrad: true });
    let during = -1, before = -1;
    const loss = (() => {
      let y = x.mul(1);
      for (let i = 0; i < 40; i++) {
        y = y.mul(1.01).add(0.5);
        if (i === 5) {
          // a probe near the start of the chain: backward reaches it after 34 later ops
          const p = y;
          y = record(p.detach().clone(), 'probe', [p], (g) => {
            during = ng.memory().numBytes;
            return [g];
          });
        }
      }
      return y.sum();
    })();
    before = ng.memory().numBytes;
    loss.backward();
    expect(during).toBeGreaterThan(0);
    // x, x.grad being built, the loss, and a couple of gradients in flight: well under
    // the 34 gradients (136 MiB) that keeping them all would hold
    expect(during - before).toBeLessThan(6 * 4 * n);
    expectClose(x.grad!.narrow(0, 0, 4), new Array(4).fill(1.01 ** 40), { rtol: 1e-5 });
  });

  test('a gradient shared by several inputs and a caller-supplied gradient survive', () => {
    const a = ng.randn([3, 3], { requiresGrad: true });
    const b = a.add(a).mul(a);
    const g = ng.ones([3, 3]);
    b.backward(g);
    expect(g.isDisposed).toBe(false);
    expectClose(a.grad!, a.detach().mul(4));
  });
});
