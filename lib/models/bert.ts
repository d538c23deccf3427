// BERT as Hugging Face's BertModel: embeddings (word + position + token type → LayerNorm
// → dropout), a post-LN encoder, a pooler (dense + tanh on [CLS]); heads for sequence
// classification and masked language modelling. Config fields are BertConfig's in
// camelCase; weights are initialised as HF's _init_weights (N(0, initializerRange),
// zero biases, unit LayerNorm). Each layer's query/key/value projections are one fused
// Linear (rows q | k | v) so the three matmuls are one; lib/models/hf.ts splits them for
// export and concatenates them on import.
import { noGrad } from '../autograd.js';
import { arange, randn, zeros } from '../ops/creation.js';
import { add, cast, gelu, relu, silu, tanh } from '../ops/elementwise.js';
import { binaryCrossEntropyWithLogits, crossEntropy, mseLoss } from '../ops/loss.js';
import { linear } from '../ops/matmul.js';
import { reshape } from '../ops/shape.js';
import { fmt } from '../ops/check.js';
import type { Tensor } from '../tensor.js';
import { MultiheadAttention } from '../nn/attention.js';
import { Dropout, Embedding, LayerNorm, Linear, ModuleList } from '../nn/layers.js';
import { Module, parameter } from '../nn/module.js';
import type { Device } from '../storage.js';
import type { SavePretrainedOptions } from './hf.js';
import { loadBertPretrained, saveBertPretrained, type BertArchitecture, type BertPretrainedOptions } from './bert_hf.js';
import {
  BYTES_PER_PARAMETER, ConfigErrors, checkFits, checkTensorElements, formatBytes, formatCount, show, type ConfigSource,
} from './sizes.js';

export type BertActivation = 'gelu' | 'gelu_new' | 'gelu_pytorch_tanh' | 'gelu_fast' | 'relu' | 'silu' | 'swish';
export type ProblemType = 'regression' | 'single_label_classification' | 'multi_label_classification';

/** Hugging Face BertConfig in camelCase; every field has HF's default. */
export interface BertConfig {
  vocabSize?: number;
  hiddenSize?: number;
  numHiddenLayers?: number;
  numAttentionHeads?: number;
  intermediateSize?: number;
  /** 'gelu' is the exact (erf) GELU; 'gelu_new', 'gelu_pytorch_tanh' and 'gelu_fast' the tanh form. */
  hiddenAct?: BertActivation;
  hiddenDropoutProb?: number;
  attentionProbsDropoutProb?: number;
  maxPositionEmbeddings?: number;
  typeVocabSize?: number;
  layerNormEps?: number;
  padTokenId?: number | null;
  initializerRange?: number;
  /** Dropout before the classifier; null = hiddenDropoutProb. */
  classifierDropout?: number | null;
  numLabels?: number;
  id2label?: Record<number, string>;
  label2id?: Record<string, number>;
  /** Loss of BertForSequenceClassification; null = inferred from numLabels and the labels' dtype on first use. */
  problemType?: ProblemType | null;
  /** Masked LM decoder shares the word embedding matrix (HF default true). */
  tieWordEmbeddings?: boolean;
}
export type ResolvedBertConfig = Required<BertConfig>;

const DEFAULTS: ResolvedBertConfig = {
  vocabSize: 30522, hiddenSize: 768, numHiddenLayers: 12, numAttentionHeads: 12, intermediateSize: 3072,
  hiddenAct: 'gelu', hiddenDropoutProb: 0.1, attentionProbsDropoutProb: 0.1, maxPositionEmbeddings: 512,
  typeVocabSize: 2, layerNormEps: 1e-12, padTokenId: 0, initializerRange: 0.02, classifierDropout: null,
  numLabels: 2, id2label: {}, label2id: {}, problemType: null, tieWordEmbeddings: true,
};

