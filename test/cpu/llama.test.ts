// LlamaForCausalLM from Hugging Face checkpoints (llama, mistral, qwen2, qwen3) written here
// with random weights: logits and gradients against a slow float64 reference over the HF
// tensors (per-head loops, rotary as its formula, windows and GQA by hand), the KV cache
// against full recomputation, save/load round trips, config mapping and validation, and a
// few Trainer steps.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { LlamaForCausalLM } from '../../lib/models/llama.js';
import { ropeInvFreq, checkLlamaConfig } from '../../lib/models/llama_config.js';
import { loadHFConfig } from '../../lib/models/hf.js';
import { TokenDataset } from '../../lib/data/dataset.js';
import { Trainer } from '../../lib/train/trainer.js';
import { expectClose, lcg } from '../helpers.js';
import {
  defaultInv, hfShapes, randomWeights, readTensorsRaw, referenceLogits, referenceLoss, writeCheckpoint,
  type Raw, type RefOptions, type Weights,
} from '../llama_fixtures.js';

let root = '';
let n = 0;
beforeAll(async () => { root = await mkdtemp(path.join(tmpdir(), 'nodegrad-llama-')); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });
const newDir = (): string => path.join(root, `m${n++}`);

const base = {
  vocab_size: 37, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4,
  rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: 32, hidden_act: 'silu', bos_token_id: 1, eos_token_id: 2,
};

// ---- the test's own rotary formulas (transformers' modeling_rope_utils, written out) ------------

function linearInv(theta: number, d: number, factor: number): Float64Array {
  return defaultInv(theta, d).map((f) => f / factor);
}
function dynamicInv(theta: number, d: number, factor: number, maxPos: number, seqLen: number): Float64Array {
  const L = Math.max(seqLen, maxPos);
  return defaultInv(theta * Math.pow((factor * L) / maxPos - (factor - 1), d / (d - 2)), d);
}
function llama3Inv(theta: number, d: number, s: { factor: number; low: number; high: number; old: number }): Float64Array {
  return defaultInv(theta, d).map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < s.old / s.high) return f;              // high frequencies: unchanged
    if (wavelen > s.old / s.low) return f / s.factor;    // low frequencies: scaled
    const smooth = (s.old / wavelen - s.low) / (s.high - s.low);
    return (1 - smooth) * f / s.factor + smooth * f;     // the band between: blended
  });
}

interface Variant { name: string; cfg: Raw; ref: RefOptions; dtype?: 'float32' | 'bfloat16'; shards?: number }

const d4 = 16 / 4;
const VARIANTS: Variant[] = [
  {
    name: 'llama with GQA (4 q heads, 2 kv heads), biases on attention and MLP, untied head',
    cfg: { ...base, model_type: 'llama', architectures: ['LlamaForCausalLM'], num_key_value_heads: 2, attention_bias: true, mlp_bias: true, tie_word_embeddings: false },
    ref: { invFreq: () => defaultInv(10000, d4), windows: [null, null] },
  },
  {
    name: 'mistral with a sliding window of 3 and 1 kv head',
    cfg: { ...base, model_type: 'mistral', num_key_value_heads: 1, sliding_window: 3 },
    ref: { invFreq: () => defaultInv(10000, d4), windows: [3, 3] },
  },
  {
    name: 'qwen2 with q/k/v biases, tied embeddings, use_sliding_window false',
    cfg: { ...base, model_type: 'qwen2', num_key_value_heads: 2, tie_word_embeddings: true, use_sliding_window: false, sliding_window: 2, max_window_layers: 0, rope_theta: 1000000 },
    ref: { invFreq: () => defaultInv(1000000, d4), windows: [null, null] },
  },
  {
    name: 'qwen2 with the window from layer max_window_layers on',
    cfg: { ...base, model_type: 'qwen2', num_key_value_heads: 2, use_sliding_window: true, sliding_window: 2, max_window_layers: 1 },
    ref: { invFreq: () => defaultInv(10000, d4), windows: [null, 2] },
  },
  {
    name: 'qwen3 with q/k norm and head_dim 6 != hidden/heads, tied',
    cfg: { ...base, model_type: 'qwen3', head_dim: 6, num_key_value_heads: 2, tie_word_embeddings: true, attention_bias: false },
    ref: { invFreq: () => defaultInv(10000, 6), windows: [null, null] },
  },
  {
    name: 'llama3 rope scaling',
    cfg: { ...base, model_type: 'llama', num_attention_heads: 2, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } },
    ref: { invFreq: () => llama3Inv(10000, 8, { factor: 8, low: 1, high: 4, old: 64 }), windows: [null, null] },
  },
  {
    name: 'linear rope scaling (legacy "type" key)',
    cfg: { ...base, model_type: 'llama', rope_scaling: { type: 'linear', factor: 2.5 } },
    ref: { invFreq: () => linearInv(10000, d4, 2.5), windows: [null, null] },
  },
  {
    name: 'dynamic NTK rope scaling beyond max_position_embeddings',
    cfg: { ...base, model_type: 'llama', max_position_embeddings: 4, rope_scaling: { rope_type: 'dynamic', factor: 2 } },
    ref: { invFreq: (T) => dynamicInv(10000, d4, 2, 4, T), windows: [null, null] },
  },
  {
    name: 'a sharded llama checkpoint (3 shards + index)',
    cfg: { ...base, model_type: 'llama', num_key_value_heads: 2 }, shards: 3,
    ref: { invFreq: () => defaultInv(10000, d4), windows: [null, null] },
  },
  {
    name: 'a bfloat16 qwen3 checkpoint',
    cfg: { ...base, model_type: 'qwen3', num_key_value_heads: 2, torch_dtype: 'bfloat16' }, dtype: 'bfloat16',
    ref: { invFreq: () => defaultInv(10000, d4), windows: [null, null] },
  },
];

