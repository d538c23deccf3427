// The training loop: batches from a source, forward/backward in a memory scope per
// micro-step, gradient accumulation, clipping, a learning-rate schedule, periodic
// evaluation, metrics (JSONL + progress), callbacks, atomic checkpoints that hold
// everything needed to resume bit-exactly (model, optimizer, step, sampler and RNG state).
// A DistributedDataParallel model makes it data-parallel (see ./distributed.ts): per-rank
// batch shards, gradient sync before the step, losses averaged over the ranks, rank 0 alone
// logging and checkpointing.
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { noGrad } from '../autograd.js';
import { keep, memory, scope } from '../memory.js';
import { getRngState, setRngState } from '../random.js';
import { Tensor } from '../tensor.js';
import type { Device } from '../storage.js';
import { autocast, type AutocastDType, type AutocastOptions } from '../autocast.js';
import type { Module } from '../nn/module.js';
import { resolveCheckpointDir, writeDirAtomic, type FileContents } from '../io/atomic.js';
import { loadSafetensors, safetensorsWriter } from '../io/safetensors.js';
import { clipGradNorm, clipGradNormTensor } from '../optim/clip.js';
import { GradScaler } from '../optim/grad_scaler.js';
import { Progress, type ProgressMode } from './progress.js';
import { ConfigErrors, checkFits, checkTensorElements, formatBytes, formatCount } from '../models/sizes.js';
import { joinTensors, splitTensors } from './state.js';
import { averageOverRanks, onRankZero, shardBatch, trainerDistributed, type TrainerDistributed } from './distributed.js';

/** A batch: inputs x and targets y; a source may add fields (e.g. attentionMask) for lossFn. */
export interface Batch { x: Tensor; y: Tensor; attentionMask?: Tensor }

/** Where batches come from. getState/setState make resumed runs see the same batches. */
export interface BatchSource {
  getBatch(batchSize: number, blockSize: number): Batch;
  getState?(): unknown;
  setState?(state: unknown): void;
}

export interface TrainableModel extends Module {
  forward(...args: never[]): unknown;
}

export interface OptimizerLike {
  paramGroups: { lr: number }[];
  step(): void;
  zeroGrad(opts?: { setToNone?: boolean }): void;
  stateDict(): unknown;
  loadStateDict(sd: never): void;
}

export interface StepMetrics {
  step: number; loss: number; lr: number; gradNorm: number | null; stepMs: number; tokensPerSec: number;
  tokens: number; liveTensors: number; bytes: number;
}
export interface EvalMetrics { step: number; valLoss: number; valPerplexity: number; trainLoss: number }

export interface TrainerOptions {
  model: TrainableModel;
  optimizer: OptimizerLike;
  train: BatchSource;
  val?: BatchSource;
  batchSize: number;
  blockSize: number;
  maxSteps: number;
  gradAccumSteps?: number;
  /** Global-norm clipping threshold (null: off). Default 1.0. */
  clipGradNorm?: number | null;
  /** A constant or a function of the step (0-based) giving the learning rate. */
  lr?: number | ((step: number) => number);
  evalInterval?: number;
  evalIters?: number;
  logInterval?: number;
  checkpointDir?: string;
  checkpointInterval?: number;
  /** Extra files written into every checkpoint (e.g. tokenizer.json). */
  checkpointFiles?: () => Record<string, FileContents>;
  logFile?: string;
  progress?: ProgressMode;
  onStep?: (m: StepMetrics) => void | boolean | Promise<void | boolean>;
  onEval?: (m: EvalMetrics) => void | boolean | Promise<void | boolean>;
  /**
   * Computes the loss of a batch (default: model.forward(x, { targets: y }).loss, the
   * language-model convention). Classifiers pass e.g. (m, b) => m.forward({ inputIds: b.x, labels: b.y, ... }).loss.
   */
  lossFn?: (model: TrainableModel, batch: Batch) => Tensor;
  /** Device the batches are moved to (the model must be there already); default: the CPU. */
  device?: Device;
  /** Mixed precision: run each step's forward under autocast (e.g. 'bfloat16' on CUDA). */
  autocast?: AutocastDType | AutocastOptions | null;
  /** Stop when the validation loss has not improved by minDelta for `patience` evaluations. */
  earlyStopping?: { patience: number; minDelta?: number };
  /**
   * With a DistributedDataParallel model: true (default) draws each global batch of
   * batchSize x worldSize rows from the (identically seeded) sources on every rank and
   * trains each rank on its own rows; false when the sources already give each rank its own
   * data (e.g. a DistributedSampler), batchSize rows each.
   */
  shardBatches?: boolean;
}

