// AdamW (decoupled weight decay, Loshchilov & Hutter) with PyTorch's exact update.
// One native call per step updates every parameter that has a gradient (multi-tensor
// kernel in native/cpu/adamw.cc). State: step (number), expAvg and expAvgSq (Tensors of
// the parameter's shape and dtype), created on a parameter's first update.
//
// Weight decay applies to every parameter passed in, as in PyTorch. To exempt biases
// and norm weights (as nanoGPT and Hugging Face do), pass paramGroupsForDecay(...).
//
// On CUDA (parameters, gradients and state on one device, float32) the default `fused`
// step is ONE kernel launch for every parameter of every group (cuda/adamw.cu), with an
// optional bf16/f16 model copy written in the same pass (setModelCopy) and an optional
// global-norm clip computed on the device and read by the kernel, with no host sync
// (step({ maxGradNorm })).
import type { TypedArray } from '../dtype.js';
import { keep } from '../memory.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { empty } from '../ops/alloc.js';
import { fmt, show } from '../ops/check.js';
import { cast } from '../ops/elementwise.js';
import { tensor, zeros } from '../ops/creation.js';
import { noGrad } from '../autograd.js';
import {
  Optimizer, checkNumber, gradScaleOf, type ParamGroupInput, type ParamsArg, type StepOptions,
} from './optimizer.js';
import './clip.js';

declare module '../native.js' {
  interface NativeAddon {
    // CUDA extras: bf16/f16 model copies written in the same pass, and a device float
    // (the clip coefficient) multiplied into gradScale by the kernel.
    adamwStep(params: TypedArray[], grads: TypedArray[], expAvg: TypedArray[], expAvgSq: TypedArray[],
      offsets: number[], numels: number[], lrs: number[], weightDecays: number[],
      beta1: number | number[], beta2: number | number[], eps: number | number[], steps: number[], gradScale: number,
      options?: { modelCopies?: (TypedArray | null)[] | null; scaleFactor?: TypedArray | null }): void;
  }
}

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
  /**
   * CUDA: one kernel launch updates every parameter (default true). false: one launch
   * per parameter (same results; for comparison). The CPU always uses its multi-tensor
   * kernel.
   */
  fused?: boolean;
}

export interface AdamWStepOptions extends StepOptions {
  /**
   * Clip the update to this global gradient norm (PyTorch's clip_grad_norm_ folded into
   * the step): the L2 norm of all gradients (times gradScale) is computed on the device
   * and the kernel scales the gradients by min(1, maxGradNorm / (norm + 1e-6)) as it
   * reads them; the stored .grad tensors are left unchanged. The norm is kept in
   * `lastGradNorm` (a 1-element tensor on the parameters' device; reading it syncs).
   */
  maxGradNorm?: number;
}

export class AdamW extends Optimizer<AdamWHyper> {
  /** Whether CUDA steps use the single-launch multi-tensor kernel. */
  readonly fused: boolean;
  /** The global gradient norm of the last step({ maxGradNorm }) (null before). */
  lastGradNorm: Tensor | null = null;
  private clipCoef: Tensor | null = null;
  private readonly copies = new Map<Tensor, Tensor>();

  constructor(params: ParamsArg<AdamWHyper>, opts: AdamWOptions = {}) {
    const known = ['lr', 'betas', 'eps', 'weightDecay', 'amsgrad', 'maximize', 'fused'];
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
    if (opts.fused !== undefined && typeof opts.fused !== 'boolean') {
      throw new Error(`nodegrad: AdamW: fused must be a boolean (got ${String(opts.fused)})`);
    }
    this.fused = opts.fused ?? true;
  }

