// loraLinear: a LoRA layer's whole forward as one op, y = x Wᵀ + b + s · Σᵢ (xa Aᵢᵀ) Bᵢᵀ,
// part i adding into output columns [startᵢ, startᵢ + lengthᵢ) (BERT's query and value are
// row slices of one fused qkv weight; a GPT-2 c_attn part covers every column).
//
// Why one op and not linear + matmuls + add: the low-rank update is written by a GEMM with
// beta = 1 straight into the base output's columns (no delta tensor, no add, no block
// matrix of zeros, no slice/concat), and backward adds the low-rank path's input gradient
// into the base's with beta = 1 too (no second full-size gradient summed by the tape).
// The skinny products run in the orientation the CPU GEMM is fast at (the r-row side
// leading: h is kept as hᵀ [P·r, rows], dBᵀ = hᵀ·g), about 5x faster than x·Aᵀ, gᵀ·h.
// Gradients nobody needs are not computed: dW only for a trainable weight, db only for a
// trainable bias, dx only when x requires grad, dA/dB only for trainable adapters.
//
// xa is the low-rank path's input: x itself, or dropout(x) (then its gradient is returned
// separately and the dropout's backward maps it onto x).
import { needsGrad, noGrad, record } from '../autograd.js';
import { gemmInto } from '../ops/matmul.js';
import { sum } from '../ops/reduce.js';
import { clone, copyInto, narrow, reshape, transpose } from '../ops/shape.js';
import { empty } from '../ops/alloc.js';
import { checkSameDevice, fmt } from '../ops/check.js';
import type { Tensor } from '../tensor.js';

export interface LoraOpPart { start: number; length: number; A: Tensor; B: Tensor }

const OP = 'loraLinear';

function check(x: Tensor, weight: Tensor, bias: Tensor | null, xa: Tensor, parts: LoraOpPart[]): void {
  const [outF, inF] = weight.shape;
  const r = parts[0].A.shape[0];
  if (weight.ndim !== 2 || x.shape[x.ndim - 1] !== inF || fmt(xa.shape) !== fmt(x.shape)) {
    throw new Error(`nodegrad: ${OP}: input ${fmt(x.shape)} and low-rank input ${fmt(xa.shape)} must be [..., ${inF}] for weight ${fmt(weight.shape)}`);
  }
  if (bias && fmt(bias.shape) !== `[${outF}]`) throw new Error(`nodegrad: ${OP}: bias must be [${outF}] (got ${fmt(bias.shape)})`);
  let end = 0;
  for (const p of parts) {
    if (fmt(p.A.shape) !== `[${r},${inF}]` || fmt(p.B.shape) !== `[${p.length},${r}]` || p.start < end || p.start + p.length > outF) {
      throw new Error(`nodegrad: ${OP}: part at rows ${p.start}+${p.length} of ${outF} has A ${fmt(p.A.shape)} and B ${fmt(p.B.shape)} ` +
        `(expected A [${r},${inF}], B [${p.length},${r}], parts in row order without overlap)`);
    }
    end = p.start + p.length;
  }
  const dt = x.dtype;
  for (const t of [weight, bias, xa, ...parts.flatMap((p) => [p.A, p.B])]) {
    if (t && t.dtype !== dt) throw new Error(`nodegrad: ${OP}: every tensor must be ${dt} like the input (got ${t.dtype}, shape ${fmt(t.shape)})`);
  }
  checkSameDevice(OP, x, weight, bias, xa, ...parts.flatMap((p) => [p.A, p.B]));
}

