// Native GEMM: correctness against a naive float64 triple loop, then GFLOP/s.
//   node bench/gemm_native.mjs [--check] [--time] [--threads N] [--quick] [--json FILE]
// With neither --check nor --time both run. --peer also times torch.matmul (Debian's
// python3-torch on OpenBLAS, /usr/bin/python3) on the same shapes and thread count;
// --coretype X sets OPENBLAS_CORETYPE for it (OpenBLAS 0.3.21 does not recognise
// newer Xeons and falls back to its generic Prescott kernels unless told SkylakeX).
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';

const require = createRequire(import.meta.url);
const ng = require('../build/Release/nodegrad.node');
const args = process.argv.slice(2);
const flag = (f) => args.includes(f);
const opt = (f, d) => (args.includes(f) ? args[args.indexOf(f) + 1] : d);
const doCheck = flag('--check') || !flag('--time');
const doTime = flag('--time') || !flag('--check');
const threads = Number(opt('--threads', 2));
ng.setNumThreads(threads);

// Deterministic pseudo-random fill in [-1, 1).
let seed = 12345;
const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 31) - 1;
const fill = (arr) => { for (let i = 0; i < arr.length; ++i) arr[i] = rnd(); return arr; };

// A strided operand: buffer + offset + strides over a logical [...batch, R, C] shape.
// layout 'n': row-major, 't': stored transposed (row stride 1), batch strides 0 when broadcast.
function operand(Arr, batch, R, C, layout, broadcast) {
  const pad = 3; // leading offset so offsets are exercised
  const mat = R * C;
  const nb = broadcast ? 1 : batch.reduce((x, y) => x * y, 1);
  const buf = fill(new Arr(pad + nb * mat + 5));
  const strides = [];
  let s = mat;
  for (let d = batch.length - 1; d >= 0; --d) { strides.unshift(broadcast ? 0 : s); s *= batch[d]; }
  if (layout === 't') strides.push(1, R); else strides.push(C, 1);
  return { buf, off: pad, strides };
}

const at = (op, bi, r, c) => op.buf[op.off + bi.reduce((acc, x, d) => acc + x * op.strides[d], 0) +
  r * op.strides[bi.length] + c * op.strides[bi.length + 1]];

function check({ M, N, K, batch = [], ta = 'n', tb = 'n', bcA = false, bcB = false, beta = 0, alpha = 1, dtype = 'float32', tcol = false }) {
  const Arr = dtype === 'float32' ? Float32Array : Float64Array;
  const A = operand(Arr, batch, M, K, ta, bcA);
  const B = operand(Arr, batch, K, N, tb, bcB);
  const C = operand(Arr, batch, M, N, tcol ? 't' : 'n', false);
  if (beta === 0) C.buf.fill(NaN); // must not be read
  const C0 = Float64Array.from(C.buf);
  const C0view = { ...C, buf: C0 };
  try {
    ng.gemm(M, N, K, batch, A.buf, A.off, A.strides, B.buf, B.off, B.strides, C.buf, C.off, C.strides, alpha, beta);
  } catch (e) { console.log(JSON.stringify({ M, N, K, batch, A: A.strides, B: B.strides, C: C.strides })); throw e; }
  const nb = batch.reduce((x, y) => x * y, 1);
  let maxErr = 0;
  for (let b = 0; b < nb; ++b) {
    const bi = []; let r = b;
    for (let d = batch.length - 1; d >= 0; --d) { bi.unshift(r % batch[d]); r = Math.floor(r / batch[d]); }
    for (let i = 0; i < M; ++i)
      for (let j = 0; j < N; ++j) {
        let s = 0;
        for (let k = 0; k < K; ++k) s += at(A, bi, i, k) * at(B, bi, k, j);
        const want = alpha * s + (beta === 0 ? 0 : beta * at(C0view, bi, i, j));
        const got = at(C, bi, i, j);
        const err = Math.abs(got - want) / (1 + Math.abs(want));
        if (!(err <= maxErr)) maxErr = Number.isNaN(err) ? Infinity : err;
      }
  }
  // Padding around the views must be untouched.
  for (let i = 0; i < C.off; ++i) if (!Object.is(C.buf[i], C0[i])) maxErr = Infinity;
  const tol = (dtype === 'float32' ? 2e-6 : 1e-13) * Math.sqrt(K + 1) * 4;
  return { ok: maxErr <= tol, maxErr, tol };
}

