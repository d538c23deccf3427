// GPT-2's part of the Hugging Face machinery (hf.ts): config.json <-> GPTConfig and the
// weight-name rules between GPT2LMHeadModel / GPT2Model checkpoints and GPT (Conv1D
// weights stored [in, out], hence 'transpose'; lm_head tied to wte, so not written).
import path from 'node:path';
import { resolveCheckpointDir } from '../io/atomic.js';
import type { Module } from '../nn/module.js';
import { GPT, checkGPTSize, gptParameterShapes, type GPTConfig } from './gpt.js';
import {
  Fields, buildAndCopy, loadHFConfig, matchWeights, registerHFFamily, rule, saveWeights, wb,
  type Plan, type PretrainedCheckOptions, type Raw, type SavePretrainedOptions,
} from './hf.js';

export type GPT2Config = Required<GPTConfig>;

declare module './hf.js' {
  interface HFConfigTypes { gpt2: GPT2Config }
}

/** The config.json each loaded model came with, so an export keeps fields we do not model. */
const RAW = new WeakMap<Module, Raw>();
const TANH_GELU = ['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'];

function gpt2Config(f: Fields): GPT2Config {
  const nEmbd = f.int('n_embd', 768);
  f.unsupported('activation_function', (v) => TANH_GELU.includes(v as string), `GPT uses the tanh GELU (${TANH_GELU.join(', ')})`);
  f.unsupported('n_inner', (v) => v === 4 * nEmbd, `the MLP width is 4 * n_embd = ${4 * nEmbd}`);
  f.unsupported('scale_attn_weights', (v) => v === true, 'attention scores are always scaled by 1/sqrt(head dim)');
  f.unsupported('scale_attn_by_inverse_layer_idx', (v) => v === false, 'no per-layer attention scaling');
  f.unsupported('add_cross_attention', (v) => v === false, 'no cross-attention');
  f.unsupported('tie_word_embeddings', (v) => v === true, 'the output projection is tied to wte');
  return {
    vocabSize: f.int('vocab_size', 50257), blockSize: f.int('n_positions', f.int('n_ctx', 1024)), nLayer: f.int('n_layer', 12),
    nHead: f.int('n_head', 12), nEmbd, dropout: f.num('resid_pdrop', 0.1), bias: true, layerNormEps: f.num('layer_norm_epsilon', 1e-5),
    checkpoint: false, padVocabMultiple: 0,
  };
}

function gpt2ConfigJSON(model: GPT, raw: Raw = {}): Raw {
  const c = model.config;
  const keepDrops = raw.resid_pdrop === c.dropout;
  const { torch_dtype: _t, dtype: _d, transformers_version: _v, ...base } = raw;
  return {
    ...base, architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', vocab_size: c.vocabSize, n_positions: c.blockSize,
    n_ctx: c.blockSize, n_embd: c.nEmbd, n_layer: c.nLayer, n_head: c.nHead, n_inner: null,
    activation_function: TANH_GELU.includes(raw.activation_function as string) ? raw.activation_function : 'gelu_new',
    resid_pdrop: c.dropout, embd_pdrop: keepDrops ? raw.embd_pdrop ?? c.dropout : c.dropout,
    attn_pdrop: keepDrops ? raw.attn_pdrop ?? c.dropout : c.dropout, layer_norm_epsilon: model.lnF.eps,
    initializer_range: raw.initializer_range ?? 0.02, scale_attn_weights: true, scale_attn_by_inverse_layer_idx: false,
    reorder_and_upcast_attn: raw.reorder_and_upcast_attn ?? false, tie_word_embeddings: true, use_cache: raw.use_cache ?? true,
  };
}

function gptPlan(nLayer: number): Plan {
  const rules = [rule('wte.weight', 'wte.weight'), rule('wpe.weight', 'wpe.weight')];
  for (let i = 0; i < nLayer; i++) {
    const o = `h.${i}`;
    rules.push(...wb(`${o}.ln1`, `${o}.ln_1`), ...wb(`${o}.attn.cAttn`, `${o}.attn.c_attn`, 'transpose'),
      ...wb(`${o}.attn.cProj`, `${o}.attn.c_proj`, 'transpose'), ...wb(`${o}.ln2`, `${o}.ln_2`),
      ...wb(`${o}.mlp.cFc`, `${o}.mlp.c_fc`, 'transpose'), ...wb(`${o}.mlp.cProj`, `${o}.mlp.c_proj`, 'transpose'));
  }
  rules.push(...wb('lnF', 'ln_f'));
  return {
    what: 'GPT', basePrefix: 'transformer.', exportPrefix: 'transformer.', rules,
    ignore: [/^h\.\d+\.attn\.(bias|masked_bias)$/, /^lm_head\.weight$/],
  };
}

/** How our GPT config fields are called in a GPT-2 config.json. */
const GPT2_NAMES: Record<string, string> = {
  vocabSize: 'vocab_size', blockSize: 'n_positions', nLayer: 'n_layer', nHead: 'n_head', nEmbd: 'n_embd',
  dropout: 'resid_pdrop', layerNormEps: 'layer_norm_epsilon',
};

/** config.json, the model's size and the weights' headers checked against each other; no model is allocated yet. */
async function prepareGPT2(dir: string, check: PretrainedCheckOptions = {}) {
  const op = check.op ?? 'GPT.fromPretrained';
  const hf = await loadHFConfig(dir);
  if (hf.modelType !== 'gpt2') throw new Error(`nodegrad: ${op}: ${dir} holds a ${hf.modelType} model, not gpt2`);
  const config = checkGPTSize(hf.config, { op, file: path.join(dir, 'config.json'), names: GPT2_NAMES, copies: check.copies });
  const plan = gptPlan(config.nLayer);
  const matched = await matchWeights(dir, plan, new Map(gptParameterShapes(config)));
  return { hf, config, plan, matched };
}

/** A Hugging Face GPT-2 directory (GPT2LMHeadModel or GPT2Model weights) as a GPT, in eval mode. */
export async function loadGPT2Pretrained(dir: string): Promise<GPT> {
  dir = await resolveCheckpointDir(dir, { missingOk: true }); // finishes a save that was interrupted
  // config, size and weights header are checked before the model is allocated
  const { hf, config, plan, matched } = await prepareGPT2(dir);
  const model = await buildAndCopy(() => new GPT(config), matched, plan, dir);
  RAW.set(model, hf.raw);
  return model.eval();
}

/** Writes model as a Hugging Face GPT2LMHeadModel directory (lm_head tied, so not written). */
export async function saveGPT2Pretrained(model: GPT, dir: string, opts: SavePretrainedOptions = {}): Promise<void> {
  await saveWeights(model, dir, gptPlan(model.config.nLayer), gpt2ConfigJSON(model, RAW.get(model)), opts);
}

registerHFFamily({
  modelTypes: ['gpt2'], architectures: { GPT2: 'gpt2' }, classes: ['GPT'],
  readConfig: (f) => gpt2Config(f),
  inspect: async (dir, _cls, check) => { await (await prepareGPT2(dir, check)).matched.close(); },
});
