// CUDA softmax / log-softmax against the CPU: the warp-per-row (C <= 1024), block-per-row
// and column (dim not last) kernels, odd and vocabulary-sized rows, vector and scalar
// paths, half dtypes, -inf / NaN rows, non-contiguous inputs, forward and backward.
import { expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { compareCpuCuda, describeCuda } from './helpers.js';

const F = ng.nn.functional;

describeCuda('CUDA softmax', () => {
  ng.manualSeed(5);
  const rowShapes = [[4, 1], [4, 3], [6, 8], [7, 127], [5, 1000], [5, 1024], [5, 1025], [3, 4099], [2, 12288], [2, 50257], [2, 50304]];
  for (const log of [false, true]) {
    const fn = log ? F.logSoftmax : F.softmax;
    const name = log ? 'logSoftmax' : 'softmax';
    it(`${name} over the last dim matches the CPU, forward and backward (float32)`, () => {
      for (const s of rowShapes) compareCpuCuda((a) => fn(a, -1), [ng.randn(s).mul(3).requiresGrad_(true)], { grad: true });
    });
    it(`${name} over a middle or first dim (the column kernel) matches the CPU`, () => {
      for (const [s, d] of [[[3, 5, 7], 0], [[3, 5, 7], 1], [[2, 1000, 3], 1], [[50, 4], 0], [[1, 3, 1], 1]] as [number[], number][]) {
        compareCpuCuda((a) => fn(a, d), [ng.randn(s).requiresGrad_(true)], { grad: true });
      }
    });
    for (const dtype of ['bfloat16', 'float16'] as const) {
      it(`${name} matches the CPU in ${dtype}`, () => {
        const tol = log ? { atol: 6e-2, rtol: 2e-2 } : { atol: 1e-2, rtol: 2e-2 };
        for (const s of [[4, 3], [7, 127], [5, 1000], [3, 4099], [2, 50257]]) {
          compareCpuCuda((a) => fn(a, -1), [ng.randn(s).requiresGrad_(true)], { dtype, grad: true, ...tol, gradAtol: 0.1, gradRtol: 5e-2 });
        }
        compareCpuCuda((a) => fn(a, 1), [ng.randn([3, 50, 5]).requiresGrad_(true)], { dtype, grad: true, ...tol, gradAtol: 0.1, gradRtol: 5e-2 });
      });
    }
    it(`${name} of a non-contiguous (transposed) input matches the CPU`, () => {
      compareCpuCuda((a) => fn(a.T, -1), [ng.randn([33, 65]).requiresGrad_(true)], { grad: true });
    });
    it(`${name}: -inf entries get 0 probability; an all -inf row gives NaN (as PyTorch)`, () => {
      const x = ng.tensor([[-Infinity, 1, 2, -Infinity], [-Infinity, -Infinity, -Infinity, -Infinity], [0, 0, 0, 0]]);
      compareCpuCuda((a) => fn(a, 1), [x]);
      compareCpuCuda((a) => fn(a, 0), [x]);
      // +inf or NaN anywhere in a row makes the whole row NaN (CPU and PyTorch)
      const y = ng.tensor([[1, Infinity, 2, 3], [NaN, 0, 1, 2], [Infinity, Infinity, 0, 0], [1, 2, 3, 4]]);
      compareCpuCuda((a) => fn(a, 1), [y]);
      compareCpuCuda((a) => fn(a, 0), [y]);
      // a lane that saw only the NaN (scalar warp path, C = 5) must still poison the row
      compareCpuCuda((a) => fn(a, 1), [ng.tensor([[NaN, 0, 1, 2, 3], [0, 1, 2, 3, 4]])]);
    });
  }

  it('float64 softmax stays float64 and matches to 1e-12', () => {
    const x = ng.randn([5, 3000], { dtype: 'float64' });
    compareCpuCuda((a) => F.softmax(a, -1), [x], { dtype: 'float64', atol: 1e-12, rtol: 1e-10 });
  });

  it('is bit-identical run to run', () => {
    const x = ng.randn([64, 50257]).to('cuda');
    const a = Array.from(F.softmax(x, -1).dataSync() as Float32Array);
    expect(Array.from(F.softmax(x, -1).dataSync() as Float32Array)).toEqual(a);
  });

  it('rejects integer inputs with the CPU message', () => {
    const x = ng.tensor([[1, 2]], { dtype: 'int32' }).to('cuda');
    expect(() => F.softmax(x, -1)).toThrow(/nodegrad: softmax: input must be a floating-point tensor/);
  });
});
