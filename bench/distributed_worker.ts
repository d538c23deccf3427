// One rank of bench/distributed.ts: times float32 all-reduce (sum) at each size; rank 0
// prints one JSON line per size: { bytes, ms } (median over the iterations).
import * as ng from '../lib/index.js';

const sizes = (process.argv[2] ?? '1024').split(',').map(Number);
const d = ng.distributed;
await d.initProcessGroup({ timeoutMs: 120000 });
for (const bytes of sizes) {
  const t = ng.zeros([bytes / 4]);
  const iters = Math.max(3, Math.min(50, Math.floor((64 << 20) / bytes)));
  await d.allReduce(t);
  const times: number[] = [];
  for (let i = 0; i < iters; i++) {
    await d.barrier();
    const t0 = performance.now();
    await d.allReduce(t);
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  if (d.getRank() === 0) console.log(JSON.stringify({ bytes, ms: times[times.length >> 1] }));
  t.dispose();
}
await d.destroyProcessGroup();
