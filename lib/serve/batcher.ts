// Scheduling for `nodegrad serve`: bounded queues, dynamic batching and cancellation, on
// the HTTP thread; the forward passes run in worker threads behind WorkerEngine.
//
// Generation is batched per decoding step (continuous batching): when an engine is idle,
// the first request waits at most batchWindowMs for others (or until maxBatch are queued);
// while it is busy, queued requests join its batch at the next step boundary, up to
// maxBatch rows. A cancelled row (client gone, timeout) is dropped at the next step, so
// the engine stops spending work on it within one step. Classification batches whole
// requests the same way: those that arrive within the window share one forward pass.
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import type { AdmitRow, Classification, Classifier, FromWorker, ModelInfo, ModelKind, StepResult, ToWorker, WorkerInit } from './worker.js';
import type { Metrics } from './metrics.js';
import { HttpError } from './validate.js';

type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

export interface GenerateEngine { step(admit: AdmitRow[], drop: number[]): Promise<StepResult> }

/** Where the worker's entry lives: worker.js next to this file, or worker.ts through the repo's TypeScript loader. */
function workerEntry(): { file: URL; execArgv: string[] } {
  const self = import.meta.url;
  if (self.endsWith('.ts')) {
    return { file: new URL('./worker.ts', self), execArgv: ['--import', fileURLToPath(new URL('../../scripts/ts-loader.mjs', self))] };
  }
  return { file: new URL('./worker.js', self), execArgv: [] };
}

/**
 * A model in a worker thread. Requests are answered in order; if the worker dies, the
 * pending calls fail and the next call starts a fresh worker.
 */
export class WorkerEngine implements GenerateEngine, Classifier {
  private worker: Worker | null = null;
  private starting: Promise<ModelInfo> | null = null;
  private readonly pending = new Map<number, { resolve: (v: never) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private closed = false;
  info: ModelInfo | null = null;

  constructor(private readonly modelDir: string, private readonly kind: ModelKind) {}

  /** Starts the worker and waits until its model is loaded. */
  start(): Promise<ModelInfo> {
    if (this.starting) return this.starting;
    const { file, execArgv } = workerEntry();
    const init: WorkerInit = { nodegradServe: true, modelDir: this.modelDir, kind: this.kind };
    const w = new Worker(file, { workerData: init, execArgv });
    this.worker = w;
    this.starting = new Promise<ModelInfo>((resolve, reject) => {
      let ready = false;
      w.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          ready = true;
          this.info = m.info;
          resolve(m.info);
        } else if (m.type === 'fatal') {
          reject(new Error(m.message));
          void w.terminate();
        } else {
          const p = this.pending.get(m.id);
          this.pending.delete(m.id);
          if (m.type === 'result') p?.resolve(m.result as never);
          else p?.reject(new HttpError(500, `inference failed: ${m.message}`));
        }
      });
      const lost = (why: string): void => {
        if (this.worker !== w) return;
        this.worker = null;
        this.starting = null;
        const e = new HttpError(500, `the inference worker stopped (${why}); the request was not completed`);
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
        if (!ready) reject(new Error(`nodegrad serve: the model worker failed to start (${why})`));
      };
      w.on('error', (e) => lost(e.message));
      w.on('exit', (code) => lost(`exit code ${code}`));
    });
    return this.starting;
  }

  private async call<T>(msg: WithoutId<ToWorker>): Promise<T> {
    if (this.closed) throw new HttpError(503, 'the server is shutting down');
    await this.start();
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: never) => void, reject });
      this.worker!.postMessage({ ...msg, id } as ToWorker);
    });
  }

  step(admit: AdmitRow[], drop: number[]): Promise<StepResult> { return this.call({ type: 'step', admit, drop }); }
  classify(texts: string[]): Promise<Classification[]> { return this.call({ type: 'classify', texts }); }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate();
  }
}

// ---- shared queue machinery --------------------------------------------------------------

export interface BatchOptions { maxBatch: number; batchWindowMs: number; queueSize: number }

/** A wake-up signal: wait(ms) resolves on the next notify() or after ms. */
class Signal {
  private waiters: (() => void)[] = [];
  wait(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      const t = ms === undefined ? null : setTimeout(done, Math.max(0, ms));
      const self = this;
      function done(): void {
        if (t) clearTimeout(t);
        self.waiters = self.waiters.filter((w) => w !== done);
        resolve();
      }
      this.waiters.push(done);
    });
  }
  notify(): void { for (const w of [...this.waiters]) w(); }
}

