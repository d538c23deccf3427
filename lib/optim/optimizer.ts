// Optimizer base: parameter groups (each group's hyper-parameters override the
// defaults), zeroGrad, and a state dict. Updates are in place and never recorded by
// autograd; the per-parameter state lives outside every scope() (it is kept).
//
// State dict format (PyTorch's, with camelCase names):
//   {
//     state: { [index]: { step?: number, expAvg?: Tensor, ... } },  // only parameters with state
//     paramGroups: [ { lr, weightDecay, ..., params: [index, ...] }, ... ],
//   }
// A parameter's index is its position when the groups' params lists are concatenated in
// order. Hyper-parameters are JSON-able (numbers, booleans, arrays of numbers, a group's
// optional `name`); state values are numbers or Tensors of the parameter's shape. The
// Tensors are the optimizer's live state, not copies (clone them to snapshot);
// loadStateDict copies what it is given.
import type { TypedArray } from '../dtype.js';
import { noGrad } from '../autograd.js';
import { keep } from '../memory.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { cast } from '../ops/elementwise.js';
import { contiguous } from '../ops/shape.js';
import { fmt } from '../ops/check.js';

declare module '../native.js' {
  interface NativeAddon {
    adamwStep(params: TypedArray[], grads: TypedArray[], expAvg: TypedArray[], expAvgSq: TypedArray[],
      offsets: number[], numels: number[], lrs: number[], weightDecays: number[],
      beta1: number | number[], beta2: number | number[], eps: number | number[], steps: number[], gradScale: number): void;
    sgdStep(params: TypedArray[], grads: TypedArray[], momentumBufs: (TypedArray | null)[], offsets: number[],
      numels: number[], lrs: number[], weightDecays: number[], momentums: number[], dampenings: number[],
      nesterov: number[], initBuf: number[], gradScale: number): void;
    multiTensorNorm(tensors: TypedArray[], offsets: number[], numels: number[], p: number): number;
    multiTensorScale(tensors: TypedArray[], offsets: number[], numels: number[], scale: number): void;
  }
}

export type HyperValue = number | boolean | string | readonly number[];
export type Hyper = { lr: number } & Record<string, HyperValue>;
/** A parameter group as the optimizer holds it: every hyper-parameter filled in. */
export type ParamGroup<H extends Hyper> = H & { params: Tensor[]; name?: string };
/** A parameter group as given to a constructor: unset hyper-parameters take the defaults. */
export type ParamGroupInput<H extends Hyper> = Partial<H> & { params: Iterable<Tensor>; name?: string };
export type ParamsArg<H extends Hyper> = Iterable<Tensor> | readonly ParamGroupInput<H>[];

export type StateEntry = Record<string, Tensor | number>;
export interface OptimizerStateDict {
  state: Record<number, StateEntry>;
  paramGroups: (Record<string, HyperValue> & { params: number[] })[];
}

export interface StepOptions {
  /** Gradients are multiplied by this first (e.g. 1 / accumulation steps, or a clipping factor). */
  gradScale?: number;
}

/** A parameter's storage seen by the kernels: (buffer, element offset, numel). */
export interface FlatArg { data: TypedArray; offset: number; numel: number }

export abstract class Optimizer<H extends Hyper> {
  readonly defaults: Readonly<H>;
  readonly paramGroups: ParamGroup<H>[] = [];
  protected readonly state = new Map<Tensor, StateEntry>();
  /** Name used in error messages ("AdamW", "SGD"). */
  protected readonly opName: string;

  protected constructor(opName: string, params: ParamsArg<H>, defaults: H) {
    this.opName = opName;
    this.defaults = defaults;
    this.validateGroup(defaults);
    const list = params instanceof Tensor ? [params] : Array.from(params as Iterable<unknown>);
    const isGroups = list.length > 0 && list.every((x) => !(x instanceof Tensor) && typeof x === 'object' && x !== null && 'params' in x);
    if (isGroups) for (const g of list as ParamGroupInput<H>[]) this.addParamGroup(g);
    else this.addParamGroup({ params: list as Tensor[] } as unknown as ParamGroupInput<H>);
    if (this.paramGroups.every((g) => g.params.length === 0)) {
      throw new Error(`nodegrad: ${opName}: got an empty parameter list`);
    }
  }

  /** Checks one group's hyper-parameters (throws a clear error on bad values). */
  protected abstract validateGroup(g: H): void;
  /** The state keys each parameter's entry holds: Tensors of the parameter's shape, and numbers. */
  protected abstract stateKeys(): { tensors: string[]; numbers: string[] };
  abstract step(opts?: StepOptions): void;

