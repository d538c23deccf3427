// The packed host path of elementwise ops (shapes, strides, offsets and scalars in the
// argument block, lib/ops/native_args.ts ARGS; native binaryP/binaryScalarP/unaryP): it must
// give what the argument-list entries (native.binary, binaryScalar, unary) give on the
// same views, for contiguous, broadcast, transposed, sliced, 0-d and empty operands of
// every dtype; and bad blocks are Errors naming the op, never crashes.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { Bin, Un } from '../../lib/ops/elementwise.js';
import { broadcastShapes, broadcastStrides, contiguousStrides } from '../../lib/ops/dims.js';
import { ARGS } from '../../lib/ops/native_args.js';
import type { Tensor } from '../../lib/tensor.js';
import { lcg } from '../helpers.js';

type DT = 'float32' | 'float64' | 'int32' | 'bool';

function make(shape: number[], dtype: DT, seed: number): Tensor {
  const r = lcg(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const v = Array.from({ length: n }, () => (dtype === 'bool' ? (r() > 0 ? 1 : 0) : dtype === 'int32' ? Math.round(r() * 9) + 10 : r() * 3 + 0.5));
  return ng.tensor(v, { dtype }).reshape(shape);
}

/** Operand pairs: same shape, broadcast, a transposed view, a sliced view at an offset, 0-d, empty. */
function pairs(dtype: DT): [string, Tensor, Tensor][] {
  return [
    ['contiguous [3,4]', make([3, 4], dtype, 1), make([3, 4], dtype, 2)],
    ['broadcast [3,1] x [1,4]', make([3, 1], dtype, 3), make([1, 4], dtype, 4)],
    ['broadcast [2,3,4] x [4]', make([2, 3, 4], dtype, 5), make([4], dtype, 6)],
    ['transposed [4,3]^T', make([4, 3], dtype, 7).transpose(0, 1), make([3, 4], dtype, 8)],
    ['sliced at an offset', make([5, 4], dtype, 9).narrow(0, 2, 3), make([3, 4], dtype, 10).narrow(1, 0, 4)],
    ['0-d x [5]', make([1], dtype, 11).reshape([]), make([5], dtype, 12)],
    ['empty [0,3]', make([0, 3], dtype, 13), make([0, 3], dtype, 14)],
    ['large same shape [70000]', make([70000], dtype, 15), make([70000], dtype, 16)],
  ];
}

/** out = a (op) b through the argument-list entry (the general path before the packed one). */
function viaList(code: number, a: Tensor, b: Tensor, outDtype: DT): number[] {
  const shape = broadcastShapes(a.shape, b.shape, 'test');
  const out = ng.zeros(shape, { dtype: outDtype });
  native.binary(code, shape, out.storage.data, 0, contiguousStrides(shape), a.storage.data, a.offset, broadcastStrides(a, shape),
    b.storage.data, b.offset, broadcastStrides(b, shape));
  const v = Array.from(out.dataSync() as ArrayLike<number>);
  out.dispose();
  return v;
}

describe('packed elementwise calls agree with the argument-list entries', () => {
  const ops: [string, number, (a: Tensor, b: Tensor) => Tensor][] = [
    ['add', Bin.add, (a, b) => ng.add(a, b)], ['mul', Bin.mul, (a, b) => ng.mul(a, b)],
    ['sub', Bin.sub, (a, b) => ng.sub(a, b)], ['maximum', Bin.maximum, (a, b) => ng.maximum(a, b)],
    ['lt', Bin.lt, (a, b) => ng.lt(a, b)],
  ];
  for (const dtype of ['float32', 'float64', 'int32', 'bool'] as DT[]) {
    for (const [name, code, fn] of ops) {
      if (dtype === 'bool' && name !== 'lt' && name !== 'maximum') continue;
      it(`${name} on ${dtype}`, () => {
        for (const [what, a, b] of pairs(dtype)) {
          const got = fn(a, b);
          const outDtype = (name === 'lt' ? 'bool' : got.dtype) as DT;
          expect(got.shape, what).toEqual(broadcastShapes(a.shape, b.shape, 'test'));
          // bool arithmetic promotes in the op layer; compare against the same promoted operands
          const pa = a.dtype === got.dtype || name === 'lt' ? a : a.to(got.dtype), pb = b.dtype === pa.dtype ? b : b.to(pa.dtype);
          expect(Array.from(got.dataSync() as ArrayLike<number>), what).toEqual(viaList(code, pa, pb, outDtype));
          got.dispose();
        }
      });
    }
  }

  it('a scalar operand (either side) and unary ops on views', () => {
    for (const dtype of ['float32', 'float64', 'int32'] as DT[]) {
      for (const [what, a] of pairs(dtype)) {
        const shape = [...a.shape];
        const ref = ng.zeros(shape, { dtype });
        native.binaryScalar(Bin.sub, shape, ref.storage.data, 0, contiguousStrides(shape), a.storage.data, a.offset, [...a.strides], 3, true);
        const got = ng.sub(3, a);
        expect(Array.from(got.dataSync() as ArrayLike<number>), what).toEqual(Array.from(ref.dataSync() as ArrayLike<number>));
        native.unary(Un.abs, shape, ref.storage.data, 0, contiguousStrides(shape), a.storage.data, a.offset, [...a.strides], 0, 0);
        const u = ng.abs(ng.neg(a));
        expect(Array.from(u.dataSync() as ArrayLike<number>), what).toEqual(Array.from(ref.dataSync() as ArrayLike<number>));
        ng.dispose([ref, got, u]);
      }
    }
  });

  it('the value is right, not only equal to the other path', () => {
    const a = ng.tensor([[1, 2], [3, 4]]), b = ng.tensor([10, 20]);
    expect(ng.add(a.transpose(0, 1), b).tolist()).toEqual([[11, 23], [12, 24]]);
    expect(ng.mul(a.narrow(0, 1, 1), 2).tolist()).toEqual([[6, 8]]);
  });
});

describe('errors on the packed path', () => {
  it('name the op and the shapes or dtypes', () => {
    expect(() => ng.add(ng.zeros([2, 3]), ng.zeros([4]))).toThrow(/add: shapes \[2,3\] and \[4\] cannot be broadcast/);
    const d = ng.zeros([2]);
    d.dispose();
    expect(() => ng.mul(ng.zeros([2]), d)).toThrow(/mul: .*disposed/);
    expect(() => ng.add(ng.zeros([2]), 'x' as unknown as number)).toThrow(/add: other must be a Tensor/);
  });

  it('a bad block or buffer is an Error from the addon, not a crash', () => {
    const o = new Float32Array(4), x = new Float32Array(4), y = new Float32Array(4);
    const fill = (ndim: number, shape: number[], st: number[], offs = [0, 0, 0]): void => {
      ARGS.fill(0);
      ARGS[0] = Bin.add;
      ARGS[1] = ndim;
      offs.forEach((v, k) => { ARGS[2 + k] = v; });
      shape.forEach((v, i) => { ARGS[8 + i] = v; });
      for (let k = 0; k < 3; k++) st.forEach((v, i) => { ARGS[8 + ndim * (k + 1) + i] = v; });
    };
    fill(1, [4], [1]);
    native.binaryP(o, x, y);
    fill(9, [], []);
    expect(() => native.binaryP(o, x, y)).toThrow(/binary: at most 8 dimensions/);
    fill(1, [5], [1]);
    expect(() => native.binaryP(o, x, y)).toThrow(/binary: out: view reaches outside its storage/);
    fill(1, [4], [1], [0, 1, 0]);
    expect(() => native.binaryP(o, x, y)).toThrow(/binary: a: view reaches outside its storage/);
    fill(1, [2.5], [1]);
    expect(() => native.binaryP(o, x, y)).toThrow(/binary: shape must be an integer/);
    fill(1, [4], [NaN]);
    expect(() => native.binaryP(o, x, y)).toThrow(/binary: strides must be an integer/);
    fill(1, [4], [1]);
    expect(() => native.binaryP(o, x, [1, 2] as unknown as Float32Array)).toThrow(/binary: b must be a typed array/);
    expect(() => native.binaryP(o, x, new Float64Array(4) as unknown as Float32Array)).toThrow(/binary: operands must have the same dtype/);
    expect(() => native.unaryP(o, undefined as unknown as Float32Array)).toThrow(/unary: x must be a typed array/);
    expect(() => native.setArgBlock(new Float64Array(3))).toThrow(/setArgBlock: expects a Float64Array/);
    // the block still works after the errors
    expect(ng.add(ng.tensor([1, 2]), ng.tensor([3, 4])).tolist()).toEqual([4, 6]);
  });
});

describe('cheap ops around the size where they start using the pool', () => {
  // add/mul/relu run on the calling thread below 128K elements and in units of 64K+ above
  it('match a plain loop just below, at and above the threshold, flat and in rows', () => {
    for (const shape of [[131071], [131072], [262147], [3, 87383], [70001, 3]]) {
      const n = shape.reduce((p, q) => p * q, 1);
      const r = lcg(n);
      const av = Float32Array.from({ length: n }, () => r()), bv = Float32Array.from({ length: n }, () => r());
      const a = ng.tensor(av).reshape(shape), b = ng.tensor(bv).reshape(shape);
      const s = ng.add(a, b).dataSync(), m = ng.mul(a, b).dataSync(), u = ng.relu(a).dataSync(), k = ng.mul(a, 3).dataSync();
      let bad = -1;
      for (let i = 0; i < n && bad < 0; i++) {
        if (s[i] !== Math.fround(av[i] + bv[i]) || m[i] !== Math.fround(av[i] * bv[i]) || u[i] !== Math.max(av[i], 0) ||
          k[i] !== Math.fround(av[i] * 3)) bad = i;
      }
      expect(bad, `shape [${shape}]`).toBe(-1);
    }
  });
});
