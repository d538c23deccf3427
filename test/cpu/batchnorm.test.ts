import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { batchNorm } from '../../lib/ops/batchnorm.js';
import { BatchNorm1d, BatchNorm2d } from '../../lib/nn/conv.js';
import { describeBackends, expectClose, lcg } from '../helpers.js';

type DT = 'float32' | 'float64';

function rand(shape: number[], seed: number, dtype: DT, device: string, requiresGrad = false, scale = 1, shift = 0): Tensor {
  const r = lcg(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return ng.tensor(Float64Array.from({ length: n }, () => r() * scale + shift), { shape, dtype, device: device as ng.Device, requiresGrad });
}

/** Per-channel statistics of [N, C, ...] by loops: mean, biased and unbiased variance. */
function stats(x: ArrayLike<number>, shape: number[]): { mean: number[]; biased: number[]; unbiased: number[] } {
  const N = shape[0], C = shape[1], inner = shape.slice(2).reduce((a, b) => a * b, 1), cnt = N * inner;
  const mean: number[] = [], biased: number[] = [], unbiased: number[] = [];
  for (let c = 0; c < C; c++) {
    let s = 0;
    for (let n = 0; n < N; n++) for (let i = 0; i < inner; i++) s += x[(n * C + c) * inner + i];
    const m = s / cnt;
    let v = 0;
    for (let n = 0; n < N; n++) for (let i = 0; i < inner; i++) v += (x[(n * C + c) * inner + i] - m) ** 2;
    mean.push(m);
    biased.push(v / cnt);
    unbiased.push(v / (cnt - 1));
  }
  return { mean, biased, unbiased };
}

function normalise(x: ArrayLike<number>, shape: number[], mean: number[], v: number[], w: number[] | null, b: number[] | null, eps: number): number[] {
  const C = shape[1], inner = shape.slice(2).reduce((a, c) => a * c, 1);
  return Array.from(x, (val, k) => {
    const c = Math.floor(k / inner) % C;
    return (val - mean[c]) / Math.sqrt(v[c] + eps) * (w ? w[c] : 1) + (b ? b[c] : 0);
  });
}

describeBackends('batchNorm', (device) => {
  for (const dtype of ['float32', 'float64'] as const) {
    for (const shape of [[6, 3], [4, 3, 5], [3, 2, 4, 5], [2, 5, 1, 3]]) {
      it(`training normalises with batch statistics and moves the running ones: ${dtype} [${shape}]`, () => {
        const x = rand(shape, 1, dtype, device, false, 2, 0.5);
        const C = shape[1];
        const w = rand([C], 2, dtype, device), b = rand([C], 3, dtype, device);
        const rm = rand([C], 4, dtype, device), rv = rand([C], 5, dtype, device, false, 0.2, 1);
        const rm0 = Array.from(rm.dataSync()), rv0 = Array.from(rv.dataSync());
        const y = batchNorm(x, rm, rv, w, b, { training: true, momentum: 0.3, eps: 1e-3 });
        const s = stats(x.dataSync(), shape);
        const tol = dtype === 'float32' ? { atol: 1e-5, rtol: 1e-4 } : { atol: 1e-12, rtol: 1e-10 };
        expectClose(y, normalise(x.dataSync(), shape, s.mean, s.biased, Array.from(w.dataSync()), Array.from(b.dataSync()), 1e-3), tol);
        expectClose(rm, rm0.map((r, c) => 0.7 * r + 0.3 * s.mean[c]), tol);
        expectClose(rv, rv0.map((r, c) => 0.7 * r + 0.3 * s.unbiased[c]), tol);
      });
    }
    it(`evaluation normalises with the running statistics and leaves them alone: ${dtype}`, () => {
      const shape = [3, 4, 2, 3];
      const x = rand(shape, 6, dtype, device);
      const rm = rand([4], 7, dtype, device), rv = rand([4], 8, dtype, device, false, 0.3, 1);
      const w = rand([4], 9, dtype, device), b = rand([4], 10, dtype, device);
      const rm0 = Array.from(rm.dataSync()), rv0 = Array.from(rv.dataSync());
      const y = batchNorm(x, rm, rv, w, b, { eps: 1e-5 });
      expectClose(y, normalise(x.dataSync(), shape, rm0, rv0, Array.from(w.dataSync()), Array.from(b.dataSync()), 1e-5),
        dtype === 'float32' ? { atol: 1e-5, rtol: 1e-4 } : { atol: 1e-12, rtol: 1e-10 });
      expect(Array.from(rm.dataSync())).toEqual(rm0);
      expect(Array.from(rv.dataSync())).toEqual(rv0);
    });
  }

  for (const shape of [[4, 3], [3, 2, 2, 3]]) {
    it(`training backward through the batch statistics matches finite differences [${shape}]`, () => {
      const C = shape[1];
      const x = rand(shape, 11, 'float64', device, true, 2), w = rand([C], 12, 'float64', device, true, 1, 1);
      const b = rand([C], 13, 'float64', device, true);
      ng.gradcheck((a, c, d) => batchNorm(a, null, null, c, d, { training: true }), [x, w, b]);
    });
  }

  it('training gradients in float32 stay accurate for inputs far from zero mean', () => {
    const shape = [8, 3, 4, 4];
    // float64 reference on the same (float32-rounded) values
    const x32 = rand(shape, 40, 'float32', device, true, 1, 1e4), w32 = rand([3], 41, 'float32', device, true, 1, 1);
    const x64 = x32.detach().double().requiresGrad_(), w64 = w32.detach().double().requiresGrad_();
    const gy = rand(shape, 42, 'float64', device);
    ng.sum(ng.mul(batchNorm(x64, null, null, w64, null, { training: true }), gy)).backward();
    ng.sum(ng.mul(batchNorm(x32, null, null, w32, null, { training: true }), gy.float())).backward();
    expectClose(x32.grad!, x64.grad!, { atol: 1e-3, rtol: 1e-3 });
    expectClose(w32.grad!, w64.grad!, { atol: 1e-3, rtol: 1e-3 });
  });

  it('evaluation backward matches finite differences', () => {
    const x = rand([3, 2, 2, 2], 14, 'float64', device, true), w = rand([2], 15, 'float64', device, true);
    const b = rand([2], 16, 'float64', device, true);
    const rm = rand([2], 17, 'float64', device), rv = rand([2], 18, 'float64', device, false, 0.2, 1);
    ng.gradcheck((a, c, d) => batchNorm(a, rm, rv, c, d), [x, w, b]);
  });

  it('running statistics do not take part in autograd', () => {
    const x = rand([4, 2], 19, 'float32', device, true);
    const rm = ng.zeros([2]), rv = ng.ones([2]);
    const y = batchNorm(x, rm, rv, null, null, { training: true });
    y.sum().backward();
    expect(rm.requiresGrad).toBe(false);
    expect(rm.gradFn).toBeNull();
    expect(x.grad!.shape).toEqual([4, 2]);
  });

  it('rejects bad shapes and options', () => {
    const x = rand([4, 3, 2, 2], 20, 'float32', device);
    const rm = ng.zeros([3]), rv = ng.ones([3]);
    expect(() => batchNorm(x, ng.zeros([4]), rv)).toThrow(/nodegrad: batchNorm: runningMean must have shape \[3\]/);
    expect(() => batchNorm(x, rm, rv, ng.ones([2]))).toThrow(/nodegrad: batchNorm: weight must have shape \[3\]/);
    expect(() => batchNorm(x, rm, null)).toThrow(/nodegrad: batchNorm: runningMean and runningVar must be given together/);
    expect(() => batchNorm(x, null, null)).toThrow(/nodegrad: batchNorm: evaluation mode needs runningMean/);
    expect(() => batchNorm(ng.ones([3]), null, null, null, null, { training: true })).toThrow(/nodegrad: batchNorm: input must have at least 2 dims/);
    expect(() => batchNorm(ng.ones([1, 3]), null, null, null, null, { training: true })).toThrow(/nodegrad: batchNorm: expected more than 1 value per channel/);
    expect(() => batchNorm(x, rm, rv, null, null, { training: true, momentum: 2 })).toThrow(/nodegrad: batchNorm: momentum must be a number in \[0, 1\]/);
  });
});

describe('nn.BatchNorm2d', () => {
  it('keeps weight and bias as parameters and the running statistics as buffers in the state dict', () => {
    const bn = new BatchNorm2d(3);
    expect(bn.namedParameters().map(([k]) => k)).toEqual(['weight', 'bias']);
    expect(Object.keys(bn.stateDict())).toEqual(['weight', 'bias', 'runningMean', 'runningVar', 'numBatchesTracked']);
    expect(bn.runningMean!.tolist()).toEqual([0, 0, 0]);
    expect(bn.runningVar!.tolist()).toEqual([1, 1, 1]);
    expect(bn.numBatchesTracked!.dtype).toBe('int32');
    expect(bn.numBatchesTracked!.item()).toBe(0);
  });

  it('training mode uses batch statistics and counts batches; eval mode uses the running statistics', () => {
    const bn = new BatchNorm2d(2, { momentum: 0.5 });
    const x1 = rand([3, 2, 2, 2], 21, 'float64', 'cpu', false, 2, 1).float();
    const x2 = rand([3, 2, 2, 2], 22, 'float64', 'cpu', false, 1, -1).float();
    const y1 = bn.forward(x1);
    const s1 = stats(x1.dataSync(), [3, 2, 2, 2]);
    expectClose(y1, normalise(x1.dataSync(), [3, 2, 2, 2], s1.mean, s1.biased, null, null, 1e-5), { atol: 1e-5, rtol: 1e-4 });
    bn.forward(x2);
    const s2 = stats(x2.dataSync(), [3, 2, 2, 2]);
    const rm = [0, 1].map((c) => 0.5 * (0.5 * 0 + 0.5 * s1.mean[c]) + 0.5 * s2.mean[c]);
    const rv = [0, 1].map((c) => 0.5 * (0.5 * 1 + 0.5 * s1.unbiased[c]) + 0.5 * s2.unbiased[c]);
    expectClose(bn.runningMean!, rm, { atol: 1e-6, rtol: 1e-5 });
    expectClose(bn.runningVar!, rv, { atol: 1e-6, rtol: 1e-5 });
    expect(bn.numBatchesTracked!.item()).toBe(2);
    bn.eval();
    const y = bn.forward(x1);
    expectClose(y, normalise(x1.dataSync(), [3, 2, 2, 2], rm, rv, null, null, 1e-5), { atol: 1e-5, rtol: 1e-4 });
    expect(bn.numBatchesTracked!.item()).toBe(2);
  });

  it('momentum null keeps a cumulative average of the batch statistics', () => {
    const bn = new BatchNorm1d(2, { momentum: null });
    const xs = [rand([4, 2], 23, 'float32', 'cpu'), rand([4, 2], 24, 'float32', 'cpu'), rand([4, 2], 25, 'float32', 'cpu')];
    for (const x of xs) bn.forward(x);
    const means = xs.map((x) => stats(x.dataSync(), [4, 2]).mean);
    expectClose(bn.runningMean!, [0, 1].map((c) => (means[0][c] + means[1][c] + means[2][c]) / 3), { atol: 1e-6, rtol: 1e-5 });
  });

  it('without affine or running statistics it has no parameters and always uses batch statistics', () => {
    const bn = new BatchNorm2d(2, { affine: false, trackRunningStats: false });
    expect(bn.parameters()).toEqual([]);
    expect(Object.keys(bn.stateDict())).toEqual([]);
    bn.eval();
    const x = rand([2, 2, 3, 3], 26, 'float32', 'cpu');
    const s = stats(x.dataSync(), [2, 2, 3, 3]);
    expectClose(bn.forward(x), normalise(x.dataSync(), [2, 2, 3, 3], s.mean, s.biased, null, null, 1e-5), { atol: 1e-5, rtol: 1e-4 });
  });

  it('trains its weight and bias and round-trips through a state dict', () => {
    const bn = new BatchNorm2d(3);
    const x = rand([2, 3, 2, 2], 27, 'float32', 'cpu');
    bn.forward(x).mul(rand([2, 3, 2, 2], 28, 'float32', 'cpu')).sum().backward();
    expect(bn.weight!.grad!.shape).toEqual([3]);
    expect(bn.bias!.grad!.shape).toEqual([3]);
    const copy = new BatchNorm2d(3);
    copy.loadStateDict(bn.stateDict());
    expectClose(copy.runningMean!, bn.runningMean!, { atol: 0, rtol: 0 });
    expect(copy.numBatchesTracked!.item()).toBe(1);
  });

  it('rejects inputs of the wrong rank', () => {
    expect(() => new BatchNorm2d(3).forward(ng.ones([2, 3, 4]))).toThrow(/nodegrad: BatchNorm2d: expected a 4-D input/);
    expect(() => new BatchNorm1d(3).forward(ng.ones([2, 3, 4, 4]))).toThrow(/nodegrad: BatchNorm1d: expected a 2-D or 3-D input/);
    expect(() => new BatchNorm2d(0)).toThrow(/nodegrad: BatchNorm: numFeatures must be a positive integer/);
  });
});
