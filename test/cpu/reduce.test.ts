// Reductions: values against a plain-JS float64 reference over every dim set of a 3-d
// tensor, index results, NaN handling, accuracy on long rows, and gradients.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { gradcheck } from '../../lib/gradcheck.js';
import { expectClose, lcg } from '../helpers.js';

const SHAPE = [3, 4, 5];

function randomData(n: number, seed: number, lo = -2, hi = 2): number[] {
  const r = lcg(seed);
  return Array.from({ length: n }, () => lo + (r() + 1) / 2 * (hi - lo));
}

/** Reference reduction: for every output position, fn over the reduced elements in index order. */
function refReduce(data: number[], shape: number[], dims: number[], keepdim: boolean, fn: (xs: number[]) => number): { data: number[]; shape: number[] } {
  const keptDims = shape.map((_, i) => i).filter((i) => !dims.includes(i));
  const outShape = keepdim ? shape.map((s, i) => (dims.includes(i) ? 1 : s)) : keptDims.map((i) => shape[i]);
  const groups = new Map<string, number[]>();
  const idx = new Array(shape.length).fill(0);
  for (let t = 0; t < data.length; t++) {
    let r = t;
    for (let i = shape.length - 1; i >= 0; i--) { idx[i] = r % shape[i]; r = Math.floor(r / shape[i]); }
    const key = keptDims.map((i) => idx[i]).join(',');
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(data[t]);
  }
  // Map insertion order follows row-major order of the kept dims
  return { data: [...groups.values()].map(fn), shape: outShape };
}

const sumR = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
const meanR = (xs: number[]): number => sumR(xs) / xs.length;
const varR = (c: number) => (xs: number[]): number => { const m = meanR(xs); return sumR(xs.map((x) => (x - m) ** 2)) / (xs.length - c); };
const lseR = (xs: number[]): number => { const m = Math.max(...xs); return m + Math.log(sumR(xs.map((x) => Math.exp(x - m)))); };
const argR = (better: (a: number, b: number) => boolean) => (xs: number[]): number => {
  let bi = 0;
  for (let i = 1; i < xs.length; i++) if (better(xs[i], xs[bi])) bi = i;
  return bi;
};

const DIM_SETS: (number | number[] | undefined)[] = [0, 1, 2, -1, [0, 1], [1, 2], [0, 2], [2, 0], [0, 1, 2], undefined];
const asList = (d: number | number[] | undefined): number[] =>
  d === undefined ? [0, 1, 2] : (Array.isArray(d) ? d : [d]).map((x) => (x < 0 ? x + 3 : x));

const REDUCTIONS: [string, (x: ng.Tensor, d: number | number[] | undefined, k: boolean) => ng.Tensor, (xs: number[]) => number][] = [
  ['sum', (x, d, k) => ng.sum(x, d, k), sumR],
  ['mean', (x, d, k) => ng.mean(x, d, k), meanR],
  ['var', (x, d, k) => ng.var(x, d, { keepdim: k }), varR(1)],
  ['var (correction 0)', (x, d, k) => x.var(d, { keepdim: k, correction: 0 }), varR(0)],
  ['std', (x, d, k) => ng.std(x, d, { keepdim: k }), (xs) => Math.sqrt(varR(1)(xs))],
  ['amax', (x, d, k) => ng.amax(x, d, k), (xs) => Math.max(...xs)],
  ['amin', (x, d, k) => x.amin(d, k), (xs) => Math.min(...xs)],
  ['logsumexp', (x, d, k) => ng.logsumexp(x, d ?? [0, 1, 2], k), lseR],
  ['norm 2', (x, d, k) => ng.norm(x, 2, d, k), (xs) => Math.sqrt(sumR(xs.map((v) => v * v)))],
  ['norm 1', (x, d, k) => x.norm(1, d, k), (xs) => sumR(xs.map(Math.abs))],
  ['norm inf', (x, d, k) => x.norm(Infinity, d, k), (xs) => Math.max(...xs.map(Math.abs))],
  ['norm 3', (x, d, k) => x.norm(3, d, k), (xs) => sumR(xs.map((v) => Math.abs(v) ** 3)) ** (1 / 3)],
];

