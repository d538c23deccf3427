// Indexing ops along one dim: gather / scatterAdd (index with the input's rank), indexSelect
// / indexAdd (1-D index), topk. Indices are int32; the native kernels check every index
// value before writing and read strided inputs in place. Each backward is the adjoint op:
// gather <-> scatterAdd, indexSelect <-> indexAdd, topk scatters into its indices.
import type { TypedArray } from '../dtype.js';
import { needsGrad, record } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { zeros } from './creation.js';
import { copyInto, narrow, reshape } from './shape.js';
import { empty } from './alloc.js';
import { checkSameDevice, checkTensor, fmt, optionsArg } from './check.js';
import { normDim } from './dims.js';
import { va } from './native_args.js';

declare module '../native.js' {
  interface NativeAddon {
    gather(dim: number, xShape: number[], x: TypedArray, xOff: number, xSt: number[],
      indexShape: number[], index: TypedArray, iOff: number, iSt: number[], out: TypedArray): void;
    scatterAdd(dim: number, outShape: number[], out: TypedArray, indexShape: number[],
      index: TypedArray, iOff: number, iSt: number[], src: TypedArray, sOff: number, sSt: number[]): void;
    indexSelect(dim: number, xShape: number[], x: TypedArray, xOff: number, xSt: number[], k: number,
      index: TypedArray, iOff: number, iSt: number[], out: TypedArray): void;
    indexAdd(dim: number, outShape: number[], out: TypedArray, k: number,
      index: TypedArray, iOff: number, iSt: number[], src: TypedArray, sOff: number, sSt: number[]): void;
    topk(dim: number, xShape: number[], x: TypedArray, xOff: number, xSt: number[], k: number,
      largest: boolean, sorted: boolean, values: TypedArray, indices: TypedArray): void;
  }
}

/** float32, float64, int32 everywhere; bfloat16 and float16 too on CUDA. */
function checkValues(t: Tensor, op: string, what = 'input'): void {
  const half = t.dtype === 'bfloat16' || t.dtype === 'float16';
  if (t.dtype !== 'float32' && t.dtype !== 'float64' && t.dtype !== 'int32' && !(half && t.device !== 'cpu')) {
    throw new Error(`nodegrad: ${op}: ${what} must be float32, float64 or int32${t.device === 'cpu' ? '' : ' (or bfloat16, float16 on CUDA)'} ` +
      `(got ${t.dtype}, shape ${fmt(t.shape)})`);
  }
}

function checkIndex(index: Tensor, op: string): void {
  if (index.dtype !== 'int32') {
    throw new Error(`nodegrad: ${op}: index must be an int32 tensor (got ${index.dtype}, shape ${fmt(index.shape)})`);
  }
}

/** Checks the gather/scatter shape rule: same rank; index no larger than `other` outside dim. */
function checkScatterShapes(op: string, x: Tensor, index: Tensor, d: number, src?: Tensor): void {
  const shapes = `got input ${fmt(x.shape)}, index ${fmt(index.shape)}${src ? `, src ${fmt(src.shape)}` : ''}`;
  if (index.ndim !== x.ndim || (src && src.ndim !== x.ndim)) {
    throw new Error(`nodegrad: ${op}: index${src ? ' and src' : ''} must have as many dims as the input (${shapes})`);
  }
  for (let i = 0; i < x.ndim; i++) {
    if (i !== d && index.shape[i] > x.shape[i]) {
      throw new Error(`nodegrad: ${op}: index is larger than the input at dim ${i} (${shapes}; expected index.shape[i] <= input.shape[i] for i != dim)`);
    }
    if (src && index.shape[i] > src.shape[i]) {
      throw new Error(`nodegrad: ${op}: index is larger than src at dim ${i} (${shapes}; expected index.shape[i] <= src.shape[i])`);
    }
  }
}

