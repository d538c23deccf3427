// GPT-2: token + position embeddings, nLayer pre-LN blocks, final LayerNorm, and an
// output projection tied to the token embedding. Initialised as GPT-2 does: N(0, 0.02),
// residual projections scaled by 1/√(2·nLayer), zero biases.
import { isGradEnabled, noGrad } from '../autograd.js';
import { arange, randn, tensor, zeros } from '../ops/creation.js';
import { lowPrecision } from '../autocast.js';
import { keep } from '../memory.js';
import { crossEntropy } from '../ops/loss.js';
import { add, cast } from '../ops/elementwise.js';
import { linear } from '../ops/matmul.js';
import { cat, narrow, reshape } from '../ops/shape.js';
import { fmt } from '../ops/check.js';
import type { Tensor } from '../tensor.js';
import { Block, emptyKVCache, type LayerKVCache } from '../nn/attention.js';
import { Dropout, Embedding, LayerNorm, Linear, ModuleList } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { checkpoint } from '../nn/checkpoint.js';
import { generate, generateStream, type DecodeStepOptions, type GenerateOptions } from '../generate.js';
import { KVCache } from '../nn/kv_cache.js';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { resolveCheckpointDir, writeDirAtomic, type FileContents } from '../io/atomic.js';
import { loadSafetensors, openSafetensors, safetensorsWriter, type SafetensorsReader } from '../io/safetensors.js';
import type { Device } from '../storage.js';
import {
  BYTES_PER_PARAMETER, ConfigErrors, checkFits, checkTensorElements, formatBytes, formatCount, show, type ConfigSource,
} from './sizes.js';
import type { SavePretrainedOptions } from './hf.js';
import { loadGPT2Pretrained, saveGPT2Pretrained } from './gpt_hf.js';

export interface GPTConfig {
  vocabSize: number;
  blockSize: number;
  nLayer: number;
  nHead: number;
  nEmbd: number;
  dropout?: number;
  bias?: boolean;
  /** LayerNorm epsilon (GPT-2: 1e-5). */
  layerNormEps?: number;
  /**
   * Activation checkpointing per block while training: a block's activations are
   * recomputed in backward instead of kept (less memory, one more forward per step).
   */
  checkpoint?: boolean;
  /**
   * The tied LM head runs on the vocabulary padded to a multiple of this (the padding gets
   * -inf logits; parameters, logits and checkpoints keep the true size). 0 (default): 64 on
   * CUDA, none on the CPU; 1: never.
   */
  padVocabMultiple?: number;
}

const PRESETS: Record<string, GPTConfig> = {
  gpt2: { vocabSize: 50257, blockSize: 1024, nLayer: 12, nHead: 12, nEmbd: 768, dropout: 0, bias: true },
  'gpt2-medium': { vocabSize: 50257, blockSize: 1024, nLayer: 24, nHead: 16, nEmbd: 1024, dropout: 0, bias: true },
  'gpt2-large': { vocabSize: 50257, blockSize: 1024, nLayer: 36, nHead: 20, nEmbd: 1280, dropout: 0, bias: true },
  'gpt2-xl': { vocabSize: 50257, blockSize: 1024, nLayer: 48, nHead: 25, nEmbd: 1600, dropout: 0, bias: true },
  // small models that train on a CPU in minutes
  nano: { vocabSize: 256, blockSize: 64, nLayer: 2, nHead: 4, nEmbd: 64, dropout: 0, bias: true },
  micro: { vocabSize: 256, blockSize: 128, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: true },
  mini: { vocabSize: 256, blockSize: 256, nLayer: 6, nHead: 6, nEmbd: 192, dropout: 0.1, bias: true },
};

const SIZE_FIELDS = ['vocabSize', 'blockSize', 'nLayer', 'nHead', 'nEmbd'] as const;

