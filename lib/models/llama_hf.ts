// The Llama family's part of the Hugging Face machinery (hf.ts): config.json of llama,
// mistral, qwen2 and qwen3 <-> LlamaConfig, generation_config.json <-> the generation
// defaults, and the weight names, which are ours one for one (LlamaForCausalLM's modules
// carry HF's names): 'model.' is the base-model prefix, lm_head is left out when tied, and
// old checkpoints' rotary_emb.inv_freq buffers are skipped.
//
// dtype: on the CPU a bf16/f16 checkpoint becomes float32 parameters by default (the CPU
// kernels compute in float32, so half weights would be widened in every matmul); on CUDA
// the parameters keep the checkpoint's dtype. opts.dtype overrides either.
import { access } from 'node:fs/promises';
import path from 'node:path';
import type { DType } from '../dtype.js';
import { resolveCheckpointDir } from '../io/atomic.js';
import type { Device } from '../storage.js';
import { ConfigErrors, show } from './sizes.js';
import {
  Fields, buildAndCopy, readConfigJSON, readJSONObject, matchWeights, registerHFFamily, rule, saveWeights,
  type Plan, type PretrainedCheckOptions, type Raw, type SaveDType, type SavePretrainedOptions,
} from './hf.js';
import {
  LLAMA_MODEL_TYPES, checkLlamaConfig, checkLlamaSize, eosTokenIds, llamaParameterShapes,
  type LlamaConfig, type LlamaModelType, type ResolvedLlamaConfig, type RopeScaling,
} from './llama_config.js';
import { LlamaForCausalLM, type LlamaGenerationConfig } from './llama.js';

declare module './hf.js' {
  interface HFConfigTypes { llama: ResolvedLlamaConfig; mistral: ResolvedLlamaConfig; qwen2: ResolvedLlamaConfig; qwen3: ResolvedLlamaConfig }
}

export interface LlamaPretrainedOptions {
  /** dtype of the parameters (default: float32 on the CPU, the checkpoint's dtype on CUDA). */
  dtype?: 'float32' | 'bfloat16' | 'float16';
  /** Where the model goes once loaded (default: the CPU). */
  device?: Device;
}
export type LlamaSaveOptions = SavePretrainedOptions;

const ARCHITECTURES: Record<LlamaModelType, string> = {
  llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM',
};

/** How LlamaConfig's fields are called in config.json (for errors). */
export const LLAMA_HF_NAMES: Record<string, string> = {
  modelType: 'model_type', vocabSize: 'vocab_size', hiddenSize: 'hidden_size', intermediateSize: 'intermediate_size',
  numHiddenLayers: 'num_hidden_layers', numAttentionHeads: 'num_attention_heads', numKeyValueHeads: 'num_key_value_heads',
  headDim: 'head_dim', maxPositionEmbeddings: 'max_position_embeddings', rmsNormEps: 'rms_norm_eps', ropeTheta: 'rope_theta',
  ropeScaling: 'rope_scaling', 'ropeScaling.factor': 'rope_scaling.factor', 'ropeScaling.lowFreqFactor': 'rope_scaling.low_freq_factor',
  'ropeScaling.highFreqFactor': 'rope_scaling.high_freq_factor',
  'ropeScaling.originalMaxPositionEmbeddings': 'rope_scaling.original_max_position_embeddings',
  attentionBias: 'attention_bias', attentionOutputBias: 'attention_bias', mlpBias: 'mlp_bias', slidingWindow: 'sliding_window',
  layerTypes: 'layer_types', attentionDropout: 'attention_dropout', tieWordEmbeddings: 'tie_word_embeddings',
  initializerRange: 'initializer_range', bosTokenId: 'bos_token_id', eosTokenId: 'eos_token_id', padTokenId: 'pad_token_id',
  torchDtype: 'torch_dtype',
};

/** The config.json / generation_config.json each loaded model came with, so an export keeps fields we do not model. */
const RAW = new WeakMap<LlamaForCausalLM, { config: Raw; generation: Raw | null }>();

// ---- config.json ------------------------------------------------------------------------

