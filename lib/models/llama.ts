// LlamaForCausalLM: the decoder of Llama, Mistral, Qwen2 and Qwen3 (see llama_config.ts
// for what differs between them). Module and parameter names are Hugging Face's
// (model.layers.0.self_attn.q_proj.weight, ...), so a state dict maps 1:1 onto a
// checkpoint. A block is pre-norm: h = x + attn(rmsNorm(x)), out = h + mlp(rmsNorm(h)),
// the second norm fused with the residual add (addRmsNorm). Attention rotates q and k
// (rotary, HF's rotate_half), keeps Hkv key/value heads (grouped-query attention without
// repeating them) and, in sliding-window layers, sees at most slidingWindow keys.
//
// Incremental decoding writes each step's keys and values into a preallocated KVCache
// (nn/kv_cache.ts). With a cache, padding or a window the mask is built here as one bool
// [B|1, 1, T, past + T] tensor per window size; otherwise attention takes isCausal.
import { isGradEnabled, noGrad } from '../autograd.js';
import type { DType } from '../dtype.js';
import { arange, full, ones, randn } from '../ops/creation.js';
import { add, cast, gt, le, logicalAnd } from '../ops/elementwise.js';
import { addRmsNorm, rmsNorm, rotaryEmbedding, swiglu, type RotaryEmbeddingOptions } from '../ops/llama.js';
import { crossEntropy } from '../ops/loss.js';
import { linear } from '../ops/matmul.js';
import { scaledDotProductAttention } from '../ops/attention.js';
import { cat, narrow, reshape } from '../ops/shape.js';
import { fmt } from '../ops/check.js';
import type { Device } from '../storage.js';
import { Tensor } from '../tensor.js';
import { checkpoint } from '../nn/checkpoint.js';
import { KVCache, type KVCacheLayer } from '../nn/kv_cache.js';
import { Embedding, Linear, ModuleList } from '../nn/layers.js';
import { Module, parameter } from '../nn/module.js';
import { generate, generateStream, type DecodeStepOptions, type GenerateOptions } from '../generate.js';
import {
  checkLlamaSize, eosTokenIds, llamaActivationBytes, ropeInvFreq, ropeIsDynamic, type LlamaConfig, type ResolvedLlamaConfig,
} from './llama_config.js';
import { loadLlamaPretrained, saveLlamaPretrained, type LlamaPretrainedOptions, type LlamaSaveOptions } from './llama_hf.js';

export class LlamaRMSNorm extends Module {
  weight: Tensor;
  constructor(readonly size: number, readonly eps: number, dtype: DType = 'float32') {
    super();
    this.weight = parameter(ones([size], { dtype }));
  }
  forward(x: Tensor): Tensor { return rmsNorm(x, this.weight, this.eps); }
}

/** Per-forward state every attention layer shares: rotary angles, the cache, the masks. */
export interface LlamaAttentionContext {
  rope: RotaryEmbeddingOptions;
  cache?: KVCacheLayer;
  /** sdpa's mask options for a layer with this window (null: full attention). */
  mask(window: number | null): { isCausal?: boolean; attnMask?: Tensor; slidingWindow?: number | null };
}

export class LlamaAttention extends Module {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  o_proj: Linear;
  q_norm: LlamaRMSNorm | null;
  k_norm: LlamaRMSNorm | null;
  readonly numHeads: number;
  readonly numKeyValueHeads: number;
  readonly headDim: number;
  /** null in full-attention layers. */
  readonly slidingWindow: number | null;
  readonly dropout: number;

  constructor(c: ResolvedLlamaConfig, layerIdx: number, dtype: DType = 'float32') {
    super();
    const H = c.hiddenSize, D = c.headDim;
    this.numHeads = c.numAttentionHeads;
    this.numKeyValueHeads = c.numKeyValueHeads;
    this.headDim = D;
    this.slidingWindow = c.layerTypes[layerIdx] === 'sliding_attention' ? c.slidingWindow : null;
    this.dropout = c.attentionDropout;
    this.q_proj = new Linear(H, this.numHeads * D, { bias: c.attentionBias, dtype });
    this.k_proj = new Linear(H, this.numKeyValueHeads * D, { bias: c.attentionBias, dtype });
    this.v_proj = new Linear(H, this.numKeyValueHeads * D, { bias: c.attentionBias, dtype });
    this.o_proj = new Linear(this.numHeads * D, H, { bias: c.attentionOutputBias, dtype });
    this.q_norm = c.qkNorm ? new LlamaRMSNorm(D, c.rmsNormEps, dtype) : null;
    this.k_norm = c.qkNorm ? new LlamaRMSNorm(D, c.rmsNormEps, dtype) : null;
  }

