// layerNorm: normalises over the trailing dims named by normalizedShape (flattened to C),
// then scales and shifts by the optional weight and bias. One fused native forward that
// saves each row's mean and rstd, and one native backward that computes the gradients of
// x, weight and bias in a single pass over the rows (gw/gb summed deterministically).
//
// On CUDA the kernels take float32, bfloat16 and float16 directly (no casts) and keep the
// saved statistics in float32. addLayerNorm fuses the residual add of a pre-norm block.
import type { TypedArray } from '../dtype.js';
import { needsGrad, noGrad, record } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { add, cast } from './elementwise.js';
import { clone, contiguousFor, reshape } from './shape.js';
import { empty } from './alloc.js';
import { checkFloat, checkSameDevice, checkTensor, fmt } from './check.js';
import { numelOf } from './dims.js';
import { flat } from './native_args.js';

declare module '../native.js' {
  interface NativeAddon {
    layernormForward(x: TypedArray, weight: TypedArray | null, bias: TypedArray | null, y: TypedArray,
      mean: TypedArray | null, rstd: TypedArray | null, rows: number, C: number, eps: number): void;
    addLayernormForward(x: TypedArray, residual: TypedArray, sum: TypedArray, weight: TypedArray | null,
      bias: TypedArray | null, y: TypedArray, mean: TypedArray | null, rstd: TypedArray | null, rows: number, C: number,
      eps: number): void;
    layernormBackward(g: TypedArray, x: TypedArray, weight: TypedArray | null, mean: TypedArray | null,
      rstd: TypedArray | null, gx: TypedArray | null, gw: TypedArray | null, gb: TypedArray | null,
      rows: number, C: number, eps: number): void;
  }
}

const OP = 'layerNorm';

function checkParam(p: Tensor | null | undefined, what: string, x: Tensor, normalizedShape: number[]): Tensor | null {
  if (p === undefined || p === null) return null;
  checkTensor(p, OP, what);
  if (fmt(p.shape) !== fmt(normalizedShape)) {
    throw new Error(`nodegrad: ${OP}: ${what} has shape ${fmt(p.shape)}, expected normalizedShape ${fmt(normalizedShape)}`);
  }
  if (p.dtype !== x.dtype) {
    throw new Error(`nodegrad: ${OP}: ${what} has dtype ${p.dtype} but the input is ${x.dtype}; convert one of them with .to()`);
  }
  return p;
}

/**
 * The contiguous buffer the kernels read: on the CPU float32/float64 (bfloat16/float16 run
 * in float32); on CUDA the tensor's own dtype, at element offset 0 (a device buffer
 * handle cannot be sub-viewed, so a view with an offset is copied).
 */
function prepare(t: Tensor): Tensor {
  const c = contiguousFor(t, OP);
  if (t.device !== 'cpu') {
    if (c.offset === 0) return c;
    const k = clone(c);
    if (c !== t) c.dispose();
    return k;
  }
  if (c.dtype !== 'bfloat16' && c.dtype !== 'float16') return c;
  const f = cast(c, 'float32');
  if (c !== t) c.dispose();
  return f;
}

/** The buffer handed to the addon: a CPU sub-array, or a CUDA tensor's whole buffer. */
function buf(t: Tensor): TypedArray {
  return t.device === 'cpu' ? flat(t, OP) : t.storage.data;
}

function release(t: Tensor | null, orig: Tensor | null | undefined): void {
  if (t && t !== orig) t.dispose();
}

function toDType(t: Tensor, dtype: Tensor['dtype']): Tensor {
  if (t.dtype === dtype) return t;
  const r = cast(t, dtype);
  t.dispose();
  return r;
}

function checkArgs(op: string, x: Tensor, normalizedShape: number[], eps: number): void {
  checkTensor(x, op);
  checkFloat(x, op);
  if (!Array.isArray(normalizedShape) || normalizedShape.some((s) => !Number.isInteger(s) || s < 0)) {
    throw new Error(`nodegrad: ${op}: normalizedShape must be an array of non-negative integers (got ${String(normalizedShape)})`);
  }
  const k = normalizedShape.length;
  if (k === 0) throw new Error(`nodegrad: ${op}: normalizedShape must name at least one trailing dim (got [] for input ${fmt(x.shape)})`);
  if (k > x.ndim || fmt(x.shape.slice(x.ndim - k)) !== fmt(normalizedShape)) {
    throw new Error(`nodegrad: ${op}: normalizedShape ${fmt(normalizedShape)} does not match the trailing dims of the input ` +
      `(got shape ${fmt(x.shape)}; expected [*, ${normalizedShape.join(',')}])`);
  }
  if (typeof eps !== 'number' || !(eps >= 0)) throw new Error(`nodegrad: ${op}: eps must be a non-negative number (got ${String(eps)})`);
}

/** float32 statistics (float64 for float64 input on the CPU); CUDA kernels always save float32. */
function statDType(x: Tensor): Tensor['dtype'] {
  return x.dtype === 'float64' && x.device === 'cpu' ? 'float64' : 'float32';
}

/**
 * Layer normalisation over the last normalizedShape.length dims (PyTorch's F.layer_norm):
 * y = (x - mean) / sqrt(var + eps) * weight + bias, with the biased variance.
 */
