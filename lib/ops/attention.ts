// scaledDotProductAttention: one fused kernel per direction. The forward keeps only the
// output and one log-sum-exp per query row; the backward recomputes the probabilities
// from q, k and that lse (and regenerates the dropout mask from its Philox counters),
// so no [Tq, Tk] matrix is stored between the two.
import type { TypedArray } from '../dtype.js';
import { needsGrad, noGrad, record } from '../autograd.js';
import { native } from '../native.js';
import { nextRandom } from '../random.js';
import type { Tensor } from '../tensor.js';
import { cast } from './elementwise.js';
import { sumToShape } from './reduce.js';
import { contiguous, expand } from './shape.js';
import { broadcastShapes, broadcastStrides, checkSameDevice, checkTensor, empty, flat, fmt, numelOf } from './util.js';

declare module '../native.js' {
  interface NativeAddon {
    attentionForward(q: TypedArray, k: TypedArray, v: TypedArray, out: TypedArray, lse: TypedArray,
      dims: number[], scale: number, causal: boolean, mask: TypedArray | null, maskKind: number, maskOffset: number,
      maskLead: number[], maskStrides: number[], dropoutP: number, seed: number, offset: number): void;
    attentionBackward(q: TypedArray, k: TypedArray, v: TypedArray, out: TypedArray, lse: TypedArray, dout: TypedArray,
      dq: TypedArray, dk: TypedArray, dv: TypedArray, dmask: TypedArray | null,
      dims: number[], scale: number, causal: boolean, mask: TypedArray | null, maskKind: number, maskOffset: number,
      maskLead: number[], maskStrides: number[], dropoutP: number, seed: number, offset: number): void;
  }
}

export interface ScaledDotProductAttentionOptions {
  /** Query i attends keys j <= i (top-left aligned, as PyTorch). Combines with attnMask. */
  isCausal?: boolean;
  /** bool (true = attend) or float (added to the scores), broadcastable to [..., Tq, Tk]. */
  attnMask?: Tensor | null;
  /** Dropout probability on the attention weights (applied whenever > 0). */
  dropoutP?: number;
  /** Score scale; 1 / sqrt(D) by default. */
  scale?: number | null;
}

const OP = 'scaledDotProductAttention';

function err(what: string): Error {
  return new Error(`nodegrad: ${OP}: ${what}`);
}

/** Broadcasts t's leading dims to `lead` and makes it contiguous (both record autograd nodes). */
function denseTo(t: Tensor, lead: number[]): Tensor {
  const shape = [...lead, ...t.shape.slice(-2)];
  return contiguous(fmt(shape) === fmt(t.shape) ? t : expand(t, shape));
}

