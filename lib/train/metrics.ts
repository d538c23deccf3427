// Classification metrics with scikit-learn's definitions (sklearn.metrics): accuracy, the
// confusion matrix (rows = true class, columns = predicted class), per-class precision,
// recall, F1 and support with macro, micro and support-weighted averages, and
// classification_report's text layout. A ratio with a zero denominator is 0
// (zero_division=0). Arguments are (preds, labels), each an int tensor or a number array.
import { Tensor } from '../tensor.js';
import { fmt } from '../ops/check.js';

export type ClassIds = Tensor | ArrayLike<number>;

export interface PRF { precision: number; recall: number; f1: number }
export interface ClassScores extends PRF { support: number }
export interface PrecisionRecallF1 {
  perClass: ClassScores[];
  macro: PRF;
  /** Over all classes (single-label): precision = recall = f1 = accuracy. */
  micro: PRF;
  /** Mean of the per-class scores weighted by support. */
  weighted: PRF;
  accuracy: number;
  support: number;
}

function toIds(x: ClassIds, what: string, op: string): Int32Array {
  let vals: ArrayLike<number>;
  if (x instanceof Tensor) {
    x.assertLive(op);
    if (x.ndim > 1 && x.shape.filter((s) => s !== 1).length > 1) {
      throw new Error(`nodegrad: ${op}: ${what} must be a 1-D tensor of class ids (got shape ${fmt(x.shape)}; for logits take argmax(-1) first)`);
    }
    vals = x.dataSync() as ArrayLike<number>;
  } else if (x !== null && typeof x === 'object' && typeof (x as ArrayLike<number>).length === 'number') {
    vals = x;
  } else {
    throw new Error(`nodegrad: ${op}: ${what} must be a Tensor or an array of class ids (got ${x === null ? 'null' : typeof x})`);
  }
  const out = new Int32Array(vals.length);
  for (let i = 0; i < vals.length; i++) {
    const v = Number(vals[i]);
    if (!Number.isInteger(v) || v < 0 || v > 2147483647) {
      throw new Error(`nodegrad: ${op}: ${what}[${i}] is ${String(vals[i])}; class ids must be non-negative integers`);
    }
    out[i] = v;
  }
  return out;
}

function pair(preds: ClassIds, labels: ClassIds, op: string): [Int32Array, Int32Array] {
  const p = toIds(preds, 'preds', op), l = toIds(labels, 'labels', op);
  if (p.length !== l.length) throw new Error(`nodegrad: ${op}: preds and labels must have the same length (got ${p.length} and ${l.length})`);
  if (p.length === 0) throw new Error(`nodegrad: ${op}: preds and labels are empty`);
  return [p, l];
}

function classCount(p: Int32Array, l: Int32Array, numClasses: number | undefined, op: string): number {
  let max = 0;
  for (let i = 0; i < p.length; i++) max = Math.max(max, p[i], l[i]);
  if (numClasses === undefined) return max + 1;
  if (!Number.isSafeInteger(numClasses) || numClasses <= 0) throw new Error(`nodegrad: ${op}: numClasses must be a positive integer (got ${String(numClasses)})`);
  if (max >= numClasses) {
    const bad = p.includes(max) ? 'preds' : 'labels';
    throw new Error(`nodegrad: ${op}: ${bad} holds class ${max}, out of range for numClasses ${numClasses}`);
  }
  return numClasses;
}

const ratio = (a: number, b: number): number => (b === 0 ? 0 : a / b);
const f1Of = (p: number, r: number): number => (p + r === 0 ? 0 : (2 * p * r) / (p + r));

/** The fraction of predictions equal to the label. */
export function accuracy(preds: ClassIds, labels: ClassIds): number {
  const [p, l] = pair(preds, labels, 'accuracy');
  let hit = 0;
  for (let i = 0; i < p.length; i++) if (p[i] === l[i]) hit++;
  return hit / p.length;
}

/** m[t][q] = how many samples of true class t were predicted as q (sklearn's layout). */
export function confusionMatrix(preds: ClassIds, labels: ClassIds, numClasses?: number): number[][] {
  const [p, l] = pair(preds, labels, 'confusionMatrix');
  const k = classCount(p, l, numClasses, 'confusionMatrix');
  return matrix(p, l, k);
}

function matrix(p: Int32Array, l: Int32Array, k: number): number[][] {
  const m = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let i = 0; i < p.length; i++) m[l[i]][p[i]]++;
  return m;
}

/** Per-class precision, recall, F1 and support, with macro, micro and weighted averages. */
export function precisionRecallF1(preds: ClassIds, labels: ClassIds, numClasses?: number): PrecisionRecallF1 {
  const op = 'precisionRecallF1';
  const [p, l] = pair(preds, labels, op);
  const k = classCount(p, l, numClasses, op);
  return scores(matrix(p, l, k));
}

