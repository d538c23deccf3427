import { describe, expect, test } from 'vitest';
import * as ng from '../../lib/index.js';
import { nn } from '../../lib/index.js';
import { expectClose } from '../helpers.js';

describe('nn.Module', () => {
  class Net extends nn.Module {
    fc1 = new nn.Linear(4, 8);
    act = new nn.GELU('tanh');
    fc2 = new nn.Linear(8, 3, { bias: false });
    layers = new nn.ModuleList([new nn.LayerNorm(8), new nn.LayerNorm(8)]);
    constructor() {
      super();
      this.registerBuffer('steps', ng.zeros([1], { dtype: 'int32' }));
    }
    forward(x: ng.Tensor): ng.Tensor {
      let h = this.act.forward(this.fc1.forward(x));
      for (const l of this.layers) h = l.forward(h);
      return this.fc2.forward(h);
    }
  }

  test('namedParameters gives dotted paths in definition order', () => {
    const net = new Net();
    expect(net.namedParameters().map(([k]) => k)).toEqual([
      'fc1.weight', 'fc1.bias', 'fc2.weight', 'layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias',
    ]);
    expect(net.numParameters()).toBe(4 * 8 + 8 + 8 * 3 + 4 * 8);
    expect(Object.keys(net.stateDict())).toContain('steps');
  });

  test('stateDict round trip into a fresh module reproduces outputs', () => {
    const a = new Net(), b = new Net();
    const x = ng.randn([5, 4]);
    b.loadStateDict(a.stateDict());
    expectClose(b.forward(x), a.forward(x), { atol: 0, rtol: 0 });
  });

  test('loadStateDict reports missing, unexpected and mis-shaped keys', () => {
    const net = new Net();
    const sd = { ...net.stateDict() };
    delete (sd as Record<string, unknown>)['fc1.bias'];
    expect(() => net.loadStateDict(sd)).toThrow(/nodegrad: loadStateDict: missing keys: fc1.bias/);
    const extra = { ...net.stateDict(), 'bogus.weight': ng.zeros([1]) };
    expect(() => net.loadStateDict(extra)).toThrow(/unexpected keys: bogus.weight/);
    const r = net.loadStateDict(extra, { strict: false });
    expect(r.unexpectedKeys).toEqual(['bogus.weight']);
    const bad = { ...net.stateDict(), 'fc1.weight': ng.zeros([3, 3]) };
    expect(() => net.loadStateDict(bad, { strict: false })).toThrow(/size mismatch for fc1.weight: checkpoint \[3,3\] vs model \[8,4\]/);
  });

  test('loadStateDict in strict mode reports unexpected keys named like Object.prototype members', () => {
    const net = new Net();
    for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
      const m = new Map(Object.entries(net.stateDict()));
      m.set(name, ng.zeros([1]));
      expect(() => net.loadStateDict(m)).toThrow(new RegExp(`unexpected keys: ${name}`));
      expect(net.loadStateDict(m, { strict: false }).unexpectedKeys).toEqual([name]);
    }
    // a plain object with an own '__proto__' key, as JSON.parse makes one
    const obj = { ...net.stateDict() } as Record<string, ng.Tensor>;
    Object.defineProperty(obj, '__proto__', { value: ng.zeros([1]), enumerable: true, configurable: true, writable: true });
    expect(() => net.loadStateDict(obj)).toThrow(/unexpected keys: __proto__/);
  });

  test('train/eval toggles every submodule; apply visits all', () => {
    const net = new Net();
    net.eval();
    expect(net.modules().every((m) => !m.training)).toBe(true);
    net.train();
    expect(net.modules().every((m) => m.training)).toBe(true);
    let n = 0;
    net.apply(() => n++);
    expect(n).toBe(net.modules().length);
  });

  test('to(float64) converts parameters and keeps them trainable', () => {
    const net = new Net();
    net.to('float64');
    expect(net.parameters().every((p) => p.dtype === 'float64' && p.requiresGrad)).toBe(true);
    const y = net.forward(ng.randn([2, 4], { dtype: 'float64' }));
    y.sum().backward();
    expect(net.fc1.weight.grad?.dtype).toBe('float64');
  });

  test('Linear matches x @ W^T + b and its gradients match finite differences', () => {
    const lin = new nn.Linear(5, 3);
    const x = ng.randn([2, 4, 5]);
    const ref = x.matmul(lin.weight.t()).add(lin.bias!);
    expectClose(lin.forward(x), ref, { atol: 1e-5 });
    ng.gradcheck((x, w, b) => ng.nn.functional.linear(x, w, b), [
      ng.randn([3, 5], { dtype: 'float64', requiresGrad: true }),
      ng.randn([4, 5], { dtype: 'float64', requiresGrad: true }),
      ng.randn([4], { dtype: 'float64', requiresGrad: true }),
    ]);
  });

  test('Sequential chains modules', () => {
    const seq = new nn.Sequential(new nn.Linear(3, 4), new nn.ReLU(), new nn.Linear(4, 2));
    const x = ng.randn([6, 3]);
    const l0 = seq.at(0) as nn.Linear, l2 = seq.at(2) as nn.Linear;
    expectClose(seq.forward(x), l2.forward(l0.forward(x).relu()));
    expect(seq.namedParameters().map(([k]) => k)).toEqual(['0.weight', '0.bias', '2.weight', '2.bias']);
  });

  test('Dropout is the identity in eval mode', () => {
    const d = new nn.Dropout(0.5);
    const x = ng.randn([100]);
    d.eval();
    expectClose(d.forward(x), x, { atol: 0, rtol: 0 });
  });
});

