// Per-op cost on CUDA as a user sees it: the N-API crossing plus the kernel launch, for
// tiny tensors where the GPU work itself is negligible, beside torch's eager dispatch.
import * as ng from '../../lib/index.js';
import { runPeer, timeCuda, withPeer, type Row } from './row.js';

export const title = 'CUDA per-op overhead (1-element tensors)';

export async function run(opts: { quick: boolean }): Promise<Row[]> {
  const iters = opts.quick ? 2000 : 20000;
  const a = ng.ones([1], { device: 'cuda' }).keep(), b = ng.ones([1], { device: 'cuda' }).keep();
  const rows: Row[] = [];
  const add = timeCuda(() => a.add(b), { iters, reps: 5, flush: false });
  rows.push({ bench: 'overhead', shape: 'add [1]', dtype: 'float32', ms: add });
  const chain = timeCuda(() => a.add(b).mul(b).relu().sum(), { iters: iters / 4, reps: 5, flush: false });
  rows.push({ bench: 'overhead', shape: 'add-mul-relu-sum [1]', dtype: 'float32', ms: chain });
  a.dispose(); b.dispose();
  const peer = runPeer('overhead_peer.py', { iters });
  return rows.map((r) => withPeer(r, peer, 'torch eager'));
}
