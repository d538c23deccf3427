// CUDA indexing against the CPU: gather / scatterAdd / indexSelect / indexAdd along every
// dim with strided (transposed) inputs, int32 and half values, gradients (which use the
// scatter kernels), topk for small and vocabulary-sized lines, k up to 1024, smallest,
// ties and NaN; and indices out of range reported at the next synchronize.
import { expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { compareCpuCuda, describeCuda } from './helpers.js';

describeCuda('CUDA gather / scatterAdd / indexSelect / indexAdd', () => {
  ng.manualSeed(21);
  const shape = [5, 7, 9];

  it('gather along every dim matches the CPU, forward and backward (scatterAdd)', () => {
    for (let d = 0; d < 3; d++) {
      const x = ng.randn(shape).requiresGrad_(true);
      const ishape = [4, 6, 8];
      ishape[d] = 11;  // more picks than the dim holds: repeats
      const idx = ng.randint(0, shape[d], ishape);
      compareCpuCuda((a, i) => ng.gather(a, d, i), [x, idx], { grad: true });
    }
  });

  it('gather reads strided inputs and strided indices', () => {
    const x = ng.randn([9, 6]).requiresGrad_(true);
    const idx = ng.randint(0, 9, [6, 5]);
    compareCpuCuda((a, i) => ng.gather(a.T, 1, i.T), [x, idx], { grad: true });
  });

  it('scatterAdd along every dim matches the CPU (repeated targets, deterministic)', () => {
    for (let d = 0; d < 3; d++) {
      const x = ng.randn(shape).requiresGrad_(true);
      const ishape = [5, 7, 9];
      ishape[d] = 13;
      const src = ng.randn(ishape).requiresGrad_(true);
      const idx = ng.randint(0, shape[d], ishape);
      compareCpuCuda((a, i, s) => ng.scatterAdd(a, d, i, s), [x, idx, src], { grad: true });
    }
  });

  it('indexSelect and indexAdd along every dim match the CPU, forward and backward', () => {
    for (let d = 0; d < 3; d++) {
      const x = ng.randn(shape).requiresGrad_(true);
      const idx = ng.randint(0, shape[d], [12]);
      compareCpuCuda((a, i) => ng.indexSelect(a, d, i), [x, idx], { grad: true });
      const sshape = [...shape];
      sshape[d] = 12;
      const src = ng.randn(sshape).requiresGrad_(true);
      compareCpuCuda((a, i, s) => ng.indexAdd(a, d, i, s), [x, idx, src], { grad: true });
    }
    compareCpuCuda((a, i) => ng.indexSelect(a.T, 0, i), [ng.randn([30, 20]), ng.randint(0, 20, [50])]);
  });

  it('int32 and half values are gathered and scattered exactly / like the CPU', () => {
    const xi = ng.randint(-100, 100, [6, 8]);
    const idx = ng.randint(0, 8, [6, 5]);
    compareCpuCuda((a, i) => ng.gather(a, 1, i), [xi, idx]);
    compareCpuCuda((a, i) => ng.indexSelect(a, 0, i), [xi, ng.randint(0, 6, [9])]);
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const x = ng.randn([6, 8]).requiresGrad_(true);
      compareCpuCuda((a, i) => ng.gather(a, 1, i), [x, idx], { dtype, grad: true });
      compareCpuCuda((a, i) => ng.indexSelect(a, 1, i), [x, ng.randint(0, 8, [20])], { dtype, grad: true });
    }
  });

  it('an index out of range raises an Error at the next synchronize, then the device is usable', () => {
    const x = ng.randn([3, 4]).to('cuda');
    const cases: [() => unknown, RegExp][] = [
      [() => ng.gather(x, 1, ng.tensor([[0, 4]], { dtype: 'int32' }).to('cuda')), /gather: index 4 is out of range \[0, 4\)/],
      [() => ng.indexSelect(x, 0, ng.tensor([0, -1], { dtype: 'int32' }).to('cuda')), /indexSelect: index -1 is out of range \[0, 3\)/],
      [() => ng.scatterAdd(x, 0, ng.tensor([[3, 0, 0, 0]], { dtype: 'int32' }).to('cuda'), ng.ones([1, 4]).to('cuda')),
        /scatterAdd: index 3 is out of range \[0, 3\)/],
      [() => ng.indexAdd(x, 1, ng.tensor([7], { dtype: 'int32' }).to('cuda'), ng.ones([3, 1]).to('cuda')),
        /indexAdd: index 7 is out of range \[0, 4\)/],
    ];
    for (const [fn, re] of cases) {
      expect(() => {
        fn();
        ng.cuda.synchronize();
      }).toThrow(re);
      expect(() => ng.cuda.synchronize()).not.toThrow();
    }
  });

  it('shape and dtype errors carry the CPU messages', () => {
    const x = ng.randn([3, 4]).to('cuda');
    expect(() => ng.gather(x, 1, ng.tensor([[0.5]]).to('cuda'))).toThrow(/nodegrad: gather: index must be an int32 tensor/);
    expect(() => ng.gather(x, 1, ng.tensor([0], { dtype: 'int32' }).to('cuda'))).toThrow(/nodegrad: gather: index must have as many dims/);
    expect(() => ng.indexSelect(x, 0, ng.tensor([[0]], { dtype: 'int32' }).to('cuda'))).toThrow(/nodegrad: indexSelect: index must be 1-D/);
  });
});

