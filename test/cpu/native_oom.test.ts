// A native allocation that fails is a JS Error naming the op and the bytes, never an
// abort, also when it fails on a worker thread of the pool. The child process gets an
// address-space limit (prlimit) a little above what it already uses, after its inputs are
// allocated, so the kernels' scratch buffers cannot be had.
import { spawn, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0;

const child = `
  import * as ng from './lib/index.ts';
  import { readFileSync } from 'node:fs';
  import { createInterface } from 'node:readline';
  const F = ng.nn.functional;
  ng.setNumThreads(2);
  // conv2d: the column buffer of one 250x250 output with 16 channels and a 7x7 kernel is
  // 196 MB (allocated on the calling thread)
  const x = ng.randn([1, 16, 256, 256]), w = ng.randn([4, 16, 7, 7]);
  // attention: each of two threads takes a transposed copy of one head's keys (80 MB),
  // on the calling thread and on a worker
  const q = ng.randn([2, 1, 1, 1000]), k = ng.randn([2, 1, 20000, 1000]), v = ng.randn([2, 1, 20000, 1]);
  const vm = () => Number(/VmSize:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
  console.log('READY ' + vm());
  const rl = createInterface({ input: process.stdin });
  rl.once('line', () => {
    const out = {};
    const attempt = (name, fn) => {
      try { fn(); out[name] = 'ok'; } catch (e) { out[name] = String(e && e.message); }
    };
    for (let i = 0; i < 3; i++) attempt('conv2d' + i, () => F.conv2d(x, w));
    for (let i = 0; i < 3; i++) attempt('attention' + i, () => F.scaledDotProductAttention(q, k, v));
    attempt('after', () => ng.matmul(ng.ones([4, 4]), ng.ones([4, 4])).sum().item());
    console.log('RESULT ' + JSON.stringify(out));
    rl.close();
  });
`;

describe('native out of memory', () => {
  it.skipIf(!hasPrlimit)('a failed kernel allocation is an Error naming the op and the size; the process lives on', async () => {
    const p = spawn(process.execPath, ['--import', './scripts/ts-loader.mjs', '--input-type=module', '-e', child],
      { cwd: process.cwd(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '', stderr = '', sent = false;
    p.stderr.on('data', (d) => { stderr += d; });
    const done = new Promise<{ code: number | null; signal: string | null }>((res) => p.on('exit', (code, signal) => res({ code, signal })));
    await new Promise<void>((res, rej) => {
      p.stdout.on('data', (d) => {
        stdout += d;
        const m = /READY (\d+)/.exec(stdout);
        if (m && !sent) {
          sent = true;
          const limit = Number(m[1]) + 100 * 2 ** 20;
          const r = spawnSync('prlimit', ['--pid', String(p.pid), `--as=${limit}:${limit}`], { encoding: 'utf8' });
          if (r.status !== 0) rej(new Error(`prlimit failed: ${r.stderr}`));
          p.stdin.end('go\n');
          res();
        }
      });
      p.on('exit', () => rej(new Error(`child exited early: ${stderr}`)));
    });
    const { code, signal } = await done;
    expect(signal, stderr).toBeNull();
    expect(code, stderr).toBe(0);
    const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
    expect(line, stdout + stderr).toBeDefined();
    const r = JSON.parse(line!.slice(7)) as Record<string, string>;
    for (let i = 0; i < 3; i++) {
      expect(r[`conv2d${i}`]).toMatch(/^nodegrad: out of memory allocating \d+ bytes for conv2d$/);
      expect(r[`attention${i}`]).toMatch(/^nodegrad: attentionForward: out of memory/);
    }
    expect(r.after).toBe('ok');
  });
});
