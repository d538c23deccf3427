// The KV cache of incremental decoding: per layer, keys and values [B, H, capacity, D]
// allocated once for the whole generation and written in place, one step's columns at a
// time (no concatenation per step). Attention reads the first `length` columns as a view.
// A cache that runs out of columns grows (by doubling) with one copy. The batch-level
// operations (dropping rows, trimming leading padding, merging two batches with left
// padding) serve the continuous batching of `nodegrad serve`.
//
// The cache is for inference: written under noGrad. When a forward with gradients enabled
// appends to it, the step's keys and values keep their graph (the returned tensors are the
// cached columns, detached, concatenated with the new ones).
import { needsGrad, noGrad } from '../autograd.js';
import type { DType } from '../dtype.js';
import { keep, scope } from '../memory.js';
import { tensor, zeros } from '../ops/creation.js';
import { indexSelect } from '../ops/indexing.js';
import { cat, detach, narrow } from '../ops/shape.js';
import { fmt } from '../ops/check.js';
import type { Device } from '../storage.js';
import type { Tensor } from '../tensor.js';

export interface KVCacheOptions {
  nLayer: number;
  batchSize: number;
  /** Heads of the keys and values (a grouped-query model keeps its Hkv heads, not Hq). */
  numHeads: number;
  headDim: number;
  /** Columns allocated up front (prompt + new tokens when known); more are added on demand. */
  capacity: number;
  dtype?: DType;
  device?: Device;
}

/** One layer's keys and values. `k` and `v` are views of the filled columns ([B, H, length, D]), null while empty. */
export class KVCacheLayer {
  private kBuf: Tensor;
  private vBuf: Tensor;
  private kView: Tensor | null = null;
  private vView: Tensor | null = null;
  length = 0;
  private rows: number;

  constructor(batchSize: number, readonly numHeads: number, readonly headDim: number, capacity: number,
    readonly dtype: DType, readonly device: Device) {
    this.rows = batchSize;
    this.kBuf = keep(zeros([batchSize, numHeads, Math.max(1, capacity), headDim], { dtype, device }));
    this.vBuf = keep(zeros([batchSize, numHeads, Math.max(1, capacity), headDim], { dtype, device }));
  }

  get batchSize(): number { return this.rows; }
  get capacity(): number { return this.kBuf.shape[2]; }
  get k(): Tensor | null { return this.view('k'); }
  get v(): Tensor | null { return this.view('v'); }

  private view(which: 'k' | 'v'): Tensor | null {
    if (this.length === 0) return null;
    const cached = which === 'k' ? this.kView : this.vView;
    if (cached && !cached.isDisposed && cached.shape[2] === this.length) return cached;
    cached?.dispose();
    const t = keep(narrow(which === 'k' ? this.kBuf : this.vBuf, 2, 0, this.length));
    if (which === 'k') this.kView = t;
    else this.vView = t;
    return t;
  }

  private dropViews(): void {
    this.kView?.dispose();
    this.vView?.dispose();
    this.kView = this.vView = null;
  }

  /** Replaces the buffers (already kept) and the filled length. */
  private replace(k: Tensor, v: Tensor, length: number): void {
    this.dropViews();
    this.kBuf.dispose();
    this.vBuf.dispose();
    this.kBuf = k;
    this.vBuf = v;
    this.length = length;
  }

  /** New buffers of `capacity` columns for `rows` rows; fill(newK, newV) copies into them from the current ones. */
  private realloc(rows: number, capacity: number, length: number, fill: (k: Tensor, v: Tensor) => void): void {
    const shape = [rows, this.numHeads, Math.max(1, capacity), this.headDim];
    const k = keep(zeros(shape, { dtype: this.dtype, device: this.device }));
    const v = keep(zeros(shape, { dtype: this.dtype, device: this.device }));
    noGrad(() => scope(() => fill(k, v)));
    this.replace(k, v, length);
    this.rows = rows;
  }

  /** Makes room for at least `need` columns (doubling), keeping the filled ones. */
  reserve(need: number): void {
    if (need <= this.capacity) return;
    const len = this.length;
    this.realloc(this.rows, Math.max(need, 2 * this.capacity), len, (k, v) => {
      if (len === 0) return;
      narrow(k, 2, 0, len).copy_(narrow(this.kBuf, 2, 0, len));
      narrow(v, 2, 0, len).copy_(narrow(this.vBuf, 2, 0, len));
    });
  }

