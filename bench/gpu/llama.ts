// The Llama family's kernels on CUDA, at Llama-3-8B-like sizes (hidden 4096, 32 query
// heads, 8 kv heads, head dim 128, MLP 14336), bfloat16 (and float32 for RMSNorm):
//   rmsnorm.fwd / rmsnorm.fwdbwd / addrmsnorm.fwd  [rows, C]
//   rope.fwd / rope.fwdbwd                         q [B, 32, T, 128] (strided, from [B, T, 32, 128])
//   swiglu.fwd / swiglu.fwdbwd                     [rows, 14336]
//   gqa.fwd / gqa.fwdbwd                           q [B, 32, T, 128], k/v [B, 8, T, 128], causal (+ window 4096)
// GB/s counts the bytes that must move per call (N elements of e bytes):
//   rmsnorm.fwd: read x, write y (2 N e) + w + rstd; fwdbwd: + read g, x, write gx (3 N e) + gw
//   addrmsnorm.fwd: read x, residual, write sum, y (4 N e); rope: 2 N e (fwdbwd 4 N e)
//   swiglu.fwd: 3 N e; fwdbwd: 3 N e + read dy, gate, up, write dgate, dup (5 N e)
// TFLOP/s for attention: forward 4 B Hq T^2 D (halved when causal; with a window W the
// visible pairs are counted exactly), fwdbwd 3.5x that.
// Peer: PyTorch eager as HF runs these (llama_peer.py): LlamaRMSNorm's formula,
// apply_rotary_pos_emb with cos/sin precomputed by the rotary module (their cost not
// counted), act_fn(gate) * up, F.scaled_dot_product_attention(enable_gqa=True).
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { scaledDotProductAttention } from '../../lib/ops/attention.js';
import { addRmsNorm, rmsNorm, rotaryEmbedding, swiglu } from '../../lib/ops/llama.js';
import { BF16_PEAK_TFLOPS, gbps, HBM_PEAK_GBPS, runPeer, tflops, timeCuda, withPeer, type Row } from './row.js';

export const title = 'CUDA Llama kernels (RMSNorm, rotary, SwiGLU, GQA attention)';

type DT = 'float32' | 'bfloat16';
const SIZE: Record<DT, number> = { float32: 4, bfloat16: 2 };

export interface LlamaCase { bench: string; shape: number[]; dtype: DT; window?: number }

function cases(quick: boolean): LlamaCase[] {
  const out: LlamaCase[] = [];
  const rows = quick ? [8192] : [8192, 32768];
  for (const R of rows) {
    for (const C of quick ? [4096] : [2048, 4096, 8192]) {
      for (const dtype of ['float32', 'bfloat16'] as const) {
        for (const bench of ['rmsnorm.fwd', 'rmsnorm.fwdbwd', 'addrmsnorm.fwd']) out.push({ bench, shape: [R, C], dtype });
      }
    }
    out.push({ bench: 'swiglu.fwd', shape: [R, 14336], dtype: 'bfloat16' }, { bench: 'swiglu.fwdbwd', shape: [R, 14336], dtype: 'bfloat16' });
  }
  for (const T of quick ? [2048] : [2048, 8192]) {
    const B = 16384 / T;
    out.push({ bench: 'rope.fwd', shape: [B, 32, T, 128], dtype: 'bfloat16' }, { bench: 'rope.fwdbwd', shape: [B, 32, T, 128], dtype: 'bfloat16' });
    out.push({ bench: 'gqa.fwd', shape: [B, 32, 8, T, 128], dtype: 'bfloat16' }, { bench: 'gqa.fwdbwd', shape: [B, 32, 8, T, 128], dtype: 'bfloat16' });
    if (T > 4096) {
      out.push({ bench: 'gqa.fwd', shape: [B, 32, 8, T, 128], dtype: 'bfloat16', window: 4096 });
      out.push({ bench: 'gqa.fwdbwd', shape: [B, 32, 8, T, 128], dtype: 'bfloat16', window: 4096 });
    }
  }
  return out;
}

export const shapeOf = (c: LlamaCase): string => `[${c.shape.join(',')}]${c.window ? ` window ${c.window}` : ''}`;

