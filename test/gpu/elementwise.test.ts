// CUDA elementwise family against the CPU twin: every binary/unary op and backward,
// broadcasting, strided views (transposed, sliced, expanded), every cast pair, fill,
// where/maskedFill, in float32/bfloat16/float16/int32/bool. 16-bit cases feed both sides
// the same (pre-rounded) values, so only the output rounding differs.
import { expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import type { DType, Tensor } from '../../lib/index.js';
import { Bin, binaryRaw, Un, unaryRaw, affine } from '../../lib/ops/elementwise.js';
import { native } from '../../lib/native.js';
import { expectClose } from '../helpers.js';
import { compareCpuCuda, describeCuda, type FloatDType } from './helpers.js';

const SIZES = [1, 3, 127, 1000, 4099];
const HALF: FloatDType[] = ['bfloat16', 'float16'];

function rnd(shape: number[], lo = -2, hi = 2, seed = 1): Tensor {
  ng.manualSeed(seed);
  return ng.rand(shape, { low: lo, high: hi });
}
/** Values exactly representable in dtype (so CPU float32 and CUDA 16-bit see equal inputs). */
function rounded(t: Tensor, dtype: FloatDType): Tensor {
  return dtype === 'float32' || dtype === 'float64' ? t : t.to(dtype).to('float32');
}
function withGrad(t: Tensor): Tensor {
  return t.detach().requiresGrad_(true);
}
function same(a: Tensor, b: Tensor): void {
  expect(b.dtype).toBe(a.dtype);
  expect([...b.shape]).toEqual([...a.shape]);
  const x = Array.from(a.dataSync() as ArrayLike<number>), y = Array.from(b.dataSync() as ArrayLike<number>);
  for (let i = 0; i < x.length; i++) {
    if (!(x[i] === y[i] || (Number.isNaN(x[i]) && Number.isNaN(y[i])))) {
      expect.fail(`element ${i}: cuda ${y[i]}, cpu ${x[i]}`);
    }
  }
}
/** Runs fn on CPU inputs and on CUDA copies; outputs must be identical (integers, bools, casts). */
function exact(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[]): void {
  ng.scope(() => {
    const c = fn(...inputs);
    const g = fn(...inputs.map((t) => t.to('cuda')));
    expect(g.device.startsWith('cuda')).toBe(true);
    same(c, g.cpu());
  });
}

const isHalf = (dt: DType): boolean => dt === 'bfloat16' || dt === 'float16';
/**
 * ng.where on `dt` values; the CPU kernel has no 16-bit where, so the CPU reference selects
 * the (exactly representable) float32 values and rounds back, which gives the same bits.
 */
function whereAs(dt: DType, c: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  const t = (v: Tensor | number): Tensor | number => (typeof v === 'number' ? v : v.to(dt));
  const onCpu = c.device === 'cpu';
  if (!(onCpu && isHalf(dt))) return ng.where(c, t(a), t(b));
  const f = (v: Tensor | number): Tensor | number => (typeof v === 'number' ? v : v.to(dt).float());
  return ng.where(c, f(a), f(b)).to(dt);
}

describeCuda('CUDA binary ops', () => {
  const ops: [string, (a: Tensor, b: Tensor) => Tensor][] = [
    ['add', (a, b) => a.add(b)], ['sub', (a, b) => a.sub(b)], ['mul', (a, b) => a.mul(b)],
    ['div', (a, b) => a.div(b)], ['maximum', (a, b) => a.maximum(b)], ['minimum', (a, b) => a.minimum(b)],
    ['pow', (a, b) => a.abs().add(0.5).pow(b)],
  ];
  for (const [name, fn] of ops) {
    for (const n of SIZES) {
      test(`${name} float32 n=${n} forward and backward`, () => {
        const b = name === 'div' ? rnd([n], 0.5, 2, 2) : rnd([n], -2, 2, 2);
        compareCpuCuda(fn, [withGrad(rnd([n])), withGrad(b)], { grad: true });
      });
    }
    for (const dt of HALF) {
      test(`${name} ${dt} forward and backward`, () => {
        const a = rounded(rnd([33, 65]), dt), b = rounded(name === 'div' ? rnd([33, 65], 0.5, 2, 2) : rnd([33, 65], -2, 2, 2), dt);
        compareCpuCuda(fn, [withGrad(a), withGrad(b)], { grad: true, dtype: dt, gradAtol: 0.1, gradRtol: 0.05 });
      });
    }
  }

  test('floorDivide, remainder and atan2 (float32, signs mixed)', () => {
    const a = rnd([1000], -10, 10), b = rnd([1000], 0.5, 3, 3).mul(ng.sign(rnd([1000], -1, 1, 4)));
    compareCpuCuda((x, y) => ng.floorDivide(x, y), [a, b]);
    compareCpuCuda((x, y) => ng.remainder(x, y), [a, b]);
    compareCpuCuda((x, y) => binaryRaw(Bin.atan2, x, y), [a, b]);
  });

  test('comparisons write bool (float32, bfloat16, float16, int32)', () => {
    const a = rnd([517]).round(), b = rnd([517], -2, 2, 5).round();
    for (const fn of [ng.eq, ng.ne, ng.lt, ng.le, ng.gt, ng.ge]) {
      exact((x, y) => fn(x, y), [a, b]);
      exact((x, y) => fn(x.int(), y.int()), [a, b]);
      for (const dt of HALF) exact((x, y) => fn(x.to(dt), y.to(dt)), [a, b]);
      exact((x) => fn(x, 0.5), [a]);
    }
  });

  test('int32 arithmetic is exact (floor division and remainder follow Python signs, /0 gives 0)', () => {
    const a = ng.tensor([7, -7, 7, -7, 0, 5, -2147483647, 123456, 9, -9], { dtype: 'int32' });
    const b = ng.tensor([2, 2, -2, -2, 3, 0, 2, -789, 0, 4], { dtype: 'int32' });
    for (const code of [Bin.add, Bin.sub, Bin.mul, Bin.maximum, Bin.minimum, Bin.floorDiv, Bin.remainder]) {
      exact((x, y) => binaryRaw(code, x, y), [a, b]);
    }
    exact((x) => binaryRaw(Bin.floorDiv, x, 3), [a]);
    exact((x) => binaryRaw(Bin.remainder, 5, x), [b]);
    exact((x, y) => x.add(y), [rnd([4099], -1000, 1000).int(), rnd([4099], -1000, 1000, 9).int()]);
  });

  test('bool logical ops and bool arithmetic', () => {
    const a = rnd([1001]).gt(0), b = rnd([1001], -2, 2, 7).gt(0.5);
    exact((x, y) => ng.logicalAnd(x, y), [a, b]);
    exact((x, y) => ng.logicalOr(x, y), [a, b]);
    exact((x) => ng.logicalNot(x), [a]);
    exact((x, y) => binaryRaw(Bin.add, x, y), [a, b]);
    exact((x, y) => binaryRaw(Bin.mul, x, y), [a, b]);
  });

  test('NaN propagates through maximum and minimum as on the CPU', () => {
    const a = ng.tensor([NaN, 1, NaN, -Infinity, 2]), b = ng.tensor([1, NaN, NaN, 0, Infinity]);
    exact((x, y) => x.maximum(y), [a, b]);
    exact((x, y) => x.minimum(y), [a, b]);
  });

  test('broadcasting: rows, columns, scalars and 0-d tensors', () => {
    compareCpuCuda((x, y) => x.add(y), [withGrad(rnd([4, 1, 5])), withGrad(rnd([3, 1], -2, 2, 2))], { grad: true });
    compareCpuCuda((x, y) => x.mul(y), [withGrad(rnd([257, 129])), withGrad(rnd([129], -2, 2, 2))], { grad: true });
    compareCpuCuda((x, y) => x.sub(y), [withGrad(rnd([130, 7])), withGrad(rnd([130, 1], -2, 2, 2))], { grad: true });
    compareCpuCuda((x, y) => x.div(y), [rnd([2, 3, 4, 5]), rnd([], 1, 2, 2)]);
    compareCpuCuda((x) => x.add(2.5), [rnd([1027])]);
    compareCpuCuda((x) => ng.sub(3, x), [rnd([1027])]);
    compareCpuCuda((x) => ng.div(1, x), [rnd([1027], 0.5, 2)]);
    compareCpuCuda((x) => ng.pow(2, x), [rnd([1027])]);
    for (const dt of HALF) compareCpuCuda((x) => x.mul(0.1).add(1), [rounded(rnd([1027]), dt)], { dtype: dt });
  });

  test('strided inputs: transposed, sliced with steps, expanded, 8 dims', () => {
    compareCpuCuda((x, y) => x.transpose(0, 1).add(y), [withGrad(rnd([65, 33])), withGrad(rnd([33, 65], -2, 2, 2))], { grad: true });
    compareCpuCuda((x, y) => x.slice(1, 1, undefined, 3).mul(y.slice(0, 0, 40)), [rnd([40, 120]), rnd([50, 40], -2, 2, 2)]);
    compareCpuCuda((x, y) => x.expand(6, 7, 9).add(y.transpose(0, 2)), [rnd([7, 1]), rnd([9, 7, 6], -2, 2, 2)]);
    compareCpuCuda((x, y) => x.permute(7, 6, 5, 4, 3, 2, 1, 0).mul(y), [rnd([2, 3, 2, 3, 2, 3, 2, 3]), rnd([3, 2, 3, 2, 3, 2, 3, 2], -2, 2, 2)]);
    for (const dt of HALF) {
      compareCpuCuda((x, y) => x.transpose(0, 1).maximum(y), [rounded(rnd([31, 17]), dt), rounded(rnd([17, 31], -2, 2, 2), dt)], { dtype: dt });
    }
  });

  test('views starting at an odd element offset (no 16-byte vector access on misaligned pointers)', () => {
    // slices at offsets 1, 3 and 5 of contiguous storage: the flat path must fall back to
    // scalar loads and stores for every dtype width
    for (const dt of ['float32', 'float64', 'int32', 'bool', 'bfloat16', 'float16'] as DType[]) {
      exact((x, y) => binaryRaw(Bin.maximum, x.to(dt).slice(0, 1, 1000), y.to(dt).slice(0, 3, 1002)), [rnd([1003]), rnd([1003], -2, 2, 2)]);
      exact((x, y) => whereAs(dt, x.slice(0, 5, 1005).gt(0), x.to(dt).slice(0, 1, 1001), y.to(dt).slice(0, 3, 1003)), [rnd([1005]), rnd([1005], -2, 2, 2)]);
      exact((x) => x.to(dt).slice(0, 1, 1000).to('float32'), [rnd([1003]).mul(10)]);
      exact((x) => { const c = x.to(dt).clone(); c.slice(0, 3, 1000).fill_(1); return c; }, [rnd([1003])]);
      exact((x) => x.to(dt).slice(0, 3, 1000).contiguous(), [rnd([1003]).mul(10)]);
    }
    compareCpuCuda((x) => x.slice(0, 1, 1000).exp(), [rnd([1003])]);
    compareCpuCuda((x, y) => x.slice(0, 1, 1000).mul(y.slice(0, 2, 1001)), [rnd([1003]), rnd([1003], -2, 2, 2)]);
  });

  test('in-place updates into strided targets', () => {
    compareCpuCuda((x, y) => { const t = x.clone(); t.transpose(0, 1).add_(y, 0.5); return t; }, [rnd([20, 30]), rnd([30, 20], -2, 2, 2)]);
    compareCpuCuda((x) => { const t = x.clone(); t.slice(0, 0, 10).mul_(3); return t; }, [rnd([20, 30])]);
  });
});

describeCuda('CUDA unary ops', () => {
  // [name, fn, low, high, differentiable]
  const ops: [string, (x: Tensor) => Tensor, number, number, boolean][] = [
    ['neg', (x) => x.neg(), -3, 3, true], ['exp', (x) => x.exp(), -3, 3, true], ['log', (x) => x.log(), 0.1, 5, true],
    ['sqrt', (x) => x.sqrt(), 0.1, 5, true], ['rsqrt', (x) => x.rsqrt(), 0.2, 5, true], ['abs', (x) => x.abs(), -3, 3, true],
    ['tanh', (x) => x.tanh(), -3, 3, true], ['sigmoid', (x) => x.sigmoid(), -6, 6, true], ['relu', (x) => x.relu(), -3, 3, true],
    ['gelu', (x) => x.gelu(), -4, 4, true], ['geluTanh', (x) => x.gelu({ approximate: 'tanh' }), -4, 4, true],
    ['silu', (x) => x.silu(), -5, 5, true], ['sin', (x) => x.sin(), -3, 3, true], ['cos', (x) => x.cos(), -3, 3, true],
    ['reciprocal', (x) => x.reciprocal(), 0.5, 3, true], ['square', (x) => x.square(), -3, 3, true],
    ['sign', (x) => x.sign(), -3, 3, false], ['floor', (x) => x.floor(), -3, 3, false], ['ceil', (x) => x.ceil(), -3, 3, false],
    ['round', (x) => x.round(), -3, 3, false], ['log1p', (x) => ng.log1p(x), -0.5, 3, true],
    ['expm1', (x) => ng.expm1(x), -2, 2, true], ['erf', (x) => ng.erf(x), -2, 2, true],
    ['clamp', (x) => x.clamp(-0.5, 0.75), -2, 2, true], ['affine', (x) => affine(x, 1.5, -0.25), -2, 2, true],
    ['powScalar', (x) => x.pow(3), -2, 2, true], ['powScalar2', (x) => x.pow(2), -2, 2, true],
    ['powFrac', (x) => x.pow(0.5), 0.1, 4, true], ['leakyRelu', (x) => ng.nn.functional.leakyRelu(x, 0.1), -3, 3, true],
  ];
  for (const [name, fn, lo, hi, diff] of ops) {
    for (const n of SIZES) {
      test(`${name} float32 n=${n}`, () => {
        compareCpuCuda(fn, [diff ? withGrad(rnd([n], lo, hi)) : rnd([n], lo, hi)], { grad: diff });
      });
    }
    for (const dt of HALF) {
      test(`${name} ${dt}`, () => {
        const x = rounded(rnd([37, 41], lo, hi), dt);
        // floor/ceil/round/sign are exact in any dtype; the others round their output once
        compareCpuCuda(fn, [diff ? withGrad(x) : x], { dtype: dt, grad: diff, gradAtol: 0.1, gradRtol: 0.05 });
      });
    }
    test(`${name} on a transposed input`, () => {
      compareCpuCuda((x) => fn(x.transpose(0, 1)), [diff ? withGrad(rnd([19, 23], lo, hi)) : rnd([19, 23], lo, hi)], { grad: diff });
    });
  }

  test('float64 unary and backward', () => {
    compareCpuCuda((x) => x.gelu().add(x.tanh()).mul(x.sigmoid()), [withGrad(rnd([513]).double())], { grad: true, dtype: 'float64' });
  });

  test('round is half to even; relu and clamp keep NaN; isnan and isinf', () => {
    const x = ng.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, NaN, Infinity, -Infinity, 0]);
    exact((t) => t.round(), [x]);
    exact((t) => t.relu(), [x]);
    exact((t) => t.clamp(-1, 1), [x]);
    exact((t) => t.sign(), [x]);
    exact((t) => ng.isnan(t), [x]);
    exact((t) => ng.isinf(t), [x]);
    for (const dt of HALF) {
      exact((t) => ng.isnan(t.to(dt)), [x]);
      exact((t) => t.to(dt).round().float(), [x]);
    }
  });

  test('int32 unary: neg, abs, square, sign, clamp, affine, pow', () => {
    const x = ng.tensor([-7, -1, 0, 1, 2, 5, 46340, -46341], { dtype: 'int32' });
    for (const fn of [(t: Tensor) => t.neg(), (t: Tensor) => t.abs(), (t: Tensor) => t.square(), (t: Tensor) => t.sign(),
      (t: Tensor) => t.clamp(-3, 4), (t: Tensor) => affine(t, 3, -2), (t: Tensor) => t.relu()]) {
      exact(fn, [x]);
    }
    // (an int32 power that overflows is undefined on the CPU: keep the cubes in range)
    exact((t) => t.pow(3), [ng.tensor([-7, -1, 0, 1, 2, 5, 1290], { dtype: 'int32' })]);
    exact((t) => unaryRaw(Un.logicalNot, t, 'logicalNot'), [x]);
  });

  test('gelu exact and tanh forms against the formulas', () => {
    const x = ng.linspace(-6, 6, 2001);
    const gx = x.to('cuda');
    const erfForm = x.mul(0.5).mul(ng.erf(x.mul(Math.SQRT1_2)).add(1));
    expectClose(gx.gelu().cpu(), erfForm, { atol: 2e-6, rtol: 1e-5 });
    const k = Math.sqrt(2 / Math.PI);
    const tanhForm = x.mul(0.5).mul(x.add(x.pow(3).mul(0.044715)).mul(k).tanh().add(1));
    expectClose(gx.gelu({ approximate: 'tanh' }).cpu(), tanhForm, { atol: 2e-6, rtol: 1e-5 });
  });
});

