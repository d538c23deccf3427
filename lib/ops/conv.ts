// conv2d (PyTorch's F.conv2d: NCHW cross-correlation with stride, padding, dilation and
// groups). One native forward (im2col + the packed GEMM) and one native backward that
// computes the gradients of the input (col2im of Wᵀ·dy), weight (dy·colsᵀ) and bias.
import type { TypedArray } from '../dtype.js';
import { needsGrad, noGrad, record } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { cast } from './elementwise.js';
import { contiguousFor, reshape } from './shape.js';
import { empty } from './alloc.js';
import { checkFloat, checkSameDevice, checkTensor, fmt, optionsArg, show } from './check.js';
import { flat } from './native_args.js';

declare module '../native.js' {
  interface NativeAddon {
    /** geom = [N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, groups, OH, OW] */
    conv2dForward(x: TypedArray, w: TypedArray, b: TypedArray | null, y: TypedArray, geom: number[]): void;
    conv2dBackward(dy: TypedArray, x: TypedArray, w: TypedArray, dx: TypedArray | null, dw: TypedArray | null,
      db: TypedArray | null, geom: number[]): void;
  }
}

const OP = 'conv2d';

/** An int or an [h, w] pair. */
export type IntPair = number | readonly [number, number] | readonly number[];

export interface Conv2dOptions {
  stride?: IntPair;
  /** Zero padding on both sides; 'same' keeps the size (stride 1 only), 'valid' is 0. */
  padding?: IntPair | 'same' | 'valid';
  dilation?: IntPair;
  groups?: number;
}

/** Normalises an int-or-pair argument; min is the smallest allowed value. */
export function pair(v: IntPair | undefined, def: number, what: string, op: string, min: number): [number, number] {
  const p = v === undefined ? [def, def] : typeof v === 'number' ? [v, v] : Array.isArray(v) ? [...v] : null;
  if (!p || p.length !== 2 || p.some((e) => typeof e !== 'number' || !Number.isInteger(e) || e < min)) {
    throw new Error(`nodegrad: ${op}: ${what} must be an integer >= ${min} or a pair of them (got ${show(v)})`);
  }
  return [p[0], p[1]];
}

/** The contiguous float32/float64 tensor the kernels read (bfloat16/float16 run in float32); `op` is named in errors. */
export function prepare(t: Tensor, op = OP): Tensor {
  const c = contiguousFor(t, op);
  if (c.dtype !== 'bfloat16' && c.dtype !== 'float16') return c;
  const f = cast(c, 'float32');
  if (c !== t) c.dispose();
  return f;
}

export function release(t: Tensor | null, orig: Tensor | null | undefined): void {
  if (t && t !== orig) t.dispose();
}

export function toDType(t: Tensor, dtype: Tensor['dtype']): Tensor {
  if (t.dtype === dtype) return t;
  const r = cast(t, dtype);
  t.dispose();
  return r;
}

interface Geometry { geom: number[]; out: number[] }