export async function run(opts: { quick: boolean }): Promise<Row[]> {
  const cs = cases(opts.quick);
  const out = cs.map((c) => measure(c, opts.quick));
  const peer = runPeer('llama_peer.py', { cases: cs, quick: opts.quick });
  return out.map((r) => withPeer(r, peer, 'torch eager (HF Llama ops)', (p) => p.bench === r.bench && p.shape === r.shape && p.dtype === r.dtype));
}

/** Visible (query, key) pairs of causal attention over T with an optional window. */
function pairs(T: number, window?: number): number {
  if (!window || window >= T) return (T * (T + 1)) / 2;
  return (window * (window + 1)) / 2 + (T - window) * window;
}

function measure(c: LlamaCase, quick: boolean): Row {
  ng.manualSeed(0);
  const dev = { device: 'cuda' as const, dtype: c.dtype };
  const e = SIZE[c.dtype];
  const keep: Tensor[] = [];
  const mk = (shape: number[], grad = false): Tensor => {
    const t = ng.randn(shape, dev).keep();
    if (grad) t.requiresGrad_(true);
    keep.push(t);
    return t;
  };
  const timing = c.bench.startsWith('gqa') ? { iters: quick ? 3 : 10, reps: quick ? 3 : 7 } : { iters: quick ? 5 : 20, reps: quick ? 5 : 9 };
  const grads = (): void => { for (const t of keep) t.zeroGrad(); };
  let fn: () => unknown;
  let bytes = 0, flops = 0;
  const bwd = c.bench.endsWith('fwdbwd');
  if (c.bench.includes('rmsnorm')) {
    const [R, C] = c.shape, N = R * C;
    const x = mk([R, C], bwd), w = mk([C], bwd), r = mk([R, C]), g = mk([R, C]);
    if (c.bench === 'addrmsnorm.fwd') {
      fn = () => ng.noGrad(() => addRmsNorm(x, r, w));
      bytes = 4 * N * e + C * e + 4 * R;
    } else if (!bwd) {
      fn = () => ng.noGrad(() => rmsNorm(x, w));
      bytes = 2 * N * e + C * e + 4 * R;
    } else {
      fn = () => { grads(); rmsNorm(x, w).backward(g); };
      bytes = 5 * N * e + 3 * C * e + 8 * R;
    }
  } else if (c.bench.startsWith('swiglu')) {
    const [R, I] = c.shape, N = R * I;
    const a = mk([R, I], bwd), u = mk([R, I], bwd), g = mk([R, I]);
    fn = bwd ? () => { grads(); swiglu(a, u).backward(g); } : () => ng.noGrad(() => swiglu(a, u));
    bytes = (bwd ? 8 : 3) * N * e;
  } else if (c.bench.startsWith('rope')) {
    const [B, H, T, D] = c.shape, N = B * H * T * D;
    const base = mk([B, T, H, D], bwd), g = mk([B, H, T, D]);
    const inv = Float64Array.from({ length: D / 2 }, (_, i) => 1 / 500000 ** ((2 * i) / D));
    fn = bwd ? () => { grads(); rotaryEmbedding(base.transpose(1, 2), { invFreq: inv }).backward(g); }
      : () => ng.noGrad(() => rotaryEmbedding(base.transpose(1, 2), { invFreq: inv }));
    bytes = (bwd ? 4 : 2) * N * e;
  } else {
    const [B, Hq, Hkv, T, D] = c.shape;
    const q = mk([B, Hq, T, D], bwd), k = mk([B, Hkv, T, D], bwd), v = mk([B, Hkv, T, D], bwd), g = mk([B, Hq, T, D]);
    const o = { enableGqa: true, isCausal: true, slidingWindow: c.window ?? null };
    fn = bwd ? () => { grads(); scaledDotProductAttention(q, k, v, o).backward(g); } : () => ng.noGrad(() => scaledDotProductAttention(q, k, v, o));
    flops = 4 * B * Hq * pairs(T, c.window) * D * (bwd ? 3.5 : 1);
  }
  const ms = timeCuda(fn, timing);
  for (const t of keep) { t.zeroGrad(); t.dispose(); }
  const row: Row = { bench: c.bench, shape: shapeOf(c), dtype: c.dtype, ms };
  if (flops) {
    row.tflops = tflops(flops, ms);
    row.pctPeak = (100 * row.tflops) / BF16_PEAK_TFLOPS;
  } else {
    row.gbps = gbps(bytes, ms);
    row.pctPeak = (100 * row.gbps) / HBM_PEAK_GBPS;
  }
  return row;
}
