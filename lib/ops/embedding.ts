// embedding: rows of a [V, C] table gathered by int32 ids of any shape. The native
// forward copies rows; the backward scatter-adds the output gradient into a zero [V, C]
// gradient (deterministically) and skips ids equal to paddingIdx. Out-of-range ids are
// rejected by the kernel before anything is written.
import type { TypedArray } from '../dtype.js';
import { needsGrad, noGrad, record } from '../autograd.js';
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { cast } from './elementwise.js';
import { contiguous, contiguousFor } from './shape.js';
import { empty } from './alloc.js';
import { checkSameDevice, checkTensor, fmt, optionsArg } from './check.js';
import { flat } from './native_args.js';

declare module '../native.js' {
  interface NativeAddon {
    embeddingForward(ids: Int32Array, n: number, weight: TypedArray, V: number, C: number, out: TypedArray): void;
    embeddingBackward(ids: Int32Array, n: number, g: TypedArray, V: number, C: number, gw: TypedArray,
      paddingIdx: number): void;
  }
}

const OP = 'embedding';

export interface EmbeddingOptions {
  /** Rows looked up with this id receive no gradient (negative counts from the end). */
  paddingIdx?: number | null;
}

/** out[..., :] = weight[ids[...], :]; ids must be int32, output shape [...ids.shape, C]. */
export function embedding(ids: Tensor, weight: Tensor, opts: EmbeddingOptions = {}): Tensor {
  opts = optionsArg(opts, OP);
  checkTensor(ids, OP, 'ids');
  checkTensor(weight, OP, 'weight');
  if (ids.dtype !== 'int32') {
    throw new Error(`nodegrad: ${OP}: ids must be an int32 tensor (got ${ids.dtype}, shape ${fmt(ids.shape)}); convert with .int()`);
  }
  if (weight.ndim !== 2) throw new Error(`nodegrad: ${OP}: weight must be 2-D [numEmbeddings, dim] (got shape ${fmt(weight.shape)})`);
  const device = checkSameDevice(OP, ids, weight);
  const [V, C] = weight.shape;
  let pad = -1;
  if (opts.paddingIdx !== undefined && opts.paddingIdx !== null) {
    const p = opts.paddingIdx;
    if (!Number.isInteger(p) || p < -V || p >= V) {
      throw new Error(`nodegrad: ${OP}: paddingIdx ${String(p)} is out of range for ${V} embeddings`);
    }
    pad = p < 0 ? p + V : p;
  }
  const idc = contiguousFor(ids, OP);
  const wc = contiguousFor(weight, OP);
  const n = idc.numel;
  const out = empty([...ids.shape, C], weight.dtype, device, true, OP);
  native.embeddingForward(flat(idc, OP) as Int32Array, n, flat(wc, OP), V, C, out.storage.data);
  if (wc !== weight) wc.dispose();
  if (idc !== ids) idc.dispose();
  if (needsGrad(weight)) {
    record(out, OP, [ids, weight], (g) => {
      // the CPU kernel takes float32/float64; CUDA accumulates half gradients in fp32 itself
      const half = device === 'cpu' && (g.dtype === 'bfloat16' || g.dtype === 'float16');
      const gc = noGrad(() => contiguous(half ? cast(g, 'float32') : g));
      const ic = contiguous(ids);
      const gw = empty([V, C], gc.dtype, device);
      native.embeddingBackward(flat(ic, OP) as Int32Array, n, flat(gc, OP), V, C, gw.storage.data, pad);
      if (gc !== g) gc.dispose();
      if (ic !== ids) ic.dispose();
      if (!half) return [null, gw];
      const r = cast(gw, g.dtype);
      gw.dispose();
      return [null, r];
    }, [ids]);
  }
  return out;
}
