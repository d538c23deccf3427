// Shared benchmark machinery: timing, the result row, table printing, the JSON record
// under bench/results/, and the PyTorch peer (bench/peer.py run by /usr/bin/python3).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { native } from '../lib/native.js';

export const benchDir = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(benchDir, '..');

/** One measured case; the same fields go to the table and to the JSON (DESIGN.md §8). */
export interface Row {
  bench: string;            // e.g. "elementwise.add"
  shape: string;            // e.g. "[8192,768]"
  dtype: string;
  ms: number;               // median time of one call
  gbps?: number;            // memory-bound: bytes that must move / ms
  gflops?: number;          // compute-bound (CPU)
  tflops?: number;          // compute-bound (GPU)
  pctPeak: number | null;   // gbps vs measured copy bandwidth, or flops vs a stated peak
  peer: string;             // what the ratio is against: "torch 1.13.0 ...", "naive JS loop", "none"
  peerMs: number | null;
  ratio: number | null;     // peerMs / ms: above 1 means nodegrad is faster
  us?: number;              // per-call microseconds, for overhead rows
  note?: string;
}

/** What a bench file's run() receives. */
export interface BenchContext {
  quick: boolean;
  threads: number;
  peer: Peer;
  peakGBps: number;         // measured copy bandwidth, the 100% of memory-bound rows
}

export interface TimeOptions { warmup?: number; samples?: number; minSampleMs?: number }
export interface Timing { ms: number; minMs: number; samples: number; inner: number }

const now = (): number => performance.now();

/**
 * Median time of one call of fn: warm-up calls, then `samples` samples, each timing enough
 * back-to-back calls (`inner`) to last about minSampleMs, so sub-microsecond calls are
 * measured above the timer's resolution.
 */
export function timeIt(fn: () => void, opts: TimeOptions = {}): Timing {
  const warmup = opts.warmup ?? 3, samples = opts.samples ?? 9, minSampleMs = opts.minSampleMs ?? 20;
  for (let i = 0; i < warmup; i++) fn();
  let t0 = now();
  fn();
  let once = now() - t0;
  let inner = 1;
  while (once * inner < minSampleMs && inner < 1 << 22) inner *= 2;
  if (inner > 1) {            // re-estimate with a batch: one call is too short to time
    t0 = now();
    for (let i = 0; i < inner; i++) fn();
    once = (now() - t0) / inner;
    inner = Math.max(1, Math.ceil(minSampleMs / Math.max(once, 1e-6)));
  }
  const times: number[] = [];
  for (let s = 0; s < samples; s++) {
    t0 = now();
    for (let i = 0; i < inner; i++) fn();
    times.push((now() - t0) / inner);
  }
  times.sort((a, b) => a - b);
  return { ms: times[times.length >> 1], minMs: times[0], samples, inner };
}

/** The middle value (the upper one of an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** Runs step() warmup times untimed, then steps times; the per-step milliseconds in order. */
export function timeSteps(step: () => void, warmup: number, steps: number): number[] {
  for (let i = 0; i < warmup; i++) step();
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    step();
    times.push(performance.now() - t0);
  }
  return times;
}

export function timeOptions(quick: boolean): TimeOptions {
  return quick ? { warmup: 2, samples: 5, minSampleMs: 10 } : { warmup: 3, samples: 11, minSampleMs: 30 };
}

export const fmtShape = (s: readonly number[]): string => `[${s.join(',')}]`;

/** Fills a row's derived fields from its measured time, bytes or flops and the peer's time. */
export function makeRow(ctx: BenchContext, r: {
  bench: string; shape: string; dtype: string; ms: number; bytes?: number; flops?: number; peakGflops?: number;
  peer?: string; peerMs?: number | null; note?: string;
}): Row {
  const row: Row = { bench: r.bench, shape: r.shape, dtype: r.dtype, ms: r.ms, pctPeak: null, peer: r.peer ?? 'none', peerMs: r.peerMs ?? null, ratio: null };
  if (r.bytes !== undefined) {
    row.gbps = r.bytes / (r.ms * 1e6);
    if (ctx.peakGBps > 0) row.pctPeak = (100 * row.gbps) / ctx.peakGBps;
  }
  if (r.flops !== undefined) {
    row.gflops = r.flops / (r.ms * 1e6);
    if (r.peakGflops) row.pctPeak = (100 * row.gflops) / r.peakGflops;
  }
  if (row.peerMs !== null && row.peerMs > 0) row.ratio = row.peerMs / r.ms;
  else row.peerMs = null;
  if (row.peerMs === null) row.peer = 'none';
  if (r.note) row.note = r.note;
  return row;
}

// ---- the PyTorch peer ------------------------------------------------------------------

/** One case for bench/peer.py: an op name it knows, input shapes, dtype, op parameters. */
export interface PeerCase { op: string; shapes: number[][]; dtype: string; params?: Record<string, unknown> }

export interface PeerInfo { torch?: string; blas?: string; threads?: number; error?: string }

const PYTHON = process.env.NODEGRAD_PEER_PYTHON || '/usr/bin/python3';

