// LayerNorm on CUDA: forward, forward+backward and the fused residual add + layerNorm,
// for B*T = 8192 and 32768 rows, C = 768, 1024, 4096, 8192, float32 and bfloat16.
// GB/s counts the bytes that must move (per call):
//   fwd:       read x, write y (2 N e) + w, b (2 C e) + mean, rstd (8 rows)
//   fwd+bwd:   fwd + read g, x, write gx (3 N e) + w, stats, gw, gb
//   add+norm:  read x, residual, write sum, y (4 N e) + w, b + stats
// Peer: torch.nn.functional.layer_norm (eager) on the same shapes (layernorm_peer.py).
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { addLayerNorm, layerNorm } from '../../lib/ops/layernorm.js';
import { gbps, HBM_PEAK_GBPS, runPeer, timeCuda, withPeer, type Row } from './row.js';

export const title = 'CUDA layerNorm (forward, forward+backward, fused residual add)';

const SIZE: Record<string, number> = { float32: 4, bfloat16: 2 };

interface Case { bench: string; rows: number; C: number; dtype: 'float32' | 'bfloat16' }

export async function run(opts: { quick: boolean }): Promise<Row[]> {
  const rowsList = opts.quick ? [8192] : [8192, 32768];
  const cs = opts.quick ? [768, 4096] : [768, 1024, 4096, 8192];
  const out: Row[] = [];
  const cases: Case[] = [];
  for (const rows of rowsList) {
    for (const C of cs) {
      for (const dtype of ['float32', 'bfloat16'] as const) {
        for (const bench of ['layernorm.fwd', 'layernorm.fwdbwd', 'addlayernorm.fwd']) cases.push({ bench, rows, C, dtype });
      }
    }
  }
  for (const c of cases) out.push(measure(c, opts.quick));
  const peer = runPeer('layernorm_peer.py', { cases, quick: opts.quick });
  return out.map((r) => withPeer(r, peer, 'torch F.layer_norm', (p) => p.bench === r.bench && p.shape === r.shape && p.dtype === r.dtype));
}

function bytesOf(c: Case): number {
  const e = SIZE[c.dtype], N = c.rows * c.C;
  const fwd = 2 * N * e + 2 * c.C * e + 8 * c.rows;
  if (c.bench === 'layernorm.fwd') return fwd;
  if (c.bench === 'addlayernorm.fwd') return 4 * N * e + 2 * c.C * e + 8 * c.rows;
  return fwd + 3 * N * e + 3 * c.C * e + 8 * c.rows + 2 * c.C * e;
}

function measure(c: Case, quick: boolean): Row {
  ng.manualSeed(0);
  const dev = { device: 'cuda' as const, dtype: c.dtype };
  const x: Tensor = ng.randn([c.rows, c.C], dev).keep();
  const r: Tensor = ng.randn([c.rows, c.C], dev).keep();
  const g: Tensor = ng.randn([c.rows, c.C], dev).keep();
  const w: Tensor = ng.ones([c.C], dev).keep(), b: Tensor = ng.zeros([c.C], dev).keep();
  let fn: () => unknown;
  if (c.bench === 'layernorm.fwd') {
    fn = () => ng.noGrad(() => layerNorm(x, [c.C], w, b));
  } else if (c.bench === 'addlayernorm.fwd') {
    fn = () => ng.noGrad(() => addLayerNorm(x, r, [c.C], w, b));
  } else {
    x.requiresGrad_(true);
    w.requiresGrad_(true);
    b.requiresGrad_(true);
    fn = () => {
      x.zeroGrad(); w.zeroGrad(); b.zeroGrad();
      layerNorm(x, [c.C], w, b).backward(g);
    };
  }
  const ms = timeCuda(fn, { iters: quick ? 5 : 20, reps: quick ? 5 : 9 });
  for (const t of [x, r, g, w, b]) { t.zeroGrad(); t.dispose(); }
  const rate = gbps(bytesOf(c), ms);
  return { bench: c.bench, shape: `[${c.rows},${c.C}]`, dtype: c.dtype, ms, gbps: rate, pctPeak: (100 * rate) / HBM_PEAK_GBPS };
}
