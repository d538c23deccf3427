// The Llama family's configuration (Llama, Mistral, Qwen2, Qwen3 share one architecture:
// pre-norm RMSNorm blocks, rotary positions, grouped-query attention, a SwiGLU MLP) and
// what follows from it before anything is allocated: the checked and defaulted config,
// the rotary inverse frequencies of each rope_scaling kind (as transformers'
// modeling_rope_utils computes them), and every parameter's name and shape.
//
// What differs between the four model types is data, not code: Qwen2 has q/k/v biases,
// Qwen3 RMSNorms q and k per head (and often a head_dim other than hidden/heads), Mistral
// and Qwen2/3 may attend over a sliding window, some checkpoints tie the LM head.
import type { Device } from '../storage.js';
import {
  BYTES_PER_PARAMETER, ConfigErrors, checkFits, checkTensorElements, formatBytes, formatCount, show, type ConfigSource,
} from './sizes.js';

export type LlamaModelType = 'llama' | 'mistral' | 'qwen2' | 'qwen3';
export const LLAMA_MODEL_TYPES: readonly LlamaModelType[] = ['llama', 'mistral', 'qwen2', 'qwen3'];
export type RopeType = 'default' | 'linear' | 'dynamic' | 'llama3';
export type AttentionLayerType = 'full_attention' | 'sliding_attention';

