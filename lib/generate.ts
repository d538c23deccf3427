// Autoregressive sampling with a KV cache: the prompt is run once, then each new token
// costs one position of compute. Greedy when temperature is 0; otherwise temperature,
// top-k, top-p (nucleus) and a repetition penalty, drawn from a seeded generator. Any
// causal LM decodes here through the Generator interface (newDecodeCache + decodeStep),
// with one preallocated cache per generation: GPT and LlamaForCausalLM alike.
import { noGrad } from './autograd.js';
import { scope } from './memory.js';
import { tensor } from './ops/creation.js';
import { mulberry32, nextRandom } from './random.js';
import type { Tensor } from './tensor.js';
import type { Device } from './storage.js';
import type { KVCache } from './nn/kv_cache.js';

export interface GenerateOptions {
  maxNewTokens?: number;
  /** 0 = greedy. Default 1. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** > 1 discourages tokens already present (CTRL / Hugging Face rule). */
  repetitionPenalty?: number;
  /** A row stops when it emits one of these. */
  stopTokens?: number[];
  seed?: number;
  /** Default true; false recomputes the whole window every step (for checking the cache). */
  useCache?: boolean;
}

export interface DecodeStepOptions {
  /** int32 positions [B, T] of the new tokens; default cache.length .. cache.length + T - 1 for every row. */
  positions?: Tensor | null;
  /** Key-padding mask [B, cache.length + T] (1 = a real token, 0 = padding), over the cached columns and the new ones. */
  attentionMask?: Tensor | null;
}

/**
 * What incremental decoding needs from a causal language model (GPT, LlamaForCausalLM):
 * a KV cache and one step that appends tokens to it. generate() and `nodegrad serve`
 * decode any model through these two methods.
 */
export interface Generator {
  readonly config: { vocabSize: number };
  /** The longest sequence the model attends over (GPT: blockSize; Llama: maxPositionEmbeddings). */
  readonly maxSequenceLength: number;
  training: boolean;
  train(mode?: boolean): unknown;
  /** An empty KV cache for batchSize rows with `capacity` columns allocated up front. */
  newDecodeCache(batchSize: number, capacity: number): KVCache;
  /**
   * Runs inputIds [B, T] (int32) after the cache's columns, appends their keys and values
   * to the cache and returns the float32 logits of the last position [B, vocabSize].
   */
  decodeStep(inputIds: Tensor, cache: KVCache, opts?: DecodeStepOptions): Tensor;
  /** Where the model's weights live (prompts are moved there); the CPU when absent. */
  parameters?(): Iterable<Tensor>;
}

function normalizeIds(ids: Tensor | number[][] | number[]): number[][] {
  if (Array.isArray(ids)) {
    if (ids.length === 0) throw new Error('nodegrad: generate: the prompt is empty');
    return Array.isArray(ids[0]) ? (ids as number[][]).map((r) => [...r]) : [[...(ids as number[])]];
  }
  if (ids.dtype !== 'int32') throw new Error(`nodegrad: generate: inputIds must be int32 (got ${ids.dtype})`);
  const rows = ids.ndim === 1 ? [ids.tolist() as number[]] : (ids.tolist() as number[][]);
  return rows;
}

/** Picks the next token from one row of logits. */
export function sampleToken(logits: ArrayLike<number>, history: readonly number[], opts: GenerateOptions, rng: () => number): number {
  const V = logits.length;
  const l = Float64Array.from(logits as ArrayLike<number>);
  const rp = opts.repetitionPenalty ?? 1;
  if (rp !== 1) {
    for (const t of new Set(history)) if (t >= 0 && t < V) l[t] = l[t] > 0 ? l[t] / rp : l[t] * rp;
  }
  const temp = opts.temperature ?? 1;
  if (temp === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (l[i] > l[best]) best = i;
    return best;
  }
  let idx = Array.from({ length: V }, (_, i) => i);
  if (opts.topK !== undefined && opts.topK > 0 && opts.topK < V) {
    idx.sort((a, b) => l[b] - l[a]);
    idx = idx.slice(0, opts.topK);
  }
  let max = -Infinity;
  for (const i of idx) max = Math.max(max, l[i] / temp);
  let probs = idx.map((i) => Math.exp(l[i] / temp - max));
  let total = probs.reduce((a, b) => a + b, 0);
  if (opts.topP !== undefined && opts.topP < 1) {
    const order = idx.map((_, k) => k).sort((a, b) => probs[b] - probs[a]);
    const keepIdx: number[] = [], keepP: number[] = [];
    let acc = 0;
    for (const k of order) {
      keepIdx.push(idx[k]);
      keepP.push(probs[k]);
      acc += probs[k] / total;
      if (acc >= opts.topP) break;
    }
    idx = keepIdx;
    probs = keepP;
    total = probs.reduce((a, b) => a + b, 0);
  }
  let r = rng() * total;
  for (let k = 0; k < idx.length; k++) {
    r -= probs[k];
    if (r <= 0) return idx[k];
  }
  return idx[idx.length - 1];
}

