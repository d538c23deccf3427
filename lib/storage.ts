// Storage: owned bytes on a device, shared by every Tensor view over it and freed when
// the last view is disposed (reference counted). CPU storage is a typed array, so
// kernels read it in place and `dataSync()` needs no copy. CUDA storage is an opaque
// handle to a block of the caching allocator (native/bind/cuda.cc); the addon routes
// each kernel call by the device of its buffers, so op code passes either kind alike.
import { allocTyped, dtypeCode, itemSize, type DType, type TypedArray } from './dtype.js';
import { totalmem } from 'node:os';
import { native, type DeviceHandle } from './native.js';

export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

let cudaCount: number | null = null;
let cudaWhy = '';
/** Number of usable CUDA devices (0 in a CPU-only build or without a driver/device). */
export function cudaDeviceCount(): number {
  if (cudaCount === null) {
    const ci = native.cudaInfo();
    cudaCount = ci.compiled && typeof native.cudaAlloc === 'function' ? ci.deviceCount : 0;
    cudaWhy = ci.unavailableReason ?? (ci.compiled ? '' : 'nodegrad was built without CUDA');
  }
  return cudaCount;
}

export function isCuda(d: Device): boolean {
  return d !== 'cpu';
}
/** The CUDA device index of 'cuda:N' (throws for the CPU). */
export function cudaIndex(d: Device): number {
  if (d === 'cpu') throw new Error('nodegrad: internal: cudaIndex of a CPU device');
  return d === 'cuda' ? 0 : Number(d.slice(5));
}

/** Validates a device argument; 'cuda' becomes 'cuda:0' (as PyTorch prints it). */
export function parseDevice(d: unknown, op: string): Device {
  if (d === undefined || d === 'cpu') return 'cpu';
  if (typeof d === 'string' && /^cuda(:\d+)?$/.test(d)) {
    const idx = d === 'cuda' ? 0 : Number(d.slice(5));
    const n = cudaDeviceCount();
    if (n === 0) {
      throw new Error(`nodegrad: ${op}: device '${d}' is not available: ${cudaWhy || 'no usable CUDA device'} ` +
        '(see nodegrad.info().cuda)');
    }
    if (idx >= n) throw new Error(`nodegrad: ${op}: device '${d}' does not exist (${n} CUDA device(s): cuda:0..cuda:${n - 1})`);
    return `cuda:${idx}`;
  }
  throw new Error(`nodegrad: ${op}: unknown device ${JSON.stringify(d)} (expected 'cpu' or 'cuda[:N]')`);
}

