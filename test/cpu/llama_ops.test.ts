// The Llama family's ops on the CPU: rmsNorm / addRmsNorm, rotaryEmbedding (+ in place),
// swiglu, and grouped-query / sliding-window attention. Forward against naive loops
// (the rotary formula of RoFormer / Llama written out, per-head loops with repeat_kv
// semantics), backward against finite differences in float64, fused against composed,
// bitwise determinism across thread counts, odd shapes, strided inputs and errors.
import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { addRmsNorm, rmsNorm, rmsNormComposed, rotaryEmbedding, rotaryEmbeddingComposed, rotaryEmbedding_, swiglu } from '../../lib/ops/llama.js';
import { describeBackends, expectClose, lcg } from '../helpers.js';

const F = ng.nn.functional;

function rand(shape: number[], seed: number, dtype: 'float32' | 'float64', device: string, requiresGrad = false,
  scale = 2, shift = 0): Tensor {
  const r = lcg(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return ng.tensor(Float64Array.from({ length: n }, () => r() * scale + shift),
    { shape, dtype, device: device as ng.Device, requiresGrad });
}

const vals = (t: Tensor): number[] => Array.from(t.dataSync() as ArrayLike<number>);

/** Runs `script` (plain JS, `addon` in scope) in fresh processes with 1, 2 and 3 threads; returns stdout of each. */
function perThreadCount(script: string): string[] {
  const head = `
    const path = require('node:path');
    const addon = process.env.NODEGRAD_ADDON ? require(path.resolve(process.env.NODEGRAD_ADDON))
      : require('node-gyp-build')(process.cwd());
    addon.setNumThreads(Number(process.argv[1]));
    let s = 1;
    const fill = (n, T = Float32Array) => T.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 31 - 1));
    const hex = (a) => Buffer.from(a.buffer).toString('hex');`;
  return [1, 2, 3].map((threads) => {
    const r = spawnSync(process.execPath, ['-e', head + script, String(threads)], { cwd: process.cwd(), encoding: 'utf8', env: process.env });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  });
}

// ---- RMSNorm -------------------------------------------------------------------------------------

function naiveRms(x: ArrayLike<number>, C: number, w: ArrayLike<number> | null, eps: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < x.length / C; r++) {
    let q = 0;
    for (let c = 0; c < C; c++) q += x[r * C + c] ** 2;
    const rs = 1 / Math.sqrt(q / C + eps);
    for (let c = 0; c < C; c++) out.push(x[r * C + c] * rs * (w ? w[c] : 1));
  }
  return out;
}