function ropeFromHF(f: Fields): { theta: unknown; scaling: RopeScaling | null | undefined; key: string } {
  // transformers 5 moves rope_theta and the scaling into rope_parameters
  const params = f.raw.rope_parameters;
  const key = params !== undefined && params !== null && f.raw.rope_scaling === undefined ? 'rope_parameters' : 'rope_scaling';
  const rs = f.raw[key];
  const theta = key === 'rope_parameters' ? (rs as Raw).rope_theta ?? f.raw.rope_theta : f.raw.rope_theta;
  if (rs === undefined || rs === null) return { theta, scaling: rs as null | undefined, key };
  if (typeof rs !== 'object' || Array.isArray(rs)) throw f.err(key, 'must be an object or null');
  const r = rs as Raw;
  return {
    theta, key,
    scaling: {
      ropeType: (r.rope_type ?? r.type ?? 'default') as RopeScaling['ropeType'], factor: r.factor as number | undefined,
      lowFreqFactor: r.low_freq_factor as number | undefined, highFreqFactor: r.high_freq_factor as number | undefined,
      originalMaxPositionEmbeddings: r.original_max_position_embeddings as number | undefined,
    },
  };
}

/** LlamaConfig from config.json's fields (not yet checked). */
function llamaConfigFromHF(f: Fields, modelType: LlamaModelType): LlamaConfig {
  const r = f.raw;
  f.unsupported('hidden_act', (v) => v === 'silu', 'the MLP is SwiGLU (silu)');
  f.unsupported('partial_rotary_factor', (v) => v === 1 || v === 1.0, 'the rotary embedding covers the whole head dim');
  const rope = ropeFromHF(f);
  let slidingWindow: unknown = null;
  let layerTypes: unknown = r.layer_types ?? undefined;
  if (modelType === 'mistral') slidingWindow = r.sliding_window === undefined ? 4096 : r.sliding_window;
  else if (modelType === 'qwen2' || modelType === 'qwen3') {
    // HF: the window applies only with use_sliding_window, from layer max_window_layers on
    slidingWindow = r.use_sliding_window === true ? r.sliding_window ?? 4096 : null;
    const L = r.num_hidden_layers, first = r.max_window_layers ?? 28;
    if (layerTypes === undefined && slidingWindow !== null && typeof L === 'number' && Number.isSafeInteger(L) && L > 0 && typeof first === 'number') {
      layerTypes = Array.from({ length: L }, (_, i) => (i >= first ? 'sliding_attention' : 'full_attention'));
    }
    if (slidingWindow === null && Array.isArray(layerTypes)) layerTypes = layerTypes.map(() => 'full_attention');
  } else layerTypes = undefined;
  const bias = r.attention_bias;
  const c: Record<string, unknown> = {
    modelType, vocabSize: r.vocab_size, hiddenSize: r.hidden_size, intermediateSize: r.intermediate_size,
    numHiddenLayers: r.num_hidden_layers, numAttentionHeads: r.num_attention_heads, numKeyValueHeads: r.num_key_value_heads ?? undefined,
    headDim: r.head_dim ?? undefined, maxPositionEmbeddings: r.max_position_embeddings, rmsNormEps: r.rms_norm_eps,
    ropeTheta: rope.theta, ropeScaling: rope.scaling,
    attentionBias: modelType === 'qwen2' ? true : modelType === 'mistral' ? false : bias ?? false,
    attentionOutputBias: modelType === 'llama' || modelType === 'qwen3' ? bias ?? false : false,
    mlpBias: modelType === 'llama' ? r.mlp_bias ?? false : false,
    qkNorm: modelType === 'qwen3', slidingWindow, layerTypes, attentionDropout: r.attention_dropout,
    tieWordEmbeddings: r.tie_word_embeddings ?? false, initializerRange: r.initializer_range,
    bosTokenId: r.bos_token_id, eosTokenId: r.eos_token_id, padTokenId: r.pad_token_id,
    torchDtype: r.torch_dtype ?? r.dtype ?? undefined,
  };
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  return c as unknown as LlamaConfig;
}

function hfNames(f: Fields): Record<string, string> {
  if (f.raw.rope_parameters === undefined || f.raw.rope_scaling !== undefined) return LLAMA_HF_NAMES;
  const names = { ...LLAMA_HF_NAMES };
  for (const k of Object.keys(names)) names[k] = names[k].replace(/^rope_scaling/, 'rope_parameters');
  return names;
}

