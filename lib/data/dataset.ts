// Token datasets for language-model training (nanoGPT's get_batch): a flat Int32Array of
// token ids, random [B,T] windows with targets shifted by one, drawn from a seeded PRNG
// whose state can be saved and restored so a resumed run sees the same batches, and a
// sequential pass for evaluation.
import { readFile } from 'node:fs/promises';
import type { Device } from '../storage.js';
import type { Tensor } from '../tensor.js';
import { tensor } from '../ops/creation.js';
import type { Tokenizer } from './tokenizers.js';

export interface RngState { kind: 'xoshiro128**'; s: [number, number, number, number] }

/** xoshiro128** (Blackman & Vigna): small state, good statistics, 32-bit integer math only. */
export class Rng {
  private s = new Uint32Array(4);

  constructor(seed = 0) {
    if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) {
      throw new Error(`nodegrad: Rng: seed must be a non-negative integer (got ${String(seed)})`);
    }
    // splitmix32 over both halves of the seed fills the state (never all zero).
    let a = (seed >>> 0) ^ Math.imul(Math.floor(seed / 4294967296), 0x85ebca6b);
    for (let i = 0; i < 4; i++) {
      a = (a + 0x9e3779b9) | 0;
      let t = a ^ (a >>> 16);
      t = Math.imul(t, 0x21f0aaad);
      t ^= t >>> 15;
      t = Math.imul(t, 0x735a2d97);
      this.s[i] = t ^ (t >>> 15);
    }
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  nextU32(): number {
    const s = this.s;
    const x = Math.imul(s[1], 5);
    const r = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 11) | (s[3] >>> 21);
    return r;
  }

  /** Uniform integer in [0, n) without modulo bias (n <= 2^32). */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 4294967296) throw new Error(`nodegrad: Rng.nextInt: n must be an integer in [1, 2^32] (got ${n})`);
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const r = this.nextU32();
      if (r < limit) return r % n;
    }
  }

  getState(): RngState {
    return { kind: 'xoshiro128**', s: [this.s[0], this.s[1], this.s[2], this.s[3]] };
  }
  setState(state: RngState): void {
    const ok = state && state.kind === 'xoshiro128**' && Array.isArray(state.s) && state.s.length === 4 &&
      state.s.every((v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff) && state.s.some((v) => v !== 0);
    if (!ok) throw new Error(`nodegrad: Rng.setState: expected { kind: 'xoshiro128**', s: [4 uint32, not all zero] } (got ${JSON.stringify(state)})`);
    this.s.set(state.s);
  }
  static fromState(state: RngState): Rng {
    const r = new Rng();
    r.setState(state);
    return r;
  }
}

export interface Batch { x: Tensor; y: Tensor }
export interface DatasetState { seed: number; rng: RngState }

function checkPositive(v: unknown, what: string, op: string): asserts v is number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new Error(`nodegrad: TokenDataset.${op}: ${what} must be a positive integer (got ${String(v)})`);
  }
}

export class TokenDataset {
  readonly tokens: Int32Array;
  readonly seed: number;
  private rng: Rng;

  /** `tokens`: non-negative integer ids (an Int32Array is used without a copy). */
  constructor(tokens: Int32Array | ArrayLike<number>, opts: { seed?: number } = {}) {
    if (tokens === null || typeof tokens !== 'object' || typeof tokens.length !== 'number') {
      throw new Error('nodegrad: TokenDataset: tokens must be an Int32Array or an array of token ids');
    }
    for (let i = 0; i < tokens.length; i++) {
      const v = tokens[i];
      if (!Number.isInteger(v) || v < 0 || v > 2147483647) {
        throw new Error(`nodegrad: TokenDataset: token ${i} is ${v}; token ids must be integers in [0, 2^31)`);
      }
    }
    this.tokens = tokens instanceof Int32Array ? tokens : Int32Array.from(tokens);
    this.seed = opts.seed ?? 0;
    this.rng = new Rng(this.seed);
  }

  /** Encodes a UTF-8 text file with `tokenizer`. */
  static async fromTextFile(path: string, tokenizer: Pick<Tokenizer, 'encode'>, opts: { seed?: number } = {}): Promise<TokenDataset> {
    const text = await readFile(path, 'utf8');
    return new TokenDataset(Int32Array.from(tokenizer.encode(text)), opts);
  }

