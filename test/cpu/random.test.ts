// Random tensors: reproducibility under manualSeed, ranges and distribution moments.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';

function moments(t: ng.Tensor): { mean: number; std: number } {
  const d = t.dataSync() as Float32Array;
  let s = 0;
  for (const v of d) s += v;
  const mean = s / d.length;
  let ss = 0;
  for (const v of d) ss += (v - mean) ** 2;
  return { mean, std: Math.sqrt(ss / (d.length - 1)) };
}

describe('manualSeed reproducibility', () => {
  it('the same seed gives the same values for every random op', () => {
    const draw = (): number[][] => {
      ng.manualSeed(1234);
      return [
        Array.from(ng.rand([50]).dataSync()),
        Array.from(ng.randn([3, 7]).dataSync()),
        Array.from(ng.randint(-5, 5, [40]).dataSync()),
        Array.from(ng.bernoulli([40], 0.3).dataSync()),
      ];
    };
    expect(draw()).toEqual(draw());
  });

  it('different seeds differ, and consecutive draws differ', () => {
    ng.manualSeed(1);
    const a = Array.from(ng.randn([64]).dataSync());
    const a2 = Array.from(ng.randn([64]).dataSync());
    ng.manualSeed(2);
    const b = Array.from(ng.randn([64]).dataSync());
    expect(a).not.toEqual(b);
    expect(a).not.toEqual(a2);
    expect(ng.initialSeed()).toBe(2);
  });

  it('a draw does not depend on how the previous draws were split', () => {
    ng.manualSeed(9);
    ng.rand([10]);
    const after = Array.from(ng.rand([5]).dataSync());
    ng.manualSeed(9);
    ng.rand([4]);
    ng.rand([6]);
    const after2 = Array.from(ng.rand([5]).dataSync());
    expect(after2).toEqual(after);
  });

  it('float64 draws are reproducible too', () => {
    ng.manualSeed(5);
    const a = Array.from(ng.randn([8], { dtype: 'float64' }).dataSync());
    ng.manualSeed(5);
    const b = Array.from(ng.randn([8], { dtype: 'float64' }).dataSync());
    expect(a).toEqual(b);
  });
});

describe('distributions', () => {
  it('randn over 100k samples has mean ~0 and std ~1', () => {
    ng.manualSeed(0);
    const { mean, std } = moments(ng.randn([100_000]));
    expect(Math.abs(mean)).toBeLessThan(0.015);
    expect(Math.abs(std - 1)).toBeLessThan(0.015);
  });

  it('randn honours mean and std', () => {
    ng.manualSeed(3);
    const { mean, std } = moments(ng.randn([50_000], { mean: 5, std: 0.5 }));
    expect(Math.abs(mean - 5)).toBeLessThan(0.02);
    expect(Math.abs(std - 0.5)).toBeLessThan(0.02);
  });

  it('rand lies in [0, 1) with mean 1/2 and variance 1/12, also with low/high', () => {
    ng.manualSeed(4);
    const u = ng.rand([100_000]);
    const d = u.dataSync();
    let lo = Infinity, hi = -Infinity;
    for (const v of d) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    expect(lo).toBeGreaterThanOrEqual(0);
    expect(hi).toBeLessThan(1);
    const { mean, std } = moments(u);
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(std - Math.sqrt(1 / 12))).toBeLessThan(0.01);
    const r = ng.rand([10_000], { low: -3, high: -2 }).dataSync();
    for (const v of r) {
      expect(v).toBeGreaterThanOrEqual(-3);
      expect(v).toBeLessThan(-2);
    }
  });

  it('float32 rand never rounds up to the upper bound', () => {
    // A narrow range right below a float32 power of two makes rounding up likely if unguarded.
    ng.manualSeed(11);
    const hi = 1, lo = 1 - 2 ** -20;
    const d = ng.rand([200_000], { low: lo, high: hi }).dataSync();
    let max = -Infinity;
    for (const v of d) max = Math.max(max, v);
    expect(max).toBeLessThan(hi);
  });

  it('randint stays in [low, high) and hits every value', () => {
    ng.manualSeed(6);
    const t = ng.randint(-3, 4, [20_000]);
    expect(t.dtype).toBe('int32');
    const counts = new Map<number, number>();
    for (const v of t.dataSync()) counts.set(v, (counts.get(v) ?? 0) + 1);
    expect([...counts.keys()].sort((a, b) => a - b)).toEqual([-3, -2, -1, 0, 1, 2, 3]);
    for (const c of counts.values()) expect(Math.abs(c / 20_000 - 1 / 7)).toBeLessThan(0.02);
    expect(ng.randint(0, 10, [5], { dtype: 'float32' }).dtype).toBe('float32');
  });

  it('bernoulli draws ones with probability p; p=0 and p=1 are exact', () => {
    ng.manualSeed(7);
    const b = ng.bernoulli([50_000], 0.25);
    expect(b.dtype).toBe('bool');
    const m = ng.mean(b.float()).item();
    expect(Math.abs(m - 0.25)).toBeLessThan(0.01);
    expect(ng.sum(ng.bernoulli([1000], 0)).item()).toBe(0);
    expect(ng.sum(ng.bernoulli([1000], 1)).item()).toBe(1000);
  });
});

describe('random argument checks', () => {
  it('manualSeed rejects NaN, negative and fractional seeds', () => {
    expect(() => ng.manualSeed(NaN)).toThrow(/nodegrad: manualSeed: seed must be a non-negative integer/);
    expect(() => ng.manualSeed(-1)).toThrow(/nodegrad: manualSeed:/);
    expect(() => ng.manualSeed(1.5)).toThrow(/nodegrad: manualSeed:/);
    expect(() => ng.manualSeed('3' as never)).toThrow(/nodegrad: manualSeed:/);
  });
  it('bad bounds and probabilities', () => {
    expect(() => ng.randint(5, 5, [2])).toThrow(/nodegrad: randint: expected integers low < high/);
    expect(() => ng.randint(0.5, 5, [2])).toThrow(/nodegrad: randint:/);
    expect(() => ng.rand([2], { low: 1, high: 0 })).toThrow(/nodegrad: rand: high/);
    expect(() => ng.randn([2], { std: -1 })).toThrow(/nodegrad: randn: std must be >= 0/);
    expect(() => ng.bernoulli([2], 1.5)).toThrow(/nodegrad: bernoulli: p must be in \[0, 1\]/);
    expect(() => ng.bernoulli([2], NaN)).toThrow(/nodegrad: bernoulli:/);
    expect(() => ng.randn([-2])).toThrow(/nodegrad: randn: dimensions must be non-negative integers/);
  });
});
