import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { layerNorm } from '../../lib/ops/layernorm.js';
import { describeBackends, expectClose, lcg } from '../helpers.js';

function rand(shape: number[], seed: number, dtype: 'float32' | 'float64', device: string, requiresGrad = false,
  scale = 2, shift = 0): Tensor {
  const r = lcg(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return ng.tensor(Float64Array.from({ length: n }, () => r() * scale + shift),
    { shape, dtype, device: device as ng.Device, requiresGrad });
}

/** The slow version built from public ops. */
function composed(x: Tensor, normalizedShape: number[], w: Tensor | null, b: Tensor | null, eps: number): Tensor {
  const dims = normalizedShape.map((_, i) => x.ndim - normalizedShape.length + i);
  const mean = ng.mean(x, dims, true);
  const v = ng.var(x, dims, { correction: 0, keepdim: true });
  let y = ng.div(ng.sub(x, mean), ng.sqrt(ng.add(v, eps)));
  if (w) y = ng.mul(y, w);
  if (b) y = ng.add(y, b);
  return y;
}

/** Naive float64 loop over the flattened [rows, C] view. */
function naive(x: ArrayLike<number>, C: number, w: ArrayLike<number> | null, b: ArrayLike<number> | null, eps: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < x.length / C; r++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += x[r * C + c];
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[r * C + c] - m) ** 2;
    const rs = 1 / Math.sqrt(v / C + eps);
    for (let c = 0; c < C; c++) out.push((x[r * C + c] - m) * rs * (w ? w[c] : 1) + (b ? b[c] : 0));
  }
  return out;
}

