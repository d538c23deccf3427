// `nodegrad launch`: starts one worker process per rank with the environment torchrun sets
// (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR, MASTER_PORT),
// forwards SIGINT/SIGTERM to them, and when one worker fails ends the others and says which.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const LAUNCH_HELP = `usage: nodegrad launch --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P] script.js [args...]

Starts N worker processes on this node running script.js, each with RANK, LOCAL_RANK,
WORLD_SIZE (N*M), LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR (default 127.0.0.1) and
MASTER_PORT (default 29500) set, as torchrun does; the script calls
ng.distributed.initProcessGroup(). On several nodes run the same command on each with
its --node-rank; node 0 hosts the rendezvous store at --master-addr:--master-port.
If one worker fails, the others are stopped and the launcher exits with its code.`;

interface LaunchOptions { nproc: number; nnodes: number; nodeRank: number; masterAddr: string; masterPort: number; script: string; args: string[] }

function parseLaunch(argv: string[]): LaunchOptions {
  const o: LaunchOptions = { nproc: 1, nnodes: 1, nodeRank: 0, masterAddr: process.env.MASTER_ADDR ?? '127.0.0.1', masterPort: Number(process.env.MASTER_PORT ?? 29500), script: '', args: [] };
  const num = (flag: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isSafeInteger(n) || n < min) throw new Error(`nodegrad launch: ${flag} must be an integer >= ${min} (got ${v === undefined ? 'nothing' : `"${v}"`})`);
    return n;
  };
  let i = 0;
  for (; i < argv.length; i++) {
    let a = argv[i];
    let v: string | undefined;
    if (!a.startsWith('--')) break;
    const eq = a.indexOf('=');
    if (eq > 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
    const next = (): string | undefined => v ?? argv[++i];
    switch (a.replace(/_/g, '-')) {
      case '--nproc-per-node': o.nproc = num(a, next(), 1); break;
      case '--nnodes': o.nnodes = num(a, next(), 1); break;
      case '--node-rank': o.nodeRank = num(a, next(), 0); break;
      case '--master-addr': o.masterAddr = next() ?? ''; break;
      case '--master-port': o.masterPort = num(a, next(), 1); break;
      case '--help': throw new Error(LAUNCH_HELP);
      default: throw new Error(`nodegrad launch: unknown option ${a} (see \`nodegrad launch --help\`)`);
    }
  }
  if (i >= argv.length) throw new Error(`nodegrad launch: no script given\n\n${LAUNCH_HELP}`);
  o.script = argv[i];
  o.args = argv.slice(i + 1);
  if (o.nodeRank >= o.nnodes) throw new Error(`nodegrad launch: --node-rank out of range (got ${o.nodeRank}; expected 0 <= node-rank < nnodes ${o.nnodes})`);
  if (o.masterPort > 65535) throw new Error(`nodegrad launch: --master-port out of range (got ${o.masterPort}; expected 1..65535)`);
  if (!fs.existsSync(o.script)) throw new Error(`nodegrad launch: script not found (got ${o.script})`);
  return o;
}

// A TypeScript script runs through the package's loader unless this process already has one.
function nodeArgs(script: string): string[] {
  const args = [...process.execArgv];
  if (/\.[cm]?ts$/.test(script) && !args.some((a) => a.includes('ts-loader'))) {
    const loader = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../scripts/ts-loader.mjs');
    if (fs.existsSync(loader)) args.push('--import', loader);
  }
  return args;
}

export async function launch(argv: string[]): Promise<number> {
  if (argv.includes('--help') && argv.indexOf('--help') < (argv.findIndex((a) => !a.startsWith('--')) + 1 || Infinity)) {
    console.log(LAUNCH_HELP);
    return 0;
  }
  const o = parseLaunch(argv);
  const worldSize = o.nproc * o.nnodes;
  const workers: ChildProcess[] = [];
  let failed: { rank: number; code: number; text: string } | null = null;
  let stopping = false;
  const stopAll = (sig: NodeJS.Signals): void => {
    for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill(sig);
  };
  let killTimer: NodeJS.Timeout | null = null;
  const stopWithGrace = (): void => {
    if (stopping) return;
    stopping = true;
    stopAll('SIGTERM');
    killTimer = setTimeout(() => stopAll('SIGKILL'), 5000);
    killTimer.unref();
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`nodegrad launch: ${sig}: stopping ${workers.length} worker(s)`);
    if (!failed) failed = { rank: -1, code: sig === 'SIGINT' ? 130 : 143, text: sig };
    stopping = true;
    stopAll(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const exits = Array.from({ length: o.nproc }, (_, local) => {
      const rank = o.nodeRank * o.nproc + local;
      const env = {
        ...process.env, RANK: String(rank), LOCAL_RANK: String(local), WORLD_SIZE: String(worldSize), LOCAL_WORLD_SIZE: String(o.nproc),
        NODE_RANK: String(o.nodeRank), GROUP_RANK: String(o.nodeRank), MASTER_ADDR: o.masterAddr, MASTER_PORT: String(o.masterPort),
      };
      const w = spawn(process.execPath, [...nodeArgs(o.script), o.script, ...o.args], { env, stdio: 'inherit' });
      workers.push(w);
      return new Promise<void>((resolve) => {
        w.on('exit', (code, signal) => {
          if ((code !== 0 || signal) && !failed) {
            const text = signal ? `was killed by ${signal}` : `exited with code ${code}`;
            failed = { rank, code: code ?? 1, text };
            const others = workers.filter((x) => x !== w && x.exitCode === null && x.signalCode === null).length;
            console.error(`nodegrad launch: rank ${rank} (pid ${w.pid}) ${text}; stopping the other ${others} worker(s)`);
            stopWithGrace();
          }
          resolve();
        });
        w.on('error', (e) => {
          if (!failed) failed = { rank, code: 1, text: e.message };
          console.error(`nodegrad launch: rank ${rank} could not start (${e.message})`);
          stopWithGrace();
          resolve();
        });
      });
    });
    await Promise.all(exits);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (killTimer) clearTimeout(killTimer);
  }
  const f = failed as { rank: number; code: number; text: string } | null;
  return f ? (f.code === 0 ? 1 : f.code) : 0;
}
