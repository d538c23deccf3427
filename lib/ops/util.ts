// Helpers shared by the op files: shape formatting, strides, broadcasting, allocation,
// and the (buffer, offset, strides) triple every native view argument is made of.
import { constants as bufferConstants } from 'node:buffer';
import type { DType, TypedArray } from '../dtype.js';
import { Storage, type Device } from '../storage.js';
import { native, type DeviceHandle } from '../native.js';
import { FRESH, Tensor } from '../tensor.js';

export function fmt(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i];
  }
  return st;
}

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export const MAX_DIMS = 8;

export function checkShape(shape: readonly number[], op: string): number[] {
  if (!Array.isArray(shape)) throw new Error(`nodegrad: ${op}: shape must be an array of integers (got ${String(shape)})`);
  if (shape.length > MAX_DIMS) throw new Error(`nodegrad: ${op}: at most ${MAX_DIMS} dimensions are supported (got ${shape.length})`);
  for (const s of shape) {
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 0) {
      throw new Error(`nodegrad: ${op}: dimensions must be non-negative integers (got ${fmt(shape)})`);
    }
  }
  if (!Number.isSafeInteger(extentOf(shape))) {
    throw new Error(`nodegrad: ${op}: shape ${fmt(shape)} is too large (the product of its non-zero dims must be at most 2^53 - 1, ` +
      'so that sizes and strides are exact)');
  }
  return [...shape];
}

/** The product of the non-zero dims: the largest stride-times-size of a contiguous layout. */
function extentOf(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) if (s !== 0) n *= s;
  return n;
}

/** Most elements one CPU buffer can hold (a typed array's length limit: 2^32 on Node 20). */
export const MAX_CPU_ELEMENTS = bufferConstants.MAX_LENGTH;

/**
 * Throws unless a buffer of numel elements can be allocated on `device`: checked before
 * allocating, so a shape such as [1e9, 1e9] (reached through a broadcast view, padding, a
 * range...) is an error naming the op instead of a RangeError or a huge allocation.
 */
export function checkAlloc(shape: readonly number[], dtype: DType, device: Device, op: string): number {
  const n = numelOf(shape);
  if (!Number.isSafeInteger(extentOf(shape))) {
    throw new Error(`nodegrad: ${op}: a ${dtype} tensor of shape ${fmt(shape)} is too large (the product of its non-zero dims must be ` +
      'at most 2^53 - 1)');
  }
  if (device === 'cpu' && n > MAX_CPU_ELEMENTS) {
    throw new Error(`nodegrad: ${op}: a ${dtype} tensor of shape ${fmt(shape)} is too large to allocate (got ${n} elements; ` +
      `expected at most ${MAX_CPU_ELEMENTS} on the CPU)`);
  }
  return n;
}

/**
 * A fresh contiguous tensor, zero-filled unless `zeroed` is false (for outputs a kernel
 * writes completely: then a reused buffer keeps stale values until the kernel runs).
 * `op` names the operation in the error when the tensor is too large or memory runs out.
 */
export function empty(shape: readonly number[], dtype: DType, device: Device = 'cpu', zeroed = true, op = 'empty'): Tensor {
  const n = checkAlloc(shape, dtype, device, op);
  let st: Storage;
  try {
    st = new Storage(device, dtype, n, undefined, zeroed);
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    throw new Error(`nodegrad: ${op}: out of memory allocating a ${dtype} tensor of shape ${fmt(shape)} (${e.message})`, { cause: e });
  }
  return new Tensor(st, shape.slice(), contiguousStrides(shape), 0, FRESH);
}

/** The native view triple of a tensor: (buffer, element offset, strides). */
export function va(t: Tensor, op: string): [TypedArray, number, number[]] {
  if (t.isDisposed) t.assertLive(op);
  return [t.storage.data, t.offset, t.strides as number[]];
}

// Shapes and strides go to the addon packed in reused Float64Arrays: the addon reads one
// of those in a single step, where a JS array costs a crossing per element. packs[n][slot]
// is the buffer for n dims; a packed list is only valid until the same slot and length
// are packed again, so it must be passed straight to the native call.
const packs: Float64Array[][] = [];
function packBuf(slot: number, n: number): Float64Array {
  let row = packs[n];
  if (row === undefined) packs[n] = row = [];
  let p = row[slot];
  if (p === undefined) row[slot] = p = new Float64Array(n);
  return p;
}

/** xs in the scratch buffer `slot` (0..7; one slot per argument of a native call). */
export function packDims(slot: number, xs: readonly number[]): Float64Array {
  const n = xs.length;
  const p = packBuf(slot, n);
  for (let i = 0; i < n; i++) p[i] = xs[i];
  return p;
}

// The argument block of the packed native entries (binaryP, unaryP...; native/bind/util.h):
// op code, ndim, up to four views' element offsets, two scalars, the shape and each view's
// strides, written here and read by the addon without a crossing per argument; the call
// itself passes only the buffers. Like a packed list, valid only until the next packed call.
declare module '../native.js' {
  interface NativeAddon { setArgBlock(block: Float64Array): void }
}
export const ARGS = new Float64Array(new ArrayBuffer(8 * (8 + MAX_DIMS * 5)));
native.setArgBlock(ARGS);