export interface TrainResult { steps: number; lastLoss: number; bestValLoss: number | null; stoppedEarly: boolean; losses: number[] }

function checkInt(v: unknown, name: string, min: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new Error(`nodegrad: Trainer: ${name} must be an integer >= ${min} (got ${String(v)})`);
}

/**
 * Refuses, before the first step, a batch whose tensors JavaScript cannot allocate or whose
 * step needs more memory than the device has left: the gradients (4 bytes per parameter)
 * and, for models that estimate them (GPT, BERT: activationBytes), the activations.
 */
function checkStepMemory(opts: TrainerOptions, inner: Module): void {
  const { batchSize: B, blockSize: T } = opts;
  const e = new ConfigErrors({ op: 'Trainer' }, 'Trainer');
  const step = `a training step of batchSize ${B} x blockSize ${T}`;
  const model = inner as unknown as { activationBytes?: (batchSize: number, seqLen: number) => number };
  const act = typeof model.activationBytes === 'function' ? model.activationBytes(B, T) : 0;
  const params = inner.numParameters();
  const grads = 4 * params;
  checkFits(e, act + grads, (need) => `${step} needs at least ${need} more than the model (${formatBytes(act)} of activations, ` +
    `${formatBytes(grads)} for the gradients of ${formatCount(params)} parameters)`, opts.device ?? 'cpu');
  checkTensorElements(e, `${step}: the token batch`, B * T);
}

function toDevice(b: Batch, device: Device | undefined): Batch {
  if (!device || device === 'cpu') return b;
  const out: Record<string, unknown> = { ...b };
  for (const [k, v] of Object.entries(b)) if (v instanceof Tensor && v.device !== device) out[k] = v.to(device);
  return out as unknown as Batch;
}

function defaultLoss(model: TrainableModel, b: Batch): Tensor {
  const loss = (model as unknown as { forward(x: Tensor, o: { targets: Tensor }): { loss?: Tensor } }).forward(b.x, { targets: b.y }).loss;
  if (!loss) throw new Error('nodegrad: Trainer: the model returned no loss');
  return loss;
}

interface TrainerState {
  step: number; bestValLoss: number | null; badEvals: number; rng: { seed: number; offset: number };
  trainSampler: unknown; valSampler: unknown; optimizer: object; losses: number[];
}

/** Checks every field of a parsed trainer.json before anything is restored from it. */
function checkTrainerState(raw: unknown, file: string): TrainerState {
  const bad = (field: string, what: string, got: unknown): Error =>
    new Error(`nodegrad: Trainer.resume: field "${field}" of ${file} ${what} (got ${got === undefined ? 'nothing: the field is missing' : JSON.stringify(got) ?? String(got)})`);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error(`nodegrad: Trainer.resume: ${file} must hold a JSON object (got ${Array.isArray(raw) ? 'an array' : JSON.stringify(raw)})`);
  }
  const o = raw as Record<string, unknown>;
  const has = (k: string): boolean => Object.hasOwn(o, k);
  const count = (k: string, v: unknown, field = k): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(field, 'must be a non-negative integer', v);
    return v;
  };
  const step = count('step', o.step);
  const badEvals = count('badEvals', o.badEvals);
  const best = o.bestValLoss;
  if (!has('bestValLoss') || (best !== null && (typeof best !== 'number' || !Number.isFinite(best)))) {
    throw bad('bestValLoss', 'must be a finite number or null', best);
  }
  const rng = o.rng as Record<string, unknown> | null | undefined;
  if (rng === null || typeof rng !== 'object' || Array.isArray(rng)) throw bad('rng', 'must be an object { seed, offset }', rng);
  const seed = count('rng', rng.seed, 'rng.seed');
  const offset = count('rng', rng.offset, 'rng.offset');
  for (const k of ['trainSampler', 'valSampler']) if (!has(k)) throw bad(k, 'must be a sampler state or null', undefined);
  const opt = o.optimizer;
  if (opt === null || typeof opt !== 'object' || Array.isArray(opt)) throw bad('optimizer', 'must be an optimizer state object', opt);
  const losses = o.losses;
  // JSON writes a NaN loss (a diverged step) as null
  if (!Array.isArray(losses)) throw bad('losses', 'must be an array of numbers', losses);
  const i = losses.findIndex((l) => l !== null && (typeof l !== 'number' || !Number.isFinite(l)));
  if (i >= 0) throw bad(`losses[${i}]`, 'must be a number', losses[i]);
  return {
    step, badEvals, bestValLoss: best as number | null, rng: { seed, offset },
    trainSampler: o.trainSampler, valSampler: o.valSampler, optimizer: opt, losses: losses.map((l) => (l === null ? NaN : l as number)),
  };
}