function runChecks() {
  const cases = [];
  const sizes = [1, 2, 7, 13, 14, 15, 33, 65, 129];
  for (const M of sizes) for (const N of [1, 7, 31, 32, 33, 65]) for (const K of [1, 7, 64, 129])
    cases.push({ M, N, K });
  for (const [M, N, K] of [[257, 257, 257], [300, 200, 520], [1, 1000, 300], [1000, 1, 300], [97, 4099, 3], [29, 33, 600]])
    cases.push({ M, N, K });
  for (const ta of ['n', 't']) for (const tb of ['n', 't'])
    for (const [M, N, K] of [[7, 9, 5], [65, 33, 129], [130, 97, 300], [257, 129, 65]]) {
      cases.push({ M, N, K, ta, tb });
      cases.push({ M, N, K, ta, tb, dtype: 'float64' });
    }
  for (const [M, N, K] of [[33, 65, 17], [200, 300, 270]]) {
    cases.push({ M, N, K, beta: 1 });
    cases.push({ M, N, K, beta: 0.5, alpha: -2 });
    cases.push({ M, N, K, beta: 1, dtype: 'float64', tb: 't' });
    cases.push({ M, N, K, tcol: true });
    cases.push({ M, N, K, tcol: true, ta: 't', beta: 1 });
  }
  // Batches: broadcast operands, attention-like shapes, batch counts that do not split evenly.
  cases.push({ M: 16, N: 8, K: 4, batch: [3, 2], bcB: true });
  cases.push({ M: 33, N: 40, K: 17, batch: [5], bcA: true, tb: 't' });
  cases.push({ M: 128, N: 64, K: 128, batch: [4], beta: 1 });
  cases.push({ M: 64, N: 128, K: 64, batch: [2, 3], ta: 't', dtype: 'float64' });
  cases.push({ M: 300, N: 200, K: 100, batch: [3], bcB: true });
  cases.push({ M: 5, N: 5, K: 5, batch: [70] });
  // Several KC steps and NC panels shared by all threads (the B panel buffers alternate).
  cases.push({ M: 50, N: 4500, K: 1100, beta: 1 }, { M: 600, N: 700, K: 1100, tb: 't' });
  cases.push({ M: 70, N: 300, K: 1500, batch: [3], ta: 't', beta: 0.5 });
  // Skinny products (direct path, split across threads when large), every layout.
  for (const ta of ['n', 't']) for (const tb of ['n', 't']) {
    cases.push({ M: 1, N: 3001, K: 700, ta, tb }, { M: 2, N: 5000, K: 500, ta, tb, beta: 1 });
    cases.push({ M: 4000, N: 3, K: 400, ta, tb }, { M: 3, N: 40, K: 1000, ta, tb, dtype: 'float64' });
    cases.push({ M: 20, N: 9001, K: 300, ta, tb, beta: 1 });
  }
  // Degenerate sizes.
  cases.push({ M: 0, N: 5, K: 5 }, { M: 5, N: 0, K: 5 }, { M: 5, N: 7, K: 0 }, { M: 40, N: 50, K: 0, beta: 1 });
  cases.push({ M: 3, N: 3, K: 3, batch: [0] });
  let fails = 0;
  for (const c of cases) {
    const r = check(c);
    if (!r.ok) { ++fails; console.log('FAIL', JSON.stringify(c), r); }
  }
  // Errors that must be raised instead of touching memory.
  const errs = [
    () => ng.gemm(4, 4, 4, [], new Float32Array(15), 0, [4, 1], new Float32Array(16), 0, [4, 1], new Float32Array(16), 0, [4, 1], 1, 0),
    () => ng.gemm(4, 4, 4, [], new Float32Array(16), 0, [4, 1], new Float64Array(16), 0, [4, 1], new Float32Array(16), 0, [4, 1], 1, 0),
    () => ng.gemm(4, 4, 4, [], new Float32Array(16), 0, [4, 1], new Float32Array(16), 0, [4, 1], new Float32Array(16), 1, [4, 1], 1, 0),
    () => ng.gemm(4, 4, 4, [2], new Float32Array(16), 0, [0, 4, 1], new Float32Array(16), 0, [0, 4, 1], new Float32Array(32), 0, [0, 4, 1], 1, 0),
    () => ng.gemm(2, 2, 2, [], new Int32Array(4), 0, [2, 1], new Int32Array(4), 0, [2, 1], new Int32Array(4), 0, [2, 1], 1, 0),
  ];
  for (const [i, f] of errs.entries()) {
    try { f(); ++fails; console.log('FAIL: no error for bad call', i); } catch (e) { if (i === 1) console.log('  e.g.', e.message); }
  }
  console.log(`correctness: ${cases.length - fails + errs.length}/${cases.length + errs.length} passed` +
    ` (threads ${ng.numThreads()})`);
  return fails === 0;
}

