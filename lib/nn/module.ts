// Module: the whole module interface. Parameters, buffers and child modules are found
// on the module's own properties (in definition order), so names come from the module
// path ("h.0.attn.cAttn.weight") and checkpoints map 1:1 onto the object tree.
import { noGrad } from '../autograd.js';
import type { DType } from '../dtype.js';
import { keep } from '../memory.js';
import { cast } from '../ops/elementwise.js';
import type { Device } from '../storage.js';
import { Tensor } from '../tensor.js';
import { fmt } from '../ops/check.js';

const PARAMS = new WeakSet<Tensor>();

/** Marks a tensor as a trainable parameter (requiresGrad, kept out of scopes). */
export function parameter(t: Tensor): Tensor {
  if (t.dtype !== 'float32' && t.dtype !== 'float64' && t.dtype !== 'bfloat16' && t.dtype !== 'float16') {
    throw new Error(`nodegrad: parameter: parameters must be floating point (got ${t.dtype})`);
  }
  t.requiresGrad = true;
  PARAMS.add(t);
  return keep(t);
}

export function isParameter(t: unknown): t is Tensor {
  return t instanceof Tensor && PARAMS.has(t);
}

export interface LoadResult { missingKeys: string[]; unexpectedKeys: string[] }

export abstract class Module {
  training = true;
  /** Names of properties holding buffers (non-trainable state saved in the state dict). */
  private readonly _buffers = new Map<string, boolean>();

  abstract forward(...args: never[]): unknown;

  /** Registers a buffer: a tensor saved with the model but not trained. */
  registerBuffer(name: string, t: Tensor | null, persistent = true): void {
    (this as unknown as Record<string, unknown>)[name] = t ? keep(t) : t;
    this._buffers.set(name, persistent);
  }

  namedChildren(): [string, Module][] {
    const out: [string, Module][] = [];
    for (const [k, v] of Object.entries(this)) if (v instanceof Module) out.push([k, v]);
    return out;
  }
  children(): Module[] { return this.namedChildren().map(([, m]) => m); }

  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [k, m] of this.namedChildren()) out.push(...m.namedModules(prefix ? `${prefix}.${k}` : k));
    return out;
  }
  modules(): Module[] { return this.namedModules().map(([, m]) => m); }

  /** Parameters with their dotted paths; a tensor shared by two modules appears once. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const seen = new Set<Tensor>();
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [k, v] of Object.entries(m)) {
        if (isParameter(v) && !seen.has(v)) {
          seen.add(v);
          out.push([path ? `${path}.${k}` : k, v]);
        }
      }
    }
    return out;
  }
  parameters(): Tensor[] { return this.namedParameters().map(([, p]) => p); }

  namedBuffers(prefix = '', persistentOnly = false): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [k, persistent] of m._buffers) {
        const v = (m as unknown as Record<string, unknown>)[k];
        if (v instanceof Tensor && (persistent || !persistentOnly)) out.push([path ? `${path}.${k}` : k, v]);
      }
    }
    return out;
  }
  buffers(): Tensor[] { return this.namedBuffers().map(([, b]) => b); }

  /** Number of parameters (elements), counting shared tensors once. */
  numParameters(onlyTrainable = false): number {
    return this.parameters().reduce((n, p) => n + (onlyTrainable && !p.requiresGrad ? 0 : p.numel), 0);
  }

  /** Parameters and persistent buffers by name (the tensors themselves, not copies). */
  stateDict(): Record<string, Tensor> {
    const sd: Record<string, Tensor> = {};
    for (const [k, v] of this.namedParameters()) sd[k] = v;
    for (const [k, v] of this.namedBuffers('', true)) sd[k] = v;
    return sd;
  }

  /**
   * Copies values from a state dict into this module's tensors (cast to their dtype).
   * strict (default): missing or unexpected keys are an error; shape mismatches always are.
   */
  loadStateDict(sd: Record<string, Tensor> | Map<string, Tensor>, opts: { strict?: boolean } = {}): LoadResult {
    const strict = opts.strict ?? true;
    // Maps only: a plain-object lookup would find 'constructor' or '__proto__' on the prototype.
    const src = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const own = new Map(Object.entries(this.stateDict()));
    const missingKeys = [...own.keys()].filter((k) => !src.has(k));
    const unexpectedKeys = [...src.keys()].filter((k) => !own.has(k));
    const mismatched: string[] = [];
    for (const [k, t] of own) {
      const v = src.get(k);
      if (v && fmt(v.shape) !== fmt(t.shape)) mismatched.push(`${k}: checkpoint ${fmt(v.shape)} vs model ${fmt(t.shape)}`);
    }
    const problems: string[] = [];
    if (mismatched.length) problems.push(`size mismatch for ${mismatched.join('; ')}`);
    if (strict && missingKeys.length) problems.push(`missing keys: ${missingKeys.join(', ')}`);
    if (strict && unexpectedKeys.length) problems.push(`unexpected keys: ${unexpectedKeys.join(', ')}`);
    if (problems.length) throw new Error(`nodegrad: loadStateDict: ${problems.join('. ')}`);
    noGrad(() => {
      for (const [k, t] of own) {
        const v = src.get(k);
        if (v) t.copy_(v);
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }
  eval(): this { return this.train(false); }

  /** Calls fn on every submodule (children first) and then on this module. */
  apply(fn: (m: Module) => void): this {
    for (const c of this.children()) c.apply(fn);
    fn(this);
    return this;
  }

  /** Converts parameters and buffers to a device and/or dtype, in place on the module. */
  to(target: Device | DType | { device?: Device; dtype?: DType }): this {
    const spec = typeof target === 'object' ? target : target === 'cpu' || target.startsWith('cuda') ? { device: target as Device } : { dtype: target as DType };
    const converted = new Map<Tensor, Tensor>();
    for (const m of this.modules()) {
      const rec = m as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(m)) {
        if (!(v instanceof Tensor) || (!isParameter(v) && !m._buffers.has(k))) continue;
        let nt = converted.get(v);
        if (!nt) {
          nt = noGrad(() => {
            const isParam = isParameter(v);
            let t: Tensor = v;
            if (spec.device) t = t.to(spec.device);
            if (spec.dtype && (isParam || t.dtype !== 'int32')) t = cast(t, spec.dtype);
            return t;
          });
          if (nt !== v) {
            if (isParameter(v)) parameter(nt);
            else keep(nt);
          }
          converted.set(v, nt);
        }
        if (nt !== v) rec[k] = nt;
      }
    }
    for (const [old, nt] of converted) if (nt !== old) old.dispose();
    return this;
  }

  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }

  /** Frees every parameter and buffer. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
    for (const b of this.buffers()) b.dispose();
  }
}
