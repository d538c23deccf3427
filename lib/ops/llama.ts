// The Llama family's ops (Llama, Mistral, Qwen2/3): RMSNorm (and its pre-norm residual
// form), rotary position embeddings (HF's rotate_half convention) and SwiGLU.
// Grouped-query and sliding-window attention are options of scaledDotProductAttention.
import { needsGrad } from '../autograd.js';
import type { Tensor } from '../tensor.js';
import { add, cast, mul, rsqrt, silu, sub } from './elementwise.js';
import { tensor } from './creation.js';
import { mean } from './reduce.js';
import { cat, narrow } from './shape.js';
import { checkFloat, checkSameDevice, checkTensor, fmt } from './util.js';

function err(op: string, what: string): Error {
  return new Error(`nodegrad: ${op}: ${what}`);
}

function checkNormArgs(op: string, x: Tensor, weight: Tensor | null, eps: number): void {
  checkTensor(x, op);
  checkFloat(x, op);
  if (x.ndim < 1) throw err(op, `the input needs at least 1 dim (got shape ${fmt(x.shape)})`);
  if (weight !== null) {
    checkTensor(weight, op, 'weight');
    const C = x.shape[x.ndim - 1];
    if (weight.ndim !== 1 || weight.shape[0] !== C) {
      throw err(op, `weight has shape ${fmt(weight.shape)}, expected [${C}] (the input's last dim)`);
    }
    if (weight.dtype !== x.dtype) {
      throw err(op, `weight has dtype ${weight.dtype} but the input is ${x.dtype}; convert one of them with .to()`);
    }
  }
  if (typeof eps !== 'number' || !(eps >= 0)) throw err(op, `eps must be a non-negative number (got ${String(eps)})`);
}

/**
 * Root-mean-square normalisation over the last dim (HF's LlamaRMSNorm):
 * y = weight * (x / sqrt(mean(x²) + eps)), normalised in float32 for bfloat16/float16
 * input and rounded to the input's dtype before the weight multiplies it (HF's order).
 */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps = 1e-6): Tensor {
  const op = 'rmsNorm';
  checkNormArgs(op, x, weight ?? null, eps);
  checkSameDevice(op, x, weight);
  const half = x.dtype === 'bfloat16' || x.dtype === 'float16';
  const xf = half ? cast(x, 'float32') : x;
  const h = cast(mul(xf, rsqrt(add(mean(mul(xf, xf), -1, true), eps))), x.dtype);
  return weight ? mul(weight, h) : h;
}

/** The pre-norm residual step: sum = x + residual, out = rmsNorm(sum, weight, eps). */
export function addRmsNorm(x: Tensor, residual: Tensor, weight: Tensor | null, eps = 1e-6): { sum: Tensor; out: Tensor } {
  const op = 'addRmsNorm';
  checkNormArgs(op, x, weight ?? null, eps);
  checkTensor(residual, op, 'residual');
  if (fmt(residual.shape) !== fmt(x.shape)) {
    throw err(op, `residual has shape ${fmt(residual.shape)}, expected the input's shape ${fmt(x.shape)}`);
  }
  if (residual.dtype !== x.dtype) {
    throw err(op, `residual has dtype ${residual.dtype} but the input is ${x.dtype}; convert one of them with .to()`);
  }
  checkSameDevice(op, x, residual, weight);
  const sum = add(x, residual);
  return { sum, out: rmsNorm(sum, weight ?? null, eps) };
}

export interface RotaryEmbeddingOptions {
  /** The D/2 inverse frequencies (HF's inv_freq, after any rope scaling). */
  invFreq: Float32Array | Float64Array;
  /** Position of the first time step when `positions` is not given (KV-cache decode). */
  positionOffset?: number;
  /** int32 positions, [T] or [B, T]. */
  positions?: Tensor;
  /** Multiplies cos and sin (HF's attention_scaling: llama3, yarn); 1 by default. */
  attentionScaling?: number;
}

/** cos and sin of the angles, shaped to broadcast against x [B, H, T, D/2]. */
function angles(x: Tensor, opts: RotaryEmbeddingOptions): { cos: Tensor; sin: Tensor } {
  const [B, , T, D] = x.shape;
  const half = D / 2;
  const inv = opts.invFreq;
  const scaleBy = opts.attentionScaling ?? 1;
  const pos = opts.positions;
  let P: number[][];
  if (pos) {
    const v = Array.from(pos.dataSync() as ArrayLike<number>);
    P = pos.ndim === 1 ? [v] : Array.from({ length: B }, (_, b) => v.slice(b * T, (b + 1) * T));
  } else {
    const o = opts.positionOffset ?? 0;
    P = [Array.from({ length: T }, (_, t) => o + t)];
  }
  const c = new Float64Array(P.length * T * half), s = new Float64Array(P.length * T * half);
  P.forEach((row, b) => row.forEach((p, t) => {
    for (let i = 0; i < half; i++) {
      const a = x.dtype === 'float64' ? p * inv[i] : Math.fround(Math.fround(p) * Math.fround(inv[i]));
      c[(b * T + t) * half + i] = Math.cos(a) * scaleBy;
      s[(b * T + t) * half + i] = Math.sin(a) * scaleBy;
    }
  }));
  const shape = P.length === 1 ? [T, half] : [B, 1, T, half];
  const mk = (a: Float64Array): Tensor => tensor(a, { shape, dtype: x.dtype === 'float64' ? 'float64' : 'float32', device: x.device });
  return { cos: mk(c), sin: mk(s) };
}

