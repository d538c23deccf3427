// CUDA embedding against the CPU: gather of rows of any width (vector and byte paths),
// repeated ids, paddingIdx, half dtypes, the deterministic sorted backward, and an id out
// of range reported at the next synchronize.
import { expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { compareCpuCuda, describeCuda } from './helpers.js';

const F = ng.nn.functional;

describeCuda('CUDA embedding', () => {
  ng.manualSeed(3);
  for (const C of [1, 3, 8, 768, 1001]) {
    it(`forward and backward match the CPU for rows of ${C} (repeated ids)`, () => {
      const w = ng.randn([50, C]).requiresGrad_(true);
      const ids = ng.randint(0, 50, [7, 33]);
      compareCpuCuda((i, ww) => F.embedding(i, ww), [ids, w], { grad: true });
    });
  }

  it('paddingIdx rows get no gradient', () => {
    const w = ng.randn([20, 16]).requiresGrad_(true);
    const ids = ng.tensor([[0, 3, 3, 0], [5, 0, 19, 3]], { dtype: 'int32' });
    compareCpuCuda((i, ww) => F.embedding(i, ww, { paddingIdx: 0 }), [ids, w], { grad: true });
    compareCpuCuda((i, ww) => F.embedding(i, ww, { paddingIdx: -1 }), [ids, w], { grad: true });
  });

  for (const dtype of ['bfloat16', 'float16'] as const) {
    it(`forward and backward match the CPU in ${dtype}`, () => {
      const w = ng.randn([100, 64]).requiresGrad_(true);
      const ids = ng.randint(0, 100, [4, 256]);
      compareCpuCuda((i, ww) => F.embedding(i, ww), [ids, w], { grad: true, dtype, gradAtol: 0.2, gradRtol: 5e-2 });
    });
  }

  it('the GPT-2 token-embedding shape (50257 x 768, 8 x 1024 ids) matches the CPU', () => {
    const w = ng.randn([50257, 768]).mul(0.02).requiresGrad_(true);
    const ids = ng.randint(0, 50257, [8, 1024]);
    compareCpuCuda((i, ww) => F.embedding(i, ww), [ids, w], { grad: true, gradAtol: 1e-4 });
  });

  it('the weight gradient is bit-identical run to run (many repeats of few ids)', () => {
    const w = ng.randn([10, 300]).to('cuda').requiresGrad_(true);
    const ids = ng.randint(0, 10, [20000]).to('cuda');
    const gOut = ng.randn([20000, 300]).to('cuda');
    const run = (): number[] => {
      w.grad = null;
      F.embedding(ids, w).mul(gOut).sum().backward();
      return Array.from(w.grad!.dataSync() as Float32Array);
    };
    const a = run();
    expect(run()).toEqual(a);
  });

  it('an id out of range raises an Error at the next synchronize, then the device is usable', () => {
    const w = ng.randn([10, 4]).to('cuda');
    const ids = ng.tensor([1, 2, 10, 3], { dtype: 'int32' }).to('cuda');
    expect(() => {
      F.embedding(ids, w);
      ng.cuda.synchronize();
    }).toThrow(/embedding: index 10 is out of range \[0, 10\)/);
    expect(() => ng.cuda.synchronize()).not.toThrow();
    const neg = ng.tensor([-1], { dtype: 'int32' }).to('cuda');
    expect(() => {
      F.embedding(neg, w);
      ng.cuda.synchronize();
    }).toThrow(/embedding: index -1 is out of range/);
  });

  it('rejects float ids and mixed devices with clear messages', () => {
    const w = ng.randn([10, 4]).to('cuda');
    expect(() => F.embedding(ng.tensor([1, 2]).to('cuda'), w)).toThrow(/nodegrad: embedding: ids must be an int32 tensor/);
    expect(() => F.embedding(ng.tensor([1, 2], { dtype: 'int32' }), w)).toThrow(/nodegrad: embedding/);
  });
});
