// LoraConfig: Hugging Face PEFT's LoraConfig in camelCase, its defaults, and the
// adapter_config.json it reads and writes (PEFT's snake_case field names, so a directory
// written here loads in PEFT with PeftModel.from_pretrained and the other way round).

export type LoraBias = 'none' | 'all' | 'lora_only';
export type TaskType = 'CAUSAL_LM' | 'SEQ_CLS' | 'TOKEN_CLS' | 'SEQ_2_SEQ_LM' | 'QUESTION_ANS' | 'FEATURE_EXTRACTION';

export interface LoraConfig {
  /** Rank of the update (default 8). */
  r?: number;
  /** The update is scaled by loraAlpha / r (default 8). */
  loraAlpha?: number;
  /**
   * Hugging Face module names (as in the HF checkpoint) to adapt: a list matched against
   * the end of each module's dotted path, or one regular expression matched against the
   * whole path. Default: PEFT's per model type (gpt2 c_attn, bert query/value,
   * llama/mistral/qwen2 q_proj/v_proj).
   */
  targetModules?: string[] | string | null;
  /** Dropout on the low-rank path's input (default 0). */
  loraDropout?: number;
  /** Which biases train and are saved with the adapter (default 'none'). */
  bias?: LoraBias;
  /** Modules trained in full and saved with the adapter (HF names, e.g. ['classifier']); SEQ_CLS adds classifier/score as PEFT does. */
  modulesToSave?: string[] | null;
  taskType?: TaskType | null;
  /** True for GPT-2's Conv1D layers (weights stored [in, out] in HF); set automatically for them, as PEFT does. */
  fanInFanOut?: boolean;
  /** Written to adapter_config.json: the base model's directory or hub id. */
  baseModelNameOrPath?: string | null;
  /** true (default): A kaiming-uniform, B zeros (the update starts at 0). false: B random too (tests). */
  initLoraWeights?: boolean;
  inferenceMode?: boolean;
  /** rsLoRA: scale by loraAlpha / √r instead of loraAlpha / r (default false). */
  useRslora?: boolean;
  /** HF module names (list or regular expression, as targetModules) never adapted even when targeted. */
  excludeModules?: string[] | string | null;
}

export type ResolvedLoraConfig = Required<LoraConfig>;

/** PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING for the model types nodegrad has. */
export const DEFAULT_TARGET_MODULES: Record<string, string[]> = {
  gpt2: ['c_attn'],
  bert: ['query', 'value'],
  llama: ['q_proj', 'v_proj'],
  mistral: ['q_proj', 'v_proj'],
  qwen2: ['q_proj', 'v_proj'],
  qwen3: ['q_proj', 'v_proj'],
};

/** PEFT's classifier head names added to modules_to_save for SEQ_CLS. */
export const CLASSIFIER_MODULE_NAMES = ['classifier', 'score'];

const TASKS: readonly string[] = ['CAUSAL_LM', 'SEQ_CLS', 'TOKEN_CLS', 'SEQ_2_SEQ_LM', 'QUESTION_ANS', 'FEATURE_EXTRACTION'];

function bad(field: string, what: string, v: unknown): Error {
  return new Error(`nodegrad: LoraConfig: ${field} ${what} (got ${JSON.stringify(v)})`);
}

function checkExclude(v: string[] | string | null): string[] | string | null {
  if (v !== null && typeof v !== 'string' && !(Array.isArray(v) && v.every((t) => typeof t === 'string' && t !== ''))) {
    throw bad('excludeModules', 'must be a list of module names, a regular expression string or null', v);
  }
  return Array.isArray(v) ? [...v] : v;
}

/** The factor of the low-rank update: loraAlpha / r, or loraAlpha / √r with rsLoRA (PEFT's scaling). */
export function loraScaling(c: { r: number; loraAlpha: number; useRslora: boolean }): number {
  return c.useRslora ? c.loraAlpha / Math.sqrt(c.r) : c.loraAlpha / c.r;
}

