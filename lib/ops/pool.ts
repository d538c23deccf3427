// 2-D pooling over NCHW (or unbatched CHW) inputs, as PyTorch's F.max_pool2d,
// F.avg_pool2d and F.adaptive_avg_pool2d. Each is one native forward and one native
// backward; max pooling saves the flat index of each window's winner (int32, within its
// H x W plane) and its backward scatters the gradient there.
import type { TypedArray } from '../dtype.js';
import { needsGrad, noGrad, record } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { pair, prepare, release, toDType, type IntPair } from './conv.js';
import { empty } from './alloc.js';
import { checkFloat, checkTensor, fmt, show } from './check.js';
import { flat } from './native_args.js';

declare module '../native.js' {
  interface NativeAddon {
    /** geom = [planes, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw] */
    maxPool2dForward(x: TypedArray, y: TypedArray, indices: TypedArray, geom: number[]): void;
    maxPool2dBackward(dy: TypedArray, indices: TypedArray, dx: TypedArray, geom: number[]): void;
    avgPool2dForward(x: TypedArray, y: TypedArray, geom: number[], countIncludePad: boolean, divisorOverride: number): void;
    avgPool2dBackward(dy: TypedArray, dx: TypedArray, geom: number[], countIncludePad: boolean, divisorOverride: number): void;
    /** dims = [planes, H, W, OH, OW] */
    adaptiveAvgPool2dForward(x: TypedArray, y: TypedArray, dims: number[]): void;
    adaptiveAvgPool2dBackward(dy: TypedArray, dx: TypedArray, dims: number[]): void;
  }
}

export interface MaxPool2dOptions {
  kernelSize: IntPair;
  /** Defaults to kernelSize. */
  stride?: IntPair | null;
  padding?: IntPair;
  dilation?: IntPair;
  ceilMode?: boolean;
}

export interface AvgPool2dOptions {
  kernelSize: IntPair;
  stride?: IntPair | null;
  padding?: IntPair;
  ceilMode?: boolean;
  countIncludePad?: boolean;
  /** Divide every window sum by this instead of the window size. */
  divisorOverride?: number | null;
}

function checkInput(x: Tensor, op: string): void {
  checkTensor(x, op);
  checkFloat(x, op);
  if (x.ndim !== 3 && x.ndim !== 4) throw new Error(`nodegrad: ${op}: input must be 3-D [C,H,W] or 4-D [N,C,H,W] (got shape ${fmt(x.shape)})`);
}

/** PyTorch's pooling output size, including the ceil-mode rule that the last window starts inside. */
function outSize(inp: number, k: number, s: number, p: number, d: number, ceil: boolean): number {
  const span = inp + 2 * p - d * (k - 1) - 1 + (ceil ? s - 1 : 0);
  let o = Math.floor(span / s) + 1;
  if (ceil && (o - 1) * s >= inp + p) o--;
  return o;
}

interface PoolGeometry { geom: number[]; out: number[] }

function poolGeometry(x: Tensor, op: string, opts: MaxPool2dOptions | AvgPool2dOptions, dilation: IntPair | undefined): PoolGeometry {
  if (opts === null || typeof opts !== 'object') throw new Error(`nodegrad: ${op}: options must be an object with kernelSize`);
  const [kh, kw] = pair(opts.kernelSize, 0, 'kernelSize', op, 1);
  const [sh, sw] = opts.stride === undefined || opts.stride === null ? [kh, kw] : pair(opts.stride, 1, 'stride', op, 1);
  const [ph, pw] = pair(opts.padding, 0, 'padding', op, 0);
  const [dh, dw] = pair(dilation, 1, 'dilation', op, 1);
  if (ph > Math.floor(kh / 2) || pw > Math.floor(kw / 2)) {
    throw new Error(`nodegrad: ${op}: padding must be at most half the kernel size (got padding [${ph},${pw}] for kernelSize [${kh},${kw}])`);
  }
  const ceil = opts.ceilMode ?? false;
  const H = x.shape[x.ndim - 2], W = x.shape[x.ndim - 1];
  const OH = outSize(H, kh, sh, ph, dh, ceil), OW = outSize(W, kw, sw, pw, dw, ceil);
  if (OH < 1 || OW < 1) {
    throw new Error(`nodegrad: ${op}: the output would be empty (${OH}x${OW}) for input ${fmt(x.shape)} with kernelSize ` +
      `[${kh},${kw}], stride [${sh},${sw}], padding [${ph},${pw}], dilation [${dh},${dw}]`);
  }
  const planes = x.shape.slice(0, -2).reduce((a, b) => a * b, 1);
  return { geom: [planes, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw], out: [...x.shape.slice(0, -2), OH, OW] };
}

