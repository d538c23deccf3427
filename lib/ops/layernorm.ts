// layerNorm: normalises over the trailing dims named by normalizedShape (flattened to C),
// then scales and shifts by the optional weight and bias. One fused native forward that
// saves each row's mean and rstd, and one native backward that computes the gradients of
// x, weight and bias in a single pass over the rows (gw/gb summed deterministically).
import type { TypedArray } from '../dtype.js';
import { needsGrad, noGrad, record } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { cast } from './elementwise.js';
import { contiguous, reshape } from './shape.js';
import { checkFloat, checkSameDevice, checkTensor, empty, flat, fmt, numelOf } from './util.js';

declare module '../native.js' {
  interface NativeAddon {
    layernormForward(x: TypedArray, weight: TypedArray | null, bias: TypedArray | null, y: TypedArray,
      mean: TypedArray | null, rstd: TypedArray | null, rows: number, C: number, eps: number): void;
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

/** The contiguous float32/float64 buffer the kernels read (bfloat16/float16 run in float32). */
function prepare(t: Tensor): Tensor {
  const c = contiguous(t);
  if (c.dtype !== 'bfloat16' && c.dtype !== 'float16') return c;
  const f = cast(c, 'float32');
  if (c !== t) c.dispose();
  return f;
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

/**
 * Layer normalisation over the last normalizedShape.length dims (PyTorch's F.layer_norm):
 * y = (x - mean) / sqrt(var + eps) * weight + bias, with the biased variance.
 */
export function layerNorm(x: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null,
  eps = 1e-5): Tensor {
  checkTensor(x, OP);
  checkFloat(x, OP);
  if (!Array.isArray(normalizedShape) || normalizedShape.some((s) => !Number.isInteger(s) || s < 0)) {
    throw new Error(`nodegrad: ${OP}: normalizedShape must be an array of non-negative integers (got ${String(normalizedShape)})`);
  }
  const k = normalizedShape.length;
  if (k === 0 || k > x.ndim || fmt(x.shape.slice(x.ndim - k)) !== fmt(normalizedShape)) {
    throw new Error(`nodegrad: ${OP}: normalizedShape ${fmt(normalizedShape)} does not match the trailing dims of the input ` +
      `(got shape ${fmt(x.shape)}; expected [*, ${normalizedShape.join(',')}])`);
  }
  if (typeof eps !== 'number' || !(eps >= 0)) throw new Error(`nodegrad: ${OP}: eps must be a non-negative number (got ${String(eps)})`);
  const w = checkParam(weight, 'weight', x, normalizedShape);
  const b = checkParam(bias, 'bias', x, normalizedShape);
  const device = checkSameDevice(OP, x, w, b);
  const C = numelOf(normalizedShape);
  const rows = C === 0 ? 0 : x.numel / C;
  const grad = needsGrad(x, w, b);

  // The statistics are saved only when a backward will need them.
  const statType = x.dtype === 'float64' ? 'float64' : 'float32';
  const mean = grad ? empty([rows], statType, device) : null;
  const rstd = grad ? empty([rows], statType, device) : null;
  const out = noGrad(() => {
    const xc = prepare(x), wc = w && prepare(w), bc = b && prepare(b);
    const y = empty(x.shape, xc.dtype, device);
    native.layernormForward(flat(xc, OP), wc && flat(wc, OP), bc && flat(bc, OP), y.storage.data,
      mean && mean.storage.data, rstd && rstd.storage.data, rows, C, eps);
    release(xc, x);
    release(wc, w);
    release(bc, b);
    return toDType(y, x.dtype);
  });
  if (grad) {
    const wantX = needsGrad(x), wantW = needsGrad(w), wantB = needsGrad(b);
    record(out, OP, [x, w, b], (g) => {
      const gc = prepare(g), xc = prepare(x), wc = w && prepare(w);
      const gx = wantX ? empty(x.shape, gc.dtype, device) : null;
      const gw = wantW ? empty([C], gc.dtype, device) : null;
      const gb = wantB ? empty([C], gc.dtype, device) : null;
      // The saved statistics are used while they live; when a scope has already freed
      // them, the kernel recomputes them from x.
      const saved = mean && rstd && !mean.isDisposed && !rstd.isDisposed;
      native.layernormBackward(flat(gc, OP), flat(xc, OP), wc && flat(wc, OP), saved ? mean.storage.data : null,
        saved ? rstd.storage.data : null, gx && gx.storage.data, gw && gw.storage.data, gb && gb.storage.data,
        rows, C, eps);
      release(gc, g);
      release(xc, x);
      release(wc, w);
      const param = (t: Tensor | null): Tensor | null => (t ? toDType(reshape(t, normalizedShape), x.dtype) : null);
      return [gx && toDType(gx, x.dtype), param(gw), param(gb)];
    });
  }
  return out;
}
