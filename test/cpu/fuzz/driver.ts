// Fuzz driver: calls the public ops with random bad arguments and checks that each call
// either succeeds or throws an Error whose message is `nodegrad: <op>: ...`, and that
// nothing crashes the process.
//
//   node --import ./scripts/ts-loader.mjs test/cpu/fuzz/driver.ts [seed] [cases]
//     --seed N --cases N   run cases 0..N-1 of seed N (defaults: seed 1, 20000 cases)
//     --jobs N             child processes at a time (default: 2)
//     --batch N            cases per child process (default: 500)
//     --case I             run case I alone, in this process, and print it in full
//     --json               print the summary as JSON
//     --errors             also list the clean errors of each family (which checks the cases reach)
//   npm run fuzz -- 42 20000
//
// Cases run in child processes, a batch each; a child logs every case before running it,
// so a segfault or abort is reported with its signal and the case that was running, and
// the batch goes on in a fresh child from the next case. Case I of a seed is the same on
// every run (its generator is seeded from the seed and I alone).
import { spawn } from 'node:child_process';
import { rmSync, writeSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import * as ng from '../../../lib/index.js';
import { FAMILIES, fuzzTmpDir, type CaseDef, type Family } from './cases.js';
import { caseRng, describe, materialize, type Rng } from './gen.js';

const HERE = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const LOADER = fileURLToPath(new URL('../../../scripts/ts-loader.mjs', import.meta.url));
/** A case that runs longer than this is killed and reported as a hang. */
const CASE_TIMEOUT_MS = 30_000;

export type Status = 'ok' | 'err' | 'find';
export interface Outcome { status: Status; kind?: string; message?: string; op?: string; stack?: string }
export interface Finding { index: number; family: string; desc: string; kind: string; message: string; stack?: string }
export interface Crash { index: number; family: string; desc: string; signal: string | null; code: number | null; stderr: string }
export interface Summary {
  seed: number; cases: number; ran: number; ok: number; errors: number; durationMs: number; children: number;
  findings: Finding[]; crashes: Crash[];
  families: Record<string, { cases: number; ok: number; errors: number; findings: number }>;
  slowest: { index: number; desc: string; ms: number }[];
  /** With collectErrors: family -> message shape -> count. */
  errorShapes?: Record<string, Record<string, number>>;
}

// ---- one case ---------------------------------------------------------------------------------

const BUILTIN_ERRORS = new Set(['TypeError', 'RangeError', 'SyntaxError', 'ReferenceError', 'EvalError', 'URIError']);

/** ok, a well-formed nodegrad error, or a finding (what is wrong with the error). */
export function classify(e: unknown, accepted: readonly string[] | null): Outcome {
  if (!(e instanceof Error)) return { status: 'find', kind: 'threw a non-Error', message: String(e) };
  const stack = e.stack?.split('\n').slice(1, 6).join('\n');
  const name = e.constructor?.name ?? 'Error';
  if (BUILTIN_ERRORS.has(name)) return { status: 'find', kind: name, message: e.message, stack };
  const m = /^nodegrad: ([^:\s][^:]*): ./s.exec(e.message);
  if (!m) return { status: 'find', kind: e.message.startsWith('nodegrad:') ? 'message without an op name' : 'message without "nodegrad:"', message: e.message, stack };
  if (accepted !== null && !accepted.includes(m[1])) return { status: 'find', kind: `error names op "${m[1]}"`, message: e.message, stack };
  return { status: 'err', op: m[1], message: e.message };
}

/** Every tensor in a result (a tensor, or arrays / plain objects / Maps of them). */
function tensorsIn(v: unknown, out: ng.Tensor[] = [], depth = 0): ng.Tensor[] {
  if (depth > 4 || v === null || typeof v !== 'object') return out;
  if (v instanceof ng.Tensor) out.push(v);
  else if (Array.isArray(v)) for (const x of v) tensorsIn(x, out, depth + 1);
  else if (v instanceof Map) for (const x of v.values()) tensorsIn(x, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) tensorsIn(x, out, depth + 1);
  return out;
}

/** Reads what a call returned, and sometimes runs a backward through it. */
function touch(v: unknown, r: Rng): void {
  for (const t of tensorsIn(v)) {
    if (t.isDisposed || t.numel > 100_000) continue;
    t.dataSync();
    String(t);
    if (t.requiresGrad && r.chance(0.5)) t.sum().backward();
  }
}

export interface Prepared { family: Family; def: CaseDef | null; desc: string; rng: Rng; genError?: unknown }

export function prepare(seed: number, index: number): Prepared {
  const rng = caseRng(seed, index);
  const family = FAMILIES[rng.int(FAMILIES.length)];
  try {
    const def = family.gen(rng);
    return { family, def, rng, desc: `${def.name}(${def.args.map(describe).join(', ')})` };
  } catch (e) {
    return { family, def: null, rng, desc: `${family.name}: the generator threw`, genError: e };
  }
}

export async function runCase(p: Prepared, index: number): Promise<Outcome> {
  if (!p.def) return { status: 'find', kind: 'fuzzer bug', message: String((p.genError as Error)?.stack ?? p.genError) };
  const def = p.def;
  ng.manualSeed(index);
  let phase: 'call' | 'result' = 'call';
  try {
    await ng.scopeAsync(async () => {
      const args = def.args.map((a) => materialize(a, p.rng));
      let v = def.call(...args);
      if (v instanceof Promise) v = await v;
      phase = 'result';
      touch(v, p.rng);
      return undefined;
    });
    return { status: 'ok' };
  } catch (e) {
    // reading a result or a backward through it may fail in any op, but must still fail cleanly
    return classify(e, phase === 'call' ? def.ops ?? p.family.ops : null);
  }
}

// ---- child -------------------------------------------------------------------------------------

const pause = new Int32Array(new SharedArrayBuffer(4));

/** One log line, written synchronously (so it is out before a crash); a full pipe is waited for. */
function line(s: string): void {
  const bytes = Buffer.from(s.replace(/[\r\n]+/g, ' ') + '\n');
  for (let off = 0; off < bytes.length;) {
    try {
      off += writeSync(1, bytes, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(pause, 0, 0, 5);
    }
  }
}

async function child(seed: number, from: number, to: number): Promise<void> {
  ng.setNumThreads(1);
  process.on('exit', () => { const d = fuzzTmpDir(); if (d) rmSync(d, { recursive: true, force: true }); });
  for (let i = from; i < to; i++) {
    const p = prepare(seed, i);
    line(`C\t${i}\t${p.family.name}\t${p.desc}`);
    const t0 = performance.now();
    const o = await runCase(p, i);
    line(`R\t${i}\t${o.status}\t${(performance.now() - t0).toFixed(1)}\t${JSON.stringify(o)}`);
  }
}

// ---- parent ---------------------------------------------------------------------------------------

export interface FuzzOptions {
  seed: number; cases: number; start?: number; jobs?: number; batch?: number; onProgress?: (done: number) => void;
  /** Also count the clean errors by message shape (to see which checks the cases reach). */
  collectErrors?: boolean;
}

interface Running { index: number; family: string; desc: string }

function runBatch(seed: number, from: number, to: number, s: Summary, stats: Map<number, number>): Promise<number | null> {
  // resolves to the index where the batch must resume (after a crash or hang), or null when done
  return new Promise((resolve) => {
    s.children++;
    const p = spawn(process.execPath, ['--import', LOADER, HERE, '--child', '--seed', String(seed), '--from', String(from), '--to', String(to)],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let running: Running | null = null;
    let stderr = '';
    let buf = '';
    let hung = false;
    let timer: NodeJS.Timeout | null = null;
    const arm = (): void => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => { hung = true; p.kill('SIGKILL'); }, CASE_TIMEOUT_MS);
    };
    arm();
    p.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const l = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const f = l.split('\t');
        if (f[0] === 'C') {
          running = { index: Number(f[1]), family: f[2], desc: f.slice(3).join('\t') };
          arm();
        } else if (f[0] === 'R' && running) {
          const o = JSON.parse(f.slice(4).join('\t')) as Outcome;
          const fam = (s.families[running.family] ??= { cases: 0, ok: 0, errors: 0, findings: 0 });
          fam.cases++;
          s.ran++;
          if (o.status === 'ok') { s.ok++; fam.ok++; } else if (o.status === 'err') {
            s.errors++;
            fam.errors++;
            if (s.errorShapes) {
              const byFam = (s.errorShapes[running.family] ??= {});
              const k = shapeOf(o.message ?? '');
              byFam[k] = (byFam[k] ?? 0) + 1;
            }
          } else {
            fam.findings++;
            s.findings.push({ index: running.index, family: running.family, desc: running.desc, kind: o.kind!, message: o.message ?? '', stack: o.stack });
          }
          stats.set(running.index, Number(f[3]));
          const ms = Number(f[3]);
          if (s.slowest.length < 5 || ms > s.slowest[s.slowest.length - 1].ms) {
            s.slowest.push({ index: running.index, desc: running.desc, ms });
            s.slowest.sort((a, b) => b.ms - a.ms);
            s.slowest.length = Math.min(s.slowest.length, 5);
          }
          running = null;
        }
      }
    });
    p.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (code === 0 && !running) { resolve(null); return; }
      const at: Running = running ?? { index: -1, family: '?', desc: '(between cases)' };
      s.crashes.push({ index: at.index, family: at.family, desc: at.desc, signal: hung ? `hang (> ${CASE_TIMEOUT_MS / 1000} s, killed)` : signal, code, stderr: stderr.trim() });
      if (at.family !== '?') {
        const fam = (s.families[at.family] ??= { cases: 0, ok: 0, errors: 0, findings: 0 });
        fam.cases++;
        fam.findings++;
        s.ran++;
      }
      resolve(at.index >= 0 && at.index + 1 < to ? at.index + 1 : null);
    });
  });
}

