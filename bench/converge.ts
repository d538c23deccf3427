// Convergence check: nodegrad and PyTorch train the same GPT from the same initial
// weights on the same batches (SpamAssassin mail text, GPT-2 BPE) and must follow the
// same loss curve. Writes both curves (JSON) and a plot (SVG) to bench/results/.
//
//   node --import ./scripts/ts-loader.mjs bench/converge.ts [--device cuda] [--preset gpt2] [--steps 200]
//        [--batch 8] [--seq 256] [--out bench/results/<date>-<device>-converge]
// On the CPU the default is a small model in float32 (a check of the plumbing, minutes);
// on CUDA GPT-2 124M under bf16 autocast on both sides.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tiktoken } from 'js-tiktoken/lite';
import gpt2Ranks from 'js-tiktoken/ranks/gpt2';
import * as ng from '../lib/index.js';
import { spamAssassinExamples } from '../lib/train/finetune.js';
import { peerEnv } from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const a = process.argv.slice(2);
const get = (f: string, d: string): string => (a.includes(f) ? a[a.indexOf(f) + 1] : d);
const device = get('--device', 'cpu') as 'cpu' | 'cuda';
const cuda = device === 'cuda';
const steps = Number(get('--steps', cuda ? '200' : '40'));
const B = Number(get('--batch', cuda ? '8' : '4')), T = Number(get('--seq', cuda ? '512' : '64'));
const lr = Number(get('--lr', '6e-4'));
const preset = get('--preset', cuda ? 'gpt2' : '');
const config: ng.models.GPTConfig = preset
  ? ng.models.GPT.preset(preset, { blockSize: T, dropout: 0 })
  : { vocabSize: 50257, blockSize: T, nLayer: 2, nHead: 2, nEmbd: 64, dropout: 0, bias: true };
const date = new Date().toISOString().slice(0, 10);
const out = path.resolve(get('--out', path.join(here, 'results', `${date}-${cuda ? gpuSlug() : 'cpu'}-converge`)));
const work = fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'nodegrad-converge-'));

