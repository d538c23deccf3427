// npm run stress: the long versions of the stress checks, for every micro-kernel family
// this CPU has, with 2 and 3 threads, quiet and under load.
//   npm run stress [-- --iters N]
import { spawnSync } from 'node:child_process';
import { gemmKernels, kernelEnv } from './kernels.js';

const i = process.argv.indexOf('--iters');
const iters = i >= 0 ? process.argv[i + 1] : '500';
const kernels = gemmKernels();
let failed = 0;
for (const k of kernels)
  for (const threads of ['2', '3'])
    for (const load of [false, true]) {
      const args = ['--import', './scripts/ts-loader.mjs', 'test/stress/gemm_stress.ts', '--iters',
        k === 'portable' ? String(Math.ceil(Number(iters) / 5)) : iters, '--threads', threads, ...(load ? ['--load'] : [])];
      const t0 = Date.now();
      const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: kernelEnv(k) });
      const line = r.stdout.trim().split('\n').pop() ?? '';
      let summary = `exit ${r.status}${r.signal ? ` signal ${r.signal}` : ''}`;
      try {
        const rep = JSON.parse(line) as { cases: { wrong: number; unstable: number; iters: number }[] };
        const calls = rep.cases.reduce((s, c) => s + c.iters, 0);
        const wrong = rep.cases.reduce((s, c) => s + c.wrong, 0), unstable = rep.cases.reduce((s, c) => s + c.unstable, 0);
        summary = `${calls} calls, ${wrong} wrong, ${unstable} not bitwise repeatable`;
      } catch { summary += ` ${r.stderr.slice(-400)}`; }
      if (r.status !== 0) failed++;
      console.log(`gemm ${k.padEnd(8)} threads ${threads} ${load ? 'loaded' : 'quiet '}  ${summary}  (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      if (r.status !== 0) console.log(line);
    }
process.exit(failed ? 1 : 0);
