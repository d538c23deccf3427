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
  loadHFConfig, loadGPT2Pretrained, loadBertPretrained, saveGPT2Pretrained, saveBertPretrained, inspectPretrained,
  type PretrainedCheckOptions, type HFConfig, type GPT2Config, type BertArchitecture, type BertPretrainedOptions, type SavePretrainedOptions,
} from './hf.js';
export { memoryBudget, formatBytes, MAX_TENSOR_ELEMENTS, type ConfigSource, type MemoryBudget } from './sizes.js';
