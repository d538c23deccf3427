// The Llama family's ops (Llama, Mistral, Qwen2/3): RMSNorm (and its pre-norm residual
// form), rotary position embeddings (HF's rotate_half convention) and SwiGLU, each one
// native kernel per direction on the CPU (float32, float64) and on CUDA (float32,
// bfloat16, float16). Grouped-query and sliding-window attention are options of
// scaledDotProductAttention (lib/ops/attention.ts).
//
// Half precision follows HF's rounding order: on CUDA inside the kernels; on the CPU
// (no half kernels) the ops are composed from float32 kernels and half-precision public
// ops in HF's order. float64 on CUDA (no fp64 kernels) runs the composed versions.
import type { TypedArray } from '../dtype.js';
import { needsGrad, noGrad, record } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { add, cast, mul, rsqrt, silu, sub } from './elementwise.js';
import { tensor } from './creation.js';
import { mean } from './reduce.js';
import { cat, contiguous, narrow } from './shape.js';
import { empty } from './alloc.js';
import { checkFloat, checkSameDevice, checkTensor, fmt } from './check.js';
import { flat } from './native_args.js';

declare module '../native.js' {
  interface NativeAddon {
    rmsnormForward(x: TypedArray, residual: TypedArray | null, sum: TypedArray | null, weight: TypedArray | null,
      y: TypedArray, rstd: TypedArray | null, rows: number, C: number, eps: number): void;
    rmsnormBackward(g: TypedArray, x: TypedArray, weight: TypedArray | null, rstd: TypedArray | null,
      gx: TypedArray | null, gw: TypedArray | null, rows: number, C: number, eps: number): void;
    ropeForward(x: TypedArray, xOffset: number, xStrides: number[], out: TypedArray, outOffset: number,
      outStrides: number[], dims: number[], invFreq: Float64Array, positions: TypedArray | null,
      positionsBatchStride: number, positionOffset: number, attentionScaling: number, inverse: boolean): void;
    swigluForward(gate: TypedArray, up: TypedArray, y: TypedArray, n: number): void;
    swigluBackward(dy: TypedArray, gate: TypedArray, up: TypedArray, dgate: TypedArray | null, dup: TypedArray | null,
      n: number): void;
  }
}

function err(op: string, what: string): Error {
  return new Error(`nodegrad: ${op}: ${what}`);
}

const isHalf = (t: Tensor): boolean => t.dtype === 'bfloat16' || t.dtype === 'float16';

/** Whether the native kernels take t's dtype on its device (else the op is composed). */
function nativeFor(t: Tensor): boolean {
  if (t.device === 'cpu') return t.dtype === 'float32' || t.dtype === 'float64';
  return t.device.startsWith('cuda') && t.dtype !== 'float64';
}

/** A contiguous version of t and whether it is a new tensor (to be disposed). */
function dense(t: Tensor): [Tensor, boolean] {
  const c = contiguous(t);
  return [c, c !== t];
}

/** The buffer handed to the addon: t's elements from its offset (t contiguous). */
function buf(t: Tensor, op: string): TypedArray {
  return flat(t, op);
}

/** An upstream gradient as the kernels take it: x's dtype (CUDA) and contiguous. */
function gradOf(g: Tensor, x: Tensor): [Tensor, () => void] {
  const g0 = g.dtype !== x.dtype ? cast(g, x.dtype) : g;
  const gc = contiguous(g0);
  return [gc, () => {
    if (gc !== g0) gc.dispose();
    if (g0 !== g) g0.dispose();
  }];
}

// ---- RMSNorm -------------------------------------------------------------------------------

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

/** rmsNorm from public ops, in HF's order (the reference, and float64 on CUDA). */
export function rmsNormComposed(x: Tensor, weight: Tensor | null, eps = 1e-6): Tensor {
  const xf = isHalf(x) ? cast(x, 'float32') : x;
  const h = cast(mul(xf, rsqrt(add(mean(mul(xf, xf), -1, true), eps))), x.dtype);
  return weight ? mul(weight, h) : h;
}