function readLlamaConfig(f: Fields, modelType: string, op = 'loadHFConfig'): ResolvedLlamaConfig {
  return checkLlamaConfig(llamaConfigFromHF(f, modelType as LlamaModelType), { op, file: f.file, names: hfNames(f) });
}

function ropeToHF(c: ResolvedLlamaConfig, raw: Raw): unknown {
  const r = c.ropeScaling;
  if (!r) return raw.rope_scaling ?? null;
  const out: Raw = { rope_type: r.ropeType };
  if (r.ropeType !== 'default') out.factor = r.factor;
  if (r.ropeType === 'llama3') {
    Object.assign(out, { low_freq_factor: r.lowFreqFactor, high_freq_factor: r.highFreqFactor, original_max_position_embeddings: r.originalMaxPositionEmbeddings });
  }
  return out;
}

/** Throws when the model's layout has no config.json spelling for its model type. */
function checkExportable(c: ResolvedLlamaConfig): void {
  const t = c.modelType;
  const why: string[] = [];
  if (t === 'qwen2' && (!c.attentionBias || c.attentionOutputBias)) why.push('qwen2 has q/k/v biases and no o_proj bias');
  if (t === 'mistral' && (c.attentionBias || c.attentionOutputBias)) why.push('mistral has no attention biases');
  if ((t === 'llama' || t === 'qwen3') && c.attentionBias !== c.attentionOutputBias) why.push(`${t} has biases on all of q/k/v/o_proj or none`);
  if (t !== 'llama' && c.mlpBias) why.push(`${t} has no MLP biases`);
  if (c.qkNorm !== (t === 'qwen3')) why.push(t === 'qwen3' ? 'qwen3 always norms q and k' : `${t} has no q/k norm (qwen3 has)`);
  if (t === 'llama' && c.slidingWindow !== null) why.push('llama has no sliding window (mistral, qwen2 and qwen3 have)');
  if (t === 'mistral' && new Set(c.layerTypes).size > 1) why.push('mistral slides the window in every layer or none');
  if (why.length) throw new Error(`nodegrad: LlamaForCausalLM.savePretrained: this model cannot be written as a ${t} checkpoint: ${why.join('; ')}`);
}

function llamaConfigJSON(model: LlamaForCausalLM, dtype: SaveDType, raw: Raw = {}): Raw {
  const c = model.config, t = c.modelType;
  checkExportable(c);
  const { torch_dtype: _t, dtype: _d, transformers_version: _v, rope_parameters: _rp, ...base } = raw;
  const out: Raw = {
    ...base, architectures: [ARCHITECTURES[t]], model_type: t, vocab_size: c.vocabSize, hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize, num_hidden_layers: c.numHiddenLayers, num_attention_heads: c.numAttentionHeads,
    num_key_value_heads: c.numKeyValueHeads, head_dim: c.headDim, hidden_act: 'silu', max_position_embeddings: c.maxPositionEmbeddings,
    initializer_range: c.initializerRange, rms_norm_eps: c.rmsNormEps, use_cache: raw.use_cache ?? true,
    tie_word_embeddings: c.tieWordEmbeddings, rope_theta: c.ropeTheta, rope_scaling: ropeToHF(c, raw),
    attention_dropout: c.attentionDropout, bos_token_id: c.bosTokenId, eos_token_id: c.eosTokenId,
  };
  if (c.padTokenId !== null || 'pad_token_id' in raw) out.pad_token_id = c.padTokenId;
  if (t === 'llama') Object.assign(out, { attention_bias: c.attentionBias, mlp_bias: c.mlpBias });
  if (t === 'qwen3') out.attention_bias = c.attentionBias;
  if (t === 'mistral') out.sliding_window = c.layerTypes.includes('sliding_attention') ? c.slidingWindow : null;
  if (t === 'qwen2' || t === 'qwen3') {
    const first = c.layerTypes.indexOf('sliding_attention');
    Object.assign(out, {
      use_sliding_window: first >= 0, sliding_window: first >= 0 ? c.slidingWindow : raw.sliding_window ?? null,
      max_window_layers: first >= 0 ? first : raw.max_window_layers ?? c.numHiddenLayers, layer_types: [...c.layerTypes],
    });
  }
  out.torch_dtype = dtype;
  return out;
}

// ---- generation_config.json ---------------------------------------------------------------

