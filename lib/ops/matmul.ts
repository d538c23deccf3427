// (placeholder filled by the GEMM work)
import type { Tensor } from '../tensor.js';
export function matmul(a: Tensor, b: Tensor): Tensor { void a; void b; throw new Error('nodegrad: matmul: not built yet'); }
