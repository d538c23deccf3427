import { describe, expect, it } from 'vitest';
import * as ng from '../../lib/index.js';
import { DataLoader, TensorDataset, normalize, randomCrop, randomHorizontalFlip, type Dataset } from '../../lib/data/loader.js';
import { Rng } from '../../lib/data/dataset.js';
import { loadMnist } from '../../lib/data/mnist.js';
import { expectClose } from '../helpers.js';

const flat = (t: ng.Tensor): number[] => Array.from(t.dataSync() as ArrayLike<number>);

/** x[n][c][h][w] = 1000 n + 100 c + 10 h + w: every pixel names its own position. */
function positional(N: number, C: number, H: number, W: number): ng.Tensor {
  const a = new Float32Array(N * C * H * W);
  let k = 0;
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) a[k++] = 1000 * n + 100 * c + 10 * h + w;
  return ng.tensor(a, { shape: [N, C, H, W] });
}

describe('TensorDataset', () => {
  it('indexes every tensor along its first dim', () => {
    const ds = new TensorDataset(ng.arange(12).reshape(6, 2), ng.tensor(Int32Array.from([5, 4, 3, 2, 1, 0])));
    expect(ds.length).toBe(6);
    const [x, y] = ds.get(4);
    expect(x.tolist()).toEqual([8, 9]);
    expect(y.item()).toBe(1);
    expect(ds.getBatch(Int32Array.from([5, 0])).map((t) => t.tolist())).toEqual([[[10, 11], [0, 1]], [0, 5]]);
  });

  it('rejects tensors of different lengths and bad indices', () => {
    expect(() => new TensorDataset(ng.zeros([3, 2]), ng.zeros([4]))).toThrow(/nodegrad: TensorDataset: all tensors must have the same size in dim 0 \(got shapes \[3,2\], \[4\]\)/);
    expect(() => new TensorDataset()).toThrow(/nodegrad: TensorDataset: expected at least one tensor/);
    expect(() => new TensorDataset(ng.tensor(3))).toThrow(/zero-dimensional/);
    expect(() => new TensorDataset(ng.zeros([3])).get(3)).toThrow(/nodegrad: TensorDataset.get: index 3 is out of range for 3 items/);
  });
});

