// Bad input gives a clear `nodegrad: <op>: ...` error, never a crash: disposed tensors,
// shapes, dims, sizes, seeds, dtypes, devices, and raw calls into the native layer.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { native } from '../../lib/native.js';

describe('disposed tensors', () => {
  it('every kind of use of a disposed tensor throws and names the op', () => {
    const t = ng.ones([2, 3]);
    const other = ng.ones([2, 3]);
    t.dispose();
    expect(() => ng.add(t, other)).toThrow(/nodegrad: add: tensor of shape \[2,3\] \(float32\) was disposed/);
    expect(() => ng.add(other, t)).toThrow(/nodegrad: add: .*was disposed/);
    expect(() => t.mul(2)).toThrow(/nodegrad: mul: .*was disposed/);
    expect(() => t.exp()).toThrow(/nodegrad: exp: .*was disposed/);
    expect(() => t.sum()).toThrow(/nodegrad: sum: .*was disposed/);
    expect(() => t.reshape(6)).toThrow(/nodegrad: reshape: .*was disposed/);
    expect(() => t.T).toThrow(/nodegrad: permute: .*was disposed/);
    expect(() => t.dataSync()).toThrow(/nodegrad: data: .*was disposed/);
    expect(() => t.item()).toThrow(/nodegrad: item: .*was disposed/);
    expect(() => t.tolist()).toThrow(/nodegrad: data: .*was disposed/);
    expect(() => other.copy_(t)).toThrow(/nodegrad: copy_: .*was disposed/);
    expect(() => ng.where(ng.ones([2, 3]).gt(0), t, 0)).toThrow(/nodegrad: .*was disposed/);
    expect(() => t.backward()).toThrow(/nodegrad: backward: the tensor was disposed/);
  });

  it('a view stays usable after its base is disposed', () => {
    const base = ng.tensor([1, 2, 3, 4]);
    const v = base.reshape(2, 2);
    base.dispose();
    expect(v.sum().item()).toBe(10);
  });
});

describe('values and shapes', () => {
  it('item() on a multi-element tensor', () => {
    expect(() => ng.ones([2, 2]).item()).toThrow(/nodegrad: item: tensor has 4 elements, expected exactly 1 \(shape \[2,2\]\)/);
    expect(() => ng.zeros([0]).item()).toThrow(/nodegrad: item: tensor has 0 elements/);
  });

  it('broadcasting mismatches name both shapes', () => {
    expect(() => ng.add(ng.ones([2, 3]), ng.ones([4, 3]))).toThrow(/nodegrad: add: shapes \[2,3\] and \[4,3\] cannot be broadcast together \(dim 0: 2 vs 4\)/);
    expect(() => ng.mul(ng.ones([3]), ng.ones([2, 2]))).toThrow(/nodegrad: mul: shapes \[3\] and \[2,2\] cannot be broadcast/);
    expect(() => ng.where(ng.ones([2]).gt(0), ng.ones([3]), 0)).toThrow(/nodegrad: where: shapes \[2\] and \[3\] cannot be broadcast/);
    expect(() => ng.lt(ng.ones([5, 1, 2]), ng.ones([3, 3]))).toThrow(/nodegrad: lt: shapes \[5,1,2\] and \[3,3\]/);
  });

  it('reshape and view to an incompatible size', () => {
    expect(() => ng.ones([2, 3]).reshape(4, 2)).toThrow(/nodegrad: reshape: shape \[4,2\] is invalid for input of size 6 \(shape \[2,3\]\)/);
    expect(() => ng.ones([2, 3]).view(7)).toThrow(/nodegrad: view: shape \[7\] is invalid for input of size 6/);
    expect(() => ng.ones([2, 3]).reshape(-1, 4)).toThrow(/nodegrad: reshape: shape \[-1,4\] is invalid/);
    expect(() => ng.ones([2, 3]).reshape(2, -2)).toThrow(/nodegrad: reshape: invalid shape \[2,-2\]/);
    expect(() => ng.ones([2, 3]).reshape(2, 1.5)).toThrow(/nodegrad: reshape: invalid shape/);
  });

  it('negative, fractional and non-numeric sizes', () => {
    expect(() => ng.zeros([2, -1])).toThrow(/nodegrad: full: dimensions must be non-negative integers \(got \[2,-1\]\)/);
    expect(() => ng.ones([1.5])).toThrow(/nodegrad: full: dimensions must be non-negative integers/);
    expect(() => ng.zeros(['3'] as never)).toThrow(/nodegrad: full: dimensions must be non-negative integers/);
    expect(() => ng.zeros(3 as never)).toThrow(/nodegrad: full: shape must be an array/);
    expect(() => ng.rand([NaN])).toThrow(/nodegrad: rand: dimensions must be non-negative integers/);
    expect(() => ng.zeros([1, 1, 1, 1, 1, 1, 1, 1, 1])).toThrow(/nodegrad: full: at most 8 dimensions/);
    expect(() => ng.linspace(0, 1, -2)).toThrow(/nodegrad: linspace: steps must be a non-negative integer/);
    expect(() => ng.arange(0, Infinity)).toThrow(/nodegrad: arange: end must be a finite number/);
    expect(() => ng.ones([2]).expand(-2)).toThrow(/nodegrad: expand:/);
  });
});

