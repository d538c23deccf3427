// Tokenizers and datasets.
export { CharTokenizer, ByteTokenizer, tokenizerFromJSON } from './tokenizers.js';
export type { Tokenizer, TokenizerJSON } from './tokenizers.js';
export { TokenDataset, Rng } from './dataset.js';
export type { Batch, DatasetState, RngState } from './dataset.js';
export { additionCorpus, additionProblems, type AdditionCorpusOptions } from './corpus.js';
export { maskTokens, type MaskTokensOptions } from './mlm.js';
export { GPT2Tokenizer, bytesToUnicode, type GPT2TokenizerOptions, type GPT2EncodeOptions, type GPT2BatchOptions, type AddedToken, type PaddingStrategy } from './bpe.js';
export { BertTokenizer, type BertTokenizerOptions, type BertEncodeOptions, type BertEncoding, type BertBatchEncoding, type Truncation } from './wordpiece.js';
export { AutoTokenizer, type PretrainedTokenizer } from './auto_tokenizer.js';
