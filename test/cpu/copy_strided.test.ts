// Strided copies (contiguous() of permuted, transposed, sliced and expanded views, and
// copies into strided destinations) of every dtype against a JS reference that reads the
// source element by element through its strides. Casting copies use the same views.
import { describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor, DType } from '../../lib/index.js';
import { copyInto } from '../../lib/ops/shape.js';

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function bf16ToNumber(b: number): number {
  u32[0] = b << 16;
  return f32[0];
}

/** Row-major element values of a view, read through its strides (bfloat16 decoded; float16 as raw bits). */
function readStrided(t: Tensor, raw = false): number[] {
  const d = t.storage.data as ArrayLike<number>;
  const out: number[] = [];
  const n = t.shape.length;
  const idx = new Array<number>(n).fill(0);
  if (t.shape.some((s) => s === 0)) return out;
  for (;;) {
    let off = t.offset;
    for (let k = 0; k < n; k++) off += idx[k] * t.strides[k];
    const v = d[off];
    out.push(!raw && t.dtype === 'bfloat16' ? bf16ToNumber(v) : v);
    let k = n - 1;
    while (k >= 0 && ++idx[k] === t.shape[k]) idx[k--] = 0;
    if (k < 0) break;
  }
  return out;
}

/** Values exactly representable in every dtype tried here (small halves and integers). */
function source(shape: number[], dtype: DType): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    v[i] = dtype === 'bool' ? (i % 3 === 0 ? 1 : 0) : ((i * 7) % 23) - 11 + (dtype === 'int32' ? 0 : (i % 2) * 0.5);
  }
  const base = ng.tensor(v, { shape, dtype: dtype === 'float16' ? 'float32' : dtype });
  if (dtype !== 'float16') return base;
  const h = base.to('float16');
  base.dispose();
  return h;
}

function convert(v: number, to: DType): number {
  if (to === 'bool') return v !== 0 ? 1 : 0;
  if (to === 'int32') return Math.trunc(v) + 0;  // no negative zero in an integer
  if (to === 'float32') return Math.fround(v);
  return v;
}

type ViewFn = (t: Tensor) => Tensor;
const views: [string, number[], ViewFn][] = [
  ['permute (0,2,1,3) of [3,5,4,7]', [3, 5, 4, 7], (t) => ng.permute(t, [0, 2, 1, 3])],
  ['permute (0,2,1,3) of [2,6,4,16]', [2, 6, 4, 16], (t) => ng.permute(t, [0, 2, 1, 3])],
  ['transpose of [37,19]', [37, 19], (t) => ng.transpose(t, 0, 1)],
  ['transpose of [64,64]', [64, 64], (t) => ng.transpose(t, 0, 1)],
  ['transpose of [5,200]', [5, 200], (t) => ng.transpose(t, 0, 1)],
  ['transpose of [2,3]', [2, 3], (t) => ng.transpose(t, 0, 1)],
  ['permute (2,1,0) of [6,7,9]', [6, 7, 9], (t) => ng.permute(t, [2, 1, 0])],
  ['permute (1,2,0) of [17,5,33]', [17, 5, 33], (t) => ng.permute(t, [1, 2, 0])],
  ['permute (0,3,1,2) of [2,5,6,18]', [2, 5, 6, 18], (t) => ng.permute(t, [0, 3, 1, 2])],
  ['narrow of a fused [4,6,15] (qkv split)', [4, 6, 15], (t) => ng.narrow(t, 2, 5, 5)],
  ['slice with step 3', [7, 40], (t) => ng.slice(t, 1, 1, 37, 3)],
  ['transposed slice with step', [30, 41], (t) => ng.transpose(ng.slice(t, 0, 2, 29, 2), 0, 1)],
  ['expand of [3,1,5] to [3,4,5]', [3, 1, 5], (t) => ng.expand(t, [3, 4, 5])],
  ['expand of [7,1] to [7,9] (inner stride 0)', [7, 1], (t) => ng.expand(t, [7, 9])],
  ['expand of [1,5] then transpose', [1, 5], (t) => ng.transpose(ng.expand(t, [6, 5]), 0, 1)],
  ['1-element view', [1, 1, 1], (t) => ng.permute(t, [2, 0, 1])],
  ['empty [0,5] transposed', [0, 5], (t) => ng.transpose(t, 0, 1)],
  ['empty [3,0,4] permuted', [3, 0, 4], (t) => ng.permute(t, [2, 0, 1])],
];