/** Generation defaults from generation_config.json, or from config.json's token ids when the file is absent. */
async function readGenerationConfig(dir: string, c: ResolvedLlamaConfig, op: string): Promise<{ gen: LlamaGenerationConfig; raw: Raw | null }> {
  const file = path.join(dir, 'generation_config.json');
  const gen: LlamaGenerationConfig = { bosTokenId: c.bosTokenId, eosTokenId: eosTokenIds(c), padTokenId: c.padTokenId, doSample: false };
  if (!(await access(file).then(() => true, () => false))) return { gen, raw: null };
  const r = await readJSONObject(file, op);
  const e = new ConfigErrors({ op, file }, op);
  const id = (k: string): number | null | undefined => {
    const v = r[k];
    if (v === undefined || v === null) return v as null | undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw e.error(`${e.label(k)} must be a token id (got ${show(v)})`);
    return v;
  };
  const num = (k: string, ok: (x: number) => boolean, want: string): number | undefined => {
    const v = r[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !ok(v)) throw e.error(`${e.label(k)} must be ${want} (got ${show(v)})`);
    return v;
  };
  const bos = id('bos_token_id'), pad = id('pad_token_id');
  if (bos !== undefined) gen.bosTokenId = bos;
  if (pad !== undefined) gen.padTokenId = pad;
  if (r.eos_token_id !== undefined) {
    const v = r.eos_token_id;
    const list = v === null ? [] : Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
      throw e.error(`${e.label('eos_token_id')} must be a token id or a list of them (got ${show(v)})`);
    }
    gen.eosTokenId = list as number[];
  }
  if (r.do_sample !== undefined && typeof r.do_sample !== 'boolean') throw e.error(`${e.label('do_sample')} must be true or false (got ${show(r.do_sample)})`);
  gen.doSample = r.do_sample === true;
  const t = num('temperature', (x) => x >= 0 && Number.isFinite(x), 'a number >= 0');
  const k = num('top_k', (x) => Number.isSafeInteger(x) && x >= 0, 'a non-negative integer');
  const p = num('top_p', (x) => x > 0 && x <= 1, 'a number in (0, 1]');
  const rp = num('repetition_penalty', (x) => x > 0 && Number.isFinite(x), 'a positive number');
  const mn = num('max_new_tokens', (x) => Number.isSafeInteger(x) && x >= 0, 'a non-negative integer');
  if (t !== undefined) gen.temperature = t;
  if (k !== undefined) gen.topK = k;
  if (p !== undefined) gen.topP = p;
  if (rp !== undefined) gen.repetitionPenalty = rp;
  if (mn !== undefined) gen.maxNewTokens = mn;
  return { gen, raw: r };
}

function generationConfigJSON(g: LlamaGenerationConfig, raw: Raw | null): Raw {
  const { transformers_version: _v, ...base } = raw ?? {};
  const out: Raw = { ...base, bos_token_id: g.bosTokenId, eos_token_id: g.eosTokenId.length === 1 ? g.eosTokenId[0] : g.eosTokenId };
  if (g.padTokenId !== null) out.pad_token_id = g.padTokenId;
  if (g.doSample || raw?.do_sample !== undefined) out.do_sample = g.doSample;
  const opt: [string, number | undefined][] = [['temperature', g.temperature], ['top_k', g.topK], ['top_p', g.topP],
    ['repetition_penalty', g.repetitionPenalty], ['max_new_tokens', g.maxNewTokens]];
  for (const [k, v] of opt) if (v !== undefined) out[k] = v;
  return out;
}

// ---- weights ----------------------------------------------------------------------------

function llamaPlan(c: ResolvedLlamaConfig): Plan {
  const rules = llamaParameterShapes(c).map(([name]) => (name.startsWith('model.')
    ? rule(name, name.slice('model.'.length))
    // a base-model checkpoint (LlamaModel) has no head: it starts fresh, with a warning
    : rule(name, name, 'copy', { base: false, optional: true })));
  const ignore = [/(^|\.)rotary_emb\.inv_freq$/];
  if (c.tieWordEmbeddings) ignore.push(/^lm_head\.weight$/);
  return { what: 'LlamaForCausalLM', basePrefix: 'model.', exportPrefix: 'model.', rules, ignore };
}

const FROM_ST: Record<string, DType> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16', F64: 'float64' };

