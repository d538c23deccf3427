import { describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { loraLinear, type LoraOpPart } from '../../lib/peft/lora_op.js';
import { expectClose } from '../helpers.js';

const { add, linear, mul, cat, zeros } = ng;

/** The same layer composed of public ops: base linear plus, per part, s·(xa Aᵀ) Bᵀ placed in its columns. */
function composed(x: ng.Tensor, w: ng.Tensor, b: ng.Tensor | null, xa: ng.Tensor, parts: LoraOpPart[], s: number): ng.Tensor {
  const outF = w.shape[0], lead = x.shape.slice(0, -1) as number[];
  const cols: ng.Tensor[] = [];
  let at = 0;
  for (const p of parts) {
    if (p.start > at) cols.push(zeros([...lead, p.start - at], { dtype: x.dtype }));
    cols.push(mul(linear(linear(xa, p.A), p.B), s));
    at = p.start + p.length;
  }
  if (at < outF) cols.push(zeros([...lead, outF - at], { dtype: x.dtype }));
  return add(linear(x, w, b), cat(cols, -1));
}

function rnd(shape: number[], dtype: 'float32' | 'float64' = 'float64', requiresGrad = true): ng.Tensor {
  const t = ng.randn(shape, { dtype });
  t.requiresGrad = requiresGrad;
  return t;
}

/** BERT's fused qkv: query rows [0, 6) and value rows [12, 18) of 18, r = 2. */
function qvParts(dtype: 'float32' | 'float64' = 'float64', grad = true): LoraOpPart[] {
  return [{ start: 0, length: 6 }, { start: 12, length: 6 }].map((p) => ({ ...p, A: rnd([2, 5], dtype, grad), B: rnd([6, 2], dtype, grad) }));
}

function backwardCalls(fn: () => ng.Tensor): { name: string; args: unknown[] }[] {
  const loss = ng.sum(fn());
  const calls: { name: string; args: unknown[] }[] = [];
  const n = native as unknown as Record<string, unknown>;
  const saved = new Map<string, unknown>();
  for (const k of Object.keys(n)) {
    const f = n[k];
    if (typeof f !== 'function') continue;
    saved.set(k, f);
    n[k] = (...args: unknown[]) => { calls.push({ name: k, args }); return (f as (...a: unknown[]) => unknown)(...args); };
  }
  try {
    loss.backward();
  } finally {
    for (const [k, f] of saved) n[k] = f;
  }
  return calls;
}

describe('loraLinear', () => {
  test('forward and every gradient equal the composed layer (fused qkv parts, a whole-output part, bias)', () => {
    ng.manualSeed(1);
    for (const whole of [false, true]) {
      const x = rnd([3, 4, 5]), w = rnd([18, 5]), b = rnd([18]);
      const parts = whole ? [{ start: 0, length: 18, A: rnd([3, 5]), B: rnd([18, 3]) }] : qvParts();
      const y = loraLinear(x, w, b, x, parts, 0.7);
      const yr = composed(x, w, b, x, parts, 0.7);
      expectClose(y, yr, { atol: 1e-10, rtol: 1e-10 });
      const gw = ng.randn([3, 4, 18], { dtype: 'float64' });
      const all = [x, w, b, ...parts.flatMap((p) => [p.A, p.B])];
      ng.sum(mul(y, gw)).backward();
      const got = all.map((t) => t.grad!.clone());
      for (const t of all) t.zeroGrad();
      ng.sum(mul(yr, gw)).backward();
      all.forEach((t, i) => expectClose(got[i], t.grad!, { atol: 1e-10, rtol: 1e-10 }));
    }
  });

  test('backward matches finite differences, with the low-rank input a separate tensor (dropout)', () => {
    ng.manualSeed(2);
    const x = rnd([4, 5]), w = rnd([18, 5]), b = rnd([18]);
    const mask = ng.tensor([[1, 0, 2, 1, 0], [2, 2, 0, 1, 1], [0, 1, 1, 2, 1], [1, 1, 1, 0, 2]], { dtype: 'float64' });
    const [q, v] = qvParts();
    ng.gradcheck((xx, ww, bb, a0, b0, a1, b1) => loraLinear(xx, ww, bb, mul(xx, mask),
      [{ start: 0, length: 6, A: a0, B: b0 }, { start: 12, length: 6, A: a1, B: b1 }], 1.5), [x, w, b, q.A, q.B, v.A, v.B]);
    ng.gradcheck((xx, a0, b0) => loraLinear(xx, w, null, xx, [{ start: 3, length: 6, A: a0, B: b0 }], 2), [x, q.A, q.B]);
  });

  test('frozen weight, bias and input get no gradient computed: no dW or dx GEMM, no bias sum', () => {
    ng.manualSeed(3);
    const x = rnd([2, 8, 5], 'float32', false), w = rnd([18, 5], 'float32', false), b = rnd([18], 'float32', false);
    const parts = qvParts('float32');
    const calls = backwardCalls(() => loraLinear(x, w, b, x, parts, 2));
    const gemms = calls.filter((c) => c.name === 'gemm').map((c) => c.args.slice(0, 3) as number[]);
    // per part: gh = g·B [16, 2], dA = ghᵀ·x [2, 5], dBᵀ = hᵀ·g [2, 6]; nothing [18, 5] (dW) nor [16, 5] (dx)
    expect(gemms.sort()).toEqual([[16, 2, 6], [16, 2, 6], [2, 5, 16], [2, 5, 16], [2, 6, 16], [2, 6, 16]].sort());
    expect(calls.some((c) => c.name === 'reduce')).toBe(false);
    expect(w.grad).toBeNull();
    expect(b.grad).toBeNull();
    expect(parts.every((p) => p.A.grad !== null && p.B.grad !== null)).toBe(true);

    // x requiring grad adds exactly one dx GEMM (g·W) and one accumulation per part into it (beta 1)
    x.requiresGrad = true;
    const withX = backwardCalls(() => loraLinear(x, w, b, x, parts, 2)).filter((c) => c.name === 'gemm');
    const dx = withX.filter((c) => c.args[0] === 16 && c.args[1] === 5);
    expect(dx.map((c) => [c.args[2], c.args[c.args.length - 1]])).toEqual([[18, 0], [2, 1], [2, 1]]);
  });

  test('bad arguments are errors naming the op and the shapes', () => {
    const x = ng.randn([4, 5]), w = ng.randn([18, 5]);
    expect(() => loraLinear(x, w, null, x, [{ start: 0, length: 6, A: ng.randn([2, 4]), B: ng.randn([6, 2]) }], 1)).toThrow(/loraLinear: part at rows 0\+6 of 18 has A \[2,4\]/);
    expect(() => loraLinear(x, w, null, x, [{ start: 14, length: 6, A: ng.randn([2, 5]), B: ng.randn([6, 2]) }], 1)).toThrow(/loraLinear: part at rows 14\+6/);
    expect(() => loraLinear(ng.randn([4, 3]), w, null, ng.randn([4, 3]), qvParts('float32'), 1)).toThrow(/loraLinear: input \[4,3\]/);
    expect(() => loraLinear(x, w, null, x, qvParts('float64'), 1)).toThrow(/loraLinear: every tensor must be float32/);
  });
});