  /** A raw little-endian array of token ids (nanoGPT's train.bin is uint16). */
  static async fromBinFile(path: string, opts: { dtype?: 'uint16' | 'int32'; seed?: number } = {}): Promise<TokenDataset> {
    const dtype = opts.dtype ?? 'uint16';
    const size = dtype === 'uint16' ? 2 : 4;
    const buf = await readFile(path);
    if (buf.length % size !== 0) throw new Error(`nodegrad: TokenDataset.fromBinFile: ${path} has ${buf.length} bytes, not a multiple of ${size} (${dtype})`);
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
    const ids = dtype === 'uint16' ? Int32Array.from(new Uint16Array(ab)) : new Int32Array(ab);
    return new TokenDataset(ids, { seed: opts.seed });
  }

  get length(): number { return this.tokens.length; }

  /** The first (1 - valFraction) of the tokens for training, the rest for validation (no copy). */
  split(valFraction: number): { train: TokenDataset; val: TokenDataset } {
    if (typeof valFraction !== 'number' || !(valFraction >= 0 && valFraction < 1)) {
      throw new Error(`nodegrad: TokenDataset.split: valFraction must be in [0, 1) (got ${String(valFraction)})`);
    }
    const n = Math.floor(this.tokens.length * (1 - valFraction));
    return {
      train: new TokenDataset(this.tokens.subarray(0, n), { seed: this.seed }),
      val: new TokenDataset(this.tokens.subarray(n), { seed: this.seed + 1 }),
    };
  }

  private checkWindow(blockSize: number, op: string): void {
    if (this.tokens.length < blockSize + 1) {
      throw new Error(`nodegrad: TokenDataset.${op}: the dataset has ${this.tokens.length} tokens; blockSize ${blockSize} needs at least blockSize+1 = ${blockSize + 1}`);
    }
  }

  /**
   * `batchSize` random windows of `blockSize` tokens: x = tokens[i, i+T), y = tokens[i+1, i+T+1],
   * as [B,T] int32 tensors. Draws from `opts.rng`, a fresh Rng(opts.seed), or the dataset's own generator.
   */
  getBatch(batchSize: number, blockSize: number, opts: { rng?: Rng; seed?: number; device?: Device } = {}): Batch {
    checkPositive(batchSize, 'batchSize', 'getBatch');
    checkPositive(blockSize, 'blockSize', 'getBatch');
    this.checkWindow(blockSize, 'getBatch');
    const rng = opts.rng ?? (opts.seed !== undefined ? new Rng(opts.seed) : this.rng);
    const T = blockSize, starts = this.tokens.length - T;
    const x = new Int32Array(batchSize * T), y = new Int32Array(batchSize * T);
    for (let b = 0; b < batchSize; b++) {
      const i = rng.nextInt(starts);
      x.set(this.tokens.subarray(i, i + T), b * T);
      y.set(this.tokens.subarray(i + 1, i + T + 1), b * T);
    }
    return { x: tensor(x, { shape: [batchSize, T], device: opts.device }), y: tensor(y, { shape: [batchSize, T], device: opts.device }) };
  }

  /** Number of batches sequentialBatches() yields. */
  numSequentialBatches(batchSize: number, blockSize: number): number {
    checkPositive(batchSize, 'batchSize', 'numSequentialBatches');
    checkPositive(blockSize, 'blockSize', 'numSequentialBatches');
    return Math.ceil(Math.floor((this.tokens.length - 1) / blockSize) / batchSize);
  }

  /**
   * One ordered pass over the data in non-overlapping windows of `blockSize` (the last
   * batch may have fewer rows; a tail shorter than a window is left out).
   */
  *sequentialBatches(batchSize: number, blockSize: number, opts: { device?: Device } = {}): Generator<Batch> {
    checkPositive(batchSize, 'batchSize', 'sequentialBatches');
    checkPositive(blockSize, 'blockSize', 'sequentialBatches');
    this.checkWindow(blockSize, 'sequentialBatches');
    const T = blockSize, windows = Math.floor((this.tokens.length - 1) / T);
    for (let w = 0; w < windows; w += batchSize) {
      const B = Math.min(batchSize, windows - w);
      const x = this.tokens.slice(w * T, (w + B) * T);
      const y = this.tokens.slice(w * T + 1, (w + B) * T + 1);
      yield { x: tensor(x, { shape: [B, T], device: opts.device }), y: tensor(y, { shape: [B, T], device: opts.device }) };
    }
  }

  /** The sampler's state (JSON-serializable), for resuming training with the same batches. */
  getState(): DatasetState {
    return { seed: this.seed, rng: this.rng.getState() };
  }
  setState(state: DatasetState): void {
    if (!state || typeof state !== 'object') throw new Error('nodegrad: TokenDataset.setState: expected { seed, rng } from getState()');
    this.rng.setState(state.rng);
  }
}
