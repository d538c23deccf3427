// CUDA reductions against the CPU: every op over single dims, dim blocks and all dims, the
// row (I == 1) and column (I > 1) kernels, split long rows/columns, half dtypes, NaN and
// tie rules of the arg ops, int32 wrap-around, determinism, and gradients.
import { expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { compareCpuCuda, describeCuda } from './helpers.js';

type Fn = (x: Tensor) => Tensor | Record<string, Tensor>;
const OPS: [string, (d: number | number[] | undefined) => Fn][] = [
  ['sum', (d) => (x) => ng.sum(x, d)],
  ['mean', (d) => (x) => ng.mean(x, d)],
  ['var', (d) => (x) => ng.var(x, d)],
  ['var (correction 0)', (d) => (x) => ng.var(x, d, { correction: 0 })],
  ['std', (d) => (x) => ng.std(x, d)],
  ['amax', (d) => (x) => ng.amax(x, d)],
  ['amin', (d) => (x) => ng.amin(x, d)],
  ['logsumexp', (d) => (x) => ng.logsumexp(x, d ?? [0, 1, 2])],
];

describeCuda('CUDA reductions', () => {
  ng.manualSeed(11);
  const dimSets: (number | number[] | undefined)[] = [0, 1, 2, [0, 1], [1, 2], [0, 2], undefined];
  for (const [name, mk] of OPS) {
    it(`${name} matches the CPU over every dim set of [5, 127, 9] (float32, with grad)`, () => {
      for (const d of dimSets) {
        const x = ng.randn([5, 127, 9]).requiresGrad_(true);
        compareCpuCuda(mk(d), [x], { grad: name !== 'amax' && name !== 'amin' });
      }
    });
  }

  for (const dtype of ['bfloat16', 'float16'] as const) {
    it(`sum, mean, var, amax over rows and columns match the CPU in ${dtype}`, () => {
      for (const d of [0, 1, 2, undefined]) {
        const x = ng.randn([6, 300, 7]);
        compareCpuCuda((a) => ng.sum(a, d), [x], { dtype, atol: 0.5, rtol: 2e-2 });
        compareCpuCuda((a) => ng.mean(a, d), [x], { dtype, atol: 2e-2, rtol: 2e-2 });
        compareCpuCuda((a) => ng.var(a, d), [x], { dtype, atol: 3e-2, rtol: 3e-2 });
        compareCpuCuda((a) => ng.amax(a, d), [x], { dtype });
      }
    });
  }

  it('prod matches the CPU (values near 1 so the product stays finite)', () => {
    const x = ng.rand([4, 50, 3], { low: 0.9, high: 1.1 });
    for (const d of [0, 1, 2]) compareCpuCuda((a) => ng.prod(a, d), [x], { rtol: 1e-4 });
  });

  it('max/min with indices, argmax and argmin match the CPU exactly (float32)', () => {
    for (const shape of [[3, 1], [3, 5], [7, 1000], [2, 3000], [4, 33, 65]]) {
      const x = ng.randn(shape);
      for (let d = 0; d < shape.length; d++) {
        compareCpuCuda((a) => ng.max(a, d) as unknown as Record<string, Tensor>, [x]);
        compareCpuCuda((a) => ng.min(a, d) as unknown as Record<string, Tensor>, [x]);
        compareCpuCuda((a) => ng.argmax(a, d), [x]);
        compareCpuCuda((a) => ng.argmin(a, d), [x]);
      }
    }
  });

  it('arg ops: ties go to the first index and NaN wins (first NaN), in rows and columns', () => {
    const rows = ng.tensor([[1, 3, 3, 0], [NaN, 5, NaN, 9], [2, 2, 2, 2], [-1, NaN, 7, NaN]]);
    compareCpuCuda((a) => ng.argmax(a, 1), [rows]);
    compareCpuCuda((a) => ng.argmin(a, 1), [rows]);
    compareCpuCuda((a) => ng.argmax(a, 0), [rows]);
    compareCpuCuda((a) => ng.max(a, 1) as unknown as Record<string, Tensor>, [rows]);
    // a long row of equal values (the split-row path): the first index wins
    compareCpuCuda((a) => ng.argmax(a, 1), [ng.zeros([1, 1 << 20])]);
  });

  it('long rows and few outputs take the split path and stay accurate', () => {
    compareCpuCuda((a) => ng.sum(a, 1), [ng.randn([2, 300000])], { atol: 1e-2, rtol: 1e-5 });
    compareCpuCuda((a) => ng.sum(a), [ng.randn([3_000_001])], { atol: 5e-2, rtol: 1e-5 });
    compareCpuCuda((a) => ng.mean(a, 1), [ng.randn([1, 100003])], { atol: 1e-5 });
    compareCpuCuda((a) => ng.var(a, 1), [ng.randn([1, 100003]).add(1000)], { atol: 1e-3, rtol: 1e-4 });
    compareCpuCuda((a) => ng.argmax(a, 1), [ng.randn([3, 500000])]);
  });

  it('long columns (the bias-gradient shape [16384, 768] summed over dim 0) match the CPU', () => {
    compareCpuCuda((a) => ng.sum(a, 0), [ng.randn([16384, 768])], { atol: 1e-3, rtol: 1e-5 });
    compareCpuCuda((a) => ng.sum(a, 0), [ng.randn([20000, 3])], { atol: 1e-3, rtol: 1e-5 });
    compareCpuCuda((a) => ng.amax(a, 0), [ng.randn([9999, 33])]);
    compareCpuCuda((a) => ng.argmin(a, 0), [ng.randn([9999, 33])]);
  });

  it('non-contiguous inputs (transposed) reduce like the CPU', () => {
    const x = ng.randn([64, 130]);
    compareCpuCuda((a) => ng.sum(a.T, 1), [x], { atol: 1e-4 });
    compareCpuCuda((a) => ng.argmax(a.T, 0), [x]);
  });

  it('int32 sums wrap like int32 arithmetic and int32 max/argmax are exact', () => {
    const big = ng.full([4, 3], 2 ** 30, { dtype: 'int32' });
    compareCpuCuda((a) => ng.sum(a, 1), [big]);
    const x = ng.randint(-1000, 1000, [17, 513]);
    compareCpuCuda((a) => ng.sum(a, 1), [x]);
    compareCpuCuda((a) => ng.sum(a, 0), [x]);
    compareCpuCuda((a) => ng.amax(a, 1), [x]);
    compareCpuCuda((a) => ng.argmin(a, 0), [x]);
  });

  it('empty reductions: sum 0, prod 1, mean NaN; max over an empty dim throws', () => {
    const e = ng.zeros([3, 0]);
    compareCpuCuda((a) => ng.sum(a, 1), [e]);
    compareCpuCuda((a) => ng.prod(a, 1), [e]);
    compareCpuCuda((a) => ng.mean(a, 1), [e]);
    const g = e.to('cuda');
    expect(() => ng.max(g, 1)).toThrow(/nodegrad: max: cannot reduce over an empty dimension/);
  });

  it('results are bit-identical run to run', () => {
    const x = ng.randn([4, 1_000_003]).to('cuda');
    const a = Array.from(ng.sum(x, 1).dataSync() as Float32Array);
    for (let k = 0; k < 3; k++) expect(Array.from(ng.sum(x, 1).dataSync() as Float32Array)).toEqual(a);
    const c = ng.randn([50000, 40]).to('cuda');
    const b = Array.from(ng.var(c, 0).dataSync() as Float32Array);
    expect(Array.from(ng.var(c, 0).dataSync() as Float32Array)).toEqual(b);
  });
});
