// Where each Hugging Face module of a model lives in nodegrad's module tree. PEFT names
// adapter tensors by the HF module path ("transformer.h.0.attn.c_attn"); nodegrad's modules
// are named differently ("h.0.attn.cAttn") and BERT's query/key/value are one fused Linear
// here (rows q | k | v), so an HF module may be a row slice of one of our Linears.
import { BertForMaskedLM, BertForSequenceClassification, BertModel } from '../models/bert.js';
import { GPT } from '../models/gpt.js';
import { Embedding, Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';

export interface HFModule {
  /** HF module path in the task model (e.g. "bert.encoder.layer.0.attention.self.query"). */
  hf: string;
  /** Our module path (a Linear, Embedding or LayerNorm). */
  ours: string;
  kind: 'linear' | 'embedding' | 'layernorm';
  /** Rows [start, start + length) of our Linear's output (fused projections). */
  rows?: { start: number; length: number };
  /** HF stores this layer as a Conv1D, weight [in, out] (GPT-2). */
  conv1d?: boolean;
}

export interface ModelLayout { modelType: string; modules: HFModule[] }

function gpt2Layout(m: GPT): ModelLayout {
  const out: HFModule[] = [
    { hf: 'transformer.wte', ours: 'wte', kind: 'embedding' },
    { hf: 'transformer.wpe', ours: 'wpe', kind: 'embedding' },
  ];
  for (let i = 0; i < m.config.nLayer; i++) {
    const h = `transformer.h.${i}`, o = `h.${i}`;
    out.push(
      { hf: `${h}.ln_1`, ours: `${o}.ln1`, kind: 'layernorm' },
      { hf: `${h}.attn.c_attn`, ours: `${o}.attn.cAttn`, kind: 'linear', conv1d: true },
      { hf: `${h}.attn.c_proj`, ours: `${o}.attn.cProj`, kind: 'linear', conv1d: true },
      { hf: `${h}.ln_2`, ours: `${o}.ln2`, kind: 'layernorm' },
      { hf: `${h}.mlp.c_fc`, ours: `${o}.mlp.cFc`, kind: 'linear', conv1d: true },
      { hf: `${h}.mlp.c_proj`, ours: `${o}.mlp.cProj`, kind: 'linear', conv1d: true },
    );
  }
  out.push({ hf: 'transformer.ln_f', ours: 'lnF', kind: 'layernorm' });
  return { modelType: 'gpt2', modules: out };
}

function bertLayout(m: BertModel | BertForSequenceClassification | BertForMaskedLM): ModelLayout {
  const base = m instanceof BertModel ? m : m.bert;
  const p = m instanceof BertModel ? '' : 'bert.';
  const c = base.config, H = c.hiddenSize;
  const out: HFModule[] = [
    { hf: `${p}embeddings.word_embeddings`, ours: `${p}embeddings.wordEmbeddings`, kind: 'embedding' },
    { hf: `${p}embeddings.position_embeddings`, ours: `${p}embeddings.positionEmbeddings`, kind: 'embedding' },
    { hf: `${p}embeddings.token_type_embeddings`, ours: `${p}embeddings.tokenTypeEmbeddings`, kind: 'embedding' },
    { hf: `${p}embeddings.LayerNorm`, ours: `${p}embeddings.layerNorm`, kind: 'layernorm' },
  ];
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const h = `${p}encoder.layer.${i}`, o = `${p}encoder.layer.${i}`;
    ['query', 'key', 'value'].forEach((n, k) => out.push({
      hf: `${h}.attention.self.${n}`, ours: `${o}.attention.cAttn`, kind: 'linear', rows: { start: k * H, length: H },
    }));
    out.push(
      { hf: `${h}.attention.output.dense`, ours: `${o}.attention.cProj`, kind: 'linear' },
      { hf: `${h}.attention.output.LayerNorm`, ours: `${o}.attentionNorm`, kind: 'layernorm' },
      { hf: `${h}.intermediate.dense`, ours: `${o}.intermediate`, kind: 'linear' },
      { hf: `${h}.output.dense`, ours: `${o}.output`, kind: 'linear' },
      { hf: `${h}.output.LayerNorm`, ours: `${o}.outputNorm`, kind: 'layernorm' },
    );
  }
  if (base.pooler) out.push({ hf: `${p}pooler.dense`, ours: `${p}pooler.dense`, kind: 'linear' });
  if (m instanceof BertForSequenceClassification) out.push({ hf: 'classifier', ours: 'classifier', kind: 'linear' });
  if (m instanceof BertForMaskedLM) {
    out.push(
      { hf: 'cls.predictions.transform.dense', ours: 'transformDense', kind: 'linear' },
      { hf: 'cls.predictions.transform.LayerNorm', ours: 'transformNorm', kind: 'layernorm' },
    );
  }
  return { modelType: 'bert', modules: out };
}

const HF_NAMED_TYPES = ['llama', 'mistral', 'qwen2', 'qwen3'];

/**
 * Models whose module tree already uses Hugging Face's names (LlamaForCausalLM: model.layers.0.self_attn.q_proj):
 * every Linear maps to itself. The LM head is left out: it runs through its weight (tied or not), not its forward.
 */
function hfNamedLayout(m: Module): ModelLayout | null {
  const t = (m as unknown as { config?: { modelType?: unknown } }).config?.modelType;
  if (m.constructor.name !== 'LlamaForCausalLM' || typeof t !== 'string' || !HF_NAMED_TYPES.includes(t)) return null;
  const out: HFModule[] = [];
  for (const [p, sub] of m.namedModules()) {
    if (p === '' || p === 'lm_head') continue;
    if (sub instanceof Linear) out.push({ hf: p, ours: p, kind: 'linear' });
    else if (sub instanceof Embedding) out.push({ hf: p, ours: p, kind: 'embedding' });
    else if (sub.children().length === 0 && sub.parameters().length > 0) out.push({ hf: p, ours: p, kind: 'layernorm' });
  }
  return { modelType: t, modules: out };
}

/** True for the causal LMs hfNamedLayout knows (their PEFT task type is CAUSAL_LM). */
export function isHFNamedCausalLM(m: Module): boolean { return hfNamedLayout(m) !== null; }

type LayoutFn = (m: Module) => ModelLayout | null;
/** Other model families (Llama, ...) register their layout here from their own files. */
const EXTRA: LayoutFn[] = [];
export function registerLayout(fn: LayoutFn): void { EXTRA.push(fn); }

/** The HF module map of a model nodegrad can adapt, or an error naming what it supports. */
export function modelLayout(m: Module): ModelLayout {
  if (m instanceof GPT) return gpt2Layout(m);
  if (m instanceof BertModel || m instanceof BertForSequenceClassification || m instanceof BertForMaskedLM) return bertLayout(m);
  const named = hfNamedLayout(m);
  if (named) return named;
  for (const f of EXTRA) {
    const l = f(m);
    if (l) return l;
  }
  throw new Error(`nodegrad: getPeftModel: ${m?.constructor?.name ?? typeof m} is not supported (supported: GPT, BertModel, BertForSequenceClassification, BertForMaskedLM, LlamaForCausalLM for llama/mistral/qwen2/qwen3)`);
}

/** PEFT's check_target_module_exists: a list entry matches the whole path or its end after a dot; a string is a full-match regex. */
export function matchesTarget(targets: string[] | string, key: string): boolean {
  if (typeof targets === 'string') return new RegExp(`^(?:${targets})$`).test(key);
  return targets.some((t) => key === t || key.endsWith(`.${t}`));
}
