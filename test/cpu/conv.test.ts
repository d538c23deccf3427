import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { conv2d, type Conv2dOptions } from '../../lib/ops/conv.js';
import { Conv2d, Flatten, MaxPool2d } from '../../lib/nn/conv.js';
import { describeBackends, expectClose, lcg } from '../helpers.js';

type DT = 'float32' | 'float64';

function rand(shape: number[], seed: number, dtype: DT, device: string, requiresGrad = false): Tensor {
  const r = lcg(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return ng.tensor(Float64Array.from({ length: n }, () => r()), { shape, dtype, device: device as ng.Device, requiresGrad });
}

const two = (v: number | number[] | undefined, d: number): [number, number] =>
  v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : [v[0], v[1]];

interface Geo { sh: number; sw: number; pt: number; pl: number; dh: number; dw: number; G: number; OH: number; OW: number }

/** Geometry computed independently of the library (PyTorch's formulas). */
function geo(xs: number[], ws: number[], o: Conv2dOptions): Geo {
  const [sh, sw] = two(o.stride as number | number[] | undefined, 1), [dh, dw] = two(o.dilation as number | number[] | undefined, 1);
  const ekh = dh * (ws[2] - 1) + 1, ekw = dw * (ws[3] - 1) + 1;
  let pt: number, pl: number, totH: number, totW: number;
  if (o.padding === 'same') [totH, totW, pt, pl] = [ekh - 1, ekw - 1, Math.floor((ekh - 1) / 2), Math.floor((ekw - 1) / 2)];
  else {
    const [ph, pw] = o.padding === 'valid' ? [0, 0] : two(o.padding as number | number[] | undefined, 0);
    [totH, totW, pt, pl] = [2 * ph, 2 * pw, ph, pw];
  }
  return { sh, sw, pt, pl, dh, dw, G: o.groups ?? 1, OH: Math.floor((xs[2] + totH - ekh) / sh) + 1, OW: Math.floor((xs[3] + totW - ekw) / sw) + 1 };
}

/** Direct convolution in float64 loops. */
function naiveConv(x: ArrayLike<number>, xs: number[], w: ArrayLike<number>, ws: number[], b: ArrayLike<number> | null, g: Geo): number[] {
  const [N, C, H, W] = xs, [O, Cg, kh, kw] = ws, Og = O / g.G;
  const y: number[] = [];
  for (let n = 0; n < N; n++) for (let o = 0; o < O; o++) {
    const grp = Math.floor(o / Og);
    for (let oh = 0; oh < g.OH; oh++) for (let ow = 0; ow < g.OW; ow++) {
      let s = b ? b[o] : 0;
      for (let c = 0; c < Cg; c++) for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
        const ih = oh * g.sh - g.pt + i * g.dh, iw = ow * g.sw - g.pl + j * g.dw;
        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
        s += x[((n * C + grp * Cg + c) * H + ih) * W + iw] * w[((o * Cg + c) * kh + i) * kw + j];
      }
      y.push(s);
    }
  }
  return y;
}

/** Gradients of sum(y * gy) by the same loops: dx, dw, db. */
function naiveGrads(x: ArrayLike<number>, xs: number[], w: ArrayLike<number>, ws: number[], gy: ArrayLike<number>, g: Geo) {
  const [N, C, H, W] = xs, [O, Cg, kh, kw] = ws, Og = O / g.G;
  const dx = new Float64Array(N * C * H * W), dw = new Float64Array(O * Cg * kh * kw), db = new Float64Array(O);
  let k = 0;
  for (let n = 0; n < N; n++) for (let o = 0; o < O; o++) {
    const grp = Math.floor(o / Og);
    for (let oh = 0; oh < g.OH; oh++) for (let ow = 0; ow < g.OW; ow++, k++) {
      db[o] += gy[k];
      for (let c = 0; c < Cg; c++) for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
        const ih = oh * g.sh - g.pt + i * g.dh, iw = ow * g.sw - g.pl + j * g.dw;
        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
        const xi = ((n * C + grp * Cg + c) * H + ih) * W + iw, wi = ((o * Cg + c) * kh + i) * kw + j;
        dx[xi] += gy[k] * w[wi];
        dw[wi] += gy[k] * x[xi];
      }
    }
  }
  return { dx, dw, db };
}

