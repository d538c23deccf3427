// The CPU buffer pool (lib/storage.ts): freed buffers come back for the same (dtype,
// length); a release that does not fit evicts the least recently released large buffers,
// so a full pool keeps taking the sizes in use now; the bound holds; small buffers are
// capped per size; emptyCpuPool() clears it. The limit is set to 1 MB for this file.
// (Buffers are compared by identity with ===: toBe would diff their contents on failure.)
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { libModule, runModule } from '../child.js';

process.env.NODEGRAD_CPU_POOL_MB = '1';
type StorageModule = typeof import('../../lib/storage.js');
let st: StorageModule;
beforeAll(async () => {
  st = await import('../../lib/storage.js');
});
beforeEach(() => st.emptyCpuPool());

const LIMIT = 1024 * 1024;
/** A float32 CPU storage of n elements, released at once; returns its buffer. */
function released(n: number, dtype: 'float32' | 'float64' = 'float32'): unknown {
  const s = new st.Storage('cpu', dtype, n);
  s.retain();
  const buf = s.data;
  s.release();
  return buf;
}
/** The buffer a fresh storage of n elements gets (kept alive: not returned to the pool). */
function taken(n: number, dtype: 'float32' | 'float64' = 'float32'): unknown {
  return new st.Storage('cpu', dtype, n).data;
}

describe('CPU buffer pool', () => {
  it('reuses a released buffer for the same dtype and length only, zeroed', () => {
    const s = new st.Storage('cpu', 'float32', 5000);
    s.retain();
    const buf = s.data;
    buf.fill(3);
    s.release();
    expect(st.cpuPoolBytes()).toBe(20000);
    expect(taken(5000, 'float64') === buf).toBe(false);
    expect(taken(5001) === buf).toBe(false);
    const again = new st.Storage('cpu', 'float32', 5000);
    expect(again.data === buf).toBe(true);
    expect(Array.from(again.data.subarray(0, 4))).toEqual([0, 0, 0, 0]);
    expect(st.cpuPoolBytes()).toBe(0);
  });

  it('a full pool evicts its oldest buffers for a new size instead of refusing it', () => {
    const n = 300 * 1024 / 4;  // 300 KB each: three fit in 1 MB, four do not
    const a = released(n), b = released(n + 1), c = released(n + 2);
    expect(st.cpuPoolBytes()).toBe(3 * 4 * n + 12);
    const d = released(n + 3);  // needs room: a (the oldest) goes
    expect(st.cpuPoolBytes()).toBeLessThanOrEqual(LIMIT);
    expect(taken(n + 3) === d).toBe(true);
    expect(taken(n) === a).toBe(false);
    expect(taken(n + 2) === c).toBe(true);
    expect(taken(n + 1) === b).toBe(true);
    expect(st.cpuPoolBytes()).toBe(0);
  });

  it('keeps the bound under any sequence of releases, and the newest release is kept', () => {
    const sizes = [70000, 20000, 250000, 1024, 130000, 262000, 5, 90000, 250000, 70000];
    for (let i = 0; i < 40; i++) {
      const n = sizes[i % sizes.length] + (i % 3);
      const buf = released(n);
      expect(st.cpuPoolBytes()).toBeLessThanOrEqual(LIMIT);
      const s = new st.Storage('cpu', 'float32', n);
      expect(s.data === buf).toBe(true);
      s.retain();
      s.release();  // back in the pool, as the newest
    }
  });

  it('a buffer larger than the whole pool is not kept and evicts nothing', () => {
    const small = released(1000);
    released(LIMIT / 4 + 1);
    expect(st.cpuPoolBytes()).toBe(4000);
    expect(taken(1000) === small).toBe(true);
  });

  it('small buffers are capped per size and survive eviction of large ones', () => {
    const bufs = Array.from({ length: 70 }, () => new st.Storage('cpu', 'float32', 10));
    for (const s of bufs) { s.retain(); s.release(); }
    expect(st.cpuPoolBytes()).toBe(64 * 40);
    const tiny = released(3);
    released(LIMIT / 4 - 2000);  // evicts nothing small
    released(LIMIT / 4 - 2000);
    expect(taken(3) === tiny).toBe(true);
  });

  it('emptyCpuPool drops everything', () => {
    const a = released(100000);
    released(10);
    expect(st.cpuPoolBytes()).toBeGreaterThan(0);
    st.emptyCpuPool();
    expect(st.cpuPoolBytes()).toBe(0);
    expect(taken(100000) === a).toBe(false);
    const b = released(100000);
    expect(taken(100000) === b).toBe(true);
  });
});

describe('the default CPU pool bound', () => {
  // Without NODEGRAD_CPU_POOL_MB the bound is the larger of 256 MB and the peak of live CPU
  // tensor bytes: a step whose tensors peak at 320 MB gets all its buffers back next time.
  // With the variable set, its value is the bound.
  const run = (env: Record<string, string | undefined>) => {
    const src = `import * as st from ${JSON.stringify(libModule('storage.ts'))};
      const n = 16 * 1024 * 1024; // 64 MB of float32
      const step = () => { const ss = Array.from({ length: 5 }, () => { const s = new st.Storage('cpu', 'float32', n); s.retain(); return s; });
        const bufs = ss.map((s) => s.data); ss.forEach((s) => s.release()); return bufs; };
      const first = step();
      const pooledMB = st.cpuPoolBytes() / 2 ** 20;
      const second = step();
      console.log(JSON.stringify({ pooledMB, reused: second.filter((b) => first.includes(b)).length }));`;
    const e = { ...process.env, ...env };
    if (env.NODEGRAD_CPU_POOL_MB === undefined) delete e.NODEGRAD_CPU_POOL_MB;
    const r = runModule<{ pooledMB: number; reused: number }>(src, { env: e });
    expect(r.stderr).toBe('');
    return r.out;
  };
  it('follows the peak of live tensor bytes past 256 MB', () => {
    expect(run({ NODEGRAD_CPU_POOL_MB: undefined })).toEqual({ pooledMB: 320, reused: 5 });
  }, 60_000);
  it('is NODEGRAD_CPU_POOL_MB when that is set', () => {
    expect(run({ NODEGRAD_CPU_POOL_MB: '256' })).toEqual({ pooledMB: 256, reused: 4 });
  }, 60_000);
});