export class Trainer {
  step = 0;
  bestValLoss: number | null = null;
  private badEvals = 0;
  readonly losses: number[] = [];
  /** The data-parallel context (null in a one-process run). */
  private readonly dist: TrainerDistributed | null;
  /** The model itself (inside a DistributedDataParallel wrapper): what checkpoints hold. */
  private readonly inner: Module;

  constructor(readonly opts: TrainerOptions) {
    checkInt(opts.batchSize, 'batchSize', 1);
    checkInt(opts.blockSize, 'blockSize', 1);
    checkInt(opts.maxSteps, 'maxSteps', 0);
    checkInt(opts.gradAccumSteps ?? 1, 'gradAccumSteps', 1);
    this.dist = trainerDistributed(opts.model);
    this.inner = this.dist ? this.dist.ddp.module : opts.model;
    checkStepMemory(opts, this.inner);
    const ac = opts.autocast;
    const half = typeof ac === 'string' ? ac : ac && ac.enabled !== false ? ac.dtype : undefined;
    if (half === 'float16') {
      const groups = opts.optimizer.paramGroups as unknown as { params?: unknown }[];
      if (!groups.every((g) => Array.isArray(g.params))) {
        throw new Error('nodegrad: Trainer: float16 autocast needs an optimizer with paramGroups[].params (for loss scaling)');
      }
      this.scaler = new GradScaler();
    }
  }

  private lrAt(step: number): number {
    const lr = this.opts.lr;
    if (lr === undefined) return this.opts.optimizer.paramGroups[0]?.lr ?? 0;
    return typeof lr === 'number' ? lr : lr(step);
  }

  /** float16 autocast: dynamic loss scaling (an overflowing step is skipped and the scale shrinks). */
  private readonly scaler: GradScaler | null = null as GradScaler | null;

  private loss(model: TrainableModel, batch: Batch): Tensor {
    const b = toDevice(batch, this.opts.device);
    const fn = (): Tensor => (this.opts.lossFn ?? defaultLoss)(model, b);
    const ac = this.opts.autocast;
    if (!ac) return fn();
    return autocast(typeof ac === 'string' ? { dtype: ac } : ac, fn);
  }

  /** This rank's batch: its rows of the global batch under DDP (see shardBatches), else the source's. */
  private batchFrom(src: BatchSource): Batch {
    const { batchSize: B, blockSize: T } = this.opts;
    const d = this.dist;
    if (!d || this.opts.shardBatches === false) return src.getBatch(B, T);
    return shardBatch(src.getBatch(B * d.worldSize, T), d.rank, B, d.worldSize);
  }

  /** Under DDP: waits for the wrap-time broadcast (before anything reads or writes the weights). */
  private async ready(): Promise<void> {
    if (this.dist) await this.dist.ddp.ready;
  }

  /**
   * Mean loss over evalIters batches of the validation source (no gradients, eval mode);
   * under DDP this rank's shard only (evaluateAsync averages over the ranks).
   */
  evaluate(iters = this.opts.evalIters ?? 10): number {
    const src = this.opts.val;
    if (!src) throw new Error('nodegrad: Trainer.evaluate: no validation source was given');
    const { model } = this.opts;
    const was = model.training;
    model.eval();
    let total = 0;
    try {
      for (let i = 0; i < iters; i++) {
        total += noGrad(() => scope(() => {
          return this.loss(model, this.batchFrom(src)).item();
        }));
      }
    } finally {
      model.train(was);
    }
    return total / iters;
  }

  /** evaluate(), averaged over the ranks under DDP (every rank must call it): the same value everywhere. */
  async evaluateAsync(iters = this.opts.evalIters ?? 10): Promise<number> {
    await this.ready();
    const local = this.evaluate(iters);
    return this.dist ? (await averageOverRanks([local]))[0] : local;
  }

