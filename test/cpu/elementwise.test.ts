// Elementwise ops: broadcasting binary ops, type promotion, unary ops, where/maskedFill,
// in-place updates, the multi-threaded path, and gradients against finite differences.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { gradcheck } from '../../lib/gradcheck.js';
import { expectClose, lcg } from '../helpers.js';

// ---- plain-JS references (float64) ---------------------------------------------------

function numel(shape: number[]): number { return shape.reduce((a, b) => a * b, 1); }

/** Values of `shape` from a seeded generator in [lo, hi), optionally kept |v| >= gap. */
function values(shape: number[], seed: number, lo = -2, hi = 2, gap = 0): number[] {
  const r = lcg(seed);
  return Array.from({ length: numel(shape) }, () => {
    let x = lo + (r() + 1) / 2 * (hi - lo);
    if (gap > 0 && Math.abs(x) < gap) x = x < 0 ? x - gap : x + gap;
    return x;
  });
}

/** out[idx] = f(a[bidx_a], b[bidx_b]) with NumPy broadcasting. */
function refBinary(a: number[], sa: number[], b: number[], sb: number[], f: (x: number, y: number) => number): { data: number[]; shape: number[] } {
  const n = Math.max(sa.length, sb.length);
  const pa = [...Array(n - sa.length).fill(1), ...sa], pb = [...Array(n - sb.length).fill(1), ...sb];
  const shape = pa.map((d, i) => Math.max(d, pb[i]));
  const data: number[] = [];
  const idx = new Array(n).fill(0);
  const flatIdx = (p: number[]): number => {
    let k = 0;
    for (let i = 0; i < n; i++) k = k * p[i] + (p[i] === 1 ? 0 : idx[i]);
    return k;
  };
  for (let t = 0; t < numel(shape); t++) {
    let r = t;
    for (let i = n - 1; i >= 0; i--) { idx[i] = r % shape[i]; r = Math.floor(r / shape[i]); }
    data.push(f(a[flatIdx(pa)], b[flatIdx(pb)]));
  }
  return { data, shape };
}

const f32 = (xs: number[]): number[] => xs.map(Math.fround);

function erfRef(x: number): number {
  // Maclaurin series; accurate to ~1e-12 for |x| < 3.5 (the range used here)
  let sum = 0, term = x;
  for (let n = 0; n < 80; n++) {
    sum += term / (2 * n + 1);
    term *= -x * x / (n + 1);
  }
  return 2 / Math.sqrt(Math.PI) * sum;
}
const sigmoidRef = (x: number): number => 1 / (1 + Math.exp(-x));
const roundHalfEven = (x: number): number => {
  const f = Math.floor(x), d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
};
const floorDivRef = (x: number, y: number): number => Math.floor(x / y);
const remainderRef = (x: number, y: number): number => { const r = x % y; return r !== 0 && (r < 0) !== (y < 0) ? r + y : r; };

// ---- binary ops -----------------------------------------------------------------------

const BINARY: [string, (a: ng.TensorLike, b: ng.TensorLike) => ng.Tensor, (x: number, y: number) => number, boolean][] = [
  ['add', ng.add, (x, y) => x + y, false],
  ['sub', ng.sub, (x, y) => x - y, false],
  ['mul', ng.mul, (x, y) => x * y, false],
  ['div', ng.div, (x, y) => x / y, false],
  ['pow', ng.pow, (x, y) => x ** y, false],
  ['maximum', ng.maximum, Math.max, false],
  ['minimum', ng.minimum, Math.min, false],
  ['floorDivide', ng.floorDivide, floorDivRef, false],
  ['remainder', ng.remainder, remainderRef, false],
  ['eq', ng.eq, (x, y) => +(x === y), true],
  ['ne', ng.ne, (x, y) => +(x !== y), true],
  ['lt', ng.lt, (x, y) => +(x < y), true],
  ['le', ng.le, (x, y) => +(x <= y), true],
  ['gt', ng.gt, (x, y) => +(x > y), true],
  ['ge', ng.ge, (x, y) => +(x >= y), true],
];

const PATTERNS: [string, number[], number[]][] = [
  ['same shape', [3, 4], [3, 4]],
  ['0-d tensor', [3, 4], []],
  ['row', [3, 4], [4]],
  ['column', [3, 4], [3, 1]],
  ['outer [3,1]x[1,4]', [3, 1], [1, 4]],
  ['leading dims', [2, 3, 4], [3, 4]],
  ['leading dims on the left operand', [4], [2, 3, 4]],
  ['size-1 middle dim', [2, 1, 4], [2, 3, 1]],
];

