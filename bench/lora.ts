// LoRA against a full fine-tune on the CPU: one training step (forward, backward, clipping,
// AdamW over the trainable tensors) of a small GPT and a small BERT classifier, each in
// full and with LoRA (PEFT's default targets: GPT-2 c_attn, BERT query/value + the
// classifier head in full), beside the same models in PyTorch with LoRA written plainly
// (bench/lora_peer.py) in the same run. Reports step time, LoRA/full step time (goal
// ≤ 0.7), nodegrad vs torch (goal ≥ 1.0), and memory: nodegrad's peak of live tensor bytes
// (ng.memory() peakBytes: parameters, gradients, optimizer state and activations), torch's
// own count of parameter + gradient + AdamW-moment bytes, and torch's peak-RSS growth.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import * as ng from '../lib/index.js';
import { getPeftModel } from '../lib/peft/peft_model.js';
import { peakMemoryBytes, resetPeakMemory } from '../lib/peft/report.js';
import { benchDir, makeRow, peerEnv, type BenchContext, type Row } from './common.js';

export const title = 'LoRA vs full fine-tune step (CPU)';

const PYTHON = process.env.NODEGRAD_PEER_PYTHON || '/usr/bin/python3';
const R = 8, ALPHA = 16;

type Mode = 'full' | 'lora';
interface GptCase { model: 'gpt'; name: string; config: ng.models.GPTConfig; batch: number; targets: string[] }
interface BertCase { model: 'bert'; name: string; config: Record<string, number>; batch: number; seqLen: number; targets: string[] }
type Case = GptCase | BertCase;

const CASES: Case[] = [
  { model: 'gpt', name: 'gpt-10.8M', config: { vocabSize: 256, blockSize: 128, nLayer: 6, nHead: 6, nEmbd: 384, dropout: 0, bias: true }, batch: 8, targets: ['c_attn'] },
  {
    model: 'bert', name: 'bert-cls-5.4M', batch: 8, seqLen: 128, targets: ['query', 'value'],
    config: { vocabSize: 8192, hiddenSize: 256, numHiddenLayers: 4, numAttentionHeads: 4, intermediateSize: 1024, maxPositionEmbeddings: 128, numLabels: 2 },
  },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

interface Measured { ms: number; trainable: number; params: number; peakBytes: number }

function timeNodegrad(c: Case, mode: Mode, steps: number, warmup: number): Measured {
  ng.manualSeed(0);
  resetPeakMemory();
  const before = peakMemoryBytes();
  let model: ng.nn.Module, loss: () => ng.Tensor;
  const keep: ng.Tensor[] = [];
  if (c.model === 'gpt') {
    const gpt = new ng.models.GPT(c.config);
    const T = c.config.blockSize;
    const x = ng.randint(0, c.config.vocabSize, [c.batch, T]).keep(), y = ng.randint(0, c.config.vocabSize, [c.batch, T]).keep();
    keep.push(x, y);
    model = gpt;
    loss = () => gpt.forward(x, { targets: y }).loss!;
  } else {
    const bert = new ng.models.BertForSequenceClassification({ ...c.config, hiddenDropoutProb: 0, attentionProbsDropoutProb: 0 });
    const ids = ng.randint(0, c.config.vocabSize, [c.batch, c.seqLen]).keep();
    const mask = ng.ones([c.batch, c.seqLen], { dtype: 'int32' }).keep();
    const labels = ng.randint(0, c.config.numLabels, [c.batch]).keep();
    keep.push(ids, mask, labels);
    model = bert;
    loss = () => bert.forward({ inputIds: ids, attentionMask: mask, labels }).loss!;
  }
  const params = model.numParameters();
  // random B (initLoraWeights false) so the low-rank path is not zero, as in the peer
  const root = mode === 'lora'
    ? getPeftModel(model, { r: R, loraAlpha: ALPHA, loraDropout: 0, targetModules: c.targets, initLoraWeights: false, taskType: c.model === 'gpt' ? 'CAUSAL_LM' : 'SEQ_CLS' })
    : model;
  const trainable = root.parameters().filter((p) => p.requiresGrad);
  const opt = new ng.optim.AdamW(trainable, { lr: 1e-4, weightDecay: 0.01 });
  model.train();
  const step = (): void => {
    ng.scope(() => {
      const l = loss();
      l.backward();
      return l.item();
    });
    ng.optim.clipGradNorm(trainable, 1.0);
    opt.step();
    opt.zeroGrad();
  };
  for (let i = 0; i < warmup; i++) step();
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    step();
    times.push(performance.now() - t0);
  }
  const out = { ms: median(times), trainable: trainable.reduce((n, p) => n + p.numel, 0), params, peakBytes: peakMemoryBytes() - before };
  root.dispose();
  model.dispose();
  for (const t of keep) t.dispose();
  return out;
}

