// Losses: crossEntropy, nllLoss, mseLoss and binaryCrossEntropyWithLogits against plain-JS
// float64 references (reductions, ignoreIndex, class weights, label smoothing, class dim
// at 1 with trailing dims), gradients against finite differences, numerical stability
// on extreme logits, and clear errors for bad targets, shapes and dtypes.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { gradcheck } from '../../lib/gradcheck.js';
import { binaryCrossEntropyWithLogits, crossEntropy, mseLoss, nllLoss } from '../../lib/ops/loss.js';
import { describeBackends, expectClose, lcg } from '../helpers.js';

function randomData(n: number, seed: number, scale = 2): number[] {
  const r = lcg(seed);
  return Array.from({ length: n }, () => r() * scale);
}
function randomTargets(n: number, C: number, seed: number, ignoreEvery = 0, ignoreIndex = -100): number[] {
  const r = lcg(seed);
  return Array.from({ length: n }, (_, i) =>
    ignoreEvery > 0 && i % ignoreEvery === ignoreEvery - 1 ? ignoreIndex : Math.floor((r() + 1) / 2 * C) % C);
}

interface CeRef { rows: number[]; total: number }
/** Per-row PyTorch cross-entropy on row-major [R, C] logits (rows already class-last). */
function refCrossEntropy(x: number[], t: number[], C: number, opts: { ignoreIndex?: number; eps?: number; w?: number[] } = {}): CeRef {
  const ii = opts.ignoreIndex ?? -100, eps = opts.eps ?? 0, w = opts.w ?? new Array<number>(C).fill(1);
  const rows: number[] = [];
  let total = 0;
  for (let r = 0; r < t.length; r++) {
    if (t[r] === ii) { rows.push(0); continue; }
    const row = x.slice(r * C, (r + 1) * C);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    let smooth = 0;
    for (let c = 0; c < C; c++) smooth += w[c] * (lse - row[c]);
    rows.push((1 - eps) * w[t[r]] * (lse - row[t[r]]) + eps / C * smooth);
    total += w[t[r]];
  }
  return { rows, total };
}
const sumOf = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

