import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { native } from '../../lib/native.js';
import {
  adaptiveAvgPool2d, avgPool2d, maxPool2d, maxPool2dWithIndices, type AvgPool2dOptions, type MaxPool2dOptions,
} from '../../lib/ops/pool.js';
import { AdaptiveAvgPool2d, AvgPool2d, Flatten, MaxPool2d } from '../../lib/nn/conv.js';
import { describeBackends, expectClose, lcg } from '../helpers.js';

type DT = 'float32' | 'float64';

function rand(shape: number[], seed: number, dtype: DT, device: string, requiresGrad = false): Tensor {
  const r = lcg(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return ng.tensor(Float64Array.from({ length: n }, () => r()), { shape, dtype, device: device as ng.Device, requiresGrad });
}

const two = (v: unknown, d: number): [number, number] =>
  v === undefined || v === null ? [d, d] : typeof v === 'number' ? [v, v] : [(v as number[])[0], (v as number[])[1]];

function outSize(inp: number, k: number, s: number, p: number, d: number, ceil: boolean): number {
  let o = Math.floor((inp + 2 * p - d * (k - 1) - 1 + (ceil ? s - 1 : 0)) / s) + 1;
  if (ceil && (o - 1) * s >= inp + p) o--;
  return o;
}

interface Win { k: [number, number]; s: [number, number]; p: [number, number]; d: [number, number]; OH: number; OW: number }
function win(shape: number[], o: MaxPool2dOptions | AvgPool2dOptions, dil?: unknown): Win {
  const k = two(o.kernelSize, 0), s = two(o.stride, 0), p = two(o.padding, 0), d = two(dil, 1);
  if (o.stride === undefined || o.stride === null) [s[0], s[1]] = k;
  const H = shape[shape.length - 2], W = shape[shape.length - 1];
  return { k, s, p, d, OH: outSize(H, k[0], s[0], p[0], d[0], !!o.ceilMode), OW: outSize(W, k[1], s[1], p[1], d[1], !!o.ceilMode) };
}

/** Max pooling loops: values and the flat index of the first maximum. */
function naiveMax(x: ArrayLike<number>, shape: number[], w: Win): { y: number[]; idx: number[] } {
  const H = shape[shape.length - 2], W = shape[shape.length - 1], planes = x.length / (H * W);
  const y: number[] = [], idx: number[] = [];
  for (let pl = 0; pl < planes; pl++) for (let oh = 0; oh < w.OH; oh++) for (let ow = 0; ow < w.OW; ow++) {
    let best = -Infinity, at = -1;
    for (let i = 0; i < w.k[0]; i++) for (let j = 0; j < w.k[1]; j++) {
      const ih = oh * w.s[0] - w.p[0] + i * w.d[0], iw = ow * w.s[1] - w.p[1] + j * w.d[1];
      if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
      const v = x[pl * H * W + ih * W + iw];
      if (at < 0 || v > best) [best, at] = [v, ih * W + iw];
    }
    y.push(best);
    idx.push(at);
  }
  return { y, idx };
}

/** Average pooling loops with PyTorch's divisor rules. */
function naiveAvg(x: ArrayLike<number>, shape: number[], w: Win, includePad: boolean, divisor?: number): number[] {
  const H = shape[shape.length - 2], W = shape[shape.length - 1], planes = x.length / (H * W);
  const y: number[] = [];
  for (let pl = 0; pl < planes; pl++) for (let oh = 0; oh < w.OH; oh++) for (let ow = 0; ow < w.OW; ow++) {
    const h0 = oh * w.s[0] - w.p[0], w0 = ow * w.s[1] - w.p[1];
    const h1 = Math.min(h0 + w.k[0], H + w.p[0]), w1 = Math.min(w0 + w.k[1], W + w.p[1]);
    let s = 0, n = 0;
    for (let ih = Math.max(h0, 0); ih < Math.min(h1, H); ih++) for (let iw = Math.max(w0, 0); iw < Math.min(w1, W); iw++) {
      s += x[pl * H * W + ih * W + iw];
      n++;
    }
    y.push(s / (divisor ?? (includePad ? (h1 - h0) * (w1 - w0) : n)));
  }
  return y;
}

const maxCases: [string, number[], MaxPool2dOptions][] = [
  ['2x2 stride 2', [2, 3, 6, 8], { kernelSize: 2 }],
  ['3x3 stride 2 padding 1', [2, 2, 7, 9], { kernelSize: 3, stride: 2, padding: 1 }],
  ['3x3 stride 1 (overlapping windows)', [1, 2, 5, 5], { kernelSize: 3, stride: 1 }],
  ['dilation 2 with padding', [2, 2, 9, 8], { kernelSize: 3, stride: 1, padding: 1, dilation: 2 }],
  ['ceilMode keeps a partial last window', [1, 3, 7, 6], { kernelSize: 2, stride: 2, ceilMode: true }],
  ['ceilMode with padding drops a window starting in the padding', [1, 1, 6, 6], { kernelSize: 3, stride: 2, padding: 1, ceilMode: true }],
  ['non-square kernel and stride', [2, 2, 8, 9], { kernelSize: [2, 3], stride: [1, 2], padding: [1, 0] }],
  ['unbatched [C, H, W]', [3, 5, 7], { kernelSize: 2, stride: 1 }],
];

const avgCases: [string, number[], AvgPool2dOptions][] = [
  ['2x2 stride 2', [2, 3, 6, 8], { kernelSize: 2 }],
  ['3x3 stride 2 padding 1, counting padding', [2, 2, 7, 9], { kernelSize: 3, stride: 2, padding: 1 }],
  ['3x3 stride 2 padding 1, not counting padding', [2, 2, 7, 9], { kernelSize: 3, stride: 2, padding: 1, countIncludePad: false }],
  ['ceilMode with padding', [1, 2, 6, 7], { kernelSize: 3, stride: 2, padding: 1, ceilMode: true }],
  ['ceilMode without padding, not counting padding', [1, 2, 5, 7], { kernelSize: 2, ceilMode: true, countIncludePad: false }],
  ['divisorOverride', [2, 1, 5, 5], { kernelSize: 3, stride: 1, padding: 1, divisorOverride: 4 }],
  ['non-square', [2, 2, 5, 8], { kernelSize: [3, 2], stride: [2, 3], padding: [1, 1] }],
  ['unbatched [C, H, W]', [2, 4, 4], { kernelSize: 2 }],
];

describeBackends('maxPool2d', (device) => {
  for (const dtype of ['float32', 'float64'] as const) {
    for (const [name, shape, o] of maxCases) {
      it(`forward values and indices match a loop: ${dtype}, ${name}`, () => {
        const x = rand(shape, 1, dtype, device);
        const { values, indices } = maxPool2dWithIndices(x, o);
        const w = win(shape, o, o.dilation);
        expect(values.shape).toEqual([...shape.slice(0, -2), w.OH, w.OW]);
        expect(indices.dtype).toBe('int32');
        const ref = naiveMax(x.dataSync(), shape, w);
        expectClose(values, ref.y, { atol: 0, rtol: 0 });
        expect(Array.from(indices.dataSync())).toEqual(ref.idx);
      });
    }
  }
  for (const [name, shape, o] of maxCases) {
    it(`backward matches finite differences: ${name}`, () => {
      ng.gradcheck((a) => maxPool2d(a, o), [rand(shape, 2, 'float64', device, true)]);
    });
  }

  it('accepts a bare kernel size and defaults stride to it', () => {
    const x = rand([1, 1, 4, 4], 3, 'float32', device);
    expectClose(maxPool2d(x, 2), maxPool2d(x, { kernelSize: 2, stride: 2 }), { atol: 0, rtol: 0 });
    expect(maxPool2d(x, [2, 1]).shape).toEqual([1, 1, 2, 4]);
  });

  it('sends the gradient of a tie to the first maximum and accumulates over overlapping windows', () => {
    const x = ng.tensor([[[[1, 5, 5], [5, 2, 0], [0, 0, 3]]]], { dtype: 'float64', requiresGrad: true });
    const y = maxPool2d(x, { kernelSize: 2, stride: 1 });
    expect(y.tolist()).toEqual([[[[5, 5], [5, 3]]]]);
    y.sum().backward();
    // windows at (0,0) and (0,1) both pick (0,1); (1,0) picks (1,0); (1,1) picks (2,2)
    expect(x.grad!.tolist()).toEqual([[[[0, 2, 0], [1, 0, 0], [0, 0, 1]]]]);
  });

  it('never picks padding, even when every input is negative, and propagates NaN', () => {
    const x = ng.tensor([[[[-3, -2], [-5, -4]]]]);
    expect(maxPool2d(x, { kernelSize: 3, stride: 1, padding: 1 }).tolist()).toEqual([[[[-2, -2], [-2, -2]]]]);
    for (const dtype of ['float32', 'float64'] as const) {
      const nan = ng.tensor([[[[1, NaN], [3, 4]]]], { dtype });
      expect(Number.isNaN(maxPool2d(nan, 2).item())).toBe(true);
      // as in PyTorch, a later NaN takes over the index
      const two = maxPool2dWithIndices(ng.tensor([[[[NaN, 5], [NaN, 2]]]], { dtype }), { kernelSize: 2 });
      expect(two.indices.tolist()).toEqual([[[[2]]]]);
    }
  });

  it('rejects bad options and shapes', () => {
    const x = rand([1, 2, 5, 5], 4, 'float32', device);
    expect(() => maxPool2d(x, { kernelSize: 0 })).toThrow(/nodegrad: maxPool2d: kernelSize must be an integer >= 1/);
    expect(() => maxPool2d(x, { kernelSize: 2, stride: 0 })).toThrow(/nodegrad: maxPool2d: stride must be/);
    expect(() => maxPool2d(x, { kernelSize: 3, padding: 2 })).toThrow(/nodegrad: maxPool2d: padding must be at most half the kernel size/);
    expect(() => maxPool2d(x, { kernelSize: 6 })).toThrow(/nodegrad: maxPool2d: the output would be empty/);
    expect(() => maxPool2d(rand([5, 5], 1, 'float32', device), 2)).toThrow(/nodegrad: maxPool2d: input must be 3-D .* or 4-D/);
    expect(() => maxPool2d(ng.zeros([1, 1, 4, 4], { dtype: 'int32' }), 2)).toThrow(/nodegrad: maxPool2d: input must be a floating-point tensor/);
  });

  it('native backward rejects saved indices outside their plane', () => {
    const geom = [1, 2, 2, 1, 1, 2, 2, 2, 2, 0, 0, 1, 1];
    const dx = new Float32Array(4);
    expect(() => native.maxPool2dBackward(new Float32Array([1]), new Int32Array([4]), dx, geom)).toThrow(/nodegrad: maxPool2d backward: a saved index/);
    expect(() => native.maxPool2dBackward(new Float32Array([1]), new Int32Array([3]), dx, geom)).not.toThrow();
    expect(Array.from(dx)).toEqual([0, 0, 0, 1]);
    expect(() => native.maxPool2dForward(new Float32Array(3), new Float32Array(1), new Int32Array(1), geom)).toThrow(/nodegrad: maxPool2d/);
  });
});

describeBackends('avgPool2d', (device) => {
  for (const dtype of ['float32', 'float64'] as const) {
    for (const [name, shape, o] of avgCases) {
      it(`forward matches a loop: ${dtype}, ${name}`, () => {
        const x = rand(shape, 5, dtype, device);
        const y = avgPool2d(x, o);
        const w = win(shape, o);
        expect(y.shape).toEqual([...shape.slice(0, -2), w.OH, w.OW]);
        const tol = dtype === 'float32' ? { atol: 1e-6, rtol: 1e-5 } : { atol: 1e-14, rtol: 1e-12 };
        expectClose(y, naiveAvg(x.dataSync(), shape, w, o.countIncludePad ?? true, o.divisorOverride ?? undefined), tol);
      });
    }
  }
  for (const [name, shape, o] of avgCases) {
    it(`backward matches finite differences: ${name}`, () => {
      ng.gradcheck((a) => avgPool2d(a, o), [rand(shape, 6, 'float64', device, true)]);
    });
  }

  it('rejects a zero or fractional divisorOverride and too much padding', () => {
    const x = rand([1, 1, 4, 4], 7, 'float32', device);
    expect(() => avgPool2d(x, { kernelSize: 2, divisorOverride: 0 })).toThrow(/nodegrad: avgPool2d: divisorOverride must be a positive integer/);
    expect(() => avgPool2d(x, { kernelSize: 2, divisorOverride: 1.5 })).toThrow(/nodegrad: avgPool2d: divisorOverride/);
    expect(() => avgPool2d(x, { kernelSize: 2, padding: 2 })).toThrow(/nodegrad: avgPool2d: padding must be at most half/);
  });
});

describeBackends('adaptiveAvgPool2d', (device) => {
  function naiveAdaptive(x: ArrayLike<number>, shape: number[], OH: number, OW: number): number[] {
    const H = shape[shape.length - 2], W = shape[shape.length - 1], planes = x.length / (H * W);
    const y: number[] = [];
    for (let pl = 0; pl < planes; pl++) for (let i = 0; i < OH; i++) for (let j = 0; j < OW; j++) {
      const h0 = Math.floor(i * H / OH), h1 = Math.ceil((i + 1) * H / OH), w0 = Math.floor(j * W / OW), w1 = Math.ceil((j + 1) * W / OW);
      let s = 0;
      for (let a = h0; a < h1; a++) for (let b = w0; b < w1; b++) s += x[pl * H * W + a * W + b];
      y.push(s / ((h1 - h0) * (w1 - w0)));
    }
    return y;
  }
  const cases: [string, number[], number | (number | null)[], number, number][] = [
    ['7x7 to 3x3 (overlapping cells)', [2, 3, 7, 7], 3, 3, 3],
    ['global average (1x1)', [2, 4, 5, 6], 1, 1, 1],
    ['upsampling 3x2 to 5x4', [1, 2, 3, 2], [5, 4], 5, 4],
    ['null keeps the input width', [2, 2, 6, 5], [2, null], 2, 5],
  ];
  for (const [name, shape, size, OH, OW] of cases) {
    it(`forward matches a loop and backward finite differences: ${name}`, () => {
      const x = rand(shape, 8, 'float64', device, true);
      const y = adaptiveAvgPool2d(x, size);
      expect(y.shape).toEqual([...shape.slice(0, -2), OH, OW]);
      expectClose(y, naiveAdaptive(x.dataSync(), shape, OH, OW), { atol: 1e-14, rtol: 1e-12 });
      ng.gradcheck((a) => adaptiveAvgPool2d(a, size), [x]);
    });
  }
  it('rejects bad output sizes', () => {
    const x = rand([1, 1, 4, 4], 9, 'float32', device);
    expect(() => adaptiveAvgPool2d(x, 0)).toThrow(/nodegrad: adaptiveAvgPool2d: outputSize must be a positive integer/);
    expect(() => adaptiveAvgPool2d(x, [2, 2, 2] as number[])).toThrow(/nodegrad: adaptiveAvgPool2d: outputSize/);
  });
});

describe('pooling modules and Flatten', () => {
  it('MaxPool2d, AvgPool2d and AdaptiveAvgPool2d apply their ops with their options', () => {
    const x = rand([2, 3, 8, 8], 10, 'float32', 'cpu');
    expectClose(new MaxPool2d(3, { stride: 2, padding: 1 }).forward(x), maxPool2d(x, { kernelSize: 3, stride: 2, padding: 1 }), { atol: 0, rtol: 0 });
    expectClose(new AvgPool2d(2, { countIncludePad: false }).forward(x), avgPool2d(x, 2), { atol: 0, rtol: 0 });
    expect(new AdaptiveAvgPool2d([1, 1]).forward(x).shape).toEqual([2, 3, 1, 1]);
    expect(new MaxPool2d(2).parameters()).toEqual([]);
  });

  it('Flatten keeps the batch dim by default and takes a dim range', () => {
    const x = rand([2, 3, 4, 5], 11, 'float32', 'cpu', true);
    const y = new Flatten().forward(x);
    expect(y.shape).toEqual([2, 60]);
    expect(new Flatten(0, 1).forward(x).shape).toEqual([6, 4, 5]);
    expect(new Flatten(2).forward(x).shape).toEqual([2, 3, 20]);
    y.sum().backward();
    expect(x.grad!.shape).toEqual([2, 3, 4, 5]);
    expect(() => new Flatten(3, 1).forward(x)).toThrow(/nodegrad: flatten/);
  });
});
