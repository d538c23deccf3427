// Server metrics: request counts by route and status, latency percentiles over a window
// of recent requests, generated tokens per second, queue depth, batch sizes and
// cancellations; served as JSON or in Prometheus' text format.

/** The most recent `capacity` samples; percentiles are computed on demand. */
class Window {
  private readonly buf: Float64Array;
  private n = 0;
  count = 0;
  sum = 0;
  constructor(private readonly capacity = 4096) { this.buf = new Float64Array(capacity); }
  add(x: number): void {
    this.buf[this.n++ % this.capacity] = x;
    this.count++;
    this.sum += x;
  }
  quantiles(qs: number[]): number[] {
    const k = Math.min(this.n, this.capacity);
    if (k === 0) return qs.map(() => 0);
    const s = this.buf.slice(0, k).sort();
    return qs.map((q) => s[Math.min(k - 1, Math.max(0, Math.ceil(q * k) - 1))]);
  }
}

export type CancelReason = 'disconnect' | 'timeout' | 'shutdown';

const QS = [0.5, 0.9, 0.99];
const RATE_WINDOW_MS = 10_000;

export interface Gauges {
  queueDepth: number;
  queueCapacity: number;
  /** Requests being answered by an engine. */
  activeRows: number;
  /** Rows the engines still hold (a cancelled row leaves at the engine's next step). */
  engineRows: number;
  workers: number;
}

export class Metrics {
  private readonly started = performance.now();
  private readonly requests = new Map<string, Map<number, number>>();
  private readonly latency = new Map<string, Window>();
  private readonly ttft = new Window();
  private readonly batchSizes = new Map<number, number>();
  private readonly recentTokens: [number, number][] = []; // [time, tokens] per step, last RATE_WINDOW_MS
  private readonly cancelled: Record<CancelReason, number> = { disconnect: 0, timeout: 0, shutdown: 0 };
  private tokensTotal = 0;
  private promptTokensTotal = 0;
  private steps = 0;
  private stepMs = 0;
  private rowsTotal = 0;

  constructor(private readonly gauges: () => Gauges, private readonly model: () => Record<string, unknown> = () => ({})) {}

  request(route: string, status: number, ms: number): void {
    let byStatus = this.requests.get(route);
    if (!byStatus) this.requests.set(route, (byStatus = new Map()));
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    if (status < 400) {
      let w = this.latency.get(route);
      if (!w) this.latency.set(route, (w = new Window()));
      w.add(ms);
    }
  }

  firstToken(ms: number): void { this.ttft.add(ms); }
  promptTokens(n: number): void { this.promptTokensTotal += n; }
  cancel(reason: CancelReason): void { this.cancelled[reason]++; }

  /** One engine step: how many rows it carried, tokens it produced and how long it took. */
  step(rows: number, tokens: number, ms: number): void {
    this.steps++;
    this.stepMs += ms;
    this.rowsTotal += rows;
    this.batchSizes.set(rows, (this.batchSizes.get(rows) ?? 0) + 1);
    this.tokensTotal += tokens;
    const now = performance.now();
    this.recentTokens.push([now, tokens]);
    while (this.recentTokens.length && now - this.recentTokens[0][0] > RATE_WINDOW_MS) this.recentTokens.shift();
  }

  private tokensPerSecond(): number {
    const now = performance.now();
    const span = Math.min(RATE_WINDOW_MS, now - this.started);
    const n = this.recentTokens.reduce((a, [t, k]) => (now - t <= RATE_WINDOW_MS ? a + k : a), 0);
    return span > 0 ? (1000 * n) / span : 0;
  }

