import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import * as optim from '../../lib/optim/index.js';
import type { Tensor } from '../../lib/index.js';

const param = (n: number): Tensor => ng.zeros([n]).requiresGrad_();

function expectValues(fn: optim.LrFn, at: Record<number, number>): void {
  for (const [step, want] of Object.entries(at)) expect(fn(Number(step)), `step ${step}`).toBeCloseTo(want, 12);
}

describe('lrSchedule', () => {
  it('cosine decays to minLr after a linear warmup from 0', () => {
    const fn = optim.lrSchedule({ kind: 'cosine', lr: 1, warmupSteps: 10, totalSteps: 110, minLr: 0.1 });
    expectValues(fn, { 0: 0, 5: 0.5, 9: 0.9, 10: 1, 35: 0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI / 4)), 60: 0.55, 110: 0.1, 500: 0.1 });
  });

  it('linear decays to minLr (0 by default, as Hugging Face)', () => {
    const fn = optim.lrSchedule({ kind: 'linear', lr: 2e-3, totalSteps: 100 });
    expectValues(fn, { 0: 2e-3, 25: 1.5e-3, 50: 1e-3, 100: 0, 150: 0 });
    const floor = optim.lrSchedule({ kind: 'linear', lr: 1, warmupSteps: 4, totalSteps: 14, minLr: 0.5 });
    expectValues(floor, { 2: 0.5, 4: 1, 9: 0.75, 14: 0.5, 20: 0.5 });
  });

  it('step decay multiplies by gamma every stepSize steps after warmup', () => {
    const fn = optim.lrSchedule({ kind: 'step', lr: 1, stepSize: 10, gamma: 0.5, warmupSteps: 5 });
    expectValues(fn, { 0: 0, 3: 0.6, 5: 1, 14: 1, 15: 0.5, 24: 0.5, 25: 0.25, 45: 0.0625 });
    expectValues(optim.lrSchedule({ kind: 'step', lr: 1, stepSize: 3 }), { 2: 1, 3: 0.1 });
  });

  it('constant stays at lr, with or without warmup', () => {
    expectValues(optim.lrSchedule({ kind: 'constant', lr: 0.3 }), { 0: 0.3, 1000: 0.3 });
    expectValues(optim.lrSchedule({ kind: 'constant', lr: 0.3, warmupSteps: 3 }), { 0: 0, 1: 0.1, 3: 0.3 });
  });

  it('withWarmup composes a linear warmup with any schedule', () => {
    const fn = optim.withWarmup((s) => 1 / (1 + s), 4);
    expectValues(fn, { 0: 0, 2: 0.5, 4: 1, 5: 0.5, 7: 0.25 });
  });

  it('rejects bad options and steps', () => {
    expect(() => optim.lrSchedule({ kind: 'cosine', lr: 1 })).toThrow(/nodegrad: lrSchedule: invalid totalSteps undefined/);
    expect(() => optim.lrSchedule({ kind: 'cosine', lr: 1, warmupSteps: 10, totalSteps: 10 })).toThrow(/invalid totalSteps 10 \(expected an integer > warmupSteps \(10\)\)/);
    expect(() => optim.lrSchedule({ kind: 'exp' as never, lr: 1 })).toThrow(/invalid kind "exp"/);
    expect(() => optim.lrSchedule({ kind: 'linear', lr: 1, totalSteps: 5, minLr: 2 })).toThrow(/invalid minLr 2/);
    expect(() => optim.lrSchedule({ kind: 'constant', lr: -1 })).toThrow(/invalid lr -1/);
    expect(() => optim.lrSchedule({ kind: 'step', lr: 1 })).toThrow(/invalid stepSize/);
    expect(() => optim.lrSchedule({ kind: 'constant', lr: 1, warmup: 3 } as never)).toThrow(/invalid option "warmup"/);
    expect(() => optim.lrSchedule({ kind: 'constant', lr: 1 })(-1)).toThrow(/nodegrad: lrSchedule: step must be a finite number >= 0/);
  });
});