/**
 * Fills the defaults and checks every field: sizes are positive safe integers, nHead
 * divides nEmbd, the rest have their types and ranges. `src` says where the values came
 * from (a config.json, CLI flags) so that errors name the file and field or the flag.
 */
export function checkGPTConfig(config: GPTConfig, src: ConfigSource = {}): Required<GPTConfig> {
  const e = new ConfigErrors(src, 'GPT');
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw e.error(`${src.file ?? 'the config'} must be ${src.file ? 'a JSON object' : 'an object'} (got ${show(config)})`);
  }
  const c = config as unknown as Record<string, unknown>;
  for (const k of SIZE_FIELDS) e.int(c, k);
  if (config.nEmbd % config.nHead !== 0) {
    throw e.error(`${e.name('nEmbd')} ${config.nEmbd} must be divisible by ${e.name('nHead')} ${config.nHead}${e.where}`);
  }
  const dropout = e.num(c, 'dropout', 0, (x) => x >= 0 && x < 1, 'a number in [0, 1)');
  const layerNormEps = e.num(c, 'layerNormEps', 1e-5, (x) => x > 0 && Number.isFinite(x), 'a positive number');
  const padVocabMultiple = e.num(c, 'padVocabMultiple', 0, (x) => Number.isSafeInteger(x) && x >= 0, 'a non-negative integer');
  const bias = e.bool(c, 'bias', true), checkpoint = e.bool(c, 'checkpoint', false);
  return { ...config, dropout, bias, layerNormEps, checkpoint, padVocabMultiple };
}

/** Every parameter's name and shape, in stateDict order, from the config alone (nothing is allocated). */
export function gptParameterShapes(config: GPTConfig): [string, number[]][] {
  const c = checkGPTConfig(config);
  const C = c.nEmbd, out: [string, number[]][] = [['wte.weight', [c.vocabSize, C]], ['wpe.weight', [c.blockSize, C]]];
  const wb = (name: string, shape: number[]): void => {
    out.push([`${name}.weight`, shape]);
    if (c.bias) out.push([`${name}.bias`, [shape[0]]]);
  };
  for (let i = 0; i < c.nLayer; i++) {
    wb(`h.${i}.ln1`, [C]); wb(`h.${i}.attn.cAttn`, [3 * C, C]); wb(`h.${i}.attn.cProj`, [C, C]);
    wb(`h.${i}.ln2`, [C]); wb(`h.${i}.mlp.cFc`, [4 * C, C]); wb(`h.${i}.mlp.cProj`, [C, 4 * C]);
  }
  wb('lnF', [C]);
  return out;
}

/** The exact number of parameters of a GPT with this config (closed form: any size, nothing allocated). */
export function gptParameterCount(config: GPTConfig): number {
  const c = checkGPTConfig(config);
  const C = c.nEmbd, b = c.bias ? 1 : 0;
  // per block: ln1, ln2 (C each, + bias), qkv 3C², out proj C², MLP 4C² + 4C², biases 3C + C + 4C + C
  const block = 12 * C * C + 2 * C * (1 + b) + 9 * C * b;
  return (c.vocabSize + c.blockSize) * C + c.nLayer * block + C * (1 + b);
}

/**
 * float32 bytes of the activations one training micro-batch of batchSize x seqLen keeps for
 * backward (an estimate from below: per block the LayerNorm outputs, q/k/v, attention
 * output and log-sum-exp, projections, residuals and both MLP activations; the embeddings;
 * the logits and their softmax). With checkpointing a block keeps only its input.
 */
export function gptActivationBytes(config: GPTConfig, batchSize: number, seqLen: number): number {
  const c = checkGPTConfig(config);
  const C = c.nEmbd;
  const perBlock = c.checkpoint ? C : 18 * C + c.nHead;
  return 4 * batchSize * seqLen * (c.nLayer * perBlock + 3 * C + 2 * c.vocabSize);
}