  /**
   * Writes the keys and values of new positions ([B, H, T, D]) after the filled columns
   * and returns all of them ([B, H, length, D]).
   */
  append(k: Tensor, v: Tensor): { k: Tensor; v: Tensor } {
    const want = `[${this.batchSize}, ${this.numHeads}, T, ${this.headDim}]`;
    for (const t of [k, v]) {
      if (t.ndim !== 4 || t.shape[0] !== this.batchSize || t.shape[1] !== this.numHeads || t.shape[3] !== this.headDim || t.shape[2] !== k.shape[2]) {
        throw new Error(`nodegrad: KVCache.append: keys and values must be ${want} (got ${fmt(k.shape)} and ${fmt(v.shape)})`);
      }
    }
    const past = this.length, T = k.shape[2];
    const prevK = past > 0 && (needsGrad(k) || needsGrad(v)) ? detach(this.k!) : null;
    const prevV = prevK ? detach(this.v!) : null;
    this.reserve(past + T);
    noGrad(() => scope(() => {
      narrow(this.kBuf, 2, past, T).copy_(k);
      narrow(this.vBuf, 2, past, T).copy_(v);
    }));
    this.length = past + T;
    if (needsGrad(k) || needsGrad(v)) {
      // the graph reaches this step's keys and values; the cached ones are constants
      return prevK ? { k: cat([prevK, k], 2), v: cat([prevV!, v], 2) } : { k, v };
    }
    return { k: this.k!, v: this.v! };
  }

  /** Keeps rows `index` (in that order) and drops the first `trim` columns. */
  selectRows(index: Tensor, trim: number): void {
    const len = this.length - trim;
    const rows = index.shape[0];
    this.realloc(rows, this.capacity - trim, len, (k, v) => {
      if (len === 0) return;
      narrow(k, 2, 0, len).copy_(indexSelect(narrow(this.kBuf, 2, trim, len), 0, index));
      narrow(v, 2, 0, len).copy_(indexSelect(narrow(this.vBuf, 2, trim, len), 0, index));
    });
  }

  /** This layer's rows followed by other's, each left-padded with zero columns to the longer length. */
  appendRows(other: KVCacheLayer, extra: number): void {
    const total = Math.max(this.length, other.length);
    const la = this.length, lb = other.length, Ba = this.batchSize;
    this.realloc(Ba + other.batchSize, total + extra, total, (k, v) => {
      const put = (dst: Tensor, src: Tensor, row: number, rows: number, len: number): void => {
        if (len > 0) narrow(narrow(dst, 0, row, rows), 2, total - len, len).copy_(narrow(src, 2, 0, len));
      };
      put(k, this.kBuf, 0, Ba, la);
      put(v, this.vBuf, 0, Ba, la);
      put(k, other.kBuf, Ba, other.batchSize, lb);
      put(v, other.vBuf, Ba, other.batchSize, lb);
    });
  }

  dispose(): void {
    this.dropViews();
    this.kBuf.dispose();
    this.vBuf.dispose();
    this.length = 0;
  }
}

/** The KV cache of a whole model: one KVCacheLayer per attention layer. */
export class KVCache {
  readonly layers: KVCacheLayer[];

  constructor(opts: KVCacheOptions) {
    const { nLayer, batchSize, numHeads, headDim, capacity } = opts;
    for (const [k, v] of Object.entries({ nLayer, batchSize, numHeads, headDim, capacity })) {
      if (!Number.isSafeInteger(v) || v < (k === 'capacity' ? 0 : 1)) {
        throw new Error(`nodegrad: KVCache: ${k} must be a ${k === 'capacity' ? 'non-negative' : 'positive'} integer (got ${String(v)})`);
      }
    }
    const dtype = opts.dtype ?? 'float32', device = opts.device ?? 'cpu';
    this.layers = Array.from({ length: nLayer }, () => new KVCacheLayer(batchSize, numHeads, headDim, capacity, dtype, device));
  }

  /** Filled columns (positions seen so far, padding included). */
  get length(): number { return this.layers[0].length; }
  get batchSize(): number { return this.layers[0].batchSize; }
  get capacity(): number { return this.layers[0].capacity; }

  /** Keeps the rows at `rows` (in that order) and drops the first `trimLeft` columns (padding of every kept row). */
  selectRows(rows: number[], trimLeft = 0): void {
    if (rows.length === 0) throw new Error('nodegrad: KVCache.selectRows: keep at least one row (dispose the cache instead)');
    if (!(Number.isSafeInteger(trimLeft) && trimLeft >= 0 && trimLeft <= this.length)) {
      throw new Error(`nodegrad: KVCache.selectRows: trimLeft must be in [0, ${this.length}] (got ${trimLeft})`);
    }
    for (const r of rows) {
      if (!Number.isInteger(r) || r < 0 || r >= this.batchSize) throw new Error(`nodegrad: KVCache.selectRows: row ${r} is out of range for ${this.batchSize} rows`);
    }
    const index = tensor(rows, { dtype: 'int32', device: this.layers[0].device });
    try {
      for (const l of this.layers) l.selectRows(index, trimLeft);
    } finally {
      index.dispose();
    }
  }

  /**
   * Appends other's rows after this cache's, left-padding the shorter of the two with zero
   * columns (the caller masks them), and disposes other. `extraCapacity` columns are left
   * free for the steps to come.
   */
  appendRows(other: KVCache, extraCapacity = 0): void {
    if (other.layers.length !== this.layers.length) {
      throw new Error(`nodegrad: KVCache.appendRows: caches of ${this.layers.length} and ${other.layers.length} layers`);
    }
    this.layers.forEach((l, i) => l.appendRows(other.layers[i], extraCapacity));
    other.dispose();
  }

  dispose(): void {
    for (const l of this.layers) l.dispose();
  }
}
