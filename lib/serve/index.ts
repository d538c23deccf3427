// `nodegrad serve`: flags, start-up message, and graceful shutdown on SIGTERM / SIGINT.
import { parseArgs } from 'node:util';
import { InferenceServer, type ServerOptions } from './server.js';

export { InferenceServer, detectModelKind, type ServerOptions } from './server.js';
export { BatchDecoder, GPTBatchDecoder, type Classifier, type Classification, type ModelInfo } from './worker.js';
export { HttpError, parseGenerateRequest, parseClassifyRequest, parseByteSize } from './validate.js';
export { Metrics } from './metrics.js';

export const SERVE_HELP = `usage: nodegrad serve --model DIR [options]

Serves a model over HTTP: a GPT saved by \`nodegrad train\` / GPT.save, a Hugging Face GPT-2
or Llama / Mistral / Qwen2 / Qwen3 directory on POST /v1/generate (these stop at their EOS,
finishReason "stop"), a BERT sequence classifier on POST /v1/classify.
GET /health answers during generation; GET /metrics (?format=prometheus) reports requests,
latency percentiles, tokens/s, queue depth and batch sizes.

  --model DIR              the model directory (required)
  --port N                 default 8080 (0 = any free port)
  --host ADDR              default 127.0.0.1
  --max-batch N            rows decoded together in one forward pass (default 8; 1 = no batching)
  --batch-window-ms N      how long an idle model waits for more requests to batch (default 5)
  --queue N                requests that may wait for a slot; beyond that 429 (default 64)
  --timeout-ms N           per-request limit, queueing included; then 504 (default 30000)
  --max-body SIZE          request body limit, e.g. 1mb, 64kb (default 1mb); then 413
  --headers-timeout-ms N   time a client has to send the request headers; then 408 and the
                           connection is closed (default 10000)
  --body-timeout-ms N      time a client has to send the body once the headers are in; then
                           408 and the connection is closed (default 30000)
  --max-connections N      open connections served at once; one more is answered 503 and
                           closed (default 256)
  --threads N              CPU threads for the kernels (default: all cores)
  --workers N              worker threads, each with its own copy of the model (default 1)
  --max-new-tokens N       tokens generated when a request does not say (default 32)
  -h, --help               this text

POST /v1/generate {"prompt": "...", "maxNewTokens": 32, "temperature": 1, "topK": 40,
                   "topP": 1, "seed": 1, "stream": false}
  -> {"text", "tokens", "usage", "finishReason"}; with "stream": true, server-sent events,
     one per token ({"index", "token", "text"}), then {"finishReason", "usage"} and [DONE].
POST /v1/classify {"texts": ["...", "..."]} -> {"results": [{"label", "probabilities"}]}`;

function intFlag(v: string | undefined, name: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`nodegrad serve: --${name} must be an integer >= ${min} (got '${v}')`);
  return n;
}

function parseFlags(argv: string[]): { help: boolean; options: ServerOptions } {
  let values: Record<string, string | boolean | undefined>;
  try {
    const s = { type: 'string' } as const;
    values = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: {
        model: s, port: s, host: s, 'max-batch': s, 'batch-window-ms': s, queue: s, 'timeout-ms': s, 'max-body': s,
        threads: s, workers: s, 'max-new-tokens': s, 'headers-timeout-ms': s, 'body-timeout-ms': s, 'max-connections': s,
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (e) {
    throw new Error(`nodegrad serve: ${(e as Error).message.replace(/\. To specify.*$/s, '')} (see \`nodegrad serve --help\`)`);
  }
  const str = (k: string): string | undefined => values[k] as string | undefined;
  if (values.help) return { help: true, options: {} };
  if (!str('model')) throw new Error('nodegrad serve: --model DIR is required (see `nodegrad serve --help`)');
  const port = intFlag(str('port'), 'port', 0);
  if (port !== undefined && port > 65535) throw new Error(`nodegrad serve: --port must be at most 65535 (got ${port})`);
  return {
    help: false,
    options: {
      modelDir: str('model'), port: port ?? 8080, host: str('host') ?? '127.0.0.1',
      maxBatch: intFlag(str('max-batch'), 'max-batch', 1), batchWindowMs: intFlag(str('batch-window-ms'), 'batch-window-ms', 0),
      queueSize: intFlag(str('queue'), 'queue', 1), timeoutMs: intFlag(str('timeout-ms'), 'timeout-ms', 1),
      maxBody: str('max-body'), threads: intFlag(str('threads'), 'threads', 1), workers: intFlag(str('workers'), 'workers', 1),
      defaultMaxNewTokens: intFlag(str('max-new-tokens'), 'max-new-tokens', 1),
      headersTimeoutMs: intFlag(str('headers-timeout-ms'), 'headers-timeout-ms', 1),
      bodyTimeoutMs: intFlag(str('body-timeout-ms'), 'body-timeout-ms', 1),
      maxConnections: intFlag(str('max-connections'), 'max-connections', 1),
    },
  };
}

/** Runs `nodegrad serve` until SIGTERM or SIGINT, then shuts down gracefully; returns the exit code. */
export async function serveCommand(argv: string[]): Promise<number> {
  const { help, options } = parseFlags(argv);
  if (help) {
    console.log(SERVE_HELP);
    return 0;
  }
  const server = new InferenceServer(options);
  const { url } = await server.start();
  const m = server.metrics.toJSON().model as Record<string, unknown>;
  console.log(`nodegrad serve: ${String(m.kind)} model (${((m.parameters as number) / 1e6).toFixed(2)}M parameters, ${String(m.task)}) ` +
    `from ${options.modelDir} listening on ${url} (max batch ${options.maxBatch ?? 8}, queue ${options.queueSize ?? 64})`);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) {
        console.error(`nodegrad serve: ${sig} again: exiting without finishing ${server.inflightRequests} requests`);
        process.exit(1);
      }
      stopping = true;
      console.log(`nodegrad serve: ${sig}: no longer accepting requests; finishing ${server.inflightRequests} in flight`);
      void server.close().then(() => {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        console.log('nodegrad serve: stopped');
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  return 0;
}
