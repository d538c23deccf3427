// End-to-end training step of a small GPT on the CPU: forward, backward, clipping and
// AdamW, in tokens/s, beside the identical model in PyTorch (bench/train_gpt_peer.py) in
// the same run. The config is the anchor's (0.8M parameters, B16 x T128).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import * as ng from '../lib/index.js';
import { benchDir, makeRow, median, peerEnv, timeSteps, type BenchContext, type Row } from './common.js';

export const title = 'GPT training step (CPU)';

const PYTHON = process.env.NODEGRAD_PEER_PYTHON || '/usr/bin/python3';

interface Case { name: string; config: ng.models.GPTConfig; batch: number }

const CASES: Case[] = [
  { name: 'gpt-0.8M', config: { vocabSize: 256, blockSize: 128, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: true }, batch: 16 },
  { name: 'gpt-nano', config: { vocabSize: 13, blockSize: 32, nLayer: 2, nHead: 4, nEmbd: 64, dropout: 0, bias: true }, batch: 32 },
];

function timeNodegrad(c: Case, steps: number, warmup: number): { ms: number; params: number; flops: number } {
  ng.manualSeed(0);
  const model = new ng.models.GPT(c.config);
  const opt = new ng.optim.AdamW(model.parameters(), { lr: 3e-4, weightDecay: 0.1 });
  const T = c.config.blockSize;
  const x = ng.randint(0, c.config.vocabSize, [c.batch, T]).keep();
  const y = ng.randint(0, c.config.vocabSize, [c.batch, T]).keep();
  const step = (): void => {
    ng.scope(() => {
      const { loss } = model.forward(x, { targets: y });
      loss!.backward();
      return loss!.item();
    });
    ng.optim.clipGradNorm(model.parameters(), 1.0);
    opt.step();
    opt.zeroGrad();
  };
  const times = timeSteps(step, warmup, steps);
  const out = { ms: median(times), params: model.numParams(), flops: model.flopsPerToken(T) * c.batch * T };
  model.dispose();
  x.dispose();
  y.dispose();
  return out;
}

function timeTorch(c: Case, steps: number, warmup: number, threads: number): { ms: number; torch: string } | null {
  const r = spawnSync(PYTHON, [path.join(benchDir, 'train_gpt_peer.py')], {
    input: JSON.stringify({ config: c.config, batch: c.batch, steps, warmup, threads }), encoding: 'utf8', timeout: 600_000,
    env: peerEnv(threads),
  });
  try {
    const res = JSON.parse((r.stdout ?? '').trim().split('\n').pop() ?? '') as { msPerStep: number[]; torch: string };
    return { ms: median(res.msPerStep), torch: res.torch };
  } catch {
    return null;
  }
}

export function run(ctx: BenchContext): Row[] {
  const steps = ctx.quick ? 5 : 20, warmup = ctx.quick ? 2 : 5;
  const rows: Row[] = [];
  for (const c of CASES) {
    const ours = timeNodegrad(c, steps, warmup);
    const peer = ctx.peer.available ? timeTorch(c, steps, warmup, ctx.threads) : null;
    const tokens = c.batch * c.config.blockSize;
    const cfg = c.config;
    rows.push(makeRow(ctx, {
      bench: `train-gpt.${c.name}`, shape: `B${c.batch}xT${cfg.blockSize} L${cfg.nLayer} C${cfg.nEmbd} V${cfg.vocabSize}`, dtype: 'float32',
      ms: ours.ms, flops: ours.flops, peer: peer ? ctx.peer.name : 'none', peerMs: peer?.ms ?? null,
      note: `${Math.round(tokens / (ours.ms / 1000))} tok/s vs ${peer ? Math.round(tokens / (peer.ms / 1000)) : '-'} tok/s; ${(ours.params / 1e6).toFixed(2)}M params`,
    }));
  }
  return rows;
}
