// Load test of `nodegrad serve` (autocannon against 127.0.0.1 only): throughput and
// p50/p99 latency of short greedy generations (8 new tokens) with dynamic batching off
// (--max-batch 1) and on, at 1, 8 and 64 concurrent connections; then a burst of malformed
// requests during load. Every well-formed answer is checked against model.generate run
// unbatched in this process, so "zero wrong answers" is measured, not assumed; a wrong
// answer, a 5xx or a server crash fails the bench.
//   node --import ./scripts/ts-loader.mjs bench/serve.ts [--quick]   (or npm run bench -- --only serve)
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';
import * as ng from '../lib/index.js';
import { makeRow, repoRoot, type BenchContext, type Row } from './common.js';

export const title = 'nodegrad serve: HTTP generation under load (127.0.0.1)';

const HOST = '127.0.0.1';
const NEW_TOKENS = 8;
const CHARS = 'abcdefghijklmnopqrstuvwxyz .,';
const PROMPTS = ['the cat', 'a', 'once upon a time', 'hello world', 'zebra', 'lorem ipsum dolor sit', 'x y z', 'nodegrad serves',
  'batching', 'q', 'the quick brown fox jumps', 'ok', 'tensor', 'mm', 'a b c d e f', 'forward pass'];
const BATCH_ON = 32;

interface Autocannon {
  (opts: Record<string, unknown>): Promise<AutocannonResult>;
}
interface AutocannonResult {
  duration: number; errors: number; timeouts: number; non2xx: number; '2xx': number;
  latency: { p50: number; p90: number; p99: number; average: number };
  requests: { total: number; average: number };
}

interface Server { url: string; port: number; child: ChildProcess; exited: Promise<number | null>; log: () => string }

