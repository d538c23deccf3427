// cat / stack / split / chunk: forward against plain loops, gradients through them, dtype
// promotion in cat, and the errors for mismatched shapes, empty lists and bad dims.
import { expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import type { DType, Tensor } from '../../lib/index.js';
import { describeBackends, expectClose, lcg } from '../helpers.js';

const numel = (s: number[]): number => s.reduce((a, b) => a * b, 1);
function unravel(i: number, s: number[]): number[] {
  const c = new Array<number>(s.length);
  for (let d = s.length - 1; d >= 0; d--) { c[d] = i % s[d]; i = Math.floor(i / s[d]); }
  return c;
}
function ravel(c: number[], s: number[]): number {
  let o = 0;
  for (let d = 0; d < s.length; d++) o = o * s[d] + c[d];
  return o;
}
const values = (t: Tensor): number[] => Array.from(ng.contiguous(t).dataSync() as ArrayLike<number>);

/** Plain-loop concatenation of row-major arrays along d. */
function catRef(parts: { v: number[]; s: number[] }[], d: number): { v: number[]; s: number[] } {
  const s = [...parts[0].s];
  s[d] = parts.reduce((a, p) => a + p.s[d], 0);
  const v = new Array<number>(numel(s));
  let start = 0;
  for (const p of parts) {
    for (let i = 0; i < p.v.length; i++) {
      const c = unravel(i, p.s);
      c[d] += start;
      v[ravel(c, s)] = p.v[i];
    }
    start += p.s[d];
  }
  return { v, s };
}

describeBackends('cat and stack', (device) => {
  const rnd = (shape: number[], seed: number, dtype: DType = 'float32', requiresGrad = false): { t: Tensor; v: number[] } => {
    const r = lcg(seed);
    const raw = Array.from({ length: numel(shape) }, () => (dtype === 'int32' ? Math.floor(r() * 50) : r()));
    const typed = dtype === 'int32' ? Int32Array.from(raw) : dtype === 'float64' ? Float64Array.from(raw) : Float32Array.from(raw);
    return { t: ng.tensor(typed, { shape, device, requiresGrad }), v: Array.from(typed) };
  };

  it('cat matches a plain loop on every dim, including negative dims and empty parts', () => {
    for (let d = 0; d < 3; d++) {
      const shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]].map((s, k) => { const c = [...s]; c[d] = [1, 0, 5][k]; return c; });
      const parts = shapes.map((s, k) => rnd(s, 10 * d + k));
      const out = ng.cat(parts.map((p) => p.t), d - 3);
      const ref = catRef(parts.map((p, k) => ({ v: p.v, s: shapes[k] })), d);
      expect(out.shape).toEqual(ref.s);
      expect(values(out)).toEqual(ref.v);
    }
  });

  it('cat reads strided inputs and a single tensor comes back as a copy', () => {
    const a = rnd([3, 4], 1), b = rnd([4, 2], 2);
    const at = ng.transpose(a.t, 0, 1); // [4, 3]
    const out = ng.cat([at, b.t], 1);
    const ref = catRef([{ v: values(at), s: [4, 3] }, { v: b.v, s: [4, 2] }], 1);
    expect(values(out)).toEqual(ref.v);
    const one = ng.cat([a.t], 0);
    expect(values(one)).toEqual(a.v);
    expect(one.storage).not.toBe(a.t.storage);
  });

  it('cat promotes dtypes like PyTorch', () => {
    const i = ng.tensor(Int32Array.from([1, 2]), { device });
    const f = ng.tensor(Float32Array.from([0.5]), { device });
    const d = ng.tensor(Float64Array.from([0.25]), { device });
    const b = ng.tensor([true, false], { device });
    expect(ng.cat([i, f]).dtype).toBe('float32');
    expect(values(ng.cat([i, f]))).toEqual([1, 2, 0.5]);
    expect(ng.cat([f, d, i]).dtype).toBe('float64');
    expect(values(ng.cat([f, d, i]))).toEqual([0.5, 0.25, 1, 2]);
    expect(ng.cat([b, i]).dtype).toBe('int32');
    expect(values(ng.cat([b, i]))).toEqual([1, 0, 1, 2]);
  });

  it('stack matches a plain loop on every dim', () => {
    const parts = [0, 1, 2].map((k) => rnd([2, 3], 20 + k));
    for (let d = 0; d <= 2; d++) {
      const out = ng.stack(parts.map((p) => p.t), d);
      const os = [2, 3];
      os.splice(d, 0, 3);
      expect(out.shape).toEqual(os);
      const got = values(out);
      for (let i = 0; i < got.length; i++) {
        const c = unravel(i, os);
        const k = c.splice(d, 1)[0];
        expect(got[i]).toBe(parts[k].v[ravel(c, [2, 3])]);
      }
    }
    expect(ng.stack(parts.map((p) => p.t), -1).shape).toEqual([2, 3, 3]);
  });

  it('gradients flow through cat and stack, also across dtypes (finite differences)', () => {
    const a = rnd([2, 3], 30, 'float64', true).t, b = rnd([2, 1], 31, 'float64', true).t, c = rnd([2, 3], 32, 'float64', true).t;
    ng.gradcheck((x, y) => ng.cat([x, y, x], 1), [a, b]);
    ng.gradcheck((x, y) => ng.stack([x, y], 1), [a, c]);
    const f = rnd([3], 33, 'float32', true).t, g = rnd([2], 34, 'float64', true).t;
    const out = ng.cat([f, g]);
    expect(out.dtype).toBe('float64');
    ng.mul(out, ng.tensor(Float64Array.from([1, 2, 3, 4, 5]), { device })).sum().backward();
    expect(f.grad!.dtype).toBe('float32');
    expectClose(f.grad!, [1, 2, 3]);
    expectClose(g.grad!, [4, 5]);
  });

  it('rejects empty lists, mismatched shapes and bad dims', () => {
    const a = rnd([2, 3], 40).t, b = rnd([3, 3], 41).t, c = rnd([2, 3, 1], 42).t;
    expect(() => ng.cat([])).toThrow('nodegrad: cat: expected a non-empty array of tensors');
    expect(() => ng.stack([])).toThrow('nodegrad: stack: expected a non-empty array of tensors');
    expect(() => ng.cat([a, b], 1)).toThrow(/nodegrad: cat: shapes \[2,3\], \[3,3\] differ outside dim 1/);
    expect(() => ng.cat([a, c], 0)).toThrow(/nodegrad: cat: shapes \[2,3\], \[2,3,1\] differ outside dim 0/);
    expect(() => ng.cat([a, a], 2)).toThrow(/nodegrad: cat: dim 2 is out of range/);
    expect(() => ng.stack([a, b])).toThrow(/nodegrad: stack: all tensors must have the same shape \(got \[2,3\], \[3,3\]\)/);
    expect(() => ng.stack([a, a], 3)).toThrow(/nodegrad: stack: dim 3 is out of range/);
    expect(() => ng.cat([a, 5 as unknown as Tensor])).toThrow(/nodegrad: cat: input must be a Tensor/);
  });
});