describeBackends('rmsNorm', (device) => {
  const shapes = [[4, 10], [3, 37], [2, 3, 4, 5], [5, 1], [6], [2, 0, 4]];
  for (const dtype of ['float32', 'float64'] as const) {
    for (const shape of shapes) {
      for (const withWeight of [true, false]) {
        it(`forward matches a loop and the composed version: ${dtype} [${shape}]${withWeight ? ' with weight' : ''}`, () => {
          const C = shape[shape.length - 1];
          const x = rand(shape, shape.length * 5 + C, dtype, device, false, 3, 0.5);
          const w = withWeight ? rand([C], 3, dtype, device, false, 1, 1) : null;
          const y = rmsNorm(x, w, 1e-5);
          expect(y.shape).toEqual(shape);
          expect(y.dtype).toBe(dtype);
          const tol = dtype === 'float32' ? { atol: 2e-6, rtol: 1e-5 } : { atol: 1e-13, rtol: 1e-12 };
          expectClose(y, naiveRms(vals(x), C, w && vals(w), 1e-5), tol);
          expectClose(y, rmsNormComposed(x, w, 1e-5), tol);
        });
      }
    }
  }

  it('uses eps inside the square root, defaults eps to 1e-6 and takes a strided input', () => {
    const x = rand([6, 4], 8, 'float64', device).transpose(0, 1);  // [4, 6], strided
    expectClose(rmsNorm(x, null, 0.5), naiveRms(vals(x.contiguous()), 6, null, 0.5), { atol: 1e-14 });
    expectClose(F.rmsNorm(x, null), naiveRms(vals(x.contiguous()), 6, null, 1e-6), { atol: 1e-14 });
    expectClose(rmsNorm(ng.zeros([2, 3], { dtype: 'float64', device }), null), new Array(6).fill(0));
  });

  for (const shape of [[3, 7], [2, 2, 5], [33, 4], [2, 19], [4, 1]]) {
    it(`backward for x and weight matches finite differences: [${shape}]`, () => {
      const C = shape[shape.length - 1];
      const x = rand(shape, 21, 'float64', device, true);
      const w = rand([C], 22, 'float64', device, true, 1, 1);
      ng.gradcheck((a, c) => rmsNorm(a, c, 1e-3), [x, w]);
    });
  }

  it('backward with only x or only the weight requiring grad, and without weight', () => {
    ng.gradcheck((a, c) => rmsNorm(a, c), [rand([4, 6], 31, 'float64', device, false), rand([6], 32, 'float64', device, true)]);
    ng.gradcheck((a, c) => rmsNorm(a, c), [rand([4, 6], 33, 'float64', device, true), rand([6], 34, 'float64', device, false)]);
    ng.gradcheck((a) => rmsNorm(a, null), [rand([5, 9], 35, 'float64', device, true)]);
  });

  it('fused gradients match the composed version (float64) and agree with float32', () => {
    const run = (dtype: 'float32' | 'float64', fused: boolean): Tensor[] => {
      const x = rand([64, 48], 40, dtype, device, true);
      const w = rand([48], 41, dtype, device, true, 1, 1);
      (fused ? rmsNorm : rmsNormComposed)(x, w, 1e-5).backward(rand([64, 48], 43, dtype, device));
      return [x.grad!, w.grad!];
    };
    const f64 = run('float64', true), c64 = run('float64', false), f32 = run('float32', true);
    for (let k = 0; k < 2; k++) {
      expectClose(f64[k], c64[k], { atol: 1e-11, rtol: 1e-11 });
      expectClose(f32[k], f64[k], { atol: 1e-4, rtol: 1e-4 });
    }
  });

  it('backward still works after a scope freed the saved rstd', () => {
    const g = rand([3, 8], 62, 'float64', device);
    const grads = [true, false].map((scoped) => {
      const x = rand([3, 8], 60, 'float64', device, true);
      const w = rand([8], 61, 'float64', device, true);
      const y = scoped ? ng.scope(() => rmsNorm(x, w)) : rmsNorm(x, w);
      y.backward(g);
      return [x.grad!, w.grad!];
    });
    expectClose(grads[0][0], grads[1][0], { atol: 1e-14 });
    expectClose(grads[0][1], grads[1][1], { atol: 1e-14 });
  });

  it('bfloat16 and float16 follow HF order: float32 normalise, round, then the weight in half', () => {
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const x = rand([5, 24], 70, 'float32', device, false, 3).to(dtype);
      const w = rand([24], 71, 'float32', device, false, 1, 1).to(dtype);
      const y = rmsNorm(x, w);
      expect(y.dtype).toBe(dtype);
      const h = x.float().mul(x.float().square().mean(-1, true).add(1e-6).rsqrt()).to(dtype);
      expect(vals(y.float())).toEqual(vals(w.mul(h).float()));
    }
  });

  it('rejects bad arguments with clear errors', () => {
    const x = ng.ones([2, 3], { device });
    expect(() => rmsNorm(x, ng.ones([4], { device }))).toThrow(/nodegrad: rmsNorm: weight has shape \[4\], expected \[3\]/);
    expect(() => rmsNorm(x, ng.ones([3], { dtype: 'float64', device }))).toThrow(/nodegrad: rmsNorm: weight has dtype float64/);
    expect(() => rmsNorm(ng.ones([2, 3], { dtype: 'int32', device }), null)).toThrow(/nodegrad: rmsNorm: input must be a floating-point/);
    expect(() => rmsNorm(x, null, -1)).toThrow(/nodegrad: rmsNorm: eps must be a non-negative number/);
    expect(() => rmsNorm(ng.tensor(1, { device }), null)).toThrow(/nodegrad: rmsNorm: the input needs at least 1 dim/);
    expect(() => addRmsNorm(x, ng.ones([3, 2], { device }), null)).toThrow(/nodegrad: addRmsNorm: residual has shape \[3,2\]/);
    expect(() => addRmsNorm(x, ng.ones([2, 3], { dtype: 'float64', device }), null)).toThrow(/nodegrad: addRmsNorm: residual has dtype float64/);
  });
});

it('rmsNorm weight gradient is bitwise identical for 1, 2 and 3 threads', () => {
  const outputs = perThreadCount(`
    const rows = 1000, C = 40;
    const x = fill(rows * C), g = fill(rows * C), w = fill(C);
    const gx = new Float32Array(rows * C), gw = new Float32Array(C);
    addon.rmsnormBackward(g, x, w, null, gx, gw, rows, C, 1e-6);
    const y = new Float32Array(rows * C), rstd = new Float32Array(rows);
    addon.rmsnormForward(x, null, null, w, y, rstd, rows, C, 1e-6);
    process.stdout.write([hex(gx), hex(gw), hex(y), hex(rstd)].join(' '));`);
  expect(outputs[0].length).toBeGreaterThan(1000);
  for (const o of outputs.slice(1)) expect(o).toBe(outputs[0]);
});