describe('reductions vs JS reference over every dim set of a [3,4,5] tensor', () => {
  const data = randomData(60, 11);
  for (const [name, op, ref] of REDUCTIONS) {
    it(name, () => {
      for (const dtype of ['float32', 'float64'] as const) {
        const x = ng.tensor(data, { shape: SHAPE, dtype });
        const vals = Array.from(x.dataSync());
        for (const d of DIM_SETS) {
          for (const keepdim of [false, true]) {
            const want = refReduce(vals, SHAPE, asList(d), keepdim, ref);
            const out = op(x, d, keepdim);
            expect(out.shape, `${name} dim ${JSON.stringify(d)} keepdim ${keepdim}`).toEqual(want.shape);
            expect(out.dtype).toBe(dtype);
            expectClose(out, want.data, dtype === 'float64' ? { atol: 1e-12, rtol: 1e-12 } : { atol: 1e-5, rtol: 1e-5 });
          }
        }
      }
    });
  }

  it('prod over each single dim and over all', () => {
    const data = randomData(60, 12, 0.5, 1.5);
    const x = ng.tensor(data, { shape: SHAPE, dtype: 'float64' });
    for (const d of [0, 1, 2]) {
      for (const keepdim of [false, true]) {
        const want = refReduce(data, SHAPE, [d], keepdim, (xs) => xs.reduce((a, b) => a * b, 1));
        const out = ng.prod(x, d, keepdim);
        expect(out.shape).toEqual(want.shape);
        expectClose(out, want.data, { atol: 1e-12, rtol: 1e-12 });
      }
    }
    expectClose(ng.prod(x), [data.reduce((a, b) => a * b, 1)], { atol: 1e-12, rtol: 1e-12 });
  });

  it('max(dim) and min(dim) return values and first indices, like argmax/argmin', () => {
    // small integers make ties common
    const data = randomData(60, 13).map((v) => Math.round(v * 2));
    const x = ng.tensor(data, { shape: SHAPE });
    for (const d of [0, 1, 2]) {
      for (const keepdim of [false, true]) {
        const mx = x.max(d, keepdim), mn = ng.min(x, d, keepdim);
        const wantMax = refReduce(data, SHAPE, [d], keepdim, (xs) => Math.max(...xs));
        const wantArg = refReduce(data, SHAPE, [d], keepdim, argR((a, b) => a > b));
        const wantMinArg = refReduce(data, SHAPE, [d], keepdim, argR((a, b) => a < b));
        expect(mx.values.shape).toEqual(wantMax.shape);
        expect(Array.from(mx.values.dataSync())).toEqual(wantMax.data);
        expect(mx.indices.dtype).toBe('int32');
        expect(Array.from(mx.indices.dataSync())).toEqual(wantArg.data);
        expect(Array.from(mn.indices.dataSync())).toEqual(wantMinArg.data);
        expect(Array.from(ng.argmax(x, d, keepdim).dataSync())).toEqual(wantArg.data);
        expect(Array.from(x.argmin(d, keepdim).dataSync())).toEqual(wantMinArg.data);
        expect(ng.argmax(x, d, keepdim).shape).toEqual(wantArg.shape);
      }
    }
  });

  it('argmax/argmin without dim index the flattened tensor (first on ties), also for views', () => {
    expect(ng.tensor([1, 3, 3, 0]).argmax().item()).toBe(1);
    expect(ng.tensor([2, 0, 5, 0]).argmin().item()).toBe(1);
    const m = ng.tensor([[1, 9], [9, 0]]);
    expect(m.argmax().item()).toBe(1);
    expect(m.T.argmax().item()).toBe(1); // T = [[1,9],[9,0]]
    expect(ng.tensor([[1, 5], [7, 0]]).T.argmax().item()).toBe(1); // T = [[1,7],[5,0]]
    expect(m.argmax().shape).toEqual([]);
  });
});

