// Map-style datasets and a DataLoader (PyTorch's torch.utils.data): a TensorDataset is
// indexed along the first dim of its tensors; the loader yields batches (arrays of
// stacked tensors) in a seeded order that depends only on (seed, epoch), so a run is
// reproducible and a resumed run can ask for the same epoch again. Batched image
// transforms (normalize, randomCrop, randomHorizontalFlip) work on [N,C,H,W] tensors
// with tensor ops: a handful of native calls per batch, no per-pixel JavaScript.
import type { Tensor } from '../tensor.js';
import { full, tensor } from '../ops/creation.js';
import { scope } from '../memory.js';
import { div, sub, where } from '../ops/elementwise.js';
import { indexSelect } from '../ops/indexing.js';
import { narrow, select, stack } from '../ops/shape.js';
import { empty } from '../ops/alloc.js';
import { fmt } from '../ops/check.js';
import { Tensor as TensorClass } from '../tensor.js';
import { Rng } from './dataset.js';

/** What a DataLoader reads: `length` items, each an array of tensors (or numbers). */
export interface Dataset {
  readonly length: number;
  get(index: number): (Tensor | number)[];
  /** Optional fast path: the items at `indices`, already stacked. */
  getBatch?(indices: Int32Array): Tensor[];
}

/** Tensors that share their first dim: item i is [t0[i], t1[i], ...] (views). */
export class TensorDataset implements Dataset {
  readonly tensors: readonly Tensor[];

  constructor(...tensors: Tensor[]) {
    if (tensors.length === 0) throw new Error('nodegrad: TensorDataset: expected at least one tensor');
    for (const [i, t] of tensors.entries()) {
      if (!(t instanceof TensorClass)) throw new Error(`nodegrad: TensorDataset: argument ${i} is not a Tensor`);
      t.assertLive('TensorDataset');
      if (t.ndim === 0) throw new Error(`nodegrad: TensorDataset: tensor ${i} is zero-dimensional; every tensor needs a first dim to index`);
    }
    const n = tensors[0].shape[0];
    if (tensors.some((t) => t.shape[0] !== n)) {
      throw new Error(`nodegrad: TensorDataset: all tensors must have the same size in dim 0 (got shapes ${tensors.map((t) => fmt(t.shape)).join(', ')})`);
    }
    this.tensors = tensors;
  }

  get length(): number { return this.tensors[0].shape[0]; }

  get(index: number): Tensor[] {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) {
      throw new Error(`nodegrad: TensorDataset.get: index ${index} is out of range for ${this.length} items`);
    }
    return this.tensors.map((t) => select(t, 0, index));
  }

  /** One indexSelect per tensor (a stack of selects for dtypes indexSelect does not take). */
  getBatch(indices: Int32Array): Tensor[] {
    const idx = tensor(indices, { shape: [indices.length], device: this.tensors[0].device });
    try {
      return this.tensors.map((t) => (t.dtype === 'float32' || t.dtype === 'float64' || t.dtype === 'int32'
        ? indexSelect(t, 0, idx)
        : stack(Array.from(indices, (i) => select(t, 0, i)))));
    } finally {
      idx.dispose();
    }
  }
}

/** What a loader's transform is told about the batch it receives. */
export interface BatchContext {
  epoch: number;
  batchIndex: number;
  /** Seeded by (seed, epoch, batchIndex): augmentations drawn from it are reproducible. */
  rng: Rng;
}

export interface DataLoaderOptions {
  batchSize?: number;
  shuffle?: boolean;
  seed?: number;
  /** Leave out a last batch smaller than batchSize. */
  dropLast?: boolean;
  /** Applied to each stacked batch; tensors of the input batch it does not return are disposed. */
  transform?: (batch: Tensor[], ctx: BatchContext) => Tensor[];
}

/** A 52-bit seed from 32-bit parts (murmur3's finalizer over a running hash). */
function mixSeed(...parts: number[]): number {
  let h1 = 0x811c9dc5, h2 = 0x9e3779b9;
  for (const p of parts) {
    const lo = p >>> 0, hi = Math.floor(p / 4294967296) >>> 0;
    for (const v of [lo, hi]) {
      h1 = Math.imul(h1 ^ v, 0x85ebca6b); h1 ^= h1 >>> 13;
      h2 = Math.imul(h2 ^ v ^ h1, 0xc2b2ae35); h2 ^= h2 >>> 16;
    }
  }
  return (h1 >>> 0) + (h2 & 0xfffff) * 4294967296;
}

/**
 * Iterating yields batches: arrays of tensors, one per dataset field, stacked along a new
 * first dim. Each iteration uses the loader's current epoch and then advances it, so
 * repeated loops see new orders; setEpoch(e) replays epoch e. The batch tensors are new:
 * dispose them (ng.dispose(batch)) when the step is done.
 */
export class DataLoader implements Iterable<Tensor[]> {
  readonly dataset: Dataset;
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  private readonly transform?: (batch: Tensor[], ctx: BatchContext) => Tensor[];
  private nextEpoch = 0;

