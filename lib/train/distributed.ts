// How the Trainer runs data-parallel. With a DistributedDataParallel model every rank draws
// the same global batch (batchSize x worldSize rows) from its batch source, whose generator
// therefore stays identical on every rank, and keeps rows [rank*B, (rank+1)*B): each rank
// trains on its own shard, 2 ranks x batch B see exactly the data of one process with batch
// 2B, and rank 0's saved sampler state is every rank's (a checkpoint written by rank 0
// resumes all of them). Scalars the ranks must agree on (losses) are averaged here.
import { DistributedDataParallel } from '../distributed/ddp.js';
import { allReduceBuffer, barrier, getRank, getWorldSize, isInitialized } from '../distributed/process_group.js';
import { Tensor } from '../tensor.js';
import type { Module } from '../nn/module.js';

export interface TrainerDistributed {
  ddp: DistributedDataParallel;
  rank: number;
  worldSize: number;
}

/** The data-parallel context of a Trainer's model, or null for a one-process run. */
export function trainerDistributed(model: Module): TrainerDistributed | null {
  if (model instanceof DistributedDataParallel) return { ddp: model, rank: getRank(), worldSize: getWorldSize() };
  if (isInitialized() && getWorldSize() > 1) {
    throw new Error(`nodegrad: Trainer: a process group of ${getWorldSize()} ranks is initialised but the model is not a ` +
      'nn.DistributedDataParallel (the ranks would train apart); wrap it: new nn.DistributedDataParallel(model)');
  }
  return null;
}

/**
 * Rows [rank*rows, (rank+1)*rows) of every tensor of a global batch whose first dimension
 * is rows*worldSize (fresh tensors: the rest of the global batch is freed with it).
 */
export function shardBatch<B extends object>(batch: B, rank: number, rows: number, worldSize: number): B {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(batch)) {
    if (v instanceof Tensor && v.shape.length > 0 && v.shape[0] === rows * worldSize) out[k] = v.narrow(0, rank * rows, rows).clone();
    else out[k] = v;
  }
  return out as B;
}

/** Every rank's values averaged over the ranks (in float64), in the same order. */
export async function averageOverRanks(values: number[]): Promise<number[]> {
  const buf = Float64Array.from(values);
  await allReduceBuffer(buf, buf.length, 'avg');
  return Array.from(buf);
}

/** Rank 0 runs write (a checkpoint); every rank then waits until it is complete. */
export async function onRankZero(dist: TrainerDistributed | null, write: () => Promise<void>): Promise<void> {
  if (!dist) return write();
  let failure: unknown = null;
  if (dist.rank === 0) {
    try {
      await write();
    } catch (e) {
      failure = e;
    }
  }
  await barrier();
  if (failure) throw failure;
}
