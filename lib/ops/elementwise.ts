// Broadcasting binary ops, unary ops, comparisons, where/maskedFill, casts and the
// in-place updates optimizers use. One native call per op over strided views; the
// backward formulas are written with public ops (so they serve every backend).
import { f16ToF32, f32ToF16, isFloating, promoteTypes, type DType, type TypedArray } from '../dtype.js';
import { hasGraphViews, isGradEnabled, needsGrad, noGrad, record, recordInplace } from '../autograd.js';
import { native } from '../native.js';
import { Tensor, type TensorLike } from '../tensor.js';
import { checkScalarFor, full, readData } from './creation.js';
import { sumToShape } from './reduce.js';
import { checkAlloc, empty } from './alloc.js';
import { checkSameDevice, checkTensor, fmt, optionsArg } from './check.js';
import { broadcastShapes } from './dims.js';
import { argsBroadcast, argsHead, argsView, packBroadcastStrides, packDims, va } from './native_args.js';

// The addon also takes shapes and strides packed in Float64Arrays (packDims in native_args.ts).
type Dims = number[] | Float64Array;
declare module '../native.js' {
  interface NativeAddon {
    binary(op: number, shape: Dims, out: TypedArray, oOff: number, oSt: Dims,
      a: TypedArray, aOff: number, aSt: Dims, b: TypedArray, bOff: number, bSt: Dims): void;
    binaryScalar(op: number, shape: Dims, out: TypedArray, oOff: number, oSt: Dims,
      a: TypedArray, aOff: number, aSt: Dims, scalar: number, reverse: boolean): void;
    unary(op: number, shape: Dims, out: TypedArray, oOff: number, oSt: Dims,
      x: TypedArray, xOff: number, xSt: Dims, alpha: number, beta: number): void;
    unaryBackward(op: number, shape: Dims, gx: TypedArray, gxOff: number, gxSt: Dims,
      x: TypedArray, xOff: number, xSt: Dims, gy: TypedArray, gyOff: number, gySt: Dims, alpha: number): void;
    copy(shape: Dims, dst: TypedArray, dOff: number, dSt: Dims, src: TypedArray, sOff: number, sSt: Dims): void;
    fill(shape: Dims, out: TypedArray, oOff: number, oSt: Dims, value: number): void;
    // the packed forms (shapes, strides, offsets and scalars in native_args.ts's ARGS)
    binaryP(out: TypedArray, a: TypedArray, b: TypedArray): void;
    binaryScalarP(out: TypedArray, a: TypedArray): void;
    unaryP(out: TypedArray, x: TypedArray): void;
    where(shape: Dims, out: TypedArray, oOff: number, oSt: Dims, c: TypedArray, cOff: number, cSt: Dims,
      a: TypedArray, aOff: number, aSt: Dims, b: TypedArray, bOff: number, bSt: Dims): void;
  }
}

// Codes of native/cpu/elementwise.h
export const Bin = {
  add: 0, sub: 1, mul: 2, div: 3, pow: 4, maximum: 5, minimum: 6, eq: 7, ne: 8, lt: 9, le: 10, gt: 11, ge: 12,
  logicalAnd: 13, logicalOr: 14, floorDiv: 15, remainder: 16, atan2: 17,
} as const;
export const Un = {
  neg: 0, exp: 1, log: 2, sqrt: 3, rsqrt: 4, abs: 5, tanh: 6, sigmoid: 7, relu: 8, gelu: 9, geluTanh: 10, silu: 11,
  sin: 12, cos: 13, reciprocal: 14, square: 15, sign: 16, floor: 17, ceil: 18, round: 19, log1p: 20, expm1: 21,
  erf: 22, affine: 23, clamp: 24, powScalar: 25, logicalNot: 26, isnan: 27, isinf: 28, leakyRelu: 29,
} as const;
export const UnGrad = { relu: 0, gelu: 1, geluTanh: 2, silu: 3, tanh: 4, sigmoid: 5, leakyRelu: 6 } as const;

// Comparisons and logical ops (bool output): the codes eq..logicalOr, a range (no Set lookup per op)
const isCompare = (code: number): boolean => code >= Bin.eq && code <= Bin.logicalOr;

const BIN_NAMES: string[] = [];
for (const [k, v] of Object.entries(Bin)) BIN_NAMES[v] = k;
function opName(code: number): string {
  return BIN_NAMES[code] ?? 'binary';
}

/**
 * dtype conversion (returns t itself when the dtype already matches). Floating -> int32
 * truncates toward zero, as in PyTorch; NaN, ±Infinity and values outside int32 give an
 * unspecified int32 there (PyTorch: undefined behaviour; the CPU kernel gives -2147483648),
 * so they are not checked here, on the hot path. JavaScript numbers entering int32
 * tensors (tensor(), full(), fill_(), arange()...) are checked instead (creation.ts).
 */
