// scaledDotProductAttention: forward and backward against a plain-JS float64 attention
// (every mask kind, odd and unequal lengths, broadcast leading dims, dropout with the
// same Philox draws as bernoulli), fully masked rows, finite-difference gradients, and
// clear errors for bad shapes, dtypes and options.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { gradcheck } from '../../lib/gradcheck.js';
import { scaledDotProductAttention as sdpa } from '../../lib/ops/attention.js';
import { describeBackends, expectClose, lcg } from '../helpers.js';

type DT = 'float32' | 'float64';

function randomData(n: number, seed: number, scale = 1): number[] {
  const r = lcg(seed);
  return Array.from({ length: n }, () => r() * scale);
}

interface RefOpts {
  scale: number;
  causal?: boolean;
  /** additive bias for score (b, i, j); -Infinity excludes the key */
  bias?: (b: number, i: number, j: number) => number;
  /** dropout keep decision and probability */
  keep?: (b: number, i: number, j: number) => boolean;
  p?: number;
}
interface RefOut { out: number[]; dq: number[]; dk: number[]; dv: number[]; dbias: number[] }

/** Attention over flat [BH, T, D] arrays in float64, with its gradients for upstream dO. */
function refAttention(q: number[], k: number[], v: number[], BH: number, Tq: number, Tk: number, D: number, Dv: number,
  o: RefOpts, dO: number[]): RefOut {
  const out = new Array<number>(BH * Tq * Dv).fill(0);
  const dq = new Array<number>(BH * Tq * D).fill(0), dk = new Array<number>(BH * Tk * D).fill(0);
  const dv = new Array<number>(BH * Tk * Dv).fill(0), dbias = new Array<number>(BH * Tq * Tk).fill(0);
  const p = o.p ?? 0, kf = p > 0 ? 1 / (1 - p) : 1;
  for (let b = 0; b < BH; b++) {
    for (let i = 0; i < Tq; i++) {
      const s = new Array<number>(Tk).fill(-Infinity);
      for (let j = 0; j < Tk; j++) {
        if (o.causal && j > i) continue;
        let x = 0;
        for (let d = 0; d < D; d++) x += q[(b * Tq + i) * D + d] * k[(b * Tk + j) * D + d];
        s[j] = x * o.scale + (o.bias ? o.bias(b, i, j) : 0);
      }
      const m = Math.max(...s);
      if (m === -Infinity) continue;
      const e = s.map((x) => Math.exp(x - m));
      const z = e.reduce((a, c) => a + c, 0);
      const P = e.map((x) => x / z);
      const M = P.map((_, j) => (o.keep ? (o.keep(b, i, j) ? kf : 0) : 1));
      for (let j = 0; j < Tk; j++) {
        for (let d = 0; d < Dv; d++) out[(b * Tq + i) * Dv + d] += P[j] * M[j] * v[(b * Tk + j) * Dv + d];
      }
      const dP = new Array<number>(Tk).fill(0);
      for (let j = 0; j < Tk; j++) {
        for (let d = 0; d < Dv; d++) {
          dv[(b * Tk + j) * Dv + d] += P[j] * M[j] * dO[(b * Tq + i) * Dv + d];
          dP[j] += dO[(b * Tq + i) * Dv + d] * v[(b * Tk + j) * Dv + d] * M[j];
        }
      }
      const dot = P.reduce((a, pj, j) => a + pj * dP[j], 0);
      for (let j = 0; j < Tk; j++) {
        const ds = P[j] * (dP[j] - dot);
        dbias[(b * Tq + i) * Tk + j] = ds;
        for (let d = 0; d < D; d++) {
          dq[(b * Tq + i) * D + d] += ds * o.scale * k[(b * Tk + j) * D + d];
          dk[(b * Tk + j) * D + d] += ds * o.scale * q[(b * Tq + i) * D + d];
        }
      }
    }
  }
  return { out, dq, dk, dv, dbias };
}

interface Case { lead: number[]; Tq: number; Tk: number; D: number; Dv: number }

