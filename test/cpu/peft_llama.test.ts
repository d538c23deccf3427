// LoRA on the Llama family (LlamaForCausalLM: HF module names, so PEFT's keys map 1:1).
// Runs where lib/models/llama.ts is present.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { peft } from '../../lib/index.js';
import { expectClose } from '../helpers.js';

const have = existsSync(new URL('../../lib/models/llama.ts', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'nodegrad-peft-llama-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const config = { vocabSize: 32, hiddenSize: 16, intermediateSize: 24, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, maxPositionEmbeddings: 32 };

describe.skipIf(!have)('peft LoRA on LlamaForCausalLM', () => {
  async function newLlama(modelType = 'llama'): Promise<ng.nn.Module & { forward(x: ng.Tensor): { logits: ng.Tensor } }> {
    const { LlamaForCausalLM } = await import('../../lib/models/llama.js');
    ng.manualSeed(0);
    return new LlamaForCausalLM({ ...config, modelType: modelType as 'llama' }).eval() as never;
  }
  const ids = (): ng.Tensor => ng.tensor([[1, 2, 3, 4], [5, 6, 7, 8]], { dtype: 'int32' });

  test('default targets q_proj/v_proj, PEFT key names and shapes (GQA: v_proj out = kv heads x head dim), merge equals unmerged', async () => {
    for (const t of ['llama', 'mistral', 'qwen2']) {
      const m = await newLlama(t);
      const pm = peft.getPeftModel(m, { r: 2, initLoraWeights: false });
      expect(pm.peftConfig.default).toMatchObject({ targetModules: ['q_proj', 'v_proj'], taskType: 'CAUSAL_LM', fanInFanOut: false });
      const keys = [...pm.adapterStateDict()].map(([k, v]) => [k, v.shape]).sort();
      const want: [string, number[]][] = [];
      for (let i = 0; i < 2; i++) {
        const p = `base_model.model.model.layers.${i}.self_attn`;
        want.push([`${p}.q_proj.lora_A.weight`, [2, 16]], [`${p}.q_proj.lora_B.weight`, [16, 2]], [`${p}.v_proj.lora_A.weight`, [2, 16]], [`${p}.v_proj.lora_B.weight`, [8, 2]]);
      }
      expect(keys).toEqual(want.sort());
      const a = m.forward(ids()).logits;
      const b = pm.disableAdapter(() => m.forward(ids()).logits);
      expect(a.sub(b).abs().max().item()).toBeGreaterThan(1e-4);
      const merged = pm.mergeAndUnload() as typeof m;
      expectClose(merged.forward(ids()).logits, a, { atol: 1e-5, rtol: 1e-5 });
    }
  });

  test('saved adapter reloads onto a fresh base with identical logits', async () => {
    const m = await newLlama();
    const pm = peft.getPeftModel(m, { r: 4, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], initLoraWeights: false });
    const dir = path.join(tmp, 'adapter');
    await pm.saveAdapter(dir);
    expect(readdirSync(dir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const want = m.forward(ids()).logits;
    const fresh = await newLlama();
    await peft.PeftModel.fromPretrained(fresh, dir);
    expectClose(fresh.forward(ids()).logits, want, { atol: 0, rtol: 0 });
  });
});
