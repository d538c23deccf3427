// (placeholder filled by the softmax work)
import type { Tensor } from '../tensor.js';
export function softmax(x: Tensor, dim: number): Tensor { void x; void dim; throw new Error('nodegrad: softmax: not built yet'); }
export function logSoftmax(x: Tensor, dim: number): Tensor { void x; void dim; throw new Error('nodegrad: logSoftmax: not built yet'); }