  forward(x: Tensor, ctx: LlamaAttentionContext): Tensor {
    const [B, T] = x.shape;
    const H = this.numHeads, Hkv = this.numKeyValueHeads, D = this.headDim;
    let q = reshape(this.q_proj.forward(x), [B, T, H, D]);
    let k = reshape(this.k_proj.forward(x), [B, T, Hkv, D]);
    let v = reshape(this.v_proj.forward(x), [B, T, Hkv, D]).transpose(1, 2);
    if (this.q_norm && this.k_norm) {
      q = this.q_norm.forward(q); // Qwen3: per head, before the rotation
      k = this.k_norm.forward(k);
    }
    q = rotaryEmbedding(q.transpose(1, 2), ctx.rope);
    k = rotaryEmbedding(k.transpose(1, 2), ctx.rope);
    if (ctx.cache) ({ k, v } = ctx.cache.append(k, v));
    const y = scaledDotProductAttention(q, k, v, {
      ...ctx.mask(this.slidingWindow), enableGqa: true, dropoutP: this.training ? this.dropout : 0,
    }); // [B, H, T, D]
    return this.o_proj.forward(reshape(y.transpose(1, 2), [B, T, H * D]));
  }
}

export class LlamaMLP extends Module {
  gate_proj: Linear;
  up_proj: Linear;
  down_proj: Linear;
  constructor(c: ResolvedLlamaConfig, dtype: DType = 'float32') {
    super();
    this.gate_proj = new Linear(c.hiddenSize, c.intermediateSize, { bias: c.mlpBias, dtype });
    this.up_proj = new Linear(c.hiddenSize, c.intermediateSize, { bias: c.mlpBias, dtype });
    this.down_proj = new Linear(c.intermediateSize, c.hiddenSize, { bias: c.mlpBias, dtype });
  }
  forward(x: Tensor): Tensor { return this.down_proj.forward(swiglu(this.gate_proj.forward(x), this.up_proj.forward(x))); }
}

export class LlamaDecoderLayer extends Module {
  self_attn: LlamaAttention;
  mlp: LlamaMLP;
  input_layernorm: LlamaRMSNorm;
  post_attention_layernorm: LlamaRMSNorm;
  constructor(c: ResolvedLlamaConfig, layerIdx: number, dtype: DType = 'float32') {
    super();
    this.self_attn = new LlamaAttention(c, layerIdx, dtype);
    this.mlp = new LlamaMLP(c, dtype);
    this.input_layernorm = new LlamaRMSNorm(c.hiddenSize, c.rmsNormEps, dtype);
    this.post_attention_layernorm = new LlamaRMSNorm(c.hiddenSize, c.rmsNormEps, dtype);
  }
  forward(x: Tensor, ctx: LlamaAttentionContext): Tensor {
    const a = this.self_attn.forward(this.input_layernorm.forward(x), ctx);
    const n = this.post_attention_layernorm;
    const { sum: h, out } = addRmsNorm(a, x, n.weight, n.eps);
    return add(h, this.mlp.forward(out));
  }
}

export interface LlamaModelInputs {
  /** Key-padding mask [B, past + T] (1 = a real token), HF's attention_mask. */
  attentionMask?: Tensor | null;
  /** int32 positions [B, T] or [T]; default past .. past + T - 1. */
  positionIds?: Tensor | null;
  cache?: KVCache | null;
}

/** The bool [B, 1, 1, Tk] key-padding mask, or null when mask is absent or (on the CPU) all ones. */
function paddingMask(mask: Tensor | null | undefined, B: number, Tk: number): Tensor | null {
  if (!mask) return null;
  if (mask.ndim !== 2 || mask.shape[0] !== B || mask.shape[1] !== Tk) {
    throw new Error(`nodegrad: LlamaModel.forward: attentionMask must be [B, past + T] = [${B}, ${Tk}] (got ${fmt(mask.shape)})`);
  }
  if (mask.device === 'cpu') {
    const d = mask.dataSync() as ArrayLike<number>;
    let all = true;
    for (let i = 0; i < d.length && all; i++) all = Number(d[i]) !== 0;
    if (all) return null;
  }
  return reshape(cast(mask, 'bool'), [B, 1, 1, Tk]);
}

/**
 * A module built in float32 and converted one module at a time (a layer's float32 copy at
 * most, never the whole model's), so every dtype the casts know is available.
 */
