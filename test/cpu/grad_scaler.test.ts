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
});