  /**
   * One optimizer step (gradAccumSteps micro-batches) that reads nothing back from the
   * device: the mean loss (and the gradient norm off the CPU) stay tensors, so on CUDA the
   * host queues the next step while this one runs. The caller disposes them. A
   * DistributedDataParallel model syncs gradients asynchronously: use stepTensorsAsync().
   */
  stepTensors(): { loss: Tensor; gradNorm: Tensor | number | null } {
    if (this.dist) throw new Error('nodegrad: Trainer.stepTensors: a DistributedDataParallel model needs await trainer.stepTensorsAsync() (or trainStepAsync(), fit())');
    return this.optimizerStep(this.backwardSteps());
  }

  /** stepTensors() that also awaits the gradient all-reduce of a DistributedDataParallel model. */
  async stepTensorsAsync(): Promise<{ loss: Tensor; gradNorm: Tensor | number | null }> {
    await this.ready();
    const loss = this.backwardSteps();
    if (this.dist) {
      try {
        await this.dist.ddp.finishGradientSync();
      } catch (e) {
        loss.dispose();
        throw e;
      }
    }
    return this.optimizerStep(loss);
  }

  /** The micro-steps' forward and backward (all but the last without gradient sync); the mean loss. */
  private backwardSteps(): Tensor {
    const { model, optimizer, train } = this.opts;
    const accum = this.opts.gradAccumSteps ?? 1;
    model.train();
    const lr = this.lrAt(this.step);
    for (const g of optimizer.paramGroups) g.lr = lr;
    let total: Tensor | null = null;
    for (let m = 0; m < accum; m++) {
      const lm = scope(() => {
        const out = this.loss(model, this.batchFrom(train));
        const l = accum > 1 ? out.div(accum) : out;
        const back = (): void => (this.scaler ? this.scaler.scale(l) : l).backward();
        if (this.dist && m < accum - 1) this.dist.ddp.noSync(back);
        else back();
        return out.detach();
      });
      if (total) {
        const s: Tensor = total.add(lm);
        total.dispose();
        lm.dispose();
        total = s;
      } else total = lm;
    }
    let loss = total!;
    if (accum > 1) {
      const mean = loss.div(accum);
      loss.dispose();
      loss = mean;
    }
    return loss;
  }

  /** Clipping, the optimizer (or loss-scaler) step and zeroGrad after the backward passes. */
  private optimizerStep(loss: Tensor): { loss: Tensor; gradNorm: Tensor | number | null } {
    const { model, optimizer } = this.opts;
    const clip = this.opts.clipGradNorm === undefined ? 1.0 : this.opts.clipGradNorm;
    const onCpu = (this.opts.device ?? 'cpu') === 'cpu';
    const scaler = this.scaler;
    if (scaler) scaler.unscale_(optimizer as unknown as Parameters<GradScaler['unscale_']>[0]);
    const gradNorm = clip === null ? null
      : onCpu ? clipGradNorm(model.parameters(), clip) : keep(clipGradNormTensor(model.parameters(), clip));
    if (scaler) {
      scaler.step(optimizer as unknown as Parameters<GradScaler['step']>[0]);
      scaler.update();
    } else optimizer.step();
    optimizer.zeroGrad({ setToNone: true });
    this.step++;
    return { loss: keep(loss), gradNorm };
  }

  /** One optimizer step (gradAccumSteps micro-batches); returns the mean loss. */
  trainStep(): { loss: number; gradNorm: number | null } {
    const r = this.stepTensors();
    const loss = r.loss.item();
    r.loss.dispose();
    let gradNorm: number | null;
    if (r.gradNorm instanceof Tensor) {
      gradNorm = r.gradNorm.item();
      r.gradNorm.dispose();
    } else gradNorm = r.gradNorm;
    return { loss, gradNorm };
  }

  /** trainStep() that also awaits the gradient all-reduce of a DistributedDataParallel model; the loss is this rank's. */
  async trainStepAsync(): Promise<{ loss: number; gradNorm: number | null }> {
    const r = await this.stepTensorsAsync();
    const loss = r.loss.item();
    r.loss.dispose();
    let gradNorm: number | null;
    if (r.gradNorm instanceof Tensor) {
      gradNorm = r.gradNorm.item();
      r.gradNorm.dispose();
    } else gradNorm = r.gradNorm;
    return { loss, gradNorm };
  }