export function cast(t: Tensor, dtype: DType): Tensor {
  checkTensor(t, 'to');
  if (t.dtype === dtype) return t;
  let out: Tensor;
  // CPU kernels read every 16-bit buffer as bfloat16; CUDA kernels know float16
  if ((dtype === 'float16' || t.dtype === 'float16') && t.device === 'cpu') out = castHalf(t, dtype);
  else {
    out = empty(t.shape, dtype, t.device, false, 'to');
    native.copy(packDims(0, t.shape), out.storage.data, out.offset, packDims(1, out.strides), t.storage.data, t.offset,
      packDims(2, t.strides));
  }
  if (needsGrad(t) && isFloating(dtype)) {
    const from = t.dtype;
    record(out, 'to', [t], (g) => [cast(g, from)], []);
  }
  return out;
}

// float16 conversions go through float32 in JavaScript: the kernels read every 16-bit
// buffer as bfloat16.
function castHalf(t: Tensor, dtype: DType): Tensor {
  checkAlloc(t.shape, 'float32', t.device, 'to');
  if (t.dtype === 'float16') {
    const f = empty(t.shape, 'float32', t.device);
    (f.storage.data as Float32Array).set(f16ToF32(readData(t)));
    if (dtype === 'float32') return f;
    const out = empty(t.shape, dtype, t.device);
    native.copy([...t.shape], ...va(out, 'to'), ...va(f, 'to'));
    f.dispose();
    return out;
  }
  const f = empty(t.shape, 'float32', t.device);
  native.copy([...t.shape], ...va(f, 'to'), ...va(t, 'to'));
  const out = empty(t.shape, 'float16', t.device);
  (out.storage.data as Uint16Array).set(f32ToF16(f.storage.data));
  f.dispose();
  return out;
}

function scalarDType(t: Tensor, s: number, code: number): DType {
  if (t.dtype === 'bool') return Number.isInteger(s) && Math.abs(s) < 2 ** 31 ? 'int32' : 'float32';
  if (t.dtype === 'int32' && (!Number.isInteger(s) || Math.abs(s) >= 2 ** 31 || code === Bin.div || code === Bin.pow && s < 0)) {
    return 'float32';
  }
  return t.dtype;
}

/** Raw binary op without autograd: out = a (op) b with broadcasting and type promotion. */
const isHalfCpu = (t: TensorLike): boolean =>
  typeof t !== 'number' && t instanceof Tensor && t.device === 'cpu' && (t.dtype === 'bfloat16' || t.dtype === 'float16');

/** A half-precision CPU op done in float32 and rounded once (the CPU has no half kernels). */
function viaFloat32(half: DType, fn: (up: (t: TensorLike) => TensorLike) => Tensor, op: string): Tensor {
  const temps: Tensor[] = [];
  const up = (t: TensorLike): TensorLike => {
    if (typeof t === 'number' || t.dtype !== half) return t;
    checkAlloc(t.shape, 'float32', t.device, op);
    const c = cast(t, 'float32');
    temps.push(c);
    return c;
  };
  const r = fn(up);
  for (const t of temps) t.dispose();
  if (r.dtype !== 'float32') return r;
  const out = cast(r, half);
  r.dispose();
  return out;
}