function setup(c: Case, dtype: DT, device: 'cpu' | 'cuda', seed: number) {
  const BH = c.lead.reduce((a, b) => a * b, 1);
  const qa = randomData(BH * c.Tq * c.D, seed), ka = randomData(BH * c.Tk * c.D, seed + 1);
  const va = randomData(BH * c.Tk * c.Dv, seed + 2), dOa = randomData(BH * c.Tq * c.Dv, seed + 3);
  const mk = (a: number[], t: number, d: number): ng.Tensor => ng.tensor(a, { dtype, device, shape: [...c.lead, t, d], requiresGrad: true });
  return {
    BH, qa, ka, va, dOa,
    q: mk(qa, c.Tq, c.D), k: mk(ka, c.Tk, c.D), v: mk(va, c.Tk, c.Dv),
    dO: ng.tensor(dOa, { dtype, device, shape: [...c.lead, c.Tq, c.Dv] }),
  };
}

function expectNoNaN(t: ng.Tensor): void {
  expect(Array.from(t.dataSync() as Float64Array).some((x) => Number.isNaN(x))).toBe(false);
}

describeBackends('scaledDotProductAttention', (device) => {
  // B=2, H=3: padding masks [B,1,1,Tk] pick per-batch key lengths
  const padLens = [5, 3];
  const maskKinds: [string, Partial<RefOpts>, (c: Case, dt: DT) => Partial<{ isCausal: boolean; attnMask: ng.Tensor }>][] = [
    ['no mask', {}, () => ({})],
    ['causal', { causal: true }, () => ({ isCausal: true })],
    ['bool key-padding mask [B,1,1,Tk]', { bias: (b, _i, j) => (j < padLens[Math.floor(b / 3)] ? 0 : -Infinity) },
      (c) => ({ attnMask: ng.tensor(padLens.map((L) => Array.from({ length: c.Tk }, (_, j) => j < L)), { device }).reshape([2, 1, 1, c.Tk]) })],
    ['float additive mask [Tq,Tk] with -inf entries',
      { bias: (_b, i, j) => ((i + j) % 4 === 3 ? -Infinity : Math.sin(i * 7 + j)) },
      (c, dt) => ({ attnMask: ng.tensor(Array.from({ length: c.Tq }, (_, i) => Array.from({ length: c.Tk }, (_, j) =>
        ((i + j) % 4 === 3 ? -Infinity : Math.sin(i * 7 + j)))), { dtype: dt, device }) })],
    ['causal + bool padding mask', { causal: true, bias: (b, _i, j) => (j < padLens[Math.floor(b / 3)] ? 0 : -Infinity) },
      (c) => ({ isCausal: true, attnMask: ng.tensor(padLens.map((L) => Array.from({ length: c.Tk }, (_, j) => j < L)), { device }).reshape([2, 1, 1, c.Tk]) })],
  ];
  const base: Case = { lead: [2, 3], Tq: 6, Tk: 6, D: 8, Dv: 8 };

  for (const dtype of ['float64', 'float32'] as const) {
    const tol = dtype === 'float64' ? { atol: 1e-12, rtol: 1e-10 } : { atol: 2e-5, rtol: 1e-4 };
    for (const [name, ref, mkOpts] of maskKinds) {
      it(`forward and backward match the reference: ${name} (${dtype})`, () => {
        const s = setup(base, dtype, device, 1);
        const out = sdpa(s.q, s.k, s.v, mkOpts(base, dtype));
        const r = refAttention(s.qa, s.ka, s.va, s.BH, base.Tq, base.Tk, base.D, base.Dv, { scale: 1 / Math.sqrt(base.D), ...ref }, s.dOa);
        expect(out.shape).toEqual([2, 3, 6, 8]);
        expect(out.dtype).toBe(dtype);
        expectClose(out, r.out, tol);
        out.backward(s.dO);
        expectClose(s.q.grad!, r.dq, tol);
        expectClose(s.k.grad!, r.dk, tol);
        expectClose(s.v.grad!, r.dv, tol);
      });
    }
  }

  const shapes: [string, Case][] = [
    ['Tq < Tk, odd D', { lead: [2], Tq: 3, Tk: 11, D: 13, Dv: 5 }],
    ['Tq > Tk', { lead: [3], Tq: 9, Tk: 4, D: 8, Dv: 8 }],
    ['T = 1', { lead: [2, 2], Tq: 1, Tk: 1, D: 4, Dv: 3 }],
    ['T = 37 with one slice (query chunks)', { lead: [1, 1], Tq: 37, Tk: 37, D: 16, Dv: 16 }],
    ['many slices', { lead: [4, 5], Tq: 7, Tk: 9, D: 3, Dv: 2 }],
  ];
  for (const [name, c] of shapes) {
    for (const causal of [false, true]) {
      it(`matches the reference for ${name}${causal ? ', causal' : ''}`, () => {
        const s = setup(c, 'float64', device, 5);
        const out = sdpa(s.q, s.k, s.v, { isCausal: causal, scale: 0.3 });
        const r = refAttention(s.qa, s.ka, s.va, s.BH, c.Tq, c.Tk, c.D, c.Dv, { scale: 0.3, causal }, s.dOa);
        expectClose(out, r.out, { atol: 1e-12 });
        out.backward(s.dO);
        expectClose(s.q.grad!, r.dq, { atol: 1e-12 });
        expectClose(s.k.grad!, r.dk, { atol: 1e-12 });
        expectClose(s.v.grad!, r.dv, { atol: 1e-12 });
      });
    }
  }

  it('matches the reference in float32 on a transformer-sized causal shape', () => {
    const c: Case = { lead: [2, 4], Tq: 64, Tk: 64, D: 64, Dv: 64 };
    const s = setup(c, 'float32', device, 9);
    const out = sdpa(s.q, s.k, s.v, { isCausal: true });
    const r = refAttention(s.qa, s.ka, s.va, s.BH, c.Tq, c.Tk, c.D, c.Dv, { scale: 1 / 8, causal: true }, s.dOa);
    expectClose(out, r.out, { atol: 1e-5, rtol: 1e-4 });
    out.backward(s.dO);
    expectClose(s.q.grad!, r.dq, { atol: 1e-5, rtol: 1e-4 });
    expectClose(s.k.grad!, r.dk, { atol: 1e-5, rtol: 1e-4 });
  });

  it('gives zeros (no NaN) and zero gradients for fully masked rows', () => {
    const c: Case = { lead: [1, 2], Tq: 3, Tk: 4, D: 4, Dv: 4 };
    const s = setup(c, 'float64', device, 11);
    // row 1 of every head sees no key
    const rows = [[true, true, false, true], [false, false, false, false], [true, false, false, false]];
    const out = sdpa(s.q, s.k, s.v, { attnMask: ng.tensor(rows, { device }) });
    expectNoNaN(out);
    const o = out.dataSync();
    for (let h = 0; h < 2; h++) for (let d = 0; d < 4; d++) expect(o[(h * 3 + 1) * 4 + d]).toBe(0);
    out.backward(s.dO);
    for (const g of [s.q.grad!, s.k.grad!, s.v.grad!]) expectNoNaN(g);
    const gq = s.q.grad!.dataSync();
    for (let h = 0; h < 2; h++) for (let d = 0; d < 4; d++) expect(gq[(h * 3 + 1) * 4 + d]).toBe(0);
    // a float mask of -inf everywhere, and keys that causality leaves out entirely
    const allInf = sdpa(s.q, s.k, s.v, { attnMask: ng.full([3, 4], -Infinity, { dtype: 'float64', device }) });
    expect(Array.from(allInf.dataSync())).toEqual(new Array(24).fill(0));
    const empty = sdpa(s.q, s.k.narrow(2, 0, 0), s.v.narrow(2, 0, 0));
    expect(Array.from(empty.dataSync())).toEqual(new Array(24).fill(0));
  });

  it('broadcasts leading dims of k and v and sums their gradients', () => {
    const qa = randomData(2 * 3 * 5 * 4, 20), ka = randomData(2 * 5 * 4, 21), va = randomData(2 * 5 * 4, 22);
    const q = ng.tensor(qa, { dtype: 'float64', device, shape: [2, 3, 5, 4] });
    const k = ng.tensor(ka, { dtype: 'float64', device, shape: [2, 1, 5, 4], requiresGrad: true });
    const v = ng.tensor(va, { dtype: 'float64', device, shape: [2, 1, 5, 4] });
    const out = sdpa(q, k, v, { isCausal: true });
    const kx = k.detach().expand([2, 3, 5, 4]).contiguous(), vx = v.expand([2, 3, 5, 4]).contiguous();
    expectClose(out, sdpa(q, kx, vx, { isCausal: true }), { atol: 1e-14 });
    gradcheck((kk) => sdpa(q, kk, v, { isCausal: true }), [k]);
  });

  it('backward matches finite differences for q, k, v and a float mask (float64)', () => {
    const c: Case = { lead: [2], Tq: 3, Tk: 4, D: 3, Dv: 2 };
    const s = setup(c, 'float64', device, 30);
    gradcheck((q, k, v) => sdpa(q, k, v), [s.q, s.k, s.v]);
    gradcheck((q, k, v) => sdpa(q, k, v, { isCausal: true, scale: 0.7 }), [s.q, s.k, s.v]);
    const m = ng.tensor(randomData(3 * 4, 31), { dtype: 'float64', device, shape: [3, 4], requiresGrad: true });
    gradcheck((q, k, v, mm) => sdpa(q, k, v, { attnMask: mm }), [s.q, s.k, s.v, m]);
    const pad = ng.tensor([[true, true, false, true], [true, false, false, false]], { device }).reshape([2, 1, 4]);
    gradcheck((q, k, v) => sdpa(q, k, v, { attnMask: pad, isCausal: true }), [s.q, s.k, s.v]);
  });

  it('drops the same probabilities as bernoulli(1 - p) under manualSeed, in forward and backward', () => {
    const c: Case = { lead: [2, 2], Tq: 5, Tk: 7, D: 4, Dv: 3 };
    const s = setup(c, 'float64', device, 40);
    const p = 0.3;
    ng.manualSeed(1234);
    const out = sdpa(s.q, s.k, s.v, { dropoutP: p, isCausal: true });
    ng.manualSeed(1234);
    const keep = ng.bernoulli([...c.lead, c.Tq, c.Tk], 1 - p).dataSync();
    const keepFn = (b: number, i: number, j: number): boolean => keep[(b * c.Tq + i) * c.Tk + j] === 1;
    const r = refAttention(s.qa, s.ka, s.va, s.BH, c.Tq, c.Tk, c.D, c.Dv, { scale: 0.5, causal: true, keep: keepFn, p }, s.dOa);
    expectClose(out, r.out, { atol: 1e-12 });
    out.backward(s.dO);
    expectClose(s.q.grad!, r.dq, { atol: 1e-12 });
    expectClose(s.k.grad!, r.dk, { atol: 1e-12 });
    expectClose(s.v.grad!, r.dv, { atol: 1e-12 });
    // reproducible, and a second call draws fresh counters
    ng.manualSeed(1234);
    const again = sdpa(s.q, s.k, s.v, { dropoutP: p, isCausal: true });
    const next = sdpa(s.q, s.k, s.v, { dropoutP: p, isCausal: true });
    expect(Array.from(again.dataSync())).toEqual(Array.from(out.dataSync()));
    expect(Array.from(next.dataSync())).not.toEqual(Array.from(out.dataSync()));
  });

  it('with dropoutP = 0 equals no dropout, and with dropoutP = 1 gives zeros', () => {
    const c: Case = { lead: [2], Tq: 4, Tk: 4, D: 4, Dv: 4 };
    const s = setup(c, 'float32', device, 50);
    const plain = sdpa(s.q, s.k, s.v);
    expect(Array.from(sdpa(s.q, s.k, s.v, { dropoutP: 0 }).dataSync())).toEqual(Array.from(plain.dataSync()));
    expect(Array.from(sdpa(s.q, s.k, s.v, { dropoutP: 1 }).dataSync())).toEqual(new Array(32).fill(0));
  });

  it('is deterministic: repeated backward passes give identical gradients', () => {
    const c: Case = { lead: [1, 2], Tq: 40, Tk: 40, D: 8, Dv: 8 };
    const s = setup(c, 'float32', device, 60);
    const grads = [0, 1].map(() => {
      s.q.grad = null; s.k.grad = null;
      sdpa(s.q, s.k, s.v, { isCausal: true }).backward(s.dO);
      return [Array.from(s.q.grad!.dataSync()), Array.from(s.k.grad!.dataSync())];
    });
    expect(grads[0]).toEqual(grads[1]);
  });

  it('reads non-contiguous q, k, v ([B, T, H, D] transposed to [B, H, T, D])', () => {
    const x = ng.tensor(randomData(2 * 5 * 3 * 4, 70), { dtype: 'float64', device, shape: [2, 5, 3, 4] });
    const q = x.transpose(1, 2);
    expectClose(sdpa(q, q, q, { isCausal: true }), sdpa(q.contiguous(), q.contiguous(), q.contiguous(), { isCausal: true }), { atol: 1e-14 });
  });

  it('rejects bad shapes, dtypes and options with clear errors', () => {
    const q = ng.zeros([2, 3, 4], { device }), k = ng.zeros([2, 5, 4], { device }), v = ng.zeros([2, 5, 6], { device });
    const E = /nodegrad: scaledDotProductAttention:/;
    expect(() => sdpa(q, ng.zeros([2, 5, 3], { device }), v)).toThrow(/scaledDotProductAttention: q and k must have the same last dim/);
    expect(() => sdpa(q, k, ng.zeros([2, 4, 6], { device }))).toThrow(/scaledDotProductAttention: k and v must have the same length/);
    expect(() => sdpa(ng.zeros([4], { device }), k, v)).toThrow(/at least 2 dims/);
    expect(() => sdpa(ng.zeros([3, 3, 4], { device }), k, v)).toThrow(/leading dims/);
    expect(() => sdpa(q, k.to('float64'), v)).toThrow(/same dtype/);
    expect(() => sdpa(q.to('int32'), k.to('int32'), v.to('int32'))).toThrow(/float32 or float64/);
    expect(() => sdpa(q, k, v, { attnMask: ng.ones([3, 4], { dtype: 'bool', device }) })).toThrow(/attnMask of shape \[3,4\] does not broadcast/);
    expect(() => sdpa(q, k, v, { attnMask: ng.ones([3, 5], { dtype: 'int32', device }) })).toThrow(/attnMask must be bool .* or floating-point/);
    expect(() => sdpa(q, k, v, { dropoutP: 1.5 })).toThrow(E);
    expect(() => sdpa(q, k, v, { scale: NaN })).toThrow(E);
    expect(() => sdpa(q, k, v, { attnMask: ng.ones([3, 5], { dtype: 'bool', device }) })).not.toThrow();
  });
});

describe('scaledDotProductAttention kernel boundary', () => {
  it('rejects mismatched buffers instead of reading outside them', async () => {
    const { native } = await import('../../lib/native.js');
    const f = new Float32Array(8);
    expect(() => native.attentionForward(f, f, f, f, f, [1, 4, 4, 4, 4], 1, false, null, 0, 0, [1], [], 0, 0, 0))
      .toThrow(/nodegrad: scaledDotProductAttention: .*outside its storage/);
    expect(() => native.attentionForward(f, f, f, f, f, [1, 1, 2, 1, 1], 1, false, new Uint8Array(1), 1, 0, [1], [1, 1, 5], 0, 0, 0))
      .toThrow(/nodegrad: scaledDotProductAttention: attnMask/);
  });
});