const PRESETS: Record<string, BertConfig> = {
  'bert-base': {},
  'bert-large': { hiddenSize: 1024, numHiddenLayers: 24, numAttentionHeads: 16, intermediateSize: 4096 },
  // the small BERTs of Turc et al. (google/bert_uncased_L-*_H-*), which train on a CPU
  'bert-tiny': { hiddenSize: 128, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 512 },
  'bert-mini': { hiddenSize: 256, numHiddenLayers: 4, numAttentionHeads: 4, intermediateSize: 1024 },
  'bert-small': { hiddenSize: 512, numHiddenLayers: 4, numAttentionHeads: 8, intermediateSize: 2048 },
};
const ACTS: readonly string[] = ['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'gelu_fast', 'relu', 'silu', 'swish'];
const PROBLEMS: readonly string[] = ['regression', 'single_label_classification', 'multi_label_classification'];

/** Default label maps LABEL_0..LABEL_{n-1}, as HF writes them. */
export function defaultLabels(n: number): { id2label: Record<number, string>; label2id: Record<string, number> } {
  const id2label: Record<number, string> = {}, label2id: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    id2label[i] = `LABEL_${i}`;
    label2id[`LABEL_${i}`] = i;
  }
  return { id2label, label2id };
}

const INT_FIELDS = ['vocabSize', 'hiddenSize', 'numHiddenLayers', 'numAttentionHeads', 'intermediateSize', 'maxPositionEmbeddings', 'typeVocabSize', 'numLabels'] as const;
/** Rough bytes of one default label in id2label and label2id (LABEL_123 twice, two map entries). */
const LABEL_BYTES = 128;

/** HF's defaults filled in and every field's type and range checked; no label maps yet. */
function resolveBertConfig(config: BertConfig, e: ConfigErrors): ResolvedBertConfig {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw e.error(`${e.src.file ?? 'the config'} must be ${e.src.file ? 'a JSON object' : 'an object'} (got ${show(config)})`);
  }
  const c: ResolvedBertConfig = { ...DEFAULTS, ...Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)) };
  const r = c as unknown as Record<string, unknown>;
  const labelled = config.id2label && typeof config.id2label === 'object' ? Object.keys(config.id2label).length : 0;
  if (labelled > 0 && config.numLabels === undefined) c.numLabels = labelled;
  for (const k of INT_FIELDS) e.int(r, k);
  if (c.hiddenSize % c.numAttentionHeads !== 0) {
    throw e.error(`${e.name('hiddenSize')} ${c.hiddenSize} must be divisible by ${e.name('numAttentionHeads')} ${c.numAttentionHeads}${e.where}`);
  }
  if (!ACTS.includes(c.hiddenAct)) throw e.error(`${e.label('hiddenAct')} ${show(c.hiddenAct)} is not supported (supported: ${ACTS.join(', ')})`);
  for (const k of ['hiddenDropoutProb', 'attentionProbsDropoutProb'] as const) e.num(r, k, 0, (x) => x >= 0 && x < 1, 'in [0, 1)');
  if (c.classifierDropout !== null) e.num(r, 'classifierDropout', 0, (x) => x >= 0 && x < 1, 'null or in [0, 1)');
  e.num(r, 'layerNormEps', 0, (x) => x > 0 && Number.isFinite(x), 'positive');
  e.num(r, 'initializerRange', 0, (x) => x >= 0 && Number.isFinite(x), 'non-negative');
  if (c.padTokenId !== null && !(Number.isInteger(c.padTokenId) && c.padTokenId >= 0 && c.padTokenId < c.vocabSize)) {
    throw e.error(`${e.label('padTokenId')} must be null or an id in [0, ${c.vocabSize}) (got ${show(c.padTokenId)})`);
  }
  if (c.problemType !== null && !PROBLEMS.includes(c.problemType)) {
    throw e.error(`${e.label('problemType')} must be one of ${PROBLEMS.join(', ')} or null (got ${show(c.problemType)})`);
  }
  e.bool(r, 'tieWordEmbeddings', true);
  return c;
}

/**
 * Fills HF's defaults and checks every field. `src` says where the values came from (a
 * config.json, options) so that errors name the file and field.
 */