const IDS = [[3, 17, 5, 29, 11, 8, 36], [0, 4, 4, 21, 33, 2, 9]];

async function checkpoint(v: Variant, seed = 7): Promise<{ dir: string; w: Weights }> {
  const dir = newDir();
  const w = randomWeights(hfShapes(v.cfg), seed, v.dtype);
  await writeCheckpoint(dir, v.cfg, w, { dtype: v.dtype, shards: v.shards });
  return { dir, w };
}

const ref = (v: Variant, w: Weights, ids = IDS): Float64Array[][] => ids.map((row) => referenceLogits(v.cfg, w, row, v.ref));
const flat = (l: Float64Array[][]): number[] => l.flatMap((s) => s.flatMap((r) => Array.from(r)));
const ids32 = (rows: number[][]): Tensor => ng.tensor(rows, { dtype: 'int32' });

describe('Llama config.json', () => {
  test('maps each model type: biases, q/k norm, head_dim, windows and layer types, tied head, eos lists', async () => {
    const read = async (cfg: Raw) => {
      const d = newDir();
      await ng.io.writeDirAtomic(d, { 'config.json': JSON.stringify(cfg) });
      const c = await loadHFConfig(d);
      return c.config as ReturnType<typeof checkLlamaConfig>;
    };
    const l = await read({ ...base, model_type: 'llama', num_key_value_heads: 2, attention_bias: true, eos_token_id: [2, 5] });
    expect(l).toMatchObject({ modelType: 'llama', numKeyValueHeads: 2, headDim: 4, attentionBias: true, attentionOutputBias: true, qkNorm: false, slidingWindow: null, tieWordEmbeddings: false, eosTokenId: [2, 5] });
    const m = await read({ ...base, model_type: 'mistral', sliding_window: 3 });
    expect(m).toMatchObject({ attentionBias: false, slidingWindow: 3, layerTypes: ['sliding_attention', 'sliding_attention'], numKeyValueHeads: 4 });
    expect(await read({ ...base, model_type: 'mistral', sliding_window: null })).toMatchObject({ slidingWindow: null, layerTypes: ['full_attention', 'full_attention'] });
    const q2 = await read({ ...base, model_type: 'qwen2', tie_word_embeddings: true, sliding_window: 4096, use_sliding_window: false });
    expect(q2).toMatchObject({ attentionBias: true, attentionOutputBias: false, slidingWindow: null, tieWordEmbeddings: true });
    const q2w = await read({ ...base, model_type: 'qwen2', sliding_window: 5, use_sliding_window: true, max_window_layers: 1 });
    expect(q2w).toMatchObject({ slidingWindow: 5, layerTypes: ['full_attention', 'sliding_attention'] });
    const q3 = await read({ ...base, model_type: 'qwen3', head_dim: 6, attention_bias: false });
    expect(q3).toMatchObject({ qkNorm: true, headDim: 6, attentionBias: false, numAttentionHeads: 4 });
    // transformers 5 spelling: rope_parameters with rope_theta inside
    const v5 = await read({ ...base, model_type: 'llama', rope_theta: undefined, rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 500000 } });
    expect(v5).toMatchObject({ ropeTheta: 500000, ropeScaling: { ropeType: 'linear', factor: 2 } });
    // no model_type: recognised by the architecture
    expect((await read({ ...base, architectures: ['Qwen3ForCausalLM'] })).modelType).toBe('qwen3');
  });

  test('rejects invalid fields with errors naming the file and the field', async () => {
    const cases: [Raw, RegExp][] = [
      [{ hidden_size: '16' }, /field "hidden_size" of .*config\.json must be a positive integer \(got "16"\)/],
      [{ num_key_value_heads: 3 }, /num_attention_heads 4 must be a multiple of num_key_value_heads 3 \(in .*config\.json\)/],
      [{ vocab_size: undefined }, /field "vocab_size" of .*config\.json is missing/],
      [{ rope_scaling: { rope_type: 'yarn', factor: 4 } }, /field "rope_scaling" of .*config\.json has rope type "yarn", which is not supported/],
      [{ rope_scaling: { rope_type: 'llama3', factor: 8, high_freq_factor: 4, original_max_position_embeddings: 64 } }, /field "rope_scaling\.low_freq_factor" of .*config\.json is missing/],
      [{ rope_scaling: { rope_type: 'linear', factor: 0.5 } }, /field "rope_scaling\.factor" of .*config\.json must be a number >= 1/],
      [{ hidden_act: 'gelu' }, /field "hidden_act" of .*config\.json is not supported/],
      [{ eos_token_id: 'x' }, /field "eos_token_id" of .*config\.json must be a token id/],
      [{ head_dim: 5 }, /head dim \(head_dim\) must be even/],
      [{ rms_norm_eps: -1 }, /field "rms_norm_eps" of .*config\.json must be a positive number/],
      [{ sliding_window: 0, model_type: 'mistral' }, /field "sliding_window" of .*config\.json must be a positive integer/],
    ];
    for (const [over, re] of cases) {
      const d = newDir();
      await ng.io.writeDirAtomic(d, { 'config.json': JSON.stringify({ ...base, model_type: 'llama', ...over }) });
      await expect(loadHFConfig(d), JSON.stringify(over)).rejects.toThrow(re);
    }
    expect(() => new LlamaForCausalLM({ vocabSize: 8, hiddenSize: 8, intermediateSize: 8, numHiddenLayers: 1, numAttentionHeads: 3 }))
      .toThrow(/LlamaConfig: hiddenSize 8 must be divisible by numAttentionHeads 3 when headDim is not given/);
  });

  test('rope inverse frequencies of default, linear, dynamic and llama3 scaling follow the formulas', () => {
    const c = (over: Record<string, unknown>) => checkLlamaConfig({ vocabSize: 8, hiddenSize: 32, intermediateSize: 8, numHiddenLayers: 1, numAttentionHeads: 2, maxPositionEmbeddings: 100, ropeTheta: 500000, ...over });
    expectClose(ropeInvFreq(c({})), defaultInv(500000, 16), { atol: 0, rtol: 1e-15 });
    expectClose(ropeInvFreq(c({ ropeScaling: { ropeType: 'linear', factor: 4 } })), linearInv(500000, 16, 4), { atol: 0, rtol: 1e-15 });
    const dyn = c({ ropeScaling: { ropeType: 'dynamic', factor: 3 } });
    expectClose(ropeInvFreq(dyn, 50), defaultInv(500000, 16), { atol: 0, rtol: 1e-15 }); // within max_position_embeddings: unchanged
    expectClose(ropeInvFreq(dyn, 250), dynamicInv(500000, 16, 3, 100, 250), { atol: 0, rtol: 1e-14 });
    const l3 = { factor: 8, low: 1, high: 4, old: 8192 };
    const got = ropeInvFreq(c({ ropeScaling: { ropeType: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } }));
    const want = llama3Inv(500000, 16, l3);
    expectClose(got, want, { atol: 0, rtol: 1e-14 });
    // the three bands are all present at this size
    const base16 = defaultInv(500000, 16);
    expect(got.some((f, i) => f === base16[i])).toBe(true);
    expect(got.some((f, i) => Math.abs(f - base16[i] / 8) < 1e-20)).toBe(true);
    expect(got.some((f, i) => f !== base16[i] && Math.abs(f - base16[i] / 8) > 1e-20)).toBe(true);
  });
});

