// End to end on CUDA: a GPT's loss, gradients, optimizer step, mixed precision,
// checkpointing and generation against the same model on the CPU.
import { expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { describeCuda } from './helpers.js';
import { expectClose } from '../helpers.js';

const cfg = { vocabSize: 61, blockSize: 32, nLayer: 2, nHead: 2, nEmbd: 64, dropout: 0 };

function pair(extra: Partial<ng.models.GPTConfig> = {}): { cpu: ng.models.GPT; gpu: ng.models.GPT } {
  ng.manualSeed(5);
  const cpu = new ng.models.GPT({ ...cfg, ...extra });
  ng.manualSeed(5);
  const gpu = new ng.models.GPT({ ...cfg, ...extra }).to('cuda');
  return { cpu, gpu };
}

function batch(): { x: ng.Tensor; y: ng.Tensor } {
  ng.manualSeed(9);
  return { x: ng.randint(0, cfg.vocabSize, [3, 32]), y: ng.randint(0, cfg.vocabSize, [3, 32]) };
}

describeCuda('GPT training on CUDA', () => {
  test('loss, gradients and an AdamW step match the CPU (float32)', () => {
    const { cpu, gpu } = pair();
    const { x, y } = batch();
    const lc = cpu.forward(x, { targets: y }).loss!;
    const lg = gpu.forward(x.cuda(), { targets: y.cuda() }).loss!;
    expect(lg.device).toBe('cuda:0');
    expectClose(lg.cpu(), lc, { atol: 1e-4, rtol: 1e-4 });
    lc.backward();
    lg.backward();
    const gp = new Map(gpu.namedParameters());
    for (const [n, p] of cpu.namedParameters()) expectClose(gp.get(n)!.grad!.cpu(), p.grad!, { atol: 1e-4, rtol: 1e-3 });
    const oc = new ng.optim.AdamW(cpu.parameters(), { lr: 1e-2, weightDecay: 0.1 });
    const og = new ng.optim.AdamW(gpu.parameters(), { lr: 1e-2, weightDecay: 0.1 });
    oc.step();
    og.step();
    for (const [n, p] of cpu.namedParameters()) expectClose(gp.get(n)!.cpu(), p, { atol: 1e-4, rtol: 1e-3 });
  });

  test('bf16 autocast on CUDA follows the CPU emulation of the same policy', () => {
    const { cpu, gpu } = pair();
    const { x, y } = batch();
    const lc = ng.autocast({ device: 'cpu' }, () => cpu.forward(x, { targets: y }).loss!);
    const lg = ng.autocast({ device: 'cuda' }, () => gpu.forward(x.cuda(), { targets: y.cuda() }).loss!);
    expect(lg.dtype).toBe('float32');
    expectClose(lg.cpu(), lc, { atol: 2e-2, rtol: 1e-2 });
    lg.backward();
    for (const p of gpu.parameters()) expect(p.grad!.dtype).toBe('float32');
  });

  test('checkpointed blocks give the same gradients on CUDA', () => {
    const { gpu } = pair();
    const { gpu: ck } = pair({ checkpoint: true });
    const { x, y } = batch();
    gpu.forward(x.cuda(), { targets: y.cuda() }).loss!.backward();
    ng.cuda.resetPeakMemoryStats();
    ck.forward(x.cuda(), { targets: y.cuda() }).loss!.backward();
    const a = new Map(gpu.namedParameters());
    for (const [n, p] of ck.namedParameters()) expectClose(p.grad!.cpu(), a.get(n)!.grad!.cpu(), { atol: 1e-5, rtol: 1e-4 });
  });

  test('a few training steps lower the loss; greedy generation matches the CPU model', () => {
    const { cpu, gpu } = pair();
    const { x, y } = batch();
    const opt = new ng.optim.AdamW(gpu.parameters(), { lr: 3e-3 });
    const xs = x.cuda().keep(), ys = y.cuda().keep();
    let first = 0, last = 0;
    for (let i = 0; i < 20; i++) {
      const l = ng.scope(() => {
        const loss = ng.autocast({}, () => gpu.forward(xs, { targets: ys }).loss!);
        loss.backward();
        return loss.item();
      });
      if (i === 0) first = l;
      last = l;
      opt.step();
      opt.zeroGrad();
    }
    expect(last).toBeLessThan(first * 0.7);
    cpu.loadStateDict(Object.fromEntries([...gpu.namedParameters()].map(([n, p]) => [n, p.cpu()])));
    const ids = ng.tensor([[1, 2, 3, 4]], { dtype: 'int32' });
    expectClose(gpu.forward(ids.cuda()).logits.cpu(), cpu.forward(ids).logits, { atol: 1e-3, rtol: 1e-3 });
    const out = gpu.generate([[1, 2, 3, 4]], { maxNewTokens: 8, temperature: 0.8, topK: 10, seed: 1 })[0];
    expect(out.length).toBe(12);
    for (const t of out) expect(t >= 0 && t < cfg.vocabSize).toBe(true);
  });

  test('Trainer on CUDA with bf16 autocast reads losses only at log steps and learns', async () => {
    ng.manualSeed(1);
    const model = new ng.models.GPT({ vocabSize: 10, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 32 }).to('cuda');
    const data = new ng.data.TokenDataset(Int32Array.from({ length: 500 }, (_, i) => (i * 7 + (i >> 3)) % 10), { seed: 1 });
    const { train, val } = data.split(0.1);
    const opt = new ng.optim.AdamW(model.parameters(), { lr: 3e-3 });
    const trainer = new ng.train.Trainer({
      model, optimizer: opt, train, val, batchSize: 8, blockSize: 8, maxSteps: 60, logInterval: 20, evalInterval: 30,
      evalIters: 2, progress: 'none', device: 'cuda', autocast: 'bfloat16',
    });
    const res = await trainer.fit();
    expect(res.losses.length).toBe(60);
    expect(res.losses[59]).toBeLessThan(res.losses[0] * 0.8);
    expect(res.bestValLoss).not.toBe(null);
  });
});

