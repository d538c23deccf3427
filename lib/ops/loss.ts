// Losses: crossEntropy and nllLoss over class indices (fused kernels: the cross-entropy
// forward saves one log-sum-exp per row and its backward recomputes the softmax, so no
// [N, C] probability tensor is kept), binaryCrossEntropyWithLogits (fused, numerically
// stable), mseLoss (composed from public ops). Reductions follow PyTorch: 'mean' over
// class indices divides by the summed weight of the non-ignored targets.
import type { TypedArray } from '../dtype.js';
import { needsGrad, noGrad, record } from '../autograd.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { fullPrecision, isAutocastEnabled } from '../autocast.js';
import { cast, div, mul, sub } from './elementwise.js';
import { mean, sum, sumToShape } from './reduce.js';
import { contiguous, contiguousFor, expand } from './shape.js';
import { empty } from './alloc.js';
import { checkSameDevice, checkTensor, fmt, optionsArg, show } from './check.js';
import { broadcastShapes, numelOf } from './dims.js';
import { flat } from './native_args.js';

declare module '../native.js' {
  interface NativeAddon {
    crossEntropyForward(logits: TypedArray, targets: TypedArray, weight: TypedArray | null, N: number, C: number,
      I: number, ignoreIndex: number, labelSmoothing: number, loss: TypedArray, lse: TypedArray,
      total?: TypedArray): number | undefined;
    crossEntropyBackward(logits: TypedArray, targets: TypedArray, weight: TypedArray | null, N: number, C: number,
      I: number, ignoreIndex: number, labelSmoothing: number, lse: TypedArray, g: TypedArray, dlogits: TypedArray): void;
    nllLossForward(logProbs: TypedArray, targets: TypedArray, weight: TypedArray | null, N: number, C: number,
      I: number, ignoreIndex: number, loss: TypedArray, total?: TypedArray): number | undefined;
    nllLossBackward(dlogProbs: TypedArray, targets: TypedArray, weight: TypedArray | null, N: number, C: number,
      I: number, ignoreIndex: number, g: TypedArray): void;
    bceWithLogitsForward(x: TypedArray, y: TypedArray, posWeight: TypedArray | null, n: number, loss: TypedArray): void;
    bceWithLogitsBackward(x: TypedArray, y: TypedArray, posWeight: TypedArray | null, g: TypedArray, n: number,
      dx: TypedArray | null, dy: TypedArray | null, dposWeight: TypedArray | null): void;
  }
}

export type Reduction = 'mean' | 'sum' | 'none';

export interface CrossEntropyOptions {
  ignoreIndex?: number;
  labelSmoothing?: number;
  reduction?: Reduction;
  weight?: Tensor | null;
}
export interface NllLossOptions { ignoreIndex?: number; reduction?: Reduction; weight?: Tensor | null }
export interface BceWithLogitsOptions { reduction?: Reduction; posWeight?: Tensor | null; weight?: Tensor | null }

function checkReduction(r: unknown, op: string): Reduction {
  if (r === undefined) return 'mean';
  if (r !== 'mean' && r !== 'sum' && r !== 'none') {
    throw new Error(`nodegrad: ${op}: reduction must be 'mean', 'sum' or 'none' (got ${show(r)})`);
  }
  return r;
}

/** float32/float64 everywhere; bfloat16/float16 too on CUDA (fp32 math inside the kernels). */
function checkF32F64(t: Tensor, op: string, what: string): void {
  const half = t.dtype === 'bfloat16' || t.dtype === 'float16';
  if (t.dtype !== 'float32' && t.dtype !== 'float64' && !(half && t.device !== 'cpu')) {
    throw new Error(`nodegrad: ${op}: ${what} must be float32 or float64${t.device === 'cpu' ? '' : ', bfloat16 or float16'} ` +
      `(got ${t.dtype}, shape ${fmt(t.shape)})`);
  }
}

/** dtype of the saved log-sum-exp and of the 'mean' divisor: float64 for float64 logits, else float32. */
function accDtype(t: Tensor): Tensor['dtype'] {
  return t.dtype === 'float64' ? 'float64' : 'float32';
}

/**
 * The total weight of the non-ignored targets: a number on the CPU; on CUDA a 0-d device
 * tensor the kernel writes, so that nothing waits for the device inside a training step.
 */