const cases: [string, number[], number[], Conv2dOptions][] = [
  ['3x3, no padding', [2, 3, 7, 7], [4, 3, 3, 3], {}],
  ['stride 2, padding 1', [3, 4, 9, 8], [5, 4, 3, 3], { stride: 2, padding: 1 }],
  ["padding 'same', odd kernel", [2, 3, 6, 7], [4, 3, 3, 3], { padding: 'same' }],
  ["padding 'same', even kernel (asymmetric)", [1, 2, 5, 6], [3, 2, 4, 2], { padding: 'same' }],
  ["padding 'same' with dilation 2", [2, 2, 7, 7], [2, 2, 3, 3], { padding: 'same', dilation: 2 }],
  ["padding 'valid'", [2, 2, 6, 5], [3, 2, 3, 2], { padding: 'valid' }],
  ['dilation 2, padding 1', [2, 3, 9, 9], [4, 3, 3, 3], { dilation: 2, padding: 1 }],
  ['groups 2', [2, 4, 6, 6], [6, 2, 3, 3], { groups: 2 }],
  ['depthwise', [3, 4, 7, 5], [4, 1, 3, 3], { groups: 4, padding: 1 }],
  ['depthwise with multiplier 2', [2, 3, 5, 5], [6, 1, 3, 3], { groups: 3, stride: 2 }],
  ['1x1 (pointwise)', [3, 5, 4, 6], [7, 5, 1, 1], {}],
  ['1x1 with groups', [2, 6, 3, 5], [4, 3, 1, 1], { groups: 2 }],
  ['1x1 stride 2', [2, 3, 5, 5], [4, 3, 1, 1], { stride: 2 }],
  ['1x1 with padding', [1, 2, 3, 3], [2, 2, 1, 1], { padding: 1 }],
  ['non-square kernel, stride and padding pairs', [2, 3, 8, 7], [4, 3, 2, 5], { stride: [2, 1], padding: [1, 2] }],
  ['odd sizes with mixed stride, dilation and padding', [3, 3, 11, 13], [5, 3, 5, 3], { stride: [3, 2], dilation: [1, 2], padding: [2, 1] }],
  ['kernel as large as the input', [2, 3, 4, 5], [2, 3, 4, 5], {}],
  ['kernel reaching past the input through padding only', [1, 1, 2, 2], [1, 1, 3, 3], { padding: 1, stride: 2 }],
  ['batch 3, single channel', [3, 1, 10, 10], [2, 1, 3, 3], { stride: 2 }],
];