export function checkBertConfig(config: BertConfig = {}, src: ConfigSource = {}): ResolvedBertConfig {
  const e = new ConfigErrors(src, 'BertConfig');
  const c = resolveBertConfig(config, e);
  const given = config.id2label && Object.keys(config.id2label).length > 0 ? config.id2label : null;
  if (given) {
    const n = Object.keys(given).length;
    if (config.numLabels !== undefined && config.numLabels !== n) throw e.error(`id2label has ${n} labels but ${e.name('numLabels')} is ${config.numLabels}${e.where}`);
    c.numLabels = n;
    c.id2label = { ...given };
  } else {
    // the default maps are built label by label: refuse a count that cannot fit first
    checkFits(e, c.numLabels * LABEL_BYTES, (need) => `${e.label('numLabels')} ${c.numLabels}: the label names alone need ${need}`);
    c.id2label = defaultLabels(c.numLabels).id2label;
  }
  const l2i = config.label2id && Object.keys(config.label2id).length === c.numLabels ? config.label2id : null;
  c.label2id = l2i ? { ...l2i } : Object.fromEntries(Object.entries(c.id2label).map(([i, l]) => [l, Number(i)]));
  return c;
}

export interface BertShapeOptions {
  /** Which model (default BertModel). */
  arch?: BertArchitecture;
  /** BertModel only: with the pooler (default true). */
  pooler?: boolean;
}

/** Every parameter's name and shape (as the model's stateDict names them) from the config alone; nothing is allocated. */
export function bertParameterShapes(config: BertConfig = {}, opts: BertShapeOptions = {}): [string, number[]][] {
  const c = resolveBertConfig(config, new ConfigErrors({}, 'BertConfig'));
  const arch = opts.arch ?? 'BertModel';
  const H = c.hiddenSize, I = c.intermediateSize, p = arch === 'BertModel' ? '' : 'bert.';
  const out: [string, number[]][] = [];
  const wb = (name: string, shape: number[]): void => { out.push([`${name}.weight`, shape], [`${name}.bias`, [shape[0]]]); };
  out.push([`${p}embeddings.wordEmbeddings.weight`, [c.vocabSize, H]], [`${p}embeddings.positionEmbeddings.weight`, [c.maxPositionEmbeddings, H]],
    [`${p}embeddings.tokenTypeEmbeddings.weight`, [c.typeVocabSize, H]]);
  wb(`${p}embeddings.layerNorm`, [H]);
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const l = `${p}encoder.layer.${i}`;
    wb(`${l}.attention.cAttn`, [3 * H, H]); wb(`${l}.attention.cProj`, [H, H]); wb(`${l}.attentionNorm`, [H]);
    wb(`${l}.intermediate`, [I, H]); wb(`${l}.output`, [H, I]); wb(`${l}.outputNorm`, [H]);
  }
  if (arch === 'BertForSequenceClassification' || (arch === 'BertModel' && opts.pooler !== false)) wb(`${p}pooler.dense`, [H, H]);
  if (arch === 'BertForSequenceClassification') wb('classifier', [c.numLabels, H]);
  if (arch === 'BertForMaskedLM') {
    wb('transformDense', [H, H]); wb('transformNorm', [H]);
    out.push(['decoderBias', [c.vocabSize]]);
    if (!c.tieWordEmbeddings) out.push(['decoderWeight', [c.vocabSize, H]]);
  }
  return out;
}

/** The exact number of parameters of a BERT model with this config (closed form: any size, nothing allocated). */
export function bertParameterCount(config: BertConfig = {}, opts: BertShapeOptions = {}): number {
  const c = resolveBertConfig(config, new ConfigErrors({}, 'BertConfig'));
  const arch = opts.arch ?? 'BertModel';
  const H = c.hiddenSize, I = c.intermediateSize;
  // per layer: fused qkv 3H² + 3H, output H² + H, two LayerNorms 4H, MLP 2HI + I + H
  const layer = 4 * H * H + 2 * H * I + I + 9 * H;
  let n = (c.vocabSize + c.maxPositionEmbeddings + c.typeVocabSize) * H + 2 * H + c.numHiddenLayers * layer;
  if (arch === 'BertForSequenceClassification' || (arch === 'BertModel' && opts.pooler !== false)) n += H * H + H;
  if (arch === 'BertForSequenceClassification') n += c.numLabels * (H + 1);
  if (arch === 'BertForMaskedLM') n += H * H + 3 * H + c.vocabSize + (c.tieWordEmbeddings ? 0 : c.vocabSize * H);
  return n;
}

