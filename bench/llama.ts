// A ~100M-parameter Llama-shaped model (random float32 weights, GQA 12/4 heads, tied
// embeddings) on the CPU: generation (time to first token over a 32-token prompt, then
// tokens/s of greedy decoding with the KV cache) and a training step (forward, backward,
// clipping, AdamW) in tokens/s, beside the same model written plainly in PyTorch
// (bench/llama_peer.py) in the same run.
//   node --import ./scripts/ts-loader.mjs bench/run.ts --only llama [--quick]
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import * as ng from '../lib/index.js';
import { LlamaForCausalLM } from '../lib/models/llama.js';
import type { LlamaConfig } from '../lib/models/llama_config.js';
import { benchDir, makeRow, median, peerEnv, timeSteps, type BenchContext, type Row } from './common.js';

export const title = 'Llama ~100M (CPU): generation and a training step';

const PYTHON = process.env.NODEGRAD_PEER_PYTHON || '/usr/bin/python3';

const CONFIG: LlamaConfig = {
  modelType: 'llama', vocabSize: 32000, hiddenSize: 768, intermediateSize: 2048, numHiddenLayers: 12, numAttentionHeads: 12,
  numKeyValueHeads: 4, maxPositionEmbeddings: 2048, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: true,
};
const PROMPT = 32;

interface GenTiming { ttftMs: number; decodeTokPerSec: number }

function timeGenerate(model: LlamaForCausalLM, newTokens: number, reps: number): GenTiming {
  const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 7919) % CONFIG.vocabSize);
  const ttft: number[] = [], rate: number[] = [];
  for (let r = 0; r < reps; r++) {
    ng.noGrad(() => {
      const cache = model.newDecodeCache(1, PROMPT + newTokens);
      const t0 = performance.now();
      let logits = model.decodeStep(ng.tensor([prompt], { dtype: 'int32' }), cache);
      let next = ng.argmax(logits, -1).item();
      logits.dispose();
      const t1 = performance.now();
      for (let i = 1; i < newTokens; i++) {
        ng.scope(() => {
          logits = model.decodeStep(ng.tensor([[next]], { dtype: 'int32' }), cache);
          next = ng.argmax(logits, -1).item();
        });
      }
      const t2 = performance.now();
      cache.dispose();
      ttft.push(t1 - t0);
      rate.push((newTokens - 1) / ((t2 - t1) / 1000));
    });
  }
  return { ttftMs: median(ttft), decodeTokPerSec: median(rate) };
}

function timeTrain(model: LlamaForCausalLM, batch: number, seqLen: number, steps: number, warmup: number): number {
  model.train();
  const opt = new ng.optim.AdamW(model.parameters(), { lr: 1e-4, weightDecay: 0.1 });
  const x = ng.randint(0, CONFIG.vocabSize, [batch, seqLen]).keep();
  const step = (): void => {
    ng.scope(() => {
      const { loss } = model.forward({ inputIds: x, labels: x });
      loss!.backward();
      return loss!.item();
    });
    ng.optim.clipGradNorm(model.parameters(), 1.0);
    opt.step();
    opt.zeroGrad();
  };
  const times = timeSteps(step, warmup, steps);
  x.dispose();
  model.eval();
  return median(times);
}

interface PeerResult { ttftMs?: number; decodeTokPerSec?: number; trainMs?: number; torch?: string; error?: string }

function timeTorch(req: Record<string, unknown>, threads: number): PeerResult | null {
  const r = spawnSync(PYTHON, [path.join(benchDir, 'llama_peer.py')], {
    input: JSON.stringify({ ...req, threads }), encoding: 'utf8', timeout: 1_200_000, env: peerEnv(threads),
  });
  try {
    const res = JSON.parse((r.stdout ?? '').trim().split('\n').pop() ?? '') as PeerResult;
    return res.error ? null : res;
  } catch {
    return null;
  }
}

export function run(ctx: BenchContext): Row[] {
  const newTokens = ctx.quick ? 16 : 32, reps = ctx.quick ? 1 : 3;
  const batch = 4, seqLen = ctx.quick ? 32 : 64, steps = ctx.quick ? 1 : 3, warmup = 1;
  ng.manualSeed(0);
  const model = new LlamaForCausalLM(CONFIG).eval();
  const params = model.numParameters();
  const shape = `L${CONFIG.numHiddenLayers} H${CONFIG.hiddenSize} I${CONFIG.intermediateSize} heads ${CONFIG.numAttentionHeads}/${CONFIG.numKeyValueHeads} V${CONFIG.vocabSize}`;
  const gen = timeGenerate(model, newTokens, reps);
  const trainMs = timeTrain(model, batch, seqLen, steps, warmup);
  model.dispose();
  const peer = ctx.peer.available
    ? timeTorch({ config: CONFIG, prompt: PROMPT, newTokens, reps, batch, seqLen, steps, warmup }, ctx.threads) : null;
  const peerName = peer ? ctx.peer.name : 'none';
  const m = (params / 1e6).toFixed(1);
  const tokens = batch * seqLen;
  const decodeMs = 1000 / gen.decodeTokPerSec;
  return [
    makeRow(ctx, {
      bench: 'llama.ttft', shape: `${shape} prompt ${PROMPT}`, dtype: 'float32', ms: gen.ttftMs, flops: 2 * params * PROMPT,
      peer: peerName, peerMs: peer?.ttftMs ?? null, note: `time to first token; ${m}M params`,
    }),
    makeRow(ctx, {
      bench: 'llama.decode', shape: `${shape} B1, ${newTokens} new tokens`, dtype: 'float32', ms: decodeMs, flops: 2 * params,
      peer: peerName, peerMs: peer?.decodeTokPerSec ? 1000 / peer.decodeTokPerSec : null,
      note: `${gen.decodeTokPerSec.toFixed(1)} tok/s vs ${peer?.decodeTokPerSec ? peer.decodeTokPerSec.toFixed(1) : '-'} tok/s (greedy, KV cache)`,
    }),
    makeRow(ctx, {
      bench: 'llama.train-step', shape: `${shape} B${batch}xT${seqLen}`, dtype: 'float32', ms: trainMs, flops: 6 * params * tokens,
      peer: peerName, peerMs: peer?.trainMs ?? null,
      note: `${Math.round(tokens / (trainMs / 1000))} tok/s vs ${peer?.trainMs ? Math.round(tokens / (peer.trainMs / 1000)) : '-'} tok/s (AdamW, clip 1.0)`,
    }),
  ];
}
