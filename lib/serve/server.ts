// The HTTP side of `nodegrad serve`, on Node's own http module:
//   POST /v1/generate  {prompt, maxNewTokens?, temperature?, topK?, topP?, seed?, stream?}
//   POST /v1/classify  {texts}
//   GET  /health, GET /metrics[?format=prometheus]
// Requests are validated and tokenized here; the model runs in worker threads behind the
// batchers, so this thread only parses, schedules and writes responses. Failure modes
// each have a status: 400 invalid body, 404 unknown route, 405 wrong method, 408 headers or
// body not received in time, 413 body too large, 415 not JSON (or not UTF-8), 429 queue
// full, 503 shutting down or too many connections, 504 timed out; a client that
// disconnects has its generation stopped.
import http from 'node:http';
import { randomInt } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AddressInfo, Socket } from 'node:net';
import { CharTokenizer, tokenizerFromJSON } from '../data/tokenizers.js';
import { resolveCheckpointDir } from '../io/atomic.js';
import { setNumThreads } from '../info.js';
import { ClassifyBatcher, GenerateBatcher, WorkerEngine, type GenerateJob } from './batcher.js';
import { Metrics, type CancelReason } from './metrics.js';
import { HttpError, parseByteSize, parseClassifyRequest, parseGenerateRequest } from './validate.js';
import type { Classifier, ModelInfo, ModelKind } from './worker.js';

export interface ServerOptions {
  /** A directory written by GPT.save / `nodegrad train`, or a Hugging Face GPT-2, Llama/Mistral/Qwen2/Qwen3 or BERT classifier directory. */
  modelDir?: string;
  /** Serves /v1/classify in this process with this classifier (instead of, or beside, the model's own task). */
  classifier?: Classifier;
  port?: number;
  host?: string;
  /** Rows per forward pass (1 = no batching). Default 8. */
  maxBatch?: number;
  /** How long an idle engine waits for more requests before starting a batch. Default 5 ms. */
  batchWindowMs?: number;
  /** Requests waiting beyond the running batches; more get 429. Default 64. */
  queueSize?: number;
  /** Per-request limit, queueing included; then 504. Default 30 s. */
  timeoutMs?: number;
  /** Request body limit ('1mb', '64kb' or bytes); then 413. Default 1mb. */
  maxBody?: string | number;
  /** CPU threads of the kernels (process-wide). Default: all cores. */
  threads?: number;
  /** Worker threads, each with its own copy of the model. Default 1. */
  workers?: number;
  /** maxNewTokens when a request gives none (capped by the room left in the context). Default 32. */
  defaultMaxNewTokens?: number;
  /** Time a client has to send a request's headers, from the connection or the request's start; then 408 and closed. Default 10 s. */
  headersTimeoutMs?: number;
  /** Time a client has to send a request's body once its headers are in; then 408 and closed. Default 30 s. */
  bodyTimeoutMs?: number;
  /** Open connections served at once; a connection beyond it gets 503 and is closed. Default 256. */
  maxConnections?: number;
}

interface TextTokenizer { encode(text: string): number[]; decode(ids: ArrayLike<number>): string }

const ROUTES: Record<string, string[]> = {
  '/health': ['GET', 'HEAD'],
  '/metrics': ['GET', 'HEAD'],
  '/v1/generate': ['POST'],
  '/v1/classify': ['POST'],
};

