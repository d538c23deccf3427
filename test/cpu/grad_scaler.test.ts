// Dynamic loss scaling: scaled steps equal unscaled ones, overflow skips and backs off, growth.
import { describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { expectClose } from '../helpers.js';

function problem(): { w: ng.Tensor; x: ng.Tensor } {
  ng.manualSeed(4);
  return { w: ng.randn([5, 3], { requiresGrad: true }), x: ng.randn([7, 5]) };
}

describe('GradScaler', () => {
  test('a scaled step equals the plain step', () => {
    const a = problem(), b = problem();
    const oa = new ng.optim.AdamW([a.w], { lr: 0.1 }), ob = new ng.optim.AdamW([b.w], { lr: 0.1 });
    const scaler = new ng.optim.GradScaler({ initScale: 1024 });
    scaler.scale(a.x.matmul(a.w).square().mean()).backward();
    expect(scaler.step(oa)).toBe(true);
    scaler.update();
    b.x.matmul(b.w).square().mean().backward();
    ob.step();
    expectClose(a.w, b.w, { atol: 1e-6, rtol: 1e-5 });
  });

  test('unscale_ divides the gradients (for clipping) and step then does not divide again', () => {
    const a = problem();
    const scaler = new ng.optim.GradScaler({ initScale: 256 });
    scaler.scale(a.x.matmul(a.w).sum()).backward();
    const opt = new ng.optim.SGD([a.w], { lr: 0.5 });
    scaler.unscale_(opt);
    const ref = problem();
    ref.x.matmul(ref.w).sum().backward();
    expectClose(a.w.grad!, ref.w.grad!, { atol: 1e-6 });
    expect(() => scaler.unscale_(opt)).toThrow(/nodegrad: GradScaler.unscale_: already called/);
    scaler.step(opt);
    expectClose(a.w, ref.w.detach().sub(ref.w.grad!.mul(0.5)), { atol: 1e-6 });
  });

  test('an overflow skips the step and halves the scale; clean steps grow it', () => {
    const a = problem();
    const opt = new ng.optim.SGD([a.w], { lr: 0.5 });
    const scaler = new ng.optim.GradScaler({ initScale: 8, growthInterval: 2 });
    const before = a.w.dataSync().slice();
    a.w.grad = ng.full([5, 3], Infinity).keep();
    expect(scaler.step(opt)).toBe(false);
    scaler.update();
    expect(Array.from(a.w.dataSync())).toEqual(Array.from(before));
    expect(scaler.getScale()).toBe(4);
    for (let i = 0; i < 2; i++) {
      opt.zeroGrad();
      scaler.scale(a.x.matmul(a.w).sum()).backward();
      expect(scaler.step(opt)).toBe(true);
      scaler.update();
    }
    expect(scaler.getScale()).toBe(8);
    expect(() => new ng.optim.GradScaler({ backoffFactor: 2 })).toThrow(/nodegrad: GradScaler: invalid backoffFactor/);
  });

  test('Trainer with float16 autocast scales the loss and still learns (CPU emulation of the policy)', async () => {
    ng.manualSeed(2);
    const model = new ng.models.GPT({ vocabSize: 10, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16 });
    const data = new ng.data.TokenDataset(Int32Array.from({ length: 400 }, (_, i) => (i * 7 + (i >> 3)) % 10), { seed: 1 });
    const opt = new ng.optim.AdamW(model.parameters(), { lr: 5e-3 });
    const trainer = new ng.train.Trainer({
      model, optimizer: opt, train: data, batchSize: 8, blockSize: 8, maxSteps: 40, progress: 'none',
      autocast: { dtype: 'float16', device: 'cpu' },
    });
    const res = await trainer.fit();
    expect(res.losses.every(Number.isFinite)).toBe(true);
    expect(res.losses[39]).toBeLessThan(res.losses[0] * 0.85);
  });
});

