// LoRA on the Llama family (LlamaForCausalLM: HF module names, so PEFT's keys map 1:1).
// Runs where lib/models/llama.ts is present.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

  test('chat training examples score the assistant turns only (chat template rendered turn by turn)', async () => {
    const { chatTokenizerFiles } = await import('../llama_fixtures.js');
    const { chatTrainingExample } = await import('../../lib/peft/sft.js');
    const dir = path.join(tmp, 'tok');
    await ng.io.writeDirAtomic(dir, chatTokenizerFiles());
    const tok = await ng.data.AutoTokenizer.fromPretrained(dir) as unknown as import('../../lib/peft/sft.js').ChatTokenizer;
    const msgs = [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' },
      { role: 'user', content: 'again' }, { role: 'assistant', content: 'ok' }];
    const ex = chatTrainingExample(tok, msgs);
    expect(ex.inputIds).toEqual(tok.encode(tok.applyChatTemplate(msgs, { tokenize: false })));
    const dec = (ids: number[]): string => (tok as unknown as { decode(i: number[]): string }).decode(ids);
    // the trained spans are exactly the assistant contents with their end-of-turn token
    const spans: string[] = [];
    let cur: number[] = [];
    ex.labels.forEach((l, i) => {
      if (l !== -100) { expect(l).toBe(ex.inputIds[i]); cur.push(l); } else if (cur.length) { spans.push(dec(cur)); cur = []; }
    });
    if (cur.length) spans.push(dec(cur));
    expect(spans).toEqual(['hello<|im_end|>\n', 'ok<|im_end|>\n']);
    expect(() => chatTrainingExample(tok, [{ role: 'user', content: 'x' }])).toThrow(/no assistant message/);
  });

  test('nodegrad sft --lora in a child process trains on chats and writes a loadable adapter', async () => {
    const { chatTokenizerFiles, CHAT_VOCAB } = await import('../llama_fixtures.js');
    const { LlamaForCausalLM } = await import('../../lib/models/llama.js');
    ng.manualSeed(1);
    const base = new LlamaForCausalLM({ ...config, vocabSize: CHAT_VOCAB, modelType: 'qwen2' });
    const dir = path.join(tmp, 'sft-base');
    await base.savePretrained(dir);
    for (const [f, c] of Object.entries(chatTokenizerFiles())) writeFileSync(path.join(dir, f), c);
    const chats = ['one', 'two', 'three', 'four'].map((w) => JSON.stringify({ messages: [{ role: 'user', content: `say ${w}` }, { role: 'assistant', content: w }] }));
    const data = path.join(tmp, 'chat.jsonl');
    writeFileSync(data, chats.join('\n'));
    const out = path.join(tmp, 'sft-out');
    const r = spawnSync(process.execPath, ['--import', './scripts/ts-loader.mjs', 'test/cli_runner.ts', 'sft', '--model', dir, '--data', data, '--lora',
      '--lora-r', '4', '--lora-dropout', '0', '--steps', '30', '--batch', '4', '--max-length', '32', '--lr', '1e-2', '--out', out, '--threads', '1'],
    { cwd: process.cwd(), encoding: 'utf8' });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/assistant tokens scored/);
    const m = /loss (\d+\.\d+) -> (\d+\.\d+)/.exec(r.stdout)!;
    expect(Number(m[2])).toBeLessThan(Number(m[1]));
    expect(readdirSync(out).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(JSON.parse(readFileSync(path.join(out, 'adapter_config.json'), 'utf8'))).toMatchObject({ task_type: 'CAUSAL_LM', target_modules: ['q_proj', 'v_proj'], r: 4 });
    const fresh = await LlamaForCausalLM.fromPretrained(dir);
    const pm = await peft.PeftModel.fromPretrained(fresh, out);
    const x = ng.tensor([[3, 4, 5]], { dtype: 'int32' });
    const a = fresh.forward(x).logits, b = pm.disableAdapter(() => fresh.forward(x).logits);
    expect(a.sub(b).abs().max().item()).toBeGreaterThan(1e-4);
  });
});