  /**
   * Keeps `copy` (bfloat16 or float16, the parameter's shape and device, contiguous) equal
   * to the parameter after every step: fp32 master weights with a low-precision model
   * copy. On CUDA the fused kernel writes it in the same pass; on the CPU it is a cast.
   * null removes the copy.
   */
  setModelCopy(param: Tensor, copy: Tensor | null): void {
    const op = 'AdamW.setModelCopy';
    if (!this.paramGroups.some((g) => g.params.includes(param))) throw new Error(`nodegrad: ${op}: the tensor is not a parameter of this optimizer`);
    if (copy === null) { this.copies.delete(param); return; }
    copy.assertLive(op);
    if (copy.dtype !== 'bfloat16' && copy.dtype !== 'float16') throw new Error(`nodegrad: ${op}: the copy must be bfloat16 or float16 (got ${copy.dtype})`);
    if (fmt(copy.shape) !== fmt(param.shape)) throw new Error(`nodegrad: ${op}: the copy has shape ${fmt(copy.shape)}, the parameter ${fmt(param.shape)}`);
    if (copy.device !== param.device) throw new Error(`nodegrad: ${op}: the copy is on ${copy.device}, the parameter on ${param.device}`);
    if (!copy.isContiguous()) throw new Error(`nodegrad: ${op}: the copy must be contiguous`);
    for (const [p, c] of this.copies) {
      if (p !== param && c !== copy && c.dtype !== copy.dtype) throw new Error(`nodegrad: ${op}: every model copy must have one dtype (got ${c.dtype} and ${copy.dtype})`);
    }
    this.copies.set(param, copy);
  }

  protected validateGroup(g: AdamWHyper): void {
    checkNumber('AdamW', 'learning rate', g.lr, 0);
    checkNumber('AdamW', 'epsilon', g.eps, 0);
    checkNumber('AdamW', 'weight decay', g.weightDecay, 0);
    if (!Array.isArray(g.betas) || g.betas.length !== 2) {
      throw new Error(`nodegrad: AdamW: betas must be a pair [beta1, beta2] (got ${show(g.betas)})`);
    }
    checkNumber('AdamW', 'beta1', g.betas[0], 0, 1);
    checkNumber('AdamW', 'beta2', g.betas[1], 0, 1);
  }

  protected stateKeys(): { tensors: string[]; numbers: string[] } {
    return { tensors: ['expAvg', 'expAvgSq'], numbers: ['step'] };
  }