/** HF's rope_scaling (camelCase); which fields are needed depends on ropeType. */
export interface RopeScaling {
  ropeType: RopeType;
  /** linear, dynamic, llama3: how much longer than the trained context. */
  factor?: number;
  /** llama3 */
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

export interface LlamaConfig {
  /** Which checkpoint family this is (default 'llama'); decides the bias and norm layout, see resolve. */
  modelType?: LlamaModelType;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  /** Grouped-query attention: heads of keys and values (default numAttentionHeads). */
  numKeyValueHeads?: number;
  /** Default hiddenSize / numAttentionHeads (Qwen3 sets it explicitly). */
  headDim?: number;
  maxPositionEmbeddings?: number;
  rmsNormEps?: number;
  ropeTheta?: number;
  ropeScaling?: RopeScaling | null;
  /** Biases on q/k/v_proj (default: true for qwen2, false otherwise). */
  attentionBias?: boolean;
  /** Bias on o_proj (default: attentionBias for llama and qwen3, false for qwen2 and mistral). */
  attentionOutputBias?: boolean;
  /** Biases on the MLP projections (Llama's mlp_bias). */
  mlpBias?: boolean;
  /** RMSNorm of q and k over the head dim before the rotary embedding (default: true for qwen3). */
  qkNorm?: boolean;
  /** Keys a query sees at most (itself included) in sliding_attention layers; null: no window. */
  slidingWindow?: number | null;
  /** Per layer: full or sliding-window attention (default: sliding everywhere when slidingWindow is set). */
  layerTypes?: AttentionLayerType[];
  attentionDropout?: number;
  tieWordEmbeddings?: boolean;
  initializerRange?: number;
  bosTokenId?: number | null;
  /** One id or several (Llama 3 instruct models end turns with either of two). */
  eosTokenId?: number | number[] | null;
  padTokenId?: number | null;
  /** The dtype the checkpoint was saved in (informational; HF's torch_dtype). */
  torchDtype?: 'float32' | 'bfloat16' | 'float16' | null;
}

export type ResolvedLlamaConfig = Required<Omit<LlamaConfig, 'ropeScaling'>> & {
  ropeScaling: Required<RopeScaling> | null;
  slidingWindow: number | null;
};

/** Defaults of fields that HF's config classes give per model type (the sizes are required). */
const TYPE_DEFAULTS: Record<LlamaModelType, { maxPositionEmbeddings: number; bos: number | null; eos: number | null }> = {
  llama: { maxPositionEmbeddings: 2048, bos: 1, eos: 2 },
  mistral: { maxPositionEmbeddings: 4096 * 32, bos: 1, eos: 2 },
  qwen2: { maxPositionEmbeddings: 32768, bos: null, eos: null },
  qwen3: { maxPositionEmbeddings: 32768, bos: null, eos: null },
};

const SIZE_FIELDS = ['vocabSize', 'hiddenSize', 'intermediateSize', 'numHiddenLayers', 'numAttentionHeads'] as const;
const DTYPES = ['float32', 'bfloat16', 'float16'];

function tokenId(e: ConfigErrors, c: Record<string, unknown>, k: string, dflt: number | null): number | null {
  const v = c[k] === undefined ? dflt : c[k];
  if (v === null) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw e.error(`${e.label(k)} must be a token id (a non-negative integer) or null (got ${show(v)})`);
  return v;
}

function resolveRope(e: ConfigErrors, r: RopeScaling | null | undefined, maxPos: number): Required<RopeScaling> | null {
  if (r === undefined || r === null) return null;
  const k = 'ropeScaling';
  if (typeof r !== 'object' || Array.isArray(r)) throw e.error(`${e.label(k)} must be an object or null (got ${show(r)})`);
  const type = r.ropeType;
  if (!['default', 'linear', 'dynamic', 'llama3'].includes(type)) {
    throw e.error(`${e.label(k)} has rope type ${show(type)}, which is not supported (supported: default, linear, dynamic, llama3)`);
  }
  const field = (f: keyof RopeScaling, dflt: number | undefined, ok: (x: number) => boolean, want: string): number => {
    const v = r[f] ?? dflt;
    const label = e.label(`${k}.${f}`);
    if (v === undefined) throw e.error(`${label} is missing (rope type ${type} needs it: ${want})`);
    if (typeof v !== 'number' || !ok(v)) throw e.error(`${label} must be ${want} (got ${show(v)})`);
    return v;
  };
  const pos = (x: number): boolean => Number.isFinite(x) && x > 0;
  const out: Required<RopeScaling> = { ropeType: type, factor: 1, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: maxPos };
  if (type === 'default') return out;
  out.factor = field('factor', undefined, (x) => Number.isFinite(x) && x >= 1, 'a number >= 1');
  if (type === 'llama3') {
    out.lowFreqFactor = field('lowFreqFactor', undefined, pos, 'a positive number');
    out.highFreqFactor = field('highFreqFactor', undefined, pos, 'a positive number');
    out.originalMaxPositionEmbeddings = field('originalMaxPositionEmbeddings', undefined, (x) => Number.isSafeInteger(x) && x > 0, 'a positive integer');
    if (!(out.highFreqFactor > out.lowFreqFactor)) {
      throw e.error(`${e.label(k)}: high_freq_factor ${out.highFreqFactor} must be greater than low_freq_factor ${out.lowFreqFactor}${e.where}`);
    }
  }
  return out;
}

/**
 * Fills the defaults and checks every field (types, ranges, heads dividing each other);
 * `src` says where the values came from so that errors name the file and field.
 */
export function checkLlamaConfig(config: LlamaConfig, src: ConfigSource = {}): ResolvedLlamaConfig {
  const e = new ConfigErrors(src, 'LlamaConfig');
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw e.error(`${src.file ?? 'the config'} must be ${src.file ? 'a JSON object' : 'an object'} (got ${show(config)})`);
  }
  const c = config as unknown as Record<string, unknown>;
  const modelType = (c.modelType ?? 'llama') as LlamaModelType;
  if (!LLAMA_MODEL_TYPES.includes(modelType)) throw e.error(`${e.label('modelType')} must be one of ${LLAMA_MODEL_TYPES.join(', ')} (got ${show(c.modelType)})`);
  for (const k of SIZE_FIELDS) e.int(c, k);
  const heads = config.numAttentionHeads;
  const kvHeads = c.numKeyValueHeads === undefined || c.numKeyValueHeads === null ? heads : e.int(c, 'numKeyValueHeads');
  if (heads % kvHeads !== 0) {
    throw e.error(`${e.name('numAttentionHeads')} ${heads} must be a multiple of ${e.name('numKeyValueHeads')} ${kvHeads}${e.where}`);
  }
  let headDim: number;
  if (c.headDim === undefined || c.headDim === null) {
    if (config.hiddenSize % heads !== 0) {
      throw e.error(`${e.name('hiddenSize')} ${config.hiddenSize} must be divisible by ${e.name('numAttentionHeads')} ${heads} when ${e.name('headDim')} is not given${e.where}`);
    }
    headDim = config.hiddenSize / heads;
  } else headDim = e.int(c, 'headDim');
  if (headDim % 2 !== 0) throw e.error(`the head dim (${e.name('headDim')}) must be even for the rotary embedding (got ${headDim})${e.where}`);
  const td = TYPE_DEFAULTS[modelType];
  const maxPositionEmbeddings = c.maxPositionEmbeddings === undefined ? td.maxPositionEmbeddings : e.int(c, 'maxPositionEmbeddings');
  const rmsNormEps = e.num(c, 'rmsNormEps', 1e-6, (x) => Number.isFinite(x) && x > 0, 'a positive number');
  const ropeTheta = e.num(c, 'ropeTheta', 10000, (x) => Number.isFinite(x) && x > 0, 'a positive number');
  const ropeScaling = resolveRope(e, config.ropeScaling, maxPositionEmbeddings);
  const attentionBias = e.bool(c, 'attentionBias', modelType === 'qwen2');
  const outDefault = modelType === 'llama' || modelType === 'qwen3' ? attentionBias : false;
  const attentionOutputBias = e.bool(c, 'attentionOutputBias', outDefault);
  const mlpBias = e.bool(c, 'mlpBias', false);
  const qkNorm = e.bool(c, 'qkNorm', modelType === 'qwen3');
  const sw = c.slidingWindow;
  const slidingWindow = sw === undefined || sw === null ? null : e.int(c, 'slidingWindow');
  let layerTypes: AttentionLayerType[];
  const L = config.numHiddenLayers;
  if (c.layerTypes === undefined || c.layerTypes === null) {
    layerTypes = Array.from({ length: L }, () => (slidingWindow === null ? 'full_attention' : 'sliding_attention'));
  } else {
    const lt = c.layerTypes;
    if (!Array.isArray(lt) || lt.length !== L || !lt.every((t) => t === 'full_attention' || t === 'sliding_attention')) {
      throw e.error(`${e.label('layerTypes')} must list "full_attention" or "sliding_attention" for each of the ${L} layers (got ${show(lt)})`);
    }
    layerTypes = [...lt] as AttentionLayerType[];
    if (slidingWindow === null && layerTypes.includes('sliding_attention')) {
      throw e.error(`${e.label('layerTypes')} has sliding_attention layers but ${e.name('slidingWindow')} is not set${e.where}`);
    }
  }
  const attentionDropout = e.num(c, 'attentionDropout', 0, (x) => x >= 0 && x < 1, 'a number in [0, 1)');
  const tieWordEmbeddings = e.bool(c, 'tieWordEmbeddings', false);
  const initializerRange = e.num(c, 'initializerRange', 0.02, (x) => Number.isFinite(x) && x >= 0, 'a non-negative number');
  const bosTokenId = tokenId(e, c, 'bosTokenId', td.bos);
  let eosTokenId: number | number[] | null;
  if (Array.isArray(c.eosTokenId)) {
    const ids = c.eosTokenId as unknown[];
    if (ids.length === 0 || !ids.every((v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)) {
      throw e.error(`${e.label('eosTokenId')} must be a token id, a non-empty list of them, or null (got ${show(c.eosTokenId)})`);
    }
    eosTokenId = [...ids] as number[];
  } else eosTokenId = tokenId(e, c, 'eosTokenId', td.eos);
  const padTokenId = tokenId(e, c, 'padTokenId', null);
  const torchDtype = c.torchDtype === undefined || c.torchDtype === null ? null : c.torchDtype as ResolvedLlamaConfig['torchDtype'];
  if (torchDtype !== null && !DTYPES.includes(torchDtype)) throw e.error(`${e.label('torchDtype')} must be one of ${DTYPES.join(', ')} (got ${show(c.torchDtype)})`);
  return {
    modelType, vocabSize: config.vocabSize, hiddenSize: config.hiddenSize, intermediateSize: config.intermediateSize,
    numHiddenLayers: L, numAttentionHeads: heads, numKeyValueHeads: kvHeads, headDim, maxPositionEmbeddings, rmsNormEps,
    ropeTheta, ropeScaling, attentionBias, attentionOutputBias, mlpBias, qkNorm, slidingWindow, layerTypes, attentionDropout,
    tieWordEmbeddings, initializerRange, bosTokenId, eosTokenId, padTokenId, torchDtype,
  };
}

/** The EOS ids as a list (empty when the config has none). */
export function eosTokenIds(c: { eosTokenId?: number | number[] | null }): number[] {
  const e = c.eosTokenId;
  return e === undefined || e === null ? [] : Array.isArray(e) ? [...e] : [e];
}

// ---- rotary inverse frequencies ----------------------------------------------------------

/** 1 / theta^(2i / dim), i < dim / 2 (HF's _compute_default_rope_parameters). */
function defaultInvFreq(theta: number, dim: number): Float64Array {
  return Float64Array.from({ length: dim / 2 }, (_, i) => 1 / theta ** ((2 * i) / dim));
}

/**
 * The rotary inverse frequencies for a forward over positions < seqLen, after the config's
 * rope scaling: linear divides them by factor; dynamic (NTK) raises the base when seqLen
 * exceeds maxPositionEmbeddings (HF's _compute_dynamic_ntk_parameters, from this call's
 * longest position rather than the longest seen so far); llama3 divides the low
 * frequencies by factor and blends the band between (HF's _compute_llama3_parameters).
 */
export function ropeInvFreq(c: ResolvedLlamaConfig, seqLen = c.maxPositionEmbeddings): Float64Array {
  const dim = c.headDim, r = c.ropeScaling;
  if (!r || r.ropeType === 'default') return defaultInvFreq(c.ropeTheta, dim);
  if (r.ropeType === 'linear') return defaultInvFreq(c.ropeTheta, dim).map((f) => f / r.factor);
  if (r.ropeType === 'dynamic') {
    const maxPos = c.maxPositionEmbeddings, len = Math.max(seqLen, maxPos);
    const base = c.ropeTheta * ((r.factor * len) / maxPos - (r.factor - 1)) ** (dim / (dim - 2));
    return defaultInvFreq(base, dim);
  }
  const inv = defaultInvFreq(c.ropeTheta, dim);
  const old = r.originalMaxPositionEmbeddings;
  const lowWavelen = old / r.lowFreqFactor, highWavelen = old / r.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / r.factor;
    const smooth = (old / wavelen - r.lowFreqFactor) / (r.highFreqFactor - r.lowFreqFactor);
    return (1 - smooth) * (f / r.factor) + smooth * f;
  });
}

