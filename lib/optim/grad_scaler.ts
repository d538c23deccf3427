// Dynamic loss scaling for float16 training (torch.cuda.amp.GradScaler): the loss is
// multiplied by a large factor before backward so small float16 gradients do not flush
// to zero; the step divides it out (folded into the optimizer kernel's gradScale) and is
// skipped when any gradient overflowed, in which case the factor shrinks; after
// growthInterval clean steps it grows again.
import type { Tensor } from '../tensor.js';
import { clipGradNorm } from './clip.js';
import type { StepOptions } from './optimizer.js';

export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
  /** false makes every method a pass-through (same code with and without fp16). */
  enabled?: boolean;
}

interface ScalableOptimizer {
  step(opts?: StepOptions): void;
  readonly paramGroups: readonly { readonly params: readonly Tensor[] }[];
}

export class GradScaler {
  private scaleFactor: number;
  private readonly growth: number;
  private readonly backoff: number;
  private readonly interval: number;
  readonly enabled: boolean;
  private goodSteps = 0;
  private unscaled = new WeakSet<object>();
  private foundInf = false;

  constructor(opts: GradScalerOptions = {}) {
    this.scaleFactor = opts.initScale ?? 2 ** 16;
    this.growth = opts.growthFactor ?? 2;
    this.backoff = opts.backoffFactor ?? 0.5;
    this.interval = opts.growthInterval ?? 2000;
    this.enabled = opts.enabled ?? true;
    const bad = (n: string, v: number, ok: boolean): void => {
      if (typeof v !== 'number' || !Number.isFinite(v) || !ok) throw new Error(`nodegrad: GradScaler: invalid ${n} (got ${String(v)})`);
    };
    bad('initScale', this.scaleFactor, this.scaleFactor > 0);
    bad('growthFactor', this.growth, this.growth > 1);
    bad('backoffFactor', this.backoff, this.backoff > 0 && this.backoff < 1);
    bad('growthInterval', this.interval, Number.isInteger(this.interval) && this.interval >= 1);
  }

  /** The current loss scale. */
  getScale(): number {
    return this.enabled ? this.scaleFactor : 1;
  }

  /** loss * scale (call backward() on the result). */
  scale(loss: Tensor): Tensor {
    return this.enabled ? loss.mul(this.scaleFactor) : loss;
  }

  private paramsWithGrad(opt: ScalableOptimizer): Tensor[] {
    const out: Tensor[] = [];
    for (const g of opt.paramGroups) for (const p of g.params) if (p.grad) out.push(p);
    return out;
  }

  /** Divides the gradients by the scale now (before clipping them); reads whether any overflowed. */
  unscale_(opt: ScalableOptimizer): void {
    if (!this.enabled) return;
    if (this.unscaled.has(opt)) throw new Error('nodegrad: GradScaler.unscale_: already called for this optimizer since the last update()');
    const params = this.paramsWithGrad(opt);
    const norm = clipGradNorm(params, Infinity);
    if (!Number.isFinite(norm)) this.foundInf = true;
    else for (const p of params) p.grad!.mul_(1 / this.scaleFactor);
    this.unscaled.add(opt);
  }

  /** Steps the optimizer with the gradients unscaled, unless one overflowed. Returns whether it stepped. */
  step(opt: ScalableOptimizer, opts: StepOptions = {}): boolean {
    if (!this.enabled) {
      opt.step(opts);
      return true;
    }
    if (!this.unscaled.has(opt)) {
      const norm = clipGradNorm(this.paramsWithGrad(opt), Infinity);
      if (!Number.isFinite(norm)) this.foundInf = true;
    }
    if (this.foundInf) return false;
    const already = this.unscaled.has(opt);
    opt.step({ ...opts, gradScale: (opts.gradScale ?? 1) * (already ? 1 : 1 / this.scaleFactor) });
    return true;
  }

  /** Adjusts the scale after a step: shrink after an overflow, grow after growthInterval clean steps. */
  update(): void {
    if (!this.enabled) return;
    if (this.foundInf) {
      this.scaleFactor *= this.backoff;
      this.goodSteps = 0;
    } else if (++this.goodSteps >= this.interval) {
      this.scaleFactor *= this.growth;
      this.goodSteps = 0;
    }
    this.foundInf = false;
    this.unscaled = new WeakSet();
  }

  stateDict(): { scale: number; goodSteps: number } {
    return { scale: this.scaleFactor, goodSteps: this.goodSteps };
  }
  loadStateDict(s: { scale: number; goodSteps: number }): void {
    this.scaleFactor = s.scale;
    this.goodSteps = s.goodSteps;
  }
}
