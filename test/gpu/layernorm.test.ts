// layerNorm and addLayerNorm on CUDA against the CPU: forward and backward (x, weight,
// bias), float32 / bfloat16 / float16, C from 1 to beyond the register-cached limit
// (8192), odd C (scalar paths), views, and the errors CUDA adds (float64, mixed devices).
import { expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { addLayerNorm, layerNorm } from '../../lib/ops/layernorm.js';
import { expectClose } from '../helpers.js';
import { compareCpuCuda, describeCuda, type FloatDType } from './helpers.js';

/** randn values that are exact in bfloat16 (so the CPU reference sees the same inputs). */
function randnExact(shape: number[], scale = 1, shift = 0): Tensor {
  return ng.noGrad(() => ng.randn(shape).mul(scale).add(shift).to('bfloat16').to('float32'));
}

function params(C: number): [Tensor, Tensor] {
  return [randnExact([C], 0.5, 1).requiresGrad_(true), randnExact([C], 0.5).requiresGrad_(true)];
}

const SIZES = [1, 3, 64, 768, 1000, 4096, 8192, 9000];

describeCuda('layerNorm on CUDA', () => {
  for (const C of SIZES) {
    test(`forward and backward match the CPU, float32, C=${C}`, () => {
      ng.manualSeed(C);
      const rows = C >= 4096 ? 9 : 37;
      const x = randnExact([rows, C], 2, 0.5).requiresGrad_(true);
      const [w, b] = params(C);
      compareCpuCuda((a, c, d) => layerNorm(a, [C], c, d), [x, w, b], { grad: true });
    });
  }

  for (const dtype of ['bfloat16', 'float16'] as FloatDType[]) {
    for (const C of [3, 768, 1000, 4096, 9000]) {
      test(`forward and backward match the CPU, ${dtype}, C=${C}`, () => {
        ng.manualSeed(100 + C);
        const x = randnExact([13, C], 1, 0.25).requiresGrad_(true);
        const [w, b] = params(C);
        compareCpuCuda((a, c, d) => layerNorm(a, [C], c, d), [x, w, b], { grad: true, dtype });
      });
    }
  }

  test('many rows: the deterministic two-stage weight/bias gradient', () => {
    ng.manualSeed(7);
    const x = randnExact([4099, 96]).requiresGrad_(true);
    const [w, b] = params(96);
    compareCpuCuda((a, c, d) => layerNorm(a, [96], c, d), [x, w, b], { grad: true, gradAtol: 2e-3, gradRtol: 1e-3 });
  });

  test('weight and bias gradients are bitwise identical between runs', () => {
    // Both runs must see the same x and the same upstream gradient: reseed inside run().
    const run = (): [number[], number[]] => ng.scope(() => {
      ng.manualSeed(8);
      const x = ng.randn([2048, 768], { device: 'cuda' });
      const w = ng.ones([768], { device: 'cuda' }).requiresGrad_(true), b = ng.zeros([768], { device: 'cuda' }).requiresGrad_(true);
      ng.manualSeed(9);
      layerNorm(x, [768], w, b).mul(ng.randn([2048, 768], { device: 'cuda' })).sum().backward();
      return [Array.from(w.grad!.cpu().dataSync() as Float32Array), Array.from(b.grad!.cpu().dataSync() as Float32Array)];
    });
    const [w1, b1] = run(), [w2, b2] = run();
    expect(w1).toEqual(w2);
    expect(b1).toEqual(b2);
  });

  test('without weight and bias, 3-d input, normalizedShape of two dims', () => {
    ng.manualSeed(10);
    const x = randnExact([4, 5, 6, 7]).requiresGrad_(true);
    compareCpuCuda((a) => layerNorm(a, [6, 7]), [x], { grad: true });
    compareCpuCuda((a) => layerNorm(a, [7], null, null, 1e-3), [x], { grad: true });
  });

  test('non-contiguous and offset views are normalised like their contiguous copies', () => {
    ng.manualSeed(11);
    const x = randnExact([64, 20]).requiresGrad_(true);
    const [w, b] = params(64);
    compareCpuCuda((a, c, d) => layerNorm(a.transpose(0, 1), [64], c, d), [x, w, b], { grad: true });
    compareCpuCuda((a, c, d) => layerNorm(a.transpose(0, 1).narrow(0, 3, 5), [64], c, d), [x, w, b], { grad: true });
    // a contiguous view at an element offset (rows 3..12 of a [64, 20] tensor)
    const [w2, b2] = params(20);
    compareCpuCuda((a, c, d) => layerNorm(a.narrow(0, 3, 10), [20], c, d), [x, w2, b2], { grad: true });
  });

  test('bfloat16 input saves float32 statistics (mean/rstd not rounded to bf16)', () => {
    ng.manualSeed(12);
    const rows = 8, C = 512;
    const x = randnExact([rows, C], 0.5, 3);
    const xg = x.to('cuda').to('bfloat16');
    const y = ng.zeros([rows, C], { dtype: 'bfloat16', device: 'cuda' });
    const mean = ng.zeros([rows], { dtype: 'float32', device: 'cuda' }), rstd = ng.zeros([rows], { dtype: 'float32', device: 'cuda' });
    native.layernormForward(xg.storage.data, null, null, y.storage.data, mean.storage.data, rstd.storage.data, rows, C, 1e-5);
    const xs = x.dataSync() as Float32Array;
    const m = mean.cpu().dataSync() as Float32Array, r = rstd.cpu().dataSync() as Float32Array;
    for (let i = 0; i < rows; i++) {
      let s = 0, q = 0;
      for (let c = 0; c < C; c++) s += xs[i * C + c];
      const mu = s / C;
      for (let c = 0; c < C; c++) q += (xs[i * C + c] - mu) ** 2;
      expect(Math.abs(m[i] - mu) / Math.abs(mu)).toBeLessThan(1e-5);
      expect(Math.abs(r[i] - 1 / Math.sqrt(q / C + 1e-5)) * Math.sqrt(q / C)).toBeLessThan(1e-5);
    }
  });

  test('float64 on CUDA is refused with a clear error', () => {
    const x = ng.randn([4, 8], { device: 'cuda' }).to('float64');
    expect(() => layerNorm(x, [8])).toThrow(/float32, bfloat16 or float16/);
  });

  test('weight on another device is refused', () => {
    const x = ng.randn([4, 8], { device: 'cuda' });
    expect(() => layerNorm(x, [8], ng.ones([8]))).toThrow(/different devices/);
  });
});

describeCuda('addLayerNorm on CUDA (fused residual add)', () => {
  for (const C of [1, 3, 64, 768, 1000, 4096, 8192, 9000]) {
    test(`sum and out and all gradients match the CPU, float32, C=${C}`, () => {
      ng.manualSeed(200 + C);
      const rows = C >= 4096 ? 7 : 29;
      const x = randnExact([rows, C]).requiresGrad_(true), r = randnExact([rows, C], 2).requiresGrad_(true);
      const [w, b] = params(C);
      compareCpuCuda((a, q, c, d) => {
        const { sum, out } = addLayerNorm(a, q, [C], c, d);
        return [sum, out];
      }, [x, r, w, b], { grad: true });
    });
  }

  for (const dtype of ['bfloat16', 'float16'] as FloatDType[]) {
    test(`matches the CPU, ${dtype}`, () => {
      ng.manualSeed(300);
      const x = randnExact([33, 768]).requiresGrad_(true), r = randnExact([33, 768]).requiresGrad_(true);
      const [w, b] = params(768);
      compareCpuCuda((a, q, c, d) => {
        const { sum, out } = addLayerNorm(a, q, [768], c, d);
        return [sum, out];
      }, [x, r, w, b], { grad: true, dtype });
    });
  }

  test('equals add() then layerNorm() on CUDA, values and gradients', () => {
    ng.manualSeed(301);
    const x = ng.randn([50, 1000], { device: 'cuda' }), r = ng.randn([50, 1000], { device: 'cuda' });
    const w = ng.randn([1000], { device: 'cuda' }), b = ng.randn([1000], { device: 'cuda' });
    const g1 = ng.randn([50, 1000], { device: 'cuda' }), g2 = ng.randn([50, 1000], { device: 'cuda' });
    const grads = (fused: boolean): Tensor[] => {
      const xs = [x, r, w, b].map((t) => t.detach().clone().requiresGrad_(true));
      const { sum, out } = fused ? addLayerNorm(xs[0], xs[1], [1000], xs[2], xs[3])
        : (() => { const s = xs[0].add(xs[1]); return { sum: s, out: layerNorm(s, [1000], xs[2], xs[3]) }; })();
      sum.mul(g1).sum().add(out.mul(g2).sum()).backward();
      return [sum, out, ...xs.map((t) => t.grad!)];
    };
    const a = grads(true), c = grads(false);
    for (let i = 0; i < a.length; i++) expectClose(a[i].cpu(), c[i].cpu(), { atol: 1e-5, rtol: 1e-4 });
  });

  test('a residual of another shape is refused', () => {
    const x = ng.randn([4, 8], { device: 'cuda' });
    expect(() => addLayerNorm(x, ng.randn([1, 8], { device: 'cuda' }), [8])).toThrow(/residual has shape/);
  });
});
