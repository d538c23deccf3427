// GPU benchmarks: `npm run bench` runs them after the CPU ones where a CUDA device is
// usable (or alone: `npm run bench -- --gpu-only`). Each bench/gpu/<name>.ts exports
// run({quick}) -> Row[]; this runner measures the device's copy bandwidth first (the 100%
// of memory-bound rows), prints a table per file and writes DESIGN.md §8's record:
// bench/results/<yyyy-mm-dd>-<gpu>.json with the commit and a hash of cuda/.
import { execSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as ng from '../../lib/index.js';
import { native, type DeviceHandle } from '../../lib/native.js';
import { gpuDir, nominalBf16Tflops, setPeaks, HBM_PEAK_GBPS, BF16_PEAK_TFLOPS, type Row } from './row.js';

export const GPU_BENCHES = ['overhead', 'elementwise', 'gemm', 'softmax', 'layernorm', 'llama', 'adamw', 'attention', 'train-gpt'];
const repoRoot = path.resolve(gpuDir, '..', '..');

/** sha256 over cuda/'s files (names and contents, sorted): which kernels produced the figures. */
export function cudaHash(): string {
  const dir = path.join(repoRoot, 'cuda');
  const h = crypto.createHash('sha256');
  for (const f of fs.readdirSync(dir).sort()) {
    h.update(f);
    h.update(fs.readFileSync(path.join(dir, f)));
  }
  return h.digest('hex').slice(0, 16);
}

function commit(): string {
  if (process.env.NODEGRAD_COMMIT) return process.env.NODEGRAD_COMMIT;
  try {
    return execSync('git rev-parse HEAD', { cwd: repoRoot, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return 'unknown';
  }
}

/** Device-to-device copy of 1 GiB with cudaMemcpyAsync: bytes read + written per second. */
function measureCopyGBps(): number {
  const n = 1 << 28;
  const a = ng.zeros([n], { device: 'cuda' }), b = ng.zeros([n], { device: 'cuda' });
  const ha = a.storage.data as unknown as DeviceHandle, hb = b.storage.data as unknown as DeviceHandle;
  native.cudaCopy(hb, 0, ha, 0, n);
  ng.cuda.synchronize();
  let best = Infinity;
  for (let r = 0; r < 10; r++) {
    const t0 = performance.now();
    native.cudaCopy(hb, 0, ha, 0, n);
    ng.cuda.synchronize();
    best = Math.min(best, performance.now() - t0);
  }
  a.dispose(); b.dispose();
  return (2 * n * 4) / (best * 1e6);
}

function fmt(v: number | undefined, digits = 2): string {
  return v === undefined || !Number.isFinite(v) ? '' : v >= 100 ? v.toFixed(0) : v.toFixed(digits);
}

function printTable(title: string, rows: Row[]): void {
  console.log(`\n## ${title}`);
  const head = ['bench', 'shape', 'dtype', 'ms', 'GB/s', 'TFLOP/s', '% peak', 'peer ms', 'ratio', 'peer'];
  const body = rows.map((r) => [r.bench, r.shape, r.dtype, fmt(r.ms, 4), fmt(r.gbps, 1), fmt(r.tflops, 1), fmt(r.pctPeak, 1),
    fmt(r.peerMs, 4), r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}x`, r.peer ?? '']);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  console.log(head.map((h, i) => h.padEnd(w[i])).join('  '));
  for (const b of body) console.log(b.map((c, i) => c.padEnd(w[i])).join('  '));
}

export async function main(opts: { quick: boolean; only: string[]; out?: string }): Promise<number> {
  if (!ng.cuda.isAvailable()) {
    console.log(`\nGPU benchmarks skipped: ${ng.info().cuda.unavailableReason ?? 'no usable CUDA device'}`);
    return 0;
  }
  const dev = ng.cuda.getDeviceProperties(0);
  const copy = measureCopyGBps();
  setPeaks({ copyGBps: copy, bf16Tflops: nominalBf16Tflops(dev.name) ?? undefined });
  const ci = ng.info().cuda;
  console.log(`\nnodegrad GPU bench: ${dev.name} (sm_${dev.computeCapability.replace('.', '')}, ${dev.multiprocessors} SMs), ` +
    `copy ${copy.toFixed(0)} GB/s, bf16 peak ${BF16_PEAK_TFLOPS} TFLOP/s (nominal)`);
  const all: Row[] = [];
  let failed = 0;
  for (const name of GPU_BENCHES) {
    if (opts.only.length && !opts.only.includes(name)) continue;
    const file = ['.ts', '.mjs'].map((e) => name + e).find((f) => fs.existsSync(path.join(gpuDir, f)));
    if (!file) continue;
    const t0 = performance.now();
    try {
      const mod = (await import(`./${file}`)) as { run: (o: { quick: boolean }) => Promise<Row[]>; title?: string };
      const rows = await mod.run({ quick: opts.quick });
      printTable(`${mod.title ?? name} (${((performance.now() - t0) / 1e3).toFixed(1)} s)`, rows);
      all.push(...rows);
    } catch (e) {
      failed++;
      console.error(`bench gpu: ${name} failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    }
    ng.cuda.emptyCache();
  }
  const date = new Date().toISOString().slice(0, 10);
  const slug = dev.name.toLowerCase().replace(/nvidia\s*/, '').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  const file = opts.out ?? path.join(repoRoot, 'bench', 'results', `${date}-${slug}.json`);
  const record = {
    date, commit: commit(), cudaHash: cudaHash(), gpu: dev.name, computeCapability: dev.computeCapability,
    driver: ci.driverVersion, cuda: ci.runtimeVersion, archs: ci.archs, peakCopyGBps: Math.round(HBM_PEAK_GBPS),
    bf16PeakTflops: BF16_PEAK_TFLOPS, quick: opts.quick, rows: all,
  };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // Benches may be run in several calls (each device call has a time limit): rows of an
  // earlier run of the same commit and kernels on the same GPU are kept unless re-measured.
  let merged = 0;
  if (fs.existsSync(file)) {
    try {
      const prev = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof record;
      if (prev.commit === record.commit && prev.cudaHash === record.cudaHash && prev.gpu === record.gpu) {
        const key = (r: Row): string => `${r.bench}|${r.shape}|${r.dtype}|${r.peer ?? ''}`;
        const fresh = new Set(all.map(key));
        const kept = prev.rows.filter((r) => !fresh.has(key(r)));
        merged = kept.length;
        record.rows = [...kept, ...all];
      }
    } catch {
      // an unreadable earlier file is replaced
    }
  }
  fs.writeFileSync(file, JSON.stringify(record, null, 1) + '\n');
  console.log(`\nwrote ${all.length} GPU rows${merged ? ` (+${merged} kept from an earlier run of this commit)` : ''} to ${path.relative(process.cwd(), file)}`);
  return failed;
}
