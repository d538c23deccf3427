// SGD with momentum, dampening, Nesterov momentum and (coupled, L2) weight decay, with
// PyTorch's exact update:
//   d = g + wd*p;  buf = first ? d : momentum*buf + (1-dampening)*d;
//   d = nesterov ? d + momentum*buf : buf;  p -= lr*d
// One native call per step (native/cpu/adamw.cc's sgd_step). State: momentumBuffer (a
// Tensor of the parameter's shape), only for parameters updated with momentum > 0.
import type { TypedArray } from '../dtype.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { zeros } from '../ops/creation.js';
import { Optimizer, checkNumber, gradScaleOf, type ParamsArg, type StepOptions } from './optimizer.js';

export type SGDHyper = {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
};

export interface SGDOptions {
  lr?: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
  /** Not supported: passing true throws. */
  maximize?: boolean;
}

export class SGD extends Optimizer<SGDHyper> {
  constructor(params: ParamsArg<SGDHyper>, opts: SGDOptions = {}) {
    const known = ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov', 'maximize'];
    for (const k of Object.keys(opts)) {
      if (!known.includes(k)) throw new Error(`nodegrad: SGD: unknown option '${k}' (known: ${known.join(', ')})`);
    }
    if (opts.maximize) throw new Error('nodegrad: SGD: maximize is not supported');
    super('SGD', params, {
      lr: opts.lr ?? 1e-3,
      momentum: opts.momentum ?? 0,
      dampening: opts.dampening ?? 0,
      weightDecay: opts.weightDecay ?? 0,
      nesterov: opts.nesterov ?? false,
    });
  }

  protected validateGroup(g: SGDHyper): void {
    checkNumber('SGD', 'learning rate', g.lr, 0);
    checkNumber('SGD', 'momentum', g.momentum, 0);
    checkNumber('SGD', 'dampening', g.dampening, -Infinity);
    checkNumber('SGD', 'weight decay', g.weightDecay, 0);
    if (typeof g.nesterov !== 'boolean') throw new Error(`nodegrad: SGD: nesterov must be a boolean (got ${String(g.nesterov)})`);
    if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0)) {
      throw new Error(`nodegrad: SGD: Nesterov momentum requires a momentum > 0 and zero dampening (got momentum ${g.momentum}, dampening ${g.dampening})`);
    }
  }

  protected stateKeys(): { tensors: string[]; numbers: string[] } {
    return { tensors: ['momentumBuffer'], numbers: [] };
  }

  /** One update of every parameter that has a gradient (parameters without one are skipped). */
  step(opts?: StepOptions): void {
    const gradScale = gradScaleOf('SGD', opts);
    const ps: TypedArray[] = [], gs: TypedArray[] = [], bufs: (TypedArray | null)[] = [];
    const offsets: number[] = [], numels: number[] = [], lrs: number[] = [], wds: number[] = [];
    const moms: number[] = [], damps: number[] = [], nest: number[] = [], init: number[] = [];
    const temps: Tensor[] = [], created: Tensor[] = [], written: Tensor[] = [];
    let done = false;
    try {
      for (const group of this.paramGroups) {
        this.validateGroup(group);
        for (const p of group.params) {
          if (p.grad === null) continue;
          const pa = this.paramArg(p);
          const { arg: ga, temp } = this.gradArg(p);
          if (temp) temps.push(temp);
          let buf: Tensor | null = null, fresh = false;
          if (group.momentum !== 0) {
            fresh = !this.state.has(p);
            if (fresh) created.push(p);
            buf = this.stateFor(p, () => ({ momentumBuffer: zeros(p.shape, { dtype: p.dtype, device: p.device }) })).momentumBuffer as Tensor;
          }
          ps.push(pa.data); gs.push(ga.data); bufs.push(buf ? buf.storage.data : null);
          written.push(p);
          if (buf) written.push(buf);
          offsets.push(pa.offset, ga.offset, buf ? buf.offset : 0);
          numels.push(pa.numel);
          lrs.push(group.lr); wds.push(group.weightDecay);
          moms.push(group.momentum); damps.push(group.dampening);
          nest.push(group.nesterov ? 1 : 0); init.push(fresh ? 1 : 0);
        }
      }
      if (ps.length > 0) native.sgdStep(ps, gs, bufs, offsets, numels, lrs, wds, moms, damps, nest, init, gradScale);
      done = true;
      // in place on the parameters (and momentum buffers): a graph that saved one is stale
      for (const t of written) t.storage.bumpVersion('SGD.step');
    } finally {
      for (const t of temps) t.dispose();
      // A failed step leaves no half-made momentum buffers behind (they must start from d).
      if (!done) for (const p of created) { (this.state.get(p)!.momentumBuffer as Tensor).dispose(); this.state.delete(p); }
    }
  }
}
