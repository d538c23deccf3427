// gather / scatterAdd / indexSelect / indexAdd / topk: forward against naive loops, backward
// against finite differences, and the errors bad indices and shapes raise.
import { expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import type { DType, Tensor } from '../../lib/index.js';
import { indexAdd, scatterAdd } from '../../lib/ops/indexing.js';
import { native } from '../../lib/native.js';
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

function randValues(n: number, seed: number, dtype: DType): number[] {
  const r = lcg(seed);
  return Array.from({ length: n }, () => (dtype === 'int32' ? Math.floor(r() * 100) : r()));
}
function randIndex(n: number, hi: number, seed: number): Int32Array {
  const r = lcg(seed);
  return Int32Array.from({ length: n }, () => Math.min(hi - 1, Math.floor((r() + 1) / 2 * hi)));
}
const arr = (dtype: DType, v: number[]): Float32Array | Float64Array | Int32Array =>
  dtype === 'float32' ? Float32Array.from(v) : dtype === 'float64' ? Float64Array.from(v) : Int32Array.from(v);
const values = (t: Tensor): number[] => Array.from(ng.contiguous(t).dataSync() as ArrayLike<number>);

describeBackends('gather', (device) => {
  const mk = (v: ArrayLike<number> & Iterable<number>, shape: number[], dtype: DType, requiresGrad = false): Tensor =>
    ng.tensor(arr(dtype, [...v]), { shape, device, requiresGrad });

  function gatherRef(x: number[], xs: number[], d: number, idx: Int32Array, is: number[]): number[] {
    return Array.from(idx, (v, i) => {
      const c = unravel(i, is);
      c[d] = v;
      return x[ravel(c, xs)];
    });
  }

  for (const dtype of ['float32', 'float64', 'int32'] as DType[]) {
    it(`matches a naive loop on every dim with a smaller index (${dtype})`, () => {
      const xs = [3, 5, 7];
      const xv = randValues(numel(xs), 1, dtype);
      const x = mk(xv, xs, dtype);
      for (let d = 0; d < 3; d++) {
        const is = [2, 4, 6];
        is[d] = 9;
        const idx = randIndex(numel(is), xs[d], 10 + d);
        const out = ng.gather(x, d - 3, mk(idx, is, 'int32'));
        expect(out.shape).toEqual(is);
        expect(out.dtype).toBe(dtype);
        expect(values(out)).toEqual(gatherRef(arr(dtype, xv) as unknown as number[], xs, d, idx, is).map(Number));
      }
    });
  }

  it('reads transposed input and index views in place', () => {
    const xv = randValues(6 * 5, 2, 'float64');
    const x = ng.transpose(mk(xv, [6, 5], 'float64'), 0, 1); // [5, 6]
    const iv = randIndex(4 * 5, 6, 3);
    const index = ng.transpose(mk(iv, [4, 5], 'int32'), 0, 1); // [5, 4]
    const out = ng.gather(x, 1, index);
    expect(values(out)).toEqual(gatherRef(values(x), [5, 6], 1, Int32Array.from(values(index)), [5, 4]));
  });

  it('handles 0-d and empty tensors', () => {
    expect(ng.gather(mk([7], [], 'float32'), 0, mk([0], [], 'int32')).item()).toBe(7);
    expect(ng.gather(mk([], [0, 3], 'float32'), 1, mk([], [0, 2], 'int32')).shape).toEqual([0, 2]);
  });

  it('backward scatter-adds into repeated positions (finite differences)', () => {
    const x = mk(randValues(4 * 5, 4, 'float64'), [4, 5], 'float64', true);
    const idx = mk([0, 0, 4, 1, 1, 1, 2, 0, 3, 3, 3, 3], [3, 4], 'int32');
    ng.gradcheck((a) => ng.gather(a, 1, idx), [x]);
    ng.gradcheck((a) => ng.gather(a, 0, mk([0, 0, 3, 1, 1, 1, 2, 0, 3, 3, 3, 3], [3, 4], 'int32')), [x]);
  });

  it('reports an out-of-range index with its value, dim and size', () => {
    const x = mk([1, 2, 3, 4, 5, 6, 7, 8], [2, 4], 'float32');
    expect(() => ng.gather(x, 1, mk([0, 1, 9, 2], [2, 2], 'int32')))
      .toThrow('nodegrad: gather: index 9 is out of range for dimension 1 of size 4');
    expect(() => ng.gather(x, 0, mk([0, -1], [1, 2], 'int32'))).toThrow(/nodegrad: gather: index -1 is out of range for dimension 0 of size 2/);
  });

  it('rejects a non-int32 index, mismatched ranks, oversized index, bad dims and dtypes', () => {
    const x = mk([1, 2, 3, 4, 5, 6, 7, 8], [2, 4], 'float32');
    expect(() => ng.gather(x, 1, mk([0, 1], [1, 2], 'float32'))).toThrow(/nodegrad: gather: index must be an int32 tensor \(got float32/);
    expect(() => ng.gather(x, 1, mk([0, 1], [2], 'int32'))).toThrow(/nodegrad: gather: index must have as many dims as the input/);
    expect(() => ng.gather(x, 1, mk([0, 1, 0], [3, 1], 'int32'))).toThrow(/nodegrad: gather: index is larger than the input at dim 0/);
    expect(() => ng.gather(x, 2, mk([0], [1, 1], 'int32'))).toThrow(/nodegrad: gather: dim 2 is out of range/);
    expect(() => ng.gather(ng.gt(x, 2), 1, mk([0], [1, 1], 'int32'))).toThrow(/nodegrad: gather: input must be float32, float64 or int32 \(got bool/);
  });
});

describeBackends('scatterAdd', (device) => {
  const mk = (v: ArrayLike<number> & Iterable<number>, shape: number[], dtype: DType, requiresGrad = false): Tensor =>
    ng.tensor(arr(dtype, [...v]), { shape, device, requiresGrad });

  function scatterRef(x: number[], xs: number[], d: number, idx: Int32Array, is: number[], src: number[], ss: number[],
    round: (v: number) => number = (v) => v): number[] {
    const out = [...x];
    idx.forEach((v, i) => {
      const c = unravel(i, is);
      const s = src[ravel(c, ss)];
      c[d] = v;
      const o = ravel(c, xs);
      out[o] = round(out[o] + s);
    });
    return out;
  }

  for (const dtype of ['float64', 'int32'] as DType[]) {
    it(`matches a naive loop with src larger than index on every dim (${dtype})`, () => {
      const xs = [4, 3, 5], ss = [7, 6, 6];
      const xv = randValues(numel(xs), 5, dtype), sv = randValues(numel(ss), 6, dtype);
      for (let d = 0; d < 3; d++) {
        const is = [2, 3, 4];
        is[d] = 6;
        const idx = randIndex(numel(is), xs[d], 20 + d);
        const out = scatterAdd(mk(xv, xs, dtype), d, mk(idx, is, 'int32'), mk(sv, ss, dtype));
        expect(out.shape).toEqual(xs);
        expectClose(out, scatterRef(xv, xs, d, idx, is, sv, ss), { atol: 1e-12, rtol: 1e-12 });
      }
    });
  }

  it('sums duplicates in index order, the same on every run (float32)', () => {
    const xs = [4, 300], is = [1000, 300];
    const sv = randValues(numel(is), 7, 'float32');
    const idx = randIndex(numel(is), 4, 8);
    const x = ng.zeros(xs, { device });
    const src = mk(sv, is, 'float32');
    const index = mk(idx, is, 'int32');
    const s32 = Float32Array.from(sv);
    const expected = new Array<number>(numel(xs)).fill(0);
    for (let j = 0; j < is[0]; j++) {
      for (let q = 0; q < is[1]; q++) expected[idx[j * is[1] + q] * xs[1] + q] = Math.fround(expected[idx[j * is[1] + q] * xs[1] + q] + s32[j * is[1] + q]);
    }
    const a = values(scatterAdd(x, 0, index, src));
    expect(a).toEqual(expected);
    expect(values(scatterAdd(x, 0, index, src))).toEqual(a);
  });

  it('gradients flow to the input and to the part of src that index covers (finite differences)', () => {
    const x = mk(randValues(3 * 4, 9, 'float64'), [3, 4], 'float64', true);
    const src = mk(randValues(4 * 5, 10, 'float64'), [4, 5], 'float64', true);
    const idx = mk([0, 2, 2, 1, 1, 1, 0, 2, 0], [3, 3], 'int32');
    ng.gradcheck((a, b) => scatterAdd(a, 0, idx, b), [x, src]);
    ng.gradcheck((a, b) => scatterAdd(a, 1, idx, b), [x, src]);
  });

  it('checks indices before writing anything and rejects bad shapes and dtypes', () => {
    const x = mk([0, 0, 0, 0], [4], 'float64');
    expect(() => scatterAdd(x, 0, mk([0, 1, 7], [3], 'int32'), mk([1, 1, 1], [3], 'float64')))
      .toThrow('nodegrad: scatterAdd: index 7 is out of range for dimension 0 of size 4');
    expect(() => scatterAdd(x, 0, mk([0, 1], [2], 'int32'), mk([1, 1], [2], 'float32'))).toThrow(/nodegrad: scatterAdd: src must have the input's dtype/);
    expect(() => scatterAdd(x, 0, mk([0, 1, 2], [3], 'int32'), mk([1, 1], [2], 'float64'))).toThrow(/nodegrad: scatterAdd: index is larger than src at dim 0/);
    expect(() => scatterAdd(x, 0, mk([0], [1, 1], 'int32'), mk([1], [1, 1], 'float64'))).toThrow(/nodegrad: scatterAdd: index and src must have as many dims/);
    // the kernel itself leaves its output untouched when a late index is bad
    const out = new Float64Array(4);
    expect(() => native.scatterAdd(0, [4], out, [3], Int32Array.from([0, 1, 4]), 0, [1], Float64Array.from([1, 2, 3]), 0, [1]))
      .toThrow(/nodegrad: scatterAdd: index 4 is out of range for dimension 0 of size 4/);
    expect(Array.from(out)).toEqual([0, 0, 0, 0]);
    expect(() => native.scatterAdd(0, [8], out, [3], Int32Array.from([0, 1, 2]), 0, [1], Float64Array.from([1, 2, 3]), 0, [1]))
      .toThrow(/nodegrad: scatterAdd: out: view reaches outside its storage/);
  });
});

describeBackends('indexSelect and indexAdd', (device) => {
  const mk = (v: ArrayLike<number> & Iterable<number>, shape: number[], dtype: DType, requiresGrad = false): Tensor =>
    ng.tensor(arr(dtype, [...v]), { shape, device, requiresGrad });

  function selectRef(x: number[], xs: number[], d: number, idx: number[]): number[] {
    const os = [...xs];
    os[d] = idx.length;
    return Array.from({ length: numel(os) }, (_, i) => {
      const c = unravel(i, os);
      c[d] = idx[c[d]];
      return x[ravel(c, xs)];
    });
  }

  for (const dtype of ['float32', 'float64', 'int32'] as DType[]) {
    it(`indexSelect matches a naive loop with repeats on every dim (${dtype})`, () => {
      const xs = [3, 4, 5];
      const xv = Array.from(arr(dtype, randValues(numel(xs), 11, dtype)));
      const x = mk(xv, xs, dtype);
      for (let d = 0; d < 3; d++) {
        const idx = Array.from(randIndex(7, xs[d], 30 + d));
        const out = ng.indexSelect(x, d, mk(idx, [7], 'int32'));
        expect(values(out)).toEqual(selectRef(xv, xs, d, idx));
      }
    });
  }

  it('indexSelect reads a strided input and a strided index', () => {
    const x = ng.transpose(mk(randValues(20, 12, 'float64'), [4, 5], 'float64'), 0, 1); // [5, 4]
    const index = ng.slice(mk([3, 9, 0, 9, 1, 9, 3, 9], [8], 'int32'), 0, 0, 8, 2); // [3, 0, 1, 3]
    expect(values(ng.indexSelect(x, 1, index))).toEqual(selectRef(values(x), [5, 4], 1, [3, 0, 1, 3]));
    expect(values(ng.indexSelect(x, 0, index))).toEqual(selectRef(values(x), [5, 4], 0, [3, 0, 1, 3]));
  });

  it('indexAdd accumulates repeated rows and both ops pass finite differences', () => {
    const xv = randValues(12, 13, 'float64'), sv = randValues(15, 14, 'float64');
    const out = indexAdd(mk(xv, [4, 3], 'float64'), 0, mk([1, 3, 1, 1, 0], [5], 'int32'), mk(sv, [5, 3], 'float64'));
    const ref = [...xv];
    [1, 3, 1, 1, 0].forEach((r, k) => { for (let j = 0; j < 3; j++) ref[r * 3 + j] += sv[k * 3 + j]; });
    expectClose(out, ref, { atol: 1e-12 });
    const x = mk(randValues(3 * 4, 15, 'float64'), [3, 4], 'float64', true);
    const src = mk(randValues(3 * 5, 16, 'float64'), [3, 5], 'float64', true);
    const idx = mk([2, 0, 2, 2, 3], [5], 'int32');
    ng.gradcheck((a) => ng.indexSelect(a, 1, idx), [x]);
    ng.gradcheck((a, b) => indexAdd(a, 1, idx, b), [x, src]);
  });

  it('rejects out-of-range and non-1-D indices and wrong src shapes', () => {
    const x = mk([1, 2, 3, 4, 5, 6], [3, 2], 'float32');
    expect(() => ng.indexSelect(x, 0, mk([0, 5], [2], 'int32'))).toThrow('nodegrad: indexSelect: index 5 is out of range for dimension 0 of size 3');
    expect(() => ng.indexSelect(x, 0, mk([0, 1], [1, 2], 'int32'))).toThrow(/nodegrad: indexSelect: index must be 1-D \(got shape \[1,2\]/);
    expect(() => ng.indexSelect(x, 0, mk([0], [1], 'float64'))).toThrow(/nodegrad: indexSelect: index must be an int32 tensor/);
    expect(() => indexAdd(x, 0, mk([0], [1], 'int32'), mk([1, 2, 3], [1, 3], 'float32'))).toThrow(/nodegrad: indexAdd: src has shape \[1,3\]; expected \[1,2\]/);
    expect(() => indexAdd(x, 1, mk([2], [1], 'int32'), mk([1, 2, 3], [3, 1], 'float32'))).toThrow('nodegrad: indexAdd: index 2 is out of range for dimension 1 of size 2');
  });
});

describeBackends('topk', (device) => {
  const mk = (v: ArrayLike<number> & Iterable<number>, shape: number[], dtype: DType, requiresGrad = false): Tensor =>
    ng.tensor(arr(dtype, [...v]), { shape, device, requiresGrad });

  // Stable reference: order by value (NaN above everything), ties by lower index.
  function topkRef(x: number[], xs: number[], d: number, k: number, largest: boolean): { v: number[]; i: number[] } {
    const os = [...xs];
    os[d] = k;
    const v: number[] = new Array<number>(numel(os)), ix: number[] = new Array<number>(numel(os));
    const rank = (a: number): number => (Number.isNaN(a) ? Infinity : a);
    for (let o = 0; o < numel(os); o++) {
      const c = unravel(o, os);
      if (c[d] !== 0) continue;
      const line = Array.from({ length: xs[d] }, (_, j) => { const cc = [...c]; cc[d] = j; return { val: x[ravel(cc, xs)], j }; });
      line.sort((a, b) => {
        const ra = rank(a.val), rb = rank(b.val);
        if (ra !== rb || (Number.isNaN(a.val) !== Number.isNaN(b.val))) {
          if (Number.isNaN(a.val)) return largest ? -1 : 1;
          if (Number.isNaN(b.val)) return largest ? 1 : -1;
          return largest ? rb - ra : ra - rb;
        }
        return a.j - b.j;
      });
      for (let t = 0; t < k; t++) {
        const cc = [...c];
        cc[d] = t;
        v[ravel(cc, os)] = line[t].val;
        ix[ravel(cc, os)] = line[t].j;
      }
    }
    return { v, i: ix };
  }

  for (const dtype of ['float32', 'float64', 'int32'] as DType[]) {
    it(`matches a stable sort on every dim, largest and smallest (${dtype})`, () => {
      const xs = [4, 9, 6];
      const xv = Array.from(arr(dtype, randValues(numel(xs), 17, dtype)));
      const x = mk(xv, xs, dtype);
      for (let d = 0; d < 3; d++) {
        for (const largest of [true, false]) {
          for (const k of [0, 1, 3, xs[d]]) {
            const r = ng.topk(x, k, { dim: d, largest });
            const ref = topkRef(xv, xs, d, k, largest);
            expect(r.values.dtype).toBe(dtype);
            expect(r.indices.dtype).toBe('int32');
            expect(values(r.values), `dim ${d} k ${k} largest ${largest}`).toEqual(ref.v);
            expect(values(r.indices)).toEqual(ref.i);
          }
        }
      }
    });
  }

  it('takes long rows through both the heap and the selection paths', () => {
    const xs = [5, 3001];
    const xv = Array.from(Float32Array.from(randValues(numel(xs), 18, 'float32')));
    const x = ng.tensor(Float32Array.from(xv), { shape: xs, device });
    for (const k of [5, 700]) {
      for (const largest of [true, false]) {
        const r = ng.topk(x, k, { largest });
        const ref = topkRef(xv, xs, 1, k, largest);
        expect(values(r.values)).toEqual(ref.v);
        expect(values(r.indices)).toEqual(ref.i);
      }
    }
  });

  it('breaks ties by lower index, ranks NaN highest and reads strided input', () => {
    const r = ng.topk(mk([1, 3, 3, 2, 3], [5], 'float32'), 2);
    expect(values(r.values)).toEqual([3, 3]);
    expect(values(r.indices)).toEqual([1, 2]);
    const s = ng.topk(mk([2, 1, 1, 0], [4], 'float64'), 3, { largest: false });
    expect(values(s.indices)).toEqual([3, 1, 2]);
    expect(values(ng.topk(mk([1, NaN, 3], [3], 'float64'), 1).indices)).toEqual([1]);
    expect(values(ng.topk(mk([1, NaN, 3], [3], 'float64'), 3, { largest: false }).values)).toEqual([1, 3, NaN]);
    const t = ng.transpose(mk([5, 1, 4, 2, 6, 0], [2, 3], 'float32'), 0, 1); // [[5,2],[1,6],[4,0]]
    expect(values(ng.topk(t, 1, { dim: 0 }).indices)).toEqual([0, 1]);
    expect(values(ng.topk(t, 1).values)).toEqual([5, 6, 4]);
  });

  it('unsorted results hold the same set as sorted ones', () => {
    const xv = randValues(2 * 50, 19, 'float64');
    const x = mk(xv, [2, 50], 'float64');
    const a = ng.topk(x, 20, { sorted: false }), b = ng.topk(x, 20);
    const rows = (t: Tensor): number[][] => [values(t).slice(0, 20).sort((p, q) => p - q), values(t).slice(20).sort((p, q) => p - q)];
    expect(rows(a.values)).toEqual(rows(b.values));
    expect(rows(a.indices)).toEqual(rows(b.indices));
  });

  it('values backward scatters into the chosen positions (finite differences)', () => {
    const x = mk(randValues(3 * 7, 20, 'float64'), [3, 7], 'float64', true);
    ng.gradcheck((a) => ng.topk(a, 3).values, [x]);
    ng.gradcheck((a) => ng.topk(a, 2, { dim: 0, largest: false }).values, [x]);
  });

  it('rejects k out of range, bad dims and unsupported dtypes', () => {
    const x = mk([1, 2, 3, 4, 5, 6], [2, 3], 'float32');
    expect(() => ng.topk(x, 4)).toThrow('nodegrad: topk: k 4 is out of range for dimension 1 of size 3');
    expect(() => ng.topk(x, -1)).toThrow(/nodegrad: topk: k -1 is out of range/);
    expect(() => ng.topk(x, 1.5)).toThrow(/nodegrad: topk: k 1.5 is out of range/);
    expect(() => ng.topk(x, 1, { dim: 2 })).toThrow(/nodegrad: topk: dim 2 is out of range/);
    expect(() => ng.topk(ng.gt(x, 1), 1)).toThrow(/nodegrad: topk: input must be float32, float64 or int32/);
  });
});
