// Hugging Face checkpoint import/export. Checkpoints are built here with HF's names and
// layouts (random weights); the imported models are checked against reference forwards
// written directly over those HF tensors, so the name maps, Conv1D transposes and QKV
// fusion are all exercised.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { BertForMaskedLM, BertForSequenceClassification, BertModel } from '../../lib/models/bert.js';
import { GPT } from '../../lib/models/gpt.js';
import { loadHFConfig } from '../../lib/models/hf.js';
import { expectClose } from '../helpers.js';

const F = ng.nn.functional;
type W = Map<string, Tensor>;

let root = '';
let n = 0;
beforeAll(async () => { root = await mkdtemp(path.join(tmpdir(), 'nodegrad-hf-')); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });
const newDir = () => path.join(root, `m${n++}`);

// ---- HF module structure: the state-dict names transformers uses ----------------------------

const G = { vocab_size: 13, n_positions: 8, n_embd: 8, n_layer: 2, n_head: 2, layer_norm_epsilon: 1e-5 };
const B = {
  vocab_size: 17, hidden_size: 8, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 12,
  max_position_embeddings: 10, type_vocab_size: 2, layer_norm_eps: 1e-12, hidden_act: 'gelu', pad_token_id: 0,
};

/** GPT2Model's parameters in HF layout (Conv1D weights [in, out]). */
function gpt2Shapes(): [string, number[]][] {
  const C = G.n_embd, out: [string, number[]][] = [['wte.weight', [G.vocab_size, C]], ['wpe.weight', [G.n_positions, C]]];
  for (let i = 0; i < G.n_layer; i++) {
    const h = `h.${i}`;
    out.push([`${h}.ln_1.weight`, [C]], [`${h}.ln_1.bias`, [C]], [`${h}.attn.c_attn.weight`, [C, 3 * C]], [`${h}.attn.c_attn.bias`, [3 * C]],
      [`${h}.attn.c_proj.weight`, [C, C]], [`${h}.attn.c_proj.bias`, [C]], [`${h}.ln_2.weight`, [C]], [`${h}.ln_2.bias`, [C]],
      [`${h}.mlp.c_fc.weight`, [C, 4 * C]], [`${h}.mlp.c_fc.bias`, [4 * C]], [`${h}.mlp.c_proj.weight`, [4 * C, C]], [`${h}.mlp.c_proj.bias`, [C]]);
  }
  out.push(['ln_f.weight', [C]], ['ln_f.bias', [C]]);
  return out;
}

/** BertModel's parameters (nn.Linear weights [out, in]). */
function bertShapes(pooler = true): [string, number[]][] {
  const H = B.hidden_size, I = B.intermediate_size;
  const out: [string, number[]][] = [['embeddings.word_embeddings.weight', [B.vocab_size, H]],
    ['embeddings.position_embeddings.weight', [B.max_position_embeddings, H]], ['embeddings.token_type_embeddings.weight', [B.type_vocab_size, H]],
    ['embeddings.LayerNorm.weight', [H]], ['embeddings.LayerNorm.bias', [H]]];
  for (let i = 0; i < B.num_hidden_layers; i++) {
    const l = `encoder.layer.${i}`;
    for (const q of ['query', 'key', 'value']) out.push([`${l}.attention.self.${q}.weight`, [H, H]], [`${l}.attention.self.${q}.bias`, [H]]);
    out.push([`${l}.attention.output.dense.weight`, [H, H]], [`${l}.attention.output.dense.bias`, [H]],
      [`${l}.attention.output.LayerNorm.weight`, [H]], [`${l}.attention.output.LayerNorm.bias`, [H]],
      [`${l}.intermediate.dense.weight`, [I, H]], [`${l}.intermediate.dense.bias`, [I]], [`${l}.output.dense.weight`, [H, I]],
      [`${l}.output.dense.bias`, [H]], [`${l}.output.LayerNorm.weight`, [H]], [`${l}.output.LayerNorm.bias`, [H]]);
  }
  if (pooler) out.push(['pooler.dense.weight', [H, H]], ['pooler.dense.bias', [H]]);
  return out;
}
const clsShapes = (labels: number): [string, number[]][] => [['classifier.weight', [labels, B.hidden_size]], ['classifier.bias', [labels]]];
const mlmShapes = (): [string, number[]][] => [['cls.predictions.bias', [B.vocab_size]],
  ['cls.predictions.transform.dense.weight', [B.hidden_size, B.hidden_size]], ['cls.predictions.transform.dense.bias', [B.hidden_size]],
  ['cls.predictions.transform.LayerNorm.weight', [B.hidden_size]], ['cls.predictions.transform.LayerNorm.bias', [B.hidden_size]]];

