export { GPT, checkGPTConfig, type GPTConfig, type GPTForwardOptions } from './gpt.js';
export {
  BertModel, BertForSequenceClassification, BertForMaskedLM, BertEmbeddings, BertLayer, BertEncoder, BertPooler,
  checkBertConfig, defaultLabels,
  type BertConfig, type ResolvedBertConfig, type BertActivation, type ProblemType, type BertInputs, type BertOutput,
  type BertHeadOutput, type BertClassificationInputs, type BertMaskedLMInputs,
} from './bert.js';
export {
  loadHFConfig, loadGPT2Pretrained, loadBertPretrained, saveGPT2Pretrained, saveBertPretrained,
  type HFConfig, type GPT2Config, type BertArchitecture, type BertPretrainedOptions, type SavePretrainedOptions,
} from './hf.js';