/**
 * float32 bytes of the activations a training micro-batch of batchSize x seqLen keeps for
 * backward (an estimate from below: per layer q/k/v, attention output and log-sum-exp,
 * projections, residuals, both LayerNorms and the MLP; the embeddings; the head).
 */
export function bertActivationBytes(config: BertConfig, batchSize: number, seqLen: number, opts: BertShapeOptions = {}): number {
  const c = resolveBertConfig(config, new ConfigErrors({}, 'BertConfig'));
  const H = c.hiddenSize, perToken = c.numHiddenLayers * (10 * H + 2 * c.intermediateSize + c.numAttentionHeads) + 4 * H;
  const head = opts.arch === 'BertForMaskedLM' ? seqLen * (2 * H + 2 * c.vocabSize) : 2 * H + 2 * c.numLabels;
  return 4 * batchSize * (seqLen * perToken + head);
}

export interface BertSizeOptions extends ConfigSource, BertShapeOptions {
  /** Where training runs (the weights are always built on the host first). Default: the CPU. */
  device?: Device;
  /** Check a training step too: weights, gradients, AdamW moments and the activations of one micro-batch. */
  training?: { batchSize: number; seqLen?: number };
  /** Copies of the model held at once (e.g. server workers). Default 1. */
  copies?: number;
}

/**
 * Checks the config (checkBertConfig), then refuses it before anything is allocated when a
 * tensor would be larger than JavaScript can hold or the model (or a training step) needs
 * more memory than is available, saying how much it needs.
 */
export function checkBertSize(config: BertConfig = {}, opts: BertSizeOptions = {}): ResolvedBertConfig {
  const arch = opts.arch ?? 'BertModel';
  const c = resolveBertConfig(config, new ConfigErrors(opts, 'BertConfig'));
  const e = new ConfigErrors(opts, arch);
  const n = (k: keyof BertConfig): string => `${e.name(k)} ${c[k] as number}`;
  const params = bertParameterCount(c, { arch, pooler: opts.pooler });
  const copies = opts.copies ?? 1;
  const fields: (keyof BertConfig)[] = ['numHiddenLayers', 'hiddenSize', 'numAttentionHeads', 'intermediateSize', 'vocabSize', 'maxPositionEmbeddings'];
  if (arch === 'BertForSequenceClassification') fields.push('numLabels');
  const subject = `${e.subject} (${e.describe(c as unknown as Record<string, unknown>, fields)})`;
  checkFits(e, params * BYTES_PER_PARAMETER.inference * copies,
    (need) => `${subject} needs ${need} for ${formatCount(params)} parameters (float32${copies > 1 ? `, ${copies} copies` : ''})`);
  checkTensorElements(e, `the word embedding (${n('vocabSize')} x ${n('hiddenSize')})`, c.vocabSize * c.hiddenSize);
  checkTensorElements(e, `the position embedding (${n('maxPositionEmbeddings')} x ${n('hiddenSize')})`, c.maxPositionEmbeddings * c.hiddenSize);
  checkTensorElements(e, `the token type embedding (${n('typeVocabSize')} x ${n('hiddenSize')})`, c.typeVocabSize * c.hiddenSize);
  checkTensorElements(e, `an MLP weight (${n('intermediateSize')} x ${n('hiddenSize')})`, c.intermediateSize * c.hiddenSize);
  if (arch === 'BertForSequenceClassification') checkTensorElements(e, `the classifier (${n('numLabels')} x ${n('hiddenSize')})`, c.numLabels * c.hiddenSize);
  const t = opts.training;
  if (t) {
    const T = t.seqLen ?? c.maxPositionEmbeddings;
    const device = opts.device ?? 'cpu';
    const state = params * BYTES_PER_PARAMETER.training;
    const step = `a training step of ${e.name('batchSize')} ${t.batchSize} x ${e.name('seqLen')} ${T}`;
    const act = bertActivationBytes(c, t.batchSize, T, { arch });
    checkFits(e, state + act, (need) => `${subject}: ${step} needs ${need}${device === 'cpu' ? '' : ` on ${device}`} (${formatBytes(act)} of activations, ` +
      `${formatBytes(state)} for ${formatCount(params)} parameters with their gradients and AdamW moments)`, device);
    checkTensorElements(e, `${step}: the token batch`, t.batchSize * T);
    if (device === 'cpu') checkTensorElements(e, `${step}: its MLP activations (x ${n('intermediateSize')})`, t.batchSize * T * c.intermediateSize);
  }
  return checkBertConfig(config, opts);
}

