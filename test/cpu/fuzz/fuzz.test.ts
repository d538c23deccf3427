// The public ops called with random bad arguments (test/cpu/fuzz/driver.ts): every call
// either succeeds or throws an Error reading `nodegrad: <op>: ...`, and none crashes the
// process. Cases run in child processes, so a native crash is reported (signal and case)
// instead of taking the test runner down. `npm run fuzz` runs many more cases.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { formatSummary, groupFindings, runFuzz } from './driver.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const LOADER = fileURLToPath(new URL('../../../scripts/ts-loader.mjs', import.meta.url));

describe('fuzzing the public ops with bad arguments', () => {
  it('300 cases of seed 1: no crash, every error a nodegrad error naming its op', async () => {
    const s = await runFuzz({ seed: 1, cases: 300, jobs: 2, batch: 100 });
    const report = formatSummary(s);
    expect(s.ran, report).toBe(300);
    expect(s.crashes.map((c) => `#${c.index} ${c.signal ?? `exit ${c.code}`}: ${c.desc}`), report).toEqual([]);
    expect(groupFindings(s.findings).map((g) => `${g.count}x ${g.key}`), report).toEqual([]);
    // the cases reach past the first checks: some succeed, some fail cleanly
    expect(s.ok).toBeGreaterThan(50);
    expect(s.errors).toBeGreaterThan(50);
  });
});

/** Runs `code` (with `ng` and `native` in scope) in a fresh process; returns how it ended. */
function inChild(code: string): { status: number | null; signal: string | null; out: string } {
  const src = `import * as ng from './lib/index.js'; import { native } from './lib/native.js'; void ng; void native;\n${code}\n`;
  const r = spawnSync(process.execPath, ['--import', LOADER, '--input-type=module', '-e', src], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, signal: r.signal, out: `${r.stdout}${r.stderr}`.slice(-2000) };
}

describe('crashes the fuzzer found in the native layer', () => {
  // Found by the fuzzer: native.reduce with an empty inner block (I = 0, M and R > 0)
  // died with SIGFPE, an integer division by zero (an empty result now returns early).
  // Reached from every reduction over a dim that precedes a zero-size dim: ng.zeros([2, 0]).sum(0), .mean(0), .amax(0), .argmax(0), logsumexp, var,
  // and the backward of any broadcast op whose gradient is summed that way.
  it('reducing over a dim before an empty dim does not kill the process', () => {
    const r = inChild(`
      const out = [];
      for (const f of [(t) => t.sum(0), (t) => t.mean(0), (t) => t.amax(0), (t) => t.argmax(0), (t) => ng.logsumexp(t, 0)]) {
        try { out.push(f(ng.zeros([2, 0])).shape.join(',')); } catch (e) { out.push(e.message); }
      }
      console.log(JSON.stringify(out));`);
    expect(r.signal, r.out).toBeNull();
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('["0","0","0","0","0"]');
  });

  it('the raw reduce kernel rejects or handles I = 0 (native.reduce(0, x, 1, 2, 0, out, null, 0))', () => {
    const r = inChild('native.reduce(0, new Float32Array(0), 1, 2, 0, new Float32Array(0), null, 0); console.log("survived");');
    expect(r.signal, r.out).toBeNull();
  });

  // Found by the fuzzer: the randint fill (randomFill kind 2) took the range high - low
  // modulo 2^64, so a range of 2^64 or more divided by zero (SIGFPE). randint() rejects
  // ranges wider than 2^53 - 1 in TypeScript and the binding rejects them too.
  it('the raw random fill survives a range of 2^64 or more (native.randomFill(2, x, 3, 0, 0, 0, 1e300))', () => {
    const r = inChild('try { native.randomFill(2, new Float64Array(3), 3, 0, 0, 0, 1e300); } catch (e) { console.log(e.message); }');
    expect(r.signal, r.out).toBeNull();
    expect(r.out).toContain('nodegrad: randint: low and high must be integers');
  });
});