/**
 * Root-mean-square normalisation over the last dim (HF's LlamaRMSNorm):
 * y = weight * (x / sqrt(mean(x²) + eps)), normalised in float32 for bfloat16/float16
 * input and rounded to the input's dtype before the weight multiplies it (HF's order).
 * weight (or null) is [C] of the input's dtype. One native kernel each way; the
 * backward gives x and weight their gradients in one pass (the weight's deterministic).
 */
export function rmsNorm(x: Tensor, weight: Tensor | null, eps = 1e-6): Tensor {
  const op = 'rmsNorm';
  const w = weight ?? null;
  checkNormArgs(op, x, w, eps);
  checkSameDevice(op, x, w);
  if (x.device === 'cpu' && isHalf(x)) {
    // HF's order with the float32 kernel: normalise in float32, round, then scale in half
    const h = cast(rmsNorm(cast(x, 'float32'), null, eps), x.dtype);
    return w ? mul(w, h) : h;
  }
  if (!nativeFor(x)) return rmsNormComposed(x, w, eps);
  return rmsNative(op, x, null, w, eps).out;
}

/**
 * One native forward: out = rmsNorm(x) or, with a residual, sum = x + residual and
 * out = rmsNorm(sum); records the backward(s).
 */
function rmsNative(op: string, x: Tensor, residual: Tensor | null, w: Tensor | null, eps: number): { sum: Tensor | null; out: Tensor } {
  const device = x.device;
  const C = x.shape[x.ndim - 1];
  const rows = C === 0 ? 0 : x.numel / C;
  const grad = needsGrad(x, residual, w);
  const statDType = x.dtype === 'float64' ? 'float64' : 'float32';
  const rstd = grad ? empty([rows], statDType, device, false) : null;
  const [sum, out] = noGrad(() => {
    const [xc, dx] = dense(x);
    const [rc, dr] = residual ? dense(residual) : [null, false];
    const [wc, dw] = w ? dense(w) : [null, false];
    const s = residual ? empty(x.shape, x.dtype, device, false) : null;
    const y = empty(x.shape, x.dtype, device, false);
    native.rmsnormForward(buf(xc, op), rc && buf(rc, op), s && s.storage.data, wc && buf(wc, op), y.storage.data,
      rstd && rstd.storage.data, rows, C, eps);
    if (dx) xc.dispose();
    if (dr) rc!.dispose();
    if (dw) wc!.dispose();
    return [s, y] as const;
  });
  if (sum && needsGrad(x, residual)) record(sum, 'add', [x, residual], (g) => [g, g], []);
  const xn = sum ?? x;  // what was normalised
  if (grad) recordRmsBackward(out, xn, w, rstd!, eps);
  else if (rstd) rstd.dispose();
  return { sum, out };
}

function recordRmsBackward(out: Tensor, x: Tensor, w: Tensor | null, rstd: Tensor, eps: number): void {
  const C = x.shape[x.ndim - 1];
  const rows = C === 0 ? 0 : x.numel / C;
  const wantX = needsGrad(x), wantW = needsGrad(w);
  record(out, 'rmsNorm', [x, w], (g) => {
    const op = 'rmsNorm backward';
    const [gc, done] = gradOf(g, x);
    const [xc, dx] = dense(x);
    const [wc, dw] = w ? dense(w) : [null, false];
    const gx = wantX ? empty(x.shape, x.dtype, x.device, false) : null;
    const gw = wantW ? empty([C], x.dtype, x.device, false) : null;
    // the saved rstd is used while it lives; when a scope has freed it, it is recomputed
    native.rmsnormBackward(buf(gc, op), buf(xc, op), wc && buf(wc, op), rstd.isDisposed ? null : rstd.storage.data,
      gx && gx.storage.data, gw && gw.storage.data, rows, C, eps);
    done();
    if (dx) xc.dispose();
    if (dw) wc!.dispose();
    return [gx, gw];
  }, [x, w]);
}

/**
 * The pre-norm residual step in one op: sum = x + residual, out = rmsNorm(sum, weight,
 * eps); returns both (sum is the new residual stream). x and residual have the same
 * shape, dtype and device. One native kernel reads x and residual once and writes sum
 * and out (CPU float32/float64 and CUDA); elsewhere add() then rmsNorm().
 */
