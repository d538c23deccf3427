// CUDA losses against the CPU: cross-entropy (fused log-softmax) for C = 1, 3, 1000, 50257,
// class dims other than last ([N, C, d]), ignoreIndex, label smoothing, class weights,
// every reduction, half dtypes, forward and backward; nllLoss; BCE with logits; and an
// out-of-range target reported at the next synchronize, not read on the host.
import { expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { compareCpuCuda, describeCuda } from './helpers.js';

const F = ng.nn.functional;

/** int32 targets in [0, C) with every `ignoreEvery`-th one set to ignoreIndex. */
function targets(shape: number[], C: number, ignoreEvery = 0, ignoreIndex = -100): ng.Tensor {
  const t = ng.randint(0, C, shape);
  if (!ignoreEvery) return t;
  const v = Array.from(t.dataSync() as Int32Array).map((x, i) => (i % ignoreEvery === 1 ? ignoreIndex : x));
  return ng.tensor(v, { dtype: 'int32', shape });
}

describeCuda('CUDA cross-entropy', () => {
  ng.manualSeed(7);
  for (const C of [1, 3, 1000, 1024, 1025, 50257]) {
    it(`matches the CPU for C = ${C}, every reduction, forward and backward`, () => {
      const N = C > 10000 ? 6 : 17;
      const x = ng.randn([N, C]).mul(2).requiresGrad_(true);
      const t = targets([N], C);
      for (const reduction of ['mean', 'sum', 'none'] as const) {
        compareCpuCuda((a, tt) => F.crossEntropy(a, tt, { reduction }), [x, t], { grad: true, atol: 1e-4 });
      }
    });
  }

  it('ignoreIndex (default -100 and a custom one) gives zero loss and gradient, and the mean skips them', () => {
    const x = ng.randn([20, 37]).requiresGrad_(true);
    compareCpuCuda((a, tt) => F.crossEntropy(a, tt), [x, targets([20], 37, 3)], { grad: true });
    compareCpuCuda((a, tt) => F.crossEntropy(a, tt, { ignoreIndex: 5, reduction: 'none' }), [x, targets([20], 37, 4, 5)], { grad: true });
    // every target ignored: mean is NaN (0 / 0), as on the CPU and in PyTorch
    compareCpuCuda((a, tt) => F.crossEntropy(a, tt), [x, ng.full([20], -100, { dtype: 'int32' })]);
  });

  it('label smoothing and class weights match the CPU (alone and together)', () => {
    const C = 1000;
    const x = ng.randn([9, C]).requiresGrad_(true);
    const t = targets([9], C, 4);
    const w = ng.rand([C], { low: 0.5, high: 2 });
    compareCpuCuda((a, tt) => F.crossEntropy(a, tt, { labelSmoothing: 0.1 }), [x, t], { grad: true, atol: 1e-4 });
    compareCpuCuda((a, tt, ww) => F.crossEntropy(a, tt, { weight: ww }), [x, t, w], { grad: true, atol: 1e-4 });
    compareCpuCuda((a, tt, ww) => F.crossEntropy(a, tt, { weight: ww, labelSmoothing: 0.2, reduction: 'sum' }), [x, t, w],
      { grad: true, atol: 1e-3 });
  });

  it('class dim in the middle ([N, C, d1, d2]) matches the CPU', () => {
    const x = ng.randn([3, 11, 4, 5]).requiresGrad_(true);
    const t = targets([3, 4, 5], 11, 6);
    compareCpuCuda((a, tt) => F.crossEntropy(a, tt), [x, t], { grad: true });
    compareCpuCuda((a, tt) => F.crossEntropy(a, tt, { labelSmoothing: 0.1, reduction: 'none' }), [x, t], { grad: true });
  });

  it('a single [C] input with a scalar target matches the CPU', () => {
    compareCpuCuda((a, tt) => F.crossEntropy(a, tt), [ng.randn([10]).requiresGrad_(true), ng.tensor(3, { dtype: 'int32' })], { grad: true });
  });

  for (const dtype of ['bfloat16', 'float16'] as const) {
    it(`matches the CPU in ${dtype} (lse kept in float32)`, () => {
      for (const C of [3, 1000, 50257]) {
        const N = C > 10000 ? 4 : 16;
        const x = ng.randn([N, C]).requiresGrad_(true);
        const t = targets([N], C, 5);
        compareCpuCuda((a, tt) => F.crossEntropy(a, tt), [x, t], { dtype, grad: true, atol: 5e-2, rtol: 2e-2, gradAtol: 1e-2, gradRtol: 5e-2 });
        compareCpuCuda((a, tt) => F.crossEntropy(a, tt, { labelSmoothing: 0.1, reduction: 'none' }), [x, t],
          { dtype, grad: true, atol: 1e-1, rtol: 2e-2, gradAtol: 1e-2, gradRtol: 5e-2 });
      }
    });
  }

  it('a target out of range raises an Error at the next synchronize, then the device is usable', () => {
    const x = ng.randn([4, 10]).to('cuda');
    expect(() => {
      F.crossEntropy(x, ng.tensor([1, 2, 10, 3], { dtype: 'int32' }).to('cuda'), { reduction: 'none' });
      ng.cuda.synchronize();
    }).toThrow(/crossEntropy: target: index 10 is out of range \[0, 10\)/);
    expect(() => ng.cuda.synchronize()).not.toThrow();
    expect(() => {
      F.crossEntropy(x, ng.tensor([1, -3, 0, 3], { dtype: 'int32' }).to('cuda'));
      ng.cuda.synchronize();
    }).toThrow(/crossEntropy: target: index -3 is out of range/);
    expect(() => {
      F.nllLoss(x, ng.tensor([1, 2, 11, 3], { dtype: 'int32' }).to('cuda'));
      ng.cuda.synchronize();
    }).toThrow(/nllLoss: target: index 11 is out of range/);
  });

  it('rejects float targets and mixed devices with clear messages', () => {
    const x = ng.randn([4, 10]).to('cuda');
    expect(() => F.crossEntropy(x, ng.tensor([1, 2, 3, 4]).to('cuda'))).toThrow(/nodegrad: crossEntropy: targets must be int32/);
    expect(() => F.crossEntropy(x, ng.tensor([1, 2, 3, 4], { dtype: 'int32' }))).toThrow(/nodegrad: crossEntropy/);
  });
});

describeCuda('CUDA nllLoss and BCE with logits', () => {
  ng.manualSeed(8);
  it('nllLoss matches the CPU with ignoreIndex, weights, [N, C, d] and every reduction', () => {
    const x = ng.randn([12, 7]).requiresGrad_(true);
    const t = targets([12], 7, 5);
    const w = ng.rand([7], { low: 0.5, high: 2 });
    for (const reduction of ['mean', 'sum', 'none'] as const) {
      compareCpuCuda((a, tt) => F.nllLoss(a, tt, { reduction }), [x, t], { grad: true });
      compareCpuCuda((a, tt, ww) => F.nllLoss(a, tt, { reduction, weight: ww }), [x, t, w], { grad: true });
    }
    compareCpuCuda((a, tt) => F.nllLoss(a, tt), [ng.randn([2, 5, 3]).requiresGrad_(true), targets([2, 3], 5, 2)], { grad: true });
  });

  it('nllLoss in bfloat16 matches the CPU', () => {
    compareCpuCuda((a, tt) => F.nllLoss(a, tt), [ng.randn([33, 10]).requiresGrad_(true), targets([33], 10)],
      { dtype: 'bfloat16', grad: true });
  });

  it('BCE with logits matches the CPU (posWeight, weight, grads of logits, targets and posWeight)', () => {
    const x = ng.randn([8, 5]).mul(4).requiresGrad_(true);
    const y = ng.rand([8, 5]).requiresGrad_(true);
    const pw = ng.rand([5], { low: 0.5, high: 3 }).requiresGrad_(true);
    for (const reduction of ['mean', 'sum', 'none'] as const) {
      compareCpuCuda((a, b) => F.binaryCrossEntropyWithLogits(a, b, { reduction }), [x, y], { grad: true });
      compareCpuCuda((a, b, p) => F.binaryCrossEntropyWithLogits(a, b, { reduction, posWeight: p }), [x, y, pw], { grad: true });
    }
    compareCpuCuda((a, b) => F.binaryCrossEntropyWithLogits(a, b), [ng.randn([1001]).mul(30).requiresGrad_(true), ng.rand([1001])],
      { grad: true });
  });

  it('BCE with logits in float16 matches the CPU', () => {
    compareCpuCuda((a, b) => F.binaryCrossEntropyWithLogits(a, b, { reduction: 'none' }),
      [ng.randn([64, 3]).requiresGrad_(true), ng.rand([64, 3])], { dtype: 'float16', grad: true, atol: 5e-3 });
  });
});
