// Creating tensors and reading them back.
import { allocTyped, checkDType, f16ToF32, f32ToF16, isFloating, itemSize, typedDType, type DType, type TypedArray } from '../dtype.js';
import { native, type DeviceHandle } from '../native.js';
import { nextRandom } from '../random.js';
import { Storage, parseDevice, type Device } from '../storage.js';
import { Tensor, type NestedArray } from '../tensor.js';
import { empty, MAX_CPU_ELEMENTS } from './alloc.js';
import { checkTensor, fmt, optionsArg } from './check.js';
import { checkShape, contiguousStrides, numelOf } from './dims.js';
import { contiguous } from './shape.js';

export interface CreateOptions { dtype?: DType; device?: Device; requiresGrad?: boolean }

function finish(t: Tensor, opts: CreateOptions | undefined, op: string): Tensor {
  if (opts?.requiresGrad) {
    if (t.dtype !== 'float32' && t.dtype !== 'float64') {
      t.dispose();
      throw new Error(`nodegrad: ${op}: only floating-point tensors can require grad (got dtype ${t.dtype})`);
    }
    t.requiresGrad = true;
  }
  return t;
}

function inferShape(data: NestedArray, op: string): number[] {
  const shape: number[] = [];
  let cur: NestedArray = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    if (cur.length === 0) break;
    cur = cur[0];
  }
  return checkShape(shape, op);
}

// int32 elements from JavaScript numbers follow PyTorch: a fraction is truncated toward
// zero (the Int32Array store does that), and NaN, ±Infinity or a value outside int32 is an
// error instead of a silently wrapped (3e10 -> -64771072) or zeroed (NaN -> 0) element.
// bool takes any number: nonzero (NaN included) is true, as in PyTorch.
const fitsInt32 = (v: number): boolean => v > -2147483649 && v < 2147483648;

function int32Error(op: string, v: number, at: string): Error {
  return new Error(`nodegrad: ${op}: value ${at}cannot be converted to int32 (got ${v}; expected a finite number in ` +
    '[-2147483648, 2147483647], fractions are truncated toward zero)');
}

/** Throws unless the number v can be stored in a tensor of dtype (only int32 has limits). */
export function checkScalarFor(dtype: DType, v: number, op: string, what = ''): void {
  if (dtype === 'int32' && !fitsInt32(v)) throw int32Error(op, v, what ? `${what} ` : '');
}

/** Index of flat element k of a row-major shape, as "[i,j]". */
function indexAt(k: number, shape: readonly number[]): string {
  const idx = new Array<number>(shape.length);
  for (let i = shape.length - 1; i >= 0; i--) {
    idx[i] = k % shape[i];
    k = Math.floor(k / shape[i]);
  }
  return fmt(idx);
}

function flatten(data: NestedArray, shape: number[], out: TypedArray, op: string): void {
  let k = 0;
  const isBool = out instanceof Uint8Array;
  const isInt = out instanceof Int32Array;
  const walk = (v: NestedArray, d: number): void => {
    if (d === shape.length) {
      if (Array.isArray(v)) throw new Error(`nodegrad: ${op}: ragged nested array (expected shape ${fmt(shape)})`);
      if (typeof v === 'boolean') out[k++] = v ? 1 : 0;
      else if (typeof v === 'number') {
        if (isInt && !fitsInt32(v)) throw int32Error(op, v, `at index ${indexAt(k, shape)} `);
        out[k++] = isBool ? (v !== 0 ? 1 : 0) : v;
      } else throw new Error(`nodegrad: ${op}: values must be numbers or booleans (got ${v === null ? 'null' : typeof v})`);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[d]) {
      throw new Error(`nodegrad: ${op}: ragged nested array (expected shape ${fmt(shape)})`);
    }
    for (const x of v) walk(x, d + 1);
  };
  walk(data, 0);
}

function firstLeaf(data: NestedArray): number | boolean | undefined {
  let cur: NestedArray = data;
  while (Array.isArray(cur)) {
    if (cur.length === 0) return undefined;
    cur = cur[0];
  }
  return cur;
}

/**
 * Creates a tensor from a nested array, a typed array or a number. Numbers become
 * float32 and booleans bool unless `dtype` says otherwise; a typed array keeps its type
 * (Float32Array, Float64Array, Int32Array, Uint8Array as bool). Pass `shape` with a flat
 * typed array to give it dimensions.
 */