describeBackends('crossEntropy', (device) => {
  for (const dtype of ['float32', 'float64'] as const) {
    it(`matches the reference for every reduction (${dtype}, N=7, C=13)`, () => {
      const N = 7, C = 13;
      const xs = randomData(N * C, 1, 3), ts = randomTargets(N, C, 2);
      const x = ng.tensor(xs, { dtype, device, shape: [N, C] });
      const t = ng.tensor(ts, { dtype: 'int32', device });
      const ref = refCrossEntropy(xs, ts, C);
      const tol = dtype === 'float32' ? { atol: 1e-5, rtol: 1e-5 } : { atol: 1e-12, rtol: 1e-12 };
      expectClose(crossEntropy(x, t, { reduction: 'none' }), ref.rows, tol);
      expectClose(crossEntropy(x, t, { reduction: 'sum' }), sumOf(ref.rows), tol);
      expectClose(crossEntropy(x, t), sumOf(ref.rows) / N, tol);
      expect(crossEntropy(x, t).shape).toEqual([]);
      expect(crossEntropy(x, t).dtype).toBe(dtype);
    });
  }

  for (const dtype of ['float32', 'float64'] as const) it(`ignores targets equal to ignoreIndex in the loss, the mean divisor and the gradient (${dtype})`, () => {
    const N = 9, C = 5;
    const xs = randomData(N * C, 3), ts = randomTargets(N, C, 4, 3, -1);
    const x = ng.tensor(xs, { dtype, device, shape: [N, C], requiresGrad: true });
    const t = ng.tensor(ts, { dtype: 'int32', device });
    const ref = refCrossEntropy(xs, ts, C, { ignoreIndex: -1 });
    const loss = crossEntropy(x, t, { ignoreIndex: -1, labelSmoothing: 0.1 });
    expectClose(loss, sumOf(refCrossEntropy(xs, ts, C, { ignoreIndex: -1, eps: 0.1 }).rows) / 6, { atol: 1e-6 });
    expectClose(crossEntropy(x, t, { ignoreIndex: -1 }), sumOf(ref.rows) / 6, { atol: dtype === 'float32' ? 1e-6 : 1e-12 });
    loss.backward();
    const g = x.grad!.dataSync();
    for (let r = 0; r < N; r++) {
      const rowSum = Array.from(g.slice(r * C, (r + 1) * C)).reduce((a, b) => a + Math.abs(b), 0);
      if (ts[r] === -1) expect(rowSum).toBe(0);
      else expect(rowSum).toBeGreaterThan(0);
    }
    // the default ignoreIndex is -100
    const t2 = ng.tensor([0, -100, 2], { dtype: 'int32', device });
    const x2 = ng.tensor(xs.slice(0, 3 * C), { dtype: 'float64', device, shape: [3, C] });
    expectClose(crossEntropy(x2, t2, { reduction: 'none' }).dataSync()[1], 0);
  });

  it('with every target ignored gives NaN for mean (as PyTorch) and zero gradients', () => {
    const x = ng.tensor(randomData(6, 5), { dtype: 'float64', device, shape: [2, 3], requiresGrad: true });
    const t = ng.tensor([-100, -100], { dtype: 'int32', device });
    const loss = crossEntropy(x, t);
    expect(Number.isNaN(loss.item())).toBe(true);
    expect(crossEntropy(x, t, { reduction: 'sum' }).item()).toBe(0);
    loss.backward();
    expect(Array.from(x.grad!.dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('applies class weights and label smoothing as PyTorch (mean divides by the target weights)', () => {
    const N = 8, C = 6;
    const xs = randomData(N * C, 6), ts = randomTargets(N, C, 7, 4), ws = randomData(C, 8).map((v) => 1.5 + v / 2);
    const x = ng.tensor(xs, { dtype: 'float64', device, shape: [N, C] });
    const t = ng.tensor(ts, { dtype: 'int32', device });
    const weight = ng.tensor(ws, { dtype: 'float64', device });
    for (const eps of [0, 0.1, 1]) {
      const ref = refCrossEntropy(xs, ts, C, { eps, w: ws });
      expectClose(crossEntropy(x, t, { weight, labelSmoothing: eps, reduction: 'none' }), ref.rows, { atol: 1e-12 });
      expectClose(crossEntropy(x, t, { weight, labelSmoothing: eps }), sumOf(ref.rows) / ref.total, { atol: 1e-12 });
      const unweighted = refCrossEntropy(xs, ts, C, { eps });
      expectClose(crossEntropy(x, t, { labelSmoothing: eps }), sumOf(unweighted.rows) / unweighted.total, { atol: 1e-12 });
    }
    // a float32 weight is cast to the logits' dtype
    expectClose(crossEntropy(x, t, { weight: weight.to('float32') }), crossEntropy(x, t, { weight }), { atol: 1e-6 });
  });

  it('takes the class dim at 1 for [N, C, d1, d2] logits with [N, d1, d2] targets', () => {
    const N = 2, C = 5, d1 = 3, d2 = 2;
    const xs = randomData(N * C * d1 * d2, 9), ts = randomTargets(N * d1 * d2, C, 10, 5);
    const x = ng.tensor(xs, { dtype: 'float64', device, shape: [N, C, d1, d2] });
    const t = ng.tensor(ts, { dtype: 'int32', device, shape: [N, d1, d2] });
    // rows in (n, i) order, classes gathered at stride d1*d2
    const I = d1 * d2, rowsX: number[] = [];
    for (let n = 0; n < N; n++) for (let i = 0; i < I; i++) for (let c = 0; c < C; c++) rowsX.push(xs[n * C * I + c * I + i]);
    const ref = refCrossEntropy(rowsX, ts, C, { eps: 0.2 });
    const none = crossEntropy(x, t, { reduction: 'none', labelSmoothing: 0.2 });
    expect(none.shape).toEqual([N, d1, d2]);
    expectClose(none, ref.rows, { atol: 1e-12 });
    expectClose(crossEntropy(x, t, { labelSmoothing: 0.2 }), sumOf(ref.rows) / ref.total, { atol: 1e-12 });
  });

  it('accepts 1-d logits [C] with a scalar target', () => {
    const xs = [0.5, -1, 2, 0.25];
    const loss = crossEntropy(ng.tensor(xs, { dtype: 'float64', device }), ng.tensor(2, { dtype: 'int32', device }));
    expectClose(loss, refCrossEntropy(xs, [2], 4).rows[0], { atol: 1e-12 });
  });

  it('stays finite on huge logits', () => {
    const x = ng.tensor([[1e4, -1e4, 0], [-3e4, 3e4, 3e4]], { device });
    const t = ng.tensor([1, 2], { dtype: 'int32', device });
    expectClose(crossEntropy(x, t, { reduction: 'none' }), [2e4, Math.log(2)], { rtol: 1e-6 });
  });

  it('propagates NaN, ignores -Infinity and underflowing logits on vector-width float32 rows', () => {
    const C = 27;  // three 8-lane blocks and a scalar tail
    const rows = [
      Array.from({ length: C }, (_, c) => (c === 19 ? NaN : c / 10)),
      Array.from({ length: C }, (_, c) => (c % 3 === 0 ? -Infinity : c / 10)),
      Array.from({ length: C }, (_, c) => (c % 2 === 0 ? -200 + c : c / 7)),
    ];
    const t = [4, 5, 3];
    const lse = (r: number[]) => { const m = Math.max(...r.filter((v) => v > -Infinity)); return m + Math.log(r.reduce((a, v) => a + Math.exp(v - m), 0)); };
    const got = crossEntropy(ng.tensor(rows, { device }), ng.tensor(t, { dtype: 'int32', device }), { reduction: 'none' }).tolist() as number[];
    expect(Number.isNaN(got[0])).toBe(true);
    expectClose(ng.tensor(got.slice(1)), [lse(rows[1]) - rows[1][5], lse(rows[2]) - rows[2][3]], { rtol: 1e-6, atol: 1e-6 });
  });

  it('backward equals (softmax - smoothed one-hot) * g on wide rows in float32', () => {
    const N = 3, C = 5000, eps = 0.1;
    const xs = randomData(N * C, 11, 4), ts = [5, 999, 0];
    const x = ng.tensor(xs, { device, shape: [N, C], requiresGrad: true });
    const loss = crossEntropy(x, ng.tensor(ts, { dtype: 'int32', device }), { labelSmoothing: eps, reduction: 'none' });
    expectClose(loss, refCrossEntropy(xs, ts, C, { eps }).rows, { rtol: 1e-5 });
    ng.sum(loss).backward();
    const expected: number[] = [];
    for (let r = 0; r < N; r++) {
      const row = xs.slice(r * C, (r + 1) * C);
      const m = Math.max(...row), s = row.reduce((a, v) => a + Math.exp(v - m), 0);
      row.forEach((v, c) => expected.push(Math.exp(v - m) / s - ((c === ts[r] ? 1 - eps : 0) + eps / C)));
    }
    expectClose(x.grad!, expected, { atol: 1e-7, rtol: 1e-4 });
  });

  it('backward matches finite differences (weights, smoothing, ignored rows, trailing dims)', () => {
    const t = ng.tensor(randomTargets(5, 4, 12, 3), { dtype: 'int32', device });
    const w = ng.tensor([0.5, 2, 1, 1.5], { dtype: 'float64', device });
    const x = ng.tensor(randomData(20, 13), { dtype: 'float64', device, shape: [5, 4], requiresGrad: true });
    gradcheck((a) => crossEntropy(a, t), [x]);
    gradcheck((a) => crossEntropy(a, t, { weight: w, labelSmoothing: 0.3 }), [x]);
    gradcheck((a) => crossEntropy(a, t, { reduction: 'none', labelSmoothing: 0.1 }), [x]);
    const x3 = ng.tensor(randomData(2 * 3 * 4, 14), { dtype: 'float64', device, shape: [2, 3, 4], requiresGrad: true });
    const t3 = ng.tensor(randomTargets(8, 3, 15, 5), { dtype: 'int32', device, shape: [2, 4] });
    gradcheck((a) => crossEntropy(a, t3, { weight: w.narrow(0, 0, 3), reduction: 'sum', labelSmoothing: 0.2 }), [x3]);
    // non-contiguous logits
    const xt = ng.tensor(randomData(20, 16), { dtype: 'float64', device, shape: [4, 5], requiresGrad: true });
    gradcheck((a) => crossEntropy(a.transpose(0, 1), t), [xt]);
  });

  it('rejects out-of-range targets, wrong dtypes and shapes with clear errors', () => {
    const x = ng.tensor(randomData(6, 17), { device, shape: [2, 3] });
    const bad = (ts: number[]): ng.Tensor => ng.tensor(ts, { dtype: 'int32', device });
    expect(() => crossEntropy(x, bad([0, 3]))).toThrow(/nodegrad: crossEntropy: target 3 at position 1 is out of range for 3 classes/);
    expect(() => crossEntropy(x, bad([-1, 0]))).toThrow(/nodegrad: crossEntropy: target -1/);
    expect(() => crossEntropy(x, bad([0, 5]), { ignoreIndex: 5, reduction: 'none' })).not.toThrow();
    expect(() => crossEntropy(x, ng.tensor([0, 1], { device }))).toThrow(/nodegrad: crossEntropy: targets must be int32/);
    expect(() => crossEntropy(x, bad([0, 1, 2]))).toThrow(/nodegrad: crossEntropy: .*targets of shape \[2\]/);
    expect(() => crossEntropy(x.to('int32'), bad([0, 1]))).toThrow(/nodegrad: crossEntropy: logits must be float32 or float64/);
    expect(() => crossEntropy(x, bad([0, 1]), { reduction: 'avg' as 'mean' })).toThrow(/nodegrad: crossEntropy: reduction/);
    expect(() => crossEntropy(x, bad([0, 1]), { labelSmoothing: 1.5 })).toThrow(/nodegrad: crossEntropy: labelSmoothing/);
    expect(() => crossEntropy(x, bad([0, 1]), { weight: ng.ones([4], { device }) })).toThrow(/nodegrad: crossEntropy: weight must have shape \[3\]/);
    expect(() => crossEntropy(ng.tensor(1, { device }), bad([0]))).toThrow(/nodegrad: crossEntropy:/);
  });
});

describeBackends('nllLoss', (device) => {
  it('picks -w[t] * logProbs[t], skips ignored targets and divides the mean by the target weights', () => {
    const N = 6, C = 4;
    const xs = randomData(N * C, 20), ts = randomTargets(N, C, 21, 4), ws = [1, 0.5, 2, 3];
    const x = ng.tensor(xs, { dtype: 'float64', device, shape: [N, C] });
    const t = ng.tensor(ts, { dtype: 'int32', device });
    const rows = ts.map((tt, r) => (tt === -100 ? 0 : -ws[tt] * xs[r * C + tt]));
    const total = sumOf(ts.map((tt) => (tt === -100 ? 0 : ws[tt])));
    const weight = ng.tensor(ws, { dtype: 'float64', device });
    expectClose(nllLoss(x, t, { weight, reduction: 'none' }), rows, { atol: 1e-12 });
    expectClose(nllLoss(x, t, { weight, reduction: 'sum' }), sumOf(rows), { atol: 1e-12 });
    expectClose(nllLoss(x, t, { weight }), sumOf(rows) / total, { atol: 1e-12 });
    expectClose(nllLoss(x.to('float32'), t), -sumOf(ts.map((tt, r) => (tt === -100 ? 0 : xs[r * C + tt]))) / 5, { atol: 1e-6 });
  });

  it('backward matches finite differences', () => {
    const x = ng.tensor(randomData(2 * 3 * 2, 22), { dtype: 'float64', device, shape: [2, 3, 2], requiresGrad: true });
    const t = ng.tensor([0, 2, -100, 1], { dtype: 'int32', device, shape: [2, 2] });
    gradcheck((a) => nllLoss(a, t), [x]);
    gradcheck((a) => nllLoss(a, t, { weight: ng.tensor([1, 2, 3], { dtype: 'float64', device }), reduction: 'none' }), [x]);
  });

  it('rejects out-of-range targets and float targets', () => {
    const x = ng.zeros([2, 3], { device });
    expect(() => nllLoss(x, ng.tensor([0, 7], { dtype: 'int32', device }))).toThrow(/nodegrad: nllLoss: target 7 at position 1 is out of range/);
    expect(() => nllLoss(x, ng.tensor([0, 1], { device }))).toThrow(/nodegrad: nllLoss: targets must be int32/);
  });
});

describeBackends('mseLoss', (device) => {
  it('matches the reference and its gradients for both arguments', () => {
    const a = randomData(12, 30), b = randomData(12, 31);
    const x = ng.tensor(a, { dtype: 'float64', device, shape: [3, 4], requiresGrad: true });
    const y = ng.tensor(b, { dtype: 'float64', device, shape: [3, 4], requiresGrad: true });
    const sq = a.map((v, i) => (v - b[i]) ** 2);
    expectClose(mseLoss(x, y, { reduction: 'none' }), sq, { atol: 1e-12 });
    expectClose(mseLoss(x, y, { reduction: 'sum' }), sumOf(sq), { atol: 1e-12 });
    expectClose(mseLoss(x, y), sumOf(sq) / 12, { atol: 1e-12 });
    gradcheck((p, q) => mseLoss(p, q), [x, y]);
  });

  it('rejects mismatched shapes', () => {
    expect(() => mseLoss(ng.zeros([3, 4], { device }), ng.zeros([4], { device }))).toThrow(/nodegrad: mseLoss: .*same shape/);
  });
});

describeBackends('binaryCrossEntropyWithLogits', (device) => {
  const sig = (x: number): number => 1 / (1 + Math.exp(-x));
  it('matches -(p y log s + (1 - y) log(1 - s)) with posWeight and weight', () => {
    const xs = randomData(12, 40, 3), ys = randomData(12, 41).map((v) => (v + 2) / 4), pws = [0.5, 1, 2, 3];
    const x = ng.tensor(xs, { dtype: 'float64', device, shape: [3, 4] });
    const y = ng.tensor(ys, { dtype: 'float64', device, shape: [3, 4] });
    const ref = xs.map((v, i) => -(ys[i] * Math.log(sig(v)) + (1 - ys[i]) * Math.log(1 - sig(v))));
    expectClose(binaryCrossEntropyWithLogits(x, y, { reduction: 'none' }), ref, { atol: 1e-12 });
    expectClose(binaryCrossEntropyWithLogits(x, y), sumOf(ref) / 12, { atol: 1e-12 });
    const refPw = xs.map((v, i) => -(pws[i % 4] * ys[i] * Math.log(sig(v)) + (1 - ys[i]) * Math.log(1 - sig(v))));
    const posWeight = ng.tensor(pws, { dtype: 'float64', device });
    expectClose(binaryCrossEntropyWithLogits(x, y, { posWeight, reduction: 'sum' }), sumOf(refPw), { atol: 1e-12 });
    const w = ng.tensor([[1], [2], [0.5]], { dtype: 'float64', device });
    const refW = ref.map((v, i) => v * [1, 2, 0.5][Math.floor(i / 4)]);
    expectClose(binaryCrossEntropyWithLogits(x, y, { weight: w, reduction: 'none' }), refW, { atol: 1e-12 });
    expectClose(binaryCrossEntropyWithLogits(x.to('float32'), y.to('float32')), sumOf(ref) / 12, { atol: 1e-6 });
  });

  it('is finite and exact for extreme logits', () => {
    const x = ng.tensor([100, -100, 800, -800], { device });
    const y = ng.tensor([0, 1, 1, 0], { device });
    expectClose(binaryCrossEntropyWithLogits(x, y, { reduction: 'none' }), [100, 100, 0, 0], { rtol: 1e-6 });
  });

  it('backward matches finite differences for logits, targets and posWeight', () => {
    const x = ng.tensor(randomData(6, 42, 3), { dtype: 'float64', device, shape: [2, 3], requiresGrad: true });
    const y = ng.tensor(randomData(6, 43).map((v) => (v + 2) / 4), { dtype: 'float64', device, shape: [2, 3], requiresGrad: true });
    const pw = ng.tensor([0.5, 2, 1.5], { dtype: 'float64', device, requiresGrad: true });
    gradcheck((a, b, p) => binaryCrossEntropyWithLogits(a, b, { posWeight: p }), [x, y, pw]);
    gradcheck((a, b) => binaryCrossEntropyWithLogits(a, b, { reduction: 'none' }), [x, y]);
    // the derivative at x = 0 is sigmoid(0) - y
    const z = ng.tensor([0, 0], { dtype: 'float64', device, requiresGrad: true });
    binaryCrossEntropyWithLogits(z, ng.tensor([0, 1], { dtype: 'float64', device }), { reduction: 'sum' }).backward();
    expectClose(z.grad!, [0.5, -0.5], { atol: 1e-15 });
  });

  it('rejects mismatched shapes and bad posWeight', () => {
    const x = ng.zeros([2, 3], { device });
    expect(() => binaryCrossEntropyWithLogits(x, ng.zeros([3], { device }))).toThrow(/nodegrad: binaryCrossEntropyWithLogits: targets must have the same shape/);
    expect(() => binaryCrossEntropyWithLogits(x, ng.zeros([2, 3], { device }), { posWeight: ng.ones([2], { device }) }))
      .toThrow(/nodegrad: binaryCrossEntropyWithLogits:/);
    expect(() => binaryCrossEntropyWithLogits(x.to('int32'), x)).toThrow(/nodegrad: binaryCrossEntropyWithLogits: logits must be float32 or float64/);
  });
});
