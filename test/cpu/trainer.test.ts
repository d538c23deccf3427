import { describe, expect, test } from 'vitest';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as ng from '../../lib/index.js';
import { models, optim } from '../../lib/index.js';
import { TokenDataset } from '../../lib/data/dataset.js';
import { Trainer } from '../../lib/train/trainer.js';
import * as atomic from '../../lib/io/atomic.js';

const cfg = { vocabSize: 10, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16, dropout: 0.1, bias: true };

function setup(seed: number, dir?: string, maxSteps = 12) {
  ng.manualSeed(seed);
  const model = new models.GPT(cfg);
  const opt = new optim.AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.1 });
  const data = new TokenDataset(Int32Array.from({ length: 500 }, (_, i) => (i * 7 + (i >> 3)) % 10), { seed });
  const { train, val } = data.split(0.2);
  const trainer = new Trainer({
    model, optimizer: opt, train, val, batchSize: 4, blockSize: 8, maxSteps, lr: (s) => 3e-3 * Math.max(0.1, 1 - s / 60),
    evalInterval: 4, evalIters: 2, progress: 'none', checkpointDir: dir, checkpointInterval: dir ? 6 : undefined,
  });
  return { model, trainer };
}

async function tmp(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'ng-trainer-'));
}

describe('train.Trainer', () => {
  test('the loss falls', async () => {
    const { trainer } = setup(1, undefined, 40);
    const r = await trainer.fit();
    const first = r.losses.slice(0, 5).reduce((a, b) => a + b) / 5;
    const last = r.losses.slice(-5).reduce((a, b) => a + b) / 5;
    expect(last).toBeLessThan(first - 0.3);
    expect(r.bestValLoss).not.toBeNull();
  });

  test('resume from a checkpoint continues bit-exactly (dropout on, lr schedule, sampler state)', async () => {
    const dirA = await tmp();
    const full = setup(5);
    const ref = await full.trainer.fit();

    // a run that stops after 6 steps (its checkpoint), then a fresh process-like resume
    const ckpt = path.join(dirA, 'ckpt');
    const part = setup(5, ckpt, 6);
    await part.trainer.fit();
    const resumed = setup(99); // different seed: everything must come from the checkpoint
    await resumed.trainer.resume(ckpt);
    expect(resumed.trainer.step).toBe(6);
    const rest = await resumed.trainer.fit();
    expect(rest.losses).toEqual(ref.losses); // identical floats, not approximately
    const x = ng.randint(0, 10, [1, 8]);
    resumed.model.eval();
    full.model.eval();
    expect(Array.from(resumed.model.forward(x).logits.dataSync())).toEqual(Array.from(full.model.forward(x).logits.dataSync()));
  });

  test('a checkpoint write that fails midway leaves the previous checkpoint readable', async () => {
    const dir = await tmp();
    const ckpt = path.join(dir, 'ckpt');
    const { model, trainer } = setup(3, ckpt, 6);
    await trainer.fit();
    const before = await readFile(path.join(ckpt, 'model.safetensors'));
    await trainer.trainStep();
    // make the second write fail after some bytes were written
    const failing = async (fh: import('node:fs/promises').FileHandle) => {
      await fh.write(Buffer.alloc(1000, 7));
      throw new Error('disk full');
    };
    await expect(atomic.writeDirAtomic(ckpt, { 'model.safetensors': failing, 'trainer.json': '{}' })).rejects.toThrow(/disk full/);
    expect(await readFile(path.join(ckpt, 'model.safetensors'))).toEqual(before);
    const back = await models.GPT.load(ckpt);
    expect(back.numParams()).toBe(model.numParams());
    const leftovers = (await readdir(dir)).filter((f) => f !== 'ckpt');
    expect(leftovers).toEqual([]);
  });

  test('callbacks can stop training and early stopping triggers', async () => {
    const { trainer } = setup(4, undefined, 50);
    trainer.opts.onStep = (m) => (m.step >= 3 ? false : undefined);
    const r = await trainer.fit();
    expect(r.steps).toBe(3);
    expect(r.stoppedEarly).toBe(true);
    const t2 = setup(4, undefined, 200).trainer;
    t2.opts.earlyStopping = { patience: 1, minDelta: 10 };
    const r2 = await t2.fit();
    expect(r2.stoppedEarly).toBe(true);
    expect(r2.steps).toBe(8);
  });

  test('a stop asked for by onStep at an evaluation step runs that evaluation first, so a resumed run matches an uninterrupted one', async () => {
    const evals = (t: Trainer, into: number[][]) => { t.opts.onEval = (e) => { into.push([e.step, e.valLoss]); }; };
    const refEvals: number[][] = [];
    const full = setup(6, undefined, 12);
    evals(full.trainer, refEvals);
    const ref = await full.trainer.fit();

    const ckpt = path.join(await tmp(), 'ckpt');
    const got: number[][] = [];
    const part = setup(6, ckpt, 12);
    evals(part.trainer, got);
    part.trainer.opts.onStep = (m) => (m.step >= 8 ? false : undefined); // step 8 is an evaluation step
    const r1 = await part.trainer.fit();
    expect(r1.steps).toBe(8);
    expect(r1.stoppedEarly).toBe(true);
    expect(got.map(([s]) => s)).toEqual([4, 8]);

    const resumed = setup(99, undefined, 12);
    evals(resumed.trainer, got);
    await resumed.trainer.resume(ckpt);
    const r2 = await resumed.trainer.fit();
    expect(got).toEqual(refEvals);
    expect(r2.bestValLoss).toBe(ref.bestValLoss);
    expect(r2.losses).toEqual(ref.losses);
  });

  test('resume rejects a trainer.json with a bad or missing field, naming the file and the field', async () => {
    const ckpt = path.join(await tmp(), 'ckpt');
    await setup(2, ckpt, 2).trainer.fit();
    const file = path.join(ckpt, 'trainer.json');
    const good = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ step: -50 }, /field "step" of .*trainer\.json must be a non-negative integer \(got -50\)/],
      [{ step: 2.5 }, /field "step" of .*trainer\.json must be a non-negative integer \(got 2\.5\)/],
      [{ step: null }, /field "step" .* must be a non-negative integer \(got null\)/], // a NaN step, as JSON writes it
      [{ step: '3' }, /field "step" .* must be a non-negative integer \(got "3"\)/],
      [{ step: undefined }, /field "step" .* \(got nothing: the field is missing\)/],
      [{ badEvals: -1 }, /field "badEvals" .* must be a non-negative integer/],
      [{ bestValLoss: 'low' }, /field "bestValLoss" .* must be a finite number or null \(got "low"\)/],
      [{ bestValLoss: undefined }, /field "bestValLoss" .* the field is missing/],
      [{ rng: 'x' }, /field "rng" .* must be an object/],
      [{ rng: { seed: 1, offset: -4 } }, /field "rng\.offset" .* must be a non-negative integer \(got -4\)/],
      [{ optimizer: [] }, /field "optimizer" .* must be an optimizer state object/],
      [{ losses: {} }, /field "losses" .* must be an array of numbers/],
      [{ losses: [1, 'x'] }, /field "losses\[1\]" .* must be a number \(got "x"\)/],
      [{ trainSampler: undefined }, /field "trainSampler" .* the field is missing/],
    ];
    const { writeFile } = await import('node:fs/promises');
    for (const [patch, re] of cases) {
      const bad = { ...good, ...patch };
      for (const [k, v] of Object.entries(patch)) if (v === undefined) delete bad[k];
      await writeFile(file, JSON.stringify(bad));
      const t = setup(2).trainer;
      await expect(t.resume(ckpt)).rejects.toThrow(re);
      expect(t.step).toBe(0);
    }
    await writeFile(file, '[1]');
    await expect(setup(2).trainer.resume(ckpt)).rejects.toThrow(/nodegrad: Trainer\.resume: .*trainer\.json must hold a JSON object \(got an array\)/);
    await writeFile(file, JSON.stringify(good));
    const t = setup(2).trainer;
    await t.resume(ckpt);
    expect(t.step).toBe(2);
  });

  test('gradient accumulation over k micro-batches equals one step on the k-times larger batch', () => {
    ng.manualSeed(9);
    const a = new models.GPT({ ...cfg, dropout: 0 });
    const b = new models.GPT({ ...cfg, dropout: 0 });
    b.loadStateDict(a.stateDict());
    const x = ng.randint(0, 10, [4, 8]), y = ng.randint(0, 10, [4, 8]);
    a.forward(x, { targets: y }).loss!.backward();
    for (let i = 0; i < 2; i++) {
      b.forward(x.narrow(0, 2 * i, 2), { targets: y.narrow(0, 2 * i, 2) }).loss!.div(2).backward();
    }
    const ga = a.parameters().map((p) => Array.from(p.grad!.dataSync() as Float32Array));
    const gb = b.parameters().map((p) => Array.from(p.grad!.dataSync() as Float32Array));
    ga.forEach((g, i) => g.forEach((v, j) => expect(Math.abs(v - gb[i][j])).toBeLessThan(1e-5)));
  });
});