describe('integer and bool reductions', () => {
  it('int32 sum stays int32 and is exact; mean gives float32', () => {
    const x = ng.tensor([[1, 2, 3], [4, 5, 6]], { dtype: 'int32' });
    const s = ng.sum(x, 1);
    expect(s.dtype).toBe('int32');
    expect(s.tolist()).toEqual([6, 15]);
    expect(ng.sum(x).item()).toBe(21);
    expect(ng.mean(x).dtype).toBe('float32');
    expect(ng.mean(x, 0).tolist()).toEqual([2.5, 3.5, 4.5]);
    expect(ng.amax(x, 0).tolist()).toEqual([4, 5, 6]);
    // 3e9 does not fit: the int32 result wraps like int32 arithmetic
    expect(ng.sum(ng.full([100_000], 30_000, { dtype: 'int32' })).item()).toBe(3e9 - 2 ** 32);
  });

  it('bool sum counts trues; bool mean is a fraction; no intermediate is left alive', () => {
    const b = ng.tensor([[true, false, true], [true, true, true]]);
    expect(ng.sum(b).item()).toBe(5);
    expect(ng.sum(b, 1).tolist()).toEqual([2, 3]);
    const before = ng.memory().numTensors;
    const m = ng.mean(b);
    expect(m.item()).toBeCloseTo(5 / 6, 6);
    expect(ng.memory().numTensors).toBe(before + 1);
  });
});