export function tensor(data: NestedArray | TypedArray | number[], opts: CreateOptions & { shape?: number[] } = {}): Tensor {
  const op = 'tensor';
  opts = optionsArg(opts, op);
  const device = parseDevice(opts.device, op);
  if (ArrayBuffer.isView(data)) {
    const src = data as TypedArray;
    if (!(src instanceof Float32Array || src instanceof Float64Array || src instanceof Int32Array || src instanceof Uint8Array)) {
      throw new Error(`nodegrad: ${op}: unsupported typed array ${Object.prototype.toString.call(src)} (use Float32Array, Float64Array, Int32Array or Uint8Array)`);
    }
    const shape = checkShape(opts.shape ?? [src.length], op);
    if (numelOf(shape) !== src.length) {
      throw new Error(`nodegrad: ${op}: shape ${fmt(shape)} holds ${numelOf(shape)} elements but the array has ${src.length}`);
    }
    const srcType = typedDType(src);
    const dtype = opts.dtype ? checkDType(opts.dtype, op) : srcType;
    if (dtype === 'int32' && (srcType === 'float32' || srcType === 'float64')) {
      for (let i = 0; i < src.length; i++) if (!fitsInt32(src[i])) throw int32Error(op, src[i], `at index ${i} `);
    }
    const copy = allocTyped(srcType, src.length);
    copy.set(src);
    let t = new Tensor(new Storage(device, srcType, src.length, copy), shape, contiguousStrides(shape), 0);
    if (dtype !== srcType) {
      const c = t.to(dtype);
      t.dispose();
      t = c;
    }
    return finish(t, opts, op);
  }
  if (typeof data === 'number' || typeof data === 'boolean') {
    const dtype = opts.dtype ? checkDType(opts.dtype, op) : typeof data === 'boolean' ? 'bool' : 'float32';
    const t = fullOp(op, opts.shape ?? [], Number(data), { dtype, device });
    return finish(t, opts, op);
  }
  if (!Array.isArray(data)) throw new Error(`nodegrad: ${op}: data must be a number, a nested array or a typed array`);
  if (device !== 'cpu') return finish(moveTo(tensor(data, { ...opts, device: 'cpu', requiresGrad: false }), device), opts, op);
  const shape = inferShape(data, op);
  const leaf = firstLeaf(data);
  const dtype = opts.dtype ? checkDType(opts.dtype, op) : typeof leaf === 'boolean' ? 'bool' : 'float32';
  const t = empty(shape, dtype, device);
  if (dtype === 'bfloat16' || dtype === 'float16') {
    t.dispose();
    throw new Error(`nodegrad: ${op}: create ${dtype} tensors by converting a float32 tensor with .to('${dtype}')`);
  }
  flatten(data, shape, t.storage.data, op);
  if (opts.shape) {
    // the view keeps the storage alive; the shapeless tensor is not handed out
    try {
      return finish(t.reshape(opts.shape), opts, op);
    } finally {
      t.dispose();
    }
  }
  return finish(t, opts, op);
}

export function full(shape: readonly number[], value: number, opts: CreateOptions = {}): Tensor {
  return fullOp('full', shape, value, opts);
}

function fullOp(op: string, shape: readonly number[], value: number, opts: CreateOptions): Tensor {
  opts = optionsArg(opts, op);
  const s = checkShape(shape, op);
  const dtype = opts.dtype ? checkDType(opts.dtype, op) : 'float32';
  const device = parseDevice(opts.device, op);
  if (typeof value !== 'number' && typeof value !== 'boolean') throw new Error(`nodegrad: ${op}: value must be a number (got ${value === null ? 'null' : typeof value})`);
  checkScalarFor(dtype, Number(value), op);
  const t = empty(s, dtype, device, true, op);
  // float16 is filled with its bit pattern here: the native fill encodes 16-bit buffers as bfloat16
  if (dtype === 'float16' && device === 'cpu') t.storage.data.fill(f32ToF16([Number(value)])[0]);
  else if (value !== 0) native.fill(s, t.storage.data, 0, t.strides as number[], Number(value));
  return finish(t, opts, op);
}

