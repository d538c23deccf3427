// ng.distributed: process groups, collectives and the data-parallel helpers.
export {
  initProcessGroup, destroyProcessGroup, isInitialized, isGlooAvailable, isNcclAvailable, getRank, getWorldSize, getLocalRank, getBackend,
  barrier, allReduce, broadcast, allGather, reduceScatter,
  type InitProcessGroupOptions, type Backend, type ReduceOp,
} from './process_group.js';
export { DistributedDataParallel, type DistributedDataParallelOptions } from './ddp.js';
export { DistributedSampler, type DistributedSamplerOptions } from './sampler.js';
