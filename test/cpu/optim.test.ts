import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import * as optim from '../../lib/optim/index.js';
import type { Tensor } from '../../lib/index.js';
import { native } from '../../lib/native.js';
import '../../lib/optim/optimizer.js';
import { expectClose, lcg } from '../helpers.js';

type DT = 'float32' | 'float64';

function param(shape: number[], seed: number, dtype: DT = 'float32'): Tensor {
  const r = lcg(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const data = Float64Array.from({ length: n }, () => r());
  return ng.tensor(data, { shape, dtype, requiresGrad: true });
}

function setGrad(p: Tensor, seed: number): number[] {
  const r = lcg(seed);
  const g = Array.from({ length: p.numel }, () => r() * 2);
  p.grad = ng.tensor(Float64Array.from(g), { shape: [...p.shape], dtype: p.dtype as DT });
  return Array.from(p.grad.dataSync() as ArrayLike<number>);
}

const values = (t: Tensor): number[] => Array.from(t.dataSync() as ArrayLike<number>);

interface RefAdam { p: number[]; m: number[]; v: number[]; t: number }
function refAdamW(s: RefAdam, g: number[], h: { lr: number; wd: number; b1: number; b2: number; eps: number }, gs = 1): void {
  s.t++;
  const bc1 = 1 - h.b1 ** s.t, bc2 = 1 - h.b2 ** s.t;
  for (let i = 0; i < s.p.length; i++) {
    const gi = g[i] * gs;
    s.p[i] *= 1 - h.lr * h.wd;
    s.m[i] = h.b1 * s.m[i] + (1 - h.b1) * gi;
    s.v[i] = h.b2 * s.v[i] + (1 - h.b2) * gi * gi;
    s.p[i] -= (h.lr / bc1) * s.m[i] / (Math.sqrt(s.v[i]) / Math.sqrt(bc2) + h.eps);
  }
}

describe('AdamW', () => {
  for (const dtype of ['float32', 'float64'] as const) {
    it(`matches PyTorch's AdamW math over several steps with per-group lr, decay and betas (${dtype})`, () => {
      const shapes = [[10, 100], [7], [1], [100000]];
      const ps = shapes.map((s, i) => param(s, i + 1, dtype));
      const hyper = [
        { lr: 1e-2, wd: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8 },
        { lr: 1e-2, wd: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8 },
        { lr: 3e-3, wd: 0, b1: 0.8, b2: 0.99, eps: 1e-6 },
        { lr: 3e-3, wd: 0, b1: 0.8, b2: 0.99, eps: 1e-6 },
      ];
      const opt = new optim.AdamW([
        { params: [ps[0], ps[1]], weightDecay: 0.1 },
        { params: [ps[2], ps[3]], lr: 3e-3, weightDecay: 0, betas: [0.8, 0.99], eps: 1e-6 },
      ], { lr: 1e-2 });
      const refs: RefAdam[] = ps.map((p) => ({ p: values(p), m: new Array(p.numel).fill(0), v: new Array(p.numel).fill(0), t: 0 }));
      for (let step = 0; step < 4; step++) {
        ps.forEach((p, i) => refAdamW(refs[i], setGrad(p, 100 * step + i), hyper[i]));
        opt.step();
      }
      const tol = dtype === 'float64' ? { rtol: 1e-10, atol: 1e-12 } : { rtol: 1e-5, atol: 1e-6 };
      ps.forEach((p, i) => expectClose(p, refs[i].p, tol));
      const sd = opt.stateDict();
      expect(sd.state[3].step).toBe(4);
      expectClose(sd.state[3].expAvgSq as Tensor, refs[3].v, { rtol: 1e-5, atol: 1e-9 });
    });
  }

  it('updates float32 and float64 parameters together in one step', () => {
    const a = param([9], 1, 'float32'), b = param([9], 2, 'float64');
    const a2 = a.detach().clone().requiresGrad_(), b2 = b.detach().clone().requiresGrad_();
    const both = new optim.AdamW([a, b], { lr: 0.01 });
    const oa = new optim.AdamW([a2], { lr: 0.01 }), ob = new optim.AdamW([b2], { lr: 0.01 });
    for (let s = 0; s < 2; s++) {
      setGrad(a, s); setGrad(a2, s); setGrad(b, s + 5); setGrad(b2, s + 5);
      both.step(); oa.step(); ob.step();
    }
    expect(values(a)).toEqual(values(a2));
    expect(values(b)).toEqual(values(b2));
  });

  it('skips parameters without a gradient and does not advance their step', () => {
    const a = param([5], 1), b = param([3], 2);
    const b0 = values(b);
    const opt = new optim.AdamW([a, b], { lr: 0.1 });
    setGrad(a, 3);
    opt.step();
    expect(values(b)).toEqual(b0);
    const sd = opt.stateDict();
    expect(sd.state[0].step).toBe(1);
    expect(sd.state[1]).toBeUndefined();
  });

  it('gradScale multiplies the gradients before the update', () => {
    const a = param([50], 1, 'float64'), b = param([50], 1, 'float64');
    const oa = new optim.AdamW([a], { lr: 0.01 }), ob = new optim.AdamW([b], { lr: 0.01 });
    for (let s = 0; s < 3; s++) {
      const g = setGrad(a, s + 10);
      b.grad = ng.tensor(Float64Array.from(g.map((x) => x * 0.25)));
      oa.step({ gradScale: 0.25 });
      ob.step();
    }
    expectClose(a, b, { rtol: 1e-12, atol: 1e-14 });
  });

  it('uses gradients from backward and keeps its state alive past a scope', () => {
    const w = param([4, 3], 7);
    const opt = new optim.AdamW([w], { lr: 0.05, weightDecay: 0 });
    const w0 = values(w);
    ng.scope(() => {
      w.mul(w).sum().backward();
      opt.step();
    });
    // first AdamW step moves every weight by lr * sign(grad) (up to eps)
    values(w).forEach((x, i) => expect(x).toBeCloseTo(w0[i] - 0.05 * Math.sign(2 * w0[i]), 5));
    const st = opt.stateDict().state[0];
    expect((st.expAvg as Tensor).isDisposed).toBe(false);
    expect(values(st.expAvg as Tensor).length).toBe(12);
  });

  it('state dict round-trips through JSON hyper-parameters and continues identically', () => {
    const shapes = [[20, 30], [30], [1]];
    const pa = shapes.map((s, i) => param(s, i + 1));
    const opt = new optim.AdamW(optim.paramGroupsForDecay([['w', pa[0]], ['b', pa[1]], ['scale.bias', pa[2]]], 0.1), { lr: 0.02 });
    for (let s = 0; s < 2; s++) {
      pa.forEach((p, i) => setGrad(p, 10 * s + i));
      opt.step();
    }
    const sd = opt.stateDict();
    const groups = JSON.parse(JSON.stringify(sd.paramGroups));
    expect(groups).toEqual([
      { lr: 0.02, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.1, params: [0] },
      { lr: 0.02, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, params: [1, 2] },
    ]);
    const pb = pa.map((p) => p.detach().clone().requiresGrad_());
    const opt2 = new optim.AdamW([{ params: [pb[0]] }, { params: [pb[1], pb[2]] }], { lr: 1, weightDecay: 0.5 });
    opt2.loadStateDict({ state: sd.state, paramGroups: groups });
    expect(opt2.paramGroups.map((g) => [g.lr, g.weightDecay])).toEqual([[0.02, 0.1], [0.02, 0]]);
    for (let s = 2; s < 4; s++) {
      pa.forEach((p, i) => setGrad(p, 10 * s + i));
      pb.forEach((p, i) => setGrad(p, 10 * s + i));
      opt.step();
      opt2.step();
    }
    pa.forEach((p, i) => expect(values(pb[i])).toEqual(values(p)));
    expect(opt2.stateDict().state[2].step).toBe(4);
  });

  it('loading its own state dict copies the state before replacing it', () => {
    const p = param([6], 1);
    const opt = new optim.AdamW([p]);
    setGrad(p, 2);
    opt.step();
    const before = values(opt.stateDict().state[0].expAvg as Tensor);
    opt.loadStateDict(opt.stateDict());
    expect(values(opt.stateDict().state[0].expAvg as Tensor)).toEqual(before);
  });

  it('rejects mismatched state dicts with clear errors', () => {
    const a = param([4], 1), b = param([2, 2], 2);
    const opt = new optim.AdamW([a, b]);
    setGrad(a, 3);
    setGrad(b, 4);
    opt.step();
    const sd = opt.stateDict();
    const c = param([4], 5), d = param([3], 6);
    expect(() => new optim.AdamW([{ params: [c] }, { params: [d] }]).loadStateDict(sd)).toThrow(/nodegrad: AdamW.loadStateDict: the state dict has 1 parameter groups, the optimizer has 2/);
    expect(() => new optim.AdamW([c]).loadStateDict(sd)).toThrow(/group 0 has 2 parameters in the state dict, 1 in the optimizer/);
    expect(() => new optim.AdamW([c, d]).loadStateDict(sd)).toThrow(/state 'expAvg' of parameter 1 has shape \[2,2\], the parameter has \[3\]/);
    const sgd = new optim.SGD([c, param([2, 2], 7)], { momentum: 0.9 });
    expect(() => sgd.loadStateDict(sd)).toThrow(/nodegrad: SGD.loadStateDict: parameter group 0 lacks the hyper-parameter 'momentum'/);
    const sgdSd = sgd.stateDict();
    expect(() => new optim.AdamW([c, d]).loadStateDict(sgdSd)).toThrow(/lacks the hyper-parameter 'betas'/);
    // a failed load leaves the optimizer unchanged
    const e = param([4], 8), f = param([2, 2], 9);
    const opt3 = new optim.AdamW([e, f], { lr: 0.5 });
    const broken = { ...sd, state: { ...sd.state, 1: { ...sd.state[1], expAvg: ng.zeros([5]) } } };
    expect(() => opt3.loadStateDict(broken)).toThrow(/has shape \[5\]/);
    expect(opt3.paramGroups[0].lr).toBe(0.5);
    expect(opt3.stateDict().state).toEqual({});
  });

  it('validates options, groups and parameters', () => {
    const p = param([3], 1);
    expect(() => new optim.AdamW([p], { lr: -1 })).toThrow(/nodegrad: AdamW: invalid learning rate -1/);
    expect(() => new optim.AdamW([p], { lr: NaN })).toThrow(/nodegrad: AdamW: invalid learning rate NaN/);
    expect(() => new optim.AdamW([p], { betas: [0.9, 1] })).toThrow(/nodegrad: AdamW: invalid beta2 1/);
    expect(() => new optim.AdamW([p], { eps: -1e-8 })).toThrow(/invalid epsilon/);
    expect(() => new optim.AdamW([p], { amsgrad: true })).toThrow(/nodegrad: AdamW: amsgrad is not supported/);
    expect(() => new optim.AdamW([p], { weight_decay: 0.1 } as never)).toThrow(/nodegrad: AdamW: unknown option 'weight_decay'/);
    expect(() => new optim.AdamW([{ params: [p], weight_decay: 0 } as never])).toThrow(/unknown option 'weight_decay'/);
    expect(() => new optim.AdamW([])).toThrow(/nodegrad: AdamW: got an empty parameter list/);
    expect(() => new optim.AdamW([p, p])).toThrow(/more than one parameter group/);
    expect(() => new optim.AdamW([{ params: [p] }, { params: [p] }])).toThrow(/more than one parameter group/);
    expect(() => new optim.AdamW([p.mul(2)])).toThrow(/nodegrad: AdamW: can't optimize a non-leaf tensor/);
    expect(() => new optim.AdamW([ng.tensor([1, 2], { dtype: 'int32' })])).toThrow(/must be float32 or float64/);
    const opt = new optim.AdamW([p]);
    opt.paramGroups[0].lr = -0.5;
    setGrad(p, 2);
    expect(() => opt.step()).toThrow(/invalid learning rate -0.5/);
    opt.paramGroups[0].lr = 0.1;
    p.grad = ng.zeros([4]);
    expect(() => opt.step()).toThrow(/nodegrad: AdamW: gradient of shape \[4\] does not match its parameter's shape \[3\]/);
    expect(() => opt.step({ gradScale: Infinity })).toThrow(/gradScale must be a finite number/);
  });

  it('rejects a non-contiguous parameter', () => {
    const base = ng.randn([3, 4]);
    const t = base.transpose(0, 1).requiresGrad_();
    const opt = new optim.AdamW([t]);
    t.grad = ng.zeros([4, 3]);
    expect(() => opt.step()).toThrow(/nodegrad: AdamW: parameter of shape \[4,3\] \(strides \[1,4\]\) is not contiguous/);
  });

  it('accepts a non-contiguous or float32 gradient for a float64 parameter', () => {
    const a = param([3, 2], 1, 'float64'), b = param([3, 2], 1, 'float64');
    const oa = new optim.AdamW([a]), ob = new optim.AdamW([b]);
    const g = ng.tensor([[1, 2, 3], [4, 5, 6]], { dtype: 'float64' });
    a.grad = g.transpose(0, 1);
    b.grad = g.transpose(0, 1).contiguous();
    oa.step();
    ob.step();
    expect(values(a)).toEqual(values(b));
    a.grad = ng.tensor([[1, 2], [3, 4], [5, 6]]);
    b.grad = ng.tensor([[1, 2], [3, 4], [5, 6]], { dtype: 'float64' });
    oa.step();
    ob.step();
    expect(values(a)).toEqual(values(b));
  });

  it('zeroGrad sets gradients to null or to zeros', () => {
    const p = param([3], 1);
    const opt = new optim.AdamW([p]);
    setGrad(p, 2);
    opt.zeroGrad({ setToNone: false });
    expect(values(p.grad!)).toEqual([0, 0, 0]);
    opt.zeroGrad();
    expect(p.grad).toBeNull();
  });

  it('paramGroupsForDecay exempts 1-D tensors and biases', () => {
    const w = param([4, 4], 1), emb = param([10, 4], 2), b = param([4], 3), ln = param([4], 4), cb = param([2, 2], 5);
    const frozen = param([3, 3], 6);
    frozen.requiresGrad = false;
    const groups = optim.paramGroupsForDecay([['h.0.attn.weight', w], ['wte.weight', emb], ['h.0.attn.bias', b],
      ['ln_f.weight', ln], ['odd.bias', cb], ['frozen.weight', frozen]], 0.1);
    expect(groups.map((g) => g.weightDecay)).toEqual([0.1, 0]);
    expect(groups[0].params).toEqual([w, emb]);
    expect(groups[1].params).toEqual([b, ln, cb]);
  });
});

describe('native adamwStep', () => {
  it('checks every buffer against offset and numel instead of touching foreign memory', () => {
    const p = new Float32Array(4), g = new Float32Array(4), m = new Float32Array(4), v = new Float32Array(3);
    const addon = native;
    expect(() => addon.adamwStep([p], [g], [m], [v], [0], [4], [0.1], [0], 0.9, 0.999, 1e-8, [1], 1)).toThrow(/nodegrad: adamwStep: expAvgSq\[0\]: view reaches outside its storage/);
    expect(() => addon.adamwStep([p], [g], [m], [m], [1], [4], [0.1], [0], 0.9, 0.999, 1e-8, [1], 1)).toThrow(/params\[0\]: view reaches outside/);
    expect(() => addon.adamwStep([p], [new Float64Array(4)], [m], [m], [0], [4], [0.1], [0], 0.9, 0.999, 1e-8, [1], 1)).toThrow(/grads\[0\] has dtype float64, expected float32/);
    expect(() => addon.adamwStep([p], [g], [m], [m], [0], [4], [0.1], [0], 0.9, 0.999, 1e-8, [0], 1)).toThrow(/steps must be >= 1/);
    expect(() => addon.adamwStep([p], [g], [m], [m], [0], [4, 4], [0.1], [0], 0.9, 0.999, 1e-8, [1], 1)).toThrow(/numels has 2 entries, expected 1/);
    expect(() => addon.adamwStep([new Int32Array(4)], [g], [m], [m], [0], [4], [0.1], [0], 0.9, 0.999, 1e-8, [1], 1)).toThrow(/expected float32 or float64/);
    expect(() => addon.multiTensorNorm([p], [0], [5], 2)).toThrow(/multiTensorNorm: tensors\[0\]: view reaches outside/);
  });
});

interface RefSgd { p: number[]; buf: number[] | null }
function refSgd(s: RefSgd, g: number[], h: { lr: number; momentum: number; dampening: number; wd: number; nesterov: boolean }): void {
  const d = g.map((gi, i) => gi + h.wd * s.p[i]);
  let upd = d;
  if (h.momentum !== 0) {
    if (s.buf === null) s.buf = [...d];
    else s.buf = s.buf.map((b, i) => h.momentum * b + (1 - h.dampening) * d[i]);
    upd = h.nesterov ? d.map((di, i) => di + h.momentum * s.buf![i]) : s.buf;
  }
  s.p = s.p.map((x, i) => x - h.lr * upd[i]);
}

describe('SGD', () => {
  const cases = [
    { name: 'plain', lr: 0.1, momentum: 0, dampening: 0, wd: 0, nesterov: false },
    { name: 'momentum with dampening', lr: 0.05, momentum: 0.9, dampening: 0.1, wd: 0, nesterov: false },
    { name: 'nesterov', lr: 0.05, momentum: 0.9, dampening: 0, wd: 0, nesterov: true },
    { name: 'weight decay and momentum', lr: 0.02, momentum: 0.5, dampening: 0, wd: 0.01, nesterov: false },
  ];
  for (const c of cases) {
    for (const dtype of ['float32', 'float64'] as const) {
      it(`matches PyTorch's SGD (${c.name}, ${dtype})`, () => {
        const ps = [[7], [1], [40000]].map((s, i) => param(s, i + 3, dtype));
        const opt = new optim.SGD(ps, { lr: c.lr, momentum: c.momentum, dampening: c.dampening, weightDecay: c.wd, nesterov: c.nesterov });
        const refs: RefSgd[] = ps.map((p) => ({ p: values(p), buf: null }));
        for (let s = 0; s < 3; s++) {
          ps.forEach((p, i) => refSgd(refs[i], setGrad(p, 10 * s + i), c));
          opt.step();
        }
        const tol = dtype === 'float64' ? { rtol: 1e-12, atol: 1e-14 } : { rtol: 1e-5, atol: 1e-6 };
        ps.forEach((p, i) => expectClose(p, refs[i].p, tol));
        const st = opt.stateDict().state;
        expect(Object.keys(st).length).toBe(c.momentum ? 3 : 0);
      });
    }
  }

  it('validates nesterov, lr and momentum', () => {
    const p = param([3], 1);
    expect(() => new optim.SGD([p], { lr: 0.1, nesterov: true })).toThrow(/nodegrad: SGD: Nesterov momentum requires a momentum > 0 and zero dampening/);
    expect(() => new optim.SGD([p], { lr: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true })).toThrow(/Nesterov momentum requires/);
    expect(() => new optim.SGD([p], { lr: -0.1 })).toThrow(/nodegrad: SGD: invalid learning rate -0.1/);
    expect(() => new optim.SGD([p], { momentum: -1 })).toThrow(/nodegrad: SGD: invalid momentum -1/);
  });

  it('momentum buffers round-trip through the state dict', () => {
    const a = param([10], 1, 'float64'), b = a.detach().clone().requiresGrad_();
    const oa = new optim.SGD([a], { lr: 0.1, momentum: 0.9 });
    setGrad(a, 5);
    oa.step();
    const ob = new optim.SGD([b], { lr: 0.1, momentum: 0.9 });
    b.grad = a.grad!.clone();
    ob.step();
    ob.loadStateDict(oa.stateDict());
    for (let s = 0; s < 2; s++) {
      setGrad(a, 6 + s);
      setGrad(b, 6 + s);
      oa.step();
      ob.step();
    }
    expect(values(b)).toEqual(values(a));
  });
});

describe('clipGradNorm and clipGradValue', () => {
  function withGrads(): { ps: Tensor[]; flat: number[] } {
    const ps = [[3, 4], [5], [1000]].map((s, i) => param(s, i + 1));
    const flat: number[] = [];
    ps.forEach((p, i) => flat.push(...setGrad(p, i + 20)));
    return { ps, flat };
  }

  it('returns the total 2-norm and scales gradients above maxNorm', () => {
    const { ps, flat } = withGrads();
    const total = Math.sqrt(flat.reduce((s, x) => s + x * x, 0));
    const got = optim.clipGradNorm(ps, 1.0);
    expect(got).toBeCloseTo(total, 4);
    const after: number[] = ps.flatMap((p) => values(p.grad!));
    const coef = 1.0 / (total + 1e-6);
    expectClose(after, flat.map((x) => x * coef), { rtol: 1e-5, atol: 1e-7 });
    expect(Math.sqrt(after.reduce((s, x) => s + x * x, 0))).toBeCloseTo(1, 4);
  });

  it('leaves gradients below maxNorm unchanged', () => {
    const { ps, flat } = withGrads();
    const got = optim.clipGradNorm(ps, 1e6);
    expect(got).toBeGreaterThan(0);
    expect(ps.flatMap((p) => values(p.grad!))).toEqual(flat);
  });

  it('supports the 1-norm, the inf-norm and non-contiguous gradients', () => {
    const { ps, flat } = withGrads();
    expect(optim.clipGradNorm(ps, 1e9, 1)).toBeCloseTo(flat.reduce((s, x) => s + Math.abs(x), 0), 2);
    const maxAbs = flat.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    expect(optim.clipGradNorm(ps, 1e9, 'inf')).toBeCloseTo(maxAbs, 6);
    expect(optim.clipGradNorm(ps, 1e9, Infinity)).toBeCloseTo(maxAbs, 6);
    const p = param([2, 3], 9);
    p.grad = ng.tensor([[3, 0], [0, 4], [0, 0]]).transpose(0, 1);
    expect(optim.clipGradNorm([p], 1)).toBeCloseTo(5, 6);
    expectClose(p.grad, [0.6, 0, 0, 0, 0.8, 0], { atol: 1e-6 });
  });

  it('errors on a non-finite norm when asked, and on bad arguments', () => {
    const p = param([3], 1);
    p.grad = ng.tensor([1, NaN, 2]);
    expect(() => optim.clipGradNorm([p], 1, 2, { errorIfNonfinite: true })).toThrow(/nodegrad: clipGradNorm: the total norm of order 2 of the gradients is non-finite/);
    expect(() => optim.clipGradNorm([p], -1)).toThrow(/nodegrad: clipGradNorm: maxNorm must be a number >= 0/);
    expect(() => optim.clipGradNorm([p], 1, 0)).toThrow(/normType must be a positive number/);
    expect(optim.clipGradNorm([param([2], 2)], 1)).toBe(0);
  });

  it('clipGradValue clamps every gradient', () => {
    const p = param([4], 1);
    p.grad = ng.tensor([-3, -0.5, 0.2, 7]);
    optim.clipGradValue(p, 1);
    expect(values(p.grad)).toEqual([-1, -0.5, 0.20000000298023224, 1]);
    expect(() => optim.clipGradValue(p, -1)).toThrow(/nodegrad: clipGradValue: clipValue must be a number >= 0/);
  });
});
