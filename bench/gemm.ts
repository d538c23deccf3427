// GEMM in GFLOP/s and % of the FMA peak: square 256..2048, transformer shapes (tokens x C
// times C x 4C and back, attention-sized batches), the transposed operands autograd's
// backward multiplies (dW = Xᵀ·dY, dX = dY·Wᵀ), the skinny products of a LoRA step
// (x·Aᵀ with r = 8, a 16-column product) and a Llama decode step's GEMV, whose rate is the
// GB/s of weights streamed against the copy bandwidth. "kernel" rows call the addon on a
// preallocated output (torch: matmul(out=)); "matmul" rows go through ng.matmul (allocation
// and dispatch included; torch: matmul allocating). Peer: torch in the same run at the same
// thread count; without torch, a naive triple loop in JavaScript on the smallest shape.
import * as ng from '../lib/index.js';
import { native } from '../lib/native.js';
import { fmtShape, makeRow, timeIt, timeOptions, type BenchContext, type PeerCase, type Row } from './common.js';

interface Case {
  name: string; batch: number; m: number; k: number; n: number;
  ta?: boolean;        // A is the transposed view of a [k, m] tensor
  tb?: boolean;        // B is the transposed view of an [n, k] tensor (x·Wᵀ with W [n, k])
  dtype?: 'float32' | 'float64';
  viaOp?: boolean;     // also time ng.matmul (default true)
  memoryBound?: boolean; // rate = GB/s of B (the weights) streamed
}

function cases(quick: boolean): Case[] {
  const sq = (quick ? [256, 1024] : [256, 512, 1024, 2048]).map((s) => ({ name: 'square', batch: 1, m: s, k: s, n: s }));
  const tr: Case[] = [
    { name: 'mlp-up', batch: 1, m: 2048, k: 768, n: 3072 },
    { name: 'mlp-down', batch: 1, m: 2048, k: 3072, n: 768 },
    { name: 'attn-scores', batch: 48, m: 128, k: 64, n: 128 },
    { name: 'mlp-up.dW', batch: 1, m: 768, k: 2048, n: 3072, ta: true, viaOp: false },
    { name: 'mlp-up.dX', batch: 1, m: 2048, k: 3072, n: 768, tb: true, viaOp: false },
    { name: 'skinny', batch: 1, m: 2048, k: 2048, n: 16 },
    { name: 'lora-down', batch: 1, m: 2048, k: 768, n: 8, tb: true, viaOp: false },
    { name: 'gemv', batch: 1, m: 1, k: 2048, n: 8192, memoryBound: true },
    { name: 'gemv.Wt', batch: 1, m: 1, k: 2048, n: 8192, tb: true, memoryBound: true },
    { name: 'square', batch: 1, m: 1024, k: 1024, n: 1024, dtype: 'float64', viaOp: false },
  ];
  return quick ? [...sq, tr[0], tr[7]] : [...sq, ...tr];
}

function naiveMs(c: Case): number {
  const a = new Float32Array(c.m * c.k).fill(1), b = new Float32Array(c.k * c.n).fill(1), o = new Float32Array(c.m * c.n);
  const t0 = performance.now();
  for (let i = 0; i < c.m; i++) for (let p = 0; p < c.k; p++) {
    const av = a[i * c.k + p];
    for (let j = 0; j < c.n; j++) o[i * c.n + j] += av * b[p * c.n + j];
  }
  return performance.now() - t0;
}

/**
 * The FMA peak in GFLOP/s for the kernel in use: threads x FMA instructions per cycle
 * (measured, rounded to a half) x lanes (16 float32 for AVX-512, 8 for AVX2, 4 for the
 * portable SSE build) x 2 flops x the measured clock; lanes halve for float64.
 */
// Measured once per process (~0.1 s): the header and every GEMM row use the same figure.
let measuredPeak: { ghz: number; fmaYmmPerCycle: number; fmaZmmPerCycle: number } | undefined;
export function fmaPeak(threads: number, dtype: 'float32' | 'float64' = 'float32'): { gflops: number; text: string } {
  const kernel = ng.info().cpu.kernel;
  const p = (measuredPeak ??= native.cpuPeak());
  const wide = kernel === 'avx512';
  const perCycle = Math.round(2 * (wide ? p.fmaZmmPerCycle : kernel === 'avx2' ? p.fmaYmmPerCycle : 1)) / 2;
  const lanes = (wide ? 16 : kernel === 'avx2' ? 8 : 4) / (dtype === 'float64' ? 2 : 1);
  const gflops = threads * perCycle * lanes * 2 * p.ghz;
  return {
    gflops,
    text: `${threads} cores x ${perCycle} FMA/cycle x ${lanes} ${dtype} lanes x 2 x ${p.ghz.toFixed(2)} GHz = ${gflops.toFixed(0)} GFLOP/s`,
  };
}

