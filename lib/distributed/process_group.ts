// ng.distributed: process groups and collectives (torch.distributed's names, camelCase).
// Every collective returns a Promise; the work runs on the group's native thread, in the
// order this process issued it, so the event loop stays free. Every rank must issue the
// same collectives in the same order, as with torch.distributed.
import { native, type DistGroupHandle } from '../native.js';
import { Tensor } from '../tensor.js';
import { Storage, cudaDeviceCount, cudaIndex } from '../storage.js';
import type { DType } from '../dtype.js';
import { contiguousStrides } from '../ops/dims.js';

export type Backend = 'gloo' | 'nccl';
export type ReduceOp = 'sum' | 'avg' | 'max';

export interface InitProcessGroupOptions {
  /**
   * 'gloo' (CPU tensors; the default) or 'nccl' (CUDA tensors on the device LOCAL_RANK
   * selects, through libnccl.so.2 opened at run time; CPU tensors still go through Gloo).
   */
  backend?: Backend;
  /** Defaults: RANK, WORLD_SIZE, MASTER_ADDR (127.0.0.1), MASTER_PORT (29500), as torchrun sets them. */
  rank?: number;
  worldSize?: number;
  masterAddr?: string;
  masterPort?: number;
  /** How long rendezvous and each collective may take before failing (default 300000 ms, or NODEGRAD_DIST_TIMEOUT_MS). */
  timeoutMs?: number;
}

interface Group {
  handle: DistGroupHandle;
  backend: Backend;
  rank: number;
  worldSize: number;
  localRank: number;
  /** The CUDA device of the NCCL communicator (-1 for gloo). */
  device: number;
}

const OP_CODE: Record<ReduceOp, number> = { sum: 0, avg: 1, max: 2 };
const DTYPES: readonly DType[] = ['float32', 'float64', 'int32'];
const NCCL_DTYPES: readonly DType[] = ['float32', 'float64', 'int32', 'bfloat16', 'float16'];

// The default process group (as torch.distributed has one per process).
let current: Group | null = null;

export const NO_GLOO_MESSAGE =
  'nodegrad: distributed: this build has no Gloo; install libgloo-dev (Debian/Ubuntu) and rebuild with npm run build:native';

/** Whether this build of the addon carries the Gloo process group. */
export function isGlooAvailable(): boolean {
  return typeof native.distInit === 'function';
}

/** Why backend 'nccl' cannot run here (null when it can): no usable CUDA device, or no libnccl. */
export function ncclUnavailableReason(): string | null {
  const why: string[] = [];
  if (cudaDeviceCount() === 0) why.push(`no usable CUDA device: ${native.cudaInfo().unavailableReason ?? 'nodegrad was built without CUDA'}`);
  const info = native.distNcclInfo?.();
  if (!info) why.push('this build has no NCCL support (built without CUDA or without Gloo)');
  else if (!info.available) why.push(info.why);
  return why.length ? why.join('; ') : null;
}

/** Whether backend 'nccl' can run here: a CUDA build with a usable device, and libnccl.so.2 found at run time. */
export function isNcclAvailable(): boolean {
  return isGlooAvailable() && ncclUnavailableReason() === null;
}

function envInt(name: string, fallback: number | undefined): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw new Error(`nodegrad: distributed: initProcessGroup: ${name} must be an integer (got "${v}")`);
  return n;
}

function checkInt(what: string, v: unknown, lo: number, hi: number, hint: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < lo || v > hi) {
    throw new Error(`nodegrad: distributed: initProcessGroup: ${what} out of range (got ${String(v)}; expected ${hint})`);
  }
  return v;
}

