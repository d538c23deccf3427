// Shapes, strides, broadcasting and dim arguments, shared by the op files.
import type { Tensor } from '../tensor.js';
import { fmt, show } from './check.js';

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
export function extentOf(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) if (s !== 0) n *= s;
  return n;
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