describe('binary ops with broadcasting (float32 vs float64 reference)', () => {
  for (const [name, op, ref, cmp] of BINARY) {
    it(`${name} in every broadcasting pattern`, () => {
      for (const [pat, sa, sb] of PATTERNS) {
        // positive bases for pow; keep divisors away from 0; share a few values so eq/le see ties
        const a = f32(values(sa, 1, name === 'pow' ? 0.2 : -3, 3, name === 'pow' ? 0 : 0.1));
        const b = f32(values(sb, 2, -3, 3, 0.25));
        if (a.length && b.length) a[0] = b[0];
        const want = refBinary(a, sa, b, sb, ref);
        const out = op(ng.tensor(a, { shape: sa }), ng.tensor(b, { shape: sb }));
        expect(out.shape, `${name} ${pat}`).toEqual(want.shape);
        expect(out.dtype, `${name} ${pat}`).toBe(cmp ? 'bool' : 'float32');
        if (cmp) expect(Array.from(out.dataSync()), `${name} ${pat}`).toEqual(want.data);
        else expectClose(out, want.data, { atol: 1e-5, rtol: 1e-5 });
      }
    });

    it(`${name} on float64 and on non-contiguous operands`, () => {
      const lo = name === 'pow' ? 0.2 : -3, gap = name === 'pow' ? 0 : 0.1;
      // a: [3,4] as the transpose of a [4,3] tensor; b: [4] as every other element of [8]
      const aT = values([4, 3], 5, lo, 3, gap), b8 = values([8], 6, -3, 3, 0.25);
      b8[0] = aT[0];
      const a = ng.tensor(aT, { shape: [4, 3], dtype: 'float64' }).T;
      const b = ng.tensor(b8, { dtype: 'float64' }).slice(0, 0, 8, 2);
      const aVals = (a.tolist() as number[][]).flat(), bVals = b.tolist() as number[];
      const want = refBinary(aVals, [3, 4], bVals, [4], ref);
      const out = op(a, b);
      expect(out.dtype).toBe(cmp ? 'bool' : 'float64');
      if (cmp) expect(Array.from(out.dataSync())).toEqual(want.data);
      else expectClose(out, want.data, { atol: 1e-12, rtol: 1e-12 });
      // the column of a [3,1] slice of a transposed tensor, against a [1,4] row of a 0-stride expand
      const col = a.slice(1, 1, 2), row = b.unsqueeze(0).expand(3, 4);
      const want2 = refBinary((col.tolist() as number[][]).flat(), [3, 1], (row.tolist() as number[][]).flat(), [3, 4], ref);
      const out2 = op(col, row);
      if (cmp) expect(Array.from(out2.dataSync())).toEqual(want2.data);
      else expectClose(out2, want2.data, { atol: 1e-12, rtol: 1e-12 });
    });
  }

  it('number operands on either side', () => {
    const a = [1.5, -2, 4, 0.5];
    const t = ng.tensor(a);
    expectClose(ng.add(t, 2), a.map((x) => x + 2));
    expectClose(ng.sub(10, t), a.map((x) => 10 - x));
    expectClose(ng.div(1, t), a.map((x) => 1 / x));
    expectClose(ng.div(t, 4), a.map((x) => x / 4));
    expectClose(ng.pow(2, t), a.map((x) => 2 ** x));
    expectClose(ng.pow(t, 2), a.map((x) => x * x));
    expectClose(ng.pow(t.abs(), 0.5), a.map((x) => Math.sqrt(Math.abs(x))));
    expectClose(ng.maximum(t, 1), a.map((x) => Math.max(x, 1)));
    expectClose(ng.minimum(0, t), a.map((x) => Math.min(x, 0)));
    expect(ng.lt(t, 1).tolist()).toEqual([false, true, false, true]);
    expect(ng.ge(1, t).tolist()).toEqual([false, true, false, true]);
    expectClose(ng.remainder(t, -1.5), a.map((x) => remainderRef(x, -1.5)));
  });

  it('add and sub take alpha, with a tensor or a number', () => {
    const t = ng.tensor([1, 2]);
    expect(ng.add(t, ng.tensor([1, 1]), 3).tolist()).toEqual([4, 5]);
    expect(ng.add(t, 2, 3).tolist()).toEqual([7, 8]);
    expect(t.sub(ng.tensor([1, 1]), -2).tolist()).toEqual([3, 4]);
    expect(t.sub(1, 0.5).tolist()).toEqual([0.5, 1.5]);
  });

  it('non-contiguous operands (transposed, sliced, expanded) give the reference values', () => {
    const A = values([4, 6], 3), B = values([6, 4], 4);
    const a = ng.tensor(A, { shape: [4, 6], dtype: 'float64' });
    const b = ng.tensor(B, { shape: [6, 4], dtype: 'float64' });
    // a[:, ::2] (4x3) * b.T[:, 1::2] (4x3)
    const x = a.slice(1, 0, 6, 2), y = b.T.slice(1, 1, 6, 2);
    const want: number[] = [];
    for (let i = 0; i < 4; i++) for (let j = 0; j < 3; j++) want.push(A[i * 6 + 2 * j] * B[(2 * j + 1) * 4 + i]);
    expectClose(ng.mul(x, y), want, { atol: 1e-12, rtol: 1e-12 });
    // transposed + row broadcast; result strides are fresh row-major
    const r = ng.sub(b.T, a.select(1, 5).unsqueeze(1));
    const want2: number[] = [];
    for (let i = 0; i < 4; i++) for (let j = 0; j < 6; j++) want2.push(B[j * 4 + i] - A[i * 6 + 5]);
    expectClose(r, want2, { atol: 1e-12, rtol: 1e-12 });
    expect(r.isContiguous()).toBe(true);
  });

  it('float64 keeps double precision', () => {
    const x = ng.tensor([1 + 1e-12, 1e16], { dtype: 'float64' });
    expect(ng.sub(x, 1).dataSync()[0]).toBe((1 + 1e-12) - 1);
    expect(ng.sub(ng.tensor([1 + 1e-12]), 1).item()).toBe(0);
    expect(ng.add(x, 1).dtype).toBe('float64');
  });
});

