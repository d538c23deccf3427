// What the native calls take: the (buffer, offset, strides) triple of a view, shapes and
// strides packed in reused Float64Arrays, and the argument block of the packed entries.
import type { TypedArray } from '../dtype.js';
import { native, type DeviceHandle } from '../native.js';
import type { Tensor } from '../tensor.js';
import { MAX_DIMS } from './dims.js';

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
