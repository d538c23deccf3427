// DistributedSampler: the shard of a dataset one rank reads (torch.utils.data's
// DistributedSampler). Every rank draws the same seeded permutation for an epoch and
// takes every numReplicas-th item from its rank on; without dropLast the permutation is
// padded with its own first items so every rank gets the same count (as in PyTorch).
// It is a Dataset, so a DataLoader takes it unchanged.
import type { Tensor } from '../tensor.js';
import type { Dataset } from '../data/loader.js';
import { Rng } from '../data/dataset.js';
import { getRank, getWorldSize, isInitialized } from './process_group.js';

export interface DistributedSamplerOptions {
  numReplicas?: number;
  rank?: number;
  shuffle?: boolean;
  seed?: number;
  dropLast?: boolean;
}

export class DistributedSampler implements Dataset {
  readonly dataset: Dataset;
  readonly numReplicas: number;
  readonly rank: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly length: number;
  private epoch = 0;
  private idx: Int32Array;

  constructor(dataset: Dataset, opts: DistributedSamplerOptions = {}) {
    this.dataset = dataset;
    this.numReplicas = opts.numReplicas ?? (isInitialized() ? getWorldSize() : 1);
    this.rank = opts.rank ?? (isInitialized() ? getRank() : 0);
    if (!Number.isSafeInteger(this.numReplicas) || this.numReplicas < 1) throw new Error(`nodegrad: DistributedSampler: numReplicas must be a positive integer (got ${String(this.numReplicas)})`);
    if (!Number.isSafeInteger(this.rank) || this.rank < 0 || this.rank >= this.numReplicas) {
      throw new Error(`nodegrad: DistributedSampler: rank out of range (got ${String(this.rank)}; expected 0 <= rank < numReplicas ${this.numReplicas})`);
    }
    this.shuffle = opts.shuffle ?? true;
    this.seed = opts.seed ?? 0;
    this.dropLast = opts.dropLast ?? false;
    const n = dataset.length;
    this.length = this.dropLast ? Math.floor(n / this.numReplicas) : Math.ceil(n / this.numReplicas);
    this.idx = this.indices();
    const inner = dataset.getBatch?.bind(dataset);
    if (inner) {
      this.getBatch = (indices: Int32Array): Tensor[] => {
        const mapped = new Int32Array(indices.length);
        for (let i = 0; i < indices.length; i++) mapped[i] = this.idx[indices[i]];
        return inner(mapped);
      };
    }
  }

  /** Reshuffles for an epoch (call at the start of every epoch, with the same value on every rank). */
  setEpoch(epoch: number): void {
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new Error(`nodegrad: DistributedSampler.setEpoch: epoch must be a non-negative integer (got ${String(epoch)})`);
    this.epoch = epoch;
    this.idx = this.indices();
  }

  /** This rank's dataset indices for the current epoch. */
  indices(): Int32Array {
    const n = this.dataset.length;
    const perm = new Int32Array(n);
    for (let i = 0; i < n; i++) perm[i] = i;
    if (this.shuffle) {
      const rng = new Rng((this.seed * 1000003 + this.epoch * 7919 + 1) >>> 0);
      for (let i = n - 1; i > 0; i--) {
        const j = rng.nextInt(i + 1);
        const t = perm[i]; perm[i] = perm[j]; perm[j] = t;
      }
    }
    const out = new Int32Array(this.length);
    for (let k = 0; k < this.length; k++) out[k] = perm[(this.rank + k * this.numReplicas) % n];
    return out;
  }

  get(index: number): (Tensor | number)[] {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.length) throw new Error(`nodegrad: DistributedSampler.get: index out of range (got ${String(index)}; expected 0 <= index < ${this.length})`);
    return this.dataset.get(this.idx[index]);
  }

  /** Present when the wrapped dataset has the stacked fast path. */
  readonly getBatch?: (indices: Int32Array) => Tensor[];
}
