export {
  GPT, checkGPTConfig, checkGPTSize, gptParameterCount, gptParameterShapes, gptActivationBytes, inspectGPTCheckpoint,
  type GPTConfig, type GPTForwardOptions, type GPTSizeOptions,
} from './gpt.js';
export {
  BertModel, BertForSequenceClassification, BertForMaskedLM, BertEmbeddings, BertLayer, BertEncoder, BertPooler,
  checkBertConfig, checkBertSize, bertParameterCount, bertParameterShapes, bertActivationBytes, defaultLabels,
  type BertShapeOptions, type BertSizeOptions,
  type BertConfig, type ResolvedBertConfig, type BertActivation, type ProblemType, type BertInputs, type BertOutput,
  type BertHeadOutput, type BertClassificationInputs, type BertMaskedLMInputs,
} from './bert.js';
export {
  loadHFConfig, inspectPretrained, registerHFFamily,
  type PretrainedCheckOptions, type HFConfig, type HFConfigTypes, type HFFamily, type SavePretrainedOptions,
} from './hf.js';
export { loadGPT2Pretrained, saveGPT2Pretrained, type GPT2Config } from './gpt_hf.js';
export { loadBertPretrained, saveBertPretrained, type BertArchitecture, type BertPretrainedOptions } from './bert_hf.js';
export {
  LlamaForCausalLM, LlamaModel, LlamaDecoderLayer, LlamaAttention, LlamaMLP, LlamaRMSNorm,
  type LlamaForwardInputs, type LlamaOutput, type LlamaGenerationConfig, type LlamaOptions, type LlamaModelInputs,
} from './llama.js';
export {
  checkLlamaConfig, checkLlamaSize, llamaParameterShapes, llamaParameterCount, ropeInvFreq, LLAMA_MODEL_TYPES,
  type LlamaConfig, type ResolvedLlamaConfig, type LlamaModelType, type RopeScaling, type RopeType, type AttentionLayerType,
} from './llama_config.js';
export { loadLlamaPretrained, saveLlamaPretrained, type LlamaPretrainedOptions, type LlamaSaveOptions } from './llama_hf.js';
export { memoryBudget, formatBytes, MAX_TENSOR_ELEMENTS, type ConfigSource, type MemoryBudget } from './sizes.js';