  addParamGroup(group: ParamGroupInput<H>): void {
    const op = this.opName;
    if (typeof group !== 'object' || group === null || !('params' in group)) {
      throw new Error(`nodegrad: ${op}: a parameter group must be an object with a params list`);
    }
    for (const k of Object.keys(group)) {
      if (k !== 'params' && k !== 'name' && !(k in this.defaults)) this.unknownOption(k);
    }
    const raw = group.params as unknown;
    const params = raw instanceof Tensor ? [raw] : Array.from(raw as Iterable<unknown>);
    const seen = new Set<Tensor>(this.paramGroups.flatMap((g) => g.params));
    params.forEach((p, i) => {
      if (!(p instanceof Tensor)) throw new Error(`nodegrad: ${op}: params[${i}] is not a Tensor (got ${typeof p})`);
      p.assertLive(op);
      if (!p.isLeaf) throw new Error(`nodegrad: ${op}: can't optimize a non-leaf tensor (params[${i}], shape ${fmt(p.shape)})`);
      if (p.dtype !== 'float32' && p.dtype !== 'float64') {
        throw new Error(`nodegrad: ${op}: parameters must be float32 or float64 (params[${i}] is ${p.dtype})`);
      }
      if (seen.has(p)) throw new Error(`nodegrad: ${op}: some parameters appear in more than one parameter group (or twice in one)`);
      seen.add(p);
    });
    const g: Record<string, unknown> = { ...this.defaults };
    for (const [k, v] of Object.entries(group)) if (k !== 'params' && v !== undefined) g[k] = Array.isArray(v) ? [...v] : v;
    g.params = params;
    this.validateGroup(g as H);
    this.paramGroups.push(g as ParamGroup<H>);
  }

  protected unknownOption(k: string): never {
    throw new Error(`nodegrad: ${this.opName}: unknown option '${k}' (known: ${Object.keys(this.defaults).join(', ')})`);
  }

  /** Frees the optimizer's state tensors (moments); the optimizer starts afresh if stepped again. */
  dispose(): void {
    for (const s of this.state.values()) for (const v of Object.values(s)) if (v instanceof Tensor) v.dispose();
    this.state.clear();
  }

  /** Clears gradients: sets them to null (default) or fills them with zeros. */
  zeroGrad({ setToNone = true }: { setToNone?: boolean } = {}): void {
    for (const g of this.paramGroups) {
      for (const p of g.params) {
        if (p.grad === null) continue;
        if (setToNone || p.grad.isDisposed) p.zeroGrad();
        else p.grad.zero_();
      }
    }
  }

  /** Per-parameter state, created on first use (kept outside every scope). */
  protected stateFor(p: Tensor, init: () => StateEntry): StateEntry {
    let s = this.state.get(p);
    if (!s) {
      s = keep(init());
      this.state.set(p, s);
    }
    return s;
  }

  /** A parameter's storage, checked: live, on the CPU, contiguous. */
  protected paramArg(p: Tensor): FlatArg {
    const op = this.opName;
    p.assertLive(op);
    if (p.device !== 'cpu' && p.dtype !== 'float32') {
      throw new Error(`nodegrad: ${op}: parameters on ${p.device} must be float32 (got ${p.dtype}); keep float32 master weights and use autocast`);
    }
    if (!p.isContiguous()) {
      throw new Error(`nodegrad: ${op}: parameter of shape ${fmt(p.shape)} (strides ${fmt(p.strides)}) is not contiguous; ` +
        'optimizers update parameters in place and need contiguous storage');
    }
    return { data: p.storage.data, offset: p.offset, numel: p.numel };
  }

  /**
   * A parameter's gradient as the kernels read it: same shape and dtype as p, contiguous.
   * Returns a temporary copy (to dispose after the step) when the grad had to be converted.
   */
  protected gradArg(p: Tensor): { arg: FlatArg; temp: Tensor | null } {
    const g = p.grad!;
    const op = this.opName;
    g.assertLive(op);
    if (fmt(g.shape) !== fmt(p.shape)) {
      throw new Error(`nodegrad: ${op}: gradient of shape ${fmt(g.shape)} does not match its parameter's shape ${fmt(p.shape)}`);
    }
    let t = g;
    if (t.dtype !== p.dtype) t = cast(t, p.dtype);
    if (!t.isContiguous()) {
      const c = contiguous(t);
      if (t !== g) t.dispose();
      t = c;
    }
    return { arg: { data: t.storage.data, offset: t.offset, numel: t.numel }, temp: t === g ? null : t };
  }

  stateDict(): OptimizerStateDict {
    const state: Record<number, StateEntry> = {};
    const paramGroups: OptimizerStateDict['paramGroups'] = [];
    let index = 0;
    for (const g of this.paramGroups) {
      const hyper: Record<string, HyperValue> = {};
      for (const [k, v] of Object.entries(g) as [string, HyperValue][]) if (k !== 'params') hyper[k] = Array.isArray(v) ? [...v] : v;
      const ids: number[] = [];
      for (const p of g.params) {
        const s = this.state.get(p);
        if (s) state[index] = { ...s };
        ids.push(index++);
      }
      paramGroups.push({ ...hyper, params: ids });
    }
    return { state, paramGroups };
  }

