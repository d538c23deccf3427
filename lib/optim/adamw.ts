// AdamW (decoupled weight decay, Loshchilov & Hutter) with PyTorch's exact update.
// One native call per step updates every parameter that has a gradient (multi-tensor
// kernel in native/cpu/adamw.cc). State: step (number), expAvg and expAvgSq (Tensors of
// the parameter's shape and dtype), created on a parameter's first update.
//
// Weight decay applies to every parameter passed in, as in PyTorch. To exempt biases
// and norm weights (as nanoGPT and Hugging Face do), pass paramGroupsForDecay(...).
import type { TypedArray } from '../dtype.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { zeros } from '../ops/creation.js';
import {
  Optimizer, checkNumber, gradScaleOf, type ParamGroupInput, type ParamsArg, type StepOptions,
} from './optimizer.js';

export type AdamWHyper = {
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
};

export interface AdamWOptions {
  lr?: number;
  betas?: readonly [number, number];
  eps?: number;
  weightDecay?: number;
  /** Not supported: passing true throws. */
  amsgrad?: boolean;
  /** Not supported: passing true throws. */
  maximize?: boolean;
}

export class AdamW extends Optimizer<AdamWHyper> {
  constructor(params: ParamsArg<AdamWHyper>, opts: AdamWOptions = {}) {
    const known = ['lr', 'betas', 'eps', 'weightDecay', 'amsgrad', 'maximize'];
    for (const k of Object.keys(opts)) {
      if (!known.includes(k)) throw new Error(`nodegrad: AdamW: unknown option '${k}' (known: ${known.join(', ')})`);
    }
    if (opts.amsgrad) throw new Error('nodegrad: AdamW: amsgrad is not supported');
    if (opts.maximize) throw new Error('nodegrad: AdamW: maximize is not supported');
    const betas = opts.betas ?? [0.9, 0.999];
    super('AdamW', params, {
      lr: opts.lr ?? 1e-3,
      betas: Array.isArray(betas) ? [betas[0], betas[1]] as const : betas,
      eps: opts.eps ?? 1e-8,
      weightDecay: opts.weightDecay ?? 0.01,
    });
  }

  protected validateGroup(g: AdamWHyper): void {
    checkNumber('AdamW', 'learning rate', g.lr, 0);
    checkNumber('AdamW', 'epsilon', g.eps, 0);
    checkNumber('AdamW', 'weight decay', g.weightDecay, 0);
    if (!Array.isArray(g.betas) || g.betas.length !== 2) {
      throw new Error(`nodegrad: AdamW: betas must be a pair [beta1, beta2] (got ${JSON.stringify(g.betas)})`);
    }
    checkNumber('AdamW', 'beta1', g.betas[0], 0, 1);
    checkNumber('AdamW', 'beta2', g.betas[1], 0, 1);
  }

  protected stateKeys(): { tensors: string[]; numbers: string[] } {
    return { tensors: ['expAvg', 'expAvgSq'], numbers: ['step'] };
  }

  /** One update of every parameter that has a gradient (parameters without one are skipped). */
  step(opts?: StepOptions): void {
    const gradScale = gradScaleOf('AdamW', opts);
    const ps: TypedArray[] = [], gs: TypedArray[] = [], ms: TypedArray[] = [], vs: TypedArray[] = [];
    const offsets: number[] = [], numels: number[] = [], lrs: number[] = [], wds: number[] = [];
    const b1: number[] = [], b2: number[] = [], eps: number[] = [], steps: number[] = [];
    const updated: Tensor[] = [];
    const temps: Tensor[] = [];
    try {
      for (const group of this.paramGroups) {
        this.validateGroup(group);
        for (const p of group.params) {
          if (p.grad === null) continue;
          const pa = this.paramArg(p);
          const { arg: ga, temp } = this.gradArg(p);
          if (temp) temps.push(temp);
          const s = this.stateFor(p, () => ({
            step: 0,
            expAvg: zeros(p.shape, { dtype: p.dtype }),
            expAvgSq: zeros(p.shape, { dtype: p.dtype }),
          }));
          const m = s.expAvg as Tensor, v = s.expAvgSq as Tensor;
          ps.push(pa.data); gs.push(ga.data); ms.push(m.storage.data); vs.push(v.storage.data);
          offsets.push(pa.offset, ga.offset, m.offset, v.offset);
          numels.push(pa.numel);
          lrs.push(group.lr); wds.push(group.weightDecay);
          b1.push(group.betas[0]); b2.push(group.betas[1]); eps.push(group.eps);
          steps.push((s.step as number) + 1);
          updated.push(p);
        }
      }
      if (updated.length === 0) return;
      native.adamwStep(ps, gs, ms, vs, offsets, numels, lrs, wds, b1, b2, eps, steps, gradScale);
      for (const p of updated) {
        const s = this.state.get(p)!;
        s.step = (s.step as number) + 1;
      }
    } finally {
      for (const t of temps) t.dispose();
    }
  }
}

/**
 * Two parameter groups for AdamW: [decayed, not decayed]. Tensors with fewer than 2 dims
 * (biases, LayerNorm weights) and names ending in 'bias' get weightDecay 0; the rest
 * (matmul weights, embeddings) get `weightDecay`. Parameters that do not require grad
 * are left out.
 */
export function paramGroupsForDecay(namedParameters: Iterable<readonly [string, Tensor]>, weightDecay: number):
  ParamGroupInput<AdamWHyper>[] {
  checkNumber('paramGroupsForDecay', 'weight decay', weightDecay, 0);
  const decay: Tensor[] = [], noDecay: Tensor[] = [];
  for (const [name, p] of namedParameters) {
    if (!p.requiresGrad) continue;
    if (p.ndim < 2 || name.endsWith('bias')) noDecay.push(p);
    else decay.push(p);
  }
  return [{ params: decay, weightDecay }, { params: noDecay, weightDecay: 0 }];
}
