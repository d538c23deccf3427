import { describe, expect, it } from 'vitest';
import { fitLinear, leastSquares, solve, syntheticData } from '../../examples/linear-regression.js';
import { trainMnist } from '../../examples/mnist.js';
import * as ng from '../../lib/index.js';
import { expectClose } from '../helpers.js';

describe('linear regression example', () => {
  it('solves the normal equations exactly on a noiseless line and plane', () => {
    expectClose(solve([[2, 1], [1, 3]], [3, 5]), [0.8, 1.4], { atol: 1e-12 });
    const xs = [[0, 1], [1, 0], [2, 2], [3, -1]];
    expectClose(leastSquares(xs, xs.map(([a, b]) => 4 - a + 2 * b)), [4, -1, 2], { atol: 1e-10 });
    expect(() => solve([[1, 2], [2, 4]], [1, 2])).toThrow(/singular/);
  });

  it('gradient descent on y = θ0 + θ1·x reaches the least-squares answer', () => {
    const { x, y } = syntheticData([2, 3], 200, { noise: 1, seed: 1 });
    const live = ng.memory().numTensors;
    const r = fitLinear(x.map((row) => row[0]), y, { steps: 300 });
    expect(ng.memory().numTensors, 'tensors left behind').toBe(live);
    expectClose(r.theta, r.closedForm, { atol: 1e-3, rtol: 1e-3 });
    expectClose(r.theta, [2, 3], { atol: 0.3 });
    expect(r.mse).toBeLessThan(r.closedFormMse * (1 + 1e-5));
    expect(r.history[r.history.length - 1]).toBeLessThan(r.history[0] / 100);
  });

  it('gradient descent with three features matches the closed form', () => {
    const { x, y } = syntheticData([1, 2, -3, 0.5], 500, { noise: 0.5, lo: -5, hi: 5, seed: 2 });
    const r = fitLinear(x, y, { steps: 300 });
    expectClose(r.theta, r.closedForm, { atol: 1e-3, rtol: 1e-3 });
    expectClose(r.closedForm, [1, 2, -3, 0.5], { atol: 0.1 });
  });

  it('stops short of the answer when given too few steps (the check can fail)', () => {
    const { x, y } = syntheticData([2, 3], 100, { seed: 3 });
    const r = fitLinear(x, y, { steps: 3, momentum: 0 });
    expect(Math.abs(r.theta[0] - r.closedForm[0])).toBeGreaterThan(0.1);
  });
});

describe('MNIST example', () => {
  it('a short run of the CNN (2,000 images, two epochs) classifies well above chance', () => {
    const live = ng.memory().numTensors;
    const r = trainMnist({ trainCount: 2000, testCount: 500, epochs: 2, batchSize: 32, augment: false });
    expect(ng.memory().numTensors, 'tensors left behind').toBe(live);
    expect(r.model).toBe('cnn');
    expect(r.epochs).toHaveLength(2);
    expect(r.testAccuracy).toBeGreaterThanOrEqual(0.85);
    expect(r.scores.perClass).toHaveLength(10);
    expect(r.confusion.flat().reduce((a, b) => a + b, 0)).toBe(500);
    expect(r.report).toContain('macro avg');
  });

  it('an augmented run leaves no tensors behind and repeats exactly with the same seed', () => {
    const live = ng.memory().numTensors;
    const a = trainMnist({ trainCount: 256, testCount: 100, epochs: 1, batchSize: 32, seed: 3 });
    expect(ng.memory().numTensors, 'tensors left behind').toBe(live);
    const b = trainMnist({ trainCount: 256, testCount: 100, epochs: 1, batchSize: 32, seed: 3 });
    expect(b.epochs[0].loss).toBe(a.epochs[0].loss);
    expect(b.confusion).toEqual(a.confusion);
  });
});
