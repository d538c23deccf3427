// The inference side of `nodegrad serve`, run in a worker_threads Worker so the HTTP event
// loop never waits on a forward pass. It holds its own copy of the model and does what the
// scheduler (batcher.ts) asks: one batched decoding step at a time, or one batch of
// classifications.
//
// Batched decoding. Rows join and leave the batch between steps (continuous batching), so
// the rows of one batch have different lengths. Each row is left-padded in a shared KV
// cache [B, H, len, D] per layer: row b's first pad[b] columns are padding, hidden from
// every query by the key-padding mask. Positions are per row (a row's first real token is
// position 0 whatever its padding): the model's own decodeStep (generate.ts's Generator,
// which GPT and LlamaForCausalLM implement) takes them as a [B, T] tensor with the mask,
// so this file never repeats a model's forward. A step:
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
import { scope } from '../memory.js';
import { tensor } from '../ops/creation.js';
import { sampleToken, type GenerateOptions, type Generator } from '../generate.js';
import { mulberry32 } from '../random.js';
import type { KVCache } from '../nn/kv_cache.js';
import type { Device } from '../storage.js';

export type ModelKind = 'gpt' | 'gpt2' | 'bert' | 'llama';

/** What a worker tells the server about its model. */
export interface ModelInfo {
  kind: ModelKind;
  task: 'generate' | 'classify';
  parameters: number;
  blockSize?: number;
  vocabSize?: number;
  /** Tokens that end a generation early (the model's EOS ids); finishReason "stop". */
  stopTokens?: number[];
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

/** Batched, continuously refilled greedy/sampled decoding over one causal LM (see the file's header). */
export class BatchDecoder {
  private rows: Row[] = [];
  private cache: KVCache | null = null;

  /** stopTokens: a row also finishes when it emits one of these (e.g. the model's EOS ids). */
  constructor(private readonly model: Generator, private readonly stopTokens: readonly number[] = []) { model.train(false); }

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
    this.cache?.dispose();
    this.cache = null;
    this.rows = [];
  }

  /** Runs the model's decoding step over ids [B, T] at positions pos [B, T]; returns the last position's logits [B, V]. */
  private forward(ids: number[][], pos: number[][], mask: number[][] | null, cache: KVCache): Float32Array {
    const device = modelDevice(this.model);
    const logits = this.model.decodeStep(tensor(ids, { dtype: 'int32', device }), cache, {
      positions: tensor(pos, { dtype: 'int32', device }), attentionMask: mask ? tensor(mask, { dtype: 'int32', device }) : null,
    });
    return (logits.dataSync() as Float32Array).slice();
  }

  private sample(rows: Row[], logits: Float32Array, out: [number, number][]): void {
    const V = this.model.config.vocabSize;
    const stop = new Set(this.stopTokens);
    rows.forEach((r, b) => {
      const t = sampleToken(logits.subarray(b * V, (b + 1) * V), r.seq, r.opts, r.rng);
      r.seq.push(t);
      r.remaining = stop.has(t) ? 0 : r.remaining - 1;
      out.push([r.id, t]);
    });
  }

  private decodeOne(out: [number, number][]): void {
    const rows = this.rows, len = this.cache!.length;
    const ids = rows.map((r) => [r.seq[r.seq.length - 1]]);
    const pos = rows.map((r) => [r.seq.length - 1]);
    const anyPad = rows.some((r) => r.pad > 0);
    const mask = anyPad ? rows.map((r) => Array.from({ length: len + 1 }, (_, j) => (j < r.pad ? 0 : 1))) : null;
    const logits = this.forward(ids, pos, mask, this.cache!);
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
    const later = Math.max(...admit.map((a) => a.maxNewTokens));
    const cache = this.model.newDecodeCache(rows.length, Math.min(L + later, this.model.maxSequenceLength));
    const logits = this.forward(ids, pos, mask, cache);
    this.sample(rows, logits, out);
    this.merge(cache, rows, later);
  }

  /** Appends rows (with their cache) to the batch, left-padding the shorter side. */
  private merge(cache: KVCache, rows: Row[], later: number): void {
    if (!this.cache || this.rows.length === 0) {
      this.cache?.dispose();
      this.cache = cache;
      this.rows = rows;
      return;
    }
    const total = Math.max(this.cache.length, cache.length);
    const dOld = total - this.cache.length, dNew = total - cache.length;
    const room = Math.max(later, ...this.rows.map((r) => r.remaining));
    this.cache.appendRows(cache, Math.min(room, Math.max(0, this.model.maxSequenceLength - total)));
    for (const r of this.rows) r.pad += dOld;
    for (const r of rows) r.pad += dNew;
    this.rows.push(...rows);
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
    this.cache!.selectRows(idx, minPad);
    for (const r of this.rows) r.pad -= minPad;
  }
}

/** The former name of BatchDecoder, from when only GPTs were served. */
export const GPTBatchDecoder = BatchDecoder;

/** The device of a model's first parameter. */
function modelDevice(model: Generator): Device {
  if (model.parameters) for (const p of model.parameters()) return p.device;
  return 'cpu';
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
export async function loadModel(dir: string, kind: ModelKind): Promise<{ decoder?: BatchDecoder; classifier?: Classifier; info: ModelInfo }> {
  if (kind === 'bert') return loadBertClassifier(dir);
  if (kind === 'llama') {
    const { LlamaForCausalLM } = await import('../models/llama.js');
    const model = await LlamaForCausalLM.fromPretrained(dir);
    const eos = model.generationConfig.eosTokenId;
    return {
      decoder: new BatchDecoder(model, eos),
      info: {
        kind, task: 'generate', parameters: model.numParameters(), blockSize: model.maxSequenceLength,
        vocabSize: model.config.vocabSize, stopTokens: eos,
      },
    };
  }
  const { GPT } = await import('../models/gpt.js');
  const model = kind === 'gpt2' ? await GPT.fromPretrained(dir) : await GPT.load(dir);
  const c = model.config;
  return {
    decoder: new BatchDecoder(model),
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
