// nn: modules and the functional API.
export * as functional from './functional.js';
export { Module, parameter, isParameter, type LoadResult } from './module.js';
export { Linear, Embedding, LayerNorm, Dropout, GELU, ReLU, ModuleList, Sequential } from './layers.js';
export { MultiheadAttention, MLP, Block, emptyKVCache, disposeKVCache, type LayerKVCache, type AttentionOptions, type BlockOptions } from './attention.js';