describeBackends('addRmsNorm', (device) => {
  for (const dtype of ['float32', 'float64'] as const) {
    it(`sum and out match add then rmsNorm (${dtype})`, () => {
      const x = rand([7, 33], 1, dtype, device), r = rand([7, 33], 2, dtype, device), w = rand([33], 3, dtype, device, false, 1, 1);
      const { sum, out } = addRmsNorm(x, r, w, 1e-5);
      const s = x.add(r);
      expect(vals(sum)).toEqual(vals(s));
      expectClose(out, rmsNorm(s, w, 1e-5), dtype === 'float32' ? { atol: 1e-6, rtol: 1e-6 } : { atol: 1e-14 });
    });
  }

  it('backward through both sum and out matches finite differences', () => {
    const x = rand([4, 9], 11, 'float64', device, true), r = rand([4, 9], 12, 'float64', device, true);
    const w = rand([9], 13, 'float64', device, true, 1, 1);
    const k = rand([4, 9], 14, 'float64', device);
    ng.gradcheck((a, b, c) => {
      const { sum, out } = addRmsNorm(a, b, c, 1e-4);
      return out.add(sum.mul(k));  // the residual stream is used again downstream
    }, [x, r, w]);
  });

  it('half precision composes add and rmsNorm', () => {
    const x = rand([3, 8], 15, 'float32', device).to('bfloat16'), r = rand([3, 8], 16, 'float32', device).to('bfloat16');
    const { sum, out } = addRmsNorm(x, r, null);
    expect(vals(sum.float())).toEqual(vals(x.add(r).float()));
    expect(vals(out.float())).toEqual(vals(rmsNorm(x.add(r), null).float()));
  });
});

// ---- rotary embedding -------------------------------------------------------------------------

/**
 * RoFormer / Llama rotary embedding written out per element in float64: element i < D/2
 * and its partner i + D/2 rotate by the angle pos * invFreq[i] (HF's rotate_half layout).
 */
function naiveRope(x: ArrayLike<number>, [B, H, T, D]: number[], inv: ArrayLike<number>, pos: (b: number, t: number) => number,
  scaling = 1): number[] {
  const out = new Array<number>(B * H * T * D);
  const half = D / 2;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let t = 0; t < T; t++)
        for (let i = 0; i < half; i++) {
          const o = ((b * H + h) * T + t) * D;
          const theta = pos(b, t) * inv[i];
          const c = Math.cos(theta) * scaling, s = Math.sin(theta) * scaling;
          out[o + i] = x[o + i] * c - x[o + i + half] * s;
          out[o + i + half] = x[o + i + half] * c + x[o + i] * s;
        }
  return out;
}

function invFreqs(D: number, base = 10000): Float64Array {
  return Float64Array.from({ length: D / 2 }, (_, i) => 1 / base ** ((2 * i) / D));
}

