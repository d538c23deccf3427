// Views: reshape/view, transpose/permute, slicing, expand, (un)squeeze, flatten,
// contiguous/clone/detach; shared storage and reading strided data.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { gradcheck } from '../../lib/gradcheck.js';
import { expectClose, lcg } from '../helpers.js';

/** JS reference of a 3-d arange(2*3*4) tensor: v(i,j,k) = 12i + 4j + k. */
const base = (): ng.Tensor => ng.arange(24, undefined, 1, { dtype: 'float32' }).reshape(2, 3, 4);
const v = (i: number, j: number, k: number): number => 12 * i + 4 * j + k;

describe('reshape and view', () => {
  it('reshape of a contiguous tensor is a view sharing storage', () => {
    const t = base();
    const r = t.reshape(4, 6);
    expect(r.storage).toBe(t.storage);
    expect(r.shape).toEqual([4, 6]);
    expect(r.tolist()).toEqual([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17], [18, 19, 20, 21, 22, 23]]);
  });

  it('infers one -1 dimension', () => {
    expect(base().reshape(-1, 8).shape).toEqual([3, 8]);
    expect(base().reshape([2, -1]).shape).toEqual([2, 12]);
    expect(base().view(-1).shape).toEqual([24]);
    expect(() => base().reshape(-1, -1)).toThrow(/nodegrad: reshape: only one dimension can be -1/);
    expect(() => base().reshape(-1, 5)).toThrow(/nodegrad: reshape: shape \[-1,5\] is invalid for input of size 24/);
  });

  it('reshape of a non-contiguous tensor copies when it must and gives row-major values', () => {
    const t = base().permute(1, 0, 2); // [3,2,4], strides [4,12,1]: dims 0 and 1 cannot merge
    const r = t.reshape(6, 4);
    expect(r.storage).not.toBe(t.storage);
    const want: number[] = [];
    for (let j = 0; j < 3; j++) for (let i = 0; i < 2; i++) for (let k = 0; k < 4; k++) want.push(v(i, j, k));
    expect(Array.from(r.dataSync())).toEqual(want);
    expect(r.isContiguous()).toBe(true);
  });

  it('reshape of a non-contiguous tensor stays a view when the strides allow it', () => {
    const t = base().slice(2, 0, 2); // [2,3,2], strides [12,4,1]: dims 0 and 1 merge
    const r = t.reshape(6, 2);
    expect(r.storage).toBe(t.storage);
    expect(r.strides).toEqual([4, 1]);
    expect(r.tolist()).toEqual([[0, 1], [4, 5], [8, 9], [12, 13], [16, 17], [20, 21]]);
    const p = base().permute(2, 0, 1); // [4,2,3], strides [1,12,4]: the last two dims merge
    const q = p.reshape(4, 6);
    expect(q.storage).toBe(p.storage);
    expect(q.flatten().tolist()).toEqual(p.contiguous().flatten().tolist());
    const tr = base().transpose(1, 2); // [2,4,3]
    const u = tr.reshape(1, 2, 4, 3, 1);
    expect(u.storage).toBe(tr.storage);
    expect(u.flatten().tolist()).toEqual(tr.flatten().tolist());
  });

  it('view() refuses layouts that need a copy', () => {
    const t = base().transpose(0, 2);
    expect(() => t.view(24)).toThrow(/nodegrad: view: the tensor's strides .* do not allow viewing it as \[24\]/);
    expect(() => t.contiguous().view(24)).not.toThrow();
  });
});

describe('transpose and permute', () => {
  it('transpose, T and t() give the JS reference values', () => {
    const m = ng.tensor([[1, 2, 3], [4, 5, 6]]);
    expect(m.t().tolist()).toEqual([[1, 4], [2, 5], [3, 6]]);
    expect(m.T.tolist()).toEqual([[1, 4], [2, 5], [3, 6]]);
    expect(m.transpose(-1, 0).strides).toEqual([1, 3]);
    expect(m.t().storage).toBe(m.storage);
    expect(ng.tensor([1, 2]).t().tolist()).toEqual([1, 2]);
    expect(() => base().t()).toThrow(/nodegrad: t: expects a tensor with <= 2 dims/);
  });

  it('permute and T of a 3-d tensor', () => {
    const p = base().permute([1, 2, 0]);
    expect(p.shape).toEqual([3, 4, 2]);
    for (let j = 0; j < 3; j++) for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) {
      expect((p.tolist() as number[][][])[j][k][i]).toBe(v(i, j, k));
    }
    const T = base().T;
    expect(T.shape).toEqual([4, 3, 2]);
    expect((T.tolist() as number[][][])[3][2][1]).toBe(v(1, 2, 3));
    expect(() => base().permute(0, 0, 1)).toThrow(/nodegrad: permute: dims \[0,0,1\] repeat a dimension/);
    expect(() => base().permute(0, 1)).toThrow(/nodegrad: permute: expected 3 dims/);
  });
});