describe('dtypes and promotion', () => {
  const i32 = (xs: number[]): ng.Tensor => ng.tensor(xs, { dtype: 'int32' });

  it('int32 arithmetic stays int32 and is exact', () => {
    const a = i32([7, -7, 5, 0]), b = i32([2, 2, -3, 4]);
    expect(ng.add(a, b).dtype).toBe('int32');
    expect(ng.add(a, b).tolist()).toEqual([9, -5, 2, 4]);
    expect(ng.mul(a, b).tolist()).toEqual([14, -14, -15, 0]);
    expect(ng.floorDivide(a, b).tolist()).toEqual([3, -4, -2, 0]);
    expect(ng.remainder(a, b).tolist()).toEqual([1, 1, -1, 0]);
    expect(ng.maximum(a, b).tolist()).toEqual([7, 2, 5, 4]);
    expect(ng.pow(a, 2).tolist()).toEqual([49, 49, 25, 0]);
    expect(ng.add(a, 3).dtype).toBe('int32');
  });

  it('int32 with a fractional scalar, int32 / int32 and negative powers give float32', () => {
    const a = i32([1, 2, 3]);
    const h = ng.add(a, 0.5);
    expect(h.dtype).toBe('float32');
    expect(h.tolist()).toEqual([1.5, 2.5, 3.5]);
    const q = ng.div(a, i32([2, 2, 2]));
    expect(q.dtype).toBe('float32');
    expect(q.tolist()).toEqual([0.5, 1, 1.5]);
    expect(ng.div(a, 2).tolist()).toEqual([0.5, 1, 1.5]);
    expect(ng.mul(a, 1e10).dtype).toBe('float32');
    expect(ng.mul(a, 1e10).tolist()).toEqual([1e10, 2e10, 3e10].map(Math.fround));
    expect(ng.pow(a, -1).dtype).toBe('float32');
  });

  it('mixed tensor dtypes promote: bool < int32 < float32 < float64', () => {
    const b = ng.tensor([true, false]), i = i32([2, 3]), f = ng.tensor([0.5, 0.25]), d = ng.tensor([1, 2], { dtype: 'float64' });
    expect(ng.add(b, i).dtype).toBe('int32');
    expect(ng.add(b, i).tolist()).toEqual([3, 3]);
    expect(ng.mul(i, f).dtype).toBe('float32');
    expect(ng.mul(i, f).tolist()).toEqual([1, 0.75]);
    expect(ng.add(f, d).dtype).toBe('float64');
    expect(ng.add(i, d).dtype).toBe('float64');
    expect(ng.add(b, 1).dtype).toBe('int32');
  });

  it('comparisons give bool for every dtype, also with fractional scalars', () => {
    expect(ng.lt(i32([0, 1, 2]), 1.5).tolist()).toEqual([true, true, false]);
    expect(ng.eq(i32([1, 2]), ng.tensor([1, 2.5])).tolist()).toEqual([true, false]);
    expect(ng.lt(ng.tensor([true, false]), 0.5).tolist()).toEqual([false, true]);
    expect(ng.eq(ng.tensor([true, false]), 1).tolist()).toEqual([true, false]);
    expect(ng.gt(ng.tensor([1, 2], { dtype: 'float64' }), ng.tensor([1.5, 1.5], { dtype: 'float64' })).dtype).toBe('bool');
  });

  it('bool tensors keep 0/1 values: true + true is true, neg is not 255', () => {
    const t = ng.tensor([true, true, false]), u = ng.tensor([true, false, false]);
    const s = ng.add(t, u);
    expect(s.dtype).toBe('bool');
    expect(Array.from(s.dataSync())).toEqual([1, 1, 0]);
    expect(Array.from(ng.mul(t, u).dataSync())).toEqual([1, 0, 0]);
    expect(Array.from(ng.maximum(t, u).dataSync())).toEqual([1, 1, 0]);
    expect(Array.from(t.neg().dataSync())).toEqual([1, 1, 0]);
  });

  it('logical ops and isnan/isinf', () => {
    const a = ng.tensor([true, true, false, false]), b = ng.tensor([1, 0, 2, 0], { dtype: 'int32' });
    expect(ng.logicalAnd(a, b).tolist()).toEqual([true, false, false, false]);
    expect(ng.logicalOr(a, b).tolist()).toEqual([true, true, true, false]);
    expect(ng.logicalNot(b).tolist()).toEqual([false, true, false, true]);
    const x = ng.tensor([NaN, Infinity, -Infinity, 1]);
    expect(ng.isnan(x).tolist()).toEqual([true, false, false, false]);
    expect(ng.isinf(x).tolist()).toEqual([false, true, true, false]);
  });

  it('NaN propagates through maximum/minimum', () => {
    const x = ng.tensor([NaN, 1, 2]), y = ng.tensor([0, NaN, 1]);
    const mx = Array.from(ng.maximum(x, y).dataSync()), mn = Array.from(ng.minimum(x, y).dataSync());
    expect(mx.map(Number.isNaN)).toEqual([true, true, false]);
    expect(mn.map(Number.isNaN)).toEqual([true, true, false]);
    expect(mx[2]).toBe(2);
    expect(mn[2]).toBe(1);
  });
});

