import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { data, models, optim, peft } from '../../lib/index.js';
import { native } from '../../lib/native.js';
import { expectClose } from '../helpers.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'nodegrad-peft-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const gptConfig = { vocabSize: 11, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 16, dropout: 0, bias: true };
const bertConfig = { hiddenSize: 16, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 32, vocabSize: 40, maxPositionEmbeddings: 16, numLabels: 3 };

function newGPT(seed = 0): models.GPT {
  ng.manualSeed(seed);
  return new models.GPT(gptConfig).eval();
}
function newBert(seed = 0): models.BertForSequenceClassification {
  ng.manualSeed(seed);
  return new models.BertForSequenceClassification(bertConfig).eval();
}
const gptIds = (): ng.Tensor => ng.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], { dtype: 'int32' });
const bertIds = (): ng.Tensor => ng.tensor([[2, 5, 7, 9, 11, 3], [2, 30, 31, 3, 0, 0]], { dtype: 'int32' });
const bertMask = (): ng.Tensor => ng.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], { dtype: 'int32' });

/** Every native GEMM call's [M, N, K] while fn runs. */
function gemmCalls(fn: () => void): number[][] {
  const calls: number[][] = [];
  const n = native as unknown as { gemm: (...a: unknown[]) => void };
  const orig = n.gemm;
  n.gemm = (...a: unknown[]) => { calls.push([a[0] as number, a[1] as number, a[2] as number]); orig(...a); };
  try {
    fn();
  } finally {
    n.gemm = orig;
  }
  return calls;
}

/** GEMMs that compute a gradient shaped like one of these [out, in] weights from `rows` rows (dW = gᵀ·x). */
function weightGradCalls(calls: number[][], weights: ng.Tensor[], rows: number): number[][] {
  return calls.filter(([M, N, K]) => K === rows && weights.some((w) => w.ndim === 2 && w.shape[0] === M && w.shape[1] === N));
}