function classTotal(x: Tensor, call: (total: TypedArray | undefined) => number | undefined): number | Tensor {
  if (x.device === 'cpu') return call(undefined) as number;
  const total = empty([], accDtype(x), x.device);
  call(total.storage.data);
  return total;
}

/** A contiguous copy (or t itself) with the given dtype, made without recording a node; `op` names an input's op in errors. */
function dense(t: Tensor, dtype: Tensor['dtype'], op?: string): Tensor {
  return noGrad(() => (op === undefined ? contiguous(cast(t, dtype)) : contiguousFor(cast(t, dtype), op)));
}

interface ClassShape { N: number; C: number; I: number; outShape: number[] }

// input [C] + target [], or [N, C, d1, ...] + target [N, d1, ...] (class dim at 1).
function classShape(x: Tensor, t: Tensor, op: string): ClassShape {
  if (t.dtype !== 'int32') {
    throw new Error(`nodegrad: ${op}: targets must be int32 class indices (got ${t.dtype}, shape ${fmt(t.shape)})`);
  }
  if (x.ndim === 0) throw new Error(`nodegrad: ${op}: input must have a class dimension (got a scalar)`);
  const expected = x.ndim === 1 ? [] : [x.shape[0], ...x.shape.slice(2)];
  if (fmt(t.shape) !== fmt(expected)) {
    throw new Error(`nodegrad: ${op}: input ${fmt(x.shape)} needs targets of shape ${fmt(expected)} (got ${fmt(t.shape)}; ` +
      'the class dimension is dim 1, as in PyTorch)');
  }
  const C = x.ndim === 1 ? x.shape[0] : x.shape[1];
  if (C === 0) throw new Error(`nodegrad: ${op}: input has no classes (shape ${fmt(x.shape)})`);
  const N = x.ndim === 1 ? 1 : x.shape[0];
  return { N, C, I: numelOf(x.shape.slice(2)), outShape: expected };
}

function classWeight(w: Tensor | null | undefined, x: Tensor, C: number, op: string): Tensor | null {
  if (w === undefined || w === null) return null;
  checkTensor(w, op, 'weight');
  if (w.ndim !== 1 || w.shape[0] !== C) {
    throw new Error(`nodegrad: ${op}: weight must have shape [${C}] (one per class; got ${fmt(w.shape)})`);
  }
  if (w.dtype !== 'float32' && w.dtype !== 'float64' && w.dtype !== 'bfloat16' && w.dtype !== 'float16') {
    throw new Error(`nodegrad: ${op}: weight must be floating-point (got ${w.dtype})`);
  }
  return dense(w, x.dtype, op);
}

function checkIgnoreIndex(ii: unknown, op: string): number {
  if (typeof ii !== 'number' || !Number.isInteger(ii) || Math.abs(ii) > 2 ** 31) {
    throw new Error(`nodegrad: ${op}: ignoreIndex must be an integer (got ${String(ii)})`);
  }
  return ii;
}

/**
 * Applies the reduction to per-row losses; 'mean' divides by `total` (the summed target
 * weight, a number or a 0-d device tensor). Half-precision losses are summed in float32
 * and rounded once.
 */
function reduceRows(loss: Tensor, reduction: Reduction, total: number | Tensor): Tensor {
  if (reduction === 'none') return loss;
  // Frees the per-row loss and the intermediates it consumed (sum and div save no values
  // of them, and a disposed tensor keeps its place in the graph): one left to the garbage
  // collector costs a fresh typed array on the next call, at [8192] rows as long as the
  // kernel itself.
  const half = loss.dtype === 'bfloat16' || loss.dtype === 'float16';
  const h = half ? cast(loss, 'float32') : loss;
  let r = sum(h);
  if (h !== loss) h.dispose();
  loss.dispose();
  if (reduction === 'mean') {
    const s = r;
    r = div(s, total);
    s.dispose();
  }
  if (!half) return r;
  const out = cast(r, loss.dtype);
  if (out !== r) r.dispose();
  return out;
}

