// Elementwise throughput on CUDA in GB/s (bytes that must move: inputs read + output
// written, per call): add and mul (read 2, write 1), tanh-GELU (read 1, write 1) on 4M
// and 64M elements in float32 and bfloat16, the float32 -> bfloat16 cast (read 4 B,
// write 2 B per element) and `.contiguous()` of a transposed float32 matrix (the tiled
// transpose). Eager calls, output allocated per call (from the caching allocator), as a
// user runs them; the peer is torch's eager op on the same shapes (elementwise_peer.py).
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { gbps, HBM_PEAK_GBPS, runPeer, timeCuda, withPeer, type Row } from './row.js';

export const title = 'CUDA elementwise (add, mul, gelu, cast, transposed copy)';

interface Case { bench: string; shape: number[]; dtype: string; bytes: number; fn: () => unknown }

const SIZE: Record<string, number> = { float32: 4, bfloat16: 2 };

export async function run(opts: { quick: boolean }): Promise<Row[]> {
  const sizes = opts.quick ? [1 << 22] : [1 << 22, 1 << 26];
  const rows: Row[] = [];
  const peerCases: { bench: string; shape: number[]; dtype: string }[] = [];
  for (const n of sizes) {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      ng.manualSeed(0);
      const a = ng.randn([n], { device: 'cuda', dtype }).keep(), b = ng.randn([n], { device: 'cuda', dtype }).keep();
      const e = SIZE[dtype];
      const cases: Case[] = [
        { bench: 'elementwise.add', shape: [n], dtype, bytes: 3 * n * e, fn: () => a.add(b) },
        { bench: 'elementwise.mul', shape: [n], dtype, bytes: 3 * n * e, fn: () => a.mul(b) },
        { bench: 'elementwise.gelu', shape: [n], dtype, bytes: 2 * n * e, fn: () => a.gelu({ approximate: 'tanh' }) },
      ];
      if (dtype === 'float32') cases.push({ bench: 'elementwise.cast', shape: [n], dtype: 'float32->bfloat16', bytes: n * 6, fn: () => a.to('bfloat16') });
      for (const c of cases) rows.push(measure(c, opts.quick));
      for (const c of cases) peerCases.push({ bench: c.bench, shape: c.shape, dtype: c.dtype });
      a.dispose();
      b.dispose();
    }
    // transposed copy: a square float32 matrix of n elements
    const side = Math.round(Math.sqrt(n));
    const m: Tensor = ng.randn([side, side], { device: 'cuda' }).keep();
    const c: Case = { bench: 'elementwise.copyT', shape: [side, side], dtype: 'float32', bytes: 2 * side * side * 4,
      fn: () => m.transpose(0, 1).contiguous() };
    rows.push(measure(c, opts.quick));
    peerCases.push({ bench: c.bench, shape: c.shape, dtype: c.dtype });
    m.dispose();
  }
  const peer = runPeer('elementwise_peer.py', { cases: peerCases, quick: opts.quick });
  return rows.map((r) => withPeer(r, peer, 'torch eager', (p) => p.bench === r.bench && p.shape === r.shape && p.dtype === r.dtype));
}

function measure(c: Case, quick: boolean): Row {
  const ms = timeCuda(c.fn, { iters: quick ? 5 : 20, reps: quick ? 5 : 9 });
  const g = gbps(c.bytes, ms);
  return { bench: c.bench, shape: `[${c.shape.join(',')}]`, dtype: c.dtype, ms, gbps: g, pctPeak: (100 * g) / HBM_PEAK_GBPS };
}
