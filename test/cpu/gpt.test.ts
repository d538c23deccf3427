import { describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { models, optim } from '../../lib/index.js';
import { expectClose } from '../helpers.js';

const tiny = { vocabSize: 11, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 16, dropout: 0, bias: true };

describe('models.GPT', () => {
  test('forward gives logits [B,T,V] and a loss equal to cross-entropy of those logits', () => {
    ng.manualSeed(0);
    const gpt = new models.GPT(tiny);
    const x = ng.randint(0, 11, [2, 7]);
    const y = ng.randint(0, 11, [2, 7]);
    const { logits, loss } = gpt.forward(x, { targets: y });
    expect(logits.shape).toEqual([2, 7, 11]);
    const ref = ng.nn.functional.crossEntropy(logits.reshape(14, 11), y.reshape(14));
    expectClose(loss!, ref, { atol: 1e-6 });
    // initial loss is near ln(V) for small init
    expect(Math.abs(loss!.item() - Math.log(11))).toBeLessThan(0.3);
  });

  test('presets, parameter count and FLOPs estimate', () => {
    const c = models.GPT.preset('gpt2');
    expect(c).toMatchObject({ nLayer: 12, nHead: 12, nEmbd: 768, vocabSize: 50257, blockSize: 1024 });
    const gpt = new models.GPT(tiny);
    // wte + wpe + per layer (2 LN + qkv + proj + fc + proj) + final LN, with tied head
    const C = 16, L = 2, V = 11, T = 16;
    const perLayer = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C);
    expect(gpt.numParams()).toBe(V * C + T * C + L * perLayer + 2 * C);
    expect(gpt.flopsPerToken()).toBe(6 * (gpt.numParams() - T * C) + 6 * L * C * T);
    expect(() => models.GPT.preset('nope')).toThrow(/unknown preset 'nope'/);
    expect(() => new models.GPT({ ...tiny, nHead: 3 })).toThrow(/divisible by nHead/);
  });

  test('a tiny GPT overfits one fixed batch to near-zero loss', () => {
    ng.manualSeed(1);
    const gpt = new models.GPT({ ...tiny, vocabSize: 8, nEmbd: 32, nHead: 4 });
    const x = ng.randint(0, 8, [4, 12]);
    const y = ng.randint(0, 8, [4, 12]);
    const opt = new optim.AdamW(gpt.parameters(), { lr: 1e-2, weightDecay: 0 });
    let last = Infinity;
    for (let i = 0; i < 150; i++) {
      last = ng.scope(() => {
        const { loss } = gpt.forward(x, { targets: y });
        loss!.backward();
        return loss!.item();
      });
      opt.step();
      opt.zeroGrad();
    }
    expect(last).toBeLessThan(0.05);
  });

  test('KV-cached decoding gives the same tokens as uncached decoding', () => {
    ng.manualSeed(2);
    const gpt = new models.GPT(tiny);
    const prompt = [[1, 2, 3], [4, 5, 6]];
    const cached = gpt.generate(prompt, { maxNewTokens: 10, temperature: 0 });
    const uncached = gpt.generate(prompt, { maxNewTokens: 10, temperature: 0, useCache: false });
    expect(cached).toEqual(uncached);
    // sampling with a seed is reproducible and agrees with and without the cache too
    const a = gpt.generate(prompt, { maxNewTokens: 10, temperature: 1, topK: 5, seed: 7 });
    const b = gpt.generate(prompt, { maxNewTokens: 10, temperature: 1, topK: 5, seed: 7, useCache: false });
    expect(a).toEqual(b);
  });

  test('cached logits equal full-sequence logits position by position', () => {
    const gpt = new models.GPT(tiny);
    gpt.eval();
    const ids = ng.tensor([[3, 1, 4, 1, 5, 9]], { dtype: 'int32' });
    const full = gpt.forward(ids).logits;
    const cache = gpt.newKVCache();
    const first = gpt.forward(ids.narrow(1, 0, 4), { kvCache: cache }).logits;
    const rest = gpt.forward(ids.narrow(1, 4, 2), { kvCache: cache }).logits;
    expectClose(ng.cat([first, rest], 1), full, { atol: 1e-5 });
    ng.nn.disposeKVCache(cache);
  });

  test('generation stops at stop tokens, streams, and crosses the block size', async () => {
    const gpt = new models.GPT({ ...tiny, blockSize: 8 });
    const out = gpt.generate([1, 2], { maxNewTokens: 12, temperature: 0 });
    expect(out[0].length).toBe(14); // slides past blockSize = 8
    const first = out[0][2];
    const stopped = gpt.generate([1, 2], { maxNewTokens: 12, temperature: 0, stopTokens: [first] });
    expect(stopped[0]).toEqual([1, 2, first]);
    const streamed: number[] = [];
    for await (const [t] of gpt.generateStream([1, 2], { maxNewTokens: 5, temperature: 0 })) streamed.push(t);
    expect(streamed).toEqual(out[0].slice(2, 7));
    expect(() => gpt.generate([1, 99], {})).toThrow(/token 99 is out of range/);
  });

  test('save and load round trip', async () => {
    const { mkdtemp } = await import('node:fs/promises');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ng-gpt-'));
    const gpt = new models.GPT(tiny);
    await gpt.save(path.join(dir, 'm'));
    const back = await models.GPT.load(path.join(dir, 'm'));
    const x = ng.randint(0, 11, [1, 5]);
    expectClose(back.forward(x).logits, gpt.forward(x).logits, { atol: 0, rtol: 0 });
    await expect(models.GPT.load(path.join(dir, 'missing'))).rejects.toThrow(/nodegrad/);
  });
});