  constructor(dataset: Dataset, opts: DataLoaderOptions = {}) {
    if (!dataset || typeof dataset !== 'object' || typeof dataset.get !== 'function' || !Number.isInteger(dataset.length)) {
      throw new Error('nodegrad: DataLoader: dataset must have an integer length and a get(index) method');
    }
    const known = ['batchSize', 'shuffle', 'seed', 'dropLast', 'transform'];
    for (const k of Object.keys(opts)) {
      if (!known.includes(k)) throw new Error(`nodegrad: DataLoader: unknown option '${k}' (known: ${known.join(', ')})`);
    }
    const batchSize = opts.batchSize ?? 1;
    if (!Number.isSafeInteger(batchSize) || batchSize <= 0) throw new Error(`nodegrad: DataLoader: batchSize must be a positive integer (got ${String(batchSize)})`);
    const seed = opts.seed ?? 0;
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`nodegrad: DataLoader: seed must be a non-negative integer (got ${String(seed)})`);
    if (opts.transform !== undefined && typeof opts.transform !== 'function') throw new Error('nodegrad: DataLoader: transform must be a function (batch, ctx) => batch');
    this.dataset = dataset;
    this.batchSize = batchSize;
    this.shuffle = opts.shuffle ?? false;
    this.seed = seed;
    this.dropLast = opts.dropLast ?? false;
    this.transform = opts.transform;
  }

  /** Number of batches per epoch. */
  get length(): number {
    const n = this.dataset.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** The epoch the next iteration uses. */
  get epoch(): number { return this.nextEpoch; }

  setEpoch(epoch: number): void {
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new Error(`nodegrad: DataLoader.setEpoch: epoch must be a non-negative integer (got ${String(epoch)})`);
    this.nextEpoch = epoch;
  }

  /** The item order of an epoch: a seeded Fisher-Yates permutation, or 0..n-1 without shuffle. */
  order(epoch: number): Int32Array {
    const n = this.dataset.length;
    const idx = new Int32Array(n);
    for (let i = 0; i < n; i++) idx[i] = i;
    if (!this.shuffle) return idx;
    const rng = new Rng(mixSeed(this.seed, epoch));
    for (let i = n - 1; i > 0; i--) {
      const j = rng.nextInt(i + 1);
      const t = idx[i]; idx[i] = idx[j]; idx[j] = t;
    }
    return idx;
  }

  [Symbol.iterator](): Iterator<Tensor[]> {
    const epoch = this.nextEpoch++;
    return this.batches(epoch);
  }

  /** The batches of one epoch (does not change the loader's epoch counter). */
  *batches(epoch: number): Generator<Tensor[]> {
    const order = this.order(epoch);
    const count = this.length;
    for (let b = 0; b < count; b++) {
      const ids = order.subarray(b * this.batchSize, Math.min(order.length, (b + 1) * this.batchSize));
      const batch = this.collate(ids);
      if (!this.transform) {
        yield batch;
        continue;
      }
      const out = this.transform(batch, { epoch, batchIndex: b, rng: new Rng(mixSeed(this.seed, epoch, b, 0x7f4a7c15)) });
      if (!Array.isArray(out) || out.some((t) => !(t instanceof TensorClass))) {
        throw new Error('nodegrad: DataLoader: transform must return an array of tensors');
      }
      for (const t of batch) if (!out.includes(t)) t.dispose();
      yield out;
    }
  }

  private collate(ids: Int32Array): Tensor[] {
    if (this.dataset.getBatch) return this.dataset.getBatch(ids);
    const items = Array.from(ids, (i) => this.dataset.get(i));
    const width = items[0].length;
    if (items.some((it) => !Array.isArray(it) || it.length !== width)) {
      throw new Error(`nodegrad: DataLoader: dataset items must be arrays of the same length (item ${ids[0]} has ${width} fields)`);
    }
    const out: Tensor[] = [];
    for (let f = 0; f < width; f++) {
      const col = items.map((it) => it[f]);
      if (col.every((v) => typeof v === 'number')) {
        const nums = col as number[];
        out.push(nums.every((v) => Number.isInteger(v) && Math.abs(v) <= 2147483647)
          ? tensor(Int32Array.from(nums)) : tensor(Float32Array.from(nums)));
      } else if (col.every((v) => v instanceof TensorClass)) {
        out.push(stack(col as Tensor[]));
      } else {
        throw new Error(`nodegrad: DataLoader: field ${f} of the dataset's items mixes tensors and numbers`);
      }
    }
    return out;
  }
}

// ---- batched image transforms -----------------------------------------------------------

function checkImages(x: Tensor, op: string, rank: number[]): void {
  if (!(x instanceof TensorClass)) throw new Error(`nodegrad: ${op}: expected a Tensor`);
  x.assertLive(op);
  if (!rank.includes(x.ndim)) {
    throw new Error(`nodegrad: ${op}: expected images of shape ${rank.includes(3) ? '[C,H,W] or ' : ''}[N,C,H,W] (got shape ${fmt(x.shape)})`);
  }
  if (x.dtype !== 'float32' && x.dtype !== 'float64') throw new Error(`nodegrad: ${op}: images must be float32 or float64 (got ${x.dtype})`);
}