describe('narrow, slice, select', () => {
  it('slice with step and negative indices', () => {
    const a = ng.arange(10);
    expect(a.slice(0, 1, 8, 3).tolist()).toEqual([1, 4, 7]);
    expect(a.slice(0, -3).tolist()).toEqual([7, 8, 9]);
    expect(a.slice(0, -5, -1, 2).tolist()).toEqual([5, 7]);
    expect(a.slice(0, 4, 2).numel).toBe(0);
    expect(a.slice(0, undefined, undefined, 4).tolist()).toEqual([0, 4, 8]);
    expect(a.slice(0, -100, 100).numel).toBe(10);
    expect(() => a.slice(0, 0, 5, 0)).toThrow(/nodegrad: slice: step must be a positive integer/);
    expect(() => a.slice(0, 1.5)).toThrow(/nodegrad: slice: start and end must be integers/);
  });

  it('slice of a 3-d tensor along the middle dim reads the right elements', () => {
    const s = base().slice(1, 1, 3).slice(2, 0, 4, 3); // [2,2,2]
    expect(s.tolist()).toEqual([[[v(0, 1, 0), v(0, 1, 3)], [v(0, 2, 0), v(0, 2, 3)]], [[v(1, 1, 0), v(1, 1, 3)], [v(1, 2, 0), v(1, 2, 3)]]]);
    expect(s.isContiguous()).toBe(false);
  });

  it('narrow and select', () => {
    const t = base();
    expect(t.narrow(2, 1, 2).tolist()).toEqual([[[1, 2], [5, 6], [9, 10]], [[13, 14], [17, 18], [21, 22]]]);
    expect(t.narrow(0, -1, 1).shape).toEqual([1, 3, 4]);
    expect(t.select(1, 2).tolist()).toEqual([[8, 9, 10, 11], [20, 21, 22, 23]]);
    expect(t.select(-1, -1).tolist()).toEqual([[3, 7, 11], [15, 19, 23]]);
    expect(t.select(0, 1).select(0, 1).select(0, 1).item()).toBe(v(1, 1, 1));
    expect(() => t.narrow(2, 3, 2)).toThrow(/nodegrad: narrow: start 3 and length 2 are out of range/);
    expect(() => t.select(1, 3)).toThrow(/nodegrad: select: index 3 is out of range for dim 1 of size 3/);
  });

  it('split and chunk give views covering the tensor', () => {
    const parts = ng.arange(7).split(3);
    expect(parts.map((p) => p.tolist())).toEqual([[0, 1, 2], [3, 4, 5], [6]]);
    expect(ng.arange(6).split([1, 5]).map((p) => p.numel)).toEqual([1, 5]);
    expect(ng.arange(6).chunk(4).map((p) => p.tolist())).toEqual([[0, 1], [2, 3], [4, 5]]);
    expect(() => ng.arange(6).split([1, 2])).toThrow(/nodegrad: split: sections \[1,2\] do not sum/);
  });
});

describe('expand, unsqueeze, squeeze, flatten', () => {
  it('expand uses stride 0 and reads repeated values', () => {
    const c = ng.tensor([[1], [2], [3]]);
    const e = c.expand(2, 3, 4);
    expect(e.strides).toEqual([0, 1, 0]);
    expect(e.storage).toBe(c.storage);
    expect(e.tolist()).toEqual([
      [[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]],
      [[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]],
    ]);
    expect(c.expand(-1, 2).shape).toEqual([3, 2]);
    expect(c.expandAs(ng.zeros([3, 5])).shape).toEqual([3, 5]);
    expect(() => c.expand(4, 2)).toThrow(/nodegrad: expand: cannot expand shape \[3,1\] to \[4,2\]/);
    expect(() => c.expand(2)).toThrow(/nodegrad: expand:/);
  });

  it('unsqueeze and squeeze are views', () => {
    const t = base().transpose(0, 1);
    const u = t.unsqueeze(1);
    expect(u.shape).toEqual([3, 1, 2, 4]);
    expect(u.storage).toBe(t.storage);
    expect(u.squeeze(1).tolist()).toEqual(t.tolist());
    expect(t.unsqueeze(-1).shape).toEqual([3, 2, 4, 1]);
    const s = ng.zeros([1, 3, 1, 2]);
    expect(s.squeeze().shape).toEqual([3, 2]);
    expect(s.squeeze(2).shape).toEqual([1, 3, 2]);
    expect(s.squeeze([0, 2]).shape).toEqual([3, 2]);
    expect(s.squeeze(1).shape).toEqual([1, 3, 1, 2]);
    expect(() => s.unsqueeze(6)).toThrow(/nodegrad: unsqueeze: dim 6 is out of range/);
  });

  it('flatten ranges of dims', () => {
    expect(base().flatten().shape).toEqual([24]);
    expect(base().flatten(1).shape).toEqual([2, 12]);
    expect(base().flatten(0, 1).shape).toEqual([6, 4]);
    expect(ng.tensor(5).flatten().shape).toEqual([1]);
    expect(base().T.flatten().tolist()).toEqual(base().T.contiguous().reshape(-1).tolist());
    expect(() => base().flatten(2, 1)).toThrow(/nodegrad: flatten: startDim 2 comes after endDim 1/);
  });
});

