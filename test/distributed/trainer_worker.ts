// One rank of a distributed Trainer test (spawned by test/cpu/distributed_trainer.test.ts
// with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set), or the one-process reference run.
//   node trainer_worker.ts ddp DIR          2 ranks x batch 4, checkpoint and log in DIR/rank<r>/
//   node trainer_worker.ts single DIR       one process, batch 8, in DIR/single/
//   node trainer_worker.ts stop DIR         2 ranks, stops after step 3 with a checkpoint in DIR/shared
//   node trainer_worker.ts resume DIR       2 ranks, resume from DIR/shared and finish
// Every run: 6 steps of 2 accumulated micro-batches, evaluation every 3 steps.
import path from 'node:path';
import * as ng from '../../lib/index.js';
import { Trainer } from '../../lib/train/trainer.js';
import { TokenDataset } from '../../lib/data/dataset.js';

const d = ng.distributed;
const [mode, dir] = process.argv.slice(2);
const B = 4, T = 8, steps = 6;
const cfg = { vocabSize: 29, blockSize: T, nLayer: 2, nHead: 2, nEmbd: 16, dropout: 0 };

async function run(): Promise<void> {
  const distributed = mode !== 'single';
  if (distributed) await d.initProcessGroup({ timeoutMs: Number(process.env.NG_TEST_TIMEOUT_MS ?? 60000) });
  const rank = distributed ? d.getRank() : 0;
  ng.manualSeed(1);
  const gpt = new ng.models.GPT(cfg);
  const model = distributed ? new ng.nn.DistributedDataParallel(gpt, { bucketCapMb: 0.01 }) : gpt;
  const ids = Int32Array.from({ length: 3000 }, (_, i) => (i * 7 + (i >> 3) + ((i * i) % 11)) % cfg.vocabSize);
  const { train, val } = new TokenDataset(ids, { seed: 3 }).split(0.1);
  const sub = mode === 'ddp' ? `rank${rank}` : mode === 'single' ? 'single' : 'shared';
  const out = path.join(dir, sub);
  const trainer = new Trainer({
    model: model as never, optimizer: new ng.optim.AdamW(gpt.parameters(), { lr: 1e-2, weightDecay: 0.01 }),
    train, val, batchSize: distributed ? B : 2 * B, blockSize: T, maxSteps: steps, gradAccumSteps: 2,
    evalInterval: 3, evalIters: 2, logInterval: 1, progress: 'none', earlyStopping: { patience: 10 },
    checkpointDir: path.join(out, 'ckpt'), logFile: path.join(out, 'log.jsonl'),
    onStep: mode === 'stop' ? (m) => m.step < 3 : undefined,
  });
  if (mode === 'resume') await trainer.resume(path.join(out, 'ckpt'));
  const res = await trainer.fit();
  if (distributed) {
    // every rank's weights must be bit-identical
    const flat = ng.cat(gpt.parameters().map((p) => p.detach().reshape([-1])), 0);
    const all = await d.allGather(flat);
    const a = all[0].dataSync(), b = all[1].dataSync();
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
    console.log(`rank ${rank}: ${res.steps} steps, weights differ across ranks by ${diff}`);
    if (diff !== 0) throw new Error(`the ranks' weights differ by ${diff}`);
    await d.destroyProcessGroup();
  }
  console.log(`${mode} rank ${rank} ok`);
}

try {
  await run();
} catch (e) {
  console.log(`ERROR ${(e as Error).stack ?? (e as Error).message}`);
  process.exit(1);
}
