// Elementwise throughput in GB/s: add and mul (read 2, write 1) and tanh-GELU (read 1,
// write 1) over 1K..16M float32 elements, output allocated per call as in eager use.
// The `.kernel` rows call the addon on a preallocated output (torch: `out=`), which
// separates the kernel's speed from the cost of allocating and freeing the output.
// Peer: torch's eager op at the same thread count; without torch, a plain JS loop.
import { randn } from '../lib/ops/creation.js';
import { add, Bin, gelu, mul, Un } from '../lib/ops/elementwise.js';
import { native } from '../lib/native.js';
import type { Tensor } from '../lib/tensor.js';
import { fmtShape, guarded, makeRow, timeIt, timeOptions, type BenchContext, type PeerCase, type Row } from './common.js';

interface Case {
  bench: string; n: number; arrays: number; fn: () => void; naive: () => void; peer: PeerCase;
}

const F32 = 4;

function naiveBinary(a: Float32Array, b: Float32Array, op: (x: number, y: number) => number): () => void {
  return () => {
    const o = new Float32Array(a.length);
    for (let i = 0; i < a.length; i++) o[i] = op(a[i], b[i]);
  };
}

function naiveGelu(x: Float32Array): () => void {
  const k = Math.sqrt(2 / Math.PI);
  return () => {
    const o = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      o[i] = 0.5 * v * (1 + Math.tanh(k * (v + 0.044715 * v * v * v)));
    }
  };
}

export function run(ctx: BenchContext): Row[] {
  // 1K..16M: from per-op overhead through L1/L2/L3 to DRAM bandwidth, and the size where threads start to pay
  const sizes = ctx.quick ? [1 << 10, 1 << 20, 1 << 22] : [1 << 10, 1 << 14, 1 << 18, 1 << 20, 1 << 22, 1 << 24];
  const base = timeOptions(ctx.quick);
  const rows: Row[] = [];
  for (const n of sizes) {
    // (fewer samples from 4M on, where one call lasts milliseconds: the whole run stays under 40 s)
    const opts = n >= 1 << 22 ? { ...base, samples: Math.min(base.samples ?? 11, 5), minSampleMs: 20 } : base;
    const a: Tensor = randn([n]), b: Tensor = randn([n]);
    const da = a.storage.data as Float32Array, db = b.storage.data as Float32Array, out = new Float32Array(n);
    const cases: Case[] = [
      { bench: 'elementwise.add', n, arrays: 3, fn: () => add(a, b).dispose(), naive: naiveBinary(da, db, (x, y) => x + y),
        peer: { op: 'add', shapes: [[n], [n]], dtype: 'float32' } },
      { bench: 'elementwise.mul', n, arrays: 3, fn: () => mul(a, b).dispose(), naive: naiveBinary(da, db, (x, y) => x * y),
        peer: { op: 'mul', shapes: [[n], [n]], dtype: 'float32' } },
      { bench: 'elementwise.gelu', n, arrays: 2, fn: () => gelu(a, { approximate: 'tanh' }).dispose(), naive: naiveGelu(da),
        peer: { op: 'gelu', shapes: [[n]], dtype: 'float32', params: { approximate: 'tanh' } } },
      { bench: 'elementwise.add.kernel', n, arrays: 3, fn: () => native.binary(Bin.add, [n], out, 0, [1], da, 0, [1], db, 0, [1]),
        naive: naiveBinary(da, db, (x, y) => x + y), peer: { op: 'add', shapes: [[n], [n]], dtype: 'float32', params: { out: true } } },
      { bench: 'elementwise.gelu.kernel', n, arrays: 2, fn: () => native.unary(Un.geluTanh, [n], out, 0, [1], da, 0, [1], 0, 0),
        naive: naiveGelu(da), peer: { op: 'gelu', shapes: [[n]], dtype: 'float32', params: { approximate: 'tanh', out: true } } },
    ];
    const live = cases.filter((c) => guarded(`${c.bench} ${fmtShape([n])}`, () => { c.fn(); return true; }));
    const ours = live.map((c) => timeIt(c.fn, opts).ms);
    const peerMs = ctx.peer.available ? ctx.peer.time(live.map((c) => c.peer), opts) : live.map((c) => timeIt(c.naive, opts).ms);
    const peer = ctx.peer.available ? ctx.peer.name : 'naive JS loop';
    live.forEach((c, i) => rows.push(makeRow(ctx, {
      bench: c.bench, shape: fmtShape([n]), dtype: 'float32', ms: ours[i], bytes: c.arrays * n * F32, peer, peerMs: peerMs[i],
    })));
    a.dispose();
    b.dispose();
  }
  return rows;
}