const dtypes: DType[] = ['float32', 'float64', 'int32', 'bool', 'bfloat16', 'float16'];

describe('contiguous() of strided views copies every element of every dtype', () => {
  for (const dtype of dtypes) {
    for (const [name, shape, fn] of views) {
      test(`${dtype}: ${name}`, () => {
        ng.scope(() => {
          const x = source(shape, dtype);
          const v = fn(x);
          if (v.numel > 1) expect(v.isContiguous()).toBe(false);
          const c = ng.contiguous(v);
          expect(c.isContiguous()).toBe(true);
          expect(c.dtype).toBe(dtype);
          expect(c.shape).toEqual(v.shape);
          expect(readStrided(c, true)).toEqual(readStrided(v, true));
        });
      });
    }
  }
});

describe('large strided copies split over threads', () => {
  test('float32 transpose of [600,500] (tiled, several work units)', () => {
    ng.scope(() => {
      const x = source([600, 500], 'float32');
      const v = ng.transpose(x, 0, 1);
      expect(readStrided(ng.contiguous(v))).toEqual(readStrided(v));
    });
  });
  test('float32 narrow of [2,600001] (few long rows cut into chunks)', () => {
    ng.scope(() => {
      const x = source([2, 600001], 'float32');
      const v = ng.narrow(x, 1, 1, 600000);
      expect(readStrided(ng.contiguous(v))).toEqual(readStrided(v));
    });
  });
  test('int32 permute (0,2,1,3) of [16,64,8,40]', () => {
    ng.scope(() => {
      const x = source([16, 64, 8, 40], 'int32');
      const v = ng.permute(x, [0, 2, 1, 3]);
      expect(readStrided(ng.contiguous(v))).toEqual(readStrided(v));
    });
  });
});

describe('copies into strided destinations', () => {
  for (const dtype of ['float32', 'float64', 'bfloat16'] as DType[]) {
    test(`${dtype}: contiguous source into a transposed destination`, () => {
      ng.scope(() => {
        const src = source([19, 37], dtype);
        const dstBase = ng.zeros([37, 19], { dtype });
        const dst = ng.transpose(dstBase, 0, 1);
        copyInto(dst, src);
        expect(readStrided(dst, true)).toEqual(readStrided(src, true));
      });
    });
    test(`${dtype}: transposed source into a column slice`, () => {
      ng.scope(() => {
        const src = ng.transpose(source([9, 21], dtype), 0, 1);
        const dstBase = ng.zeros([21, 20], { dtype });
        copyInto(ng.narrow(dstBase, 1, 4, 9), src);
        const got = readStrided(dstBase, true);
        const ref = readStrided(src, true);
        for (let r = 0; r < 21; r++) {
          for (let c = 0; c < 20; c++) {
            expect(got[r * 20 + c]).toBe(c >= 4 && c < 13 ? ref[r * 9 + c - 4] : 0);
          }
        }
      });
    });
  }
});

describe('casting copies convert every element through strided views', () => {
  const castTypes: DType[] = ['float32', 'float64', 'int32', 'bool', 'bfloat16'];
  for (const from of castTypes) {
    for (const to of castTypes) {
      if (from === to) continue;
      test(`${from} -> ${to}`, () => {
        ng.scope(() => {
          for (const [shape, fn] of [
            [[13, 21], (t: Tensor) => ng.transpose(t, 0, 1)],
            [[3, 5, 4, 7], (t: Tensor) => ng.permute(t, [0, 2, 1, 3])],
            [[7, 1], (t: Tensor) => ng.expand(t, [7, 9])],
          ] as [number[], ViewFn][]) {
            const v = fn(source(shape, from));
            const dst = ng.zeros(v.shape, { dtype: to });
            copyInto(dst, v);
            expect(readStrided(dst)).toEqual(readStrided(v).map((x) => convert(x, to)));
          }
        });
      });
    }
  }
});