export function binaryRaw(code: number, a: TensorLike, b: TensorLike): Tensor {
  const name = opName(code);
  if (isHalfCpu(a) || isHalfCpu(b)) {
    const half = isHalfCpu(a) ? (a as Tensor).dtype : (b as Tensor).dtype;
    const other = isHalfCpu(a) ? b : a;
    const dt = typeof other === 'number' ? half : other instanceof Tensor ? promoteTypes(half, other.dtype) : null;
    if (dt === half) return viaFloat32(half, (up) => binaryRaw(code, up(a), up(b)), name);
  }
  if (typeof a === 'number' && typeof b === 'number') throw new Error(`nodegrad: ${name}: at least one operand must be a Tensor`);
  if (typeof b === 'number' || typeof a === 'number') {
    const t = (typeof a === 'number' ? b : a) as Tensor;
    const s = (typeof a === 'number' ? a : b) as number;
    checkTensor(t, name);
    if (typeof s !== 'number') throw new Error(`nodegrad: ${name}: operand must be a Tensor or a number (got ${typeof s})`);
    const dt = scalarDType(t, s, code);
    const x = dt === t.dtype ? t : cast(t, dt);
    const out = empty(x.shape, isCompare(code) ? 'bool' : dt, x.device, false, name);
    argsHead(code, x.shape, s, typeof a === 'number' ? 1 : 0);
    argsView(0, out.offset, out.strides);
    argsView(1, x.offset, x.strides);
    native.binaryScalarP(out.storage.data, x.storage.data);
    if (x !== t) x.dispose();
    return out;
  }
  checkTensor(a, name, 'input');
  checkTensor(b, name, 'other');
  const device = a.device === b.device ? a.device : checkSameDevice(name, a, b);
  // same shapes (the common case) need no broadcast strides: each input's own strides serve
  const same = sameShape(a.shape, b.shape);
  const shape = same ? (a.shape as number[]) : broadcastShapes(a.shape, b.shape, name);
  let dt = promoteTypes(a.dtype, b.dtype);
  if (code === Bin.div && !isFloating(dt)) dt = 'float32';
  // logicalAnd / logicalOr: a nonzero test on any dtype
  const x = a.dtype === dt ? a : cast(a, dt), y = b.dtype === dt ? b : cast(b, dt);
  const out = empty(shape, isCompare(code) ? 'bool' : dt, device, false, name);
  argsHead(code, shape, 0, 0);
  argsView(0, out.offset, out.strides);
  if (same) {
    argsView(1, x.offset, x.strides);
    argsView(2, y.offset, y.strides);
  } else {
    argsBroadcast(1, x, shape);
    argsBroadcast(2, y, shape);
  }
  native.binaryP(out.storage.data, x.storage.data, y.storage.data);
  if (x !== a) x.dispose();
  if (y !== b) y.dispose();
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function asT(v: TensorLike): Tensor | null {
  return typeof v === 'number' ? null : v;
}
function shapeOf(v: TensorLike): number[] {
  return typeof v === 'number' ? [] : [...v.shape];
}

/** b * alpha for add/sub's alpha, with both checked first (so errors name the op, not mul). */
function scaledOperand(op: string, b: TensorLike, alpha: number | undefined): TensorLike {
  if (alpha === undefined || alpha === 1) return b;
  if (typeof alpha !== 'number') throw new Error(`nodegrad: ${op}: alpha must be a number (got ${alpha === null ? 'null' : typeof alpha})`);
  if (typeof b === 'number') return b * alpha;
  checkTensor(b, op, 'other');
  checkAlloc(b.shape, b.dtype, b.device, op);
  return mul(b, alpha);
}

export function add(a: TensorLike, b: TensorLike, alpha?: number): Tensor {
  b = scaledOperand('add', b, alpha);
  const out = binaryRaw(Bin.add, a, b);
  if (needsGrad(asT(a), asT(b))) {
    const sa = shapeOf(a), sb = shapeOf(b);
    record(out, 'add', [asT(a), asT(b)], (g) => [sumToShape(g, sa), sumToShape(g, sb)], []);
  }
  return out;
}

export function sub(a: TensorLike, b: TensorLike, alpha?: number): Tensor {
  b = scaledOperand('sub', b, alpha);
  const out = binaryRaw(Bin.sub, a, b);
  if (needsGrad(asT(a), asT(b))) {
    const sa = shapeOf(a), sb = shapeOf(b);
    record(out, 'sub', [asT(a), asT(b)], (g) => [sumToShape(g, sa), sumToShape(neg(g), sb)], []);
  }
  return out;
}

export function mul(a: TensorLike, b: TensorLike): Tensor {
  const out = binaryRaw(Bin.mul, a, b);
  if (needsGrad(asT(a), asT(b))) {
    const sa = shapeOf(a), sb = shapeOf(b);
    const ta = asT(a), tb = asT(b);
    record(out, 'mul', [ta, tb], (g) => [
      ta?.requiresGrad ? sumToShape(mul(g, b), sa) : null,
      tb?.requiresGrad ? sumToShape(mul(g, a), sb) : null,
    ], [ta?.requiresGrad && tb, tb?.requiresGrad && ta]);
  }
  return out;
}

export function div(a: TensorLike, b: TensorLike): Tensor {
  const out = binaryRaw(Bin.div, a, b);
  if (needsGrad(asT(a), asT(b))) {
    const sa = shapeOf(a), sb = shapeOf(b);
    const ta = asT(a), tb = asT(b);
    record(out, 'div', [ta, tb], (g) => [
      ta?.requiresGrad ? sumToShape(div(g, b), sa) : null,
      // d(a/b)/db = -a/b^2 = -out/b
      tb?.requiresGrad ? sumToShape(neg(div(mul(g, out), b)), sb) : null,
    ], [tb, tb?.requiresGrad && out]);
  }
  return out;
}

export function pow(a: TensorLike, b: TensorLike): Tensor {
  if (typeof a !== 'number' && typeof b === 'number') {
    checkTensor(a, 'pow');
    const x = isFloating(a.dtype) || Number.isInteger(b) && b >= 0 ? a : cast(a, 'float32');
    const out = unaryRaw(Un.powScalar, x, 'pow', b, 0);   // (half on the CPU runs in float32 there)
    if (x !== a) x.dispose();
    if (needsGrad(a)) record(out, 'pow', [a], (g) => [b === 0 ? mul(g, 0) : mul(g, mul(pow(a, b - 1), b))], [b !== 0 && a]);
    return out;
  }
  const out = binaryRaw(Bin.pow, a, b);
  if (needsGrad(asT(a), asT(b))) {
    const sa = shapeOf(a), sb = shapeOf(b);
    const ta = asT(a), tb = asT(b);
    record(out, 'pow', [ta, tb], (g) => [
      ta?.requiresGrad ? sumToShape(mul(g, mul(b, pow(a, sub(b, 1)))), sa) : null,
      tb?.requiresGrad ? sumToShape(mul(g, typeof a === 'number' ? mul(out, Math.log(a)) : mul(out, log(a))), sb) : null,
    ], [ta, ta?.requiresGrad && tb, tb?.requiresGrad && out]);
  }
  return out;
}

function minmax(code: number, a: TensorLike, b: TensorLike): Tensor {
  const out = binaryRaw(code, a, b);
  if (needsGrad(asT(a), asT(b))) {
    const sa = shapeOf(a), sb = shapeOf(b);
    const name = code === Bin.maximum ? 'maximum' : 'minimum';
    record(out, name, [asT(a), asT(b)], (g) => {
      // ties split the gradient evenly, as PyTorch does
      const pickA = binaryRaw(code === Bin.maximum ? Bin.gt : Bin.lt, a, b);
      const tie = binaryRaw(Bin.eq, a, b);
      const wa = add(cast(pickA, g.dtype), mul(cast(tie, g.dtype), 0.5));
      const ga = mul(g, wa);
      return [sumToShape(ga, sa), sumToShape(sub(g, ga), sb)];
    }, [asT(a), asT(b)]);
  }
  return out;
}
export function maximum(a: TensorLike, b: TensorLike): Tensor { return minmax(Bin.maximum, a, b); }
export function minimum(a: TensorLike, b: TensorLike): Tensor { return minmax(Bin.minimum, a, b); }

export function eq(a: TensorLike, b: TensorLike): Tensor { return binaryRaw(Bin.eq, a, b); }
export function ne(a: TensorLike, b: TensorLike): Tensor { return binaryRaw(Bin.ne, a, b); }
export function lt(a: TensorLike, b: TensorLike): Tensor { return binaryRaw(Bin.lt, a, b); }
export function le(a: TensorLike, b: TensorLike): Tensor { return binaryRaw(Bin.le, a, b); }
export function gt(a: TensorLike, b: TensorLike): Tensor { return binaryRaw(Bin.gt, a, b); }
export function ge(a: TensorLike, b: TensorLike): Tensor { return binaryRaw(Bin.ge, a, b); }
export function logicalAnd(a: Tensor, b: Tensor): Tensor {
  return binaryRaw(Bin.logicalAnd, cast(checkTensor(a, 'logicalAnd'), 'bool'), cast(checkTensor(b, 'logicalAnd', 'other'), 'bool'));
}
export function logicalOr(a: Tensor, b: Tensor): Tensor {
  return binaryRaw(Bin.logicalOr, cast(checkTensor(a, 'logicalOr'), 'bool'), cast(checkTensor(b, 'logicalOr', 'other'), 'bool'));
}
export function floorDivide(a: TensorLike, b: TensorLike): Tensor { return binaryRaw(Bin.floorDiv, a, b); }
export function remainder(a: TensorLike, b: TensorLike): Tensor { return binaryRaw(Bin.remainder, a, b); }

// ---- unary ---------------------------------------------------------------------------
const FLOAT_ONLY = new Set<number>([Un.exp, Un.log, Un.sqrt, Un.rsqrt, Un.tanh, Un.sigmoid, Un.gelu, Un.geluTanh,
  Un.silu, Un.sin, Un.cos, Un.reciprocal, Un.log1p, Un.expm1, Un.erf, Un.leakyRelu]);

/** Raw unary op without autograd. */
export function unaryRaw(code: number, x: Tensor, name: string, alpha = 0, beta = 0): Tensor {
  checkTensor(x, name);
  if (isHalfCpu(x)) return viaFloat32(x.dtype, (up) => unaryRaw(code, up(x) as Tensor, name, alpha, beta), name);
  let src = x;
  if (FLOAT_ONLY.has(code) && !isFloating(x.dtype)) src = cast(x, 'float32');
  const boolOut = code === Un.logicalNot || code === Un.isnan || code === Un.isinf;
  const out = empty(src.shape, boolOut ? 'bool' : src.dtype, src.device, false, name);
  argsHead(code, src.shape, alpha, beta);
  argsView(0, out.offset, out.strides);
  argsView(1, src.offset, src.strides);
  native.unaryP(out.storage.data, src.storage.data);
  if (src !== x) src.dispose();
  return out;
}

function unaryGradKernel(code: number, saved: Tensor, g: Tensor, alpha = 0): Tensor {
  if (isHalfCpu(g) || isHalfCpu(saved)) {
    const half = isHalfCpu(g) ? g.dtype : saved.dtype;
    return viaFloat32(half, (up) => unaryGradKernel(code, up(saved) as Tensor, up(g) as Tensor, alpha), 'backward');
  }
  const gx = empty(g.shape, g.dtype, g.device, false);
  g.assertLive('backward');
  native.unaryBackward(code, packDims(0, g.shape), gx.storage.data, gx.offset, packDims(1, gx.strides),
    saved.storage.data, saved.offset,
    sameShape(saved.shape, g.shape) ? packDims(2, saved.strides) : packBroadcastStrides(2, saved, g.shape),
    g.storage.data, g.offset, packDims(3, g.strides), alpha);
  return gx;
}

// What each unary backward below reads: its output, nothing, or (the rest) its input.
const SAVES_OUTPUT = new Set(['exp', 'sqrt', 'rsqrt', 'tanh', 'sigmoid', 'reciprocal', 'expm1']);
const SAVES_NOTHING = new Set(['neg', 'sign', 'floor', 'ceil', 'round', 'affine']);

function unary(code: number, name: string, x: Tensor, grad?: (g: Tensor, x: Tensor, y: Tensor) => Tensor, alpha = 0, beta = 0): Tensor {
  const out = unaryRaw(code, x, name, alpha, beta);
  if (grad && needsGrad(x)) {
    const saved = SAVES_OUTPUT.has(name) ? [out] : SAVES_NOTHING.has(name) ? [] : [x];
    record(out, name, [x], (g) => [grad(g, x, out)], saved);
  }
  return out;
}

export const neg = (x: Tensor): Tensor => unary(Un.neg, 'neg', x, (g) => neg(g));
export const exp = (x: Tensor): Tensor => unary(Un.exp, 'exp', x, (g, _x, y) => mul(g, y));
export const log = (x: Tensor): Tensor => unary(Un.log, 'log', x, (g, x) => div(g, x));
export const sqrt = (x: Tensor): Tensor => unary(Un.sqrt, 'sqrt', x, (g, _x, y) => div(mul(g, 0.5), y));
export const rsqrt = (x: Tensor): Tensor => unary(Un.rsqrt, 'rsqrt', x, (g, _x, y) => mul(g, mul(pow(y, 3), -0.5)));
export const abs = (x: Tensor): Tensor => unary(Un.abs, 'abs', x, (g, x) => mul(g, sign(x)));
export const tanh = (x: Tensor): Tensor => unary(Un.tanh, 'tanh', x, (g, _x, y) => unaryGradKernel(UnGrad.tanh, y, g));
export const sigmoid = (x: Tensor): Tensor => unary(Un.sigmoid, 'sigmoid', x, (g, _x, y) => unaryGradKernel(UnGrad.sigmoid, y, g));
export const relu = (x: Tensor): Tensor => unary(Un.relu, 'relu', x, (g, x) => unaryGradKernel(UnGrad.relu, x, g));
export const silu = (x: Tensor): Tensor => unary(Un.silu, 'silu', x, (g, x) => unaryGradKernel(UnGrad.silu, x, g));
export const square = (x: Tensor): Tensor => unary(Un.square, 'square', x, (g, x) => mul(g, mul(x, 2)));
export const reciprocal = (x: Tensor): Tensor => unary(Un.reciprocal, 'reciprocal', x, (g, _x, y) => neg(mul(g, mul(y, y))));
export const sin = (x: Tensor): Tensor => unary(Un.sin, 'sin', x, (g, x) => mul(g, cos(x)));
export const cos = (x: Tensor): Tensor => unary(Un.cos, 'cos', x, (g, x) => neg(mul(g, sin(x))));
export const log1p = (x: Tensor): Tensor => unary(Un.log1p, 'log1p', x, (g, x) => div(g, add(x, 1)));
export const expm1 = (x: Tensor): Tensor => unary(Un.expm1, 'expm1', x, (g, _x, y) => mul(g, add(y, 1)));
export const erf = (x: Tensor): Tensor =>
  unary(Un.erf, 'erf', x, (g, x) => mul(g, mul(exp(neg(square(x))), 2 / Math.sqrt(Math.PI))));
export const sign = (x: Tensor): Tensor => unary(Un.sign, 'sign', x, (g) => mul(g, 0));
export const floor = (x: Tensor): Tensor => unary(Un.floor, 'floor', x, (g) => mul(g, 0));
export const ceil = (x: Tensor): Tensor => unary(Un.ceil, 'ceil', x, (g) => mul(g, 0));
export const round = (x: Tensor): Tensor => unary(Un.round, 'round', x, (g) => mul(g, 0));
export const logicalNot = (x: Tensor): Tensor => unaryRaw(Un.logicalNot, x, 'logicalNot');
export const isnan = (x: Tensor): Tensor => unaryRaw(Un.isnan, x, 'isnan');
export const isinf = (x: Tensor): Tensor => unaryRaw(Un.isinf, x, 'isinf');

export function leakyRelu(x: Tensor, negativeSlope = 0.01): Tensor {
  if (typeof negativeSlope !== 'number') {
    throw new Error(`nodegrad: leakyRelu: negativeSlope must be a number (got ${negativeSlope === null ? 'null' : typeof negativeSlope})`);
  }
  return unary(Un.leakyRelu, 'leakyRelu', x, (g, x) => unaryGradKernel(UnGrad.leakyRelu, x, g, negativeSlope), negativeSlope);
}

/** GELU; `approximate: 'tanh'` gives GPT-2's tanh form. */
export function gelu(x: Tensor, opts: { approximate?: 'none' | 'tanh' } = {}): Tensor {
  const approx = optionsArg(opts, 'gelu').approximate ?? 'none';
  if (approx !== 'none' && approx !== 'tanh') throw new Error(`nodegrad: gelu: approximate must be 'none' or 'tanh' (got ${String(approx)})`);
  const fwd = approx === 'tanh' ? Un.geluTanh : Un.gelu;
  const bwd = approx === 'tanh' ? UnGrad.geluTanh : UnGrad.gelu;
  return unary(fwd, 'gelu', x, (g, x) => unaryGradKernel(bwd, x, g));
}

export function clamp(x: Tensor, min?: number | null, max?: number | null): Tensor {
  checkTensor(x, 'clamp');
  const lo = min ?? -Infinity, hi = max ?? Infinity;
  if (typeof lo !== 'number' || typeof hi !== 'number') {
    throw new Error(`nodegrad: clamp: min and max must be numbers or null (got ${typeof min} and ${typeof max})`);
  }
  if (Number.isNaN(lo) || Number.isNaN(hi)) throw new Error('nodegrad: clamp: bounds must not be NaN');
  const fractional = (v: number): boolean => Number.isFinite(v) && !Number.isInteger(v);
  if (!isFloating(x.dtype) && (fractional(lo) || fractional(hi))) {
    const xf = cast(x, 'float32');
    const out = clamp(xf, lo, hi);
    xf.dispose();
    return out;
  }
  return unary(Un.clamp, 'clamp', x, (g, x) => mul(g, cast(logicalAnd(ge(x, lo), le(x, hi)), g.dtype)), lo, hi);
}

/** alpha * x + beta in one pass. */
export function affine(x: Tensor, alpha: number, beta: number): Tensor {
  return unary(Un.affine, 'affine', x, (g) => mul(g, alpha), alpha, beta);
}

// ---- where / maskedFill ----------------------------------------------------------------
export function where(condition: Tensor, a: TensorLike, b: TensorLike): Tensor {
  checkTensor(condition, 'where', 'condition');
  for (const [v, what] of [[a, 'input'], [b, 'other']] as const) {
    if (typeof v !== 'number' && !(v instanceof Tensor)) {
      throw new Error(`nodegrad: where: ${what} must be a Tensor or a number (got ${v === null ? 'null' : typeof v})`);
    }
  }
  const ta = asT(a), tb = asT(b);
  const ref = ta ?? tb;
  let dt: DType = ta && tb ? promoteTypes(ta.dtype, tb.dtype) : ref ? ref.dtype : 'float32';
  if (ref && !(ta && tb)) {
    // a number next to an integer tensor: 0.5 needs float32, 2 next to bool needs int32
    const s = (ta ? b : a) as number;
    if (!isFloating(dt) && (!Number.isInteger(s) || Math.abs(s) >= 2 ** 31)) dt = 'float32';
    else if (dt === 'bool' && s !== 0 && s !== 1) dt = 'int32';
  }
  const device = checkSameDevice('where', condition, ta, tb);
  const A = ta ? cast(ta, dt) : full([], a as number, { dtype: dt, device });
  const B = tb ? cast(tb, dt) : full([], b as number, { dtype: dt, device });
  const c = cast(condition, 'bool');
  const shape = broadcastShapes(broadcastShapes(c.shape, A.shape, 'where'), B.shape, 'where');
  const out = empty(shape, dt, device, false, 'where');
  native.where(packDims(0, shape), out.storage.data, out.offset, packDims(1, out.strides),
    c.storage.data, c.offset, packBroadcastStrides(2, c, shape), A.storage.data, A.offset, packBroadcastStrides(3, A, shape),
    B.storage.data, B.offset, packBroadcastStrides(4, B, shape));
  if (A !== ta) A.dispose();
  if (B !== tb) B.dispose();
  if (!needsGrad(ta, tb) && c !== condition) c.dispose();
  if (needsGrad(ta, tb)) {
    const sa = shapeOf(a), sb = shapeOf(b);
    record(out, 'where', [ta, tb], (g) => {
      const zero = full([], 0, { dtype: g.dtype, device: g.device });
      return [
        ta?.requiresGrad ? sumToShape(where(c, g, zero), sa) : null,
        tb?.requiresGrad ? sumToShape(where(c, zero, g), sb) : null,
      ];
    }, [c]);
  }
  return out;
}

/** Elements where mask is true become value. */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  checkTensor(x, 'maskedFill');
  checkTensor(mask, 'maskedFill', 'mask');
  if (mask.dtype !== 'bool' && mask.dtype !== 'int32') {
    throw new Error(`nodegrad: maskedFill: mask must be bool or int32 (got ${mask.dtype}, shape ${fmt(mask.shape)})`);
  }
  const shape = broadcastShapes(x.shape, mask.shape, 'maskedFill');
  if (fmt(shape) !== fmt(x.shape)) {
    throw new Error(`nodegrad: maskedFill: mask of shape ${fmt(mask.shape)} does not broadcast to the input's shape ${fmt(x.shape)}`);
  }
  // the result keeps x's dtype (a fractional value in an int32 tensor truncates, as in PyTorch)
  if (typeof value !== 'number' && typeof value !== 'boolean') {
    throw new Error(`nodegrad: maskedFill: value must be a number (got ${value === null ? 'null' : typeof value})`);
  }
  checkScalarFor(x.dtype, Number(value), 'maskedFill');
  const v = full([], value, { dtype: x.dtype, device: x.device });
  try {
    return where(mask, v, x);
  } finally {
    v.dispose();
  }
}