interface DeviceStats { tensors: number; bytes: number; peakBytes: number }
const stats = new Map<string, DeviceStats>();
// the last device looked up: every op on one device hits it without a Map lookup
let lastDevice = '';
let lastStats: DeviceStats | null = null;
function statsFor(device: string): DeviceStats {
  if (device === lastDevice && lastStats !== null) return lastStats;
  let s = stats.get(device);
  if (!s) {
    s = { tensors: 0, bytes: 0, peakBytes: 0 };
    stats.set(device, s);
  }
  lastDevice = device;
  lastStats = s;
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
// on first touch (as much as the kernel that fills it, for memory-bound ops), and even a
// tiny one costs an ArrayBuffer allocation plus, the first time the addon reads it, the
// move of its bytes off the JavaScript heap (about as much as the kernel call itself).
// Bounded (poolLimit): a release that does not fit evicts the least recently released
// buffers of 4 KB and more (any size, any dtype) until it does, so the sizes a program
// uses now displace those it used before instead of being refused once the pool is full.
// Buffers under 4 KB are pooled too, at most SMALL_PER_SIZE of each (dtype, length), and
// are never evicted (their total is small).
const SMALL_BYTES = 4096;
const SMALL_PER_SIZE = 64;
const MB = 1024 * 1024;
const envPoolMB = process.env.NODEGRAD_CPU_POOL_MB;
const fixedPoolLimit = envPoolMB !== undefined && envPoolMB !== '' && Number(envPoolMB) >= 0 ? Number(envPoolMB) * MB : null;
const POOL_FLOOR = 256 * MB;
const POOL_CAP = Math.max(POOL_FLOOR, totalmem() / 4);
/**
 * The pool's bound in bytes: NODEGRAD_CPU_POOL_MB when set; by default the larger of 256 MB
 * and the peak of live CPU tensor bytes so far (at most a quarter of the machine's memory).
 * A training step whose tensors peak past 256 MB then finds the last step's buffers in the
 * pool instead of allocating fresh ones that pay a page fault per 4 KB, and the memory the
 * process keeps stays about its peak, as with an allocator that keeps freed memory (GPT
 * 10.8M full step, peak 568 MiB, 2 threads: 331-338 -> 279-292 ms, 24-38% fewer page faults).
 */
function poolLimit(): number {
  return fixedPoolLimit ?? Math.min(POOL_CAP, Math.max(POOL_FLOOR, statsFor('cpu').peakBytes));
}
// per dtype code: lists of free buffers by element count (a stack: take the newest)
let pool: Map<number, TypedArray[]>[] = [];
let pooledBytes = 0;
// every pooled buffer of SMALL_BYTES or more, oldest release first (Map keeps insertion
// order), with the by-length map of its dtype
let lru = new Map<TypedArray, Map<number, TypedArray[]>>();

function takePooled(dtype: DType, length: number, zeroed: boolean): TypedArray | null {
  const list = pool[dtypeCode[dtype]]?.get(length);
  if (list === undefined || list.length === 0) return null;
  const buf = list.pop()!;
  pooledBytes -= buf.byteLength;
  if (buf.byteLength >= SMALL_BYTES) lru.delete(buf);
  if (zeroed) buf.fill(0);
  return buf;
}

/** Drops the least recently released large buffer; false when there is none. */
function evictOldest(): boolean {
  const first = lru.entries().next();
  if (first.done === true) return false;
  const [buf, byLength] = first.value;
  lru.delete(buf);
  const list = byLength.get(buf.length)!;
  // lists grow in release order, so the oldest of its length is at the front
  list.splice(list.indexOf(buf), 1);
  if (list.length === 0) byLength.delete(buf.length);
  pooledBytes -= buf.byteLength;
  return true;
}

function givePooled(dtype: DType, buf: TypedArray): void {
  const bytes = buf.byteLength;
  const limit = poolLimit();
  if (bytes === 0 || bytes > limit) return;
  if (buf.byteOffset !== 0 || bytes !== buf.buffer.byteLength) return;
  const code = dtypeCode[dtype];
  let byLength = pool[code];
  if (byLength === undefined) pool[code] = byLength = new Map();
  let list = byLength.get(buf.length);
  if (bytes < SMALL_BYTES && list !== undefined && list.length >= SMALL_PER_SIZE) return;
  if (pooledBytes + bytes > limit) {
    do if (!evictOldest()) return; while (pooledBytes + bytes > limit);
    list = byLength.get(buf.length);  // (eviction may have dropped this length's list)
  }
  if (list === undefined) byLength.set(buf.length, (list = []));
  list.push(buf);
  pooledBytes += bytes;
  if (bytes >= SMALL_BYTES) lru.set(buf, byLength);
}

/** Drops every pooled CPU buffer (they are then garbage collected). */
export function emptyCpuPool(): void {
  pool = [];
  lru = new Map();
  pooledBytes = 0;
}
export function cpuPoolBytes(): number {
  return pooledBytes;
}

/**
 * A storage's reference count and what freeing it takes: its device, its size, the block
 * handle of device memory and, within a bound, the CPU buffer. The collector's backstop
 * (lib/memory.ts) keeps this for each tensor nobody disposed; finalizers run only when
 * the program yields to the event loop, so a buffer this holds stays alive until then.
 * Buffers held so are what a finalizer gives back to the pool for reuse, but only up to
 * BACKSTOP_KEEP_BYTES of them (256 MB, or NODEGRAD_CPU_POOL_MB when set):
 * past that, a leaked buffer goes with its last view at the next collection. (Holding
 * every one kept all the leaked buffers of a loop that never yields: 100k leaked 16 KB
 * results of a synchronous loop held 2.1 GB.)
 */
export class StorageLife {
  refs = 0;
  live = true;
  /** The CPU buffer, while the backstop holds it for the pool (see keepForCollector). */
  kept: TypedArray | null = null;
  constructor(readonly device: Device, readonly dtype: DType, readonly nbytes: number, readonly handle: DeviceHandle | null) {}
  /** Drops one reference of a view the collector took; frees the storage with the last. */
  releaseCollected(): void {
    if (--this.refs <= 0) this.free(this.kept);
  }
  /**
   * Frees the storage, once (Storage.release and a finalizer may both get here): device
   * memory back to its allocator, the CPU buffer `buf` (when there is one to reuse) to the
   * pool, and its bytes off the device's count.
   */
  free(buf: TypedArray | null): void {
    if (!this.live) return;
    this.live = false;
    if (this.kept !== null) {
      keptBytes -= this.nbytes;
      this.kept = null;
    }
    if (this.handle !== null) native.cudaFree(this.handle);
    else if (buf !== null) givePooled(this.dtype, buf);
    statsFor(this.device).bytes -= this.nbytes;
  }
}
// CPU bytes the backstop holds for reuse (StorageLife.kept): at most the pool's fixed
// bound, not its peak-following default (leaked tensors count as live until their
// finalizers run, so they would raise the peak, and with it their own bound)
const BACKSTOP_KEEP_BYTES = fixedPoolLimit ?? POOL_FLOOR;
let keptBytes = 0;

export class Storage {
  readonly id: number;
  readonly device: Device;
  readonly dtype: DType;
  readonly length: number;
  private buf: TypedArray | null;
  /** Reference count and freeing state, shared with the collector's backstop. */
  readonly life: StorageLife;
  /**
   * Bumped by every in-place write into this storage (PyTorch's version counter, shared
   * by every view): a backward formula that saved a tensor checks that it is unchanged.
   */
  version = 0;
  /** The in-place op that last bumped version (named in backward's error). */
  modifiedBy = '';

  /**
   * zeroed = false lets a kernel that writes every element skip clearing a reused buffer.
   * For a CUDA device, `data` (host values) is uploaded into a fresh device block.
   */
  constructor(device: Device, dtype: DType, length: number, data?: TypedArray, zeroed = true) {
    this.id = nextId++;
    this.device = device;
    this.dtype = dtype;
    this.length = length;
    if (device !== 'cpu') {
      const h: DeviceHandle = native.cudaAlloc(cudaIndex(device), dtypeCode[dtype], length, zeroed && !data);
      if (data) {
        try {
          native.cudaUpload(h, 0, data);
        } catch (e) {
          native.cudaFree(h);
          throw e;
        }
      }
      this.buf = h as unknown as TypedArray;
      this.life = new StorageLife(device, dtype, this.nbytes, h);
    } else {
      this.buf = data ?? takePooled(dtype, length, zeroed) ?? allocTyped(dtype, length);
      this.life = new StorageLife(device, dtype, this.nbytes, null);
    }
    const s = statsFor(device);
    s.bytes += this.nbytes;
    if (s.bytes > s.peakBytes) s.peakBytes = s.bytes;
  }

  get nbytes(): number {
    return this.length * itemSize[this.dtype];
  }
  get freed(): boolean {
    return !this.life.live;
  }
  get refs(): number {
    return this.life.refs;
  }
  /**
   * What the addon's kernels take: the CPU typed array, or for CUDA storage the opaque
   * device handle (typed as TypedArray for the op code's convenience: JavaScript must
   * not read values from it; use `host` for that). Throws if freed.
   */
  get data(): TypedArray {
    if (this.buf === null || !this.life.live) throw new Error('nodegrad: storage used after it was freed');
    return this.buf;
  }
  /** The CPU typed array of CPU storage; throws for device storage. */
  get host(): TypedArray {
    if (this.device !== 'cpu') throw new Error(`nodegrad: internal: host values of ${this.device} storage read directly (copy with .cpu() first)`);
    return this.data;
  }
  /** Records an in-place write by `op` (called once per in-place op, never per element). */
  bumpVersion(op: string): void {
    this.version++;
    this.modifiedBy = op;
  }
  retain(): void {
    this.life.refs++;
  }
  /**
   * Called when a view of this storage is handed to the collector's backstop: the CPU
   * buffer is held with it (for the pool, when the finalizer runs) while the held total
   * stays within BACKSTOP_KEEP_BYTES.
   */
  keepForCollector(): void {
    const life = this.life;
    if (this.device !== 'cpu' || life.kept !== null || this.buf === null || !life.live) return;
    if (keptBytes + this.nbytes > BACKSTOP_KEEP_BYTES) return;
    life.kept = this.buf;
    keptBytes += this.nbytes;
  }
  release(): void {
    if (--this.life.refs <= 0 && this.buf !== null) {
      this.life.free(this.device === 'cpu' ? this.buf : null);
      this.buf = null;
    }
  }
}

/** Identifier of the most recently created storage (for "created after" checks). */
export function lastStorageId(): number {
  return nextId - 1;
}
