// Gradient clipping, PyTorch's clip_grad_norm_ and clip_grad_value_. The norm of all
// gradients together is one native call (multi-tensor, double accumulation), the
// scaling another. On CUDA both stay on the device: the norm and the clip coefficient
// are device scalars and the scale kernel reads the coefficient, so nothing waits for the
// GPU unless the norm is read (clipGradNorm returns a number and so reads it;
// clipGradNormTensor does not).
import { noGrad } from '../autograd.js';
import type { TypedArray } from '../dtype.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { tensor } from '../ops/creation.js';
import { clamp } from '../ops/elementwise.js';
import { contiguous } from '../ops/shape.js';
import { empty } from '../ops/alloc.js';
import { fmt } from '../ops/check.js';
import './optimizer.js';

declare module '../native.js' {
  interface NativeAddon {
    multiTensorNormDevice(tensors: TypedArray[], offsets: number[], numels: number[], p: number, normScale: number,
      outNorm: TypedArray | null, clipCoef: TypedArray | null, maxNorm: number): void;
    multiTensorScaleDevice(tensors: TypedArray[], offsets: number[], numels: number[], scale: TypedArray): void;
  }
}

function tensorsOf(params: Tensor | Iterable<Tensor>, op: string): Tensor[] {
  const list = params instanceof Tensor ? [params] : Array.from(params as Iterable<unknown>);
  list.forEach((p, i) => {
    if (!(p instanceof Tensor)) throw new Error(`nodegrad: ${op}: params[${i}] is not a Tensor (got ${typeof p})`);
  });
  return list as Tensor[];
}

function gradsOf(params: Tensor[], op: string): Tensor[] {
  const out: Tensor[] = [];
  for (const p of params) {
    const g = p.grad;
    if (g === null) continue;
    g.assertLive(op);
    if (g.device !== 'cpu' && g.dtype !== 'float32') {
      throw new Error(`nodegrad: ${op}: gradients on ${g.device} must be float32 (got ${g.dtype}, shape ${fmt(g.shape)})`);
    }
    if (g.dtype !== 'float32' && g.dtype !== 'float64') {
      throw new Error(`nodegrad: ${op}: gradients must be float32 or float64 (got ${g.dtype}, shape ${fmt(g.shape)})`);
    }
    if (out.length > 0 && g.device !== out[0].device) {
      throw new Error(`nodegrad: ${op}: gradients are on different devices (${out[0].device} and ${g.device})`);
    }
    out.push(g);
  }
  return out;
}

export interface ClipGradNormOptions {
  /** Throw when the total norm is NaN or infinite (default false). */
  errorIfNonfinite?: boolean;
}

/**
 * Scales the gradients of `params` in place so that their total `normType`-norm (all
 * gradients seen as one vector) is at most maxNorm: g *= maxNorm / (total + 1e-6) when
 * that factor is below 1. Returns the total norm before clipping. normType: a number
 * > 0, or Infinity / 'inf' for the largest absolute value.
 */
export function clipGradNorm(params: Tensor | Iterable<Tensor>, maxNorm: number, normType: number | 'inf' = 2,
  opts: ClipGradNormOptions = {}): number {
  const op = 'clipGradNorm';
  if (typeof maxNorm !== 'number' || !(maxNorm >= 0)) throw new Error(`nodegrad: ${op}: maxNorm must be a number >= 0 (got ${String(maxNorm)})`);
  const p = normType === 'inf' ? Infinity : normType;
  if (typeof p !== 'number' || !(p > 0)) throw new Error(`nodegrad: ${op}: normType must be a positive number or 'inf' (got ${String(normType)})`);
  const grads = gradsOf(tensorsOf(params, op), op);
  if (grads.length === 0) return 0;
  if (grads[0].device !== 'cpu') {
    // The device path; reading the number waits for the GPU.
    const t = clipOnDevice(grads, maxNorm, p, op);
    const total = t.item();
    t.dispose();
    if (opts.errorIfNonfinite && !Number.isFinite(total)) {
      throw new Error(`nodegrad: ${op}: the total norm of order ${p} of the gradients is non-finite (${total}), so it cannot be clipped`);
    }
    return total;
  }
  const temps: Tensor[] = [];
  const flats = grads.map((g) => {
    if (g.isContiguous()) return g;
    const c = contiguous(g);
    temps.push(c);
    return c;
  });
  let total: number;
  try {
    total = native.multiTensorNorm(flats.map((g) => g.storage.data), flats.map((g) => g.offset), flats.map((g) => g.numel), p);
  } finally {
    for (const t of temps) t.dispose();
  }
  if (opts.errorIfNonfinite && !Number.isFinite(total)) {
    throw new Error(`nodegrad: ${op}: the total norm of order ${p} of the gradients is non-finite (${total}), so it cannot be clipped`);
  }
  const coef = maxNorm / (total + 1e-6);
  // As PyTorch: a NaN norm also scales (making the gradients NaN rather than hiding it).
  if (!(coef >= 1)) scaleGrads(grads, coef);
  return total;
}