/** y = x Wᵀ + b + scaling · Σ parts (xa Aᵀ) Bᵀ into the part's output columns. */
export function loraLinear(x: Tensor, weight: Tensor, bias: Tensor | null, xa: Tensor, parts: LoraOpPart[], scaling: number): Tensor {
  check(x, weight, bias, xa, parts);
  const [outF, inF] = weight.shape;
  const P = parts.length, r = parts[0].A.shape[0], R = P * r;
  const lead = x.shape.slice(0, -1) as number[];
  const dev = x.device, dt = x.dtype;
  const As = parts.map((p) => p.A), Bs = parts.map((p) => p.B);
  const x2 = reshape(x, [-1, inF]);
  const xa2 = xa === x ? x2 : reshape(xa, [-1, inF]);
  const rows = x2.shape[0];
  // views made here are disposed as soon as their GEMM ran, so that they do not keep a
  // storage (a gradient backward would free early) alive until the enclosing scope ends
  const views: Tensor[] = [];
  const nw = (t: Tensor, d: number, s: number, n: number): Tensor => { const v = narrow(t, d, s, n); views.push(v); return v; };
  const tr = (t: Tensor): Tensor => { const v = transpose(t, 0, 1); views.push(v); return v; };
  const free = (): void => { for (const v of views.splice(0)) v.dispose(); };
  const out = empty([rows, outF], dt, dev, false, OP);
  const hT = empty([R, rows], dt, dev, false, OP); // (xa Aᵀ)ᵀ, every part's r rows stacked
  noGrad(() => {
    if (bias) copyInto(out, reshape(bias, [1, outF])); // then the GEMM adds onto it (beta 1), as linear does
    gemmInto(x2, tr(weight), out, 1, bias ? 1 : 0);
    const xaT = tr(xa2);
    parts.forEach((p, i) => {
      gemmInto(p.A, xaT, nw(hT, 0, i * r, r), 1, 0);
      // out[:, part] += s · h_i · Bᵢᵀ
      gemmInto(tr(nw(hT, 0, i * r, r)), tr(p.B), nw(out, 1, p.start, p.length), scaling, 1);
    });
    free();
  });
  const y = reshape(out, [...lead, outF]);
  if (y !== out) out.dispose();
  const wantX = needsGrad(x), wantXa = xa !== x && needsGrad(xa), wantW = needsGrad(weight), wantB = needsGrad(bias);
  const wantA = As.map((a) => needsGrad(a)), wantBs = Bs.map((b) => needsGrad(b));
  const wantGh = wantX || wantXa || wantA.some(Boolean);
  if (!needsGrad(x, weight, bias, xa, ...As, ...Bs) || !wantBs.some(Boolean)) hT.dispose(); // read only by dB
  if (!needsGrad(x, weight, bias, xa, ...As, ...Bs)) return y;
  const inputs = xa === x ? [x, weight, bias, ...As, ...Bs] : [x, weight, bias, xa, ...As, ...Bs];
  record(y, OP, inputs, (g) => {
    const g2 = reshape(g, [-1, outF]);
    // s · g[:, part_i] · B_i into the columns of gh [rows, P·r] (the gradient of h, scaled)
    let gh: Tensor | null = null;
    if (wantGh) {
      gh = empty([rows, R], dt, dev, false, OP);
      parts.forEach((p, i) => gemmInto(nw(g2, 1, p.start, p.length), p.B, nw(gh!, 1, i * r, r), scaling, 0));
    }
    let gx: Tensor | null = null, gxa: Tensor | null = null;
    if (wantX) {
      gx = empty([rows, inF], dt, dev, false, OP);
      gemmInto(g2, weight, gx, 1, 0);
    }
    if (wantX || wantXa) {
      const into = xa === x ? gx! : (gxa = empty([rows, inF], dt, dev, false, OP));
      parts.forEach((p, i) => gemmInto(nw(gh!, 1, i * r, r), p.A, into, 1, xa === x || i > 0 ? 1 : 0));
    }
    const gW = wantW ? empty([outF, inF], dt, dev, false, OP) : null;
    if (gW) gemmInto(tr(g2), x2, gW, 1, 0);
    const gb = wantB ? sum(g2, 0) : null;
    const gA = parts.map((p, i) => {
      if (!wantA[i]) return null;
      const t = empty([r, inF], dt, dev, false, OP);
      gemmInto(tr(nw(gh!, 1, i * r, r)), xa2, t, 1, 0);
      return t;
    });
    const gB = parts.map((p, i) => {
      if (!wantBs[i]) return null;
      // dBᵀ = s · hᵢᵀ · g[:, part] ([r, len], the fast orientation), then one small transpose copy
      const t = empty([r, p.length], dt, dev, false, OP);
      gemmInto(nw(hT, 0, i * r, r), nw(g2, 1, p.start, p.length), t, scaling, 0);
      const c = clone(tr(t));
      t.dispose();
      return c;
    });
    free();
    gh?.dispose();
    if (g2 !== g) g2.dispose();
    const shaped = (t: Tensor | null, like: Tensor): Tensor | null => (t ? reshape(t, [...like.shape]) : null);
    const head = [shaped(gx, x), gW, gb];
    if (xa !== x) head.push(shaped(gxa, xa));
    return [...head, ...gA, ...gB];
  }, [wantX && weight, wantW && x2, wantA.some(Boolean) && xa2, wantBs.some(Boolean) && hT,
    ...(wantX || wantXa ? As : []), ...(wantGh ? Bs : [])]);
  return y;
}