describe('dims', () => {
  const t = (): ng.Tensor => ng.ones([2, 3]);
  it('out of range', () => {
    expect(() => t().sum(2)).toThrow(/nodegrad: sum: dim 2 is out of range for a tensor with 2 dims/);
    expect(() => t().transpose(0, 2)).toThrow(/nodegrad: transpose: dim 2 is out of range/);
    expect(() => t().select(-3, 0)).toThrow(/nodegrad: select: dim -3 is out of range/);
    expect(() => t().squeeze(4)).toThrow(/nodegrad: squeeze: dim 4 is out of range/);
    expect(() => t().slice(2, 0)).toThrow(/nodegrad: slice: dim 2 is out of range/);
    expect(() => t().size(3)).toThrow(/nodegrad: size: dim 3 is out of range/);
    expect(() => ng.cat([t(), t()], 2)).toThrow(/nodegrad: cat: dim 2 is out of range/);
    expect(() => t().flatten(0, 5)).toThrow(/nodegrad: flatten: dim 5 is out of range/);
  });
  it('non-integer', () => {
    expect(() => t().sum(0.5)).toThrow(/nodegrad: sum: dim must be an integer \(got 0.5\)/);
    expect(() => t().transpose(0, NaN)).toThrow(/nodegrad: transpose: dim must be an integer/);
    expect(() => t().unsqueeze('1' as never)).toThrow(/nodegrad: unsqueeze: dim must be an integer/);
    expect(() => t().argmax(1.5)).toThrow(/nodegrad: argmax: dim must be an integer/);
    expect(() => t().select(0, 0.5)).toThrow(/nodegrad: select: index 0.5 is out of range/);
  });
});

describe('seeds, dtypes, devices', () => {
  it('manualSeed rejects NaN and negative seeds', () => {
    expect(() => ng.manualSeed(NaN)).toThrow(/nodegrad: manualSeed: seed must be a non-negative integer \(got NaN\)/);
    expect(() => ng.manualSeed(-5)).toThrow(/nodegrad: manualSeed: seed must be a non-negative integer \(got -5\)/);
    expect(() => ng.manualSeed(Infinity)).toThrow(/nodegrad: manualSeed:/);
  });

  it('unknown dtype', () => {
    expect(() => ng.zeros([2], { dtype: 'int64' as never })).toThrow(/nodegrad: full: unknown dtype "int64" \(expected one of float32, float64, int32, bool, bfloat16, float16\)/);
    expect(() => ng.tensor([1], { dtype: 'half' as never })).toThrow(/nodegrad: tensor: unknown dtype "half"/);
    expect(() => ng.ones([1]).to('complex64' as never)).toThrow(/nodegrad: to: unknown dtype "complex64"/);
    expect(() => ng.randn([2], { dtype: 'uint8' as never })).toThrow(/nodegrad: randn: unknown dtype/);
  });

  it('unknown device', () => {
    expect(() => ng.zeros([2], { device: 'tpu' as never })).toThrow(/nodegrad: full: unknown device "tpu" \(expected 'cpu' or 'cuda\[:N\]'\)/);
    expect(() => ng.tensor([1], { device: 'gpu' as never })).toThrow(/nodegrad: tensor: unknown device "gpu"/);
    expect(() => ng.ones([1]).to({ device: 'cuda0' as never })).toThrow(/nodegrad: to: unknown device "cuda0"/);
  });

  it.runIf(!ng.info().cuda.available)("'cuda' without a usable GPU gives a clear error, not a crash", () => {
    expect(() => ng.zeros([2], { device: 'cuda' })).toThrow(/nodegrad: full: device 'cuda' is not available/);
    expect(() => ng.randn([2], { device: 'cuda:0' })).toThrow(/nodegrad: randn: device 'cuda:0' is not available/);
    expect(() => ng.ones([2]).to('cuda')).toThrow(/nodegrad: to: device 'cuda' is not available/);
    expect(() => ng.ones([2]).cuda()).toThrow(/nodegrad: to: device 'cuda' is not available/);
    expect(() => ng.tensor([1, 2], { device: 'cuda:1' })).toThrow(/nodegrad: tensor: device 'cuda:1' is not available/);
  });

  it('operands must be tensors or numbers', () => {
    expect(() => ng.add(ng.ones([1]), 'x' as never)).toThrow(/nodegrad: add: /);
    expect(() => ng.add(1, 2)).toThrow(/nodegrad: add: at least one operand must be a Tensor/);
    expect(() => ng.exp([1, 2] as never)).toThrow(/nodegrad: exp: input must be a Tensor \(got object\)/);
    expect(() => ng.sum(null as never)).toThrow(/nodegrad: sum: input must be a Tensor \(got null\)/);
  });
});

