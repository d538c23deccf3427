// Tensor: a strided view (shape, strides, offset) over a reference-counted Storage,
// plus autograd state. Methods are thin forwards to the op functions in lib/ops/*.
import type { DType, TypedArray } from './dtype.js';
import { checkDType, DTYPES } from './dtype.js';
import { backward, needsGrad, record, type BackwardOptions, type GradNode } from './autograd.js';
import { trackTensor, untrackTensor, keep, releaseGraphRefs } from './memory.js';
import type { GraphHold } from './memory.js';
import { parseDevice, Storage, type Device } from './storage.js';
import * as ew from './ops/elementwise.js';
import * as sh from './ops/shape.js';
import * as rd from './ops/reduce.js';
import * as cr from './ops/creation.js';
import * as mm from './ops/matmul.js';
import * as sm from './ops/softmax.js';
import * as ix from './ops/indexing.js';
import { contiguousStrides } from './ops/dims.js';

export type NestedArray = number | boolean | NestedArray[];
export type Scalar = number;
export type TensorLike = Tensor | number;
export type Dims = number | number[];

/**
 * Checks a view before a Tensor is built on it: integer shape (non-negative) and strides of
 * one length, an integer offset, and every element the view reaches inside the storage.
 * An empty view reaches nothing and may carry any non-negative offset. Without this, a
 * hand-built view outside its storage would read zeros or write a file whose header
 * disagrees with its bytes.
 */
function checkView(storage: Storage, shape: readonly number[], strides: readonly number[], offset: number): void {
  if (!(storage instanceof Storage)) throw new Error('nodegrad: Tensor: storage must be a Storage');
  if (storage.freed) throw new Error(`nodegrad: Tensor: storage ${storage.id} was already freed`);
  if (!Array.isArray(shape) || !Array.isArray(strides) || shape.length !== strides.length) {
    throw new Error(`nodegrad: Tensor: shape and strides must be arrays of one length (got shape ${viewText(shape)}, strides ${viewText(strides)})`);
  }
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new Error(`nodegrad: Tensor: offset must be a non-negative integer (got ${String(offset)})`);
  }
  let lo = offset, hi = offset, empty = false;
  for (let i = 0; i < shape.length; i++) {
    const n = shape[i], s = strides[i];
    if (!Number.isSafeInteger(n) || n < 0 || !Number.isSafeInteger(s)) {
      throw new Error(`nodegrad: Tensor: shape must hold non-negative integers and strides integers (got shape ${viewText(shape)}, strides ${viewText(strides)})`);
    }
    if (n === 0) empty = true;
    else if (s > 0) hi += (n - 1) * s;
    else lo += (n - 1) * s;
  }
  if (!empty && (lo < 0 || hi >= storage.length)) {
    throw new Error(`nodegrad: Tensor: view reaches elements ${lo}..${hi}, outside its storage of ${storage.length} elements ` +
      `(got shape ${viewText(shape)}, strides ${viewText(strides)}, offset ${offset})`);
  }
}

function viewText(xs: unknown): string {
  return Array.isArray(xs) ? `[${xs.map(String).join(',')}]` : String(xs);
}

/** Internal (lib/ops/alloc.ts's empty()): the Tensor constructor's mark of a fresh, contiguous output. */
export const FRESH: unique symbol = Symbol('nodegrad.freshTensor');

export class Tensor {
  readonly storage: Storage;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly offset: number;
  readonly dtype: DType;
  requiresGrad = false;
  grad: Tensor | null = null;
  gradFn: GradNode | null = null;
  retainsGrad = false;
  /** Internal: state of the FinalizationRegistry backstop (lib/memory.ts): 0 none, 1 pending, 2 registered. */
  _gc = 0;
  /** Internal (lib/memory.ts): creation order, and the graph holds of scope() results. */
  _seq = 0;
  _holds: GraphHold[] | null = null;
  _heldBy: GraphHold | null = null;
  _savers = 0;
  /** Internal: made by a view op (reshape, narrow, transpose, detach...) over another tensor's storage. */
  _isView = false;
  private disposed = false;

  /**
   * Internal: use nodegrad.tensor(), zeros(), ... to create tensors. `fresh` (FRESH, for
   * lib/ops/alloc.ts's empty()) marks a contiguous view at offset 0 over a storage just
   * made for it, which needs no check.
   */
  constructor(storage: Storage, shape: readonly number[], strides: readonly number[], offset: number, fresh?: typeof FRESH) {
    if (fresh !== FRESH) checkView(storage, shape, strides, offset);
    this.storage = storage;
    this.shape = shape;
    this.strides = strides;
    this.offset = offset;
    this.dtype = storage.dtype;
    storage.retain();
    trackTensor(this);
  }

