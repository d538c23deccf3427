// Data-parallel training of a small GPT over Gloo:
//   nodegrad launch --nproc-per-node 2 examples/ddp.ts
// Every rank holds the whole model, reads its own shard of the data (DistributedSampler)
// and averages gradients with the others after each backward (DistributedDataParallel).
// The global batch is 16 rows split over the ranks, so `node examples/ddp.ts` (one
// process, batch 16) prints the same losses as 2 ranks x batch 8, up to float rounding.
import * as ng from '../lib/index.js';

const { distributed: dist, nn, optim, models, data } = ng;

await dist.initProcessGroup({ backend: 'gloo' });
const rank = dist.getRank(), world = dist.getWorldSize();
ng.manualSeed(0);

const text = 'to be, or not to be, that is the question: whether tis nobler in the mind to suffer '.repeat(40);
const vocab = [...new Set(text)].sort();
const ids = Int32Array.from(text, (c) => vocab.indexOf(c));
const T = 32;
const rows = Math.floor((ids.length - 1) / T);
const x = ng.tensor(Array.from({ length: rows }, (_, r) => Array.from(ids.subarray(r * T, r * T + T))), { dtype: 'int32' });
const y = ng.tensor(Array.from({ length: rows }, (_, r) => Array.from(ids.subarray(r * T + 1, r * T + T + 1))), { dtype: 'int32' });

const model = new models.GPT({ vocabSize: vocab.length, blockSize: T, nLayer: 2, nHead: 2, nEmbd: 64, dropout: 0 });
const ddp = new nn.DistributedDataParallel(model, { bucketCapMb: 25 });
await ddp.ready;  // rank 0's weights are now on every rank
const opt = new optim.AdamW(model.parameters(), { lr: 3e-3 });
const shard = new dist.DistributedSampler(new data.TensorDataset(x, y), { seed: 0 });
const globalBatch = 16;
if (globalBatch % world !== 0) throw new Error(`examples/ddp.ts: the world size must divide the global batch ${globalBatch} (got ${world})`);
const loader = new data.DataLoader(shard, { batchSize: globalBatch / world });

for (let epoch = 0; epoch < 3; epoch++) {
  shard.setEpoch(epoch);
  let last = 0;
  for (const [xb, yb] of loader) {
    const loss = ng.scope(() => {
      const l = model.forward(xb, { targets: yb }).loss!;
      l.backward();
      return l.item();
    });
    await ddp.finishGradientSync();  // averaged gradients in every .grad
    opt.step();
    opt.zeroGrad();
    last = loss;
  }
  const t = ng.tensor([last]);
  await dist.allReduce(t, { op: 'avg' });
  if (rank === 0) console.log(`epoch ${epoch}: loss ${t.item().toFixed(5)} (mean over ${world} ranks)`);
}
await dist.destroyProcessGroup();