/**
 * clipGradNorm without reading the result: returns the total norm as a 1-element float32
 * tensor on the gradients' device. On CUDA nothing waits for the GPU (norm, coefficient
 * and scaling are all device work); on the CPU it is clipGradNorm's value in a tensor.
 */
export function clipGradNormTensor(params: Tensor | Iterable<Tensor>, maxNorm: number, normType: number | 'inf' = 2): Tensor {
  const op = 'clipGradNorm';
  if (typeof maxNorm !== 'number' || !(maxNorm >= 0)) throw new Error(`nodegrad: ${op}: maxNorm must be a number >= 0 (got ${String(maxNorm)})`);
  const p = normType === 'inf' ? Infinity : normType;
  if (typeof p !== 'number' || !(p > 0)) throw new Error(`nodegrad: ${op}: normType must be a positive number or 'inf' (got ${String(normType)})`);
  const list = tensorsOf(params, op);
  const grads = gradsOf(list, op);
  if (grads.length === 0 || grads[0].device === 'cpu') {
    return tensor(new Float32Array([clipGradNorm(list, maxNorm, normType)]), { dtype: 'float32' });
  }
  return clipOnDevice(grads, maxNorm, p, op);
}

// Norm and coefficient as device scalars, then the grads scaled by the coefficient.
function clipOnDevice(grads: Tensor[], maxNorm: number, p: number, op: string): Tensor {
  const device = grads[0].device;
  const norm = empty([1], 'float32', device), coef = empty([1], 'float32', device);
  const temps: Tensor[] = [];
  try {
    const flats = grads.map((g) => {
      if (g.isContiguous()) return g;
      const c = contiguous(g);
      temps.push(c);
      return c;
    });
    native.multiTensorNormDevice(flats.map((g) => g.storage.data), flats.map((g) => g.offset), flats.map((g) => g.numel),
      p, 1, norm.storage.data, coef.storage.data, maxNorm);
    const dense = grads.filter((g) => g.isContiguous());
    if (dense.length > 0) {
      native.multiTensorScaleDevice(dense.map((g) => g.storage.data), dense.map((g) => g.offset), dense.map((g) => g.numel),
        coef.storage.data);
      for (const g of dense) g.storage.bumpVersion(op);
    }
    noGrad(() => { for (const g of grads) if (!g.isContiguous()) g.mul_(coef); });
  } catch (e) {
    norm.dispose();
    throw e;
  } finally {
    for (const t of temps) t.dispose();
    coef.dispose();  // stream-ordered: its readers are queued already
  }
  return norm;
}

function scaleGrads(grads: Tensor[], coef: number): void {
  const dense = grads.filter((g) => g.isContiguous());
  const data: TypedArray[] = dense.map((g) => g.storage.data);
  native.multiTensorScale(data, dense.map((g) => g.offset), dense.map((g) => g.numel), coef);
  for (const g of dense) g.storage.bumpVersion('clipGradNorm');
  noGrad(() => { for (const g of grads) if (!g.isContiguous()) g.mul_(coef); });
}

/** Clamps every gradient of `params` in place to [-clipValue, clipValue]. */
export function clipGradValue(params: Tensor | Iterable<Tensor>, clipValue: number): void {
  const op = 'clipGradValue';
  if (typeof clipValue !== 'number' || !(clipValue >= 0)) {
    throw new Error(`nodegrad: ${op}: clipValue must be a number >= 0 (got ${String(clipValue)})`);
  }
  for (const g of gradsOf(tensorsOf(params, op), op)) {
    noGrad(() => {
      const c = clamp(g, -clipValue, clipValue);
      g.copy_(c);
      c.dispose();
    });
  }
}