export interface GPTSizeOptions extends ConfigSource {
  /** Where training runs (the weights are always built on the host first). Default: the CPU. */
  device?: Device;
  /** Check a training step too: weights, gradients, AdamW moments and the activations of one micro-batch. */
  training?: { batchSize: number; seqLen?: number };
  /** Copies of the model held at once (e.g. server workers). Default 1. */
  copies?: number;
}

/**
 * Checks the config (checkGPTConfig), then refuses it before anything is allocated when a
 * tensor would be larger than JavaScript can hold or the model (or a training step) needs
 * more memory than is available, saying how much it needs.
 */
export function checkGPTSize(config: GPTConfig, opts: GPTSizeOptions = {}): Required<GPTConfig> {
  const c = checkGPTConfig(config, opts);
  const e = new ConfigErrors(opts, 'GPT');
  const n = (k: keyof GPTConfig): string => `${e.name(k)} ${c[k] as number}`;
  const params = gptParameterCount(c);
  const copies = opts.copies ?? 1;
  const subject = `${e.subject} (${e.describe(c, ['nLayer', 'nHead', 'nEmbd', 'vocabSize', 'blockSize'])})`;
  const copiesText = copies > 1 ? `, ${copies} copies` : '';
  checkFits(e, params * BYTES_PER_PARAMETER.inference * copies,
    (need) => `${subject} needs ${need} for ${formatCount(params)} parameters (float32${copiesText})`);
  checkTensorElements(e, `the token embedding (${n('vocabSize')} x ${n('nEmbd')})`, c.vocabSize * c.nEmbd);
  checkTensorElements(e, `the position embedding (${n('blockSize')} x ${n('nEmbd')})`, c.blockSize * c.nEmbd);
  checkTensorElements(e, `an MLP weight (4 x ${n('nEmbd')} x ${n('nEmbd')})`, 4 * c.nEmbd * c.nEmbd);
  const t = opts.training;
  if (t) {
    const T = t.seqLen ?? c.blockSize;
    const device = opts.device ?? 'cpu';
    const state = params * BYTES_PER_PARAMETER.training;
    const step = `a training step of ${e.name('batchSize')} ${t.batchSize} x ${e.name('blockSize')} ${T}`;
    const act = gptActivationBytes(c, t.batchSize, T);
    checkFits(e, state + act, (need) => `${subject}: ${step} needs ${need}${device === 'cpu' ? '' : ` on ${device}`} (${formatBytes(act)} of activations, ` +
      `${formatBytes(state)} for ${formatCount(params)} parameters with their gradients and AdamW moments)`, device);
    checkTensorElements(e, `${step}: the token batch`, t.batchSize * T);
    if (device === 'cpu') checkTensorElements(e, `${step}: its logits (x ${n('vocabSize')})`, t.batchSize * T * c.vocabSize);
  }
  return c;
}

/**
 * Reads config.json of a directory written by save() (or a trainer checkpoint) and checks
 * it, its size and the header of model.safetensors against it (every tensor the config
 * implies is present with its shape, and no other), reading no weights and allocating no
 * model. Errors name the file and the field.
 */