/** Which kind of model a directory holds, from its config.json. */
export async function detectModelKind(dir: string): Promise<{ dir: string; kind: ModelKind }> {
  const d = await resolveCheckpointDir(dir);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await readFile(path.join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`nodegrad serve: --model ${dir}: cannot read config.json (${(e as Error).message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error(`nodegrad serve: --model ${dir}: ${path.join(d, 'config.json')} is not a JSON object (got ${JSON.stringify(raw)})`);
  }
  const type = raw.model_type ?? raw.modelType;
  if (type === 'nodegrad-gpt' || (type === undefined && typeof raw.nLayer === 'number')) return { dir: d, kind: 'gpt' };
  if (type === 'gpt2' || type === 'bert') return { dir: d, kind: type };
  if (type === 'llama' || type === 'mistral' || type === 'qwen2' || type === 'qwen3') return { dir: d, kind: 'llama' };
  throw new Error(`nodegrad serve: --model ${dir}: model type ${JSON.stringify(type)} is not servable (nodegrad GPT, gpt2, bert, llama, mistral, qwen2 or qwen3)`);
}

/**
 * Checks a model directory as loading it would, before any worker starts: config.json's
 * fields, the model's size times `copies` (one per worker) against the memory available,
 * and the weights' headers against the config. Reads no weights.
 */
async function inspectModelDir(dir: string, kind: ModelKind, copies: number): Promise<void> {
  if (kind === 'gpt') {
    const { inspectGPTCheckpoint } = await import('../models/gpt.js');
    await inspectGPTCheckpoint(dir, { op: 'serve', copies });
  } else {
    const { inspectPretrained } = await import('../models/hf.js');
    const cls = kind === 'gpt2' ? 'GPT' : kind === 'llama' ? 'LlamaForCausalLM' : 'BertForSequenceClassification';
    await inspectPretrained(dir, cls, { op: 'serve', copies });
  }
}

async function loadTokenizer(dir: string, kind: ModelKind): Promise<TextTokenizer> {
  if (kind === 'gpt2') {
    const { GPT2Tokenizer } = await import('../data/bpe.js');
    return GPT2Tokenizer.fromPretrained(dir);
  }
  if (kind === 'llama') {
    const { AutoTokenizer } = await import('../data/auto_tokenizer.js');
    return AutoTokenizer.fromPretrained(dir) as Promise<TextTokenizer>;
  }
  try {
    return tokenizerFromJSON(JSON.parse(await readFile(path.join(dir, 'tokenizer.json'), 'utf8')));
  } catch (e) {
    throw new Error(`nodegrad serve: --model ${dir}: cannot read tokenizer.json (${(e as Error).message})`);
  }
}

/** Turns tokens into text as they arrive, holding back a split multi-byte character. */
class TextStream {
  private ids: number[] = [];
  private emitted = '';
  constructor(private readonly tok: TextTokenizer) {}
  push(t: number): string {
    if (this.tok instanceof CharTokenizer) return this.tok.decode([t]);
    this.ids.push(t);
    const full = this.tok.decode(this.ids).replace(/\uFFFD{1,3}$/, '');
    if (!full.startsWith(this.emitted)) return '';
    const delta = full.slice(this.emitted.length);
    this.emitted = full;
    return delta;
  }
}

function sendJSON(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function errorBody(e: HttpError): unknown {
  return { error: { status: e.status, message: e.message, ...(e.field ? { field: e.field } : {}) } };
}

/** Body charsets read as they are: JSON is UTF-8 (RFC 8259), and ASCII is a subset of it. */
const CHARSETS = new Set(['utf-8', 'utf8', 'us-ascii', 'ascii']);

export class InferenceServer {
  readonly metrics: Metrics;
  private readonly opts: Required<Omit<ServerOptions, 'modelDir' | 'classifier' | 'threads' | 'maxBody'>> & { maxBodyBytes: number };
  private readonly http: http.Server;
  private engines: WorkerEngine[] = [];
  private gen: GenerateBatcher | null = null;
  private cls: ClassifyBatcher | null = null;
  private tokenizer: TextTokenizer | null = null;
  private info: ModelInfo | null = null;
  private closing = false;
  private closed: Promise<void> | null = null;
  private readonly inflight = new Set<http.ServerResponse>();
  private readonly sockets = new Set<Socket>();
  /** Connections admit() answered with 503: a request parsed on one is not served. */
  private readonly refused = new WeakSet<Socket>();

  constructor(private readonly options: ServerOptions) {
    const o = options;
    const posInt = (v: number | undefined, name: string, dflt: number, min = 1): number => {
      const x = v ?? dflt;
      if (!Number.isInteger(x) || x < min) throw new Error(`nodegrad serve: ${name} must be an integer >= ${min} (got ${x})`);
      return x;
    };
    if (!o.modelDir && !o.classifier) throw new Error('nodegrad serve: a model directory (modelDir) or a classifier is required');
    this.opts = {
      port: posInt(o.port, 'port', 8080, 0), host: o.host ?? '127.0.0.1',
      maxBatch: posInt(o.maxBatch, 'maxBatch', 8), batchWindowMs: posInt(o.batchWindowMs, 'batchWindowMs', 5, 0),
      queueSize: posInt(o.queueSize, 'queueSize', 64), timeoutMs: posInt(o.timeoutMs, 'timeoutMs', 30_000),
      workers: posInt(o.workers, 'workers', 1), defaultMaxNewTokens: posInt(o.defaultMaxNewTokens, 'defaultMaxNewTokens', 32),
      headersTimeoutMs: posInt(o.headersTimeoutMs, 'headersTimeoutMs', 10_000), bodyTimeoutMs: posInt(o.bodyTimeoutMs, 'bodyTimeoutMs', 30_000),
      maxConnections: posInt(o.maxConnections, 'maxConnections', 256),
      maxBodyBytes: parseByteSize(o.maxBody ?? '1mb'),
    };
    if (o.threads !== undefined) posInt(o.threads, 'threads', 1);
    this.metrics = new Metrics(() => ({
      queueDepth: (this.gen?.queueDepth ?? 0) + (this.cls?.queueDepth ?? 0), queueCapacity: this.opts.queueSize,
      activeRows: (this.gen?.activeRows ?? 0) + (this.cls?.activeRows ?? 0), engineRows: this.gen?.engineRows ?? 0,
      workers: this.engines.length,
    }), () => this.modelSummary());
    // Slow senders are cut off with 408: Node checks headersTimeout every
    // connectionsCheckingInterval (30 s unless set), so the check runs several times per
    // timeout. readJSON times the body itself (with a JSON answer); requestTimeout is only
    // the backstop behind it.
    const { headersTimeoutMs, bodyTimeoutMs } = this.opts;
    this.http = http.createServer({
      headersTimeout: headersTimeoutMs, requestTimeout: headersTimeoutMs + bodyTimeoutMs + 1000,
      connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(headersTimeoutMs / 4))),
    }, (req, res) => { void this.handle(req, res); });
    this.http.on('connection', (socket: Socket) => this.admit(socket));
  }

  /** Open connections being served (those turned away with 503 are not counted). */
  get openConnections(): number { return this.sockets.size; }

  /** Counts a new connection, or answers it 503 and closes it when maxConnections are open. */
  private admit(socket: Socket): void {
    if (this.sockets.size < this.opts.maxConnections) {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      return;
    }
    this.refused.add(socket);
    this.metrics.request('connection', 503, 0);
    const body = JSON.stringify(errorBody(new HttpError(503, `too many connections (the limit is ${this.opts.maxConnections}); retry later`)));
    socket.on('error', () => undefined);
    socket.end(`HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Retry-After: 1\r\nConnection: close\r\n\r\n${body}`);
    // a client that does not close its side is not waited for
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  private modelSummary(): Record<string, unknown> {
    return { ...(this.info ?? {}), ...(this.options.classifier ? { classifier: 'in-process' } : {}) };
  }

  /** Loads the model into the workers, then listens. */
  async start(): Promise<{ host: string; port: number; url: string }> {
    const o = this.opts;
    const batch = { maxBatch: o.maxBatch, batchWindowMs: o.batchWindowMs, queueSize: o.queueSize };
    if (this.options.threads !== undefined) setNumThreads(this.options.threads);
    if (this.options.modelDir) {
      const { dir, kind } = await detectModelKind(this.options.modelDir);
      const n = kind === 'bert' ? 1 : o.workers;
      await inspectModelDir(dir, kind, n);
      if (kind !== 'bert') this.tokenizer = await loadTokenizer(dir, kind);
      this.engines = Array.from({ length: n }, () => new WorkerEngine(dir, kind));
      try {
        const [info] = await Promise.all(this.engines.map((e) => e.start()));
        this.info = info;
      } catch (e) {
        await Promise.all(this.engines.map((w) => w.close()));
        throw e;
      }
      if (kind === 'bert') this.cls = new ClassifyBatcher(this.engines[0], batch, this.metrics);
      else this.gen = new GenerateBatcher(this.engines, batch, this.metrics);
    }
    if (this.options.classifier) this.cls = new ClassifyBatcher(this.options.classifier, batch, this.metrics);
    try {
      await new Promise<void>((resolve, reject) => {
        this.http.once('error', reject);
        this.http.listen(o.port, o.host, () => { this.http.off('error', reject); resolve(); });
      });
    } catch (e) {
      this.gen?.stop();
      this.cls?.stop();
      await Promise.all(this.engines.map((w) => w.close()));
      throw new Error(`nodegrad serve: cannot listen on ${o.host}:${o.port} (${(e as Error).message})`);
    }
    return this.address;
  }

  get address(): { host: string; port: number; url: string } {
    const a = this.http.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return { host: a.address, port: a.port, url: `http://${host}:${a.port}` };
  }

  /** Requests being answered (generate and classify). */
  get inflightRequests(): number { return this.inflight.size; }

  /**
   * Graceful shutdown: stop accepting connections, answer new requests on open ones with
   * 503, finish every queued and running request, then stop the workers.
   */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.closing = true;
      const httpClosed = new Promise<void>((resolve) => this.http.close(() => resolve()));
      this.http.closeIdleConnections();
      await Promise.all([this.gen?.drain(), this.cls?.drain()]);
      while (this.inflight.size > 0) await new Promise((r) => setTimeout(r, 10));
      this.gen?.stop();
      this.cls?.stop();
      await Promise.all(this.engines.map((e) => e.close()));
      this.http.closeAllConnections();
      await httpClosed;
    })();
    return this.closed;
  }

  // ---- request handling ----------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (this.refused.has(req.socket)) {
      req.socket.destroy(); // already answered 503 by admit()
      return;
    }
    const t0 = performance.now();
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      url = new URL('http://localhost/?');   // an unparsable target is an unknown route
    }
    const allowed = Object.hasOwn(ROUTES, url.pathname) ? ROUTES[url.pathname] : undefined;
    const label = allowed ? url.pathname : 'unknown';
    res.on('error', () => undefined);   // a write to a vanished client must not take the process down
    res.once('close', () => this.metrics.request(label, res.writableFinished ? res.statusCode : 499, performance.now() - t0));
    try {
      if (!allowed) throw new HttpError(404, `no route ${url.pathname} (routes: ${Object.keys(ROUTES).join(', ')})`);
      const method = req.method ?? 'GET';
      if (!allowed.includes(method)) {
        throw new HttpError(405, `${method} is not allowed on ${url.pathname} (allowed: ${allowed.join(', ')})`, undefined, { Allow: allowed.join(', ') });
      }
      if (url.pathname === '/health') return this.health(res);
      if (url.pathname === '/metrics') {
        if (url.searchParams.get('format') === 'prometheus') {
          res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
          res.end(this.metrics.toPrometheus());
        } else sendJSON(res, 200, this.metrics.toJSON());
        return;
      }
      if (this.closing) throw new HttpError(503, 'the server is shutting down', undefined, { 'Retry-After': '5', Connection: 'close' });
      this.inflight.add(res);
      res.once('close', () => this.inflight.delete(res));
      const body = await this.readJSON(req);
      const deadline = t0 + this.opts.timeoutMs;
      if (url.pathname === '/v1/generate') await this.generate(body, res, t0, deadline);
      else await this.classify(body, res, deadline);
    } catch (e) {
      const err = e instanceof HttpError ? e : new HttpError(500, `internal error: ${(e as Error).message}`);
      if (res.headersSent) {
        if (!res.writableEnded) res.end();
        return;
      }
      sendJSON(res, err.status, errorBody(err), err.headers);
    }
  }

  private health(res: http.ServerResponse): void {
    const status = this.closing ? 'draining' : 'ok';
    sendJSON(res, this.closing ? 503 : 200, {
      status, model: this.modelSummary(),
      queueDepth: (this.gen?.queueDepth ?? 0) + (this.cls?.queueDepth ?? 0),
      activeRows: (this.gen?.activeRows ?? 0) + (this.cls?.activeRows ?? 0),
    });
  }

  private readJSON(req: http.IncomingMessage): Promise<unknown> {
    const limit = this.opts.maxBodyBytes;
    const type = req.headers['content-type'];
    // JSON, or the defaults of clients that send a string body without saying (fetch: text/plain, curl -d: form)
    if (type !== undefined && !/^\s*(application\/([\w.+-]*\+)?json|text\/plain|application\/x-www-form-urlencoded)\s*(;|$)/i.test(type)) {
      req.resume();
      return Promise.reject(new HttpError(415, `Content-Type must be application/json (got ${type})`));
    }
    const charset = type === undefined ? undefined : /;\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(type)?.[1];
    if (charset !== undefined && !CHARSETS.has(charset.toLowerCase())) {
      req.resume();
      return Promise.reject(new HttpError(415, `Content-Type charset must be utf-8 (got ${JSON.stringify(charset)} in ${type}); send the JSON as UTF-8`));
    }
    const tooLarge = (): HttpError => new HttpError(413, `body: larger than the limit of ${limit} bytes`, 'body', { Connection: 'close' });
    const ms = this.opts.bodyTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const body = new Promise<unknown>((resolve, reject) => {
      timer = setTimeout(() => {
        reject(new HttpError(408, `body: not received within ${ms} ms`, 'body', { Connection: 'close' }));
        req.pause();
      }, ms);
      if (Number(req.headers['content-length']) > limit) {
        req.resume();   // discard the rest; the connection closes after the answer
        reject(tooLarge());
        return;
      }
      const chunks: Buffer[] = [];
      let n = 0, over = false;
      req.on('data', (c: Buffer) => {
        if (over) return;
        n += c.length;
        if (n > limit) {
          over = true;
          chunks.length = 0;
          reject(tooLarge());
        } else chunks.push(c);
      });
      req.on('error', (e) => reject(new HttpError(400, `body: could not be read (${e.message})`, 'body')));
      req.once('close', () => reject(new HttpError(400, 'body: the connection closed before the body was complete', 'body')));
      req.on('end', () => {
        if (over) return;
        const text = Buffer.concat(chunks).toString('utf8');
        if (text.trim() === '') return reject(new HttpError(400, 'body: is empty; expected a JSON object', 'body'));
        try {
          resolve(JSON.parse(text));
        } catch (e) {
          reject(new HttpError(400, `body: is not valid JSON (${(e as Error).message})`, 'body'));
        }
      });
    });
    return body.finally(() => clearTimeout(timer));
  }

  /** Stops a running request when the client goes away or the deadline passes. */
  private watch(res: http.ServerResponse, deadline: number, stop: (reason: CancelReason) => void): () => void {
    let done = false;
    const end = (reason: CancelReason): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.metrics.cancel(reason);
      stop(reason);
    };
    const timer = setTimeout(() => end('timeout'), Math.max(0, deadline - performance.now()));
    res.once('close', () => end('disconnect'));
    return () => { done = true; clearTimeout(timer); };
  }

  private async generate(body: unknown, res: http.ServerResponse, t0: number, deadline: number): Promise<void> {
    const r = parseGenerateRequest(body, this.opts.maxBodyBytes);
    if (!this.gen || !this.tokenizer || !this.info?.blockSize) {
      throw new HttpError(400, 'this model does not generate text (it is a classifier); use POST /v1/classify');
    }
    let ids: number[];
    try {
      ids = this.tokenizer.encode(r.prompt);
    } catch (e) {
      throw new HttpError(400, `prompt: ${(e as Error).message.replace(/^nodegrad: /, '')}`, 'prompt');
    }
    const block = this.info.blockSize;
    if (ids.length === 0) throw new HttpError(400, 'prompt: encodes to no tokens', 'prompt');
    if (ids.length > block) throw new HttpError(400, `prompt: is ${ids.length} tokens long; the model's context is ${block} tokens`, 'prompt');
    const room = block - ids.length;
    const maxNew = r.maxNewTokens ?? Math.min(this.opts.defaultMaxNewTokens, room);
    if (maxNew > room) {
      throw new HttpError(400, `maxNewTokens: the prompt (${ids.length} tokens) plus maxNewTokens (${maxNew}) exceeds the model's context of ${block} tokens (at most ${room} here)`, 'maxNewTokens');
    }
    const tokens: number[] = [];
    const text = new TextStream(this.tokenizer);
    const usage = (): Record<string, number> => ({ promptTokens: ids.length, completionTokens: tokens.length, totalTokens: ids.length + tokens.length });
    const sse = (data: unknown, event?: string): void => {
      if (!res.writableEnded) res.write(`${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    };
    // a generation that ends on the model's EOS stops early; the EOS token adds no text
    const stops = new Set(this.info.stopTokens ?? []);
    const stopped = (): boolean => tokens.length > 0 && stops.has(tokens[tokens.length - 1]);
    const finishReason = (): string => (stopped() ? 'stop' : 'length');
    const result = (): Record<string, unknown> => ({
      text: this.tokenizer!.decode(stopped() ? tokens.slice(0, -1) : tokens), tokens, usage: usage(), finishReason: finishReason(),
    });
    if (maxNew === 0) return sendJSON(res, 200, result());

    let settle!: () => void;
    const finished = new Promise<void>((resolve) => { settle = resolve; });
    const fail = (e: HttpError): void => {
      if (r.stream && res.headersSent) {
        sse({ error: { status: e.status, message: e.message } }, 'error');
        res.end();
      } else sendJSON(res, e.status, errorBody(e), e.headers);
      settle();
    };
    let unwatch: () => void = () => {};
    const job: GenerateJob = {
      promptIds: ids, maxNewTokens: maxNew, temperature: r.temperature, topK: r.topK, topP: r.topP, seed: r.seed ?? randomInt(0, 2 ** 32),
      onToken: (t) => {
        if (tokens.length === 0) this.metrics.firstToken(performance.now() - t0);
        tokens.push(t);
        if (r.stream) sse({ index: tokens.length - 1, token: t, text: stops.has(t) ? '' : text.push(t) });
      },
      onDone: () => {
        unwatch();
        if (r.stream) {
          sse({ finishReason: finishReason(), usage: usage() });
          sse('[DONE]');
          res.end();
        } else sendJSON(res, 200, result());
        settle();
      },
      onError: (e) => {
        unwatch();
        fail(e instanceof HttpError ? e : new HttpError(500, e.message));
      },
    };
    const handle = this.gen.submit(job);   // throws 429 / 503
    this.metrics.promptTokens(ids.length);
    if (r.stream) {
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
      res.flushHeaders();
    }
    unwatch = this.watch(res, deadline, (reason) => {
      this.gen!.cancel(handle);
      if (reason === 'timeout') fail(new HttpError(504, `the request did not complete within ${this.opts.timeoutMs} ms (${tokens.length} of ${maxNew} tokens generated)`));
      else settle();
    });
    await finished;
  }

  private async classify(body: unknown, res: http.ServerResponse, deadline: number): Promise<void> {
    const r = parseClassifyRequest(body, 256, this.opts.maxBodyBytes);
    if (!this.cls) throw new HttpError(400, 'this model does not classify (it generates text); use POST /v1/generate');
    const { result, cancel } = this.cls.submit(r.texts);
    let stopped: CancelReason | null = null;
    const unwatch = this.watch(res, deadline, (reason) => {
      stopped = reason;
      cancel();
      if (reason === 'timeout') sendJSON(res, 504, errorBody(new HttpError(504, `the request did not complete within ${this.opts.timeoutMs} ms`)));
    });
    try {
      const results = await Promise.race([result, new Promise<null>((resolve) => res.once('close', () => resolve(null)))]);
      if (results && !stopped) sendJSON(res, 200, { results });
    } finally {
      unwatch();
    }
  }
}