export function addRmsNorm(x: Tensor, residual: Tensor, weight: Tensor | null, eps = 1e-6): { sum: Tensor; out: Tensor } {
  const op = 'addRmsNorm';
  const w = weight ?? null;
  checkNormArgs(op, x, w, eps);
  checkTensor(residual, op, 'residual');
  if (fmt(residual.shape) !== fmt(x.shape)) {
    throw err(op, `residual has shape ${fmt(residual.shape)}, expected the input's shape ${fmt(x.shape)}`);
  }
  if (residual.dtype !== x.dtype) {
    throw err(op, `residual has dtype ${residual.dtype} but the input is ${x.dtype}; convert one of them with .to()`);
  }
  checkSameDevice(op, x, residual, w);
  if (!nativeFor(x)) {
    const sum = add(x, residual);
    return { sum, out: rmsNorm(sum, w, eps) };
  }
  const r = rmsNative(op, x, residual, w, eps);
  return { sum: r.sum!, out: r.out };
}

// ---- rotary embedding ------------------------------------------------------------------------

export interface RotaryEmbeddingOptions {
  /** The D/2 inverse frequencies (HF's inv_freq, after any rope scaling). */
  invFreq: Float32Array | Float64Array;
  /** Position of the first time step when `positions` is not given (KV-cache decode). */
  positionOffset?: number;
  /** int32 positions, [T] or [B, T], on x's device. */
  positions?: Tensor | null;
  /** Multiplies cos and sin (HF's attention_scaling: llama3, yarn); 1 by default. */
  attentionScaling?: number;
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
    throw err(op, `invFreq must be a Float32Array or Float64Array (got ${inv === null ? 'null' : typeof inv})`);
  }
  if (inv.length !== D / 2) throw err(op, `invFreq has ${inv.length} entries, expected ${D / 2} (half the head dim of shape ${fmt(x.shape)})`);
  for (let i = 0; i < inv.length; i++) {
    if (!Number.isFinite(inv[i])) throw err(op, `invFreq must be finite (got ${inv[i]} at index ${i})`);
  }
  const sc = opts.attentionScaling ?? 1;
  if (typeof sc !== 'number' || !Number.isFinite(sc)) throw err(op, `attentionScaling must be a finite number (got ${String(sc)})`);
  const off = opts.positionOffset ?? 0;
  if (!Number.isSafeInteger(off) || off < 0 || off > 2 ** 31 - 1) {
    throw err(op, `positionOffset must be a non-negative integer below 2^31 (got ${String(off)})`);
  }
  const pos = opts.positions;
  if (pos !== undefined && pos !== null) {
    checkTensor(pos, op, 'positions');
    if (pos.dtype !== 'int32') throw err(op, `positions must be int32 (got ${pos.dtype})`);
    const ok = (pos.ndim === 1 && pos.shape[0] === T) || (pos.ndim === 2 && pos.shape[0] === B && pos.shape[1] === T);
    if (!ok) throw err(op, `positions has shape ${fmt(pos.shape)}, expected [${T}] or [${B},${T}] for x of shape ${fmt(x.shape)}`);
    if (off !== 0) throw err(op, 'give positions or positionOffset, not both');
    checkSameDevice(op, x, pos);
  }
}

/** cos and sin of the angles (the kernels' rule), shaped to broadcast against [B, H, T, D/2]. */
function angles(x: Tensor, opts: RotaryEmbeddingOptions): { cos: Tensor; sin: Tensor } {
  const [B, , T, D] = x.shape;
  const half = D / 2;
  const inv = opts.invFreq;
  const scaleBy = opts.attentionScaling ?? 1;
  const pos = opts.positions;
  const f64 = x.dtype === 'float64';
  let P: number[][];
  if (pos) {
    const v = Array.from(pos.dataSync() as ArrayLike<number>);
    P = pos.ndim === 1 ? [v] : Array.from({ length: B }, (_, b) => v.slice(b * T, (b + 1) * T));
  } else {
    const o = opts.positionOffset ?? 0;
    P = [Array.from({ length: T }, (_, t) => o + t)];
  }
  const c = new Float64Array(P.length * T * half), s = new Float64Array(P.length * T * half);
  const r = f64 ? (v: number): number => v : Math.fround;
  P.forEach((row, b) => row.forEach((p, t) => {
    for (let i = 0; i < half; i++) {
      const a = r(r(p) * r(inv[i]));
      c[(b * T + t) * half + i] = r(r(Math.cos(a)) * r(scaleBy));
      s[(b * T + t) * half + i] = r(r(Math.sin(a)) * r(scaleBy));
    }
  }));
  const shape = P.length === 1 ? [T, half] : [B, 1, T, half];
  const mk = (a: Float64Array): Tensor => tensor(a, { shape, dtype: f64 ? 'float64' : 'float32', device: x.device });
  return { cos: mk(c), sin: mk(s) };
}

