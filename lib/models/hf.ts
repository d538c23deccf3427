// Hugging Face checkpoint directories, both ways: config.json <-> camelCase configs, and
// model.safetensors (or shards listed in model.safetensors.index.json) <-> our parameters.
//
// Each model has a table of rules, one per parameter of ours: the HF tensor names it comes
// from and how ('copy'; 'transpose' for GPT-2's Conv1D weights stored [in, out]; 'cat' for
// BERT's separate query/key/value, stacked along the output dim into our fused QKV).
// Names are matched after normalising the checkpoint's own: the base-model prefix
// ('transformer.' / 'bert.') is dropped when present and old 'LayerNorm.gamma/beta' names
// become 'weight/bias'. Shapes are checked from the headers before any tensor is read;
// tensors are then read one at a time, so a checkpoint is never held in memory twice.
// Export applies the rules backwards and writes HF's names, leaving out tied tensors as
// transformers' save_pretrained does.
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { noGrad } from '../autograd.js';
import { zeros } from '../ops/creation.js';
import { cast } from '../ops/elementwise.js';
import { contiguous } from '../ops/shape.js';
import { fmt } from '../ops/util.js';
import type { Tensor } from '../tensor.js';
import type { Module } from '../nn/module.js';
import { resolveCheckpointDir, writeDirAtomic, type FileContents } from '../io/atomic.js';
import { openSafetensors, safetensorsWriter, type SafetensorsReader } from '../io/safetensors.js';
import {
  BertForMaskedLM, BertForSequenceClassification, BertModel, bertParameterShapes, checkBertSize,
  type BertActivation, type BertConfig, type ProblemType,
} from './bert.js';
import { GPT, checkGPTSize, gptParameterShapes, type GPTConfig } from './gpt.js';

export type BertArchitecture = 'BertModel' | 'BertForSequenceClassification' | 'BertForMaskedLM';
/** Overrides of config.json's fields (e.g. { numLabels: 3 } for a fresh classifier). */
export type BertPretrainedOptions = BertConfig;
export interface SavePretrainedOptions {
  /** dtype of the written tensors (default float32). */
  dtype?: 'float32' | 'float16' | 'bfloat16';
  /**
   * Extra files for the directory, e.g. tokenizer files. Files already in the directory
   * other than config.json and weight files are kept.
   */
  extraFiles?: Record<string, FileContents>;
}
export type GPT2Config = Required<GPTConfig>;
type Raw = Record<string, unknown>;
export type HFConfig =
  | { modelType: 'gpt2'; config: GPT2Config; architectures: string[]; raw: Raw }
  | { modelType: 'bert'; config: BertConfig; architectures: string[]; raw: Raw };

/** The config.json each loaded model came with, so an export keeps fields we do not model. */
const RAW = new WeakMap<Module, Raw>();
const TANH_GELU = ['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'];

// ---- config.json ------------------------------------------------------------------------