function activate(name: BertActivation, x: Tensor): Tensor {
  switch (name) {
    case 'gelu': return gelu(x, { approximate: 'none' });
    case 'relu': return relu(x);
    case 'silu': case 'swish': return silu(x);
    default: return gelu(x, { approximate: 'tanh' });
  }
}

/** HF's _init_weights on every Linear/Embedding/LayerNorm under m. */
function initWeights(m: Module, std: number): void {
  noGrad(() => {
    for (const s of m.modules()) {
      if (s instanceof Linear) {
        s.weight.copy_(randn(s.weight.shape as number[], { std }));
        s.bias?.zero_();
      } else if (s instanceof Embedding) {
        s.weight.copy_(randn(s.weight.shape as number[], { std }));
        if (s.opts.paddingIdx !== undefined) s.weight.select(0, s.opts.paddingIdx).zero_();
      } else if (s instanceof LayerNorm) {
        s.weight?.fill_(1);
        s.bias?.zero_();
      }
    }
  });
}

export interface BertInputs {
  /** int32 [B, T] */
  inputIds: Tensor;
  /** [B, T], nonzero/true = real token; padded keys are masked out of every attention. */
  attentionMask?: Tensor | null;
  /** int32 [B, T] segment ids (default zeros) */
  tokenTypeIds?: Tensor | null;
}
export interface BertOutput { lastHiddenState: Tensor; poolerOutput: Tensor | null }
export interface BertHeadOutput extends BertOutput { logits: Tensor; loss?: Tensor }

export class BertEmbeddings extends Module {
  wordEmbeddings: Embedding;
  positionEmbeddings: Embedding;
  tokenTypeEmbeddings: Embedding;
  layerNorm: LayerNorm;
  dropout: Dropout;
  constructor(c: ResolvedBertConfig) {
    super();
    this.wordEmbeddings = new Embedding(c.vocabSize, c.hiddenSize, c.padTokenId === null ? {} : { paddingIdx: c.padTokenId });
    this.positionEmbeddings = new Embedding(c.maxPositionEmbeddings, c.hiddenSize);
    this.tokenTypeEmbeddings = new Embedding(c.typeVocabSize, c.hiddenSize);
    this.layerNorm = new LayerNorm(c.hiddenSize, { eps: c.layerNormEps });
    this.dropout = new Dropout(c.hiddenDropoutProb);
  }
  forward(inputIds: Tensor, tokenTypeIds: Tensor | null): Tensor {
    const T = inputIds.shape[1];
    let x = add(this.wordEmbeddings.forward(inputIds), this.positionEmbeddings.forward(arange(0, T, 1, { dtype: 'int32', device: inputIds.device })));
    x = tokenTypeIds ? add(x, this.tokenTypeEmbeddings.forward(tokenTypeIds)) : add(x, this.tokenTypeEmbeddings.weight.select(0, 0));
    return this.dropout.forward(this.layerNorm.forward(x));
  }
}

