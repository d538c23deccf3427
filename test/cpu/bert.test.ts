import { describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import type { Tensor } from '../../lib/index.js';
import { maskTokens } from '../../lib/data/mlm.js';
import {
  BertForMaskedLM, BertForSequenceClassification, BertLayer, BertModel, checkBertConfig, type BertActivation, type BertConfig,
} from '../../lib/models/bert.js';
import { expectClose } from '../helpers.js';

const F = ng.nn.functional;
const tiny: BertConfig = {
  vocabSize: 23, hiddenSize: 12, numHiddenLayers: 2, numAttentionHeads: 3, intermediateSize: 20, maxPositionEmbeddings: 16,
  hiddenDropoutProb: 0, attentionProbsDropoutProb: 0,
};
const ids = () => ng.tensor([[2, 5, 9, 7, 11, 3, 0], [2, 4, 8, 3, 0, 0, 0]], { dtype: 'int32' });
const mask = () => ng.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]], { dtype: 'int32' });

/** The layer written out with plain ops over its weights, q/k/v taken from the fused rows. */
function layerReference(l: BertLayer, x: Tensor, m: Tensor | null, act: (t: Tensor) => Tensor): Tensor {
  const [b, t, c] = x.shape, heads = l.attention.numHeads, d = c / heads;
  const w = l.attention.cAttn.weight, bias = l.attention.cAttn.bias!;
  const proj = (i: number) => F.linear(x, w.narrow(0, i * c, c), bias.narrow(0, i * c, c)).reshape(b, t, heads, d).permute(0, 2, 1, 3);
  let s = ng.matmul(proj(0), proj(1).transpose(2, 3)).mul(1 / Math.sqrt(d));
  if (m) s = s.add(ng.sub(1, m.reshape(b, 1, 1, t).to(x.dtype)).mul(-1e30));
  const a = ng.matmul(ng.softmax(s, -1), proj(2)).permute(0, 2, 1, 3).reshape(b, t, c);
  const ln = (y: Tensor, n: ng.nn.LayerNorm) => F.layerNorm(y, [c], n.weight, n.bias, n.eps);
  const h = ln(x.add(F.linear(a, l.attention.cProj.weight, l.attention.cProj.bias)), l.attentionNorm);
  return ln(h.add(F.linear(act(F.linear(h, l.intermediate.weight, l.intermediate.bias)), l.output.weight, l.output.bias)), l.outputNorm);
}

describe('BertLayer', () => {
  const acts: [BertActivation, (t: Tensor) => Tensor][] = [
    ['gelu', (t) => ng.mul(t, ng.add(ng.erf(ng.mul(t, Math.SQRT1_2)), 1)).mul(0.5)],
    ['gelu_new', (t) => ng.mul(t, ng.add(ng.tanh(ng.mul(ng.add(t, ng.mul(ng.pow(t, 3), 0.044715)), Math.sqrt(2 / Math.PI))), 1)).mul(0.5)],
    ['relu', (t) => ng.maximum(t, 0)],
  ];
  for (const [name, act] of acts) {
    test(`matches a composed post-LN reference in float64 (hiddenAct ${name}), with and without a padding mask`, () => {
      ng.manualSeed(1);
      const c = checkBertConfig({ ...tiny, hiddenAct: name, layerNormEps: 1e-6 });
      const l = new BertLayer(c).to('float64').eval();
      ng.noGrad(() => { for (const p of l.parameters()) p.copy_(ng.randn(p.shape, { dtype: 'float64', std: 0.5 })); });
      const x = ng.randn([2, 7, 12], { dtype: 'float64' });
      expectClose(l.forward(x), layerReference(l, x, null, act), { atol: 1e-10 });
      const m = mask();
      expectClose(l.forward(x, m.bool()), layerReference(l, x, m, act), { atol: 1e-10 });
    });
  }

  test('backward matches finite differences in float64 (input and padding mask)', () => {
    ng.manualSeed(2);
    const l = new BertLayer(checkBertConfig({ ...tiny, hiddenSize: 6, numAttentionHeads: 2, intermediateSize: 8 })).to('float64');
    const x = ng.randn([2, 4, 6], { dtype: 'float64', requiresGrad: true });
    const m = ng.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], { dtype: 'bool' });
    ng.gradcheck((t) => l.forward(t, m), [x]);
    // parameter gradients: perturb one weight matrix through a functional wrapper
    const w = l.intermediate.weight;
    const w0 = w.detach().clone().requiresGrad_();
    ng.gradcheck((ww) => {
      const saved = l.intermediate.weight;
      l.intermediate.weight = ww;
      try { return l.forward(x.detach(), m); } finally { l.intermediate.weight = saved; }
    }, [w0]);
  });
});