describeBackends('rotaryEmbedding', (device) => {
  const shapes = [[2, 3, 5, 8], [1, 1, 1, 2], [3, 2, 7, 10], [1, 4, 16, 64], [2, 1, 3, 6]];
  for (const dtype of ['float32', 'float64'] as const) {
    for (const shape of shapes) {
      it(`forward matches the RoFormer formula: ${dtype} [${shape}] with a position offset`, () => {
        const inv = invFreqs(shape[3]);
        const x = rand(shape, shape[2] + shape[3], dtype, device);
        const y = rotaryEmbedding(x, { invFreq: inv, positionOffset: 5 });
        expect(y.shape).toEqual(shape);
        expect(y.dtype).toBe(dtype);
        const tol = dtype === 'float32' ? { atol: 5e-6, rtol: 1e-5 } : { atol: 1e-13, rtol: 1e-12 };
        expectClose(y, naiveRope(vals(x), shape, inv, (_b, t) => 5 + t), tol);
        expectClose(y, rotaryEmbeddingComposed(x, { invFreq: inv, positionOffset: 5 }), tol);
      });
    }
  }

  it('positions [T] and [B, T], attention scaling and a Float32Array of frequencies', () => {
    const shape = [2, 3, 4, 8];
    const x = rand(shape, 3, 'float64', device);
    const inv = Float32Array.from(invFreqs(8, 500000));
    const p1 = ng.tensor([7, 3, 0, 100], { dtype: 'int32', device });
    expectClose(rotaryEmbedding(x, { invFreq: inv, positions: p1 }), naiveRope(vals(x), shape, inv, (_b, t) => [7, 3, 0, 100][t]), { atol: 1e-12 });
    const P = [[0, 1, 2, 3], [10, 11, 40, 41]];
    const p2 = ng.tensor(P, { dtype: 'int32', device });
    expectClose(rotaryEmbedding(x, { invFreq: inv, positions: p2, attentionScaling: 1.25 }),
      naiveRope(vals(x), shape, inv, (b, t) => P[b][t], 1.25), { atol: 1e-12 });
  });

  it('float32 forms the angle in float32 (HF), still close to the exact angle at large positions', () => {
    const x = rand([1, 2, 3, 16], 4, 'float32', device);
    const inv = invFreqs(16);
    const y = rotaryEmbedding(x, { invFreq: inv, positionOffset: 4000 });
    const f = Math.fround;
    const exact = naiveRope(vals(x), [1, 2, 3, 16], inv.map((v) => f(v)), (_b, t) => 4000 + t);
    expectClose(y, exact, { atol: 2e-3 });  // float32 angles at 4000 rad: ~2.4e-4 rad apart
    const hf = rotaryEmbeddingComposed(x, { invFreq: inv, positionOffset: 4000 });
    expectClose(y, hf, { atol: 2e-6, rtol: 1e-5 });
  });

  it('takes a strided view (q of a [B, T, H, D] projection) without changing the result', () => {
    const base = rand([2, 5, 3, 8], 9, 'float64', device);  // [B, T, H, D]
    const x = base.transpose(1, 2);  // [B, H, T, D], strided
    const inv = invFreqs(8);
    const y = rotaryEmbedding(x, { invFreq: inv, positionOffset: 2 });
    expect(vals(y)).toEqual(vals(rotaryEmbedding(x.contiguous(), { invFreq: inv, positionOffset: 2 })));
    const odd = rand([2, 3, 4, 16], 10, 'float64', device).narrow(3, 4, 8);  // last dim sliced: still contiguous rows
    expect(vals(rotaryEmbedding(odd, { invFreq: inv }))).toEqual(vals(rotaryEmbedding(odd.contiguous(), { invFreq: inv })));
    const dstrided = rand([1, 2, 3, 16], 11, 'float64', device).slice(3, 0, 16, 2);  // d not contiguous: copied first
    expectClose(rotaryEmbedding(dstrided, { invFreq: inv }), naiveRope(vals(dstrided.contiguous()), [1, 2, 3, 8], inv, (_b, t) => t), { atol: 1e-13 });
  });

  it('backward (the inverse rotation) matches finite differences', () => {
    const inv = invFreqs(6);
    ng.gradcheck((a) => rotaryEmbedding(a, { invFreq: inv, positionOffset: 3, attentionScaling: 0.7 }), [rand([2, 2, 3, 6], 5, 'float64', device, true)]);
    const pos = ng.tensor([[4, 1, 9], [0, 2, 2]], { dtype: 'int32', device });
    ng.gradcheck((a) => rotaryEmbedding(a, { invFreq: inv, positions: pos }), [rand([2, 3, 3, 6], 6, 'float64', device, true)]);
    const base = rand([2, 3, 2, 6], 7, 'float64', device, true);  // through a transposed view
    ng.gradcheck((a) => rotaryEmbedding(a.transpose(1, 2), { invFreq: inv }), [base]);
  });

  it('rotating by the embedding and then by its backward gives the input back', () => {
    const x = rand([2, 2, 5, 8], 8, 'float64', device, true);
    const inv = invFreqs(8);
    const y = rotaryEmbedding(x, { invFreq: inv, positionOffset: 11 });
    y.backward(y.detach());  // dL/dx = R^T R x = x
    expectClose(x.grad!, x, { atol: 1e-13 });
  });

  it('in place (KV-cache decode) equals the out-of-place result and bumps the version counter', () => {
    const inv = invFreqs(8);
    const cache = rand([2, 3, 10, 8], 12, 'float32', device);
    const expected = rotaryEmbedding(cache.narrow(2, 6, 1), { invFreq: inv, positionOffset: 6 });
    ng.noGrad(() => {
      const view = cache.narrow(2, 6, 1);  // one step of a preallocated cache: strided
      const v0 = view.storage.version;
      const r = rotaryEmbedding_(view, { invFreq: inv, positionOffset: 6 });
      expect(r).toBe(view);
      expect(view.storage.version).toBe(v0 + 1);
      expect(vals(view)).toEqual(vals(expected));
    });
    const h = rand([1, 2, 3, 8], 13, 'float32', device).to('bfloat16');
    const h2 = h.clone();
    rotaryEmbedding_(h2, { invFreq: inv });
    expect(vals(h2.float())).toEqual(vals(rotaryEmbedding(h, { invFreq: inv }).float()));
  });

  it('a saved input changed by rotaryEmbedding_ is reported at backward', () => {
    const x = rand([1, 1, 2, 4], 14, 'float64', device, true);
    const y = x.mul(1);
    const z = y.mul(y);  // saves y
    ng.noGrad(() => rotaryEmbedding_(y, { invFreq: invFreqs(4) }));
    expect(() => z.sum().backward()).toThrow(/modified in place by rotaryEmbedding_/);
  });

  it('bfloat16 is rotated in float32 and rounded once', () => {
    const x = rand([1, 2, 3, 8], 15, 'float32', device).to('bfloat16');
    const inv = invFreqs(8);
    const y = rotaryEmbedding(x, { invFreq: inv, positionOffset: 1 });
    expect(y.dtype).toBe('bfloat16');
    expect(vals(y.float())).toEqual(vals(rotaryEmbedding(x.float(), { invFreq: inv, positionOffset: 1 }).to('bfloat16').float()));
  });

  it('rejects bad arguments with clear errors', () => {
    const x = ng.ones([1, 2, 3, 4], { device });
    const inv = invFreqs(4);
    expect(() => rotaryEmbedding(ng.ones([2, 3, 4], { device }), { invFreq: inv })).toThrow(/nodegrad: rotaryEmbedding: x must be \[B, H, T, D\]/);
    expect(() => rotaryEmbedding(ng.ones([1, 2, 3, 5], { device }), { invFreq: inv })).toThrow(/head dim must be even/);
    expect(() => rotaryEmbedding(x, { invFreq: invFreqs(8) })).toThrow(/invFreq has 4 entries, expected 2/);
    expect(() => rotaryEmbedding(x, { invFreq: [1, 2] as unknown as Float64Array })).toThrow(/invFreq must be a Float32Array or Float64Array/);
    expect(() => rotaryEmbedding(x, { invFreq: Float64Array.of(1, NaN) })).toThrow(/invFreq must be finite/);
    expect(() => rotaryEmbedding(x, { invFreq: inv, positions: ng.tensor([0, 1, 2], { device }) })).toThrow(/positions must be int32/);
    expect(() => rotaryEmbedding(x, { invFreq: inv, positions: ng.tensor([0, 1], { dtype: 'int32', device }) })).toThrow(/positions has shape \[2\], expected \[3\] or \[1,3\]/);
    expect(() => rotaryEmbedding(x, { invFreq: inv, positions: ng.tensor([0, 1, 2], { dtype: 'int32', device }), positionOffset: 2 })).toThrow(/not both/);
    expect(() => rotaryEmbedding(x, { invFreq: inv, positionOffset: -1 })).toThrow(/positionOffset must be a non-negative integer/);
    expect(() => rotaryEmbedding(x, { invFreq: inv, attentionScaling: Infinity })).toThrow(/attentionScaling must be a finite number/);
    const leaf = ng.ones([1, 2, 3, 4], { device, requiresGrad: true });
    expect(() => rotaryEmbedding_(leaf, { invFreq: inv })).toThrow(/nodegrad: rotaryEmbedding_: x requires grad/);
    expect(() => ng.noGrad(() => rotaryEmbedding_(ng.ones([1, 2, 3, 8], { device }).slice(3, 0, 8, 2), { invFreq: inv })))
      .toThrow(/rotaryEmbedding_: x must have a contiguous last dim/);
    expect(() => ng.noGrad(() => rotaryEmbedding_(ng.ones([1, 1, 3, 4], { device }).expand([1, 2, 3, 4]), { invFreq: inv })))
      .toThrow(/rotaryEmbedding_: x must have a contiguous last dim and no expanded dims/);
  });
});