export async function inspectGPTCheckpoint(dir: string, opts: GPTSizeOptions = {}): Promise<{ dir: string; config: Required<GPTConfig> }> {
  const op = opts.op ?? 'GPT.load';
  const d = await resolveCheckpointDir(dir);
  const file = path.join(d, 'config.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new Error(`nodegrad: ${op}: cannot read ${file}: ${(e as Error).message}`);
  }
  const src = { ...opts, op, file };
  checkGPTConfig(raw as GPTConfig, src);
  const r = raw as Record<string, unknown>;
  const config = checkGPTSize({
    vocabSize: r.vocabSize, blockSize: r.blockSize, nLayer: r.nLayer, nHead: r.nHead, nEmbd: r.nEmbd,
    dropout: r.dropout, bias: r.bias, layerNormEps: r.layerNormEps,
  } as GPTConfig, src);
  const weights = path.join(d, 'model.safetensors');
  let reader: SafetensorsReader;
  try {
    reader = await openSafetensors(weights);
  } catch (e) {
    const m = (e as Error).message;
    throw new Error(m.startsWith('nodegrad:') ? m : `nodegrad: ${op}: cannot read ${weights}: ${m}`);
  }
  try {
    const want = gptParameterShapes(config);
    const names = new Set(want.map(([k]) => k));
    for (const [k, shape] of want) {
      if (!reader.has(k)) throw new Error(`nodegrad: ${op}: ${weights} has no tensor "${k}" (expected shape ${fmt(shape)} for the config in ${file})`);
      const got = reader.info(k).shape;
      if (fmt(got) !== fmt(shape)) {
        throw new Error(`nodegrad: ${op}: tensor "${k}" in ${weights} has shape ${fmt(got)} but the config in ${file} needs ${fmt(shape)}`);
      }
    }
    const extra = reader.keys().filter((k) => !names.has(k));
    if (extra.length) {
      throw new Error(`nodegrad: ${op}: ${weights} has tensors the config in ${file} has no place for: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? `, ... (${extra.length} in all)` : ''}`);
    }
  } finally {
    await reader.close();
  }
  return { dir: d, config };
}

export interface GPTForwardOptions {
  targets?: Tensor | null;
  kvCache?: LayerKVCache[];
  /** Key-padding mask [B, T] (1 = real token). */
  attentionMask?: Tensor | null;
  /** Positions [B, T] or [T] (int32); default past..past+T-1 (e.g. per-row positions for left-padded batches). */
  positionIds?: Tensor | null;
}

export class GPT extends Module {
  readonly config: Required<GPTConfig>;
  wte: Embedding;
  wpe: Embedding;
  drop: Dropout;
  h: ModuleList<Block>;
  lnF: LayerNorm;

  static preset(name: string, overrides: Partial<GPTConfig> = {}): GPTConfig {
    const p = PRESETS[name];
    if (!p) throw new Error(`nodegrad: GPT.preset: unknown preset '${name}' (known: ${Object.keys(PRESETS).join(', ')})`);
    return { ...p, ...overrides };
  }
  static presets(): string[] { return Object.keys(PRESETS); }

  constructor(config: GPTConfig) {
    super();
    const c = checkGPTSize(config);
    this.config = c;
    this.wte = new Embedding(c.vocabSize, c.nEmbd);
    this.wpe = new Embedding(c.blockSize, c.nEmbd);
    this.drop = new Dropout(c.dropout);
    this.h = new ModuleList(Array.from({ length: c.nLayer }, () => new Block(c.nEmbd, { nHead: c.nHead, bias: c.bias, dropout: c.dropout, norm: 'pre', activation: 'tanh', eps: c.layerNormEps })));
    this.lnF = new LayerNorm(c.nEmbd, { bias: c.bias, eps: c.layerNormEps });
    this.initWeights();
  }

  private initWeights(): void {
    const c = this.config;
    noGrad(() => {
      for (const [name, m] of this.namedModules()) {
        if (m instanceof Linear) {
          const std = name.endsWith('cProj') ? 0.02 / Math.sqrt(2 * c.nLayer) : 0.02;
          m.weight.copy_(randn(m.weight.shape as number[], { std }));
          m.bias?.zero_();
        } else if (m instanceof Embedding) {
          m.weight.copy_(randn(m.weight.shape as number[], { std: 0.02 }));
        }
      }
    });
  }