// ---- in place ---------------------------------------------------------------------------
function checkInplace(t: Tensor, op: string): void {
  checkTensor(t, op);
  if (isGradEnabled() && t.requiresGrad && t.isLeaf) {
    throw new Error(`nodegrad: ${op}: a leaf tensor that requires grad is used in an in-place operation; ` +
      'use an out-of-place op, or wrap the update in noGrad()');
  }
  // (an empty tensor shares nothing, whatever its strides: contiguous strides of [3,0] are [0,1])
  if (t.shape.some((n, i) => n > 1 && t.strides[i] === 0) && t.numel > 0) {
    throw new Error(`nodegrad: ${op}: the target is an expanded view (shape ${fmt(t.shape)}, strides ${fmt(t.strides)}) whose elements share memory; call contiguous() first`);
  }
}

/**
 * Whether the in-place op on t is recorded on the tape: in grad mode, when t or the operand
 * requires grad. A view, or a tensor whose views are on the tape, would leave the other's
 * history behind (PyTorch rebases the base with CopySlices): that is an error here, never a
 * silently wrong gradient. Called before anything is written.
 */
function recordsInplace(t: Tensor, op: string, other?: TensorLike): boolean {
  if (!needsGrad(t, other)) return false;
  if (t._isView && t.requiresGrad) {
    throw new Error(`nodegrad: ${op}: in-place operation on a view of a tensor that requires grad is not supported; clone() the view first`);
  }
  if (t._isView) {
    throw new Error(`nodegrad: ${op}: in-place operation with an operand that requires grad on a view is not supported ` +
      '(its base would not get the gradient); clone() the view first');
  }
  if (hasGraphViews(t.storage)) {
    throw new Error(`nodegrad: ${op}: in-place operation on a tensor whose views were recorded for backward is not supported ` +
      '(their gradients would miss the change); clone() it first, or change it before taking views');
  }
  return true;
}

