// CUDA random fills draw the CPU's Philox stream: after ng.manualSeed(s) the same calls
// give identical uniform / randint / bernoulli values (and normal values to float
// rounding) on both backends, so dropout masks agree too.
import { expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { setRngState } from '../../lib/random.js';
import { expectClose } from '../helpers.js';
import { describeCuda } from './helpers.js';

const SIZES = [1, 3, 127, 1000, 100_003];

function bits(t: Tensor): number[] {
  return Array.from(t.cpu().dataSync() as ArrayLike<number>);
}
/** draw(device) run after the same seed on the CPU and on CUDA. */
function both(seed: number, draw: (device: 'cpu' | 'cuda') => Tensor): [Tensor, Tensor] {
  ng.manualSeed(seed);
  const c = draw('cpu');
  ng.manualSeed(seed);
  const g = draw('cuda');
  expect(g.device.startsWith('cuda')).toBe(true);
  return [c, g];
}

describeCuda('CUDA random matches the CPU stream', () => {
  for (const n of SIZES) {
    test(`rand float32 n=${n} is bit-identical`, () => {
      const [c, g] = both(7, (device) => ng.rand([n], { device }));
      expect(bits(g)).toEqual(bits(c));
    });
    test(`rand float64 with a range n=${n} is bit-identical`, () => {
      const [c, g] = both(8, (device) => ng.rand([n], { device, dtype: 'float64', low: -3, high: 5 }));
      expect(bits(g)).toEqual(bits(c));
    });
    test(`randint n=${n} is identical`, () => {
      const [c, g] = both(9, (device) => ng.randint(-50, 1000, [n], { device }));
      expect(bits(g)).toEqual(bits(c));
    });
    test(`bernoulli n=${n} is identical`, () => {
      const [c, g] = both(10, (device) => ng.bernoulli([n], 0.3, { device }));
      expect(bits(g)).toEqual(bits(c));
    });
    test(`randn float32 n=${n} agrees to float rounding`, () => {
      const [c, g] = both(11, (device) => ng.randn([n], { device, mean: 1, std: 2 }));
      expectClose(g.cpu(), c, { atol: 1e-6, rtol: 1e-6 });
    });
  }

  test('randn float64 agrees to double rounding', () => {
    const [c, g] = both(12, (device) => ng.randn([4099], { device, dtype: 'float64' }));
    expectClose(g.cpu(), c, { atol: 1e-13, rtol: 1e-13 });
  });

  test('a sequence of draws continues the same stream (offsets advance alike)', () => {
    const [c, g] = both(13, (device) => {
      const a = ng.rand([5], { device });
      const b = ng.randn([7], { device });
      const k = ng.randint(0, 10, [3, 3], { device });
      const m = ng.bernoulli([33], 0.5, { device });
      return ng.cat([a, b, k.reshape([9]).float(), m.reshape([33]).float()]);
    });
    expectClose(g.cpu(), c, { atol: 1e-6, rtol: 1e-6 });
  });

  test('large seeds and counters (above 2^32) agree', () => {
    const draw = (device: 'cpu' | 'cuda'): Tensor => {
      setRngState({ seed: 2 ** 40 + 12345, offset: 2 ** 33 - 500 });  // the counter crosses 2^33
      return ng.rand([1000], { device });
    };
    const c = draw('cpu'), g = draw('cuda');
    expect(bits(g)).toEqual(bits(c));
  });

  test('rand stays inside [low, high) in 16-bit dtypes (CUDA only)', () => {
    ng.manualSeed(14);
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const v = Array.from(ng.rand([100_000], { device: 'cuda', dtype }).float().dataSync() as Float32Array);
      expect(Math.min(...v)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...v)).toBeLessThan(1);
      const r = Array.from(ng.randn([100_000], { device: 'cuda', dtype }).float().dataSync() as Float32Array);
      const mean = r.reduce((s, x) => s + x, 0) / r.length;
      expect(Math.abs(mean)).toBeLessThan(0.02);
    }
  });

  test('randn in bfloat16 equals the float32 draw rounded to bfloat16', () => {
    ng.manualSeed(15);
    const f = ng.randn([4099], { device: 'cuda' });
    ng.manualSeed(15);
    const h = ng.randn([4099], { device: 'cuda', dtype: 'bfloat16' });
    expect(bits(h)).toEqual(bits(f.to('bfloat16')));
  });

  test('dropout masks are identical on the CPU and on CUDA for the same seed', () => {
    for (const p of [0.1, 0.5, 0.9]) {
      const x = ng.ones([37, 129]);
      const [c, g] = both(16, (device) => ng.nn.functional.dropout(x.to(device), p, true));
      expect(bits(g)).toEqual(bits(c));
      const kept = bits(c).filter((v) => v !== 0).length / c.numel;
      expect(Math.abs(kept - (1 - p))).toBeLessThan(0.03);
    }
  });

  test('dropout backward uses the same mask on CUDA', () => {
    const x = ng.randn([64, 65]);
    ng.manualSeed(17);
    const xc = x.detach().requiresGrad_(true);
    ng.nn.functional.dropout(xc, 0.25, true).sum().backward();
    ng.manualSeed(17);
    const xg = x.to('cuda').detach().requiresGrad_(true);
    ng.nn.functional.dropout(xg, 0.25, true).sum().backward();
    expect(bits(xg.grad!)).toEqual(bits(xc.grad!));
  });

  test('randint with high <= low is refused', () => {
    expect(() => ng.randint(5, 5, [3], { device: 'cuda' })).toThrow(/randint/);
  });
});