  forward(inputIds: Tensor, opts: GPTForwardOptions = {}): { logits: Tensor; loss?: Tensor } {
    const c = this.config;
    if (inputIds.dtype !== 'int32' || inputIds.ndim !== 2) {
      throw new Error(`nodegrad: GPT.forward: inputIds must be an int32 tensor [B, T] (got ${inputIds.dtype} ${fmt(inputIds.shape)})`);
    }
    const [B, T] = inputIds.shape;
    const past = opts.kvCache?.[0]?.k?.shape[2] ?? 0;
    if (past + T > c.blockSize) {
      throw new Error(`nodegrad: GPT.forward: sequence length ${past + T} exceeds blockSize ${c.blockSize}`);
    }
    const pos = opts.positionIds ?? arange(past, past + T, 1, { device: inputIds.device });
    if (opts.positionIds && (pos.dtype !== 'int32' || pos.shape[pos.ndim - 1] !== T || pos.ndim > 2 || (pos.ndim === 2 && pos.shape[0] !== B))) {
      throw new Error(`nodegrad: GPT.forward: positionIds must be int32 [${B}, ${T}] or [${T}] (got ${pos.dtype} ${fmt(pos.shape)})`);
    }
    let x = add(this.wte.forward(inputIds), this.wpe.forward(pos));
    x = this.drop.forward(x);
    let i = 0;
    const ckpt = c.checkpoint && this.training && !opts.kvCache && isGradEnabled();
    for (const block of this.h) {
      const o = { isCausal: true, kvCache: opts.kvCache?.[i++], keyPaddingMask: opts.attentionMask };
      x = ckpt ? checkpoint((xx) => block.forward(xx, o), x) : block.forward(x, o);
    }
    x = this.lnF.forward(x);
    const t = opts.targets;
    if (t && (t.dtype !== 'int32' || t.shape.join(',') !== `${B},${T}`)) {
      throw new Error(`nodegrad: GPT.forward: targets must be int32 [${B}, ${T}] (got ${t.dtype} ${fmt(t.shape)})`);
    }
    const multiple = c.padVocabMultiple || (x.device === 'cpu' ? 1 : 64);
    const V = c.vocabSize, Vp = Math.ceil(V / multiple) * multiple;
    if (Vp !== V) {
      // The tied head runs on a vocabulary padded to a multiple of 64 on the GPU (aligned
      // rows for the GEMM and the vectorised cross-entropy); the padded logits get -inf
      // from the bias epilogue, so they take no probability, and the caller sees [B, T, V].
      const w = lowPrecision(this.wte.weight);
      const pad = zeros([Vp - V, c.nEmbd], { dtype: w.dtype, device: w.device });
      const bias = this.padBias(Vp, V, w.dtype, w.device);
      const padded = linear(x, cat([w, pad], 0), bias);
      const logits = narrow(padded, -1, 0, V);
      if (!t) return { logits };
      const loss = crossEntropy(reshape(padded, [B * T, Vp]), reshape(t, [B * T]), { ignoreIndex: -100 });
      return { logits, loss };
    }
    const logits = linear(x, this.wte.weight); // tied output projection
    if (!t) return { logits };
    const loss = crossEntropy(reshape(logits, [B * T, V]), reshape(t, [B * T]), { ignoreIndex: -100 });
    return { logits, loss };
  }

  private padBiasCache: Tensor | null = null;
  /** [Vp]: 0 for the real vocabulary, -inf for the padding (cached; no gradient). */
  private padBias(Vp: number, V: number, dtype: Tensor['dtype'], device: Tensor['device']): Tensor {
    const b = this.padBiasCache;
    if (b && !b.isDisposed && b.dtype === dtype && b.device === device && b.shape[0] === Vp) return b;
    b?.dispose();
    const host = new Float32Array(Vp);
    host.fill(-Infinity, V);
    const f = tensor(host, { device });
    const cast = f.to(dtype);
    if (cast !== f) f.dispose();
    this.padBiasCache = keep(cast);
    return cast;
  }

  /** Number of parameters; excludes position embeddings when nonEmbedding (as nanoGPT reports). */
  numParams(nonEmbedding = false): number {
    const n = this.numParameters();
    return nonEmbedding ? n - this.wpe.weight.numel : n;
  }