describeBackends('split and chunk', (device) => {
  const x = (): { t: Tensor; v: number[] } => {
    const r = lcg(5);
    const v = Array.from(Float64Array.from({ length: 7 * 4 }, () => r()));
    return { t: ng.tensor(Float64Array.from(v), { shape: [7, 4], device }), v };
  };

  it('split by size and by sections returns views that match slices', () => {
    const { t, v } = x();
    const bySize = ng.split(t, 3);
    expect(bySize.map((p) => p.shape)).toEqual([[3, 4], [3, 4], [1, 4]]);
    expect(bySize.map(values).flat()).toEqual(v);
    expect(bySize[1].storage).toBe(t.storage);
    const bySections = ng.split(t, [1, 2, 1], 1);
    expect(bySections.map((p) => p.shape)).toEqual([[7, 1], [7, 2], [7, 1]]);
    expect(values(bySections[1])).toEqual(Array.from({ length: 7 }, (_, i) => [v[i * 4 + 1], v[i * 4 + 2]]).flat());
    expect(ng.split(t, 10, 0).map((p) => p.shape)).toEqual([[7, 4]]);
    expect(ng.split(t, [7, 0], -2).map((p) => p.shape)).toEqual([[7, 4], [0, 4]]);
  });

  it('chunk gives ceil-sized pieces like PyTorch', () => {
    const { t } = x();
    expect(ng.chunk(t, 3).map((p) => p.shape[0])).toEqual([3, 3, 1]);
    expect(ng.chunk(t, 4).map((p) => p.shape[0])).toEqual([2, 2, 2, 1]);
    expect(ng.chunk(t, 6).map((p) => p.shape[0])).toEqual([2, 2, 2, 1]);
    expect(ng.chunk(t, 2, 1).map((p) => p.shape)).toEqual([[7, 2], [7, 2]]);
    expect(ng.chunk(t, 10).length).toBe(7);
  });

  it('split pieces undo cat and pass finite differences', () => {
    const { t } = x();
    const parts = ng.split(t, [2, 5]);
    expect(values(ng.cat(parts))).toEqual(values(t));
    const a = ng.tensor(Float64Array.from(values(t)), { shape: [7, 4], device, requiresGrad: true });
    ng.gradcheck((y) => { const [p, q] = ng.split(y, [3, 4], 0); return ng.cat([q, ng.mul(p, p)], 0); }, [a]);
    ng.gradcheck((y) => { const [p, , r] = ng.chunk(y, 3, 0); return ng.mul(p, r.sum()); }, [a]);
  });

  it('rejects bad sizes, sections and dims', () => {
    const { t } = x();
    expect(() => ng.split(t, 0)).toThrow(/nodegrad: split: size must be a positive integer \(got 0\)/);
    expect(() => ng.split(t, 2.5)).toThrow(/nodegrad: split: size must be a positive integer/);
    expect(() => ng.split(t, [3, 3])).toThrow(/nodegrad: split: sections \[3,3\] do not sum to dim 0 of size 7/);
    expect(() => ng.split(t, 2, 2)).toThrow(/nodegrad: split: dim 2 is out of range/);
    expect(() => ng.chunk(t, 0)).toThrow(/nodegrad: chunk: chunks must be a positive integer \(got 0\)/);
    expect(() => ng.chunk(t, 2, -3)).toThrow(/nodegrad: chunk: dim -3 is out of range/);
  });
});
