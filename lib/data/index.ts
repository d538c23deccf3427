// Tokenizers and datasets.
export { CharTokenizer, ByteTokenizer, tokenizerFromJSON } from './tokenizers.js';
export type { Tokenizer, TokenizerJSON } from './tokenizers.js';
export { TokenDataset, Rng } from './dataset.js';
export type { Batch, DatasetState, RngState } from './dataset.js';
export { additionCorpus, additionProblems, type AdditionCorpusOptions } from './corpus.js';
export { maskTokens, type MaskTokensOptions } from './mlm.js';
export { GPT2Tokenizer, bytesToUnicode, type GPT2TokenizerOptions, type GPT2EncodeOptions, type GPT2BatchOptions, type AddedToken, type PaddingStrategy } from './bpe.js';
export { BertTokenizer, type BertTokenizerOptions, type BertEncodeOptions, type BertEncoding, type BertBatchEncoding, type Truncation } from './wordpiece.js';
export { HFTokenizer, type HFTokenizerOptions, type HFEncodeOptions, type HFDecodeOptions, type HFBatchOptions, type HFAddedToken } from './hf_tokenizer.js';
export type { ChatMessage, ChatTemplateOptions } from './chat_template.js';
export { AutoTokenizer, type PretrainedTokenizer } from './auto_tokenizer.js';
export { DataLoader, TensorDataset, normalize, randomCrop, randomHorizontalFlip } from './loader.js';
export type { Dataset, DataLoaderOptions, BatchContext, RandomOptions } from './loader.js';
export { loadMnist, MNIST_IMAGE_SIZE } from './mnist.js';
export type { MnistSplit, MnistOptions } from './mnist.js';