/** Whether the inverse frequencies depend on the sequence length (dynamic NTK scaling). */
export function ropeIsDynamic(c: ResolvedLlamaConfig): boolean { return c.ropeScaling?.ropeType === 'dynamic'; }

// ---- sizes -------------------------------------------------------------------------------

/** Every parameter's name (HF's) and shape, in stateDict order, from the config alone. */
export function llamaParameterShapes(config: LlamaConfig): [string, number[]][] {
  const c = checkLlamaConfig(config);
  const H = c.hiddenSize, D = c.headDim, q = c.numAttentionHeads * D, kv = c.numKeyValueHeads * D, I = c.intermediateSize;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [c.vocabSize, H]]];
  const lin = (name: string, o: number, i: number, bias: boolean): void => {
    out.push([`${name}.weight`, [o, i]]);
    if (bias) out.push([`${name}.bias`, [o]]);
  };
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const p = `model.layers.${l}`;
    lin(`${p}.self_attn.q_proj`, q, H, c.attentionBias);
    lin(`${p}.self_attn.k_proj`, kv, H, c.attentionBias);
    lin(`${p}.self_attn.v_proj`, kv, H, c.attentionBias);
    lin(`${p}.self_attn.o_proj`, H, q, c.attentionOutputBias);
    if (c.qkNorm) out.push([`${p}.self_attn.q_norm.weight`, [D]], [`${p}.self_attn.k_norm.weight`, [D]]);
    lin(`${p}.mlp.gate_proj`, I, H, c.mlpBias);
    lin(`${p}.mlp.up_proj`, I, H, c.mlpBias);
    lin(`${p}.mlp.down_proj`, H, I, c.mlpBias);
    out.push([`${p}.input_layernorm.weight`, [H]], [`${p}.post_attention_layernorm.weight`, [H]]);
  }
  out.push(['model.norm.weight', [H]]);
  if (!c.tieWordEmbeddings) out.push(['lm_head.weight', [c.vocabSize, H]]);
  return out;
}

