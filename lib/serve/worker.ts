// The inference side of `nodegrad serve`, run in a worker_threads Worker so the HTTP event
// loop never waits on a forward pass. It holds its own copy of the model and does what the
// scheduler (batcher.ts) asks: one batched decoding step at a time, or one batch of
// classifications.
//
// Batched decoding. Rows join and leave the batch between steps (continuous batching), so
// the rows of one batch have different lengths. Each row is left-padded in a shared KV
// cache [B, H, len, D] per layer: row b's first pad[b] columns are padding, hidden from
// every query by the key-padding mask. Positions are per row (a row's first real token is
// position 0 whatever its padding), so the position embeddings are looked up from a
// [B, T] position tensor here instead of GPT.forward's shared arange; otherwise this is
// GPT.forward step for step. A step:
//   1. drops cancelled rows (index_select on the batch dim of every cache tensor),
//   2. feeds every row its last token (one position, mask [B, len + 1]),
//   3. prefills the rows admitted this step in one forward over their prompts, left-padded
//      to the longest (causal + key-padding mask), and merges their cache into the batch's
//      by left-padding the shorter of the two with zero columns,
//   4. removes rows that produced their last token and trims columns that are padding in
//      every remaining row.
// A padded query row (a pad token) sees no key and yields zeros (scaledDotProductAttention
// guarantees no NaN), so padding never leaks into real rows. Sampling uses generate.ts's
// sampleToken with a per-row generator seeded like model.generate's, so a row's tokens do
// not depend on which other rows share its batch.
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { noGrad } from '../autograd.js';
import { keep, scope } from '../memory.js';
import { tensor, zeros } from '../ops/creation.js';
import { add } from '../ops/elementwise.js';
import { linear } from '../ops/matmul.js';
import { cat, contiguous, narrow } from '../ops/shape.js';
import { indexSelect } from '../ops/indexing.js';
import { sampleToken, type GenerateOptions } from '../generate.js';
import { mulberry32 } from '../random.js';
import { disposeKVCache, emptyKVCache, type LayerKVCache } from '../nn/attention.js';
import type { Tensor } from '../tensor.js';
import type { GPT } from '../models/gpt.js';

export type ModelKind = 'gpt' | 'gpt2' | 'bert';

/** What a worker tells the server about its model. */
export interface ModelInfo {
  kind: ModelKind;
  task: 'generate' | 'classify';
  parameters: number;
  blockSize?: number;
  vocabSize?: number;
  labels?: string[];
}

/** One request joining the batch. */
export interface AdmitRow {
  id: number;
  ids: number[];
  maxNewTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  seed: number;
}

/** What one step produced: a token for every row still in the batch, and which rows finished. */
export interface StepResult {
  tokens: [id: number, token: number][];
  finished: number[];
  /** Rows in the forward passes of this step (decode + prefill). */
  rows: number;
  /** Rows left in the batch after the step. */
  batchRows: number;
  ms: number;
}

export interface Classification { label: string; probabilities: Record<string, number> }

/** Anything that labels texts; the server's /v1/classify runs on one of these. */
export interface Classifier { classify(texts: string[]): Classification[] | Promise<Classification[]> }


interface Row {
  id: number;
  seq: number[];        // prompt + generated tokens; the cache holds all but the last
  remaining: number;    // tokens still to generate
  pad: number;          // leading padding columns of this row in the cache
  opts: GenerateOptions;
  rng: () => number;
}

/** Batched, continuously refilled greedy/sampled decoding over one GPT (see the file's header). */
export class GPTBatchDecoder {
  private rows: Row[] = [];
  private cache: LayerKVCache[] | null = null;
  private len = 0;   // cache columns

  constructor(private readonly model: GPT) { model.train(false); }

  get size(): number { return this.rows.length; }

  step(admit: AdmitRow[], drop: number[]): StepResult {
    const t0 = performance.now();
    const tokens: [number, number][] = [];
    let rows = 0;
    let finished: number[] = [];
    noGrad(() => scope(() => {
      if (drop.length) {
        const gone = new Set(drop);
        this.keepRows((r) => !gone.has(r.id));
      }
      if (this.rows.length) {
        rows += this.rows.length;
        this.decodeOne(tokens);
      }
      if (admit.length) {
        rows += admit.length;
        this.prefill(admit, tokens);
      }
      finished = this.rows.filter((r) => r.remaining <= 0).map((r) => r.id);
      if (finished.length) this.keepRows((r) => r.remaining > 0);
    }));
    return { tokens, finished, rows, batchRows: this.rows.length, ms: performance.now() - t0 };
  }

