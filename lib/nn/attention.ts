// Multi-head attention with a fused QKV projection, causal or key-padding masks, and a
// KV cache for decoding; the transformer Block (pre-LN as GPT-2, post-LN as BERT).
import { keep } from '../memory.js';
import { scaledDotProductAttention } from '../ops/attention.js';
import { arange } from '../ops/creation.js';
import { addLayerNorm } from '../ops/layernorm.js';
import { cast, le, logicalAnd } from '../ops/elementwise.js';
import { cat, reshape } from '../ops/shape.js';
import { add } from '../ops/elementwise.js';
import type { Tensor } from '../tensor.js';
import { fmt } from '../ops/check.js';
import { Dropout, GELU, LayerNorm, Linear } from './layers.js';
import { Module } from './module.js';
import { KVCacheLayer } from './kv_cache.js';

/** Keys and values of earlier positions for one attention layer ([B, H, Tpast, D] each). */
export interface LayerKVCache { k: Tensor | null; v: Tensor | null }

export function emptyKVCache(nLayer: number): LayerKVCache[] {
  return Array.from({ length: nLayer }, () => ({ k: null, v: null }));
}

export function disposeKVCache(cache: LayerKVCache[]): void {
  for (const c of cache) {
    c.k?.dispose();
    c.v?.dispose();
    c.k = c.v = null;
  }
}

export interface AttentionOptions {
  /** Key-padding mask [B, Tk]: nonzero/true = attend (Hugging Face's attention_mask). */
  keyPaddingMask?: Tensor | null;
  isCausal?: boolean;
  /** Keys and values of earlier positions: grown by concatenation, or a preallocated KVCacheLayer written in place. */
  kvCache?: LayerKVCache | KVCacheLayer;
}

export class MultiheadAttention extends Module {
  cAttn: Linear;
  cProj: Linear;
  attnDropout: number;
  residDropout: Dropout;
  readonly headDim: number;

  constructor(readonly embedDim: number, readonly numHeads: number, opts: { bias?: boolean; dropout?: number } = {}) {
    super();
    if (!Number.isInteger(numHeads) || numHeads <= 0 || embedDim % numHeads !== 0) {
      throw new Error(`nodegrad: MultiheadAttention: embedDim ${embedDim} must be divisible by numHeads ${numHeads}`);
    }
    this.headDim = embedDim / numHeads;
    this.cAttn = new Linear(embedDim, 3 * embedDim, { bias: opts.bias });
    this.cProj = new Linear(embedDim, embedDim, { bias: opts.bias });
    this.attnDropout = opts.dropout ?? 0;
    this.residDropout = new Dropout(opts.dropout ?? 0);
  }

  forward(x: Tensor, opts: AttentionOptions = {}): Tensor {
    if (x.ndim !== 3 || x.shape[2] !== this.embedDim) {
      throw new Error(`nodegrad: MultiheadAttention: input must be [B, T, ${this.embedDim}] (got ${fmt(x.shape)})`);
    }
    const [B, T] = x.shape;
    const H = this.numHeads, D = this.headDim;
    const qkv = reshape(this.cAttn.forward(x), [B, T, 3, H, D]).permute(2, 0, 3, 1, 4); // [3, B, H, T, D]
    const q = qkv.select(0, 0);
    let k = qkv.select(0, 1), v = qkv.select(0, 2);
    const cache = opts.kvCache;
    let past = 0;
    if (cache instanceof KVCacheLayer) {
      // preallocated cache: this step's columns are written in place
      past = cache.length;
      ({ k, v } = cache.append(k, v));
    } else if (cache) {
      if (cache.k && cache.v) {
        past = cache.k.shape[2];
        const k2 = cat([cache.k, k], 2), v2 = cat([cache.v, v], 2);
        cache.k.dispose();
        cache.v.dispose();
        k = k2;
        v = v2;
      } else {
        k = k.contiguous();
        v = v.contiguous();
      }
      cache.k = keep(k);
      cache.v = keep(v);
    }
    const Tk = past + T;
    let mask: Tensor | null = null;
    let isCausal = opts.isCausal ?? false;
    if (isCausal && past > 0) {
      // queries sit at positions past..past+T-1: query i sees keys j <= past + i
      if (T > 1) {
        const qi = reshape(arange(past, past + T, 1, { device: q.device }), [T, 1]);
        const kj = reshape(arange(0, Tk, 1, { device: q.device }), [1, Tk]);
        mask = le(kj, qi);
      }
      isCausal = false;
    }
    if (opts.keyPaddingMask) {
      const m = opts.keyPaddingMask;
      if (m.ndim !== 2 || m.shape[0] !== B || m.shape[1] !== Tk) {
        throw new Error(`nodegrad: MultiheadAttention: keyPaddingMask must be [B, Tk] = [${B}, ${Tk}] (got ${fmt(m.shape)})`);
      }
      const pad = reshape(cast(m, 'bool'), [B, 1, 1, Tk]);
      if (isCausal) {
        const qi = reshape(arange(0, T, 1, { device: q.device }), [T, 1]);
        const kj = reshape(arange(0, Tk, 1, { device: q.device }), [1, Tk]);
        mask = logicalAnd(pad, le(kj, qi));
        isCausal = false;
      } else {
        mask = mask ? logicalAnd(pad, mask) : pad;
      }
    }
    const y = scaledDotProductAttention(q, k, v, {
      isCausal, attnMask: mask ?? undefined, dropoutP: this.training ? this.attnDropout : 0,
    }); // [B, H, T, D]
    const merged = reshape(y.transpose(1, 2), [B, T, this.embedDim]);
    return this.residDropout.forward(this.cProj.forward(merged));
  }
}