function inDType<M extends Module>(m: M, dtype: DType): M {
  return dtype === 'float32' ? m : m.to(dtype);
}

export class LlamaModel extends Module {
  embed_tokens: Embedding;
  layers: ModuleList<LlamaDecoderLayer>;
  norm: LlamaRMSNorm;
  /** Recompute each layer's activations in backward instead of keeping them (training only). */
  gradientCheckpointing = false;
  private readonly invFreq: Float64Array;

  constructor(readonly config: ResolvedLlamaConfig, dtype: DType = 'float32') {
    super();
    const c = config;
    const pad = c.padTokenId !== null && c.padTokenId < c.vocabSize ? c.padTokenId : undefined;
    this.embed_tokens = inDType(new Embedding(c.vocabSize, c.hiddenSize, { paddingIdx: pad }), dtype);
    this.layers = new ModuleList(Array.from({ length: c.numHiddenLayers }, (_, i) => inDType(new LlamaDecoderLayer(c, i), dtype)));
    this.norm = inDType(new LlamaRMSNorm(c.hiddenSize, c.rmsNormEps), dtype);
    this.invFreq = ropeInvFreq(c);
  }

  /** The final hidden states [B, T, hiddenSize] (after model.norm). */
  forward(inputIds: Tensor, opts: LlamaModelInputs = {}): Tensor {
    const c = this.config;
    if (inputIds.dtype !== 'int32' || inputIds.ndim !== 2) {
      throw new Error(`nodegrad: LlamaModel.forward: inputIds must be an int32 tensor [B, T] (got ${inputIds.dtype} ${fmt(inputIds.shape)})`);
    }
    const [B, T] = inputIds.shape;
    const cache = opts.cache ?? null;
    if (cache && cache.batchSize !== B) throw new Error(`nodegrad: LlamaModel.forward: the cache holds ${cache.batchSize} rows but inputIds has ${B}`);
    const past = cache?.length ?? 0, Tk = past + T;
    const pos = opts.positionIds ?? null;
    if (pos && (pos.dtype !== 'int32' || pos.shape[pos.ndim - 1] !== T || pos.ndim > 2 || (pos.ndim === 2 && pos.shape[0] !== B))) {
      throw new Error(`nodegrad: LlamaModel.forward: positionIds must be int32 [${B}, ${T}] or [${T}] (got ${pos.dtype} ${fmt(pos.shape)})`);
    }
    let invFreq = this.invFreq;
    if (ropeIsDynamic(c)) {
      // NTK scaling follows the longest position of this call
      const longest = pos ? Math.max(...Array.from(pos.dataSync() as ArrayLike<number>)) + 1 : Tk;
      if (longest > c.maxPositionEmbeddings) invFreq = ropeInvFreq(c, longest);
    }
    const rope: RotaryEmbeddingOptions = pos ? { invFreq, positions: pos } : { invFreq, positionOffset: past };
    const pad = paddingMask(opts.attentionMask, B, Tk);
    const device = inputIds.device;
    const masks = new Map<number | null, ReturnType<LlamaAttentionContext['mask']>>();
    const mask = (window: number | null): ReturnType<LlamaAttentionContext['mask']> => {
      let m = masks.get(window);
      if (m) return m;
      if (past === 0 && !pad) m = { isCausal: true, slidingWindow: window };
      else {
        // query i sits at column past + i: it sees columns j <= past + i (and > past + i - window)
        const qi = reshape(arange(past, Tk, 1, { device }), [T, 1]);
        const kj = reshape(arange(0, Tk, 1, { device }), [1, Tk]);
        let b = le(kj, qi);
        if (window !== null) b = logicalAnd(b, gt(add(kj, window), qi));
        if (pad) b = logicalAnd(b, pad);
        m = { attnMask: b };
      }
      masks.set(window, m);
      return m;
    };
    let x = this.embed_tokens.forward(inputIds);
    const ckpt = this.gradientCheckpointing && this.training && !cache && isGradEnabled();
    let i = 0;
    for (const layer of this.layers) {
      const ctx: LlamaAttentionContext = { rope, cache: cache?.layers[i++], mask };
      x = ckpt ? checkpoint((xx) => layer.forward(xx, ctx), x) : layer.forward(x, ctx);
    }
    return this.norm.forward(x);
  }
}