// ---- unary ops --------------------------------------------------------------------------

const UNARY: [string, (x: ng.Tensor) => ng.Tensor, (x: number) => number, [number, number]][] = [
  ['neg', ng.neg, (x) => -x, [-3, 3]],
  ['exp', ng.exp, Math.exp, [-3, 3]],
  ['log', ng.log, Math.log, [0.05, 5]],
  ['sqrt', ng.sqrt, Math.sqrt, [0, 5]],
  ['rsqrt', ng.rsqrt, (x) => 1 / Math.sqrt(x), [0.05, 5]],
  ['abs', ng.abs, Math.abs, [-3, 3]],
  ['tanh', ng.tanh, Math.tanh, [-4, 4]],
  ['sigmoid', ng.sigmoid, sigmoidRef, [-30, 30]],
  ['relu', ng.relu, (x) => Math.max(x, 0), [-3, 3]],
  ['gelu (erf)', (x) => ng.gelu(x), (x) => 0.5 * x * (1 + erfRef(x / Math.SQRT2)), [-3.5, 3.5]],
  ['gelu (tanh)', (x) => ng.gelu(x, { approximate: 'tanh' }),
    (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))), [-4, 4]],
  ['silu', ng.silu, (x) => x * sigmoidRef(x), [-6, 6]],
  ['sin', ng.sin, Math.sin, [-4, 4]],
  ['cos', ng.cos, Math.cos, [-4, 4]],
  ['square', ng.square, (x) => x * x, [-3, 3]],
  ['reciprocal', ng.reciprocal, (x) => 1 / x, [0.1, 3]],
  ['clamp', (x) => ng.clamp(x, -0.5, 1), (x) => Math.min(Math.max(x, -0.5), 1), [-2, 2]],
  ['clamp (min only)', (x) => ng.clamp(x, 0.25), (x) => Math.max(x, 0.25), [-2, 2]],
  ['clamp (max only)', (x) => x.clamp(null, -0.25), (x) => Math.min(x, -0.25), [-2, 2]],
  ['sign', ng.sign, Math.sign, [-2, 2]],
  ['floor', ng.floor, Math.floor, [-3, 3]],
  ['ceil', ng.ceil, Math.ceil, [-3, 3]],
  ['round', ng.round, roundHalfEven, [-3, 3]],
  ['log1p', ng.log1p, Math.log1p, [-0.9, 3]],
  ['expm1', ng.expm1, Math.expm1, [-3, 3]],
  ['erf', ng.erf, erfRef, [-3.5, 3.5]],
  ['leakyRelu', (x) => ng.leakyRelu(x, 0.1), (x) => (x > 0 ? x : 0.1 * x), [-3, 3]],
];

describe('unary ops vs JS reference', () => {
  for (const [name, op, ref, [lo, hi]] of UNARY) {
    it(`${name} (float32 and float64, contiguous and transposed)`, () => {
      const raw = values([5, 7], 17, lo, hi);
      raw[0] = 0;
      raw[1] = (lo + hi) / 2;
      if (name === 'round') raw.push(0.5, 1.5, 2.5, -0.5, -1.5), raw.splice(0, 5);
      const vals = raw.filter((x) => x >= lo && x <= hi);
      const x32 = f32(vals);
      expectClose(op(ng.tensor(x32)), x32.map(ref), { atol: 2e-6, rtol: 2e-6 });
      const x64 = ng.tensor(vals, { dtype: 'float64' });
      const y64 = op(x64);
      expect(y64.dtype).toBe('float64');
      expectClose(y64, vals.map(ref), { atol: 1e-12, rtol: 1e-10 });
      // a transposed view: the output is row-major in the view's order
      const m = ng.tensor(values([5, 7], 23, lo, hi), { shape: [5, 7], dtype: 'float64' });
      const want = (m.T.tolist() as number[][]).flat().map(ref);
      expectClose(op(m.T), want, { atol: 1e-12, rtol: 1e-10 });
    });
  }

  it('integer inputs: exact ops stay int32, transcendental ones compute in float32', () => {
    const i = ng.tensor([-3, 0, 4], { dtype: 'int32' });
    expect(ng.abs(i).dtype).toBe('int32');
    expect(ng.abs(i).tolist()).toEqual([3, 0, 4]);
    expect(ng.neg(i).tolist()).toEqual([3, 0, -4]);
    expect(ng.relu(i).tolist()).toEqual([0, 0, 4]);
    expect(ng.sign(i).tolist()).toEqual([-1, 0, 1]);
    expect(ng.square(i).tolist()).toEqual([9, 0, 16]);
    expect(ng.exp(i).dtype).toBe('float32');
    expectClose(ng.exp(i), [-3, 0, 4].map(Math.exp));
    expect(ng.sqrt(ng.tensor([4, 9], { dtype: 'int32' })).tolist()).toEqual([2, 3]);
    expect(ng.leakyRelu(ng.tensor([-100, 5], { dtype: 'int32' }), 0.5).tolist()).toEqual([-50, 5]);
  });

  it('int32 clamp with one bound, or fractional bounds', () => {
    const i = ng.tensor([-5, 0, 5], { dtype: 'int32' });
    expect(i.clamp(0).tolist()).toEqual([0, 0, 5]);
    expect(i.clamp(null, 1).tolist()).toEqual([-5, 0, 1]);
    expect(i.clamp(-1, 1).dtype).toBe('int32');
    const f = i.clamp(-0.5, 2.5);
    expect(f.dtype).toBe('float32');
    expect(f.tolist()).toEqual([-0.5, 0, 2.5]);
    expect(() => i.clamp(NaN)).toThrow(/nodegrad: clamp: bounds must not be NaN/);
  });

  it('special values: sigmoid saturates without NaN, relu and clamp keep NaN', () => {
    const s = ng.sigmoid(ng.tensor([-1000, 1000])).dataSync();
    expect(Array.from(s)).toEqual([0, 1]);
    expect(Number.isNaN(ng.relu(ng.tensor([NaN])).item())).toBe(true);
    expect(Number.isNaN(ng.clamp(ng.tensor([NaN]), 0, 1).item())).toBe(true);
    expect(ng.log(ng.tensor([0])).item()).toBe(-Infinity);
    expect(() => ng.gelu(ng.tensor([1]), { approximate: 'fast' as never })).toThrow(/nodegrad: gelu: approximate must be/);
  });
});

