// Shared by the GPU benchmarks (bench/gpu/*.ts): the row format of DESIGN.md §8, device
// timing with the L2 flushed between repetitions, the PyTorch peer runner, and the
// device's limits (measured copy bandwidth; nominal bf16 tensor-core peak).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ng from '../../lib/index.js';

export interface Row {
  bench: string;
  shape: string;
  dtype: string;
  ms: number;
  gbps?: number;
  tflops?: number;
  /** % of HBM_PEAK_GBPS (memory-bound rows) or of BF16_PEAK_TFLOPS (compute-bound rows) */
  pctPeak?: number;
  peer?: string;
  peerMs?: number;
  /** peerMs / ms: above 1 we are faster */
  ratio?: number;
  note?: string;
}

export const gpuDir = path.dirname(fileURLToPath(import.meta.url));

/** Measured device-to-device copy bandwidth (bytes read + written per second), set by bench/gpu/run.ts. */
export let HBM_PEAK_GBPS = 3000;
/** Nominal dense bf16 tensor-core peak of the device (H100 SXM: 989). */
export let BF16_PEAK_TFLOPS = 989;
export function setPeaks(p: { copyGBps?: number; bf16Tflops?: number }): void {
  if (p.copyGBps) HBM_PEAK_GBPS = p.copyGBps;
  if (p.bf16Tflops) BF16_PEAK_TFLOPS = p.bf16Tflops;
}

/** Nominal dense bf16 TFLOP/s by device name (null when unknown). */
export function nominalBf16Tflops(name: string): number | null {
  const n = name.toLowerCase();
  if (n.includes('h200') || n.includes('h100 80gb hbm3') || n.includes('h100 sxm')) return 989;
  if (n.includes('h100')) return n.includes('pcie') ? 756 : 989;
  if (n.includes('a100')) return 312;
  if (n.includes('l40s')) return 362;
  if (n.includes('a10')) return 125;
  if (n.includes('4090')) return 165;
  return null;
}

let flushBuf: ng.Tensor | null = null;
/** Overwrites a buffer larger than any L2 (256 MiB) so the next timing starts cold. */
export function flushL2(): void {
  if (!flushBuf) flushBuf = ng.zeros([64 << 20], { device: 'cuda' }).keep();
  flushBuf.fill_(1);
}

export interface TimeOptions { iters?: number; warmup?: number; reps?: number; flush?: boolean }

/**
 * Median milliseconds per call of fn over `reps` repetitions of `iters` back-to-back
 * calls (each in a scope, so temporaries are freed), with the device synchronised around
 * every repetition and the L2 flushed before it. Host launch cost is included: it is
 * what a nodegrad user pays.
 */
export function timeCuda(fn: () => unknown, opts: TimeOptions = {}): number {
  const iters = opts.iters ?? 10, reps = opts.reps ?? 7, warmup = opts.warmup ?? 3;
  for (let i = 0; i < warmup; i++) ng.scope(() => { fn(); });
  ng.cuda.synchronize();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    if (opts.flush !== false) flushL2();
    ng.cuda.synchronize();
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) ng.scope(() => { fn(); });
    ng.cuda.synchronize();
    times.push((performance.now() - t0) / iters);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1];
}

export interface PeerRow { shape: string; dtype: string; ms: number; [k: string]: unknown }
export interface PeerResult { ok: boolean; torch?: string; rows: PeerRow[]; error?: string }

/**
 * Runs `python3 bench/gpu/<script> '<json args>'`; the script prints one JSON object
 * {torch, rows: [{shape, dtype, ms, ...}]} as its last line of output.
 */
export function runPeer(script: string, args: unknown): PeerResult {
  const py = process.env.NODEGRAD_PEER_PYTHON || 'python3';
  const r = spawnSync(py, [path.join(gpuDir, script), JSON.stringify(args)], { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 20 * 60e3 });
  if (r.status !== 0) return { ok: false, rows: [], error: (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').slice(-3).join(' | ') };
  const lines = r.stdout.trim().split('\n');
  try {
    const o = JSON.parse(lines[lines.length - 1]) as { torch?: string; rows: PeerRow[] };
    return { ok: true, torch: o.torch, rows: o.rows ?? [] };
  } catch (e) {
    return { ok: false, rows: [], error: `unparsable peer output: ${lines[lines.length - 1]?.slice(0, 200)}` };
  }
}

/** Fills peer, peerMs and ratio of a row from the peer's row with the same shape and dtype. */
export function withPeer(row: Row, peer: PeerResult, peerName: string, match?: (p: PeerRow) => boolean): Row {
  const p = peer.rows.find(match ?? ((x) => x.shape === row.shape && x.dtype === row.dtype));
  if (!p || !(p.ms > 0)) return { ...row, peer: peer.ok ? `${peerName} (no matching row)` : `${peerName} unavailable: ${peer.error ?? ''}` };
  return { ...row, peer: `${peerName}${peer.torch ? ` (torch ${peer.torch})` : ''}`, peerMs: p.ms, ratio: p.ms / row.ms };
}

export const gbps = (bytes: number, ms: number): number => bytes / (ms * 1e6);
export const tflops = (flops: number, ms: number): number => flops / (ms * 1e9);