// ---- SwiGLU ---------------------------------------------------------------------------------

describeBackends('swiglu', (device) => {
  for (const dtype of ['float32', 'float64'] as const) {
    it(`forward matches silu(gate) * up in a loop (${dtype}, odd length)`, () => {
      const g = rand([3, 1001], 1, dtype, device, false, 8), u = rand([3, 1001], 2, dtype, device);
      const y = swiglu(g, u);
      const gv = vals(g), uv = vals(u);
      expectClose(y, gv.map((x, i) => (x / (1 + Math.exp(-x))) * uv[i]), dtype === 'float32' ? { atol: 1e-6, rtol: 1e-5 } : { atol: 1e-14, rtol: 1e-13 });
      // (F.silu's float32 CPU sigmoid loses relative precision for gate < -5: absolute tolerance)
      expectClose(y, g.silu().mul(u), dtype === 'float32' ? { atol: 5e-6, rtol: 1e-5 } : { atol: 1e-14, rtol: 1e-13 });
    });
  }

  it('backward matches finite differences and the composed gradients, with strided inputs', () => {
    const gu = rand([4, 2, 10], 3, 'float64', device, true, 6);  // a fused gate_up projection
    ng.gradcheck((a) => { const [g, u] = a.chunk(2, 1); return swiglu(g, u); }, [gu]);
    ng.gradcheck((a, b) => swiglu(a, b), [rand([7, 5], 4, 'float64', device, true, 6), rand([7, 5], 5, 'float64', device, false)]);
    ng.gradcheck((a, b) => swiglu(a, b), [rand([7, 5], 6, 'float64', device, false, 6), rand([7, 5], 7, 'float64', device, true)]);
    const grads = [true, false].map((fused) => {
      const g = rand([9, 33], 8, 'float32', device, true, 6), u = rand([9, 33], 9, 'float32', device, true);
      (fused ? swiglu(g, u) : g.silu().mul(u)).backward(rand([9, 33], 10, 'float32', device));
      return [g.grad!, u.grad!];
    });
    expectClose(grads[0][0], grads[1][0], { atol: 1e-5, rtol: 1e-5 });
    expectClose(grads[0][1], grads[1][1], { atol: 1e-5, rtol: 1e-5 });
  });

  it('half precision rounds silu(gate) before the product (HF)', () => {
    const g = rand([4, 16], 11, 'float32', device, false, 6).to('bfloat16'), u = rand([4, 16], 12, 'float32', device).to('bfloat16');
    expect(vals(swiglu(g, u).float())).toEqual(vals(g.silu().mul(u).float()));
  });

  it('rejects bad arguments with clear errors', () => {
    const a = ng.ones([2, 3], { device });
    expect(() => swiglu(a, ng.ones([3, 2], { device }))).toThrow(/nodegrad: swiglu: gate and up must have the same shape \(got \[2,3\] and \[3,2\]\)/);
    expect(() => swiglu(a, ng.ones([2, 3], { dtype: 'float64', device }))).toThrow(/nodegrad: swiglu: gate and up must have the same dtype/);
    expect(() => swiglu(ng.ones([2], { dtype: 'int32', device }), ng.ones([2], { dtype: 'int32', device }))).toThrow(/nodegrad: swiglu: gate must be a floating-point/);
  });
});

