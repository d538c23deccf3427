// LoRA fine-tuning compatible with Hugging Face PEFT (the `peft` namespace).
export {
  resolveLoraConfig, loraConfigToJSON, loraScaling, loraConfigFromJSON, DEFAULT_TARGET_MODULES, CLASSIFIER_MODULE_NAMES,
  type LoraConfig, type ResolvedLoraConfig, type LoraBias, type TaskType,
} from './config.js';
export { LoraLinear, LoraAdapter, LoraPair, type LoraPart } from './lora.js';
export { modelLayout, matchesTarget, registerLayout, type HFModule, type ModelLayout } from './targets.js';
export { PeftModel, getPeftModel, ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, type LoadAdapterOptions } from './peft_model.js';
export {
  trainingFootprint, optimizerStateBytes, resetPeakMemory, peakMemoryBytes, formatFootprint, formatRunMemory, type Footprint,
} from './report.js';
export { finetuneClassifierLora, type LoraFinetuneOptions, type LoraFinetuneResult } from './finetune.js';
export { sftLora, chatTrainingExample, readChats, SftData, type SftExample, type SftLoraOptions, type ChatTokenizer } from './sft.js';
