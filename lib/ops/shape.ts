// Views and structural ops: reshape/view, transpose/permute, narrow/slice/select,
// expand, (un)squeeze, split/chunk, contiguous/clone, cat/stack. Views share storage
// and cost no copy; their backward maps the gradient back onto the input's shape.
import { native } from '../native.js';
import { needsGrad, PartialGrad, record } from '../autograd.js';
import { Tensor } from '../tensor.js';
import { zeros } from './creation.js';
import { sumToShape } from './reduce.js';
import { checkAlloc, empty } from './alloc.js';
import { checkSameDevice, checkTensor, fmt, show } from './check.js';
import { broadcastStrides, checkShape, contiguousStrides, normDim, numelOf } from './dims.js';
import { va } from './native_args.js';
import { promoteTypes } from '../dtype.js';

export { normDim };

export function shapeArg(args: (number | number[] | readonly number[])[]): number[] {
  if (args.length === 1 && Array.isArray(args[0])) return [...(args[0] as number[])];
  return args as number[];
}

function makeView(t: Tensor, shape: number[], strides: number[], offset: number): Tensor {
  const v = new Tensor(t.storage, shape, strides, offset);
  v._isView = true;
  return v;
}

export function detach(t: Tensor): Tensor {
  checkTensor(t, 'detach');
  return makeView(t, [...t.shape], [...t.strides], t.offset);
}

/** Copies src (broadcast to dst's shape, cast to dst's dtype) into the view dst. */
export function copyInto(dst: Tensor, src: Tensor): void {
  native.copy([...dst.shape], ...va(dst, 'copy'), src.storage.data, src.offset, broadcastStrides(src, dst.shape));
}

export function contiguous(t: Tensor): Tensor {
  return contiguousFor(t, 'contiguous');
}

/**
 * contiguous() of an op's input: a view too large to copy (a broadcast to [1e9, 1e9]) is
 * an error naming `op`, the function the user called.
 */
export function contiguousFor(t: Tensor, op: string): Tensor {
  checkTensor(t, op);
  if (t.isContiguous()) return t;
  checkAlloc(t.shape, t.dtype, t.device, op);
  return clone(t);
}

export function clone(t: Tensor): Tensor {
  checkTensor(t, 'clone');
  const out = empty(t.shape, t.dtype, t.device, false, 'clone');
  copyInto(out, t);
  if (needsGrad(t)) record(out, 'clone', [t], (g) => [g], []);
  return out;
}

// Strides for viewing (shape, strides) as newShape without a copy, or null when the
// memory layout does not allow it (the algorithm of PyTorch's computeStride).
function viewStrides(oldShape: readonly number[], oldStrides: readonly number[], newShape: number[]): number[] | null {
  if (numelOf(oldShape) === 0 || oldShape.length === 0) return contiguousStrides(newShape);
  const newStrides = new Array<number>(newShape.length);
  let viewD = newShape.length - 1;
  let chunkBase = oldStrides[oldStrides.length - 1];
  let tensorNumel = 1, viewNumel = 1;
  for (let d = oldShape.length - 1; d >= 0; d--) {
    tensorNumel *= oldShape[d];
    if (d === 0 || (oldShape[d - 1] !== 1 && oldStrides[d - 1] !== tensorNumel * chunkBase)) {
      while (viewD >= 0 && (viewNumel < tensorNumel || newShape[viewD] === 1)) {
        newStrides[viewD] = viewNumel * chunkBase;
        viewNumel *= newShape[viewD];
        viewD--;
      }
      if (viewNumel !== tensorNumel) return null;
      if (d > 0) {
        chunkBase = oldStrides[d - 1];
        tensorNumel = 1;
        viewNumel = 1;
      }
    }
  }
  return viewD === -1 ? newStrides : null;
}

function inferShape(t: Tensor, shape: number[], op: string): number[] {
  if (!Array.isArray(shape)) throw new Error(`nodegrad: ${op}: shape must be an array of integers (got ${shape === null ? 'null' : typeof shape})`);
  const out = [...shape];
  let infer = -1;
  let known = 1;
  out.forEach((s, i) => {
    if (s === -1) {
      if (infer >= 0) throw new Error(`nodegrad: ${op}: only one dimension can be -1 (got ${fmt(shape)})`);
      infer = i;
    } else {
      if (!Number.isInteger(s) || s < 0) throw new Error(`nodegrad: ${op}: invalid shape ${fmt(shape)}`);
      known *= s;
    }
  });
  if (infer >= 0) {
    if (known === 0 || t.numel % known !== 0) {
      throw new Error(`nodegrad: ${op}: shape ${fmt(shape)} is invalid for input of size ${t.numel} (shape ${fmt(t.shape)})`);
    }
    out[infer] = t.numel / known;
  }
  checkShape(out, op);
  if (numelOf(out) !== t.numel) {
    throw new Error(`nodegrad: ${op}: shape ${fmt(shape)} is invalid for input of size ${t.numel} (shape ${fmt(t.shape)})`);
  }
  return out;
}