/** Post-LN layer: h = LN(x + attn(x)); out = LN(h + W2 act(W1 h)). */
export class BertLayer extends Module {
  /** cAttn = query|key|value (fused), cProj = attention.output.dense, residDropout = its dropout */
  attention: MultiheadAttention;
  attentionNorm: LayerNorm;
  intermediate: Linear;
  output: Linear;
  outputDropout: Dropout;
  outputNorm: LayerNorm;
  readonly act: BertActivation;
  constructor(c: ResolvedBertConfig) {
    super();
    this.attention = new MultiheadAttention(c.hiddenSize, c.numAttentionHeads, { dropout: c.hiddenDropoutProb });
    this.attention.attnDropout = c.attentionProbsDropoutProb;
    this.attentionNorm = new LayerNorm(c.hiddenSize, { eps: c.layerNormEps });
    this.intermediate = new Linear(c.hiddenSize, c.intermediateSize);
    this.output = new Linear(c.intermediateSize, c.hiddenSize);
    this.outputDropout = new Dropout(c.hiddenDropoutProb);
    this.outputNorm = new LayerNorm(c.hiddenSize, { eps: c.layerNormEps });
    this.act = c.hiddenAct;
  }
  forward(x: Tensor, keyPaddingMask: Tensor | null = null): Tensor {
    const h = this.attentionNorm.forward(add(x, this.attention.forward(x, { keyPaddingMask })));
    const f = this.outputDropout.forward(this.output.forward(activate(this.act, this.intermediate.forward(h))));
    return this.outputNorm.forward(add(h, f));
  }
}

export class BertEncoder extends Module {
  layer: ModuleList<BertLayer>;
  constructor(c: ResolvedBertConfig) {
    super();
    this.layer = new ModuleList(Array.from({ length: c.numHiddenLayers }, () => new BertLayer(c)));
  }
  forward(x: Tensor, keyPaddingMask: Tensor | null = null): Tensor {
    for (const l of this.layer) x = l.forward(x, keyPaddingMask);
    return x;
  }
}

export class BertPooler extends Module {
  dense: Linear;
  constructor(c: ResolvedBertConfig) {
    super();
    this.dense = new Linear(c.hiddenSize, c.hiddenSize);
  }
  /** tanh(W h[:, 0] + b) */
  forward(hidden: Tensor): Tensor { return tanh(this.dense.forward(hidden.select(1, 0))); }
}

function checkInputs(inp: BertInputs, c: ResolvedBertConfig, op: string): void {
  const ids = inp?.inputIds;
  if (!ids || ids.dtype !== 'int32' || ids.ndim !== 2) {
    throw new Error(`nodegrad: ${op}: inputIds must be an int32 tensor [B, T] (got ${ids ? `${ids.dtype} ${fmt(ids.shape)}` : String(ids)})`);
  }
  const [B, T] = ids.shape;
  if (T > c.maxPositionEmbeddings) throw new Error(`nodegrad: ${op}: sequence length ${T} exceeds maxPositionEmbeddings ${c.maxPositionEmbeddings}`);
  for (const k of ['attentionMask', 'tokenTypeIds'] as const) {
    const t = inp[k];
    if (t && (t.ndim !== 2 || t.shape[0] !== B || t.shape[1] !== T)) {
      throw new Error(`nodegrad: ${op}: ${k} must be [B, T] = [${B}, ${T}] like inputIds (got ${fmt(t.shape)})`);
    }
  }
  if (inp.tokenTypeIds && inp.tokenTypeIds.dtype !== 'int32') {
    throw new Error(`nodegrad: ${op}: tokenTypeIds must be int32 (got ${inp.tokenTypeIds.dtype})`);
  }
}

export class BertModel extends Module {
  readonly config: ResolvedBertConfig;
  embeddings: BertEmbeddings;
  encoder: BertEncoder;
  pooler: BertPooler | null;

  static preset(name: string, overrides: BertConfig = {}): BertConfig {
    const p = PRESETS[name];
    if (!p) throw new Error(`nodegrad: BertModel.preset: unknown preset '${name}' (known: ${Object.keys(PRESETS).join(', ')})`);
    return { ...p, ...overrides };
  }
  static presets(): string[] { return Object.keys(PRESETS); }

