// Fused AdamW on CUDA for GPT-2 124M (148 tensors) and 350M (292 tensors) parameter
// lists (the real GPT-2 shapes), float32 master weights. GB/s counts the bytes that must
// move per step: read p, g, m, v and write p, m, v = 28 B per parameter (+2 B with the
// bf16 model copy; +4 B for the clip rows, which read the gradients once more for the
// norm). Peer: torch.optim.AdamW(fused=True) on the same shapes (adamw_peer.py); the
// clip row's peer is torch.nn.utils.clip_grad_norm_ then the fused step.
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { AdamW } from '../../lib/optim/adamw.js';
import { gbps, HBM_PEAK_GBPS, runPeer, timeCuda, withPeer, type Row } from './row.js';

export const title = 'CUDA fused AdamW (GPT-2 124M and 350M parameter lists)';

/** GPT-2 parameter shapes: wte, wpe, per layer ln_1, attn, ln_2, mlp, then ln_f. */
export function gpt2Shapes(nLayer: number, d: number, vocab = 50257, ctx = 1024): number[][] {
  const s: number[][] = [[vocab, d], [ctx, d]];
  for (let l = 0; l < nLayer; l++) {
    s.push([d], [d], [d, 3 * d], [3 * d], [d, d], [d], [d], [d], [d, 4 * d], [4 * d], [4 * d, d], [d]);
  }
  s.push([d], [d]);
  return s;
}

const MODELS = [
  { name: '124M', nLayer: 12, d: 768 },
  { name: '350M', nLayer: 24, d: 1024 },
];

export async function run(opts: { quick: boolean }): Promise<Row[]> {
  const models = opts.quick ? MODELS.slice(0, 1) : MODELS;
  const rows: Row[] = [];
  const cases: { bench: string; model: string; nLayer: number; d: number }[] = [];
  for (const m of models) {
    const shapes = gpt2Shapes(m.nLayer, m.d);
    const numel = shapes.reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
    const shape = `${m.name} (${shapes.length} tensors, ${(numel / 1e6).toFixed(1)}M)`;
    ng.manualSeed(0);
    const ps: Tensor[] = shapes.map((s) => ng.randn(s, { device: 'cuda' }).mul(0.02).keep().requiresGrad_(true));
    for (const p of ps) p.grad = ng.randn(p.shape, { device: 'cuda' }).mul(1e-3).keep();
    const variants = [
      { bench: 'adamw.fused', bytes: 28, make: () => new AdamW(ps, { lr: 1e-4, weightDecay: 0.1 }), step: { } },
      { bench: 'adamw.fused.bf16copy', bytes: 30, make: () => {
        const o = new AdamW(ps, { lr: 1e-4, weightDecay: 0.1 });
        for (const p of ps) o.setModelCopy(p, ng.zeros(p.shape, { dtype: 'bfloat16', device: 'cuda' }).keep());
        return o;
      }, step: {} },
      { bench: 'adamw.fused.clip', bytes: 32, make: () => new AdamW(ps, { lr: 1e-4, weightDecay: 0.1 }), step: { maxGradNorm: 1.0 } },
      ...(opts.quick ? [] : [{ bench: 'adamw.unfused', bytes: 28, make: () => new AdamW(ps, { lr: 1e-4, weightDecay: 0.1, fused: false }), step: {} }]),
    ];
    for (const v of variants) {
      const opt = v.make();
      const ms = timeCuda(() => opt.step(v.step), { iters: opts.quick ? 3 : 10, reps: opts.quick ? 3 : 7 });
      const rate = gbps(v.bytes * numel, ms);
      rows.push({ bench: v.bench, shape, dtype: 'float32', ms, gbps: rate, pctPeak: (100 * rate) / HBM_PEAK_GBPS });
      cases.push({ bench: v.bench, model: shape, nLayer: m.nLayer, d: m.d });
    }
    for (const p of ps) { p.zeroGrad(); p.dispose(); }
  }
  const peer = runPeer('adamw_peer.py', { cases, quick: opts.quick });
  return rows.map((r) => withPeer(r, peer, 'torch AdamW(fused=True)', (p) => p.bench === r.bench && p.shape === r.shape));
}