/** Runs cases [start, start + cases) of `seed` in child processes and returns what happened. */
export async function runFuzz(o: FuzzOptions): Promise<Summary> {
  const t0 = performance.now();
  const start = o.start ?? 0, end = start + o.cases;
  const batch = Math.max(1, o.batch ?? 500), jobs = Math.max(1, o.jobs ?? 2);
  const s: Summary = { seed: o.seed, cases: o.cases, ran: 0, ok: 0, errors: 0, durationMs: 0, children: 0, findings: [], crashes: [], families: {}, slowest: [] };
  if (o.collectErrors) s.errorShapes = {};
  const queue: [number, number][] = [];
  for (let i = start; i < end; i += batch) queue.push([i, Math.min(end, i + batch)]);
  const stats = new Map<number, number>();
  const worker = async (): Promise<void> => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      const resume = await runBatch(o.seed, job[0], job[1], s, stats);
      if (resume !== null) queue.unshift([resume, job[1]]);
      o.onProgress?.(s.ran);
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  s.findings.sort((a, b) => a.index - b.index);
  s.crashes.sort((a, b) => a.index - b.index);
  s.durationMs = performance.now() - t0;
  return s;
}

/** A message with its numbers and quoted strings blanked, so that messages of one check group together. */
function shapeOf(message: string): string {
  return message.replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/g, '#').replace(/"[^"]*"/g, '"…"').slice(0, 160);
}