function scores(m: number[][]): PrecisionRecallF1 {
  const k = m.length;
  const perClass: ClassScores[] = [];
  let tpAll = 0, predAll = 0, total = 0;
  for (let c = 0; c < k; c++) {
    const tp = m[c][c];
    let support = 0, predicted = 0;
    for (let j = 0; j < k; j++) { support += m[c][j]; predicted += m[j][c]; }
    const precision = ratio(tp, predicted), recall = ratio(tp, support);
    perClass.push({ precision, recall, f1: f1Of(precision, recall), support });
    tpAll += tp; predAll += predicted; total += support;
  }
  const avg = (w: (s: ClassScores) => number): PRF => {
    let wsum = 0;
    const acc = { precision: 0, recall: 0, f1: 0 };
    for (const s of perClass) {
      const wt = w(s);
      wsum += wt;
      acc.precision += wt * s.precision; acc.recall += wt * s.recall; acc.f1 += wt * s.f1;
    }
    return { precision: ratio(acc.precision, wsum), recall: ratio(acc.recall, wsum), f1: ratio(acc.f1, wsum) };
  };
  const mp = ratio(tpAll, predAll), mr = ratio(tpAll, total);
  return {
    perClass,
    macro: avg(() => 1),
    micro: { precision: mp, recall: mr, f1: f1Of(mp, mr) },
    weighted: avg((s) => s.support),
    accuracy: ratio(tpAll, total),
    support: total,
  };
}

/** v with `digits` decimals as Python's format() writes it: an exact tie rounds to even. */
function fixed(v: number, digits: number): string {
  const s = v.toFixed(digits);
  const exact = v.toFixed(Math.min(100, digits + 60));
  const cut = exact.indexOf('.') + 1 + digits;
  if (!/^50*$/.test(exact.slice(cut))) return s;
  const kept = exact.slice(0, digits === 0 ? cut - 1 : cut);
  return Number(kept[kept.length - 1]) % 2 === 0 ? kept : s;
}

export interface ReportOptions {
  numClasses?: number;
  /** Row names, one per class (default: the class ids). */
  targetNames?: readonly string[];
  /** Decimal places (default 2). */
  digits?: number;
}

/** The per-class table and averages as sklearn's classification_report prints them. */
export function classificationReport(preds: ClassIds, labels: ClassIds, opts: ReportOptions = {}): string {
  const op = 'classificationReport';
  const [p, l] = pair(preds, labels, op);
  const k = classCount(p, l, opts.numClasses ?? opts.targetNames?.length, op);
  const digits = opts.digits ?? 2;
  if (!Number.isInteger(digits) || digits < 0 || digits > 10) throw new Error(`nodegrad: ${op}: digits must be an integer in [0, 10] (got ${String(opts.digits)})`);
  const names = opts.targetNames ? [...opts.targetNames] : Array.from({ length: k }, (_, i) => String(i));
  if (names.length !== k) throw new Error(`nodegrad: ${op}: targetNames has ${names.length} names for ${k} classes`);
  const s = scores(matrix(p, l, k));
  const width = Math.max('weighted avg'.length, digits, ...names.map((n) => n.length));
  const num = (v: number): string => fixed(v, digits).padStart(9);
  const row = (name: string, v: PRF, support: number): string =>
    `${name.padStart(width)}  ${num(v.precision)} ${num(v.recall)} ${num(v.f1)} ${String(support).padStart(9)}\n`;
  let out = `${''.padStart(width)}  ${'precision'.padStart(9)} ${'recall'.padStart(9)} ${'f1-score'.padStart(9)} ${'support'.padStart(9)}\n\n`;
  s.perClass.forEach((c, i) => { out += row(names[i], c, c.support); });
  out += '\n';
  out += `${'accuracy'.padStart(width)}  ${''.padStart(9)} ${''.padStart(9)} ${num(s.accuracy)} ${String(s.support).padStart(9)}\n`;
  out += row('macro avg', s.macro, s.support);
  out += row('weighted avg', s.weighted, s.support);
  return out;
}

/** The confusion matrix as an aligned text table (rows = true class, columns = predicted). */
export function formatConfusionMatrix(m: number[][], names?: readonly string[]): string {
  const k = m.length;
  const labels = names ? [...names] : Array.from({ length: k }, (_, i) => String(i));
  const w = Math.max(...m.flat().map((v) => String(v).length), ...labels.map((s) => s.length), 4);
  const head = `${'true\\pred'.padStart(Math.max(9, w))} ${labels.map((s) => s.padStart(w)).join(' ')}`;
  const rows = m.map((r, i) => `${labels[i].padStart(Math.max(9, w))} ${r.map((v) => String(v).padStart(w)).join(' ')}`);
  return [head, ...rows].join('\n');
}