export function zeros(shape: readonly number[], opts: CreateOptions = {}): Tensor { return full(shape, 0, opts); }
export function ones(shape: readonly number[], opts: CreateOptions = {}): Tensor { return full(shape, 1, opts); }
export function zerosLike(t: Tensor, opts: CreateOptions = {}): Tensor { return fullLikeOp('zerosLike', t, 0, opts); }
export function onesLike(t: Tensor, opts: CreateOptions = {}): Tensor { return fullLikeOp('onesLike', t, 1, opts); }
export function fullLike(t: Tensor, value: number, opts: CreateOptions = {}): Tensor { return fullLikeOp('fullLike', t, value, opts); }
function fullLikeOp(op: string, t: Tensor, value: number, opts: CreateOptions): Tensor {
  checkTensor(t, op);
  return fullOp(op, t.shape, value, { dtype: t.dtype, device: t.device, ...optionsArg(opts, op) });
}

/** arange(end) or arange(start, end, step). Integers give int32 unless dtype says otherwise. */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  opts = optionsArg(opts, 'arange');
  if (end === undefined) { end = start; start = 0; }
  for (const [n, v] of [['start', start], ['end', end], ['step', step]] as const) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`nodegrad: arange: ${n} must be a finite number (got ${String(v)})`);
  }
  if (step === 0) throw new Error('nodegrad: arange: step must be non-zero');
  const n = Math.max(0, Math.ceil((end - start) / step));
  const allInt = Number.isInteger(start) && Number.isInteger(end) && Number.isInteger(step);
  const dtype = checkDType(opts.dtype ?? (allInt ? 'int32' : 'float32'), 'arange');
  const device = parseDevice(opts.device, 'arange');
  if (n > 0 && dtype === 'int32') {
    // the values are monotonic: both ends in range means every value is
    checkScalarFor(dtype, start, 'arange', 'at index [0]');
    checkScalarFor(dtype, start + (n - 1) * step, 'arange', `at index [${n - 1}]`);
  }
  const t = empty([n], valuesDType(dtype), 'cpu', true, 'arange');
  const d = t.storage.data;
  for (let i = 0; i < n; i++) d[i] = start + i * step;
  return finish(moveTo(toDType(t, dtype), device), opts, 'arange');
}

// 16-bit tensors hold raw bit patterns: values written from JavaScript go into a float32
// tensor that is then converted (toDType).
function valuesDType(dtype: DType): DType {
  return dtype === 'bfloat16' || dtype === 'float16' ? 'float32' : dtype;
}
function toDType(t: Tensor, dtype: DType): Tensor {
  if (t.dtype === dtype) return t;
  const c = t.to(dtype);
  t.dispose();
  return c;
}

export function linspace(start: number, end: number, steps: number, opts: CreateOptions = {}): Tensor {
  opts = optionsArg(opts, 'linspace');
  if (!Number.isInteger(steps) || steps < 0) throw new Error(`nodegrad: linspace: steps must be a non-negative integer (got ${steps})`);
  if (typeof start !== 'number' || typeof end !== 'number') {
    throw new Error(`nodegrad: linspace: start and end must be numbers (got ${typeof start} and ${typeof end})`);
  }
  const device = parseDevice(opts.device, 'linspace');
  const dtype = checkDType(opts.dtype ?? 'float32', 'linspace');
  if (steps > 0) {
    checkScalarFor(dtype, start, 'linspace', 'at index [0]');
    checkScalarFor(dtype, end, 'linspace', `at index [${steps - 1}]`);
  }
  const t = empty([steps], valuesDType(dtype), 'cpu', true, 'linspace');
  const d = t.storage.data;
  for (let i = 0; i < steps; i++) d[i] = steps === 1 ? start : start + ((end - start) * i) / (steps - 1);
  return finish(moveTo(toDType(t, dtype), device), opts, 'linspace');
}

export function eye(n: number, m = n, opts: CreateOptions = {}): Tensor {
  opts = optionsArg(opts, 'eye');
  const device = parseDevice(opts.device, 'eye');
  const dtype = checkDType(opts.dtype ?? 'float32', 'eye');
  const t = fullOp('eye', [n, m], 0, { dtype: valuesDType(dtype) });
  const d = t.storage.data;
  for (let i = 0; i < Math.min(n, m); i++) d[i * m + i] = 1;
  return finish(moveTo(toDType(t, dtype), device), opts, 'eye');
}