// lay: 'nn' plain, 'nt' B stored transposed (x @ W^T), 'tn' A stored transposed (dY^T @ X).
function timeShape(label, M, N, K, batch = [], lay = 'nn') {
  const nb = batch.reduce((x, y) => x * y, 1);
  const A = fill(new Float32Array(nb * M * K)), B = fill(new Float32Array(nb * K * N)), C = new Float32Array(nb * M * N);
  const bs = (m) => { const s = []; let x = m; for (let d = batch.length - 1; d >= 0; --d) { s.unshift(x); x *= batch[d]; } return s; };
  const sa = lay[0] === 't' ? [...bs(M * K), 1, M] : [...bs(M * K), K, 1];
  const sb = lay[1] === 't' ? [...bs(K * N), 1, K] : [...bs(K * N), N, 1];
  const run = () => ng.gemm(M, N, K, batch, A, 0, sa, B, 0, sb, C, 0, [...bs(M * N), N, 1], 1, 0);
  const flop = 2 * M * N * K * nb;
  const reps = Math.max(3, Math.round(1e10 / flop));
  for (let i = 0; i < 2; ++i) run();
  let best = Infinity;
  for (let r = 0; r < 5; ++r) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; ++i) run();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9 / reps);
  }
  return { label, shape: batch.length ? `${batch.join('x')} x ${M}x${K}@${K}x${N}` : `${M}x${K}@${K}x${N}`,
    ms: best * 1e3, gflops: flop / best / 1e9 };
}

export const SHAPES = [
  ['256^3', 256, 256, 256], ['512^3', 512, 512, 512], ['1024^3', 1024, 1024, 1024], ['2048^3', 2048, 2048, 2048],
  ['fc up 2048x768@768x3072', 2048, 3072, 768], ['fc down 2048x3072@3072x768', 2048, 768, 3072],
  ['lm head 2048x768@768x8192', 2048, 8192, 768],
  ['linear x@W^T 2048x768@(3072x768)^T', 2048, 3072, 768, [], 'nt'],
  ['grad W dY^T@X (2048x3072)^T@2048x768', 3072, 768, 2048, [], 'tn'],
  ['attn QK^T 64x 128x64@64x128', 128, 128, 64, [64]], ['attn PV 64x 128x128@128x64', 128, 64, 128, [64]],
  ['small 64^3', 64, 64, 64],
  ['decode x@W^T 1x768@(3072x768)^T', 1, 3072, 768, [], 'nt'], ['decode x@W 1x768@768x3072', 1, 3072, 768],
  ['decode x@W 4x768@768x3072', 4, 3072, 768], ['decode lm head 1x768@768x50304', 1, 50304, 768],
];