describeBackends('layerNorm', (device) => {
  const cases: [number[], number[]][] = [[[4, 10], [10]], [[3, 37], [37]], [[2, 3, 4, 5], [4, 5]], [[5, 1], [1]], [[6], [6]]];
  for (const dtype of ['float32', 'float64'] as const) {
    for (const [shape, ns] of cases) {
      for (const affine of ['weight+bias', 'weight', 'bias', 'none']) {
        it(`forward matches the composed version and a loop: ${dtype} [${shape}] over [${ns}] with ${affine}`, () => {
          const x = rand(shape, shape.length * 7 + ns.length, dtype, device, false, 3, 0.5);
          const w = affine.includes('weight') ? rand(ns, 3, dtype, device) : null;
          const b = affine.includes('bias') || affine === 'bias' ? rand(ns, 4, dtype, device) : null;
          const y = layerNorm(x, ns, w, b, 1e-5);
          expect(y.shape).toEqual(shape);
          expect(y.dtype).toBe(dtype);
          const tol = dtype === 'float32' ? { atol: 2e-5, rtol: 1e-4 } : { atol: 1e-12, rtol: 1e-10 };
          expectClose(y, composed(x, ns, w, b, 1e-5), tol);
          const C = ns.reduce((a, c) => a * c, 1);
          expectClose(y, naive(x.dataSync(), C, w && w.dataSync(), b && b.dataSync(), 1e-5), tol);
        });
      }
    }
  }

  it('uses eps inside the square root and accepts a non-contiguous input', () => {
    const x = rand([6, 4], 8, 'float64', device).transpose(0, 1); // [4, 6], strided
    const y = layerNorm(x, [6], null, null, 0.5);
    expectClose(y, naive(x.contiguous().dataSync(), 6, null, null, 0.5), { atol: 1e-13 });
    const constant = layerNorm(ng.full([2, 8], 3, { dtype: 'float64', device }), [8]);
    expectClose(constant, new Array(16).fill(0));
  });

  for (const [shape, ns] of [[[3, 7], [7]], [[2, 2, 3, 5], [3, 5]], [[33, 4], [4]], [[2, 19], [19]]] as [number[], number[]][]) {
    it(`backward for x, weight and bias matches finite differences: [${shape}] over [${ns}]`, () => {
      const x = rand(shape, 21, 'float64', device, true);
      const w = rand(ns, 22, 'float64', device, true, 1, 1);
      const b = rand(ns, 23, 'float64', device, true);
      ng.gradcheck((a, c, d) => layerNorm(a, ns, c, d), [x, w, b]);
    });
  }

  it('backward without weight and bias matches finite differences', () => {
    const x = rand([5, 9], 30, 'float64', device, true);
    ng.gradcheck((a) => layerNorm(a, [9], null, null, 1e-3), [x]);
  });

  it('backward with only some inputs requiring grad', () => {
    const x = rand([4, 6], 31, 'float64', device, false);
    const w = rand([6], 32, 'float64', device, true);
    const b = rand([6], 33, 'float64', device, false);
    ng.gradcheck((a, c, d) => layerNorm(a, [6], c, d), [x, w, b]);
    const x2 = rand([4, 6], 34, 'float64', device, false);
    const b2 = rand([6], 35, 'float64', device, true);
    ng.gradcheck((a, d) => layerNorm(a, [6], null, d), [x2, b2]);
    const x3 = rand([4, 6], 36, 'float64', device, true);
    const w3 = rand([6], 37, 'float64', device, false);
    ng.gradcheck((a, c) => layerNorm(a, [6], c), [x3, w3]);
  });

  it('float32 gradients agree with float64 and match the composed version', () => {
    const grads = (['float32', 'float64'] as const).map((dtype) => {
      const x = rand([64, 48], 40, dtype, device, true);
      const w = rand([48], 41, dtype, device, true);
      const b = rand([48], 42, dtype, device, true);
      const g = rand([64, 48], 43, dtype, device);
      layerNorm(x, [48], w, b).backward(g);
      return [x.grad!, w.grad!, b.grad!];
    });
    for (let k = 0; k < 3; k++) expectClose(grads[0][k], grads[1][k], { atol: 1e-4, rtol: 1e-4 });
    const x = rand([64, 48], 40, 'float64', device, true);
    const w = rand([48], 41, 'float64', device, true);
    const b = rand([48], 42, 'float64', device, true);
    composed(x, [48], w, b, 1e-5).backward(rand([64, 48], 43, 'float64', device));
    expectClose(grads[1][0], x.grad!, { atol: 1e-10 });
    expectClose(grads[1][1], w.grad!, { atol: 1e-10 });
    expectClose(grads[1][2], b.grad!, { atol: 1e-10 });
  });

  it('weight and bias gradients are bitwise identical for any thread count', () => {
    // The thread pool is sized per process, so each count runs in a fresh process that
    // calls the kernel directly on the same data.
    const script = `
      const path = require('node:path');
      const addon = process.env.NODEGRAD_ADDON ? require(path.resolve(process.env.NODEGRAD_ADDON))
        : require('node-gyp-build')(process.cwd());
      addon.setNumThreads(Number(process.argv[1]));
      const rows = 1000, C = 40;
      let s = 1;
      const fill = (n) => Float32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 31 - 1));
      const x = fill(rows * C), g = fill(rows * C), w = fill(C);
      const gx = new Float32Array(rows * C), gw = new Float32Array(C), gb = new Float32Array(C);
      addon.layernormBackward(g, x, w, null, null, gx, gw, gb, rows, C, 1e-5);
      const hex = (a) => Buffer.from(a.buffer).toString('hex');
      process.stdout.write([hex(gx), hex(gw), hex(gb)].join(' '));`;
    const outputs = [1, 2, 3, 5].map((threads) => {
      const r = spawnSync(process.execPath, ['-e', script, String(threads)], { cwd: process.cwd(), encoding: 'utf8', env: process.env });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout;
    });
    expect(outputs[0].length).toBeGreaterThan(1000);
    for (const o of outputs.slice(1)) expect(o).toBe(outputs[0]);
  });

  it('backward still works after a scope freed the saved statistics', () => {
    const x = rand([3, 8], 60, 'float64', device, true);
    const w = rand([8], 61, 'float64', device, true);
    const y = ng.scope(() => layerNorm(x, [8], w, null));
    const g = rand([3, 8], 62, 'float64', device);
    y.backward(g);
    const x2 = rand([3, 8], 60, 'float64', device, true);
    const w2 = rand([8], 61, 'float64', device, true);
    layerNorm(x2, [8], w2, null).backward(g);
    expectClose(x.grad!, x2.grad!, { atol: 1e-14 });
    expectClose(w.grad!, w2.grad!, { atol: 1e-14 });
  });

  it('rejects bad arguments with clear errors', () => {
    const x = ng.ones([2, 3], { device });
    expect(() => layerNorm(x, [4])).toThrow(/nodegrad: layerNorm: normalizedShape \[4\] does not match the trailing dims/);
    expect(() => layerNorm(x, [2, 2, 3])).toThrow(/nodegrad: layerNorm: normalizedShape/);
    expect(() => layerNorm(x, [])).toThrow(/nodegrad: layerNorm: normalizedShape/);
    expect(() => layerNorm(x, [3], ng.ones([4], { device }))).toThrow(/nodegrad: layerNorm: weight has shape \[4\]/);
    expect(() => layerNorm(x, [3], null, ng.ones([3, 1], { device }))).toThrow(/nodegrad: layerNorm: bias has shape/);
    expect(() => layerNorm(x, [3], ng.ones([3], { dtype: 'float64', device }))).toThrow(/nodegrad: layerNorm: weight has dtype float64/);
    expect(() => layerNorm(ng.ones([2, 3], { dtype: 'int32', device }), [3])).toThrow(/nodegrad: layerNorm: input must be a floating-point/);
    expect(() => layerNorm(x, [3], null, null, -1)).toThrow(/nodegrad: layerNorm: eps/);
  });
});
