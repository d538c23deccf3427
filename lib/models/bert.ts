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
import { fmt } from '../ops/util.js';
import type { Tensor } from '../tensor.js';
import { MultiheadAttention } from '../nn/attention.js';
import { Dropout, Embedding, LayerNorm, Linear, ModuleList } from '../nn/layers.js';
import { Module, parameter } from '../nn/module.js';
import {
  loadBertPretrained, saveBertPretrained, type BertPretrainedOptions, type SavePretrainedOptions,
} from './hf.js';

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

function bad(what: string): Error { return new Error(`nodegrad: BertConfig: ${what}`); }

/** Default label maps LABEL_0..LABEL_{n-1}, as HF writes them. */
export function defaultLabels(n: number): { id2label: Record<number, string>; label2id: Record<string, number> } {
  const id2label: Record<number, string> = {}, label2id: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    id2label[i] = `LABEL_${i}`;
    label2id[`LABEL_${i}`] = i;
  }
  return { id2label, label2id };
}

/** Fills HF's defaults and checks every field. */
export function checkBertConfig(config: BertConfig = {}): ResolvedBertConfig {
  const c: ResolvedBertConfig = { ...DEFAULTS, ...Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)) };
  for (const k of ['vocabSize', 'hiddenSize', 'numHiddenLayers', 'numAttentionHeads', 'intermediateSize', 'maxPositionEmbeddings', 'typeVocabSize', 'numLabels'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw bad(`${k} must be a positive integer (got ${String(c[k])})`);
  }
  if (c.hiddenSize % c.numAttentionHeads !== 0) throw bad(`hiddenSize ${c.hiddenSize} must be divisible by numAttentionHeads ${c.numAttentionHeads}`);
  if (!ACTS.includes(c.hiddenAct)) throw bad(`hiddenAct ${JSON.stringify(c.hiddenAct)} is not supported (supported: ${ACTS.join(', ')})`);
  for (const k of ['hiddenDropoutProb', 'attentionProbsDropoutProb'] as const) {
    if (!(c[k] >= 0 && c[k] < 1)) throw bad(`${k} must be in [0, 1) (got ${String(c[k])})`);
  }
  if (c.classifierDropout !== null && !(c.classifierDropout >= 0 && c.classifierDropout < 1)) {
    throw bad(`classifierDropout must be null or in [0, 1) (got ${String(c.classifierDropout)})`);
  }
  if (!(c.layerNormEps > 0)) throw bad(`layerNormEps must be positive (got ${String(c.layerNormEps)})`);
  if (!(c.initializerRange >= 0)) throw bad(`initializerRange must be non-negative (got ${String(c.initializerRange)})`);
  if (c.padTokenId !== null && !(Number.isInteger(c.padTokenId) && c.padTokenId >= 0 && c.padTokenId < c.vocabSize)) {
    throw bad(`padTokenId must be null or an id in [0, ${c.vocabSize}) (got ${String(c.padTokenId)})`);
  }
  if (c.problemType !== null && !PROBLEMS.includes(c.problemType)) {
    throw bad(`problemType must be one of ${PROBLEMS.join(', ')} or null (got ${JSON.stringify(c.problemType)})`);
  }
  const given = config.id2label && Object.keys(config.id2label).length > 0 ? config.id2label : null;
  if (given) {
    const n = Object.keys(given).length;
    if (config.numLabels !== undefined && config.numLabels !== n) throw bad(`id2label has ${n} labels but numLabels is ${config.numLabels}`);
    c.numLabels = n;
    c.id2label = { ...given };
  } else c.id2label = defaultLabels(c.numLabels).id2label;
  const l2i = config.label2id && Object.keys(config.label2id).length === c.numLabels ? config.label2id : null;
  c.label2id = l2i ? { ...l2i } : Object.fromEntries(Object.entries(c.id2label).map(([i, l]) => [l, Number(i)]));
  return c;
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
    const c = checkBertConfig(config);
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
    this.bert = new BertModel(config);
    const c = this.config = this.bert.config;
    this.dropout = new Dropout(c.classifierDropout ?? c.hiddenDropoutProb);
    this.classifier = new Linear(c.hiddenSize, c.numLabels);
    initWeights(this.classifier, c.initializerRange);
  }
  get numLabels(): number { return this.config.numLabels; }

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
    this.bert = new BertModel(config, { addPoolingLayer: false });
    const c = this.config = this.bert.config;
    this.transformDense = new Linear(c.hiddenSize, c.hiddenSize);
    this.transformNorm = new LayerNorm(c.hiddenSize, { eps: c.layerNormEps });
    this.decoderBias = parameter(zeros([c.vocabSize]));
    this.decoderWeight = c.tieWordEmbeddings ? null : parameter(randn([c.vocabSize, c.hiddenSize], { std: c.initializerRange }));
    initWeights(this.transformDense, c.initializerRange);
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
