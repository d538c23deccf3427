// nn: modules and the functional API.
export * as functional from './functional.js';
export { checkpoint } from './checkpoint.js';
export { Module, parameter, isParameter, type LoadResult } from './module.js';
export { DistributedDataParallel, type DistributedDataParallelOptions } from '../distributed/ddp.js';
export { Linear, Embedding, LayerNorm, Dropout, GELU, ReLU, ModuleList, Sequential } from './layers.js';
export { MultiheadAttention, MLP, Block, emptyKVCache, disposeKVCache, type LayerKVCache, type AttentionOptions, type BlockOptions } from './attention.js';
export { KVCache, KVCacheLayer, type KVCacheOptions } from './kv_cache.js';
export {
  Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, BatchNorm1d, BatchNorm2d,
  type Conv2dModuleOptions, type MaxPool2dModuleOptions, type AvgPool2dModuleOptions, type BatchNormModuleOptions,
} from './conv.js';