describe('LlamaForCausalLM.fromPretrained', () => {
  for (const v of VARIANTS) {
    test(`logits match the per-head reference: ${v.name}`, async () => {
      const { dir, w } = await checkpoint(v);
      const model = await LlamaForCausalLM.fromPretrained(dir);
      expect(model.training).toBe(false);
      expect(model.model.embed_tokens.weight.dtype).toBe('float32'); // float32 on the CPU whatever the checkpoint
      const want = ref(v, w);
      const got = ng.noGrad(() => model.forward({ inputIds: ids32(IDS) }).logits);
      expect(got.shape).toEqual([2, 7, 37]);
      expectClose(got, flat(want), { atol: 1e-4, rtol: 1e-4 });
      // float64: the same computation to rounding
      model.to('float64');
      expectClose(ng.noGrad(() => model.forward({ inputIds: ids32(IDS) }).logits), flat(want), { atol: 1e-10, rtol: 1e-10 });
    });
  }

  for (const v of [VARIANTS[0], VARIANTS[1], VARIANTS[3], VARIANTS[4]]) {
    test(`backward matches finite differences of the reference loss (float64): ${v.name}`, async () => {
      const { dir, w } = await checkpoint(v, 11);
      const model = (await LlamaForCausalLM.fromPretrained(dir)).to('float64');
      const ids = IDS.map((r) => r.slice(0, 5));
      const labels = ids.map((r, b) => r.map((t, i) => (b === 1 && i === 2 ? -100 : t)));
      const loss = model.forward({ inputIds: ids32(ids), labels: ids32(labels) }).loss!;
      // the loss is HF's: shifted, -100 ignored
      const refLoss = (ww: Weights): number => {
        const l = ids.map((row) => referenceLogits(v.cfg, ww, row, v.ref));
        let total = 0, cnt = 0;
        l.forEach((seq, b) => {
          for (let t = 0; t + 1 < seq.length; t++) {
            const y = labels[b][t + 1];
            if (y === -100) continue;
            const m = Math.max(...seq[t]);
            total += m + Math.log(seq[t].reduce((a, x) => a + Math.exp(x - m), 0)) - seq[t][y];
            cnt++;
          }
        });
        return total / cnt;
      };
      expect(loss.item()).toBeCloseTo(refLoss(w), 10);
      loss.backward();
      const params = model.stateDict();
      const rnd = lcg(3);
      let checked = 0;
      for (const [name, { data }] of w) {
        const g = params[name].grad;
        expect(g, name).toBeTruthy();
        const gd = g!.dataSync() as Float64Array;
        for (let s = 0; s < 2; s++) {
          const i = Math.floor(((rnd() + 1) / 2) * data.length) % data.length;
          const h = 1e-5, orig = data[i];
          data[i] = orig + h;
          const up = refLoss(w);
          data[i] = orig - h;
          const down = refLoss(w);
          data[i] = orig;
          const fd = (up - down) / (2 * h);
          expect(Math.abs(gd[i] - fd), `${name}[${i}]: autograd ${gd[i]}, finite differences ${fd}`).toBeLessThanOrEqual(1e-7 + 1e-5 * Math.abs(fd));
          checked++;
        }
      }
      expect(checked).toBe(2 * w.size);
    });
  }

  test('labels: HF shifted cross-entropy; targets: already shifted (the Trainer convention)', async () => {
    const v = VARIANTS[0];
    const { dir, w } = await checkpoint(v);
    const model = await LlamaForCausalLM.fromPretrained(dir);
    const out = ng.noGrad(() => model.forward({ inputIds: ids32(IDS), labels: ids32(IDS) }));
    expect(out.loss!.item()).toBeCloseTo(referenceLoss(ref(v, w), IDS), 5);
    // targets[t] is the token after position t: HF's labels shifted by hand, the last position ignored
    const shifted = IDS.map((r) => [...r.slice(1), -100]);
    const viaTargets = ng.noGrad(() => model.forward(ids32(IDS), { targets: ids32(shifted) }).loss!.item());
    expect(viaTargets).toBe(out.loss!.item());
  });

  test('a tensor whose shape disagrees with config.json is an error naming the tensor, the file and the shape', async () => {
    const v = VARIANTS[0];
    const dir = newDir();
    const w = randomWeights(hfShapes({ ...v.cfg, intermediate_size: 20 }), 1);
    await writeCheckpoint(dir, v.cfg, w);
    await expect(LlamaForCausalLM.fromPretrained(dir)).rejects.toThrow(/tensor "model\.layers\.0\.mlp\.gate_proj\.weight" in .*model\.safetensors has shape \[20,16\] but the config needs \[24,16\]/);
    const d2 = newDir();
    const w2 = randomWeights(hfShapes(v.cfg), 1);
    w2.delete('model.norm.weight');
    await writeCheckpoint(d2, v.cfg, w2);
    await expect(LlamaForCausalLM.fromPretrained(d2)).rejects.toThrow(/has no tensor "model\.norm\.weight" \(expected shape \[16\]\)/);
    const d3 = newDir();
    await writeCheckpoint(d3, { ...v.cfg, model_type: 'gpt2' }, w2);
    await expect(LlamaForCausalLM.fromPretrained(d3)).rejects.toThrow(/holds a "gpt2" model, not one of llama, mistral, qwen2, qwen3/);
  });

  test('a base-model checkpoint (LlamaModel names, no lm_head) loads with a fresh head and a warning', async () => {
    const v = VARIANTS[0];
    const dir = newDir();
    const w = randomWeights(hfShapes(v.cfg), 2);
    const bare: Weights = new Map([...w].filter(([k]) => k !== 'lm_head.weight').map(([k, t]) => [k.replace(/^model\./, ''), t]));
    await writeCheckpoint(dir, v.cfg, bare);
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const m = await LlamaForCausalLM.fromPretrained(dir);
      expect(warn.mock.calls.flat().join(' ')).toMatch(/newly initialised .*lm_head\.weight/);
      expect(Array.from(m.model.norm.weight.dataSync())).toEqual(Array.from(Float32Array.from(w.get('model.norm.weight')!.data)));
    } finally {
      warn.mockRestore();
    }
  });
});

