// Reductions: sum, mean, prod, var/std, max/min (+ indices), argmax/argmin, logsumexp,
// norm. The input is made contiguous and viewed as [M, R, I] with the reduced dims in
// R, so one native call serves any block of adjacent dims.
import { isFloating } from '../dtype.js';
import { needsGrad, record } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor, Dims } from '../tensor.js';
import { cast, div, exp, log, mul, sub, add, eq, abs, pow, sqrt, where } from './elementwise.js';
import { expand, permute, reshape, contiguous, contiguousFor } from './shape.js';
import { checkAlloc, empty } from './alloc.js';
import { checkFloat, checkTensor, fmt, optionsArg } from './check.js';
import { normDims, numelOf } from './dims.js';
import { flat } from './native_args.js';
import { moveTo } from './creation.js';

declare module '../native.js' {
  interface NativeAddon {
    reduce(op: number, x: import('../dtype.js').TypedArray, M: number, R: number, I: number,
      out: import('../dtype.js').TypedArray, idx: Int32Array | null, correction: number): void;
  }
}

const R = { sum: 0, mean: 1, max: 2, min: 3, argmax: 4, argmin: 5, var: 6, prod: 7 } as const;

function outShape(shape: readonly number[], dims: number[], keepdim: boolean): number[] {
  const out: number[] = [];
  shape.forEach((s, i) => {
    if (dims.includes(i)) {
      if (keepdim) out.push(1);
    } else out.push(s);
  });
  return out;
}

/** Runs a reduction without autograd. Returns values (and indices for max/min). */
function reduceRaw(code: number, x: Tensor, dims: number[], keepdim: boolean, name: string, correction = 0,
  withIdx = false): { values: Tensor; indices: Tensor | null } {
  if (x.device === 'cpu' && (x.dtype === 'bfloat16' || x.dtype === 'float16')) {
    // no half kernels on the CPU: reduce in float32 and round the result once
    checkAlloc(x.shape, 'float32', x.device, name);
    const x32 = cast(x, 'float32');
    const r = reduceRaw(code, x32, dims, keepdim, name, correction, withIdx);
    x32.dispose();
    if (r.values.dtype !== 'float32') return r;
    const v = cast(r.values, x.dtype);
    r.values.dispose();
    return { values: v, indices: r.indices };
  }
  if (dims.some((d) => x.shape[d] === 0) && (code === R.max || code === R.min || code === R.argmax || code === R.argmin)) {
    throw new Error(`nodegrad: ${name}: cannot reduce over an empty dimension (shape ${fmt(x.shape)})`);
  }
  const floatOut = (code === R.mean || code === R.var) && !isFloating(x.dtype);
  const src = floatOut ? cast(x, 'float32') : x.dtype === 'bool' ? cast(x, 'int32') : x;
  const shape = outShape(x.shape, dims, keepdim);
  // Bring the reduced dims together: if they are not one adjacent block, move them last.
  let lo = dims[0] ?? 0, hi = dims[dims.length - 1] ?? -1;
  let work = src;
  const adjacent = dims.length === 0 || hi - lo + 1 === dims.length;
  if (!adjacent) {
    const rest = src.shape.map((_, i) => i).filter((i) => !dims.includes(i));
    work = permute(src, [...rest, ...dims]);
    lo = rest.length;
    hi = src.ndim - 1;
  }
  const c = contiguousFor(work, name);
  const M = numelOf(c.shape.slice(0, lo));
  const Rn = dims.length === 0 ? 1 : numelOf(c.shape.slice(lo, hi + 1));
  const I = numelOf(c.shape.slice(hi + 1));
  const isArg = code === R.argmax || code === R.argmin;
  const values = empty(shape, isArg ? 'int32' : c.dtype, x.device, true, name);
  const indices = withIdx ? empty(shape, 'int32', x.device, true, name) : null;
  native.reduce(code, flat(c, name), M, Rn, I, values.storage.data, indices ? (indices.storage.data as Int32Array) : null, correction);
  if (c !== work && c !== src) c.dispose();
  if (work !== src) work.dispose();
  if (src !== x) src.dispose();
  return { values, indices };
}