describe('randomised views', () => {
  it('reshape of random permuted/sliced/expanded views matches a row-major copy, and aliases when it is a view', () => {
    const r = lcg(99);
    const ri = (n: number): number => Math.floor((r() + 1) / 2 * n); // 0..n-1
    for (let iter = 0; iter < 300; iter++) {
      const ndim = 1 + ri(4);
      const shape = Array.from({ length: ndim }, () => 1 + ri(4));
      const n = shape.reduce((a, b) => a * b, 1);
      let t = ng.arange(n, undefined, 1, { dtype: 'float32' }).reshape(shape);
      // a few random view steps
      for (let k = 0; k < 3; k++) {
        const op = ri(4), d = ri(t.ndim);
        if (op === 0) t = t.permute([...t.shape.keys()].sort(() => r()));
        else if (op === 1 && t.shape[d] > 1) t = t.slice(d, ri(2), t.shape[d], 1 + ri(2));
        else if (op === 2) t = t.unsqueeze(d).expand([...t.shape.slice(0, d), 2, ...t.shape.slice(d)]);
        else t = t.transpose(d, t.ndim - 1);
      }
      const flatVals = Array.from(t.dataSync());
      // a random target shape with the same numel
      const target: number[] = [];
      let rest = t.numel;
      while (rest > 1 && target.length < 4) {
        const divs = [...Array(rest).keys()].map((x) => x + 1).filter((x) => rest % x === 0);
        const f = divs[ri(divs.length)];
        target.push(f);
        rest /= f;
      }
      target.push(rest);
      const re = t.reshape(target);
      expect(re.shape).toEqual(target);
      expect(Array.from(re.dataSync()), `iter ${iter}: ${JSON.stringify(t.shape)} strides ${JSON.stringify(t.strides)} -> ${JSON.stringify(target)}`).toEqual(flatVals);
      if (re.storage === t.storage && !re.strides.some((st, i) => st === 0 && re.shape[i] > 1)) {
        // a true view: writing through it changes the source
        re.mul_(-1);
        expect(Array.from(t.dataSync())).toEqual(flatVals.map((x) => -x));
      }
    }
  });
});

describe('contiguous, clone, detach', () => {
  it('contiguous() of every kind of view gives row-major values; contiguous input is returned as is', () => {
    const t = base();
    expect(t.contiguous()).toBe(t);
    const views: [string, ng.Tensor][] = [
      ['transpose', t.transpose(0, 2)],
      ['permute', t.permute(1, 0, 2)],
      ['slice step', t.slice(2, 1, 4, 2)],
      ['select', t.select(2, 1)],
      ['narrow', t.narrow(1, 1, 2)],
      ['expand', t.select(1, 0).unsqueeze(1).expand(2, 3, 4)],
      ['slice of transpose', t.transpose(1, 2).slice(1, 1, 4, 2)],
    ];
    for (const [name, view] of views) {
      const c = view.contiguous();
      expect(c.isContiguous(), name).toBe(true);
      expect(c.storage, name).not.toBe(t.storage);
      expect(c.tolist(), name).toEqual(view.tolist());
      expect(Array.from(c.dataSync()), name).toEqual(Array.from(view.dataSync()));
    }
    // spot-check the reference for the strided ones
    expect(t.slice(2, 1, 4, 2).contiguous().tolist()).toEqual([[[1, 3], [5, 7], [9, 11]], [[13, 15], [17, 19], [21, 23]]]);
    expect(t.transpose(0, 2).contiguous().select(0, 3).tolist()).toEqual([[3, 15], [7, 19], [11, 23]]);
  });

  it('clone copies; detach shares storage but drops the graph', () => {
    const x = ng.tensor([1, 2, 3], { requiresGrad: true });
    const c = x.clone();
    expect(c.storage).not.toBe(x.storage);
    expect(c.gradFn?.name).toBe('clone');
    const d = x.mul(2).detach();
    expect(d.requiresGrad).toBe(false);
    expect(d.gradFn).toBeNull();
    const dx = x.detach();
    expect(dx.storage).toBe(x.storage);
  });
});

