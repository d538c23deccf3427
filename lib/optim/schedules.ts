// Learning-rate schedules: pure functions of the step (lrSchedule) and a scheduler that
// sets an optimizer's group lrs from one (LRScheduler). Step k (0-based) is the k-th
// optimizer update: a scheduler sets the lr for step 0 when it is made and for step
// k + 1 at its k-th step() (PyTorch's convention: call it after optimizer.step()).
//
// Warmup follows Hugging Face's get_*_schedule_with_warmup: for step < warmupSteps the
// lr is lr * step / warmupSteps (so step 0 uses 0), then the decay runs over
// totalSteps - warmupSteps steps (totalSteps counts the warmup):
//   constant  lr
//   cosine    minLr + (lr - minLr) * (1 + cos(pi * progress)) / 2, progress in [0, 1]
//   linear    lr + (minLr - lr) * progress                 (minLr = 0: HF's linear)
//   step      lr * gamma ^ floor((step - warmupSteps) / stepSize)   (PyTorch's StepLR)
// After totalSteps, cosine and linear stay at minLr.

export type LrFn = (step: number) => number;

export interface ScheduleOptions {
  kind: 'constant' | 'cosine' | 'linear' | 'step';
  /** Peak learning rate. Optional for LRScheduler (defaults to the optimizer's lr). */
  lr?: number;
  warmupSteps?: number;
  /** Required for cosine and linear: the step at which the decay reaches minLr. */
  totalSteps?: number;
  /** Floor of cosine and linear decay (default 0). */
  minLr?: number;
  /** step: decay every stepSize steps after warmup, by gamma (default 0.1). */
  stepSize?: number;
  gamma?: number;
}

function bad(what: string, v: unknown, expected: string): never {
  throw new Error(`nodegrad: lrSchedule: invalid ${what} ${JSON.stringify(v)} (expected ${expected})`);
}

function checkStep(step: number, op: string): void {
  if (typeof step !== 'number' || !Number.isFinite(step) || step < 0) {
    throw new Error(`nodegrad: ${op}: step must be a finite number >= 0 (got ${String(step)})`);
  }
}

/**
 * Wraps `fn` (a schedule counted from the end of warmup) with a linear warmup from 0:
 * step < warmupSteps gives fn(0) * step / warmupSteps, later steps fn(step - warmupSteps).
 */
export function withWarmup(fn: LrFn, warmupSteps: number): LrFn {
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0) bad('warmupSteps', warmupSteps, 'an integer >= 0');
  if (warmupSteps === 0) return fn;
  return (step) => {
    checkStep(step, 'lrSchedule');
    return step < warmupSteps ? fn(0) * (step / warmupSteps) : fn(step - warmupSteps);
  };
}

/** The learning rate as a function of the (0-based) step; see the file header for the formulas. */
export function lrSchedule(o: ScheduleOptions & { lr: number }): LrFn {
  if (typeof o !== 'object' || o === null) bad('options', o, 'an object');
  const known = ['kind', 'lr', 'warmupSteps', 'totalSteps', 'minLr', 'stepSize', 'gamma'];
  for (const k of Object.keys(o)) if (!known.includes(k)) bad('option', k, `one of ${known.join(', ')}`);
  const { kind, lr } = o;
  const warmup = o.warmupSteps ?? 0, minLr = o.minLr ?? 0;
  if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) bad('lr', lr, 'a finite number >= 0');
  if (!Number.isInteger(warmup) || warmup < 0) bad('warmupSteps', warmup, 'an integer >= 0');
  if (typeof minLr !== 'number' || !Number.isFinite(minLr) || minLr < 0 || minLr > lr) bad('minLr', minLr, `a number in [0, lr=${lr}]`);
  let decay: LrFn;
  switch (kind) {
    case 'constant':
      decay = () => lr;
      break;
    case 'cosine':
    case 'linear': {
      const total = o.totalSteps;
      if (!Number.isInteger(total) || total! <= warmup) bad('totalSteps', total, `an integer > warmupSteps (${warmup})`);
      const span = total! - warmup;
      decay = kind === 'cosine'
        ? (s) => minLr + (lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, s / span)))
        : (s) => lr + (minLr - lr) * Math.min(1, s / span);
      break;
    }
    case 'step': {
      const stepSize = o.stepSize, gamma = o.gamma ?? 0.1;
      if (!Number.isInteger(stepSize) || stepSize! < 1) bad('stepSize', stepSize, 'an integer >= 1');
      if (typeof gamma !== 'number' || !Number.isFinite(gamma) || gamma < 0) bad('gamma', gamma, 'a finite number >= 0');
      decay = (s) => lr * gamma ** Math.floor(s / stepSize!);
      break;
    }
    default:
      bad('kind', kind, "'constant', 'cosine', 'linear' or 'step'");
  }
  const fn = withWarmup(decay, warmup);
  return (step) => {
    checkStep(step, 'lrSchedule');
    return fn(step);
  };
}

