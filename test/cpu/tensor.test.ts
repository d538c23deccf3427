// Tensor creation, reading values back, printing.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { expectClose } from '../helpers.js';

describe('tensor() from nested arrays', () => {
  it('infers the shape and stores row-major float32 by default', () => {
    const t = ng.tensor([[1, 2, 3], [4, 5, 6]]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.strides).toEqual([3, 1]);
    expect(Array.from(t.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
    expect(t.tolist()).toEqual([[1, 2, 3], [4, 5, 6]]);
  });

  it('handles 3-d data, empty arrays and a 0-d number', () => {
    const t = ng.tensor([[[1], [2]], [[3], [4]], [[5], [6]]]);
    expect(t.shape).toEqual([3, 2, 1]);
    expect(t.tolist()).toEqual([[[1], [2]], [[3], [4]], [[5], [6]]]);
    const e = ng.tensor([[], []]);
    expect(e.shape).toEqual([2, 0]);
    expect(e.numel).toBe(0);
    expect(e.tolist()).toEqual([[], []]);
    const s = ng.tensor(3.5);
    expect(s.shape).toEqual([]);
    expect(s.item()).toBe(3.5);
    expect(s.tolist()).toBe(3.5);
  });

  it('rejects ragged arrays and non-numeric leaves', () => {
    expect(() => ng.tensor([[1, 2], [3]])).toThrow(/nodegrad: tensor: ragged/);
    expect(() => ng.tensor([[1, 2], 3] as never)).toThrow(/nodegrad: tensor: ragged/);
    expect(() => ng.tensor([1, [2, 3]] as never)).toThrow(/nodegrad: tensor: ragged/);
    expect(() => ng.tensor([['a']] as never)).toThrow(/nodegrad: tensor: values must be numbers/);
    expect(() => ng.tensor('x' as never)).toThrow(/nodegrad: tensor:/);
  });

  it('booleans give a bool tensor; dtype option converts', () => {
    const b = ng.tensor([true, false, true]);
    expect(b.dtype).toBe('bool');
    expect(b.tolist()).toEqual([true, false, true]);
    expect(Array.from(b.dataSync())).toEqual([1, 0, 1]);
    const i = ng.tensor([[1.7, -2.2]], { dtype: 'int32' });
    expect(i.dtype).toBe('int32');
    expect(i.tolist()).toEqual([[1, -2]]);
    const d = ng.tensor([0.1, 0.2], { dtype: 'float64' });
    expect(d.dtype).toBe('float64');
    expect(Array.from(d.dataSync())).toEqual([0.1, 0.2]);
    expect(ng.tensor([0, 2, -1], { dtype: 'bool' }).tolist()).toEqual([false, true, true]);
    expect(ng.tensor(true).dtype).toBe('bool');
    expect(ng.tensor(7, { dtype: 'int32' }).item()).toBe(7);
  });

  it('shape option reshapes nested data without leaving an extra live tensor', () => {
    const before = ng.memory().numTensors;
    const t = ng.tensor([1, 2, 3, 4, 5, 6], { shape: [3, 2] });
    expect(t.tolist()).toEqual([[1, 2], [3, 4], [5, 6]]);
    expect(ng.memory().numTensors - before).toBe(1);
  });
});

describe('tensor() from typed arrays', () => {
  it('keeps the array type and copies the data', () => {
    const src = new Float64Array([1, 2, 3, 4, 5, 6]);
    const t = ng.tensor(src, { shape: [2, 3] });
    expect(t.dtype).toBe('float64');
    expect(t.shape).toEqual([2, 3]);
    src[0] = 99;
    expect(t.tolist()).toEqual([[1, 2, 3], [4, 5, 6]]);
    expect(ng.tensor(new Int32Array([1, -2])).dtype).toBe('int32');
    expect(ng.tensor(new Uint8Array([1, 0])).dtype).toBe('bool');
    expect(ng.tensor(new Float32Array(4)).shape).toEqual([4]);
  });

  it('converts to the requested dtype', () => {
    const t = ng.tensor(new Float32Array([1.5, -2.5]), { dtype: 'int32' });
    expect(t.dtype).toBe('int32');
    expect(t.tolist()).toEqual([1, -2]);
  });

  it('rejects a shape that does not match the length and unsupported arrays', () => {
    expect(() => ng.tensor(new Float32Array(5), { shape: [2, 3] })).toThrow(/nodegrad: tensor: shape \[2,3\] holds 6 elements but the array has 5/);
    expect(() => ng.tensor(new Int16Array(2) as never)).toThrow(/nodegrad: tensor: unsupported typed array/);
  });
});

describe('creation functions', () => {
  it('zeros, ones, full (all dtypes)', () => {
    expect(ng.zeros([2, 2]).tolist()).toEqual([[0, 0], [0, 0]]);
    expect(ng.ones([3], { dtype: 'int32' }).tolist()).toEqual([1, 1, 1]);
    expect(ng.full([2], 2.5, { dtype: 'float64' }).tolist()).toEqual([2.5, 2.5]);
    expect(ng.full([2], 3, { dtype: 'bool' }).tolist()).toEqual([true, true]);
    expect(ng.full([], -1).item()).toBe(-1);
    expect(ng.zeros([0, 3]).numel).toBe(0);
    const like = ng.onesLike(ng.zeros([2, 1], { dtype: 'float64' }));
    expect(like.dtype).toBe('float64');
    expect(like.tolist()).toEqual([[1], [1]]);
    expect(ng.fullLike(ng.zeros([2]), 7).tolist()).toEqual([7, 7]);
    expect(ng.zerosLike(ng.ones([1, 2], { dtype: 'int32' })).dtype).toBe('int32');
  });

  it('arange: integer and fractional steps, negative steps, dtypes', () => {
    const a = ng.arange(5);
    expect(a.dtype).toBe('int32');
    expect(a.tolist()).toEqual([0, 1, 2, 3, 4]);
    expect(ng.arange(2, 11, 3).tolist()).toEqual([2, 5, 8]);
    expect(ng.arange(5, 0, -2).tolist()).toEqual([5, 3, 1]);
    const f = ng.arange(0, 1, 0.25);
    expect(f.dtype).toBe('float32');
    expect(f.tolist()).toEqual([0, 0.25, 0.5, 0.75]);
    expect(ng.arange(0, 3, 1, { dtype: 'float64' }).dtype).toBe('float64');
    expect(ng.arange(3, 3).numel).toBe(0);
    expect(() => ng.arange(0, 5, 0)).toThrow(/nodegrad: arange: step must be non-zero/);
  });

  it('linspace includes both ends', () => {
    expectClose(ng.linspace(0, 1, 5), [0, 0.25, 0.5, 0.75, 1]);
    expectClose(ng.linspace(-2, 2, 3, { dtype: 'float64' }), [-2, 0, 2], { atol: 0, rtol: 0 });
    expect(ng.linspace(3, 9, 1).tolist()).toEqual([3]);
    expect(ng.linspace(0, 1, 0).numel).toBe(0);
  });

  it('eye, square and rectangular', () => {
    expect(ng.eye(3).tolist()).toEqual([[1, 0, 0], [0, 1, 0], [0, 0, 1]]);
    expect(ng.eye(2, 3, { dtype: 'int32' }).tolist()).toEqual([[1, 0, 0], [0, 1, 0]]);
    expect(ng.eye(3, 2).tolist()).toEqual([[1, 0], [0, 1], [0, 0]]);
  });

  it('requiresGrad is accepted for floats only', () => {
    expect(ng.zeros([2], { requiresGrad: true }).requiresGrad).toBe(true);
    expect(() => ng.zeros([2], { dtype: 'int32', requiresGrad: true })).toThrow(/nodegrad: full: only floating-point/);
    expect(() => ng.tensor([1]).int().requiresGrad_()).toThrow(/nodegrad: requiresGrad_:/);
  });
});

describe('reading values', () => {
  it('data() resolves to the same values as dataSync()', async () => {
    const t = ng.tensor([[1, 2], [3, 4]]).T;
    const d = await t.data();
    expect(Array.from(d)).toEqual([1, 3, 2, 4]);
    expect(Array.from(t.dataSync())).toEqual([1, 3, 2, 4]);
    expect(d).toBeInstanceOf(Float32Array);
  });

  it('dataSync() returns a copy: writing it does not change the tensor', () => {
    const t = ng.tensor([1, 2]);
    const d = t.dataSync();
    d[0] = 50;
    expect(t.tolist()).toEqual([1, 2]);
  });

  it('item() reads one element of any shape with numel 1', () => {
    expect(ng.tensor([[4]]).item()).toBe(4);
    expect(ng.tensor([[1, 2], [3, 4]]).select(1, 0).select(0, 1).item()).toBe(3);
    expect(ng.tensor(true).item()).toBe(1);
  });

  it('tolist() of views and of int / bool tensors', () => {
    const t = ng.arange(6).reshape(2, 3);
    expect(t.T.tolist()).toEqual([[0, 3], [1, 4], [2, 5]]);
    expect(t.slice(1, 0, 3, 2).tolist()).toEqual([[0, 2], [3, 5]]);
    expect(t.gt(2).tolist()).toEqual([[false, false, false], [true, true, true]]);
  });
});

describe('toString', () => {
  it('shows values, shape, dtype and device', () => {
    const s = ng.tensor([[1, 2.123456], [3, 4]]).toString();
    expect(s).toBe('Tensor([[1,2.1235],[3,4]], shape=[2,2], dtype=float32, device=cpu)');
  });
  it('prints NaN and infinities as themselves', () => {
    expect(ng.tensor([NaN, Infinity, -Infinity]).toString()).toBe('Tensor([NaN,Infinity,-Infinity], shape=[3], dtype=float32, device=cpu)');
  });
  it('marks tensors that require grad or have a grad function', () => {
    const x = ng.tensor([1], { requiresGrad: true });
    expect(x.toString()).toMatch(/requiresGrad=true/);
    expect(x.mul(2).toString()).toMatch(/gradFn=mul/);
  });
  it('summarises large tensors and names disposed ones', () => {
    const big = ng.arange(5000);
    expect(big.toString()).toMatch(/^Tensor\(\[0, 1, 2, 3, 4, 5, \.\.\.\], shape=\[5000\], dtype=int32/);
    big.dispose();
    expect(big.toString()).toBe('Tensor(disposed, shape=[5000], dtype=int32)');
  });
});

describe('dtype conversion', () => {
  it('to(), float(), double(), int(), bool()', () => {
    const t = ng.tensor([1.9, -1.9, 0]);
    expect(t.int().tolist()).toEqual([1, -1, 0]);
    expect(t.bool().tolist()).toEqual([true, true, false]);
    expect(t.double().dtype).toBe('float64');
    expect(t.to('float32')).toBe(t);
    expect(t.to({ dtype: 'int32' }).dtype).toBe('int32');
    expect(ng.tensor([true, false]).float().tolist()).toEqual([1, 0]);
  });

  it('bfloat16 keeps representable values and rounds to nearest even', () => {
    // 1 + 2^-8 is a tie between 1 and 1 + 2^-7 (rounds to even: 1); 1 + 3*2^-9 rounds up
    const t = ng.tensor([1, -2.5, 0.15625, 1 + 2 ** -8, 1 + 3 * 2 ** -9, NaN]);
    const back = t.to('bfloat16').float().tolist() as number[];
    expect(back.slice(0, 5)).toEqual([1, -2.5, 0.15625, 1, 1 + 2 ** -7]);
    expect(Number.isNaN(back[5])).toBe(true);
  });

  it('bfloat16 tensors read back as numbers; dataSync keeps the raw 16-bit patterns', () => {
    const b = ng.tensor([[1.5, -2]]).to('bfloat16');
    expect(b.tolist()).toEqual([[1.5, -2]]);
    expect(b.select(1, 1).item()).toBe(-2);
    expect(b.toString()).toBe('Tensor([[1.5,-2]], shape=[1,2], dtype=bfloat16, device=cpu)');
    expect(Array.from(b.dataSync())).toEqual([0x3fc0, 0xc000]);
  });

  it('float16 conversion stores IEEE half bits (not bfloat16) and rounds to nearest even', () => {
    const vals = [1, -2, 65504, 2 ** -24, Infinity, 0.1, 1 + 2 ** -11, 1 + 3 * 2 ** -12, 65520, 2 ** -25, 3 * 2 ** -26, -0];
    const h = ng.tensor(vals).to('float16');
    expect(h.dtype).toBe('float16');
    expect(Array.from(h.dataSync())).toEqual([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x2e66, 0x3c00, 0x3c01, 0x7c00, 0x0000, 0x0001, 0x8000]);
    const back = h.float().tolist() as number[];
    expect(back).toEqual([1, -2, 65504, 2 ** -24, Infinity, Math.fround(0.0999755859375), 1, 1 + 2 ** -10, Infinity, 0, 2 ** -24, -0]);
    expect(h.select(0, 2).item()).toBe(65504);
    expect(ng.tensor([NaN]).to('float16').float().item()).toBeNaN();
    // float64 and int32 sources and targets, and non-contiguous sources
    expect(ng.tensor([[1.5, 3], [-4, 0.25]], { dtype: 'float64' }).T.to('float16').to('int32').tolist()).toEqual([[1, -4], [3, 0]]);
    expect(ng.tensor([7, -3], { dtype: 'int32' }).to('float16').to('float64').tolist()).toEqual([7, -3]);
  });

  it('float16 full, fill_ and copy_ use half bits', () => {
    const f = ng.full([2], 1, { dtype: 'float16' });
    expect(Array.from(f.dataSync())).toEqual([0x3c00, 0x3c00]);
    f.fill_(-2);
    expect(Array.from(f.dataSync())).toEqual([0xc000, 0xc000]);
    f.copy_(ng.tensor([0.5, 65504]));
    expect(f.tolist()).toEqual([0.5, 65504]);
    const g = ng.zeros([2]);
    g.copy_(f);
    expect(g.tolist()).toEqual([0.5, 65504]);
    expect(ng.zeros([3], { dtype: 'float16' }).toString()).toBe('Tensor([0,0,0], shape=[3], dtype=float16, device=cpu)');
  });
});

describe('int32 values from JavaScript numbers', () => {
  const range = /expected a finite number in \[-2147483648, 2147483647\]/;
  it('fractions truncate toward zero, as in PyTorch', () => {
    expect(ng.tensor([1.5, -2.7, 2147483647.9, -2147483648.9], { dtype: 'int32' }).tolist()).toEqual([1, -2, 2147483647, -2147483648]);
    expect(ng.tensor(new Float64Array([1.9, -0.5]), { dtype: 'int32' }).tolist()).toEqual([1, 0]);
    expect(ng.full([2], -1.7, { dtype: 'int32' }).tolist()).toEqual([-1, -1]);
    expect(ng.tensor(2.5, { dtype: 'int32' }).item()).toBe(2);
  });

  it('NaN, infinities and values outside int32 throw, naming the op, the index and the value', () => {
    expect(() => ng.tensor([1.5, 3e10, NaN], { dtype: 'int32' }))
      .toThrow(/^nodegrad: tensor: value at index \[1\] cannot be converted to int32 \(got 30000000000; expected a finite number/);
    expect(() => ng.tensor([[0, 1], [NaN, 2]], { dtype: 'int32' })).toThrow(/nodegrad: tensor: value at index \[1,0\] cannot be converted to int32 \(got NaN/);
    expect(() => ng.tensor([2147483648], { dtype: 'int32' })).toThrow(range);
    expect(() => ng.tensor([-Infinity], { dtype: 'int32' })).toThrow(/got -Infinity/);
    expect(() => ng.tensor(new Float32Array([0, Infinity]), { dtype: 'int32' })).toThrow(/nodegrad: tensor: value at index 1 cannot be converted to int32 \(got Infinity/);
    expect(() => ng.tensor(new Float64Array([-3e9]), { dtype: 'int32' })).toThrow(/got -3000000000/);
    expect(() => ng.tensor(NaN, { dtype: 'int32' })).toThrow(/nodegrad: tensor: value cannot be converted to int32 \(got NaN/);
    expect(() => ng.full([2], 3e10, { dtype: 'int32' })).toThrow(/nodegrad: full: value cannot be converted to int32 \(got 30000000000/);
    expect(() => ng.full([2], NaN, { dtype: 'int32' })).toThrow(/nodegrad: full: .*got NaN/);
    expect(() => ng.zeros([2], { dtype: 'int32' }).fill_(Infinity)).toThrow(/nodegrad: fill_: value cannot be converted to int32 \(got Infinity/);
    expect(() => ng.maskedFill(ng.zeros([2], { dtype: 'int32' }), ng.ones([2]).gt(0), 3e10)).toThrow(/nodegrad: maskedFill: .*got 30000000000/);
    expect(() => ng.arange(0, 3e10, 1e10, { dtype: 'int32' })).toThrow(/nodegrad: arange: value at index \[2\] cannot be converted to int32 \(got 20000000000/);
    expect(() => ng.arange(2 ** 31 - 1, 2 ** 31 + 1)).toThrow(/nodegrad: arange: value at index \[1\]/);
    expect(() => ng.linspace(0, 3e10, 3, { dtype: 'int32' })).toThrow(/nodegrad: linspace: value at index \[2\]/);
    expect(() => ng.randint(0, 2 ** 40, [3])).toThrow(/nodegrad: randint: the range \[0, 1099511627776\) does not fit in int32/);
  });

  it('bool takes any number: nonzero and NaN are true, as in PyTorch', () => {
    expect(ng.tensor([NaN, 0, -0, Infinity, 0.1], { dtype: 'bool' }).tolist()).toEqual([true, false, false, true, true]);
    expect(ng.tensor(new Float32Array([NaN, 0, 3e10]), { dtype: 'bool' }).tolist()).toEqual([true, false, true]);
    expect(ng.full([1], NaN, { dtype: 'bool' }).tolist()).toEqual([true]);
  });

  it('a large integer next to an int32 tensor in where() promotes to float32 instead of wrapping', () => {
    const r = ng.where(ng.tensor([true, false]), ng.zeros([2], { dtype: 'int32' }), 3e10);
    expect(r.dtype).toBe('float32');
    expect(r.tolist()).toEqual([0, Math.fround(3e10)]);
  });
});

describe('hand-built views are checked against their storage', () => {
  const storage = (): ng.Tensor['storage'] => ng.zeros([4]).storage;
  it('a view reaching outside the storage throws instead of reading zeros', () => {
    expect(() => new ng.Tensor(storage(), [10], [1], 0)).toThrow(/^nodegrad: Tensor: view reaches elements 0\.\.9, outside its storage of 4 elements \(got shape \[10\], strides \[1\], offset 0\)/);
    expect(() => new ng.Tensor(storage(), [2], [1], 3)).toThrow(/view reaches elements 3\.\.4, outside its storage of 4/);
    expect(() => new ng.Tensor(storage(), [2, 2], [3, 1], 0)).toThrow(/view reaches elements 0\.\.4/);
    expect(() => new ng.Tensor(storage(), [2], [-1], 0)).toThrow(/view reaches elements -1\.\.0/);
  });

  it('shapes, strides and offsets must be integers (shape non-negative)', () => {
    expect(() => new ng.Tensor(storage(), [-1], [1], 0)).toThrow(/nodegrad: Tensor: shape must hold non-negative integers/);
    expect(() => new ng.Tensor(storage(), [1.5], [1], 0)).toThrow(/nodegrad: Tensor: shape must hold/);
    expect(() => new ng.Tensor(storage(), [2], [0.5], 0)).toThrow(/nodegrad: Tensor: shape must hold non-negative integers and strides integers/);
    expect(() => new ng.Tensor(storage(), [2], [NaN], 0)).toThrow(/nodegrad: Tensor:/);
    expect(() => new ng.Tensor(storage(), [2, 2], [1], 0)).toThrow(/nodegrad: Tensor: shape and strides must be arrays of one length/);
    expect(() => new ng.Tensor(storage(), [2], [1], -1)).toThrow(/nodegrad: Tensor: offset must be a non-negative integer \(got -1\)/);
    expect(() => new ng.Tensor(storage(), [2], [1], 0.5)).toThrow(/nodegrad: Tensor: offset must be/);
    expect(() => new ng.Tensor({} as never, [1], [1], 0)).toThrow(/nodegrad: Tensor: storage must be a Storage/);
  });

  it('views inside the storage still work, and an empty view may sit at the end', () => {
    const s = ng.tensor([1, 2, 3, 4]).storage;
    expect(new ng.Tensor(s, [2, 2], [1, 2], 0).tolist()).toEqual([[1, 3], [2, 4]]);
    expect(new ng.Tensor(s, [2], [0], 3).tolist()).toEqual([4, 4]);
    expect(new ng.Tensor(s, [0, 3], [3, 1], 4).tolist()).toEqual([]);
    expect(ng.tensor([1, 2, 3, 4]).narrow(0, 4, 0).shape).toEqual([0]);
  });

  it('saveSafetensors cannot be handed a view whose header disagrees with its bytes', () => {
    expect(() => ng.io.serializeSafetensors({ a: new ng.Tensor(storage(), [8], [1], 0) })).toThrow(/nodegrad: Tensor: view reaches/);
  });
});
