// scaledDotProductAttention: one fused kernel per direction. The forward keeps only the
// output and one log-sum-exp per query row; the backward recomputes the probabilities
// from q, k and that lse (and regenerates the dropout mask from its Philox counters),
// so no [Tq, Tk] matrix is stored between the two.
import type { TypedArray } from '../dtype.js';
import { needsGrad, noGrad, record } from '../autograd.js';
import { native } from '../native.js';
import { nextRandom } from '../random.js';
import type { Tensor } from '../tensor.js';
import { add, cast, eq, gt, logicalAnd, logicalNot, maskedFill, mul } from './elementwise.js';
import { arange } from './creation.js';
import { matmul } from './matmul.js';
import { softmax } from './softmax.js';
import { amax } from './reduce.js';
import { sumToShape } from './reduce.js';
import { clone, contiguous, contiguousFor, expand, reshape, transpose } from './shape.js';
import { checkAlloc, empty } from './alloc.js';
import { checkSameDevice, checkTensor, fmt, optionsArg } from './check.js';
import { broadcastShapes, broadcastStrides, numelOf } from './dims.js';
import { flat } from './native_args.js';

declare module '../native.js' {
  interface NativeAddon {
    // layout (CUDA only): [H, qOffset, qsb, qsh, qst, kOffset, ..., vOffset, ...], q/k/v as strided [B, H, T, D] views.
    attentionForward(q: TypedArray, k: TypedArray, v: TypedArray, out: TypedArray, lse: TypedArray,
      dims: number[], scale: number, causal: boolean, mask: TypedArray | null, maskKind: number, maskOffset: number,
      maskLead: number[], maskStrides: number[], dropoutP: number, seed: number, offset: number, layout?: number[]): void;
    attentionBackward(q: TypedArray, k: TypedArray, v: TypedArray, out: TypedArray, lse: TypedArray, dout: TypedArray,
      dq: TypedArray, dk: TypedArray, dv: TypedArray, dmask: TypedArray | null,
      dims: number[], scale: number, causal: boolean, mask: TypedArray | null, maskKind: number, maskOffset: number,
      maskLead: number[], maskStrides: number[], dropoutP: number, seed: number, offset: number, layout?: number[]): void;
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
  /**
   * Grouped-query attention (PyTorch's enable_gqa): k and v have Hkv heads (dim -3), q has
   * Hq, a multiple of Hkv; query head h reads kv head floor(h / (Hq / Hkv)).
   */
  enableGqa?: boolean;
  /**
   * Mistral's sliding window: query i sees only keys j > i - slidingWindow (positions
   * top-left aligned, as isCausal: query i is at position i); with isCausal,
   * i - W < j <= i. For a decode step whose queries sit after a KV cache, give the
   * positions in attnMask instead (or slice the cache to the window).
   */
  slidingWindow?: number | null;
}

const OP = 'scaledDotProductAttention';

function err(what: string): Error {
  return new Error(`nodegrad: ${OP}: ${what}`);
}

/**
 * [sb, sh, st] strides of t viewed as [B, H, T, D] (H = last lead dim, B = the other lead
 * dims collapsed), or null when t's lead dims are not `lead` exactly, d is not
 * contiguous, or the B dims do not collapse into one stride. CUDA takes such views as they
 * are (e.g. q/k/v sliced from a fused QKV projection), so no copy is made.
 */
function stridedLayout(t: Tensor, lead: number[]): [number, number, number] | null {
  const n = lead.length;
  if (fmt(t.shape.slice(0, -2)) !== fmt(lead)) return null;
  const st = t.strides;
  if (t.shape[n + 1] > 1 && st[n + 1] !== 1) return null;
  const sh = n >= 1 ? st[n - 1] : 0;
  let sb = 0, prev = -1;
  for (let i = 0; i < n - 1; i++) {
    if (t.shape[i] === 1) continue;
    if (prev >= 0 && st[prev] !== st[i] * t.shape[i]) return null;
    prev = i;
    sb = st[i];
  }
  return [sb, sh, st[n]];
}

/** Broadcasts t's leading dims to `lead` and makes it contiguous (both record autograd nodes). */
function denseTo(t: Tensor, lead: number[]): Tensor {
  const shape = [...lead, ...t.shape.slice(-2)];
  return contiguousFor(fmt(shape) === fmt(t.shape) ? t : expand(t, shape), OP);
}

/**
 * softmax(q kᵀ · scale + mask) v over q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv]
 * (leading dims broadcast), as torch.nn.functional.scaled_dot_product_attention. A query
 * row with every key masked gives zeros (not NaN) and zero gradients.
 *
 * Kernels: on CUDA, bfloat16/float16 with head dim 32, 64, 96 or 128 (D == Dv) on sm_80+
 * run the tensor-core flash kernels (forward and a deterministic backward); float32,
 * float64, other head dims (up to 256) and sm_75 run the simple SIMT kernels (correct,
 * slower); a float mask that requires grad also takes the simple backward. q/k/v views
 * whose leading dims are already the broadcast shape (e.g. sliced from a fused QKV
 * projection) are passed to CUDA with their strides, without a copy. On the CPU,
 * bfloat16/float16 inputs are computed in float32.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: ScaledDotProductAttentionOptions = {}): Tensor {
  opts = optionsArg(opts, OP);
  checkTensor(q, OP, 'q');
  checkTensor(k, OP, 'k');
  checkTensor(v, OP, 'v');
  const mask = opts.attnMask ?? null;
  if (mask !== null) checkTensor(mask, OP, 'attnMask');
  const device = checkSameDevice(OP, q, k, v, mask);
  const onCuda = device.startsWith('cuda');
  if (device !== 'cpu' && !onCuda) throw err(`no kernel for device ${device} yet`);
  const dt = q.dtype;
  if (onCuda) {
    if (dt !== 'float32' && dt !== 'float64' && dt !== 'bfloat16' && dt !== 'float16') {
      throw err(`q must be float32, float64, bfloat16 or float16 on CUDA (got ${dt})`);
    }
  } else if (dt === 'bfloat16' || dt === 'float16') {
    // The CPU has no half kernels: attend in float32 (the casts are differentiable) and
    // round the output once, as the other half-precision CPU ops do.
    if (k.dtype !== dt || v.dtype !== dt) throw err(`q, k and v must have the same dtype (got ${q.dtype}, ${k.dtype} and ${v.dtype})`);
    const up = (t: Tensor): Tensor => (checkAlloc(t.shape, 'float32', t.device, OP), cast(t, 'float32'));
    const m32 = mask !== null && mask.dtype === dt ? up(mask) : mask;
    return cast(scaledDotProductAttention(up(q), up(k), up(v), { ...opts, attnMask: m32 }), dt);
  } else if (dt !== 'float32' && dt !== 'float64') throw err(`q must be float32 or float64 (got ${dt})`);
  if (k.dtype !== dt || v.dtype !== dt) throw err(`q, k and v must have the same dtype (got ${q.dtype}, ${k.dtype} and ${v.dtype})`);
  if (q.ndim < 2 || k.ndim < 2 || v.ndim < 2) {
    throw err(`q, k and v need at least 2 dims [..., T, D] (got shapes ${fmt(q.shape)}, ${fmt(k.shape)} and ${fmt(v.shape)})`);
  }
  const [Tq, D] = q.shape.slice(-2);
  const [Tk, Dk] = k.shape.slice(-2);
  const [Tv, Dv] = v.shape.slice(-2);
  if (Dk !== D) throw err(`q and k must have the same last dim (got shapes ${fmt(q.shape)} and ${fmt(k.shape)})`);
  if (Tv !== Tk) throw err(`k and v must have the same length (dim -2) (got shapes ${fmt(k.shape)} and ${fmt(v.shape)})`);
  const gqa = gqaGroup(q, k, v, opts.enableGqa ?? false);
  // with GQA, k and v broadcast as if their heads were repeated to q's
  const kvLead = (t: Tensor): number[] => t.shape.slice(0, -3).concat(gqa > 1 ? [t.shape[t.ndim - 3] * gqa] : t.shape.slice(-3, -2));
  let lead: number[];
  try {
    lead = broadcastShapes(broadcastShapes(q.shape.slice(0, -2), kvLead(k), OP), kvLead(v), OP);
  } catch {
    throw err(`leading dims of q, k and v do not broadcast (got shapes ${fmt(q.shape)}, ${fmt(k.shape)} and ${fmt(v.shape)})`);
  }
  const full = [...lead, Tq, Tk];
  let maskKind = 0;
  let m: Tensor | null = null;
  if (mask !== null) {
    if (mask.dtype === 'bool') maskKind = 1;
    else if (mask.dtype === 'float32' || mask.dtype === 'float64' || mask.dtype === 'bfloat16' || mask.dtype === 'float16') maskKind = 2;
    else throw err(`attnMask must be bool (true = attend) or floating-point (got ${mask.dtype})`);
    const ok = mask.ndim <= full.length && mask.shape.every((s, i) => s === 1 || s === full[full.length - mask.ndim + i]);
    if (!ok) throw err(`attnMask of shape ${fmt(mask.shape)} does not broadcast to the scores' shape ${fmt(full)}`);
    m = maskKind === 2 ? cast(mask, dt) : mask;
  }
  const isCausal = opts.isCausal ?? false;
  if (typeof isCausal !== 'boolean') throw err(`isCausal must be a boolean (got ${String(isCausal)})`);
  const window = opts.slidingWindow ?? null;
  if (window !== null && (!Number.isSafeInteger(window) || window < 1)) {
    throw err(`slidingWindow must be a positive integer (got ${String(window)})`);
  }
  const p = opts.dropoutP ?? 0;
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw err(`dropoutP must be in [0, 1] (got ${String(p)})`);
  const scale = opts.scale ?? (D > 0 ? 1 / Math.sqrt(D) : 1);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw err(`scale must be a finite number (got ${String(scale)})`);

  // float32/float64 on CUDA: the SIMT kernels read keys uncoalesced, so where the score
  // matrix is affordable (and no dropout mask must match the CPU's) attention is composed
  // from tensor-core-backed matmuls and softmax, differentiated by the ops themselves.
  if (onCuda && (dt === 'float32' || dt === 'float64') && p === 0 && numelOf(full) <= COMPOSED_MAX_SCORES) {
    // (GQA repeats K/V here and the window becomes a mask: float32/float64 only)
    const [km, vm, wm, wk] = gqa > 1 || window !== null ? [repeatKv(k, gqa), repeatKv(v, gqa), ...windowMask(m, maskKind, window, Tq, Tk, device)] : [k, v, m, maskKind];
    return composedAttention(q, km, vm, wm, wk, isCausal, scale, Tq, Tk, device);
  }

  // On CUDA, q/k/v views of the right shape go to the kernel as strided [B, H, T, D]
  // views (the fused QKV case); otherwise, and always on the CPU, they are made dense.
  // With GQA, k and v keep their Hkv heads: the kernels index kv head h / group.
  const kvShape = gqa > 1 ? [...lead.slice(0, -1), lead[lead.length - 1] / gqa] : lead;
  const lay = (t: Tensor, l: number[]): [number, number, number] | null => (onCuda ? stridedLayout(t, l) : null);
  const ql = lay(q, lead), kl = lay(k, kvShape), vl = lay(v, kvShape);
  const qc = ql ? q : denseTo(q, lead), kc = kl ? k : denseTo(k, kvShape), vc = vl ? v : denseTo(v, kvShape);
  const BH = numelOf(lead);
  const dims = [BH, Tq, Tk, D, Dv, gqa, window ?? 0];
  const H = lead.length > 0 ? Math.max(1, lead[lead.length - 1]) : 1;
  const layoutOf = (t: Tensor, l: [number, number, number] | null, T: number, Dx: number, Hx: number): number[] =>
    l ? [t.offset, ...l] : [t.offset, Hx * T * Dx, T * Dx, Dx];
  const layout = onCuda
    ? [H, ...layoutOf(qc, ql, Tq, D, H), ...layoutOf(kc, kl, Tk, D, H / gqa), ...layoutOf(vc, vl, Tk, Dv, H / gqa)] : undefined;
  const arg = (t: Tensor): TypedArray => (onCuda ? t.storage.data : flat(t, OP));
  const [seed, offset] = p > 0 ? nextRandom(BH * Tq * Tk) : [0, 0];
  const maskArgs = (): [TypedArray | null, number, number, number[], number[]] =>
    m ? [m.storage.data, maskKind, m.offset, lead, broadcastStrides(m, full)] : [null, 0, 0, lead, []];
  const out = empty([...lead, Tq, Dv], dt, device, true, OP);
  // The row log-sum-exp stays in float32 on CUDA for the half types (float64 for float64).
  const lse = empty([...lead, Tq], onCuda && dt !== 'float64' ? 'float32' : dt, device);
  native.attentionForward(arg(qc), arg(kc), arg(vc), out.storage.data, lse.storage.data, dims, scale,
    isCausal, ...maskArgs(), p, seed, offset, layout);
  const maskGrad = m !== null && maskKind === 2 && needsGrad(m);
  if (needsGrad(qc, kc, vc) || maskGrad) {
    record(out, OP, [qc, kc, vc, maskGrad ? m : null], (g) => {
      let gc = noGrad(() => contiguous(cast(g, dt)));
      if (onCuda && gc.offset !== 0) gc = noGrad(() => clone(gc));
      const dq = empty(qc.shape, dt, device), dk = empty(kc.shape, dt, device), dv = empty(vc.shape, dt, device);
      const dmask = maskGrad ? empty(full, dt, device) : null;
      native.attentionBackward(arg(qc), arg(kc), arg(vc), out.storage.data, lse.storage.data,
        arg(gc), dq.storage.data, dk.storage.data, dv.storage.data, dmask ? dmask.storage.data : null,
        dims, scale, isCausal, ...maskArgs(), p, seed, offset, layout);
      return [dq, dk, dv, dmask && m ? sumToShape(dmask, m.shape) : null];
    }, [qc, kc, vc, out, lse, m]);
  }
  return out;
}

/**
 * The kv-head group size (Hq / Hkv) for enableGqa, 1 without it; throws unless q, k and
 * v have a head dim (dim -3) and Hq is a multiple of Hkv.
 */
function gqaGroup(q: Tensor, k: Tensor, v: Tensor, enable: boolean): number {
  if (typeof enable !== 'boolean') throw err(`enableGqa must be a boolean (got ${String(enable)})`);
  if (!enable) return 1;
  if (q.ndim < 3 || k.ndim < 3 || v.ndim < 3) {
    throw err(`enableGqa needs q, k and v of at least 3 dims [..., H, T, D] (got shapes ${fmt(q.shape)}, ${fmt(k.shape)} and ${fmt(v.shape)})`);
  }
  const Hq = q.shape[q.ndim - 3], Hk = k.shape[k.ndim - 3], Hv = v.shape[v.ndim - 3];
  if (Hk !== Hv || Hk === 0 || Hq % Hk !== 0) {
    throw err(`enableGqa needs k and v with the same number of heads, dividing q's (got shapes ${fmt(q.shape)}, ` +
      `${fmt(k.shape)} and ${fmt(v.shape)}; expected Hq a multiple of Hkv)`);
  }
  return Hq / Hk;
}

/** k or v [..., Hkv, T, D] with each head repeated `group` times (HF's repeat_kv). */
function repeatKv(t: Tensor, group: number): Tensor {
  if (group === 1) return t;
  const s = t.shape, n = s.length;
  const e = expand(reshape(t, [...s.slice(0, n - 2), 1, s[n - 2], s[n - 1]]), [...s.slice(0, n - 2), group, s[n - 2], s[n - 1]]);
  return reshape(e, [...s.slice(0, n - 3), s[n - 3] * group, s[n - 2], s[n - 1]]);
}

/** The mask with the sliding window folded in (bool, or -inf added to a float mask). */
function windowMask(m: Tensor | null, maskKind: number, window: number | null, Tq: number, Tk: number,
  device: Tensor['device']): [Tensor | null, number] {
  if (window === null) return [m, maskKind];
  const qi = reshape(arange(0, Tq, 1, { device }), [Tq, 1]);
  const kj = reshape(arange(0, Tk, 1, { device }), [1, Tk]);
  const wm = gt(add(kj, window), qi);
  if (m === null) return [wm, 1];
  return maskKind === 1 ? [logicalAnd(wm, m), 1] : [maskedFill(m, logicalNot(wm), -Infinity), 2];
}

/** Largest score matrix (elements) the composed CUDA float32/float64 path materialises. */
const COMPOSED_MAX_SCORES = 1 << 28;

/**
 * softmax(q kᵀ · scale + mask) v from public ops (so autograd gives every gradient,
 * the float mask's included). Rows that see no key give zeros, as the kernels do.
 */
export function composedAttention(q: Tensor, k: Tensor, v: Tensor, m: Tensor | null, maskKind: number, isCausal: boolean,
  scale: number, Tq: number, Tk: number, device: Tensor['device']): Tensor {
  let s = mul(matmul(q, transpose(k, -1, -2)), scale);
  if (isCausal) {
    const qi = reshape(arange(0, Tq, 1, { device }), [Tq, 1]);
    const kj = reshape(arange(0, Tk, 1, { device }), [1, Tk]);
    s = maskedFill(s, gt(kj, qi), -Infinity);
  }
  let dead: Tensor | null = null;
  if (m) {
    s = maskKind === 1 ? maskedFill(s, logicalNot(m), -Infinity) : add(s, m);
    // a row with no visible key: softmax over zeros instead of NaN, then zeroed
    dead = noGrad(() => eq(amax(s, -1, true), -Infinity));
    s = maskedFill(s, dead, 0);
  }
  let pm = softmax(s, -1);
  if (dead) pm = mul(pm, logicalNot(dead));
  return matmul(pm, v);
}