export class MLP extends Module {
  cFc: Linear;
  act: GELU;
  cProj: Linear;
  dropout: Dropout;
  constructor(embedDim: number, hidden: number, opts: { bias?: boolean; dropout?: number; approximate?: 'none' | 'tanh' } = {}) {
    super();
    this.cFc = new Linear(embedDim, hidden, { bias: opts.bias });
    this.act = new GELU(opts.approximate ?? 'tanh');
    this.cProj = new Linear(hidden, embedDim, { bias: opts.bias });
    this.dropout = new Dropout(opts.dropout ?? 0);
  }
  forward(x: Tensor): Tensor {
    return this.dropout.forward(this.cProj.forward(this.act.forward(this.cFc.forward(x))));
  }
}

export interface BlockOptions {
  nHead: number;
  bias?: boolean;
  dropout?: number;
  /** 'pre' (GPT-2: x + f(LN(x))) or 'post' (BERT: LN(x + f(x))). */
  norm?: 'pre' | 'post';
  eps?: number;
  mlpHidden?: number;
  activation?: 'none' | 'tanh';
}

export class Block extends Module {
  ln1: LayerNorm;
  attn: MultiheadAttention;
  ln2: LayerNorm;
  mlp: MLP;
  readonly norm: 'pre' | 'post';
  constructor(readonly nEmbd: number, opts: BlockOptions) {
    super();
    this.norm = opts.norm ?? 'pre';
    this.ln1 = new LayerNorm(nEmbd, { eps: opts.eps, bias: opts.bias });
    this.attn = new MultiheadAttention(nEmbd, opts.nHead, { bias: opts.bias, dropout: opts.dropout });
    this.ln2 = new LayerNorm(nEmbd, { eps: opts.eps, bias: opts.bias });
    this.mlp = new MLP(nEmbd, opts.mlpHidden ?? 4 * nEmbd, { bias: opts.bias, dropout: opts.dropout, approximate: opts.activation });
  }
  forward(x: Tensor, opts: AttentionOptions = {}): Tensor {
    if (this.norm === 'pre') {
      const a = this.attn.forward(this.ln1.forward(x), opts);
      if (x.device !== 'cpu') {
        // one kernel for the residual add and the second norm (h and LN(h) in one pass)
        const { sum: h, out } = addLayerNorm(x, a.dtype === x.dtype ? a : cast(a, x.dtype), this.ln2.normalizedShape,
          this.ln2.weight, this.ln2.bias, this.ln2.eps);
        return add(h, this.mlp.forward(out));
      }
      const h = add(x, a);
      return add(h, this.mlp.forward(this.ln2.forward(h)));
    }
    const h = this.ln1.forward(add(x, this.attn.forward(x, opts)));
    return this.ln2.forward(add(h, this.mlp.forward(h)));
  }
}