class Fields {
  constructor(readonly raw: Raw, readonly file: string) {}
  err(key: string, what: string): Error {
    return new Error(`nodegrad: loadHFConfig: field "${key}" of ${this.file} ${what} (got ${JSON.stringify(this.raw[key])})`);
  }
  num(key: string, def: number): number {
    const v = this.raw[key] ?? def;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw this.err(key, 'must be a number');
    return v;
  }
  /** A size or id: a safe integer >= min (null is not a size). */
  int(key: string, def: number, min = 1): number {
    const v = this.raw[key] === undefined ? def : this.raw[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw this.err(key, 'must be an integer');
    if (v < min) throw this.err(key, `must be ${min === 1 ? 'a positive integer' : `an integer >= ${min}`}`);
    return v;
  }
  str(key: string, def: string): string {
    const v = this.raw[key] ?? def;
    if (typeof v !== 'string') throw this.err(key, 'must be a string');
    return v;
  }
  unsupported(key: string, ok: (v: unknown) => boolean, what: string): void {
    if (this.raw[key] !== undefined && this.raw[key] !== null && !ok(this.raw[key])) throw this.err(key, `is not supported: ${what}`);
  }
}

function gpt2Config(f: Fields): GPT2Config {
  const nEmbd = f.int('n_embd', 768);
  f.unsupported('activation_function', (v) => TANH_GELU.includes(v as string), `GPT uses the tanh GELU (${TANH_GELU.join(', ')})`);
  f.unsupported('n_inner', (v) => v === 4 * nEmbd, `the MLP width is 4 * n_embd = ${4 * nEmbd}`);
  f.unsupported('scale_attn_weights', (v) => v === true, 'attention scores are always scaled by 1/sqrt(head dim)');
  f.unsupported('scale_attn_by_inverse_layer_idx', (v) => v === false, 'no per-layer attention scaling');
  f.unsupported('add_cross_attention', (v) => v === false, 'no cross-attention');
  f.unsupported('tie_word_embeddings', (v) => v === true, 'the output projection is tied to wte');
  return {
    vocabSize: f.int('vocab_size', 50257), blockSize: f.int('n_positions', f.int('n_ctx', 1024)), nLayer: f.int('n_layer', 12),
    nHead: f.int('n_head', 12), nEmbd, dropout: f.num('resid_pdrop', 0.1), bias: true, layerNormEps: f.num('layer_norm_epsilon', 1e-5),
    checkpoint: false, padVocabMultiple: 0,
  };
}

function bertConfig(f: Fields): BertConfig {
  f.unsupported('position_embedding_type', (v) => v === 'absolute', 'only absolute position embeddings');
  f.unsupported('is_decoder', (v) => v === false, 'BERT runs as an encoder');
  f.unsupported('add_cross_attention', (v) => v === false, 'no cross-attention');
  const labels = f.raw.id2label;
  let id2label: Record<number, string> | undefined;
  if (labels !== undefined && labels !== null) {
    if (typeof labels !== 'object' || Array.isArray(labels)) throw f.err('id2label', 'must be an object');
    id2label = Object.fromEntries(Object.entries(labels).map(([k, v]) => [Number(k), String(v)]));
  }
  const l2i = f.raw.label2id;
  const cd = f.raw.classifier_dropout;
  const pt = f.raw.problem_type;
  return {
    vocabSize: f.int('vocab_size', 30522), hiddenSize: f.int('hidden_size', 768), numHiddenLayers: f.int('num_hidden_layers', 12),
    numAttentionHeads: f.int('num_attention_heads', 12), intermediateSize: f.int('intermediate_size', 3072),
    hiddenAct: f.str('hidden_act', 'gelu') as BertActivation, hiddenDropoutProb: f.num('hidden_dropout_prob', 0.1),
    attentionProbsDropoutProb: f.num('attention_probs_dropout_prob', 0.1), maxPositionEmbeddings: f.int('max_position_embeddings', 512),
    typeVocabSize: f.int('type_vocab_size', 2), layerNormEps: f.num('layer_norm_eps', 1e-12),
    padTokenId: f.raw.pad_token_id === null ? null : f.int('pad_token_id', 0, 0), initializerRange: f.num('initializer_range', 0.02),
    classifierDropout: cd === undefined || cd === null ? null : f.num('classifier_dropout', 0),
    numLabels: id2label ? Object.keys(id2label).length : f.int('num_labels', 2), id2label,
    label2id: l2i && typeof l2i === 'object' ? l2i as Record<string, number> : undefined,
    problemType: typeof pt === 'string' ? pt as ProblemType : null,
    tieWordEmbeddings: f.raw.tie_word_embeddings === undefined ? true : f.raw.tie_word_embeddings === true,
  };
}

/** Reads config.json of a Hugging Face model directory (GPT-2 or BERT) into our camelCase config. */
export async function loadHFConfig(dir: string): Promise<HFConfig> {
  const file = path.join(dir, 'config.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new Error(`nodegrad: loadHFConfig: cannot read ${file}: ${(e as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`nodegrad: loadHFConfig: ${file} is not a JSON object`);
  const f = new Fields(raw as Raw, file);
  const architectures = Array.isArray(f.raw.architectures) ? f.raw.architectures.map(String) : [];
  const type = f.raw.model_type ?? (architectures.some((a) => a.startsWith('GPT2')) ? 'gpt2' : architectures.some((a) => a.startsWith('Bert')) ? 'bert' : undefined);
  if (type === 'gpt2') return { modelType: 'gpt2', config: gpt2Config(f), architectures, raw: f.raw };
  if (type === 'bert') return { modelType: 'bert', config: bertConfig(f), architectures, raw: f.raw };
  throw new Error(`nodegrad: loadHFConfig: model_type ${JSON.stringify(type)} in ${file} is not supported (supported: gpt2, bert)`);
}

function gpt2ConfigJSON(model: GPT, raw: Raw = {}): Raw {
  const c = model.config;
  const keepDrops = raw.resid_pdrop === c.dropout;
  const { torch_dtype: _t, dtype: _d, transformers_version: _v, ...base } = raw;
  return {
    ...base, architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', vocab_size: c.vocabSize, n_positions: c.blockSize,
    n_ctx: c.blockSize, n_embd: c.nEmbd, n_layer: c.nLayer, n_head: c.nHead, n_inner: null,
    activation_function: TANH_GELU.includes(raw.activation_function as string) ? raw.activation_function : 'gelu_new',
    resid_pdrop: c.dropout, embd_pdrop: keepDrops ? raw.embd_pdrop ?? c.dropout : c.dropout,
    attn_pdrop: keepDrops ? raw.attn_pdrop ?? c.dropout : c.dropout, layer_norm_epsilon: model.lnF.eps,
    initializer_range: raw.initializer_range ?? 0.02, scale_attn_weights: true, scale_attn_by_inverse_layer_idx: false,
    reorder_and_upcast_attn: raw.reorder_and_upcast_attn ?? false, tie_word_embeddings: true, use_cache: raw.use_cache ?? true,
  };
}

function bertConfigJSON(model: BertModel | BertForSequenceClassification | BertForMaskedLM, arch: BertArchitecture, raw: Raw = {}): Raw {
  const c = model.config;
  const { torch_dtype: _t, dtype: _d, transformers_version: _v, problem_type: _p, num_labels: _n, ...base } = raw;
  return {
    ...base, architectures: [arch], model_type: 'bert', vocab_size: c.vocabSize, hidden_size: c.hiddenSize,
    num_hidden_layers: c.numHiddenLayers, num_attention_heads: c.numAttentionHeads, intermediate_size: c.intermediateSize,
    hidden_act: c.hiddenAct, hidden_dropout_prob: c.hiddenDropoutProb, attention_probs_dropout_prob: c.attentionProbsDropoutProb,
    max_position_embeddings: c.maxPositionEmbeddings, type_vocab_size: c.typeVocabSize, initializer_range: c.initializerRange,
    layer_norm_eps: c.layerNormEps, pad_token_id: c.padTokenId, position_embedding_type: 'absolute',
    classifier_dropout: c.classifierDropout, tie_word_embeddings: c.tieWordEmbeddings,
    id2label: Object.fromEntries(Object.entries(c.id2label).map(([k, v]) => [String(k), v])), label2id: { ...c.label2id },
    ...(c.problemType ? { problem_type: c.problemType } : {}),
  };
}

// ---- weight-name rules ------------------------------------------------------------------

interface Rule {
  ours: string;
  hf: string[];
  kind: 'copy' | 'transpose' | 'cat';
  /** HF name carries the base-model prefix ('transformer.' / 'bert.') in the exported model. */
  base: boolean;
  /** A head: when absent from a checkpoint it keeps its fresh initialisation (with a warning). */
  optional?: boolean;
  /** Older name accepted on import when hf[0] is absent. */
  alt?: string;
}
interface Plan { what: string; basePrefix: string; exportPrefix: string; rules: Rule[]; ignore: RegExp[] }

const rule = (ours: string, hf: string | string[], kind: Rule['kind'] = 'copy', extra: Partial<Rule> = {}): Rule =>
  ({ ours, hf: Array.isArray(hf) ? hf : [hf], kind, base: true, ...extra });
const wb = (ours: string, hf: string, kind: 'copy' | 'transpose' = 'copy', extra: Partial<Rule> = {}): Rule[] =>
  [rule(`${ours}.weight`, `${hf}.weight`, kind, extra), rule(`${ours}.bias`, `${hf}.bias`, 'copy', extra)];

function gptPlan(nLayer: number): Plan {
  const rules = [rule('wte.weight', 'wte.weight'), rule('wpe.weight', 'wpe.weight')];
  for (let i = 0; i < nLayer; i++) {
    const o = `h.${i}`;
    rules.push(...wb(`${o}.ln1`, `${o}.ln_1`), ...wb(`${o}.attn.cAttn`, `${o}.attn.c_attn`, 'transpose'),
      ...wb(`${o}.attn.cProj`, `${o}.attn.c_proj`, 'transpose'), ...wb(`${o}.ln2`, `${o}.ln_2`),
      ...wb(`${o}.mlp.cFc`, `${o}.mlp.c_fc`, 'transpose'), ...wb(`${o}.mlp.cProj`, `${o}.mlp.c_proj`, 'transpose'));
  }
  rules.push(...wb('lnF', 'ln_f'));
  return {
    what: 'GPT', basePrefix: 'transformer.', exportPrefix: 'transformer.', rules,
    ignore: [/^h\.\d+\.attn\.(bias|masked_bias)$/, /^lm_head\.weight$/],
  };
}

function bertBaseRules(p: string, nLayer: number, pooler: boolean): Rule[] {
  const rules = [
    rule(`${p}embeddings.wordEmbeddings.weight`, 'embeddings.word_embeddings.weight'),
    rule(`${p}embeddings.positionEmbeddings.weight`, 'embeddings.position_embeddings.weight'),
    rule(`${p}embeddings.tokenTypeEmbeddings.weight`, 'embeddings.token_type_embeddings.weight'),
    ...wb(`${p}embeddings.layerNorm`, 'embeddings.LayerNorm'),
  ];
  for (let i = 0; i < nLayer; i++) {
    const o = `${p}encoder.layer.${i}`, h = `encoder.layer.${i}`, qkv = ['query', 'key', 'value'];
    rules.push(
      rule(`${o}.attention.cAttn.weight`, qkv.map((n) => `${h}.attention.self.${n}.weight`), 'cat'),
      rule(`${o}.attention.cAttn.bias`, qkv.map((n) => `${h}.attention.self.${n}.bias`), 'cat'),
      ...wb(`${o}.attention.cProj`, `${h}.attention.output.dense`), ...wb(`${o}.attentionNorm`, `${h}.attention.output.LayerNorm`),
      ...wb(`${o}.intermediate`, `${h}.intermediate.dense`), ...wb(`${o}.output`, `${h}.output.dense`),
      ...wb(`${o}.outputNorm`, `${h}.output.LayerNorm`));
  }
  if (pooler) rules.push(...wb(`${p}pooler.dense`, 'pooler.dense', 'copy', { optional: true }));
  return rules;
}

/** The model a BERT plan is for: its class, layers, whether it has a pooler (BertModel) and an untied decoder (BertForMaskedLM). */
interface BertLayout { arch: BertArchitecture; layers: number; pooler: boolean; untiedDecoder: boolean }

function bertLayout(model: BertModel | BertForSequenceClassification | BertForMaskedLM): BertLayout {
  const arch = model instanceof BertModel ? 'BertModel' : model instanceof BertForSequenceClassification ? 'BertForSequenceClassification' : 'BertForMaskedLM';
  return {
    arch, layers: model.config.numHiddenLayers, pooler: model instanceof BertModel ? model.pooler !== null : true,
    untiedDecoder: model instanceof BertForMaskedLM && model.decoderWeight !== null,
  };
}

function bertPlan(m: BertLayout): Plan {
  const L = m.layers;
  const buffers = [/^embeddings\.(position_ids|token_type_ids)$/];
  if (m.arch === 'BertModel') {
    return { what: 'BertModel', basePrefix: 'bert.', exportPrefix: '', rules: bertBaseRules('', L, m.pooler), ignore: [...buffers, /^cls\./] };
  }
  if (m.arch === 'BertForSequenceClassification') {
    return {
      what: 'BertForSequenceClassification', basePrefix: 'bert.', exportPrefix: 'bert.', ignore: [...buffers, /^cls\./],
      rules: [...bertBaseRules('bert.', L, true), ...wb('classifier', 'classifier', 'copy', { base: false, optional: true })],
    };
  }
  const head = { base: false, optional: true };
  const rules = [
    ...bertBaseRules('bert.', L, false),
    ...wb('transformDense', 'cls.predictions.transform.dense', 'copy', head),
    ...wb('transformNorm', 'cls.predictions.transform.LayerNorm', 'copy', head),
    rule('decoderBias', 'cls.predictions.bias', 'copy', { ...head, alt: 'cls.predictions.decoder.bias' }),
  ];
  if (m.untiedDecoder) rules.push(rule('decoderWeight', 'cls.predictions.decoder.weight', 'copy', head));
  const ignore = [...buffers, /^pooler\./, /^cls\.seq_relationship\./, /^cls\.predictions\.decoder\.bias$/];
  if (!m.untiedDecoder) ignore.push(/^cls\.predictions\.decoder\.weight$/);
  return { what: 'BertForMaskedLM', basePrefix: 'bert.', exportPrefix: 'bert.', rules, ignore };
}

/** HF shape of each tensor a rule reads, from our parameter's shape. */
function hfShapes(r: Rule, shape: readonly number[]): number[][] {
  if (r.kind === 'transpose') return [[...shape].reverse()];
  if (r.kind === 'copy') return [[...shape]];
  const n = r.hf.length;
  return r.hf.map(() => [shape[0] / n, ...shape.slice(1)]);
}

// ---- import -----------------------------------------------------------------------------

interface Source { key: string; file: string; reader: SafetensorsReader }

/** Every tensor of model.safetensors or of the shards listed in model.safetensors.index.json. */
async function openWeights(dir: string, what: string): Promise<{ sources: Source[]; close: () => Promise<void> }> {
  const exists = (f: string) => access(path.join(dir, f)).then(() => true, () => false);
  const readers = new Map<string, SafetensorsReader>();
  const close = async () => { for (const r of readers.values()) await r.close(); };
  const open = async (f: string) => {
    let r = readers.get(f);
    if (!r) readers.set(f, r = await openSafetensors(path.join(dir, f)));
    return r;
  };
  try {
    if (await exists('model.safetensors')) {
      const r = await open('model.safetensors');
      return { sources: r.keys().map((key) => ({ key, file: 'model.safetensors', reader: r })), close };
    }
    const indexFile = path.join(dir, 'model.safetensors.index.json');
    if (await exists('model.safetensors.index.json')) {
      let map: unknown;
      try {
        map = (JSON.parse(await readFile(indexFile, 'utf8')) as { weight_map?: unknown }).weight_map;
      } catch (e) {
        throw new Error(`nodegrad: ${what}: cannot read ${indexFile}: ${(e as Error).message}`);
      }
      if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new Error(`nodegrad: ${what}: ${indexFile} has no "weight_map" object`);
      const sources: Source[] = [];
      for (const [key, file] of Object.entries(map as Record<string, unknown>)) {
        if (typeof file !== 'string' || file !== path.basename(file) || file === '..' || file === '.') {
          throw new Error(`nodegrad: ${what}: ${indexFile} maps "${key}" to ${JSON.stringify(file)}, not a file name in the same directory`);
        }
        const reader = await open(file);
        if (!reader.has(key)) throw new Error(`nodegrad: ${what}: ${indexFile} says "${key}" is in ${file}, but that shard has no such tensor`);
        sources.push({ key, file, reader });
      }
      return { sources, close };
    }
    const pt = (await exists('pytorch_model.bin')) ? ' (pytorch_model.bin is not read: save the model with safe_serialization=True)' : '';
    throw new Error(`nodegrad: ${what}: ${dir} has neither model.safetensors nor model.safetensors.index.json${pt}`);
  } catch (e) {
    await close();
    throw e;
  }
}

/** The checkpoint's tensors matched to the rules of a plan; the readers stay open until close(). */
interface Matched {
  jobs: { r: Rule; srcs: Source[] }[];
  missingHeads: string[];
  unexpected: string[];
  close: () => Promise<void>;
}

/**
 * Matches a Hugging Face checkpoint's tensors to plan's rules, checking names and shapes
 * (from the safetensors headers) against the shapes the config implies, before any model
 * exists: a config that disagrees with the weights fails without allocating.
 */
async function matchWeights(dir: string, plan: Plan, shapesOf: Map<string, number[]>): Promise<Matched> {
  const what = `${plan.what}.fromPretrained`;
  const { sources, close } = await openWeights(dir, what);
  const missingHeads: string[] = [];
  try {
    const byName = new Map<string, Source>();
    const prefixed = sources.some((s) => s.key.startsWith(plan.basePrefix));
    for (const s of sources) {
      const n = (s.key.startsWith(plan.basePrefix) ? s.key.slice(plan.basePrefix.length) : s.key)
        .replace(/LayerNorm\.gamma$/, 'LayerNorm.weight').replace(/LayerNorm\.beta$/, 'LayerNorm.bias');
      const dup = byName.get(n);
      if (dup) throw new Error(`nodegrad: ${what}: tensors "${dup.key}" and "${s.key}" in ${dir} both name "${n}"`);
      byName.set(n, s);
    }
    const shown = (r: Rule, n: string) => (r.base && prefixed ? plan.basePrefix + n : n);
    const jobs: Matched['jobs'] = [];
    const used = new Set<string>();
    for (const r of plan.rules) {
      const shape = shapesOf.get(r.ours);
      if (!shape) throw new Error(`nodegrad: ${what}: internal: no parameter ${r.ours} for the config`);
      const shapes = hfShapes(r, shape);
      const names = !r.hf.every((n) => byName.has(n)) && r.alt && byName.has(r.alt) ? [r.alt] : r.hf;
      const absent = names.findIndex((n) => !byName.has(n));
      if (absent >= 0) {
        if (r.optional) {
          missingHeads.push(...names.map((n) => (r.base ? plan.exportPrefix : '') + n));
          continue;
        }
        throw new Error(`nodegrad: ${what}: the checkpoint in ${dir} has no tensor "${shown(r, names[absent])}" (expected shape ${fmt(shapes[absent])})`);
      }
      const srcs = names.map((n, i) => {
        const s = byName.get(n)!;
        const got = s.reader.info(s.key).shape;
        if (fmt(got) !== fmt(shapes[i])) {
          throw new Error(`nodegrad: ${what}: tensor "${s.key}" in ${path.join(dir, s.file)} has shape ${fmt(got)} but the config needs ${fmt(shapes[i])}`);
        }
        used.add(n);
        return s;
      });
      jobs.push({ r, srcs });
    }
    const unexpected = [...byName.entries()].filter(([n]) => !used.has(n) && !plan.ignore.some((re) => re.test(n))).map(([, s]) => s.key);
    return { jobs, missingHeads, unexpected, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Copies matched tensors into model's parameters one at a time, then closes the readers. */
async function copyWeights(model: Module, m: Matched, plan: Plan, dir: string): Promise<void> {
  const what = `${plan.what}.fromPretrained`;
  try {
    const sd = model.stateDict();
    for (const { r, srcs } of m.jobs) {
      const param = sd[r.ours];
      const ts: Tensor[] = [];
      try {
        for (const s of srcs) ts.push(await s.reader.get(s.key));
        noGrad(() => {
          if (r.kind === 'copy') param.copy_(ts[0]);
          else if (r.kind === 'transpose') param.copy_(ts[0].transpose(0, 1));
          else ts.forEach((t, i) => param.narrow(0, i * t.shape[0], t.shape[0]).copy_(t));
        });
      } finally {
        for (const t of ts) t.dispose();
      }
    }
  } finally {
    await m.close();
  }
  if (m.missingHeads.length) {
    console.warn(`nodegrad: ${what}: newly initialised (not in the checkpoint at ${dir}): ${m.missingHeads.join(', ')}; train the model before relying on its outputs`);
  }
  if (m.unexpected.length) console.warn(`nodegrad: ${what}: tensors of the checkpoint at ${dir} that were not used: ${m.unexpected.join(', ')}`);
}

/** Builds a model once its checkpoint matched, copying the weights in; the readers are closed either way. */
async function buildAndCopy<M extends Module>(build: () => M, m: Matched, plan: Plan, dir: string): Promise<M> {
  let model: M;
  try {
    model = build();
  } catch (e) {
    await m.close();
    throw e;
  }
  await copyWeights(model, m, plan, dir);
  return model;
}

/** How our GPT config fields are called in a GPT-2 config.json. */
const GPT2_NAMES: Record<string, string> = {
  vocabSize: 'vocab_size', blockSize: 'n_positions', nLayer: 'n_layer', nHead: 'n_head', nEmbd: 'n_embd',
  dropout: 'resid_pdrop', layerNormEps: 'layer_norm_epsilon',
};
const snake = (k: string): string => k.replace(/[A-Z]/g, (ch) => `_${ch.toLowerCase()}`);

/** What a size check of a checkpoint may add: the operation named in errors, copies held at once (server workers). */
export interface PretrainedCheckOptions { op?: string; copies?: number }

/** config.json, the model's size and the weights' headers checked against each other; no model is allocated yet. */
async function prepareGPT2(dir: string, check: PretrainedCheckOptions = {}) {
  const op = check.op ?? 'GPT.fromPretrained';
  const hf = await loadHFConfig(dir);
  if (hf.modelType !== 'gpt2') throw new Error(`nodegrad: ${op}: ${dir} holds a ${hf.modelType} model, not gpt2`);
  const config = checkGPTSize(hf.config, { op, file: path.join(dir, 'config.json'), names: GPT2_NAMES, copies: check.copies });
  const plan = gptPlan(config.nLayer);
  const matched = await matchWeights(dir, plan, new Map(gptParameterShapes(config)));
  return { hf, config, plan, matched };
}

async function prepareBert(dir: string, arch: BertArchitecture, opts: BertPretrainedOptions, check: PretrainedCheckOptions = {}) {
  const op = check.op ?? `${arch}.fromPretrained`;
  const hf = await loadHFConfig(dir);
  if (hf.modelType !== 'bert') throw new Error(`nodegrad: ${op}: ${dir} holds a ${hf.modelType} model, not bert`);
  const config: BertConfig = { ...hf.config };
  if (opts.numLabels !== undefined && opts.numLabels !== config.numLabels && opts.id2label === undefined) {
    config.id2label = config.label2id = undefined;
  }
  const names: Record<string, string> = {}, labels: Record<string, string> = {};
  for (const k of Object.keys(config)) names[k] = snake(k);
  for (const [k, v] of Object.entries(opts)) {
    if (v === undefined) continue;
    (config as Record<string, unknown>)[k] = v;
    names[k] = k;
    labels[k] = `option ${k}`;
  }
  const resolved = checkBertSize(config, { arch, op, file: path.join(dir, 'config.json'), names, labels, copies: check.copies });
  const plan = bertPlan({ arch, layers: resolved.numHiddenLayers, pooler: true, untiedDecoder: !resolved.tieWordEmbeddings });
  const matched = await matchWeights(dir, plan, new Map(bertParameterShapes(resolved, { arch })));
  return { hf, config, plan, matched };
}

/**
 * Checks a Hugging Face directory as fromPretrained would before it allocates: config.json
 * (types, ranges), the model's size against the memory available (times `copies`) and the
 * weights' headers against the config. Reads no weights.
 */
export async function inspectPretrained(dir: string, arch: 'GPT' | BertArchitecture, check: PretrainedCheckOptions = {}): Promise<void> {
  const p = arch === 'GPT' ? await prepareGPT2(dir, check) : await prepareBert(dir, arch, {}, check);
  await p.matched.close();
}

/** A Hugging Face GPT-2 directory (GPT2LMHeadModel or GPT2Model weights) as a GPT, in eval mode. */
export async function loadGPT2Pretrained(dir: string): Promise<GPT> {
  dir = await resolveCheckpointDir(dir, { missingOk: true }); // finishes a save that was interrupted
  // config, size and weights header are checked before the model is allocated
  const { hf, config, plan, matched } = await prepareGPT2(dir);
  const model = await buildAndCopy(() => new GPT(config), matched, plan, dir);
  RAW.set(model, hf.raw);
  return model.eval();
}

/** A Hugging Face BERT directory as one of our BERT classes, in eval mode. */
export async function loadBertPretrained(dir: string, arch: BertArchitecture, opts: BertPretrainedOptions = {}):
  Promise<BertModel | BertForSequenceClassification | BertForMaskedLM> {
  dir = await resolveCheckpointDir(dir, { missingOk: true });
  // config, size and weights header are checked before the model is allocated
  const { hf, config, plan, matched } = await prepareBert(dir, arch, opts);
  const model = await buildAndCopy(() => (arch === 'BertModel' ? new BertModel(config)
    : arch === 'BertForSequenceClassification' ? new BertForSequenceClassification(config) : new BertForMaskedLM(config)), matched, plan, dir);
  RAW.set(model, hf.raw);
  return model.eval();
}

// ---- export -----------------------------------------------------------------------------

/** Weight files of an earlier save, which a new save replaces rather than keeps. */
const WEIGHT_FILE = /^(model.*\.safetensors|model\.safetensors\.index\.json|pytorch_model.*\.bin|pytorch_model\.bin\.index\.json)$/;

async function saveWeights(model: Module, dir: string, plan: Plan, config: Raw, opts: SavePretrainedOptions): Promise<void> {
  const dtype = opts.dtype ?? 'float32';
  if (!['float32', 'float16', 'bfloat16'].includes(dtype)) {
    throw new Error(`nodegrad: ${plan.what}.savePretrained: dtype must be float32, float16 or bfloat16 (got ${JSON.stringify(dtype)})`);
  }
  const sd = model.stateDict();
  const out = new Map<string, Tensor>();
  const temps: Tensor[] = [];
  const own = (t: Tensor): Tensor => {
    const c = contiguous(t);
    if (c !== t) temps.push(c);
    const d = cast(c, dtype);
    if (d !== c) temps.push(d);
    return d;
  };
  try {
    noGrad(() => {
      for (const r of plan.rules) {
        const names = r.hf.map((n) => (r.base ? plan.exportPrefix : '') + n);
        let p = sd[r.ours];
        if (!p) {
          // a bias-free model exports zero biases, which compute the same
          p = zeros([sd[r.ours.replace(/bias$/, 'weight')].shape[0]]);
          temps.push(p);
        }
        if (r.kind === 'copy') out.set(names[0], own(p));
        else if (r.kind === 'transpose') out.set(names[0], own(p.transpose(0, 1)));
        else {
          const k = p.shape[0] / names.length;
          names.forEach((n, i) => out.set(n, own(p.narrow(0, i * k, k))));
        }
      }
    });
    // float32 is transformers' default; a half-precision export says what it holds
    if (dtype !== 'float32') config = { ...config, torch_dtype: dtype };
    // Only the files of this save change; the directory's other files (tokenizer files and
    // the like) stay, and weight files of an earlier save go in the same commit.
    await writeDirAtomic(dir, {
      ...opts.extraFiles,
      'config.json': `${JSON.stringify(config, null, 2)}\n`,
      'model.safetensors': safetensorsWriter(out, { format: 'pt' }),
    }, { remove: (n) => WEIGHT_FILE.test(n) });
  } finally {
    for (const t of temps) t.dispose();
  }
}

/** Writes model as a Hugging Face GPT2LMHeadModel directory (lm_head tied, so not written). */
export async function saveGPT2Pretrained(model: GPT, dir: string, opts: SavePretrainedOptions = {}): Promise<void> {
  await saveWeights(model, dir, gptPlan(model.config.nLayer), gpt2ConfigJSON(model, RAW.get(model)), opts);
}

/** Writes a BERT model as the matching Hugging Face class's directory. */
export async function saveBertPretrained(model: BertModel | BertForSequenceClassification | BertForMaskedLM, dir: string,
  opts: SavePretrainedOptions = {}): Promise<void> {
  const plan = bertPlan(bertLayout(model));
  await saveWeights(model, dir, plan, bertConfigJSON(model, plan.what as BertArchitecture, RAW.get(model)), opts);
}