/** Sums g over broadcast dims so that it has `shape` (used by broadcasting backwards). */
export function sumToShape(g: Tensor, shape: readonly number[]): Tensor {
  if (fmt(g.shape) === fmt(shape)) return g;
  const lead = g.ndim - shape.length;
  const dims: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) dims.push(i);
  }
  const s = dims.length ? reduceRaw(R.sum, g, dims, true, 'sum').values : g;
  return reshape(s, [...shape]);
}

function gradBroadcast(g: Tensor, inShape: readonly number[], dims: number[], keepdim: boolean): Tensor {
  const kept = keepdim ? g : reshape(g, outShape(inShape, dims, true));
  return expand(kept, [...inShape]);
}

export function sum(x: Tensor, dim?: Dims | null, keepdim = false): Tensor {
  checkTensor(x, 'sum');
  const dims = normDims(dim, x.ndim, 'sum');
  const out = reduceRaw(R.sum, x, dims, keepdim, 'sum').values;
  if (needsGrad(x)) {
    const inShape = [...x.shape];
    record(out, 'sum', [x], (g) => [contiguous(gradBroadcast(g, inShape, dims, keepdim))], []);
  }
  return out;
}

export function mean(x: Tensor, dim?: Dims | null, keepdim = false): Tensor {
  checkTensor(x, 'mean');
  const dims = normDims(dim, x.ndim, 'mean');
  const out = reduceRaw(R.mean, x, dims, keepdim, 'mean').values;
  if (needsGrad(x)) {
    const inShape = [...x.shape];
    const n = numelOf(dims.map((d) => inShape[d]));
    record(out, 'mean', [x], (g) => [mul(gradBroadcast(g, inShape, dims, keepdim), 1 / n)], []);
  }
  return out;
}

export function prod(x: Tensor, dim?: number, keepdim = false): Tensor {
  checkTensor(x, 'prod');
  const dims = normDims(dim, x.ndim, 'prod');
  const out = reduceRaw(R.prod, x, dims, keepdim, 'prod').values;
  if (needsGrad(x)) {
    const inShape = [...x.shape];
    // d/dx_i prod = prod / x_i (inputs with zeros are not special-cased)
    record(out, 'prod', [x], (g) => [div(mul(gradBroadcast(g, inShape, dims, keepdim), gradBroadcast(out, inShape, dims, keepdim)), x)],
      [x, out]);
  }
  return out;
}

export function variance(x: Tensor, dim?: Dims | null, opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
  checkTensor(x, 'var');
  checkFloat(x, 'var');
  opts = optionsArg(opts, 'var');
  const dims = normDims(dim, x.ndim, 'var');
  const keepdim = opts.keepdim ?? false;
  const correction = opts.correction ?? 1;
  if (typeof correction !== 'number' || !Number.isFinite(correction)) {
    throw new Error(`nodegrad: var: correction must be a finite number (got ${String(correction)})`);
  }
  const out = reduceRaw(R.var, x, dims, keepdim, 'var', correction).values;
  if (needsGrad(x)) {
    const inShape = [...x.shape];
    const n = numelOf(dims.map((d) => inShape[d]));
    record(out, 'var', [x], (g) => {
      const m = mean(x, dims, true);
      const gb = gradBroadcast(g, inShape, dims, keepdim);
      return [mul(mul(gb, sub(x, m)), 2 / Math.max(n - correction, 0))];
    }, [x]);
  }
  return out;
}

export function std(x: Tensor, dim?: Dims | null, opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
  return sqrt(variance(x, dim, opts));
}

function extremum(code: number, name: string, x: Tensor, dim?: Dims | null, keepdim = false): Tensor {
  checkTensor(x, name);
  const dims = normDims(dim, x.ndim, name);
  const out = reduceRaw(code, x, dims, keepdim, name).values;
  if (needsGrad(x)) {
    const inShape = [...x.shape];
    record(out, name, [x], (g) => {
      // gradient split evenly among the tied extreme elements
      const hit = cast(eq(x, gradBroadcast(out, inShape, dims, keepdim)), g.dtype);
      const count = sum(hit, dims, true);
      return [div(mul(gradBroadcast(g, inShape, dims, keepdim), hit), count)];
    }, [x, out]);
  }
  return out;
}
export function amax(x: Tensor, dim?: Dims | null, keepdim = false): Tensor { return extremum(R.max, 'amax', x, dim, keepdim); }
export function amin(x: Tensor, dim?: Dims | null, keepdim = false): Tensor { return extremum(R.min, 'amin', x, dim, keepdim); }