describe('BertModel', () => {
  test('padding positions do not influence real positions, the pooler or classifier logits', () => {
    ng.manualSeed(3);
    const model = new BertForSequenceClassification({ ...tiny, numLabels: 3 }).eval();
    ng.noGrad(() => { for (const p of model.parameters()) p.add_(ng.randn(p.shape, { std: 0.3 })); });
    const a = ids(), b = ng.tensor([[2, 5, 9, 7, 11, 3, 0], [2, 4, 8, 3, 17, 1, 6]], { dtype: 'int32' });
    const oa = model.forward({ inputIds: a, attentionMask: mask() }), ob = model.forward({ inputIds: b, attentionMask: mask() });
    expectClose(oa.lastHiddenState.narrow(1, 0, 4), ob.lastHiddenState.narrow(1, 0, 4), { atol: 1e-6 });
    expectClose(oa.logits, ob.logits, { atol: 1e-6 });
    expectClose(oa.poolerOutput!, ob.poolerOutput!, { atol: 1e-6 });
    // without the mask the changed tokens do reach the others
    const real = (x: Tensor) => model.forward({ inputIds: x }).lastHiddenState.select(0, 1).narrow(0, 0, 4);
    expect(ng.sub(real(a), real(b)).abs().amax().item()).toBeGreaterThan(1e-2);
  });

  test('embeddings sum word, position and token-type rows; pooler is tanh(dense(h[CLS]))', () => {
    ng.manualSeed(4);
    const m = new BertModel({ ...tiny, numHiddenLayers: 1 }).eval();
    const e = m.embeddings;
    const x = ids(), tt = ng.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1]], { dtype: 'int32' });
    const ref = F.layerNorm(F.embedding(x, e.wordEmbeddings.weight).add(e.positionEmbeddings.weight.narrow(0, 0, 7)).add(F.embedding(tt, e.tokenTypeEmbeddings.weight)),
      [12], e.layerNorm.weight, e.layerNorm.bias, 1e-12);
    expectClose(e.forward(x, tt), ref, { atol: 1e-5 });
    expectClose(e.forward(x, null), e.forward(x, ng.zeros([2, 7], { dtype: 'int32' })), { atol: 0 });
    const out = m.forward({ inputIds: x, tokenTypeIds: tt });
    expectClose(out.poolerOutput!, ng.tanh(F.linear(out.lastHiddenState.select(1, 0), m.pooler!.dense.weight, m.pooler!.dense.bias)), { atol: 1e-6 });
    expect(out.lastHiddenState.shape).toEqual([2, 7, 12]);
    // padding row of the word embeddings starts at zero, as nn.Embedding(padding_idx=0)
    expect(e.wordEmbeddings.weight.select(0, 0).abs().sum().item()).toBe(0);
  });

  test('dropout is active in training mode and off in eval mode', () => {
    ng.manualSeed(5);
    const m = new BertModel({ ...tiny, hiddenDropoutProb: 0.3, attentionProbsDropoutProb: 0.3 });
    const a = m.forward({ inputIds: ids() }).lastHiddenState, b = m.forward({ inputIds: ids() }).lastHiddenState;
    expect(ng.sub(a, b).abs().amax().item()).toBeGreaterThan(1e-3);
    m.eval();
    expectClose(m.forward({ inputIds: ids() }).lastHiddenState, m.forward({ inputIds: ids() }).lastHiddenState, { atol: 0 });
    expect(m.encoder.layer.at(0).attention.attnDropout).toBe(0.3);
  });

  test('config defaults, presets and bad input are checked', () => {
    expect(checkBertConfig()).toMatchObject({ vocabSize: 30522, hiddenSize: 768, numHiddenLayers: 12, layerNormEps: 1e-12, hiddenAct: 'gelu', numLabels: 2, id2label: { 0: 'LABEL_0', 1: 'LABEL_1' } });
    expect(checkBertConfig({ id2label: { 0: 'a', 1: 'b', 2: 'c' } })).toMatchObject({ numLabels: 3, label2id: { a: 0, b: 1, c: 2 } });
    expect(BertModel.preset('bert-tiny')).toMatchObject({ hiddenSize: 128, numHiddenLayers: 2 });
    expect(() => BertModel.preset('bert-huge')).toThrow(/unknown preset 'bert-huge'/);
    expect(() => checkBertConfig({ hiddenSize: 10, numAttentionHeads: 3 })).toThrow(/nodegrad: BertConfig: hiddenSize 10 must be divisible by numAttentionHeads 3/);
    expect(() => checkBertConfig({ hiddenAct: 'swiglu' as BertActivation })).toThrow(/hiddenAct "swiglu" is not supported/);
    expect(() => checkBertConfig({ numLabels: 2, id2label: { 0: 'a', 1: 'b', 2: 'c' } })).toThrow(/id2label has 3 labels but numLabels is 2/);
    expect(() => checkBertConfig({ padTokenId: 99, vocabSize: 10 })).toThrow(/padTokenId/);
    const m = new BertModel({ ...tiny, numHiddenLayers: 1 });
    expect(() => m.forward({ inputIds: ids().float() })).toThrow(/nodegrad: BertModel\.forward: inputIds must be an int32 tensor \[B, T\]/);
    expect(() => m.forward({ inputIds: ng.zeros([1, 17], { dtype: 'int32' }) })).toThrow(/sequence length 17 exceeds maxPositionEmbeddings 16/);
    expect(() => m.forward({ inputIds: ids(), attentionMask: ng.ones([2, 6]) })).toThrow(/attentionMask must be \[B, T\] = \[2, 7\]/);
  });
});