  /** Frees the batch (after an error, or at shutdown). */
  reset(): void {
    if (this.cache) disposeKVCache(this.cache);
    this.cache = null;
    this.rows = [];
    this.len = 0;
  }

  /** Runs the model over ids [B, T] at positions pos [B, T]; returns the last position's logits [B, V]. */
  private forward(ids: number[][], pos: number[][], mask: number[][] | null, cache: LayerKVCache[]): Float32Array {
    const m = this.model;
    const T = ids[0].length;
    let x = add(m.wte.forward(tensor(ids, { dtype: 'int32' })), m.wpe.forward(tensor(pos, { dtype: 'int32' })));
    const keyMask = mask ? tensor(mask, { dtype: 'int32' }) : null;
    let i = 0;
    for (const block of m.h) x = block.forward(x, { isCausal: true, kvCache: cache[i++], keyPaddingMask: keyMask });
    const last = x.select(1, T - 1);
    const logits = linear(m.lnF.forward(last), m.wte.weight);
    return (logits.dataSync() as Float32Array).slice();
  }

  private sample(rows: Row[], logits: Float32Array, out: [number, number][]): void {
    const V = this.model.config.vocabSize;
    rows.forEach((r, b) => {
      const t = sampleToken(logits.subarray(b * V, (b + 1) * V), r.seq, r.opts, r.rng);
      r.seq.push(t);
      r.remaining--;
      out.push([r.id, t]);
    });
  }

  private decodeOne(out: [number, number][]): void {
    const rows = this.rows;
    const ids = rows.map((r) => [r.seq[r.seq.length - 1]]);
    const pos = rows.map((r) => [r.seq.length - 1]);
    const anyPad = rows.some((r) => r.pad > 0);
    const mask = anyPad ? rows.map((r) => Array.from({ length: this.len + 1 }, (_, j) => (j < r.pad ? 0 : 1))) : null;
    const logits = this.forward(ids, pos, mask, this.cache!);
    this.len += 1;
    this.sample(rows, logits, out);
  }

  private prefill(admit: AdmitRow[], out: [number, number][]): void {
    const L = Math.max(...admit.map((a) => a.ids.length));
    const rows: Row[] = admit.map((a) => ({
      id: a.id, seq: [...a.ids], remaining: a.maxNewTokens, pad: L - a.ids.length,
      opts: { temperature: a.temperature, topK: a.topK, topP: a.topP }, rng: mulberry32(a.seed),
    }));
    const ids = rows.map((r) => [...new Array<number>(r.pad).fill(0), ...r.seq]);
    const pos = rows.map((r) => Array.from({ length: L }, (_, j) => Math.max(0, j - r.pad)));
    const mask = rows.some((r) => r.pad > 0) ? rows.map((r) => Array.from({ length: L }, (_, j) => (j < r.pad ? 0 : 1))) : null;
    const cache = emptyKVCache(this.model.config.nLayer);
    const logits = this.forward(ids, pos, mask, cache);
    this.sample(rows, logits, out);
    this.merge(cache, L, rows);
  }

  /** Appends rows (with their cache of `len` columns) to the batch, left-padding the shorter side. */
  private merge(cache: LayerKVCache[], len: number, rows: Row[]): void {
    if (!this.cache || this.rows.length === 0) {
      if (this.cache) disposeKVCache(this.cache);
      this.cache = cache;
      this.rows = rows;
      this.len = len;
      return;
    }
    const total = Math.max(this.len, len);
    const padLeft = (t: Tensor, cols: number): Tensor => {
      if (cols === 0) return t;
      const [B, H, , D] = t.shape;
      return cat([zeros([B, H, cols, D], { dtype: t.dtype }), t], 2);
    };
    const dOld = total - this.len, dNew = total - len;
    this.cache.forEach((c, i) => {
      for (const key of ['k', 'v'] as const) {
        const merged = keep(cat([padLeft(c[key]!, dOld), padLeft(cache[i][key]!, dNew)], 0));
        c[key]!.dispose();
        cache[i][key]!.dispose();
        c[key] = merged;
      }
    });
    for (const r of this.rows) r.pad += dOld;
    for (const r of rows) r.pad += dNew;
    this.rows.push(...rows);
    this.len = total;
  }

  /** Keeps the rows for which pred holds, then trims columns that are padding in all of them. */
  private keepRows(pred: (r: Row) => boolean): void {
    const idx: number[] = [];
    this.rows.forEach((r, b) => { if (pred(r)) idx.push(b); });
    if (idx.length === this.rows.length) return;
    if (idx.length === 0) {
      this.reset();
      return;
    }
    this.rows = idx.map((b) => this.rows[b]);
    const minPad = Math.min(...this.rows.map((r) => r.pad));
    const index = tensor(idx, { dtype: 'int32' });
    for (const c of this.cache!) {
      for (const key of ['k', 'v'] as const) {
        let t = indexSelect(c[key]!, 0, index);
        if (minPad > 0) t = contiguous(narrow(t, 2, minPad, this.len - minPad));
        c[key]!.dispose();
        c[key] = keep(t);
      }
    }
    for (const r of this.rows) r.pad -= minPad;
    this.len -= minPad;
  }
}