describe('peft LoRA', () => {
  test('getPeftModel uses PEFT defaults and prints trainable parameters as PEFT does', () => {
    const gpt = newGPT();
    const pm = peft.getPeftModel(gpt, { r: 4, loraAlpha: 8 });
    const c = pm.peftConfig.default;
    expect(c).toMatchObject({ targetModules: ['c_attn'], fanInFanOut: true, taskType: 'CAUSAL_LM', bias: 'none', loraDropout: 0 });
    // per layer: A [4, 16] + B [48, 4]
    const lora = 2 * (4 * 16 + 48 * 4);
    const lines: string[] = [];
    pm.printTrainableParameters((s) => lines.push(s));
    const all = gpt.numParams();
    expect(lines[0]).toBe(`trainable params: ${lora.toLocaleString('en-US')} || all params: ${all.toLocaleString('en-US')} || trainable%: ${(100 * lora / all).toFixed(4)}`);
    expect(pm.trainableParameters().every((p) => p.numel === 64 || p.numel === 192)).toBe(true);
    const bert = newBert();
    const pb = peft.getPeftModel(bert, {});
    expect(pb.peftConfig.default).toMatchObject({ targetModules: ['query', 'value'], taskType: 'SEQ_CLS', modulesToSave: ['classifier', 'score'], fanInFanOut: false, r: 8 });
    expect(() => peft.getPeftModel(newGPT(), { targetModules: ['nope'] })).toThrow(/target modules \["nope"\] not found/);
    expect(() => peft.getPeftModel(newGPT(), { targetModules: ['wte'] })).toThrow(/Embedding; LoRA is supported on Linear layers only/);
  });

  test('rsLoRA scaling, excludeModules, and adapter configs with features nodegrad lacks are refused by name', async () => {
    const a = peft.getPeftModel(newGPT(), { r: 4, loraAlpha: 8, useRslora: true, targetModules: ['c_attn', 'c_proj'], excludeModules: ['h.1.attn.c_proj'] });
    const keys = [...a.adapterStateDict().keys()].map((k) => k.replace(/\.lora_[AB]\.weight$/, ''));
    expect([...new Set(keys)].sort()).toEqual(['h.0.attn.c_attn', 'h.0.attn.c_proj', 'h.0.mlp.c_proj', 'h.1.attn.c_attn', 'h.1.mlp.c_proj'].map((k) => `base_model.model.transformer.${k}`));
    expect(peft.loraScaling(a.peftConfig.default)).toBe(8 / 2);
    const dir = path.join(tmp, 'rslora');
    await a.saveAdapter(dir);
    const cfg = JSON.parse(readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ use_rslora: true, exclude_modules: ['h.1.attn.c_proj'] });
    // merged equals unmerged with the rsLoRA factor
    const gpt = newGPT();
    const pm = await peft.PeftModel.fromPretrained(gpt, dir);
    for (const p of pm.adapterTensors()) noGradPerturb(p);
    const before = gpt.forward(gptIds()).logits;
    expectClose(pm.mergeAndUnload().forward(gptIds()).logits, before, { atol: 1e-5, rtol: 1e-5 });
    writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...cfg, use_dora: true }));
    await expect(peft.PeftModel.fromPretrained(newGPT(), dir)).rejects.toThrow(/field "use_dora" \(true\) is not supported/);
    writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...cfg, init_lora_weights: 'pissa' }));
    await expect(peft.PeftModel.fromPretrained(newGPT(), dir)).rejects.toThrow(/init_lora_weights.*pissa/);
  });

  test('an adapter trained on the bare base model (GPT2Model / BertModel keys) applies to the task model', async () => {
    const gpt = newGPT();
    const pm = peft.getPeftModel(gpt, { r: 2, initLoraWeights: false });
    const want = gpt.forward(gptIds()).logits;
    const dir = path.join(tmp, 'bare');
    await pm.saveAdapter(dir);
    const { tensors } = await ng.io.loadSafetensors(path.join(dir, 'adapter_model.safetensors'));
    const bare = new Map([...tensors].map(([k, t]) => [k.replace('base_model.model.transformer.', 'base_model.model.'), t]));
    await ng.io.writeDirAtomic(dir, { 'adapter_model.safetensors': ng.io.safetensorsWriter(bare, { format: 'pt' }) });
    const fresh = newGPT();
    await peft.PeftModel.fromPretrained(fresh, dir);
    expectClose(fresh.forward(gptIds()).logits, want, { atol: 0, rtol: 0 });
    // a key the model has no place for is an error naming it
    bare.set('base_model.model.h.0.attn.c_proj.lora_A.weight', ng.zeros([2, 16]));
    await ng.io.writeDirAtomic(dir, { 'adapter_model.safetensors': ng.io.safetensorsWriter(bare, { format: 'pt' }) });
    await expect(peft.PeftModel.fromPretrained(newGPT(), dir)).rejects.toThrow(/unexpected base_model\.model\.h\.0\.attn\.c_proj\.lora_A\.weight/);
  });

  test('merged logits equal unmerged within float rounding (GPT-2 fused c_attn, BERT query/value slices + classifier)', () => {
    const gpt = newGPT();
    const pm = peft.getPeftModel(gpt, { r: 4, loraAlpha: 16, targetModules: ['c_attn', 'c_fc'], initLoraWeights: false });
    const base = pm.disableAdapter(() => gpt.forward(gptIds()).logits);
    const a = gpt.forward(gptIds()).logits;
    expect(a.sub(base).abs().max().item()).toBeGreaterThan(1e-3);
    const merged = pm.mergeAndUnload();
    expect(merged).toBe(gpt);
    expect(gpt.h.at(0).attn.cAttn).toBeInstanceOf(ng.nn.Linear);
    expect(Object.keys(gpt.stateDict()).some((k) => k.includes('lora'))).toBe(false);
    expectClose(gpt.forward(gptIds()).logits, a, { atol: 1e-5, rtol: 1e-5 });

    const bert = newBert();
    const pb = peft.getPeftModel(bert, { r: 2, initLoraWeights: false });
    noGradPerturb(bert.classifier.weight);
    const b1 = bert.forward({ inputIds: bertIds(), attentionMask: bertMask() }).logits;
    const m = pb.mergeAndUnload();
    expectClose(m.forward({ inputIds: bertIds(), attentionMask: bertMask() }).logits, b1, { atol: 1e-5, rtol: 1e-5 });
    expect(m.parameters().every((p) => p.requiresGrad)).toBe(true);
  });

  test('adapter files have exactly PEFT\'s file names, key names, shapes and adapter_config.json fields', async () => {
    const gpt = newGPT();
    const pm = peft.getPeftModel(gpt, { r: 4, loraAlpha: 8, loraDropout: 0.1, baseModelNameOrPath: 'gpt2' });
    const dir = path.join(tmp, 'gpt-adapter');
    await pm.saveAdapter(dir);
    expect(readdirSync(dir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const { tensors, metadata } = await ng.io.loadSafetensors(path.join(dir, 'adapter_model.safetensors'));
    expect(metadata).toEqual({ format: 'pt' });
    const want: [string, number[]][] = [];
    for (let i = 0; i < 2; i++) {
      want.push([`base_model.model.transformer.h.${i}.attn.c_attn.lora_A.weight`, [4, 16]], [`base_model.model.transformer.h.${i}.attn.c_attn.lora_B.weight`, [48, 4]]);
    }
    expect([...tensors].map(([k, t]) => [k, t.shape]).sort()).toEqual(want.sort());
    expect([...tensors.values()].every((t) => t.dtype === 'float32')).toBe(true);
    const cfg = JSON.parse(readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    expect(cfg).toEqual({
      alpha_pattern: {}, auto_mapping: null, base_model_name_or_path: 'gpt2', bias: 'none', exclude_modules: null, fan_in_fan_out: true,
      inference_mode: true, init_lora_weights: true, layer_replication: null, layers_pattern: null, layers_to_transform: null,
      loftq_config: {}, lora_alpha: 8, lora_dropout: 0.1, megatron_config: null, megatron_core: 'megatron.core',
      modules_to_save: null, peft_type: 'LORA', r: 4, rank_pattern: {}, revision: null, target_modules: ['c_attn'],
      task_type: 'CAUSAL_LM', use_dora: false, use_rslora: false,
    });

    // BERT sequence classification: query/value of every layer, the classifier saved in full (no adapter name in keys)
    const bert = newBert();
    const pb = peft.getPeftModel(bert, { r: 2, loraAlpha: 4 });
    const bdir = path.join(tmp, 'bert-adapter');
    await pb.savePretrained(bdir);
    expect(readdirSync(bdir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const bt = (await ng.io.loadSafetensors(path.join(bdir, 'adapter_model.safetensors'))).tensors;
    const bwant: [string, number[]][] = [['base_model.model.classifier.weight', [3, 16]], ['base_model.model.classifier.bias', [3]]];
    for (let i = 0; i < 2; i++) {
      for (const n of ['query', 'value']) {
        const p = `base_model.model.bert.encoder.layer.${i}.attention.self.${n}`;
        bwant.push([`${p}.lora_A.weight`, [2, 16]], [`${p}.lora_B.weight`, [16, 2]]);
      }
    }
    expect([...bt].map(([k, t]) => [k, t.shape]).sort()).toEqual(bwant.sort());
    const bcfg = JSON.parse(readFileSync(path.join(bdir, 'adapter_config.json'), 'utf8'));
    expect(bcfg).toMatchObject({ target_modules: ['query', 'value'], task_type: 'SEQ_CLS', modules_to_save: ['classifier', 'score'], fan_in_fan_out: false, r: 2, lora_alpha: 4 });

    // PEFT's loading (set_peft_model_state_dict over the Hugging Face model): the key without
    // base_model.model. names a module of the base checkpoint, whose weight fixes the shapes:
    // lora_A [r, in_features], lora_B [out_features, r] (GPT-2's Conv1D stores [in, out],
    // fan_in_fan_out); a modulesToSave key is a base parameter of the same shape
    for (const [m, adir, r, conv1d] of [[newGPT(), dir, 4, true], [newBert(), bdir, 2, false]] as const) {
      const basedir = path.join(tmp, `hf-base-${conv1d ? 'gpt' : 'bert'}`);
      await (m as models.GPT | models.BertForSequenceClassification).savePretrained(basedir);
      const base = (await ng.io.loadSafetensors(path.join(basedir, 'model.safetensors'))).tensors;
      const adapter = (await ng.io.loadSafetensors(path.join(adir, 'adapter_model.safetensors'))).tensors;
      for (const [k, t] of adapter) {
        expect(k.startsWith('base_model.model.'), k).toBe(true);
        const rest = k.slice('base_model.model.'.length);
        const lora = /^(.*)\.lora_([AB])\.weight$/.exec(rest);
        if (!lora) {
          expect(base.get(rest)?.shape, k).toEqual(t.shape);
          continue;
        }
        const w = base.get(`${lora[1]}.weight`);
        expect(w, `${k}: no module ${lora[1]} in the base checkpoint`).toBeDefined();
        const [outF, inF] = conv1d ? [w!.shape[1], w!.shape[0]] : w!.shape;
        expect(t.shape, k).toEqual(lora[2] === 'A' ? [r, inF] : [outF, r]);
      }
    }

    // bias 'all': every bias, LoRA layers' as <module>.base_layer.bias, fused slices split per HF module
    const pa = peft.getPeftModel(newBert(), { r: 2, bias: 'all' });
    const keys = [...pa.adapterStateDict().keys()];
    expect(keys).toContain('base_model.model.bert.encoder.layer.0.attention.self.query.base_layer.bias');
    expect(keys).toContain('base_model.model.bert.encoder.layer.0.attention.self.key.bias');
    expect(keys).toContain('base_model.model.bert.encoder.layer.1.output.LayerNorm.bias');
    expect(keys).toContain('base_model.model.bert.pooler.dense.bias');
    expect(pa.adapterStateDict().get('base_model.model.bert.encoder.layer.0.attention.self.key.bias')!.shape).toEqual([16]);
  });

  test('only adapter and modulesToSave parameters get gradients, and no dW matmul runs for frozen weights', () => {
    const rows = 2 * 5;
    // control: a full fine-tune runs the weight-gradient GEMMs this check looks for
    const full = newGPT();
    const frozenWeights = full.parameters();
    const fullCalls = gemmCalls(() => full.forward(gptIds(), { targets: gptIds() }).loss!.backward());
    expect(weightGradCalls(fullCalls, frozenWeights, rows).length).toBeGreaterThanOrEqual(9);

    const gpt = newGPT();
    const pm = peft.getPeftModel(gpt, { r: 4, initLoraWeights: false });
    const baseWeights = [...gpt.parameters()].filter((p) => !p.requiresGrad);
    const calls = gemmCalls(() => gpt.forward(gptIds(), { targets: gptIds() }).loss!.backward());
    expect(weightGradCalls(calls, baseWeights, rows)).toEqual([]);
    for (const [name, p] of pm.namedParameters()) {
      if (name.includes('lora_')) expect(p.grad, name).not.toBeNull();
      else expect(p.grad, name).toBeNull();
    }
    // LoRA dA and dB run: [r, in] and dBᵀ [r, out] from the rows
    expect(calls.some(([M, N, K]) => M === 4 && N === 16 && K === rows)).toBe(true);
    expect(calls.some(([M, N, K]) => M === 4 && N === 48 && K === rows)).toBe(true);

    // the other frozen parameters: LayerNorm backward writes no weight/bias gradient, the
    // embeddings (and the tied head's weight) run no backward kernel at all
    const kernels = (m: models.GPT): { ln: unknown[][]; emb: number } => {
      const n = native as unknown as Record<string, (...a: unknown[]) => unknown>;
      const ln0 = n.layernormBackward, emb0 = n.embeddingBackward;
      const ln: unknown[][] = [];
      let emb = 0;
      const l = m.forward(gptIds(), { targets: gptIds() }).loss!;
      n.layernormBackward = (...a: unknown[]) => { ln.push(a); return ln0(...a); };
      n.embeddingBackward = (...a: unknown[]) => { emb++; return emb0(...a); };
      try {
        l.backward();
      } finally {
        n.layernormBackward = ln0;
        n.embeddingBackward = emb0;
      }
      return { ln, emb };
    };
    const fk = kernels(newGPT());
    expect(fk.emb).toBeGreaterThan(0);
    expect(fk.ln.every((a) => a[6] !== null && a[7] !== null)).toBe(true);
    const lk = kernels(gpt);
    expect(lk.emb).toBe(0);
    expect(lk.ln.length).toBeGreaterThan(0);
    expect(lk.ln.every((a) => a[6] === null && a[7] === null)).toBe(true);
    // the first block's ln_1 input (the frozen embeddings' sum) needs no gradient either
    expect(lk.ln.length).toBe(fk.ln.length - 1);

    const bert = newBert();
    // r 3: the adapters' [r, 16] gradients then differ in shape from every frozen weight
    // (r 2 would look like token_type_embeddings [2, 16])
    const pb = peft.getPeftModel(bert, { r: 3 });
    const frozen = bert.parameters().filter((p) => !p.requiresGrad);
    const bcalls = gemmCalls(() => bert.forward({ inputIds: bertIds(), attentionMask: bertMask(), labels: ng.tensor([0, 2], { dtype: 'int32' }) }).loss!.backward());
    expect(weightGradCalls(bcalls, frozen, 12).length).toBe(0);
    const withGrad = pb.namedParameters().filter(([, p]) => p.grad !== null).map(([n]) => n);
    expect(withGrad.filter((n) => !n.includes('lora_')).sort()).toEqual(['baseModel.classifier.bias', 'baseModel.classifier.weight']);
    expect(withGrad.filter((n) => n.includes('lora_')).length).toBe(2 * 2 * 2);
    expect(bert.bert.pooler!.dense.weight.grad).toBeNull();
  });

  test('a few LoRA training steps reduce the loss; the optimizer holds only adapter parameters', () => {
    const gpt = newGPT(1);
    gpt.train();
    // a pretrained-like embedding scale (the tied head is frozen: with GPT-2's 0.02 init its logits can hardly move)
    ng.noGrad(() => gpt.wte.weight.copy_(ng.randn([11, 16])));
    const pm = peft.getPeftModel(gpt, { r: 4, loraAlpha: 16, targetModules: ['c_attn', 'c_proj', 'c_fc'] });
    const params = pm.trainableParameters();
    expect(params.length).toBe(2 * 3 * 2 + 2 * 2); // c_attn, c_fc, attn.c_proj and mlp.c_proj (both match c_proj) per layer
    const opt = new optim.AdamW(params, { lr: 1e-2, weightDecay: 0 });
    const x = gptIds(), y = ng.tensor([[2, 3, 4, 5, 6], [7, 8, 9, 10, 1]], { dtype: 'int32' });
    const losses: number[] = [];
    for (let i = 0; i < 30; i++) {
      ng.scope(() => {
        const loss = gpt.forward(x, { targets: y }).loss!;
        losses.push(loss.item());
        loss.backward();
      });
      opt.step();
      opt.zeroGrad();
    }
    expect(losses[29]).toBeLessThan(losses[0] - 0.5);
    const stateBytes = peft.optimizerStateBytes(opt);
    expect(stateBytes).toBe(2 * 4 * params.reduce((n, p) => n + p.numel, 0));
    const f = peft.trainingFootprint(pm);
    expect(f.trainable).toBe(params.reduce((n, p) => n + p.numel, 0));
    expect(f.full.optimizerStateBytes).toBe(8 * (f.params - f.trainable));
  });

  test('setAdapter and disableAdapter switch outputs; loadAdapter adds a named adapter', async () => {
    const gpt = newGPT();
    const pm = peft.getPeftModel(gpt, { r: 4, initLoraWeights: false }, 'first');
    const base = pm.disableAdapter(() => gpt.forward(gptIds()).logits);
    const first = gpt.forward(gptIds()).logits;
    // a second adapter, from another model's saved adapter
    const other = peft.getPeftModel(newGPT(), { r: 2, loraAlpha: 32, targetModules: ['c_fc'], initLoraWeights: false });
    const odir = path.join(tmp, 'second');
    await other.saveAdapter(odir);
    const otherOut = other.baseModel.forward(gptIds()).logits;
    await pm.loadAdapter(odir, 'second');
    expect(pm.activeAdapter).toBe('first');
    expectClose(gpt.forward(gptIds()).logits, first, { atol: 0, rtol: 0 });
    pm.setAdapter('second');
    const second = gpt.forward(gptIds()).logits;
    expectClose(second, otherOut, { atol: 1e-6, rtol: 1e-6 });
    expect(second.sub(first).abs().max().item()).toBeGreaterThan(1e-3);
    // the loaded adapter is in inference mode: nothing trains
    expect(pm.trainableParameters().length).toBe(0);
    pm.disableAdapters();
    expectClose(gpt.forward(gptIds()).logits, base, { atol: 0, rtol: 0 });
    pm.enableAdapters();
    pm.setAdapter('first');
    expectClose(gpt.forward(gptIds()).logits, first, { atol: 0, rtol: 0 });
    expect(pm.trainableParameters().length).toBe(4);
    expect(() => pm.setAdapter('third')).toThrow(/no adapter 'third'/);
    // savePretrained: default-less names each in their own subdirectory
    const all = path.join(tmp, 'all');
    await pm.savePretrained(all);
    expect(readdirSync(all).sort()).toEqual(['first', 'second']);

    // modulesToSave switch with the adapter too
    const bert = newBert();
    const pb = peft.getPeftModel(bert, { r: 2, initLoraWeights: false }, 'a');
    noGradPerturb(bert.classifier.weight);
    pb.addAdapter('b', { r: 2, initLoraWeights: false });
    const outA = bert.forward({ inputIds: bertIds() }).logits;
    pb.setAdapter('b');
    const outB = bert.forward({ inputIds: bertIds() }).logits;
    expect(outA.sub(outB).abs().max().item()).toBeGreaterThan(1e-4);
    pb.setAdapter('a');
    expectClose(bert.forward({ inputIds: bertIds() }).logits, outA, { atol: 0, rtol: 0 });
  });

  test('castBase keeps the frozen base in bfloat16 while the adapters train in float32', () => {
    const gpt = newGPT();
    const pm = peft.getPeftModel(gpt, { r: 4, initLoraWeights: false });
    const ref = gpt.forward(gptIds()).logits;
    pm.castBase('bfloat16');
    expect(gpt.wte.weight.dtype).toBe('bfloat16');
    expect((gpt.h.at(0).attn.cAttn as unknown as peft.LoraLinear).weight.dtype).toBe('bfloat16');
    expect(pm.trainableParameters().every((p) => p.dtype === 'float32')).toBe(true);
    const out = gpt.forward(gptIds()).logits;
    expect(out.dtype).toBe('bfloat16');
    expectClose(out.to('float32'), ref, { atol: 0.02, rtol: 0.02 });
    out.to('float32').sum().backward();
    expect(pm.trainableParameters().every((p) => p.grad !== null && p.grad.dtype === 'float32')).toBe(true);
    expect(gpt.parameters().filter((p) => p.dtype === 'bfloat16').every((p) => p.grad === null && !p.requiresGrad)).toBe(true);
  });

  test('an adapter saved, reloaded in a fresh child process and applied gives identical logits', async () => {
    const gpt = newGPT(3);
    const gdir = path.join(tmp, 'gpt-base');
    await gpt.save(gdir);
    const pm = peft.getPeftModel(gpt, { r: 4, initLoraWeights: false });
    await pm.saveAdapter(path.join(tmp, 'gpt-lora'));
    const bert = newBert(4);
    const bdir = path.join(tmp, 'bert-base');
    await bert.savePretrained(bdir);
    const pb = peft.getPeftModel(bert, { r: 2, initLoraWeights: false });
    noGradPerturb(bert.classifier.weight);
    await pb.saveAdapter(path.join(tmp, 'bert-lora'));
    const want = {
      gpt: Array.from(gpt.forward(gptIds()).logits.dataSync() as Float32Array),
      bert: Array.from(bert.forward({ inputIds: bertIds(), attentionMask: bertMask() }).logits.dataSync() as Float32Array),
    };
    const script = `
      import * as ng from './lib/index.js';
      import { writeFileSync } from 'node:fs';
      const t = ${JSON.stringify(tmp)};
      const gpt = await ng.models.GPT.load(t + '/gpt-base');
      gpt.eval();
      await ng.peft.PeftModel.fromPretrained(gpt, t + '/gpt-lora');
      const bert = await ng.models.BertForSequenceClassification.fromPretrained(t + '/bert-base');
      await ng.peft.PeftModel.fromPretrained(bert, t + '/bert-lora');
      const ids = ng.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], { dtype: 'int32' });
      const bids = ng.tensor([[2, 5, 7, 9, 11, 3], [2, 30, 31, 3, 0, 0]], { dtype: 'int32' });
      const mask = ng.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], { dtype: 'int32' });
      writeFileSync(t + '/child.json', JSON.stringify({
        gpt: Array.from(gpt.forward(ids).logits.dataSync()),
        bert: Array.from(bert.forward({ inputIds: bids, attentionMask: mask }).logits.dataSync()),
      }));`;
    const file = path.join(process.cwd(), 'test', `.peft-child-${process.pid}.ts`);
    writeFileSync(file, script.replaceAll("'./lib/index.js'", "'../lib/index.js'"));
    try {
      const r = spawnSync(process.execPath, ['--import', './scripts/ts-loader.mjs', file], { cwd: process.cwd(), encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
    } finally {
      rmSync(file, { force: true });
    }
    const got = JSON.parse(readFileSync(path.join(tmp, 'child.json'), 'utf8'));
    expect(got.gpt).toEqual(want.gpt);
    expect(got.bert).toEqual(want.bert);
  });

  test('nodegrad finetune --lora in a child process writes a loadable adapter dir and reports memory', async () => {
    const examples: { text: string; label: string }[] = [];
    const words = { pos: ['good', 'great', 'fine', 'nice'], neg: ['bad', 'awful', 'poor', 'sad'] };
    for (let i = 0; i < 48; i++) {
      const label = i % 2 ? 'pos' : 'neg';
      const w = words[label as 'pos' | 'neg'];
      examples.push({ text: `this is ${w[i % 4]} and ${w[(i + 1) % 4]}`, label });
    }
    const trainFile = path.join(tmp, 'train.jsonl');
    writeFileSync(trainFile, examples.map((e) => JSON.stringify(e)).join('\n'));
    const tok = new data.BertTokenizer({ vocab: ng.train.buildWordPieceVocab(examples.map((e) => e.text), { size: 60 }) });
    ng.manualSeed(5);
    const base = new models.BertForSequenceClassification({ ...bertConfig, vocabSize: tok.vocabSize, numLabels: 2, maxPositionEmbeddings: 32 });
    const bdir = path.join(tmp, 'cls-base');
    await base.savePretrained(bdir);
    await tok.savePretrained(bdir);
    const out = path.join(tmp, 'cls-run');
    const r = spawnSync(process.execPath, ['--import', './scripts/ts-loader.mjs', 'test/cli_runner.ts', 'finetune', '--train', trainFile,
      '--model', bdir, '--lora', '--lora-r', '4', '--lora-alpha', '8', '--lora-dropout', '0', '--target-modules', 'query,value,dense',
      '--epochs', '2', '--batch', '8', '--max-length', '16', '--lr', '5e-3', '--out', out, '--threads', '1'],
    { cwd: process.cwd(), encoding: 'utf8', env: { ...process.env, NODEGRAD_PROGRESS: 'none' } });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/trainable \d[\d,]* \(\d+\.\d+%\) \[LoRA r=4/);
    expect(r.stdout).toMatch(/optimizer state \(AdamW\): .* with LoRA .* vs .* for a full fine-tune/);
    expect(r.stdout).toMatch(/optimizer state .* \(measured\), peak tensor memory/);
    const adir = path.join(out, 'adapter');
    expect(readdirSync(adir)).toEqual(expect.arrayContaining(['adapter_config.json', 'adapter_model.safetensors', 'vocab.txt']));
    const cfg = JSON.parse(readFileSync(path.join(adir, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ r: 4, lora_alpha: 8, target_modules: ['dense', 'query', 'value'], task_type: 'SEQ_CLS', base_model_name_or_path: bdir });
    const model = await models.BertForSequenceClassification.fromPretrained(bdir);
    const pm = await peft.PeftModel.fromPretrained(model, adir);
    const st = (await ng.io.loadSafetensors(path.join(adir, 'adapter_model.safetensors'))).tensors;
    expect(st.has('base_model.model.bert.pooler.dense.lora_A.weight')).toBe(true);
    expect(st.has('base_model.model.bert.encoder.layer.1.attention.output.dense.lora_B.weight')).toBe(true);
    // the adapter changed the model: trained classifier and LoRA
    const ids = bertIds();
    const adapted = model.forward({ inputIds: ids.clamp(0, tok.vocabSize - 1) }).logits;
    const plain = pm.disableAdapter(() => model.forward({ inputIds: ids.clamp(0, tok.vocabSize - 1) }).logits);
    expect(adapted.sub(plain).abs().max().item()).toBeGreaterThan(1e-4);
  });

  test('nodegrad generate --adapter samples from the adapted model', async () => {
    const tok = data.CharTokenizer.fromText('abcdefghijk');
    expect(tok.vocabSize).toBe(11);
    const gpt = newGPT(7);
    ng.noGrad(() => gpt.wte.weight.copy_(ng.randn([11, 16], { std: 0.3 })));
    const dir = path.join(tmp, 'gen-base');
    await gpt.save(dir, { 'tokenizer.json': JSON.stringify(tok.toJSON()) });
    const pm = peft.getPeftModel(gpt, { r: 4, loraAlpha: 16, targetModules: ['c_attn', 'c_fc'], initLoraWeights: false });
    for (const p of pm.trainableParameters()) noGradPerturb(p); // a strong adapter: greedy decoding must change
    const adir = path.join(tmp, 'gen-adapter');
    await pm.saveAdapter(adir);
    const greedy = (m: models.GPT): string => tok.decode(m.generate([tok.encode('abc')], { maxNewTokens: 8, temperature: 0 })[0]);
    const withAdapter = greedy(gpt);
    const plain = pm.disableAdapter(() => greedy(gpt));
    expect(withAdapter).not.toBe(plain);
    const run = (extra: string[]): string => {
      const r = spawnSync(process.execPath, ['--import', './scripts/ts-loader.mjs', 'test/cli_runner.ts', 'generate', '--model', dir, '--prompt', 'abc',
        '--max-new-tokens', '8', '--temperature', '0', ...extra], { cwd: process.cwd(), encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout.trim();
    };
    expect(run(['--adapter', adir])).toBe(withAdapter);
    expect(run([])).toBe(plain);
  });
});

function noGradPerturb(t: ng.Tensor): void {
  ng.noGrad(() => t.add_(ng.randn(t.shape as number[], { std: 0.5 })));
}