function gpuSlug(): string {
  return ng.cuda.getDeviceName().toLowerCase().replace(/nvidia\s*/, '').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

// ---- data: the same token windows for both sides ------------------------------------
const enc = new Tiktoken(gpt2Ranks);
const text = spamAssassinExamples(4000).map((e) => e.text).join('\n<|endoftext|>\n');
const tokens = Int32Array.from(enc.encode(text, 'all'));
const windows = new Int32Array(steps * B * (T + 1));
let seed = 12345;
const rnd = (): number => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296;
for (let i = 0; i < steps * B; i++) {
  const start = Math.floor(rnd() * (tokens.length - T - 1));
  windows.set(tokens.subarray(start, start + T + 1), i * (T + 1));
}
fs.writeFileSync(path.join(work, 'batches.bin'), Buffer.from(windows.buffer));

// ---- initial weights, written raw for the peer ---------------------------------------
ng.manualSeed(0);
const model = new ng.models.GPT(config);
const index: { name: string; shape: number[]; offset: number }[] = [];
const chunks: Buffer[] = [];
let off = 0;
for (const [name, p] of model.namedParameters()) {
  const d = p.dataSync() as Float32Array;
  index.push({ name, shape: [...p.shape], offset: off });
  chunks.push(Buffer.from(d.buffer, d.byteOffset, d.byteLength));
  off += d.byteLength;
}
fs.writeFileSync(path.join(work, 'init.bin'), Buffer.concat(chunks));
const spec = { config, B, T, steps, lr, weightDecay: 0.1, clip: 1.0, device, bf16: cuda, work };
fs.writeFileSync(path.join(work, 'spec.json'), JSON.stringify({ ...spec, params: index }));

// ---- nodegrad ---------------------------------------------------------------------
if (cuda) model.to('cuda');
const opt = new ng.optim.AdamW(model.parameters(), { lr, weightDecay: 0.1, betas: [0.9, 0.95] });
const ours: number[] = [];
const lossTensors: ng.Tensor[] = [];
const t0 = performance.now();
for (let s = 0; s < steps; s++) {
  const loss = ng.scope(() => {
    const w = ng.tensor(windows.subarray(s * B * (T + 1), (s + 1) * B * (T + 1)), { shape: [B, T + 1], device });
    const x = w.narrow(1, 0, T).contiguous(), y = w.narrow(1, 1, T).contiguous();
    const l = ng.autocast({ dtype: 'bfloat16', enabled: cuda }, () => model.forward(x, { targets: y }).loss!);
    l.backward();
    return l.detach();
  });
  lossTensors.push(loss.keep());
  ng.scope(() => { ng.optim.clipGradNormTensor(model.parameters(), 1.0); });
  opt.step();
  opt.zeroGrad();
}
for (const l of lossTensors) { ours.push(l.item()); l.dispose(); }
const oursMs = performance.now() - t0;

// ---- PyTorch ----------------------------------------------------------------------
const py = process.env.NODEGRAD_PEER_PYTHON || (cuda ? 'python3' : '/usr/bin/python3');
// on the CPU the peer gets the same threads and OpenBLAS's kernels for this CPU (bench/common.ts)
const env = cuda ? process.env : peerEnv(ng.getNumThreads());
const r = spawnSync(py, [path.join(here, 'converge_peer.py'), path.join(work, 'spec.json')], { encoding: 'utf8', maxBuffer: 1 << 26, env });
if (r.status !== 0) {
  console.error(`converge: PyTorch peer failed:\n${r.stderr}`);
  process.exit(1);
}
const peer = JSON.parse(r.stdout.trim().split('\n').pop()!) as { torch: string; losses: number[]; ms: number };

// ---- compare, record, plot ------------------------------------------------------------
const diffs = ours.map((v, i) => Math.abs(v - peer.losses[i]));
const tail = Math.max(1, Math.floor(steps / 4));
const meanAbs = diffs.reduce((x, y) => x + y, 0) / diffs.length;
const lastRel = diffs.slice(-tail).reduce((m, d, i) => Math.max(m, d / peer.losses[steps - tail + i]), 0);
const result = {
  date, device: cuda ? ng.cuda.getDeviceName() : 'cpu', torch: peer.torch, config, batch: B, seq: T, steps, lr,
  precision: cuda ? 'bf16 autocast (fp32 master weights) on both sides' : 'float32 on both sides',
  meanAbsDiff: meanAbs, maxRelDiffLastQuarter: lastRel, nodegradMs: oursMs, torchMs: peer.ms,
  nodegrad: ours, torchLosses: peer.losses,
};
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(`${out}.json`, JSON.stringify(result, null, 1) + '\n');
fs.writeFileSync(`${out}.svg`, plot(ours, peer.losses, `${result.device}: ${preset || 'small GPT'} B${B}xT${T}, ${result.precision}`));
console.log(`loss: nodegrad ${ours[0].toFixed(3)} -> ${ours[steps - 1].toFixed(3)}, torch ${peer.losses[0].toFixed(3)} -> ${peer.losses[steps - 1].toFixed(3)}`);
console.log(`mean |diff| ${meanAbs.toFixed(4)}, max relative diff over the last ${tail} steps ${(100 * lastRel).toFixed(2)}%`);
console.log(`wrote ${path.relative(process.cwd(), out)}.json and .svg`);
fs.rmSync(work, { recursive: true, force: true });

function plot(a: number[], b: number[], title: string): string {
  const W = 720, H = 420, L = 60, R = 20, Tp = 40, Bt = 50;
  const all = [...a, ...b].filter(Number.isFinite);
  const lo = Math.min(...all), hi = Math.max(...all);
  const x = (i: number): number => L + ((W - L - R) * i) / Math.max(1, a.length - 1);
  const y = (v: number): number => Tp + (H - Tp - Bt) * (1 - (v - lo) / Math.max(1e-9, hi - lo));
  const line = (v: number[]): string => v.map((p, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(p).toFixed(1)}`).join('');
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => lo + f * (hi - lo));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${title.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</text>
${ticks.map((t) => `<line x1="${L}" x2="${W - R}" y1="${y(t)}" y2="${y(t)}" stroke="#ddd"/><text x="${L - 6}" y="${y(t) + 4}" text-anchor="end">${t.toFixed(2)}</text>`).join('\n')}
<text x="${W / 2}" y="${H - 12}" text-anchor="middle">step</text><text x="${L}" y="${H - 30}">0</text><text x="${W - R}" y="${H - 30}" text-anchor="end">${a.length}</text>
<path d="${line(b)}" fill="none" stroke="#e4572e" stroke-width="2"/>
<path d="${line(a)}" fill="none" stroke="#17becf" stroke-width="2" stroke-dasharray="6 3"/>
<text x="${W - R - 150}" y="${Tp + 10}" fill="#e4572e">PyTorch</text><text x="${W - R - 150}" y="${Tp + 26}" fill="#17becf">nodegrad</text>
</svg>
`;
}
