// GPT training step on CUDA: forward (bf16 autocast), backward, global-norm clipping and
// fused AdamW, in tokens/s and MFU (6N + 6·L·C·T FLOPs per token against the device's
// nominal bf16 peak), with peak memory per step, beside the identical model in PyTorch
// (eager and torch.compile, fused AdamW, SDPA, bf16 autocast) in the same run.
//
// As a module: run({quick}) for bench/gpu/run.ts. Standalone:
//   node --import ./scripts/ts-loader.mjs bench/gpu/train-gpt.ts --preset gpt2 --batch 16 --seq 1024 [--steps 20] [--checkpoint] [--no-peer]
import { fileURLToPath } from 'node:url';
import * as ng from '../../lib/index.js';
import { BF16_PEAK_TFLOPS, runPeer, type Row } from './row.js';

export const title = 'GPT training step (CUDA, bf16 autocast)';

export interface TrainCase { preset: string; batch: number; seq: number; checkpoint?: boolean; dtype?: 'bfloat16' | 'float32' }

interface Timing { ms: number; lossFirst: number; lossLast: number; peakBytes: number; params: number; flopsPerStep: number }

export function timeNodegrad(c: TrainCase, steps: number, warmup: number): Timing {
  ng.manualSeed(0);
  const cfg = ng.models.GPT.preset(c.preset, { blockSize: Math.max(c.seq, 1), dropout: 0, checkpoint: c.checkpoint ?? false });
  const model = new ng.models.GPT(cfg).to('cuda');
  const opt = new ng.optim.AdamW(model.parameters(), { lr: 6e-4, weightDecay: 0.1, fused: true });
  const x = ng.randint(0, cfg.vocabSize, [c.batch, c.seq], { device: 'cuda' }).keep();
  const y = ng.randint(0, cfg.vocabSize, [c.batch, c.seq], { device: 'cuda' }).keep();
  const losses: ng.Tensor[] = [];
  const lowp = (c.dtype ?? 'bfloat16') === 'bfloat16';
  const step = (): void => {
    const loss = ng.scope(() => {
      const l = ng.autocast({ dtype: 'bfloat16', enabled: lowp }, () => model.forward(x, { targets: y }).loss!);
      l.backward();
      return l.detach();
    });
    losses.push(loss.keep()); // read after timing: no host sync inside a step
    ng.scope(() => { ng.optim.clipGradNormTensor(model.parameters(), 1.0); }); // stays on the device: no sync
    opt.step();
    opt.zeroGrad();
  };
  for (let i = 0; i < warmup; i++) step();
  ng.cuda.synchronize();
  ng.cuda.resetPeakMemoryStats();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) step();
  ng.cuda.synchronize();
  const ms = (performance.now() - t0) / steps;
  const peakBytes = ng.cuda.maxMemoryAllocated();
  const lossFirst = losses[0].item(), lossLast = losses[losses.length - 1].item();
  for (const l of losses) l.dispose();
  const out = { ms, lossFirst, lossLast, peakBytes, params: model.numParams(), flopsPerStep: model.flopsPerToken(c.seq) * c.batch * c.seq };
  model.dispose();
  opt.dispose();
  x.dispose();
  y.dispose();
  ng.cuda.emptyCache();
  return out;
}

function rowsFor(c: TrainCase, t: Timing, peer: ReturnType<typeof runPeer>): Row[] {
  const tokens = c.batch * c.seq;
  const tflops = t.flopsPerStep / (t.ms * 1e9);
  const shape = `${c.preset} B${c.batch}xT${c.seq}${c.checkpoint ? ' ckpt' : ''}`;
  const dtype = c.dtype ?? 'bfloat16';
  const base: Row = {
    bench: 'train-gpt', shape, dtype, ms: t.ms, tflops, pctPeak: (100 * tflops) / BF16_PEAK_TFLOPS,
    note: `${Math.round(tokens / (t.ms / 1e3))} tok/s, MFU ${(100 * tflops / BF16_PEAK_TFLOPS).toFixed(1)}%, peak mem ` +
      `${(t.peakBytes / 2 ** 30).toFixed(2)} GiB, ${(t.params / 1e6).toFixed(1)}M params, loss ${t.lossFirst.toFixed(3)} -> ${t.lossLast.toFixed(3)}`,
  };
  const rows: Row[] = [];
  for (const mode of ['eager', 'compile']) {
    const p = peer.rows.find((r) => r.shape === shape && r.mode === mode);
    if (!p) {
      rows.push({ ...base, peer: `torch ${mode} unavailable${peer.error ? `: ${peer.error}` : ''}` });
      continue;
    }
    rows.push({ ...base, peer: `torch ${peer.torch ?? ''} ${mode} (fused AdamW, SDPA, bf16 autocast)`, peerMs: p.ms, ratio: p.ms / t.ms,
      note: `${base.note}; torch ${Math.round(tokens / (p.ms / 1e3))} tok/s, peak ${(Number(p.peakBytes ?? 0) / 2 ** 30).toFixed(2)} GiB` });
  }
  return rows;
}

export async function run(opts: { quick: boolean }): Promise<Row[]> {
  const cases: TrainCase[] = opts.quick
    ? [{ preset: 'gpt2', batch: 8, seq: 1024 }]
    : [{ preset: 'gpt2', batch: 16, seq: 1024 }, { preset: 'gpt2', batch: 32, seq: 1024 }, { preset: 'gpt2', batch: 16, seq: 1024, checkpoint: true }];
  const steps = opts.quick ? 5 : 20, warmup = opts.quick ? 2 : 5;
  const peer = runPeer('train_gpt_peer.py', { cases, steps, warmup, modes: ['eager', 'compile'] });
  const rows: Row[] = [];
  for (const c of cases) rows.push(...rowsFor(c, timeNodegrad(c, steps, warmup), peer));
  return rows;
}

// standalone use
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const a = process.argv.slice(2);
  const get = (f: string, d: string): string => (a.includes(f) ? a[a.indexOf(f) + 1] : d);
  const c: TrainCase = { preset: get('--preset', 'gpt2'), batch: Number(get('--batch', '16')), seq: Number(get('--seq', '1024')),
    checkpoint: a.includes('--checkpoint'), dtype: get('--dtype', 'bfloat16') as 'bfloat16' | 'float32' };
  if (get('--device', 'cuda') !== 'cuda') throw new Error('bench/gpu/train-gpt.ts runs on CUDA; bench/train-gpt.ts is the CPU benchmark');
  const steps = Number(get('--steps', '20'));
  const peer = a.includes('--no-peer') ? { ok: false, rows: [], error: '--no-peer' } : runPeer('train_gpt_peer.py', { cases: [c], steps, warmup: 5, modes: ['eager', 'compile'] });
  for (const r of rowsFor(c, timeNodegrad(c, steps, 5), peer)) console.log(JSON.stringify(r));
}