function randomWeights(shapes: [string, number[]][], prefix = ''): W {
  const w: W = new Map();
  for (const [k, s] of shapes) {
    const isNorm = /(ln_\d|ln_f|LayerNorm)\.weight$/.test(k);
    w.set(prefix + k, ng.keep(isNorm ? ng.add(ng.randn(s, { std: 0.1 }), 1) : ng.randn(s, { std: 0.3 })));
  }
  return w;
}
const prefixed = (shapes: [string, number[]][], p: string): [string, number[]][] => shapes.map(([k, s]) => [p + k, s]);

/** Writes config.json and the weights (one file, or two shards with an index). */
async function writeCheckpoint(dir: string, config: object, w: W, opts: { dtype?: 'float16' | 'bfloat16'; shards?: boolean } = {}): Promise<void> {
  const conv = new Map([...w].map(([k, t]) => [k, opts.dtype && t.dtype === 'float32' ? t.to(opts.dtype) : t]));
  const files: Record<string, Buffer | string> = { 'config.json': JSON.stringify(config) };
  if (opts.shards) {
    const keys = [...conv.keys()], half = Math.ceil(keys.length / 2);
    const names = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
    const weightMap: Record<string, string> = {};
    [keys.slice(0, half), keys.slice(half)].forEach((ks, i) => {
      files[names[i]] = ng.io.serializeSafetensors(new Map(ks.map((k) => [k, conv.get(k)!])), { format: 'pt' });
      for (const k of ks) weightMap[k] = names[i];
    });
    files['model.safetensors.index.json'] = JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap });
  } else files['model.safetensors'] = ng.io.serializeSafetensors(conv, { format: 'pt' });
  await ng.io.writeDirAtomic(dir, files);
}

