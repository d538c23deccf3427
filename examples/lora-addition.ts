// LoRA on a small GPT, end to end on the CPU: a base GPT is trained in full on sums of
// numbers below 50 ("12+30=42"), then frozen; a LoRA adapter (r 8 on c_attn, c_proj, c_fc)
// teaches it sums below 100. Prints loss and exact-match accuracy on unseen sums before
// and after, and the time each phase took.
//   node --import ./scripts/ts-loader.mjs examples/lora-addition.ts
import * as ng from '../lib/index.js';
import { getPeftModel } from '../lib/peft/peft_model.js';

ng.setNumThreads(2);
ng.manualSeed(0);
const T = 16, B = 32;
const cfg: ng.models.GPTConfig = { vocabSize: 256, blockSize: T, nLayer: 3, nHead: 4, nEmbd: 128, dropout: 0, bias: true };
const gpt = new ng.models.GPT(cfg);
const bytes = (s: string): number[] => [...Buffer.from(s, 'latin1')];

function stream(maxValue: number, seed: number): number[] {
  return bytes(ng.data.additionCorpus({ lines: 20000, maxValue, seed }));
}
function batch(data: number[], step: number): { x: ng.Tensor; y: ng.Tensor } {
  let s = step * 7919 + 1;
  const xs: number[][] = [], ys: number[][] = [];
  for (let b = 0; b < B; b++) {
    s = (s * 48271) % 2147483647;
    const i = s % (data.length - T - 1);
    xs.push(data.slice(i, i + T));
    ys.push(data.slice(i + 1, i + T + 1));
  }
  return { x: ng.tensor(xs, { dtype: 'int32' }), y: ng.tensor(ys, { dtype: 'int32' }) };
}
function train(params: ng.Tensor[], data: number[], steps: number, lr: number): { loss: number; seconds: number } {
  const opt = new ng.optim.AdamW(params, { lr, weightDecay: 0 });
  const t0 = performance.now();
  let avg = 0;
  gpt.train();
  for (let s = 0; s < steps; s++) {
    const loss = ng.scope(() => {
      const { x, y } = batch(data, s);
      const l = gpt.forward(x, { targets: y }).loss!;
      l.backward();
      return l.item();
    });
    ng.optim.clipGradNorm(params, 1.0);
    opt.step();
    opt.zeroGrad();
    avg = s < 20 ? loss : 0.95 * avg + 0.05 * loss;
  }
  return { loss: avg, seconds: (performance.now() - t0) / 1000 };
}
function accuracy(maxValue: number): number {
  gpt.eval();
  const probs = ng.data.additionProblems(200, 99, maxValue);
  let ok = 0;
  for (const [q, a] of probs) {
    const out = ng.noGrad(() => gpt.generate([bytes(`\n${q}`)], { maxNewTokens: a.length + 1, temperature: 0 }))[0];
    const text = Buffer.from(out.slice(q.length + 1)).toString('latin1');
    if (text.split('\n')[0] === a) ok++;
  }
  return ok / probs.length;
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
const base = train(gpt.parameters(), stream(50, 1), 3000, 2e-3);
console.log(`base (full, sums < 50): loss ${base.loss.toFixed(3)} in ${base.seconds.toFixed(1)} s; accuracy < 50 ${pct(accuracy(50))}, < 100 ${pct(accuracy(100))}`);
const peft = getPeftModel(gpt, { r: 8, loraAlpha: 16, targetModules: ['c_attn', 'c_proj', 'c_fc'] });
const trainable = peft.trainableParameters();
const lora = train(trainable, stream(100, 2), 3000, 2e-3);
console.log(`LoRA r=8 (${trainable.reduce((n, p) => n + p.numel, 0)} of ${gpt.numParameters()} trainable, sums < 100): loss ${lora.loss.toFixed(3)} in ${lora.seconds.toFixed(1)} s; ` +
  `accuracy < 100 ${pct(accuracy(100))}, < 50 ${pct(accuracy(50))}`);