function reshapeImpl(t: Tensor, shape: number[], op: string, allowCopy: boolean): Tensor {
  checkTensor(t, op);
  const ns = inferShape(t, shape, op);
  const st = viewStrides(t.shape, t.strides, ns);
  let out: Tensor;
  if (st) out = makeView(t, ns, st, t.offset);
  else if (allowCopy) {
    checkAlloc(t.shape, t.dtype, t.device, op);
    const c = clone(t);
    out = makeView(c, ns, contiguousStrides(ns), 0);
    c.dispose();
  } else {
    throw new Error(`nodegrad: view: the tensor's strides (shape ${fmt(t.shape)}, strides ${fmt(t.strides)}) do not allow viewing it as ${fmt(shape)}; use reshape() or contiguous()`);
  }
  if (needsGrad(t)) {
    const inShape = [...t.shape];
    record(out, op, [t], (g) => [g.reshape(inShape)], []);
  }
  return out;
}

export function reshape(t: Tensor, shape: number[]): Tensor { return reshapeImpl(t, shape, 'reshape', true); }
export function view(t: Tensor, shape: number[]): Tensor { return reshapeImpl(t, shape, 'view', false); }

export function flatten(t: Tensor, startDim = 0, endDim = -1): Tensor {
  if (t.ndim === 0) return reshape(t, [1]);
  const s = normDim(startDim, t.ndim, 'flatten'), e = normDim(endDim, t.ndim, 'flatten');
  if (s > e) throw new Error(`nodegrad: flatten: startDim ${startDim} comes after endDim ${endDim}`);
  const shape = [...t.shape.slice(0, s), numelOf(t.shape.slice(s, e + 1)), ...t.shape.slice(e + 1)];
  return reshape(t, shape);
}

export function permute(t: Tensor, dims: number[]): Tensor {
  checkTensor(t, 'permute');
  if (!Array.isArray(dims)) throw new Error(`nodegrad: permute: dims must be an array of integers (got ${dims === null ? 'null' : typeof dims})`);
  if (dims.length !== t.ndim) throw new Error(`nodegrad: permute: expected ${t.ndim} dims for shape ${fmt(t.shape)} (got ${fmt(dims)})`);
  const nd = dims.map((d) => normDim(d, t.ndim, 'permute'));
  if (new Set(nd).size !== nd.length) throw new Error(`nodegrad: permute: dims ${fmt(dims)} repeat a dimension`);
  const out = makeView(t, nd.map((d) => t.shape[d]), nd.map((d) => t.strides[d]), t.offset);
  if (needsGrad(t)) {
    const inv = new Array<number>(nd.length);
    nd.forEach((d, i) => (inv[d] = i));
    record(out, 'permute', [t], (g) => [permute(g, inv)], []);
  }
  return out;
}

export function transpose(t: Tensor, dim0: number, dim1: number): Tensor {
  checkTensor(t, 'transpose');
  if (t.ndim === 0) return t;
  const a = normDim(dim0, t.ndim, 'transpose'), b = normDim(dim1, t.ndim, 'transpose');
  const dims = t.shape.map((_, i) => i);
  dims[a] = b;
  dims[b] = a;
  return permute(t, dims);
}

/** Elements start, start+step, ... < end along dim (negative start/end count from the end). */
/** slice/narrow/select/split/chunk need a dim to cut (normDim lets dim 0 / -1 name a 0-d tensor's). */
function checkHasDims(t: Tensor, op: string): void {
  if (t.ndim === 0) throw new Error(`nodegrad: ${op}: cannot be applied to a 0-dim tensor (got shape [])`);
}

/** The gradient of a view op: g at view(full) of a gradient of `shape`, zero elsewhere. */
function partialGrad(shape: readonly number[], g: Tensor, view: (full: Tensor) => Tensor): PartialGrad {
  return new PartialGrad(shape, g, (full) => {
    const v = view(full);
    v.add_(g);
    v.dispose();
  }, () => {
    const z = zeros([...shape], { dtype: g.dtype, device: g.device });
    const v = view(z);
    copyInto(v, g);
    v.dispose();
    return z;
  });
}