describe('views share storage', () => {
  it('copy_ into a slice, select, transposed or expanded view changes the base', () => {
    const t = ng.zeros([3, 4]);
    t.slice(1, 1, 4, 2).copy_(ng.tensor([[1, 2], [3, 4], [5, 6]]));
    expect(t.tolist()).toEqual([[0, 1, 0, 2], [0, 3, 0, 4], [0, 5, 0, 6]]);
    t.select(0, 2).copy_(ng.tensor([9, 9, 9, 9]));
    expect((t.tolist() as number[][])[2]).toEqual([9, 9, 9, 9]);
    t.T.select(0, 0).fill_(-1);
    expect(t.tolist()).toEqual([[-1, 1, 0, 2], [-1, 3, 0, 4], [-1, 9, 9, 9]]);
    const r = t.reshape(12);
    r.narrow(0, 4, 2).zero_();
    expect((t.tolist() as number[][])[1]).toEqual([0, 0, 0, 4]);
  });

  it('in-place arithmetic on a view updates only the viewed elements', () => {
    const t = ng.ones([2, 3]);
    t.slice(1, 0, 3, 2).mul_(5);
    t.select(0, 1).add_(ng.tensor([1, 2, 3]));
    expect(t.tolist()).toEqual([[5, 1, 5], [6, 3, 8]]);
  });

  it('ops read non-contiguous views correctly', () => {
    const t = base();
    const view = t.transpose(0, 2).slice(1, 0, 3, 2); // [4,2,2]
    const want = (view.tolist() as number[][][]).flat(2).map((x) => x * 2 + 1);
    expectClose(view.mul(2).add(1), want);
    expect(ng.sum(view).item()).toBe(want.reduce((a, b) => a + (b - 1) / 2, 0));
  });
});

describe('view gradients match finite differences (float64)', () => {
  const x = (shape = [2, 3, 4]): ng.Tensor => {
    const r = lcg(7);
    const n = shape.reduce((a, b) => a * b, 1);
    return ng.tensor(Array.from({ length: n }, () => r()), { shape, dtype: 'float64', requiresGrad: true });
  };
  it('permute, transpose, T', () => {
    gradcheck((t) => t.permute(2, 0, 1), [x()]);
    gradcheck((t) => t.transpose(0, 2).mul(t.transpose(0, 2)), [x()]);
    gradcheck((t) => t.T, [x()]);
  });
  it('slice with step, narrow, select, split', () => {
    gradcheck((t) => t.slice(2, 1, 4, 2), [x()]);
    gradcheck((t) => t.slice(1, -2).slice(0, 0, 2, 2), [x()]);
    gradcheck((t) => t.narrow(2, 1, 2), [x()]);
    gradcheck((t) => t.select(1, 2), [x()]);
    gradcheck((t) => t.select(-1, 0).mul(t.select(-1, 3)), [x()]);
    gradcheck((t) => { const [a, b] = t.split([1, 3], 2); return a.mul(b.sum(2, true)); }, [x()]);
  });
  it('expand, unsqueeze, squeeze', () => {
    gradcheck((t) => t.expand(3, 2, 3, 4), [x()]);
    gradcheck((t) => t.unsqueeze(1).expand(3, 5, 4), [x([3, 4])]);
    gradcheck((t) => t.squeeze(1).mul(2), [x([3, 1, 4])]);
  });
  it('reshape and view, of contiguous and non-contiguous tensors', () => {
    gradcheck((t) => t.reshape(6, 4), [x()]);
    gradcheck((t) => t.view(-1), [x()]);
    gradcheck((t) => t.permute(1, 0, 2).reshape(6, 4), [x()]);
    gradcheck((t) => t.transpose(0, 2).reshape(-1).slice(0, 0, 24, 5), [x()]);
    gradcheck((t) => t.T.flatten(), [x()]);
  });
  it('contiguous, clone, and the same leaf through two views', () => {
    gradcheck((t) => t.transpose(1, 2).contiguous(), [x()]);
    gradcheck((t) => t.clone().mul(t.T.T), [x()]);
    gradcheck((t) => ng.add(t.select(0, 0), t.select(0, 1).mul(t.select(0, 0))), [x()]);
  });
  it('cat and stack', () => {
    gradcheck((a, b) => ng.cat([a, b.T], 0), [x([2, 3]), x([3, 4])]);
    gradcheck((a, b) => ng.stack([a, b], 1), [x([2, 3]), x([2, 3])]);
  });
});