function randomTensor(op: string, kind: number, shape: readonly number[], a: number, b: number, opts: CreateOptions, defaultDType: DType): Tensor {
  const s = checkShape(shape, op);
  const dtype = checkDType(opts.dtype ?? defaultDType, op);
  if ((kind === 0 || kind === 1) && !isFloating(dtype)) {
    throw new Error(`nodegrad: ${op}: dtype must be floating-point (got ${dtype}; expected float32, float64, bfloat16 or float16)`);
  }
  const device = parseDevice(opts.device, op);
  if (device === 'cpu' && (dtype === 'bfloat16' || dtype === 'float16')) {
    // the CPU generator writes float32 and float64: draw in float32 and round once
    return finish(toDType(randomTensor(op, kind, s, a, b, { device }, 'float32'), dtype), opts, op);
  }
  const t = empty(s, dtype, device, true, op);
  const [seed, offset] = nextRandom(t.numel);
  native.randomFill(kind, t.storage.data, t.numel, seed, offset, a, b);
  return finish(t, opts, op);
}

/** Uniform in [0, 1) (or [low, high)). */
export function rand(shape: readonly number[], opts: CreateOptions & { low?: number; high?: number } = {}): Tensor {
  opts = optionsArg(opts, 'rand');
  const lo = opts.low ?? 0, hi = opts.high ?? 1;
  if (!(hi > lo)) throw new Error(`nodegrad: rand: high (${String(hi)}) must be greater than low (${String(lo)})`);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new Error(`nodegrad: rand: low and high must be finite (got ${lo}, ${hi})`);
  return randomTensor('rand', 0, shape, lo, hi, opts, 'float32');
}
/** Normal with mean 0 and std 1 (or the given mean/std). */
export function randn(shape: readonly number[], opts: CreateOptions & { mean?: number; std?: number } = {}): Tensor {
  opts = optionsArg(opts, 'randn');
  const std = opts.std ?? 1, mean = opts.mean ?? 0;
  if (typeof mean !== 'number' || typeof std !== 'number') {
    throw new Error(`nodegrad: randn: mean and std must be numbers (got ${typeof mean} and ${typeof std})`);
  }
  if (!(std >= 0)) throw new Error(`nodegrad: randn: std must be >= 0 (got ${std})`);
  return randomTensor('randn', 1, shape, mean, std, opts, 'float32');
}
/** Integers uniform in [low, high), int32 by default. */
export function randint(low: number, high: number, shape: readonly number[], opts: CreateOptions = {}): Tensor {
  opts = optionsArg(opts, 'randint');
  if (!Number.isInteger(low) || !Number.isInteger(high) || high <= low) {
    throw new Error(`nodegrad: randint: expected integers low < high (got ${low}, ${high})`);
  }
  if (!Number.isSafeInteger(high - low)) {
    throw new Error(`nodegrad: randint: the range [${low}, ${high}) is too wide (expected high - low <= 2^53 - 1)`);
  }
  if ((opts.dtype ?? 'int32') === 'int32' && (low < -(2 ** 31) || high > 2 ** 31)) {
    throw new Error(`nodegrad: randint: the range [${low}, ${high}) does not fit in int32 (expected -2147483648 <= low < high <= 2147483648; pass dtype: 'float64' for a wider range)`);
  }
  return randomTensor('randint', 2, shape, low, high, opts, 'int32');
}
/** Bernoulli draws with probability p of 1 (bool by default). */
export function bernoulli(shape: readonly number[], p: number, opts: CreateOptions = {}): Tensor {
  opts = optionsArg(opts, 'bernoulli');
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new Error(`nodegrad: bernoulli: p must be in [0, 1] (got ${String(p)})`);
  return randomTensor('bernoulli', 3, shape, p, 0, opts, 'bool');
}

/** The element count of t, checked to fit one CPU buffer (a broadcast view can be far larger than its storage). */
function checkReadable(t: Tensor): number {
  const n = t.numel;
  if (n > MAX_CPU_ELEMENTS) {
    throw new Error(`nodegrad: data: a ${t.dtype} tensor of shape ${fmt(t.shape)} has too many elements to read (got ${n}; expected at most ${MAX_CPU_ELEMENTS})`);
  }
  return n;
}

/** Row-major copy of a tensor's values as a typed array of its dtype. */
export function readData(t: Tensor): TypedArray {
  t.assertLive('data');
  const out = allocTyped(t.dtype, checkReadable(t));
  if (t.numel === 0) return out;
  if (t.device !== 'cpu') {
    const c = t.isContiguous() ? t : contiguous(t);
    try {
      native.cudaDownload(c.storage.data as unknown as DeviceHandle, c.offset, out);
    } finally {
      if (c !== t) c.dispose();
    }
    return out;
  }
  const src = t.storage.data;
  if (t.isContiguous()) {
    out.set(src.subarray(t.offset, t.offset + t.numel) as never);
  } else {
    native.copy([...t.shape], out, 0, contiguousStrides(t.shape), src, t.offset, t.strides as number[]);
  }
  return out;
}