/** Zeros of `shape` with `part` written into the leading corner (part's shape). */
function padTo(part: Tensor, shape: readonly number[]): Tensor {
  if (fmt(part.shape) === fmt(shape)) return part;
  const z = zeros(shape, { dtype: part.dtype, device: part.device });
  let v = z;
  for (let i = 0; i < shape.length; i++) v = narrow(v, i, 0, part.shape[i]);
  copyInto(v, part);
  return z;
}

/** out = x with src[..j..] added at out[..index[..j..]..] along dim; no autograd. */
function scatterAddRaw(x: Tensor, d: number, index: Tensor, src: Tensor, op: string): Tensor {
  const out = empty(x.shape, x.dtype, x.device);
  copyInto(out, x);
  native.scatterAdd(d, [...out.shape], out.storage.data, [...index.shape], ...va(index, op), ...va(src, op));
  return out;
}

function indexAddRaw(x: Tensor, d: number, index: Tensor, src: Tensor, op: string): Tensor {
  const out = empty(x.shape, x.dtype, x.device);
  copyInto(out, x);
  native.indexAdd(d, [...out.shape], out.storage.data, index.shape[0], ...va(index, op), ...va(src, op));
  return out;
}

/** out[i][j][k] = x[i][index[i][j][k]][k] for dim = 1 (torch.gather). */
export function gather(x: Tensor, dim: number, index: Tensor): Tensor {
  const op = 'gather';
  checkTensor(x, op);
  checkTensor(index, op, 'index');
  const device = checkSameDevice(op, x, index);
  checkValues(x, op);
  checkIndex(index, op);
  if (x.ndim === 0 && index.ndim === 0) {
    normDim(dim, 1, op);
    return reshape(gather(reshape(x, [1]), 0, reshape(index, [1])), []);
  }
  const d = normDim(dim, x.ndim, op);
  checkScatterShapes(op, x, index, d);
  const out = empty(index.shape, x.dtype, device);
  native.gather(d, [...x.shape], ...va(x, op), [...index.shape], ...va(index, op), out.storage.data);
  if (needsGrad(x)) {
    const xShape = [...x.shape];
    record(out, op, [x], (g) => [scatterAddRaw(zeros(xShape, { dtype: g.dtype, device: g.device }), d, index, g, op)], [index]);
  }
  return out;
}

/** x + src scattered along dim: out[i][index[i][j][k]][k] += src[i][j][k] for dim = 1 (torch.scatter_add). */
export function scatterAdd(x: Tensor, dim: number, index: Tensor, src: Tensor): Tensor {
  const op = 'scatterAdd';
  checkTensor(x, op);
  checkTensor(index, op, 'index');
  checkTensor(src, op, 'src');
  checkSameDevice(op, x, index, src);
  checkValues(x, op);
  checkIndex(index, op);
  if (src.dtype !== x.dtype) {
    throw new Error(`nodegrad: ${op}: src must have the input's dtype (got ${src.dtype} and ${x.dtype})`);
  }
  if (x.ndim === 0 && index.ndim === 0 && src.ndim === 0) {
    normDim(dim, 1, op);
    return reshape(scatterAdd(reshape(x, [1]), 0, reshape(index, [1]), reshape(src, [1])), []);
  }
  const d = normDim(dim, x.ndim, op);
  checkScatterShapes(op, x, index, d, src);
  const out = scatterAddRaw(x, d, index, src, op);
  if (needsGrad(x, src)) {
    const srcShape = [...src.shape];
    record(out, op, [x, src], (g) => [g, src.requiresGrad ? padTo(gather(g, d, index), srcShape) : null],
      [src.requiresGrad && index]);
  }
  return out;
}

function checkIndex1d(x: Tensor, index: Tensor, op: string): void {
  if (index.ndim !== 1) {
    throw new Error(`nodegrad: ${op}: index must be 1-D (got shape ${fmt(index.shape)} for input ${fmt(x.shape)})`);
  }
}