describeCuda('CUDA where, maskedFill, fill and copy', () => {
  test('where with broadcast condition and values, every dtype', () => {
    const c = rnd([5, 1, 7]).gt(0), a = rnd([4, 7], -2, 2, 2), b = rnd([5, 4, 1], -2, 2, 3);
    compareCpuCuda((cc, x, y) => ng.where(cc, x, y), [c, withGrad(a), withGrad(b)], { grad: true });
    for (const dt of ['float64', 'int32', 'bool', 'bfloat16', 'float16'] as DType[]) {
      exact((cc, x, y) => whereAs(dt, cc, x, y), [c, a.mul(3), b.mul(3)]);
    }
    exact((cc, x) => ng.where(cc, x, 0.5), [c, a]);
    // c.transpose(0, 2) is [7, 1, 5]; x.transpose(0, 1) is [7, 4, 5]
    exact((cc, x) => ng.where(cc.transpose(0, 2), 1, x.transpose(0, 1)), [c, rnd([4, 7, 5])]);
  });

  test('maskedFill (attention-style masks)', () => {
    const x = rnd([2, 3, 17, 17]);
    const mask = ng.tensor(Array.from({ length: 17 * 17 }, (_, i) => (i % 17 > Math.floor(i / 17) ? 1 : 0)), { dtype: 'bool' }).reshape([17, 17]);
    exact((t, m) => t.maskedFill(m, -Infinity), [x, mask]);
    for (const dt of ['bfloat16', 'float16', 'int32'] as DType[]) {
      // (no 16-bit where on the CPU: its reference fills the exact float32 values and rounds back)
      exact((t, m) => (t.device === 'cpu' && isHalf(dt) ? t.to(dt).float().maskedFill(m, -3).to(dt) : t.to(dt).maskedFill(m, -3)), [x, mask]);
    }
  });

  test('fill_ and zero_ on contiguous and strided targets, every dtype', () => {
    for (const dt of ['float32', 'float64', 'int32', 'bool', 'bfloat16', 'float16'] as DType[]) {
      for (const v of [0, 1, -2.5, 3.14159, 1e10, -1e10]) {
        exact((t) => { const c = t.to(dt).clone(); c.fill_(v); return c; }, [rnd([1027])]);
        exact((t) => { const c = t.to(dt).clone(); c.transpose(0, 1).slice(0, 1, 5).fill_(v); return c; }, [rnd([13, 9])]);
      }
    }
  });

  test('contiguous() of transposed, sliced and expanded views (tiled transpose included)', () => {
    for (const shape of [[1, 1], [31, 33], [64, 64], [129, 1000], [1000, 129]]) {
      exact((t) => t.transpose(0, 1).contiguous(), [rnd(shape)]);
      exact((t) => t.to('bfloat16').transpose(0, 1).contiguous(), [rnd(shape)]);
      exact((t) => t.double().transpose(0, 1).contiguous(), [rnd(shape)]);
      exact((t) => t.gt(0).transpose(0, 1).contiguous(), [rnd(shape)]);
    }
    exact((t) => t.permute(0, 2, 1).contiguous(), [rnd([3, 70, 45])]);
    exact((t) => t.permute(2, 1, 0).contiguous(), [rnd([3, 70, 45])]);
    exact((t) => t.slice(1, 3, 90, 4).contiguous(), [rnd([11, 100])]);
    exact((t) => t.expand(5, 7, 3).contiguous(), [rnd([7, 1])]);
    exact((t) => t.unsqueeze(0).expand(4, 33).contiguous(), [rnd([33])]);
  });

  test('every cast pair matches the CPU (in-range values)', () => {
    const vals = [0, -0, 1, -1, 1.5, -2.5, 2.5, 3.14159, 0.1, 255, 256, -257, 1e-3, 65504, 1234.5678, -99999, 7e6, 1e-30];
    const base = ng.tensor(vals, { dtype: 'float64' });
    const dts: DType[] = ['float32', 'float64', 'int32', 'bool', 'bfloat16', 'float16'];
    for (const from of dts) {
      for (const to of dts) {
        // sources of every dtype, built on the CPU; float16 cannot hold the 7e6 entry
        const src = (from === 'float16' ? base.clamp(-65504, 65504) : base).to(from);
        exact((t) => t.to(to), [src]);
        exact((t) => t.transpose(0, 1).to(to), [src.reshape([3, 6])]);
      }
    }
  });

  test('special float values cast as on the CPU (inf, NaN, rounding to 16 bits)', () => {
    const x = ng.tensor([Infinity, -Infinity, NaN, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 3e38, 1e-40]);
    for (const to of ['float64', 'bool', 'bfloat16', 'float16'] as DType[]) {
      exact((t) => t.to(to).float(), [x]);
    }
  });

  test('float -> int32 saturates on CUDA (NaN -> 0)', () => {
    const x = ng.tensor([1e10, -1e10, Infinity, -Infinity, NaN, 2147483520]).to('cuda');
    expect(Array.from(x.int().dataSync() as Int32Array)).toEqual([2147483647, -2147483648, 2147483647, -2147483648, 0, 2147483520]);
    expect(Array.from(x.to('bfloat16').int().dataSync() as Int32Array).slice(0, 5)).toEqual([2147483647, -2147483648, 2147483647, -2147483648, 0]);
  });

  test('copy_ across dtypes into strided destinations', () => {
    for (const dt of ['bfloat16', 'float16', 'int32', 'float64'] as DType[]) {
      exact((d, s) => { const c = d.to(dt).clone(); c.transpose(0, 1).copy_(s); return c; }, [rnd([6, 5]).mul(10), rnd([5, 6], -20, 20, 2)]);
    }
  });
});