/** The HF tensors as the checkpoint stores them (after any half-precision rounding), prefix removed. */
async function readBack(dir: string, prefix: string): Promise<W> {
  const w: W = new Map();
  let files = ['model.safetensors'];
  try {
    files = [...new Set(Object.values((JSON.parse(await readFile(path.join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> }).weight_map))];
  } catch { /* single file */ }
  for (const f of files) {
    for (const [k, t] of (await ng.io.loadSafetensors(path.join(dir, f))).tensors) {
      w.set(k.startsWith(prefix) ? k.slice(prefix.length) : k.replace(/gamma$/, 'weight').replace(/beta$/, 'bias'), ng.keep(t));
    }
  }
  for (const [k, t] of [...w]) if (/gamma$|beta$/.test(k)) w.set(k.replace(/gamma$/, 'weight').replace(/beta$/, 'bias'), t);
  return w;
}

// ---- reference forwards over HF tensors ----------------------------------------------------

function attend(q: Tensor, k: Tensor, v: Tensor, heads: number, mask: 'causal' | Tensor | null): Tensor {
  const [b, t, c] = q.shape, d = c / heads;
  const sh = (x: Tensor) => x.reshape(b, t, heads, d).permute(0, 2, 1, 3);
  let s = ng.matmul(sh(q), sh(k).transpose(2, 3)).mul(1 / Math.sqrt(d));
  if (mask === 'causal') s = s.maskedFill(ng.arange(t).reshape(1, t).gt(ng.arange(t).reshape(t, 1)), -Infinity); // key j > query i
  else if (mask) s = s.add(ng.sub(1, mask.reshape(b, 1, 1, t).float()).mul(-1e9));
  return ng.matmul(ng.softmax(s, -1), sh(v)).permute(0, 2, 1, 3).reshape(b, t, c);
}

function gpt2Reference(w: W, ids: Tensor): Tensor {
  const g = (k: string) => w.get(k)!;
  const conv1d = (x: Tensor, p: string) => ng.matmul(x, g(`${p}.weight`)).add(g(`${p}.bias`));
  const ln = (x: Tensor, p: string) => F.layerNorm(x, [G.n_embd], g(`${p}.weight`), g(`${p}.bias`), G.layer_norm_epsilon);
  const T = ids.shape[1], C = G.n_embd;
  let x = F.embedding(ids, g('wte.weight')).add(F.embedding(ng.arange(0, T, 1, { dtype: 'int32' }), g('wpe.weight')));
  for (let i = 0; i < G.n_layer; i++) {
    const h = `h.${i}`;
    const qkv = conv1d(ln(x, `${h}.ln_1`), `${h}.attn.c_attn`);
    x = x.add(conv1d(attend(qkv.narrow(2, 0, C), qkv.narrow(2, C, C), qkv.narrow(2, 2 * C, C), G.n_head, 'causal'), `${h}.attn.c_proj`));
    x = x.add(conv1d(F.gelu(conv1d(ln(x, `${h}.ln_2`), `${h}.mlp.c_fc`), { approximate: 'tanh' }), `${h}.mlp.c_proj`));
  }
  return ng.matmul(ln(x, 'ln_f'), g('wte.weight').transpose(0, 1));
}

function bertReference(w: W, ids: Tensor, types: Tensor, mask: Tensor | null): { hidden: Tensor; pooled: Tensor | null } {
  const g = (k: string) => w.get(k)!;
  const lin = (x: Tensor, p: string) => F.linear(x, g(`${p}.weight`), g(`${p}.bias`));
  const ln = (x: Tensor, p: string) => F.layerNorm(x, [B.hidden_size], g(`${p}.weight`), g(`${p}.bias`), B.layer_norm_eps);
  const T = ids.shape[1];
  let x = F.embedding(ids, g('embeddings.word_embeddings.weight')).add(F.embedding(ng.arange(0, T, 1, { dtype: 'int32' }), g('embeddings.position_embeddings.weight')))
    .add(F.embedding(types, g('embeddings.token_type_embeddings.weight')));
  x = ln(x, 'embeddings.LayerNorm');
  for (let i = 0; i < B.num_hidden_layers; i++) {
    const l = `encoder.layer.${i}`;
    const a = attend(lin(x, `${l}.attention.self.query`), lin(x, `${l}.attention.self.key`), lin(x, `${l}.attention.self.value`), B.num_attention_heads, mask);
    x = ln(x.add(lin(a, `${l}.attention.output.dense`)), `${l}.attention.output.LayerNorm`);
    x = ln(x.add(lin(F.gelu(lin(x, `${l}.intermediate.dense`)), `${l}.output.dense`)), `${l}.output.LayerNorm`);
  }
  return { hidden: x, pooled: w.has('pooler.dense.weight') ? ng.tanh(lin(x.select(1, 0), 'pooler.dense')) : null };
}

const ids = () => ng.tensor([[1, 5, 9, 2, 12, 3], [4, 4, 0, 7, 11, 6]], { dtype: 'int32' });
const types = () => ng.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]], { dtype: 'int32' });
const mask = () => ng.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], { dtype: 'int32' });
const quietly = <T>(fn: () => Promise<T>) => {
  const spy = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
  return fn().finally(() => spy.mockRestore());
};