abstract class QueueBase<E extends { enqueuedAt: number; state: string }> {
  protected queue: E[] = [];
  protected closing = false;
  protected stopped = false;
  protected readonly work = new Signal();
  protected readonly idle = new Signal();

  constructor(protected readonly opts: BatchOptions, protected readonly metrics?: Metrics) {}

  get queueDepth(): number { return this.queue.length; }
  abstract get activeRows(): number;
  /** Batch rows free now: requests that will not wait beyond the batching window. */
  protected abstract get freeSlots(): number;

  protected admitCheck(): void {
    if (this.closing) throw new HttpError(503, 'the server is shutting down', undefined, { 'Retry-After': '5', Connection: 'close' });
    if (this.queue.length >= this.opts.queueSize + this.freeSlots) {
      throw new HttpError(429, `the queue is full (${this.opts.queueSize} requests waiting); retry later`, undefined, { 'Retry-After': '1' });
    }
  }

  /** Time to wait before starting a batch from an idle engine (0 = start now). */
  protected windowWait(): number {
    if (this.queue.length >= this.opts.maxBatch) return 0;
    return this.queue[0].enqueuedAt + this.opts.batchWindowMs - performance.now();
  }

  /** Resolves once nothing is queued or running; refuses new work from now on. */
  async drain(): Promise<void> {
    this.closing = true;
    while (this.queue.length > 0 || this.activeRows > 0) await this.idle.wait(100);
  }

  stop(): void {
    this.closing = this.stopped = true;
    this.work.notify();
  }
}

// ---- generation ---------------------------------------------------------------------------

/** What the HTTP layer hands the batcher for one generation request. */
export interface GenerateJob {
  promptIds: number[];
  maxNewTokens: number;
  temperature: number;
  topK?: number;
  topP?: number;
  seed: number;
  onToken(token: number): void;
  onDone(): void;
  onError(e: Error): void;
}

interface GenEntry { id: number; job: GenerateJob; enqueuedAt: number; state: 'queued' | 'active' | 'done'; slot?: Slot }
interface Slot { engine: GenerateEngine; active: Map<number, GenEntry>; drops: number[]; batchRows: number }

export interface JobHandle { readonly id: number }

export class GenerateBatcher extends QueueBase<GenEntry> {
  private readonly slots: Slot[];
  private readonly entries = new Map<number, GenEntry>();
  private nextId = 1;

  constructor(engines: GenerateEngine[], opts: BatchOptions, metrics?: Metrics) {
    super(opts, metrics);
    this.slots = engines.map((engine) => ({ engine, active: new Map(), drops: [], batchRows: 0 }));
    for (const s of this.slots) void this.run(s);
  }

  get activeRows(): number { return this.slots.reduce((a, s) => a + s.active.size, 0); }
  protected get freeSlots(): number { return this.slots.reduce((a, s) => a + this.opts.maxBatch - s.active.size, 0); }
  /** Rows the engines hold in their batches (cancelled rows leave at the next step). */
  get engineRows(): number { return this.slots.reduce((a, s) => a + s.batchRows, 0); }

  /** Queues a job; throws HttpError 429 when the queue is full, 503 when shutting down. */
  submit(job: GenerateJob): JobHandle {
    this.admitCheck();
    const e: GenEntry = { id: this.nextId++, job, enqueuedAt: performance.now(), state: 'queued' };
    this.entries.set(e.id, e);
    this.queue.push(e);
    this.work.notify();
    return { id: e.id };
  }

  /** Stops a job: removed from the queue, or dropped from its engine's batch at the next step. No callback fires after this. */
  cancel(h: JobHandle): boolean {
    const e = this.entries.get(h.id);
    if (!e || e.state === 'done') return false;
    if (e.state === 'queued') this.queue = this.queue.filter((q) => q !== e);
    else {
      e.slot!.active.delete(e.id);
      e.slot!.drops.push(e.id);
    }
    this.finish(e);
    this.work.notify();
    this.idle.notify();
    return true;
  }

  private finish(e: GenEntry): void {
    e.state = 'done';
    this.entries.delete(e.id);
  }

