import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { embedding } from '../../lib/ops/embedding.js';
import { describeBackends, expectClose, lcg } from '../helpers.js';

function table(V: number, C: number, dtype: 'float32' | 'float64', device: string, requiresGrad = false): Tensor {
  const r = lcg(V * 31 + C);
  return ng.tensor(Float64Array.from({ length: V * C }, () => r()), { shape: [V, C], dtype, device: device as ng.Device, requiresGrad });
}

function ids(values: number[], shape: number[], device: string): Tensor {
  return ng.tensor(Int32Array.from(values), { shape, device: device as ng.Device });
}

function randomIds(n: number, V: number, seed: number): number[] {
  const r = lcg(seed);
  return Array.from({ length: n }, () => Math.min(V - 1, Math.floor(((r() + 1) / 2) * V)));
}

/** Naive gather. */
function gather(w: ArrayLike<number>, C: number, idx: number[]): number[] {
  return idx.flatMap((i) => Array.from({ length: C }, (_, c) => w[i * C + c]));
}

/** Naive scatter-add in float64. */
function scatter(g: ArrayLike<number>, V: number, C: number, idx: number[], pad = -1): number[] {
  const out = new Array<number>(V * C).fill(0);
  idx.forEach((i, k) => {
    if (i === pad) return;
    for (let c = 0; c < C; c++) out[i * C + c] += g[k * C + c];
  });
  return out;
}