// ---- grouped-query and sliding-window attention -----------------------------------------------

interface AttnCase { B: number; Hq: number; Hkv: number; Tq: number; Tk: number; D: number; causal: boolean; window: number | null }

/** Per-head loops: query head h reads kv head floor(h / (Hq / Hkv)) (repeat_kv), float64. */
function naiveAttention(q: number[], k: number[], v: number[], c: AttnCase, mask?: (i: number, j: number) => boolean): number[] {
  const { B, Hq, Hkv, Tq, Tk, D } = c;
  const g = Hq / Hkv, out: number[] = new Array(B * Hq * Tq * D).fill(0), scale = 1 / Math.sqrt(D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const kvh = Math.floor(h / g);
      for (let i = 0; i < Tq; i++) {
        const s: number[] = [];
        for (let j = 0; j < Tk; j++) {
          const ok = (!c.causal || j <= i) && (c.window === null || j > i - c.window) && (!mask || mask(i, j));
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[((b * Hq + h) * Tq + i) * D + d] * k[((b * Hkv + kvh) * Tk + j) * D + d];
          s.push(ok ? dot * scale : -Infinity);
        }
        const m = Math.max(...s);
        if (m === -Infinity) continue;
        const e = s.map((x) => Math.exp(x - m)), z = e.reduce((a, x) => a + x, 0);
        for (let j = 0; j < Tk; j++)
          for (let d = 0; d < D; d++) out[((b * Hq + h) * Tq + i) * D + d] += (e[j] / z) * v[((b * Hkv + kvh) * Tk + j) * D + d];
      }
    }
  return out;
}

function qkv(c: AttnCase, dtype: 'float32' | 'float64', device: string, seed: number, requiresGrad = false): [Tensor, Tensor, Tensor] {
  return [rand([c.B, c.Hq, c.Tq, c.D], seed, dtype, device, requiresGrad), rand([c.B, c.Hkv, c.Tk, c.D], seed + 1, dtype, device, requiresGrad),
    rand([c.B, c.Hkv, c.Tk, c.D], seed + 2, dtype, device, requiresGrad)];
}