describe('BertForSequenceClassification losses', () => {
  const logitsAndLoss = (numLabels: number, labels: Tensor, problemType?: BertConfig['problemType']) => {
    ng.manualSeed(6);
    const m = new BertForSequenceClassification({ ...tiny, numLabels, problemType }).eval();
    const out = m.forward({ inputIds: ids(), attentionMask: mask(), labels });
    return { logits: Array.from(out.logits.dataSync()), loss: out.loss!.item(), type: m.config.problemType };
  };

  test('single-label cross-entropy is inferred from int labels and matches a manual log-softmax', () => {
    const { logits, loss, type } = logitsAndLoss(3, ng.tensor([2, 0], { dtype: 'int32' }));
    expect(type).toBe('single_label_classification');
    const ce = (row: number[], y: number) => Math.log(row.reduce((s, v) => s + Math.exp(v), 0)) - row[y];
    expect(loss).toBeCloseTo((ce(logits.slice(0, 3), 2) + ce(logits.slice(3, 6), 0)) / 2, 5);
  });

  test('multi-label BCE-with-logits is inferred from float labels', () => {
    const y = [1, 0, 1, 0, 0, 1];
    const { logits, loss, type } = logitsAndLoss(3, ng.tensor([[1, 0, 1], [0, 0, 1]]));
    expect(type).toBe('multi_label_classification');
    const bce = logits.reduce((s, x, i) => s - (y[i] * Math.log(1 / (1 + Math.exp(-x))) + (1 - y[i]) * Math.log(1 - 1 / (1 + Math.exp(-x)))), 0) / 6;
    expect(loss).toBeCloseTo(bce, 5);
  });

  test('regression MSE: inferred for one label, or chosen by problemType for several', () => {
    const one = logitsAndLoss(1, ng.tensor([0.5, -1]));
    expect(one.type).toBe('regression');
    expect(one.loss).toBeCloseTo(((one.logits[0] - 0.5) ** 2 + (one.logits[1] + 1) ** 2) / 2, 5);
    const y = [0.1, 0.2, -0.3, 0.4];
    const two = logitsAndLoss(2, ng.tensor([[0.1, 0.2], [-0.3, 0.4]]), 'regression');
    expect(two.loss).toBeCloseTo(two.logits.reduce((s, v, i) => s + (v - y[i]) ** 2, 0) / 4, 5);
  });

  test('labels of the wrong kind are rejected with the expected shape', () => {
    const m = new BertForSequenceClassification({ ...tiny, numLabels: 3, problemType: 'single_label_classification' });
    expect(() => m.forward({ inputIds: ids(), labels: ng.tensor([1, 2, 0], { dtype: 'int32' }) })).toThrow(/labels for single_label_classification must be int32 \[2\]/);
    const mm = new BertForSequenceClassification({ ...tiny, numLabels: 3, problemType: 'multi_label_classification' });
    expect(() => mm.forward({ inputIds: ids(), labels: ng.ones([2, 2]) })).toThrow(/must be \[2, 3\]/);
  });

  test('a tiny classifier learns to separate two token patterns', () => {
    ng.manualSeed(7);
    const m = new BertForSequenceClassification({ ...tiny, numLabels: 2 });
    const x = ng.tensor([[2, 5, 5, 5, 3], [2, 9, 9, 9, 3], [2, 5, 9, 5, 3], [2, 9, 5, 9, 3]], { dtype: 'int32' });
    const y = ng.tensor([0, 1, 0, 1], { dtype: 'int32' });
    const opt = new ng.optim.AdamW(m.parameters(), { lr: 3e-3, weightDecay: 0 });
    let last = Infinity;
    for (let i = 0; i < 60; i++) {
      last = ng.scope(() => {
        const { loss } = m.forward({ inputIds: x, labels: y });
        loss!.backward();
        return loss!.item();
      });
      opt.step();
      opt.zeroGrad();
    }
    expect(last).toBeLessThan(0.05);
  });
});