describeBackends('conv2d', (device) => {
  for (const dtype of ['float32', 'float64'] as const) {
    for (const [name, xs, ws, o] of cases) {
      for (const withBias of [true, false]) {
        it(`forward matches direct convolution: ${dtype}, ${name}${withBias ? '' : ', no bias'}`, () => {
          const x = rand(xs, 1, dtype, device), w = rand(ws, 2, dtype, device);
          const b = withBias ? rand([ws[0]], 3, dtype, device) : null;
          const y = conv2d(x, w, b, o);
          const g = geo(xs, ws, o);
          expect(y.shape).toEqual([xs[0], ws[0], g.OH, g.OW]);
          expect(y.dtype).toBe(dtype);
          const tol = dtype === 'float32' ? { atol: 1e-5, rtol: 1e-4 } : { atol: 1e-12, rtol: 1e-12 };
          expectClose(y, naiveConv(x.dataSync(), xs, w.dataSync(), ws, b && b.dataSync(), g), tol);
        });
      }
      it(`backward matches the direct gradients: ${dtype}, ${name}`, () => {
        const x = rand(xs, 4, dtype, device, true), w = rand(ws, 5, dtype, device, true), b = rand([ws[0]], 6, dtype, device, true);
        const y = conv2d(x, w, b, o);
        const gy = rand(y.shape as number[], 7, dtype, device);
        ng.sum(ng.mul(y, gy)).backward();
        const ref = naiveGrads(x.dataSync(), xs, w.dataSync(), ws, gy.dataSync(), geo(xs, ws, o));
        const tol = dtype === 'float32' ? { atol: 1e-4, rtol: 1e-4 } : { atol: 1e-11, rtol: 1e-11 };
        expectClose(x.grad!, ref.dx, tol);
        expectClose(w.grad!, ref.dw, tol);
        expectClose(b.grad!, ref.db, tol);
      });
    }
  }

  const gradCases: [string, number[], number[], Conv2dOptions][] = [
    ['stride 2, padding 1', [2, 3, 5, 6], [4, 3, 3, 3], { stride: 2, padding: 1 }],
    ['groups 2 with dilation', [2, 4, 6, 5], [4, 2, 2, 2], { groups: 2, dilation: 2 }],
    ["padding 'same' with an even kernel", [1, 2, 4, 5], [3, 2, 2, 3], { padding: 'same' }],
    ['depthwise', [2, 3, 4, 4], [3, 1, 3, 3], { groups: 3, padding: 1 }],
    ['1x1', [2, 3, 3, 4], [2, 3, 1, 1], {}],
  ];
  for (const [name, xs, ws, o] of gradCases) {
    it(`backward matches finite differences for input, weight and bias: ${name}`, () => {
      const x = rand(xs, 8, 'float64', device, true), w = rand(ws, 9, 'float64', device, true);
      const b = rand([ws[0]], 10, 'float64', device, true);
      ng.gradcheck((a, c, d) => conv2d(a, c, d, o), [x, w, b]);
    });
  }

  for (const threads of [1, 2, 3]) {
    it(`gradients over several column chunks equal the sum over single images (${threads} threads)`, () => {
      // 16 channels x 3x3 x 32x31 outputs: about 1.1 MB of float64 columns per image, so
      // each thread takes one image per chunk and the batch of 7 is processed in several
      // chunks whose weight gradients accumulate, each chunk cut into one piece per thread
      // (with 3 threads the last, single-image chunk leaves remainder columns).
      const prev = ng.getNumThreads();
      ng.setNumThreads(threads);
      try {
        const xs = [7, 16, 32, 31], ws = [4, 16, 3, 3];
        const x = rand(xs, 11, 'float64', device, true), w = rand(ws, 12, 'float64', device, true);
        const y = conv2d(x, w, null, { padding: 1 });
        const gy = rand(y.shape as number[], 13, 'float64', device);
        ng.sum(ng.mul(y, gy)).backward();
        const ref = naiveGrads(x.dataSync(), xs, w.dataSync(), ws, gy.dataSync(), geo(xs, ws, { padding: 1 }));
        expectClose(x.grad!, ref.dx, { atol: 1e-11, rtol: 1e-11 });
        expectClose(w.grad!, ref.dw, { atol: 1e-10, rtol: 1e-11 });
      } finally {
        ng.setNumThreads(prev);
      }
    });
  }

  it('computes only the gradients that are asked for, with the same values', () => {
    const xs = [2, 4, 6, 5], ws = [6, 2, 3, 3], o: Conv2dOptions = { groups: 2, stride: [1, 2], padding: 1 };
    const full = [rand(xs, 30, 'float64', device, true), rand(ws, 31, 'float64', device, true), rand([6], 32, 'float64', device, true)];
    const gy = rand([2, 6, 6, 3], 33, 'float64', device);
    ng.sum(ng.mul(conv2d(full[0], full[1], full[2], o), gy)).backward();
    for (let k = 0; k < 3; k++) {
      const ins = full.map((t, i) => (i === k ? t.detach().requiresGrad_() : t.detach()));
      ng.sum(ng.mul(conv2d(ins[0], ins[1], ins[2], o), gy)).backward();
      ins.forEach((t, i) => expect(t.grad === null).toBe(i !== k));
      expectClose(ins[k].grad!, full[k].grad!, { atol: 0, rtol: 0 });
    }
  });

  it('accepts an unbatched [C, H, W] input', () => {
    const x = rand([3, 6, 6], 14, 'float64', device, true), w = rand([2, 3, 3, 3], 15, 'float64', device);
    const y = conv2d(x, w, null, { padding: 1 });
    expect(y.shape).toEqual([2, 6, 6]);
    expectClose(y, conv2d(x.detach().reshape([1, 3, 6, 6]), w, null, { padding: 1 }).reshape([2, 6, 6]), { atol: 0, rtol: 0 });
    ng.gradcheck((a) => conv2d(a, w, null, { padding: 1, stride: 2 }), [x]);
  });

  it('reads non-contiguous inputs and weights', () => {
    const x = rand([2, 5, 3, 4], 16, 'float64', device).permute(0, 3, 1, 2);  // [2, 4, 5, 3]
    const w = rand([3, 3, 2, 4], 17, 'float64', device).permute(0, 3, 1, 2);  // [3, 4, 3, 2]
    const y = conv2d(x, w, null, { padding: 1 });
    const g = geo([2, 4, 5, 3], [3, 4, 3, 2], { padding: 1 });
    expectClose(y, naiveConv(x.contiguous().dataSync(), [2, 4, 5, 3], w.contiguous().dataSync(), [3, 4, 3, 2], null, g), { atol: 1e-12 });
  });

  it('computes bfloat16 inputs in float32 and returns bfloat16', () => {
    const x = rand([2, 3, 5, 5], 22, 'float32', device), w = rand([4, 3, 3, 3], 23, 'float32', device);
    const xb = x.to('bfloat16'), wb = w.to('bfloat16');
    const y = conv2d(xb, wb, null, { padding: 1 });
    expect(y.dtype).toBe('bfloat16');
    expectClose(y.float(), conv2d(xb.float(), wb.float(), null, { padding: 1 }), { atol: 2e-2, rtol: 1e-2 });
  });

  it('rejects inputs and options that do not fit', () => {
    const x = rand([2, 4, 5, 5], 18, 'float32', device), w = rand([6, 4, 3, 3], 19, 'float32', device);
    expect(() => conv2d(x, rand([6, 3, 3, 3], 1, 'float32', device))).toThrow(/nodegrad: conv2d: the input has 4 channels but the weight expects 3/);
    expect(() => conv2d(x, rand([6, 2, 3, 3], 1, 'float32', device), null, { groups: 3 })).toThrow(/nodegrad: conv2d: groups=3 must divide/);
    expect(() => conv2d(x, w, null, { groups: 0 })).toThrow(/nodegrad: conv2d: groups must be a positive integer/);
    expect(() => conv2d(x, rand([6, 4, 7, 3], 1, 'float32', device))).toThrow(/nodegrad: conv2d: the kernel .* is larger than the padded input/);
    expect(() => conv2d(x, w, null, { dilation: 3 })).toThrow(/nodegrad: conv2d: the kernel .* is larger than the padded input/);
    expect(() => conv2d(rand([4, 5, 5], 1, 'float32', device).reshape([20, 5]), w)).toThrow(/nodegrad: conv2d: input must be 3-D .* or 4-D/);
    expect(() => conv2d(x, rand([6, 4, 3], 1, 'float32', device))).toThrow(/nodegrad: conv2d: weight must be 4-D/);
    expect(() => conv2d(x, w, rand([5], 1, 'float32', device))).toThrow(/nodegrad: conv2d: bias must have shape \[6\]/);
    expect(() => conv2d(x, rand([6, 4, 3, 3], 1, 'float64', device))).toThrow(/nodegrad: conv2d: weight has dtype float64 but the input is float32/);
    expect(() => conv2d(x, w, null, { stride: 0 })).toThrow(/nodegrad: conv2d: stride must be an integer >= 1/);
    expect(() => conv2d(x, w, null, { padding: -1 })).toThrow(/nodegrad: conv2d: padding must be an integer >= 0/);
    expect(() => conv2d(x, w, null, { padding: [1, 2, 3] as unknown as number[] })).toThrow(/nodegrad: conv2d: padding must be/);
    expect(() => conv2d(x, w, null, { padding: 'same', stride: 2 })).toThrow(/nodegrad: conv2d: padding 'same' needs stride 1/);
    expect(() => conv2d(ng.zeros([2, 4, 5, 5], { dtype: 'int32' }), w)).toThrow(/nodegrad: conv2d: input must be a floating-point tensor/);
    expect(() => conv2d(x, null as unknown as Tensor)).toThrow(/nodegrad: conv2d: weight must be a Tensor/);
  });

  it('native entry points check buffer sizes against the geometry', () => {
    const x = new Float32Array(2 * 3 * 4 * 4), w = new Float32Array(5 * 3 * 3 * 3), y = new Float32Array(2 * 5 * 2 * 2);
    const geom = [2, 3, 4, 4, 5, 3, 3, 1, 1, 0, 0, 1, 1, 1, 2, 2];
    expect(() => native.conv2dForward(x, w, null, y, geom)).not.toThrow();
    expect(() => native.conv2dForward(x.subarray(1), w, null, y, geom)).toThrow(/nodegrad: conv2d/);
    expect(() => native.conv2dForward(x, w, null, y.subarray(1), geom)).toThrow(/nodegrad: conv2d/);
    expect(() => native.conv2dForward(x, w, null, y, [...geom.slice(0, 13), 2, 2, 2])).toThrow(/nodegrad: conv2d: groups must divide/);
    expect(() => native.conv2dForward(x, w, null, y, geom.slice(1))).toThrow(/nodegrad: conv2d: geometry must have 16 entries/);
    expect(() => native.conv2dBackward(y, x, w, new Float64Array(x.length), null, null, geom)).toThrow(/nodegrad: conv2d backward/);
  });
});