// torch.matmul timed in a long-lived /usr/bin/python3 child, one shape per request
// line, so that nodegrad and torch runs can alternate (this machine is shared).
function torchPeer(coretype) {
  const py = `
import json, sys, time, torch
torch.set_num_threads(${threads})
print(json.dumps({"version": torch.__version__}), flush=True)
for line in sys.stdin:
    M, N, K, batch, lay = json.loads(line)
    a = torch.randn(*batch, K, M).transpose(-1, -2) if lay[0] == 't' else torch.randn(*batch, M, K)
    b = torch.randn(*batch, N, K).transpose(-1, -2) if lay[1] == 't' else torch.randn(*batch, K, N)
    flop = 2 * M * N * K
    for x in batch: flop *= x
    reps = max(3, round(1e10 / flop))
    for _ in range(2): torch.matmul(a, b)
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps): torch.matmul(a, b)
        best = min(best, (time.perf_counter() - t) / reps)
    print(json.dumps(flop / best / 1e9), flush=True)
`;
  const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads) };
  if (coretype) env.OPENBLAS_CORETYPE = coretype;
  const child = spawn('/usr/bin/python3', ['-c', py], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = [];
  let waiting = null, failed = null, buf = '';
  child.on('exit', () => { failed = new Error('torch peer exited'); if (waiting) waiting(); });
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 1); }
    if (waiting && lines.length) { const w = waiting; waiting = null; w(); }
  });
  const next = () => new Promise((res, rej) => {
    const take = () => (lines.length ? res(JSON.parse(lines.shift())) : rej(failed));
    if (lines.length || failed) return take();
    waiting = take;
  });
  return {
    version: next(),
    time: (M, N, K, batch = [], lay = 'nn') => { child.stdin.write(JSON.stringify([M, N, K, batch, lay]) + '\n'); return next(); },
    close: () => child.stdin.end(),
  };
}

let ok = true;
if (doCheck) ok = runChecks();
if (doTime) {
  const info = ng.cpuInfo ? ng.cpuInfo() : {};
  console.log(`timing with ${ng.numThreads()} threads`, JSON.stringify(info));
  const rows = [];
  const only = opt('--only', null);
  const shapes = flag('--quick') ? SHAPES.slice(2, 3) : only ? SHAPES.filter((x) => x[0].includes(only)) : SHAPES;
  const coretype = opt('--coretype', '');
  const peer = flag('--peer') ? torchPeer(coretype) : null;
  let peerName = null;
  if (peer) {
    try { peerName = `torch ${(await peer.version).version} OpenBLAS${coretype ? ` (${coretype})` : ''}`; }
    catch { console.log('torch peer unavailable'); }
  }
  console.log(`${'shape'.padEnd(38)} ${'ms'.padStart(9)} ${'GFLOP/s'.padStart(8)}` +
    (peerName ? ` ${'torch'.padStart(8)}  ratio   (${peerName}, ${threads} threads)` : ''));
  for (const s of shapes) {
    const r = timeShape(...s);
    if (peerName) {
      // Alternate and keep each side's best, so both see the same machine load.
      let best = 0;
      for (let round = 0; round < 4; ++round) {
        best = Math.max(best, await peer.time(...s.slice(1)));
        const again = timeShape(...s);
        if (again.gflops > r.gflops) Object.assign(r, again);
      }
      Object.assign(r, { peer: peerName, peerGflops: best, ratio: r.gflops / best });
    }
    rows.push(r);
    console.log(`${r.label.padEnd(38)} ${r.ms.toFixed(3).padStart(9)} ${r.gflops.toFixed(1).padStart(8)}` +
      (peerName ? ` ${r.peerGflops.toFixed(1).padStart(8)}  ${r.ratio.toFixed(2)}` : ''));
  }
  if (peer) peer.close();
  const out = opt('--json', null);
  if (out) writeFileSync(out, JSON.stringify({ bench: 'gemm_native', threads, rows }, null, 1));
}
process.exit(ok ? 0 : 1);
