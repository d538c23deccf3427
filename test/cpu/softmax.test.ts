import { expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { softmax, logSoftmax } from '../../lib/ops/softmax.js';
import { describeBackends, expectClose, lcg } from '../helpers.js';

/** Naive float64 softmax / logSoftmax along dim of a row-major array. */
function reference(data: ArrayLike<number>, shape: number[], dim: number, log: boolean): number[] {
  const C = shape[dim];
  const I = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
  const M = shape.slice(0, dim).reduce((a, b) => a * b, 1);
  const out = new Array<number>(data.length);
  for (let m = 0; m < M; m++) {
    for (let i = 0; i < I; i++) {
      const at = (c: number): number => m * C * I + c * I + i;
      let mx = -Infinity;
      for (let c = 0; c < C; c++) mx = Math.max(mx, data[at(c)]);
      let s = 0;
      for (let c = 0; c < C; c++) s += Math.exp(data[at(c)] - mx);
      for (let c = 0; c < C; c++) {
        out[at(c)] = log ? data[at(c)] - mx - Math.log(s) : Math.exp(data[at(c)] - mx) / s;
      }
    }
  }
  return out;
}

function randomData(n: number, seed: number, scale = 3): number[] {
  const r = lcg(seed);
  return Array.from({ length: n }, () => r() * scale);
}

describeBackends('softmax', (device) => {
  const cases: [number[], number][] = [
    [[7], 0],
    [[3, 1], -1],
    [[5, 17], 1],
    [[2, 3, 33], -1],
    [[4, 6, 5], 1],
    [[3, 300], 0], // 300 columns: more than one column block
    [[2, 5, 3, 7], 0],
  ];
  for (const dtype of ['float32', 'float64'] as const) {
    for (const [shape, dim] of cases) {
      it(`softmax and logSoftmax match a float64 loop for ${dtype} shape [${shape}] dim ${dim}`, () => {
        const n = shape.reduce((a, b) => a * b, 1);
        const data = randomData(n, n + dim + 7);
        const x = ng.tensor(Float64Array.from(data), { shape, dtype, device });
        const d = dim < 0 ? dim + shape.length : dim;
        const tol = dtype === 'float32' ? { atol: 1e-6, rtol: 1e-5 } : { atol: 1e-13, rtol: 1e-12 };
        const xd = Array.from(x.dataSync() as ArrayLike<number>);
        const y = softmax(x, dim);
        expect(y.shape).toEqual(shape);
        expect(y.dtype).toBe(dtype);
        expect(y.isContiguous()).toBe(true);
        expectClose(y, reference(xd, shape, d, false), tol);
        expectClose(logSoftmax(x, dim), reference(xd, shape, d, true), tol);
      });
    }
  }

  it('float32 softmax over a 50257-wide row is accurate and sums to 1', () => {
    const data = randomData(2 * 50257, 3, 10);
    const x = ng.tensor(Float32Array.from(data), { shape: [2, 50257], device });
    const xd = Array.from(x.dataSync() as ArrayLike<number>);
    const y = softmax(x, -1);
    expectClose(y, reference(xd, [2, 50257], 1, false), { atol: 1e-9, rtol: 2e-5 });
    expectClose(y.sum(-1), [1, 1], { atol: 1e-5 });
    expectClose(logSoftmax(x, -1), reference(xd, [2, 50257], 1, true), { atol: 1e-5, rtol: 1e-5 });
  });

  it('is stable for large inputs and gives 0 probability to -inf', () => {
    const x = ng.tensor([[1000, 1001, 1002], [-Infinity, 0, 0], [-1e30, 0, 1e30]], { device });
    expectClose(softmax(x, 1), [...reference([1000, 1001, 1002], [3], 0, false), 0, 0.5, 0.5, 0, 0, 1]);
    const ls = logSoftmax(x, 1).dataSync();
    expect(ls[3]).toBe(-Infinity);
    expectClose(Array.from(ls).slice(0, 3), reference([1000, 1001, 1002], [3], 0, true));
  });

  it('gives NaN for a row of all -inf, like PyTorch', () => {
    const x = ng.tensor([[-Infinity, -Infinity], [0, 1]], { device });
    const y = Array.from(softmax(x, -1).dataSync());
    expect(y.slice(0, 2).every(Number.isNaN)).toBe(true);
    expectClose(y.slice(2), reference([0, 1], [2], 0, false));
    const l = Array.from(logSoftmax(x, -1).dataSync());
    expect(l.slice(0, 2).every(Number.isNaN)).toBe(true);
    const col = Array.from(softmax(ng.tensor([[-Infinity, 0], [-Infinity, 1]], { device }), 0).dataSync());
    expect(Number.isNaN(col[0]) && Number.isNaN(col[2])).toBe(true);
  });

  it('propagates NaN to its whole row', () => {
    const y = Array.from(softmax(ng.tensor([[0, NaN, 1], [0, 0, 0]], { device }), 1).dataSync());
    expect(y.slice(0, 3).every(Number.isNaN)).toBe(true);
    expectClose(y.slice(3), [1 / 3, 1 / 3, 1 / 3]);
  });

  it('reads non-contiguous inputs and works as a Tensor method', () => {
    const data = randomData(24, 5);
    const base = ng.tensor(Float64Array.from(data), { shape: [4, 6], dtype: 'float64', device });
    const t = base.transpose(0, 1); // [6, 4]
    const expected = reference(Array.from(t.contiguous().dataSync()), [6, 4], 1, false);
    expectClose(softmax(t, 1), expected, { atol: 1e-14 });
    expectClose(t.softmax(-1), expected, { atol: 1e-14 });
    expectClose(t.logSoftmax(0), reference(Array.from(t.contiguous().dataSync()), [6, 4], 0, true), { atol: 1e-14 });
  });

  it('handles scalars and empty tensors', () => {
    expect(softmax(ng.tensor(3, { device }), 0).item()).toBe(1);
    expect(logSoftmax(ng.tensor(3, { device }), -1).item()).toBe(0);
    expect(softmax(ng.zeros([0, 4], { device }), 1).shape).toEqual([0, 4]);
    expect(softmax(ng.zeros([3, 0], { device }), 1).shape).toEqual([3, 0]);
  });

  for (const log of [false, true]) {
    const name = log ? 'logSoftmax' : 'softmax';
    const fn = log ? logSoftmax : softmax;
    for (const dim of [0, 1, -1]) {
      it(`${name} backward along dim ${dim} matches finite differences`, () => {
        const x = ng.tensor(Float64Array.from(randomData(60, 11 + dim)), { shape: [3, 4, 5], dtype: 'float64', device, requiresGrad: true });
        ng.gradcheck((a) => fn(a, dim), [x]);
      });
    }

    it(`${name} float32 backward agrees with float64`, () => {
      const data = Float64Array.from(randomData(3 * 37, 4));
      const g = Float64Array.from(randomData(3 * 37, 9));
      const grads = (['float32', 'float64'] as const).map((dtype) => {
        const x = ng.tensor(data, { shape: [3, 37], dtype, device, requiresGrad: true });
        fn(x, 1).backward(ng.tensor(g, { shape: [3, 37], dtype, device }));
        return x.grad!;
      });
      expectClose(grads[0], grads[1], { atol: 1e-6, rtol: 1e-5 });
    });

    it(`${name} backward through a non-contiguous output gradient`, () => {
      const x = ng.tensor(Float64Array.from(randomData(12, 2)), { shape: [3, 4], dtype: 'float64', device, requiresGrad: true });
      // sum() backward hands softmax an expanded (stride 0) gradient
      fn(x, 1).sum().backward();
      const y = Array.from(fn(x.detach(), 1).dataSync());
      const expected = log ? y.map((v) => 1 - 4 * Math.exp(v)) : y.map(() => 0);
      expectClose(x.grad!, expected, { atol: 1e-12 });
    });
  }

  it('rejects bad arguments with clear errors', () => {
    const x = ng.ones([2, 3], { device });
    expect(() => softmax(x, 2)).toThrow(/nodegrad: softmax: dim 2 is out of range/);
    expect(() => logSoftmax(x, -3)).toThrow(/nodegrad: logSoftmax: dim -3 is out of range/);
    expect(() => softmax(x, 0.5)).toThrow(/nodegrad: softmax: dim must be an integer/);
    expect(() => softmax(ng.ones([2], { dtype: 'int32', device }), 0)).toThrow(/nodegrad: softmax: input must be a floating-point tensor/);
    expect(() => softmax(null as unknown as ng.Tensor, 0)).toThrow(/nodegrad: softmax:/);
  });
});