describeCuda('CUDA topk', () => {
  ng.manualSeed(22);
  it('matches the CPU for small lines, every dim, largest and smallest', () => {
    const x = ng.randn([6, 9, 5]);
    for (let d = 0; d < 3; d++) {
      for (const k of [1, 3, x.shape[d]]) {
        for (const largest of [true, false]) {
          compareCpuCuda((a) => ng.topk(a, k, { dim: d, largest }) as unknown as Record<string, ng.Tensor>, [x]);
        }
      }
    }
  });

  it('matches the CPU for long lines (one chunk, several chunks, vocabulary size) and k up to 1024', () => {
    for (const [n, k] of [[2048, 1024], [2049, 1], [5000, 40], [50257, 50], [50257, 1024], [100000, 7]]) {
      const x = ng.randn([3, n]);
      compareCpuCuda((a) => ng.topk(a, k) as unknown as Record<string, ng.Tensor>, [x]);
      compareCpuCuda((a) => ng.topk(a, k, { largest: false }) as unknown as Record<string, ng.Tensor>, [x]);
    }
  });

  it('ties go to the lower index and NaN ranks above every number', () => {
    const x = ng.tensor([[1, 3, 3, 0, 3], [NaN, 5, NaN, 9, -1], [2, 2, 2, 2, 2]]);
    for (const k of [1, 2, 3, 5]) {
      compareCpuCuda((a) => ng.topk(a, k) as unknown as Record<string, ng.Tensor>, [x]);
      compareCpuCuda((a) => ng.topk(a, k, { largest: false }) as unknown as Record<string, ng.Tensor>, [x]);
    }
  });

  it('int32 values, strided input, and the gradient (scatterAdd into the picked positions)', () => {
    compareCpuCuda((a) => ng.topk(a, 4) as unknown as Record<string, ng.Tensor>, [ng.randint(-1000, 1000, [5, 300])]);
    compareCpuCuda((a) => ng.topk(a.T, 3) as unknown as Record<string, ng.Tensor>, [ng.randn([40, 6])]);
    compareCpuCuda((a) => ng.topk(a, 5).values, [ng.randn([4, 100]).requiresGrad_(true)], { grad: true });
  });

  it('unsorted results hold the same set as the CPU', () => {
    const x = ng.randn([4, 3000]);
    const cpu = ng.topk(x, 20, { sorted: false });
    const gpu = ng.topk(x.to('cuda'), 20, { sorted: false });
    const sortRows = (t: ng.Tensor): number[][] => (t.tolist() as number[][]).map((r) => [...r].sort((a, b) => a - b));
    expect(sortRows(gpu.indices.cpu())).toEqual(sortRows(cpu.indices));
  });

  it('k above 1024 is refused with a clear Error', () => {
    expect(() => ng.topk(ng.randn([2, 3000]).to('cuda'), 1025)).toThrow(/nodegrad: topk: k 1025 is too large for the CUDA kernel/);
  });
});
