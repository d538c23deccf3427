// Runs the CPU benchmarks, prints one table per bench file and writes every row as JSON:
//   npm run bench -- [--quick] [--only napi,elementwise] [--threads N] [--no-peer] [--out FILE]
// A bench file exports `run(ctx: BenchContext): Row[] | Promise<Row[]>` (and optionally
// `title`); it returns rows and leaves printing to this runner.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native } from '../lib/native.js';
import { setNumThreads } from '../lib/info.js';
import { main as gpuMain, GPU_BENCHES } from './gpu/run.js';
import { benchDir, cpuModel, printTable, Peer, timeIt, writeResults, type BenchContext, type Row } from './common.js';
import { fmaPeak } from './gemm.js';

const BENCHES = ['napi', 'elementwise', 'norms', 'gemm', 'train-gpt', 'serve', 'llama', 'tokenizer', 'distributed', 'lora'];

interface Args { quick: boolean; only: string[]; threads: number; peer: boolean; out?: string; gpu: 'auto' | 'only' | 'off' }

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, only: [], threads: Number(process.env.NODEGRAD_THREADS) || os.availableParallelism(), peer: true, gpu: 'auto' };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`bench: ${f} needs a value`);
      return v;
    };
    if (f === '--quick') a.quick = true;
    else if (f === '--only') a.only.push(...value().split(',').filter(Boolean));
    else if (f === '--threads') a.threads = Number(value());
    else if (f === '--no-peer') a.peer = false;
    else if (f === '--out') a.out = path.resolve(value());
    else if (f === '--gpu-only') a.gpu = 'only';
    else if (f === '--no-gpu') a.gpu = 'off';
    else if (f === '--help' || f === '-h') {
      console.log('usage: npm run bench -- [--quick] [--only name[,name]] [--threads N] [--no-peer] [--out FILE] [--gpu-only | --no-gpu]');
      console.log(`benches: ${BENCHES.join(', ')}`);
      process.exit(0);
    } else throw new Error(`bench: unknown flag ${f} (try --help)`);
  }
  if (!Number.isInteger(a.threads) || a.threads < 1) throw new Error(`bench: --threads must be a positive integer (got ${a.threads})`);
  for (const o of a.only) if (!BENCHES.includes(o) && !GPU_BENCHES.includes(o)) throw new Error(`bench: unknown bench '${o}' (known: ${BENCHES.join(', ')})`);
  return a;
}

/**
 * Best copy bandwidth (bytes read + written) over a 64 MB float32 array, by the addon's
 * threaded copy and by memcpy: the 100% of memory-bound rows. Where the last-level cache
 * holds a row's working set, that row can exceed it.
 */
function measureCopyGBps(quick: boolean): number {
  const n = 1 << 24;
  const src = new Float32Array(n).fill(1), dst = new Float32Array(n);
  const opts = { warmup: 2, samples: quick ? 5 : 11, minSampleMs: 1 };
  const viaKernel = timeIt(() => native.copy([n], dst, 0, [1], src, 0, [1]), opts).minMs;
  const viaMemcpy = timeIt(() => dst.set(src), opts).minMs;
  return (2 * n * 4) / (Math.min(viaKernel, viaMemcpy) * 1e6);
}

function sourceOf(name: string): string | null {
  for (const ext of ['.ts', '.mts', '.js', '.mjs']) if (fs.existsSync(path.join(benchDir, name + ext))) return name + ext;
  return null;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.gpu === 'only') {
    const only = args.only.filter((o) => GPU_BENCHES.includes(o));
    if ((await gpuMain({ quick: args.quick, only, out: args.out })) > 0) process.exitCode = 1;
    return;
  }
  setNumThreads(args.threads);
  const loadStart = os.loadavg()[0];
  const cores = os.availableParallelism();
  if (loadStart > 0.5 * cores) {
    process.stderr.write(`bench: warning: load average ${loadStart.toFixed(1)} on ${cores} cores; timings will be noisy\n`);
  }
  const peer = args.peer ? Peer.probe(args.threads) : Peer.disabled('--no-peer', args.threads);
  if (!peer.available) process.stderr.write(`bench: no PyTorch peer (${peer.info.error ?? 'unknown'}); ratios are against naive references\n`);
  const peakGBps = measureCopyGBps(args.quick);
  const ctx: BenchContext = { quick: args.quick, threads: args.threads, peer, peakGBps };
  const c = native.cpuInfo();
  const cpuFeatures = [c.avx2 && 'avx2', c.fma && 'fma', c.avx512f && 'avx512f'].filter(Boolean) as string[];
  const isa = c.gemmKernel.split(' ')[0];
  const peak = fmaPeak(args.threads);
  console.log(`nodegrad bench: ${cpuModel()}, ${args.threads} threads, CPU features ${cpuFeatures.join('+') || 'none'}, ` +
    `GEMM kernel ${c.gemmKernel}, node ${process.version}${args.quick ? ', quick' : ''}`);
  console.log(`peak: FMA ${peak.text}; copy bandwidth ${peakGBps.toFixed(1)} GB/s`);
  console.log(`peer: ${peer.name}`);

  const all: Row[] = [];
  let failed = 0;
  for (const name of BENCHES) {
    if (args.only.length && !args.only.includes(name)) continue;
    const file = sourceOf(name);
    if (!file) {
      if (args.only.includes(name)) process.stderr.write(`bench: bench/${name}.ts does not exist\n`);
      continue;
    }
    const t0 = performance.now();
    try {
      const mod = (await import(`./${file}`)) as { run?: (ctx: BenchContext) => Row[] | Promise<Row[]> | void; title?: string };
      if (typeof mod.run !== 'function') throw new Error(`bench/${file} exports no run()`);
      const rows = (await mod.run(ctx)) ?? [];
      printTable(`${mod.title ?? name} (${((performance.now() - t0) / 1e3).toFixed(1)} s)`, rows);
      all.push(...rows);
    } catch (e) {
      failed++;
      process.stderr.write(`bench: ${name} failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    }
  }
  const out = writeResults(all, { threads: args.threads, peer, peakCopyGBps: peakGBps, quick: args.quick, only: args.only, cpuFeatures,
    loadavg: [loadStart, os.loadavg()[0]], isa, gemmKernel: c.gemmKernel, fmaPeak: peak.text }, args.out);
  console.log(`\nwrote ${all.length} rows to ${path.relative(process.cwd(), out)}`);
  if (args.gpu === 'auto') {
    const only = args.only.filter((o) => GPU_BENCHES.includes(o));
    if (!args.only.length || only.length) failed += await gpuMain({ quick: args.quick, only });
  }
  if (failed) process.exitCode = 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