/** config.json, the model's size and the weights' headers checked against each other; no model is allocated yet. */
async function prepareLlama(dir: string, check: PretrainedCheckOptions & { dtype?: DType } = {}) {
  const op = check.op ?? 'LlamaForCausalLM.fromPretrained';
  const { file, raw } = await readConfigJSON(dir, op);
  const type = raw.model_type;
  if (!LLAMA_MODEL_TYPES.includes(type as LlamaModelType)) {
    throw new Error(`nodegrad: ${op}: ${dir} holds a ${JSON.stringify(type)} model, not one of ${LLAMA_MODEL_TYPES.join(', ')} (model_type in ${file})`);
  }
  const f = new Fields(raw, file);
  const config = readLlamaConfig(f, type as string, op);
  const dtype = check.dtype ?? 'float32';
  checkLlamaSize(config, { op, file, names: hfNames(f), copies: check.copies, bytesPerParameter: dtype === 'float32' ? 4 : 2 });
  const plan = llamaPlan(config);
  const matched = await matchWeights(dir, plan, new Map(llamaParameterShapes(config)));
  return { raw, config, plan, matched };
}

/** A Hugging Face Llama / Mistral / Qwen2 / Qwen3 directory as a LlamaForCausalLM, in eval mode. */
export async function loadLlamaPretrained(dir: string, opts: LlamaPretrainedOptions = {}): Promise<LlamaForCausalLM> {
  const op = 'LlamaForCausalLM.fromPretrained';
  if (opts.dtype !== undefined && !['float32', 'bfloat16', 'float16'].includes(opts.dtype)) {
    throw new Error(`nodegrad: ${op}: dtype must be float32, bfloat16 or float16 (got ${JSON.stringify(opts.dtype)})`);
  }
  dir = await resolveCheckpointDir(dir, { missingOk: true }); // finishes a save that was interrupted
  const device = opts.device ?? 'cpu';
  // on the CPU, float32 unless asked; elsewhere the checkpoint's dtype (checked for size below)
  const { raw, config, plan, matched } = await prepareLlama(dir, { op, dtype: opts.dtype ?? (device === 'cpu' ? 'float32' : 'bfloat16') });
  let dtype: DType = opts.dtype ?? 'float32';
  if (!opts.dtype && device !== 'cpu') {
    const first = matched.jobs[0]?.srcs[0];
    dtype = (first && FROM_ST[first.reader.info(first.key).dtype]) || 'float32';
  }
  const { gen, raw: genRaw } = await readGenerationConfig(dir, config, op).catch(async (e: unknown) => {
    await matched.close();
    throw e;
  });
  const model = await buildAndCopy(() => new LlamaForCausalLM(config, { dtype, init: matched.missingHeads.length > 0 }), matched, plan, dir);
  model.generationConfig = gen;
  RAW.set(model, { config: raw, generation: genRaw });
  if (device !== 'cpu') model.to(device);
  return model.eval();
}

/** Writes model as a Hugging Face directory (config.json, generation_config.json, weights in its dtype unless opts.dtype). */
export async function saveLlamaPretrained(model: LlamaForCausalLM, dir: string, opts: LlamaSaveOptions = {}): Promise<void> {
  const w = model.model.embed_tokens.weight.dtype;
  const dtype: SaveDType = opts.dtype ?? (w === 'bfloat16' || w === 'float16' ? w : 'float32');
  const raw = RAW.get(model);
  const config = llamaConfigJSON(model, dtype, raw?.config);
  const gen = `${JSON.stringify(generationConfigJSON(model.generationConfig, raw?.generation ?? null), null, 2)}\n`;
  await saveWeights(model, dir, llamaPlan(model.config), config, { ...opts, extraFiles: { ...opts.extraFiles, 'generation_config.json': gen } }, dtype);
}

registerHFFamily({
  modelTypes: LLAMA_MODEL_TYPES,
  architectures: { LlamaFor: 'llama', MistralFor: 'mistral', Qwen2For: 'qwen2', Qwen3For: 'qwen3' }, classes: ['LlamaForCausalLM'],
  readConfig: (f, modelType) => readLlamaConfig(f, modelType),
  inspect: async (dir, _cls, check) => { await (await prepareLlama(dir, check)).matched.close(); },
});