/** A BERT sequence classifier from a Hugging Face directory (model + its WordPiece tokenizer). */
async function loadBertClassifier(dir: string): Promise<{ classifier: Classifier; info: ModelInfo }> {
  const [{ BertForSequenceClassification }, { BertTokenizer }, { softmax }, { sigmoid }] = await Promise.all([
    import('../models/bert.js'), import('../data/wordpiece.js'), import('../ops/softmax.js'), import('../ops/elementwise.js'),
  ]);
  const model = await BertForSequenceClassification.fromPretrained(dir);
  model.train(false);
  const tok = await BertTokenizer.fromPretrained(dir);
  const c = model.config;
  const labels = Array.from({ length: c.numLabels }, (_, i) => c.id2label?.[i] ?? `LABEL_${i}`);
  const multi = c.problemType === 'multi_label_classification';
  const maxLength = Math.min(c.maxPositionEmbeddings, tok.modelMaxLength ?? Infinity);
  const classifier: Classifier = {
    classify(texts) {
      return noGrad(() => scope(() => {
        const enc = tok.encodeBatch(texts, { padding: true, truncation: true, maxLength, returnTensors: 'ng' });
        const { logits } = model.forward({ inputIds: enc.inputIds, attentionMask: enc.attentionMask, tokenTypeIds: enc.tokenTypeIds });
        const p = (multi ? sigmoid(logits) : softmax(logits, -1)).dataSync() as Float32Array;
        const L = labels.length;
        return texts.map((_, b) => {
          const row = Array.from(p.subarray(b * L, (b + 1) * L));
          const best = row.indexOf(Math.max(...row));
          return { label: labels[best], probabilities: Object.fromEntries(labels.map((l, i) => [l, row[i]])) };
        });
      }));
    },
  };
  return { classifier, info: { kind: 'bert', task: 'classify', parameters: model.numParameters(), labels } };
}

/** Loads the model a server worker serves. */
export async function loadModel(dir: string, kind: ModelKind): Promise<{ decoder?: GPTBatchDecoder; classifier?: Classifier; info: ModelInfo }> {
  if (kind === 'bert') return loadBertClassifier(dir);
  const { GPT } = await import('../models/gpt.js');
  const model = kind === 'gpt2' ? await GPT.fromPretrained(dir) : await GPT.load(dir);
  const c = model.config;
  return {
    decoder: new GPTBatchDecoder(model),
    info: { kind, task: 'generate', parameters: model.numParams(), blockSize: c.blockSize, vocabSize: c.vocabSize },
  };
}

// ---- worker entry ---------------------------------------------------------------------------

export interface WorkerInit { nodegradServe: true; modelDir: string; kind: ModelKind }
export type ToWorker =
  | { type: 'step'; id: number; admit: AdmitRow[]; drop: number[] }
  | { type: 'classify'; id: number; texts: string[] };
export type FromWorker =
  | { type: 'ready'; info: ModelInfo }
  | { type: 'fatal'; message: string }
  | { type: 'result'; id: number; result: StepResult | Classification[] }
  | { type: 'failure'; id: number; message: string };

async function workerMain(init: WorkerInit): Promise<void> {
  const port = parentPort!;
  const post = (m: FromWorker): void => port.postMessage(m);
  let loaded: Awaited<ReturnType<typeof loadModel>>;
  try {
    loaded = await loadModel(init.modelDir, init.kind);
  } catch (e) {
    post({ type: 'fatal', message: (e as Error).message });
    return;
  }
  port.on('message', async (m: ToWorker) => {
    try {
      if (m.type === 'step') {
        if (!loaded.decoder) throw new Error('this model does not generate text');
        post({ type: 'result', id: m.id, result: loaded.decoder.step(m.admit, m.drop) });
      } else {
        if (!loaded.classifier) throw new Error('this model does not classify');
        post({ type: 'result', id: m.id, result: await loaded.classifier.classify(m.texts) });
      }
    } catch (e) {
      loaded.decoder?.reset();   // the batch's state is unknown after a failed step: start clean
      post({ type: 'failure', id: m.id, message: (e as Error).message });
    }
  });
  post({ type: 'ready', info: loaded.info });
}

if (!isMainThread && (workerData as WorkerInit | undefined)?.nodegradServe) void workerMain(workerData as WorkerInit);
