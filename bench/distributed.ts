// All-reduce bus bandwidth over Gloo on 2 local ranks (127.0.0.1), 1 KB .. 256 MB
// (16 MB with --quick), beside torch.distributed's Gloo backend when /usr/bin/python3
// has torch. Bus bandwidth = 2(n-1)/n * bytes / time (nccl-tests' PERFORMANCE.md), so
// it is comparable across world sizes; the gbps column holds it.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeRow, type BenchContext, type Row } from './common.js';
import { isGlooAvailable } from '../lib/distributed/process_group.js';

export const title = 'distributed: all-reduce bus bandwidth, gloo, 2 local ranks';
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

async function freePort(): Promise<number> {
  return await new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    p.stderr.on('data', (b: Buffer) => { out += b.toString(); });
    p.on('close', (code) => resolve({ code, out }));
    p.on('error', () => resolve({ code: 1, out: '' }));
  });
}

const parse = (out: string): Map<number, { ms: number; torch?: string }> =>
  new Map(out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { bytes: number; ms: number; torch?: string }).map((r) => [r.bytes, r]));

export async function run(ctx: BenchContext): Promise<Row[]> {
  if (!isGlooAvailable()) {
    console.log('distributed bench skipped: this build has no Gloo');
    return [];
  }
  const sizes: number[] = [];
  for (let b = 1024; b <= (ctx.quick ? 16 << 20 : 256 << 20); b *= 4) sizes.push(b);
  const list = sizes.join(',');
  const port = await freePort();
  const env = { ...process.env, WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), NODEGRAD_NUM_THREADS: '1' };
  const ranks = await Promise.all([0, 1].map((r) =>
    exec(process.execPath, ['--import', './scripts/ts-loader.mjs', 'bench/distributed_worker.ts', list], { ...env, RANK: String(r) })));
  if (ranks.some((r) => r.code !== 0)) throw new Error(`distributed bench workers failed:\n${ranks.map((r) => r.out).join('\n')}`);
  const ours = parse(ranks[0].out);
  const py = process.env.NODEGRAD_PEER_PYTHON || '/usr/bin/python3';
  const peerRun = await exec(py, [path.join(here, 'distributed_peer.py'), list, String(await freePort())], { ...process.env, OMP_NUM_THREADS: '1' });
  const peer = peerRun.code === 0 ? parse(peerRun.out) : new Map();
  if (peerRun.code !== 0) console.log('distributed bench: no torch.distributed peer (torch missing or failed)');
  const peerName = [...peer.values()][0]?.torch ? `torch ${[...peer.values()][0].torch} gloo` : 'none';
  const n = 2;
  return sizes.map((bytes) => {
    const r = ours.get(bytes)!;
    const busBytes = (2 * (n - 1) / n) * bytes;
    return makeRow(ctx, { bench: 'allreduce-gloo', shape: bytes >= 1 << 20 ? `${bytes >> 20}MB` : `${bytes >> 10}KB`, dtype: 'float32', ms: r.ms,
      bytes: busBytes, peer: peerName, peerMs: peer.get(bytes)?.ms ?? null, note: 'gbps = bus bandwidth' });
  });
}