/** Findings grouped by kind and message shape, most frequent first. */
export function groupFindings(fs: Finding[]): { key: string; count: number; first: Finding }[] {
  const groups = new Map<string, { key: string; count: number; first: Finding }>();
  for (const f of fs) {
    const key = `[${f.family}] ${f.kind}: ${shapeOf(f.message)}`;
    const g = groups.get(key);
    if (g) g.count++;
    else groups.set(key, { key, count: 1, first: f });
  }
  return [...groups.values()].sort((a, b) => b.count - a.count);
}

export function formatSummary(s: Summary): string {
  const out: string[] = [];
  const bad = s.findings.length + s.crashes.length;
  out.push(`nodegrad fuzz: seed ${s.seed}, ${s.ran} of ${s.cases} cases in ${s.children} child process(es), ${(s.durationMs / 1000).toFixed(1)} s`);
  out.push(`  succeeded ${s.ok}, clean nodegrad errors ${s.errors}, findings ${s.findings.length}, crashes ${s.crashes.length}`);
  out.push('');
  out.push(`  ${'family'.padEnd(20)}${'cases'.padStart(7)}${'ok'.padStart(7)}${'errors'.padStart(8)}${'findings'.padStart(10)}`);
  for (const [name, f] of Object.entries(s.families).sort()) {
    out.push(`  ${name.padEnd(20)}${String(f.cases).padStart(7)}${String(f.ok).padStart(7)}${String(f.errors).padStart(8)}${String(f.findings).padStart(10)}`);
  }
  const repro = (i: number): string => `npm run fuzz -- --seed ${s.seed} --case ${i}`;
  if (s.crashes.length) {
    out.push('', 'crashes:');
    for (const c of s.crashes) {
      out.push(`  #${c.index} [${c.family}] ${c.signal ? `signal ${c.signal}` : `exit code ${c.code}`}: ${c.desc}`);
      out.push(`    reproduce: ${repro(c.index)}`);
      if (c.stderr) out.push(...c.stderr.split('\n').slice(-8).map((l) => `    | ${l}`));
    }
  }
  if (s.findings.length) {
    out.push('', 'findings (grouped):');
    for (const g of groupFindings(s.findings)) {
      out.push(`  ${g.count}x ${g.first.kind} in #${g.first.index}: ${g.first.desc.slice(0, 200)}`);
      out.push(`     ${g.first.message.slice(0, 300)}`);
      if (g.first.stack) out.push(...g.first.stack.split('\n').slice(0, 2).map((l) => `     ${l.trim()}`));
      out.push(`     reproduce: ${repro(g.first.index)}`);
    }
  }
  if (s.slowest.length) {
    out.push('', 'slowest cases:');
    for (const c of s.slowest) out.push(`  #${c.index} ${c.ms.toFixed(0)} ms: ${c.desc.slice(0, 150)}`);
  }
  if (s.errorShapes) {
    out.push('', 'clean errors by family (most frequent first):');
    for (const [fam, m] of Object.entries(s.errorShapes).sort()) {
      out.push(`  ${fam}:`);
      for (const [k, n] of Object.entries(m).sort((a, b) => b[1] - a[1]).slice(0, 12)) out.push(`    ${String(n).padStart(5)}  ${k}`);
    }
  }
  out.push('', bad === 0 ? 'no findings' : `${bad} problem(s)`);
  return out.join('\n');
}