describe('special values and sizes', () => {
  it('NaN propagates through max/min/amax/argmax (NaN is the extreme, first NaN wins)', () => {
    const x = ng.tensor([[1, NaN, 3, NaN], [4, 5, 6, 7]]);
    const { values, indices } = x.max(1);
    const v = Array.from(values.dataSync());
    expect(Number.isNaN(v[0])).toBe(true);
    expect(v[1]).toBe(7);
    expect(indices.tolist()).toEqual([1, 3]);
    expect(Number.isNaN(ng.amax(x).item())).toBe(true);
    expect(Number.isNaN(ng.amin(x).item())).toBe(true);
    expect(x.argmin(1).tolist()).toEqual([1, 0]);
    // column direction (the [M, R, I] kernel with I > 1)
    const c = ng.tensor([[1, 2], [NaN, 0], [5, NaN]]);
    expect(c.max(0).indices.tolist()).toEqual([1, 2]);
    expect(Array.from(c.amax(0).dataSync()).map(Number.isNaN)).toEqual([true, true]);
    expect(Number.isNaN(ng.sum(x).item())).toBe(true);
  });

  it('logsumexp of all -inf is -inf, +inf stays +inf', () => {
    expect(ng.tensor([[-Infinity, -Infinity], [0, 0]]).logsumexp(1).tolist()).toEqual([-Infinity, Math.log(2)].map(Math.fround));
    expect(ng.tensor([Infinity, 0]).logsumexp(0).item()).toBe(Infinity);
    expectClose(ng.tensor([1000, 1000]).logsumexp(0), [1000 + Math.log(2)]);
  });

  it('empty reductions: sum 0, prod 1, mean NaN; max over an empty dim throws', () => {
    const e = ng.zeros([0, 3]);
    expect(ng.sum(e, 0).tolist()).toEqual([0, 0, 0]);
    expect(ng.prod(e, 0).tolist()).toEqual([1, 1, 1]);
    expect(Number.isNaN(ng.mean(e).item())).toBe(true);
    expect(ng.sum(e, 1).shape).toEqual([0]);
    const before = ng.memory().numTensors;
    expect(() => ng.amax(e, 0)).toThrow(/nodegrad: amax: cannot reduce over an empty dimension \(shape \[0,3\]\)/);
    expect(() => e.max(0)).toThrow(/nodegrad: max: cannot reduce over an empty dimension/);
    expect(() => e.argmax()).toThrow(/nodegrad: argmax: cannot reduce over an empty dimension/);
    expect(ng.memory().numTensors).toBe(before);
  });

  it('0-d tensors reduce to themselves', () => {
    const s = ng.tensor(4);
    expect(ng.sum(s).item()).toBe(4);
    expect(ng.amax(s).item()).toBe(4);
    expect(ng.sum(s, 0).item()).toBe(4);
  });

  it('var of a single element with correction 1 is NaN', () => {
    expect(Number.isNaN(ng.var(ng.tensor([3])).item())).toBe(true);
    expect(ng.var(ng.tensor([3]), undefined, { correction: 0 }).item()).toBe(0);
  });

  it('a 1M-element float32 sum and mean are accurate (double accumulation)', () => {
    const n = 1 << 20;
    const r = lcg(21);
    const x = new Float32Array(n).map(() => 1 + r() * 1e-3);
    let ref = 0;
    for (const v of x) ref += v;
    const t = ng.tensor(x);
    expect(Math.abs(ng.sum(t).item() - ref) / ref).toBeLessThan(1e-6);
    expect(Math.abs(ng.mean(t).item() - ref / n)).toBeLessThan(1e-6);
    // the same data as long rows and as long columns
    const rows = t.reshape(4, n / 4), cols = rows.T;
    const refRows = [0, 1, 2, 3].map((i) => x.subarray(i * n / 4, (i + 1) * n / 4).reduce((a, b) => a + b, 0));
    expectClose(ng.sum(rows, 1), refRows, { atol: 0, rtol: 1e-6 });
    expectClose(ng.sum(cols, 0), refRows, { atol: 0, rtol: 1e-6 });
    expectClose(ng.var(t), [(() => { const m = ref / n; let s = 0; for (const v of x) s += (v - m) ** 2; return s / (n - 1); })()], { atol: 0, rtol: 1e-4 });
  });

  it('non-contiguous inputs reduce correctly', () => {
    const data = randomData(60, 14);
    const x = ng.tensor(data, { shape: SHAPE, dtype: 'float64' });
    const p = x.permute(2, 0, 1).slice(0, 0, 5, 2); // [3,3,4] strided
    const dense = ng.tensor((p.tolist() as number[][][]).flat(2), { shape: [3, 3, 4], dtype: 'float64' });
    for (const d of [0, 1, 2, [0, 2]] as (number | number[])[]) {
      expectClose(ng.sum(p, d), ng.sum(dense, d), { atol: 1e-12, rtol: 1e-12 });
      expectClose(ng.amax(p, d), ng.amax(dense, d), { atol: 0, rtol: 0 });
    }
  });
});