  /** One update of every parameter that has a gradient (parameters without one are skipped). */
  step(opts?: AdamWStepOptions): void {
    let gradScale = gradScaleOf('AdamW', opts);
    const maxGradNorm = opts?.maxGradNorm;
    if (maxGradNorm !== undefined) checkNumber('AdamW', 'maxGradNorm', maxGradNorm, 0);
    const ps: TypedArray[] = [], gs: TypedArray[] = [], ms: TypedArray[] = [], vs: TypedArray[] = [];
    const offsets: number[] = [], numels: number[] = [], lrs: number[] = [], wds: number[] = [];
    const b1: number[] = [], b2: number[] = [], eps: number[] = [], steps: number[] = [];
    const updated: Tensor[] = [];
    const temps: Tensor[] = [];
    let device: string | null = null;
    try {
      for (const group of this.paramGroups) {
        this.validateGroup(group);
        for (const p of group.params) {
          if (p.grad === null) continue;
          if (device === null) device = p.device;
          else if (p.device !== device) {
            throw new Error(`nodegrad: AdamW: parameters are on different devices (${device} and ${p.device}); one step updates one device`);
          }
          const pa = device === 'cpu' ? this.paramArg(p) : this.deviceParamArg(p);
          const { arg: ga, temp } = this.gradArg(p);
          if (temp) temps.push(temp);
          const s = this.stateFor(p, () => ({
            step: 0,
            expAvg: zeros(p.shape, { dtype: p.dtype, device: p.device }),
            expAvgSq: zeros(p.shape, { dtype: p.dtype, device: p.device }),
          }));
          // State loaded from a state dict of another device follows its parameter.
          for (const k of ['expAvg', 'expAvgSq'] as const) {
            const t = s[k] as Tensor;
            if (t.device !== p.device) {
              s[k] = keep(noGrad(() => t.to(p.device)));
              t.dispose();
            }
          }
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
      const onCpu = device === 'cpu';
      let scaleFactor: TypedArray | null = null;
      if (maxGradNorm !== undefined) {
        const gOffsets = offsets.filter((_, i) => i % 4 === 1);
        if (onCpu) {
          const norm = native.multiTensorNorm(gs, gOffsets, numels, 2) * Math.abs(gradScale);
          this.setLastNorm(norm);
          const coef = maxGradNorm / (norm + 1e-6);
          if (!(coef >= 1)) gradScale *= coef;
        } else {
          const dev = device as Tensor['device'];
          if (!this.clipCoef || this.clipCoef.device !== dev) {
            this.clipCoef?.dispose();
            this.lastGradNorm?.dispose();
            this.clipCoef = keep(empty([1], 'float32', dev));
            this.lastGradNorm = keep(empty([1], 'float32', dev));
          }
          native.multiTensorNormDevice(gs, gOffsets, numels, 2, Math.abs(gradScale), this.lastGradNorm!.storage.data,
            this.clipCoef.storage.data, maxGradNorm);
          scaleFactor = this.clipCoef.storage.data;
        }
      }
      const copies = updated.map((p) => this.copies.get(p) ?? null);
      const anyCopy = copies.some((c) => c !== null);
      if (onCpu || this.fused) {
        const extra = onCpu ? undefined : { modelCopies: anyCopy ? copies.map((c) => (c ? this.copyData(c) : null)) : null, scaleFactor };
        native.adamwStep(ps, gs, ms, vs, offsets, numels, lrs, wds, b1, b2, eps, steps, gradScale, extra);
      } else {
        // Unfused (one launch per parameter), for comparison with the fused kernel.
        for (let i = 0; i < updated.length; i++) {
          const c = copies[i];
          native.adamwStep([ps[i]], [gs[i]], [ms[i]], [vs[i]], offsets.slice(4 * i, 4 * i + 4), [numels[i]], [lrs[i]],
            [wds[i]], [b1[i]], [b2[i]], [eps[i]], [steps[i]], gradScale, { modelCopies: c ? [this.copyData(c)] : null, scaleFactor });
        }
      }
      if (onCpu && anyCopy) {
        noGrad(() => {
          updated.forEach((p, i) => {
            const c = copies[i];
            if (!c) return;
            const t = cast(p, c.dtype);
            c.copy_(t);
            t.dispose();
          });
        });
      }
      for (let i = 0; i < updated.length; i++) {
        const p = updated[i];
        const s = this.state.get(p)!;
        s.step = (s.step as number) + 1;
        // in place on the parameter (and its state and model copy): a graph that saved it is stale
        p.storage.bumpVersion('AdamW.step');
        (s.expAvg as Tensor).storage.bumpVersion('AdamW.step');
        (s.expAvgSq as Tensor).storage.bumpVersion('AdamW.step');
        if (copies[i] && !onCpu) copies[i]!.storage.bumpVersion('AdamW.step');
      }
    } finally {
      for (const t of temps) t.dispose();
    }
  }

  private setLastNorm(norm: number): void {
    this.lastGradNorm?.dispose();
    this.lastGradNorm = keep(tensor(new Float32Array([norm]), { dtype: 'float32' }));
  }

  private copyData(c: Tensor): TypedArray {
    c.assertLive('AdamW');
    if (c.offset !== 0) throw new Error('nodegrad: AdamW: a CUDA model copy must start at offset 0 of its storage (got a view)');
    return c.storage.data;
  }

  /** A CUDA parameter's storage, checked: live, contiguous (offsets are passed to the kernel). */
  private deviceParamArg(p: Tensor): { data: TypedArray; offset: number; numel: number } {
    p.assertLive('AdamW');
    if (p.dtype !== 'float32') throw new Error(`nodegrad: AdamW: parameters on ${p.device} must be float32 (got ${p.dtype}, shape ${fmt(p.shape)})`);
    if (!p.isContiguous()) {
      throw new Error(`nodegrad: AdamW: parameter of shape ${fmt(p.shape)} (strides ${fmt(p.strides)}) is not contiguous; ` +
        'optimizers update parameters in place and need contiguous storage');
    }
    return { data: p.storage.data, offset: p.offset, numel: p.numel };
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