/**
 * OpenBLAS 0.3.21 (Debian 12) does not recognise recent Xeons or Zen 4/5 and falls back to
 * its Prescott (SSE3) kernels, about 30 GFLOP/s at 1024^3 on 2 cores instead of ~150: a
 * straw man. The peer therefore runs with the core type matching the vector width of the
 * GEMM kernel nodegrad uses in this run (SkylakeX when it runs AVX-512, Haswell when it
 * runs AVX2, e.g. under NODEGRAD_GEMM_KERNEL=avx2): like against like, each at its best.
 * NODEGRAD_PEER_CORETYPE overrides it (an OPENBLAS_CORETYPE already in the environment is
 * replaced, so a machine-wide setting cannot hand the peer narrower kernels than ours).
 */
export function openblasCoretype(): string | null {
  if (process.env.NODEGRAD_PEER_CORETYPE) return process.env.NODEGRAD_PEER_CORETYPE;
  const c = native.cpuInfo();
  return c.gemmKernel.startsWith('avx512') ? 'SkylakeX' : c.gemmKernel.startsWith('avx2') ? 'Haswell' : null;
}

/**
 * glibc settings for the peer: PyTorch's CPU allocator caches nothing, and glibc hands each
 * tensor of 32 MB or more a fresh mmap that is returned on free, so every such output pays a
 * page fault per 4 KB page (8193 faults and ~75 ms per softmax of [8192,1024] on the 2-core
 * EPYC VM, against 6 ms without them). Keeping freed memory in the heap gives the peer its
 * real kernel speed; a setting already in the environment wins.
 */
const PEER_MALLOC: Record<string, string> = {
  MALLOC_MMAP_THRESHOLD_: String(2 ** 32), MALLOC_TRIM_THRESHOLD_: String(2 ** 32), MALLOC_TOP_PAD_: String(2 ** 28),
};

/** The environment every PyTorch peer process runs with. */
export function peerEnv(threads: number): NodeJS.ProcessEnv {
  const t = String(threads);
  const core = openblasCoretype();
  return { ...PEER_MALLOC, ...process.env, OMP_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t, MKL_NUM_THREADS: t, ...(core ? { OPENBLAS_CORETYPE: core } : {}) };
}

/** PyTorch timed in a child process; `available` is false (and every time null) without it. */
export class Peer {
  private constructor(readonly info: PeerInfo, readonly threads: number) {}

  get available(): boolean { return !!this.info.torch; }

  /** e.g. "torch 1.13.0 (BLAS: OpenBLAS 0.3.21 pthread, 2 threads)", or "none". */
  get name(): string {
    const core = openblasCoretype();
    return this.available ? `torch ${this.info.torch} (BLAS: ${this.info.blas ?? '?'}${core ? `, OPENBLAS_CORETYPE=${core}` : ''}, ${this.info.threads} threads, glibc malloc keeping freed memory)` : 'none';
  }

  static disabled(reason: string, threads: number): Peer { return new Peer({ error: reason }, threads); }

  static probe(threads: number): Peer {
    const res = callPeer({ threads, cases: [] });
    return new Peer(res.info, threads);
  }

  /** Median ms per call for each case (null where the peer lacks it or failed). */
  time(cases: PeerCase[], opts: TimeOptions = {}): (number | null)[] {
    if (!this.available || cases.length === 0) return cases.map(() => null);
    const res = callPeer({ threads: this.threads, warmup: opts.warmup ?? 3, samples: opts.samples ?? 9, minSampleMs: opts.minSampleMs ?? 20, cases });
    return cases.map((_, i) => {
      const r = res.results[i];
      if (r && typeof r.ms === 'number') return r.ms;
      if (r?.error) process.stderr.write(`bench: peer: ${cases[i].op} ${JSON.stringify(cases[i].shapes)}: ${r.error}\n`);
      return null;
    });
  }
}

interface PeerReply { info: PeerInfo; results: { ms?: number; error?: string }[] }

function callPeer(request: object): PeerReply {
  const threads = String((request as { threads: number }).threads);
  const r = spawnSync(PYTHON, [path.join(benchDir, 'peer.py')], {
    input: JSON.stringify(request), encoding: 'utf8', maxBuffer: 16 << 20, timeout: 900_000,
    env: peerEnv(Number(threads)),
  });
  const fail = (why: string): PeerReply => ({ info: { error: why }, results: [] });
  if (r.error) return fail(`${PYTHON}: ${r.error.message}`);
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  try {
    const reply = JSON.parse(last) as Partial<PeerReply> & { error?: string };
    if (reply.error && !reply.info) return fail(reply.error);
    return { info: reply.info ?? {}, results: reply.results ?? [] };
  } catch {
    return fail(`peer.py exited ${r.status}: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`);
  }
}

// ---- table and JSON --------------------------------------------------------------------

function fmtTime(ms: number): string {
  if (ms < 0.1) return `${(ms * 1e3).toFixed(ms < 0.01 ? 3 : 2)} µs`;
  return ms < 10 ? `${ms.toFixed(3)} ms` : `${ms.toFixed(1)} ms`;
}
const fmtNum = (x: number | null | undefined, d = 1): string => (x === null || x === undefined ? '-' : x.toFixed(d));