/** The slices x[.., index[k], ..] along dim, stacked in index order (torch.index_select). */
export function indexSelect(x: Tensor, dim: number, index: Tensor): Tensor {
  const op = 'indexSelect';
  checkTensor(x, op);
  checkTensor(index, op, 'index');
  const device = checkSameDevice(op, x, index);
  checkValues(x, op);
  checkIndex(index, op);
  checkIndex1d(x, index, op);
  if (x.ndim === 0) throw new Error(`nodegrad: ${op}: input must have at least 1 dim (got shape [])`);
  const d = normDim(dim, x.ndim, op);
  const k = index.shape[0];
  const shape = [...x.shape];
  shape[d] = k;
  const out = empty(shape, x.dtype, device);
  native.indexSelect(d, [...x.shape], ...va(x, op), k, ...va(index, op), out.storage.data);
  if (needsGrad(x)) {
    const xShape = [...x.shape];
    record(out, op, [x], (g) => [indexAddRaw(zeros(xShape, { dtype: g.dtype, device: g.device }), d, index, g, op)], [index]);
  }
  return out;
}

/** x + src added at the slices index[k] along dim (torch.index_add, out of place). */
export function indexAdd(x: Tensor, dim: number, index: Tensor, src: Tensor): Tensor {
  const op = 'indexAdd';
  checkTensor(x, op);
  checkTensor(index, op, 'index');
  checkTensor(src, op, 'src');
  checkSameDevice(op, x, index, src);
  checkValues(x, op);
  checkIndex(index, op);
  checkIndex1d(x, index, op);
  if (src.dtype !== x.dtype) {
    throw new Error(`nodegrad: ${op}: src must have the input's dtype (got ${src.dtype} and ${x.dtype})`);
  }
  if (x.ndim === 0) throw new Error(`nodegrad: ${op}: input must have at least 1 dim (got shape [])`);
  const d = normDim(dim, x.ndim, op);
  const want = [...x.shape];
  want[d] = index.shape[0];
  if (fmt(src.shape) !== fmt(want)) {
    throw new Error(`nodegrad: ${op}: src has shape ${fmt(src.shape)}; expected ${fmt(want)} (input ${fmt(x.shape)}, index ${fmt(index.shape)}, dim ${dim})`);
  }
  const out = indexAddRaw(x, d, index, src, op);
  if (needsGrad(x, src)) {
    record(out, op, [x, src], (g) => [g, src.requiresGrad ? indexSelect(g, d, index) : null], [src.requiresGrad && index]);
  }
  return out;
}

/** The k largest (or smallest) entries along dim and their int32 positions (torch.topk). */
export function topk(x: Tensor, k: number, opts?: { dim?: number; largest?: boolean; sorted?: boolean }): { values: Tensor; indices: Tensor } {
  const op = 'topk';
  checkTensor(x, op);
  checkValues(x, op);
  opts = optionsArg(opts, op);
  const largest = opts?.largest ?? true, sorted = opts?.sorted ?? true;
  if (x.ndim === 0) {
    normDim(opts?.dim ?? -1, 1, op);
    if (k !== 1) throw new Error(`nodegrad: topk: k ${String(k)} must be 1 for a 0-d input`);
    const r = topk(reshape(x, [1]), k, { dim: 0, largest, sorted });
    return { values: reshape(r.values, []), indices: reshape(r.indices, []) };
  }
  const d = normDim(opts?.dim ?? -1, x.ndim, op);
  const n = x.shape[d];
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k > n) {
    throw new Error(`nodegrad: topk: k ${String(k)} is out of range for dimension ${d} of size ${n} (shape ${fmt(x.shape)})`);
  }
  const shape = [...x.shape];
  shape[d] = k;
  const values = empty(shape, x.dtype, x.device, true, op);
  const indices = empty(shape, 'int32', x.device, true, op);
  // (an empty result needs no kernel, which would still walk every slice of a broadcast view)
  if (values.numel > 0) native.topk(d, [...x.shape], ...va(x, op), k, largest, sorted, values.storage.data, indices.storage.data);
  if (needsGrad(x)) {
    const xShape = [...x.shape];
    record(values, op, [x], (g) => [scatterAddRaw(zeros(xShape, { dtype: g.dtype, device: g.device }), d, indices, g, op)],
      [indices]);
  }
  return { values, indices };
}