describeBackends('embedding', (device) => {
  for (const dtype of ['float32', 'float64'] as const) {
    for (const shape of [[5], [2, 3], [4, 1, 7], []]) {
      it(`forward gathers rows for ${dtype} ids of shape [${shape}]`, () => {
        const n = shape.reduce((a, b) => a * b, 1);
        const idx = randomIds(n, 11, n + 1);
        const w = table(11, 19, dtype, device);
        const out = embedding(ids(idx, shape, device), w);
        expect(out.shape).toEqual([...shape, 19]);
        expect(out.dtype).toBe(dtype);
        expect(Array.from(out.dataSync() as ArrayLike<number>)).toEqual(gather(w.dataSync(), 19, idx));
      });
    }
  }

  it('reads non-contiguous ids and weights', () => {
    const w = table(6, 4, 'float64', device).transpose(0, 1); // [4, 6] strided
    const base = ids([0, 1, 2, 3, 3, 2, 1, 0], [2, 4], device);
    const idt = base.transpose(0, 1); // [4, 2]
    const out = embedding(idt, w);
    expect(out.shape).toEqual([4, 2, 6]);
    const flatIds = Array.from(idt.contiguous().dataSync() as ArrayLike<number>);
    expect(Array.from(out.dataSync() as ArrayLike<number>)).toEqual(gather(w.contiguous().dataSync(), 6, flatIds));
  });

  it('handles empty ids and a zero-width table', () => {
    expect(embedding(ids([], [2, 0], device), table(3, 4, 'float32', device)).shape).toEqual([2, 0, 4]);
    expect(embedding(ids([1, 2], [2], device), ng.zeros([3, 0], { device })).shape).toEqual([2, 0]);
  });

  it('backward matches finite differences with repeated ids', () => {
    const w = table(5, 3, 'float64', device, true);
    const idx = ids([0, 4, 4, 2, 0, 4], [2, 3], device);
    ng.gradcheck((t) => embedding(idx, t), [w]);
  });

  for (const dtype of ['float32', 'float64'] as const) {
    it(`backward scatter-adds the gradient (${dtype}, many repeated ids)`, () => {
      const V = 37, C = 70, n = 3000;
      const idx = randomIds(n, V, 9);
      const w = table(V, C, dtype, device, true);
      const r = lcg(4);
      const g = ng.tensor(Float64Array.from({ length: n * C }, () => r()), { shape: [n, C], dtype, device });
      embedding(ids(idx, [n], device), w).backward(g);
      expect(w.grad!.shape).toEqual([V, C]);
      expectClose(w.grad!, scatter(g.dataSync(), V, C, idx), dtype === 'float32' ? { atol: 2e-4, rtol: 1e-5 } : { atol: 1e-12 });
    });
  }

  it('rows at paddingIdx get no gradient but are still looked up', () => {
    const w = table(4, 3, 'float64', device, true);
    const idx = [1, 2, 1, 3, 0];
    const out = embedding(ids(idx, [5], device), w, { paddingIdx: 1 });
    expect(Array.from(out.dataSync() as ArrayLike<number>)).toEqual(gather(w.dataSync(), 3, idx));
    out.sum().backward();
    expect(Array.from(w.grad!.dataSync() as ArrayLike<number>)).toEqual(scatter(new Array(15).fill(1), 4, 3, idx, 1));
    const w2 = table(4, 3, 'float64', device, true);
    embedding(ids(idx, [5], device), w2, { paddingIdx: -1 }).sum().backward(); // -1 is row 3
    expect(Array.from(w2.grad!.dataSync() as ArrayLike<number>)).toEqual(scatter(new Array(15).fill(1), 4, 3, idx, 3));
  });

  it('the weight gradient is bitwise identical for any thread count', () => {
    // The thread pool is sized per process, so each count runs in a fresh process.
    const script = `
      const path = require('node:path');
      const addon = process.env.NODEGRAD_ADDON ? require(path.resolve(process.env.NODEGRAD_ADDON))
        : require('node-gyp-build')(process.cwd());
      addon.setNumThreads(Number(process.argv[1]));
      const n = 4000, V = 50, C = 96;
      let s = 7;
      const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
      const ids = Int32Array.from({ length: n }, () => Math.floor(next() * V));
      const g = Float32Array.from({ length: n * C }, () => next() - 0.5);
      const gw = new Float32Array(V * C);
      addon.embeddingBackward(ids, n, g, V, C, gw, -1);
      process.stdout.write(Buffer.from(gw.buffer).toString('hex'));`;
    const outputs = [1, 2, 3].map((threads) => {
      const r = spawnSync(process.execPath, ['-e', script, String(threads)], { cwd: process.cwd(), encoding: 'utf8', env: process.env });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout;
    });
    expect(outputs[0].length).toBe(50 * 96 * 8);
    expect(outputs[1]).toBe(outputs[0]);
    expect(outputs[2]).toBe(outputs[0]);
  });

  it('rejects out-of-range ids with a clear error and never crashes', () => {
    const w = table(5, 3, 'float32', device, true);
    expect(() => embedding(ids([0, 7, 1], [3], device), w)).toThrow(/nodegrad: embedding: index 7 is out of range for 5 embeddings/);
    expect(() => embedding(ids([-1], [1], device), w)).toThrow(/nodegrad: embedding: index -1 is out of range for 5 embeddings/);
    expect(() => embedding(ids([5], [1], device), w)).toThrow(/index 5 is out of range/);
    // The kernels check ids themselves: a direct call with a bad id throws before writing.
    const gw = new Float32Array(15);
    expect(() => native.embeddingBackward(Int32Array.from([1, 9]), 2, new Float32Array(6).fill(1), 5, 3, gw, -1))
      .toThrow(/nodegrad: embedding: index 9 is out of range for 5 embeddings/);
    expect(Array.from(gw)).toEqual(new Array(15).fill(0));
    const out = new Float32Array(6);
    expect(() => native.embeddingForward(Int32Array.from([2, 5]), 2, new Float32Array(15), 5, 3, out)).toThrow(/index 5 is out of range/);
    expect(() => native.embeddingForward(Int32Array.from([1]), 2, new Float32Array(15), 5, 3, out)).toThrow(/nodegrad: embedding: indices/);
    expect(() => native.embeddingForward(Int32Array.from([1, 1]), 2, new Float32Array(14), 5, 3, out)).toThrow(/nodegrad: embedding: weight/);
  });

  it('rejects bad arguments with clear errors', () => {
    const w = table(5, 3, 'float32', device);
    expect(() => embedding(ng.tensor([1, 2], { device }), w)).toThrow(/nodegrad: embedding: ids must be an int32 tensor \(got float32/);
    expect(() => embedding(ids([1], [1], device), ng.ones([5], { device }))).toThrow(/nodegrad: embedding: weight must be 2-D/);
    expect(() => embedding(ids([1], [1], device), w, { paddingIdx: 5 })).toThrow(/nodegrad: embedding: paddingIdx 5 is out of range/);
    expect(() => embedding(ids([1], [1], device), w, { paddingIdx: 1.5 })).toThrow(/nodegrad: embedding: paddingIdx/);
    expect(() => embedding(undefined as unknown as Tensor, w)).toThrow(/nodegrad: embedding: ids must be a Tensor/);
  });
});
