import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import {
  accuracy, classificationReport, confusionMatrix, formatConfusionMatrix, precisionRecallF1,
} from '../../lib/train/metrics.js';
import { expectClose, lcg } from '../helpers.js';

const ints = (a: number[]): ng.Tensor => ng.tensor(Int32Array.from(a));

/** Per-class scores by counting, straight from the definitions (float64 loops). */
function naiveScores(pred: number[], truth: number[], k: number) {
  const out = [];
  for (let c = 0; c < k; c++) {
    let tp = 0, fp = 0, fn = 0;
    for (let i = 0; i < pred.length; i++) {
      if (pred[i] === c && truth[i] === c) tp++;
      else if (pred[i] === c) fp++;
      else if (truth[i] === c) fn++;
    }
    const p = tp + fp === 0 ? 0 : tp / (tp + fp), r = tp + fn === 0 ? 0 : tp / (tp + fn);
    out.push({ p, r, f: p + r === 0 ? 0 : 2 * p * r / (p + r), support: tp + fn });
  }
  return out;
}

describe('accuracy', () => {
  it('matches the sklearn accuracy_score example (0.5)', () => {
    expect(accuracy([0, 2, 1, 3], [0, 1, 2, 3])).toBe(0.5);
  });

  it('takes int32 tensors and number arrays alike', () => {
    expect(accuracy(ints([1, 1, 0, 2]), ints([1, 0, 0, 2]))).toBe(0.75);
    expect(accuracy(ints([1, 1, 0, 2]), [1, 0, 0, 2])).toBe(0.75);
    expect(accuracy(ng.tensor([[1], [2]]).argmax(1), [0, 0])).toBe(1);
  });
});

