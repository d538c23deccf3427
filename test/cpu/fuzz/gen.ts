// Building blocks of the fuzz cases: a seeded generator, argument specs (plain data, so a
// case can be printed before anything runs), their materialisation into tensors and
// JavaScript values, and the pools of bad arguments the cases draw from.
import * as ng from '../../../lib/index.js';

/** mulberry32: small, fast, and the same sequence on every platform. */
export class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0; }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  range(lo: number, hi: number): number { return lo + this.int(hi - lo + 1); }
  chance(p: number): boolean { return this.next() < p; }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]; }
}

/** The generator of case `index` of run `seed` (each case reproducible on its own). */
export function caseRng(seed: number, index: number): Rng {
  let h = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  return new Rng(h ^ (h >>> 15));
}

// ---- specs ------------------------------------------------------------------------------

export type DT = ng.DType;
export const DTYPES: DT[] = ['float32', 'float64', 'int32', 'bool', 'bfloat16', 'float16'];

/** How a tensor argument is made. */
export interface TensorSpec {
  t: 'tensor';
  dtype: DT;
  shape: number[];
  /** 'normal' values, small 'ints' in [lo, hi), or 'special' (NaN, ±Infinity, huge, -0 mixed in). */
  fill: 'normal' | 'ints' | 'special';
  lo?: number; hi?: number;
  /** Made as a view: transposed last two dims, every other element of dim 0, or broadcast to `expandTo`. */
  view?: 'T' | 'step' | 'expand';
  expandTo?: number[];
  requiresGrad?: boolean;
  disposed?: boolean;
}
export interface ValueSpec { t: 'value'; v: unknown }
export interface ArraySpec { t: 'array'; items: Spec[] }
export interface ObjectSpec { t: 'object'; fields: Record<string, Spec> }
export type Spec = TensorSpec | ValueSpec | ArraySpec | ObjectSpec;

export const val = (v: unknown): ValueSpec => ({ t: 'value', v });
export const arr = (items: Spec[]): ArraySpec => ({ t: 'array', items });
export const obj = (fields: Record<string, Spec>): ObjectSpec => ({ t: 'object', fields });

const FLOATS: DT[] = ['float32', 'float64', 'bfloat16', 'float16'];
export const isFloatDT = (d: DT): boolean => FLOATS.includes(d);

// ---- describing ---------------------------------------------------------------------------

const SHORT: Record<DT, string> = { float32: 'f32', float64: 'f64', int32: 'i32', bool: 'bool', bfloat16: 'bf16', float16: 'f16' };

export function describeValue(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'function') return 'function';
  if (Array.isArray(v)) return `[${v.map(describeValue).join(',')}]`;
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as Uint8Array).length})`;
  if (v instanceof Date) return 'Date';
  if (v instanceof Map) return `Map(${v.size})`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.entries(v).map(([k, x]) => `${k}:${describeValue(x)}`).join(',')}}`;
  }
  return String(v);
}

export function describe(s: Spec): string {
  switch (s.t) {
    case 'value': return describeValue(s.v);
    case 'array': return `[${s.items.map(describe).join(', ')}]`;
    case 'object': return `{${Object.entries(s.fields).map(([k, x]) => `${k}: ${describe(x)}`).join(', ')}}`;
    case 'tensor': {
      let d = `${SHORT[s.dtype]}[${s.shape.join(',')}]`;
      if (s.fill === 'ints') d += `ints(${s.lo},${s.hi})`;
      if (s.fill === 'special') d += 'special';
      if (s.view === 'T') d += '.T';
      if (s.view === 'step') d += '.step2';
      if (s.view === 'expand') d += `.expand[${s.expandTo!.join(',')}]`;
      if (s.requiresGrad) d += '+grad';
      if (s.disposed) d += '~disposed';
      return d;
    }
  }
}

// ---- materialising --------------------------------------------------------------------------

const SPECIAL = [NaN, Infinity, -Infinity, 3e38, -3e38, -0, 1e-40, 65504, 1e10];

function values(s: TensorSpec, n: number, r: Rng): number[] {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    if (s.fill === 'ints') out[i] = (s.lo ?? 0) + r.int(Math.max(1, (s.hi ?? 4) - (s.lo ?? 0)));
    else if (s.fill === 'special' && r.chance(0.4)) out[i] = r.pick(SPECIAL);
    else out[i] = Math.round((r.next() * 4 - 2) * 1000) / 1000;
  }
  return out;
}

