// CUDA matmul: ng.matmul on CUDA against the CPU reference (float32, bfloat16, float16;
// odd sizes, batches, broadcast batch dims, transposed and strided operands, strided
// outputs, alpha/beta), the own kernels against cuBLASLt on the same device, the fp32
// precision modes, and matmul/linear backward.
import { expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { expectClose } from '../helpers.js';
import { compareCpuCuda, describeCuda, type FloatDType } from './helpers.js';

type GemmFn = (M: number, N: number, K: number, batchShape: number[], a: unknown, aOff: number, aSt: number[],
  b: unknown, bOff: number, bSt: number[], c: unknown, cOff: number, cSt: number[], alpha: number, beta: number) => void;
type GemmBiasFn = (M: number, N: number, K: number, batchShape: number[], a: unknown, aOff: number, aSt: number[],
  b: unknown, bOff: number, bSt: number[], bias: unknown, biasOff: number, c: unknown, cOff: number, cSt: number[],
  epilogue: number) => void;
interface GemmAddon {
  gemm: GemmFn;
  gemmBias: GemmBiasFn;
  gemmOwn: GemmFn;
  cudaGemmBackend(device: number): string;
  setFloat32MatmulPrecision(mode: number): void;
}
const nat = native as unknown as GemmAddon;

/** C = alpha·A@B + beta·C through the addon directly (batch dims of A, B already C's). */
function callGemm(fn: 'gemm' | 'gemmOwn', a: Tensor, b: Tensor, c: Tensor, alpha = 1, beta = 0): void {
  const nd = c.ndim;
  const M = c.shape[nd - 2], N = c.shape[nd - 1], K = a.shape[nd - 1];
  nat[fn](M, N, K, [...c.shape.slice(0, nd - 2)], a.storage.data, a.offset, [...a.strides], b.storage.data, b.offset,
    [...b.strides], c.storage.data, c.offset, [...c.strides], alpha, beta);
}

/** Tolerances against the fp32 CPU result: input rounding of K products adds up like sqrt(K). */
function tolK(dtype: FloatDType, K: number): { atol: number; rtol: number } {
  const s = Math.sqrt(Math.max(K, 1));
  switch (dtype) {
    case 'bfloat16': return { atol: 2e-2 * s, rtol: 2e-2 };
    case 'float16': return { atol: 3e-3 * s, rtol: 3e-3 };
    case 'float64': return { atol: 1e-10 * s, rtol: 1e-9 };
    default: return { atol: 2e-5 * s, rtol: 1e-4 };
  }
}

const dtypes: FloatDType[] = ['float32', 'bfloat16', 'float16'];
const mm = (a: Tensor, b: Tensor): Tensor => ng.matmul(a, b);

describeCuda('CUDA matmul backend', () => {
  test('reports cuBLASLt with its path, or the own kernels with the reason', () => {
    const s = nat.cudaGemmBackend(0);
    expect(s).toMatch(/^(cublasLt|own) \(.+\)$/);
    console.log(`test/gpu/gemm: backend ${s}`);
  });
});

describeCuda('CUDA matmul forward matches the CPU', () => {
  const shapes: [number, number, number][] = [[1, 1, 1], [17, 33, 65], [128, 128, 128], [1000, 300, 77], [3, 1, 500],
    [1, 257, 64], [130, 129, 31]];
  for (const dtype of dtypes) {
    for (const [M, N, K] of shapes) {
      test(`${M}x${N}x${K} ${dtype}`, () => {
        compareCpuCuda(mm, [ng.randn([M, K]), ng.randn([K, N])], { dtype, ...tolK(dtype, K) });
      });
    }
    test(`batched [4,64,96] @ [96,32] ${dtype}`, () => {
      compareCpuCuda(mm, [ng.randn([4, 64, 96]), ng.randn([96, 32])], { dtype, ...tolK(dtype, 96) });
    });
    test(`broadcast batch [2,1,5,7] @ [3,7,4] ${dtype}`, () => {
      compareCpuCuda(mm, [ng.randn([2, 1, 5, 7]), ng.randn([3, 7, 4])], { dtype, ...tolK(dtype, 7) });
    });
    test(`batched both sides [6,33,70] @ [6,70,45] ${dtype}`, () => {
      compareCpuCuda(mm, [ng.randn([6, 33, 70]), ng.randn([6, 70, 45])], { dtype, ...tolK(dtype, 70) });
    });
    test(`transposed operands a.t(), b.t(), both ${dtype}`, () => {
      const tol = tolK(dtype, 90);
      compareCpuCuda((a, b) => ng.matmul(a.t(), b), [ng.randn([90, 70]), ng.randn([90, 50])], { dtype, ...tol });
      compareCpuCuda((a, b) => ng.matmul(a, b.t()), [ng.randn([70, 90]), ng.randn([50, 90])], { dtype, ...tol });
      compareCpuCuda((a, b) => ng.matmul(a.t(), b.t()), [ng.randn([90, 70]), ng.randn([50, 90])], { dtype, ...tol });
    });
    test(`batched transposes (attention-style q @ k^T) ${dtype}`, () => {
      compareCpuCuda((q, k) => ng.matmul(q, k.transpose(-1, -2)), [ng.randn([2, 3, 40, 16]), ng.randn([2, 3, 40, 16])],
        { dtype, ...tolK(dtype, 16) });
    });
    test(`strided operands with no unit stride are copied first ${dtype}`, () => {
      compareCpuCuda((a, b) => ng.matmul(a.slice(1, 0, undefined, 2), b.slice(0, 0, undefined, 3)),
        [ng.randn([37, 2 * 41]), ng.randn([3 * 41, 29])], { dtype, ...tolK(dtype, 41) });
    });
    test(`matrix-vector and vector-matrix ${dtype}`, () => {
      compareCpuCuda(mm, [ng.randn([45, 300]), ng.randn([300])], { dtype, ...tolK(dtype, 300) });
      compareCpuCuda(mm, [ng.randn([300]), ng.randn([300, 45])], { dtype, ...tolK(dtype, 300) });
      compareCpuCuda(mm, [ng.randn([300]), ng.randn([300])], { dtype, ...tolK(dtype, 300) });
    });
    test(`linear (x @ w^T + b) ${dtype}`, () => {
      compareCpuCuda((x, w, b) => ng.linear(x, w, b), [ng.randn([3, 20, 64]), ng.randn([48, 64]), ng.randn([48])],
        { dtype, ...tolK(dtype, 64) });
    });
  }
  test('empty and K = 0 products', () => {
    compareCpuCuda(mm, [ng.randn([0, 5]), ng.randn([5, 7])]);
    compareCpuCuda(mm, [ng.randn([4, 0]), ng.randn([0, 6])]);
  });
  test('float64 runs on CUDA', () => {
    compareCpuCuda(mm, [ng.randn([33, 70], { dtype: 'float64' }), ng.randn([70, 20], { dtype: 'float64' })],
      { dtype: 'float64', ...tolK('float64', 70) });
  });
});

describeCuda('CUDA gemm: alpha, beta and strided outputs', () => {
  for (const dtype of dtypes) {
    test(`alpha/beta into contiguous, column-major and strided C ${dtype}`, () => {
      ng.scope(() => {
        const M = 70, N = 45, K = 130;
        const aG = ng.randn([M, K]).to({ dtype, device: 'cuda' }), bG = ng.randn([K, N]).to({ dtype, device: 'cuda' });
        const a32 = aG.cpu().to('float32'), b32 = bG.cpu().to('float32');
        const tol = tolK(dtype, K);
        const outs: Tensor[] = [
          ng.randn([M, N]).to({ dtype, device: 'cuda' }),
          ng.randn([N, M]).to({ dtype, device: 'cuda' }).t(),
          ng.randn([M, 2 * N]).to({ dtype, device: 'cuda' }).slice(1, 0, undefined, 2),
        ];
        for (const fn of ['gemm', 'gemmOwn'] as const) {
          for (const c of outs) {
            const init = c.cpu().to('float32');
            callGemm(fn, aG, bG, c, 0.5, 2);
            const ref = ng.matmul(a32, b32).mul(0.5).add(init.mul(2));
            expectClose(c.cpu().to('float32'), ref, { atol: 2 * tol.atol, rtol: 2 * tol.rtol });
          }
        }
      });
    });
  }
});

describeCuda('own kernels agree with cuBLASLt', () => {
  const cases: [number, number, number, boolean, boolean][] = [[128, 128, 128, false, false], [129, 77, 1000, false, true],
    [256, 384, 200, true, false], [64, 50, 33, true, true], [1, 1, 1, false, false], [512, 512, 4096, false, false]];
  for (const dtype of dtypes) {
    for (const [M, N, K, ta, tb] of cases) {
      test(`${M}x${N}x${K}${ta ? ' A^T' : ''}${tb ? ' B^T' : ''} ${dtype}`, () => {
        ng.scope(() => {
          const a0 = ng.randn(ta ? [K, M] : [M, K]).to({ dtype, device: 'cuda' });
          const b0 = ng.randn(tb ? [N, K] : [K, N]).to({ dtype, device: 'cuda' });
          const a = ta ? a0.t() : a0, b = tb ? b0.t() : b0;
          const ref = ng.matmul(a, b);
          const own = ng.zeros([M, N], { dtype, device: 'cuda' });
          callGemm('gemmOwn', a, b, own);
          const s = Math.sqrt(K);
          const tol = dtype === 'float32' ? { atol: 1e-4 * s, rtol: 1e-4 } : { atol: 2e-3 * s, rtol: 1.6e-2 };
          expectClose(own.cpu().to('float32'), ref.cpu().to('float32'), tol);
        });
      });
    }
    test(`batched with broadcast weight (stride 0) ${dtype}`, () => {
      ng.scope(() => {
        const a = ng.randn([5, 100, 72]).to({ dtype, device: 'cuda' });
        const w = ng.randn([72, 40]).to({ dtype, device: 'cuda' });
        const ref = ng.matmul(a, w);
        const own = ng.zeros([5, 100, 40], { dtype, device: 'cuda' });
        callGemm('gemmOwn', a, w.unsqueeze(0).expand(5, 72, 40), own);
        expectClose(own.cpu().to('float32'), ref.cpu().to('float32'), { atol: 2e-2, rtol: 1.6e-2 });
      });
    });
  }
  test('own kernel with beta accumulates into C', () => {
    ng.scope(() => {
      const dev = { dtype: 'bfloat16' as const, device: 'cuda' as const };
      const a = ng.randn([70, 90]).to(dev), b = ng.randn([90, 30]).to(dev), c = ng.randn([70, 30]).to(dev);
      const expected = ng.matmul(a.cpu().float(), b.cpu().float()).add(c.cpu().float().mul(3));
      callGemm('gemmOwn', a, b, c, 1, 3);
      expectClose(c.cpu().to('float32'), expected, { atol: 0.3, rtol: 1.6e-2 });
    });
  });
});

describeCuda('gemmBias: fused bias and GELU epilogue', () => {
  for (const dtype of dtypes) {
    for (const [epilogue, name] of [[0, 'bias'], [1, 'bias + gelu(tanh)']] as const) {
      test(`x @ w^T + b${epilogue ? ', then GELU' : ''} (${name}) ${dtype}`, () => {
        ng.scope(() => {
          const Bt = 3, T = 50, K = 96, N = 72;
          const dev = { dtype, device: 'cuda' as const };
          const x = ng.randn([Bt, T, K]).to(dev), w = ng.randn([N, K]).to(dev), b = ng.randn([N]).to(dev);
          const wt = w.t().unsqueeze(0).expand(Bt, K, N);
          const out = ng.zeros([Bt, T, N], dev);
          nat.gemmBias(T, N, K, [Bt], x.storage.data, x.offset, [...x.strides], wt.storage.data, wt.offset, [...wt.strides],
            b.storage.data, b.offset, out.storage.data, out.offset, [...out.strides], epilogue);
          let ref = ng.matmul(x.cpu().float(), w.cpu().float().t()).add(b.cpu().float());
          if (epilogue) ref = ng.nn.functional.gelu(ref, { approximate: 'tanh' });
          const tol = tolK(dtype, K);
          // cuBLASLt's GELU epilogue may use the hardware tanh approximation (relative
          // error ~2^-11), which exceeds the strict fp32 rtol on outputs of magnitude ~10.
          if (epilogue) tol.rtol = Math.max(tol.rtol, 2e-3);
          expectClose(out.cpu().to('float32'), ref, tol);
        });
      });
    }
  }
  test('rejects a bias of the wrong length and an unknown epilogue', () => {
    const dev = { device: 'cuda' as const };
    const x = ng.randn([4, 8]).to(dev), w = ng.randn([8, 6]).to(dev), out = ng.zeros([4, 6], dev);
    const call = (bias: Tensor, n: number, epi: number) => nat.gemmBias(4, n, 8, [], x.storage.data, 0, [8, 1],
      w.storage.data, 0, [6, 1], bias.storage.data, 0, out.storage.data, 0, [6, 1], epi);
    expect(() => call(ng.randn([6]).to(dev), 6, 7)).toThrow(/epilogue/);
    expect(() => call(ng.randn([3]).to(dev), 6, 0)).toThrow(/bias/);
  });
});

describeCuda('float32 matmul precision modes', () => {
  test("'highest' is strict fp32 and 'high' (TF32) stays within TF32 error", () => {
    const K = 512;
    const a = ng.randn([200, K]), b = ng.randn([K, 150]);
    const ref = ng.matmul(a, b);
    try {
      nat.setFloat32MatmulPrecision(0);
      expectClose(ng.matmul(a.to('cuda'), b.to('cuda')).cpu(), ref, tolK('float32', K));
      nat.setFloat32MatmulPrecision(1);
      expectClose(ng.matmul(a.to('cuda'), b.to('cuda')).cpu(), ref, { atol: 3e-3 * Math.sqrt(K), rtol: 3e-3 });
    } finally {
      nat.setFloat32MatmulPrecision(0);
    }
    expect(() => nat.setFloat32MatmulPrecision(5)).toThrow(/setFloat32MatmulPrecision/);
  });
});

describeCuda('CUDA matmul backward matches the CPU', () => {
  for (const dtype of dtypes) {
    test(`matmul grads, batched with broadcast ${dtype}`, () => {
      const tol = tolK(dtype, 48);
      compareCpuCuda(mm, [ng.randn([3, 20, 48], { requiresGrad: true }), ng.randn([48, 24], { requiresGrad: true })],
        { dtype, grad: true, atol: tol.atol, rtol: tol.rtol, gradAtol: tol.atol * 6, gradRtol: tol.rtol * 4 });
    });
    test(`linear grads ${dtype}`, () => {
      const tol = tolK(dtype, 64);
      compareCpuCuda((x, w, b) => ng.linear(x, w, b),
        [ng.randn([4, 16, 64], { requiresGrad: true }), ng.randn([40, 64], { requiresGrad: true }),
          ng.randn([40], { requiresGrad: true })],
        { dtype, grad: true, atol: tol.atol, rtol: tol.rtol, gradAtol: tol.atol * 8, gradRtol: tol.rtol * 4 });
    });
  }
});

describeCuda('CUDA matmul errors', () => {
  test('mixed devices and non-float dtypes are rejected', () => {
    const a = ng.randn([4, 5]).to('cuda'), b = ng.randn([5, 3]);
    expect(() => ng.matmul(a, b)).toThrow(/nodegrad: matmul/);
    const ia = ng.zeros([4, 5], { dtype: 'int32', device: 'cuda' });
    expect(() => ng.matmul(ia, ia.t())).toThrow(/nodegrad: matmul/);
    expect(() => ng.matmul(a, ng.randn([6, 3]).to('cuda'))).toThrow(/inner dimensions/);
  });
  test('gemmOwn refuses CPU buffers', () => {
    const a = ng.randn([4, 5]), b = ng.randn([5, 3]), c = ng.zeros([4, 3]);
    expect(() => callGemm('gemmOwn', a, b, c)).toThrow(/gemmOwn/);
  });
});
