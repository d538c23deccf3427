// `nodegrad serve`: the HTTP API over a tiny GPT saved to a temp dir, on 127.0.0.1 only.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { BertTokenizer } from '../../lib/data/wordpiece.js';
import { InferenceServer, serveCommand, type Classification } from '../../lib/serve/index.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHARS = 'abcdefghijklmnopqrstuvwxyz .,';
const tok = ng.data.CharTokenizer.fromText(CHARS);
const config = { vocabSize: tok.vocabSize, blockSize: 1024, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: true };
// a larger model, for tests that need a generation to last a while
const slowConfig = { ...config, nEmbd: 192 };
let dir: string;
let gpt: ng.models.GPT;
let slow: ng.models.GPT;

interface SSE { event?: string; data: string }

/** Reads server-sent events; `until` may stop early (the caller then aborts the request). */
async function readSSE(res: Response, until?: (events: SSE[]) => boolean): Promise<SSE[]> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  const events: SSE[] = [];
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let k: number;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, k);
      buf = buf.slice(k + 2);
      const ev: SSE = { data: '' };
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) ev.event = line.slice(7);
        else if (line.startsWith('data: ')) ev.data += line.slice(6);
      }
      events.push(ev);
      if (until?.(events)) return events;
    }
  }
  return events;
}

const post = (url: string, body: unknown, init: RequestInit = {}): Promise<Response> =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), ...init });

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const json = async (r: Response): Promise<Json> => (await r.json()) as Json;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, cond: () => Promise<boolean>, ms = 5000): Promise<void> {
  const t0 = performance.now();
  while (!(await cond())) {
    if (performance.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function reference(prompt: string, maxNewTokens: number, opts: { temperature?: number; topK?: number; seed?: number } = {}, model = gpt): number[] {
  const ids = tok.encode(prompt);
  return model.generate([ids], { maxNewTokens, temperature: opts.temperature ?? 0, topK: opts.topK, seed: opts.seed })[0].slice(ids.length);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodegrad-serve-'));
  ng.manualSeed(7);
  gpt = new ng.models.GPT(config);
  // larger weights than GPT-2's init, so greedy decoding does not repeat one token
  ng.noGrad(() => { for (const p of gpt.parameters()) if (p.ndim === 2) p.copy_(ng.randn(p.shape as number[], { std: 0.15 })); });
  await gpt.save(path.join(dir, 'gpt'), { 'tokenizer.json': JSON.stringify(tok.toJSON()) });
  slow = new ng.models.GPT(slowConfig);
  await slow.save(path.join(dir, 'slow'), { 'tokenizer.json': JSON.stringify(tok.toJSON()) });
});

afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }); });