describe('DataLoader', () => {
  const ds = new TensorDataset(ng.arange(10).reshape(10, 1), ng.tensor(Int32Array.from({ length: 10 }, (_, i) => i)));

  it('batches in order without shuffling, with a short last batch unless dropLast', () => {
    const loader = new DataLoader(ds, { batchSize: 4 });
    expect(loader.length).toBe(3);
    const batches = [...loader];
    expect(batches.map(([, y]) => y.tolist())).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    expect(batches[0][0].shape).toEqual([4, 1]);
    const dropped = new DataLoader(ds, { batchSize: 4, dropLast: true });
    expect(dropped.length).toBe(2);
    expect([...dropped].map(([, y]) => y.tolist())).toEqual([[0, 1, 2, 3], [4, 5, 6, 7]]);
  });

  it('shuffles into a permutation that depends only on (seed, epoch)', () => {
    const a = new DataLoader(ds, { batchSize: 3, shuffle: true, seed: 1 });
    const b = new DataLoader(ds, { batchSize: 3, shuffle: true, seed: 1 });
    const epoch0 = [...a].flatMap(([, y]) => y.tolist() as number[]);
    expect([...epoch0].sort((p, q) => p - q)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(epoch0).not.toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect([...b].flatMap(([, y]) => y.tolist() as number[])).toEqual(epoch0);
    // the counter advanced: the next pass is a different order; setEpoch replays
    expect(a.epoch).toBe(1);
    const epoch1 = [...a].flatMap(([, y]) => y.tolist() as number[]);
    expect(epoch1).not.toEqual(epoch0);
    a.setEpoch(0);
    expect([...a].flatMap(([, y]) => y.tolist() as number[])).toEqual(epoch0);
    expect(Array.from(a.order(1))).toEqual(epoch1);
    const other = new DataLoader(ds, { batchSize: 3, shuffle: true, seed: 2 });
    expect([...other].flatMap(([, y]) => y.tolist() as number[])).not.toEqual(epoch0);
  });

  it('keeps images and labels of a sample together', () => {
    const loader = new DataLoader(ds, { batchSize: 4, shuffle: true, seed: 3 });
    for (const [x, y] of loader) expect(flat(x)).toEqual(flat(y));
  });

  it('stacks items of a plain dataset and applies a seeded transform', () => {
    const plain: Dataset = { length: 5, get: (i) => [ng.full([2], i), i] };
    const seen: number[][] = [];
    const loader = new DataLoader(plain, {
      batchSize: 2,
      transform: ([x, y], ctx) => {
        seen.push([ctx.epoch, ctx.batchIndex, ctx.rng.nextU32()]);
        return [x.mul(2), y];
      },
    });
    const batches = [...loader];
    expect(batches.map(([x]) => x.tolist())).toEqual([[[0, 0], [2, 2]], [[4, 4], [6, 6]], [[8, 8]]]);
    expect(batches[2][1].dtype).toBe('int32');
    loader.setEpoch(0);
    const again: number[][] = seen.splice(0);
    [...loader];
    expect(seen).toEqual(again);
  });

  it('rejects bad options', () => {
    expect(() => new DataLoader(ds, { batchSize: 0 })).toThrow(/nodegrad: DataLoader: batchSize must be a positive integer \(got 0\)/);
    expect(() => new DataLoader(ds, { seed: -1 })).toThrow(/nodegrad: DataLoader: seed must be a non-negative integer/);
    expect(() => new DataLoader(ds, { batchsize: 2 } as never)).toThrow(/nodegrad: DataLoader: unknown option 'batchsize'/);
    expect(() => new DataLoader({} as Dataset)).toThrow(/nodegrad: DataLoader: dataset must have an integer length and a get\(index\) method/);
    const bad = new DataLoader(ds, { batchSize: 2, transform: () => 3 as never });
    expect(() => [...bad]).toThrow(/nodegrad: DataLoader: transform must return an array of tensors/);
  });
});

describe('image transforms', () => {
  it('normalize subtracts the mean and divides by the std of each channel', () => {
    const x = positional(2, 3, 2, 2);
    const y = normalize(x, [1, 2, 3], [2, 4, 8]);
    const xv = flat(x), ref = xv.map((v, i) => { const c = Math.floor(i / 4) % 3; return (v - [1, 2, 3][c]) / [2, 4, 8][c]; });
    expectClose(y, ref);
    expectClose(normalize(x.select(0, 1), 0.5, 2), flat(x.select(0, 1)).map((v) => (v - 0.5) / 2));
    expect(() => normalize(x, [1, 2], 1)).toThrow(/nodegrad: normalize: mean must be a finite number or 3 finite numbers, one per channel/);
    expect(() => normalize(x, 0, [1, 0, 1])).toThrow(/nodegrad: normalize: std must be positive/);
    expect(() => normalize(ng.zeros([4, 4]), 0, 1)).toThrow(/nodegrad: normalize: expected images of shape \[C,H,W\] or \[N,C,H,W\] \(got shape \[4,4\]\)/);
  });

  it('randomCrop takes windows of the zero-padded image, reproducible by seed', () => {
    const N = 16, C = 2, H = 5, W = 6, p = 2;
    const x = positional(N, C, H, W);
    const live = ng.memory().numTensors;
    const y = randomCrop(x, [H, W], { padding: p, seed: 11 });
    expect(ng.memory().numTensors, 'only the result is left').toBe(live + 1);
    expect(y.shape).toEqual([N, C, H, W]);
    const yv = flat(y), xv = flat(x);
    const offsets = new Set<string>();
    for (let n = 0; n < N; n++) {
      // find this sample's offset from its pixels: try every candidate and keep the one that matches
      let found = '';
      for (let dy = 0; dy <= 2 * p && !found; dy++) for (let dx = 0; dx <= 2 * p && !found; dx++) {
        let ok = true;
        for (let c = 0; c < C && ok; c++) for (let i = 0; i < H && ok; i++) for (let j = 0; j < W && ok; j++) {
          const si = i + dy - p, sj = j + dx - p;
          const want = si >= 0 && si < H && sj >= 0 && sj < W ? xv[((n * C + c) * H + si) * W + sj] : 0;
          ok = yv[((n * C + c) * H + i) * W + j] === want;
        }
        if (ok) found = `${dy},${dx}`;
      }
      expect(found, `sample ${n} is a padded window`).not.toBe('');
      offsets.add(found);
    }
    expect(offsets.size).toBeGreaterThan(3);
    expect(flat(randomCrop(x, [H, W], { padding: p, seed: 11 }))).toEqual(yv);
    expect(flat(randomCrop(x, [H, W], { padding: p, rng: new Rng(11) }))).toEqual(yv);
    expect(flat(randomCrop(x, [H, W], { padding: p, seed: 12 }))).not.toEqual(yv);
    expect(randomCrop(x, 3).shape).toEqual([N, C, 3, 3]);
    const whole = randomCrop(x, [H + 2, W + 2], { padding: 1, fill: -1 });
    // the only window of that size: a border of fill around the image (x[0][0][0][0] = 0)
    expect(flat(whole.select(0, 0).select(0, 0)).slice(0, W + 4)).toEqual([...new Array<number>(W + 3).fill(-1), 0]);
    expect(() => randomCrop(x, 9, { padding: 1 })).toThrow(/nodegrad: randomCrop: size 9 must be positive and fit the padded image 7x8/);
    expect(() => randomCrop(x.select(0, 0), 3)).toThrow(/nodegrad: randomCrop: expected images of shape \[N,C,H,W\]/);
  });

  it('randomHorizontalFlip mirrors about a fraction p of the images', () => {
    const N = 200, C = 1, H = 2, W = 3;
    const x = positional(N, C, H, W);
    const live = ng.memory().numTensors;
    const y = randomHorizontalFlip(x, { p: 0.3, seed: 5 });
    expect(ng.memory().numTensors, 'only the result is left').toBe(live + 1);
    const xv = flat(x), yv = flat(y);
    let flipped = 0;
    for (let n = 0; n < N; n++) {
      const img = xv.slice(n * H * W, (n + 1) * H * W), out = yv.slice(n * H * W, (n + 1) * H * W);
      const mirror = img.map((_, k) => img[Math.floor(k / W) * W + (W - 1 - (k % W))]);
      if (out.every((v, k) => v === mirror[k])) flipped++;
      else expect(out).toEqual(img);
    }
    expect(flipped).toBeGreaterThan(35);
    expect(flipped).toBeLessThan(85);
    expect(flat(randomHorizontalFlip(x, { p: 0.3, seed: 5 }))).toEqual(yv);
    expect(flat(randomHorizontalFlip(x, { p: 0 }))).toEqual(xv);
    expect(() => randomHorizontalFlip(x, { p: 2 })).toThrow(/nodegrad: randomHorizontalFlip: p must be in \[0, 1\]/);
  });
});

describe('loadMnist', () => {
  it('returns disjoint, seeded splits of [N,1,28,28] images in [0,1] with int32 labels', () => {
    const a = loadMnist({ trainCount: 300, testCount: 100 });
    expect(a.train.images.shape).toEqual([300, 1, 28, 28]);
    expect(a.train.images.dtype).toBe('float32');
    expect(a.train.labels.shape).toEqual([300]);
    expect(a.test.labels.dtype).toBe('int32');
    const px = flat(a.train.images);
    expect(px.reduce((m, v) => Math.min(m, v), Infinity)).toBe(0);
    expect(px.reduce((m, v) => Math.max(m, v), -Infinity)).toBeLessThanOrEqual(1);
    expect(new Set(flat(a.train.labels)).size).toBe(10);
    // the same seed and testCount give the same test set, whatever trainCount is
    const b = loadMnist({ trainCount: 50, testCount: 100 });
    expect(flat(b.test.images)).toEqual(flat(a.test.images));
    expect(flat(b.train.labels)).toEqual(flat(a.train.labels).slice(0, 50));
    // no image is in both splits
    const key = (t: ng.Tensor, i: number): string => flat(t.select(0, i)).join(',');
    const test = new Set(Array.from({ length: 100 }, (_, i) => key(a.test.images, i)));
    let shared = 0;
    for (let i = 0; i < 300; i++) if (test.has(key(a.train.images, i))) shared++;
    expect(shared).toBe(0);
    const c = loadMnist({ trainCount: 10, testCount: 100, seed: 1 });
    expect(flat(c.test.labels)).not.toEqual(flat(a.test.labels));
  });

  it('rejects more images than the package ships', () => {
    expect(() => loadMnist({ trainCount: 9000, testCount: 2000 })).toThrow(/nodegrad: loadMnist: the package ships 10000 distinct digits; trainCount 9000 \+ testCount 2000 = 11000 is more/);
    expect(() => loadMnist({ trainCount: -1 })).toThrow(/nodegrad: loadMnist: trainCount must be a non-negative integer/);
  });
});