/** rotaryEmbedding from public ops with an explicit cos/sin table (reference, float64 on CUDA). */
export function rotaryEmbeddingComposed(x: Tensor, opts: RotaryEmbeddingOptions): Tensor {
  const half = x.shape[3] / 2;
  const { cos, sin } = angles(x, opts);
  const xf = isHalf(x) ? cast(x, 'float32') : x;
  const x1 = narrow(xf, -1, 0, half), x2 = narrow(xf, -1, half, half);
  return cast(cat([sub(mul(x1, cos), mul(x2, sin)), add(mul(x2, cos), mul(x1, sin))], -1), x.dtype);
}

/** The kernel's arguments for positions: (buffer | null, batch stride, offset). */
function positionArgs(op: string, x: Tensor, opts: RotaryEmbeddingOptions): [TypedArray | null, number, number, Tensor | null] {
  const pos = opts.positions ?? null;
  if (!pos) return [null, 0, opts.positionOffset ?? 0, null];
  const pc = contiguous(pos);
  return [buf(pc, op), pos.ndim === 2 ? x.shape[2] : 0, 0, pc !== pos ? pc : null];
}

/** Strides of x over (b, h, t) when its last dim is contiguous, else null. */
function rowStrides(x: Tensor): number[] | null {
  if (x.shape[3] > 1 && x.strides[3] !== 1) return null;
  if (x.shape.some((n, i) => n > 1 && x.strides[i] === 0)) return null;  // expanded views share elements
  return [x.strides[0], x.strides[1], x.strides[2]];
}

function ropeCall(op: string, src: Tensor, srcStrides: number[], dst: Tensor, dstStrides: number[], dims: number[],
  inv: Float64Array, opts: RotaryEmbeddingOptions, inverse: boolean): void {
  const [pb, ps, po, tmp] = positionArgs(op, src, opts);
  src.assertLive(op);
  native.ropeForward(src.storage.data, src.offset, srcStrides, dst.storage.data, dst.offset, dstStrides, dims, inv, pb, ps,
    po, opts.attentionScaling ?? 1, inverse);
  if (tmp) tmp.dispose();
}

const f64Of = (a: Float32Array | Float64Array): Float64Array => (a instanceof Float64Array ? a : Float64Array.from(a));

/**
 * Rotary position embedding of x [B, H, T, D] (HF's apply_rotary_pos_emb with
 * rotate_half: element i pairs with i + D/2): out = x * cos + rotate_half(x) * sin, with
 * angle = position * invFreq[i] (formed in float32 as HF does, float64 for float64
 * input) and cos, sin multiplied by attentionScaling. Positions are positionOffset + t,
 * or `positions` ([T] or [B, T] int32). x may be a strided view whose last dim is
 * contiguous (e.g. q of a [B, T, H, D] projection transposed); the result is contiguous.
 * The kernel evaluates cos/sin itself (once per position and frequency); the backward
 * is the inverse rotation. bfloat16/float16 are computed in float32 and rounded once.
 */
