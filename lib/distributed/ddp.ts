// DistributedDataParallel: each rank runs the whole module on its own batch; gradients are
// averaged over the ranks in buckets (PyTorch's reducer.cpp in spirit). Parameters are
// grouped in reverse registration order (roughly the order backward produces their
// gradients) into buckets of at most bucketCapMb, the first of at most 1 MiB (PyTorch's
// first-bucket size, so communication starts early in backward even for a model below
// bucketCapMb); a post-accumulate-grad hook counts a
// bucket's ready gradients and starts its all-reduce the moment the last one lands, so
// communication runs on the group's thread while backward goes on with earlier layers.
import { Module } from '../nn/module.js';
import { registerPostAccumulateGradHook } from '../autograd.js';
import type { Tensor } from '../tensor.js';
import { allReduceBuffer, broadcast, getWorldSize, isInitialized } from './process_group.js';

export interface DistributedDataParallelOptions {
  /** Largest bucket in MiB (default 25, as PyTorch). */
  bucketCapMb?: number;
}

// torch.distributed's _DEFAULT_FIRST_BUCKET_BYTES
const FIRST_BUCKET_BYTES = 1024 * 1024;

interface Bucket {
  params: Tensor[];
  offsets: number[];
  flat: Float32Array | Float64Array;
  ready: number;
  inFlight: Promise<void> | null;
}

export class DistributedDataParallel<M extends Module = Module> extends Module {
  readonly module: M;
  /** Resolves once rank 0's parameters and buffers have been copied to every rank. */
  readonly ready: Promise<void>;
  private readonly buckets: Bucket[] = [];
  private readonly bucketOf = new Map<Tensor, Bucket>();
  private sync = true;
  private isReady = false;

  constructor(module: M, opts: DistributedDataParallelOptions = {}) {
    super();
    if (!isInitialized()) throw new Error('nodegrad: DistributedDataParallel: no process group (call await ng.distributed.initProcessGroup() first)');
    const capMb = opts.bucketCapMb ?? 25;
    if (!(typeof capMb === 'number' && capMb > 0)) throw new Error(`nodegrad: DistributedDataParallel: bucketCapMb must be a positive number (got ${String(capMb)})`);
    this.module = module;
    const params = module.parameters();
    for (const p of params) {
      if (p.device !== 'cpu') throw new Error(`nodegrad: DistributedDataParallel: the gloo backend takes CPU parameters (got one on ${p.device}; expected cpu)`);
    }
    const trainable = params.filter((p) => p.requiresGrad);
    for (const p of trainable) {
      if (p.dtype !== 'float32' && p.dtype !== 'float64') throw new Error(`nodegrad: DistributedDataParallel: unsupported parameter dtype (got ${p.dtype}; expected float32 or float64)`);
    }
    const cap = capMb * 1024 * 1024;
    const capOf = (): number => (this.buckets.length === 0 ? Math.min(cap, FIRST_BUCKET_BYTES) : cap);
    let cur: Tensor[] = [], bytes = 0;
    const flush = (): void => {
      if (cur.length === 0) return;
      const offsets: number[] = [];
      let n = 0;
      for (const p of cur) { offsets.push(n); n += p.numel; }
      const flat = cur[0].dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
      const b: Bucket = { params: cur, offsets, flat, ready: 0, inFlight: null };
      this.buckets.push(b);
      for (const p of cur) this.bucketOf.set(p, b);
      cur = [];
      bytes = 0;
    };
    for (const p of [...trainable].reverse()) {
      const pb = p.numel * (p.dtype === 'float64' ? 8 : 4);
      if (cur.length > 0 && (bytes + pb > capOf() || cur[0].dtype !== p.dtype)) flush();
      cur.push(p);
      bytes += pb;
    }
    flush();
    for (const p of trainable) registerPostAccumulateGradHook(p, (t) => this.onGradReady(t));
    // the same broadcasts in the same order on every rank: parameters, then buffers
    const state = Object.values(module.stateDict()).filter((t, i, a) => a.indexOf(t) === i && t.dtype !== 'bfloat16' && t.dtype !== 'float16' && t.dtype !== 'bool');
    this.ready = Promise.all(state.map((t) => broadcast(t.isContiguous() ? t : t.contiguous(), { src: 0 }))).then(() => { this.isReady = true; });
  }

  forward(...args: never[]): unknown {
    if (!this.isReady) throw new Error('nodegrad: DistributedDataParallel: forward before the parameters were broadcast (await ddp.ready first)');
    return (this.module.forward as (...a: never[]) => unknown)(...args);
  }

  /** Runs fn without gradient synchronisation (gradient accumulation); the next synced backward averages the sum. */
  noSync<T>(fn: () => T): T {
    const prev = this.sync;
    this.sync = false;
    try {
      return fn();
    } finally {
      this.sync = prev;
    }
  }

  private onGradReady(p: Tensor): void {
    if (!this.sync) return;
    const b = this.bucketOf.get(p);
    if (!b || b.inFlight) return;
    if (++b.ready === b.params.length) this.launch(b);
  }

  private launch(b: Bucket): void {
    b.params.forEach((p, i) => {
      const g = p.grad;
      if (!g) b.flat.fill(0, b.offsets[i], b.offsets[i] + p.numel);
      else {
        const src = g.isContiguous() ? g : g.contiguous();
        b.flat.set((src.storage.host as Float32Array | Float64Array).subarray(src.offset, src.offset + p.numel), b.offsets[i]);
        if (src !== g) src.dispose();
      }
    });
    b.inFlight = getWorldSize() === 1 ? Promise.resolve() : allReduceBuffer(b.flat, b.flat.length, 'avg');
  }

  /**
   * Waits for every bucket's all-reduce and writes the averaged gradients into .grad.
   * Call after backward and before optimizer.step(); buckets whose gradients never
   * arrived (unused parameters) are reduced here, in bucket order.
   */
  async finishGradientSync(): Promise<void> {
    if (!this.sync) return;
    for (const b of this.buckets) if (!b.inFlight && b.ready > 0) this.launch(b);
    for (const b of this.buckets) {
      if (!b.inFlight) continue;
      await b.inFlight;
      b.params.forEach((p, i) => {
        const vals = b.flat.subarray(b.offsets[i], b.offsets[i] + p.numel);
        if (!p.grad) return;
        const g = p.grad;
        if (g.isContiguous()) {
          (g.storage.host as Float32Array | Float64Array).set(vals, g.offset);
          g.storage.bumpVersion('DistributedDataParallel');
        }
      });
      b.inFlight = null;
      b.ready = 0;
    }
  }

  // the wrapper is transparent for checkpoints: the state dict is the module's
  override namedParameters(prefix = ''): [string, Tensor][] {
    return this.module.namedParameters(prefix);
  }
}