describe('nodegrad serve: a GPT behind HTTP', () => {
  let server: InferenceServer;
  let url: string;
  beforeAll(async () => {
    server = new InferenceServer({ modelDir: path.join(dir, 'gpt'), port: 0, maxBatch: 8, batchWindowMs: 40, maxBody: '4kb', threads: 1 });
    ({ url } = await server.start());
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });
  afterAll(async () => { await server?.close(); });

  test('GET /health describes the model; GET /metrics answers as JSON and in Prometheus format', async () => {
    const h = await fetch(`${url}/health`);
    expect(h.status).toBe(200);
    expect(await json(h)).toMatchObject({ status: 'ok', model: { kind: 'gpt', task: 'generate', blockSize: 1024, vocabSize: tok.vocabSize } });
    const m = await json(await fetch(`${url}/metrics`));
    expect(m).toMatchObject({ queue: { depth: 0, capacity: 64 }, activeRows: 0, workers: 1 });
    const p = await fetch(`${url}/metrics?format=prometheus`);
    expect(p.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await p.text();
    expect(text).toMatch(/^# TYPE nodegrad_requests_total counter$/m);
    expect(text).toMatch(/^nodegrad_requests_total\{route="\/health",status="200"\} 1$/m);
  });

  test('POST /v1/generate returns the text, tokens and usage of greedy decoding', async () => {
    const r = await post(`${url}/v1/generate`, { prompt: 'hello world', maxNewTokens: 12, temperature: 0 });
    expect(r.status).toBe(200);
    const body = await json(r);
    const ref = reference('hello world', 12);
    expect(new Set(ref).size).toBeGreaterThan(2); // the fixture decodes to varied text
    expect(body).toEqual({ text: tok.decode(ref), tokens: ref, usage: { promptTokens: 11, completionTokens: 12, totalTokens: 23 }, finishReason: 'length' });
  });

  test('stream: true sends one server-sent event per token, then the usage and [DONE]', async () => {
    const r = await post(`${url}/v1/generate`, { prompt: 'the cat', maxNewTokens: 6, temperature: 0, stream: true });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = await readSSE(r);
    const ref = reference('the cat', 6);
    expect(events.length).toBe(8);
    expect(events.slice(0, 6).map((e) => JSON.parse(e.data))).toEqual(ref.map((t, i) => ({ index: i, token: t, text: tok.decode([t]) })));
    expect(JSON.parse(events[6].data)).toEqual({ finishReason: 'length', usage: { promptTokens: 7, completionTokens: 6, totalTokens: 13 } });
    expect(events[7].data).toBe('[DONE]');
  });

  test('requests that arrive together share forward passes and get the answers they would get alone', async () => {
    const before = await json(await fetch(`${url}/metrics`));
    const cases = [
      { prompt: 'a', maxNewTokens: 9 },
      { prompt: 'the quick brown fox', maxNewTokens: 5 },
      { prompt: 'hello', maxNewTokens: 14 },
      { prompt: 'zz top', maxNewTokens: 1 },
      { prompt: 'lorem ipsum dolor', maxNewTokens: 11, temperature: 0.9, topK: 8, seed: 42 },
      { prompt: 'x', maxNewTokens: 7, temperature: 1.2, seed: 7 },
    ];
    // a second wave joins the running batch at a step boundary
    const late = [{ prompt: 'joined late, longer prompt', maxNewTokens: 6 }, { prompt: 'b', maxNewTokens: 8, temperature: 0.7, seed: 3 }];
    const first = cases.map((c) => post(`${url}/v1/generate`, { temperature: 0, ...c }));
    await sleep(45);
    const second = late.map((c) => post(`${url}/v1/generate`, { temperature: 0, ...c }));
    const results = await Promise.all([...first, ...second].map(async (p) => json(await p)));
    [...cases, ...late].forEach((c, i) => {
      expect(results[i].tokens, c.prompt).toEqual(reference(c.prompt, c.maxNewTokens, c as { temperature?: number; topK?: number; seed?: number }));
    });
    const after = await json(await fetch(`${url}/metrics`));
    expect(after.batches.maxSize).toBeGreaterThanOrEqual(6);
    // fewer forward steps than the requests' tokens: rows shared steps
    const tokens = [...cases, ...late].reduce((a, c) => a + c.maxNewTokens, 0);
    expect(after.batches.steps - before.batches.steps).toBeLessThan(tokens / 2);
    expect(after.tokens.generated - before.tokens.generated).toBe(tokens);
  });

  test('invalid bodies get 400 with the field that is wrong and why', async () => {
    const bad: [unknown, string, RegExp][] = [
      [{}, 'prompt', /prompt: is required/],
      [{ prompt: 42 }, 'prompt', /prompt: must be a string \(got number 42\)/],
      [{ prompt: '' }, 'prompt', /must not be empty/],
      [{ prompt: 'hi', maxNewTokens: -1 }, 'maxNewTokens', /maxNewTokens: must be an integer >= 0 \(got -1\)/],
      [{ prompt: 'hi', maxNewTokens: 1.5 }, 'maxNewTokens', /an integer >= 0 \(got 1.5\)/],
      [{ prompt: 'hi', maxNewTokens: 2000 }, 'maxNewTokens', /exceeds the model's context of 1024 tokens \(at most 1022 here\)/],
      [{ prompt: 'hi', temperature: 'hot' }, 'temperature', /temperature: must be a number in \[0, 100\]/],
      [{ prompt: 'hi', topP: 0 }, 'topP', /topP: must be in \(0, 1\] \(got 0\)/],
      [{ prompt: 'hi', topK: -2 }, 'topK', /topK: must be an integer >= 0/],
      [{ prompt: 'hi', seed: -1 }, 'seed', /seed: must be an integer in \[0, 2\^32 - 1\]/],
      [{ prompt: 'hi', stream: 'yes' }, 'stream', /stream: must be a boolean/],
      [{ prompt: 'hi', max_tokens: 5 }, 'max_tokens', /max_tokens: unknown field \(allowed: prompt, maxNewTokens/],
      [{ prompt: 'HI' }, 'prompt', /prompt: CharTokenizer.encode: character "H"/],
      [[1, 2], 'body', /body: must be a JSON object \(got an array\)/],
      ['{"prompt": "hi"', 'body', /body: is not valid JSON/],
      ['', 'body', /body: is empty/],
    ];
    for (const [body, field, msg] of bad) {
      const r = await post(`${url}/v1/generate`, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      const e = (await json(r)).error;
      expect(e.field, JSON.stringify(body)).toBe(field);
      expect(e.message).toMatch(msg);
    }
  });

  test('unknown routes are 404, wrong methods 405, large bodies 413, other content types 415', async () => {
    const nf = await fetch(`${url}/v2/nothing`);
    expect(nf.status).toBe(404);
    expect((await json(nf)).error.message).toMatch(/no route \/v2\/nothing/);
    const wm = await fetch(`${url}/v1/generate`);
    expect(wm.status).toBe(405);
    expect(wm.headers.get('allow')).toBe('POST');
    await wm.body?.cancel();
    expect((await post(`${url}/health`, {})).status).toBe(405);
    const big = await post(`${url}/v1/generate`, { prompt: 'a'.repeat(5000) });
    expect(big.status).toBe(413);
    expect((await json(big)).error.message).toMatch(/larger than the limit of 4096 bytes/);
    const huge = await post(`${url}/v1/generate`, JSON.stringify({ prompt: 'a'.repeat(2 << 20) }));
    expect(huge.status).toBe(413);
    await huge.body?.cancel();
    const xml = await fetch(`${url}/v1/generate`, { method: 'POST', headers: { 'content-type': 'application/xml' }, body: '<prompt/>' });
    expect(xml.status).toBe(415);
    expect((await json(xml)).error.message).toMatch(/Content-Type must be application\/json \(got application\/xml\)/);
    // a JSON body sent the way fetch and curl -d send strings by default is accepted
    for (const type of ['text/plain;charset=UTF-8', 'application/x-www-form-urlencoded']) {
      const r = await fetch(`${url}/v1/generate`, { method: 'POST', headers: { 'content-type': type }, body: '{"prompt": "ab", "maxNewTokens": 2}' });
      expect(r.status, type).toBe(200);
      await r.body?.cancel();
    }
    // an unparsable request target is a 404, not a crash
    const status = await new Promise<string>((resolve) => {
      const sock = net.connect(Number(new URL(url).port), '127.0.0.1', () => sock.write('GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n'));
      sock.once('data', (d) => { resolve(d.toString().split('\r\n')[0]); sock.destroy(); });
    });
    expect(status).toBe('HTTP/1.1 404 Not Found');
    // the server is still fine
    expect((await fetch(`${url}/health`)).status).toBe(200);
  });

  test('a second server on a port in use fails to start with a clear message', async () => {
    const other = new InferenceServer({ modelDir: path.join(dir, 'gpt'), port: Number(new URL(url).port) });
    await expect(other.start()).rejects.toThrow(/cannot listen on 127\.0\.0\.1:\d+ \(listen EADDRINUSE/);
  });

  test('POST /v1/classify on a GPT is a 400 that says the model does not classify', async () => {
    const r = await post(`${url}/v1/classify`, { texts: ['hi'] });
    expect(r.status).toBe(400);
    expect((await json(r)).error.message).toMatch(/this model does not classify/);
  });

  test('GET /health answers within 200 ms while a long generation runs in the worker', async () => {
    const ac = new AbortController();
    const r = await post(`${url}/v1/generate`, { prompt: 'once upon a time', maxNewTokens: 1000, temperature: 0, stream: true }, { signal: ac.signal });
    const gen = readSSE(r, (ev) => ev.length >= 3).catch(() => []);
    expect((await gen).length).toBe(3); // generation is under way
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const h = await fetch(`${url}/health`);
      times.push(performance.now() - t0);
      expect((await json(h)).activeRows).toBe(1); // still generating
    }
    expect(Math.max(...times)).toBeLessThan(200);
    ac.abort();
  });

  test('a client that disconnects mid-stream has its generation stopped and the worker freed', async () => {
    await until('the previous request to leave the worker', async () => (await json(await fetch(`${url}/metrics`))).engineRows === 0);
    const before = await json(await fetch(`${url}/metrics`));
    const ac = new AbortController();
    const r = await post(`${url}/v1/generate`, { prompt: 'abc', maxNewTokens: 1000, temperature: 0, stream: true }, { signal: ac.signal });
    await readSSE(r, (ev) => ev.length >= 5);
    ac.abort();
    let m: Json = {};
    await until('the cancellation to reach the worker', async () => {
      m = await json(await fetch(`${url}/metrics`));
      return m.cancelled.disconnect > before.cancelled.disconnect && m.activeRows === 0 && m.engineRows === 0;
    });
    await sleep(100);
    const later = await json(await fetch(`${url}/metrics`));
    expect(later.tokens.generated).toBe(m.tokens.generated); // nothing more generated
    expect(later.tokens.generated - before.tokens.generated).toBeLessThan(500);
    expect(later.requests['/v1/generate']['499']).toBeGreaterThanOrEqual(1);
    const next = await post(`${url}/v1/generate`, { prompt: 'abc', maxNewTokens: 3, temperature: 0 });
    expect((await json(next)).tokens).toEqual(reference('abc', 3));
  });
});

describe('nodegrad serve: failures', () => {
  test('a worker that dies fails the requests it held with 500, and a fresh worker serves the next', async () => {
    const server = new InferenceServer({ modelDir: path.join(dir, 'gpt'), port: 0 });
    const { url } = await server.start();
    try {
      const r = post(`${url}/v1/generate`, { prompt: 'abc', maxNewTokens: 1000, temperature: 0 });
      await until('the request to run', async () => (await json(await fetch(`${url}/metrics`))).activeRows === 1);
      const engines = (server as unknown as { engines: { worker: { terminate(): Promise<number> } }[] }).engines;
      await engines[0].worker.terminate();
      const res = await r;
      expect(res.status).toBe(500);
      expect((await json(res)).error.message).toMatch(/the inference worker stopped \(exit code 1\)/);
      const next = await post(`${url}/v1/generate`, { prompt: 'abc', maxNewTokens: 4, temperature: 0 });
      expect((await json(next)).tokens).toEqual(reference('abc', 4));
    } finally {
      await server.close();
    }
  });
});

describe('nodegrad serve: limits', () => {
  test('a full queue answers 429, a request past its deadline 504 (streamed: an error event)', async () => {
    const server = new InferenceServer({ modelDir: path.join(dir, 'slow'), port: 0, maxBatch: 1, queueSize: 1, timeoutMs: 600, batchWindowMs: 0 });
    const { url } = await server.start();
    try {
      const long = { prompt: 'abc', maxNewTokens: 1000, temperature: 0 };
      const a = await post(`${url}/v1/generate`, { ...long, stream: true });
      const aEvents = readSSE(a);
      await until('A to run', async () => (await json(await fetch(`${url}/metrics`))).activeRows === 1);
      const b = post(`${url}/v1/generate`, long); // waits in the queue (max batch 1)
      await until('B to be queued', async () => (await json(await fetch(`${url}/metrics`))).queue.depth === 1);
      const c = await post(`${url}/v1/generate`, long);
      expect(c.status).toBe(429);
      expect(c.headers.get('retry-after')).toBe('1');
      expect((await json(c)).error.message).toMatch(/queue is full \(1 requests waiting\)/);
      const bRes = await b;
      expect(bRes.status).toBe(504);
      expect((await json(bRes)).error.message).toMatch(/did not complete within 600 ms/);
      const ev = await aEvents;
      const last = ev[ev.length - 1];
      expect(last.event).toBe('error');
      expect(JSON.parse(last.data).error).toMatchObject({ status: 504 });
      expect(ev.length).toBeGreaterThan(1);
      const m = await json(await fetch(`${url}/metrics`));
      expect(m.cancelled.timeout).toBe(2);
      expect(m.requests['/v1/generate']).toMatchObject({ 429: 1, 504: 1 });
    } finally {
      await server.close();
    }
  });

  test('close() stops accepting requests but finishes the one in flight', async () => {
    const server = new InferenceServer({ modelDir: path.join(dir, 'slow'), port: 0 });
    const { url } = await server.start();
    const inflight = post(`${url}/v1/generate`, { prompt: 'goodbye', maxNewTokens: 100, temperature: 0 });
    await until('the request to run', async () => (await json(await fetch(`${url}/metrics`))).activeRows === 1);
    const closed = server.close();
    const refused = await post(`${url}/v1/generate`, { prompt: 'late', maxNewTokens: 2 }).then((r) => r.status, () => 'refused');
    expect([503, 'refused']).toContain(refused);
    const r = await inflight;
    expect(r.status).toBe(200);
    expect((await json(r)).tokens).toEqual(reference('goodbye', 100, {}, slow));
    await closed;
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });
});

describe('nodegrad serve: encodings, slow clients and the connection cap', () => {
  const classifier = { classify: (texts: string[]): Classification[] => texts.map(() => ({ label: 'x', probabilities: { x: 1 } })) };

  /** Opens a raw connection, lets `talk` write to it, and collects what comes back until the server closes it (or `ms` pass). */
  function raw(url: string, talk: (sock: net.Socket) => void, ms = 3000): Promise<{ data: string; closedMs: number | null }> {
    return new Promise((resolve) => {
      const t0 = performance.now();
      let data = '';
      const sock = net.connect(Number(new URL(url).port), '127.0.0.1', () => talk(sock));
      const timer = setTimeout(() => { sock.destroy(); resolve({ data, closedMs: null }); }, ms);
      sock.on('data', (d) => { data += d.toString(); });
      sock.on('error', () => undefined);
      sock.on('close', () => { clearTimeout(timer); resolve({ data, closedMs: performance.now() - t0 }); });
    });
  }

  test('a body in a charset other than UTF-8 is a 415 with a JSON error', async () => {
    const server = new InferenceServer({ classifier, port: 0 });
    const { url } = await server.start();
    try {
      const body = JSON.stringify({ texts: ['hi'] });
      const r = await fetch(`${url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'application/json; charset=utf-16' }, body: Buffer.from(body, 'utf16le') });
      expect(r.status).toBe(415);
      expect(r.headers.get('content-type')).toMatch(/application\/json/);
      expect((await json(r)).error).toMatchObject({ status: 415, message: expect.stringMatching(/charset must be utf-8 \(got "utf-16"/) });
      const latin = await fetch(`${url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'text/plain; charset="ISO-8859-1"' }, body });
      expect(latin.status).toBe(415);
      await latin.body?.cancel();
      for (const type of ['application/json; charset=UTF-8', 'application/json;charset="utf-8"', 'application/json; charset=us-ascii']) {
        const ok = await fetch(`${url}/v1/classify`, { method: 'POST', headers: { 'content-type': type }, body });
        expect(ok.status, type).toBe(200);
        await ok.body?.cancel();
      }
    } finally {
      await server.close();
    }
  });

  test('a client that sends its headers or its body too slowly is answered 408 and cut off within the timeout', async () => {
    const server = new InferenceServer({ classifier, port: 0, headersTimeoutMs: 300, bodyTimeoutMs: 300 });
    const { url } = await server.start();
    try {
      let drip: NodeJS.Timeout | undefined;
      const headers = await raw(url, (sock) => {
        sock.write('POST /v1/classify HTTP/1.1\r\nHost: x\r\n');
        drip = setInterval(() => { if (!sock.destroyed) sock.write('X-Slow: y\r\n'); }, 50); // never ends the headers
      });
      clearInterval(drip);
      expect(headers.closedMs).not.toBeNull();
      expect(headers.closedMs!).toBeLessThan(1500);
      expect(headers.data).toMatch(/^HTTP\/1\.1 408/);
      const idle = await raw(url, () => undefined); // connects and says nothing
      expect(idle.closedMs).not.toBeNull();
      expect(idle.closedMs!).toBeLessThan(1500);

      const body = await raw(url, (sock) => sock.write('POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"texts":'));
      expect(body.closedMs).not.toBeNull();
      expect(body.closedMs!).toBeLessThan(1500);
      expect(body.data).toMatch(/^HTTP\/1\.1 408/);
      const err = JSON.parse(body.data.slice(body.data.indexOf('\r\n\r\n') + 4)) as Json;
      expect(err.error).toMatchObject({ status: 408, field: 'body', message: 'body: not received within 300 ms' });
      // a prompt client is served as before
      expect((await post(`${url}/v1/classify`, { texts: ['a'] })).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  test('connections beyond maxConnections get 503 and are closed; a freed slot serves again', async () => {
    const server = new InferenceServer({ classifier, port: 0, maxConnections: 2 });
    const { url } = await server.start();
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        held.push(await new Promise<net.Socket>((resolve) => { const c = net.connect(Number(new URL(url).port), '127.0.0.1', () => resolve(c)); }));
      }
      await until('two open connections', async () => server.openConnections === 2);
      const third = await raw(url, (sock) => sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'));
      expect(third.closedMs).not.toBeNull();
      expect(third.data).toMatch(/^HTTP\/1\.1 503/);
      expect(third.data).toMatch(/Retry-After: 1/i);
      const err = JSON.parse(third.data.slice(third.data.indexOf('\r\n\r\n') + 4)) as Json;
      expect(err.error).toMatchObject({ status: 503, message: expect.stringMatching(/too many connections \(the limit is 2\)/) });
      // the held connections still work
      const answer = await new Promise<string>((resolve) => {
        held[0].once('data', (d) => resolve(d.toString()));
        held[0].write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
      });
      expect(answer).toMatch(/^HTTP\/1\.1 200/);
      held.pop()!.destroy();
      await until('a free slot', async () => server.openConnections === 1);
      const r = await fetch(`${url}/health`);
      expect(r.status).toBe(200);
      await r.text();
      expect((server.metrics.toJSON().requests as Json).connection).toEqual({ 503: 1 });
    } finally {
      for (const c of held) c.destroy();
      await server.close();
    }
  });

  test('the limits are flags of nodegrad serve', async () => {
    await expect(serveCommand(['--model', dir, '--max-connections', '0'])).rejects.toThrow(/--max-connections must be an integer >= 1 \(got '0'\)/);
    await expect(serveCommand(['--model', dir, '--headers-timeout-ms', 'x'])).rejects.toThrow(/--headers-timeout-ms must be an integer >= 1/);
    await expect(serveCommand(['--model', dir, '--body-timeout-ms', '0'])).rejects.toThrow(/--body-timeout-ms must be an integer >= 1 \(got '0'\)/);
    expect(() => new InferenceServer({ classifier, maxConnections: 0 })).toThrow(/maxConnections must be an integer >= 1 \(got 0\)/);
  });
});

describe('nodegrad serve: classification', () => {
  test('/v1/classify batches the texts of concurrent requests through the classifier', async () => {
    const calls: string[][] = [];
    const classifier = {
      classify(texts: string[]): Classification[] {
        calls.push(texts);
        return texts.map((t) => {
          const p = t.includes('good') ? 0.9 : 0.2;
          return { label: p > 0.5 ? 'positive' : 'negative', probabilities: { negative: 1 - p, positive: p } };
        });
      },
    };
    const server = new InferenceServer({ classifier, port: 0, batchWindowMs: 50 });
    const { url } = await server.start();
    try {
      const [a, b] = await Promise.all([
        post(`${url}/v1/classify`, { texts: ['a good day', 'rain'] }).then(json),
        post(`${url}/v1/classify`, { texts: ['good'] }).then(json),
      ]);
      expect(a.results.map((x: Classification) => x.label)).toEqual(['positive', 'negative']);
      expect(a.results[1].probabilities).toEqual({ negative: 0.8, positive: 0.2 });
      expect(b.results).toEqual([{ label: 'positive', probabilities: { negative: expect.closeTo(0.1, 9), positive: 0.9 } }]);
      expect(calls.length).toBe(1);
      expect(calls[0].length).toBe(3);
      const bad: [unknown, string, RegExp][] = [
        [{}, 'texts', /texts: is required/],
        [{ texts: 'hi' }, 'texts', /must be an array of strings \(got string "hi"\)/],
        [{ texts: [] }, 'texts', /at least one string/],
        [{ texts: ['ok', 3] }, 'texts[1]', /texts\[1\]: must be a string \(got number 3\)/],
      ];
      for (const [body, field, msg] of bad) {
        const e = (await json(await post(`${url}/v1/classify`, body))).error;
        expect(e.field).toBe(field);
        expect(e.message).toMatch(msg);
      }
      const g = await post(`${url}/v1/generate`, { prompt: 'hi' });
      expect(g.status).toBe(400);
      expect((await json(g)).error.message).toMatch(/does not generate text/);
    } finally {
      await server.close();
    }
  });
});

describe('nodegrad serve: a BERT classifier behind HTTP', () => {
  test('/v1/classify returns the labels and probabilities of the model run in the test', async () => {
    const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'good', 'bad', 'day', 'the', 'movie', 'was', 'very'];
    const bertTok = new BertTokenizer({ vocab });
    ng.manualSeed(3);
    const bert = new ng.models.BertForSequenceClassification({
      vocabSize: vocab.length, hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 64,
      maxPositionEmbeddings: 32, numLabels: 3, id2label: { 0: 'negative', 1: 'neutral', 2: 'positive' },
    });
    bert.train(false);
    const tokDir = path.join(dir, 'bert-tok');
    await bertTok.savePretrained(tokDir);
    const extraFiles = Object.fromEntries(fs.readdirSync(tokDir).map((f) => [f, fs.readFileSync(path.join(tokDir, f))]));
    await bert.savePretrained(path.join(dir, 'bert'), { extraFiles });
    const server = new InferenceServer({ modelDir: path.join(dir, 'bert'), port: 0 });
    const { url } = await server.start();
    try {
      const texts = ['the movie was very good', 'bad day', 'good'];
      const r = await post(`${url}/v1/classify`, { texts });
      expect(r.status).toBe(200);
      const { results } = await json(r);
      const enc = bertTok.encodeBatch(texts, { padding: true, returnTensors: 'ng' });
      const probs = ng.softmax(bert.forward(enc).logits, -1).tolist() as number[][];
      const names = ['negative', 'neutral', 'positive'];
      results.forEach((res: Classification, i: number) => {
        names.forEach((n, k) => expect(res.probabilities[n]).toBeCloseTo(probs[i][k], 5));
        expect(res.label).toBe(names[probs[i].indexOf(Math.max(...probs[i]))]);
      });
      expect((await json(await fetch(`${url}/health`))).model).toMatchObject({ kind: 'bert', task: 'classify', labels: names });
      const g = await post(`${url}/v1/generate`, { prompt: 'hi' });
      expect(g.status).toBe(400);
      expect((await json(g)).error.message).toMatch(/does not generate text/);
    } finally {
      await server.close();
    }
  });
});

describe('nodegrad serve: the command', () => {
  test('--help and bad flags', async () => {
    const log = console.log;
    let out = '';
    console.log = (s: string) => { out += s; };
    try {
      expect(await serveCommand(['--help'])).toBe(0);
    } finally {
      console.log = log;
    }
    expect(out).toMatch(/usage: nodegrad serve --model DIR/);
    await expect(serveCommand([])).rejects.toThrow(/--model DIR is required/);
    await expect(serveCommand(['--model', dir, '--max-batch', '0'])).rejects.toThrow(/--max-batch must be an integer >= 1 \(got '0'\)/);
    await expect(serveCommand(['--model', dir, '--bogus'])).rejects.toThrow(/Unknown option '--bogus'/);
    await expect(serveCommand(['--model', path.join(dir, 'nope'), '--port', '0'])).rejects.toThrow(/no checkpoint at/);
  });

  test('SIGTERM finishes the request in flight, then the process exits 0', async () => {
    const code = `import('./lib/serve/index.ts').then((m) => m.serveCommand(process.argv.slice(1))).then((c) => { process.exitCode = c; })`;
    const child = spawn(process.execPath, ['--import', './scripts/ts-loader.mjs', '--input-type=module', '-e', code, '--',
      '--model', path.join(dir, 'slow'), '--port', '0', '--threads', '1'], { cwd: repo, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    await until('the server to listen', async () => /listening on http/.test(out), 15_000);
    const url = /listening on (http:\/\/[\d.:]+)/.exec(out)![1];
    const r = await post(`${url}/v1/generate`, { prompt: 'bye', maxNewTokens: 150, temperature: 0, stream: true });
    const events = readSSE(r);
    await until('the request to run', async () => (await json(await fetch(`${url}/metrics`))).activeRows === 1);
    child.kill('SIGTERM');
    const ev = await events;
    expect(ev[ev.length - 1].data).toBe('[DONE]');
    expect(ev.length).toBe(152);
    expect(await exited).toBe(0);
    expect(out).toMatch(/SIGTERM: no longer accepting requests; finishing 1 in flight/);
    expect(out).toMatch(/nodegrad serve: stopped/);
  }, 30_000);
});