function rngOf(opts: { seed?: number; rng?: Rng }, op: string): Rng {
  if (opts.rng !== undefined) {
    if (!(opts.rng instanceof Rng)) throw new Error(`nodegrad: ${op}: rng must be a data.Rng`);
    return opts.rng;
  }
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`nodegrad: ${op}: seed must be a non-negative integer (got ${String(seed)})`);
  return new Rng(seed);
}

/** (x - mean[c]) / std[c] for each channel c of [C,H,W] or [N,C,H,W] images. */
export function normalize(x: Tensor, mean: number | readonly number[], std: number | readonly number[]): Tensor {
  const op = 'normalize';
  checkImages(x, op, [3, 4]);
  const C = x.shape[x.ndim - 3];
  const perChannel = (v: number | readonly number[], what: string): number[] => {
    const arr = typeof v === 'number' ? new Array<number>(C).fill(v) : Array.from(v ?? []);
    if (arr.length !== C || arr.some((a) => typeof a !== 'number' || !Number.isFinite(a))) {
      throw new Error(`nodegrad: ${op}: ${what} must be a finite number or ${C} finite numbers, one per channel (got ${JSON.stringify(v)} for images of shape ${fmt(x.shape)})`);
    }
    return arr;
  };
  const m = perChannel(mean, 'mean'), s = perChannel(std, 'std');
  if (s.some((v) => v <= 0)) throw new Error(`nodegrad: ${op}: std must be positive (got ${JSON.stringify(std)})`);
  const mt = tensor(m, { shape: [C, 1, 1], dtype: x.dtype, device: x.device });
  const st = tensor(s, { shape: [C, 1, 1], dtype: x.dtype, device: x.device });
  const centered = sub(x, mt);
  try {
    return div(centered, st);
  } finally {
    centered.dispose(); mt.dispose(); st.dispose();
  }
}

export interface RandomOptions { seed?: number; rng?: Rng }

/**
 * A random `size` window of each image in [N,C,H,W], after padding every side with
 * `padding` pixels of `fill` (torchvision's RandomCrop(size, padding)): one padded copy,
 * then one strided copy per image.
 */
export function randomCrop(x: Tensor, size: number | readonly [number, number],
  opts: RandomOptions & { padding?: number; fill?: number } = {}): Tensor {
  const op = 'randomCrop';
  checkImages(x, op, [4]);
  const [N, C, H, W] = x.shape;
  const [h, w] = typeof size === 'number' ? [size, size] : size;
  const p = opts.padding ?? 0;
  if (!Number.isInteger(p) || p < 0) throw new Error(`nodegrad: ${op}: padding must be a non-negative integer (got ${String(opts.padding)})`);
  if (!Number.isInteger(h) || !Number.isInteger(w) || h <= 0 || w <= 0 || h > H + 2 * p || w > W + 2 * p) {
    throw new Error(`nodegrad: ${op}: size ${JSON.stringify(size)} must be positive and fit the padded image ${H + 2 * p}x${W + 2 * p} (images ${fmt(x.shape)}, padding ${p})`);
  }
  const rng = rngOf(opts, op);
  const fill = opts.fill ?? 0;
  // the views made on the way are freed with the scope; only the crops leave it
  return scope(() => {
    let padded = x;
    if (p > 0 || fill !== 0) {
      padded = full([N, C, H + 2 * p, W + 2 * p], fill, { dtype: x.dtype, device: x.device });
      narrow(narrow(padded, 2, p, H), 3, p, W).copy_(x);
    }
    const out = empty([N, C, h, w], x.dtype, x.device, false);
    for (let n = 0; n < N; n++) {
      const dy = rng.nextInt(H + 2 * p - h + 1), dx = rng.nextInt(W + 2 * p - w + 1);
      select(out, 0, n).copy_(narrow(narrow(select(padded, 0, n), 1, dy, h), 2, dx, w));
    }
    return out;
  });
}

/** Mirrors each image of [N,C,H,W] left-right with probability p (one gather and one select). */
export function randomHorizontalFlip(x: Tensor, opts: RandomOptions & { p?: number } = {}): Tensor {
  const op = 'randomHorizontalFlip';
  checkImages(x, op, [4]);
  const p = opts.p ?? 0.5;
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new Error(`nodegrad: ${op}: p must be in [0, 1] (got ${String(opts.p)})`);
  const rng = rngOf(opts, op);
  const [N, , , W] = x.shape;
  const flip = new Uint8Array(N);
  for (let n = 0; n < N; n++) flip[n] = rng.nextU32() / 4294967296 < p ? 1 : 0;
  const rev = tensor(Int32Array.from({ length: W }, (_, i) => W - 1 - i), { device: x.device });
  const mask = tensor(flip, { shape: [N, 1, 1, 1], device: x.device });
  const mirrored = indexSelect(x, 3, rev);
  try {
    return where(mask, mirrored, x);
  } finally {
    rev.dispose(); mask.dispose(); mirrored.dispose();
  }
}