async function startServer(modelDir: string, flags: string[]): Promise<Server> {
  const code = `import(${JSON.stringify(pathToFileURL(path.join(repoRoot, 'lib/serve/index.ts')).href)})` +
    '.then((m) => m.serveCommand(process.argv.slice(1))).then((c) => { process.exitCode = c; })';
  const child = spawn(process.execPath, ['--import', path.join(repoRoot, 'scripts/ts-loader.mjs'), '--input-type=module', '-e', code, '--',
    '--model', modelDir, '--host', HOST, '--port', '0', ...flags], { cwd: repoRoot, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  const t0 = performance.now();
  for (;;) {
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
    if (m) return { url: `http://${HOST}:${m[1]}`, port: Number(m[1]), child, exited, log: () => out };
    if (child.exitCode !== null || performance.now() - t0 > 30_000) {
      child.kill('SIGKILL');
      throw new Error(`bench serve: the server did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function stopServer(s: Server): Promise<number | null> {
  s.child.kill('SIGTERM');
  const t = setTimeout(() => s.child.kill('SIGKILL'), 10_000);
  const code = await s.exited;
  clearTimeout(t);
  return code;
}

async function metrics(url: string): Promise<{ steps: number; rows: number }> {
  const m = (await (await fetch(`${url}/metrics`)).json()) as { batches: { steps: number; meanSize: number } };
  return { steps: m.batches.steps, rows: m.batches.steps * m.batches.meanSize };
}

// ---- malformed traffic -----------------------------------------------------------------

type Outcome = number | 'closed';
interface Malformed { name: string; expect: Outcome[]; send: (port: number) => Promise<Outcome> }

function request(port: number, method: string, urlPath: string, body: string | Buffer | null, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = http.request({ host: HOST, port, method, path: urlPath, headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve('closed'));
    req.setTimeout(15_000, () => req.destroy());
    req.end(body ?? undefined);
  });
}

/** Raw bytes over TCP; resolves with the status line's code, or 'closed'. */
function raw(port: number, bytes: string, destroyAfterMs?: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const sock = net.connect(port, HOST, () => {
      sock.write(bytes);
      if (destroyAfterMs !== undefined) setTimeout(() => { sock.destroy(); resolve('closed'); }, destroyAfterMs);
    });
    let got = '';
    sock.on('data', (d) => {
      got += d.toString();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) { sock.destroy(); resolve(Number(m[1])); }
    });
    sock.setTimeout(15_000, () => sock.destroy());
    sock.on('error', () => resolve('closed'));
    sock.on('close', () => resolve('closed'));
  });
}

/** A streamed generation abandoned after its first event. */
function abandonedStream(port: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const body = JSON.stringify({ prompt: 'the cat', maxNewTokens: 40, temperature: 0, stream: true });
    const req = http.request({ host: HOST, port, method: 'POST', path: '/v1/generate', headers: { 'content-type': 'application/json' }, agent: false }, (res) => {
      res.once('data', () => { req.destroy(); resolve(res.statusCode ?? 0); });
      res.on('error', () => undefined);
    });
    req.setTimeout(15_000, () => { req.destroy(); resolve('closed'); });
    req.on('error', () => resolve('closed'));
    req.end(body);
  });
}

const MALFORMED: Malformed[] = [
  { name: 'invalid JSON', expect: [400], send: (p) => request(p, 'POST', '/v1/generate', '{"prompt": "the') },
  { name: 'prompt not a string', expect: [400], send: (p) => request(p, 'POST', '/v1/generate', '{"prompt": 5}') },
  { name: 'negative maxNewTokens', expect: [400], send: (p) => request(p, 'POST', '/v1/generate', '{"prompt": "hi", "maxNewTokens": -3}') },
  { name: 'character outside the vocabulary', expect: [400], send: (p) => request(p, 'POST', '/v1/generate', '{"prompt": "HELLO"}') },
  { name: 'unknown field', expect: [400], send: (p) => request(p, 'POST', '/v1/generate', '{"prompt": "hi", "max_tokens": 3}') },
  { name: 'array body', expect: [400], send: (p) => request(p, 'POST', '/v1/generate', '[]') },
  { name: 'context overflow', expect: [400], send: (p) => request(p, 'POST', '/v1/generate', '{"prompt": "hi", "maxNewTokens": 100000}') },
  { name: 'body over the limit', expect: [413, 'closed'], send: (p) => request(p, 'POST', '/v1/generate', JSON.stringify({ prompt: 'a'.repeat(100_000) })) },
  { name: 'wrong content type', expect: [415], send: (p) => request(p, 'POST', '/v1/generate', '<prompt/>', { 'content-type': 'application/xml' }) },
  { name: 'wrong method', expect: [405], send: (p) => request(p, 'GET', '/v1/generate', null) },
  { name: 'unknown route', expect: [404], send: (p) => request(p, 'POST', '/v1/nothing', '{}') },
  { name: 'classify on a GPT', expect: [400], send: (p) => request(p, 'POST', '/v1/classify', '{"texts": ["a"]}') },
  { name: 'not HTTP', expect: [400, 'closed'], send: (p) => raw(p, 'GARBAGE \x00\x01\x02\r\n\r\n') },
  { name: 'body cut off', expect: ['closed'], send: (p) => raw(p, `POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"prompt": "a`, 30) },
  { name: 'stream abandoned', expect: [200], send: (p) => abandonedStream(p) },
];

async function malformedBurst(port: number, n: number, concurrency = 8): Promise<{ sent: number; unexpected: string[]; statuses: Record<string, number>; ms: number[] }> {
  const statuses: Record<string, number> = {};
  const unexpected: string[] = [];
  const ms: number[] = [];
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < n) {
      const m = MALFORMED[next++ % MALFORMED.length];
      const t0 = performance.now();
      const got = await m.send(port);
      ms.push(performance.now() - t0);
      statuses[String(got)] = (statuses[String(got)] ?? 0) + 1;
      if (!m.expect.includes(got)) unexpected.push(`${m.name}: got ${got}, expected ${m.expect.join(' or ')}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return { sent: n, unexpected, statuses, ms };
}

// ---- the load test -----------------------------------------------------------------------

interface Load { rps: number; p50: number; p90: number; p99: number; ok: number; wrong: number; errors: number; meanBatch: number; seconds: number }

async function load(autocannon: Autocannon, url: string, connections: number, seconds: number, refs: Map<string, number[]>): Promise<Load> {
  let ok = 0, wrong = 0;
  const requests = PROMPTS.map((prompt) => ({
    method: 'POST', path: '/v1/generate', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, maxNewTokens: NEW_TOKENS, temperature: 0 }),
    onResponse: (status: number, body: string) => {
      if (status !== 200) return;
      const got = (JSON.parse(body) as { tokens: number[] }).tokens;
      if (JSON.stringify(got) === JSON.stringify(refs.get(prompt))) ok++;
      else wrong++;
    },
  }));
  const before = await metrics(url);
  const r = await autocannon({ url, connections, duration: seconds, requests, timeout: 20 });
  const after = await metrics(url);
  const steps = after.steps - before.steps;
  return {
    rps: r['2xx'] / r.duration, p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, ok, wrong,
    errors: r.errors + r.timeouts + r.non2xx, meanBatch: steps ? (after.rows - before.rows) / steps : 0, seconds: r.duration,
  };
}

export async function run(ctx: BenchContext): Promise<Row[]> {
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
  const seconds = ctx.quick ? 2 : 5;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodegrad-bench-serve-'));
  const rows: Row[] = [];
  const failures: string[] = [];
  try {
    // a small GPT (0.8M parameters, as bench/train-gpt.ts) with weights that give varied greedy text
    const tok = ng.data.CharTokenizer.fromText(CHARS);
    ng.manualSeed(11);
    const gpt = new ng.models.GPT({ vocabSize: tok.vocabSize, blockSize: 128, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: true });
    ng.noGrad(() => { for (const p of gpt.parameters()) if (p.ndim === 2) p.copy_(ng.randn(p.shape as number[], { std: 0.15 })); });
    const modelDir = path.join(dir, 'model');
    await gpt.save(modelDir, { 'tokenizer.json': JSON.stringify(tok.toJSON()) });
    const refs = new Map(PROMPTS.map((p) => {
      const ids = tok.encode(p);
      return [p, gpt.generate([ids], { maxNewTokens: NEW_TOKENS, temperature: 0 })[0].slice(ids.length)];
    }));
    const common = ['--threads', String(ctx.threads), '--queue', '256', '--max-body', '64kb', '--timeout-ms', '30000'];
    const modes = [
      { name: 'batching off', flags: ['--max-batch', '1', '--batch-window-ms', '0'] },
      { name: `batching on (max ${BATCH_ON})`, flags: ['--max-batch', String(BATCH_ON), '--batch-window-ms', '2'] },
    ];
    const table: string[][] = [];
    for (const mode of modes) {
      const server = await startServer(modelDir, [...common, ...mode.flags]);
      try {
        await load(autocannon, server.url, 4, 1, refs); // warm-up
        for (const c of [1, 8, 64]) {
          const r = await load(autocannon, server.url, c, seconds, refs);
          if (r.wrong || r.errors) failures.push(`${mode.name}, ${c} connections: ${r.wrong} wrong answers, ${r.errors} errors`);
          table.push([mode.name, String(c), r.rps.toFixed(1), (r.rps * NEW_TOKENS).toFixed(0), r.p50.toFixed(1), r.p99.toFixed(1), r.meanBatch.toFixed(2), String(r.ok), String(r.wrong), String(r.errors)]);
          rows.push(makeRow(ctx, {
            bench: `serve.generate.${mode.flags[1] === '1' ? 'nobatch' : `batch${BATCH_ON}`}`, shape: `c${c} x ${NEW_TOKENS} tokens`, dtype: 'float32', ms: r.p50,
            note: `${r.rps.toFixed(1)} req/s, ${(r.rps * NEW_TOKENS).toFixed(0)} tok/s, p99 ${r.p99.toFixed(1)} ms, mean batch ${r.meanBatch.toFixed(2)}, ` +
              `${r.ok} answers checked, ${r.wrong} wrong, ${r.errors} errors`,
          }));
        }
        if (mode.flags[1] !== '1') {
          // malformed burst while 8 connections generate
          const [r, burst] = await Promise.all([load(autocannon, server.url, 8, seconds, refs), malformedBurst(server.port, ctx.quick ? 150 : 600)]);
          const alive = (await fetch(`${server.url}/health`)).status === 200 && server.child.exitCode === null;
          const fiveXX = Object.entries(burst.statuses).filter(([s]) => /^5/.test(s)).reduce((a, [, k]) => a + k, 0);
          if (!alive) failures.push('the server died during the malformed burst');
          if (r.wrong || r.errors) failures.push(`during the malformed burst: ${r.wrong} wrong answers, ${r.errors} errors`);
          if (fiveXX || burst.unexpected.length) failures.push(`malformed burst: ${fiveXX} 5xx; ${burst.unexpected.slice(0, 5).join('; ')}`);
          const sorted = [...burst.ms].sort((a, b) => a - b);
          table.push([`${mode.name} + ${burst.sent} malformed`, '8', r.rps.toFixed(1), (r.rps * NEW_TOKENS).toFixed(0), r.p50.toFixed(1), r.p99.toFixed(1), r.meanBatch.toFixed(2), String(r.ok), String(r.wrong), String(r.errors)]);
          rows.push(makeRow(ctx, {
            bench: 'serve.malformed-burst', shape: `${burst.sent} bad + c8 good`, dtype: 'float32', ms: r.p50,
            note: `good traffic: ${r.rps.toFixed(1)} req/s, p99 ${r.p99.toFixed(1)} ms, ${r.ok} checked, ${r.wrong} wrong, ${r.errors} errors; ` +
              `bad: statuses ${JSON.stringify(burst.statuses)}, p50 ${sorted[sorted.length >> 1].toFixed(1)} ms, ${burst.unexpected.length} unexpected; ` +
              `server ${alive ? 'alive' : 'DEAD'}`,
          }));
        }
      } finally {
        const code = await stopServer(server);
        if (code !== 0) failures.push(`${mode.name}: the server exited with ${code} after SIGTERM:\n${server.log().slice(-2000)}`);
      }
    }
    printServeTable(table);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (failures.length) throw new Error(`bench serve: ${failures.join('\n')}`);
  return rows;
}

function printServeTable(table: string[][]): void {
  const head = ['mode', 'conns', 'req/s', 'tok/s', 'p50 ms', 'p99 ms', 'mean batch', 'checked', 'wrong', 'errors'];
  const w = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
  const line = (c: string[]): string => c.map((x, i) => (i === 0 ? x.padEnd(w[i]) : x.padStart(w[i]))).join('  ');
  console.log(`\n${line(head)}\n${w.map((n) => '-'.repeat(n)).join('  ')}\n${table.map(line).join('\n')}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const quick = process.argv.includes('--quick');
  const threads = Number(process.env.NODEGRAD_THREADS) || os.availableParallelism();
  const { Peer } = await import('./common.js');
  run({ quick, threads, peer: Peer.disabled('standalone', threads), peakGBps: 0 }).then(
    (rows) => { for (const r of rows) console.log(`${r.bench} ${r.shape}: ${r.note}`); },
    (e: unknown) => { console.error(e instanceof Error ? e.message : String(e)); process.exitCode = 1; },
  );
}