/** g in dtype dt (a gradient goes back in its input's dtype). */
function asDType(g: Tensor, dt: DType): Tensor {
  return g.dtype === dt ? g : cast(g, dt);
}

/**
 * A source that shares storage with the target but is a different view (t.add_(t.T),
 * copying a slice onto a shifted slice) would be read after parts of it were written:
 * such a source is copied first. The identical view is safe (each element is read
 * before it is written, by the same thread).
 */
function unaliased(target: Tensor, src: Tensor): Tensor {
  if (src.storage !== target.storage) return src;
  if (src.offset === target.offset && fmt(src.strides) === fmt(target.strides) && fmt(src.shape) === fmt(target.shape)) return src;
  const c = empty(src.shape, src.dtype, src.device, false);
  src.assertLive('copy');
  native.copy(packDims(0, src.shape), c.storage.data, c.offset, packDims(1, c.strides), src.storage.data, src.offset,
    packDims(2, src.strides));
  return c;
}

const INPLACE: Record<string, number> = { add_: Bin.add, sub_: Bin.sub, mul_: Bin.mul, div_: Bin.div };

export function inplace(t: Tensor, op: 'add_' | 'sub_' | 'mul_' | 'div_', other: TensorLike, alpha?: number): void {
  checkInplace(t, op);
  const code = INPLACE[op];
  if (alpha !== undefined && typeof alpha !== 'number') {
    throw new Error(`nodegrad: ${op}: alpha must be a number (got ${alpha === null ? 'null' : typeof alpha})`);
  }
  if (typeof other !== 'number') {
    checkTensor(other, op, 'other');
    checkSameDevice(op, t, other);
    if (fmt(broadcastShapes(t.shape, other.shape, op)) !== fmt(t.shape)) {
      throw new Error(`nodegrad: ${op}: other of shape ${fmt(other.shape)} does not broadcast to the target's shape ${fmt(t.shape)}`);
    }
  }
  if (!recordsInplace(t, op, other)) {
    inplaceValues(t, op, code, other, alpha);
    return;
  }
  // the backward of t * s and t / s reads s, and (for s's gradient) t's old value: a copy
  // of whichever the op overwrites
  const selfGrad = t.requiresGrad;
  const s = typeof other === 'number' ? null : other;
  const mulDiv = op === 'mul_' || op === 'div_';
  const old = mulDiv && s !== null && s.requiresGrad ? noGrad(() => t.clone()) : null;
  const sv = mulDiv && s !== null && (selfGrad || op === 'div_')
    ? (s.storage === t.storage ? noGrad(() => s.clone()) : s) : null;
  inplaceValues(t, op, code, other, alpha);
  const a = alpha ?? 1;
  recordInplace(t, op, [s], (g) => {
    if (op === 'add_' || op === 'sub_') {
      const gs = s === null || !s.requiresGrad ? null
        : asDType(sumToShape(op === 'sub_' ? mul(g, -a) : a === 1 ? g : mul(g, a), s.shape), s.dtype);
      return [selfGrad ? g : null, gs];
    }
    if (s === null) {
      const k = (other as number) * (alpha ?? 1);
      return [op === 'mul_' ? mul(g, k) : div(g, k), null];
    }
    const gSelf = selfGrad ? asDType(op === 'mul_' ? mul(g, sv!) : div(g, sv!), t.dtype) : null;
    let gs: Tensor | null = null;
    if (old !== null) {
      const d = op === 'mul_' ? mul(g, old) : neg(div(mul(g, old), mul(sv!, sv!)));
      gs = asDType(sumToShape(d, s.shape), s.dtype);
    }
    return [gSelf, gs];
  }, [old, sv]);
}

