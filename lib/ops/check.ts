// Argument checks shared by the op files, and how their errors show shapes and values.
import { type Device } from '../storage.js';
import { Tensor } from '../tensor.js';

export function fmt(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/** A value as an error message shows it: JSON where possible (a bigint as 7n, NaN as NaN), else String(v). */
export function show(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'function' || typeof v === 'symbol') {
    return typeof v === 'bigint' ? `${v}n` : typeof v === 'function' ? 'a function' : String(v);
  }
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : typeof x === 'number' && !Number.isFinite(x) ? String(x) : x)) ?? String(v);
  } catch {
    return String(v);
  }
}

/** An options argument: undefined or null mean none; anything else must be a plain object. */
export function optionsArg<T extends object>(opts: T | null | undefined, op: string): T {
  if (opts === undefined || opts === null) return {} as T;
  if (typeof opts !== 'object' || Array.isArray(opts)) {
    throw new Error(`nodegrad: ${op}: options must be an object (got ${Array.isArray(opts) ? 'an array' : typeof opts})`);
  }
  return opts;
}

export function checkSameDevice(op: string, ...ts: (Tensor | null | undefined)[]): Device {
  let d: Device | null = null;
  for (const t of ts) {
    if (!t) continue;
    if (!(t instanceof Tensor)) throw new Error(`nodegrad: ${op}: tensor arguments must be Tensors (got ${typeof t})`);
    t.assertLive(op);
    if (d === null) d = t.device;
    else if (t.device !== d) {
      throw new Error(`nodegrad: ${op}: tensors are on different devices (${d} and ${t.device}); move them with .to()`);
    }
  }
  return d ?? 'cpu';
}

export function checkTensor(x: unknown, op: string, what = 'input'): Tensor {
  if (!(x instanceof Tensor)) throw new Error(`nodegrad: ${op}: ${what} must be a Tensor (got ${x === null ? 'null' : typeof x})`);
  x.assertLive(op);
  return x;
}

export function checkFloat(t: Tensor, op: string, what = 'input'): void {
  if (t.dtype !== 'float32' && t.dtype !== 'float64' && t.dtype !== 'bfloat16' && t.dtype !== 'float16') {
    throw new Error(`nodegrad: ${op}: ${what} must be a floating-point tensor (got ${t.dtype}, shape ${fmt(t.shape)})`);
  }
}