function validate(model: Generator, opts: GenerateOptions): void {
  const n = opts.maxNewTokens ?? 32;
  if (!Number.isInteger(n) || n < 0) throw new Error(`nodegrad: generate: maxNewTokens must be a non-negative integer (got ${n})`);
  if (opts.temperature !== undefined && !(opts.temperature >= 0)) throw new Error(`nodegrad: generate: temperature must be >= 0 (got ${opts.temperature})`);
  if (opts.topP !== undefined && !(opts.topP > 0 && opts.topP <= 1)) throw new Error(`nodegrad: generate: topP must be in (0, 1] (got ${opts.topP})`);
  if (opts.topK !== undefined && !(Number.isInteger(opts.topK) && opts.topK >= 0)) throw new Error(`nodegrad: generate: topK must be a non-negative integer (got ${opts.topK})`);
  void model;
}

/** One decoding session: the prompts, the sampler state and the KV cache. */
/** The device of a model's first parameter (inputs are created there). */
function modelDevice(model: Generator): Device {
  if (model.parameters) for (const p of model.parameters()) return p.device;
  return 'cpu';
}

class Decoder {
  readonly seqs: number[][];
  readonly done: boolean[];
  private readonly rng: () => number;
  private readonly stop: Set<number>;
  private readonly useCache: boolean;
  private cache: KVCache | null = null;
  private fed = 0; // tokens of seqs already in the cache
  private readonly promptLength: number;
  private readonly wasTraining: boolean;

  constructor(private readonly model: Generator, inputIds: Tensor | number[][] | number[], private readonly opts: GenerateOptions) {
    validate(model, opts);
    this.seqs = normalizeIds(inputIds);
    const T0 = this.seqs[0].length;
    if (T0 === 0 || this.seqs.some((r) => r.length !== T0)) throw new Error('nodegrad: generate: prompts must be non-empty and of equal length');
    this.promptLength = T0;
    const V = model.config.vocabSize;
    for (const r of this.seqs) for (const t of r) if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`nodegrad: generate: token ${t} is out of range for vocabulary size ${V}`);
    const [s, o] = nextRandom(1);
    this.rng = mulberry32(opts.seed ?? (s * 2654435761 + o) % 4294967296);
    this.stop = new Set(opts.stopTokens ?? []);
    this.done = new Array<boolean>(this.seqs.length).fill(false);
    this.useCache = opts.useCache ?? true;
    this.wasTraining = model.training;
    model.train(false);
  }

  get finished(): boolean { return this.done.every(Boolean); }

  /** Appends one token to every row (a row that stopped repeats its last token) and returns them. */
  step(): number[] {
    const { model, seqs } = this;
    const V = model.config.vocabSize, block = model.maxSequenceLength;
    const next = noGrad(() => scope(() => {
      const len = seqs[0].length;
      if (!this.useCache || len > block) {
        // no cache, or the window slides past it: start again from the last block tokens
        this.cache?.dispose();
        this.cache = null;
        this.fed = 0;
      }
      const start = this.fed > 0 ? this.fed : Math.max(0, len - block);
      if (!this.cache) {
        // room for the rest of the generation (up to the window), so the cache never grows
        const later = this.useCache ? Math.max(0, (this.opts.maxNewTokens ?? 32) - (len - this.promptLength) - 1) : 0;
        this.cache = model.newDecodeCache(seqs.length, Math.min(block, len - start + later));
      }
      const ids = tensor(seqs.map((r) => r.slice(start)), { dtype: 'int32', device: modelDevice(model) });
      const logits = model.decodeStep(ids, this.cache);
      this.fed = len;
      const last = logits.dataSync() as Float32Array;
      return seqs.map((r, b) => sampleToken(last.subarray(b * V, (b + 1) * V), r, this.opts, this.rng));
    }));
    seqs.forEach((r, b) => {
      if (this.done[b]) next[b] = r[r.length - 1];
      else if (this.stop.has(next[b])) this.done[b] = true;
      r.push(next[b]);
    });
    return next;
  }

  close(): void {
    this.cache?.dispose();
    this.cache = null;
    this.model.train(this.wasTraining);
  }
}

/** Yields, after each step, the token chosen for every row; yields to the event loop between steps. */
export async function* generateStream(model: Generator, inputIds: Tensor | number[][] | number[], opts: GenerateOptions = {}): AsyncGenerator<number[]> {
  const d = new Decoder(model, inputIds, opts);
  try {
    for (let i = 0; i < (opts.maxNewTokens ?? 32) && !d.finished; i++) {
      yield d.step();
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    d.close();
  }
}

/**
 * Generates synchronously; returns each row's prompt followed by its new tokens (a row
 * that emitted a stop token is padded with it while the others continue).
 */
export function generate(model: Generator, inputIds: Tensor | number[][] | number[], opts: GenerateOptions = {}): number[][] {
  const d = new Decoder(model, inputIds, opts);
  try {
    for (let i = 0; i < (opts.maxNewTokens ?? 32) && !d.finished; i++) d.step();
  } finally {
    d.close();
  }
  return d.seqs;
}