describe('loadHFConfig', () => {
  test('maps GPT-2 and BERT fields that change the computation', async () => {
    const d1 = newDir();
    await writeCheckpoint(d1, { model_type: 'gpt2', vocab_size: 50, n_ctx: 32, n_embd: 16, n_layer: 3, n_head: 4, layer_norm_epsilon: 1e-6, activation_function: 'gelu_pytorch_tanh', resid_pdrop: 0.2 }, new Map());
    const g = await loadHFConfig(d1);
    expect(g.modelType).toBe('gpt2');
    expect(g.config).toEqual({ vocabSize: 50, blockSize: 32, nLayer: 3, nHead: 4, nEmbd: 16, dropout: 0.2, bias: true, layerNormEps: 1e-6, checkpoint: false, padVocabMultiple: 0 });
    const d2 = newDir();
    await writeCheckpoint(d2, { ...B, architectures: ['BertForSequenceClassification'], hidden_act: 'relu', id2label: { 0: 'neg', 1: 'neu', 2: 'pos' }, problem_type: 'multi_label_classification', classifier_dropout: 0.3 }, new Map());
    const b = await loadHFConfig(d2);
    expect(b.modelType).toBe('bert');
    expect(b.config).toMatchObject({ vocabSize: 17, hiddenSize: 8, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 12, hiddenAct: 'relu',
      layerNormEps: 1e-12, numLabels: 3, id2label: { 0: 'neg', 1: 'neu', 2: 'pos' }, problemType: 'multi_label_classification', classifierDropout: 0.3, padTokenId: 0 });
  });

  test('rejects configs whose computation the models cannot reproduce', async () => {
    const cases: [object, RegExp][] = [
      [{ model_type: 'gpt2', activation_function: 'relu' }, /"activation_function".*not supported/],
      [{ model_type: 'gpt2', n_embd: 8, n_inner: 16 }, /"n_inner".*4 \* n_embd = 32/],
      [{ model_type: 'gpt2', tie_word_embeddings: false }, /"tie_word_embeddings"/],
      [{ model_type: 'bert', position_embedding_type: 'relative_key' }, /"position_embedding_type"/],
      [{ model_type: 'bert', hidden_size: '8' }, /"hidden_size".*must be an integer/],
      [{ model_type: 't5' }, /model_type "t5".*not supported/],
    ];
    for (const [cfg, re] of cases) {
      const d = newDir();
      await writeCheckpoint(d, cfg, new Map());
      await expect(loadHFConfig(d)).rejects.toThrow(re);
    }
    await expect(loadHFConfig(path.join(root, 'nowhere'))).rejects.toThrow(/nodegrad: loadHFConfig: cannot read .*config\.json/);
  });
});

describe('GPT-2 import', () => {
  const variants: [string, { prefix: string; dtype?: 'float16' | 'bfloat16'; shards?: boolean; extras?: boolean }][] = [
    ['GPT2LMHeadModel names (transformer. prefix, lm_head, attn.bias/masked_bias buffers)', { prefix: 'transformer.', extras: true }],
    ['GPT2Model names (no prefix)', { prefix: '' }],
    ['float16 weights', { prefix: 'transformer.', dtype: 'float16' }],
    ['bfloat16 weights', { prefix: '', dtype: 'bfloat16' }],
    ['two shards with an index', { prefix: 'transformer.', shards: true }],
  ];
  for (const [name, v] of variants) {
    test(`logits match a Conv1D-layout reference: ${name}`, async () => {
      ng.manualSeed(3);
      const w = randomWeights(gpt2Shapes(), v.prefix);
      if (v.extras) {
        for (let i = 0; i < G.n_layer; i++) {
          w.set(`transformer.h.${i}.attn.bias`, ng.ones([1, 1, G.n_positions, G.n_positions]));
          w.set(`transformer.h.${i}.attn.masked_bias`, ng.tensor(-1e4));
        }
        w.set('lm_head.weight', w.get('transformer.wte.weight')!);
      }
      const dir = newDir();
      await writeCheckpoint(dir, { model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], ...G }, w, v);
      const warn = vi.spyOn(console, 'warn');
      const gpt = await GPT.fromPretrained(dir);
      expect(warn).not.toHaveBeenCalled();
      warn.mockRestore();
      expect(gpt.training).toBe(false);
      const ref = gpt2Reference(await readBack(dir, v.prefix), ids());
      expectClose(gpt.forward(ids()).logits, ref, { atol: 1e-4 });
    });
  }
});

