// dropout: zeroes each element with probability p while training and scales the kept
// ones by 1 / (1 - p), so the expectation is unchanged. The keep mask comes from the
// global counter-based generator (bernoulli draws), so ng.manualSeed(s) reproduces it on
// every backend. The mask is built already scaled (values 0 or 1 / (1 - p)); the output
// is x * mask, whose recorded backward multiplies the gradient by the same mask.
import { isFloating } from '../dtype.js';
import type { Tensor } from '../tensor.js';
import { bernoulli } from './creation.js';
import { cast, inplace, mul } from './elementwise.js';
import { checkAlloc } from './alloc.js';
import { checkTensor, fmt } from './check.js';

const OP = 'dropout';

/**
 * Dropout (PyTorch's F.dropout): with training on and p > 0, each element is kept with
 * probability 1 - p and scaled by 1 / (1 - p); p = 1 gives zeros. With training off (or
 * p = 0) x itself is returned.
 */
export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  checkTensor(x, OP);
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) {
    throw new Error(`nodegrad: ${OP}: probability p must be between 0 and 1 (got ${String(p)})`);
  }
  if (!isFloating(x.dtype)) {
    throw new Error(`nodegrad: ${OP}: input must be a floating-point tensor (got ${x.dtype}, shape ${fmt(x.shape)})`);
  }
  if (!training || p === 0) return x;
  checkAlloc(x.shape, x.dtype, x.device, OP);
  if (p === 1) return mul(x, 0);
  const maskType = x.dtype === 'float64' ? 'float64' : 'float32';
  let mask = bernoulli(x.shape, 1 - p, { dtype: maskType, device: x.device });
  inplace(mask, 'mul_', 1 / (1 - p));
  if (mask.dtype !== x.dtype) {
    const m = cast(mask, x.dtype);
    mask.dispose();
    mask = m;
  }
  const out = mul(x, mask);
  if (!out.requiresGrad) mask.dispose(); // otherwise mul's backward reads it
  return out;
}
