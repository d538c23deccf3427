// Tokenizers and datasets.
export { CharTokenizer, ByteTokenizer, tokenizerFromJSON } from './tokenizers.js';
export type { Tokenizer, TokenizerJSON } from './tokenizers.js';
export { TokenDataset, Rng } from './dataset.js';
export type { Batch, DatasetState, RngState } from './dataset.js';
export { additionCorpus, additionProblems, type AdditionCorpusOptions } from './corpus.js';
export { maskTokens, type MaskTokensOptions } from './mlm.js';