/** Max pooling with the int32 index of each maximum inside its H x W plane. */
export function maxPool2dWithIndices(x: Tensor, opts: MaxPool2dOptions): { values: Tensor; indices: Tensor } {
  const op = 'maxPool2d';
  checkInput(x, op);
  const { geom, out: outShape } = poolGeometry(x, op, opts, opts?.dilation);
  const indices = empty(outShape, 'int32', x.device, false, op);
  const values = noGrad(() => {
    const xc = prepare(x, op);
    const y = empty(outShape, xc.dtype, x.device, false, op);
    native.maxPool2dForward(flat(xc, op), y.storage.data, indices.storage.data, geom);
    release(xc, x);
    return toDType(y, x.dtype);
  });
  if (needsGrad(x)) {
    record(values, op, [x], (g) => {
      const gc = prepare(g);
      const gx = empty(x.shape, gc.dtype, x.device, false);
      native.maxPool2dBackward(flat(gc, op), flat(indices, op), gx.storage.data, geom);
      release(gc, g);
      return [toDType(gx, x.dtype)];
    }, [indices]);
  }
  return { values, indices };
}

/**
 * 2-D max pooling: maxPool2d(x, 2) or maxPool2d(x, { kernelSize, stride = kernelSize,
 * padding = 0, dilation = 1, ceilMode = false }).
 */
export function maxPool2d(x: Tensor, opts: MaxPool2dOptions | IntPair): Tensor {
  const o: MaxPool2dOptions = typeof opts === 'number' || Array.isArray(opts) ? { kernelSize: opts as IntPair } : opts as MaxPool2dOptions;
  const { values, indices } = maxPool2dWithIndices(x, o);
  // The indices stay alive while the backward may need them.
  if (!values.gradFn) indices.dispose();
  return values;
}

/**
 * 2-D average pooling: avgPool2d(x, 2) or avgPool2d(x, { kernelSize, stride = kernelSize,
 * padding = 0, ceilMode = false, countIncludePad = true, divisorOverride }).
 */
export function avgPool2d(x: Tensor, opts: AvgPool2dOptions | IntPair): Tensor {
  const op = 'avgPool2d';
  checkInput(x, op);
  const o: AvgPool2dOptions = typeof opts === 'number' || Array.isArray(opts) ? { kernelSize: opts as IntPair } : opts as AvgPool2dOptions;
  const { geom, out: outShape } = poolGeometry(x, op, o, undefined);
  const include = o.countIncludePad ?? true;
  const div = o.divisorOverride ?? 0;
  if (!Number.isInteger(div) || div < 0 || (o.divisorOverride !== undefined && o.divisorOverride !== null && div === 0)) {
    throw new Error(`nodegrad: ${op}: divisorOverride must be a positive integer (got ${String(o.divisorOverride)})`);
  }
  const out = noGrad(() => {
    const xc = prepare(x, op);
    const y = empty(outShape, xc.dtype, x.device, false, op);
    native.avgPool2dForward(flat(xc, op), y.storage.data, geom, include, div);
    release(xc, x);
    return toDType(y, x.dtype);
  });
  if (needsGrad(x)) {
    record(out, op, [x], (g) => {
      const gc = prepare(g);
      const gx = empty(x.shape, gc.dtype, x.device, false);
      native.avgPool2dBackward(flat(gc, op), gx.storage.data, geom, include, div);
      release(gc, g);
      return [toDType(gx, x.dtype)];
    }, []);
  }
  return out;
}

/**
 * Adaptive average pooling to outputSize (an int, or [h, w] where null keeps that input
 * size): output cell i averages input rows floor(i·H/OH) .. ceil((i+1)·H/OH).
 */
export function adaptiveAvgPool2d(x: Tensor, outputSize: number | readonly (number | null)[]): Tensor {
  const op = 'adaptiveAvgPool2d';
  checkInput(x, op);
  const H = x.shape[x.ndim - 2], W = x.shape[x.ndim - 1];
  const req = typeof outputSize === 'number' ? [outputSize, outputSize] : Array.isArray(outputSize) ? [...outputSize] : [];
  const size = req.length === 2 ? req.map((s, i) => (s === null ? (i === 0 ? H : W) : s)) : [];
  if (size.length !== 2 || size.some((s) => typeof s !== 'number' || !Number.isInteger(s) || s < 1)) {
    throw new Error(`nodegrad: ${op}: outputSize must be a positive integer or a pair of them (got ${show(outputSize)})`);
  }
  if (H === 0 || W === 0) throw new Error(`nodegrad: ${op}: the input planes must not be empty (got shape ${fmt(x.shape)})`);
  const [OH, OW] = size as number[];
  const planes = x.shape.slice(0, -2).reduce((a, b) => a * b, 1);
  const dims = [planes, H, W, OH, OW];
  const outShape = [...x.shape.slice(0, -2), OH, OW];
  const out = noGrad(() => {
    const xc = prepare(x, op);
    const y = empty(outShape, xc.dtype, x.device, false, op);
    native.adaptiveAvgPool2dForward(flat(xc, op), y.storage.data, dims);
    release(xc, x);
    return toDType(y, x.dtype);
  });
  if (needsGrad(x)) {
    record(out, op, [x], (g) => {
      const gc = prepare(g);
      const gx = empty(x.shape, gc.dtype, x.device, false);
      native.adaptiveAvgPool2dBackward(flat(gc, op), gx.storage.data, dims);
      release(gc, g);
      return [toDType(gx, x.dtype)];
    }, []);
  }
  return out;
}