export function layerNorm(x: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null,
  eps = 1e-5): Tensor {
  checkArgs(OP, x, normalizedShape, eps);
  const w = checkParam(weight, 'weight', x, normalizedShape);
  const b = checkParam(bias, 'bias', x, normalizedShape);
  const device = checkSameDevice(OP, x, w, b);
  const C = numelOf(normalizedShape);
  const rows = C === 0 ? 0 : x.numel / C;
  const grad = needsGrad(x, w, b);

  // The statistics are saved only when a backward will need them.
  const mean = grad ? empty([rows], statDType(x), device, true, OP) : null;
  const rstd = grad ? empty([rows], statDType(x), device, true, OP) : null;
  const out = noGrad(() => {
    const xc = prepare(x), wc = w && prepare(w), bc = b && prepare(b);
    const y = empty(x.shape, xc.dtype, device, false, OP);  // the kernels write every element of y and gx
    native.layernormForward(buf(xc), wc && buf(wc), bc && buf(bc), y.storage.data,
      mean && mean.storage.data, rstd && rstd.storage.data, rows, C, eps);
    release(xc, x);
    release(wc, w);
    release(bc, b);
    return toDType(y, x.dtype);
  });
  if (grad) recordBackward(out, x, w, b, normalizedShape, mean!, rstd!, eps);
  return out;
}

/** Attaches layerNorm's backward (one native kernel for gx, gw, gb) to out = layerNorm(x). */
function recordBackward(out: Tensor, x: Tensor, w: Tensor | null, b: Tensor | null, normalizedShape: number[],
  mean: Tensor, rstd: Tensor, eps: number): void {
  const device = x.device;
  const C = numelOf(normalizedShape);
  const rows = C === 0 ? 0 : x.numel / C;
  const wantX = needsGrad(x), wantW = needsGrad(w), wantB = needsGrad(b);
  record(out, OP, [x, w, b], (g) => {
    // CUDA kernels take one dtype for g and x (an upstream float32 grad of a bf16 output is cast)
    const g0 = device !== 'cpu' && g.dtype !== x.dtype ? cast(g, x.dtype) : g;
    const gc = prepare(g0), xc = prepare(x), wc = w && prepare(w);
    const gx = wantX ? empty(x.shape, gc.dtype, device, false) : null;
    const gw = wantW ? empty([C], gc.dtype, device) : null;
    const gb = wantB ? empty([C], gc.dtype, device) : null;
    // The saved statistics are used while they live; when a scope has already freed
    // them, the kernel recomputes them from x.
    const saved = !mean.isDisposed && !rstd.isDisposed;
    native.layernormBackward(buf(gc), buf(xc), wc && buf(wc), saved ? mean.storage.data : null,
      saved ? rstd.storage.data : null, gx && gx.storage.data, gw && gw.storage.data, gb && gb.storage.data,
      rows, C, eps);
    release(gc, g0);
    release(g0, g);
    release(xc, x);
    release(wc, w);
    const param = (t: Tensor | null): Tensor | null => (t ? toDType(reshape(t, normalizedShape), x.dtype) : null);
    return [gx && toDType(gx, x.dtype), param(gw), param(gb)];
  }, [x, w, mean, rstd]);
}

/**
 * The pre-norm residual step in one op: sum = x + residual, out = layerNorm(sum, ...).
 * Returns both (sum is the new residual stream). x and residual must have the same
 * shape, dtype and device (no broadcasting). Gradients: the gradient reaching sum (from
 * its later uses and from out through the layerNorm backward) flows unchanged to both x
 * and residual. On CUDA one kernel reads x and residual once and writes sum, out and the
 * statistics; elsewhere it is add() then layerNorm(), with identical results.
 */
export function addLayerNorm(x: Tensor, residual: Tensor, normalizedShape: number[], weight?: Tensor | null,
  bias?: Tensor | null, eps = 1e-5): { sum: Tensor; out: Tensor } {
  const op = 'addLayerNorm';
  checkArgs(op, x, normalizedShape, eps);
  checkTensor(residual, op, 'residual');
  if (fmt(residual.shape) !== fmt(x.shape)) {
    throw new Error(`nodegrad: ${op}: residual has shape ${fmt(residual.shape)}, expected the input's shape ${fmt(x.shape)}`);
  }
  if (residual.dtype !== x.dtype) {
    throw new Error(`nodegrad: ${op}: residual has dtype ${residual.dtype} but the input is ${x.dtype}; convert one of them with .to()`);
  }
  const w = checkParam(weight, 'weight', x, normalizedShape);
  const b = checkParam(bias, 'bias', x, normalizedShape);
  const device = checkSameDevice(op, x, residual, w, b);
  if (device === 'cpu' || x.dtype === 'float64') {
    const sum = add(x, residual);
    return { sum, out: layerNorm(sum, normalizedShape, w, b, eps) };
  }
  const C = numelOf(normalizedShape);
  const rows = C === 0 ? 0 : x.numel / C;
  const grad = needsGrad(x, residual, w, b);
  const mean = grad ? empty([rows], 'float32', device) : null;
  const rstd = grad ? empty([rows], 'float32', device) : null;
  const [sum, out] = noGrad(() => {
    const xc = prepare(x), rc = prepare(residual), wc = w && prepare(w), bc = b && prepare(b);
    const s = empty(x.shape, x.dtype, device);
    const y = empty(x.shape, x.dtype, device);
    native.addLayernormForward(buf(xc), buf(rc), s.storage.data, wc && buf(wc), bc && buf(bc), y.storage.data,
      mean && mean.storage.data, rstd && rstd.storage.data, rows, C, eps);
    release(xc, x);
    release(rc, residual);
    release(wc, w);
    release(bc, b);
    return [s, y] as const;
  });
  if (needsGrad(x, residual)) record(sum, 'add', [x, residual], (g) => [g, g], []);
  if (grad) recordBackward(out, sum, w, b, normalizedShape, mean!, rstd!, eps);
  return { sum, out };
}