export function llamaParameterCount(config: LlamaConfig): number {
  return llamaParameterShapes(config).reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0);
}

/**
 * float32 bytes of the activations one training micro-batch keeps for backward (an
 * estimate from below: per layer both norms' outputs, q/k/v (and the rotated q, k),
 * attention output, the residuals, gate/up/SwiGLU; the logits and their softmax).
 */
export function llamaActivationBytes(config: LlamaConfig, batchSize: number, seqLen: number): number {
  const c = checkLlamaConfig(config);
  const q = c.numAttentionHeads * c.headDim, kv = c.numKeyValueHeads * c.headDim;
  const perLayer = 5 * c.hiddenSize + 3 * q + 4 * kv + 3 * c.intermediateSize + c.numAttentionHeads;
  return 4 * batchSize * seqLen * (c.numHiddenLayers * perLayer + 2 * c.hiddenSize + 2 * c.vocabSize);
}

export interface LlamaSizeOptions extends ConfigSource {
  /** Bytes per parameter as held (4: float32, 2: bfloat16/float16). Default 4. */
  bytesPerParameter?: number;
  /** Copies held at once (server workers). Default 1. */
  copies?: number;
  device?: Device;
}

/**
 * Checks the config, then refuses it before anything is allocated when a tensor would be
 * larger than JavaScript can hold or the weights need more memory than is available.
 */