describe('BertForMaskedLM', () => {
  test('tied decoder logits and a loss that ignores -100 labels', () => {
    ng.manualSeed(8);
    const m = new BertForMaskedLM({ ...tiny, hiddenAct: 'gelu_new' }).eval();
    expect(m.bert.pooler).toBeNull();
    const labels = ng.tensor([[-100, 5, -100, -100, 4, -100, -100], [-100, -100, 8, -100, -100, -100, -100]], { dtype: 'int32' });
    const out = m.forward({ inputIds: ids(), attentionMask: mask(), labels });
    const h = F.layerNorm(F.gelu(F.linear(out.lastHiddenState, m.transformDense.weight, m.transformDense.bias), { approximate: 'tanh' }), [12],
      m.transformNorm.weight, m.transformNorm.bias, 1e-12);
    expectClose(out.logits, F.linear(h, m.bert.embeddings.wordEmbeddings.weight, m.decoderBias), { atol: 1e-5 });
    const l = out.logits.dataSync() as Float32Array, V = 23;
    const ce = (pos: number, y: number) => Math.log(Array.from(l.subarray(pos * V, pos * V + V)).reduce((s, v) => s + Math.exp(v), 0)) - l[pos * V + y];
    expect(out.loss!.item()).toBeCloseTo((ce(1, 5) + ce(4, 4) + ce(9, 8)) / 3, 4);
    // the shared matrix gets gradient from both the embedding lookup and the decoder
    m.train();
    m.forward({ inputIds: ids(), labels }).loss!.backward();
    expect(m.parameters().every((p) => p.grad !== null)).toBe(true);
    expect(m.numParameters()).toBe(new BertForMaskedLM({ ...tiny, tieWordEmbeddings: false }).numParameters() - 23 * 12);
  });
});