describe('BERT import', () => {
  test('BertModel from BertModel names, BertForPreTraining names (bert. prefix, gamma/beta, cls heads) and shards', async () => {
    ng.manualSeed(4);
    const plain = randomWeights(bertShapes());
    const old = new Map([...randomWeights([...prefixed(bertShapes(), 'bert.'), ...mlmShapes(), ['cls.seq_relationship.weight', [2, 8]], ['cls.seq_relationship.bias', [2]]])]
      .map(([k, t]) => [k.replace(/LayerNorm\.weight$/, 'LayerNorm.gamma').replace(/LayerNorm\.bias$/, 'LayerNorm.beta'), t]));
    old.set('bert.embeddings.position_ids', ng.arange(0, 10, 1, { dtype: 'int32' }).reshape(1, 10));
    const cases: [W, string, boolean][] = [[plain, '', false], [old, 'bert.', false], [plain, '', true]];
    for (const [w, prefix, shards] of cases) {
      const dir = newDir();
      await writeCheckpoint(dir, { model_type: 'bert', ...B }, w, { shards });
      const warn = vi.spyOn(console, 'warn');
      const bert = await BertModel.fromPretrained(dir);
      expect(warn).not.toHaveBeenCalled();
      warn.mockRestore();
      const out = bert.forward({ inputIds: ids(), tokenTypeIds: types(), attentionMask: mask() });
      const ref = bertReference(await readBack(dir, prefix), ids(), types(), mask());
      expectClose(out.lastHiddenState, ref.hidden, { atol: 1e-4 });
      expectClose(out.poolerOutput!, ref.pooled!, { atol: 1e-4 });
    }
  });

  test('heads load from their HF names and match the reference', async () => {
    ng.manualSeed(5);
    const dir = newDir();
    await writeCheckpoint(dir, { model_type: 'bert', ...B, id2label: { 0: 'a', 1: 'b', 2: 'c' } }, randomWeights([...prefixed(bertShapes(), 'bert.'), ...clsShapes(3)]), { dtype: 'bfloat16' });
    const cls = await BertForSequenceClassification.fromPretrained(dir);
    expect(cls.numLabels).toBe(3);
    const w = await readBack(dir, 'bert.');
    const ref = bertReference(w, ids(), types(), mask());
    expectClose(cls.forward({ inputIds: ids(), tokenTypeIds: types(), attentionMask: mask() }).logits, F.linear(ref.pooled!, w.get('classifier.weight')!, w.get('classifier.bias')!), { atol: 1e-4 });

    const dir2 = newDir();
    await writeCheckpoint(dir2, { model_type: 'bert', ...B }, randomWeights([...prefixed(bertShapes(false), 'bert.'), ...mlmShapes()]));
    const mlm = await BertForMaskedLM.fromPretrained(dir2);
    const w2 = await readBack(dir2, 'bert.');
    const h = bertReference(w2, ids(), types(), null).hidden;
    const t = F.layerNorm(F.gelu(F.linear(h, w2.get('cls.predictions.transform.dense.weight')!, w2.get('cls.predictions.transform.dense.bias')!)), [8],
      w2.get('cls.predictions.transform.LayerNorm.weight')!, w2.get('cls.predictions.transform.LayerNorm.bias')!, 1e-12);
    const logits = F.linear(t, w2.get('embeddings.word_embeddings.weight')!, w2.get('cls.predictions.bias')!);
    expectClose(mlm.forward({ inputIds: ids(), tokenTypeIds: types() }).logits, logits, { atol: 1e-4 });
  });

  test('absent heads are freshly initialised with a warning that lists them', async () => {
    ng.manualSeed(6);
    const dir = newDir();
    await writeCheckpoint(dir, { model_type: 'bert', ...B, initializer_range: 0.02 }, randomWeights(bertShapes(false)));
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const cls = await BertForSequenceClassification.fromPretrained(dir, { numLabels: 4 });
    expect(warn).toHaveBeenCalledTimes(1);
    const msg = String(warn.mock.calls[0][0]);
    for (const k of ['bert.pooler.dense.weight', 'bert.pooler.dense.bias', 'classifier.weight', 'classifier.bias']) expect(msg).toContain(k);
    expect(msg).toMatch(/^nodegrad: BertForSequenceClassification\.fromPretrained: newly initialised/);
    expect(cls.classifier.weight.shape).toEqual([4, 8]);
    expect(ng.std(cls.classifier.weight).item()).toBeLessThan(0.05);
    expect(cls.classifier.bias!.abs().sum().item()).toBe(0);
    expect(cls.config.id2label).toEqual({ 0: 'LABEL_0', 1: 'LABEL_1', 2: 'LABEL_2', 3: 'LABEL_3' });
    warn.mockClear();
    const mlm = await BertForMaskedLM.fromPretrained(dir);
    expect(String(warn.mock.calls[0][0])).toMatch(/cls\.predictions\.bias.*cls\.predictions\.transform\.dense\.weight|cls\.predictions\.transform\.dense\.weight.*cls\.predictions\.bias/);
    expect(mlm.transformNorm.weight!.sum().item()).toBe(8);
    warn.mockRestore();
  });

  test('a wrong or missing tensor is an error naming the key and the expected shape', async () => {
    ng.manualSeed(7);
    const w = randomWeights(prefixed(bertShapes(), 'bert.'));
    w.set('bert.encoder.layer.1.attention.self.key.weight', ng.randn([8, 6]));
    const d1 = newDir();
    await writeCheckpoint(d1, { model_type: 'bert', ...B }, w);
    await expect(BertModel.fromPretrained(d1)).rejects.toThrow(
      /nodegrad: BertModel\.fromPretrained: tensor "bert\.encoder\.layer\.1\.attention\.self\.key\.weight" in .*model\.safetensors has shape \[8,6\] but the config needs \[8,8\]/);
    w.delete('bert.encoder.layer.1.attention.self.key.weight');
    const d2 = newDir();
    await writeCheckpoint(d2, { model_type: 'bert', ...B }, w, { shards: true });
    await expect(BertModel.fromPretrained(d2)).rejects.toThrow(/has no tensor "bert\.encoder\.layer\.1\.attention\.self\.key\.weight" \(expected shape \[8,8\]\)/);
    const g = randomWeights(gpt2Shapes());
    g.set('h.0.attn.c_attn.weight', ng.randn([24, 8])); // stored [out, in] instead of Conv1D's [in, out]
    const d3 = newDir();
    await writeCheckpoint(d3, { model_type: 'gpt2', ...G }, g);
    await expect(GPT.fromPretrained(d3)).rejects.toThrow(/tensor "h\.0\.attn\.c_attn\.weight" .* has shape \[24,8\] but the config needs \[8,24\]/);
    const d4 = newDir();
    await writeCheckpoint(d4, { model_type: 'gpt2', ...G }, new Map());
    await rm(path.join(d4, 'model.safetensors'));
    await writeFile(path.join(d4, 'pytorch_model.bin'), '');
    await expect(GPT.fromPretrained(d4)).rejects.toThrow(/neither model\.safetensors nor .*pytorch_model\.bin is not read/);
    await writeFile(path.join(d4, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'wte.weight': '../x.safetensors' } }));
    await expect(GPT.fromPretrained(d4)).rejects.toThrow(/not a file name in the same directory/);
    await expect(BertModel.fromPretrained(d3)).rejects.toThrow(/holds a gpt2 model, not bert/);
  });
});