/** Fills PEFT's defaults (targets from the model type) and checks every field. */
export function resolveLoraConfig(c: LoraConfig, modelType: string, defaults: { taskType?: TaskType | null; fanInFanOut?: boolean } = {}): ResolvedLoraConfig {
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw bad('the config', 'must be an object', c);
  const r = c.r ?? 8;
  if (!Number.isSafeInteger(r) || r < 1) throw bad('r', 'must be a positive integer', r);
  const loraAlpha = c.loraAlpha ?? 8;
  if (typeof loraAlpha !== 'number' || !Number.isFinite(loraAlpha)) throw bad('loraAlpha', 'must be a finite number', loraAlpha);
  const loraDropout = c.loraDropout ?? 0;
  if (typeof loraDropout !== 'number' || !(loraDropout >= 0 && loraDropout < 1)) throw bad('loraDropout', 'must be in [0, 1)', loraDropout);
  const bias = c.bias ?? 'none';
  if (!['none', 'all', 'lora_only'].includes(bias)) throw bad('bias', "must be 'none', 'all' or 'lora_only'", bias);
  let targetModules = c.targetModules ?? null;
  if (targetModules === null) {
    const d = DEFAULT_TARGET_MODULES[modelType];
    if (!d) throw new Error(`nodegrad: LoraConfig: no default targetModules for model type ${modelType}; give targetModules`);
    targetModules = [...d];
  }
  if (typeof targetModules !== 'string' && !(Array.isArray(targetModules) && targetModules.length > 0 && targetModules.every((t) => typeof t === 'string' && t !== ''))) {
    throw bad('targetModules', 'must be a non-empty list of module names or a regular expression string', targetModules);
  }
  const taskType = c.taskType === undefined ? defaults.taskType ?? null : c.taskType;
  if (taskType !== null && !TASKS.includes(taskType)) throw bad('taskType', `must be one of ${TASKS.join(', ')} or null`, taskType);
  let modulesToSave = c.modulesToSave ?? null;
  if (modulesToSave !== null && !(Array.isArray(modulesToSave) && modulesToSave.every((m) => typeof m === 'string' && m !== ''))) {
    throw bad('modulesToSave', 'must be a list of module names or null', modulesToSave);
  }
  if (taskType === 'SEQ_CLS') {
    // PeftModelForSequenceClassification: the classifier head always trains and is saved
    modulesToSave = [...new Set([...(modulesToSave ?? []), ...CLASSIFIER_MODULE_NAMES])];
  }
  return {
    r, loraAlpha, targetModules: Array.isArray(targetModules) ? [...targetModules] : targetModules, loraDropout, bias,
    modulesToSave: modulesToSave ? [...modulesToSave] : null, taskType,
    fanInFanOut: c.fanInFanOut ?? defaults.fanInFanOut ?? false,
    baseModelNameOrPath: c.baseModelNameOrPath ?? null, initLoraWeights: c.initLoraWeights ?? true,
    inferenceMode: c.inferenceMode ?? false, useRslora: c.useRslora ?? false, excludeModules: checkExclude(c.excludeModules ?? null),
  };
}

/** adapter_config.json as PEFT writes it (inference_mode true in a saved adapter, as PEFT saves it). */
export function loraConfigToJSON(c: ResolvedLoraConfig): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: c.baseModelNameOrPath,
    bias: c.bias,
    exclude_modules: Array.isArray(c.excludeModules) ? [...c.excludeModules].sort() : c.excludeModules,
    fan_in_fan_out: c.fanInFanOut,
    inference_mode: true,
    init_lora_weights: c.initLoraWeights,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: c.loraAlpha,
    lora_dropout: c.loraDropout,
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: c.modulesToSave,
    peft_type: 'LORA',
    r: c.r,
    rank_pattern: {},
    revision: null,
    target_modules: Array.isArray(c.targetModules) ? [...c.targetModules].sort() : c.targetModules,
    task_type: c.taskType,
    use_dora: false,
    use_rslora: c.useRslora,
  };
}

/**
 * Reads adapter_config.json's fields into a LoraConfig. Features nodegrad does not
 * implement (DoRA, rsLoRA, rank/alpha patterns, layer selection) are refused by name.
 */
export function loraConfigFromJSON(raw: unknown, file: string): LoraConfig {
  const err = (what: string): Error => new Error(`nodegrad: PeftModel.fromPretrained: ${file}: ${what}`);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw err('is not a JSON object');
  const j = raw as Record<string, unknown>;
  if (j.peft_type !== 'LORA') throw err(`peft_type ${JSON.stringify(j.peft_type)} is not supported (only "LORA")`);
  const empty = (v: unknown): boolean => v === undefined || v === null || v === false || (typeof v === 'object' && Object.keys(v as object).length === 0);
  // features that change what the saved tensors mean: refused by name rather than loaded wrongly
  for (const k of ['use_dora', 'rank_pattern', 'alpha_pattern', 'layers_to_transform', 'layer_replication', 'lora_bias',
    'trainable_token_indices', 'target_parameters', 'use_qalora']) {
    if (!empty(j[k])) throw err(`field "${k}" (${JSON.stringify(j[k])}) is not supported by nodegrad's LoRA`);
  }
  // PiSSA / OLoRA / CorDA / LoftQ initialisations change the base weights too; gaussian and the default only the adapter's start
  const init = j.init_lora_weights;
  if (init !== undefined && typeof init !== 'boolean' && init !== 'gaussian') {
    throw err(`field "init_lora_weights" ${JSON.stringify(init)} is not supported (true, false or "gaussian": other initialisations change the base weights)`);
  }
  return {
    r: j.r as number, loraAlpha: j.lora_alpha as number, targetModules: j.target_modules as string[] | string,
    loraDropout: (j.lora_dropout as number | undefined) ?? 0, bias: j.bias as LoraBias | undefined,
    modulesToSave: j.modules_to_save as string[] | null, taskType: j.task_type as TaskType | null,
    fanInFanOut: j.fan_in_fan_out as boolean | undefined, baseModelNameOrPath: (j.base_model_name_or_path as string | null) ?? null,
    initLoraWeights: init === false ? false : true, inferenceMode: (j.inference_mode as boolean | undefined) ?? true,
    useRslora: j.use_rslora === true, excludeModules: (j.exclude_modules as string[] | string | null | undefined) ?? null,
  };
}