describe('confusionMatrix', () => {
  it('matches the sklearn confusion_matrix example (rows are true classes)', () => {
    expect(confusionMatrix([0, 0, 2, 2, 0, 2], [2, 0, 2, 2, 0, 1])).toEqual([[2, 0, 0], [0, 0, 1], [1, 0, 2]]);
  });

  it('pads to numClasses and sums to the sample count', () => {
    const m = confusionMatrix(ints([0, 1, 1]), ints([0, 1, 0]), 4);
    expect(m).toEqual([[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]);
    expect(m.flat().reduce((a, b) => a + b, 0)).toBe(3);
  });

  it('prints an aligned table', () => {
    const text = formatConfusionMatrix([[12, 0], [3, 100]], ['cat', 'dog']);
    expect(text.split('\n')).toEqual([
      'true\\pred  cat  dog',
      '      cat   12    0',
      '      dog    3  100',
    ]);
  });
});

describe('precisionRecallF1', () => {
  it('matches the sklearn precision_score / recall_score / f1_score examples', () => {
    const yTrue = [0, 1, 2, 0, 1, 2], yPred = [0, 2, 1, 0, 0, 1];
    const s = precisionRecallF1(yPred, yTrue);
    expectClose(s.perClass.map((c) => c.precision), [2 / 3, 0, 0], { atol: 1e-12 });
    expectClose(s.perClass.map((c) => c.recall), [1, 0, 0], { atol: 1e-12 });
    expectClose(s.perClass.map((c) => c.f1), [0.8, 0, 0], { atol: 1e-12 });
    expectClose([s.macro.precision, s.macro.recall, s.macro.f1], [2 / 9, 1 / 3, 0.8 / 3], { atol: 1e-12 });
    expectClose([s.micro.precision, s.micro.recall, s.micro.f1], [1 / 3, 1 / 3, 1 / 3], { atol: 1e-12 });
    expectClose([s.weighted.precision, s.weighted.recall, s.weighted.f1], [2 / 9, 1 / 3, 0.8 / 3], { atol: 1e-12 });
    expect(s.perClass.map((c) => c.support)).toEqual([2, 2, 2]);
    expect(s.accuracy).toBeCloseTo(1 / 3, 12);
  });

  it('matches the sklearn precision_recall_fscore_support example (cat/dog/pig)', () => {
    const names = ['cat', 'dog', 'pig'];
    const id = (xs: string[]): number[] => xs.map((x) => names.indexOf(x));
    const yTrue = id(['cat', 'dog', 'pig', 'cat', 'dog', 'pig']);
    const yPred = id(['cat', 'pig', 'dog', 'cat', 'cat', 'dog']);
    const s = precisionRecallF1(ints(yPred), ints(yTrue), 3);
    expectClose([s.macro.precision, s.macro.recall, s.macro.f1], [0.2222222, 0.3333333, 0.2666666], { atol: 1e-6 });
    expectClose([s.micro.precision, s.micro.recall, s.micro.f1], [1 / 3, 1 / 3, 1 / 3], { atol: 1e-12 });
    expectClose([s.weighted.precision, s.weighted.recall, s.weighted.f1], [0.2222222, 0.3333333, 0.2666666], { atol: 1e-6 });
    // sklearn lists labels=['pig', 'dog', 'cat']: precision [0, 0, 0.667], recall [0, 0, 1], f [0, 0, 0.8]
    expectClose(s.perClass.map((c) => c.precision), [2 / 3, 0, 0], { atol: 1e-12 });
    expectClose(s.perClass.map((c) => c.f1), [0.8, 0, 0], { atol: 1e-12 });
  });

  it('scores a class that is never predicted, or absent altogether, as 0 (zero_division=0)', () => {
    // sklearn's zero_division example: every prediction is class 0
    const s = precisionRecallF1([0, 0, 0, 0, 0, 0], [0, 1, 2, 0, 1, 2]);
    expectClose(s.perClass.map((c) => c.precision), [1 / 3, 0, 0], { atol: 1e-12 });
    const absent = precisionRecallF1([0, 1], [0, 1], 3);
    expect(absent.perClass[2]).toEqual({ precision: 0, recall: 0, f1: 0, support: 0 });
    expectClose([absent.macro.f1, absent.weighted.f1, absent.micro.f1], [2 / 3, 1, 1], { atol: 1e-12 });
  });

  it('matches counting from the definitions on random labels', () => {
    const r = lcg(7), k = 5, n = 997;
    const truth = Array.from({ length: n }, () => Math.floor((r() + 1) / 2 * k));
    const pred = truth.map((t) => ((r() + 1) / 2 < 0.6 ? t : Math.floor((r() + 1) / 2 * k)));
    const s = precisionRecallF1(ints(pred), truth, k);
    const ref = naiveScores(pred, truth, k);
    expectClose(s.perClass.map((c) => c.precision), ref.map((c) => c.p), { atol: 1e-12 });
    expectClose(s.perClass.map((c) => c.recall), ref.map((c) => c.r), { atol: 1e-12 });
    expectClose(s.perClass.map((c) => c.f1), ref.map((c) => c.f), { atol: 1e-12 });
    expect(s.perClass.map((c) => c.support)).toEqual(ref.map((c) => c.support));
    expectClose(s.macro.f1, ref.reduce((a, c) => a + c.f, 0) / k, { atol: 1e-12 });
    expectClose(s.micro.f1, accuracy(pred, truth), { atol: 1e-12 });
  });
});

describe('classificationReport', () => {
  it('prints the sklearn classification_report example character for character', () => {
    const text = classificationReport([0, 0, 2, 2, 1], [0, 1, 2, 2, 2], { targetNames: ['class 0', 'class 1', 'class 2'] });
    expect(text).toBe([
      '              precision    recall  f1-score   support',
      '',
      '     class 0       0.50      1.00      0.67         1',
      '     class 1       0.00      0.00      0.00         1',
      '     class 2       1.00      0.67      0.80         3',
      '',
      '    accuracy                           0.60         5',
      '   macro avg       0.50      0.56      0.49         5',
      'weighted avg       0.70      0.60      0.61         5',
      '',
    ].join('\n'));
  });

  it('rounds exact ties to even as Python does and honours digits', () => {
    // precision of class 0 is 5/8 = 0.625 exactly: Python prints 0.62
    const preds = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    const labels = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1];
    const text = classificationReport(preds, labels);
    expect(text.split('\n')[2]).toBe('           0       0.62      1.00      0.77         5');
    expect(classificationReport(preds, labels, { digits: 4 }).split('\n')[2]).toContain('0.6250');
  });
});

describe('metrics input checks', () => {
  it('rejects mismatched lengths, empty inputs, bad ids and out-of-range classes', () => {
    expect(() => accuracy([0, 1], [0])).toThrow(/nodegrad: accuracy: preds and labels must have the same length \(got 2 and 1\)/);
    expect(() => accuracy([], [])).toThrow(/nodegrad: accuracy: preds and labels are empty/);
    expect(() => accuracy([0, 1.5], [0, 1])).toThrow(/nodegrad: accuracy: preds\[1\] is 1.5/);
    expect(() => accuracy([0, -1], [0, 1])).toThrow(/nodegrad: accuracy: preds\[1\] is -1/);
    expect(() => confusionMatrix([0, 3], [0, 1], 3)).toThrow(/nodegrad: confusionMatrix: preds holds class 3, out of range for numClasses 3/);
    expect(() => precisionRecallF1([0, 1], [0, 1], 0)).toThrow(/nodegrad: precisionRecallF1: numClasses must be a positive integer/);
    expect(() => accuracy(ng.zeros([2, 3]), [0, 1])).toThrow(/nodegrad: accuracy: preds must be a 1-D tensor of class ids \(got shape \[2,3\]/);
    expect(() => accuracy('01' as unknown as number[], [0, 1])).toThrow(/nodegrad: accuracy: preds must be a Tensor or an array/);
    expect(() => classificationReport([0, 1], [0, 1], { targetNames: ['a'] })).toThrow(/nodegrad: classificationReport: preds holds class 1, out of range for numClasses 1/);
  });
});
