// Allocation of op outputs: the size checks made before allocating, and empty().
import { constants as bufferConstants } from 'node:buffer';
import type { DType } from '../dtype.js';
import { Storage, type Device } from '../storage.js';
import { FRESH, Tensor } from '../tensor.js';
import { fmt } from './check.js';
import { contiguousStrides, extentOf, numelOf } from './dims.js';

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
