// CUDA matmul in TFLOP/s: cuBLASLt (through ng's gemm export) and the own kernels (gemmOwn)
// on the same preallocated operands, against torch.matmul(out=) in the same run.
// Shapes (M x K x N, C[M,N] = A[M,K] @ B[K,N]):
//   4096^3 bf16 (the acceptance shape: own >= 0.5x torch), 8192^3 bf16, 4096^3 fp32 strict
//   and TF32 ('high' precision), and GPT-2 124M training shapes at B*T = 16384 in bf16 with
//   B = W^T of an nn.Linear weight W [N, K] (as F.linear does): qkv 768->2304, attention
//   projection 768->768, MLP up 768->3072, MLP down 3072->768, LM head 768->50304.
// pctPeak is % of BF16_PEAK_TFLOPS (the dense bf16 tensor-core peak) for every row.
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { BF16_PEAK_TFLOPS, runPeer, tflops, timeCuda, withPeer, type Row } from './row.js';

export const title = 'CUDA matmul (cuBLASLt and the own tensor-core kernel vs torch.matmul)';

type GemmFn = (M: number, N: number, K: number, batchShape: number[], a: unknown, aOff: number, aSt: number[],
  b: unknown, bOff: number, bSt: number[], c: unknown, cOff: number, cSt: number[], alpha: number, beta: number) => void;
const nat = native as unknown as {
  gemm: GemmFn; gemmOwn: GemmFn; cudaGemmBackend(device: number): string; setFloat32MatmulPrecision(mode: number): void;
};

/** One benchmark shape; `mode` 'tf32' runs float32 with setFloat32MatmulPrecision('high'). */
export interface GemmCase { name: string; M: number; K: number; N: number; dtype: 'bfloat16' | 'float32'; mode: 'strict' | 'tf32'; weightT: boolean }

function cases(quick: boolean): GemmCase[] {
  const sq = (name: string, s: number, dtype: 'bfloat16' | 'float32', mode: 'strict' | 'tf32' = 'strict'): GemmCase =>
    ({ name, M: s, K: s, N: s, dtype, mode, weightT: false });
  const gpt = (name: string, K: number, N: number): GemmCase => ({ name, M: 16384, K, N, dtype: 'bfloat16', mode: 'strict', weightT: true });
  const all: GemmCase[] = [
    sq('square', 4096, 'bfloat16'),
    sq('square', 8192, 'bfloat16'),
    sq('square', 4096, 'float32'),
    sq('square', 4096, 'float32', 'tf32'),
    gpt('gpt2.qkv', 768, 2304),
    gpt('gpt2.attnproj', 768, 768),
    gpt('gpt2.fc', 768, 3072),
    gpt('gpt2.fcproj', 3072, 768),
    gpt('gpt2.lmhead', 768, 50304),
  ];
  return quick ? [all[0], all[2], all[4]] : all;
}

export const shapeOf = (c: GemmCase): string => `${c.M}x${c.K}x${c.N}${c.weightT ? ' (B=W^T)' : ''}`;
const dtypeLabel = (c: GemmCase): string => (c.mode === 'tf32' ? 'float32-tf32' : c.dtype);

export async function run(opts: { quick: boolean }): Promise<Row[]> {
  const list = cases(opts.quick);
  const backend = nat.cudaGemmBackend(0);
  const out: Row[] = [];
  for (const c of list) out.push(...measure(c, opts.quick, backend));
  const peer = runPeer('gemm_peer.py', {
    quick: opts.quick,
    cases: list.map((c) => ({ M: c.M, K: c.K, N: c.N, dtype: c.dtype, mode: c.mode, weightT: c.weightT, shape: shapeOf(c), label: dtypeLabel(c) })),
  });
  return out.map((r) => withPeer(r, peer, 'torch.matmul'));
}

function measure(c: GemmCase, quick: boolean, backend: string): Row[] {
  ng.manualSeed(0);
  const dev = { device: 'cuda' as const, dtype: c.dtype };
  const A: Tensor = ng.randn([c.M, c.K], dev).keep();
  const W: Tensor = (c.weightT ? ng.randn([c.N, c.K], dev) : ng.randn([c.K, c.N], dev)).keep();
  const B = c.weightT ? W.t() : W;
  const C: Tensor = ng.zeros([c.M, c.N], dev).keep();
  const call = (fn: 'gemm' | 'gemmOwn') => () => nat[fn](c.M, c.N, c.K, [], A.storage.data, A.offset, [...A.strides],
    B.storage.data, B.offset, [...B.strides], C.storage.data, C.offset, [...C.strides], 1, 0);
  const flops = 2 * c.M * c.N * c.K;
  const iters = quick ? 3 : 10, reps = quick ? 3 : 7;
  const rows: Row[] = [];
  const row = (bench: string, ms: number, note?: string): Row => {
    const tf = tflops(flops, ms);
    return { bench, shape: shapeOf(c), dtype: dtypeLabel(c), ms, tflops: tf, pctPeak: (100 * tf) / BF16_PEAK_TFLOPS, note };
  };
  try {
    if (c.mode === 'tf32') nat.setFloat32MatmulPrecision(1);
    rows.push(row(`gemm.${c.name}.cublaslt`, timeCuda(call('gemm'), { iters, reps }), backend));
  } finally {
    nat.setFloat32MatmulPrecision(0);
  }
  // The own kernels ignore the TF32 mode (always strict fp32): no own row for it.
  if (c.mode === 'strict') rows.push(row(`gemm.${c.name}.own`, timeCuda(call('gemmOwn'), { iters, reps }), 'own kernel'));
  for (const t of [A, W, C]) t.dispose();
  return rows;
}
