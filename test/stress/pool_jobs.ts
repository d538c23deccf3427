// Child of test/cpu/threadpool.test.ts: back-to-back parallel kernels (GEMM, elementwise,
// softmax) with the pool resized between them and idle gaps longer than the workers' spin
// window, so jobs start both with the workers spinning and with them asleep. Every result
// is compared with the same computation on one thread; prints one JSON line.
import * as ng from '../../lib/index.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function work(seed: number): Float32Array[] {
  return ng.scope(() => {
    ng.manualSeed(seed);
    // 256^3 = 16.7M multiply-adds: above the GEMM's 8M threshold, so it runs on the pool
    const a = ng.randn([256, 256]), b = ng.randn([256, 256]);
    const x = ng.randn([300_000]), y = ng.randn([300_000]);
    const m = ng.matmul(a, b);
    const e = ng.add(ng.mul(x, y), x);
    const s = ng.softmax(ng.randn([512, 768]), -1);
    return [m, e, s].map((t) => t.dataSync() as Float32Array);
  });
}

async function main(): Promise<void> {
  ng.setNumThreads(1);
  const ref = [0, 1, 2].map((s) => work(s));
  let checked = 0, mismatches = 0;
  const sizes = [2, 3, 1, 4, 2];
  for (let round = 0; round < 60; round++) {
    if (round % 12 === 0) ng.setNumThreads(sizes[(round / 12) % sizes.length]);
    if (round % 5 === 4) await sleep(3);  // past the spin window: the workers sleep
    const seed = round % 3;
    const got = work(seed);
    for (let k = 0; k < got.length; k++) {
      checked++;
      const r = ref[seed][k], g = got[k];
      let same = r.length === g.length;
      for (let i = 0; same && i < r.length; i++) same = Math.abs(r[i] - g[i]) <= 1e-5 * (1 + Math.abs(r[i]));
      if (!same) mismatches++;
    }
  }
  console.log(JSON.stringify({ checked, mismatches, threads: ng.getNumThreads() }));
}

void main();