describe('nn.MultiheadAttention and Block', () => {
  test('attention output matches a composed softmax(QK^T/sqrt(d))V with a causal mask', () => {
    ng.manualSeed(3);
    const mha = new nn.MultiheadAttention(16, 4);
    const x = ng.randn([2, 5, 16]);
    const y = mha.forward(x, { isCausal: true });
    const [B, T, C, H, D] = [2, 5, 16, 4, 4];
    const qkv = mha.cAttn.forward(x).reshape(B, T, 3, H, D).permute(2, 0, 3, 1, 4);
    const q = qkv.select(0, 0), k = qkv.select(0, 1), v = qkv.select(0, 2);
    let s = q.matmul(k.transpose(-1, -2)).mul(1 / Math.sqrt(D));
    const mask = ng.arange(T).reshape(1, T).gt(ng.arange(T).reshape(T, 1));
    s = s.maskedFill(mask, -Infinity);
    const o = s.softmax(-1).matmul(v).transpose(1, 2).reshape(B, T, C);
    expectClose(y, mha.cProj.forward(o), { atol: 1e-5 });
  });

  test('a key-padding mask hides padded keys', () => {
    const mha = new nn.MultiheadAttention(8, 2);
    const x = ng.randn([1, 4, 8]);
    const pad = ng.tensor([[1, 1, 0, 0]], { dtype: 'int32' });
    const y = mha.forward(x, { keyPaddingMask: pad });
    // changing padded positions must not change the outputs of real positions
    const x2 = ng.cat([x.narrow(1, 0, 2), ng.randn([1, 2, 8])], 1);
    const y2 = mha.forward(x2, { keyPaddingMask: pad });
    expectClose(y.narrow(1, 0, 2), y2.narrow(1, 0, 2), { atol: 1e-5 });
  });

  test('pre-LN and post-LN blocks compute their formulas', () => {
    for (const norm of ['pre', 'post'] as const) {
      const blk = new nn.Block(8, { nHead: 2, norm });
      const x = ng.randn([2, 3, 8]);
      const y = blk.forward(x, { isCausal: true });
      let ref: ng.Tensor;
      if (norm === 'pre') {
        const h = x.add(blk.attn.forward(blk.ln1.forward(x), { isCausal: true }));
        ref = h.add(blk.mlp.forward(blk.ln2.forward(h)));
      } else {
        const h = blk.ln1.forward(x.add(blk.attn.forward(x, { isCausal: true })));
        ref = blk.ln2.forward(h.add(blk.mlp.forward(h)));
      }
      expectClose(y, ref, { atol: 1e-5 });
    }
  });

  test('block gradients match finite differences (float64)', () => {
    const blk = new nn.Block(8, { nHead: 2 });
    blk.to('float64');
    const x = ng.randn([1, 3, 8], { dtype: 'float64', requiresGrad: true });
    ng.gradcheck((x) => blk.forward(x, { isCausal: true }), [x], { atol: 1e-5, rtol: 1e-3 });
    // parameters too: every parameter received a finite gradient
    blk.zeroGrad();
    blk.forward(x, { isCausal: true }).sum().backward();
    for (const [k, p] of blk.namedParameters()) {
      expect(p.grad, k).not.toBeNull();
      expect(Array.from(p.grad!.dataSync() as Float64Array).every(Number.isFinite), k).toBe(true);
    }
  });
});