// ---- where / maskedFill -------------------------------------------------------------------

describe('where and maskedFill', () => {
  it('where broadcasts condition and values, tensors or numbers', () => {
    const c = ng.tensor([[true], [false]]);
    const a = ng.tensor([1, 2, 3]), b = ng.tensor([[10, 20, 30], [40, 50, 60]]);
    expect(ng.where(c, a, b).tolist()).toEqual([[1, 2, 3], [40, 50, 60]]);
    expect(ng.where(c, a, -1).tolist()).toEqual([[1, 2, 3], [-1, -1, -1]]);
    expect(ng.where(ng.tensor([true, false]), 1, 2).tolist()).toEqual([1, 2]);
    expect(a.where(ng.tensor([1, 0, 1], { dtype: 'int32' }), 0).tolist()).toEqual([1, 0, 3]);
    expect(ng.where(ng.tensor([true, false]), ng.tensor([1, 2], { dtype: 'int32' }), ng.tensor([0.5, 0.5])).tolist()).toEqual([1, 0.5]);
  });

  it('a number next to an integer tensor promotes like a binary op; maskedFill keeps the dtype', () => {
    const c = ng.tensor([true, false]);
    const w = ng.where(c, ng.tensor([1, 2], { dtype: 'int32' }), 0.5);
    expect(w.dtype).toBe('float32');
    expect(w.tolist()).toEqual([1, 0.5]);
    const wb = ng.where(c, 2, ng.tensor([true, true]));
    expect(wb.dtype).toBe('int32');
    expect(wb.tolist()).toEqual([2, 1]);
    expect(ng.where(c, 1, ng.tensor([false, false])).dtype).toBe('bool');
    const m = ng.maskedFill(ng.tensor([1, 2], { dtype: 'int32' }), c, 7.9);
    expect(m.dtype).toBe('int32');
    expect(m.tolist()).toEqual([7, 2]);
    expect(ng.maskedFill(ng.tensor([true, false]), ng.tensor([false, true]), 1).tolist()).toEqual([true, true]);
  });

  it('where with a transposed condition', () => {
    const cond = ng.tensor([[true, false, true], [false, false, true]]).T; // [3,2]
    const out = ng.where(cond, ng.ones([3, 2]), ng.zeros([3, 2]));
    expect(out.tolist()).toEqual([[1, 0], [0, 0], [1, 1]]);
  });

  it('maskedFill with bool and int masks, broadcast masks', () => {
    const x = ng.tensor([[1, 2, 3], [4, 5, 6]]);
    expect(x.maskedFill(ng.tensor([false, true, false]), -9).tolist()).toEqual([[1, -9, 3], [4, -9, 6]]);
    expect(ng.maskedFill(x, ng.tensor([[1], [0]], { dtype: 'int32' }), 0).tolist()).toEqual([[0, 0, 0], [4, 5, 6]]);
    expect(ng.maskedFill(x, ng.tensor([[true, false, false], [false, false, true]]), -Infinity).tolist())
      .toEqual([[-Infinity, 2, 3], [4, 5, -Infinity]]);
    expect(() => ng.maskedFill(x, ng.tensor([1.0, 0, 1]), 0)).toThrow(/nodegrad: maskedFill: mask must be bool or int32/);
    expect(() => ng.maskedFill(ng.zeros([3]), ng.tensor([[true], [false]]), 0)).toThrow(/nodegrad: maskedFill: mask of shape \[2,1\] does not broadcast to the input's shape \[3\]/);
  });
});

// ---- in place -------------------------------------------------------------------------------

describe('in-place ops', () => {
  it('add_ with alpha, sub_, mul_, div_ with tensors and numbers', () => {
    const t = ng.tensor([[1, 2], [3, 4]]);
    t.add_(ng.tensor([10, 20]), 0.5);
    expect(t.tolist()).toEqual([[6, 12], [8, 14]]);
    t.add_(1, 2);
    expect(t.tolist()).toEqual([[8, 14], [10, 16]]);
    t.sub_(ng.tensor([[1], [2]]));
    expect(t.tolist()).toEqual([[7, 13], [8, 14]]);
    t.mul_(ng.tensor([2, 0.5]));
    expect(t.tolist()).toEqual([[14, 6.5], [16, 7]]);
    t.div_(2);
    expect(t.tolist()).toEqual([[7, 3.25], [8, 3.5]]);
    expect(t.mul_(2)).toBe(t);
  });

  it('fill_, zero_, clamp_', () => {
    const t = ng.zeros([2, 3]);
    t.fill_(4);
    expect(t.tolist()).toEqual([[4, 4, 4], [4, 4, 4]]);
    t.select(1, 1).zero_();
    expect(t.tolist()).toEqual([[4, 0, 4], [4, 0, 4]]);
    const before = ng.memory().numTensors;
    t.clamp_(1, 3);
    expect(t.tolist()).toEqual([[3, 1, 3], [3, 1, 3]]);
    expect(ng.memory().numTensors).toBe(before);
  });

  it('copy_ broadcasts and casts', () => {
    const t = ng.zeros([2, 3]);
    t.copy_(ng.tensor([1, 2, 3], { dtype: 'int32' }));
    expect(t.tolist()).toEqual([[1, 2, 3], [1, 2, 3]]);
    const i = ng.zeros([2], { dtype: 'int32' });
    i.copy_(ng.tensor([2.7, -2.7]));
    expect(i.tolist()).toEqual([2, -2]);
    const b = ng.zeros([3], { dtype: 'bool' });
    b.copy_(ng.tensor([0, 0.5, -2]));
    expect(b.tolist()).toEqual([false, true, true]);
    expect(() => ng.zeros([3]).copy_(ng.zeros([2]))).toThrow(/nodegrad: copy_: shapes \[3\] and \[2\] cannot be broadcast together/);
    expect(() => ng.zeros([3]).copy_(ng.zeros([2, 3]))).toThrow(/nodegrad: copy_: source of shape \[2,3\] does not broadcast/);
  });

  it('in-place ops on a leaf that requires grad throw, and work under noGrad', () => {
    const w = ng.tensor([1, 2], { requiresGrad: true });
    expect(() => w.add_(1)).toThrow(/nodegrad: add_: a leaf tensor that requires grad is used in an in-place operation/);
    expect(() => w.mul_(ng.tensor([2, 2]))).toThrow(/nodegrad: mul_:/);
    expect(() => w.fill_(0)).toThrow(/nodegrad: fill_:/);
    expect(() => w.zero_()).toThrow(/nodegrad: zero_:/);
    expect(() => w.copy_(ng.zeros([2]))).toThrow(/nodegrad: copy_:/);
    ng.noGrad(() => w.sub_(ng.tensor([1, 1]), 0.5));
    expect(w.tolist()).toEqual([0.5, 1.5]);
    expect(w.isLeaf).toBe(true);
  });

  it('a source that overlaps the target is read before it is overwritten', () => {
    const m = ng.tensor([[1, 2], [3, 4]]);
    m.add_(m.T);
    expect(m.tolist()).toEqual([[2, 5], [5, 8]]);
    const n = ng.tensor([[1, 2], [3, 4]]);
    n.sub_(n.T, 2);
    expect(n.tolist()).toEqual([[-1, -4], [-1, -4]]);
    const same = ng.tensor([1, 2, 3]);
    same.mul_(same);
    expect(same.tolist()).toEqual([1, 4, 9]);
    for (const size of [7, 300_001]) {
      const up = ng.arange(size, undefined, 1, { dtype: 'float32' });
      up.slice(0, 1).copy_(up.slice(0, 0, size - 1));
      const down = ng.arange(size, undefined, 1, { dtype: 'float32' });
      down.slice(0, 0, size - 1).copy_(down.slice(0, 1));
      const u = up.dataSync(), d = down.dataSync();
      let bad = 0;
      for (let i = 0; i < size; i++) {
        if (u[i] !== (i === 0 ? 0 : i - 1)) bad++;
        if (d[i] !== (i === size - 1 ? size - 1 : i + 1)) bad++;
      }
      expect(bad).toBe(0);
    }
    const r = ng.tensor([[1, 2], [3, 4]]);
    r.select(0, 1).copy_(r.select(0, 0));
    expect(r.tolist()).toEqual([[1, 2], [1, 2]]);
  });

  it('an in-place op on an expanded view (elements sharing memory) is refused', () => {
    const e = ng.zeros([3]).unsqueeze(0).expand(4, 3);
    expect(() => e.add_(1)).toThrow(/nodegrad: add_: the target is an expanded view \(shape \[4,3\], strides \[0,1\]\)/);
    expect(() => e.copy_(ng.ones([4, 3]))).toThrow(/nodegrad: copy_: the target is an expanded view/);
    expect(() => ng.zeros([1, 3]).expand(1, 3).fill_(2)).not.toThrow();
  });

  it('in-place target shape must not grow', () => {
    expect(() => ng.zeros([3]).add_(ng.zeros([2, 3]))).toThrow(/nodegrad: add_: other of shape \[2,3\] does not broadcast to the target's shape \[3\]/);
  });
});

// ---- large tensors: the multi-threaded path ----------------------------------------------

describe('large tensors (multi-threaded kernels)', () => {
  it('binary, unary, where and copy over > 1M elements match the reference everywhere', () => {
    const R = 1200, C = 1001; // 1,201,200 elements, odd row length
    const r = lcg(5);
    const A = new Float32Array(R * C).map(() => r() * 3);
    const B = new Float32Array(C).map(() => r() * 3);
    const a = ng.tensor(A, { shape: [R, C] }), b = ng.tensor(B);
    const sum = ng.add(a, b).dataSync();
    const th = ng.tanh(a.T).dataSync();
    const wh = ng.where(ng.gt(a, 0), a, b).dataSync();
    const tr = a.T.contiguous().dataSync();
    const sq = ng.mul(a.T, a.T).dataSync();
    let bad = 0;
    for (let i = 0; i < R; i++) {
      for (let j = 0; j < C; j++) {
        const x = A[i * C + j];
        if (sum[i * C + j] !== Math.fround(x + B[j])) bad++;
        if (Math.abs(th[j * R + i] - Math.tanh(x)) > 1e-6) bad++;
        if (wh[i * C + j] !== (x > 0 ? x : B[j])) bad++;
        if (tr[j * R + i] !== x) bad++;
        if (sq[j * R + i] !== Math.fround(x * x)) bad++;
      }
    }
    expect(bad).toBe(0);
  });

  it('one thread and all threads give bitwise the same elementwise results', () => {
    const r = lcg(8);
    const A = new Float32Array(1 << 20).map(() => r() * 4);
    const a = ng.tensor(A, { shape: [1024, 1024] });
    const run = (): Float32Array[] => [ng.gelu(a.T).dataSync() as Float32Array, ng.mul(a, a.select(0, 3)).dataSync() as Float32Array];
    const threads = ng.getNumThreads();
    const multi = run();
    ng.setNumThreads(1);
    let single: Float32Array[];
    try {
      single = run();
    } finally {
      ng.setNumThreads(threads);
    }
    expect(ng.getNumThreads()).toBe(threads);
    let differ = 0; // compared by hand: deep equality of 1M-element arrays is slow
    for (let k = 0; k < multi.length; k++) for (let i = 0; i < multi[k].length; i++) if (!Object.is(multi[k][i], single[k][i])) differ++;
    expect(differ).toBe(0);
    // and the pool still works after being resized twice
    expect(ng.add(a, 1).dataSync()[5]).toBe(Math.fround(A[5] + 1));
  });
});

// ---- gradients ------------------------------------------------------------------------------

function leaf(shape: number[], seed: number, lo = -2, hi = 2, gap = 0.15): ng.Tensor {
  return ng.tensor(values(shape, seed, lo, hi, gap), { shape, dtype: 'float64', requiresGrad: true });
}

describe('elementwise gradients match finite differences (float64)', () => {
  const bin: [string, (a: ng.Tensor, b: ng.Tensor) => ng.Tensor, [number, number]][] = [
    ['add', (a, b) => ng.add(a, b), [-2, 2]],
    ['add with alpha', (a, b) => ng.add(a, b, -1.5), [-2, 2]],
    ['sub', (a, b) => ng.sub(a, b), [-2, 2]],
    ['sub with alpha', (a, b) => ng.sub(a, b, 3), [-2, 2]],
    ['mul', (a, b) => ng.mul(a, b), [-2, 2]],
    ['div', (a, b) => ng.div(a, b), [-2, 2]],
    ['pow tensor^tensor', (a, b) => ng.pow(a, b), [0.3, 2]],
    ['maximum', (a, b) => ng.maximum(a, b), [-2, 2]],
    ['minimum', (a, b) => ng.minimum(a, b), [-2, 2]],
  ];
  const shapes: [string, number[], number[]][] = [
    ['same shape', [2, 3], [2, 3]],
    ['row broadcast', [2, 3], [3]],
    ['column broadcast', [2, 3], [2, 1]],
    ['[3,1]x[1,4]', [3, 1], [1, 4]],
    ['leading dims', [2, 1, 3], [4, 3]],
    ['0-d', [2, 3], []],
  ];
  for (const [name, fn, [lo, hi]] of bin) {
    it(`${name} in every broadcasting pattern`, () => {
      for (const [, sa, sb] of shapes) gradcheck(fn, [leaf(sa, 1, lo, hi), leaf(sb, 2, lo, hi)]);
    });
  }

  it('ops with a number operand on either side', () => {
    const x = leaf([2, 3], 4, 0.3, 2);
    gradcheck((a) => ng.pow(a, 3), [x]);
    gradcheck((a) => ng.pow(a, -0.5), [x]);
    gradcheck((a) => ng.pow(a, 0), [x]);
    gradcheck((a) => ng.pow(2.5, a), [x]);
    gradcheck((a) => ng.div(3, a), [x]);
    gradcheck((a) => ng.sub(1, a), [x]);
    gradcheck((a) => ng.maximum(a, 1), [leaf([2, 3], 5, -2, 2, 0.1).add(0)]);
    gradcheck((a) => ng.minimum(0.5, a), [leaf([2, 3], 6)]);
  });

  it('only the operand that requires grad receives a gradient', () => {
    const a = leaf([3], 7), b = ng.tensor([1, 2, 3], { dtype: 'float64' });
    gradcheck((x, y) => ng.mul(x, y), [a, b]);
    gradcheck((x, y) => ng.pow(y, x), [a, b]);
  });

  const un: [string, (x: ng.Tensor) => ng.Tensor, [number, number]][] = [
    ['neg', ng.neg, [-2, 2]], ['exp', ng.exp, [-2, 2]], ['log', ng.log, [0.2, 3]], ['sqrt', ng.sqrt, [0.2, 3]],
    ['rsqrt', ng.rsqrt, [0.2, 3]], ['abs', ng.abs, [-2, 2]], ['tanh', ng.tanh, [-2, 2]], ['sigmoid', ng.sigmoid, [-4, 4]],
    ['relu', ng.relu, [-2, 2]], ['gelu', (x) => ng.gelu(x), [-3, 3]], ['gelu tanh', (x) => ng.gelu(x, { approximate: 'tanh' }), [-3, 3]],
    ['silu', ng.silu, [-4, 4]], ['sin', ng.sin, [-3, 3]], ['cos', ng.cos, [-3, 3]], ['square', ng.square, [-2, 2]],
    ['reciprocal', ng.reciprocal, [0.3, 2]], ['clamp', (x) => ng.clamp(x, -0.5, 0.8), [-2, 2]],
    ['clamp min only', (x) => ng.clamp(x, 0.05), [-2, 2]], ['log1p', ng.log1p, [-0.5, 2]], ['expm1', ng.expm1, [-2, 2]],
    ['erf', ng.erf, [-2, 2]], ['leakyRelu', (x) => ng.leakyRelu(x, 0.2), [-2, 2]],
    ['sign (zero gradient)', ng.sign, [-2, 2]], ['floor (zero gradient)', ng.floor, [-2, 2]],
    ['round (zero gradient)', ng.round, [-2, 2]], ['ceil (zero gradient)', ng.ceil, [-2, 2]],
  ];
  for (const [name, fn, [lo, hi]] of un) {
    it(`${name}`, () => {
      // values kept away from kinks (0, clamp bounds, integers for floor/round)
      const vals = values([3, 4], 9, lo, hi).map((v) => {
        let x = v;
        for (const k of [0, -0.5, 0.8, 0.05]) if (Math.abs(x - k) < 0.02) x += 0.05;
        if (/floor|round|ceil/.test(name)) x = Math.floor(x) + 0.3 + 0.4 * Math.abs(x - Math.floor(x));
        return x;
      });
      const x = ng.tensor(vals, { shape: [3, 4], dtype: 'float64', requiresGrad: true });
      gradcheck(fn, [x]);
      // and through a transposed (non-contiguous) input
      gradcheck((t) => fn(t.T), [x]);
    });
  }

  it('where, maskedFill and cast', () => {
    const c = ng.tensor([[true, false, true], [false, true, false]]);
    gradcheck((a, b) => ng.where(c, a, b), [leaf([2, 3], 1), leaf([3], 2)]);
    gradcheck((a) => ng.where(c, a, 0), [leaf([2, 3], 3)]);
    gradcheck((b) => ng.where(c.T, 1, b), [leaf([3, 1], 4)]);
    gradcheck((a) => ng.maskedFill(a, ng.tensor([false, true, false]), -7), [leaf([2, 3], 5)]);
    // through float32 the finite differences need a larger step
    gradcheck((a) => a.to('float32').to('float64').mul(a), [leaf([4], 6)], { eps: 1e-3, atol: 1e-3, rtol: 1e-3 });
  });

  it('ties in maximum/minimum split the gradient evenly', () => {
    const a = ng.tensor([1, 2, 3], { requiresGrad: true }), b = ng.tensor([1, 0, 3], { requiresGrad: true });
    ng.maximum(a, b).sum().backward();
    expect(a.grad!.tolist()).toEqual([0.5, 1, 0.5]);
    expect(b.grad!.tolist()).toEqual([0.5, 0, 0.5]);
  });

  it('float32 inputs get float32 gradients', () => {
    const x = ng.tensor([0.5, -1], { requiresGrad: true });
    ng.mul(x, x).sum().backward();
    expect(x.grad!.dtype).toBe('float32');
    expect(x.grad!.tolist()).toEqual([1, -2]);
  });
});