/** The tensor a spec describes; its values come from `r` (seeded per case). */
export function makeTensor(s: TensorSpec, r: Rng): ng.Tensor {
  const base = s.view === 'T' ? [...s.shape.slice(0, -2), s.shape[s.shape.length - 1], s.shape[s.shape.length - 2]]
    : s.view === 'step' ? [s.shape[0] * 2, ...s.shape.slice(1)] : s.shape;
  const n = base.reduce((a, b) => a * b, 1);
  const vals = values(s, n, r);
  let t: ng.Tensor;
  if (s.dtype === 'bool') t = ng.tensor(new Uint8Array(vals.map((v) => (v > 0 ? 1 : 0))), { shape: base });
  else if (s.dtype === 'int32') {
    const ints = s.fill === 'ints' ? vals : vals.map((v) => (Number.isFinite(v) ? Math.max(-1e9, Math.min(1e9, Math.trunc(v * 3))) : 0));
    t = ng.tensor(new Int32Array(ints), { shape: base });
  }
  else if (s.dtype === 'float64') t = ng.tensor(new Float64Array(vals), { shape: base });
  else {
    t = ng.tensor(new Float32Array(vals), { shape: base });
    if (s.dtype !== 'float32') t = t.to(s.dtype);
  }
  if (s.view === 'T') t = t.transpose(-1, -2);
  else if (s.view === 'step') t = t.slice(0, 0, undefined, 2);
  else if (s.view === 'expand') t = t.expand(s.expandTo!);
  if (s.requiresGrad && isFloatDT(s.dtype) && t.isLeaf) t.requiresGrad_(true);
  if (s.disposed) t.dispose();
  return t;
}

export function materialize(s: Spec, r: Rng): unknown {
  switch (s.t) {
    case 'value': return s.v;
    case 'tensor': return makeTensor(s, r);
    case 'array': return s.items.map((x) => materialize(x, r));
    case 'object': {
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(s.fields)) o[k] = materialize(x, r);
      return o;
    }
  }
}

// ---- pools of arguments -----------------------------------------------------------------------

/** Sizes too large for any buffer (each alone is more than 2^32 elements). */
export const HUGE_SIZES = [2 ** 40, 2 ** 53, 2 ** 53 + 2, 1e18, 1e300];
/**
 * Bad numbers for a count, a size, an index or a dim. Each is safe as a size: rejected, or
 * more than 2^32 elements (never a legitimate multi-gigabyte allocation such as 1e9 floats).
 */
export const BAD_NUMBERS = [NaN, Infinity, -Infinity, -1, -2, 1.5, -0.5, 2 ** 32 + 1, 2 ** 53, -(2 ** 53), 1e300, -1e300];
/** Large indices and dims (never used as sizes). */
export const BAD_INDICES = [1e9, -1e9, 2 ** 31, 2 ** 31 - 1, -(2 ** 31) - 1, 2 ** 53];
/** Wrong JavaScript types. */
export const BAD_JS: unknown[] = ['a', '', '1', null, undefined, {}, [], [1, 2], true, false, 7n, () => 1, new Date(0), new Map()];

export function badNumber(r: Rng): number { return r.pick(BAD_NUMBERS); }
export function badJs(r: Rng): unknown { return r.pick(BAD_JS); }
export function badScalar(r: Rng): unknown { return r.chance(0.6) ? badNumber(r) : badJs(r); }

export function randomShape(r: Rng, maxDims = 4, maxSize = 4): number[] {
  const nd = r.int(maxDims + 1);
  const s: number[] = [];
  for (let i = 0; i < nd; i++) s.push(r.chance(0.06) ? 0 : r.range(1, maxSize));
  return s;
}

/** A shape argument: mostly valid, sometimes negative, fractional, NaN, huge, too long, or not an array. */
export function shapeArg(r: Rng, valid?: number[]): unknown {
  if (!r.chance(0.35)) return valid ?? randomShape(r);
  return r.pick<() => unknown>([
    () => [2, -1], () => [1.5], () => [NaN], () => ['2'], () => [2 ** 53], () => [1e9, 1e9], () => [r.pick(HUGE_SIZES)],
    () => [2 ** 31, 2 ** 31], () => [1e9, 1e9, 0], () => [0, 2 ** 53], () => new Array(9).fill(1), () => [Infinity],
    () => [[2]], () => 3, () => '3', () => null, () => undefined, () => ({ length: 2 }), () => [2, null], () => [-0],
  ])();
}