export interface LlamaForwardInputs extends Omit<LlamaModelInputs, 'cache'> {
  /** int32 [B, T]. */
  inputIds: Tensor;
  /** HF's labels [B, T]: position t is scored against labels[t + 1] (shifted here); -100 is ignored. */
  labels?: Tensor | null;
  /** Next-token targets [B, T], already shifted (targets[t] follows position t): the Trainer's batches. */
  targets?: Tensor | null;
  /** The cache of earlier positions (HF's past_key_values); appended to in place. */
  pastKeyValues?: KVCache | null;
  /** Return a cache (a new one unless pastKeyValues is given). */
  useCache?: boolean;
}

export interface LlamaOutput { logits: Tensor; loss?: Tensor; pastKeyValues?: KVCache }

/** Generation defaults from generation_config.json (or config.json when there is none). */
export interface LlamaGenerationConfig {
  bosTokenId: number | null;
  /** Generation stops at any of these. */
  eosTokenId: number[];
  padTokenId: number | null;
  /** false: greedy (HF's default). */
  doSample: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  maxNewTokens?: number;
}

export interface LlamaOptions {
  /** dtype of the parameters (default float32). */
  dtype?: DType;
  /** Draw HF's initial weights (default true; fromPretrained skips it when the checkpoint has every tensor). */
  init?: boolean;
}

export class LlamaForCausalLM extends Module {
  readonly config: ResolvedLlamaConfig;
  model: LlamaModel;
  /** null when tied to model.embed_tokens (tieWordEmbeddings). */
  lm_head: Linear | null;
  generationConfig: LlamaGenerationConfig;

  constructor(config: LlamaConfig, opts: LlamaOptions = {}) {
    super();
    const dtype = opts.dtype ?? 'float32';
    const c = checkLlamaSize(config, { bytesPerParameter: dtype === 'float32' ? 4 : dtype === 'float64' ? 8 : 2 });
    this.config = c;
    this.model = new LlamaModel(c, dtype);
    this.lm_head = c.tieWordEmbeddings ? null : inDType(new Linear(c.hiddenSize, c.vocabSize, { bias: false }), dtype);
    this.generationConfig = { bosTokenId: c.bosTokenId, eosTokenId: eosTokenIds(c), padTokenId: c.padTokenId, doSample: false };
    if (opts.init ?? true) this.initWeights();
  }

  /** HF's _init_weights: N(0, initializerRange) for linear and embedding weights, zero biases, unit norms. */
  private initWeights(): void {
    const std = this.config.initializerRange;
    noGrad(() => {
      for (const m of this.modules()) {
        if (m instanceof Linear) {
          m.weight.copy_(randn(m.weight.shape as number[], { std }));
          m.bias?.zero_();
        } else if (m instanceof Embedding) {
          m.weight.copy_(randn(m.weight.shape as number[], { std }));
          if (m.opts.paddingIdx !== undefined) m.weight.select(0, m.opts.paddingIdx).zero_();
        }
      }
    });
  }

  /** The output projection's weight ([vocabSize, hiddenSize]; the embedding when tied). */
  get lmHeadWeight(): Tensor { return this.lm_head ? this.lm_head.weight : this.model.embed_tokens.weight; }

  /**
   * logits [B, T, V]; with labels (HF) or targets (already shifted) the mean cross-entropy
   * over positions whose target is not -100; with useCache or pastKeyValues the cache.
   * forward(inputIds, { targets }) is the language-model convention the Trainer uses.
   */
  forward(inputs: LlamaForwardInputs | Tensor, opts: Omit<LlamaForwardInputs, 'inputIds'> = {}): LlamaOutput {
    const o: LlamaForwardInputs = inputs instanceof Tensor ? { ...opts, inputIds: inputs } : inputs;
    const ids = o.inputIds;
    let cache = o.pastKeyValues ?? null;
    if (!cache && o.useCache) cache = this.newDecodeCache(ids.shape[0], ids.shape[1]);
    const h = this.model.forward(ids, { attentionMask: o.attentionMask, positionIds: o.positionIds, cache });
    const logits = linear(h, this.lmHeadWeight);
    const out: LlamaOutput = { logits };
    if (cache) out.pastKeyValues = cache;
    const [B, T] = ids.shape;
    let target: Tensor | null = null;
    for (const [name, t] of [['labels', o.labels], ['targets', o.targets]] as const) {
      if (t && (t.dtype !== 'int32' || fmt(t.shape) !== fmt([B, T]))) {
        throw new Error(`nodegrad: LlamaForCausalLM.forward: ${name} must be int32 [${B}, ${T}] (got ${t.dtype} ${fmt(t.shape)})`);
      }
    }
    if (o.labels) {
      // HF's ForCausalLMLoss: labels shifted left by one, the last position ignored
      const last = full([B, 1], -100, { dtype: 'int32', device: ids.device });
      target = T > 1 ? cat([narrow(o.labels, 1, 1, T - 1), last], 1) : last;
    } else if (o.targets) target = o.targets;
    if (target) {
      const V = this.config.vocabSize;
      const l32 = logits.dtype === 'float32' || logits.dtype === 'float64' ? logits : cast(logits, 'float32');
      out.loss = crossEntropy(reshape(l32, [B * T, V]), reshape(target, [B * T]), { ignoreIndex: -100 });
    }
    return out;
  }

