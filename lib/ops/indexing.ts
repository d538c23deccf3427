// (placeholder filled by the indexing work)
import type { Tensor } from '../tensor.js';
export function gather(x: Tensor, dim: number, index: Tensor): Tensor { void x; void dim; void index; throw new Error('nodegrad: gather: not built yet'); }
export function indexSelect(x: Tensor, dim: number, index: Tensor): Tensor { void x; void dim; void index; throw new Error('nodegrad: indexSelect: not built yet'); }
export function topk(x: Tensor, k: number, opts?: { dim?: number; largest?: boolean; sorted?: boolean }): { values: Tensor; indices: Tensor } { void x; void k; void opts; throw new Error('nodegrad: topk: not built yet'); }