export function slice(t: Tensor, dim: number, start?: number, end?: number, step = 1): Tensor {
  checkTensor(t, 'slice');
  checkHasDims(t, 'slice');
  const d = normDim(dim, t.ndim, 'slice');
  const n = t.shape[d];
  if (!Number.isInteger(step) || step < 1) throw new Error(`nodegrad: slice: step must be a positive integer (got ${step})`);
  for (const v of [start, end]) {
    if (v !== undefined && v !== null && !Number.isInteger(v)) throw new Error(`nodegrad: slice: start and end must be integers (got ${start}, ${end})`);
  }
  let s = start ?? 0, e = end ?? n;
  if (s < 0) s += n;
  if (e < 0) e += n;
  s = Math.min(Math.max(s, 0), n);
  e = Math.min(Math.max(e, s), n);
  const len = Math.ceil((e - s) / step);
  const shape = [...t.shape];
  shape[d] = len;
  const strides = [...t.strides];
  // (a step past the end leaves at most one element, whose stride does not matter and must not overflow)
  strides[d] = len <= 1 ? t.strides[d] : t.strides[d] * step;
  const out = makeView(t, shape, strides, t.offset + s * t.strides[d]);
  if (needsGrad(t)) {
    record(out, 'slice', [t], (g) => [partialGrad(t.shape, g, (full) => slice(full, d, s, e, step))], []);
  }
  return out;
}

export function narrow(t: Tensor, dim: number, start: number, length: number): Tensor {
  checkTensor(t, 'narrow');
  checkHasDims(t, 'narrow');
  const d = normDim(dim, t.ndim, 'narrow');
  const n = t.shape[d];
  const s = start < 0 ? start + n : start;
  if (!Number.isInteger(s) || !Number.isInteger(length) || s < 0 || length < 0 || s + length > n) {
    throw new Error(`nodegrad: narrow: start ${start} and length ${length} are out of range for dim ${dim} of size ${n} (shape ${fmt(t.shape)})`);
  }
  return slice(t, d, s, s + length);
}

export function select(t: Tensor, dim: number, index: number): Tensor {
  checkTensor(t, 'select');
  checkHasDims(t, 'select');
  const d = normDim(dim, t.ndim, 'select');
  const n = t.shape[d];
  const i = index < 0 ? index + n : index;
  if (!Number.isInteger(i) || i < 0 || i >= n) {
    throw new Error(`nodegrad: select: index ${index} is out of range for dim ${dim} of size ${n} (shape ${fmt(t.shape)})`);
  }
  const out = makeView(t, t.shape.filter((_, k) => k !== d), t.strides.filter((_, k) => k !== d), t.offset + i * t.strides[d]);
  if (needsGrad(t)) {
    record(out, 'select', [t], (g) => [partialGrad(t.shape, g, (full) => select(full, d, i))], []);
  }
  return out;
}

export function expand(t: Tensor, shape: number[]): Tensor {
  checkTensor(t, 'expand');
  if (!Array.isArray(shape)) throw new Error(`nodegrad: expand: shape must be an array of integers (got ${shape === null ? 'null' : typeof shape})`);
  if (shape.length < t.ndim) throw new Error(`nodegrad: expand: cannot expand shape ${fmt(t.shape)} to ${fmt(shape)} (fewer dims)`);
  const off = shape.length - t.ndim;
  const ns = shape.map((s, i) => (s === -1 && i >= off ? t.shape[i - off] : s));
  checkShape(ns, 'expand');
  const strides = ns.map((s, i) => {
    if (i < off) return 0;
    const src = t.shape[i - off];
    if (src === s) return t.strides[i - off];
    if (src === 1) return 0;
    throw new Error(`nodegrad: expand: cannot expand shape ${fmt(t.shape)} to ${fmt(shape)} (dim ${i}: ${src} vs ${s})`);
  });
  const out = makeView(t, ns, strides, t.offset);
  if (needsGrad(t)) {
    const inShape = [...t.shape];
    record(out, 'expand', [t], (g) => [sumToShape(g, inShape)], []);
  }
  return out;
}

export function unsqueeze(t: Tensor, dim: number): Tensor {
  checkTensor(t, 'unsqueeze');
  const d = normDim(dim, t.ndim + 1, 'unsqueeze');
  const shape = [...t.shape];
  shape.splice(d, 0, 1);
  return reshape(t, shape);
}