describe('KV cache', () => {
  // (not dynamic NTK: as in transformers, keys cached before the sequence outgrew
  // max_position_embeddings keep the frequencies they were rotated with)
  for (const v of [VARIANTS[0], VARIANTS[1], VARIANTS[3], VARIANTS[4], VARIANTS[5]]) {
    test(`incremental logits equal full recomputation (chunks 3+1+2+1, cache grown past its capacity): ${v.name}`, async () => {
      const { dir } = await checkpoint(v, 5);
      const model = await LlamaForCausalLM.fromPretrained(dir);
      ng.noGrad(() => {
        const full = model.forward({ inputIds: ids32(IDS) }).logits;
        const cache = model.newDecodeCache(2, 2);
        let at = 0;
        for (const len of [3, 1, 2, 1]) {
          const chunk = IDS.map((r) => r.slice(at, at + len));
          const out = model.forward({ inputIds: ids32(chunk), pastKeyValues: cache });
          expect(out.pastKeyValues).toBe(cache);
          expectClose(out.logits, full.narrow(1, at, len).contiguous(), { atol: 2e-5, rtol: 1e-4 });
          at += len;
          expect(cache.length).toBe(at);
        }
        expect(cache.capacity).toBeGreaterThanOrEqual(7);
        // the cache keeps Hkv heads (GQA is not expanded into it)
        expect(cache.layers[0].k!.shape).toEqual([2, model.config.numKeyValueHeads, 7, model.config.headDim]);
        cache.dispose();
      });
    });
  }

  test('useCache returns a cache that later calls continue', async () => {
    const { dir } = await checkpoint(VARIANTS[1], 5);
    const model = await LlamaForCausalLM.fromPretrained(dir);
    ng.noGrad(() => {
      const full = model.forward({ inputIds: ids32(IDS) }).logits;
      const first = model.forward({ inputIds: ids32(IDS.map((r) => r.slice(0, 4))), useCache: true });
      const rest = model.forward({ inputIds: ids32(IDS.map((r) => r.slice(4))), pastKeyValues: first.pastKeyValues });
      expectClose(rest.logits, full.narrow(1, 4, 3).contiguous(), { atol: 2e-5, rtol: 1e-4 });
    });
  });

  test('left-padded rows with per-row positions and a key-padding mask match each row alone (the server batch)', async () => {
    for (const v of [VARIANTS[0], VARIANTS[1]]) {
      const { dir } = await checkpoint(v, 9);
      const model = await LlamaForCausalLM.fromPretrained(dir);
      ng.noGrad(() => {
        const a = [5, 9, 12], b = [7, 1, 30, 22, 4];
        const alone = (row: number[], next: number): Float32Array[] => {
          const c = model.newDecodeCache(1, 8);
          const l1 = model.decodeStep(ids32([row]), c).dataSync() as Float32Array;
          const l2 = model.decodeStep(ids32([[next]]), c).dataSync() as Float32Array;
          c.dispose();
          return [l1.slice(), l2.slice()];
        };
        const cache = model.newDecodeCache(2, 8);
        const pos = ng.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]], { dtype: 'int32' });
        const mask = ng.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], { dtype: 'int32' });
        const l1 = model.decodeStep(ids32([[0, 0, ...a], b]), cache, { positions: pos, attentionMask: mask }).dataSync() as Float32Array;
        const l2 = model.decodeStep(ids32([[3], [3]]), cache, {
          positions: ng.tensor([[3], [5]], { dtype: 'int32' }), attentionMask: ng.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]], { dtype: 'int32' }),
        }).dataSync() as Float32Array;
        const [a1, a2] = alone(a, 3), [b1, b2] = alone(b, 3);
        const V = 37;
        expectClose(l1.subarray(0, V), a1, { atol: 2e-5, rtol: 1e-4 });
        expectClose(l1.subarray(V), b1, { atol: 2e-5, rtol: 1e-4 });
        expectClose(l2.subarray(0, V), a2, { atol: 2e-5, rtol: 1e-4 });
        expectClose(l2.subarray(V), b2, { atol: 2e-5, rtol: 1e-4 });
        cache.dispose();
      });
    }
  });

  test('batch operations: rows selected, leading padding trimmed, two batches merged with left padding', () => {
    const c = new ng.nn.KVCache({ nLayer: 1, batchSize: 2, numHeads: 1, headDim: 2, capacity: 3 });
    const kv = (rows: number[][]) => ng.tensor(rows.map((r) => [r.map((x) => [x, -x])]), { shape: [rows.length, 1, rows[0].length, 2] });
    c.layers[0].append(kv([[1, 2, 3], [4, 5, 6]]), kv([[1, 2, 3], [4, 5, 6]]));
    c.layers[0].append(kv([[7], [8]]), kv([[7], [8]]));     // grows past capacity 3
    expect(c.length).toBe(4);
    const other = new ng.nn.KVCache({ nLayer: 1, batchSize: 1, numHeads: 1, headDim: 2, capacity: 2 });
    other.layers[0].append(kv([[9, 10]]), kv([[9, 10]]));
    c.appendRows(other, 4);
    expect(c.batchSize).toBe(3);
    expect(c.length).toBe(4);
    const k = (c.layers[0].k!.tolist() as number[][][][]).map((r) => r[0].map((p) => p[0]));
    expect(k).toEqual([[1, 2, 3, 7], [4, 5, 6, 8], [0, 0, 9, 10]]);
    c.selectRows([2, 0], 2);
    expect((c.layers[0].v!.tolist() as number[][][][]).map((r) => r[0].map((p) => p[1]))).toEqual([[-9, -10], [-3, -7]]);
    c.dispose();
  });

  for (const v of [VARIANTS[0], VARIANTS[1], VARIANTS[4]]) {
    test(`generate with the cache gives the tokens of full recomputation, and stops at any EOS id: ${v.name}`, async () => {
      const { dir } = await checkpoint(v, 13);
      const model = await LlamaForCausalLM.fromPretrained(dir);
      model.generationConfig.eosTokenId = [];
      const prompt = [[4, 8, 15], [16, 23, 1]];
      const cached = model.generate(prompt, { maxNewTokens: 10, temperature: 0 });
      const plain = model.generate(prompt, { maxNewTokens: 10, temperature: 0, useCache: false });
      expect(cached).toEqual(plain);
      const sampled = model.generate(prompt, { maxNewTokens: 8, temperature: 0.9, topK: 10, topP: 0.9, seed: 3 });
      expect(model.generate(prompt, { maxNewTokens: 8, temperature: 0.9, topK: 10, topP: 0.9, seed: 3, useCache: false })).toEqual(sampled);
      // an EOS list from the generation config: the row ends at the first of them
      const stopAt = cached[0][5];
      model.generationConfig.eosTokenId = [999, stopAt];
      const stopped = model.generate([prompt[0]], { maxNewTokens: 10 });
      expect(stopped[0]).toEqual(cached[0].slice(0, cached[0].indexOf(stopAt, 3) + 1));
      const streamed: number[] = [];
      for await (const [t] of model.generateStream([prompt[0]], { maxNewTokens: 10 })) streamed.push(t);
      expect(streamed).toEqual(stopped[0].slice(3));
    });
  }
});