/**
 * softmax(q kᵀ · scale + mask) v over q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv]
 * (leading dims broadcast), as torch.nn.functional.scaled_dot_product_attention. A query
 * row with every key masked gives zeros (not NaN) and zero gradients.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: ScaledDotProductAttentionOptions = {}): Tensor {
  checkTensor(q, OP, 'q');
  checkTensor(k, OP, 'k');
  checkTensor(v, OP, 'v');
  const mask = opts.attnMask ?? null;
  if (mask !== null) checkTensor(mask, OP, 'attnMask');
  const device = checkSameDevice(OP, q, k, v, mask);
  if (device !== 'cpu') throw err(`no kernel for device ${device} yet`);
  const dt = q.dtype;
  if (dt !== 'float32' && dt !== 'float64') throw err(`q must be float32 or float64 (got ${dt})`);
  if (k.dtype !== dt || v.dtype !== dt) throw err(`q, k and v must have the same dtype (got ${q.dtype}, ${k.dtype} and ${v.dtype})`);
  if (q.ndim < 2 || k.ndim < 2 || v.ndim < 2) {
    throw err(`q, k and v need at least 2 dims [..., T, D] (got shapes ${fmt(q.shape)}, ${fmt(k.shape)} and ${fmt(v.shape)})`);
  }
  const [Tq, D] = q.shape.slice(-2);
  const [Tk, Dk] = k.shape.slice(-2);
  const [Tv, Dv] = v.shape.slice(-2);
  if (Dk !== D) throw err(`q and k must have the same last dim (got shapes ${fmt(q.shape)} and ${fmt(k.shape)})`);
  if (Tv !== Tk) throw err(`k and v must have the same length (dim -2) (got shapes ${fmt(k.shape)} and ${fmt(v.shape)})`);
  let lead: number[];
  try {
    lead = broadcastShapes(broadcastShapes(q.shape.slice(0, -2), k.shape.slice(0, -2), OP), v.shape.slice(0, -2), OP);
  } catch {
    throw err(`leading dims of q, k and v do not broadcast (got shapes ${fmt(q.shape)}, ${fmt(k.shape)} and ${fmt(v.shape)})`);
  }
  const full = [...lead, Tq, Tk];
  let maskKind = 0;
  let m: Tensor | null = null;
  if (mask !== null) {
    if (mask.dtype === 'bool') maskKind = 1;
    else if (mask.dtype === 'float32' || mask.dtype === 'float64') maskKind = 2;
    else throw err(`attnMask must be bool (true = attend) or floating-point (got ${mask.dtype})`);
    const ok = mask.ndim <= full.length && mask.shape.every((s, i) => s === 1 || s === full[full.length - mask.ndim + i]);
    if (!ok) throw err(`attnMask of shape ${fmt(mask.shape)} does not broadcast to the scores' shape ${fmt(full)}`);
    m = maskKind === 2 ? cast(mask, dt) : mask;
  }
  const isCausal = opts.isCausal ?? false;
  if (typeof isCausal !== 'boolean') throw err(`isCausal must be a boolean (got ${String(isCausal)})`);
  const p = opts.dropoutP ?? 0;
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw err(`dropoutP must be in [0, 1] (got ${String(p)})`);
  const scale = opts.scale ?? (D > 0 ? 1 / Math.sqrt(D) : 1);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw err(`scale must be a finite number (got ${String(scale)})`);

  const qc = denseTo(q, lead), kc = denseTo(k, lead), vc = denseTo(v, lead);
  const BH = numelOf(lead);
  const dims = [BH, Tq, Tk, D, Dv];
  const [seed, offset] = p > 0 ? nextRandom(BH * Tq * Tk) : [0, 0];
  const maskArgs = (): [TypedArray | null, number, number, number[], number[]] =>
    m ? [m.storage.data, maskKind, m.offset, lead, broadcastStrides(m, full)] : [null, 0, 0, lead, []];
  const out = empty([...lead, Tq, Dv], dt, device);
  const lse = empty([...lead, Tq], dt, device);
  native.attentionForward(flat(qc, OP), flat(kc, OP), flat(vc, OP), out.storage.data, lse.storage.data, dims, scale,
    isCausal, ...maskArgs(), p, seed, offset);
  const maskGrad = m !== null && maskKind === 2 && needsGrad(m);
  if (needsGrad(qc, kc, vc) || maskGrad) {
    record(out, OP, [qc, kc, vc, maskGrad ? m : null], (g) => {
      const gc = noGrad(() => contiguous(cast(g, dt)));
      const dq = empty(qc.shape, dt, device), dk = empty(kc.shape, dt, device), dv = empty(vc.shape, dt, device);
      const dmask = maskGrad ? empty(full, dt, device) : null;
      native.attentionBackward(flat(qc, OP), flat(kc, OP), flat(vc, OP), out.storage.data, lse.storage.data,
        flat(gc, OP), dq.storage.data, dk.storage.data, dv.storage.data, dmask ? dmask.storage.data : null,
        dims, scale, isCausal, ...maskArgs(), p, seed, offset);
      return [dq, dk, dv, dmask && m ? sumToShape(dmask, m.shape) : null];
    });
  }
  return out;
}