/**
 * Fills ARGS with the op code, the shape and two scalars. A shape of more than MAX_DIMS
 * dims is left for the addon to reject (its ndim is written, its dims are not).
 */
export function argsHead(code: number, shape: readonly number[], s0: number, s1: number): void {
  const n = shape.length;
  ARGS[0] = code;
  ARGS[1] = n;
  ARGS[6] = s0;
  ARGS[7] = s1;
  if (n > MAX_DIMS) return;
  for (let i = 0; i < n; i++) ARGS[8 + i] = shape[i];
}

/** View k of a packed call (after argsHead with the same ndim): its offset and strides. */
export function argsView(k: number, offset: number, strides: readonly number[]): void {
  const n = strides.length;
  ARGS[2 + k] = offset;
  if (n > MAX_DIMS) return;
  const base = 8 + n * (k + 1);
  for (let i = 0; i < n; i++) ARGS[base + i] = strides[i];
}

/** View k of a packed call reading t broadcast to `shape` (0 strides on broadcast dims). */
export function argsBroadcast(k: number, t: Tensor, shape: readonly number[]): void {
  const n = shape.length;
  ARGS[2 + k] = t.offset;
  if (n > MAX_DIMS) return;
  const base = 8 + n * (k + 1);
  const off = n - t.ndim;
  for (let i = 0; i < off; i++) ARGS[base + i] = 0;
  for (let i = 0; i < t.ndim; i++) ARGS[base + off + i] = t.shape[i] === 1 && shape[off + i] !== 1 ? 0 : t.strides[i];
}

/** broadcastStrides(t, shape) packed in the scratch buffer `slot`. */
export function packBroadcastStrides(slot: number, t: Tensor, shape: readonly number[]): Float64Array {
  const n = shape.length;
  const p = packBuf(slot, n);
  const off = n - t.ndim;
  for (let i = 0; i < off; i++) p[i] = 0;
  for (let i = 0; i < t.ndim; i++) p[off + i] = t.shape[i] === 1 && shape[off + i] !== 1 ? 0 : t.strides[i];
  return p;
}

export function broadcastShapes(a: readonly number[], b: readonly number[], op: string): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    // (no negative indexing: a miss on an array index is a slow lookup in V8)
    const ia = i - n + a.length, ib = i - n + b.length;
    const da = ia >= 0 ? a[ia] : 1;
    const db = ib >= 0 ? b[ib] : 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`nodegrad: ${op}: shapes ${fmt(a)} and ${fmt(b)} cannot be broadcast together (dim ${i}: ${da} vs ${db})`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides that read t as if expanded to `shape` (0 on broadcast dims). */
export function broadcastStrides(t: Tensor, shape: readonly number[]): number[] {
  const n = shape.length;
  const st = new Array<number>(n).fill(0);
  const off = n - t.ndim;
  for (let i = 0; i < t.ndim; i++) st[off + i] = t.shape[i] === 1 && shape[off + i] !== 1 ? 0 : t.strides[i];
  return st;
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

export function normDim(dim: number, ndim: number, op: string): number {
  if (typeof dim !== 'number' || !Number.isInteger(dim)) throw new Error(`nodegrad: ${op}: dim must be an integer (got ${String(dim)})`);
  const n = Math.max(ndim, 1);
  if (dim < -n || dim >= n) throw new Error(`nodegrad: ${op}: dim ${dim} is out of range for a tensor with ${ndim} dims`);
  return dim < 0 ? dim + n : dim;
}

/** Normalised, sorted, de-duplicated dims; undefined means all dims. */
export function normDims(dim: number | number[] | undefined | null, ndim: number, op: string): number[] {
  if (dim === undefined || dim === null) {
    const all = new Array<number>(ndim);
    for (let i = 0; i < ndim; i++) all[i] = i;
    return all;
  }
  if (!Array.isArray(dim)) return [normDim(dim, ndim, op)];
  const ds = dim.map((d) => normDim(d, ndim, op));
  const set = [...new Set(ds)].sort((a, b) => a - b);
  if (set.length !== ds.length) throw new Error(`nodegrad: ${op}: dim ${show(dim)} repeats a dimension`);
  return set;
}

/** The elements of a contiguous tensor as a typed array starting at its first element. */
export function flat(t: Tensor, op: string): TypedArray {
  t.assertLive(op);
  const d = t.storage.data;
  if (t.device !== 'cpu') {
    // a device handle: a non-owning sub-range handle when the tensor does not start at 0
    if (t.offset === 0 && t.storage.length === t.numel) return d;
    return native.cudaView(d as unknown as DeviceHandle, t.offset, t.numel) as unknown as TypedArray;
  }
  return t.offset === 0 && d.length === t.numel ? d : (d.subarray(t.offset, t.offset + t.numel) as TypedArray);
}
