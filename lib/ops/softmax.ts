// softmax and logSoftmax along any dim. The input is made contiguous and viewed as
// [M, C, I] with the softmax dim in C, so one native call serves every dim without a
// transpose and the output keeps the input's (contiguous) layout. The backward is an
// explicit kernel from the saved output: softmax gx = y * (g - sum(g * y)),
// logSoftmax gx = g - exp(y) * sum(g). A row of all -inf gives NaN, as in PyTorch.
import type { TypedArray } from '../dtype.js';
import { needsGrad, noGrad, record } from '../autograd.js';
import { native } from '../native.js';
import { fullPrecision, isAutocastEnabled } from '../autocast.js';
import type { Tensor } from '../tensor.js';
import { cast } from './elementwise.js';
import { contiguous, contiguousFor } from './shape.js';
import { checkAlloc, empty } from './alloc.js';
import { checkFloat, checkTensor } from './check.js';
import { normDim, numelOf } from './dims.js';
import { flat } from './native_args.js';

declare module '../native.js' {
  interface NativeAddon {
    softmaxForward(x: TypedArray, y: TypedArray, M: number, C: number, I: number, log: boolean): void;
    softmaxBackward(g: TypedArray, y: TypedArray, gx: TypedArray, M: number, C: number, I: number, log: boolean): void;
  }
}

/** [M, C, I] sizes of a shape around dim d. */
function split3(shape: readonly number[], d: number): [number, number, number] {
  if (shape.length === 0) return [1, 1, 1];
  return [numelOf(shape.slice(0, d)), shape[d], numelOf(shape.slice(d + 1))];
}

/** bfloat16/float16 run in float32 on the CPU (its kernels take float32 and float64); CUDA takes them as they are. */
function computeType(t: Tensor): Tensor {
  return t.device === 'cpu' && (t.dtype === 'bfloat16' || t.dtype === 'float16') ? cast(t, 'float32') : t;
}

function softmaxImpl(x: Tensor, dim: number, log: boolean): Tensor {
  const op = log ? 'logSoftmax' : 'softmax';
  checkTensor(x, op);
  checkFloat(x, op);
  const d = normDim(dim, x.ndim, op);
  const [M, C, I] = split3(x.shape, d);
  checkAlloc(x.shape, 'float32', x.device, op);  // (before a half input is widened to float32)
  const out = noGrad(() => {
    const xc = contiguousFor(computeType(x), op);
    const y = empty(x.shape, xc.dtype, x.device, false, op);  // the kernel writes every element
    native.softmaxForward(flat(xc, op), y.storage.data, M, C, I, log);
    if (xc !== x) xc.dispose();
    if (y.dtype === x.dtype) return y;
    const yc = cast(y, x.dtype);
    y.dispose();
    return yc;
  });
  if (needsGrad(x)) {
    record(out, op, [x], (g) => {
      const gc = contiguous(computeType(g));
      const yc = computeType(out);
      const gx = empty(x.shape, gc.dtype, x.device, false);
      native.softmaxBackward(flat(gc, op), flat(yc, op), gx.storage.data, M, C, I, log);
      if (gc !== g) gc.dispose();
      if (yc !== out) yc.dispose();
      if (gx.dtype === x.dtype) return [gx];
      const r = cast(gx, x.dtype);
      gx.dispose();
      return [r];
    }, [out]);
  }
  return out;
}

/** softmax(x)_i = exp(x_i) / sum_j exp(x_j) along `dim` (numerically stable). */
export function softmax(x: Tensor, dim: number): Tensor {
  return softmaxImpl(isAutocastEnabled() ? fullPrecision(x) : x, dim, false);
}

/** log(softmax(x)) along `dim`, computed as x - max - log(sum(exp(x - max))). */
export function logSoftmax(x: Tensor, dim: number): Tensor {
  return softmaxImpl(isAutocastEnabled() ? fullPrecision(x) : x, dim, true);
}
