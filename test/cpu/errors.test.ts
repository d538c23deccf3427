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
    expect(() => ng.ones([1]).to('complex64' as never)).toThrow(/nodegrad: to: unknown dtype or device "complex64"/);
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

describe('to() with something that is neither a dtype nor a device', () => {
  it('lists the valid devices and dtypes', () => {
    const t = ng.ones([1]);
    const both = /\(expected a device: 'cpu', 'cuda' or 'cuda:N'; or a dtype: float32, float64, int32, bool, bfloat16, float16\)/;
    expect(() => t.to('gpu' as never)).toThrow(/^nodegrad: to: unknown dtype or device "gpu" /);
    expect(() => t.to('gpu' as never)).toThrow(both);
    expect(() => t.to(null as never)).toThrow(/^nodegrad: to: unknown dtype or device null /);
    expect(() => t.to(undefined as never)).toThrow(/^nodegrad: to: unknown dtype or device undefined /);
    expect(() => t.to(3 as never)).toThrow(/^nodegrad: to: unknown dtype or device 3 /);
    expect(t.to('float64').dtype).toBe('float64');
    expect(t.to('cpu')).toBe(t);
  });
});

// Each block below is a defect the fuzzer (test/cpu/fuzz) found: a TypeError or RangeError
// from deep inside, a message naming an inner op, a wrong result, or a hang.
describe('bad arguments found by the fuzzer', () => {
  const F = ng.nn.functional;
  /** A broadcast view of 2^40 elements over a one-element buffer: nothing may try to copy it. */
  const huge = (dtype: ng.DType = 'float32'): ng.Tensor => ng.zeros([1], { dtype }).expand([2 ** 20, 2 ** 20]);
  const tooLarge = (op: string): RegExp => new RegExp(`^nodegrad: ${op}: .*too large`);

  it('ops whose output or temporary would be too large fail before allocating, naming the op', () => {
    expect(() => ng.zeros([1e9, 1e9])).toThrow(tooLarge('full'));
    expect(() => ng.zeros([2 ** 31, 2 ** 31])).toThrow(tooLarge('full'));
    expect(() => ng.zeros([0, 2 ** 53])).toThrow(tooLarge('full'));
    expect(() => ng.arange(0, 2 ** 40, 1, { dtype: 'float32' })).toThrow(tooLarge('arange'));
    expect(() => ng.linspace(0, 1, 2 ** 40)).toThrow(tooLarge('linspace'));
    expect(() => ng.randn([2 ** 40])).toThrow(tooLarge('randn'));
    expect(() => ng.eye(2 ** 30)).toThrow(tooLarge('eye'));
    expect(() => huge().exp()).toThrow(tooLarge('exp'));
    expect(() => ng.add(huge(), 1)).toThrow(tooLarge('add'));
    expect(() => ng.add(ng.ones([1]), huge(), 2)).toThrow(tooLarge('add'));
    expect(() => ng.gt(huge(), 0)).toThrow(tooLarge('gt'));
    expect(() => huge().sum()).toThrow(tooLarge('sum'));
    expect(() => huge().amax(0)).toThrow(tooLarge('amax'));
    expect(() => ng.norm(huge())).toThrow(tooLarge('norm'));
    expect(() => huge('float16').mean()).toThrow(tooLarge('mean'));
    expect(() => huge('bfloat16').square()).toThrow(tooLarge('square'));
    expect(() => huge().softmax(-1)).toThrow(tooLarge('softmax'));
    expect(() => huge('float16').softmax(-1)).toThrow(tooLarge('softmax'));
    expect(() => huge().contiguous()).toThrow(tooLarge('contiguous'));
    expect(() => ng.zeros([2]).expand([2 ** 40, 2]).reshape(-1)).toThrow(tooLarge('reshape'));  // (not viewable: a copy)
    expect(() => huge().dataSync()).toThrow(/^nodegrad: data: .*too many elements to read/);
    expect(() => F.layerNorm(huge(), [2 ** 20])).toThrow(tooLarge('layerNorm'));
    expect(() => F.dropout(huge(), 0.5)).toThrow(tooLarge('dropout'));
    expect(() => F.dropout(huge(), 1)).toThrow(tooLarge('dropout'));
    expect(() => F.linear(huge(), ng.ones([2, 2 ** 20]))).toThrow(tooLarge('linear'));
    expect(() => F.scaledDotProductAttention(ng.ones([1, 4]), ng.ones([1, 4]), ng.zeros([1, 1, 4]).expand([2 ** 40, 1, 4])))
      .toThrow(tooLarge('scaledDotProductAttention'));
    expect(() => F.adaptiveAvgPool2d(ng.ones([1, 1, 2, 2]), [2 ** 40, 2 ** 40])).toThrow(tooLarge('adaptiveAvgPool2d'));
    expect(() => F.conv2d(ng.ones([0, 1, 1, 5]), ng.ones([1, 1, 1, 1]), null, { padding: [2 ** 53, 0] })).toThrow(tooLarge('conv2d'));
    expect(() => ng.io.serializeSafetensors({ a: huge() })).toThrow(tooLarge('safetensors'));
  });

  it('printing or listing a huge empty view does not build 2^40 arrays', () => {
    const v = ng.zeros([1, 0]).expand([2 ** 40, 0]);
    expect(String(v)).toBe('Tensor([], shape=[1099511627776,0], dtype=float32, device=cpu)');
    expect(() => v.tolist()).toThrow(/^nodegrad: tolist: a tensor of shape \[1099511627776,0\] would need 1099511627777 nested arrays/);
  });

  it('topk of nothing from a huge broadcast view returns at once', () => {
    const r = ng.topk(huge(), 0, { dim: 0 });
    expect(r.values.shape).toEqual([0, 2 ** 20]);
  }, 10_000);

  it('a slice step far past the end leaves one element (no overflowing stride)', () => {
    expect(ng.tensor([[1, 2, 3]]).slice(1, 1, undefined, 2 ** 53).tolist()).toEqual([[2]]);
  });

  it('in-place ops accept empty tensors, whose contiguous strides contain zeros', () => {
    const e = ng.zeros([3, 3, 0, 1]);
    expect(e.strides).toEqual([0, 0, 1, 1]);
    expect(() => e.zero_().add_(1).mul_(ng.ones([1]))).not.toThrow();
    expect(F.dropout(ng.zeros([2, 2, 0, 3]), 0.5).shape).toEqual([2, 2, 0, 3]);
    const p = ng.zeros([2, 0]).requiresGrad_();
    p.grad = ng.zeros([2, 0]);
    const opt = new ng.optim.AdamW([p]);
    expect(() => opt.step()).not.toThrow();
  });

  it('half-precision CPU tensors take in-place arithmetic and scalar powers (computed in float32)', () => {
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const t = ng.ones([2], { dtype });
      t.add_(1).mul_(ng.tensor([2, 3])).sub_(1, 0.5).div_(2);
      expect(t.dtype).toBe(dtype);
      expect(t.tolist()).toEqual([1.75, 2.75]);
      expect(ng.pow(ng.tensor([2, 3]).to(dtype), 3).tolist()).toEqual([8, 27]);
      expect(ng.norm(ng.tensor([3, 4]).to(dtype), 3).dtype).toBe(dtype);
    }
  });

  it('random ops: half dtypes work on the CPU, and bad dtypes, bounds and ranges are errors', () => {
    expect(ng.randint(0, 5, [4], { dtype: 'float16' }).dtype).toBe('float16');
    expect(ng.rand([3], { dtype: 'bfloat16' }).dtype).toBe('bfloat16');
    expect(ng.bernoulli([3], 0.5, { dtype: 'float16' }).dtype).toBe('float16');
    expect(() => ng.rand([2], { dtype: 'int32' })).toThrow(/^nodegrad: rand: dtype must be floating-point \(got int32/);
    expect(() => ng.randn([2], { dtype: 'bool' })).toThrow(/^nodegrad: randn: dtype must be floating-point/);
    expect(() => ng.rand([2], { low: -Infinity, high: Infinity })).toThrow(/^nodegrad: rand: low and high must be finite/);
    expect(() => ng.randn([2], { mean: false as never })).toThrow(/^nodegrad: randn: mean and std must be numbers/);
    expect(() => ng.bernoulli([2], '1' as never)).toThrow(/^nodegrad: bernoulli: p must be in \[0, 1\]/);
    // the kernel divides by the range, which wraps to 0 past 2^64 (a SIGFPE before this check)
    expect(() => ng.randint(0, 1e300, [3], { dtype: 'float64' })).toThrow(/^nodegrad: randint: the range \[0, 1e\+300\) is too wide/);
  });

  it('wrong JavaScript types get a nodegrad error naming the op, not a TypeError', () => {
    const t = ng.ones([2, 3]);
    expect(() => ng.where(ng.ones([2]).gt(0), ng.ones([2]), 7n as never)).toThrow(/^nodegrad: where: other must be a Tensor or a number \(got bigint\)/);
    expect(() => ng.le(null as never, ng.ones([2], { dtype: 'float16' }))).toThrow(/^nodegrad: le: input must be a Tensor \(got null\)/);
    expect(() => ng.logicalAnd(3 as never, t)).toThrow(/^nodegrad: logicalAnd: input must be a Tensor \(got number\)/);
    expect(() => ng.add(t, [1, 2] as never, 2)).toThrow(/^nodegrad: add: other must be a Tensor \(got object\)/);
    expect(() => ng.sub(t, t, [] as never)).toThrow(/^nodegrad: sub: alpha must be a number \(got object\)/);
    expect(() => t.add_(1, 'x' as never)).toThrow(/^nodegrad: add_: alpha must be a number/);
    expect(() => ng.clone('1' as never)).toThrow(/^nodegrad: clone: input must be a Tensor \(got string\)/);
    expect(() => ng.contiguous(null as never)).toThrow(/^nodegrad: contiguous: input must be a Tensor/);
    expect(() => ng.detach(undefined as never)).toThrow(/^nodegrad: detach: input must be a Tensor/);
    expect(() => ng.clamp(undefined as never, 0, 1)).toThrow(/^nodegrad: clamp: input must be a Tensor/);
    expect(() => ng.clamp(t, -0.5, '' as never)).toThrow(/^nodegrad: clamp: min and max must be numbers or null/);
    expect(() => ng.leakyRelu(t, 7n as never)).toThrow(/^nodegrad: leakyRelu: negativeSlope must be a number \(got bigint\)/);
    expect(() => ng.fullLike(undefined as never, 2)).toThrow(/^nodegrad: fullLike: input must be a Tensor/);
    expect(() => ng.onesLike(null as never)).toThrow(/^nodegrad: onesLike: input must be a Tensor/);
    expect(() => ng.reshape(t, undefined as never)).toThrow(/^nodegrad: reshape: shape must be an array of integers \(got undefined\)/);
    expect(() => ng.permute(t, null as never)).toThrow(/^nodegrad: permute: dims must be an array of integers \(got null\)/);
    expect(() => ng.permute(t, 'ab' as never)).toThrow(/^nodegrad: permute: dims must be an array/);
    expect(() => ng.expand(t, null as never)).toThrow(/^nodegrad: expand: shape must be an array/);
    expect(() => ng.var(t, 0, { correction: {} as never })).toThrow(/^nodegrad: var: correction must be a finite number/);
    expect(() => F.maxPool2d(ng.ones([1, 1, 2, 2]), { kernelSize: 7n as never })).toThrow(/^nodegrad: maxPool2d: kernelSize must be an integer >= 1 or a pair of them \(got 7n\)/);
    expect(() => F.binaryCrossEntropyWithLogits(t, t, { weight: true as never })).toThrow(/^nodegrad: binaryCrossEntropyWithLogits: weight must be a Tensor \(got boolean\)/);
    expect(() => F.crossEntropy(t, ng.zeros([2], { dtype: 'int32' }), { weight: 1 as never })).toThrow(/^nodegrad: crossEntropy: weight must be a Tensor/);
    const leaf = ng.ones([2]).requiresGrad_();
    expect(() => leaf.mul(2).backward(null as never)).toThrow(/^nodegrad: backward: gradient must be a Tensor \(got null\)/);
    expect(() => leaf.mul(2).backward(Infinity as never)).toThrow(/^nodegrad: backward: gradient must be a Tensor \(got number\)/);
    expect(() => ng.linspace('a' as never, 1, 3)).toThrow(/^nodegrad: linspace: start and end must be numbers/);
  });

  it('null options are no options; other non-objects are errors', () => {
    const q = ng.ones([2, 4]);
    expect(F.scaledDotProductAttention(q, q, q, null as never).shape).toEqual([2, 4]);
    expect(F.crossEntropy(ng.zeros([2, 3]), ng.zeros([2], { dtype: 'int32' }), null as never).shape).toEqual([]);
    expect(ng.zeros([2], null as never).shape).toEqual([2]);
    expect(() => F.conv2d(ng.ones([1, 1, 2, 2]), ng.ones([1, 1, 1, 1]), null, 'same' as never)).toThrow(/^nodegrad: conv2d: options must be an object \(got string\)/);
    expect(() => ng.arange(0, 3, 1, 5 as never)).toThrow(/^nodegrad: arange: options must be an object/);
    const bpeTok = new ng.data.ByteTokenizer();
    expect(bpeTok.encode('hi', null as never)).toEqual([104, 105]);
    expect(() => bpeTok.encode('hi', 3 as never)).toThrow(/^nodegrad: ByteTokenizer.encode: options must be an object/);
  });

  it('dims of 0-d tensors: slicing ops refuse them instead of reading undefined sizes', () => {
    const s = ng.tensor(1);
    expect(() => s.narrow(-1, 0, 0)).toThrow(/^nodegrad: narrow: cannot be applied to a 0-dim tensor/);
    expect(() => s.slice(0)).toThrow(/^nodegrad: slice: cannot be applied to a 0-dim tensor/);
    expect(() => s.select(0, 0)).toThrow(/^nodegrad: select: cannot be applied to a 0-dim tensor/);
    expect(() => s.split(1)).toThrow(/^nodegrad: split: cannot be applied to a 0-dim tensor/);
    expect(() => s.chunk(1)).toThrow(/^nodegrad: chunk: cannot be applied to a 0-dim tensor/);
  });

  it('files and JSON: a missing file and malformed JSON are nodegrad errors', async () => {
    await expect(ng.io.openSafetensors('/nonexistent/x.safetensors')).rejects.toThrow(/^nodegrad: safetensors: cannot open \/nonexistent\/x.safetensors \(ENOENT/);
    await expect(ng.io.loadSafetensors('/nonexistent/x.safetensors')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(() => ng.data.tokenizerFromJSON('{bad json')).toThrow(/^nodegrad: tokenizerFromJSON: invalid JSON/);
  });

  it('a layerNorm over no dims says so', () => {
    expect(() => F.layerNorm(ng.ones([2]), [])).toThrow(/^nodegrad: layerNorm: normalizedShape must name at least one trailing dim \(got \[\] for input \[2\]\)/);
  });
});
