import { describe, expect, test } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CKPT_FILES = ['config.json', 'marker.txt', 'model.safetensors', 'optimizer.safetensors', 'trainer.json'];
const killCfg = { vocabSize: 10, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 64, dropout: 0, bias: true };

/** A trainer whose checkpoint state k is: step k, every weight k, marker.txt "k". */
function stateTrainer(dir: string) {
  const model = new models.GPT(killCfg);
  const opt = new optim.AdamW(model.parameters(), { lr: 1e-3 });
  const data = new TokenDataset(Int32Array.from({ length: 200 }, (_, i) => i % 10), { seed: 1 });
  const trainer: Trainer = new Trainer({
    model, optimizer: opt, train: data, batchSize: 2, blockSize: 8, maxSteps: 0, progress: 'none',
    checkpointDir: dir, checkpointFiles: (): Record<string, string> => ({ 'marker.txt': String(trainer.step) }),
  });
  const setState = (k: number) => {
    trainer.step = k;
    ng.noGrad(() => { for (const p of model.parameters()) p.fill_(k); });
  };
  return { model, trainer, setState };
}

/** Loads dir as a fresh trainer would and checks that all its files hold one saved state. */
async function loadedState(dir: string): Promise<number> {
  const { model, trainer } = stateTrainer(dir);
  await trainer.resume(dir);
  const k = trainer.step;
  expect(await readFile(path.join(dir, 'marker.txt'), 'utf8')).toBe(String(k));
  for (const [name, p] of model.namedParameters()) {
    const v = p.dataSync() as Float32Array;
    if (!v.every((x) => x === k)) throw new Error(`${name} holds ${v[0]} but trainer.json says step ${k}`);
  }
  const back = await models.GPT.load(dir);
  expect(back.parameters()[0].dataSync()[0]).toBe(k);
  return k;
}

const deadPid = (): number => spawnSync(process.execPath, ['-e', '0']).pid!;