describe('LRScheduler', () => {
  it('sets every group lr, keeping the groups\' ratios, and advances with step()', () => {
    const opt = new optim.AdamW([{ params: [param(2)] }, { params: [param(3)], lr: 2e-3 }], { lr: 1e-3 });
    const sched = new optim.LRScheduler(opt, { kind: 'cosine', warmupSteps: 2, totalSteps: 6, minLr: 1e-4 });
    expect(sched.getLastLr()).toEqual([0, 0]);
    sched.step();
    expect(sched.getLastLr()[0]).toBeCloseTo(5e-4, 15);
    expect(sched.getLastLr()[1]).toBeCloseTo(1e-3, 15);
    sched.step();
    expect(sched.getLastLr()).toEqual([1e-3, 2e-3]);
    for (let i = 0; i < 4; i++) sched.step();
    expect(sched.getLastLr()[0]).toBeCloseTo(1e-4, 15);
    expect(sched.getLastLr()[1]).toBeCloseTo(2e-4, 15);
    expect(opt.paramGroups.map((g) => g.lr)).toEqual(sched.getLastLr());
  });

  it('the optimizer uses the scheduled lr', () => {
    const p = param(3);
    const opt = new optim.SGD([p], { lr: 1 });
    const sched = optim.lrScheduler(opt, { kind: 'linear', warmupSteps: 1, totalSteps: 3 });
    const grad = (): void => { p.grad = ng.ones([3]); };
    const seen: number[] = [];
    for (let i = 0; i < 4; i++) {
      grad();
      const before = (p.dataSync() as Float32Array)[0];
      opt.step();
      seen.push(before - (p.dataSync() as Float32Array)[0]);
      sched.step();
    }
    expect(seen).toEqual([0, 1, 0.5, 0]);
  });

  it('a function schedule multiplies each group\'s base lr (LambdaLR)', () => {
    const opt = new optim.SGD([{ params: [param(1)], lr: 0.1 }, { params: [param(1)], lr: 1 }]);
    const sched = new optim.LRScheduler(opt, (s) => 0.5 ** s);
    sched.step();
    sched.step();
    expect(sched.getLastLr()).toEqual([0.025, 0.25]);
  });

  it('state dict round-trip resumes the schedule', () => {
    const mk = (): optim.SGD => new optim.SGD([param(2)], { lr: 0.1 });
    const opt = mk();
    const sched = new optim.LRScheduler(opt, { kind: 'step', stepSize: 2, gamma: 0.5 });
    for (let i = 0; i < 5; i++) sched.step();
    const sd = JSON.parse(JSON.stringify(sched.stateDict()));
    expect(sd).toEqual({ lastStep: 5, baseLrs: [0.1] });
    const opt2 = mk();
    const sched2 = new optim.LRScheduler(opt2, { kind: 'step', stepSize: 2, gamma: 0.5 });
    sched2.loadStateDict(sd);
    expect(sched2.getLastLr()).toEqual(sched.getLastLr());
    sched.step();
    sched2.step();
    expect(sched2.getLastLr()).toEqual(sched.getLastLr());
    expect(sched2.getLastLr()[0]).toBeCloseTo(0.0125, 15);
    expect(() => sched2.loadStateDict({ lastStep: 1, baseLrs: [0.1, 0.2] })).toThrow(/nodegrad: LRScheduler.loadStateDict: the state dict has 2 base lrs, the optimizer has 1 parameter groups/);
    expect(() => sched2.loadStateDict({ lastStep: -1, baseLrs: [0.1] })).toThrow(/expected \{ lastStep: integer >= 0/);
  });

  it('reports a schedule that returns a non-finite value', () => {
    const opt = new optim.SGD([param(1)], { lr: 0.1 });
    expect(() => new optim.LRScheduler(opt, () => NaN)).toThrow(/nodegrad: LRScheduler: the schedule gave NaN at step 0/);
  });
});