/** Joins the default process group: rank 0 hosts the rendezvous store on masterPort; every rank connects to it. */
export async function initProcessGroup(opts: InitProcessGroupOptions = {}): Promise<void> {
  if (current) throw new Error('nodegrad: distributed: initProcessGroup: the default process group is already initialized (call destroyProcessGroup first)');
  const backend = opts.backend ?? 'gloo';
  if (backend !== 'gloo' && backend !== 'nccl') {
    throw new Error(`nodegrad: distributed: initProcessGroup: unknown backend (got "${String(backend)}"; expected "gloo" or "nccl")`);
  }
  // both backends rendezvous through the store that comes with the Gloo build
  if (!isGlooAvailable()) throw new Error(backend === 'nccl' ? `${NO_GLOO_MESSAGE} (backend 'nccl' uses its rendezvous store)` : NO_GLOO_MESSAGE);
  if (backend === 'nccl') {
    const why = ncclUnavailableReason();
    if (why !== null) throw new Error(`nodegrad: distributed: backend 'nccl' needs CUDA tensors and libnccl.so.2 (${why}); use backend 'gloo' for CPU tensors`);
  }
  const worldSize = checkInt('worldSize', opts.worldSize ?? envInt('WORLD_SIZE', 1), 1, 65536, 'an integer >= 1 (WORLD_SIZE)');
  const rank = checkInt('rank', opts.rank ?? envInt('RANK', 0), 0, worldSize - 1, `0 <= rank < worldSize ${worldSize} (RANK)`);
  const masterPort = checkInt('masterPort', opts.masterPort ?? envInt('MASTER_PORT', 29500), 1, 65535, 'a TCP port 1..65535 (MASTER_PORT)');
  const masterAddr = opts.masterAddr ?? process.env.MASTER_ADDR ?? '127.0.0.1';
  if (typeof masterAddr !== 'string' || masterAddr === '') {
    throw new Error(`nodegrad: distributed: initProcessGroup: masterAddr must be a host name (got ${JSON.stringify(masterAddr)})`);
  }
  const timeoutMs = checkInt('timeoutMs', opts.timeoutMs ?? envInt('NODEGRAD_DIST_TIMEOUT_MS', 300000), 1, 2 ** 31 - 1, 'a positive number of milliseconds');
  const localRank = envInt('LOCAL_RANK', rank) ?? rank;
  let device = -1;
  if (backend === 'nccl') {
    const n = cudaDeviceCount();
    if (!Number.isSafeInteger(localRank) || localRank < 0 || localRank >= n) {
      throw new Error(`nodegrad: distributed: initProcessGroup: LOCAL_RANK selects this rank's CUDA device (got ${localRank}; expected 0 <= LOCAL_RANK < ${n}, the CUDA devices cuda:0..cuda:${n - 1})`);
    }
    device = localRank;
  }
  const [handle, ready] = native.distInit!({ rank, worldSize, masterAddr, masterPort, timeoutMs, backend, device });
  const g: Group = { handle, backend, rank, worldSize, localRank, device };
  try {
    await ready;
  } catch (e) {
    await native.distDestroy!(handle).catch(() => undefined);
    throw e;
  }
  current = g;
}

export function isInitialized(): boolean {
  return current !== null;
}

function group(op: string): Group {
  if (!current) throw new Error(`nodegrad: distributed: ${op}: no process group (call await ng.distributed.initProcessGroup() first)`);
  return current;
}

export function getRank(): number {
  return group('getRank').rank;
}
export function getWorldSize(): number {
  return group('getWorldSize').worldSize;
}
/** The rank on this node (LOCAL_RANK as the launcher sets it; the global rank otherwise). */
export function getLocalRank(): number {
  return group('getLocalRank').localRank;
}
export function getBackend(): Backend {
  return group('getBackend').backend;
}

// gloo: CPU tensors; nccl: CUDA tensors on the communicator's device (CPU tensors go through Gloo).
function checkTensor(op: string, g: Group, t: Tensor, what = 'tensor'): void {
  if (!(t instanceof Tensor)) throw new Error(`nodegrad: distributed: ${op}: ${what} must be a Tensor (got ${typeof t})`);
  let dtypes = DTYPES;
  if (t.device !== 'cpu') {
    if (g.backend !== 'nccl') {
      throw new Error(`nodegrad: distributed: ${op}: the gloo backend takes CPU tensors (got ${what} on ${t.device}; expected cpu: use .cpu(), or initProcessGroup({ backend: 'nccl' }) for CUDA tensors)`);
    }
    if (cudaIndex(t.device) !== g.device) {
      throw new Error(`nodegrad: distributed: ${op}: ${what} is on ${t.device}, but this rank's NCCL communicator is on cuda:${g.device} (LOCAL_RANK selects it; expected cuda:${g.device})`);
    }
    dtypes = NCCL_DTYPES;
  }
  if (!dtypes.includes(t.dtype)) {
    throw new Error(`nodegrad: distributed: ${op}: unsupported dtype (got ${t.dtype} on ${t.device}; expected ${dtypes.join(', ')})`);
  }
  if (!t.isContiguous()) throw new Error(`nodegrad: distributed: ${op}: ${what} must be contiguous (got strides [${t.strides.join(',')}]; call .contiguous() first)`);
}