describe('nn.Conv2d', () => {
  it('initialises weight and bias uniformly within ±1/sqrt(fanIn) and convolves with its options', () => {
    ng.manualSeed(3);
    const m = new Conv2d(4, 6, 3, { stride: 2, padding: 1, groups: 2 });
    expect(m.weight.shape).toEqual([6, 2, 3, 3]);
    expect(m.bias!.shape).toEqual([6]);
    expect(m.namedParameters().map(([k]) => k)).toEqual(['weight', 'bias']);
    const bound = 1 / Math.sqrt(2 * 9);
    const wv = Array.from(m.weight.dataSync());
    expect(Math.max(...wv.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...wv.map(Math.abs))).toBeGreaterThan(bound * 0.8);
    expect(Math.max(...Array.from(m.bias!.dataSync()).map(Math.abs))).toBeLessThanOrEqual(bound);
    const x = rand([2, 4, 7, 7], 20, 'float32', 'cpu');
    const y = m.forward(x);
    expect(y.shape).toEqual([2, 6, 4, 4]);
    expectClose(y, conv2d(x, m.weight, m.bias, { stride: 2, padding: 1, groups: 2 }), { atol: 0, rtol: 0 });
  });

  it('supports non-square kernels, no bias and float64', () => {
    const m = new Conv2d(3, 2, [1, 3], { bias: false, padding: 'same', dtype: 'float64' });
    expect(m.bias).toBeNull();
    expect(m.weight.shape).toEqual([2, 3, 1, 3]);
    expect(m.weight.dtype).toBe('float64');
    expect(m.forward(rand([1, 3, 4, 5], 21, 'float64', 'cpu')).shape).toEqual([1, 2, 4, 5]);
  });

  it('a small CNN trains end to end with SGD (loss falls on a fixed batch)', () => {
    ng.manualSeed(5);
    const net = new ng.nn.Sequential(
      new Conv2d(1, 4, 3, { padding: 1 }), new ng.nn.ReLU(), new MaxPool2d(2),
      new Conv2d(4, 8, 3, { padding: 1 }), new ng.nn.ReLU(), new MaxPool2d(2), new Flatten(), new ng.nn.Linear(8 * 2 * 2, 3));
    const opt = new ng.optim.SGD(net.parameters(), { lr: 0.1, momentum: 0.9 });
    const x = rand([6, 1, 8, 8], 24, 'float32', 'cpu');
    const t = ng.tensor([0, 1, 2, 0, 1, 2], { dtype: 'int32' });
    const losses: number[] = [];
    for (let step = 0; step < 30; step++) {
      ng.scope(() => {
        opt.zeroGrad();
        const loss = ng.nn.functional.crossEntropy(net.forward(x), t);
        loss.backward();
        opt.step();
        losses.push(loss.item());
      });
    }
    expect(losses[29]).toBeLessThan(losses[0] * 0.5);
  });

  it('rejects bad constructor arguments', () => {
    expect(() => new Conv2d(3, 4, 3, { groups: 2 })).toThrow(/nodegrad: Conv2d: groups=2 must divide/);
    expect(() => new Conv2d(0, 4, 3)).toThrow(/nodegrad: Conv2d: inChannels must be a positive integer/);
    expect(() => new Conv2d(3, 4, 0)).toThrow(/nodegrad: Conv2d: kernelSize must be an integer >= 1/);
  });
});