interface PeerResult { ms: number; torch: string; threads: number; trainable: number; stateBytes: number; maxrssDeltaBytes: number }

function timeTorch(c: Case, mode: Mode, steps: number, warmup: number, threads: number): PeerResult | null {
  const r = spawnSync(PYTHON, [path.join(benchDir, 'lora_peer.py')], {
    input: JSON.stringify({ ...c, mode, r: R, alpha: ALPHA, steps, warmup, threads }), encoding: 'utf8', timeout: 600_000,
    env: peerEnv(threads),
  });
  try {
    const res = JSON.parse((r.stdout ?? '').trim().split('\n').pop() ?? '') as Omit<PeerResult, 'ms'> & { msPerStep: number[] };
    return { ...res, ms: median(res.msPerStep) };
  } catch {
    process.stderr.write(`bench: lora peer ${c.name} ${mode} failed: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}\n`);
    return null;
  }
}

const mb = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

export function run(ctx: BenchContext): Row[] {
  const steps = ctx.quick ? 5 : 15, warmup = ctx.quick ? 2 : 3;
  const rows: Row[] = [];
  for (const c of CASES) {
    const shape = c.model === 'gpt'
      ? `B${c.batch}xT${c.config.blockSize} L${c.config.nLayer} C${c.config.nEmbd}`
      : `B${c.batch}xT${c.seqLen} L${c.config.numHiddenLayers} H${c.config.hiddenSize}`;
    const got: Partial<Record<Mode, { ours: Measured; peer: PeerResult | null }>> = {};
    for (const mode of ['full', 'lora'] as Mode[]) {
      got[mode] = { ours: timeNodegrad(c, mode, steps, warmup), peer: ctx.peer.available ? timeTorch(c, mode, steps, warmup, ctx.threads) : null };
    }
    for (const mode of ['full', 'lora'] as Mode[]) {
      const { ours, peer } = got[mode]!;
      const full = got.full!;
      const loraOverFull = mode === 'lora' ? ours.ms / full.ours.ms : null;
      const peerLoraOverFull = mode === 'lora' && peer && full.peer ? peer.ms / full.peer.ms : null;
      const row = makeRow(ctx, {
        bench: `lora.${c.name}.${mode}`, shape: `${shape}${mode === 'lora' ? ` r${R} ${c.targets.join(',')}` : ''}`, dtype: 'float32',
        ms: ours.ms, peer: peer ? ctx.peer.name : 'none', peerMs: peer?.ms ?? null,
        note: `${mode === 'lora' ? `LoRA/full ${loraOverFull!.toFixed(2)} (goal <= 0.7; torch ${peerLoraOverFull?.toFixed(2) ?? '-'}); ` : ''}` +
          `trainable ${ours.trainable.toLocaleString('en-US')} of ${ours.params.toLocaleString('en-US')}; ` +
          `peak tensor memory ${mb(ours.peakBytes)}` +
          (peer ? `; torch params+grads+AdamW ${mb(peer.stateBytes)}, torch peak-RSS growth (VmHWM) ${mb(peer.maxrssDeltaBytes)}` : ''),
      });
      rows.push(Object.assign(row, {
        trainable: ours.trainable, params: ours.params, peakBytes: ours.peakBytes,
        loraOverFull: loraOverFull === null ? undefined : Number(loraOverFull.toFixed(3)),
        peerLoraOverFull: peerLoraOverFull === null ? undefined : Number(peerLoraOverFull.toFixed(3)),
        peerTrainable: peer?.trainable, peerStateBytes: peer?.stateBytes, peerMaxrssDeltaBytes: peer?.maxrssDeltaBytes,
      }));
    }
  }
  return rows;
}