function reduceCode(op: string, t: Tensor, r: ReduceOp | undefined): number {
  const name = r ?? 'sum';
  const code = OP_CODE[name];
  if (code === undefined) throw new Error(`nodegrad: distributed: ${op}: unknown reduce op (got "${String(name)}"; expected sum, avg or max)`);
  if (name === 'avg' && t.dtype === 'int32') throw new Error(`nodegrad: distributed: ${op}: avg needs a floating dtype (got int32; expected a floating dtype, or use sum)`);
  return code;
}

// Keeps the storages alive until the collective settles (a dispose meanwhile must not
// hand the buffer the addon is writing to another tensor).
async function holding<T>(storages: Storage[], p: Promise<void>, value: T): Promise<T> {
  for (const s of storages) s.retain();
  try {
    await p;
    return value;
  } finally {
    for (const s of storages) s.release();
  }
}

/** Reduces `t` over every rank, in place (op: 'sum' | 'avg' | 'max'); resolves to `t`. */
export function allReduce(t: Tensor, opts: { op?: ReduceOp } = {}): Promise<Tensor> {
  const g = group('allReduce');
  checkTensor('allReduce', g, t);
  const code = reduceCode('allReduce', t, opts.op);
  t.storage.bumpVersion('allReduce');
  return holding([t.storage], native.distAllReduce!(g.handle, t.storage.data, t.offset, t.numel, code), t);
}

/** Copies rank `src`'s values of `t` into `t` on every rank; resolves to `t`. */
export function broadcast(t: Tensor, opts: { src?: number } = {}): Promise<Tensor> {
  const g = group('broadcast');
  checkTensor('broadcast', g, t);
  const src = opts.src ?? 0;
  if (!Number.isSafeInteger(src) || src < 0 || src >= g.worldSize) {
    throw new Error(`nodegrad: distributed: broadcast: src out of range (got ${String(src)}; expected 0 <= src < worldSize ${g.worldSize})`);
  }
  if (g.rank !== src) t.storage.bumpVersion('broadcast');
  return holding([t.storage], native.distBroadcast!(g.handle, t.storage.data, t.offset, t.numel, src), t);
}

/** Every rank's `t` (same shape and dtype on every rank), in rank order. */
export async function allGather(t: Tensor): Promise<Tensor[]> {
  const g = group('allGather');
  checkTensor('allGather', g, t);
  const n = t.numel;
  const out = new Storage(t.device, t.dtype, n * g.worldSize, undefined, false);
  const parts: Tensor[] = [];
  for (let r = 0; r < g.worldSize; r++) parts.push(new Tensor(out, t.shape, contiguousStrides(t.shape), r * n));
  await holding([t.storage, out], native.distAllGather!(g.handle, t.storage.data, t.offset, n, out.data, 0), null);
  return parts;
}

/**
 * Reduces `t` over every rank and gives each rank its slice along dim 0: `t.shape[0]`
 * must be divisible by the world size; the result has shape [shape[0] / worldSize, ...].
 */
export async function reduceScatter(t: Tensor, opts: { op?: ReduceOp } = {}): Promise<Tensor> {
  const g = group('reduceScatter');
  checkTensor('reduceScatter', g, t);
  const code = reduceCode('reduceScatter', t, opts.op);
  const d0 = t.shape[0] ?? 1;
  if (t.shape.length === 0 || d0 % g.worldSize !== 0) {
    throw new Error(`nodegrad: distributed: reduceScatter: dim 0 must be divisible by the world size (got shape [${t.shape.join(',')}]; expected a multiple of ${g.worldSize})`);
  }
  const shape = [d0 / g.worldSize, ...t.shape.slice(1)];
  const per = t.numel / g.worldSize;
  const out = new Storage(t.device, t.dtype, per, undefined, false);
  const res = new Tensor(out, shape, contiguousStrides(shape), 0);
  await holding([t.storage, out], native.distReduceScatter!(g.handle, t.storage.data, t.offset, t.numel, out.data, 0, code), null);
  return res;
}

/** Resolves once every rank has reached the barrier. */
export function barrier(): Promise<void> {
  return native.distBarrier!(group('barrier').handle);
}

/** Leaves the default group (queued collectives finish first). A no-op without one. */
export async function destroyProcessGroup(): Promise<void> {
  const g = current;
  if (!g) return;
  current = null;
  await native.distDestroy!(g.handle);
}

/** @internal All-reduces the first n elements of a CPU typed array (DDP's flat buckets). */
export function allReduceBuffer(buf: Float32Array | Float64Array, n: number, op: ReduceOp): Promise<void> {
  return native.distAllReduce!(group('allReduce').handle, buf, 0, n, OP_CODE[op]);
}
