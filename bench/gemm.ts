// fp32 GEMM in GFLOP/s: square 256..2048 and transformer shapes (tokens x C times C x 4C
// and back, attention-sized batches). "kernel" rows call the addon on a preallocated output
// (what torch.matmul's out= measures); "matmul" rows go through ng.matmul (allocation and
// dispatch included). Peer: torch.matmul in the same run at the same thread count; without
// torch, a naive triple loop in JavaScript on the smallest shape.
import * as ng from '../lib/index.js';
import { native } from '../lib/native.js';
import { fmtShape, makeRow, timeIt, timeOptions, type BenchContext, type PeerCase, type Row } from './common.js';

interface Case { name: string; batch: number; m: number; k: number; n: number }

function cases(quick: boolean): Case[] {
  const sq = (quick ? [256, 1024] : [256, 512, 1024, 2048]).map((s) => ({ name: 'square', batch: 1, m: s, k: s, n: s }));
  const tr: Case[] = [
    { name: 'mlp-up', batch: 1, m: 2048, k: 768, n: 3072 },
    { name: 'mlp-down', batch: 1, m: 2048, k: 3072, n: 768 },
    { name: 'attn-scores', batch: 48, m: 128, k: 64, n: 128 },
  ];
  return quick ? [...sq, tr[0]] : [...sq, ...tr];
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

export function run(ctx: BenchContext): Row[] {
  const opts = timeOptions(ctx.quick);
  const list = cases(ctx.quick);
  const peerCases: PeerCase[] = list.map((c) => ({
    op: 'matmul', shapes: c.batch > 1 ? [[c.batch, c.m, c.k], [c.batch, c.k, c.n]] : [[c.m, c.k], [c.k, c.n]], dtype: 'float32',
    params: { out: true },
  }));
  const peer = ctx.peer.time(peerCases, opts);
  const rows: Row[] = [];
  list.forEach((c, i) => {
    const A = ng.randn(c.batch > 1 ? [c.batch, c.m, c.k] : [c.m, c.k]).keep();
    const B = ng.randn(c.batch > 1 ? [c.batch, c.k, c.n] : [c.k, c.n]).keep();
    const C = new Float32Array(c.batch * c.m * c.n);
    const bs = c.batch > 1 ? [c.batch] : [];
    const aSt = c.batch > 1 ? [c.m * c.k, c.k, 1] : [c.k, 1], bSt = c.batch > 1 ? [c.k * c.n, c.n, 1] : [c.n, 1];
    const cSt = c.batch > 1 ? [c.m * c.n, c.n, 1] : [c.n, 1];
    const flops = 2 * c.batch * c.m * c.n * c.k;
    const shape = `${c.batch > 1 ? `${c.batch}x` : ''}${fmtShape([c.m, c.k])}@${fmtShape([c.k, c.n])}`;
    const kernel = timeIt(() => native.gemm(c.m, c.n, c.k, bs, A.storage.data, 0, aSt, B.storage.data, 0, bSt, C, 0, cSt, 1, 0), opts);
    const naive = !ctx.peer.available && c.m * c.n * c.k <= 256 ** 3 ? naiveMs(c) : null;
    rows.push(makeRow(ctx, {
      bench: `gemm.kernel.${c.name}`, shape, dtype: 'float32', ms: kernel.ms, flops,
      peer: ctx.peer.available ? ctx.peer.name : naive !== null ? 'naive JS triple loop' : 'none', peerMs: peer[i] ?? naive,
    }));
    const viaOp = timeIt(() => ng.scope(() => { ng.matmul(A, B); }), opts);
    rows.push(makeRow(ctx, { bench: `gemm.matmul.${c.name}`, shape, dtype: 'float32', ms: viaOp.ms, flops, peer: ctx.peer.name, peerMs: peer[i] }));
    A.dispose();
    B.dispose();
  });
  return rows;
}