/** What a scheduler needs of an optimizer: mutable group lrs and a default lr. */
export interface SchedulableOptimizer {
  readonly paramGroups: { lr: number }[];
  readonly defaults: { readonly lr: number };
}

export interface LRSchedulerStateDict { lastStep: number; baseLrs: number[] }

/**
 * Sets each parameter group's lr from a schedule. With ScheduleOptions, a group whose
 * lr at construction is base gets base * schedule(step) / peak, where peak is the
 * options' lr (default: the optimizer's default lr), so groups keep their ratios. With
 * a function, the group gets base * fn(step) (PyTorch's LambdaLR).
 */
export class LRScheduler {
  readonly optimizer: SchedulableOptimizer;
  readonly baseLrs: number[];
  /** Number of step() calls so far: the lr now set is the schedule's at this step. */
  lastStep = 0;
  private readonly factor: LrFn;

  constructor(optimizer: SchedulableOptimizer, schedule: ScheduleOptions | LrFn) {
    if (!optimizer || !Array.isArray(optimizer.paramGroups)) {
      throw new Error('nodegrad: LRScheduler: expected an optimizer (an object with paramGroups)');
    }
    this.optimizer = optimizer;
    this.baseLrs = optimizer.paramGroups.map((g) => g.lr);
    if (typeof schedule === 'function') {
      this.factor = schedule;
    } else {
      const peak = schedule.lr ?? optimizer.defaults.lr;
      const fn = lrSchedule({ ...schedule, lr: peak });
      this.factor = peak === 0 ? () => 0 : (s) => fn(s) / peak;
    }
    this.apply();
  }

  private apply(): void {
    const f = this.factor(this.lastStep);
    if (typeof f !== 'number' || !Number.isFinite(f)) {
      throw new Error(`nodegrad: LRScheduler: the schedule gave ${String(f)} at step ${this.lastStep} (expected a finite number)`);
    }
    this.optimizer.paramGroups.forEach((g, i) => { g.lr = this.baseLrs[i] * f; });
  }

  /** Advances one step and sets the groups' lrs for it. */
  step(): void {
    this.lastStep++;
    this.apply();
  }

  /** The lr of each group as last set. */
  getLastLr(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }

  stateDict(): LRSchedulerStateDict {
    return { lastStep: this.lastStep, baseLrs: [...this.baseLrs] };
  }

  loadStateDict(sd: LRSchedulerStateDict): void {
    const op = 'nodegrad: LRScheduler.loadStateDict';
    if (typeof sd !== 'object' || sd === null || !Number.isInteger(sd.lastStep) || sd.lastStep < 0 || !Array.isArray(sd.baseLrs)) {
      throw new Error(`${op}: expected { lastStep: integer >= 0, baseLrs: number[] }`);
    }
    if (sd.baseLrs.some((v) => typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
      throw new Error(`${op}: baseLrs must be finite numbers >= 0 (got ${JSON.stringify(sd.baseLrs)})`);
    }
    if (sd.baseLrs.length !== this.baseLrs.length) {
      throw new Error(`${op}: the state dict has ${sd.baseLrs.length} base lrs, the optimizer has ${this.baseLrs.length} parameter groups`);
    }
    this.lastStep = sd.lastStep;
    sd.baseLrs.forEach((v, i) => { this.baseLrs[i] = v; });
    this.apply();
  }
}

/** Shorthand for new LRScheduler(optimizer, schedule). */
export function lrScheduler(optimizer: SchedulableOptimizer, schedule: ScheduleOptions | LrFn): LRScheduler {
  return new LRScheduler(optimizer, schedule);
}