function extremumDim(code: number, name: string, x: Tensor, dim: number, keepdim: boolean): { values: Tensor; indices: Tensor } {
  checkTensor(x, name);
  const dims = normDims(dim, x.ndim, name);
  const { values, indices } = reduceRaw(code, x, dims, keepdim, name, 0, true);
  if (needsGrad(x)) {
    const inShape = [...x.shape];
    const d = dims[0];
    const idx = indices!;
    record(values, name, [x], (g) => {
      // scatter g into the arg positions: onehot(idx) along d
      const ar = reshapeArange(inShape, d, g);
      const ik = keepdim ? idx : reshape(idx, outShape(inShape, dims, true));
      const hit = cast(eq(ar, ik), g.dtype);
      return [mul(hit, gradBroadcast(g, inShape, dims, keepdim))];
    }, [idx]);
  }
  return { values, indices: indices! };
}

function reshapeArange(inShape: number[], d: number, like: Tensor): Tensor {
  const n = inShape[d];
  let a = empty([n], 'int32', 'cpu');
  const data = a.storage.data;
  for (let i = 0; i < n; i++) data[i] = i;
  a = moveTo(a, like.device);
  const shape = inShape.map((_, i) => (i === d ? n : 1));
  return reshape(a, shape);
}

export function maxDim(x: Tensor, dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
  return extremumDim(R.max, 'max', x, dim, keepdim);
}
export function minDim(x: Tensor, dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
  return extremumDim(R.min, 'min', x, dim, keepdim);
}

function argReduce(code: number, name: string, x: Tensor, dim: number | undefined, keepdim: boolean): Tensor {
  checkTensor(x, name);
  if (dim !== undefined) return reduceRaw(code, x, normDims(dim, x.ndim, name), keepdim, name).values;
  // over all elements: index into the flattened tensor
  const f = reshape(x, [-1]);
  try {
    return reduceRaw(code, f, [0], false, name).values;
  } finally {
    f.dispose();
  }
}
export function argmax(x: Tensor, dim?: number, keepdim = false): Tensor { return argReduce(R.argmax, 'argmax', x, dim, keepdim); }
export function argmin(x: Tensor, dim?: number, keepdim = false): Tensor { return argReduce(R.argmin, 'argmin', x, dim, keepdim); }

export function logsumexp(x: Tensor, dim: Dims, keepdim = false): Tensor {
  checkTensor(x, 'logsumexp');
  checkFloat(x, 'logsumexp');
  const dims = normDims(dim, x.ndim, 'logsumexp');
  const m = reduceRaw(R.max, x, dims, true, 'logsumexp').values;
  // rows that are all -inf keep -inf instead of NaN
  const safe = where(eq(abs(m), Infinity), 0, m);
  const s = log(sum(exp(sub(x, safe)), dims, true));
  const out = add(s, safe);
  return keepdim ? out : reshape(out, outShape(x.shape, dims, false));
}

export function norm(x: Tensor, p = 2, dim?: Dims | null, keepdim = false): Tensor {
  checkTensor(x, 'norm');
  checkFloat(x, 'norm');
  checkAlloc(x.shape, x.dtype, x.device, 'norm');  // every p makes a temporary of x's size
  if (p === 2) {
    const dims = normDims(dim, x.ndim, 'norm');
    const sq = mul(x, x);
    const ss = reduceRaw(R.sum, sq, dims, keepdim, 'norm').values;
    sq.dispose();
    const out = sqrt(ss);
    ss.dispose();
    if (needsGrad(x)) {
      const inShape = [...x.shape];
      // d|x|/dx = x / |x|, taken as 0 where |x| = 0 (as PyTorch does) instead of 0/0
      record(out, 'norm', [x], (g) => {
        const ob = gradBroadcast(out, inShape, dims, keepdim);
        const scale = where(eq(ob, 0), 0, div(gradBroadcast(g, inShape, dims, keepdim), ob));
        return [mul(scale, x)];
      }, [x, out]);
    }
    return out;
  }
  if (p === 1) return sum(abs(x), dim, keepdim);
  if (p === Infinity) return amax(abs(x), dim, keepdim);
  if (!(p > 0)) throw new Error(`nodegrad: norm: p must be positive (got ${p})`);
  return pow(sum(pow(abs(x), p), dim, keepdim), 1 / p);
}