  async fit(): Promise<TrainResult> {
    const o = this.opts;
    await this.ready();
    // under DDP rank 0 alone prints, logs and checkpoints; every rank sees the same averaged metrics
    const dist = this.dist;
    const lead = !dist || dist.rank === 0;
    const logFile = lead ? o.logFile : undefined;
    const progress = new Progress(lead ? o.progress ?? 'auto' : 'none', o.maxSteps);
    const logEvery = o.logInterval ?? 10;
    // tokens of the global batch: every rank's
    const tokensPerStep = o.batchSize * o.blockSize * (o.gradAccumSteps ?? 1) * (dist ? dist.worldSize : 1);
    if (logFile) await mkdir(path.dirname(path.resolve(logFile)), { recursive: true });
    // Off the CPU, losses are read at log, evaluation and checkpoint steps only (no host
    // sync inside the steps between); an onStep callback needs every step's values.
    const deferred = (o.device ?? 'cpu') !== 'cpu' && !o.onStep;
    interface Pending { step: number; loss: Tensor; gradNorm: Tensor | number | null; stepMs: number; lr: number }
    const pending: Pending[] = [];
    let stoppedEarly = false;
    let lastLoss = NaN;
    let windowStart = performance.now(), windowTokens = 0;
    const report = async (p: Pending): Promise<boolean> => {
      let loss = Number((await p.loss.data())[0]);
      p.loss.dispose();
      if (dist) [loss] = await averageOverRanks([loss]);
      let gradNorm: number | null = null;
      if (p.gradNorm instanceof Tensor) {
        gradNorm = Number((await p.gradNorm.data())[0]);
        p.gradNorm.dispose();
      } else gradNorm = p.gradNorm;
      lastLoss = loss;
      this.losses.push(loss);
      windowTokens += tokensPerStep;
      const elapsed = (performance.now() - windowStart) / 1000;
      const mem = memory();
      const m: StepMetrics = {
        step: p.step, loss, lr: p.lr, gradNorm, stepMs: p.stepMs,
        tokensPerSec: windowTokens / Math.max(elapsed, 1e-9), tokens: p.step * tokensPerStep,
        liveTensors: mem.numTensors, bytes: mem.numBytes,
      };
      const boundary = p.step % logEvery === 0 || p.step === o.maxSteps;
      if (boundary) {
        windowStart = performance.now();
        windowTokens = 0;
      }
      const line = `loss ${loss.toFixed(4)} ppl ${Math.exp(loss).toFixed(2)} lr ${m.lr.toExponential(2)} ${m.tokensPerSec.toFixed(0)} tok/s ${p.stepMs.toFixed(0)} ms/step`;
      progress.update(p.step, line, boundary);
      if (logFile) await appendFile(logFile, JSON.stringify({ type: 'step', ...m }) + '\n');
      return (await o.onStep?.(m)) !== false;
    };
    try {
      while (this.step < o.maxSteps) {
        const t0 = performance.now();
        const lr = this.lrAt(this.step);
        const r = await this.stepTensorsAsync();
        pending.push({ step: this.step, ...r, stepMs: performance.now() - t0, lr });
        const evalDue = Boolean(o.val && o.evalInterval && (this.step % o.evalInterval === 0 || this.step === o.maxSteps));
        const ckptDue = Boolean(o.checkpointDir && o.checkpointInterval && this.step % o.checkpointInterval === 0);
        if (!deferred || this.step % logEvery === 0 || this.step === o.maxSteps || evalDue || ckptDue) {
          while (pending.length && !stoppedEarly) if (!(await report(pending.shift()!))) stoppedEarly = true;
          // A stop asked for at an evaluation step still runs (and checkpoints) that step's
          // evaluation, so a run resumed from here has the history of an uninterrupted one.
          if (stoppedEarly && !evalDue) break;
        }
        if (evalDue) {
          const loss = lastLoss;
          const valLoss = await this.evaluateAsync();
          const e: EvalMetrics = { step: this.step, valLoss, valPerplexity: Math.exp(valLoss), trainLoss: loss };
          progress.message(`step ${this.step}: val loss ${valLoss.toFixed(4)} (ppl ${e.valPerplexity.toFixed(2)}), train loss ${loss.toFixed(4)}`);
          if (logFile) await appendFile(logFile, JSON.stringify({ type: 'eval', ...e }) + '\n');
          const minDelta = o.earlyStopping?.minDelta ?? 0;
          if (this.bestValLoss === null || valLoss < this.bestValLoss - minDelta) {
            this.bestValLoss = valLoss;
            this.badEvals = 0;
          } else this.badEvals++;
          if ((await o.onEval?.(e)) === false) { stoppedEarly = true; break; }
          if (o.earlyStopping && this.badEvals >= o.earlyStopping.patience) {
            progress.message(`early stop: no improvement in ${this.badEvals} evaluations`);
            stoppedEarly = true;
            break;
          }
          if (stoppedEarly) break;
        }
        if (ckptDue) await onRankZero(dist, () => this.saveCheckpoint(o.checkpointDir!));
        // let timers, I/O and signals run between steps
        await new Promise((r) => setImmediate(r));
      }
      while (pending.length && !stoppedEarly) if (!(await report(pending.shift()!))) stoppedEarly = true;
    } finally {
      for (const p of pending) {
        p.loss.dispose();
        if (p.gradNorm instanceof Tensor) p.gradNorm.dispose();
      }
    }
    progress.end();
    if (o.checkpointDir) await onRankZero(dist, () => this.saveCheckpoint(o.checkpointDir!));
    return { steps: this.step, lastLoss, bestValLoss: this.bestValLoss, stoppedEarly, losses: this.losses };
  }

