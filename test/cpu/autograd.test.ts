// The autograd tape: accumulation, retainGraph, noGrad/detach, graph shapes, explicit
// gradients, retainGrad, deep graphs, and what backward leaves alive.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { record } from '../../lib/autograd.js';
import { gradcheck } from '../../lib/gradcheck.js';
import { expectClose } from '../helpers.js';

describe('backward basics', () => {
  it('computes the gradient of a small expression', () => {
    const x = ng.tensor([1, 2, 3], { requiresGrad: true });
    // d/dx sum(x^2 * 3 + exp(x)) = 6x + exp(x)
    ng.sum(ng.add(ng.mul(ng.square(x), 3), ng.exp(x))).backward();
    expectClose(x.grad!, [1, 2, 3].map((v) => 6 * v + Math.exp(v)));
  });

  it('gradients accumulate over two backward calls until zeroGrad', () => {
    const x = ng.tensor([1, -2], { requiresGrad: true });
    ng.mul(x, x).sum().backward();
    expect(x.grad!.tolist()).toEqual([2, -4]);
    ng.mul(x, 3).sum().backward();
    expect(x.grad!.tolist()).toEqual([5, -1]);
    x.zeroGrad();
    expect(x.grad).toBeNull();
    ng.mul(x, 3).sum().backward();
    expect(x.grad!.tolist()).toEqual([3, 3]);
  });

  it('retainGraph allows a second backward; without it the second backward fails clearly', () => {
    const x = ng.tensor([2], { requiresGrad: true });
    const y = ng.mul(x, x).sum();
    y.backward(undefined, { retainGraph: true });
    y.backward();
    expect(x.grad!.tolist()).toEqual([8]);
    expect(() => y.backward()).toThrow(/nodegrad: backward: trying to backward through the graph a second time; pass \{ retainGraph: true \}/);
  });

  it('a diamond graph (x used on two paths) sums both contributions', () => {
    const x = ng.tensor([1.5, -0.5], { requiresGrad: true });
    const a = ng.mul(x, 2), b = ng.sin(x);
    ng.mul(a, b).sum().backward(); // d/dx 2x sin x = 2 sin x + 2x cos x
    expectClose(x.grad!, [1.5, -0.5].map((v) => 2 * Math.sin(v) + 2 * v * Math.cos(v)));
    const y = ng.tensor([3], { requiresGrad: true });
    const s = ng.add(y, y);
    ng.add(s, s).sum().backward();
    expect(y.grad!.tolist()).toEqual([4]);
  });

  it('both operands of one op receive separate gradient tensors', () => {
    const x = ng.tensor([1, 2], { requiresGrad: true }), y = ng.tensor([3, 4], { requiresGrad: true });
    ng.add(x, y).sum().backward();
    expect(x.grad!.tolist()).toEqual([1, 1]);
    expect(y.grad!.tolist()).toEqual([1, 1]);
    expect(x.grad!.storage).not.toBe(y.grad!.storage);
    ng.noGrad(() => x.grad!.add_(10));
    expect(y.grad!.tolist()).toEqual([1, 1]);
    // a second accumulation into one grad must not leak into the other either
    ng.add(x, y).sum().backward();
    expect(x.grad!.tolist()).toEqual([12, 12]);
    expect(y.grad!.tolist()).toEqual([2, 2]);
  });

  it('backward with an explicit gradient; the caller\'s gradient is not aliased', () => {
    const x = ng.tensor([1, 2, 3], { requiresGrad: true });
    const y = ng.mul(x, 2);
    const g = ng.tensor([1, 0.5, -1]);
    y.backward(g);
    expect(x.grad!.tolist()).toEqual([2, 1, -2]);
    const z = ng.tensor([[1, 2]], { requiresGrad: true });
    z.backward(ng.tensor([[5, 6]]));
    expect(z.grad!.tolist()).toEqual([[5, 6]]);
    expect(z.grad!.storage).not.toBe(g.storage);
  });

  it('an explicit gradient of another dtype is converted to the output dtype', () => {
    const x = ng.tensor([-1, 2], { requiresGrad: true });
    ng.relu(x).mul(2).backward(ng.tensor([1, 3], { dtype: 'float64' }));
    expect(x.grad!.dtype).toBe('float32');
    expect(x.grad!.tolist()).toEqual([0, 6]);
  });

  it('a non-scalar backward needs a gradient of the right shape', () => {
    const x = ng.tensor([1, 2], { requiresGrad: true });
    const y = ng.mul(x, 2);
    expect(() => y.backward()).toThrow(/nodegrad: backward: grad can be implicitly created only for scalar outputs \(got shape \[2\]\)/);
    expect(() => y.backward(ng.ones([3]))).toThrow(/nodegrad: backward: gradient shape \[3\] does not match the tensor's shape \[2\]/);
    expect(() => ng.ones([1]).backward()).toThrow(/nodegrad: backward: the tensor does not require grad/);
  });

  it('a 1-element non-scalar output backpropagates without a gradient', () => {
    const x = ng.tensor([[3]], { requiresGrad: true });
    ng.mul(x, x).backward();
    expect(x.grad!.tolist()).toEqual([[6]]);
  });
});

describe('what records a graph', () => {
  it('requiresGrad propagates to results and makes them non-leaves', () => {
    const x = ng.tensor([1], { requiresGrad: true }), c = ng.tensor([2]);
    const y = ng.mul(x, c);
    expect(y.requiresGrad).toBe(true);
    expect(y.isLeaf).toBe(false);
    expect(y.gradFn!.name).toBe('mul');
    const z = ng.mul(c, c);
    expect(z.requiresGrad).toBe(false);
    expect(z.isLeaf).toBe(true);
    expect(ng.gt(x, 0).requiresGrad).toBe(false);
    expect(ng.argmax(x).requiresGrad).toBe(false);
    expect(x.reshape(1, 1).gradFn!.name).toBe('reshape');
  });

  it('noGrad records nothing, nests, and restores the mode after a throw', () => {
    const x = ng.tensor([1], { requiresGrad: true });
    const y = ng.noGrad(() => {
      expect(ng.isGradEnabled()).toBe(false);
      const inner = ng.enableGrad(() => ng.mul(x, 2));
      expect(inner.requiresGrad).toBe(true);
      return ng.mul(x, 2);
    });
    expect(y.requiresGrad).toBe(false);
    expect(y.gradFn).toBeNull();
    expect(ng.isGradEnabled()).toBe(true);
    expect(() => ng.noGrad(() => { throw new Error('boom'); })).toThrow('boom');
    expect(ng.isGradEnabled()).toBe(true);
  });

  it('detach stops gradients', () => {
    const x = ng.tensor([2, 3], { requiresGrad: true });
    // y = x * detach(x): gradient is detach(x) only
    ng.mul(x, x.detach()).sum().backward();
    expect(x.grad!.tolist()).toEqual([2, 3]);
    const d = x.detach();
    expect(d.requiresGrad).toBe(false);
    expect(ng.mul(d, 2).requiresGrad).toBe(false);
  });

  it('gradients flow through views into the base leaf', () => {
    const x = ng.tensor([[1, 2, 3], [4, 5, 6]], { requiresGrad: true });
    const y = ng.add(x.T.select(0, 1).mul(10), x.slice(1, 0, 3, 2).sum(1).unsqueeze(0).expand(2, 2).sum(0));
    y.sum().backward();
    // select(T, 0, 1) = column 1 -> 10 each; slice cols 0,2 summed and broadcast over 2 rows, summed over 2
    expect(x.grad!.tolist()).toEqual([[2, 10, 2], [2, 10, 2]]);
  });

  it('requiresGrad_ only on float leaves', () => {
    const x = ng.tensor([1]).requiresGrad_();
    expect(x.requiresGrad).toBe(true);
    expect(() => ng.mul(x, 2).requiresGrad_()).toThrow(/nodegrad: requiresGrad_: only leaf tensors/);
  });
});

describe('retainGrad and intermediates', () => {
  it('retainGrad keeps the gradient of a non-leaf; other non-leaves keep none', () => {
    const x = ng.tensor([1, 2], { requiresGrad: true });
    const h = ng.mul(x, 3).retainGrad();
    const k = ng.exp(h);
    k.sum().backward();
    expectClose(h.grad!, [Math.exp(3), Math.exp(6)]);
    expect(k.grad).toBeNull();
    expectClose(x.grad!, [3 * Math.exp(3), 3 * Math.exp(6)], { rtol: 1e-5 });
  });

  it('backward frees its temporaries: only the new .grad tensors stay alive', () => {
    const x = ng.randn([8, 8], { requiresGrad: true }), w = ng.randn([8], { requiresGrad: true });
    const loss = ng.tanh(ng.mul(x, w)).sum(1).pow(2).mean();
    const before = ng.memory().numTensors;
    loss.backward();
    expect(ng.memory().numTensors).toBe(before + 2);
    expect(x.grad!.shape).toEqual([8, 8]);
    expect(w.grad!.shape).toEqual([8]);
  });
});

describe('deep graphs', () => {
  it('a chain of 10,000 ops backpropagates without overflowing the stack', () => {
    const x = ng.tensor([1], { dtype: 'float64', requiresGrad: true });
    let y = x;
    for (let i = 0; i < 10_000; i++) y = ng.mul(y, 1.0001);
    y.sum().backward();
    expect(x.grad!.item()).toBeCloseTo(1.0001 ** 10_000, 8);
  });

  it('a wide fan-in (one leaf used 2,000 times) sums every path', () => {
    const x = ng.tensor([1, 2], { requiresGrad: true });
    const parts: ng.Tensor[] = [];
    for (let i = 0; i < 2000; i++) parts.push(ng.mul(x, 1));
    let acc = parts[0];
    for (let i = 1; i < parts.length; i++) acc = ng.add(acc, parts[i]);
    acc.sum().backward();
    expect(x.grad!.tolist()).toEqual([2000, 2000]);
  });
});

describe('gradcheck itself', () => {
  it('fails on a wrong backward formula', () => {
    // y = 2x recorded with the wrong derivative 3
    const wrong = (x: ng.Tensor): ng.Tensor => {
      const y = ng.noGrad(() => ng.mul(x, 2));
      return record(y, 'wrong', [x], (g) => [ng.mul(g, 3)]);
    };
    const x = ng.tensor([1, 2], { dtype: 'float64', requiresGrad: true });
    expect(() => gradcheck(wrong, [x])).toThrow(/nodegrad: gradcheck failed: input 0 element \d: analytic/);
    expect(gradcheck((t) => ng.mul(t, 2), [x]).ok).toBe(true);
  });

  it('leaves the global random stream as it was and frees its tensors', () => {
    ng.manualSeed(3);
    const a = Array.from(ng.randn([4]).dataSync());
    ng.manualSeed(3);
    const x = ng.tensor([0.5, 1.5], { requiresGrad: true });
    const n = ng.memory().numTensors;
    gradcheck((t) => ng.exp(t), [x]);
    expect(ng.memory().numTensors).toBe(n);
    expect(Array.from(ng.randn([4]).dataSync())).toEqual(a);
    expect(x.grad).toBeNull();
  });
});

describe('gradients of select and slice views', () => {
  // select/slice hand the engine a gradient that is zero outside their view; it is added in
  // place into a gradient this pass owns alone, and made dense otherwise (shared, or first).
  const rnd = (shape: number[]) => ng.randn(shape, { dtype: 'float64' }).requiresGrad_();
  it('the three selects of a fused q/k/v projection', () => {
    ng.manualSeed(3);
    const x = rnd([2, 5, 12]), w = ng.randn([2, 2, 5, 2], { dtype: 'float64' });
    const f = (x: ng.Tensor) => {
      const qkv = ng.reshape(ng.mul(x, 1.5), [2, 5, 3, 2, 2]).permute(2, 0, 3, 1, 4);
      return ng.add(ng.add(ng.mul(qkv.select(0, 0), w), ng.mul(qkv.select(0, 1), ng.square(w))), ng.exp(qkv.select(0, 2)));
    };
    expect(gradcheck(f, [x]).ok).toBe(true);
  });

  it('mixed with a gradient another input shares, the same index twice, strided slices and a leaf', () => {
    ng.manualSeed(4);
    const x = rnd([4, 6]), y = rnd([4, 6]);
    const f = (x: ng.Tensor, y: ng.Tensor) => {
      const t = ng.mul(x, 2);
      // add's backward hands the same gradient tensor to t and to y
      const a = ng.sum(ng.mul(ng.add(t, y), 3));
      const b = ng.sum(ng.mul(t.select(0, 1), ng.arange(6, undefined, undefined, { dtype: 'float64' })));
      const c = ng.sum(ng.square(ng.slice(t, 1, 1, 6, 2)));
      const d = ng.sum(ng.mul(x.select(1, 2), 5));
      const e = ng.sum(ng.mul(x.select(1, 2), x.select(1, 4)));
      const g = ng.sum(ng.exp(ng.slice(x, 0, 0, 3)));
      return ng.add(ng.add(ng.add(a, b), ng.add(c, d)), ng.add(e, g));
    };
    expect(gradcheck(f, [x, y]).ok).toBe(true);
    // and by hand, for the leaf that takes select gradients only
    const z = ng.tensor([[1, 2], [3, 4]], { requiresGrad: true });
    ng.add(ng.sum(ng.mul(z.select(0, 0), 10)), ng.sum(ng.add(z.select(1, 1), z.select(0, 1)))).backward();
    expect(z.grad!.tolist()).toEqual([[10, 11], [1, 2]]);
  });
});
