// The built-in corpus of `nodegrad train`: additions written out as text, one per line
// ("47+35=82"). Generated from a seed, so nothing is downloaded and every run sees the
// same data; learning is visible as the model starts to answer unseen sums correctly.
import { mulberry32 as rng } from '../random.js';

export interface AdditionCorpusOptions { lines?: number; maxValue?: number; seed?: number }

/** Lines "a+b=c" with 0 <= a, b < maxValue (default 100). */
export function additionCorpus(opts: AdditionCorpusOptions = {}): string {
  const n = opts.lines ?? 20000, max = opts.maxValue ?? 100;
  const r = rng(opts.seed ?? 1234);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const a = Math.floor(r() * max), b = Math.floor(r() * max);
    out.push(`${a}+${b}=${a + b}`);
  }
  return out.join('\n') + '\n';
}

/** Fresh problems for evaluation, as [prompt "a+b=", expected answer]. */
export function additionProblems(count: number, seed = 99, maxValue = 100): [string, string][] {
  const r = rng(seed);
  return Array.from({ length: count }, () => {
    const a = Math.floor(r() * maxValue), b = Math.floor(r() * maxValue);
    return [`${a}+${b}=`, String(a + b)] as [string, string];
  });
}
