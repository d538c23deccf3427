// Automatic mixed precision (torch.autocast): inside autocast(), matmuls, linear layers
// and attention on the chosen device run in bfloat16 (or float16) with float32
// accumulation, while softmax, log-softmax and losses run in float32. Parameters stay
// float32 (the optimizer updates float32 master weights); their low-precision copies are
// made once per autocast region and reused by every op in it. Casts are differentiable,
// so gradients reach the float32 parameters in float32.
import type { DType } from './dtype.js';
import { cast } from './ops/elementwise.js';
import type { Tensor } from './tensor.js';

export type AutocastDType = 'bfloat16' | 'float16';
export interface AutocastOptions {
  /** Low-precision dtype (default bfloat16). */
  dtype?: AutocastDType;
  /** Device kind the policy applies to (default 'cuda'); tensors elsewhere are left alone. */
  device?: 'cuda' | 'cpu';
  /** false runs fn with autocast off (e.g. to disable it in a region). */
  enabled?: boolean;
}

interface State { dtype: AutocastDType; device: 'cuda' | 'cpu'; cache: Map<Tensor, Tensor> }
let state: State | null = null;

/** Runs fn with the autocast policy on (nested calls replace it for their extent). */
export function autocast<T>(opts: AutocastOptions, fn: () => T): T {
  const dtype = opts.dtype ?? 'bfloat16';
  if (dtype !== 'bfloat16' && dtype !== 'float16') throw new Error(`nodegrad: autocast: dtype must be 'bfloat16' or 'float16' (got ${String(dtype)})`);
  const device = opts.device ?? 'cuda';
  if (device !== 'cuda' && device !== 'cpu') throw new Error(`nodegrad: autocast: device must be 'cuda' or 'cpu' (got ${String(device)})`);
  const prev = state;
  state = opts.enabled === false ? null : { dtype, device, cache: new Map() };
  try {
    const r = fn();
    if (r instanceof Promise) throw new Error('nodegrad: autocast: fn returned a Promise; autocast regions must be synchronous');
    return r;
  } finally {
    // cached casts belong to the enclosing scope (they are inputs of the recorded graph)
    state = prev;
  }
}

export function isAutocastEnabled(): boolean {
  return state !== null;
}
export function autocastDType(): AutocastDType | null {
  return state?.dtype ?? null;
}

function applies(t: Tensor): boolean {
  return state !== null && (state.device === 'cpu' ? t.device === 'cpu' : t.device !== 'cpu');
}

/** For low-precision ops: float32 tensors become the autocast dtype (parameters cached per region). */
export function lowPrecision(t: Tensor): Tensor;
export function lowPrecision(t: Tensor | null | undefined): Tensor | null;
export function lowPrecision(t: Tensor | null | undefined): Tensor | null {
  if (!t) return null;
  if (!applies(t) || t.dtype !== 'float32') return t;
  const s = state!;
  const leaf = t.isLeaf;
  if (leaf) {
    const c = s.cache.get(t);
    if (c && !c.isDisposed) return c;
  }
  const c = cast(t, s.dtype);
  if (leaf) s.cache.set(t, c);
  return c;
}

/** For float32 ops (softmax, losses, norms' statistics): half tensors become float32. */
export function fullPrecision(t: Tensor): Tensor {
  if (!applies(t) || (t.dtype !== 'bfloat16' && t.dtype !== 'float16')) return t;
  return cast(t, 'float32' as DType);
}
