// CUDA softmax and fused cross-entropy throughput in GB/s (bytes that must move per call):
//  - softmax.fwd: read x, write y (2 N C elements);
//  - crossEntropy.fwdbwd: forward reads the logits, backward reads them again and writes
//    dlogits (3 N C elements; per-row loss/lse/targets are negligible).
// Shapes: a GPT-2 LM head (8192 x 50304) and a narrow classifier/attention row
// (16384 x 1024), float32 and bfloat16. Eager calls as a user runs them (outputs from the
// caching allocator, the CE gradient freshly allocated per call); the peer is
// torch.softmax / F.cross_entropy + backward on the same shapes (softmax_peer.py).
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { gbps, HBM_PEAK_GBPS, runPeer, timeCuda, withPeer, type Row } from './row.js';

export const title = 'CUDA softmax and cross-entropy (fused log-softmax, forward + backward)';

const F = ng.nn.functional;
const SIZE: Record<string, number> = { float32: 4, bfloat16: 2 };
const SHAPES: [number, number][] = [[8192, 50304], [16384, 1024]];

interface Case { bench: string; N: number; C: number; dtype: string; bytes: number; fn: () => unknown }

export async function run(opts: { quick: boolean }): Promise<Row[]> {
  const rows: Row[] = [];
  const peerCases: { bench: string; shape: number[]; dtype: string }[] = [];
  for (const [N, C] of SHAPES) {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      ng.manualSeed(0);
      const e = SIZE[dtype];
      const x: Tensor = ng.randn([N, C], { device: 'cuda', dtype }).keep();
      const xg: Tensor = ng.randn([N, C], { device: 'cuda', dtype }).keep().requiresGrad_(true);
      const t: Tensor = ng.randint(0, C, [N], { device: 'cuda' }).keep();
      const cases: Case[] = [
        { bench: 'softmax.fwd', N, C, dtype, bytes: 2 * N * C * e, fn: () => F.softmax(x, -1) },
        {
          bench: 'crossEntropy.fwdbwd', N, C, dtype, bytes: 3 * N * C * e, fn: () => {
            xg.grad = null;
            F.crossEntropy(xg, t).backward();
          },
        },
      ];
      for (const c of cases) {
        rows.push(measure(c, opts.quick));
        peerCases.push({ bench: c.bench, shape: [N, C], dtype });
      }
      xg.grad = null;
      x.dispose();
      xg.dispose();
      t.dispose();
    }
  }
  const peer = runPeer('softmax_peer.py', { cases: peerCases, quick: opts.quick });
  return rows.map((r) => withPeer(r, peer, 'torch eager', (p) => p.bench === r.bench && p.shape === r.shape && p.dtype === r.dtype));
}

function measure(c: Case, quick: boolean): Row {
  const ms = timeCuda(c.fn, { iters: quick ? 3 : 10, reps: quick ? 3 : 7 });
  const g = gbps(c.bytes, ms);
  return { bench: c.bench, shape: `[${c.N},${c.C}]`, dtype: c.dtype, ms, gbps: g, pctPeak: (100 * g) / HBM_PEAK_GBPS };
}
