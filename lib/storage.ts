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

// Freed CPU buffers, reused by size: a fresh typed array costs page faults and zeroing
// on first touch (as much as the kernel that fills it, for memory-bound ops). Bounded by
// NODEGRAD_CPU_POOL_MB (default 256); buffers under 4 KB are not pooled.
const POOL_MIN_BYTES = 4096;
const poolLimit = (Number(process.env.NODEGRAD_CPU_POOL_MB) >= 0 ? Number(process.env.NODEGRAD_CPU_POOL_MB) : 256) * 1024 * 1024;
const pool = new Map<string, TypedArray[]>();
let pooledBytes = 0;

function takePooled(dtype: DType, length: number, zeroed: boolean): TypedArray | null {
  if (length * itemSize[dtype] < POOL_MIN_BYTES) return null;
  const list = pool.get(`${dtype}:${length}`);
  const buf = list?.pop();
  if (!buf) return null;
  pooledBytes -= buf.byteLength;
  if (zeroed) buf.fill(0);
  return buf;
}

function givePooled(dtype: DType, buf: TypedArray): void {
  if (buf.byteLength < POOL_MIN_BYTES || pooledBytes + buf.byteLength > poolLimit) return;
  if (buf.byteOffset !== 0 || buf.byteLength !== buf.buffer.byteLength) return;
  const key = `${dtype}:${buf.length}`;
  let list = pool.get(key);
  if (!list) pool.set(key, (list = []));
  list.push(buf);
  pooledBytes += buf.byteLength;
}

/** Drops every pooled CPU buffer (they are then garbage collected). */
export function emptyCpuPool(): void {
  pool.clear();
  pooledBytes = 0;
}
export function cpuPoolBytes(): number {
  return pooledBytes;
}

export class Storage {
  readonly id: number;
  readonly device: Device;
  readonly dtype: DType;
  readonly length: number;
  private buf: TypedArray | null;
  refs = 0;

  /** zeroed = false lets a kernel that writes every element skip clearing a reused buffer. */
  constructor(device: Device, dtype: DType, length: number, data?: TypedArray, zeroed = true) {
    this.id = nextId++;
    this.device = device;
    this.dtype = dtype;
    this.length = length;
    this.buf = data ?? takePooled(dtype, length, zeroed) ?? allocTyped(dtype, length);
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
      if (this.device === 'cpu') givePooled(this.dtype, this.buf);
      this.buf = null;
      statsFor(this.device).bytes -= this.nbytes;
    }
  }
}

/** Identifier of the most recently created storage (for "created after" checks). */
export function lastStorageId(): number {
  return nextId - 1;
}