/** The values of t op= other (validated). */
function inplaceValues(t: Tensor, op: string, code: number, other: TensorLike, alpha?: number): void {
  if (isHalfCpu(t)) {
    // no half kernels on the CPU: the op runs in float32 and is rounded once into t
    const o = alpha === undefined || alpha === 1 ? other : typeof other === 'number' ? other * alpha : binaryRaw(Bin.mul, other, alpha);
    const r = binaryRaw(code, t, o);
    try {
      copyValues(t, r, op);
    } finally {
      r.dispose();
      if (o !== other && typeof o !== 'number') o.dispose();
    }
    return;
  }
  if (typeof other === 'number') {
    native.binaryScalar(code, packDims(0, t.shape), t.storage.data, t.offset, packDims(1, t.strides), t.storage.data, t.offset,
      packDims(2, t.strides), alpha !== undefined ? other * alpha : other, false);
    t.storage.bumpVersion(op);
    return;
  }
  let o = other.dtype === t.dtype ? unaliased(t, other) : cast(other, t.dtype);
  if (alpha !== undefined && alpha !== 1) {
    const scaled = unaryRaw(Un.affine, o, op, alpha, 0);
    if (o !== other) o.dispose();
    o = scaled;
  }
  native.binary(code, packDims(0, t.shape), t.storage.data, t.offset, packDims(1, t.strides), t.storage.data, t.offset,
    packDims(2, t.strides), o.storage.data, o.offset, packBroadcastStrides(3, o, t.shape));
  t.storage.bumpVersion(op);
  if (o !== other) o.dispose();
}