describe('checkpoint saves', () => {
  test('saves keep the training log and other files in the directory', async () => {
    const out = path.join(await tmp(), 'run');
    await mkdir(out);
    await writeFile(path.join(out, 'notes.txt'), 'my notes');
    const { trainer } = setup(8, out, 7);
    trainer.opts.checkpointInterval = 2;
    trainer.opts.logFile = path.join(out, 'log.jsonl');
    await trainer.fit(); // saves at steps 2, 4, 6 and at the end
    const log = (await readFile(path.join(out, 'log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { type: string; step: number });
    expect(log.filter((l) => l.type === 'step').map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(await readFile(path.join(out, 'notes.txt'), 'utf8')).toBe('my notes');
    expect((await readdir(out)).sort()).toEqual(['config.json', 'log.jsonl', 'model.safetensors', 'notes.txt', 'optimizer.safetensors', 'trainer.json']);
    // a model save into the same directory keeps them too
    await (trainer.opts.model as models.GPT).save(out);
    expect(await readFile(path.join(out, 'notes.txt'), 'utf8')).toBe('my notes');
    expect((await readdir(out))).toContain('log.jsonl');
    const again = setup(8).trainer;
    await again.resume(out);
    expect(again.step).toBe(7);
  });

  test('a save killed at random moments always leaves a loadable checkpoint of one saved state, and the next save or load cleans up', async () => {
    const root = await tmp();
    const dir = path.join(root, 'ckpt');
    const first = stateTrainer(dir);
    first.setState(1);
    await first.trainer.saveCheckpoint(dir);
    await writeFile(path.join(dir, 'log.jsonl'), '{"type":"step"}\n');
    await writeFile(path.join(dir, 'notes.txt'), 'keep me');
    const child = `
      const { Trainer } = await import('./lib/train/trainer.ts');
      const ng = await import('./lib/index.ts');
      const { TokenDataset } = await import('./lib/data/dataset.ts');
      const [dir, base] = [process.argv[1], Number(process.argv[2])];
      const model = new ng.models.GPT(${JSON.stringify(killCfg)});
      const opt = new ng.optim.AdamW(model.parameters(), { lr: 1e-3 });
      const data = new TokenDataset(Int32Array.from({ length: 200 }, (_, i) => i % 10), { seed: 1 });
      const trainer = new Trainer({ model, optimizer: opt, train: data, batchSize: 2, blockSize: 8, maxSteps: 0, progress: 'none',
        checkpointDir: dir, checkpointFiles: () => ({ 'marker.txt': String(trainer.step) }) });
      for (let k = base; ; k++) {
        trainer.step = k;
        ng.noGrad(() => { for (const p of model.parameters()) p.fill_(k); });
        process.stdout.write('saving ' + k + '\\n');
        await trainer.saveCheckpoint(dir);
        process.stdout.write('saved ' + k + '\\n');
      }`;
    let state = 1, interrupted = 0;
    for (let round = 0; round < 20; round++) {
      const base = 1000 * (round + 1);
      const p = spawn(process.execPath, ['--import', './scripts/ts-loader.mjs', '--input-type=module', '-e', child, '--', dir, String(base)],
        { cwd: repo, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '', err = '';
      p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      const exited = new Promise<void>((resolve) => p.on('exit', () => resolve()));
      const t0 = Date.now();
      while (!/saved \d+/.test(out)) {
        if (Date.now() - t0 > 30_000 || p.exitCode !== null) throw new Error(`the saving child did not start: ${err}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      await new Promise((r) => setTimeout(r, Math.random() * 40));
      p.kill('SIGKILL');
      await exited; // reaped, so its pid is gone
      const saved = [...out.matchAll(/saved (\d+)/g)].map((m) => Number(m[1]));
      const started = [...out.matchAll(/saving (\d+)/g)].map((m) => Number(m[1]));
      const last = saved[saved.length - 1], inProgress = started[started.length - 1];
      if ((await readdir(dir)).some((n) => !['log.jsonl', 'notes.txt', ...CKPT_FILES].includes(n))) interrupted++;
      if (round % 2 === 0) {
        // the next load finishes or discards the interrupted save
        state = await loadedState(dir);
        expect([last, inProgress]).toContain(state);
      } else {
        // the next save does
        const { trainer, setState } = stateTrainer(dir);
        setState(base + 999);
        await trainer.saveCheckpoint(dir);
        state = await loadedState(dir);
        expect(state).toBe(base + 999);
      }
      expect((await readdir(dir)).sort()).toEqual(['log.jsonl', 'notes.txt', ...CKPT_FILES].sort());
      expect(await readdir(root)).toEqual(['ckpt']);
    }
    expect(await readFile(path.join(dir, 'notes.txt'), 'utf8')).toBe('keep me');
    expect(await readFile(path.join(dir, 'log.jsonl'), 'utf8')).toBe('{"type":"step"}\n');
    expect(interrupted).toBeGreaterThan(0); // some kills did land inside a save
  }, 180_000);

  test('only the temporaries of processes that are gone are removed, inside the directory and beside it', async () => {
    const root = await tmp();
    const dir = path.join(root, 'ckpt');
    const { trainer, setState } = stateTrainer(dir);
    setState(3);
    await trainer.saveCheckpoint(dir);
    const dead = deadPid(), alive = process.ppid;
    const inside = [`model.safetensors.tmp-${dead}-0123456789ab`, `.nodegrad-commit-${dead}-aaaaaaaaaaaa.tmp-${dead}-aaaaaaaaaaaa`];
    const keptInside = [`model.safetensors.tmp-${alive}-0123456789ab`, 'notes.tmp-1-x', 'draft.tmp'];
    for (const n of [...inside, ...keptInside]) await writeFile(path.join(dir, n), 'x');
    const beside = [`ckpt.tmp-${dead}-00112233aabb`, `ckpt.old-${Date.now()}-${dead}-00112233aabb`];
    const keptBeside = [`ckpt.tmp-${alive}-00112233aabb`, 'ckpt.old-notes', 'other.tmp-1-00112233aabb'];
    for (const n of [...beside, ...keptBeside]) await mkdir(path.join(root, n));
    setState(4);
    await trainer.saveCheckpoint(dir);
    expect((await readdir(dir)).sort()).toEqual([...CKPT_FILES, ...keptInside].sort());
    expect((await readdir(root)).sort()).toEqual(['ckpt', ...keptBeside].sort());
    expect(await loadedState(dir)).toBe(4);
  });

  test('a save interrupted after its commit is finished by the next load; one interrupted before it leaves the old checkpoint', async () => {
    const dir = path.join(await tmp(), 'ckpt');
    const a = stateTrainer(dir);
    a.setState(5);
    await a.trainer.saveCheckpoint(dir);
    // stage state 6 by hand as a killed process would have: all files staged, journal written, nothing renamed
    const staging = path.join(await tmp(), 'stage');
    a.setState(6);
    await a.trainer.saveCheckpoint(staging);
    const dead = deadPid(), t = `${dead}-abcdefabcdef`;
    for (const n of CKPT_FILES) await writeFile(path.join(dir, `${n}.tmp-${t}`), await readFile(path.join(staging, n)));
    expect(await loadedState(dir)).toBe(5); // no journal: the staged files are not part of the checkpoint
    expect((await readdir(dir)).sort()).toEqual(CKPT_FILES);
    for (const n of CKPT_FILES) await writeFile(path.join(dir, `${n}.tmp-${t}`), await readFile(path.join(staging, n)));
    // half the renames done, then killed
    const { rename } = await import('node:fs/promises');
    for (const n of CKPT_FILES.slice(0, 2)) await rename(path.join(dir, `${n}.tmp-${t}`), path.join(dir, n));
    await writeFile(path.join(dir, `.nodegrad-commit-${t}`), JSON.stringify({ renames: CKPT_FILES.map((n) => [`${n}.tmp-${t}`, n]), remove: [] }));
    expect(await loadedState(dir)).toBe(6);
    expect((await readdir(dir)).sort()).toEqual(CKPT_FILES);
  });
});