  get device(): Device { return this.storage.device; }
  get ndim(): number { return this.shape.length; }
  get numel(): number {
    let n = 1;
    for (const s of this.shape) n *= s;
    return n;
  }
  get isLeaf(): boolean { return this.gradFn === null; }
  get isDisposed(): boolean { return this.disposed; }
  /** Times the storage was changed in place (shared by every view of it; PyTorch's `_version`). */
  get _version(): number { return this.storage.version; }
  get itemSize(): number { return this.storage.nbytes / Math.max(1, this.storage.length); }

  size(): number[];
  size(dim: number): number;
  size(dim?: number): number | number[] {
    if (dim === undefined) return [...this.shape];
    return this.shape[sh.normDim(dim, this.ndim, 'size')];
  }

  isContiguous(): boolean {
    let expect = 1;
    for (let i = this.shape.length - 1; i >= 0; i--) {
      if (this.shape[i] !== 1 && this.strides[i] !== expect) return false;
      expect *= this.shape[i];
    }
    return true;
  }

  /** Throws if the tensor was disposed. */
  assertLive(op: string): void {
    if (this.disposed) {
      throw new Error(`nodegrad: ${op}: tensor of shape [${this.shape.join(',')}] (${this.dtype}) was disposed`);
    }
  }

  // ---- lifetime ------------------------------------------------------------------
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    untrackTensor(this);
    this.storage.release();
    if (this.grad && this.grad.storage !== this.storage) this.grad.dispose();
    this.grad = null;
    // gradFn stays: a backward through this tensor needs no values of it (those that need
    // them saved it, and check that it is alive), so disposing it never cuts the graph
    if (this._holds !== null || this._heldBy !== null) releaseGraphRefs(this);
  }
  [Symbol.dispose](): void { this.dispose(); }
  /** Keeps this tensor alive past the enclosing scope(). */
  keep(): this { return keep(this); }

  // ---- reading values -------------------------------------------------------------
  /** A flat copy of the values in row-major order. */
  dataSync(): TypedArray { return cr.readData(this); }
  /** The values as a typed array; on CUDA the copy does not block the event loop. */
  async data(): Promise<TypedArray> { return cr.readDataAsync(this); }
  tolist(): NestedArray { return cr.toNested(this); }
  item(): number {
    this.assertLive('item');
    if (this.numel !== 1) throw new Error(`nodegrad: item: tensor has ${this.numel} elements, expected exactly 1 (shape [${this.shape.join(',')}])`);
    return cr.readValues(this)[0];
  }
  toString(): string { return cr.format(this); }
  [Symbol.for('nodejs.util.inspect.custom')](): string { return cr.format(this); }

  // ---- autograd ---------------------------------------------------------------------
  backward(gradient?: Tensor, opts?: BackwardOptions): void { backward(this, gradient, opts); }
  detach(): Tensor { return sh.detach(this); }
  requiresGrad_(on = true): this {
    if (on && !this.isLeaf) throw new Error('nodegrad: requiresGrad_: only leaf tensors can be made to require grad');
    if (on && this.dtype !== 'float32' && this.dtype !== 'float64' && this.dtype !== 'bfloat16' && this.dtype !== 'float16') {
      throw new Error(`nodegrad: requiresGrad_: only floating-point tensors can require grad (got ${this.dtype})`);
    }
    this.requiresGrad = on;
    return this;
  }
  retainGrad(): this { this.retainsGrad = true; return this; }
  zeroGrad(): void { if (this.grad) { this.grad.dispose(); this.grad = null; } }

  // ---- conversion -------------------------------------------------------------------
  to(target: DType | Device | { dtype?: DType; device?: Device }): Tensor {
    if (target !== null && typeof target === 'object') {
      let t: Tensor = this;
      if (target.device !== undefined) t = t.toDevice(target.device);
      if (target.dtype !== undefined) t = ew.cast(t, checkDType(target.dtype, 'to'));
      return t;
    }
    if (typeof target === 'string' && (DTYPES as readonly string[]).includes(target)) return ew.cast(this, target as DType);
    if (target === 'cpu' || (typeof target === 'string' && target.startsWith('cuda'))) return this.toDevice(target as Device);
    throw new Error(`nodegrad: to: unknown dtype or device ${JSON.stringify(target) ?? String(target)} ` +
      `(expected a device: 'cpu', 'cuda' or 'cuda:N'; or a dtype: ${DTYPES.join(', ')})`);
  }
  /**
   * A copy on device d (this tensor itself when it is already there). Host -> device
   * uploads from the tensor's contiguous values; device -> host waits for the kernels
   * queued before it. Differentiable: the gradient moves back to this tensor's device.
   */
  private toDevice(d: Device): Tensor {
    const target = parseDevice(d, 'to');
    this.assertLive('to');
    if (target === this.device) return this;
    let out: Tensor;
    const shape = [...this.shape];
    if (target === 'cpu' || this.device !== 'cpu') {
      // device -> host (and device -> other device, through the host)
      const values = cr.readData(this);
      const st = new Storage('cpu', this.dtype, values.length, values);
      out = new Tensor(st, shape, contiguousStrides(shape), 0);
      if (target !== 'cpu') {
        const moved = new Tensor(new Storage(target, this.dtype, values.length, values), shape, contiguousStrides(shape), 0);
        out.dispose();
        out = moved;
      }
    } else {
      const values = this.isContiguous() && this.offset === 0 && this.storage.length === this.numel
        ? this.storage.data
        : cr.readData(this);
      out = new Tensor(new Storage(target, this.dtype, this.numel, values), shape, contiguousStrides(shape), 0);
    }
    if (needsGrad(this)) {
      const from = this.device;
      record(out, 'to', [this], (g) => [g.to(from)], []);
    }
    return out;
  }
  cpu(): Tensor { return this.toDevice('cpu'); }
  cuda(device?: number): Tensor { return this.toDevice(device === undefined ? 'cuda' : `cuda:${device}`); }
  float(): Tensor { return ew.cast(this, 'float32'); }
  double(): Tensor { return ew.cast(this, 'float64'); }
  int(): Tensor { return ew.cast(this, 'int32'); }
  bool(): Tensor { return ew.cast(this, 'bool'); }
  contiguous(): Tensor { return sh.contiguous(this); }
  clone(): Tensor { return sh.clone(this); }
  onesLike(): Tensor { return cr.full(this.shape, 1, { dtype: this.dtype, device: this.device }); }
  zerosLike(): Tensor { return cr.full(this.shape, 0, { dtype: this.dtype, device: this.device }); }

  // ---- views ------------------------------------------------------------------------
  reshape(...shape: (number | number[])[]): Tensor { return sh.reshape(this, sh.shapeArg(shape)); }
  view(...shape: (number | number[])[]): Tensor { return sh.view(this, sh.shapeArg(shape)); }
  flatten(startDim = 0, endDim = -1): Tensor { return sh.flatten(this, startDim, endDim); }
  transpose(dim0: number, dim1: number): Tensor { return sh.transpose(this, dim0, dim1); }
  get T(): Tensor { return sh.permute(this, this.shape.map((_, i) => this.ndim - 1 - i)); }
  t(): Tensor {
    if (this.ndim > 2) throw new Error(`nodegrad: t: expects a tensor with <= 2 dims (got ${this.ndim}); use transpose()`);
    return this.ndim < 2 ? this : sh.transpose(this, 0, 1);
  }
  permute(...dims: (number | number[])[]): Tensor { return sh.permute(this, sh.shapeArg(dims)); }
  narrow(dim: number, start: number, length: number): Tensor { return sh.narrow(this, dim, start, length); }
  slice(dim: number, start?: number, end?: number, step = 1): Tensor { return sh.slice(this, dim, start, end, step); }
  select(dim: number, index: number): Tensor { return sh.select(this, dim, index); }
  expand(...shape: (number | number[])[]): Tensor { return sh.expand(this, sh.shapeArg(shape)); }
  expandAs(other: Tensor): Tensor { return sh.expand(this, [...other.shape]); }
  unsqueeze(dim: number): Tensor { return sh.unsqueeze(this, dim); }
  squeeze(dim?: number | number[]): Tensor { return sh.squeeze(this, dim); }
  split(sizeOrSections: number | number[], dim = 0): Tensor[] { return sh.split(this, sizeOrSections, dim); }
  chunk(chunks: number, dim = 0): Tensor[] { return sh.chunk(this, chunks, dim); }

  // ---- elementwise ------------------------------------------------------------------
  add(other: TensorLike, alpha?: number): Tensor { return ew.add(this, other, alpha); }
  sub(other: TensorLike, alpha?: number): Tensor { return ew.sub(this, other, alpha); }
  mul(other: TensorLike): Tensor { return ew.mul(this, other); }
  div(other: TensorLike): Tensor { return ew.div(this, other); }
  pow(exponent: TensorLike): Tensor { return ew.pow(this, exponent); }
  maximum(other: TensorLike): Tensor { return ew.maximum(this, other); }
  minimum(other: TensorLike): Tensor { return ew.minimum(this, other); }
  neg(): Tensor { return ew.neg(this); }
  exp(): Tensor { return ew.exp(this); }
  log(): Tensor { return ew.log(this); }
  sqrt(): Tensor { return ew.sqrt(this); }
  rsqrt(): Tensor { return ew.rsqrt(this); }
  abs(): Tensor { return ew.abs(this); }
  tanh(): Tensor { return ew.tanh(this); }
  sigmoid(): Tensor { return ew.sigmoid(this); }
  relu(): Tensor { return ew.relu(this); }
  gelu(opts?: { approximate?: 'none' | 'tanh' }): Tensor { return ew.gelu(this, opts); }
  silu(): Tensor { return ew.silu(this); }
  square(): Tensor { return ew.square(this); }
  reciprocal(): Tensor { return ew.reciprocal(this); }
  sin(): Tensor { return ew.sin(this); }
  cos(): Tensor { return ew.cos(this); }
  sign(): Tensor { return ew.sign(this); }
  floor(): Tensor { return ew.floor(this); }
  ceil(): Tensor { return ew.ceil(this); }
  round(): Tensor { return ew.round(this); }
  clamp(min?: number | null, max?: number | null): Tensor { return ew.clamp(this, min, max); }
  eq(other: TensorLike): Tensor { return ew.eq(this, other); }
  ne(other: TensorLike): Tensor { return ew.ne(this, other); }
  lt(other: TensorLike): Tensor { return ew.lt(this, other); }
  le(other: TensorLike): Tensor { return ew.le(this, other); }
  gt(other: TensorLike): Tensor { return ew.gt(this, other); }
  ge(other: TensorLike): Tensor { return ew.ge(this, other); }
  logicalNot(): Tensor { return ew.logicalNot(this); }
  logicalAnd(other: Tensor): Tensor { return ew.logicalAnd(this, other); }
  logicalOr(other: Tensor): Tensor { return ew.logicalOr(this, other); }
  isnan(): Tensor { return ew.isnan(this); }
  maskedFill(mask: Tensor, value: number): Tensor { return ew.maskedFill(this, mask, value); }
  where(condition: Tensor, other: TensorLike): Tensor { return ew.where(condition, this, other); }

  // in place: recorded on the tape (the tensor's gradFn becomes the op's node) when the
  // tensor or an operand requires grad; a leaf that requires grad takes them under noGrad() only
  add_(other: TensorLike, alpha?: number): this { ew.inplace(this, 'add_', other, alpha); return this; }
  sub_(other: TensorLike, alpha?: number): this { ew.inplace(this, 'sub_', other, alpha); return this; }
  mul_(other: TensorLike): this { ew.inplace(this, 'mul_', other); return this; }
  div_(other: TensorLike): this { ew.inplace(this, 'div_', other); return this; }
  fill_(value: number): this { ew.fill_(this, value); return this; }
  zero_(): this { ew.fill_(this, 0, 'zero_'); return this; }
  copy_(src: Tensor): this { ew.copy_(this, src); return this; }
  clamp_(min?: number | null, max?: number | null): this { ew.clamp_(this, min, max); return this; }

  // ---- reductions -------------------------------------------------------------------
  sum(dim?: Dims, keepdim = false): Tensor { return rd.sum(this, dim, keepdim); }
  mean(dim?: Dims, keepdim = false): Tensor { return rd.mean(this, dim, keepdim); }
  var(dim?: Dims, opts?: { correction?: number; keepdim?: boolean }): Tensor { return rd.variance(this, dim, opts); }
  std(dim?: Dims, opts?: { correction?: number; keepdim?: boolean }): Tensor { return rd.std(this, dim, opts); }
  max(): Tensor;
  max(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  max(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    return dim === undefined ? rd.amax(this) : rd.maxDim(this, dim, keepdim);
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  min(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    return dim === undefined ? rd.amin(this) : rd.minDim(this, dim, keepdim);
  }
  amax(dim?: Dims, keepdim = false): Tensor { return rd.amax(this, dim, keepdim); }
  amin(dim?: Dims, keepdim = false): Tensor { return rd.amin(this, dim, keepdim); }
  argmax(dim?: number, keepdim = false): Tensor { return rd.argmax(this, dim, keepdim); }
  argmin(dim?: number, keepdim = false): Tensor { return rd.argmin(this, dim, keepdim); }
  logsumexp(dim: Dims, keepdim = false): Tensor { return rd.logsumexp(this, dim, keepdim); }
  norm(p = 2, dim?: Dims, keepdim = false): Tensor { return rd.norm(this, p, dim, keepdim); }

  // ---- linear algebra, softmax, indexing ----------------------------------------------
  matmul(other: Tensor): Tensor { return mm.matmul(this, other); }
  softmax(dim: number): Tensor { return sm.softmax(this, dim); }
  logSoftmax(dim: number): Tensor { return sm.logSoftmax(this, dim); }
  gather(dim: number, index: Tensor): Tensor { return ix.gather(this, dim, index); }
  indexSelect(dim: number, index: Tensor): Tensor { return ix.indexSelect(this, dim, index); }
  topk(k: number, opts?: { dim?: number; largest?: boolean; sorted?: boolean }): { values: Tensor; indices: Tensor } {
    return ix.topk(this, k, opts);
  }
}
