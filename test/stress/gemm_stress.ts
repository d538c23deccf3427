// GEMM stress: each packed / threaded / direct path of the CPU matmul, many times, against
// a float64 reference and bitwise against its own first result. One process runs one
// micro-kernel family (NODEGRAD_GEMM_KERNEL picks it before the first matmul), so the
// caller starts one process per instruction set present.
//   node --import ./scripts/ts-loader.mjs test/stress/gemm_stress.ts [--iters N] [--load]
//        [--threads T] [--dtype float32|float64|both]
// --load runs busy-loop worker threads beside the pool: the threads of one matmul then
// get descheduled at random points, which is when ordering bugs between them show.
// Prints one JSON line {kernel, cases: [{name, dtype, iters, wrong, unstable, maxErr}]}
// and exits 1 when any result was wrong or differed from the first.
import { Worker } from 'node:worker_threads';
import * as ng from '../../lib/index.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : dflt;
};
const iters = Number(opt('iters', '100'));
const load = argv.includes('--load');
const threads = Number(opt('threads', '2'));
const dtypeArg = opt('dtype', 'both');
ng.setNumThreads(threads);

type DT = 'float32' | 'float64';
interface Case {
  name: string;
  M: number; K: number; N: number;
  batch?: number;
  transA?: boolean; // A is the transposed view of a [K, M] tensor
  transB?: boolean; // B is the transposed view of an [N, K] tensor (x @ Wᵀ, as linear and backward use)
}
// KC is 256 for every kernel: K = 264 is one step past it, 4096 sixteen steps.
// Every case is at least 8M multiply-adds so that two threads share it.
const cases: Case[] = [
  { name: 'tall [1024,1024]@[1024,64]', M: 1024, K: 1024, N: 64 },
  { name: 'long K [64,4096]@[4096,64]', M: 64, K: 4096, N: 64 },
  { name: 'A transposed view [64,1024]@[1024,192]', M: 64, K: 1024, N: 192, transA: true },
  { name: 'B transposed view [256,768]@[768,256]', M: 256, K: 768, N: 256, transB: true },
  { name: 'both transposed [192,512]@[512,160]', M: 192, K: 512, N: 160, transA: true, transB: true },
  { name: 'K just above KC [256,264]@[264,256]', M: 256, K: 264, N: 256 },
  { name: 'M below a block [5,2048]@[2048,1024]', M: 5, K: 2048, N: 1024 },
  { name: 'N below a block [2048,1536]@[1536,6]', M: 2048, K: 1536, N: 6 },
  { name: 'ragged edges [301,517]@[517,203]', M: 301, K: 517, N: 203 },
  { name: 'batch of 3 [3,256,512]@[3,512,128]', M: 256, K: 512, N: 128, batch: 3 },
];

let seed = 12345;
const rnd = (): number => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  // sum of 3 uniforms: roughly normal, std 1
  let s = 0;
  for (let i = 0; i < 3; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    s += seed / 4294967296 - 0.5;
  }
  return s * 2;
};

function run(c: Case, dtype: DT) {
  const B = c.batch ?? 1;
  const fill = (n: number): Float32Array | Float64Array => {
    const arr = dtype === 'float32' ? new Float32Array(n) : new Float64Array(n);
    for (let i = 0; i < n; i++) arr[i] = rnd();
    return arr;
  };
  // storage layouts: A as [B, M, K] or [B, K, M]; Bm as [B, K, N] or [B, N, K]
  const aData = fill(B * c.M * c.K);
  const bData = fill(B * c.K * c.N);
  const aStore = ng.tensor(aData, { shape: c.transA ? [B, c.K, c.M] : [B, c.M, c.K], dtype });
  const bStore = ng.tensor(bData, { shape: c.transB ? [B, c.N, c.K] : [B, c.K, c.N], dtype });
  let a = c.transA ? aStore.transpose(1, 2) : aStore;
  let b = c.transB ? bStore.transpose(1, 2) : bStore;
  if (!c.batch) { a = a.squeeze(0); b = b.squeeze(0); }
  const aAt = (bi: number, i: number, p: number) =>
    aData[bi * c.M * c.K + (c.transA ? p * c.M + i : i * c.K + p)];
  const bAt = (bi: number, p: number, j: number) =>
    bData[bi * c.K * c.N + (c.transB ? j * c.K + p : p * c.N + j)];
  // float64 reference and the sum of |a||b| per element (the error scale)
  const ref = new Float64Array(B * c.M * c.N), mag = new Float64Array(B * c.M * c.N);
  for (let bi = 0; bi < B; bi++)
    for (let i = 0; i < c.M; i++) {
      const o = (bi * c.M + i) * c.N;
      for (let p = 0; p < c.K; p++) {
        const av = aAt(bi, i, p);
        for (let j = 0; j < c.N; j++) {
          const pr = av * bAt(bi, p, j);
          ref[o + j] += pr;
          mag[o + j] += Math.abs(pr);
        }
      }
    }
  const tol = dtype === 'float32' ? 2e-6 * Math.sqrt(c.K) : 1e-14 * Math.sqrt(c.K);
  let first: Uint8Array | null = null, wrong = 0, unstable = 0, maxErr = 0;
  for (let it = 0; it < iters; it++) {
    const out = ng.matmul(a, b);
    const v = out.dataSync() as Float32Array | Float64Array;
    let bad = false;
    for (let e = 0; e < v.length; e++) {
      const err = Math.abs(v[e] - ref[e]) / (mag[e] + 1e-30);
      if (!(err <= tol)) bad = true;
      if (err > maxErr || Number.isNaN(err)) maxErr = Number.isNaN(err) ? Infinity : Math.max(maxErr, err);
    }
    if (bad) wrong++;
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    if (!first) first = bytes.slice();
    else if (Buffer.compare(Buffer.from(first), Buffer.from(bytes)) !== 0) unstable++;
    out.dispose();
  }
  aStore.dispose(); bStore.dispose();
  return { name: c.name, dtype, iters, wrong, unstable, maxErr };
}

const workers: Worker[] = [];
if (load) {
  for (let i = 0; i < Math.max(1, threads - 1); i++)
    workers.push(new Worker('let x = 0; for (;;) { x = (x * 1103515245 + 12345) | 0; }', { eval: true }));
}
const dtypes: DT[] = dtypeArg === 'both' ? ['float32', 'float64'] : [dtypeArg as DT];
const results = [];
for (const dt of dtypes) for (const c of cases) results.push(run(c, dt));
for (const w of workers) await w.terminate();
const failed = results.some((r) => r.wrong > 0 || r.unstable > 0);
process.stdout.write(JSON.stringify({ kernel: ng.info().cpu.kernel, threads, load, cases: results }) + '\n');
process.exit(failed ? 1 : 0);