/** Prints rows as an aligned table; peers are named once under it. */
export function printTable(title: string, rows: Row[], log: (s: string) => void = console.log): void {
  if (rows.length === 0) return;
  const rate = (r: Row): string => (r.gbps !== undefined ? `${fmtNum(r.gbps)} GB/s` : r.gflops !== undefined ? `${fmtNum(r.gflops)} GFLOP/s`
    : r.tflops !== undefined ? `${fmtNum(r.tflops)} TFLOP/s` : '-');
  const peers = [...new Set(rows.map((r) => r.peer).filter((p) => p !== 'none'))];
  const head = ['bench', 'shape', 'dtype', 'time', 'rate', '% peak', 'peer time', 'ratio', 'peer'];
  const body = rows.map((r) => [r.bench, r.shape, r.dtype, fmtTime(r.ms), rate(r), fmtNum(r.pctPeak), r.peerMs === null ? '-' : fmtTime(r.peerMs),
    r.ratio === null ? '-' : `${r.ratio.toFixed(2)}x`, r.peer === 'none' ? '-' : `[${peers.indexOf(r.peer) + 1}]`]);
  const width = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const left = new Set([0, 1, 2, 8]);
  const line = (cells: string[]): string => cells.map((c, i) => (left.has(i) ? c.padEnd(width[i]) : c.padStart(width[i]))).join('  ').trimEnd();
  log(`\n## ${title}`);
  log(line(head));
  log(width.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) log(line(b));
  peers.forEach((p, i) => log(`[${i + 1}] ${p}`));
  for (const r of rows) if (r.note) log(`note: ${r.bench} ${r.shape}: ${r.note}`);
}

function git(args: string[]): string | null {
  const r = spawnSync('git', args, { cwd: repoRoot, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

export function cpuModel(): string {
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const m = /^model name\s*:\s*(.+)$/m.exec(info);
    // virtual machines often show only "AMD EPYC": family/model tell the generation (26 = Zen 5)
    const fam = /^cpu family\s*:\s*(\d+)$/m.exec(info), mod = /^model\s*:\s*(\d+)$/m.exec(info);
    if (m) return `${m[1].trim()}${fam && mod ? ` (family ${fam[1]} model ${mod[1]})` : ''}`;
  } catch { /* not Linux */ }
  return os.cpus()[0]?.model ?? 'unknown';
}

export interface RunMeta {
  threads: number; peer: Peer; peakCopyGBps: number; quick: boolean; only: string[]; cpuFeatures: string[]; loadavg: number[];
  isa: string;           // the GEMM kernel family in use: avx512 | avx2 | portable (names the results file)
  gemmKernel: string;    // e.g. "avx2 6x16"
  fmaPeak: string;       // how the % of peak of compute-bound rows was computed
}

/** Writes rows and the machine's description to bench/results/; returns the path. */
export function writeResults(rows: Row[], meta: RunMeta, file?: string): string {
  const date = new Date().toISOString().slice(0, 10);
  // A full run is the record; quick or partial runs go to a git-ignored .tmp.json.
  const partial = meta.quick || meta.only.length > 0;
  const out = file ?? path.join(benchDir, 'results', `${date}-cpu-${meta.isa}${partial ? '.tmp' : ''}.json`);
  const status = git(['status', '--porcelain', '--', 'lib', 'native', 'bench', 'CMakeLists.txt']);
  const record = {
    date,
    commit: git(['rev-parse', 'HEAD']),
    dirty: status === null ? null : status.length > 0,
    cpu: cpuModel(),
    cpuFeatures: meta.cpuFeatures,
    gemmKernel: meta.gemmKernel,
    fmaPeak: meta.fmaPeak,
    cores: os.availableParallelism?.() ?? os.cpus().length,
    threads: meta.threads,
    loadavg: meta.loadavg.map((x) => Number(x.toFixed(2))),   // 1-min load at start and end: timings are noisy when high
    node: process.version,
    peer: meta.peer.name,
    peerInfo: meta.peer.info,
    peakCopyGBps: Number(meta.peakCopyGBps.toFixed(2)),
    quick: meta.quick,
    only: meta.only.length ? meta.only : undefined,
    rows: rows.map((r) => roundRow(r)),
  };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify(record, null, 2)}\n`);
  return out;
}

function roundRow(r: Row): Row {
  const sig = (x: number | null | undefined): number | null | undefined => (typeof x === 'number' ? Number(x.toPrecision(4)) : x);
  return { ...r, ms: sig(r.ms) as number, gbps: sig(r.gbps) ?? undefined, gflops: sig(r.gflops) ?? undefined, tflops: sig(r.tflops) ?? undefined,
    pctPeak: sig(r.pctPeak) as number | null, peerMs: sig(r.peerMs) as number | null, ratio: sig(r.ratio) as number | null, us: sig(r.us) ?? undefined };
}

/** Runs fn, turning "not built yet" (an op still being written) into a skip message. */
export function guarded<T>(what: string, fn: () => T): T | null {
  try {
    return fn();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`bench: skipping ${what}: ${msg.split('\n')[0]}\n`);
    return null;
  }
}