/**
 * Cross-entropy between logits [N, C] (or [C], or [N, C, d1, ...]) and int32 class
 * indices [N] (or [], or [N, d1, ...]), as torch.nn.functional.cross_entropy.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  opts = optionsArg(opts, 'crossEntropy');
  if (isAutocastEnabled() && logits instanceof Tensor) logits = fullPrecision(logits);
  const op = 'crossEntropy';
  checkTensor(logits, op, 'logits');
  checkTensor(targets, op, 'targets');
  if (opts.weight !== undefined && opts.weight !== null) checkTensor(opts.weight, op, 'weight');
  checkSameDevice(op, logits, targets, opts.weight);
  checkF32F64(logits, op, 'logits');
  const reduction = checkReduction(opts.reduction, op);
  const ignoreIndex = checkIgnoreIndex(opts.ignoreIndex ?? -100, op);
  const eps = opts.labelSmoothing ?? 0;
  if (typeof eps !== 'number' || !(eps >= 0 && eps <= 1)) {
    throw new Error(`nodegrad: ${op}: labelSmoothing must be in [0, 1] (got ${String(eps)})`);
  }
  const { N, C, I, outShape } = classShape(logits, targets, op);
  const w = classWeight(opts.weight, logits, C, op);
  const x = dense(logits, logits.dtype, op);
  const t = dense(targets, 'int32', op);
  const loss = empty(outShape, logits.dtype, logits.device, true, op);
  const lse = empty(outShape, accDtype(logits), logits.device);
  const wbuf = w ? flat(w, op) : null;
  const total = classTotal(logits, (tb) => native.crossEntropyForward(flat(x, op), flat(t, op), wbuf, N, C, I,
    ignoreIndex, eps, loss.storage.data, lse.storage.data, tb));
  if (needsGrad(logits)) {
    record(loss, op, [logits], (g) => {
      const gc = dense(g, logits.dtype);
      const dx = empty(logits.shape, logits.dtype, logits.device, false);  // ignored rows too are written (zeros)
      native.crossEntropyBackward(flat(x, op), flat(t, op), wbuf, N, C, I, ignoreIndex, eps, lse.storage.data,
        flat(gc, op), dx.storage.data);
      return [dx];
    }, [x, t, w, lse]);
  } else {
    lse.dispose();
    if (x !== logits) x.dispose();
    if (t !== targets) t.dispose();
  }
  return reduceRows(loss, reduction, total);
}

/** Negative log-likelihood of log-probabilities [N, C] (or [C], [N, C, d1, ...]) at int32 targets. */
export function nllLoss(logProbs: Tensor, targets: Tensor, opts: NllLossOptions = {}): Tensor {
  opts = optionsArg(opts, 'nllLoss');
  if (isAutocastEnabled() && logProbs instanceof Tensor) logProbs = fullPrecision(logProbs);
  const op = 'nllLoss';
  checkTensor(logProbs, op, 'logProbs');
  checkTensor(targets, op, 'targets');
  if (opts.weight !== undefined && opts.weight !== null) checkTensor(opts.weight, op, 'weight');
  checkSameDevice(op, logProbs, targets, opts.weight);
  checkF32F64(logProbs, op, 'logProbs');
  const reduction = checkReduction(opts.reduction, op);
  const ignoreIndex = checkIgnoreIndex(opts.ignoreIndex ?? -100, op);
  const { N, C, I, outShape } = classShape(logProbs, targets, op);
  const w = classWeight(opts.weight, logProbs, C, op);
  const x = dense(logProbs, logProbs.dtype, op);
  const t = dense(targets, 'int32', op);
  const loss = empty(outShape, logProbs.dtype, logProbs.device, true, op);
  const wbuf = w ? flat(w, op) : null;
  const total = classTotal(logProbs, (tb) => native.nllLossForward(flat(x, op), flat(t, op), wbuf, N, C, I,
    ignoreIndex, loss.storage.data, tb));
  if (needsGrad(logProbs)) {
    record(loss, op, [logProbs], (g) => {
      const gc = dense(g, logProbs.dtype);
      const dx = empty(logProbs.shape, logProbs.dtype, logProbs.device);
      native.nllLossBackward(dx.storage.data, flat(t, op), wbuf, N, C, I, ignoreIndex, flat(gc, op));
      return [dx];
    }, [t, w]);
  } else if (t !== targets) t.dispose();
  if (x !== logProbs) x.dispose();  // (the backward reads no values of it)
  return reduceRows(loss, reduction, total);
}

function reduceElements(loss: Tensor, reduction: Reduction): Tensor {
  if (reduction === 'none') return loss;
  const r = reduction === 'sum' ? sum(loss) : mean(loss);
  loss.dispose();
  return r;
}