  constructor(config: BertConfig = {}, opts: { addPoolingLayer?: boolean } = {}) {
    super();
    const c = checkBertSize(config, { arch: 'BertModel', pooler: opts.addPoolingLayer !== false });
    this.config = c;
    this.embeddings = new BertEmbeddings(c);
    this.encoder = new BertEncoder(c);
    this.pooler = opts.addPoolingLayer === false ? null : new BertPooler(c);
    initWeights(this, c.initializerRange);
  }

  forward(inputs: BertInputs): BertOutput {
    checkInputs(inputs, this.config, 'BertModel.forward');
    const x = this.embeddings.forward(inputs.inputIds, inputs.tokenTypeIds ?? null);
    const mask = inputs.attentionMask ? cast(inputs.attentionMask, 'bool') : null;
    const lastHiddenState = this.encoder.forward(x, mask);
    return { lastHiddenState, poolerOutput: this.pooler ? this.pooler.forward(lastHiddenState) : null };
  }

  static async fromPretrained(dir: string, opts: BertPretrainedOptions = {}): Promise<BertModel> {
    return loadBertPretrained(dir, 'BertModel', opts) as Promise<BertModel>;
  }
  async savePretrained(dir: string, opts: SavePretrainedOptions = {}): Promise<void> {
    await saveBertPretrained(this, dir, opts);
  }
}

export interface BertClassificationInputs extends BertInputs {
  /** int32 [B] class ids (single-label), float [B, numLabels] (multi-label) or float [B] / [B, numLabels] (regression). */
  labels?: Tensor | null;
}

export class BertForSequenceClassification extends Module {
  readonly config: ResolvedBertConfig;
  bert: BertModel;
  dropout: Dropout;
  classifier: Linear;

  constructor(config: BertConfig = {}) {
    super();
    checkBertSize(config, { arch: 'BertForSequenceClassification' });
    this.bert = new BertModel(config);
    const c = this.config = this.bert.config;
    this.dropout = new Dropout(c.classifierDropout ?? c.hiddenDropoutProb);
    this.classifier = new Linear(c.hiddenSize, c.numLabels);
    initWeights(this.classifier, c.initializerRange);
  }
  get numLabels(): number { return this.config.numLabels; }
  /** float32 bytes of the activations a training micro-batch keeps for backward (see bertActivationBytes). */
  activationBytes(batchSize: number, seqLen: number): number {
    return bertActivationBytes(this.config, batchSize, seqLen, { arch: 'BertForSequenceClassification' });
  }

  forward(inputs: BertClassificationInputs): BertHeadOutput {
    const out = this.bert.forward(inputs);
    const logits = this.classifier.forward(this.dropout.forward(out.poolerOutput!));
    const labels = inputs.labels;
    if (!labels) return { logits, ...out };
    return { logits, loss: this.loss(logits, labels), ...out };
  }

  /** The loss HF's BertForSequenceClassification computes; infers problemType on first use as HF does. */
  private loss(logits: Tensor, labels: Tensor): Tensor {
    const c = this.config, B = logits.shape[0], L = c.numLabels;
    if (c.problemType === null) {
      c.problemType = L === 1 ? 'regression' : labels.dtype === 'int32' ? 'single_label_classification' : 'multi_label_classification';
    }
    const op = 'BertForSequenceClassification.forward';
    const shapeErr = (want: string): Error =>
      new Error(`nodegrad: ${op}: labels for ${c.problemType} must be ${want} (got ${labels.dtype} ${fmt(labels.shape)})`);
    if (c.problemType === 'single_label_classification') {
      if (labels.dtype !== 'int32' || labels.numel !== B) throw shapeErr(`int32 [${B}]`);
      return crossEntropy(logits, reshape(labels, [B]));
    }
    if (labels.dtype !== 'float32' && labels.dtype !== 'float64' && labels.dtype !== 'int32') throw shapeErr('numeric');
    const y = cast(labels, logits.dtype);
    if (c.problemType === 'multi_label_classification') {
      if (fmt(labels.shape) !== fmt([B, L])) throw shapeErr(`[${B}, ${L}]`);
      return binaryCrossEntropyWithLogits(logits, y);
    }
    if (L === 1) {
      if (labels.numel !== B) throw shapeErr(`[${B}] or [${B}, 1]`);
      return mseLoss(reshape(logits, [B]), reshape(y, [B]));
    }
    if (fmt(labels.shape) !== fmt([B, L])) throw shapeErr(`[${B}, ${L}]`);
    return mseLoss(logits, y);
  }