  /** The longest sequence the model attends over (max_position_embeddings). */
  get maxSequenceLength(): number { return this.config.maxPositionEmbeddings; }

  /** A KV cache for batchSize rows and `capacity` positions, preallocated with the numKeyValueHeads heads. */
  newDecodeCache(batchSize: number, capacity: number): KVCache {
    const c = this.config, w = this.model.embed_tokens.weight;
    return new KVCache({
      nLayer: c.numHiddenLayers, batchSize, numHeads: c.numKeyValueHeads, headDim: c.headDim, capacity, dtype: w.dtype, device: w.device,
    });
  }

  /** One incremental-decoding step (generate.ts's Generator): the last position's float32 logits [B, V]. */
  decodeStep(inputIds: Tensor, cache: KVCache, opts: DecodeStepOptions = {}): Tensor {
    const h = this.model.forward(inputIds, { cache, positionIds: opts.positions, attentionMask: opts.attentionMask });
    const logits = linear(h.select(1, h.shape[1] - 1), this.lmHeadWeight);
    return logits.dtype === 'float32' ? logits : cast(logits, 'float32');
  }

  /** generate()'s options from the generation config; the caller's options win. */
  generationDefaults(): GenerateOptions {
    const g = this.generationConfig;
    const d: GenerateOptions = { stopTokens: g.eosTokenId, temperature: g.doSample ? g.temperature ?? 1 : 0 };
    if (g.topK !== undefined) d.topK = g.topK;
    else if (g.doSample) d.topK = 50; // HF GenerationConfig's default
    if (g.topP !== undefined) d.topP = g.topP;
    if (g.repetitionPenalty !== undefined) d.repetitionPenalty = g.repetitionPenalty;
    if (g.maxNewTokens !== undefined) d.maxNewTokens = g.maxNewTokens;
    return d;
  }

  /** Samples with a KV cache; stops at the generation config's EOS ids unless stopTokens says otherwise. */
  generate(inputIds: Tensor | number[][] | number[], opts: GenerateOptions = {}): number[][] {
    return generate(this, inputIds, { ...this.generationDefaults(), ...opts });
  }
  generateStream(inputIds: Tensor | number[][] | number[], opts: GenerateOptions = {}): AsyncGenerator<number[]> {
    return generateStream(this, inputIds, { ...this.generationDefaults(), ...opts });
  }

  /** float32 bytes of the activations a training micro-batch keeps for backward (the Trainer's memory check). */
  activationBytes(batchSize: number, seqLen: number): number {
    return this.model.gradientCheckpointing ? 4 * batchSize * seqLen * (this.config.numHiddenLayers * this.config.hiddenSize + 2 * this.config.vocabSize)
      : llamaActivationBytes(this.config, batchSize, seqLen);
  }

  /** HF's gradient_checkpointing_enable: each layer recomputes its activations in backward. */
  gradientCheckpointingEnable(enable = true): this {
    this.model.gradientCheckpointing = enable;
    return this;
  }

  /**
   * Loads a Hugging Face Llama, Mistral, Qwen2 or Qwen3 directory (config.json,
   * model.safetensors or its shards, generation_config.json), in eval mode. On the CPU the
   * weights become float32 unless opts.dtype says otherwise (the CPU kernels compute in
   * float32); on CUDA they keep the checkpoint's dtype.
   */
  static async fromPretrained(dir: string, opts: LlamaPretrainedOptions = {}): Promise<LlamaForCausalLM> {
    return loadLlamaPretrained(dir, opts);
  }

  /** Writes a Hugging Face directory transformers loads as is (shards above opts.maxShardSize). */
  async savePretrained(dir: string, opts: LlamaSaveOptions = {}): Promise<void> { await saveLlamaPretrained(this, dir, opts); }

  /** Where the parameters live. */
  get device(): Device { return this.model.embed_tokens.weight.device; }
}
