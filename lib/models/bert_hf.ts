// BERT's part of the Hugging Face machinery (hf.ts): config.json <-> BertConfig and the
// weight-name rules of BertModel, BertForSequenceClassification and BertForMaskedLM
// (separate query/key/value stacked into our fused QKV, hence 'cat'; old
// LayerNorm.gamma/beta names accepted).
import path from 'node:path';
import { resolveCheckpointDir } from '../io/atomic.js';
import type { Module } from '../nn/module.js';
import {
  BertForMaskedLM, BertForSequenceClassification, BertModel, bertParameterShapes, checkBertSize,
  type BertActivation, type BertConfig, type ProblemType,
} from './bert.js';
import {
  Fields, buildAndCopy, loadHFConfig, matchWeights, registerHFFamily, rule, saveWeights, wb,
  type Plan, type PretrainedCheckOptions, type Raw, type Rule, type SavePretrainedOptions,
} from './hf.js';

export type BertArchitecture = 'BertModel' | 'BertForSequenceClassification' | 'BertForMaskedLM';
/** Overrides of config.json's fields (e.g. { numLabels: 3 } for a fresh classifier). */
export type BertPretrainedOptions = BertConfig;

declare module './hf.js' {
  interface HFConfigTypes { bert: BertConfig }
}

/** The config.json each loaded model came with, so an export keeps fields we do not model. */
const RAW = new WeakMap<Module, Raw>();
const snake = (k: string): string => k.replace(/[A-Z]/g, (ch) => `_${ch.toLowerCase()}`);

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

/** Writes a BERT model as the matching Hugging Face class's directory. */
export async function saveBertPretrained(model: BertModel | BertForSequenceClassification | BertForMaskedLM, dir: string,
  opts: SavePretrainedOptions = {}): Promise<void> {
  const plan = bertPlan(bertLayout(model));
  await saveWeights(model, dir, plan, bertConfigJSON(model, plan.what as BertArchitecture, RAW.get(model)), opts);
}

const BERT_CLASSES: readonly BertArchitecture[] = ['BertModel', 'BertForSequenceClassification', 'BertForMaskedLM'];

registerHFFamily({
  modelTypes: ['bert'], architectures: { Bert: 'bert' }, classes: BERT_CLASSES,
  readConfig: (f) => bertConfig(f),
  inspect: async (dir, cls, check) => { await (await prepareBert(dir, cls as BertArchitecture, {}, check)).matched.close(); },
});
