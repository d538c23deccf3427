// batchNorm (PyTorch's F.batch_norm) over channel dim 1 of [N, C], [N, C, L] or
// [N, C, H, W] inputs, built from public ops. Training normalises with the batch mean and
// biased variance, as y = x·scale + shift with per-channel scale and shift (two passes
// over x after the statistics), moves the running statistics (unbiased variance) in
// place outside the graph, and records the closed-form backward through the batch
// statistics (two reductions and six elementwise passes). Evaluation uses the running
// statistics and plain autograd.
import { needsGrad, noGrad, record } from '../autograd.js';
import type { Tensor } from '../tensor.js';
import { add, cast, mul, neg, rsqrt, sub } from './elementwise.js';
import { mean, sum, variance } from './reduce.js';
import { reshape } from './shape.js';
import { checkFloat, checkSameDevice, checkTensor, fmt, optionsArg } from './check.js';

const OP = 'batchNorm';

export interface BatchNormOptions {
  /** Use batch statistics (and update the running ones) instead of the running ones. */
  training?: boolean;
  /** Weight of the new batch statistic in the running update (default 0.1). */
  momentum?: number;
  eps?: number;
}

function checkChannelParam(p: Tensor | null | undefined, what: string, C: number): Tensor | null {
  if (p === undefined || p === null) return null;
  checkTensor(p, OP, what);
  if (p.ndim !== 1 || p.shape[0] !== C) {
    throw new Error(`nodegrad: ${OP}: ${what} must have shape [${C}] (one value per channel; got ${fmt(p.shape)})`);
  }
  return p;
}

/**
 * Batch normalisation: y = (x - mean) / sqrt(var + eps) * weight + bias per channel
 * (dim 1). With training, mean/var are the batch statistics over every dim but 1, and
 * runningMean/runningVar (when given) become (1 - momentum)·running + momentum·batch
 * (unbiased batch variance). Without training, the running statistics are used.
 */
export function batchNorm(x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null, weight?: Tensor | null,
  bias?: Tensor | null, opts: BatchNormOptions = {}): Tensor {
  opts = optionsArg(opts, OP);
  checkTensor(x, OP);
  checkFloat(x, OP);
  if (x.ndim < 2) throw new Error(`nodegrad: ${OP}: input must have at least 2 dims [N, C, ...] (got shape ${fmt(x.shape)})`);
  const C = x.shape[1];
  const rm = checkChannelParam(runningMean, 'runningMean', C), rv = checkChannelParam(runningVar, 'runningVar', C);
  const w = checkChannelParam(weight, 'weight', C), b = checkChannelParam(bias, 'bias', C);
  checkSameDevice(OP, x, rm, rv, w, b);
  const training = opts.training ?? false;
  const momentum = opts.momentum ?? 0.1, eps = opts.eps ?? 1e-5;
  if (typeof momentum !== 'number' || !(momentum >= 0 && momentum <= 1)) {
    throw new Error(`nodegrad: ${OP}: momentum must be a number in [0, 1] (got ${String(opts.momentum)})`);
  }
  if (typeof eps !== 'number' || !(eps >= 0)) throw new Error(`nodegrad: ${OP}: eps must be a non-negative number (got ${String(eps)})`);
  if ((rm === null) !== (rv === null)) throw new Error(`nodegrad: ${OP}: runningMean and runningVar must be given together`);
  if (!training && rm === null) throw new Error(`nodegrad: ${OP}: evaluation mode needs runningMean and runningVar (or pass training: true)`);

  const dims = x.shape.map((_, i) => i).filter((i) => i !== 1);
  const count = x.numel / Math.max(C, 1);
  const bshape = x.shape.map((s, i) => (i === 1 ? s : 1));  // [1, C, 1, ...]
  const asX = (t: Tensor): Tensor => reshape(t.dtype === x.dtype ? t : cast(t, x.dtype), bshape);

  if (!training) {
    // y = x·scale + shift with per-channel scale = w/sqrt(rv + eps), shift = b - rm·scale;
    // autograd differentiates the two full-size ops and the per-channel chain.
    let scale = rsqrt(add(asX(rv!), eps));
    if (w) scale = mul(scale, asX(w));
    let shift = neg(mul(asX(rm!), scale));
    if (b) shift = add(shift, asX(b));
    return add(mul(x, scale), shift);
  }
  if (count <= 1) {
    throw new Error(`nodegrad: ${OP}: expected more than 1 value per channel when training (got input ${fmt(x.shape)})`);
  }
  const wantX = needsGrad(x), wantW = needsGrad(w), wantB = needsGrad(b);
  // Batch statistics and the forward pass are computed outside the tape; the backward
  // below is the closed form through the statistics.
  const { y, mu, istd, scale } = noGrad(() => {
    const mu = mean(x, dims, true);
    const v = variance(x, dims, { correction: 0, keepdim: true });
    const istd = rsqrt(add(v, eps));
    const scale = w ? mul(istd, asX(w)) : istd;
    const shift = b ? sub(asX(b), mul(mu, scale)) : neg(mul(mu, scale));
    if (rm && rv) {
      rm.mul_(1 - momentum).add_(reshape(mu, [C]), momentum);
      rv.mul_(1 - momentum).add_(reshape(v, [C]), momentum * count / (count - 1));
    }
    return { y: add(mul(x, scale), shift), mu, istd, scale };
  });
  if (wantX || wantW || wantB) {
    record(y, OP, [x, w, b], (g) => {
      // With xc = x - mu, sg = Σg and sgx = Σg·xc·istd over every dim but 1:
      //   dx = scale·(g - sg/n - xc·istd·sgx/n) = g·scale + xc·bx + c,
      //   bx = -scale·istd·sgx/n,  c = -scale·sg/n;   dw = sgx, db = sg.
      // (x is centred first: Σg·x - mu·Σg would cancel badly for a large mean.)
      const xc = sub(x, mu);
      const sg = sum(g, dims, true);
      const sgx = mul(istd, sum(mul(g, xc), dims, true));
      let gx: Tensor | null = null;
      if (wantX) {
        const bx = mul(mul(mul(scale, istd), sgx), -1 / count);
        const c = mul(mul(scale, sg), -1 / count);
        gx = add(add(mul(g, scale), mul(xc, bx)), c);
      }
      const param = (t: Tensor): Tensor => { const r = reshape(t, [C]); return w && r.dtype !== w.dtype ? cast(r, w.dtype) : r; };
      return [gx, wantW ? param(sgx) : null, wantB ? param(sg) : null];
    }, [x, mu, istd, scale]);
  }
  return y;
}
