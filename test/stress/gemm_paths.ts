// Every CPU GEMM path against a float64 reference, for the micro-kernel family this process
// picked (NODEGRAD_GEMM_KERNEL, read at the first matmul): empty and K = 0 products, K = 1,
// primes, 1 x N and N x 1, GEMV in both layouts (x @ W and x @ Wᵀ), a few rows (short and
// dot kernels), a few columns (narrow kernel, N = 1..17), small unpacked products, packed
// and threaded ones, edge tiles, transposed and strided operands (column strides > 1,
// offsets), broadcast batches (stride 0), alpha and beta, at 1 and 2 threads, float32 and
// float64. Calls the addon's gemm on raw strided buffers, as the ops and autograd do.
//   node --import ./scripts/ts-loader.mjs test/stress/gemm_paths.ts
// Prints one JSON line {kernel, checked, failures: [...]}; exits 1 on any failure.
import { native } from '../../lib/native.js';
import * as ng from '../../lib/index.js';

type Layout = 'n' | 't' | 's'; // row-major, transposed (row stride 1), strided (column stride 2)
interface Case { M: number; N: number; K: number; la: Layout; lb: Layout; lc?: Layout; batch?: number; bcastB?: boolean; alpha?: number; beta?: number }

let seed = 987654321;
const rnd = (): number => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
};

interface Operand { buf: Float32Array | Float64Array; off: number; strides: number[] }
function operand(f64: boolean, batch: number, R: number, C: number, layout: Layout, bcast: boolean): Operand {
  const off = 5;
  const cs = layout === 's' ? 2 : 1;
  const mat = layout === 's' ? R * (C * cs + 1) : R * C; // 's': column stride 2, rows padded by one
  const nb = bcast ? 1 : batch;
  const buf = f64 ? new Float64Array(off + nb * mat + 7) : new Float32Array(off + nb * mat + 7);
  for (let i = 0; i < buf.length; i++) buf[i] = rnd() * 2;
  const strides = batch > 1 ? [bcast ? 0 : mat] : [];
  if (layout === 't') strides.push(1, R);
  else strides.push(C * cs + (layout === 's' ? 1 : 0), cs);
  return { buf, off, strides };
}

function check(c: Case, f64: boolean): string | null {
  const batch = c.batch ?? 1;
  const A = operand(f64, batch, c.M, c.K, c.la, false);
  const B = operand(f64, batch, c.K, c.N, c.lb, c.bcastB ?? false);
  const C = operand(f64, batch, c.M, c.N, c.lc ?? 'n', false);
  const alpha = c.alpha ?? 1, beta = c.beta ?? 0;
  const before = C.buf.slice();
  // beta = 0 must not read C: NaN there must not leak into the result
  if (beta === 0) for (let b = 0; b < batch; b++) for (let i = 0; i < c.M; i++) for (let j = 0; j < c.N; j++) {
    const s = C.strides, n = s.length;
    C.buf[C.off + (n === 3 ? b * s[0] : 0) + i * s[n - 2] + j * s[n - 1]] = NaN;
  }
  const bs = batch > 1 ? [batch] : [];
  native.gemm(c.M, c.N, c.K, bs, A.buf, A.off, A.strides, B.buf, B.off, B.strides, C.buf, C.off, C.strides, alpha, beta);
  const eps = f64 ? 1e-13 : 2e-6;
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < c.M; i++)
      for (let j = 0; j < c.N; j++) {
        let ref = 0, mag = 0;
        let ia = A.off + (batch > 1 ? b * A.strides[0] : 0) + i * A.strides[A.strides.length - 2];
        let ib = B.off + (batch > 1 ? b * B.strides[0] : 0) + j * B.strides[B.strides.length - 1];
        const sa = A.strides[A.strides.length - 1], sb = B.strides[B.strides.length - 2];
        for (let p = 0; p < c.K; p++, ia += sa, ib += sb) {
          const x = A.buf[ia] * B.buf[ib];
          ref += x;
          mag += Math.abs(x);
        }
        const s = C.strides, n = s.length, idx = C.off + (n === 3 ? b * s[0] : 0) + i * s[n - 2] + j * s[n - 1];
        const old = before[idx];
        const want = alpha * ref + (beta === 0 ? 0 : beta * old);
        const tol = eps * (Math.abs(alpha) * mag + Math.abs(beta * old)) * Math.max(1, Math.sqrt(c.K)) + 1e-30;
        const got = C.buf[idx];
        if (!(Math.abs(got - want) <= tol)) return `C[${b},${i},${j}] = ${got}, want ${want} (tolerance ${tol.toExponential(2)})`;
      }
  // elements of C's buffer outside the view are untouched
  const inView = new Set<number>();
  for (let b = 0; b < batch; b++) for (let i = 0; i < c.M; i++) for (let j = 0; j < c.N; j++) {
    const s = C.strides, n = s.length;
    inView.add(C.off + (n === 3 ? b * s[0] : 0) + i * s[n - 2] + j * s[n - 1]);
  }
  for (let q = 0; q < C.buf.length; q++) if (!inView.has(q) && !Object.is(C.buf[q], before[q])) return `wrote outside C at buffer index ${q}`;
  return null;
}