export function checkLlamaSize(config: LlamaConfig, opts: LlamaSizeOptions = {}): ResolvedLlamaConfig {
  const c = checkLlamaConfig(config, opts);
  const e = new ConfigErrors(opts, 'LlamaForCausalLM');
  const n = (k: keyof LlamaConfig): string => `${e.name(k)} ${c[k] as number}`;
  checkTensorElements(e, `the token embedding (${n('vocabSize')} x ${n('hiddenSize')})`, c.vocabSize * c.hiddenSize);
  checkTensorElements(e, `an MLP weight (${n('intermediateSize')} x ${n('hiddenSize')})`, c.intermediateSize * c.hiddenSize);
  const params = llamaParameterCount(c);
  const bytes = opts.bytesPerParameter ?? BYTES_PER_PARAMETER.inference, copies = opts.copies ?? 1;
  const subject = `${e.subject} (${e.describe(c as unknown as Record<string, unknown>, ['numHiddenLayers', 'hiddenSize', 'intermediateSize', 'vocabSize'])})`;
  checkFits(e, params * bytes * copies, (need) => `${subject} needs ${need} for ${formatCount(params)} parameters ` +
    `(${formatBytes(bytes)} each${copies > 1 ? `, ${copies} copies` : ''})`, opts.device ?? 'cpu');
  return c;
}