/** Sets every element to value; `op` names the public op (fill_ or zero_) in errors and in the version record. */
export function fill_(t: Tensor, value: number, op = 'fill_'): void {
  checkInplace(t, op);
  if (typeof value !== 'number' && typeof value !== 'boolean') {
    throw new Error(`nodegrad: ${op}: value must be a number (got ${value === null ? 'null' : typeof value})`);
  }
  checkScalarFor(t.dtype, Number(value), op);
  // the new value is a constant: no gradient reaches t's old value
  if (recordsInplace(t, op)) {
    fillValues(t, value, op);
    recordInplace(t, op, [], () => [null], []);
    return;
  }
  fillValues(t, value, op);
}

function fillValues(t: Tensor, value: number, op: string): void {
  if (t.dtype === 'float16' && t.device === 'cpu') {
    // raw 16-bit copy of the float16 pattern (the native fill would encode bfloat16)
    const v = empty([], 'float16', t.device);
    (v.storage.data as Uint16Array)[0] = f32ToF16([value])[0];
    native.copy([...t.shape], ...va(t, op), v.storage.data, 0, t.shape.map(() => 0));
    v.dispose();
    t.storage.bumpVersion(op);
    return;
  }
  native.fill(packDims(0, t.shape), t.storage.data, t.offset, packDims(1, t.strides), Number(value));
  t.storage.bumpVersion(op);
}