  /** Training FLOPs per token: 6N + 6·L·C·T (forward + backward, attention included). */
  flopsPerToken(seqLen = this.config.blockSize): number {
    const c = this.config;
    return 6 * this.numParams(true) + 6 * c.nLayer * c.nEmbd * seqLen;
  }

  /**
   * Writes config.json + model.safetensors (and any extra files, e.g. tokenizer.json) to
   * dir atomically: a reader sees the old checkpoint or the new one, never a mix.
   */
  async save(dir: string, extraFiles: Record<string, FileContents> = {}): Promise<void> {
    await writeDirAtomic(dir, {
      'config.json': JSON.stringify({ modelType: 'nodegrad-gpt', ...this.config }, null, 2),
      'model.safetensors': safetensorsWriter(this.stateDict(), { format: 'nodegrad' }),
      ...extraFiles,
    });
  }

  /**
   * Loads a model written by save() (or a trainer checkpoint directory). The config and the
   * weights' header are checked before the model is built (inspectGPTCheckpoint).
   */
  static async load(dir: string): Promise<GPT> {
    const { dir: d, config } = await inspectGPTCheckpoint(dir);
    const model = new GPT(config);
    const { tensors } = await loadSafetensors(path.join(d, 'model.safetensors'));
    try {
      model.loadStateDict(tensors);
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
    return model;
  }

  /** float32 bytes of the activations a training micro-batch keeps for backward (see gptActivationBytes). */
  activationBytes(batchSize: number, seqLen = this.config.blockSize): number {
    return gptActivationBytes(this.config, batchSize, seqLen);
  }

  newKVCache(): LayerKVCache[] { return emptyKVCache(this.config.nLayer); }

  /** The context length (blockSize): generation and serving never attend over more. */
  get maxSequenceLength(): number { return this.config.blockSize; }

  /** A preallocated KV cache for batchSize rows and `capacity` positions (see decodeStep). */
  newDecodeCache(batchSize: number, capacity: number): KVCache {
    const c = this.config, w = this.wte.weight;
    return new KVCache({ nLayer: c.nLayer, batchSize, numHeads: c.nHead, headDim: c.nEmbd / c.nHead, capacity, dtype: w.dtype, device: w.device });
  }

  /**
   * One incremental-decoding step (generate.ts's Generator): inputIds [B, T] after the
   * cache's columns, at `positions` [B, T] (default: the next T positions) and with a
   * key-padding mask over cache and new columns; returns the last position's float32
   * logits [B, V]. Only the last position goes through the final norm and the head.
   */
  decodeStep(inputIds: Tensor, cache: KVCache, opts: DecodeStepOptions = {}): Tensor {
    const T = inputIds.shape[1], past = cache.length;
    const pos = opts.positions ?? arange(past, past + T, 1, { device: inputIds.device });
    let x = add(this.wte.forward(inputIds), this.wpe.forward(pos));
    let i = 0;
    for (const block of this.h) x = block.forward(x, { isCausal: true, kvCache: cache.layers[i++], keyPaddingMask: opts.attentionMask });
    const logits = linear(this.lnF.forward(x.select(1, T - 1)), this.wte.weight);
    return logits.dtype === 'float32' ? logits : cast(logits, 'float32');
  }

  generate(inputIds: Tensor | number[][] | number[], opts: GenerateOptions = {}): number[][] {
    return generate(this, inputIds, opts);
  }
  generateStream(inputIds: Tensor | number[][] | number[], opts: GenerateOptions = {}): AsyncGenerator<number[]> {
    return generateStream(this, inputIds, opts);
  }

  /** Loads a Hugging Face GPT-2 directory (config.json + model.safetensors or its shards), in eval mode. */
  static async fromPretrained(dir: string): Promise<GPT> { return loadGPT2Pretrained(dir); }
  /** Writes a Hugging Face GPT2LMHeadModel directory that transformers loads as is. */
  async savePretrained(dir: string, opts: SavePretrainedOptions = {}): Promise<void> { await saveGPT2Pretrained(this, dir, opts); }
}