describe('maskTokens', () => {
  const V = 1000, MASK = 4, specials = [1, 2, 3];
  const batch = () => {
    const rows: number[][] = [];
    for (let b = 0; b < 64; b++) {
      const len = 64 + (b % 5) * 16;
      const r = [2];
      for (let i = 1; i < 127; i++) r.push(i < len ? 10 + ((b * 131 + i * 17) % 900) : 0);
      r.push(3);
      rows.push(r);
    }
    return rows;
  };

  test('selects ~15% of maskable tokens, replaces 80/10/10, never touches specials or padding', () => {
    const rows = batch();
    const am = ng.tensor(rows.map((r) => r.map((v) => (v === 0 ? 0 : 1))), { dtype: 'int32' });
    const { inputIds, labels } = maskTokens(ng.tensor(rows, { dtype: 'int32' }), { vocabSize: V, maskTokenId: MASK, specialTokenIds: specials, padTokenId: 0, attentionMask: am, seed: 42 });
    const x = inputIds.dataSync() as Int32Array, y = labels.dataSync() as Int32Array, src = rows.flat();
    let maskable = 0, selected = 0, masked = 0, random = 0, kept = 0;
    for (let i = 0; i < src.length; i++) {
      const special = specials.includes(src[i]) || src[i] === 0;
      if (!special) maskable++;
      if (y[i] === -100) {
        expect(x[i]).toBe(src[i]);
        continue;
      }
      expect(special).toBe(false);
      expect(y[i]).toBe(src[i]);
      selected++;
      if (x[i] === MASK) masked++;
      else if (x[i] === src[i]) kept++;
      else random++;
    }
    expect(Math.abs(selected / maskable - 0.15)).toBeLessThan(0.015);
    expect(Math.abs(masked / selected - 0.8)).toBeLessThan(0.04);
    expect(Math.abs(random / selected - 0.1)).toBeLessThan(0.03);
    expect(Math.abs(kept / selected - 0.1)).toBeLessThan(0.03);
  });

  test('is deterministic by seed, and by manualSeed without one', () => {
    const rows = batch();
    const opts = { vocabSize: V, maskTokenId: MASK, specialTokenIds: specials };
    const run = (seed?: number) => Array.from(maskTokens(rows, { ...opts, seed }).inputIds.dataSync());
    expect(run(1)).toEqual(run(1));
    expect(run(1)).not.toEqual(run(2));
    ng.manualSeed(9);
    const a = run(), b = run();
    ng.manualSeed(9);
    expect(run()).toEqual(a);
    expect(b).not.toEqual(a);
  });

  test('rejects bad options', () => {
    expect(() => maskTokens([[1, 2]], { vocabSize: 10, maskTokenId: 10 })).toThrow(/nodegrad: maskTokens: maskTokenId must be an id in \[0, 10\)/);
    expect(() => maskTokens([[1, 2]], { vocabSize: 10, maskTokenId: 4, probability: 2 })).toThrow(/probability must be in \[0, 1\]/);
    expect(() => maskTokens(ng.ones([1, 2]), { vocabSize: 10, maskTokenId: 4 })).toThrow(/inputIds must be int32/);
    expect(() => maskTokens([[1, 2]], { vocabSize: 10, maskTokenId: 4, attentionMask: ng.ones([1, 3]) })).toThrow(/attentionMask must have the shape of inputIds \[1,2\]/);
  });
});