/** t.clamp_(min, max): the gradient passes where the old value was inside [min, max], as clamp's. */
export function clamp_(t: Tensor, min?: number | null, max?: number | null): void {
  checkInplace(t, 'clamp_');
  const c = noGrad(() => clamp(t, min, max));
  try {
    if (!recordsInplace(t, 'clamp_')) {
      copyValues(t, c, 'clamp_');
      return;
    }
    const inside = noGrad(() => logicalAnd(ge(t, min ?? -Infinity), le(t, max ?? Infinity)));
    copyValues(t, c, 'clamp_');
    recordInplace(t, 'clamp_', [], (g) => [mul(g, cast(inside, g.dtype))], [inside]);
  } finally {
    c.dispose();
  }
}

/** Copies src into dst; `op` names the public op (copy_ or clamp_) in errors and in the version record. */
export function copy_(dst: Tensor, src: Tensor, op = 'copy_'): void {
  checkInplace(dst, op);
  checkTensor(src, op, 'src');
  if (src.device !== dst.device) {
    // across devices, like torch's copy_: move the source first
    const moved = src.to(dst.device);
    try {
      copy_(dst, moved, op);
    } finally {
      moved.dispose();
    }
    return;
  }
  const shape = broadcastShapes(dst.shape, src.shape, 'copy_');
  if (fmt(shape) !== fmt(dst.shape)) {
    throw new Error(`nodegrad: copy_: source of shape ${fmt(src.shape)} does not broadcast to the destination's shape ${fmt(dst.shape)}`);
  }
  if (!recordsInplace(dst, op, src)) {
    copyValues(dst, src, op);
    return;
  }
  copyValues(dst, src, op);
  // dst's old value is overwritten: its gradient is zero; src's is the gradient, summed over broadcast dims
  recordInplace(dst, op, [src], (g) => [null, src.requiresGrad ? asDType(sumToShape(g, src.shape), src.dtype) : null], []);
}

/** Writes src (same device, broadcasting to dst's shape) into dst and bumps its version. */
function copyValues(dst: Tensor, src: Tensor, op: string): void {
  // float16 <-> other dtypes convert in JavaScript first; the kernel then copies raw bits
  const s = (dst.dtype === 'float16') !== (src.dtype === 'float16') ? cast(src, dst.dtype) : unaliased(dst, src);
  native.copy(packDims(0, dst.shape), dst.storage.data, dst.offset, packDims(1, dst.strides), s.storage.data, s.offset,
    packBroadcastStrides(2, s, dst.shape));
  dst.storage.bumpVersion(op);
  if (s !== src) s.dispose();
}
