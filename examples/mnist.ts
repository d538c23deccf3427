// The MNIST example: trains the small CNN of lib/train/mnist.ts and prints its report
// (the same as `nodegrad mnist`).
//   node --import ./scripts/ts-loader.mjs examples/mnist.ts [--epochs N] [--train-count N]
//        [--test-count N] [--batch-size N] [--lr X] [--model cnn|mlp] [--channels 16,32]
//        [--no-augment] [--seed N] [--threads N]
import { pathToFileURL } from 'node:url';
import * as ng from '../lib/index.js';
import { formatConfusionMatrix } from '../lib/train/metrics.js';
import { trainMnist, type TrainMnistOptions } from '../lib/train/mnist.js';

export { trainMnist };

function main(argv: string[]): void {
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const num = (name: string): number | undefined => {
    const v = value(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`mnist: --${name} expects a number (got ${v})`);
    return n;
  };
  const threads = num('threads');
  if (threads !== undefined) ng.setNumThreads(threads);
  const model = value('model') as TrainMnistOptions['model'];
  const ch = value('channels')?.split(',').map(Number);
  if (ch && (ch.length !== 2 || ch.some((c) => !Number.isInteger(c) || c <= 0))) throw new Error(`mnist: --channels expects two positive integers like 16,32 (got ${value('channels')})`);
  const r = trainMnist({
    epochs: num('epochs'), trainCount: num('train-count'), testCount: num('test-count'), batchSize: num('batch-size'),
    lr: num('lr'), model, channels: ch as [number, number] | undefined, augment: !argv.includes('--no-augment'), seed: num('seed'), log: (s) => console.log(s),
  });
  console.log(`\ntest accuracy ${(100 * r.testAccuracy).toFixed(2)}% (${r.model}, ${r.seconds.toFixed(1)} s in all)\n`);
  console.log(r.report);
  console.log('confusion matrix (rows: true digit, columns: predicted digit)');
  console.log(formatConfusionMatrix(r.confusion));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  }
}
