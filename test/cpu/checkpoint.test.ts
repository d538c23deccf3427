// Activation checkpointing: same values and gradients as the plain graph, with dropout.
import { describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { expectClose } from '../helpers.js';

function gptGrads(checkpoint: boolean): { loss: number; grads: Map<string, Float32Array> } {
  ng.manualSeed(7);
  const model = new ng.models.GPT({ vocabSize: 32, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 16, dropout: 0.2, checkpoint });
  ng.manualSeed(11);
  const ids = ng.randint(0, 32, [3, 12]);
  const targets = ng.randint(0, 32, [3, 12]);
  const { loss } = model.forward(ids, { targets });
  loss!.backward();
  const grads = new Map<string, Float32Array>();
  for (const [name, p] of model.namedParameters()) grads.set(name, p.grad!.dataSync() as Float32Array);
  return { loss: loss!.item(), grads };
}

describe('checkpoint', () => {
  test('a checkpointed GPT gives the same loss and gradients as the plain one (dropout on)', () => {
    const a = gptGrads(false), b = gptGrads(true);
    expect(b.loss).toBeCloseTo(a.loss, 6);
    expect([...b.grads.keys()]).toEqual([...a.grads.keys()]);
    for (const [name, g] of a.grads) expectClose(b.grads.get(name)!, g, { atol: 1e-6, rtol: 1e-5 });
  });

  test('gradients reach inputs and captured parameters; the forward keeps no graph', () => {
    const w = ng.tensor([[0.5, -1], [2, 0.25]], { requiresGrad: true });
    const x = ng.tensor([[1, 2], [3, 4]], { requiresGrad: true });
    const f = (t: ng.Tensor) => t.matmul(w).tanh().mul(t);
    const y = ng.nn.checkpoint(f, x);
    expect(y.gradFn?.name).toBe('checkpoint');
    expect(y.gradFn?.inputs.length).toBe(1);
    y.sum().backward();
    const x2 = ng.tensor([[1, 2], [3, 4]], { requiresGrad: true });
    const w2 = ng.tensor([[0.5, -1], [2, 0.25]], { requiresGrad: true });
    x2.matmul(w2).tanh().mul(x2).sum().backward();
    expectClose(x.grad!, x2.grad!);
    expectClose(w.grad!, w2.grad!);
  });

  test('matches finite differences in float64', () => {
    const w = ng.randn([3, 3], { dtype: 'float64' });
    const f = (t: ng.Tensor) => ng.nn.checkpoint((u) => u.matmul(w).sigmoid().mul(u), t);
    expect(ng.gradcheck(f, [ng.randn([2, 3], { dtype: 'float64', requiresGrad: true })]).ok).toBe(true);
  });

  test('without grad it is a plain call; bad input is an Error', () => {
    const y = ng.noGrad(() => ng.nn.checkpoint((t) => t.mul(2), ng.ones([2], { requiresGrad: true })));
    expect(y.gradFn).toBe(null);
    expect(() => ng.nn.checkpoint((t) => t, 3 as unknown as ng.Tensor)).toThrow(/nodegrad: checkpoint: inputs must be Tensors/);
  });
});

describe('GPT vocabulary padding', () => {
  test('a padded LM head gives the same logits, loss and gradients as the plain one', () => {
    const run = (padVocabMultiple: number) => {
      ng.manualSeed(3);
      const m = new ng.models.GPT({ vocabSize: 37, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 16, padVocabMultiple });
      ng.manualSeed(4);
      const x = ng.randint(0, 37, [2, 8]), y = ng.randint(0, 37, [2, 8]);
      const { logits, loss } = m.forward(x, { targets: y });
      loss!.backward();
      return { logits, loss: loss!.item(), grads: [...m.namedParameters()].map(([n, p]) => [n, p.grad!] as const) };
    };
    const a = run(1), b = run(64);
    expect(b.logits.shape).toEqual([2, 8, 37]);
    expectClose(b.logits, a.logits, { atol: 1e-6 });
    expect(b.loss).toBeCloseTo(a.loss, 6);
    b.grads.forEach(([n, g], i) => {
      expect(n).toBe(a.grads[i][0]);
      expectClose(g, a.grads[i][1], { atol: 1e-6, rtol: 1e-5 });
    });
  });
});