export function rotaryEmbedding(x: Tensor, opts: RotaryEmbeddingOptions): Tensor {
  const op = 'rotaryEmbedding';
  checkRotary(op, x, opts);
  if (x.device === 'cpu' && isHalf(x)) return cast(rotaryEmbedding(cast(x, 'float32'), opts), x.dtype);
  if (!nativeFor(x)) return rotaryEmbeddingComposed(x, opts);
  const [B, H, T, D] = x.shape;
  const inv = f64Of(opts.invFreq);
  const dims = [B, H, T, D];
  const cst = [H * T * D, T * D, D];
  const out = noGrad(() => {
    const st = rowStrides(x);
    const xc = st ? x : contiguous(x);
    const y = empty(x.shape, x.dtype, x.device, false);
    ropeCall(op, xc, st ?? cst, y, cst, dims, inv, opts, false);
    if (xc !== x) xc.dispose();
    return y;
  });
  if (needsGrad(x)) {
    const pos = opts.positions ?? null;
    const o = { ...opts, invFreq: inv };
    record(out, op, [x], (g) => {
      const [gc, done] = gradOf(g, x);
      const gx = empty(x.shape, x.dtype, x.device, false);
      ropeCall('rotaryEmbedding backward', gc, cst, gx, cst, dims, inv, o, true);
      done();
      return [gx];
    }, [pos]);
  }
  return out;
}

/**
 * rotaryEmbedding written into x (no-grad inference, e.g. the KV-cache decode step).
 * x's last dim must be contiguous (any strides elsewhere). Bumps x's version counter.
 * Returns x.
 */
export function rotaryEmbedding_(x: Tensor, opts: RotaryEmbeddingOptions): Tensor {
  const op = 'rotaryEmbedding_';
  checkRotary(op, x, opts);
  if (needsGrad(x)) throw err(op, 'x requires grad; the in-place form is for inference (wrap it in noGrad() or use rotaryEmbedding)');
  const st = rowStrides(x);
  if (!st) throw err(op, `x must have a contiguous last dim and no expanded dims (got shape ${fmt(x.shape)}, strides ${fmt(x.strides)})`);
  if (!nativeFor(x)) {
    noGrad(() => {
      const r = rotaryEmbedding(x, opts);
      x.copy_(r);
      r.dispose();
    });
  } else {
    ropeCall(op, x, st, x, st, [...x.shape], f64Of(opts.invFreq), opts, false);
  }
  x.storage.bumpVersion(op);
  return x;
}

// ---- SwiGLU ------------------------------------------------------------------------------------

/**
 * silu(gate) * up (the Llama MLP's gating), one native kernel each way. gate and up have
 * the same shape, dtype and device. For bfloat16/float16, silu(gate) is rounded before
 * the product (HF's act_fn(gate) * up).
 */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  const op = 'swiglu';
  checkTensor(gate, op, 'gate');
  checkTensor(up, op, 'up');
  checkFloat(gate, op, 'gate');
  if (fmt(gate.shape) !== fmt(up.shape)) throw err(op, `gate and up must have the same shape (got ${fmt(gate.shape)} and ${fmt(up.shape)})`);
  if (gate.dtype !== up.dtype) throw err(op, `gate and up must have the same dtype (got ${gate.dtype} and ${up.dtype})`);
  checkSameDevice(op, gate, up);
  if (!nativeFor(gate)) return mul(silu(gate), up);
  const n = gate.numel;
  const out = noGrad(() => {
    const [gc, dg] = dense(gate), [uc, du] = dense(up);
    const y = empty(gate.shape, gate.dtype, gate.device, false);
    native.swigluForward(buf(gc, op), buf(uc, op), y.storage.data, n);
    if (dg) gc.dispose();
    if (du) uc.dispose();
    return y;
  });
  if (needsGrad(gate, up)) {
    const wantG = needsGrad(gate), wantU = needsGrad(up);
    record(out, op, [gate, up], (g) => {
      const bop = 'swiglu backward';
      const [gc, done] = gradOf(g, gate);
      const [ga, dga] = dense(gate), [ua, dua] = dense(up);
      const dgate = wantG ? empty(gate.shape, gate.dtype, gate.device, false) : null;
      const dup = wantU ? empty(up.shape, up.dtype, up.device, false) : null;
      native.swigluBackward(buf(gc, bop), buf(ga, bop), buf(ua, bop), dgate && dgate.storage.data, dup && dup.storage.data, n);
      done();
      if (dga) ga.dispose();
      if (dua) ua.dispose();
      return [dgate, dup];
    }, [gate, up]);
  }
  return out;
}