/** k or v [B, Hkv, T, D] -> [B, Hq, T, D] by repetition (HF's repeat_kv). */
function repeatKv(t: Tensor, g: number): Tensor {
  const [B, H, T, D] = t.shape;
  return t.reshape([B, H, 1, T, D]).expand([B, H, g, T, D]).reshape([B, H * g, T, D]);
}

describeBackends('scaledDotProductAttention with enableGqa and slidingWindow', (device) => {
  const cases: AttnCase[] = [
    { B: 2, Hq: 6, Hkv: 2, Tq: 9, Tk: 9, D: 8, causal: true, window: null },
    { B: 1, Hq: 6, Hkv: 3, Tq: 5, Tk: 11, D: 4, causal: false, window: null },
    { B: 2, Hq: 4, Hkv: 1, Tq: 13, Tk: 13, D: 6, causal: true, window: null },
    { B: 1, Hq: 2, Hkv: 2, Tq: 40, Tk: 40, D: 8, causal: true, window: 7 },
    { B: 2, Hq: 4, Hkv: 2, Tq: 70, Tk: 70, D: 16, causal: true, window: 20 },
    { B: 1, Hq: 3, Hkv: 1, Tq: 12, Tk: 12, D: 5, causal: false, window: 4 },
    { B: 1, Hq: 2, Hkv: 1, Tq: 10, Tk: 6, D: 4, causal: false, window: 3 },
    { B: 1, Hq: 4, Hkv: 2, Tq: 1, Tk: 17, D: 8, causal: false, window: null },
  ];
  const label = (c: AttnCase): string => `B${c.B} Hq${c.Hq} Hkv${c.Hkv} Tq${c.Tq} Tk${c.Tk} D${c.D}${c.causal ? ' causal' : ''}${c.window ? ` window ${c.window}` : ''}`;
  for (const dtype of ['float32', 'float64'] as const) {
    for (const c of cases) {
      it(`forward matches per-head loops with repeat_kv: ${dtype} ${label(c)}`, () => {
        const [q, k, v] = qkv(c, dtype, device, c.Tq + c.Hq);
        const y = F.scaledDotProductAttention(q, k, v, { enableGqa: true, isCausal: c.causal, slidingWindow: c.window });
        expect(y.shape).toEqual([c.B, c.Hq, c.Tq, c.D]);
        const tol = dtype === 'float32' ? { atol: 1e-5, rtol: 1e-4 } : { atol: 1e-12, rtol: 1e-10 };
        expectClose(y, naiveAttention(vals(q), vals(k), vals(v), c), tol);
      });
    }
  }

  for (const c of [cases[0], cases[1], cases[4], cases[5], cases[6]]) {
    it(`backward matches finite differences: ${label(c)}`, () => {
      const small = { ...c, Tq: Math.min(c.Tq, 12), Tk: Math.min(c.Tk, 12), window: c.window === null ? null : Math.min(c.window, 5) };
      const [q, k, v] = qkv(small, 'float64', device, 50, true);
      ng.gradcheck((a, b, d) => F.scaledDotProductAttention(a, b, d, { enableGqa: true, isCausal: c.causal, slidingWindow: small.window }),
        [q, k, v], { atol: 1e-6 });
    });
  }

  it('dK and dV sum the repeated heads: equal to attention over repeated K/V, dropout included', () => {
    const c = cases[4];
    const run = (gqa: boolean): Tensor[] => {
      const [q, k, v] = qkv(c, 'float64', device, 60, true);
      ng.manualSeed(3);
      const g = c.Hq / c.Hkv;
      const y = gqa ? F.scaledDotProductAttention(q, k, v, { enableGqa: true, isCausal: true, slidingWindow: c.window, dropoutP: 0.2 })
        : F.scaledDotProductAttention(q, repeatKv(k, g), repeatKv(v, g), { isCausal: true, slidingWindow: c.window, dropoutP: 0.2 });
      y.backward(rand(y.shape as number[], 61, 'float64', device));
      return [y, q.grad!, k.grad!, v.grad!];
    };
    const a = run(true), b = run(false);
    for (let i = 0; i < 4; i++) expectClose(a[i], b[i], { atol: 1e-12, rtol: 1e-12 });
  });

  it('the window equals an explicit bool mask and combines with one; a window covering every key changes nothing', () => {
    const c = cases[3];
    const [q, k, v] = qkv(c, 'float64', device, 70);
    const keep = (i: number, j: number): boolean => (i * 7 + j * 3) % 5 !== 0;
    const m = ng.tensor(Array.from({ length: c.Tq }, (_, i) => Array.from({ length: c.Tk }, (_, j) => keep(i, j))), { dtype: 'bool', device });
    const y = F.scaledDotProductAttention(q, k, v, { isCausal: true, slidingWindow: c.window, attnMask: m });
    expectClose(y, naiveAttention(vals(q), vals(k), vals(v), c, keep), { atol: 1e-12 });
    const full = F.scaledDotProductAttention(q, k, v, { isCausal: true, slidingWindow: c.Tk });
    expect(vals(full)).toEqual(vals(F.scaledDotProductAttention(q, k, v, { isCausal: true })));
  });

  it('takes strided q/k/v (views of [B, T, H, D] projections) and half precision', () => {
    const c = cases[0];
    const qb = rand([c.B, c.Tq, c.Hq, c.D], 80, 'float32', device), kb = rand([c.B, c.Tk, c.Hkv, c.D], 81, 'float32', device);
    const vb = rand([c.B, c.Tk, c.Hkv, c.D], 82, 'float32', device);
    const [q, k, v] = [qb.transpose(1, 2), kb.transpose(1, 2), vb.transpose(1, 2)];
    const y = F.scaledDotProductAttention(q, k, v, { enableGqa: true, isCausal: true });
    expectClose(y, naiveAttention(vals(q.contiguous()), vals(k.contiguous()), vals(v.contiguous()), c), { atol: 1e-5, rtol: 1e-4 });
    const yh = F.scaledDotProductAttention(q.to('bfloat16'), k.to('bfloat16'), v.to('bfloat16'), { enableGqa: true, isCausal: true });
    expect(yh.dtype).toBe('bfloat16');
    expectClose(yh.float(), y, { atol: 3e-2, rtol: 3e-2 });
  });

  it('rejects bad arguments with clear errors', () => {
    const q = ng.ones([1, 6, 3, 4], { device }), k = ng.ones([1, 4, 3, 4], { device });
    expect(() => F.scaledDotProductAttention(q, k, k, { enableGqa: true })).toThrow(/nodegrad: scaledDotProductAttention: enableGqa needs k and v with the same number of heads, dividing q's/);
    expect(() => F.scaledDotProductAttention(q, k, k)).toThrow(/scaledDotProductAttention: leading dims of q, k and v do not broadcast/);
    expect(() => F.scaledDotProductAttention(q, ng.ones([1, 2, 3, 4], { device }), ng.ones([1, 3, 3, 4], { device }), { enableGqa: true }))
      .toThrow(/enableGqa needs k and v with the same number of heads/);
    expect(() => F.scaledDotProductAttention(ng.ones([3, 4], { device }), ng.ones([3, 4], { device }), ng.ones([3, 4], { device }), { enableGqa: true }))
      .toThrow(/enableGqa needs q, k and v of at least 3 dims/);
    expect(() => F.scaledDotProductAttention(q, q, q, { enableGqa: 1 as unknown as boolean })).toThrow(/enableGqa must be a boolean/);
    expect(() => F.scaledDotProductAttention(q, q, q, { slidingWindow: 0 })).toThrow(/slidingWindow must be a positive integer \(got 0\)/);
    expect(() => F.scaledDotProductAttention(q, q, q, { slidingWindow: 2.5 })).toThrow(/slidingWindow must be a positive integer/);
  });
});

it('GQA attention gradients are bitwise identical for 1, 2 and 3 threads', () => {
  const outputs = perThreadCount(`
    const B = 2, Hq = 8, Hkv = 2, T = 67, D = 16, BH = B * Hq, BK = B * Hkv;
    const q = fill(BH * T * D), k = fill(BK * T * D), v = fill(BK * T * D), dout = fill(BH * T * D);
    const out = new Float32Array(BH * T * D), lse = new Float32Array(BH * T);
    const dims = [BH, T, T, D, D, Hq / Hkv, 24];
    addon.attentionForward(q, k, v, out, lse, dims, 0.25, true, null, 0, 0, [BH], [], 0, 0, 0);
    const dq = new Float32Array(BH * T * D), dk = new Float32Array(BK * T * D), dv = new Float32Array(BK * T * D);
    addon.attentionBackward(q, k, v, out, lse, dout, dq, dk, dv, null, dims, 0.25, true, null, 0, 0, [BH], [], 0, 0, 0);
    process.stdout.write([hex(out), hex(dq), hex(dk), hex(dv)].join(' '));`);
  expect(outputs[0].length).toBeGreaterThan(1000);
  for (const o of outputs.slice(1)) expect(o).toBe(outputs[0]);
});