  toJSON(): Record<string, unknown> {
    const g = this.gauges();
    const requests: Record<string, Record<string, number>> = {};
    for (const [route, m] of this.requests) requests[route] = Object.fromEntries([...m].sort((a, b) => a[0] - b[0]));
    const pct = (w: Window): Record<string, number> => {
      const [p50, p90, p99] = w.quantiles(QS);
      return { count: w.count, mean: w.count ? w.sum / w.count : 0, p50, p90, p99 };
    };
    const latencyMs: Record<string, Record<string, number>> = {};
    for (const [route, w] of this.latency) latencyMs[route] = pct(w);
    return {
      uptimeSeconds: (performance.now() - this.started) / 1000,
      model: this.model(),
      requests,
      latencyMs,
      timeToFirstTokenMs: pct(this.ttft),
      tokens: { generated: this.tokensTotal, prompt: this.promptTokensTotal, perSecond: this.tokensPerSecond() },
      queue: { depth: g.queueDepth, capacity: g.queueCapacity },
      activeRows: g.activeRows,
      engineRows: g.engineRows,
      workers: g.workers,
      batches: {
        steps: this.steps,
        meanSize: this.steps ? this.rowsTotal / this.steps : 0,
        maxSize: Math.max(0, ...this.batchSizes.keys()),
        meanStepMs: this.steps ? this.stepMs / this.steps : 0,
        sizes: Object.fromEntries([...this.batchSizes].sort((a, b) => a[0] - b[0])),
      },
      cancelled: { ...this.cancelled },
    };
  }

  /** Prometheus text exposition format (version 0.0.4). */
  toPrometheus(): string {
    const j = this.toJSON() as {
      uptimeSeconds: number; tokens: { generated: number; prompt: number; perSecond: number };
      queue: { depth: number; capacity: number }; activeRows: number; batches: { steps: number };
    };
    const esc = (s: string): string => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    };
    const req: string[] = [];
    for (const [route, m] of this.requests) for (const [s, n] of m) req.push(`nodegrad_requests_total{route="${esc(route)}",status="${s}"} ${n}`);
    metric('nodegrad_requests_total', 'counter', 'HTTP requests by route and status.', req);
    const lat: string[] = [];
    for (const [route, w] of this.latency) {
      w.quantiles(QS).forEach((v, i) => lat.push(`nodegrad_request_latency_seconds{route="${esc(route)}",quantile="${QS[i]}"} ${v / 1000}`));
      lat.push(`nodegrad_request_latency_seconds_sum{route="${esc(route)}"} ${w.sum / 1000}`);
      lat.push(`nodegrad_request_latency_seconds_count{route="${esc(route)}"} ${w.count}`);
    }
    metric('nodegrad_request_latency_seconds', 'summary', 'Latency of successful requests (recent window).', lat);
    metric('nodegrad_generated_tokens_total', 'counter', 'Tokens generated.', [`nodegrad_generated_tokens_total ${j.tokens.generated}`]);
    metric('nodegrad_prompt_tokens_total', 'counter', 'Prompt tokens processed.', [`nodegrad_prompt_tokens_total ${j.tokens.prompt}`]);
    metric('nodegrad_tokens_per_second', 'gauge', 'Generated tokens per second over the last 10 s.', [`nodegrad_tokens_per_second ${j.tokens.perSecond}`]);
    metric('nodegrad_queue_depth', 'gauge', 'Requests waiting for a batch slot.', [`nodegrad_queue_depth ${j.queue.depth}`]);
    metric('nodegrad_active_rows', 'gauge', 'Requests being answered by an engine.', [`nodegrad_active_rows ${j.activeRows}`]);
    metric('nodegrad_batch_steps_total', 'counter', 'Forward steps run.', [`nodegrad_batch_steps_total ${j.batches.steps}`]);
    metric('nodegrad_batch_size', 'histogram', 'Rows per forward step.', histogram('nodegrad_batch_size', this.batchSizes));
    metric('nodegrad_cancelled_total', 'counter', 'Requests stopped before completion.',
      Object.entries(this.cancelled).map(([r, n]) => `nodegrad_cancelled_total{reason="${r}"} ${n}`));
    metric('nodegrad_uptime_seconds', 'gauge', 'Seconds since the server started.', [`nodegrad_uptime_seconds ${j.uptimeSeconds}`]);
    return `${out.join('\n')}\n`;
  }
}

function histogram(name: string, counts: Map<number, number>): string[] {
  const bounds = [1, 2, 4, 8, 16, 32, 64, 128];
  const lines: string[] = [];
  let total = 0, sum = 0;
  for (const [size, n] of counts) { total += n; sum += size * n; }
  for (const b of bounds) {
    let c = 0;
    for (const [size, n] of counts) if (size <= b) c += n;
    lines.push(`${name}_bucket{le="${b}"} ${c}`);
  }
  lines.push(`${name}_bucket{le="+Inf"} ${total}`, `${name}_sum ${sum}`, `${name}_count ${total}`);
  return lines;
}