const cases: Case[] = [];
const layouts: [Layout, Layout][] = [['n', 'n'], ['n', 't'], ['t', 'n'], ['t', 't'], ['s', 's']];
const shapes: [number, number, number][] = [
  [0, 5, 3], [4, 0, 3], [3, 4, 0], [1, 1, 1], [7, 13, 1], [1, 37, 19], [37, 1, 19], [7, 13, 11], [97, 101, 103],
  [1, 2000, 600], [2, 700, 515], [3, 1000, 333], [4, 257, 129], [5, 300, 200],
  [300, 1, 70], [300, 2, 70], [777, 5, 130], [513, 8, 300], [300, 9, 70], [600, 15, 257], [600, 16, 257], [600, 17, 257],
  [64, 64, 64], [130, 70, 300],
];
// at least 8M multiply-adds: shared by two threads
const threaded: [number, number, number][] = [[2048, 8, 768], [301, 203, 133], [256, 264, 128], [520, 96, 170], [4, 2048, 1024]];
for (const [M, N, K] of shapes) for (const [la, lb] of layouts) cases.push({ M, N, K, la, lb });
for (const [M, N, K] of threaded) for (const [la, lb] of [['n', 'n'], ['n', 't'], ['t', 't']] as [Layout, Layout][]) cases.push({ M, N, K, la, lb });
cases.push({ M: 97, N: 101, K: 103, la: 'n', lb: 'n', lc: 't' });
cases.push({ M: 3, N: 501, K: 300, la: 'n', lb: 'n', lc: 't' });
cases.push({ M: 300, N: 7, K: 300, la: 't', lb: 'n', lc: 's' });
cases.push({ M: 3, N: 501, K: 300, la: 'n', lb: 'n', alpha: 0.5, beta: 2 });
cases.push({ M: 500, N: 6, K: 300, la: 't', lb: 't', alpha: -1.5, beta: 1 });
cases.push({ M: 301, N: 203, K: 133, la: 'n', lb: 'n', alpha: 2, beta: -0.5 });
cases.push({ M: 1, N: 1000, K: 1000, la: 'n', lb: 't', alpha: 3, beta: 1 });
// x @ W with more columns than one L1 chunk of C (4096 / 2048 / 1024 for 1 / 2 / 3-4 rows),
// K not a multiple of the 4-row B step, so the next-rows prefetch stops short of the end.
cases.push({ M: 1, N: 9001, K: 37, la: 'n', lb: 'n' }, { M: 1, N: 20003, K: 9, la: 'n', lb: 'n', alpha: 0.5, beta: 1 });
cases.push({ M: 2, N: 4500, K: 21, la: 'n', lb: 'n', beta: -1 }, { M: 3, N: 2300, K: 6, la: 'n', lb: 'n' });
cases.push({ M: 64, N: 64, K: 64, la: 'n', lb: 'n', batch: 5 });
cases.push({ M: 3, N: 300, K: 200, la: 'n', lb: 't', batch: 4, bcastB: true });
cases.push({ M: 200, N: 8, K: 150, la: 't', lb: 'n', batch: 3, bcastB: true });
cases.push({ M: 128, N: 200, K: 300, la: 'n', lb: 'n', batch: 3, bcastB: true });

const failures: string[] = [];
let checked = 0;
for (const threads of [1, 2]) {
  ng.setNumThreads(threads);
  for (const f64 of [false, true])
    for (const c of cases) {
      const err = check(c, f64);
      checked++;
      if (err) failures.push(`${threads} thread(s) ${f64 ? 'float64' : 'float32'} ${c.batch ?? 1}x[${c.M},${c.K}]@[${c.K},${c.N}] ${c.la}${c.lb}${c.lc ?? 'n'} alpha ${c.alpha ?? 1} beta ${c.beta ?? 0}: ${err}`);
    }
}
const kernel = ng.info().cpu.gemmKernel;
console.log(JSON.stringify({ kernel, checked, failures: failures.slice(0, 20), failed: failures.length }));
process.exitCode = failures.length ? 1 : 0;