function checkRotary(op: string, x: Tensor, opts: RotaryEmbeddingOptions): void {
  checkTensor(x, op);
  checkFloat(x, op);
  if (x.ndim !== 4) throw err(op, `x must be [B, H, T, D] (got shape ${fmt(x.shape)})`);
  const [B, , T, D] = x.shape;
  if (D % 2 !== 0) throw err(op, `the head dim must be even (got shape ${fmt(x.shape)})`);
  if (!opts || typeof opts !== 'object') throw err(op, 'opts { invFreq } is required');
  const inv = opts.invFreq;
  if (!(inv instanceof Float32Array || inv instanceof Float64Array)) {
    throw err(op, 'invFreq must be a Float32Array or Float64Array');
  }
  if (inv.length !== D / 2) throw err(op, `invFreq has ${inv.length} entries, expected ${D / 2} (half the head dim of shape ${fmt(x.shape)})`);
  const sc = opts.attentionScaling ?? 1;
  if (typeof sc !== 'number' || !Number.isFinite(sc)) throw err(op, `attentionScaling must be a finite number (got ${String(sc)})`);
  const off = opts.positionOffset ?? 0;
  if (!Number.isSafeInteger(off) || off < 0) throw err(op, `positionOffset must be a non-negative integer (got ${String(off)})`);
  const pos = opts.positions;
  if (pos !== undefined && pos !== null) {
    checkTensor(pos, op, 'positions');
    if (pos.dtype !== 'int32') throw err(op, `positions must be int32 (got ${pos.dtype})`);
    const ok = (pos.ndim === 1 && pos.shape[0] === T) || (pos.ndim === 2 && pos.shape[0] === B && pos.shape[1] === T);
    if (!ok) throw err(op, `positions has shape ${fmt(pos.shape)}, expected [${T}] or [${B},${T}] for x of shape ${fmt(x.shape)}`);
    if (opts.positionOffset !== undefined && opts.positionOffset !== 0) throw err(op, 'give positions or positionOffset, not both');
    checkSameDevice(op, x, pos);
  }
}

/**
 * Rotary position embedding of x [B, H, T, D] (HF's apply_rotary_pos_emb with
 * rotate_half: element i pairs with i + D/2): out = x * cos + rotate_half(x) * sin, with
 * angle = position * invFreq[i] and cos, sin multiplied by attentionScaling.
 */
export function rotaryEmbedding(x: Tensor, opts: RotaryEmbeddingOptions): Tensor {
  const op = 'rotaryEmbedding';
  checkRotary(op, x, opts);
  const half = x.shape[3] / 2;
  const { cos, sin } = angles(x, opts);
  const x1 = narrow(x, -1, 0, half), x2 = narrow(x, -1, half, half);
  const out = cat([sub(mul(x1, cos), mul(x2, sin)), add(mul(x2, cos), mul(x1, sin))], -1);
  return cast(out, x.dtype);
}

/** rotaryEmbedding written into x (no-grad inference, e.g. the KV-cache decode step). */
export function rotaryEmbedding_(x: Tensor, opts: RotaryEmbeddingOptions): Tensor {
  const op = 'rotaryEmbedding_';
  checkRotary(op, x, opts);
  if (needsGrad(x)) throw err(op, 'x requires grad; the in-place form is for inference (wrap it in noGrad() or use rotaryEmbedding)');
  const r = rotaryEmbedding(x, opts);
  x.copy_(r);
  r.dispose();
  return x;
}

/** silu(gate) * up (the Llama MLP's gating). */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  const op = 'swiglu';
  checkTensor(gate, op, 'gate');
  checkTensor(up, op, 'up');
  checkFloat(gate, op);
  if (fmt(gate.shape) !== fmt(up.shape)) throw err(op, `gate and up must have the same shape (got ${fmt(gate.shape)} and ${fmt(up.shape)})`);
  if (gate.dtype !== up.dtype) throw err(op, `gate and up must have the same dtype (got ${gate.dtype} and ${up.dtype})`);
  checkSameDevice(op, gate, up);
  return mul(silu(gate), up);
}