export function run(ctx: BenchContext): Row[] {
  const opts = timeOptions(ctx.quick);
  const list = cases(ctx.quick);
  const storedShape = (c: Case, which: 'a' | 'b'): number[] => {
    const mat = which === 'a' ? (c.ta ? [c.k, c.m] : [c.m, c.k]) : c.tb ? [c.n, c.k] : [c.k, c.n];
    return c.batch > 1 ? [c.batch, ...mat] : mat;
  };
  const peerCases = (out: boolean): PeerCase[] => list.map((c) => ({
    op: 'matmul', shapes: [storedShape(c, 'a'), storedShape(c, 'b')], dtype: c.dtype ?? 'float32',
    params: { out, transposeA: !!c.ta, transposeB: !!c.tb },
  }));
  const peerKernel = ctx.peer.time(peerCases(true), opts);
  const peerOp = ctx.peer.time(peerCases(false), opts);
  const peak32 = fmaPeak(ctx.threads, 'float32').gflops, peak64 = fmaPeak(ctx.threads, 'float64').gflops;
  const rows: Row[] = [];
  list.forEach((c, i) => {
    const dtype = c.dtype ?? 'float32';
    const A = ng.randn(storedShape(c, 'a'), { dtype }).keep();
    const B = ng.randn(storedShape(c, 'b'), { dtype }).keep();
    const Av = c.ta ? A.transpose(-1, -2) : A, Bv = c.tb ? B.transpose(-1, -2) : B;
    const C = dtype === 'float64' ? new Float64Array(c.batch * c.m * c.n) : new Float32Array(c.batch * c.m * c.n);
    const bs = c.batch > 1 ? [c.batch] : [];
    const mat = (r: number, k: number, t: boolean) => (t ? [1, r] : [k, 1]);
    const aSt = [...(c.batch > 1 ? [c.m * c.k] : []), ...mat(c.m, c.k, !!c.ta)];
    const bSt = [...(c.batch > 1 ? [c.k * c.n] : []), ...mat(c.k, c.n, !!c.tb)];
    const cSt = c.batch > 1 ? [c.m * c.n, c.n, 1] : [c.n, 1];
    const flops = 2 * c.batch * c.m * c.n * c.k;
    const bytes = c.memoryBound ? c.k * c.n * (dtype === 'float64' ? 8 : 4) : undefined;
    const shape = `${c.batch > 1 ? `${c.batch}x` : ''}${fmtShape([c.m, c.k])}${c.ta ? 'ᵀ' : ''}@${fmtShape([c.k, c.n])}${c.tb ? 'ᵀ' : ''}`;
    const peakGflops = c.memoryBound ? undefined : dtype === 'float64' ? peak64 : peak32;
    const kernel = timeIt(() => native.gemm(c.m, c.n, c.k, bs, A.storage.data, 0, aSt, B.storage.data, 0, bSt, C, 0, cSt, 1, 0), opts);
    const naive = !ctx.peer.available && dtype === 'float32' && !c.ta && !c.tb && c.m * c.n * c.k <= 256 ** 3 ? naiveMs(c) : null;
    rows.push(makeRow(ctx, {
      bench: `gemm.kernel.${c.name}`, shape, dtype, ms: kernel.ms, ...(bytes ? { bytes } : { flops, peakGflops }),
      peer: ctx.peer.available ? ctx.peer.name : naive !== null ? 'naive JS triple loop' : 'none', peerMs: peerKernel[i] ?? naive,
      note: c.memoryBound ? `GB/s of the ${fmtShape(storedShape(c, 'b'))} weights streamed; ${(flops / (kernel.ms * 1e6)).toFixed(1)} GFLOP/s` : undefined,
    }));
    if (c.viaOp !== false) {
      const viaOp = timeIt(() => ng.scope(() => { ng.matmul(Av, Bv); }), opts);
      rows.push(makeRow(ctx, {
        bench: `gemm.matmul.${c.name}`, shape, dtype, ms: viaOp.ms, ...(bytes ? { bytes } : { flops, peakGflops }),
        peer: ctx.peer.name, peerMs: peerOp[i],
      }));
    }
    A.dispose();
    B.dispose();
  });
  return rows;
}