describe('the native layer checks every view against its buffer', () => {
  const f32 = (n: number): Float32Array => new Float32Array(n);

  it('an offset or stride that reaches past the storage throws instead of crashing', () => {
    const out = f32(4), a = f32(4), b = f32(4);
    expect(() => native.binary(0, [4], out, 0, [1], a, 1, [1], b, 0, [1])).toThrow(/nodegrad: binary: a: view reaches outside its storage/);
    expect(() => native.binary(0, [4], out, 0, [1], a, 0, [1], b, 0, [2])).toThrow(/nodegrad: binary: b: view reaches outside its storage/);
    expect(() => native.binary(0, [4], out, -1, [1], a, 0, [1], b, 0, [1])).toThrow(/nodegrad: binary: out: view reaches outside its storage/);
    expect(() => native.unary(0, [2, 2], out, 0, [2, 1], a, 0, [-1, 1], 0, 0)).toThrow(/nodegrad: unary: x: view reaches outside/);
    expect(() => native.copy([5], out, 0, [1], a, 0, [1])).toThrow(/nodegrad: copy: dst: view reaches outside/);
    expect(() => native.fill([2], out, 1e15, [1], 0)).toThrow(/nodegrad: fill: out: view reaches outside/);
    expect(() => native.where([4], out, 0, [1], new Uint8Array(3), 0, [1], a, 0, [0], b, 0, [0])).toThrow(/nodegrad: where: condition: view reaches outside/);
  });

  it('strides and sizes chosen to overflow 64-bit arithmetic are rejected', () => {
    const out = f32(4), a = f32(4);
    const huge = 2 ** 52;
    expect(() => native.unary(0, [4], out, 0, [1], a, 0, [huge * 2 - 1], 0, 0)).toThrow(/nodegrad: unary: x: /);
    expect(() => native.unary(0, [huge, huge, 4], out, 0, [0, 0, 1], a, 0, [0, 0, 1], 0, 0)).toThrow(/nodegrad: unary: out: too many elements/);
    expect(() => native.unary(0, [3], out, 0, [1], a, 0, [huge * 1.5], 0, 0)).toThrow(/nodegrad: unary: x: /);
    expect(() => native.reduce(0, a, 2 ** 40, 2 ** 40, 2 ** 40, out, null, 0)).toThrow(/nodegrad: reduce: sizes M\*R\*I overflow/);
    expect(() => native.reduce(0, a, 2, 3, 1, out, null, 0)).toThrow(/nodegrad: reduce: input: view reaches outside/);
  });

  it('wrong argument kinds and dtype mixes are errors', () => {
    const out = f32(2);
    expect(() => native.binary(0, [2], out, 0, [1], new Float64Array(2), 0, [1], f32(2), 0, [1])).toThrow(/nodegrad: binary: operands must have the same dtype/);
    expect(() => native.unary(0, [2], out, 0.5, [1], f32(2), 0, [1], 0, 0)).toThrow(/nodegrad: unary: out must be an integer/);
    expect(() => native.unary(0, [2], [1, 2] as never, 0, [1], f32(2), 0, [1], 0, 0)).toThrow(/nodegrad: unary: out must be a typed array/);
    expect(() => native.unary(999, [2], out, 0, [1], f32(2), 0, [1], 0, 0)).toThrow(/nodegrad: unary: unknown op 999/);
    expect(() => native.binary(0, [2, 2], out, 0, [1], f32(2), 0, [1], f32(2), 0, [1])).toThrow(/nodegrad: binary: out: shape and strides differ in length/);
    expect(() => native.fill([-1], out, 0, [1], 0)).toThrow(/nodegrad: fill: out: negative dimension/);
    expect(() => native.randomFill(0, out, 3, 0, 0, 0, 1)).toThrow(/nodegrad: random: out: view reaches outside its storage/);
    expect(() => native.randomFill(9, out, 2, 0, 0, 0, 1)).toThrow(/nodegrad: random: unknown kind/);
    expect(() => native.reduce(4, f32(4), 2, 2, 1, f32(2), null, 0)).toThrow(/nodegrad: reduce: out has dtype float32, expected int32/);
  });

  it('an empty view may carry any offset without touching memory', () => {
    const out = f32(1);
    expect(() => native.fill([0], out, 1e15, [1], 5)).not.toThrow();
    expect(out[0]).toBe(0);
  });
});

describe('packed shape and stride arguments', () => {
  it('Float64Array shapes/strides are checked like arrays: integers only, inside the storage', () => {
    const a = new Float32Array(4), out = new Float32Array(4);
    const shape = Float64Array.of(4), st = Float64Array.of(1);
    native.binary(0, shape as unknown as number[], out, 0, st as unknown as number[], a, 0, st as unknown as number[], a, 0, st as unknown as number[]);
    expect(() => native.binary(0, shape as unknown as number[], out, 0, Float64Array.of(1.5) as unknown as number[], a, 0,
      st as unknown as number[], a, 0, st as unknown as number[])).toThrow(/must be an integer/);
    expect(() => native.binary(0, Float64Array.of(5) as unknown as number[], out, 0, st as unknown as number[], a, 0,
      st as unknown as number[], a, 0, st as unknown as number[])).toThrow(/outside its storage/);
  });
});