export function squeeze(t: Tensor, dim?: number | number[]): Tensor {
  checkTensor(t, 'squeeze');
  const dims = dim === undefined ? null : new Set((Array.isArray(dim) ? dim : [dim]).map((x) => normDim(x, t.ndim, 'squeeze')));
  const shape = t.shape.filter((s, i) => !(s === 1 && (dims === null || dims.has(i))));
  return reshape(t, shape);
}

export function split(t: Tensor, sizeOrSections: number | number[], dim = 0): Tensor[] {
  checkTensor(t, 'split');
  checkHasDims(t, 'split');
  const d = normDim(dim, t.ndim, 'split');
  const n = t.shape[d];
  let sizes: number[];
  if (typeof sizeOrSections === 'number') {
    if (!Number.isInteger(sizeOrSections) || sizeOrSections <= 0) throw new Error(`nodegrad: split: size must be a positive integer (got ${sizeOrSections})`);
    sizes = [];
    for (let s = 0; s < n; s += sizeOrSections) sizes.push(Math.min(sizeOrSections, n - s));
  } else {
    if (!Array.isArray(sizeOrSections) || sizeOrSections.some((v) => !Number.isInteger(v) || v < 0)) {
      throw new Error(`nodegrad: split: expected a positive integer size or an array of non-negative integer sections (got ${show(sizeOrSections)})`);
    }
    sizes = sizeOrSections;
    if (sizes.reduce((a, b) => a + b, 0) !== n) {
      throw new Error(`nodegrad: split: sections ${fmt(sizes)} do not sum to dim ${dim} of size ${n} (shape ${fmt(t.shape)})`);
    }
  }
  let start = 0;
  return sizes.map((s) => {
    const v = narrow(t, d, start, s);
    start += s;
    return v;
  });
}

export function chunk(t: Tensor, chunks: number, dim = 0): Tensor[] {
  checkTensor(t, 'chunk');
  checkHasDims(t, 'chunk');
  if (!Number.isInteger(chunks) || chunks <= 0) throw new Error(`nodegrad: chunk: chunks must be a positive integer (got ${chunks})`);
  const d = normDim(dim, t.ndim, 'chunk');
  return split(t, Math.max(1, Math.ceil(t.shape[d] / chunks)), d);
}

export function cat(tensors: Tensor[], dim = 0): Tensor {
  if (!Array.isArray(tensors) || tensors.length === 0) throw new Error('nodegrad: cat: expected a non-empty array of tensors');
  tensors.forEach((t) => checkTensor(t, 'cat'));
  const device = checkSameDevice('cat', ...tensors);
  const ref = tensors[0];
  if (tensors.some((t) => t.ndim === 0)) throw new Error('nodegrad: cat: zero-dimensional tensors cannot be concatenated; unsqueeze them or use stack');
  const d = normDim(dim, ref.ndim, 'cat');
  let total = 0;
  let dtype = ref.dtype;
  for (const t of tensors) {
    if (t.ndim !== ref.ndim || t.shape.some((s, i) => i !== d && s !== ref.shape[i])) {
      throw new Error(`nodegrad: cat: shapes ${tensors.map((x) => fmt(x.shape)).join(', ')} differ outside dim ${dim}`);
    }
    total += t.shape[d];
    dtype = promoteTypes(dtype, t.dtype);
  }
  const shape = [...ref.shape];
  shape[d] = total;
  const out = empty(shape, dtype, device, true, 'cat');
  let start = 0;
  for (const t of tensors) {
    const len = t.shape[d];
    if (len > 0) {
      const dst = makeView(out, t.shape as number[], [...out.strides], out.offset + start * out.strides[d]);
      copyInto(dst, t);
      dst.dispose();
    }
    start += len;
  }
  if (needsGrad(...tensors)) {
    const sizes = tensors.map((t) => t.shape[d]);
    record(out, 'cat', tensors, (g) => split(g, sizes, d), []);
  }
  return out;
}

export function stack(tensors: Tensor[], dim = 0): Tensor {
  if (!Array.isArray(tensors) || tensors.length === 0) throw new Error('nodegrad: stack: expected a non-empty array of tensors');
  tensors.forEach((t) => checkTensor(t, 'stack'));
  const ref = tensors[0];
  for (const t of tensors) {
    if (fmt(t.shape) !== fmt(ref.shape)) throw new Error(`nodegrad: stack: all tensors must have the same shape (got ${tensors.map((x) => fmt(x.shape)).join(', ')})`);
  }
  const d = normDim(dim, ref.ndim + 1, 'stack');
  return cat(tensors.map((t) => unsqueeze(t, d)), d);
}
