// Storage: owned bytes on a device, shared by every Tensor view over it and freed when
// the last view is disposed (reference counted). CPU storage is a typed array, so
// kernels read it in place and `dataSync()` needs no copy.
import { allocTyped, itemSize, type DType, type TypedArray } from './dtype.js';

export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

export function parseDevice(d: unknown, op: string): Device {
  if (d === undefined || d === 'cpu') return 'cpu';
  if (typeof d === 'string' && /^cuda(:\d+)?$/.test(d)) {
    throw new Error(
      `nodegrad: ${op}: device '${d}' is not available in this build: the CPU backend is the only one ` +
        'present (see nodegrad.info().cuda for why)',
    );
  }
  throw new Error(`nodegrad: ${op}: unknown device ${JSON.stringify(d)} (expected 'cpu' or 'cuda[:N]')`);
}

interface DeviceStats { tensors: number; bytes: number; peakBytes: number }
const stats = new Map<string, DeviceStats>();
function statsFor(device: string): DeviceStats {
  let s = stats.get(device);
  if (!s) {
    s = { tensors: 0, bytes: 0, peakBytes: 0 };
    stats.set(device, s);
  }
  return s;
}
export function countTensor(device: string, delta: number): void {
  statsFor(device).tensors += delta;
}
export function deviceStats(): Map<string, DeviceStats> {
  return stats;
}

let nextId = 1;

export class Storage {
  readonly id: number;
  readonly device: Device;
  readonly dtype: DType;
  readonly length: number;
  private buf: TypedArray | null;
  refs = 0;

  constructor(device: Device, dtype: DType, length: number, data?: TypedArray) {
    this.id = nextId++;
    this.device = device;
    this.dtype = dtype;
    this.length = length;
    this.buf = data ?? allocTyped(dtype, length);
    const s = statsFor(device);
    s.bytes += this.nbytes;
    if (s.bytes > s.peakBytes) s.peakBytes = s.bytes;
  }

  get nbytes(): number {
    return this.length * itemSize[this.dtype];
  }
  get freed(): boolean {
    return this.buf === null;
  }
  /** The CPU typed array; throws if freed. */
  get data(): TypedArray {
    if (this.buf === null) throw new Error('nodegrad: storage used after it was freed');
    return this.buf;
  }
  retain(): void {
    this.refs++;
  }
  release(): void {
    if (--this.refs <= 0 && this.buf !== null) {
      this.buf = null;
      statsFor(this.device).bytes -= this.nbytes;
    }
  }
}

/** Identifier of the most recently created storage (for "created after" checks). */
export function lastStorageId(): number {
  return nextId - 1;
}