/** Row-major copy of a tensor's values, read without blocking the event loop on CUDA. */
export async function readDataAsync(t: Tensor): Promise<TypedArray> {
  t.assertLive('data');
  if (t.device === 'cpu' || t.numel === 0) return readData(t);
  const out = allocTyped(t.dtype, checkReadable(t));
  const c = t.isContiguous() ? t : contiguous(t);
  // the copy is queued now (it sees exactly the kernels issued so far), so the temporary
  // may be released at once: its block is reused only by kernels queued after the copy
  const p = native.cudaDownloadAsync(c.storage.data as unknown as DeviceHandle, c.offset, out);
  if (c !== t) c.dispose();
  await p;
  return out;
}

/** t itself when it is on `device` already; otherwise a copy there (and t is disposed). */
export function moveTo(t: Tensor, device: Device): Tensor {
  if (device === t.device) return t;
  const g = t.to(device);
  t.dispose();
  return g;
}

/**
 * Row-major values as numbers: like readData, except that bfloat16 and float16 (stored as
 * raw 16-bit patterns, which readData returns unchanged for writers of raw bytes) become float32.
 */
export function readValues(t: Tensor): TypedArray {
  const d = readData(t);
  if (t.dtype === 'float16') return f16ToF32(d);
  if (t.dtype !== 'bfloat16') return d;
  const bits = new Uint32Array(d.length);
  for (let i = 0; i < d.length; i++) bits[i] = d[i] << 16;
  return new Float32Array(bits.buffer);
}

/** How many arrays the nested form of `shape` has ([2,3,4]: 1 + 2 + 6; an empty dim ends the count). */
function nestedArrays(shape: readonly number[]): number {
  let n = 0, rows = 1;
  for (const s of shape) {
    n += rows;
    rows *= s;
    if (rows === 0) break;
  }
  return n;
}

export function toNested(t: Tensor): NestedArray {
  const arrays = nestedArrays(t.shape);
  if (arrays > MAX_CPU_ELEMENTS) {
    throw new Error(`nodegrad: tolist: a tensor of shape ${fmt(t.shape)} would need ${arrays} nested arrays (expected at most ${MAX_CPU_ELEMENTS})`);
  }
  const data = readValues(t);
  const conv = t.dtype === 'bool' ? (v: number) => v !== 0 : (v: number) => v;
  const build = (d: number, off: number): NestedArray => {
    if (d === t.ndim) return conv(data[off]) as number;
    const n = t.shape[d];
    const stride = t.shape.slice(d + 1).reduce((a, b) => a * b, 1);
    const arr: NestedArray[] = new Array(n);
    for (let i = 0; i < n; i++) arr[i] = build(d + 1, off + i * stride);
    return arr;
  };
  return build(0, 0);
}

// Like JSON.stringify of the nested values, but NaN and ±Infinity print as themselves.
function formatNested(v: NestedArray): string {
  if (Array.isArray(v)) return `[${v.map(formatNested).join(',')}]`;
  if (typeof v === 'number' && Number.isFinite(v) && !Number.isInteger(v)) return String(+v.toFixed(4));
  return String(v);
}

export function format(t: Tensor): string {
  if (t.isDisposed) return `Tensor(disposed, shape=${fmt(t.shape)}, dtype=${t.dtype})`;
  const big = t.numel > 1000;
  let body: string;
  if (t.numel > MAX_CPU_ELEMENTS || nestedArrays(t.shape) > 100_000) body = t.numel === 0 ? '[]' : '[...]';  // a huge broadcast view
  else if (big) {
    const d = readValues(t);
    body = `[${Array.from(d.subarray(0, 6) as ArrayLike<number>).map((v) => +v.toFixed(4)).join(', ')}, ...]`;
  } else {
    body = formatNested(toNested(t));
  }
  const grad = t.gradFn ? `, gradFn=${t.gradFn.name}` : t.requiresGrad ? ', requiresGrad=true' : '';
  return `Tensor(${body}, shape=${fmt(t.shape)}, dtype=${t.dtype}, device=${t.device}${grad})`;
}

export function nbytes(t: Tensor): number {
  return t.numel * itemSize[t.dtype];
}
