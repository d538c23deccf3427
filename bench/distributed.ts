// All-reduce bus bandwidth over Gloo on 2 local ranks (127.0.0.1), 1 KB .. 256 MB
// (16 MB with --quick), and the DDP step of a small GPT against its single-process step,
// beside torch.distributed's Gloo backend and torch's DistributedDataParallel when
// /usr/bin/python3 has torch. Bus bandwidth = 2(n-1)/n * bytes / time (nccl-tests' PERFORMANCE.md), so
// it is comparable across world sizes; the gbps column holds it.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeRow, median, peerEnv, type BenchContext, type Row } from './common.js';
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

const jsonLines = <T>(out: string): T[] => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as T);

const label = (bytes: number): string => (bytes >= 1 << 20 ? `${bytes >> 20}MB` : `${bytes >> 10}KB`);
const spread = (xs: number[]): string => `${Math.min(...xs).toPrecision(3)}..${Math.max(...xs).toPrecision(3)}`;

// The GPT of bench/train-gpt.ts (gpt-0.8M: 3.3 MB of float32 gradients), B2 x T128 per
// rank, so the gradient all-reduce is a visible part of the step.
const DDP = { config: { vocabSize: 256, blockSize: 128, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: true }, batch: 2 };

export async function run(ctx: BenchContext): Promise<Row[]> {
  if (!isGlooAvailable()) {
    console.log('distributed bench skipped: this build has no Gloo');
    return [];
  }
  const sizes: number[] = [];
  for (let b = 1024; b <= (ctx.quick ? 16 << 20 : 256 << 20); b *= 4) sizes.push(b);
  const rounds = ctx.quick ? 1 : 3;
  const py = process.env.NODEGRAD_PEER_PYTHON || '/usr/bin/python3';
  const env = { ...process.env, WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', NODEGRAD_NUM_THREADS: '1' };
  const ours = async (mode: string, arg: string): Promise<string> => {
    const port = String(await freePort());
    const ranks = await Promise.all([0, 1].map((r) =>
      exec(process.execPath, ['--import', './scripts/ts-loader.mjs', 'bench/distributed_worker.ts', mode, arg], { ...env, MASTER_PORT: port, RANK: String(r) })));
    if (ranks.some((r) => r.code !== 0)) throw new Error(`distributed bench workers failed:\n${ranks.map((r) => r.out).join('\n')}`);
    return ranks[0].out;
  };
  let torchVersion = '';
  const peer = async (mode: string, arg: string): Promise<string | null> => {
    const r = await exec(py, [path.join(here, 'distributed_peer.py'), mode, arg, String(await freePort())], peerEnv(1));
    if (r.code !== 0) return null;
    torchVersion ||= jsonLines<{ torch?: string }>(r.out)[0]?.torch ?? '';
    return r.out;
  };
  // ours and torch alternate, `rounds` times each, so both see the same machine; a size's
  // time is the least of its per-round medians (the spread goes into the note)
  const list = sizes.join(',');
  const arOurs = new Map<number, number[]>(), arPeer = new Map<number, number[]>();
  const ddpCfg = JSON.stringify({ ...DDP, steps: ctx.quick ? 4 : 10, warmup: 2, rounds: ctx.quick ? 1 : 2 });
  const ddpOurs = { single: [] as number[], ddp: [] as number[] }, ddpPeer = { single: [] as number[], ddp: [] as number[] };
  let havePeer = true;
  for (let r = 0; r < rounds; r++) {
    for (const x of jsonLines<{ bytes: number; ms: number }>(await ours('allreduce', list))) arOurs.set(x.bytes, [...(arOurs.get(x.bytes) ?? []), x.ms]);
    const p = havePeer ? await peer('allreduce', list) : null;
    if (p === null) havePeer = false;
    else for (const x of jsonLines<{ bytes: number; ms: number }>(p)) arPeer.set(x.bytes, [...(arPeer.get(x.bytes) ?? []), x.ms]);
    const o = jsonLines<typeof ddpOurs>(await ours('ddp', ddpCfg))[0];
    ddpOurs.single.push(...o.single);
    ddpOurs.ddp.push(...o.ddp);
    const q = havePeer ? await peer('ddp', ddpCfg) : null;
    if (q !== null) {
      const t = jsonLines<typeof ddpPeer>(q)[0];
      ddpPeer.single.push(...t.single);
      ddpPeer.ddp.push(...t.ddp);
    }
  }
  if (!havePeer) console.log('distributed bench: no torch.distributed peer (torch missing or failed)');
  const peerName = havePeer ? `torch ${torchVersion} gloo` : 'none';
  const n = 2;
  const rows = sizes.map((bytes) => {
    const o = arOurs.get(bytes)!, p = arPeer.get(bytes);
    return makeRow(ctx, {
      bench: 'allreduce-gloo', shape: label(bytes), dtype: 'float32', ms: Math.min(...o), bytes: (2 * (n - 1) / n) * bytes,
      peer: peerName, peerMs: p ? Math.min(...p) : null,
      note: `gbps = bus bandwidth; ${o.length} rounds, per-round medians ours ${spread(o)} ms${p ? `, torch ${spread(p)} ms` : ''}`,
    });
  });
  // DDP: each round's median step with gradient sync vs without (the single-process step,
  // the other rank busy alike); the overhead row is their difference, medians over rounds
  const cfg = DDP.config;
  const shape = `2 ranks x B${DDP.batch}xT${cfg.blockSize} L${cfg.nLayer} C${cfg.nEmbd}`;
  const over = (x: { single: number[]; ddp: number[] }): number[] => x.ddp.map((v, i) => v - x.single[i]);
  const hasPeerDdp = ddpPeer.ddp.length > 0;
  const noteOf = (xs: number[], ys: number[]): string => `per-round ours ${spread(xs)} ms${hasPeerDdp ? `, torch ${spread(ys)} ms` : ''}`;
  for (const [name, o, p] of [
    ['single', ddpOurs.single, ddpPeer.single], ['ddp', ddpOurs.ddp, ddpPeer.ddp], ['overhead', over(ddpOurs), over(ddpPeer)],
  ] as const) {
    const row = makeRow(ctx, {
      bench: `ddp-gpt.${name}`, shape, dtype: 'float32', ms: median(o), peer: hasPeerDdp ? `${peerName} DDP` : 'none',
      peerMs: hasPeerDdp ? median(p) : null,
      note: (name === 'overhead' ? 'ddp step - single-process step; ' : name === 'single' ? 'step without gradient sync; ' : 'step through DistributedDataParallel; ') + noteOf(o, p),
    });
    // an overhead within the noise can come out at or below zero: no meaningful ratio then
    if (row.ms <= 0 || (row.peerMs !== null && row.peerMs <= 0)) row.ratio = null;
    rows.push(row);
  }
  return rows;
}
