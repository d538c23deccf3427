// The Llama family's ops on CUDA against the CPU (the reference): rmsNorm / addRmsNorm
// (C from 1 past the register-cached limit 8192, odd C, views, bf16/f16 with HF's
// rounding order, deterministic weight gradient), rotaryEmbedding (positions, scaling,
// strided views, in place), swiglu (aligned and unaligned), and grouped-query /
// sliding-window attention on the flash (bf16/f16, D 64/128) and simple (float32,
// odd D) kernels, forward and backward, with the dropout mask matching the CPU's.
import { expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { scaledDotProductAttention as sdpa } from '../../lib/ops/attention.js';
import { addRmsNorm, rmsNorm, rotaryEmbedding, rotaryEmbedding_, swiglu } from '../../lib/ops/llama.js';
import { expectClose } from '../helpers.js';
import { compareCpuCuda, describeCuda, type FloatDType } from './helpers.js';

const HALF: FloatDType[] = ['bfloat16', 'float16'];

/** randn values that are exact in bfloat16 (so the CPU reference sees the same inputs). */
function randnExact(shape: number[], scale = 1, shift = 0): Tensor {
  return ng.noGrad(() => ng.randn(shape).mul(scale).add(shift).to('bfloat16').to('float32'));
}

const invFreq = (D: number, base = 10000): Float64Array => Float64Array.from({ length: D / 2 }, (_, i) => 1 / base ** ((2 * i) / D));

describeCuda('rmsNorm on CUDA', () => {
  for (const C of [1, 3, 64, 768, 1000, 4096, 8192, 9000]) {
    test(`forward and backward match the CPU, float32, C=${C}`, () => {
      ng.manualSeed(C);
      const rows = C >= 4096 ? 9 : 37;
      const x = randnExact([rows, C], 2, 0.5).requiresGrad_(true), w = randnExact([C], 0.5, 1).requiresGrad_(true);
      compareCpuCuda((a, c) => rmsNorm(a, c), [x, w], { grad: true });
      compareCpuCuda((a) => rmsNorm(a, null, 1e-3), [x], { grad: true });
    });
  }

  for (const dtype of HALF) {
    for (const C of [3, 128, 1000, 4096, 9000]) {
      test(`forward and backward match the CPU, ${dtype}, C=${C}`, () => {
        ng.manualSeed(100 + C);
        const x = randnExact([13, C], 1, 0.25).requiresGrad_(true), w = randnExact([C], 0.5, 1).requiresGrad_(true);
        compareCpuCuda((a, c) => rmsNorm(a, c), [x, w], { grad: true, dtype });
      });
    }
    test(`${dtype} rounds like HF: weight * (x.float() * rsqrt(var + eps)).to(dtype), bit for bit on the normalised value`, () => {
      ng.manualSeed(5);
      const x = randnExact([16, 256], 3).to('cuda').to(dtype), w = randnExact([256], 0.5, 1).to('cuda').to(dtype);
      const h = x.float().mul(x.float().square().mean(-1, true).add(1e-6).rsqrt()).to(dtype);
      // the normalised value may differ in the last float32 bit before rounding: compare within one half ulp
      expectClose(rmsNorm(x, w).float().cpu(), w.mul(h).float().cpu(), { atol: 0, rtol: dtype === 'bfloat16' ? 8e-3 : 1e-3 });
      expectClose(rmsNorm(x, null).float().cpu(), h.float().cpu(), { atol: 0, rtol: dtype === 'bfloat16' ? 8e-3 : 1e-3 });
    });
  }

  test('many rows: the deterministic two-stage weight gradient, bitwise identical between runs', () => {
    ng.manualSeed(7);
    const x = randnExact([4099, 96]).requiresGrad_(true), w = randnExact([96], 0.5, 1).requiresGrad_(true);
    compareCpuCuda((a, c) => rmsNorm(a, c), [x, w], { grad: true, gradAtol: 2e-3, gradRtol: 1e-3 });
    const run = (): number[] => ng.scope(() => {
      ng.manualSeed(8);
      const xs = ng.randn([2048, 768], { device: 'cuda' }), ws = ng.ones([768], { device: 'cuda' }).requiresGrad_(true);
      ng.manualSeed(9);
      rmsNorm(xs, ws).mul(ng.randn([2048, 768], { device: 'cuda' })).sum().backward();
      return Array.from(ws.grad!.cpu().dataSync() as Float32Array);
    });
    expect(run()).toEqual(run());
  });

  test('views: transposed, narrowed, at an element offset', () => {
    ng.manualSeed(11);
    const x = randnExact([64, 20]).requiresGrad_(true), w = randnExact([64], 0.5, 1).requiresGrad_(true);
    compareCpuCuda((a, c) => rmsNorm(a.transpose(0, 1), c), [x, w], { grad: true });
    const w2 = randnExact([20], 0.5, 1).requiresGrad_(true);
    compareCpuCuda((a, c) => rmsNorm(a.narrow(0, 3, 10), c), [x, w2], { grad: true });
  });

  test('addRmsNorm: sum, out and every gradient match the CPU (float32, bfloat16)', () => {
    for (const dtype of ['float32', 'bfloat16'] as FloatDType[]) {
      for (const C of [5, 768, 4096]) {
        ng.manualSeed(200 + C);
        const x = randnExact([17, C]).requiresGrad_(true), r = randnExact([17, C], 2).requiresGrad_(true);
        const w = randnExact([C], 0.5, 1).requiresGrad_(true);
        compareCpuCuda((a, q, c) => { const { sum, out } = addRmsNorm(a, q, c); return [sum, out]; }, [x, r, w], { grad: true, dtype });
      }
    }
  });

  test('float64 on CUDA runs the composed version; a weight on another device is refused', () => {
    ng.manualSeed(12);
    const x = ng.randn([4, 8], { dtype: 'float64' }).requiresGrad_(true), w = ng.randn([8], { dtype: 'float64' }).requiresGrad_(true);
    compareCpuCuda((a, c) => rmsNorm(a, c), [x, w], { grad: true, dtype: 'float64', gradAtol: 1e-5, gradRtol: 1e-5 });
    expect(() => rmsNorm(ng.randn([4, 8], { device: 'cuda' }), ng.ones([8]))).toThrow(/different devices/);
  });
});

describeCuda('rotaryEmbedding on CUDA', () => {
  for (const dtype of ['float32', ...HALF] as FloatDType[]) {
    for (const [B, H, T, D] of [[2, 3, 5, 8], [1, 32, 17, 128], [2, 4, 9, 64], [1, 1, 1, 2], [1, 2, 3, 256]]) {
      test(`forward and backward match the CPU, ${dtype} [${B},${H},${T},${D}]`, () => {
        ng.manualSeed(B * 100 + T + D);
        const x = randnExact([B, H, T, D]).requiresGrad_(true);
        compareCpuCuda((a) => rotaryEmbedding(a, { invFreq: invFreq(D, 500000), positionOffset: 3 }), [x], { grad: true, dtype });
      });
    }
  }

  test('positions [T] and [B, T] on the device, attention scaling, large positions', () => {
    ng.manualSeed(20);
    const x = randnExact([2, 4, 6, 16]).requiresGrad_(true);
    const pCpu = ng.tensor([[0, 5, 9, 100, 4000, 131071], [3, 3, 3, 2, 1, 0]], { dtype: 'int32' });
    const pCuda = pCpu.to('cuda');
    const run = (a: Tensor): Tensor => rotaryEmbedding(a, { invFreq: invFreq(16), positions: a.device === 'cpu' ? pCpu : pCuda, attentionScaling: 1.3 });
    compareCpuCuda(run, [x], { grad: true, atol: 2e-5 });
    const p1 = ng.tensor([7, 0, 1, 2, 8, 9], { dtype: 'int32' });
    compareCpuCuda((a) => rotaryEmbedding(a, { invFreq: invFreq(16), positions: a.device === 'cpu' ? p1 : p1.to('cuda') }), [x], { grad: true });
  });

  test('strided views (q of a [B, T, H, D] projection), an offset view, and in place on a cache slice', () => {
    ng.manualSeed(21);
    const base = randnExact([2, 7, 4, 64]).requiresGrad_(true);
    compareCpuCuda((a) => rotaryEmbedding(a.transpose(1, 2), { invFreq: invFreq(64) }), [base], { grad: true });
    compareCpuCuda((a) => rotaryEmbedding(a.transpose(1, 2).narrow(2, 2, 3), { invFreq: invFreq(64) }), [base], { grad: true });
    const cache = randnExact([2, 4, 10, 64]);
    const expected = rotaryEmbedding(cache.narrow(2, 6, 1), { invFreq: invFreq(64), positionOffset: 6 });
    const gcache = cache.to('cuda');
    ng.noGrad(() => rotaryEmbedding_(gcache.narrow(2, 6, 1), { invFreq: invFreq(64), positionOffset: 6 }));
    expectClose(gcache.narrow(2, 6, 1).cpu(), expected, { atol: 1e-5 });
    expectClose(gcache.narrow(2, 0, 6).cpu(), cache.narrow(2, 0, 6), { atol: 0 });  // the rest untouched
  });

  test('float64 on CUDA runs the composed version', () => {
    const x = ng.randn([1, 2, 3, 8], { dtype: 'float64' }).requiresGrad_(true);
    compareCpuCuda((a) => rotaryEmbedding(a, { invFreq: invFreq(8), positionOffset: 2 }), [x], { grad: true, dtype: 'float64', gradAtol: 1e-5, gradRtol: 1e-5 });
  });

  test('a head dim above 512 is refused with a clear error', () => {
    const x = ng.randn([1, 1, 2, 1024], { device: 'cuda' });
    expect(() => rotaryEmbedding(x, { invFreq: invFreq(1024) })).toThrow(/head dim 1024 is too large for CUDA/);
  });
});

describeCuda('swiglu on CUDA', () => {
  for (const dtype of ['float32', ...HALF] as FloatDType[]) {
    for (const shape of [[7, 1001], [64, 14336], [3]]) {
      test(`forward and backward match the CPU, ${dtype} [${shape}]`, () => {
        ng.manualSeed(shape[0]);
        const g = randnExact(shape, 4).requiresGrad_(true), u = randnExact(shape).requiresGrad_(true);
        compareCpuCuda((a, b) => swiglu(a, b), [g, u], { grad: true, dtype });
      });
    }
  }

  test('unaligned views (odd offsets of a fused gate_up projection) take the scalar path', () => {
    ng.manualSeed(30);
    const gu = randnExact([5, 2 * 37 + 1], 4).requiresGrad_(true);
    compareCpuCuda((a) => swiglu(a.narrow(1, 1, 37), a.narrow(1, 38, 37)), [gu], { grad: true });
  });

  test('bfloat16 rounds silu(gate) before the product like HF', () => {
    ng.manualSeed(31);
    const g = randnExact([8, 64], 4).to('cuda').to('bfloat16'), u = randnExact([8, 64]).to('cuda').to('bfloat16');
    expectClose(swiglu(g, u).float().cpu(), g.silu().mul(u).float().cpu(), { atol: 0, rtol: 8e-3 });
  });
});

describeCuda('grouped-query and sliding-window attention on CUDA', () => {
  interface Case { B: number; Hq: number; Hkv: number; Tq: number; Tk: number; D: number; causal: boolean; window: number | null }
  const cases: Case[] = [
    { B: 2, Hq: 8, Hkv: 2, Tq: 77, Tk: 77, D: 64, causal: true, window: null },
    { B: 1, Hq: 4, Hkv: 1, Tq: 130, Tk: 130, D: 128, causal: true, window: 40 },
    { B: 1, Hq: 6, Hkv: 3, Tq: 33, Tk: 150, D: 64, causal: false, window: null },
    { B: 2, Hq: 4, Hkv: 2, Tq: 200, Tk: 200, D: 64, causal: false, window: 70 },
    { B: 1, Hq: 4, Hkv: 4, Tq: 300, Tk: 300, D: 128, causal: true, window: 64 },
    { B: 1, Hq: 4, Hkv: 2, Tq: 1, Tk: 93, D: 128, causal: false, window: null },
  ];
  const label = (c: Case): string => `B${c.B} Hq${c.Hq} Hkv${c.Hkv} Tq${c.Tq} Tk${c.Tk} D${c.D}${c.causal ? ' causal' : ''}${c.window ? ` window ${c.window}` : ''}`;
  const inputs = (c: Case, D = c.D): Tensor[] => [
    randnExact([c.B, c.Hq, c.Tq, D]).requiresGrad_(true), randnExact([c.B, c.Hkv, c.Tk, D]).requiresGrad_(true),
    randnExact([c.B, c.Hkv, c.Tk, D]).requiresGrad_(true)];
  const tol: Record<string, { atol: number; rtol: number; gradAtol: number; gradRtol: number }> = {
    bfloat16: { atol: 3e-2, rtol: 3e-2, gradAtol: 8e-2, gradRtol: 8e-2 },
    float16: { atol: 5e-3, rtol: 5e-3, gradAtol: 2e-2, gradRtol: 2e-2 },
    float32: { atol: 2e-5, rtol: 2e-4, gradAtol: 1e-4, gradRtol: 1e-3 },
  };
  for (const dtype of ['bfloat16', 'float16'] as FloatDType[]) {
    for (const c of cases) {
      test(`flash kernels match the CPU: ${dtype} ${label(c)}`, () => {
        ng.manualSeed(c.Tq + c.Hq);
        compareCpuCuda((q, k, v) => sdpa(q, k, v, { enableGqa: true, isCausal: c.causal, slidingWindow: c.window }), inputs(c), { grad: true, dtype, ...tol[dtype] });
      });
    }
  }
  for (const c of cases) {
    test(`simple kernels match the CPU: float32 with dropout (SIMT path) and odd D ${label(c)}`, () => {
      ng.manualSeed(c.Tk);
      const o = { enableGqa: true, isCausal: c.causal, slidingWindow: c.window };
      // dropout skips the composed float32 path: the SIMT kernels run; same seed, same mask as the CPU
      const withDrop = (q: Tensor, k: Tensor, v: Tensor): Tensor => { ng.manualSeed(1); return sdpa(q, k, v, { ...o, dropoutP: 0.1 }); };
      compareCpuCuda(withDrop, inputs(c), { grad: true, ...tol.float32 });
      compareCpuCuda((q, k, v) => sdpa(q, k, v, o), inputs(c, 40), { grad: true, ...tol.float32 });
      compareCpuCuda((q, k, v) => sdpa(q, k, v, o), inputs(c, 40), { grad: true, dtype: 'bfloat16', ...tol.bfloat16 });
    });
  }

  test('strided q/k/v of fused [B, T, H, D] projections need no copy and match the CPU', () => {
    ng.manualSeed(50);
    const B = 2, T = 65, Hq = 8, Hkv = 2, D = 64;
    const qkv = randnExact([B, T, Hq + 2 * Hkv, D]).requiresGrad_(true);
    compareCpuCuda((a) => {
      const q = a.narrow(2, 0, Hq).transpose(1, 2), k = a.narrow(2, Hq, Hkv).transpose(1, 2), v = a.narrow(2, Hq + Hkv, Hkv).transpose(1, 2);
      return sdpa(q, k, v, { enableGqa: true, isCausal: true, slidingWindow: 20 });
    }, [qkv], { grad: true, dtype: 'bfloat16', ...tol.bfloat16 });
  });

  test('the GQA backward is bitwise identical between runs and equals attention over repeated K/V (bf16)', () => {
    const run = (repeat: boolean): number[][] => ng.scope(() => {
      ng.manualSeed(60);
      const d = { device: 'cuda' as const, dtype: 'bfloat16' as const };
      const q = ng.randn([2, 8, 130, 64], d).requiresGrad_(true), k = ng.randn([2, 2, 130, 64], d).requiresGrad_(true);
      const v = ng.randn([2, 2, 130, 64], d).requiresGrad_(true);
      const rep = (t: Tensor): Tensor => t.reshape([2, 2, 1, 130, 64]).expand([2, 2, 4, 130, 64]).reshape([2, 8, 130, 64]);
      const y = repeat ? sdpa(q, rep(k), rep(v), { isCausal: true }) : sdpa(q, k, v, { enableGqa: true, isCausal: true });
      y.float().mul(ng.randn([2, 8, 130, 64], { device: 'cuda' })).sum().backward();
      return [y, q.grad!, k.grad!, v.grad!].map((t) => Array.from(t.float().cpu().dataSync() as Float32Array));
    });
    const a = run(false), b = run(false), r = run(true);
    for (let i = 0; i < 4; i++) expect(a[i]).toEqual(b[i]);
    expect(a[0]).toEqual(r[0]);  // forward: the same kernel reads the same K/V rows
    expect(a[1]).toEqual(r[1]);
    for (let i = 2; i < 4; i++) expectClose(a[i], r[i], { atol: 3e-2, rtol: 2e-2 });  // dK/dV: bf16 sums in another order
  });
});