describeCuda('CUDA elementwise errors', () => {
  test('mixed devices are refused with a clear message', () => {
    const a = rnd([4]), b = rnd([4]).to('cuda');
    expect(() => a.add(b)).toThrow(/device/);
    const out = ng.zeros([4]).to('cuda');
    expect(() => native.binary(Bin.add, [4], out.storage.data as never, 0, [1], a.storage.data, 0, [1], b.storage.data as never, 0, [1]))
      .toThrow(/different devices/);
  });

  test('dtype errors name the op', () => {
    const x = rnd([4]).to('cuda'), i = rnd([4]).int().to('cuda');
    expect(() => native.binary(Bin.add, [4], x.storage.data as never, 0, [1], x.storage.data as never, 0, [1], i.storage.data as never, 0, [1]))
      .toThrow(/binary: operands must have the same dtype/);
    expect(() => native.binary(Bin.lt, [4], x.storage.data as never, 0, [1], x.storage.data as never, 0, [1], x.storage.data as never, 0, [1]))
      .toThrow(/comparison output must be bool/);
    expect(() => native.unaryBackward(0, [4], i.storage.data as never, 0, [1], i.storage.data as never, 0, [1], i.storage.data as never, 0, [1], 0))
      .toThrow(/unaryBackward/);
    expect(() => native.unary(99, [4], x.storage.data as never, 0, [1], x.storage.data as never, 0, [1], 0, 0)).toThrow(/unary: unknown op 99/);
    expect(() => native.copy([5], x.storage.data as never, 0, [1], x.storage.data as never, 0, [1])).toThrow(/outside its storage/);
  });
});