  static async fromPretrained(dir: string, opts: BertPretrainedOptions = {}): Promise<BertForSequenceClassification> {
    return loadBertPretrained(dir, 'BertForSequenceClassification', opts) as Promise<BertForSequenceClassification>;
  }
  async savePretrained(dir: string, opts: SavePretrainedOptions = {}): Promise<void> {
    await saveBertPretrained(this, dir, opts);
  }
}

export interface BertMaskedLMInputs extends BertInputs {
  /** int32 [B, T] target ids; -100 = not predicted. */
  labels?: Tensor | null;
}

/** BERT with the MLM head: dense + act + LayerNorm, then the decoder (word embeddings, tied by default) + bias. No pooler, as HF. */
export class BertForMaskedLM extends Module {
  readonly config: ResolvedBertConfig;
  bert: BertModel;
  transformDense: Linear;
  transformNorm: LayerNorm;
  decoderBias: Tensor;
  /** Only when tieWordEmbeddings is false; otherwise the word embeddings are the decoder. */
  decoderWeight: Tensor | null;

  constructor(config: BertConfig = {}) {
    super();
    checkBertSize(config, { arch: 'BertForMaskedLM' });
    this.bert = new BertModel(config, { addPoolingLayer: false });
    const c = this.config = this.bert.config;
    this.transformDense = new Linear(c.hiddenSize, c.hiddenSize);
    this.transformNorm = new LayerNorm(c.hiddenSize, { eps: c.layerNormEps });
    this.decoderBias = parameter(zeros([c.vocabSize]));
    this.decoderWeight = c.tieWordEmbeddings ? null : parameter(randn([c.vocabSize, c.hiddenSize], { std: c.initializerRange }));
    initWeights(this.transformDense, c.initializerRange);
  }

  /** float32 bytes of the activations a training micro-batch keeps for backward (see bertActivationBytes). */
  activationBytes(batchSize: number, seqLen: number): number {
    return bertActivationBytes(this.config, batchSize, seqLen, { arch: 'BertForMaskedLM' });
  }

  forward(inputs: BertMaskedLMInputs): BertHeadOutput {
    const out = this.bert.forward(inputs);
    const c = this.config;
    const h = this.transformNorm.forward(activate(c.hiddenAct, this.transformDense.forward(out.lastHiddenState)));
    const logits = linear(h, this.decoderWeight ?? this.bert.embeddings.wordEmbeddings.weight, this.decoderBias);
    const labels = inputs.labels;
    if (!labels) return { logits, ...out };
    const [B, T] = inputs.inputIds.shape;
    if (labels.dtype !== 'int32' || fmt(labels.shape) !== fmt([B, T])) {
      throw new Error(`nodegrad: BertForMaskedLM.forward: labels must be int32 [${B}, ${T}] (got ${labels.dtype} ${fmt(labels.shape)})`);
    }
    const loss = crossEntropy(reshape(logits, [B * T, c.vocabSize]), reshape(labels, [B * T]), { ignoreIndex: -100 });
    return { logits, loss, ...out };
  }

  static async fromPretrained(dir: string, opts: BertPretrainedOptions = {}): Promise<BertForMaskedLM> {
    return loadBertPretrained(dir, 'BertForMaskedLM', opts) as Promise<BertForMaskedLM>;
  }
  async savePretrained(dir: string, opts: SavePretrainedOptions = {}): Promise<void> {
    await saveBertPretrained(this, dir, opts);
  }
}