// ---- command line -----------------------------------------------------------------------------------

function parseArgs(argv: string[]): Record<string, string | true> {
  const a: Record<string, string | true> = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k.startsWith('--')) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) a[k.slice(2)] = true;
      else { a[k.slice(2)] = next; i++; }
    } else positional.push(k);
  }
  if (positional[0] !== undefined) a.seed ??= positional[0];
  if (positional[1] !== undefined) a.cases ??= positional[1];
  return a;
}

function intArg(a: Record<string, string | true>, k: string, def: number): number {
  const v = a[k];
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`fuzz: --${k} must be a non-negative integer (got ${String(v)})`);
  return n;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const seed = intArg(a, 'seed', 1);
  if (a.child) {
    await child(seed, intArg(a, 'from', 0), intArg(a, 'to', 0));
    return;
  }
  if (a.case !== undefined) {
    const i = intArg(a, 'case', 0);
    const p = prepare(seed, i);
    console.log(`case #${i} of seed ${seed} [${p.family.name}]: ${p.desc}`);
    const o = await runCase(p, i);
    console.log(o.status === 'ok' ? 'succeeded' : o.status === 'err' ? `clean error: ${o.message}` : `FINDING (${o.kind}): ${o.message}\n${o.stack ?? ''}`);
    process.exitCode = o.status === 'find' ? 1 : 0;
    return;
  }
  const cases = intArg(a, 'cases', 20_000);
  let last = 0;
  const s = await runFuzz({
    seed, cases, start: intArg(a, 'start', 0), jobs: intArg(a, 'jobs', 2), batch: intArg(a, 'batch', 500), collectErrors: a.errors === true,
    onProgress: a.json ? undefined : (done) => {
      if (done - last >= 2000 && process.stderr.isTTY) { last = done; process.stderr.write(`  ${done} / ${cases}\r`); }
    },
  });
  console.log(a.json ? JSON.stringify(s, null, 1) : formatSummary(s));
  process.exitCode = s.findings.length + s.crashes.length === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => { console.error(e); process.exitCode = 2; });
}