  /** Loads hyper-parameters and state saved by stateDict() (copies the tensors it is given). */
  loadStateDict(sd: OptimizerStateDict): void {
    const op = `${this.opName}.loadStateDict`;
    if (typeof sd !== 'object' || sd === null || !Array.isArray(sd.paramGroups) || typeof sd.state !== 'object' || sd.state === null) {
      throw new Error(`nodegrad: ${op}: expected an object { state, paramGroups }`);
    }
    if (sd.paramGroups.length !== this.paramGroups.length) {
      throw new Error(`nodegrad: ${op}: the state dict has ${sd.paramGroups.length} parameter groups, the optimizer has ${this.paramGroups.length}`);
    }
    // Validate everything before changing anything.
    const byIndex: Tensor[] = [];
    const hypers: H[] = [];
    sd.paramGroups.forEach((sg, gi) => {
      const mine = this.paramGroups[gi];
      if (!Array.isArray(sg.params) || sg.params.length !== mine.params.length) {
        throw new Error(`nodegrad: ${op}: parameter group ${gi} has ${Array.isArray(sg.params) ? sg.params.length : 'no'} parameters in the state dict, ${mine.params.length} in the optimizer`);
      }
      sg.params.forEach((id, j) => {
        if (!Number.isInteger(id) || id < 0 || byIndex[id] !== undefined) throw new Error(`nodegrad: ${op}: group ${gi} has a bad or repeated parameter index ${id}`);
        byIndex[id] = mine.params[j];
      });
      const h: Record<string, unknown> = {};
      for (const k of Object.keys(this.defaults)) {
        if (!(k in sg)) throw new Error(`nodegrad: ${op}: parameter group ${gi} lacks the hyper-parameter '${k}'`);
        h[k] = Array.isArray(sg[k]) ? [...(sg[k] as number[])] : sg[k];
      }
      for (const k of Object.keys(sg)) if (k !== 'params' && k !== 'name' && !(k in this.defaults)) this.unknownOption(k);
      if (sg.name !== undefined) h.name = sg.name;
      this.validateGroup(h as H);
      hypers.push(h as H);
    });
    const { tensors, numbers } = this.stateKeys();
    const entries: [Tensor, Record<string, unknown>][] = [];
    for (const [key, entry] of Object.entries(sd.state)) {
      const id = Number(key);
      const p = byIndex[id];
      if (p === undefined) throw new Error(`nodegrad: ${op}: state for parameter ${key}, which no group lists`);
      const e = entry as Record<string, unknown>;
      const keys = Object.keys(e).sort().join(', '), want = [...tensors, ...numbers].sort().join(', ');
      if (keys !== want) {
        throw new Error(`nodegrad: ${op}: state of parameter ${key} has keys (${keys}); expected (${want})`);
      }
      for (const k of tensors) {
        const t = e[k];
        if (!(t instanceof Tensor)) throw new Error(`nodegrad: ${op}: state '${k}' of parameter ${key} must be a Tensor`);
        t.assertLive(op);
        if (fmt(t.shape) !== fmt(p.shape)) {
          throw new Error(`nodegrad: ${op}: state '${k}' of parameter ${key} has shape ${fmt(t.shape)}, the parameter has ${fmt(p.shape)}`);
        }
      }
      for (const k of numbers) {
        if (typeof e[k] !== 'number' || !Number.isFinite(e[k])) throw new Error(`nodegrad: ${op}: state '${k}' of parameter ${key} must be a finite number`);
      }
      entries.push([p, e]);
    }
    // Apply: hyper-parameters, then fresh copies of the state.
    hypers.forEach((h, gi) => Object.assign(this.paramGroups[gi], h));
    noGrad(() => this.replaceState(entries, tensors, numbers));
  }

  private replaceState(entries: [Tensor, Record<string, unknown>][], tensors: string[], numbers: string[]): void {
    // Copy first: the source may be this optimizer's own state.
    const fresh = new Map<Tensor, StateEntry>();
    for (const [p, e] of entries) {
      const s: StateEntry = {};
      for (const k of numbers) s[k] = e[k] as number;
      for (const k of tensors) {
        const src = e[k] as Tensor;
        const c = cast(src, p.dtype);
        const d = c.device === p.device ? c : c.to(p.device);
        if (d !== c && c !== src) c.dispose();
        s[k] = d === src ? d.clone() : d;
      }
      fresh.set(p, keep(s));
    }
    for (const s of this.state.values()) for (const v of Object.values(s)) if (v instanceof Tensor) v.dispose();
    this.state.clear();
    for (const [p, s] of fresh) this.state.set(p, s);
  }
}

/** Validates that x is a finite number >= lo (and < hi when given). */
export function checkNumber(op: string, what: string, x: unknown, lo: number, hi?: number): void {
  if (typeof x !== 'number' || !Number.isFinite(x) || x < lo || (hi !== undefined && x >= hi)) {
    const range = hi === undefined ? `>= ${lo}` : `in [${lo}, ${hi})`;
    throw new Error(`nodegrad: ${op}: invalid ${what} ${String(x)} (expected a finite number ${range})`);
  }
}

/** The gradScale of step(): a finite number (1 when unset). */
export function gradScaleOf(op: string, opts: StepOptions | undefined): number {
  const s = opts?.gradScale ?? 1;
  if (typeof s !== 'number' || !Number.isFinite(s)) throw new Error(`nodegrad: ${op}: gradScale must be a finite number (got ${String(s)})`);
  return s;
}