describe('savePretrained', () => {
  test('-> fromPretrained is bit-exact; config.json and generation_config.json use HF names', async () => {
    for (const v of [VARIANTS[0], VARIANTS[1], VARIANTS[3], VARIANTS[4], VARIANTS[5]]) {
      const { dir } = await checkpoint(v, 21);
      await writeFile(path.join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: [2, 7], do_sample: true, temperature: 0.7, top_p: 0.8, transformers_version: '4.50.0' }));
      const a = await LlamaForCausalLM.fromPretrained(dir);
      expect(a.generationConfig).toMatchObject({ eosTokenId: [2, 7], doSample: true, temperature: 0.7, topP: 0.8 });
      expect(a.generationDefaults()).toMatchObject({ stopTokens: [2, 7], temperature: 0.7, topP: 0.8, topK: 50 });
      const out = newDir();
      await a.savePretrained(out);
      const b = await LlamaForCausalLM.fromPretrained(out);
      const sa = a.stateDict(), sb = b.stateDict();
      expect(Object.keys(sb)).toEqual(Object.keys(sa));
      for (const k of Object.keys(sa)) expect(Buffer.from((sb[k].dataSync() as Float32Array).buffer), k).toEqual(Buffer.from((sa[k].dataSync() as Float32Array).buffer));
      const x = ids32(IDS);
      expect(Array.from(ng.noGrad(() => b.forward({ inputIds: x }).logits.dataSync()))).toEqual(Array.from(ng.noGrad(() => a.forward({ inputIds: x }).logits.dataSync())));
      const cfg = JSON.parse(await readFile(path.join(out, 'config.json'), 'utf8')) as Raw;
      const type = v.cfg.model_type as string;
      expect(cfg).toMatchObject({
        model_type: type, architectures: [{ llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM' }[type]],
        hidden_size: 16, num_hidden_layers: 2, num_attention_heads: v.cfg.num_attention_heads, rms_norm_eps: 1e-5, torch_dtype: 'float32',
        tie_word_embeddings: v.cfg.tie_word_embeddings ?? false,
      });
      if (v.cfg.rope_scaling) expect(cfg.rope_scaling).toMatchObject({ rope_type: 'llama3', factor: 8, low_freq_factor: 1 });
      if (type === 'mistral') expect(cfg.sliding_window).toBe(3);
      if (type === 'qwen2') expect(cfg).toMatchObject({ use_sliding_window: true, sliding_window: 2, max_window_layers: 1, layer_types: ['full_attention', 'sliding_attention'] });
      const keys = [...(await readTensorsRaw(out)).keys()];
      expect(keys.includes('lm_head.weight')).toBe(v.cfg.tie_word_embeddings !== true);
      expect(keys.every((k) => k === 'lm_head.weight' || k.startsWith('model.'))).toBe(true);
      const gen = JSON.parse(await readFile(path.join(out, 'generation_config.json'), 'utf8')) as Raw;
      expect(gen).toMatchObject({ bos_token_id: 1, eos_token_id: [2, 7], do_sample: true, temperature: 0.7, top_p: 0.8 });
    }
  });

  test('shards above maxShardSize (model-0000i-of-0000n + index) and loads them back bit-exact', async () => {
    const { dir } = await checkpoint(VARIANTS[0], 4);
    const a = await LlamaForCausalLM.fromPretrained(dir);
    const one = newDir(), many = newDir();
    await a.savePretrained(one);
    await a.savePretrained(many, { maxShardSize: '4kB' });
    const files = (await readdir(many)).sort();
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    expect(shards.length).toBeGreaterThan(2);
    expect(files).toContain('model.safetensors.index.json');
    expect(files).not.toContain('model.safetensors');
    const idx = JSON.parse(await readFile(path.join(many, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
    const r1 = await readTensorsRaw(one), r2 = await readTensorsRaw(many);
    expect(idx.metadata.total_size).toBe([...r1.values()].reduce((s, t) => s + t.bytes.length, 0));
    expect(Object.keys(idx.weight_map).sort()).toEqual([...r1.keys()].sort());
    for (const [k, t] of r1) expect(r2.get(k)!.bytes.equals(t.bytes), k).toBe(true);
    const b = await LlamaForCausalLM.fromPretrained(many);
    for (const [k, t] of Object.entries(a.stateDict())) expect(Array.from(b.stateDict()[k].dataSync()), k).toEqual(Array.from(t.dataSync()));
    // saving the sharded one again as a single file removes the shards
    await b.savePretrained(many);
    expect((await readdir(many)).filter((f) => f.startsWith('model'))).toEqual(['model.safetensors']);
    await expect(a.savePretrained(newDir(), { maxShardSize: 'big' })).rejects.toThrow(/maxShardSize must be a positive number of bytes or a size like '5GB'/);
  });

  test('bfloat16: float32 on the CPU by default, bfloat16 on request; written back bit-identical', async () => {
    const v = VARIANTS[9];
    const { dir, w } = await checkpoint(v, 8);
    const orig = await readTensorsRaw(dir);
    const f32 = await LlamaForCausalLM.fromPretrained(dir);
    expect(f32.model.layers.at(0).self_attn.q_proj.weight.dtype).toBe('float32');
    const back = newDir();
    await f32.savePretrained(back, { dtype: 'bfloat16' });
    const bf = await LlamaForCausalLM.fromPretrained(dir, { dtype: 'bfloat16' });
    expect(bf.model.layers.at(0).self_attn.q_proj.weight.dtype).toBe('bfloat16');
    const back2 = newDir();
    await bf.savePretrained(back2); // a bfloat16 model saves in bfloat16
    for (const d of [back, back2]) {
      const got = await readTensorsRaw(d);
      expect([...got.keys()].sort()).toEqual([...orig.keys()].sort());
      for (const [k, t] of orig) {
        expect(got.get(k)!.dtype, k).toBe('BF16');
        expect(got.get(k)!.bytes.equals(t.bytes), k).toBe(true);
      }
      expect(JSON.parse(await readFile(path.join(d, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    }
    // the bfloat16 model computes close to the reference over the bf16 values
    const logits = ng.noGrad(() => bf.forward({ inputIds: ids32(IDS) }).logits.to('float32'));
    expectClose(logits, flat(ref(v, w)), { atol: 0.15, rtol: 0.05 });
  });

  test('a layout the model type cannot express is refused', async () => {
    const m = new LlamaForCausalLM({ modelType: 'mistral', vocabSize: 8, hiddenSize: 8, intermediateSize: 8, numHiddenLayers: 1, numAttentionHeads: 2, attentionBias: true });
    await expect(m.savePretrained(newDir())).rejects.toThrow(/cannot be written as a mistral checkpoint: mistral has no attention biases/);
  });
});

describe('training', () => {
  test('a few Trainer steps on a from-scratch Llama lower the loss', async () => {
    ng.manualSeed(2);
    const model = new LlamaForCausalLM({
      modelType: 'qwen3', vocabSize: 12, hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 2, numAttentionHeads: 4,
      numKeyValueHeads: 2, maxPositionEmbeddings: 16, tieWordEmbeddings: true,
    });
    const opt = new ng.optim.AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0 });
    const data = new TokenDataset(Int32Array.from({ length: 600 }, (_, i) => (i * 5 + (i >> 2)) % 12), { seed: 1 });
    const trainer = new Trainer({ model, optimizer: opt, train: data, batchSize: 8, blockSize: 12, maxSteps: 30, progress: 'none' });
    const r = await trainer.fit();
    const first = r.losses.slice(0, 3).reduce((a, b) => a + b) / 3;
    const last = r.losses.slice(-3).reduce((a, b) => a + b) / 3;
    expect(last).toBeLessThan(first - 0.5);
    // gradient checkpointing recomputes the same gradients
    const x = ids32([[1, 2, 3, 4, 5, 6]]);
    const grads = (): number[] => {
      model.zeroGrad();
      model.forward({ inputIds: x, labels: x }).loss!.backward();
      return Array.from(model.model.layers.at(0).mlp.up_proj.weight.grad!.dataSync());
    };
    model.train();
    const g1 = grads();
    model.gradientCheckpointingEnable();
    expectClose(grads(), g1, { atol: 1e-6, rtol: 1e-5 });
  });
});