export interface TensorOpts {
  dtype?: DT;
  shape?: number[];
  /** Probability of a wrong dtype when one is given (default 0.12). */
  pWrongDtype?: number;
  allowGrad?: boolean;
  allowViews?: boolean;
  fill?: TensorSpec['fill'];
  lo?: number; hi?: number;
}

/** A tensor spec: the dtype and shape asked for (usually), random otherwise, sometimes a view or disposed. */
export function tspec(r: Rng, o: TensorOpts = {}): TensorSpec {
  const dtype = o.dtype !== undefined && !r.chance(o.pWrongDtype ?? 0.12) ? o.dtype : r.chance(0.5) ? 'float32' : r.pick(DTYPES);
  const shape = o.shape ?? randomShape(r);
  const s: TensorSpec = { t: 'tensor', dtype, shape, fill: o.fill ?? (r.chance(0.1) ? 'special' : 'normal') };
  if (s.fill === 'ints') { s.lo = o.lo ?? 0; s.hi = o.hi ?? 4; }
  if (o.allowViews !== false) {
    const v = r.next();
    if (v < 0.1 && shape.length >= 2) s.view = 'T';
    else if (v < 0.15 && shape.length >= 1) s.view = 'step';
    else if (v < 0.19 && shape.length >= 1 && shape.every((d) => d >= 1)) {
      // broadcast a leading dim: sometimes to a size no buffer can hold
      s.view = 'expand';
      s.expandTo = r.chance(0.3) ? (r.chance(0.5) ? [2 ** 20, 2 ** 20, ...shape] : [2 ** 40, ...shape]) : [3, ...shape];
      s.shape = s.shape.slice();
    }
  }
  if (o.allowGrad !== false && isFloatDT(dtype) && r.chance(0.25)) s.requiresGrad = true;
  if (r.chance(0.03)) s.disposed = true;
  return s;
}

/** An int32 index tensor with values in [lo, hi) (often outside the valid range on purpose). */
export function indexSpec(r: Rng, shape: number[], n: number): TensorSpec {
  const bad = r.chance(0.25);
  const lo = bad ? r.pick([-n - 2, -1, n, 2 ** 31 - 1 - 4, -(2 ** 31)]) : 0;
  const hi = bad ? lo + r.range(1, 5) : Math.max(1, n);
  return { ...tspec(r, { dtype: 'int32', shape, allowGrad: false, fill: 'ints', lo, hi, pWrongDtype: 0.1 }), fill: 'ints', lo, hi };
}

/** Any argument: a tensor of some kind, or (less often, so later checks are reached too) a bad JavaScript value. */
export function anyArg(r: Rng, o: TensorOpts = {}): Spec {
  if (r.chance(0.88)) return tspec(r, o);
  return val(badScalar(r));
}

/** A dim argument for a tensor of ndim dims: valid, out of range, or not an integer. */
export function dimArg(r: Rng, ndim: number): unknown {
  if (!r.chance(0.25)) return ndim === 0 ? r.pick([0, -1]) : r.range(-ndim, ndim - 1);
  return r.chance(0.5) ? r.pick([ndim, -ndim - 1, ndim + 5, ...BAD_INDICES]) : badScalar(r);
}

/** A small count or size: valid, zero, negative, fractional, huge, or not a number. */
export function countArg(r: Rng, valid: number): unknown {
  if (!r.chance(0.3)) return valid;
  return r.chance(0.3) ? r.pick(HUGE_SIZES) : badScalar(r);
}

/** With probability p the bad alternative, else the valid value. */
export function maybe<T>(r: Rng, p: number, valid: T, bad: () => unknown): unknown {
  return r.chance(p) ? bad() : valid;
}

/** Creation options with bad dtypes, devices and flags mixed in. */
export function createOpts(r: Rng): Spec {
  if (r.chance(0.3)) return val(undefined);
  const f: Record<string, Spec> = {};
  if (r.chance(0.6)) f.dtype = val(r.chance(0.8) ? r.pick(DTYPES) : r.pick(['int64', 'gpu', 'half', null, 3, '', 'Float32']));
  if (r.chance(0.25)) f.device = val(r.pick(['cpu', 'cuda', 'cuda:0', 'cuda:7', 'gpu', 'cuda0', null, 1, 'CPU']));
  if (r.chance(0.2)) f.requiresGrad = val(r.pick([true, false, 'yes', 1]));
  if (r.chance(0.1)) f.bogus = val(1);
  return obj(f);
}