  private async run(slot: Slot): Promise<void> {
    while (!this.stopped) {
      if (slot.active.size === 0 && slot.drops.length === 0) {
        if (this.queue.length === 0) {
          await this.work.wait();
          continue;
        }
        const wait = this.windowWait();
        if (wait > 0) {
          await this.work.wait(wait);
          continue;
        }
      }
      const admit: AdmitRow[] = [];
      while (slot.active.size < this.opts.maxBatch && this.queue.length > 0) {
        const e = this.queue.shift()!;
        e.state = 'active';
        e.slot = slot;
        slot.active.set(e.id, e);
        const j = e.job;
        admit.push({ id: e.id, ids: j.promptIds, maxNewTokens: j.maxNewTokens, temperature: j.temperature, topK: j.topK, topP: j.topP, seed: j.seed });
      }
      const drop = slot.drops;
      slot.drops = [];
      let res: StepResult;
      try {
        res = await slot.engine.step(admit, drop);
      } catch (err) {
        // the engine's batch is gone: every row it held fails
        const e = err instanceof Error ? err : new Error(String(err));
        for (const a of slot.active.values()) {
          this.finish(a);
          a.job.onError(e);
        }
        slot.active.clear();
        slot.batchRows = 0;
        this.idle.notify();
        continue;
      }
      slot.batchRows = res.batchRows;
      if (res.rows > 0) this.metrics?.step(res.rows, res.tokens.length, res.ms);
      for (const [id, token] of res.tokens) slot.active.get(id)?.job.onToken(token);
      for (const id of res.finished) {
        const e = slot.active.get(id);
        if (!e) continue;
        slot.active.delete(id);
        this.finish(e);
        e.job.onDone();
      }
      this.idle.notify();
    }
  }
}

// ---- classification ------------------------------------------------------------------------

interface ClsEntry {
  texts: string[];
  enqueuedAt: number;
  state: 'queued' | 'active' | 'done';
  resolve: (r: Classification[]) => void;
  reject: (e: Error) => void;
}

export class ClassifyBatcher extends QueueBase<ClsEntry> {
  private active = 0;

  constructor(private readonly classifier: Classifier, opts: BatchOptions, metrics?: Metrics) {
    super(opts, metrics);
    void this.run();
  }

  get activeRows(): number { return this.active; }
  protected get freeSlots(): number { return this.active ? 0 : this.opts.maxBatch; }

  /** Classifies texts together with other requests of the same window; `cancel` gives up on the answer. */
  submit(texts: string[]): { result: Promise<Classification[]>; cancel: () => void } {
    this.admitCheck();
    let entry!: ClsEntry;
    const result = new Promise<Classification[]>((resolve, reject) => {
      entry = { texts, enqueuedAt: performance.now(), state: 'queued', resolve, reject };
    });
    this.queue.push(entry);
    this.work.notify();
    const cancel = (): void => {
      if (entry.state === 'queued') this.queue = this.queue.filter((q) => q !== entry);
      entry.state = 'done';
      this.idle.notify();
    };
    return { result, cancel };
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      if (this.queue.length === 0) {
        await this.work.wait();
        continue;
      }
      const wait = this.windowWait();
      if (wait > 0) {
        await this.work.wait(wait);
        continue;
      }
      const batch = this.queue.splice(0, this.opts.maxBatch);
      for (const e of batch) e.state = 'active';
      this.active = batch.length;
      const texts = batch.flatMap((e) => e.texts);
      const t0 = performance.now();
      try {
        const out = await this.classifier.classify(texts);
        if (!Array.isArray(out) || out.length !== texts.length) {
          throw new HttpError(500, `the classifier returned ${Array.isArray(out) ? out.length : 'no'} results for ${texts.length} texts`);
        }
        this.metrics?.step(texts.length, 0, performance.now() - t0);
        let k = 0;
        for (const e of batch) {
          const mine = out.slice(k, k + e.texts.length);
          k += e.texts.length;
          if (e.state === 'active') e.resolve(mine);
          e.state = 'done';
        }
      } catch (err) {
        const e = err instanceof HttpError ? err : new HttpError(500, `classification failed: ${(err as Error).message}`);
        for (const b of batch) {
          if (b.state === 'active') b.reject(e);
          b.state = 'done';
        }
      }
      this.active = 0;
      this.idle.notify();
    }
  }
}