  /**
   * Writes model, optimizer, trainer and RNG state to dir atomically (from the rank that
   * calls it: under DDP fit() calls it on rank 0 while the others wait at a barrier).
   */
  async saveCheckpoint(dir: string): Promise<void> {
    const { optimizer, train } = this.opts;
    const model = this.inner;
    const optTensors = new Map<string, Tensor>();
    const optState = splitTensors(optimizer.stateDict(), 'opt', optTensors);
    const trainerState = {
      step: this.step, bestValLoss: this.bestValLoss, badEvals: this.badEvals, rng: getRngState(),
      trainSampler: train.getState?.() ?? null, valSampler: this.opts.val?.getState?.() ?? null,
      optimizer: optState, losses: this.losses,
    };
    const config = (model as unknown as { config?: object }).config;
    const files: Record<string, FileContents> = {
      'model.safetensors': safetensorsWriter(model.stateDict(), { format: 'nodegrad' }),
      'optimizer.safetensors': safetensorsWriter(optTensors, { format: 'nodegrad' }),
      'trainer.json': JSON.stringify(trainerState),
      ...(this.opts.checkpointFiles?.() ?? {}),
    };
    if (config) files['config.json'] = JSON.stringify({ modelType: 'nodegrad-gpt', ...config }, null, 2);
    await writeDirAtomic(dir, files);
  }

  /**
   * Restores a checkpoint written by saveCheckpoint; fit() then continues from its step.
   * Under DDP every rank resumes from the same checkpoint: the sampler state in it is
   * every rank's (all ranks draw the same global batches; see ./distributed.ts).
   */
  async resume(dir: string): Promise<void> {
    await this.ready();
    const d = await resolveCheckpointDir(dir);
    const { optimizer, train } = this.opts;
    const model = this.inner;
    const file = path.join(d, 'trainer.json');
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(file, 'utf8'));
    } catch (e) {
      throw new Error(`nodegrad: Trainer.resume: cannot read ${file}: ${(e as Error).message}`);
    }
    const state = checkTrainerState(raw, file);
    const { tensors: modelTensors } = await loadSafetensors(path.join(d, 'model.safetensors'));
    model.loadStateDict(modelTensors);
    for (const t of modelTensors.values()) t.dispose();
    const { tensors: optTensors } = await loadSafetensors(path.join(d, 'optimizer.safetensors'));
    optimizer.loadStateDict(joinTensors(state.optimizer, optTensors) as never);
    for (const t of optTensors.values()) t.dispose();
    this.step = state.step;
    this.bestValLoss = state.bestValLoss;
    this.badEvals = state.badEvals;
    this.losses.splice(0, this.losses.length, ...state.losses);
    setRngState(state.rng);
    if (state.trainSampler !== null && train.setState) train.setState(state.trainSampler);
    if (state.valSampler !== null && this.opts.val?.setState) this.opts.val.setState(state.valSampler);
  }
}
