// Attention on CUDA: F.scaledDotProductAttention forward and backward (flash kernels),
// bfloat16, B*T = 16384 tokens, T = 512 .. 8192, head dim 64 and 128 with H * D = 2048
// (the FlashAttention benchmark's setting), causal and not.
// TFLOP/s: forward 4 B H T^2 D, backward 2.5x that (its five matmuls), both halved when
// causal. The backward row's time is (forward + backward) - forward.
// Peak memory of a forward+backward at T = 8192 (bytes allocated above the inputs) is in
// the note of those rows, ours and torch's.
// Peer: torch.nn.functional.scaled_dot_product_attention on the same shapes
// (attention_peer.py), in the same run.
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { scaledDotProductAttention } from '../../lib/ops/attention.js';
import { BF16_PEAK_TFLOPS, runPeer, tflops, timeCuda, withPeer, type Row } from './row.js';

export const title = 'CUDA scaledDotProductAttention (flash forward / backward, bfloat16)';

interface Case { T: number; D: number; causal: boolean }

function cases(quick: boolean): Case[] {
  const out: Case[] = [];
  const Ts = quick ? [1024, 4096] : [512, 1024, 2048, 4096, 8192];
  for (const D of [64, 128]) for (const T of Ts) for (const causal of [false, true]) out.push({ T, D, causal });
  return out;
}

const shapeOf = (c: Case): string => {
  const H = 2048 / c.D, B = 16384 / c.T;
  return `[${B},${H},${c.T},${c.D}]${c.causal ? ' causal' : ''}`;
};

export async function run(opts: { quick: boolean }): Promise<Row[]> {
  const out: Row[] = [];
  const cs = cases(opts.quick);
  for (const c of cs) out.push(...measure(c, opts.quick));
  const peer = runPeer('attention_peer.py', { cases: cs, quick: opts.quick });
  return out.map((r) => {
    const row = withPeer(r, peer, 'torch F.scaled_dot_product_attention',
      (p) => p.bench === r.bench && p.shape === r.shape && p.dtype === r.dtype);
    const p = peer.rows.find((x) => x.bench === r.bench && x.shape === r.shape && typeof x.peakMiB === 'number');
    if (p && row.note) row.note += `; torch ${(p.peakMiB as number).toFixed(0)} MiB`;
    return row;
  });
}

function measure(c: Case, quick: boolean): Row[] {
  const H = 2048 / c.D, B = 16384 / c.T;
  ng.manualSeed(0);
  const dev = { device: 'cuda' as const, dtype: 'bfloat16' as const };
  const q: Tensor = ng.randn([B, H, c.T, c.D], dev).keep();
  const k: Tensor = ng.randn([B, H, c.T, c.D], dev).keep();
  const v: Tensor = ng.randn([B, H, c.T, c.D], dev).keep();
  const g: Tensor = ng.randn([B, H, c.T, c.D], dev).keep();
  const fwdFlops = (4 * B * H * c.T * c.T * c.D) / (c.causal ? 2 : 1);
  const timing = { iters: quick ? 3 : 10, reps: quick ? 3 : 7 };
  const fwd = timeCuda(() => ng.noGrad(() => scaledDotProductAttention(q, k, v, { isCausal: c.causal })), timing);
  for (const t of [q, k, v]) t.requiresGrad_(true);
  const step = (): void => {
    for (const t of [q, k, v]) t.zeroGrad();
    scaledDotProductAttention(q, k, v, { isCausal: c.causal }).backward(g);
  };
  const both = timeCuda(step, timing);
  let note: string | undefined;
  if (c.T === 8192) {
    for (const t of [q, k, v]) t.zeroGrad();
    ng.cuda.synchronize();
    const base = ng.cuda.memoryAllocated();
    ng.cuda.resetPeakMemoryStats();
    ng.scope(step);
    ng.cuda.synchronize();
    note = `peak ${((ng.cuda.maxMemoryAllocated() - base) / 2 ** 20).toFixed(0)} MiB above inputs (fwd+bwd)`;
  }
  for (const t of [q, k, v, g]) { t.zeroGrad(); t.dispose(); }
  const shape = shapeOf(c);
  const bwd = Math.max(both - fwd, 1e-6);
  const row = (bench: string, ms: number, flops: number): Row => {
    const tf = tflops(flops, ms);
    return { bench, shape, dtype: 'bfloat16', ms, tflops: tf, pctPeak: (100 * tf) / BF16_PEAK_TFLOPS };
  };
  const rows = [row('attention.fwd', fwd, fwdFlops), row('attention.bwd', bwd, 2.5 * fwdFlops),
    row('attention.fwdbwd', both, 3.5 * fwdFlops)];
  if (note) rows[2].note = note;
  return rows;
}
