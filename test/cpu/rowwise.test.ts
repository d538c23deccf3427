// Row-wise kernels (softmax, logSoftmax, layerNorm, rmsNorm, crossEntropy) at the widths
// their vector loops split differently (C = 1, 7, 768, 8193: below one vector, a tail, a
// whole number of vectors, a long row with a tail), over contiguous rows, a transposed
// view and a column slice, forward and backward against a naive float64 reference.
import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { layerNorm } from '../../lib/ops/layernorm.js';
import { rmsNorm } from '../../lib/ops/llama.js';
import { crossEntropy } from '../../lib/ops/loss.js';
import { logSoftmax, softmax } from '../../lib/ops/softmax.js';
import { expectClose, lcg } from '../helpers.js';

type Rows = number[][];
type Layout = 'contiguous' | 'transposed' | 'sliced';
const PAD = 3;  // the sliced layout is columns [PAD, PAD + C) of [R, C + 2 PAD]

/** A leaf tensor and the [R, C] view of it the op sees, with x[r][c] at base index at(r, c). */
function make(x: Rows, layout: Layout, dtype: 'float32' | 'float64') {
  const R = x.length, C = x[0].length;
  let shape: number[], at: (r: number, c: number) => number;
  if (layout === 'contiguous') { shape = [R, C]; at = (r, c) => r * C + c; }
  else if (layout === 'transposed') { shape = [C, R]; at = (r, c) => c * R + r; }
  else { shape = [R, C + 2 * PAD]; at = (r, c) => r * (C + 2 * PAD) + c + PAD; }
  const n = shape[0] * shape[1];
  const data = new Array<number>(n).fill(0);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) data[at(r, c)] = x[r][c];
  const base = ng.tensor(data, { shape, dtype, requiresGrad: true });
  const view = layout === 'contiguous' ? base : layout === 'transposed' ? base.T : base.narrow(1, PAD, C);
  /** The gradient of the base as the [R, C] rows of the view (and zero elsewhere). */
  const gradRows = (): { rows: number[]; rest: number[] } => {
    const g = Array.from(base.grad!.dataSync() as ArrayLike<number>);
    const rows: number[] = [], seen = new Set<number>();
    for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) { rows.push(g[at(r, c)]); seen.add(at(r, c)); }
    return { rows, rest: g.filter((_, i) => !seen.has(i)) };
  };
  return { base, view, gradRows };
}

function random(R: number, C: number, seed: number, scale = 3): Rows {
  const r = lcg(seed);
  return Array.from({ length: R }, () => Array.from({ length: C }, () => r() * scale));
}

// ---- float64 references over rows --------------------------------------------------------
const sum = (a: number[]): number => a.reduce((s, v) => s + v, 0);
function refSoftmax(x: Rows, g: Rows, log: boolean): { y: number[]; gx: number[] } {
  const y: number[] = [], gx: number[] = [];
  x.forEach((row, r) => {
    const m = Math.max(...row);
    const s = sum(row.map((v) => Math.exp(v - m)));
    const yr = row.map((v) => log ? v - m - Math.log(s) : Math.exp(v - m) / s);
    const gr = g[r];
    if (log) { const sg = sum(gr); yr.forEach((v, c) => gx.push(gr[c] - Math.exp(v) * sg)); }
    else { const d = sum(yr.map((v, c) => v * gr[c])); yr.forEach((v, c) => gx.push(v * (gr[c] - d))); }
    y.push(...yr);
  });
  return { y, gx };
}
function refLayerNorm(x: Rows, w: number[], b: number[], g: Rows, eps: number) {
  const C = w.length, y: number[] = [], gx: number[] = [], gw = new Array<number>(C).fill(0), gb = new Array<number>(C).fill(0);
  x.forEach((row, r) => {
    const mu = sum(row) / C;
    const rs = 1 / Math.sqrt(sum(row.map((v) => (v - mu) ** 2)) / C + eps);
    const xh = row.map((v) => (v - mu) * rs);
    const dxh = g[r].map((v, c) => v * w[c]);
    const m1 = sum(dxh) / C, m2 = sum(dxh.map((v, c) => v * xh[c])) / C;
    xh.forEach((v, c) => {
      y.push(v * w[c] + b[c]);
      gx.push(rs * (dxh[c] - m1 - v * m2));
      gw[c] += g[r][c] * v;
      gb[c] += g[r][c];
    });
  });
  return { y, gx, gw, gb };
}
function refRmsNorm(x: Rows, w: number[], g: Rows, eps: number) {
  const C = w.length, y: number[] = [], gx: number[] = [], gw = new Array<number>(C).fill(0);
  x.forEach((row, r) => {
    const rs = 1 / Math.sqrt(sum(row.map((v) => v * v)) / C + eps);
    const xh = row.map((v) => v * rs);
    const dxh = g[r].map((v, c) => v * w[c]);
    const m = sum(dxh.map((v, c) => v * xh[c])) / C;
    xh.forEach((v, c) => {
      y.push(v * w[c]);
      gx.push(rs * (dxh[c] - v * m));
      gw[c] += g[r][c] * v;
    });
  });
  return { y, gx, gw };
}
function refCrossEntropy(x: Rows, t: number[], g: number) {
  const R = x.length;
  let loss = 0;
  const gx: number[] = [];
  x.forEach((row, r) => {
    const m = Math.max(...row);
    const s = sum(row.map((v) => Math.exp(v - m)));
    loss += (m + Math.log(s) - row[t[r]]) / R;
    row.forEach((v, c) => gx.push(g * (Math.exp(v - m) / s - (c === t[r] ? 1 : 0)) / R));
  });
  return { loss, gx };
}