describe('reduction argument errors', () => {
  it('bad dims', () => {
    const x = ng.zeros([2, 3]);
    expect(() => ng.sum(x, 2)).toThrow(/nodegrad: sum: dim 2 is out of range for a tensor with 2 dims/);
    expect(() => ng.mean(x, -3)).toThrow(/nodegrad: mean: dim -3 is out of range/);
    expect(() => ng.sum(x, 0.5)).toThrow(/nodegrad: sum: dim must be an integer/);
    expect(() => ng.sum(x, [1, -1])).toThrow(/nodegrad: sum: dim \[1,-1\] repeats a dimension/);
    expect(() => x.max(5)).toThrow(/nodegrad: max: dim 5 is out of range/);
    expect(() => ng.argmax(x, 2)).toThrow(/nodegrad: argmax: dim 2 is out of range/);
  });
  it('float-only reductions reject integer input', () => {
    const i = ng.zeros([3], { dtype: 'int32' });
    expect(() => ng.var(i)).toThrow(/nodegrad: var: input must be a floating-point tensor \(got int32/);
    expect(() => ng.logsumexp(i, 0)).toThrow(/nodegrad: logsumexp: input must be a floating-point tensor/);
    expect(() => ng.norm(ng.zeros([2]), -1)).toThrow(/nodegrad: norm: p must be positive/);
  });
});

describe('reduction gradients match finite differences (float64)', () => {
  const x = (): ng.Tensor => ng.tensor(randomData(60, 31, 0.5, 2), { shape: SHAPE, dtype: 'float64', requiresGrad: true });
  const dimCases: (number | number[] | undefined)[] = [1, -1, [0, 1], [0, 2], undefined];

  const ops: [string, (t: ng.Tensor, d: number | number[] | undefined, k: boolean) => ng.Tensor][] = [
    ['sum', (t, d, k) => ng.sum(t, d, k)],
    ['mean', (t, d, k) => ng.mean(t, d, k)],
    ['var', (t, d, k) => ng.var(t, d, { keepdim: k })],
    ['var correction 0', (t, d, k) => ng.var(t, d, { keepdim: k, correction: 0 })],
    ['std', (t, d, k) => ng.std(t, d, { keepdim: k })],
    ['amax', (t, d, k) => ng.amax(t, d, k)],
    ['amin', (t, d, k) => ng.amin(t, d, k)],
    ['logsumexp', (t, d, k) => ng.logsumexp(t, d ?? [0, 1, 2], k)],
    ['norm 2', (t, d, k) => ng.norm(t, 2, d, k)],
    ['norm 1', (t, d, k) => ng.norm(t, 1, d, k)],
    ['norm 3', (t, d, k) => ng.norm(t, 3, d, k)],
  ];
  for (const [name, op] of ops) {
    it(`${name}: single, adjacent, non-adjacent and all dims, keepdim both ways`, () => {
      for (const d of dimCases) for (const k of [false, true]) gradcheck((t) => op(t, d, k), [x()]);
    });
  }

  it('max(dim)/min(dim) values and prod over single dims', () => {
    for (const d of [0, 1, 2]) {
      for (const k of [false, true]) {
        gradcheck((t) => t.max(d, k).values, [x()]);
        gradcheck((t) => ng.min(t, d, k).values, [x()]);
        gradcheck((t) => ng.prod(t, d, k), [x()]);
      }
    }
    gradcheck((t) => ng.prod(t), [ng.tensor([0.5, 1.5, 2, 0.7], { dtype: 'float64', requiresGrad: true })]);
  });

  it('ties split the amax gradient; max(dim) sends it to the first index', () => {
    const t = ng.tensor([[1, 3, 3], [2, 0, 2]], { requiresGrad: true });
    ng.amax(t, 1).sum().backward();
    expect(t.grad!.tolist()).toEqual([[0, 0.5, 0.5], [0.5, 0, 0.5]]);
    const u = ng.tensor([[1, 3, 3]], { requiresGrad: true });
    u.max(1).values.sum().backward();
    expect(u.grad!.tolist()).toEqual([[0, 1, 0]]);
  });

  it('the norm gradient at zero is zero, not NaN', () => {
    const z = ng.zeros([3], { requiresGrad: true });
    z.norm().backward();
    expect(z.grad!.tolist()).toEqual([0, 0, 0]);
    const m = ng.tensor([[0, 0], [3, 4]], { requiresGrad: true });
    ng.norm(m, 2, 1).sum().backward();
    expectClose(m.grad!, [0, 0, 0.6, 0.8]);
  });

  it('reductions of non-contiguous inputs', () => {
    gradcheck((t) => ng.sum(t.permute(2, 0, 1), [0, 2]), [x()]);
    gradcheck((t) => ng.var(t.transpose(0, 2), 1), [x()]);
    gradcheck((t) => ng.logsumexp(t.slice(2, 0, 5, 2), [0, 2], true), [x()]);
  });
});
