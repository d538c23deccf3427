// Row-wise kernels in GB/s: softmax and logSoftmax over the last dim, layerNorm and
// rmsNorm over C, crossEntropy (mean over rows) of [rows, C] logits, float32, at the
// transformer widths C = 64 ... 8192 (8192 rows; 2048 rows at C = 8192; --quick: C = 768
// only). Bytes counted: read x once, write y once (plus the C-sized weight and bias;
// crossEntropy writes one loss per row), the minimum any implementation must move.
// Peer: torch's eager op; without torch, the same op composed from nodegrad's public ops.
import { randint, randn } from '../lib/ops/creation.js';
import { add, div, exp, log, mul, rsqrt, sub } from '../lib/ops/elementwise.js';
import { amax, mean, sum, variance } from '../lib/ops/reduce.js';
import { gather } from '../lib/ops/indexing.js';
import { reshape } from '../lib/ops/shape.js';
import { scope } from '../lib/memory.js';
import type { Tensor } from '../lib/tensor.js';
import { fmtShape, guarded, makeRow, timeIt, timeOptions, type BenchContext, type PeerCase, type Row } from './common.js';

type Softmax = (x: Tensor, dim: number) => Tensor;
type LayerNorm = (x: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null, eps?: number) => Tensor;
type RmsNorm = (x: Tensor, weight: Tensor | null, eps?: number) => Tensor;
type CrossEntropy = (logits: Tensor, targets: Tensor) => Tensor;

/** The ops under test, or null while their files are still placeholders or absent. */
async function load<T>(spec: string, name: string): Promise<T | null> {
  try {
    const mod = (await import(spec)) as Record<string, unknown>;
    return typeof mod[name] === 'function' ? (mod[name] as T) : null;
  } catch (e) {
    process.stderr.write(`bench: skipping ${name}: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}\n`);
    return null;
  }
}

const composedSoftmax = (x: Tensor): Tensor => {
  const e = exp(sub(x, amax(x, -1, true)));
  return div(e, sum(e, -1, true));
};
const composedLogSoftmax = (x: Tensor): Tensor => {
  const z = sub(x, amax(x, -1, true));
  return sub(z, log(sum(exp(z), -1, true)));
};
const composedCrossEntropy = (x: Tensor, t: Tensor): Tensor => mean(gather(composedLogSoftmax(x), 1, reshape(t, [-1, 1]))).neg();
const composedRmsNorm = (x: Tensor, w: Tensor, eps: number): Tensor => mul(w, mul(x, rsqrt(add(mean(mul(x, x), -1, true), eps))));
const composedLayerNorm = (x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor =>
  add(mul(mul(sub(x, mean(x, -1, true)), rsqrt(add(variance(x, -1, { correction: 0, keepdim: true }), eps))), w), b);

interface Case { bench: string; shape: number[]; bytes: number; fn: () => void; naive: () => void; peer: PeerCase }

export async function run(ctx: BenchContext): Promise<Row[]> {
  const softmax = await load<Softmax>('../lib/ops/softmax.js', 'softmax');
  const logSoftmax = await load<Softmax>('../lib/ops/softmax.js', 'logSoftmax');
  const crossEntropy = await load<CrossEntropy>('../lib/ops/loss.js', 'crossEntropy');
  const layerNorm = await load<LayerNorm>('../lib/ops/layernorm.js', 'layerNorm');
  const rmsNorm = await load<RmsNorm>('../lib/ops/llama.js', 'rmsNorm');
  const shapes = ctx.quick ? [[8192, 768]] : [[8192, 64], [8192, 256], [8192, 768], [8192, 1024], [8192, 4096], [2048, 8192]];
  const opts = timeOptions(ctx.quick);
  const eps = 1e-5;
  const rows: Row[] = [];
  for (const [R, C] of shapes) {
    const x = randn([R, C]), w = randn([C]), b = randn([C]), t = randint(0, C, [R]);
    const cases: Case[] = [];
    if (softmax) {
      cases.push({ bench: 'norms.softmax', shape: [R, C], bytes: 2 * R * C * 4, fn: () => softmax(x, -1).dispose(),
        naive: () => scope(() => { composedSoftmax(x); }), peer: { op: 'softmax', shapes: [[R, C]], dtype: 'float32', params: { dim: -1 } } });
    }
    if (logSoftmax) {
      cases.push({ bench: 'norms.logSoftmax', shape: [R, C], bytes: 2 * R * C * 4, fn: () => logSoftmax(x, -1).dispose(),
        naive: () => scope(() => { composedLogSoftmax(x); }), peer: { op: 'log_softmax', shapes: [[R, C]], dtype: 'float32', params: { dim: -1 } } });
    }
    if (layerNorm) {
      cases.push({ bench: 'norms.layerNorm', shape: [R, C], bytes: (2 * R * C + 2 * C) * 4, fn: () => layerNorm(x, [C], w, b, eps).dispose(),
        naive: () => scope(() => { composedLayerNorm(x, w, b, eps); }), peer: { op: 'layernorm', shapes: [[R, C]], dtype: 'float32', params: { eps } } });
    }
    if (rmsNorm) {
      cases.push({ bench: 'norms.rmsNorm', shape: [R, C], bytes: (2 * R * C + C) * 4, fn: () => rmsNorm(x, w, 1e-6).dispose(),
        naive: () => scope(() => { composedRmsNorm(x, w, 1e-6); }), peer: { op: 'rmsnorm', shapes: [[R, C]], dtype: 'float32', params: { eps: 1e-6 } } });
    }
    if (crossEntropy) {
      cases.push({ bench: 'norms.crossEntropy', shape: [R, C], bytes: (R * C + 2 * R) * 4, fn: () => crossEntropy(x, t).dispose(),
        naive: () => scope(() => { composedCrossEntropy(x, t); }), peer: { op: 'cross_entropy', shapes: [[R, C]], dtype: 'float32' } });
    }
    const live = cases.filter((c) => guarded(`${c.bench} ${fmtShape(c.shape)}`, () => { c.fn(); return true; }));
    const ours = live.map((c) => timeIt(c.fn, opts).ms);
    const peerMs = ctx.peer.available ? ctx.peer.time(live.map((c) => c.peer), opts) : live.map((c) => timeIt(c.naive, opts).ms);
    const peer = ctx.peer.available ? ctx.peer.name : 'nodegrad composed ops';
    live.forEach((c, i) => rows.push(makeRow(ctx, {
      bench: c.bench, shape: fmtShape(c.shape), dtype: 'float32', ms: ours[i], bytes: c.bytes, peer, peerMs: peerMs[i],
    })));
    x.dispose(); w.dispose(); b.dispose(); t.dispose();
  }
  return rows;
}