const widths = [1, 7, 16, 64, 768, 2049, 8193];
const layouts: Layout[] = ['contiguous', 'transposed', 'sliced'];
const rowsFor = (C: number): number => (C > 1000 ? 3 : 33);

describe('row-wise kernels against float64 references', () => {
  for (const dtype of ['float32', 'float64'] as const) {
    const tol = dtype === 'float32' ? { atol: 2e-5, rtol: 2e-4 } : { atol: 1e-10, rtol: 1e-9 };
    for (const C of widths) {
      for (const layout of layouts) {
        if (dtype === 'float64' && layout !== 'contiguous') continue;
        const R = rowsFor(C);
        const x = random(R, C, C * 7 + 1), g = random(R, C, C * 7 + 2, 1);
        const name = `${dtype} [${R},${C}] ${layout}`;

        for (const log of [false, true]) {
          it(`${log ? 'logSoftmax' : 'softmax'} ${name}`, () => {
            const { base, view, gradRows } = make(x, layout, dtype);
            const y = (log ? logSoftmax : softmax)(view, -1);
            const ref = refSoftmax(x, g, log);
            expectClose(y, ref.y, tol);
            y.backward(ng.tensor(g, { dtype }));
            const gr = gradRows();
            expectClose(gr.rows, ref.gx, tol);
            expect(gr.rest.every((v) => v === 0)).toBe(true);
            base.dispose();
          });
        }

        it(`layerNorm ${name}`, () => {
          const { base, view, gradRows } = make(x, layout, dtype);
          const wv = random(1, C, 11)[0], bv = random(1, C, 12)[0];
          const w = ng.tensor(wv, { dtype, requiresGrad: true }), b = ng.tensor(bv, { dtype, requiresGrad: true });
          const y = layerNorm(view, [C], w, b, 1e-5);
          const ref = refLayerNorm(x, wv, bv, g, 1e-5);
          // C = 1: x - mean is 0 exactly, so y = b and every gradient but gb is 0
          expectClose(y, ref.y, tol);
          y.backward(ng.tensor(g, { dtype }));
          expectClose(gradRows().rows, ref.gx, tol);
          expectClose(w.grad!, ref.gw, { atol: tol.atol * R, rtol: tol.rtol });
          expectClose(b.grad!, ref.gb, { atol: tol.atol * R, rtol: tol.rtol });
          base.dispose();
        });

        it(`rmsNorm ${name}`, () => {
          const { base, view, gradRows } = make(x, layout, dtype);
          const wv = random(1, C, 13)[0];
          const w = ng.tensor(wv, { dtype, requiresGrad: true });
          const y = rmsNorm(view, w, 1e-6);
          const ref = refRmsNorm(x, wv, g, 1e-6);
          expectClose(y, ref.y, tol);
          y.backward(ng.tensor(g, { dtype }));
          expectClose(gradRows().rows, ref.gx, tol);
          expectClose(w.grad!, ref.gw, { atol: tol.atol * R, rtol: tol.rtol });
          base.dispose();
        });

        it(`crossEntropy ${name}`, () => {
          const { base, view, gradRows } = make(x, layout, dtype);
          const r = lcg(C + 5);
          const tv = Array.from({ length: R }, () => Math.min(C - 1, Math.floor((r() + 1) / 2 * C)));
          const loss = crossEntropy(view, ng.tensor(tv, { dtype: 'int32' }));
          const ref = refCrossEntropy(x, tv, 0.75);
          expectClose(loss, [ref.loss], tol);
          loss.backward(ng.tensor(0.75, { dtype }));
          expectClose(gradRows().rows, ref.gx, tol);
          base.dispose();
        });
      }
    }
  }
});