function geometry(x: Tensor, weight: Tensor, bias: Tensor | null, opts: Conv2dOptions): Geometry {
  const [N, C, H, W] = x.shape;
  if (weight.ndim !== 4) {
    throw new Error(`nodegrad: ${OP}: weight must be 4-D [outChannels, inChannels/groups, kH, kW] (got shape ${fmt(weight.shape)})`);
  }
  const [O, Cg, kh, kw] = weight.shape;
  const groups = opts.groups ?? 1;
  if (!Number.isInteger(groups) || groups < 1) throw new Error(`nodegrad: ${OP}: groups must be a positive integer (got ${String(groups)})`);
  if (C % groups !== 0 || O % groups !== 0) {
    throw new Error(`nodegrad: ${OP}: groups=${groups} must divide the input channels (${C}) and the output channels (${O}) ` +
      `(got input ${fmt(x.shape)} and weight ${fmt(weight.shape)})`);
  }
  if (Cg * groups !== C) {
    throw new Error(`nodegrad: ${OP}: the input has ${C} channels but the weight expects ${Cg * groups} ` +
      `(got input ${fmt(x.shape)} and weight ${fmt(weight.shape)} with groups=${groups})`);
  }
  if (kh === 0 || kw === 0) throw new Error(`nodegrad: ${OP}: the kernel must not be empty (got weight ${fmt(weight.shape)})`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== O)) {
    throw new Error(`nodegrad: ${OP}: bias must have shape [${O}] (got ${fmt(bias.shape)})`);
  }
  const [sh, sw] = pair(opts.stride, 1, 'stride', OP, 1);
  const [dh, dw] = pair(opts.dilation, 1, 'dilation', OP, 1);
  const ekh = dh * (kh - 1) + 1, ekw = dw * (kw - 1) + 1;  // dilated kernel extent
  let pt: number, pl: number, padH: number, padW: number;  // before, and total
  if (opts.padding === 'same') {
    if (sh !== 1 || sw !== 1) throw new Error(`nodegrad: ${OP}: padding 'same' needs stride 1 (got stride [${sh},${sw}])`);
    padH = ekh - 1;
    padW = ekw - 1;
    pt = Math.floor(padH / 2);
    pl = Math.floor(padW / 2);
  } else {
    const [ph, pw] = opts.padding === 'valid' ? [0, 0] : pair(opts.padding, 0, 'padding', OP, 0);
    pt = ph;
    pl = pw;
    padH = 2 * ph;
    padW = 2 * pw;
  }
  if (ekh > H + padH || ekw > W + padW) {
    throw new Error(`nodegrad: ${OP}: the kernel (${ekh}x${ekw} with dilation) is larger than the padded input ` +
      `(${H + padH}x${W + padW}; got input ${fmt(x.shape)}, weight ${fmt(weight.shape)})`);
  }
  const OH = Math.floor((H + padH - ekh) / sh) + 1, OW = Math.floor((W + padW - ekw) / sw) + 1;
  return { geom: [N, C, H, W, O, kh, kw, sh, sw, pt, pl, dh, dw, groups, OH, OW], out: [N, O, OH, OW] };
}

/**
 * 2-D convolution over x [N, C, H, W] (or unbatched [C, H, W]) with weight
 * [O, C/groups, kH, kW] and an optional bias [O]; output [N, O, OH, OW] with
 * OH = floor((H + 2·padding - dilation·(kH-1) - 1) / stride) + 1.
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  opts = optionsArg(opts, OP);
  checkTensor(x, OP);
  checkTensor(weight, OP, 'weight');
  if (bias !== undefined && bias !== null) checkTensor(bias, OP, 'bias');
  const b = bias ?? null;
  checkFloat(x, OP);
  if (x.ndim === 3) {
    const y = conv2d(reshape(x, [1, ...x.shape]), weight, b, opts);
    return reshape(y, y.shape.slice(1));
  }
  if (x.ndim !== 4) throw new Error(`nodegrad: ${OP}: input must be 3-D [C,H,W] or 4-D [N,C,H,W] (got shape ${fmt(x.shape)})`);
  for (const [t, what] of [[weight, 'weight'], [b, 'bias']] as const) {
    if (t && t.dtype !== x.dtype) {
      throw new Error(`nodegrad: ${OP}: ${what} has dtype ${t.dtype} but the input is ${x.dtype}; convert one of them with .to()`);
    }
  }
  const device = checkSameDevice(OP, x, weight, b);
  const { geom, out: outShape } = geometry(x, weight, b, opts);

  const out = noGrad(() => {
    const xc = prepare(x), wc = prepare(weight), bc = b && prepare(b);
    const y = empty(outShape, xc.dtype, device, false, OP);
    native.conv2dForward(flat(xc, OP), flat(wc, OP), bc && flat(bc, OP), y.storage.data, geom);
    release(xc, x);
    release(wc, weight);
    release(bc, b);
    return toDType(y, x.dtype);
  });
  if (needsGrad(x, weight, b)) {
    const wantX = needsGrad(x), wantW = needsGrad(weight), wantB = needsGrad(b);
    record(out, OP, [x, weight, b], (g) => {
      const gc = prepare(g), xc = prepare(x), wc = prepare(weight);
      const gx = wantX ? empty(x.shape, gc.dtype, device, false) : null;
      const gw = wantW ? empty(weight.shape, gc.dtype, device, false) : null;
      const gb = wantB ? empty([weight.shape[0]], gc.dtype, device, false) : null;
      native.conv2dBackward(flat(gc, OP), flat(xc, OP), flat(wc, OP), gx && gx.storage.data, gw && gw.storage.data,
        gb && gb.storage.data, geom);
      release(gc, g);
      release(xc, x);
      release(wc, weight);
      return [gx && toDType(gx, x.dtype), gw && toDType(gw, x.dtype), gb && toDType(gb, x.dtype)];
    }, [x, weight]);
  }
  return out;
}