/** Mean (or summed) squared error; input and target must have the same shape. */
export function mseLoss(input: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  const op = 'mseLoss';
  opts = optionsArg(opts, op);
  checkTensor(input, op, 'input');
  checkTensor(target, op, 'target');
  checkSameDevice(op, input, target);
  const reduction = checkReduction(opts.reduction, op);
  if (fmt(input.shape) !== fmt(target.shape)) {
    throw new Error(`nodegrad: ${op}: input and target must have the same shape (got shapes ${fmt(input.shape)} and ${fmt(target.shape)})`);
  }
  if (input.dtype !== 'float32' && input.dtype !== 'float64') {
    throw new Error(`nodegrad: ${op}: input must be float32 or float64 (got ${input.dtype})`);
  }
  const tc = target.dtype === input.dtype ? target : cast(target, input.dtype);
  const d = sub(input, tc);
  if (tc !== target) tc.dispose();  // (sub saves no values)
  const sq = mul(d, d);
  if (!d.requiresGrad) d.dispose();  // (else mul saved it)
  return reduceElements(sq, reduction);
}

/**
 * Binary cross-entropy on logits, computed as (1 - y) x + (1 + (posWeight - 1) y) softplus(-x)
 * with softplus(-x) = max(-x, 0) + log1p(exp(-|x|)), which never overflows. posWeight and
 * weight broadcast against the input (posWeight is typically [numClasses]).
 */
export function binaryCrossEntropyWithLogits(logits: Tensor, targets: Tensor, opts: BceWithLogitsOptions = {}): Tensor {
  const op = 'binaryCrossEntropyWithLogits';
  opts = optionsArg(opts, op);
  checkTensor(logits, op, 'logits');
  checkTensor(targets, op, 'targets');
  if (opts.posWeight !== undefined && opts.posWeight !== null) checkTensor(opts.posWeight, op, 'posWeight');
  if (opts.weight !== undefined && opts.weight !== null) checkTensor(opts.weight, op, 'weight');
  checkSameDevice(op, logits, targets, opts.posWeight, opts.weight);
  checkF32F64(logits, op, 'logits');
  const reduction = checkReduction(opts.reduction, op);
  if (fmt(logits.shape) !== fmt(targets.shape)) {
    throw new Error(`nodegrad: ${op}: targets must have the same shape as logits (got shapes ${fmt(logits.shape)} and ${fmt(targets.shape)})`);
  }
  const dt = logits.dtype;
  const shape = [...logits.shape];
  const pwIn = opts.posWeight ?? null;
  if (pwIn) {
    checkTensor(pwIn, op, 'posWeight');
    if (fmt(broadcastShapes(pwIn.shape, shape, op)) !== fmt(shape)) {
      throw new Error(`nodegrad: ${op}: posWeight of shape ${fmt(pwIn.shape)} does not broadcast to the logits' shape ${fmt(shape)}`);
    }
  }
  if (opts.weight) {
    checkTensor(opts.weight, op, 'weight');
    if (fmt(broadcastShapes(opts.weight.shape, shape, op)) !== fmt(shape)) {
      throw new Error(`nodegrad: ${op}: weight of shape ${fmt(opts.weight.shape)} does not broadcast to the logits' shape ${fmt(shape)}`);
    }
  }
  const x = dense(logits, dt, op);
  const y = dense(targets, dt, op);
  const pw = pwIn ? dense(noGrad(() => expand(pwIn, shape)), dt, op) : null;
  const n = numelOf(shape);
  const loss = empty(shape, dt, logits.device);
  native.bceWithLogitsForward(flat(x, op), flat(y, op), pw ? flat(pw, op) : null, n, loss.storage.data);
  if (needsGrad(logits, targets, pwIn)) {
    record(loss, op, [logits, targets, pwIn], (g) => {
      const gc = dense(g, dt);
      const dx = logits.requiresGrad ? empty(shape, dt, logits.device) : null;
      const dy = targets.requiresGrad ? empty(shape, dt, logits.device) : null;
      const dpw = pwIn?.requiresGrad ? empty(shape, dt, logits.device) : null;
      native.bceWithLogitsBackward(flat(x, op), flat(y, op), pw ? flat(pw, op) : null, flat(gc, op), n,
        dx ? dx.storage.data : null, dy ? dy.storage.data : null, dpw ? dpw.storage.data : null);
      return [dx, dy, dpw && pwIn ? sumToShape(dpw, pwIn.shape) : null];
    }, [x, y, pw]);
  }
  let out = loss;
  if (opts.weight) out = mul(loss, opts.weight);
  return reduceElements(out, reduction);
}
