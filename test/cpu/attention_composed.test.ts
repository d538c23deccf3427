// The composed attention that float32/float64 CUDA uses for affordable score matrices,
// checked against the fused CPU kernel (values and gradients) for every mask kind.
import { describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { composedAttention, scaledDotProductAttention } from '../../lib/ops/attention.js';
import { expectClose } from '../helpers.js';

function inputs(Tq: number, Tk: number) {
  ng.manualSeed(12);
  const o = { dtype: 'float64' as const, requiresGrad: true };
  return { q: ng.randn([2, 3, Tq, 8], o), k: ng.randn([2, 3, Tk, 8], o), v: ng.randn([2, 3, Tk, 5], o) };
}

function compare(Tq: number, Tk: number, mask: ng.Tensor | null, causal: boolean) {
  const a = inputs(Tq, Tk), b = inputs(Tq, Tk);
  const maskKind = mask === null ? 0 : mask.dtype === 'bool' ? 1 : 2;
  const ma = mask && maskKind === 2 ? mask.detach().requiresGrad_(true) : mask;
  const mb = mask && maskKind === 2 ? mask.detach().requiresGrad_(true) : mask;
  const ref = scaledDotProductAttention(a.q, a.k, a.v, { attnMask: ma ?? undefined, isCausal: causal });
  const got = composedAttention(b.q, b.k, b.v, mb, maskKind, causal, 1 / Math.sqrt(8), Tq, Tk, 'cpu');
  expectClose(got, ref, { atol: 1e-10, rtol: 1e-9 });
  const w = ng.randn(ref.shape as number[], { dtype: 'float64' });
  ref.mul(w).sum().backward();
  got.mul(w).sum().backward();
  for (const key of ['q', 'k', 'v'] as const) expectClose(b[key].grad!, a[key].grad!, { atol: 1e-9, rtol: 1e-8 });
  if (maskKind === 2) expectClose(mb!.grad!, ma!.grad!, { atol: 1e-9, rtol: 1e-8 });
  expect(Array.from(got.dataSync() as Float64Array).some(Number.isNaN)).toBe(false);
}

describe('composed attention (the CUDA float32/float64 path)', () => {
  test('no mask and causal, Tq != Tk', () => {
    compare(7, 7, null, false);
    compare(5, 9, null, true);
    compare(9, 5, null, true);
  });
  test('bool key-padding mask with a fully masked row gives zeros like the kernel', () => {
    const m = ng.tensor([[true, true, false, true, false, true], [false, false, false, false, false, false]]).reshape([2, 1, 1, 6]);
    compare(4, 6, m, false);
    compare(4, 6, m, true);
  });
  test('additive float mask (with -inf) and its gradient', () => {
    ng.manualSeed(3);
    const m = ng.randn([1, 3, 4, 6], { dtype: 'float64' });
    const inf = ng.tensor([0, -Infinity, 0, 0, -Infinity, 0], { dtype: 'float64' });
    compare(4, 6, m.add(inf), false);
  });
});
