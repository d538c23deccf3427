// GPT-2: token + position embeddings, nLayer pre-LN blocks, final LayerNorm, and an
// output projection tied to the token embedding. Initialised as GPT-2 does: N(0, 0.02),
// residual projections scaled by 1/√(2·nLayer), zero biases.
import { isGradEnabled, noGrad } from '../autograd.js';
import { arange, randn, tensor, zeros } from '../ops/creation.js';
import { lowPrecision } from '../autocast.js';
import { keep } from '../memory.js';
import { crossEntropy } from '../ops/loss.js';
import { add } from '../ops/elementwise.js';
import { linear } from '../ops/matmul.js';
import { cat, narrow, reshape } from '../ops/shape.js';
import { fmt } from '../ops/util.js';
import type { Tensor } from '../tensor.js';
import { Block, emptyKVCache, type LayerKVCache } from '../nn/attention.js';
import { Dropout, Embedding, LayerNorm, Linear, ModuleList } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { checkpoint } from '../nn/checkpoint.js';
import { generate, generateStream, type GenerateOptions } from '../generate.js';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { resolveCheckpointDir, writeDirAtomic, type FileContents } from '../io/atomic.js';
import { loadSafetensors, safetensorsWriter } from '../io/safetensors.js';
import { loadGPT2Pretrained, saveGPT2Pretrained, type SavePretrainedOptions } from './hf.js';

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

export function checkGPTConfig(c: GPTConfig): Required<GPTConfig> {
  for (const k of ['vocabSize', 'blockSize', 'nLayer', 'nHead', 'nEmbd'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) throw new Error(`nodegrad: GPT: config.${k} must be a positive integer (got ${String(c[k])})`);
  }
  if (c.nEmbd % c.nHead !== 0) throw new Error(`nodegrad: GPT: nEmbd ${c.nEmbd} must be divisible by nHead ${c.nHead}`);
  const dropout = c.dropout ?? 0;
  if (!(dropout >= 0 && dropout < 1)) throw new Error(`nodegrad: GPT: dropout must be in [0, 1) (got ${dropout})`);
  const layerNormEps = c.layerNormEps ?? 1e-5;
  if (!(layerNormEps > 0)) throw new Error(`nodegrad: GPT: layerNormEps must be positive (got ${layerNormEps})`);
  const padVocabMultiple = c.padVocabMultiple ?? 0;
  if (!Number.isInteger(padVocabMultiple) || padVocabMultiple < 0) {
    throw new Error(`nodegrad: GPT: padVocabMultiple must be a non-negative integer (got ${String(c.padVocabMultiple)})`);
  }
  return { ...c, dropout, bias: c.bias ?? true, layerNormEps, checkpoint: c.checkpoint ?? false, padVocabMultiple };
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
    const c = checkGPTConfig(config);
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

  /** Loads a model written by save() (or a trainer checkpoint directory). */
  static async load(dir: string): Promise<GPT> {
    const d = await resolveCheckpointDir(dir);
    let config: GPTConfig;
    try {
      config = JSON.parse(await readFile(path.join(d, 'config.json'), 'utf8')) as GPTConfig;
    } catch (e) {
      throw new Error(`nodegrad: GPT.load: cannot read ${path.join(d, 'config.json')}: ${(e as Error).message}`);
    }
    const model = new GPT({
      vocabSize: config.vocabSize, blockSize: config.blockSize, nLayer: config.nLayer, nHead: config.nHead,
      nEmbd: config.nEmbd, dropout: config.dropout, bias: config.bias, layerNormEps: config.layerNormEps,
    });
    const { tensors } = await loadSafetensors(path.join(d, 'model.safetensors'));
    try {
      model.loadStateDict(tensors);
    } finally {
      for (const t of tensors.values()) t.dispose();
    }
    return model;
  }

  newKVCache(): LayerKVCache[] { return emptyKVCache(this.config.nLayer); }

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