// ---- export ----------------------------------------------------------------------------

async function exportedKeys(dir: string): Promise<string[]> {
  const r = await ng.io.openSafetensors(path.join(dir, 'model.safetensors'));
  try {
    expect(r.metadata).toEqual({ format: 'pt' });
    return r.keys().sort();
  } finally {
    await r.close();
  }
}
const sorted = (shapes: [string, number[]][]) => shapes.map(([k]) => k).sort();

describe('export (savePretrained)', () => {
  test('GPT: HF GPT2LMHeadModel keys and Conv1D layout; import -> export -> import keeps the logits', async () => {
    ng.manualSeed(8);
    const src = newDir();
    await writeCheckpoint(src, { model_type: 'gpt2', ...G, layer_norm_epsilon: 1e-6, bos_token_id: 3 }, randomWeights(gpt2Shapes()));
    const a = await GPT.fromPretrained(src);
    const out = newDir();
    await a.savePretrained(out);
    expect(await exportedKeys(out)).toEqual(sorted(prefixed(gpt2Shapes(), 'transformer.')));
    const cfg = JSON.parse(await readFile(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).toMatchObject({ architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', n_embd: 8, n_layer: 2, n_head: 2, n_positions: 8, vocab_size: 13, layer_norm_epsilon: 1e-6, bos_token_id: 3, tie_word_embeddings: true });
    // the written tensors are the source's, bit for bit, in the source's layout
    const before = await readBack(src, ''), after = await readBack(out, 'transformer.');
    for (const [k, t] of before) expect(Array.from(after.get(k)!.dataSync() as Float32Array), k).toEqual(Array.from(t.dataSync() as Float32Array));
    const b = await GPT.fromPretrained(out);
    expect(Array.from(b.forward(ids()).logits.dataSync())).toEqual(Array.from(a.forward(ids()).logits.dataSync()));
  });

  test('a fresh GPT without biases exports zero biases that compute the same', async () => {
    ng.manualSeed(9);
    const gpt = new GPT({ vocabSize: 13, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 8, bias: false }).eval();
    const dir = newDir();
    await gpt.savePretrained(dir, { dtype: 'bfloat16' });
    const r = await ng.io.openSafetensors(path.join(dir, 'model.safetensors'));
    expect(r.info('transformer.h.0.attn.c_attn.weight')).toMatchObject({ dtype: 'BF16', shape: [8, 24] });
    await r.close();
    const back = await GPT.fromPretrained(dir);
    expectClose(back.forward(ids()).logits, gpt.forward(ids()).logits, { atol: 0.05, rtol: 0.05 });
  });

  test('saving into an existing directory keeps its other files and replaces old weights', async () => {
    ng.manualSeed(12);
    const dir = newDir();
    await writeCheckpoint(dir, { model_type: 'bert', ...B }, randomWeights(bertShapes()), { shards: true });
    await writeFile(path.join(dir, 'vocab.txt'), '[PAD]\n[UNK]\n');
    const m = await BertModel.fromPretrained(dir);
    await m.savePretrained(dir, { extraFiles: { 'special_tokens_map.json': '{}' } });
    expect((await readdir(dir)).sort()).toEqual(['config.json', 'model.safetensors', 'special_tokens_map.json', 'vocab.txt']);
    expect(await readFile(path.join(dir, 'vocab.txt'), 'utf8')).toBe('[PAD]\n[UNK]\n');
    const again = await BertModel.fromPretrained(dir);
    expect(Array.from(again.forward({ inputIds: ids() }).lastHiddenState.dataSync())).toEqual(Array.from(m.forward({ inputIds: ids() }).lastHiddenState.dataSync()));
  });

  const bertCases: [string, () => Promise<BertModel | BertForSequenceClassification | BertForMaskedLM>, string[], object][] = [
    ['BertModel', async () => new BertModel({ ...bertCfg() }), sorted(bertShapes()), { architectures: ['BertModel'] }],
    ['BertForSequenceClassification', async () => new BertForSequenceClassification({ ...bertCfg(), id2label: { 0: 'ham', 1: 'spam', 2: 'eggs' }, problemType: 'single_label_classification' }),
      sorted([...prefixed(bertShapes(), 'bert.'), ...clsShapes(3)]),
      { architectures: ['BertForSequenceClassification'], id2label: { 0: 'ham', 1: 'spam', 2: 'eggs' }, label2id: { ham: 0, spam: 1, eggs: 2 }, problem_type: 'single_label_classification' }],
    ['BertForMaskedLM', async () => new BertForMaskedLM(bertCfg()), sorted([...prefixed(bertShapes(false), 'bert.'), ...mlmShapes()]),
      { architectures: ['BertForMaskedLM'], tie_word_embeddings: true }],
    ['BertForMaskedLM (untied decoder)', async () => new BertForMaskedLM({ ...bertCfg(), tieWordEmbeddings: false }),
      sorted([...prefixed(bertShapes(false), 'bert.'), ...mlmShapes(), ['cls.predictions.decoder.weight', []]]), { tie_word_embeddings: false }],
  ];
  for (const [name, make, keys, cfgFields] of bertCases) {
    test(`${name}: HF key set and config; import -> export -> import keeps the logits`, async () => {
      ng.manualSeed(10);
      const a = (await make()).eval();
      const d1 = newDir(), d2 = newDir();
      await a.savePretrained(d1);
      expect(await exportedKeys(d1)).toEqual(keys);
      const cfg = JSON.parse(await readFile(path.join(d1, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(cfg).toMatchObject({ model_type: 'bert', hidden_size: 8, num_hidden_layers: 2, intermediate_size: 12, hidden_act: 'gelu_new', layer_norm_eps: 1e-7, ...cfgFields });
      const load = (d: string) => (a instanceof BertForMaskedLM ? BertForMaskedLM : a instanceof BertForSequenceClassification ? BertForSequenceClassification : BertModel).fromPretrained(d);
      const b = await load(d1);
      await b.savePretrained(d2);
      const c = await load(d2);
      const inp = { inputIds: ids(), tokenTypeIds: types(), attentionMask: mask() };
      const pick = (m: typeof a) => ('classifier' in m || 'transformDense' in m ? (m as BertForMaskedLM).forward(inp).logits : m.forward(inp).lastHiddenState);
      const la = Array.from(pick(a).dataSync()), lc = Array.from(pick(c).dataSync());
      expect(lc).toEqual(la);
      expect(await readFile(path.join(d2, 'model.safetensors'))).toEqual(await readFile(path.join(d1, 'model.safetensors')));
    });
  }
});

function bertCfg() {
  return { vocabSize: 17, hiddenSize: 8, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 12, maxPositionEmbeddings: 10, hiddenAct: 'gelu_new' as const, layerNormEps: 1e-7 };
}

describe('fromPretrained options', () => {
  test('numLabels different from the checkpoint makes a fresh classifier of that size', async () => {
    ng.manualSeed(11);
    const dir = newDir();
    await writeCheckpoint(dir, { model_type: 'bert', ...B }, randomWeights([...prefixed(bertShapes(), 'bert.'), ...clsShapes(2)]));
    await expect(BertForSequenceClassification.fromPretrained(dir, { numLabels: 5 })).rejects.toThrow(/"classifier\.weight" .* has shape \[2,8\] but the config needs \[5,8\]/);
    const m = await quietly(() => BertForSequenceClassification.fromPretrained(dir, { numLabels: 2, problemType: 'regression' }));
    expect(m.config.problemType).toBe('regression');
  });
});
