// Masked-language-model batches, as BERT's pre-training and transformers'
// DataCollatorForLanguageModeling build them: each maskable position is selected with
// probability p (0.15); a selected token becomes [MASK] 80% of the time, a uniformly random
// id 10%, and stays itself 10%. labels hold the original id at selected positions and -100
// (ignored by the loss) everywhere else. Special tokens and padding are never selected.
import { tensor } from '../ops/creation.js';
import { nextRandom } from '../random.js';
import { Tensor } from '../tensor.js';
import { fmt } from '../ops/check.js';
import { Rng } from './dataset.js';

export interface MaskTokensOptions {
  vocabSize: number;
  maskTokenId: number;
  /** Ids never selected ([CLS], [SEP], [PAD], ...). */
  specialTokenIds?: readonly number[];
  /** Padding id, never selected (also listing it in specialTokenIds is fine). */
  padTokenId?: number | null;
  /** [B, T]: positions where it is 0/false are padding and never selected. */
  attentionMask?: Tensor | null;
  /** Selection probability (default 0.15). */
  probability?: number;
  /** Of the selected: fraction replaced by [MASK] (default 0.8) and by a random id (default 0.1). */
  maskFraction?: number;
  randomFraction?: number;
  /** Seed of this call's draws; without it the draws come from the global generator (manualSeed). */
  seed?: number;
}

const OP = 'maskTokens';

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`nodegrad: ${OP}: ${what}`);
}

/** Returns new inputIds (with masks applied) and labels, both int32 of the input's shape. */
export function maskTokens(inputIds: Tensor | number[][], opts: MaskTokensOptions): { inputIds: Tensor; labels: Tensor } {
  const ids = inputIds instanceof Tensor ? inputIds : tensor(inputIds, { dtype: 'int32' });
  try {
    check(ids.dtype === 'int32', `inputIds must be int32 (got ${ids.dtype})`);
    const { vocabSize: V, maskTokenId } = opts ?? ({} as MaskTokensOptions);
    check(Number.isInteger(V) && V > 0, `vocabSize must be a positive integer (got ${String(V)})`);
    check(Number.isInteger(maskTokenId) && maskTokenId >= 0 && maskTokenId < V, `maskTokenId must be an id in [0, ${V}) (got ${String(maskTokenId)})`);
    const p = opts.probability ?? 0.15, pm = opts.maskFraction ?? 0.8, pr = opts.randomFraction ?? 0.1;
    check(p >= 0 && p <= 1, `probability must be in [0, 1] (got ${p})`);
    check(pm >= 0 && pr >= 0 && pm + pr <= 1, `maskFraction and randomFraction must be non-negative with a sum <= 1 (got ${pm} and ${pr})`);
    const special = new Set(opts.specialTokenIds ?? []);
    if (opts.padTokenId !== undefined && opts.padTokenId !== null) special.add(opts.padTokenId);
    let keep: ArrayLike<number> | null = null;
    if (opts.attentionMask) {
      const m = opts.attentionMask;
      check(fmt(m.shape) === fmt(ids.shape), `attentionMask must have the shape of inputIds ${fmt(ids.shape)} (got ${fmt(m.shape)})`);
      keep = m.dataSync() as ArrayLike<number>;
    }
    let seed = opts.seed;
    if (seed === undefined) {
      const [s, o] = nextRandom(1);
      seed = Number((BigInt(s) * 0x9e3779b97f4a7c15n + BigInt(o)) & ((1n << 53n) - 1n));
    }
    const rng = new Rng(seed);
    const u = () => rng.nextU32() / 4294967296;
    const src = ids.dataSync() as Int32Array;
    const out = Int32Array.from(src), labels = new Int32Array(src.length).fill(-100);
    for (let i = 0; i < src.length; i++) {
      // one fixed set of draws per position, so a position's fate depends on the seed only
      const sel = u(), kind = u(), rnd = rng.nextInt(V);
      if (special.has(src[i]) || (keep && !keep[i]) || !(sel < p)) continue;
      labels[i] = src[i];
      if (kind < pm) out[i] = maskTokenId;
      else if (kind < pm + pr) out[i] = rnd;
    }
    const shape = [...ids.shape];
    return { inputIds: tensor(out, { shape }), labels: tensor(labels, { shape }) };
  } finally {
    if (ids !== inputIds) ids.dispose();
  }
}
