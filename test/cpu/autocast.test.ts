// Mixed precision: autocast's policy, the CPU's half matmul (float32 accumulation, one
// rounding) that serves as the reference for the GPU's, and a GPT step under autocast.
import { describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { expectClose } from '../helpers.js';

const cpu = { device: 'cpu' as const };

describe('autocast', () => {
  test('bfloat16 matmul on the CPU equals the float32 product of the rounded inputs, rounded once', () => {
    ng.manualSeed(1);
    const a = ng.randn([7, 33]), b = ng.randn([33, 5]);
    const ab = a.to('bfloat16'), bb = b.to('bfloat16');
    const got = ab.matmul(bb);
    expect(got.dtype).toBe('bfloat16');
    const ref = ab.float().matmul(bb.float()).to('bfloat16');
    expect(Array.from(got.dataSync() as Uint16Array)).toEqual(Array.from(ref.dataSync() as Uint16Array));
    const h = a.to('float16').matmul(b.to('float16'));
    expect(h.dtype).toBe('float16');
    expectClose(h.float(), a.matmul(b), { atol: 2e-2, rtol: 1e-2 });
  });

  test('linear and matmul run in the autocast dtype; gradients reach float32 parameters in float32', () => {
    ng.manualSeed(2);
    const lin = new ng.nn.Linear(16, 8);
    const x = ng.randn([4, 16], { requiresGrad: true });
    const y = ng.autocast({ dtype: 'bfloat16', ...cpu }, () => lin.forward(x));
    expect(y.dtype).toBe('bfloat16');
    y.float().sum().backward();
    expect(lin.weight.grad!.dtype).toBe('float32');
    expect(x.grad!.dtype).toBe('float32');
    const x2 = x.detach().requiresGrad_(true);
    const w2 = lin.weight.detach().requiresGrad_(true);
    ng.linear(x2, w2, lin.bias!.detach()).sum().backward();
    expectClose(lin.weight.grad!, w2.grad!, { atol: 3e-2, rtol: 2e-2 });
    expectClose(x.grad!, x2.grad!, { atol: 3e-2, rtol: 2e-2 });
    expectClose(y.float(), ng.linear(x.detach(), lin.weight.detach(), lin.bias!.detach()), { atol: 5e-2, rtol: 2e-2 });
  });

  test('softmax and losses run in float32 inside autocast', () => {
    const x = ng.randn([3, 10]).to('bfloat16');
    ng.autocast({ ...cpu }, () => {
      expect(ng.softmax(x, -1).dtype).toBe('float32');
      expect(ng.nn.functional.crossEntropy(x, ng.tensor([1, 2, 3], { dtype: 'int32' })).dtype).toBe('float32');
    });
  });

  test('a parameter used twice in a region is cast once and gets both gradients', () => {
    const w = ng.randn([6, 6], { requiresGrad: true });
    const x = ng.randn([2, 6]);
    ng.autocast({ ...cpu }, () => x.matmul(w).matmul(w).float().sum()).backward();
    const w2 = w.detach().requiresGrad_(true);
    x.matmul(w2).matmul(w2).sum().backward();
    expectClose(w.grad!, w2.grad!, { atol: 0.1, rtol: 3e-2 });
  });

  test('the policy applies only to its device; enabled: false turns it off; bad options are Errors', () => {
    const a = ng.randn([2, 2]);
    expect(ng.autocast({ device: 'cuda' }, () => a.matmul(a)).dtype).toBe('float32');
    expect(ng.autocast({ ...cpu, enabled: false }, () => a.matmul(a)).dtype).toBe('float32');
    expect(ng.isAutocastEnabled()).toBe(false);
    expect(() => ng.autocast({ dtype: 'int8' as never }, () => 0)).toThrow(/nodegrad: autocast: dtype/);
  });

  test('a GPT step under bfloat16 autocast: float32 loss close to the float32 step, float32 gradients', () => {
    ng.manualSeed(3);
    const model = new ng.models.GPT({ vocabSize: 40, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32 });
    const ids = ng.randint(0, 40, [2, 16]), tg = ng.randint(0, 40, [2, 16]);
    const ref = model.forward(ids, { targets: tg }).loss!.item();
    const loss = ng.autocast({ ...cpu }, () => model.forward(ids, { targets: tg }).loss!);
    expect(loss.dtype).toBe('float32');
    expect(Math.abs(loss.item() - ref)).toBeLessThan(0.02 * ref);
    loss.backward();
    for (const p of model.parameters()) {
      expect(p.grad?.dtype).toBe('float32');
    }
  });
});
